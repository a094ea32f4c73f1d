//! Native nftables families: per-rule counters of rules iptables-nft does not manage (kube-proxy's
//! nftables mode, Calico's nft mode, hand-written firewalls), named counters and set sizes.
//!
//! Owns the `nftables_*` metric names and labels. It does not read anything: the kernel crate
//! fills [`Snapshot::nftables`] (netlink source only; empty otherwise, and then nothing is written).

use std::fmt::Write;

use nfscope_ruleset::Snapshot;

use crate::expo::push_escaped_label_value;

/// Appends the `nftables_*` families for `snapshot.nftables` to `out` (Prometheus text format).
pub fn append_nftables_metrics(out: &mut String, snapshot: &Snapshot) {
    let state = &snapshot.nftables;
    if !state.rules.is_empty() {
        for (name, help, bytes) in [
            (
                "nftables_rule_packets_total",
                "Packets matched by a native nftables rule's counter.",
                false,
            ),
            (
                "nftables_rule_bytes_total",
                "Bytes matched by a native nftables rule's counter.",
                true,
            ),
        ] {
            header(out, name, help, "counter");
            for rule in &state.rules {
                let value = if bytes {
                    rule.counters.bytes
                } else {
                    rule.counters.packets
                };
                out.push_str(name);
                label(out, '{', "family", &rule.family);
                label(out, ',', "table", &rule.table);
                label(out, ',', "chain", &rule.chain);
                let _ = write!(out, ",handle=\"{}\"", rule.handle);
                label(out, ',', "comment", rule.comment.as_deref().unwrap_or(""));
                let _ = writeln!(out, "}} {value}");
            }
        }
    }
    if !state.counters.is_empty() {
        for (name, help, bytes) in [
            (
                "nftables_counter_packets_total",
                "Packets of a named nftables counter.",
                false,
            ),
            (
                "nftables_counter_bytes_total",
                "Bytes of a named nftables counter.",
                true,
            ),
        ] {
            header(out, name, help, "counter");
            for counter in &state.counters {
                let value = if bytes {
                    counter.counters.bytes
                } else {
                    counter.counters.packets
                };
                out.push_str(name);
                label(out, '{', "family", &counter.family);
                label(out, ',', "table", &counter.table);
                label(out, ',', "name", &counter.name);
                let _ = writeln!(out, "}} {value}");
            }
        }
    }
    if !state.sets.is_empty() {
        let name = "nftables_set_elements";
        header(
            out,
            name,
            "Elements in a named nftables set or map.",
            "gauge",
        );
        for set in &state.sets {
            out.push_str(name);
            label(out, '{', "family", &set.family);
            label(out, ',', "table", &set.table);
            label(out, ',', "set", &set.name);
            let _ = writeln!(out, "}} {}", set.elements);
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn label(out: &mut String, sep: char, name: &str, value: &str) {
    out.push(sep);
    out.push_str(name);
    out.push_str("=\"");
    push_escaped_label_value(out, value);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use nfscope_ruleset::{Counters, NftNamedCounter, NftRule, NftSet, NftablesState};

    use super::*;

    #[test]
    fn each_native_object_gets_its_series_with_escaped_labels() {
        let snapshot = Snapshot {
            nftables: NftablesState {
                rules: vec![NftRule {
                    family: "inet".into(),
                    table: "kube-proxy".into(),
                    chain: "services".into(),
                    handle: 12,
                    comment: Some("say \"hi\"".into()),
                    counters: Counters {
                        packets: 3,
                        bytes: 180,
                    },
                }],
                counters: vec![NftNamedCounter {
                    family: "ip".into(),
                    table: "t".into(),
                    name: "c1".into(),
                    counters: Counters {
                        packets: 5,
                        bytes: 7,
                    },
                }],
                sets: vec![NftSet {
                    family: "inet".into(),
                    table: "kube-proxy".into(),
                    name: "cluster-ips".into(),
                    elements: 42,
                }],
            },
            ..Snapshot::default()
        };
        let mut out = String::new();
        append_nftables_metrics(&mut out, &snapshot);
        let series: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                r#"nftables_rule_packets_total{family="inet",table="kube-proxy",chain="services",handle="12",comment="say \"hi\""} 3"#,
                r#"nftables_rule_bytes_total{family="inet",table="kube-proxy",chain="services",handle="12",comment="say \"hi\""} 180"#,
                r#"nftables_counter_packets_total{family="ip",table="t",name="c1"} 5"#,
                r#"nftables_counter_bytes_total{family="ip",table="t",name="c1"} 7"#,
                r#"nftables_set_elements{family="inet",table="kube-proxy",set="cluster-ips"} 42"#,
            ]
        );
        let mut empty = String::new();
        append_nftables_metrics(&mut empty, &Snapshot::default());
        assert!(empty.is_empty());
    }
}
