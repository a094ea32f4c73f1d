//! The baseline nfscope is compared with: a straightforward line parser of `iptables-save -c`
//! output that turns it into Prometheus text, the way retailnext/iptables_exporter (Go) does.
//!
//! Per line: `*table` switches the table, `:CHAIN POLICY [p:b]` gives a chain's policy counters,
//! `[p:b] -A CHAIN rest…` gives a rule whose label is `rest` re-joined with single spaces. There is
//! no quote awareness, no rule identity and no Kubernetes meaning: that is the point of the
//! baseline (it is cheap, and wrong on quoted comments with double spaces). This module does no
//! I/O; the `scrape-bench` binary forks `iptables-save` and times it.

use std::fmt::Write as _;

/// A rule line split the naive way: counters (if any), chain, and the rest of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaiveRule<'a> {
    /// `(packets, bytes)` from a leading `[p:b]`, if present and numeric.
    pub counters: Option<(u64, u64)>,
    /// The word after `-A`.
    pub chain: &'a str,
    /// Everything after the chain name, untouched.
    pub rest: &'a str,
}

/// Splits a `[p:b] -A CHAIN …` or `-A CHAIN …` line; `None` for any other line.
pub fn rule_body(line: &str) -> Option<NaiveRule<'_>> {
    let line = line.trim_start();
    let (counters, after) = match line.strip_prefix('[') {
        Some(inner) => {
            let (pair, after) = inner.split_once(']')?;
            (parse_pair(pair), after.trim_start())
        }
        None => (None, line),
    };
    let after = after.strip_prefix("-A ")?;
    let (chain, rest) = after.split_once(' ').unwrap_or((after, ""));
    Some(NaiveRule {
        counters,
        chain,
        rest,
    })
}

fn parse_pair(pair: &str) -> Option<(u64, u64)> {
    let (p, b) = pair.split_once(':')?;
    Some((p.parse().ok()?, b.parse().ok()?))
}

/// Prometheus text for a whole `iptables-save -c` dump: per chain policy counters and per rule
/// packet and byte counters labelled `{table, chain, rule}`, `rule` being the whitespace-collapsed
/// rule text. Returns the exposition and the number of rules seen.
pub fn exposition_from_save(text: &str) -> (String, usize) {
    let mut packets = String::new();
    let mut bytes = String::new();
    let mut policies = String::new();
    let mut table = "";
    let mut count = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('*') {
            table = name;
        } else if let Some(decl) = line.strip_prefix(':') {
            write_policy(&mut policies, table, decl);
        } else if let Some(rule) = rule_body(line) {
            write_rule(&mut packets, &mut bytes, table, &rule);
            count += 1;
        }
    }
    let mut out = String::with_capacity(packets.len() + bytes.len() + policies.len() + 512);
    push_family(
        &mut out,
        "iptables_default_packets_total",
        "Packets matched by the chain policy.",
        &policies,
    );
    push_family(
        &mut out,
        "iptables_rule_packets_total",
        "Packets matched by a rule.",
        &packets,
    );
    push_family(
        &mut out,
        "iptables_rule_bytes_total",
        "Bytes matched by a rule.",
        &bytes,
    );
    (out, count)
}

fn push_family(out: &mut String, name: &str, help: &str, samples: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    out.push_str(samples);
}

fn write_policy(out: &mut String, table: &str, decl: &str) {
    let fields: Vec<&str> = decl.split_whitespace().collect();
    let [chain, policy, counters] = fields[..] else {
        return;
    };
    if policy == "-" {
        return;
    }
    let Some((p, _b)) = counters
        .strip_prefix('[')
        .and_then(|c| c.strip_suffix(']'))
        .and_then(parse_pair)
    else {
        return;
    };
    let _ = writeln!(
        out,
        "iptables_default_packets_total{{table=\"{table}\",chain=\"{chain}\",policy=\"{policy}\"}} {p}"
    );
}

fn write_rule(packets_out: &mut String, bytes_out: &mut String, table: &str, rule: &NaiveRule<'_>) {
    let (packets, bytes) = rule.counters.unwrap_or((0, 0));
    let label = escape_label(&rule.rest.split_whitespace().collect::<Vec<_>>().join(" "));
    let (t, c) = (table, rule.chain);
    let _ = writeln!(
        packets_out,
        "iptables_rule_packets_total{{table=\"{t}\",chain=\"{c}\",rule=\"{label}\"}} {packets}"
    );
    let _ = writeln!(
        bytes_out,
        "iptables_rule_bytes_total{{table=\"{t}\",chain=\"{c}\",rule=\"{label}\"}} {bytes}"
    );
}

/// Prometheus label-value escaping: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out
}
