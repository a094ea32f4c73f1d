//! The two baselines, each run as one short-lived process per scrape *inside* the namespace
//! (`ip netns exec NS scrape-bench baseline-once …`), like an exporter living on the node:
//!
//! - `naive`: fork `iptables-<backend>-save -c`, split lines, write exposition
//!   (retailnext/iptables_exporter style, see `nfscope_bench::naive`);
//! - `nft-json`: fork `nft -j list ruleset`, parse it into `serde_json::Value`, write one packet and
//!   one byte series per rule counter (metal-stack/nftables-exporter style).
//!
//! The child reports its own latency, CPU (self + waited children) and peak RSS as one JSON line.

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
    pub peak_rss_kib: u64,
    pub body_bytes: usize,
    pub rules: usize,
}

impl OnceReport {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "latency_s": self.latency_s,
            "cpu_ticks": self.cpu_ticks,
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
        other => bail!("unknown baseline tool {other}"),
    };
    let latency_s = start.elapsed().as_secs_f64();
    std::hint::black_box(&body);
    Ok(OnceReport {
        latency_s,
        cpu_ticks: procfs::cpu_ticks("self")?,
        peak_rss_kib: procfs::peak_rss_kib("self")?,
        body_bytes: body.len(),
        rules,
    })
}

fn command_stdout(program: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(program)
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
