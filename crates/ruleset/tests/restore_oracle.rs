//! Root-only: the kernel's own tools are the oracle for what the parser must refuse. Inside a
//! throwaway network namespace, every bad line of `common::strict_cases` is refused by
//! `iptables-legacy-restore` and `iptables-nft-restore` and by nfscope; every good line is accepted
//! by all three. Whole files too: unknown tables, policies on user chains, `RETURN` policies, jump
//! loops (refused only at commit, so these restores are real, not `--test`), and two `*filter`
//! sections, where the kernel keeps the last and so must the model. ipset members and sizes
//! are checked against `ipset restore` the same way. Skips without root or tools, except under
//! `CI=true`, where it fails.

use nfscope_ruleset::{ParseOptions, Policy, parse_ipsets, parse_ruleset};
use nfscope_test_support::{TestNetns, root_or_skip, skip_unless};

mod common;
use common::strict_cases::{BAD_RULES, GOOD_RULES, filter_with};

/// Runs `args` in the namespace with `stdin`; (success, stdout + stderr).
fn run(ns: &TestNetns, args: &[&str], stdin: &str) -> (bool, String) {
    let out = ns.exec_input(args, stdin);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A namespace with the set `s` the good lines match on, or `None` when the test must skip.
fn setup(test: &str) -> Option<TestNetns> {
    if !root_or_skip(test) {
        return None;
    }
    for tool in [
        "iptables-legacy-restore",
        "iptables-nft-restore",
        "ipset",
        "ip",
    ] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !skip_unless(test, found, &format!("{tool} is not installed")) {
            return None;
        }
    }
    let ns = TestNetns::new("strict").expect("create a test namespace");
    let (ok, out) = run(&ns, &["ipset", "create", "s", "hash:ip"], "");
    assert!(ok, "{out}");
    Some(ns)
}

const BACKENDS: [&str; 2] = ["iptables-legacy-restore", "iptables-nft-restore"];

#[test]
fn the_kernel_tools_and_nfscope_refuse_and_accept_the_same_inputs() {
    let Some(ns) = setup("the_kernel_tools_and_nfscope_refuse_and_accept_the_same_inputs") else {
        return;
    };
    let strict = ParseOptions::default();

    for (rule, _, _) in BAD_RULES {
        let text = filter_with(rule);
        for tool in BACKENDS {
            let (ok, out) = run(&ns, &[tool], &text);
            assert!(!ok, "{tool} accepted `{rule}`: {out}");
        }
        assert!(
            parse_ruleset(&text, &strict).is_err(),
            "nfscope accepted `{rule}`"
        );
    }
    for rule in GOOD_RULES {
        let text = filter_with(rule);
        for tool in BACKENDS {
            let (ok, out) = run(&ns, &[tool], &text);
            assert!(ok, "{tool} refused `{rule}`: {out}");
        }
        parse_ruleset(&text, &strict).unwrap_or_else(|e| panic!("nfscope refused `{rule}`: {e}"));
    }

    // Whole files: (text, refused by iptables-nft-restore too?). iptables-legacy-restore refuses
    // each; iptables-nft-restore ignores a policy on a user chain and INPUT in raw.
    let files: &[(&str, bool)] = &[
        ("*bogus\n:INPUT ACCEPT [0:0]\nCOMMIT\n", true),
        (
            "*filter\n:INPUT ACCEPT [0:0]\n:U ACCEPT [0:0]\nCOMMIT\n",
            false,
        ),
        ("*raw\n:INPUT ACCEPT [0:0]\nCOMMIT\n", false),
        ("*filter\n:INPUT RETURN [0:0]\nCOMMIT\n", true),
        (
            "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -g A\nCOMMIT\n",
            true,
        ),
        (
            "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\nCOMMIT\n",
            true,
        ),
    ];
    for (text, nft_refuses) in files {
        let (ok, out) = run(&ns, &["iptables-legacy-restore"], text);
        assert!(!ok, "iptables-legacy-restore accepted:\n{text}{out}");
        let (ok, out) = run(&ns, &["iptables-nft-restore"], text);
        assert_eq!(!ok, *nft_refuses, "iptables-nft-restore on:\n{text}{out}");
        assert!(
            parse_ruleset(text, &strict).is_err(),
            "nfscope accepted:\n{text}"
        );
    }
    // A loop no hook reaches is loaded by both, and by nfscope.
    let unreachable =
        "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\nCOMMIT\n";
    for tool in BACKENDS {
        let (ok, out) = run(&ns, &[tool], unreachable);
        assert!(ok, "{tool}: {out}");
    }
    parse_ruleset(unreachable, &strict).unwrap();
}

#[test]
fn with_two_filter_sections_the_kernel_keeps_the_last_and_so_does_the_model() {
    let Some(ns) = setup("with_two_filter_sections_the_kernel_keeps_the_last") else {
        return;
    };
    let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -j DROP\nCOMMIT\n\
                *filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -j ACCEPT\nCOMMIT\n";
    for (restore, save) in [
        ("iptables-legacy-restore", "iptables-legacy-save"),
        ("iptables-nft-restore", "iptables-nft-save"),
    ] {
        let (ok, out) = run(&ns, &[restore], text);
        assert!(ok, "{restore}: {out}");
        let (ok, saved) = run(&ns, &[save, "-t", "filter"], "");
        assert!(ok, "{save}: {saved}");
        assert!(saved.contains(":INPUT ACCEPT"), "{save}:\n{saved}");
        assert!(
            saved.contains("-A INPUT -p tcp -j ACCEPT"),
            "{save}:\n{saved}"
        );
        assert!(!saved.contains("-j DROP"), "{save}:\n{saved}");
    }
    let rs = parse_ruleset(text, &ParseOptions::default()).unwrap();
    let input = rs.table("filter").unwrap().chain("INPUT").unwrap();
    assert_eq!(input.policy, Some(Policy::Accept));
    assert_eq!(input.rules.len(), 1);
    assert_eq!(input.rules[0].spec.target_name(), Some("ACCEPT"));
}

#[test]
fn ipset_restore_and_nfscope_refuse_the_same_members_and_sizes() {
    let Some(ns) = setup("ipset_restore_and_nfscope_refuse_the_same_members_and_sizes") else {
        return;
    };
    let bad = [
        "create t1 hash:ip family inet\nadd t1 999.1.1.1\n",
        "create t2 hash:net family inet\nadd t2 10.0.0.0/40\n",
        "create t3 hash:ip family inet hashsize 99999999999999\n",
        "create t4 hash:ip family inet maxelem 99999999999\n",
        "create t5 hash:ip,port family inet\nadd t5 10.0.0.300,tcp:80\n",
    ];
    for text in bad {
        let (ok, out) = run(&ns, &["ipset", "restore"], text);
        assert!(!ok, "ipset restore accepted:\n{text}{out}");
        assert!(parse_ipsets(text).is_err(), "nfscope accepted:\n{text}");
    }
    let good = "create g1 hash:ip family inet hashsize 1024 maxelem 65536\nadd g1 10.0.0.1\n\
                create g2 hash:net family inet6\nadd g2 fd00::/64\n\
                create g3 hash:ip,port family inet\nadd g3 10.0.0.1,tcp:80\n";
    let (ok, out) = run(&ns, &["ipset", "restore"], good);
    assert!(ok, "{out}");
    let (ok, saved) = run(&ns, &["ipset", "save"], "");
    assert!(ok, "{saved}");
    let sets = parse_ipsets(&saved).unwrap();
    assert!(
        sets.iter()
            .any(|s| s.name == "g3" && s.members == ["10.0.0.1,tcp:80"])
    );
}
