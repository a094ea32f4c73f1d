//! The `/api/rules` JSON document on a real dump.

mod common;

use common::{parse, snapshot_of};
use nfscope_exporter::{rule_ids, rules_json, rules_json_string, write_rules_json};
use nfscope_test_support::{corpus_file, corpus_files};
use serde_json::Value;

#[test]
fn rules_json_has_the_documented_shape_and_values() {
    let ruleset = parse(
        "k3s",
        &corpus_file("k3s-node-iptables-save-c-counters-2022.rules"),
    );
    let ids = rule_ids(&ruleset);
    let annotations = vec![nfscope_annotate::annotate(&ruleset)];
    let snapshot = snapshot_of(ruleset.clone());
    let doc = rules_json(&snapshot, &annotations);
    let text: Value =
        serde_json::from_str(&rules_json_string(&snapshot, &annotations)).expect("valid JSON");
    assert_eq!(
        text, doc,
        "the string and value forms are the same document"
    );

    assert_eq!(doc["sources"][0]["kind"], "rules");
    assert!(doc["ipsets"].as_array().is_some_and(Vec::is_empty));
    assert!(doc["conntrack"].is_null());
    let rs = &doc["rulesets"][0];
    assert_eq!(
        (rs["family"].as_str(), rs["backend"].as_str()),
        (Some("ipv4"), Some("legacy"))
    );
    let tables = rs["tables"].as_array().expect("tables");
    let names: Vec<&str> = tables.iter().filter_map(|t| t["name"].as_str()).collect();
    let want: Vec<&str> = ruleset.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, want);

    let t = ruleset
        .tables
        .iter()
        .position(|t| t.name == "nat")
        .expect("nat");
    let c = ruleset.tables[t]
        .chains
        .iter()
        .position(|c| c.name.starts_with("KUBE-SEP-"))
        .expect("SEP chain");
    let chain_json = &tables[t]["chains"][c];
    assert_eq!(chain_json["owner"], "kube-proxy");
    assert_eq!(chain_json["policy"], Value::Null);
    let rules = chain_json["rules"].as_array().expect("rules");
    let dnat = rules
        .iter()
        .find(|r| r["target"] == "DNAT")
        .expect("DNAT rule");
    let r0 = ruleset.tables[t].chains[c]
        .rules
        .iter()
        .position(|r| r.spec.target_name() == Some("DNAT"))
        .expect("dnat");
    assert_eq!(dnat["index"], r0 + 1);
    assert_eq!(dnat["rule_id"], ids.get(t, c, r0));
    assert_eq!(dnat["comment"], "default/kubernetes:https");
    assert_eq!(dnat["packets"], 0);
    assert_eq!(dnat["meaning"]["type"], "kube_endpoint");
    assert_eq!(dnat["meaning"]["endpoint"], "10.0.20.5:6443");
    assert_eq!(
        dnat["summary"],
        "service default/kubernetes:https endpoint 10.0.20.5:6443"
    );
    let rule_text = dnat["rule"].as_str().expect("rule text");
    assert!(
        rule_text.contains("--to-destination 10.0.20.5:6443") && !rule_text.starts_with("-A"),
        "{rule_text}"
    );

    let filter = ruleset
        .tables
        .iter()
        .position(|t| t.name == "filter")
        .expect("filter");
    let input = &tables[filter]["chains"][0];
    let model = &ruleset.tables[filter].chains[0];
    assert_eq!(input["name"], model.name.as_str());
    assert_eq!(input["packets"], model.counters.expect("declared").packets);
    assert_eq!(input["policy"], model.policy.expect("built-in").as_str());
    // Plain rules with no Kubernetes meaning have null meaning and summary, not missing keys.
    let plain = tables
        .iter()
        .flat_map(|t| t["chains"].as_array().into_iter().flatten())
        .flat_map(|c| c["rules"].as_array().into_iter().flatten());
    let plain = plain
        .clone()
        .find(|r| r["meaning"].is_null())
        .expect("a rule without meaning");
    assert!(plain.get("summary").is_some_and(Value::is_null));
}

#[test]
fn a_guessed_backend_says_so_in_json_and_text() {
    // No header; nat's built-in chains in the order only iptables-nft (before 1.8.9) prints.
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                :OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    let guessed = parse("headerless", text);
    let with_header = parse(
        "k3s",
        &corpus_file("k3s-node-iptables-save-c-counters-2022.rules"),
    );
    for (ruleset, backend, is_guess) in [(guessed, "nft", true), (with_header, "legacy", false)] {
        let annotations = vec![nfscope_annotate::annotate(&ruleset)];
        let snapshot = snapshot_of(ruleset);
        let doc = rules_json(&snapshot, &annotations);
        let rs = &doc["rulesets"][0];
        assert_eq!(rs["backend"], backend);
        assert_eq!(rs["backend_guessed"], is_guess);
        let listing = nfscope_exporter::rules_text(&snapshot, &annotations);
        assert_eq!(
            listing.contains("(guessed: the dump has no header)"),
            is_guess,
            "{listing}"
        );
    }
}

#[test]
fn the_text_listing_escapes_control_characters_from_the_dump() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:EVIL\x1b[2J - [0:0]\n\
                -A INPUT -m comment --comment \"bell\x07\" -j EVIL\x1b[2J\nCOMMIT\n";
    let ruleset = parse("evil", text);
    let annotations = vec![nfscope_annotate::annotate(&ruleset)];
    let listing = nfscope_exporter::rules_text(&snapshot_of(ruleset), &annotations);
    assert!(
        !listing.chars().any(|c| c.is_control() && c != '\n'),
        "{listing:?}"
    );
    assert!(listing.contains("EVIL\\u{1b}[2J"), "{listing}");
}

#[test]
fn the_written_document_is_the_value_tree_pretty_printed_byte_for_byte() {
    // `/api/rules` and `rules --format json` are written straight from the typed document; they
    // must stay the bytes the value tree printed (sorted keys, two-space indent, final newline).
    let ipsets =
        nfscope_ruleset::ipset::parse_ipsets(&corpus_file("kube-router-testdata-ipset_save.ipset"))
            .expect("ipsets");
    let files = corpus_files("rules");
    assert!(files.len() > 20, "the corpus is there");
    for (i, (name, text)) in files.iter().enumerate() {
        let mut ruleset = parse(name, text);
        common::add_counters(&mut ruleset);
        let annotations = vec![nfscope_annotate::annotate(&ruleset)];
        let mut snapshot = snapshot_of(ruleset);
        if i % 2 == 0 {
            // Every part of the document present: ipsets, conntrack, the rule source, a failed source.
            snapshot.ipsets = ipsets.clone();
            snapshot.conntrack = Some(nfscope_ruleset::ConntrackStats {
                entries: 7,
                limit: 262_144,
                stats: vec![("found".into(), 3), ("drop".into(), 1)],
            });
            snapshot.rule_source = "iptables-nft-save 1.8.9".into();
            snapshot.sources.push(nfscope_ruleset::SourceReport {
                kind: nfscope_ruleset::SourceKind::Ipsets,
                method: "ipset save".into(),
                error: Some("timed out \u{1b}after 10 s".into()),
                duration_seconds: f64::NAN,
            });
        }
        let mut value = rules_json(&snapshot, &annotations);
        let mut want = serde_json::to_string_pretty(&value).expect("pretty");
        want.push('\n');
        let mut written = Vec::new();
        write_rules_json(&snapshot, &annotations, &mut written).expect("written");
        let written = String::from_utf8(written).expect("UTF-8");
        assert!(
            written == want,
            "{name}: first difference at byte {}",
            written
                .bytes()
                .zip(want.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(written.len().min(want.len()))
        );
        let source = value.as_object_mut().and_then(|o| o.remove("source"));
        assert_eq!(
            source.is_some(),
            i % 2 == 0,
            "{name}: `source` only when the reader named one"
        );
    }
}
