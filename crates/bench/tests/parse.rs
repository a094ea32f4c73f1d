//! The generated rulesets are valid input for nfscope's own parser: every rule is read, into the
//! tables and chains the text declares, with the counters it carries.

use nfscope_bench::{GenOptions, count_rules, kube_proxy_ruleset, service_chain_name};
use nfscope_ruleset::{Family, ParseOptions, parse_ruleset};

fn parsed_rule_count(text: &str) -> usize {
    let ruleset =
        parse_ruleset(text, &ParseOptions::default()).unwrap_or_else(|e| panic!("parse error {e}"));
    ruleset
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len())
        .sum()
}

#[test]
fn ipv4_ruleset_parses_with_every_rule() {
    let opts = GenOptions {
        counters: true,
        no_endpoints_percent: 5,
        ..GenOptions::default()
    };
    let text = kube_proxy_ruleset(1000, 3, &opts);
    let rules = count_rules(&text);
    assert!(rules > 13_000, "{rules}");
    assert_eq!(parsed_rule_count(&text), rules);
}

#[test]
fn ipv6_ruleset_parses_as_ipv6() {
    let opts = GenOptions {
        ipv6: true,
        ..GenOptions::default()
    };
    let text = kube_proxy_ruleset(100, 2, &opts);
    let ruleset = parse_ruleset(&text, &ParseOptions::default()).expect("parses");
    assert_eq!(ruleset.family, Family::Ipv6);
    assert_eq!(parsed_rule_count(&text), count_rules(&text));
}

#[test]
fn parsed_service_chain_has_masquerade_plus_one_jump_per_endpoint_and_counters() {
    let opts = GenOptions {
        counters: true,
        ..GenOptions::default()
    };
    let text = kube_proxy_ruleset(3, 4, &opts);
    let ruleset = parse_ruleset(&text, &ParseOptions::default()).expect("parses");
    let nat = ruleset
        .tables
        .iter()
        .find(|t| t.name == "nat")
        .expect("nat table");
    let svc = nat
        .chain(&service_chain_name("team-000/svc-1:https", "tcp"))
        .expect("service chain");
    assert_eq!(svc.rules.len(), 1 + 4);
    let total_packets: u64 = nat
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .filter_map(|r| r.counters)
        .map(|c| c.packets)
        .sum();
    assert!(total_packets > 0, "counters were not read");
}
