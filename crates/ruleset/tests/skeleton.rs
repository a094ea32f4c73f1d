//! `Ruleset::drop_rule_specs`: what a server keeps after the specs are gone.

use nfscope_ruleset::{ParseOptions, RuleSpec, parse_ruleset};

const DUMP: &str = "*filter\n:INPUT DROP [7:700]\n:KUBE-A - [0:0]\n\
[1:60] -A INPUT -m comment --comment \"to kube\" -j KUBE-A\n\
[2:120] -A KUBE-A -p tcp --dport 80 -j ACCEPT\n[3:180] -A KUBE-A -j RETURN\nCOMMIT\n";

#[test]
fn dropping_specs_keeps_tables_chains_positions_and_counters() {
    let full = parse_ruleset(DUMP, &ParseOptions::default()).expect("parses");
    let mut skeleton = full.clone();
    skeleton.drop_rule_specs();

    assert!(skeleton.rule_specs_dropped && !full.rule_specs_dropped);
    assert_eq!(skeleton.rule_count(), full.rule_count());
    for (t_full, t_skel) in full.tables.iter().zip(&skeleton.tables) {
        assert_eq!(t_full.name, t_skel.name);
        for (c_full, c_skel) in t_full.chains.iter().zip(&t_skel.chains) {
            assert_eq!(c_full.name, c_skel.name);
            assert_eq!(c_full.policy, c_skel.policy);
            assert_eq!(c_full.counters, c_skel.counters);
            let counters =
                |c: &nfscope_ruleset::Chain| c.rules.iter().map(|r| r.counters).collect::<Vec<_>>();
            assert_eq!(counters(c_full), counters(c_skel));
            assert!(c_skel.rules.iter().all(|r| *r.spec == RuleSpec::default()));
        }
    }
    assert!(
        full.tables[0].chains[1].rules[0].spec.target_name() == Some("ACCEPT"),
        "the original keeps its specs: the skeleton shares nothing it changed"
    );
}
