//! Summary statistics of one tool's K scrapes.

/// Latency summary and resource use of K sequential scrapes (after one warm-up scrape).
#[derive(Debug, Clone)]
pub struct Summary {
    /// Scrapes (nfscope) or runs (baselines) the statistics are over.
    pub k: usize,
    pub first_ms: f64,
    pub median_ms: f64,
    /// Nearest-rank p99; with K < 100 samples it is the maximum.
    pub p99_ms: f64,
    pub cpu_s_per_scrape: f64,
    pub peak_rss_mib: f64,
    /// Servers only: peak RSS during the K scrapes after the warm-up (`VmHWM` reset before them),
    /// and RSS after them.
    pub steady: Option<SteadyRss>,
    /// nfscope only: the first collection, the background lint and the window right after it.
    pub server: Option<ServerDetail>,
    /// Baselines only: the first run and the forked save tool's system time.
    pub baseline: Option<BaselineDetail>,
    pub body_mib: f64,
}

/// A baseline's runs (each a fresh process: the first one is its first collection).
#[derive(Debug, Clone, Copy)]
pub struct BaselineDetail {
    pub runs: usize,
    /// CPU (with the forked tool's) and `VmHWM` of the first run.
    pub first_cpu_s: f64,
    pub first_peak_mib: f64,
    /// System time of the forked tool per run: for `naive`, `iptables-<backend>-save -c`'s, the
    /// kernel's own cost of dumping the rules with their counters.
    pub child_sys_s: f64,
}

/// What the first collection and its background lint cost an nfscope server, and K scrapes
/// started right after the first one (while that lint may still run).
#[derive(Debug, Clone, Copy)]
pub struct ServerDetail {
    /// CPU of the process during the warm-up scrape (reads and parses the rule text), without
    /// the lint thread's.
    pub first_cpu_s: f64,
    /// `VmHWM` when the warm-up scrape returned.
    pub first_peak_mib: f64,
    /// From starting `nfscope serve` to the first `200` on `/metrics` (503s retried).
    pub first_200_s: f64,
    /// `None` for a build without a background lint thread (it lints inside the collection).
    pub lint: Option<LintCost>,
    pub change: ChangeWindow,
}

/// The background lint of the first collection's rules.
#[derive(Debug, Clone, Copy)]
pub struct LintCost {
    /// CPU of the lint thread from its start until it was idle.
    pub cpu_s: f64,
    /// The part of it spent before the warm-up scrape's answer was complete.
    pub during_first_s: f64,
}

/// K scrapes right after the warm-up one.
#[derive(Debug, Clone, Copy)]
pub struct ChangeWindow {
    pub median_ms: f64,
    /// CPU of the whole process (lint thread included) per scrape.
    pub cpu_s_per_scrape: f64,
    /// The lint thread's share of it.
    pub lint_cpu_s_per_scrape: f64,
    /// `VmHWM` over the window (reset before it).
    pub peak_mib: f64,
}

/// A long-running exporter's memory once its first collection is done.
#[derive(Debug, Clone, Copy)]
pub struct SteadyRss {
    pub peak_mib: f64,
    pub after_mib: f64,
}

/// Median of the samples (mean of the middle two for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile `q` (0–1] of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}
