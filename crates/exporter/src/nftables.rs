//! Native nftables families: per-rule counters of rules iptables-nft does not manage (kube-proxy's
//! nftables mode, Calico's nft mode, hand-written firewalls), named counters and set sizes.
//!
//! Owns the `nftables_*` metric names and labels. Rule series carry the rule's canonical nft
//! text (counter values left out) and comment like `iptables_rule_*` do (`rule`, `rule_id`,
//! `comment`, plus the kernel `handle`), under the same bounds: `--rule-label none` drops `rule`,
//! and at most `max_rule_series` native rules get series per scrape (the rest are counted in
//! `nfscope_nftables_rule_series_dropped`). It does not read anything: the kernel crate fills
//! [`Snapshot::nftables`] (empty when native tables were not read, and then nothing is written).

use nfscope_ruleset::{Counters, NftablesState, Snapshot};

use crate::ExportOptions;
use crate::RuleLabel;
use crate::expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};
use crate::labels::native_rule_id;

/// Appends the `nftables_*` families for `snapshot.nftables` to `out` (Prometheus text format),
/// with the default [`ExportOptions`]. Families without samples leave nothing behind.
pub fn append_nftables_metrics(out: &mut String, snapshot: &Snapshot) {
    let mut expo = Exposition::appending_to(std::mem::take(out));
    let options = ExportOptions::default();
    NftablesFamilies::new(&snapshot.nftables, &options).encode(&ScrapeFacts::default(), &mut expo);
    *out = expo.into_string();
}

/// The `nftables_*` families of one collection's native nftables state.
#[derive(Debug, Clone, Copy)]
pub struct NftablesFamilies<'a> {
    state: &'a NftablesState,
    options: &'a ExportOptions,
}

impl<'a> NftablesFamilies<'a> {
    /// The families of `state`, labelled and bounded as `options` say for iptables rules.
    pub fn new(state: &'a NftablesState, options: &'a ExportOptions) -> Self {
        Self { state, options }
    }
}

impl MetricFamilies for NftablesFamilies<'_> {
    fn encode(&self, _: &ScrapeFacts<'_>, expo: &mut Exposition<'_>) {
        write_nftables(expo, self.state, self.options);
    }
}

fn write_nftables(expo: &mut Exposition<'_>, state: &NftablesState, options: &ExportOptions) {
    let kept = state.rules.len().min(options.max_rule_series);
    let labelled: Vec<(String, &str)> = state.rules[..kept]
        .iter()
        .map(|rule| {
            let text = rule.rule.as_deref().unwrap_or("");
            let id = if text.is_empty() {
                String::new()
            } else {
                native_rule_id(&rule.family, &rule.table, &rule.chain, text)
            };
            (id, text)
        })
        .collect();
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
        for (rule, (id, text)) in state.rules.iter().zip(&labelled) {
            let handle = rule.handle.to_string();
            let comment = rule.comment.as_deref().unwrap_or("");
            let full = [
                ("family", rule.family.as_str()),
                ("table", &rule.table),
                ("chain", &rule.chain),
                ("handle", &handle),
                ("rule", text),
                ("rule_id", id),
                ("comment", comment),
            ];
            let labels: &[(&str, &str)] = match options.rule_label {
                RuleLabel::Full => &full,
                RuleLabel::None => &[full[0], full[1], full[2], full[3], full[5], full[6]],
            };
            expo.sample(name, labels, pick(&rule.counters));
        }
        expo.end_family();
    }
    if state.is_empty() && state.text_reads == 0 {
        return;
    }
    let name = "nfscope_nftables_rule_series_dropped";
    expo.family(
        name,
        Kind::Gauge,
        "Native nftables rules with counters that got no nftables_rule_* series in this scrape because max_rule_series was reached.",
    );
    expo.sample(name, &[], (state.rules.len() - kept) as u64);
    expo.end_family();
    let name = "nfscope_nftables_text_reads_total";
    expo.family(
        name,
        Kind::Counter,
        "Times the native nftables rules were read as text (nft -j list ruleset); the server re-reads them only when the ruleset changed.",
    );
    expo.sample(name, &[], state.text_reads);
    expo.end_family();
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
        "Elements in a named nftables set or map, as nft list shows them (a range is one element).",
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
                    rule: Some("ct state new counter accept comment \"say \\\"hi\\\"\"".into()),
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
                text_reads: 2,
                ..NftablesState::default()
            },
            ..Snapshot::default()
        };
        let id = native_rule_id(
            "inet",
            "kube-proxy",
            "services",
            r#"ct state new counter accept comment "say \"hi\"""#,
        );
        let mut out = String::new();
        append_nftables_metrics(&mut out, &snapshot);
        let series: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        let rule = r#"ct state new counter accept comment \"say \\\"hi\\\"\""#;
        assert_eq!(
            series,
            [
                format!(
                    r#"nftables_rule_packets_total{{family="inet",table="kube-proxy",chain="services",handle="12",rule="{rule}",rule_id="{id}",comment="say \"hi\""}} 3"#
                )
                .as_str(),
                &format!(
                    r#"nftables_rule_bytes_total{{family="inet",table="kube-proxy",chain="services",handle="12",rule="{rule}",rule_id="{id}",comment="say \"hi\""}} 180"#
                ),
                r#"nfscope_nftables_rule_series_dropped 0"#,
                r#"nfscope_nftables_text_reads_total 2"#,
                r#"nftables_counter_packets_total{family="ip",table="t",name="c1"} 5"#,
                r#"nftables_counter_bytes_total{family="ip",table="t",name="c1"} 7"#,
                r#"nftables_set_elements{family="inet",table="kube-proxy",set="cluster-ips"} 42"#,
            ]
        );
        assert_eq!(id.len(), 16);

        // Bounded like iptables_rule_*: no `rule` label on request, and a series cap.
        let opts = ExportOptions {
            rule_label: RuleLabel::None,
            max_rule_series: 0,
            ..ExportOptions::default()
        };
        let mut expo = Exposition::appending_to(String::new());
        NftablesFamilies::new(&snapshot.nftables, &opts).encode(&ScrapeFacts::default(), &mut expo);
        let capped = expo.into_string();
        assert!(!capped.contains("nftables_rule_packets_total{"), "{capped}");
        assert!(
            capped.contains("nfscope_nftables_rule_series_dropped 1"),
            "{capped}"
        );
        let opts = ExportOptions {
            rule_label: RuleLabel::None,
            max_rule_series: 10,
            ..ExportOptions::default()
        };
        let mut expo = Exposition::appending_to(String::new());
        NftablesFamilies::new(&snapshot.nftables, &opts).encode(&ScrapeFacts::default(), &mut expo);
        let bare = expo.into_string();
        assert!(
            bare.contains(&format!(r#"handle="12",rule_id="{id}",comment="#)),
            "{bare}"
        );
        assert!(!bare.contains("rule=\""), "{bare}");
        let mut empty = String::new();
        append_nftables_metrics(&mut empty, &Snapshot::default());
        assert!(empty.is_empty());
    }
}
