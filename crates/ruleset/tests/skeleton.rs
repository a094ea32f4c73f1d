//! `RulesetCounters`: what a server keeps of a ruleset once everything derived from its specs is
//! computed, and `Ruleset::rules_id`, the one "did the rules change?" test.

use nfscope_ruleset::{ParseOptions, Ruleset, RulesetCounters, parse_ruleset};

const DUMP: &str = "*filter\n:INPUT DROP [7:700]\n:KUBE-A - [0:0]\n\
[1:60] -A INPUT -m comment --comment \"to kube\" -j KUBE-A\n\
[2:120] -A KUBE-A -p tcp --dport 80 -j ACCEPT\n[3:180] -A KUBE-A -j RETURN\nCOMMIT\n";

fn parse(dump: &str) -> Ruleset {
    parse_ruleset(dump, &ParseOptions::default()).expect("parses")
}

#[test]
fn counters_keep_tables_chains_positions_and_counters() {
    let full = parse(DUMP);
    let counters = RulesetCounters::of(&full);
    assert_eq!(counters.rule_count(), full.rule_count());
    assert!(counters.same_shape(&full));
    for (t_full, t_counters) in full.tables.iter().zip(&counters.tables) {
        assert_eq!(t_full.name, t_counters.name);
        for (c_full, c_counters) in t_full.chains.iter().zip(&t_counters.chains) {
            assert_eq!(c_full.name, c_counters.name);
            assert_eq!(c_full.policy, c_counters.policy);
            assert_eq!(c_full.counters, c_counters.counters);
            let rules: Vec<_> = c_full.rules.iter().map(|r| r.counters).collect();
            assert_eq!(rules, c_counters.rules);
        }
    }
}

#[test]
fn counters_go_back_onto_a_ruleset_of_the_same_shape_only() {
    let moved = RulesetCounters::of(&parse(&DUMP.replace("[2:120]", "[9:540]")));
    let mut full = parse(DUMP);
    assert!(moved.apply_to(&mut full));
    assert_eq!(
        full.tables[0].chains[1].rules[0].counters.unwrap().packets,
        9
    );
    let mut other = parse(&DUMP.replace("[3:180] -A KUBE-A -j RETURN\n", ""));
    let before = other.clone();
    assert!(!moved.apply_to(&mut other), "a rule fewer: another shape");
    assert_eq!(other, before, "nothing changed");
}

#[test]
fn the_rules_id_follows_rules_but_not_counters() {
    let id = parse(DUMP).rules_id();
    assert_eq!(parse(&DUMP.replace("[1:60]", "[5:300]")).rules_id(), id);
    assert_eq!(
        parse(&DUMP.replace(":INPUT DROP [7:700]", ":INPUT DROP [0:0]")).rules_id(),
        id
    );
    for edit in [
        DUMP.replace("--dport 80", "--dport 81"),
        DUMP.replace(":INPUT DROP", ":INPUT ACCEPT"),
        DUMP.replace("KUBE-A", "KUBE-B"),
        DUMP.replace("*filter", "*mangle"),
        DUMP.replace("[3:180] -A KUBE-A -j RETURN\n", ""),
    ] {
        assert_ne!(parse(&edit).rules_id(), id, "{edit}");
    }
}
