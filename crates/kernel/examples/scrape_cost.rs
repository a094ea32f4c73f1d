//! Scrape cost of the two rule sources in a namespace: `scrape_cost NETNS SOURCE N [TIMEOUT_SECS]`.
//! Prints median and p99 wall time, CPU seconds per scrape (this process plus its children,
//! from /proc/self/stat and /proc/self/stat's cumulative child times) and peak RSS; then the
//! first collection (the text read) alone: wall, CPU, peak RSS and save-tool fallbacks.

use std::time::Instant;

use nfscope_kernel::{CollectOptions, Reader, RuleSource};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14..17 (1-based); `after` starts at field 3.
    fields[11..15].iter().sum::<f64>() / 100.0
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let netns = args.next();
    let source = match args.next().as_deref() {
        Some("exec") => RuleSource::Exec,
        _ => RuleSource::Netlink,
    };
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let timeout_secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let options = CollectOptions {
        timeout: std::time::Duration::from_secs(timeout_secs),
        netns,
        source,
        ipsets: false,
        conntrack: false,
        ..CollectOptions::default()
    };
    // Like the server: the reader hands out the parsed rules once and keeps only counters.
    let mut reader = Reader::counters_only();
    nfscope_kernel::tune_allocator();
    let (cpu_first, started_first) = (cpu_seconds(), Instant::now());
    let first = reader.read(&options); // fills the text cache
    let first_ms = started_first.elapsed().as_secs_f64() * 1e3;
    let first_cpu_ms = (cpu_seconds() - cpu_first) * 1e3;
    let first_peak_mib = peak_rss_kib() as f64 / 1024.0;
    let forks: usize = first.snapshot.text_fallbacks.len();
    let rules: usize = first.rulesets.iter().map(|r| r.counters.rule_count()).sum();
    drop(first);
    let cpu_before = cpu_seconds();
    let mut walls = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let reading = reader.read(&options);
        walls.push(started.elapsed().as_secs_f64());
        for s in &reading.snapshot.sources {
            if let Some(e) = &s.error {
                eprintln!("{}: {e}", s.method);
            }
        }
        drop(reading);
        nfscope_kernel::release_free_memory();
    }
    let cpu = (cpu_seconds() - cpu_before) / n as f64;
    walls.sort_by(f64::total_cmp);
    let p99 = walls[((n as f64 * 0.99).ceil() as usize)
        .saturating_sub(1)
        .min(n - 1)];
    println!(
        "source={} rules={rules} median_ms={:.1} p99_ms={:.1} cpu_ms_per_scrape={:.1} peak_rss_mib={:.1} first_ms={first_ms:.1} first_cpu_ms={first_cpu_ms:.1} first_peak_rss_mib={first_peak_mib:.1} first_text_fallbacks={forks}",
        source.as_str(),
        walls[n / 2] * 1e3,
        p99 * 1e3,
        cpu * 1e3,
        peak_rss_kib() as f64 / 1024.0
    );
}
