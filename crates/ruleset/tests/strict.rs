//! What `iptables-restore` refuses, nfscope refuses too, with `line:col` and what was expected:
//! options missing their value or with a malformed one, unknown tables, policies on user chains,
//! jump loops a hook reaches, bad ipset members and sizes, and input over the configured caps.
//! Also: a repeated table replaces the earlier one (last wins, as restore flushes), error messages
//! never carry raw control characters, and a headerless dump's backend is a marked guess.
//! (The same bad lines are checked against the real `iptables-restore` in `restore_oracle.rs`.)

use nfscope_ruleset::{
    Backend, Limits, NoticeKind, ParseError, ParseOptions, Policy, Ruleset, parse_ipsets,
    parse_ipsets_with, parse_ruleset,
};

mod common;
use common::strict_cases::{BAD_RULES, GOOD_RULES, filter_with};

fn parse(text: &str) -> Result<Ruleset, ParseError> {
    parse_ruleset(text, &ParseOptions::default())
}

#[test]
fn every_bad_rule_is_refused_at_the_offending_token() {
    for (rule, column, words) in BAD_RULES {
        let text = filter_with(rule);
        let e = parse(&text).expect_err(rule);
        assert_eq!((e.line, e.column), (6, *column), "{rule}: {e}");
        for w in *words {
            assert!(e.message.contains(w), "{rule}: `{w}` missing in: {e}");
        }
        // Lenient mode skips stray lines, never errors inside a rule.
        let lenient = ParseOptions {
            lenient: true,
            ..Default::default()
        };
        assert!(
            parse_ruleset(&text, &lenient).is_err(),
            "lenient accepted {rule}"
        );
    }
}

#[test]
fn every_good_rule_is_accepted() {
    for rule in GOOD_RULES {
        parse(&filter_with(rule)).unwrap_or_else(|e| panic!("{rule}: {e}"));
    }
}

#[test]
fn unknown_tables_and_policies_on_user_chains_are_refused() {
    let e = parse("*bogus\n:INPUT ACCEPT [0:0]\nCOMMIT\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 2), "{e}");
    assert!(e.message.contains("unknown table `bogus`"), "{e}");

    let e = parse("*filter\n:INPUT ACCEPT [0:0]\n:U ACCEPT [0:0]\nCOMMIT\n").unwrap_err();
    assert_eq!((e.line, e.column), (3, 4), "{e}");
    assert!(
        e.message.contains("only built-in chains have a policy"),
        "{e}"
    );

    // INPUT is not a built-in chain of raw.
    let e = parse("*raw\n:INPUT ACCEPT [0:0]\nCOMMIT\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");

    let e = parse("*filter\n:INPUT RETURN [0:0]\nCOMMIT\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 8), "{e}");
    assert!(e.message.contains("ACCEPT, DROP"), "{e}");
}

#[test]
fn a_repeated_table_replaces_the_earlier_one_as_restore_does() {
    let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -j DROP\nCOMMIT\n\
                *filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
    let rs = parse(text).unwrap();
    assert_eq!(rs.tables.len(), 1);
    let input = rs.tables[0].chain("INPUT").unwrap();
    assert_eq!(input.policy, Some(Policy::Accept));
    assert_eq!(input.rules.len(), 1);
    assert_eq!(input.rules[0].spec.target_name(), Some("ACCEPT"));
    assert_eq!(input.rules[0].line, 7);
    let replaced = rs
        .notices
        .iter()
        .find(|n| matches!(&n.kind, NoticeKind::TableReplaced { table, first_line: 1 } if table == "filter"))
        .expect("a TableReplaced notice");
    assert_eq!(replaced.line, 5);
}

#[test]
fn a_jump_loop_a_hook_reaches_is_refused_naming_chains_and_lines() {
    for (body, chains, lines) in [
        ("-A INPUT -j U\n-A U -j U", "U → U", vec!["line 7"]),
        (
            ":V - [0:0]\n-A INPUT -j U\n-A U -j V\n-A V -g U",
            "U → V → U",
            vec!["line 8", "line 9"],
        ),
    ] {
        let e = parse(&filter_with(body)).unwrap_err();
        assert!(e.message.contains("jump loop in table filter"), "{e}");
        assert!(e.message.contains(chains), "{chains}: {e}");
        for l in lines {
            assert!(e.message.contains(l), "{l}: {e}");
        }
        assert!(e.line >= 7, "{e}");
    }
}

#[test]
fn a_loop_no_hook_reaches_loads_as_in_the_kernel_and_is_found() {
    let rs = parse(&filter_with(":V - [0:0]\n-A U -j V\n-A V -j U")).unwrap();
    let found = rs.tables[0].jump_loop().expect("the loop");
    assert!(!found.reachable);
    let names: Vec<&str> = found.jumps.iter().map(|j| j.chain.as_str()).collect();
    assert_eq!(names, ["U", "V"]);
    assert_eq!(found.jumps[0].line, 7);
    // A loop-free table has none, and a deep chain of jumps does not overflow the stack.
    let mut deep = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
    for i in 0..200_000 {
        deep.push_str(&format!(":C{i} - [0:0]\n"));
    }
    deep.push_str("-A INPUT -j C0\n");
    for i in 0..199_999 {
        deep.push_str(&format!("-A C{i} -j C{}\n", i + 1));
    }
    deep.push_str("COMMIT\n");
    let rs = parse(&deep).unwrap();
    assert_eq!(rs.tables[0].jump_loop(), None);
}

#[test]
fn caps_on_input_chains_rules_sets_and_members_name_the_limit() {
    let small = ParseOptions {
        limits: Limits {
            max_chains: 3,
            max_rules: 2,
            max_input_bytes: 1000,
            max_sets: 1,
            max_set_members: 2,
        },
        ..Default::default()
    };
    let e = parse_ruleset(&filter_with(":V - [0:0]"), &small).unwrap_err();
    assert_eq!((e.line, e.column), (5, 2), "{e}");
    assert!(
        e.message.contains("limit of 3 chains") && e.message.contains("max_chains"),
        "{e}"
    );

    let few_chains = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT\n-A INPUT\n-A INPUT\nCOMMIT\n";
    let e = parse_ruleset(few_chains, &small).unwrap_err();
    assert_eq!((e.line, e.column), (5, 1), "{e}");
    assert!(
        e.message.contains("limit of 2 rules") && e.message.contains("max_rules"),
        "{e}"
    );

    let long = format!(
        "*filter\n{}COMMIT\n",
        "# padding comment line\n".repeat(100)
    );
    let e = parse_ruleset(&long, &small).unwrap_err();
    assert!(
        e.message.contains("1000 bytes") && e.message.contains("max_input_bytes"),
        "{e}"
    );
    assert_eq!(e.line, 1000 / 23 + 1 + 1, "{e}");

    let sets = "create a hash:ip family inet\nadd a 10.0.0.1\nadd a 10.0.0.2\nadd a 10.0.0.3\n";
    let e = parse_ipsets_with(sets, &small.limits).unwrap_err();
    assert_eq!((e.line, e.column), (4, 7), "{e}");
    assert!(e.message.contains("max_set_members"), "{e}");
    let two = "create a hash:ip family inet\ncreate b hash:ip family inet\n";
    let e = parse_ipsets_with(two, &small.limits).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("max_sets"), "{e}");

    // The defaults hold a million empty chains? No: they stop it, saying which cap.
    let mut many = String::from("*filter\n");
    for i in 0..500_001 {
        many.push_str(&format!(":C{i} - [0:0]\n"));
    }
    let e = parse(&many).unwrap_err();
    assert!(e.message.contains("limit of 500000 chains"), "{e}");
}

#[test]
fn ipset_members_and_sizes_are_checked_with_line_and_column() {
    let e = parse_ipsets("create s hash:ip family inet\nadd s 999.1.1.1\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 7), "{e}");
    assert!(e.message.contains("999.1.1.1"), "{e}");
    let e = parse_ipsets("create s hash:net family inet\nadd s 10.0.0.0/40\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let e = parse_ipsets("create s hash:ip family inet hashsize 99999999999999 maxelem 65536\n")
        .unwrap_err();
    assert_eq!((e.line, e.column), (1, 39), "{e}");
    assert!(e.message.contains("hashsize"), "{e}");
    let e = parse_ipsets("create s hash:ip family inet hashsize 1024 maxelem 0\n").unwrap_err();
    assert!(e.message.contains("maxelem"), "{e}");
    let e = parse_ipsets("Name: s\nType: hash:ip\nHeader: family inet hashsize -1\nMembers:\n")
        .unwrap_err();
    assert_eq!((e.line, e.column), (3, 30), "{e}");
    let e =
        parse_ipsets("Name: s\nType: hash:ip,port\nMembers:\n10.0.0.1,tcp:80\n10.0.0.300,tcp:80\n")
            .unwrap_err();
    assert_eq!((e.line, e.column), (5, 1), "{e}");
    // Valid sets of several types still parse.
    let ok = "create a hash:ip,port family inet hashsize 1024 maxelem 65536\nadd a 10.0.0.1,tcp:80\n\
              create b hash:net family inet6\nadd b fd00::/64\ncreate c list:set size 8\nadd c a\n\
              create d hash:ip family inet\nadd d 10.0.0.1-10.0.0.5\n";
    assert_eq!(parse_ipsets(ok).unwrap().len(), 4);
}

#[test]
fn control_characters_from_the_input_are_escaped_in_errors() {
    let evil = filter_with("-A INPUT -p tcp --dport \x1b[2J\x1b]0;pwned\x07 -j ACCEPT");
    let shown = parse(&evil).unwrap_err().to_string();
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");
    let shown = parse("*\x1b[31mfilter\nCOMMIT\n").unwrap_err().to_string();
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
    let shown = parse_ipsets("create s hash:ip\nadd s \u{9b}31m\n")
        .unwrap_err()
        .to_string();
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
}

#[test]
fn a_headerless_dump_gets_a_guessed_backend_from_nft_tells() {
    let nat = |order: &str| {
        let chains: String = order
            .split(' ')
            .map(|c| format!(":{c} ACCEPT [0:0]\n"))
            .collect();
        format!("*nat\n{chains}COMMIT\n")
    };
    let rs = parse(&nat("PREROUTING INPUT POSTROUTING OUTPUT")).unwrap();
    assert_eq!((rs.backend, rs.backend_guessed), (Backend::Nft, true));
    let rs = parse(&nat("PREROUTING INPUT OUTPUT POSTROUTING")).unwrap();
    assert_eq!((rs.backend, rs.backend_guessed), (Backend::Unknown, false));
    let with_header = format!(
        "# Generated by iptables-save v1.8.4 on Mon Jul 18 11:32:54 2022\n{}",
        nat("PREROUTING INPUT POSTROUTING OUTPUT")
    );
    let rs = parse(&with_header).unwrap();
    assert_eq!((rs.backend, rs.backend_guessed), (Backend::Legacy, false));
    let json = serde_json::to_value(&rs).unwrap();
    assert_eq!(json["backend_guessed"], false);
}

/// Corpus dumps with their header removed: what only one backend prints still tells it.
#[test]
fn corpus_dumps_without_their_header_get_the_right_guess() {
    let strip = |name: &str| {
        let text = nfscope_test_support::corpus_file(name);
        text.lines()
            .filter(|l| !l.contains("Generated by"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let lenient = ParseOptions {
        lenient: true,
        ..Default::default()
    };
    // iptables-nft-save's "legacy tables present" warning.
    let nft = parse_ruleset(
        &strip("debian10-xtables-save-1.8.2-nft-with-legacy-warning.rules"),
        &lenient,
    )
    .unwrap();
    assert_eq!((nft.backend, nft.backend_guessed), (Backend::Nft, true));
    // A pre-2.6.36 kernel's nat table (no INPUT; POSTROUTING before OUTPUT): legacy only.
    let legacy = parse_ruleset(&strip("fffuu-ugent.rules"), &lenient).unwrap();
    assert_eq!(
        (legacy.backend, legacy.backend_guessed),
        (Backend::Legacy, true)
    );
    // A legacy dump in hook order says nothing either way.
    let unknown = parse_ruleset(
        &strip("k3s-node-iptables-save-c-counters-2022.rules"),
        &lenient,
    )
    .unwrap();
    assert_eq!(
        (unknown.backend, unknown.backend_guessed),
        (Backend::Unknown, false)
    );
    // With their headers they are statements, not guesses.
    for (name, backend) in [
        (
            "debian10-xtables-save-1.8.2-nft-with-legacy-warning.rules",
            Backend::Nft,
        ),
        ("fffuu-ugent.rules", Backend::Legacy),
    ] {
        let text = nfscope_test_support::corpus_file(name);
        let rs = parse_ruleset(&text, &lenient).unwrap();
        assert_eq!((rs.backend, rs.backend_guessed), (backend, false), "{name}");
    }
}
