//! Collects once and prints one line per source (and a summary of each ruleset) to stdout.
//!
//! `cargo run -p nfscope-kernel --example collect [NETNS]`; useful to see what a node (or a named
//! network namespace) gives, how long each source takes, and which capabilities are missing.

use nfscope_kernel::{CollectOptions, collect};

fn main() {
    let options = CollectOptions {
        netns: std::env::args().nth(1),
        ..CollectOptions::default()
    };
    let snapshot = collect(&options);
    for source in &snapshot.sources {
        let status = source.error.as_deref().unwrap_or("ok");
        println!(
            "{:>9.3} ms  {:<32} {status}",
            source.duration_seconds * 1e3,
            source.method
        );
    }
    for ruleset in &snapshot.rulesets {
        let (family, backend) = (ruleset.family, ruleset.backend);
        let tables = ruleset.tables.len();
        println!(
            "{family} {backend}: {tables} tables, {} rules",
            ruleset.rule_count()
        );
    }
    println!("ipsets: {}", snapshot.ipsets.len());
    if let Some(ct) = &snapshot.conntrack {
        println!("conntrack: {} of {} entries", ct.entries, ct.limit);
    }
}
