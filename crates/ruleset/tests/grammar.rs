//! Targeted tests for each grammar point of the save / restore format (NETFILTER.md §3).

use nfscope_ruleset::{
    Backend, Counters, Family, NoticeKind, ParseError, ParseOptions, Policy, RuleSpec, Ruleset,
    TargetKind, parse_ruleset, render_rule_spec,
};

fn parse(text: &str) -> Ruleset {
    parse_ruleset(text, &ParseOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn parse_err(text: &str) -> ParseError {
    parse_ruleset(text, &ParseOptions::default()).expect_err("expected a parse error")
}

fn lenient(text: &str) -> Ruleset {
    parse_ruleset(
        text,
        &ParseOptions {
            lenient: true,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The single rule of a `*filter` table whose body is `rule` (in chain INPUT).
fn one_rule(rule: &str) -> RuleSpec {
    let rs = parse(&format!(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n"
    ));
    (*rs.tables[0].chains[0].rules[0].spec).clone()
}

fn rule_err(rule: &str) -> ParseError {
    parse_err(&format!(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n"
    ))
}

#[test]
fn quoted_comment_decodes_escapes_and_keeps_single_quotes() {
    let spec = one_rule(r#"-m comment --comment "say \"hi\" to the pod\'s C:\\dir" -j ACCEPT"#);
    assert_eq!(
        spec.comments().collect::<Vec<_>>(),
        vec![r#"say "hi" to the pod's C:\dir"#]
    );
    let spec = one_rule(r#"-m comment --comment 'a -j ACCEPT"#);
    // Single quotes are ordinary: `'a` is the comment, and the rule continues.
    assert_eq!(spec.comments().next(), Some("'a"));
    assert_eq!(spec.target_name(), Some("ACCEPT"));
}

#[test]
fn backslash_outside_quotes_is_literal_and_quotes_concatenate_mid_word() {
    let spec = one_rule(r#"-m comment --comment a\b"c d" -j ACCEPT"#);
    assert_eq!(spec.comments().next(), Some(r"a\bc d"));
}

#[test]
fn empty_quoted_value_is_kept() {
    let spec = one_rule(r#"-j LOG --log-prefix """#);
    assert_eq!(spec.target.unwrap().value("log-prefix"), Some(""));
}

#[test]
fn quoted_bang_and_quoted_option_are_values() {
    let spec = one_rule(r#"-m comment --comment "!" -j ACCEPT"#);
    assert_eq!(spec.comments().next(), Some("!"));
    let spec = one_rule(r#"-m comment --comment "-j" -j ACCEPT"#);
    assert_eq!(spec.comments().next(), Some("-j"));
}

#[test]
fn unterminated_quote_points_at_the_quote() {
    let e = rule_err(r#"-m comment --comment "abc -j ACCEPT"#);
    assert_eq!((e.line, e.column), (3, 31));
    assert!(e.message.contains("unterminated"), "{e}");
}

#[test]
fn negation_before_base_and_module_options() {
    let spec = one_rule(
        "! -s 10.0.0.0/8 ! -i eth+ ! -p tcp -m tcp ! --syn -m conntrack ! --ctstate RELATED,ESTABLISHED \
         -m set ! --match-set KUBE-CLUSTER-IP dst,dst -m addrtype ! --src-type LOCAL -j DROP",
    );
    assert!(spec.source.as_ref().unwrap().negated);
    assert_eq!(
        spec.source.as_ref().unwrap().value.to_string(),
        "10.0.0.0/8"
    );
    assert!(spec.in_interface.as_ref().unwrap().negated);
    assert_eq!(
        spec.protocol
            .as_ref()
            .map(|p| (p.negated, p.value.as_str())),
        Some((true, "tcp"))
    );
    let tcp = &spec.matches[0];
    assert_eq!(tcp.module, "tcp");
    assert!(
        tcp.options[0].negated && tcp.options[0].name == "syn" && tcp.options[0].values.is_empty()
    );
    let set = spec.matches_named("set").next().unwrap();
    let opt = set.option("match-set").unwrap();
    assert!(opt.negated);
    assert_eq!(opt.values, vec!["KUBE-CLUSTER-IP", "dst,dst"]);
    assert!(spec.matches_named("addrtype").next().unwrap().options[0].negated);
}

#[test]
fn fragment_flag_and_its_negation() {
    assert_eq!(one_rule("-f -j DROP").fragment, Some(false));
    assert_eq!(one_rule("! -f -j DROP").fragment, Some(true));
}

#[test]
fn bang_inside_a_token_is_not_negation() {
    let spec = one_rule(r"-m set --match-set weave-P.B|!ZhkAr5q=XZ?3}tMBA+0 dst -j ACCEPT");
    let opt = spec.matches[0].option("match-set").unwrap();
    assert!(!opt.negated);
    assert_eq!(opt.values, vec!["weave-P.B|!ZhkAr5q=XZ?3}tMBA+0", "dst"]);
    assert_eq!(
        render_rule_spec(&spec),
        r"-m set --match-set weave-P.B|!ZhkAr5q=XZ?3}tMBA+0 dst -j ACCEPT"
    );
}

#[test]
fn repeated_modules_stay_separate_and_in_order() {
    let spec = one_rule(
        r#"-m comment --comment one -m mark --mark 0x1 -m comment --comment two -m mark --mark 0x2 -m mark ! --mark 0x4/0x4"#,
    );
    let modules: Vec<&str> = spec.matches.iter().map(|m| m.module.as_str()).collect();
    assert_eq!(modules, vec!["comment", "mark", "comment", "mark", "mark"]);
    assert_eq!(spec.comments().collect::<Vec<_>>(), vec!["one", "two"]);
    assert!(spec.matches[4].options[0].negated);
    assert!(spec.target.is_none(), "a rule without -j is legal");
}

#[test]
fn u64_counters_parse_and_overflow_is_an_error() {
    let rs = parse(
        "*filter\n:INPUT DROP [18446744073709551615:9223372036854775808]\n\
         [9223372036854775808:18446744073709551615] -A INPUT -j ACCEPT\nCOMMIT\n",
    );
    let chain = &rs.tables[0].chains[0];
    assert_eq!(chain.policy, Some(Policy::Drop));
    assert_eq!(
        chain.counters,
        Some(Counters {
            packets: u64::MAX,
            bytes: 1 << 63
        })
    );
    assert_eq!(
        chain.rules[0].counters,
        Some(Counters {
            packets: 1 << 63,
            bytes: u64::MAX
        })
    );
    let e = parse_err("*filter\n:INPUT ACCEPT [18446744073709551616:0]\nCOMMIT\n");
    assert_eq!((e.line, e.column), (2, 16));
}

#[test]
fn counters_option_inside_a_rule() {
    let rs = parse(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i eth23 -o eth42 -c 23 42 -j ACCEPT\nCOMMIT\n",
    );
    let rule = &rs.tables[0].chains[0].rules[0];
    assert_eq!(
        rule.counters,
        Some(Counters {
            packets: 23,
            bytes: 42
        })
    );
    assert_eq!(render_rule_spec(&rule.spec), "-i eth23 -o eth42 -j ACCEPT");
}

#[test]
fn counters_given_twice_is_an_error() {
    let e = parse_err("*filter\n:INPUT ACCEPT [0:0]\n[1:2] -A INPUT -c 3 4 -j ACCEPT\nCOMMIT\n");
    assert!(e.message.contains("twice"), "{e}");
}

#[test]
fn headers_set_family_and_backend() {
    let body = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    let cases = [
        (
            "# Generated by iptables-save v1.8.10 (nf_tables) on Sat Mar  7 10:00:00 2026\n",
            Family::Ipv4,
            Backend::Nft,
        ),
        (
            "# Generated by xtables-save v1.8.2 on Thu May 21 00:03:22 2020\n",
            Family::Ipv4,
            Backend::Nft,
        ),
        (
            "# Generated by iptables-save v1.8.7 on Mon Jul 18 11:32:54 2022\n",
            Family::Ipv4,
            Backend::Legacy,
        ),
        (
            "# Generated by ip6tables-save v1.8.10 (nf_tables) on Sat Mar  7 10:00:00 2026\n",
            Family::Ipv6,
            Backend::Nft,
        ),
        (
            "# Generated by ip6tables-save v1.6.0 on Sat Mar  7 10:00:00 2016\n",
            Family::Ipv6,
            Backend::Legacy,
        ),
        ("", Family::Ipv4, Backend::Unknown),
    ];
    for (header, family, backend) in cases {
        let rs = parse(&format!("{header}{body}"));
        assert_eq!((rs.family, rs.backend), (family, backend), "{header}");
    }
}

#[test]
fn explicit_options_win_over_header_and_inference() {
    let text = "# Generated by iptables-save v1.8.10 (nf_tables) on x\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    let opts = ParseOptions {
        family: Some(Family::Ipv6),
        backend: Some(Backend::Legacy),
        lenient: false,
        ..Default::default()
    };
    let rs = parse_ruleset(text, &opts).unwrap();
    assert_eq!((rs.family, rs.backend), (Family::Ipv6, Backend::Legacy));
}

#[test]
fn family_is_inferred_from_ipv6_addresses_without_header() {
    let rs = parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT ! -d ::1/128 -j ACCEPT\nCOMMIT\n");
    assert_eq!(rs.family, Family::Ipv6);
    let rs = parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -d 10.0.0.1 -j ACCEPT\nCOMMIT\n");
    assert_eq!(rs.family, Family::Ipv4);
}

#[test]
fn legacy_warning_is_surfaced_with_or_without_hash() {
    for line in [
        "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them",
        "Warning: iptables-legacy tables present, use iptables-legacy to see them",
    ] {
        let rs = parse(&format!("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n{line}\n"));
        assert_eq!(rs.notices.len(), 1, "{line}");
        assert_eq!(rs.notices[0].kind, NoticeKind::LegacyTablesPresent);
        assert_eq!(rs.notices[0].line, 4);
    }
}

#[test]
fn incompatible_tables_are_surfaced() {
    let rs = parse(
        "# Table `nat' is incompatible, use 'nft' tool.\n\
         # Table `filter' contains incompatible base-chains, use 'nft' tool to list them.\n\
         *mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
    );
    let tables: Vec<_> = rs
        .notices
        .iter()
        .map(|n| match &n.kind {
            NoticeKind::IncompatibleTable { table } => table.as_str(),
            other => panic!("unexpected notice {other:?}"),
        })
        .collect();
    assert_eq!(tables, vec!["nat", "filter"]);
}

#[test]
fn ipv4_and_ipv6_only_rules_are_skipped_in_the_other_family() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -4 -s 10.0.0.1 -j ACCEPT\n-A INPUT -6 -j DROP\n-A INPUT -j LOG\nCOMMIT\n";
    let v4 = parse_ruleset(
        text,
        &ParseOptions {
            family: Some(Family::Ipv4),
            ..Default::default()
        },
    )
    .unwrap();
    let targets: Vec<_> = v4.tables[0].chains[0]
        .rules
        .iter()
        .map(|r| r.spec.target_name().unwrap())
        .collect();
    assert_eq!(targets, vec!["ACCEPT", "LOG"]);
    assert_eq!(v4.notices.len(), 1);
    assert_eq!(
        (v4.notices[0].line, &v4.notices[0].kind),
        (4, &NoticeKind::SkippedOtherFamily)
    );
    let v6 = parse_ruleset(
        text,
        &ParseOptions {
            family: Some(Family::Ipv6),
            ..Default::default()
        },
    )
    .unwrap();
    let targets: Vec<_> = v6.tables[0].chains[0]
        .rules
        .iter()
        .map(|r| r.spec.target_name().unwrap())
        .collect();
    assert_eq!(targets, vec!["DROP", "LOG"]);
    assert_eq!(
        v6.tables[0].chains[0].rules[0].spec.only_family,
        Some(Family::Ipv6)
    );
}

#[test]
fn crlf_indentation_tabs_and_blank_lines_are_tolerated_in_strict_mode() {
    let text = "\t# Generated by iptables-save v1.8.7 on x\r\n\r\n  *filter\r\n\t:INPUT ACCEPT [1:2]  \r\n\n  -A INPUT\t-p tcp  --dport 22 -j ACCEPT \r\n   COMMIT\r\n";
    let rs = parse(text);
    let chain = &rs.tables[0].chains[0];
    assert_eq!(
        chain.counters,
        Some(Counters {
            packets: 1,
            bytes: 2
        })
    );
    assert_eq!(
        render_rule_spec(&chain.rules[0].spec),
        "-p tcp -m tcp --dport 22 -j ACCEPT"
    );
    assert_eq!(chain.rules[0].line, 6);
}

#[test]
fn restore_input_order_is_canonicalised() {
    let spec = one_rule(
        r#"-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O"#,
    );
    assert_eq!(
        render_rule_spec(&spec),
        r#"-d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O"#
    );
}

#[test]
fn implicit_protocol_match_becomes_explicit() {
    let spec = one_rule("-p tcp --dport 80 -j ACCEPT");
    assert_eq!(
        render_rule_spec(&spec),
        "-p tcp -m tcp --dport 80 -j ACCEPT"
    );
    let spec =
        one_rule(r#"-p udp -m comment --comment dns --dport 53 --sport 1024:65535 -j ACCEPT"#);
    assert_eq!(
        render_rule_spec(&spec),
        "-p udp -m comment --comment dns -m udp --dport 53 --sport 1024:65535 -j ACCEPT"
    );
    let spec = one_rule("-p ipv6-icmp --icmpv6-type 133 -j ACCEPT");
    assert_eq!(spec.matches[0].module, "icmp6");
}

#[test]
fn option_binds_to_an_earlier_module_that_owns_it() {
    let spec = one_rule("-p tcp -m tcp -m comment --comment x --dport 80 -j ACCEPT");
    assert_eq!(spec.matches.len(), 2);
    assert_eq!(spec.matches[0].value("dport"), Some("80"));
}

#[test]
fn unknown_options_bind_to_the_open_module() {
    let spec = one_rule("-p udp -m multiport --ports 8080:8081,8082 --something-else -j ACCEPT");
    assert_eq!(spec.matches.len(), 1);
    assert!(spec.matches[0].option("something-else").is_some());
    let spec = one_rule("-m foo --dport 1 -j ACCEPT");
    assert_eq!(spec.matches[0].value("dport"), Some("1"));
}

#[test]
fn option_without_module_is_an_error() {
    let e = rule_err("--dport 80 -j ACCEPT");
    assert_eq!((e.line, e.column), (3, 10));
    assert!(e.message.contains("--dport"), "{e}");
}

#[test]
fn match_after_target_still_starts_a_match() {
    let spec = one_rule(r#"-j DNAT --to-destination 10.0.0.1:80 -m comment --comment x --random"#);
    assert_eq!(spec.comments().next(), Some("x"));
    let target = spec.target.unwrap();
    assert_eq!(target.value("to-destination"), Some("10.0.0.1:80"));
    assert!(target.options.iter().any(|o| o.name == "random"));
}

#[test]
fn goto_target() {
    let rs = parse("*filter\n:INPUT ACCEPT [0:0]\n:T - [0:0]\n-A INPUT -g T\nCOMMIT\n");
    let target = rs.tables[0].chains[0].rules[0].spec.target.clone().unwrap();
    assert_eq!((target.kind, target.name.as_str()), (TargetKind::Goto, "T"));
}

#[test]
fn intrapositioned_negation_is_accepted_with_a_notice() {
    let old = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s ! 10.0.0.0/8 -p tcp --dport ! 22 -j DROP\nCOMMIT\n";
    let new = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT ! -s 10.0.0.0/8 -p tcp ! --dport 22 -j DROP\nCOMMIT\n";
    let old_rs = parse(old);
    let new_rs = parse(new);
    assert_eq!(old_rs.tables, new_rs.tables);
    let deprecated = old_rs
        .notices
        .iter()
        .filter(|n| matches!(n.kind, NoticeKind::Deprecated { .. }))
        .count();
    assert_eq!(deprecated, 2);
    assert!(new_rs.notices.is_empty());
}

#[test]
fn garbled_dnat_dump_parses() {
    let spec = one_rule(
        r#"-p tcp -m comment --comment "kube-system/kube-dns:metrics" -m tcp -j DNAT --to-destination  --random --to-destination  --random --to-destination 0.0.0.0:0"#,
    );
    let target = spec.target.unwrap();
    let names: Vec<_> = target
        .options
        .iter()
        .map(|o| (o.name.as_str(), o.values.len()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("to-destination", 0),
            ("random", 0),
            ("to-destination", 0),
            ("random", 0),
            ("to-destination", 1)
        ]
    );
}

#[test]
fn protocol_all_is_none() {
    assert_eq!(one_rule("-p all -j ACCEPT").protocol, None);
}

#[test]
fn address_lists_and_hostnames_are_errors() {
    let e = rule_err("-s 10.0.0.1,10.0.0.2 -j ACCEPT");
    assert_eq!((e.line, e.column), (3, 13));
    assert!(e.message.contains("address lists"), "{e}");
    assert!(
        rule_err("-d example.com -j ACCEPT")
            .message
            .contains("expected an IPv4 or IPv6 address")
    );
}

#[test]
fn undeclared_builtin_chain_is_created_without_policy() {
    let rs = parse(
        "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\nCOMMIT\n",
    );
    let names: Vec<_> = rs.tables[0]
        .chains
        .iter()
        .map(|c| (c.name.as_str(), c.policy, c.counters))
        .collect();
    assert_eq!(
        names,
        vec![
            ("PREROUTING", None, None),
            ("OUTPUT", None, None),
            ("KUBE-SERVICES", None, Some(Counters::default()))
        ]
    );
}

#[test]
fn undeclared_user_chain_is_an_error() {
    let e = parse_err("*filter\n:INPUT ACCEPT [0:0]\n-A KUBE-X -j ACCEPT\nCOMMIT\n");
    assert_eq!((e.line, e.column), (3, 4));
    assert!(
        e.message.contains("chain `KUBE-X` used but not declared"),
        "{e}"
    );
}

#[test]
fn restore_commands_are_applied() {
    let rs = parse(
        "*nat\n:KUBE-SEP-OLD - [0:0]\n:KUBE-A - [0:0]\n-X KUBE-SEP-OLD\n-N KUBE-B\n-A KUBE-A -j RETURN\n\
         -I KUBE-A -j MARK --set-xmark 0x1/0x1\n-I KUBE-A 2 -j LOG\n-A KUBE-B -j DROP\n-F KUBE-B\n\
         -A KUBE-A -j ACCEPT\n-D KUBE-A -j ACCEPT\n-R KUBE-A 2 -j REJECT\n-D KUBE-A 1\n-P POSTROUTING ACCEPT\nCOMMIT\n",
    );
    let t = &rs.tables[0];
    let names: Vec<_> = t.chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["POSTROUTING", "KUBE-A", "KUBE-B"]);
    assert_eq!(t.chains[0].policy, Some(Policy::Accept));
    let a: Vec<_> = t.chains[1]
        .rules
        .iter()
        .map(|r| r.spec.target_name().unwrap())
        .collect();
    assert_eq!(a, vec!["REJECT", "RETURN"]);
    assert!(t.chains[2].rules.is_empty());
}

#[test]
fn structural_errors_say_what_was_expected() {
    let e = parse_err("-A INPUT -j ACCEPT\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("outside a table"), "{e}");
    let e = parse_err("*filter\n:INPUT ACCEPT [0:0]\n");
    assert_eq!(e.line, 2);
    assert!(
        e.message
            .contains("missing COMMIT at end of input for table filter"),
        "{e}"
    );
    let e = parse_err("*filter\nhello world\nCOMMIT\n");
    assert_eq!((e.line, e.column), (2, 1));
    assert!(
        e.message
            .contains("expected `*table`, `:CHAIN`, `-A`, `COMMIT` or a comment"),
        "{e}"
    );
    let e = parse_err("*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n");
    assert_eq!((e.line, e.column), (2, 8));
}

#[test]
fn lenient_mode_skips_stray_lines_and_missing_commit_with_notices() {
    let text = "$ sudo iptables-save\n```\n# Generated by iptables-save v1.8.7 on x\n*filter\n:INPUT ACCEPT [0:0]\n\
                root@host:~# echo\n-A INPUT -j ACCEPT\n";
    let rs = lenient(text);
    assert_eq!(rs.rule_count(), 1);
    let ignored: Vec<usize> = rs
        .notices
        .iter()
        .filter(|n| matches!(n.kind, NoticeKind::IgnoredLine { .. }))
        .map(|n| n.line)
        .collect();
    assert_eq!(ignored, vec![1, 2, 6, 7]);
    assert!(parse_ruleset(text, &ParseOptions::default()).is_err());
}

#[test]
fn lenient_mode_keeps_errors_inside_rules() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 1.2.3 -j ACCEPT\nCOMMIT\n";
    let e = parse_ruleset(
        text,
        &ParseOptions {
            lenient: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (3, 13));
}

#[test]
fn error_display_is_line_colon_column() {
    let e = rule_err("-j");
    assert_eq!(e.to_string(), format!("3:10: {}", e.message));
}
