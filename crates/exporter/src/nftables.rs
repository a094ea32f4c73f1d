//! Native nftables families: per-rule counters of rules iptables-nft does not manage (kube-proxy's
//! nftables mode, Calico's nft mode, hand-written firewalls), named counters and set sizes.
//!
//! Owns the `nftables_*` metric names and labels. It does not read anything: the kernel crate
//! fills [`Snapshot::nftables`] (netlink source only; empty otherwise, and then nothing is written).

use nfscope_ruleset::{Counters, NftablesState, Snapshot};

use crate::expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};

/// Appends the `nftables_*` families for `snapshot.nftables` to `out` (Prometheus text format).
/// Families without samples leave nothing behind.
pub fn append_nftables_metrics(out: &mut String, snapshot: &Snapshot) {
    let mut expo = Exposition::appending_to(std::mem::take(out));
    NftablesFamilies(&snapshot.nftables).encode(&ScrapeFacts::default(), &mut expo);
    *out = expo.into_string();
}

/// The `nftables_*` families of one collection's native nftables state.
#[derive(Debug, Clone, Copy)]
pub struct NftablesFamilies<'a>(pub &'a NftablesState);

impl MetricFamilies for NftablesFamilies<'_> {
    fn encode(&self, _: &ScrapeFacts<'_>, expo: &mut Exposition<'_>) {
        write_nftables(expo, self.0);
    }
}

fn write_nftables(expo: &mut Exposition<'_>, state: &NftablesState) {
    for (name, help, pick) in [
        (
            "nftables_rule_packets_total",
            "Packets matched by a native nftables rule's counter.",
            packets as fn(&Counters) -> u64,
        ),
        (
            "nftables_rule_bytes_total",
            "Bytes matched by a native nftables rule's counter.",
            bytes,
        ),
    ] {
        expo.family(name, Kind::Counter, help);
        for rule in &state.rules {
            let handle = rule.handle.to_string();
            let comment = rule.comment.as_deref().unwrap_or("");
            let labels = [
                ("family", rule.family.as_str()),
                ("table", &rule.table),
                ("chain", &rule.chain),
                ("handle", &handle),
                ("comment", comment),
            ];
            expo.sample(name, &labels, pick(&rule.counters));
        }
        expo.end_family();
    }
    for (name, help, pick) in [
        (
            "nftables_counter_packets_total",
            "Packets of a named nftables counter.",
            packets as fn(&Counters) -> u64,
        ),
        (
            "nftables_counter_bytes_total",
            "Bytes of a named nftables counter.",
            bytes,
        ),
    ] {
        expo.family(name, Kind::Counter, help);
        for counter in &state.counters {
            let labels = [
                ("family", counter.family.as_str()),
                ("table", &counter.table),
                ("name", &counter.name),
            ];
            expo.sample(name, &labels, pick(&counter.counters));
        }
        expo.end_family();
    }
    let name = "nftables_set_elements";
    expo.family(
        name,
        Kind::Gauge,
        "Elements in a named nftables set or map.",
    );
    for set in &state.sets {
        let labels = [
            ("family", set.family.as_str()),
            ("table", &set.table),
            ("set", &set.name),
        ];
        expo.sample(name, &labels, set.elements);
    }
    expo.end_family();
}

fn packets(counters: &Counters) -> u64 {
    counters.packets
}

fn bytes(counters: &Counters) -> u64 {
    counters.bytes
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
                    rule: None,
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
                ..NftablesState::default()
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
