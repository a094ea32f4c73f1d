//! The two baselines, each run as one short-lived process per scrape *inside* the namespace
//! (`ip netns exec NS scrape-bench baseline-once …`), like an exporter living on the node:
//!
//! - `naive`: fork `iptables-<backend>-save -c`, split lines, write exposition
//!   (retailnext/iptables_exporter style, see `nfscope_bench::naive`);
//! - `nft-json`: fork `nft -j list ruleset`, parse it into `serde_json::Value`, write one packet and
//!   one byte series per rule counter (metal-stack/nftables-exporter style).
//!
//! - `save6`: not an exporter — runs `ip6tables-<backend>-save -c` alone, so that the kernel's
//!   cost of dumping the (empty) IPv6 tables, which nfscope reads too, is counted in the kernel
//!   dump cost beside the IPv4 save tool's system time that `naive` reports.
//!
//! The child reports its own latency, CPU (self + waited children), the waited children's user
//! and system time apart (the save tool's; its system time is the kernel's cost of the dump) and
//! peak RSS as one JSON line. The save tools run with an unlimited stack (`iptables-nft-save`
//! 1.8.9 dies of SIGSEGV with the default 8 MiB at 290k rules).

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::procfs;

/// What one baseline scrape cost, as measured by the scraping process itself.
pub struct OnceReport {
    pub latency_s: f64,
    pub cpu_ticks: u64,
    /// User and system time of the waited-for children (the forked save tool or `nft`).
    pub child_user_ticks: u64,
    pub child_sys_ticks: u64,
    pub peak_rss_kib: u64,
    pub body_bytes: usize,
    pub rules: usize,
}

impl OnceReport {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "latency_s": self.latency_s,
            "cpu_ticks": self.cpu_ticks,
            "child_user_ticks": self.child_user_ticks,
            "child_sys_ticks": self.child_sys_ticks,
            "peak_rss_kib": self.peak_rss_kib,
            "body_bytes": self.body_bytes,
            "rules": self.rules,
        })
        .to_string()
    }

    pub fn from_json(line: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("baseline output {line:?}"))?;
        let num = |k: &str| v[k].as_f64().with_context(|| format!("missing {k}"));
        Ok(Self {
            latency_s: num("latency_s")?,
            cpu_ticks: num("cpu_ticks")? as u64,
            child_user_ticks: num("child_user_ticks")? as u64,
            child_sys_ticks: num("child_sys_ticks")? as u64,
            peak_rss_kib: num("peak_rss_kib")? as u64,
            body_bytes: num("body_bytes")? as usize,
            rules: num("rules")? as usize,
        })
    }
}

/// One scrape by `tool` (`naive` or `nft-json`) in the current namespace.
pub fn run_once(tool: &str, backend: &str) -> Result<OnceReport> {
    let start = Instant::now();
    let (body, rules) = match tool {
        "naive" => naive_scrape(backend)?,
        "nft-json" => nft_json_scrape()?,
        "save6" => {
            let dump = command_stdout(&format!("ip6tables-{backend}-save"), &["-c"])?;
            (
                String::new(),
                nfscope_bench::count_rules(&String::from_utf8_lossy(&dump)),
            )
        }
        other => bail!("unknown baseline tool {other}"),
    };
    let latency_s = start.elapsed().as_secs_f64();
    std::hint::black_box(&body);
    let (child_user_ticks, child_sys_ticks) = procfs::child_ticks("self")?;
    Ok(OnceReport {
        latency_s,
        cpu_ticks: procfs::cpu_ticks("self")?,
        child_user_ticks,
        child_sys_ticks,
        peak_rss_kib: procfs::peak_rss_kib("self")?,
        body_bytes: body.len(),
        rules,
    })
}

/// Runs `program args…` with an unlimited stack (a shell sets it and `exec`s the program, so the
/// waited-for child is the program itself) and returns its standard output.
fn command_stdout(program: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("sh")
        .args([
            "-c",
            "ulimit -s unlimited 2>/dev/null || ulimit -s 1048576; exec \"$0\" \"$@\"",
            program,
        ])
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn naive_scrape(backend: &str) -> Result<(String, usize)> {
    let dump = command_stdout(&format!("iptables-{backend}-save"), &["-c"])?;
    let text = String::from_utf8(dump).context("iptables-save output is not UTF-8")?;
    Ok(nfscope_bench::naive::exposition_from_save(&text))
}

fn nft_json_scrape() -> Result<(String, usize)> {
    let json = command_stdout("nft", &["-j", "list", "ruleset"])?;
    let doc: Value = serde_json::from_slice(&json).context("nft -j output")?;
    let items = doc["nftables"].as_array().context("no nftables array")?;
    let mut packets = String::from("# TYPE nftables_rule_packets_total counter\n");
    let mut bytes = String::from("# TYPE nftables_rule_bytes_total counter\n");
    let mut rules = 0;
    for rule in items.iter().filter_map(|item| item.get("rule")) {
        rules += 1;
        let Some(counter) = rule_counter(rule) else {
            continue;
        };
        let labels = format!(
            "family=\"{}\",table=\"{}\",chain=\"{}\",handle=\"{}\"",
            rule["family"].as_str().unwrap_or(""),
            rule["table"].as_str().unwrap_or(""),
            nfscope_bench::naive::escape_label(rule["chain"].as_str().unwrap_or("")),
            rule["handle"].as_u64().unwrap_or(0)
        );
        let _ = writeln!(
            packets,
            "nftables_rule_packets_total{{{labels}}} {}",
            counter.0
        );
        let _ = writeln!(bytes, "nftables_rule_bytes_total{{{labels}}} {}", counter.1);
    }
    packets.push_str(&bytes);
    Ok((packets, rules))
}

fn rule_counter(rule: &Value) -> Option<(u64, u64)> {
    rule["expr"].as_array()?.iter().find_map(|expr| {
        let c = expr.get("counter")?;
        Some((c["packets"].as_u64()?, c["bytes"].as_u64()?))
    })
}
