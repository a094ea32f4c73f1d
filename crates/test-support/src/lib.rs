//! Helpers shared by the workspace's tests, in one place instead of a copy per crate.
//!
//! Owns: locating and reading the test corpus committed under `testdata/corpus/` at the
//! repository root ([`corpus`]); one parser of the Prometheus text exposition and one
//! `promtool check metrics` wrapper ([`prom`]); the house rule for tests that need something the
//! machine may lack ([`skip_unless`], [`root_or_skip`]: skip with a note, but fail under
//! `CI=true`); throw-away network namespaces for root tests ([`TestNetns`]); a free loopback port
//! ([`free_port`]); the plumbing of the root tests' labs: a routed `client — node — server`
//! lab, listeners killed on drop, tool checks ([`lab`]); running the binary and reading its
//! JSON ([`cli`]); and the `xtables-monitor --trace` reader used as a second oracle by the
//! tracer's root tests ([`xtrace`]).
//!
//! It does not know nfscope's types: it depends on no nfscope crate (only `serde_json`), so every
//! crate, the ruleset model and the kernel reader included, can take it as a dev-dependency
//! without a cycle. Helpers that need a crate's own types stay in that crate's `tests/`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod corpus;
pub mod lab;
pub mod netns;
pub mod prom;
pub mod xtrace;

pub use cli::{run, run_json};
pub use corpus::{
    corpus_dir, corpus_file, corpus_files, corpus_path, corpus_rules, nft_corpus_dir,
    nft_corpus_files,
};
pub use lab::{Children, RoutedLab, have, tools_or_skip, wait_listening};
pub use netns::TestNetns;
pub use prom::{
    Sample, assert_promtool_clean, named, parse_exposition, parse_samples, promtool_check, value_of,
};

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;

/// True when `ok`; otherwise prints why `test` skips and returns false. Panics instead of
/// skipping when `CI=true`, where every test must run.
pub fn skip_unless(test: &str, ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why}, and CI=true forbids skipping"
    );
    eprintln!("{test}: skipped ({why})");
    false
}

/// Is the effective user root?
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// True when the test may run root-only steps; otherwise prints why it skips and returns false.
/// Panics instead of skipping when `CI=true`.
pub fn root_or_skip(test: &str) -> bool {
    skip_unless(test, is_root(), "needs root")
}

/// A free TCP port on 127.0.0.1 (for programs that cannot report the port they bound).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Equality with a readable report: panics with the first differing line of the two
/// pretty-printed (`{:#?}`) values and a few lines around it.
pub fn assert_same<T: PartialEq + std::fmt::Debug>(a: &T, b: &T, what: &str) {
    if a == b {
        return;
    }
    let (da, db) = (format!("{a:#?}"), format!("{b:#?}"));
    let (la, lb): (Vec<&str>, Vec<&str>) = (da.lines().collect(), db.lines().collect());
    let i = la
        .iter()
        .zip(&lb)
        .position(|(x, y)| x != y)
        .unwrap_or(la.len().min(lb.len()));
    let ctx = |l: &[&str]| l[i.saturating_sub(8)..(i + 3).min(l.len())].join("\n");
    panic!(
        "{what}: models differ at line {i}:\n--- left\n{}\n--- right\n{}",
        ctx(&la),
        ctx(&lb)
    );
}
