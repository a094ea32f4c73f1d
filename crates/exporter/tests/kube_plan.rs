//! What a server encodes from rule *counters* (`RulesetCounters`, no specs) plus cached labels
//! carrying the Kubernetes series plan equals what the full rulesets with their annotations
//! give, byte for byte, on every corpus dump with counters (the kube-proxy, kube-router and
//! Calico ones feed the Kubernetes families).

mod common;

use common::{add_counters, parse, snapshot_of};
use nfscope_exporter::{
    CountedRules, ExportOptions, RuleLabels, SelfMetrics, Snapshot, encode_counters_streaming,
    encode_metrics_with_labels,
};
use nfscope_ruleset::RulesetCounters;
use nfscope_test_support::corpus_rules;

#[test]
fn skeletons_with_planned_labels_encode_like_annotated_rulesets() {
    let mut families = std::collections::BTreeSet::new();
    let mut endpoints = 0;
    for (name, text) in corpus_rules() {
        let mut ruleset = parse(&name, &text);
        add_counters(&mut ruleset);
        let full = snapshot_of(ruleset.clone());
        let annotations: Vec<_> = full
            .rulesets
            .iter()
            .map(nfscope_annotate::annotate)
            .collect();
        let expected = encode_metrics_with_labels(
            &full,
            &annotations,
            &[],
            &SelfMetrics::default(),
            &ExportOptions::default(),
        )
        .body;

        let labels: Vec<RuleLabels> = full
            .rulesets
            .iter()
            .zip(&annotations)
            .map(|(r, a)| {
                let mut labels = RuleLabels::new(r);
                labels.attach_kube_plan(r, a);
                labels
            })
            .collect();
        let counters: Vec<RulesetCounters> =
            full.rulesets.iter().map(RulesetCounters::of).collect();
        let rules: Vec<CountedRules<'_>> = counters
            .iter()
            .zip(&labels)
            .map(|(counters, labels)| CountedRules { counters, labels })
            .collect();
        let rest = Snapshot {
            rulesets: Vec::new(),
            ..full.clone()
        };
        let mut got = String::new();
        let mut sink = |chunk: String| {
            got.push_str(&chunk);
            Ok(())
        };
        let streamed = encode_counters_streaming(
            &rules,
            &rest,
            &SelfMetrics::default(),
            &ExportOptions::default(),
            4096,
            &mut sink,
        )
        .expect("the sink stays open");
        got.push_str(&streamed.tail);
        assert_eq!(got, expected, "{name}");
        // The endpoints handed on for `nfscope_kube_endpoint_info` are those of the series.
        let series: Vec<&str> = expected
            .lines()
            .filter(|l| l.starts_with("nfscope_kube_endpoint_new_connections_total{"))
            .filter_map(|l| l.split("endpoint=\"").nth(1)?.split('"').next())
            .collect();
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&str> = series.into_iter().filter(|e| seen.insert(*e)).collect();
        assert_eq!(streamed.kube_endpoints, unique, "{name}");
        endpoints += unique.len();
        families.extend(
            expected
                .lines()
                .filter(|l| l.starts_with("nfscope_kube_") || l.starts_with("nfscope_calico_"))
                .filter_map(|l| l.split('{').next().map(str::to_owned)),
        );
    }
    assert!(endpoints > 0, "the corpus has kube-proxy endpoints");
    assert!(
        families.len() >= 3,
        "the corpus feeds the Kubernetes families: {families:?}"
    );
}

/// Conntrack-counted endpoint series join the rule-counted ones in one family, and a Service port
/// whose endpoints have counted DNAT rules is counted by those only (never twice).
#[test]
fn conntrack_series_join_the_family_but_never_double_count_a_rule_counted_service() {
    use nfscope_annotate::ServicePort;
    use nfscope_exporter::KubeConntrack;
    use nfscope_exporter::kube_conntrack::ConnSample;
    use nfscope_exporter::{encode_counters_streaming_with, encode_metrics};

    let (name, ruleset, by_rules) = corpus_rules()
        .into_iter()
        .find_map(|(name, text)| {
            let mut ruleset = parse(&name, &text);
            add_counters(&mut ruleset);
            let full = snapshot_of(ruleset.clone());
            let annotations: Vec<_> = full
                .rulesets
                .iter()
                .map(nfscope_annotate::annotate)
                .collect();
            let body = encode_metrics(
                &full,
                &annotations,
                &SelfMetrics::default(),
                &ExportOptions::default(),
            );
            let line = body
                .lines()
                .find(|l| l.starts_with("nfscope_kube_endpoint_new_connections_total{"))?
                .to_owned();
            Some((name, ruleset, line))
        })
        .expect("a corpus dump with kube-proxy endpoints");
    let label = |key: &str| -> String {
        by_rules
            .split(&format!("{key}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    let sample = |service: ServicePort, endpoint: &str, connections| ConnSample {
        family: "ipv4",
        backend: "nftables",
        service,
        endpoint: endpoint.to_owned(),
        connections,
    };
    let same = ServicePort {
        namespace: label("namespace"),
        name: label("service"),
        port: label("port"),
    };
    let conntrack = KubeConntrack {
        connections: vec![
            sample(same, "192.0.2.250:1", 7),
            sample(
                ServicePort::parse("nft-only/web:http").unwrap(),
                "192.0.2.251:80",
                9,
            ),
        ],
        no_endpoints: Vec::new(),
    };
    let full = snapshot_of(ruleset);
    let annotations = nfscope_annotate::annotate(&full.rulesets[0]);
    let mut labels = RuleLabels::new(&full.rulesets[0]);
    labels.attach_kube_plan(&full.rulesets[0], &annotations);
    let counters = RulesetCounters::of(&full.rulesets[0]);
    let rules = [CountedRules {
        counters: &counters,
        labels: &labels,
    }];
    let rest = Snapshot {
        rulesets: Vec::new(),
        ..full.clone()
    };
    let mut body = String::new();
    let mut sink = |chunk: String| {
        body.push_str(&chunk);
        Ok(())
    };
    let streamed = encode_counters_streaming_with(
        &rules,
        &rest,
        &SelfMetrics::default(),
        &ExportOptions::default(),
        4096,
        &mut sink,
        &conntrack,
    )
    .expect("the sink stays open");
    body.push_str(&streamed.tail);
    assert!(
        body.contains(&by_rules),
        "{name}: the rule-counted series stays"
    );
    assert!(
        !body.contains("192.0.2.250:1"),
        "{name}: a rule-counted Service port is not counted from conntrack too"
    );
    assert!(
        body.contains(
            "nfscope_kube_endpoint_new_connections_total{family=\"ipv4\",backend=\"nftables\",\
             namespace=\"nft-only\",service=\"web\",port=\"http\",endpoint=\"192.0.2.251:80\"} 9\n"
        ),
        "{body}"
    );
    assert_eq!(
        body.matches("# TYPE nfscope_kube_endpoint_new_connections_total")
            .count(),
        1,
        "one family"
    );
    assert!(
        streamed
            .kube_endpoints
            .iter()
            .any(|e| e == "192.0.2.251:80")
    );
}
