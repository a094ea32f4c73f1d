//! Property: any rule the parser can produce renders to text that parses back to the same rule,
//! and rendering is a fixed point. Free-text values are arbitrary (quotes, backslashes, `!`,
//! unicode, blanks); values whose syntax the parser checks (ports, marks, states, interfaces,
//! protocols) are generated valid, since the parser cannot produce anything else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nfscope_ruleset::{
    AddrMatch, Counters, Family, Match, Negatable, OptionArg, ParseOptions, RuleSpec, Target,
    TargetKind, parse_ruleset, render_rule_spec, render_ruleset,
};
use proptest::prelude::*;

mod common;
use common::without_lines;

/// Known modules with some of their own options (the parser binds these by name).
const KNOWN: &[(&str, &[&str])] = &[
    ("comment", &["comment"]),
    ("tcp", &["dport", "sport", "tcp-flags", "syn"]),
    ("udp", &["dport", "sport"]),
    ("conntrack", &["ctstate", "ctstatus"]),
    ("set", &["match-set", "return-nomatch"]),
    ("mark", &["mark"]),
    ("multiport", &["dports", "ports"]),
    ("recent", &["name", "rcheck", "rsource", "mask"]),
];

/// Base option long names: never generated as match or target option names.
const BASE_LONG: &[&str] = &[
    "source",
    "src",
    "destination",
    "dst",
    "in-interface",
    "out-interface",
    "protocol",
    "fragment",
    "fragments",
    "ipv4",
    "ipv6",
    "set-counters",
    "match",
    "jump",
    "goto",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_./:,-]{0,12}",
        "[ !\"\\\\'#$|;{}~^=?()\\[\\]a-z-]{0,10}",
        any::<String>().prop_map(|s| s.replace('\n', " ")),
        Just("!".to_owned()),
        Just("-j".to_owned()),
        Just(String::new()),
    ]
}

fn values(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(value(), 0..=max)
}

fn option_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}".prop_filter("not a base option", |n| !BASE_LONG.contains(&n.as_str()))
}

fn option_arg(name: impl Strategy<Value = String>) -> impl Strategy<Value = OptionArg> {
    (any::<bool>(), name, values(3)).prop_map(|(negated, name, values)| OptionArg {
        negated,
        name: name.into(),
        values,
    })
}

fn port() -> BoxedStrategy<String> {
    prop_oneof![
        (0u32..=65535).prop_map(|p| p.to_string()),
        (0u32..=65535, 0u32..=65535).prop_map(|(a, b)| format!("{}:{}", a.min(b), a.max(b))),
        Just("http".to_owned()),
    ]
    .boxed()
}

/// Valid values for an option of a known module (the parser checks their syntax).
fn known_values(module: &str, option: &str) -> BoxedStrategy<Vec<String>> {
    let one = |s: BoxedStrategy<String>| s.prop_map(|v| vec![v]).boxed();
    let list = |words: &'static [&'static str]| {
        prop::sample::subsequence(words, 1..=words.len())
            .prop_map(|w| w.join(","))
            .boxed()
    };
    match (module, option) {
        ("comment", _) | ("recent", "name") => one(value()
            .prop_filter("comments hold at most 255 bytes", |v| v.len() <= 255)
            .boxed()),
        (_, "dport" | "sport") => one(port()),
        ("multiport", _) => one(prop::collection::vec(port(), 1..=7)
            .prop_map(|p| p.join(","))
            .boxed()),
        ("tcp", "tcp-flags") => {
            let flags: &'static [&'static str] = &["SYN", "ACK", "FIN", "RST", "URG", "PSH"];
            (list(flags), list(flags))
                .prop_map(|(a, b)| vec![a, b])
                .boxed()
        }
        ("conntrack", "ctstate") => {
            one(list(&["NEW", "ESTABLISHED", "RELATED", "INVALID", "DNAT"]))
        }
        ("conntrack", "ctstatus") => one(list(&["EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"])),
        ("set", "match-set") => (value(), list(&["src", "dst"]))
            .prop_map(|(name, dirs)| vec![name, dirs])
            .boxed(),
        ("mark", _) => one((any::<u32>(), prop::option::of(any::<u32>()))
            .prop_map(|(v, m)| match m {
                Some(m) => format!("{v:#x}/{m:#x}"),
                None => v.to_string(),
            })
            .boxed()),
        ("recent", "mask") => one(addr().prop_map(|a| a.addr.to_string()).boxed()),
        _ => Just(Vec::new()).boxed(), // flags: syn, return-nomatch, rcheck, rsource
    }
}

fn known_match() -> impl Strategy<Value = Match> {
    prop::sample::select(KNOWN).prop_flat_map(|(module, opts)| {
        let option = prop::sample::select(opts).prop_flat_map(move |name| {
            (any::<bool>(), known_values(module, name)).prop_map(move |(negated, values)| {
                OptionArg {
                    negated,
                    name: (*name).into(),
                    values,
                }
            })
        });
        prop::collection::vec(option, 0..3).prop_map(move |options| Match {
            module: (*module).into(),
            options,
        })
    })
}

fn unknown_match() -> impl Strategy<Value = Match> {
    (
        "x[a-z0-9_]{0,8}",
        prop::collection::vec(option_arg(option_name()), 0..3),
    )
        .prop_map(|(module, options)| Match {
            module: module.into(),
            options,
        })
}

fn addr() -> impl Strategy<Value = AddrMatch> {
    prop_oneof![
        (any::<u32>(), 0u32..=32).prop_map(|(a, len)| {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            AddrMatch {
                addr: IpAddr::V4(Ipv4Addr::from(a & mask)),
                mask: IpAddr::V4(Ipv4Addr::from(mask)),
            }
        }),
        (any::<u128>(), 0u32..=128).prop_map(|(a, len)| {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            AddrMatch {
                addr: IpAddr::V6(Ipv6Addr::from(a & mask)),
                mask: IpAddr::V6(Ipv6Addr::from(mask)),
            }
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(a, m)| AddrMatch {
            addr: IpAddr::V4(Ipv4Addr::from(a & m)),
            mask: IpAddr::V4(Ipv4Addr::from(m)),
        }),
    ]
}

fn negatable<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Negatable<T>> {
    (any::<bool>(), s).prop_map(|(negated, value)| Negatable { negated, value })
}

/// Interface names hold 1 to 15 bytes (IFNAMSIZ); anything else inside.
fn interface() -> impl Strategy<Value = String> {
    value().prop_filter("1 to 15 bytes", |v| (1..=15).contains(&v.len()))
}

fn protocol() -> impl Strategy<Value = Negatable<String>> {
    negatable(prop_oneof![
        Just("tcp".to_owned()),
        Just("udp".to_owned()),
        Just("47".to_owned()),
        Just("ipv6-icmp".to_owned()),
        Just("ALL".to_owned()),
        (0u32..=255).prop_map(|p| p.to_string()),
    ])
    .prop_filter("`-p all` is stored as no protocol", |p| {
        p.negated || !p.value.eq_ignore_ascii_case("all")
    })
}

fn target() -> impl Strategy<Value = Target> {
    let kind = prop_oneof![Just(TargetKind::Jump), Just(TargetKind::Goto)];
    let name = value().prop_filter("target names are not empty", |n| !n.is_empty());
    let option = option_arg(prop_oneof![
        option_name(),
        Just("log-prefix".to_owned()),
        Just("comment".to_owned())
    ]);
    (kind, name, prop::collection::vec(option, 0..3)).prop_map(|(kind, name, options)| Target {
        kind,
        name,
        options,
    })
}

prop_compose! {
    fn rule_spec()(
        only_family in prop::option::of(prop_oneof![Just(Family::Ipv4), Just(Family::Ipv6)]),
        source in prop::option::of(negatable(addr())),
        destination in prop::option::of(negatable(addr())),
        in_interface in prop::option::of(negatable(interface())),
        out_interface in prop::option::of(negatable(interface())),
        protocol in prop::option::of(protocol().prop_map(|p| Negatable { negated: p.negated, value: p.value.into() })),
        fragment in prop::option::of(any::<bool>()),
        matches in prop::collection::vec(prop_oneof![known_match(), unknown_match()], 0..5),
        target in prop::option::of(target()),
    ) -> RuleSpec {
        RuleSpec { only_family, source, destination, in_interface, out_interface, protocol, fragment, matches, target }
    }
}

fn reparse(spec: &RuleSpec, counters: Option<Counters>) -> (String, RuleSpec, Option<Counters>) {
    let body = render_rule_spec(spec);
    let prefix = counters
        .map(|c| format!("[{}:{}] ", c.packets, c.bytes))
        .unwrap_or_default();
    let text = format!("*filter\n:INPUT ACCEPT [0:0]\n{prefix}-A INPUT {body}\nCOMMIT\n");
    let family = spec.only_family.unwrap_or(Family::Ipv4);
    let opts = ParseOptions {
        family: Some(family),
        ..Default::default()
    };
    let rs = parse_ruleset(&text, &opts)
        .unwrap_or_else(|e| panic!("rendered rule does not parse: {e}\n{text}"));
    let rule = rs.tables[0].chains[0].rules[0].clone();
    (body, (*rule.spec).clone(), rule.counters)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rendered_rule_parses_back_identically(spec in rule_spec(), counters in prop::option::of(any::<(u64, u64)>())) {
        let counters = counters.map(|(packets, bytes)| Counters { packets, bytes });
        let (body, back, back_counters) = reparse(&spec, counters);
        prop_assert_eq!(&back, &spec, "rendered as: {}", body);
        prop_assert_eq!(back_counters, counters);
        prop_assert_eq!(render_rule_spec(&back), body);
    }

    #[test]
    fn rendered_spec_has_single_spaces_and_no_edges(spec in rule_spec()) {
        let body = render_rule_spec(&spec);
        prop_assert!(!body.starts_with(' ') && !body.ends_with(' '), "{}", body);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn whole_ruleset_round_trips(specs in prop::collection::vec(rule_spec(), 0..6), v6 in any::<bool>()) {
        let family = if v6 { Family::Ipv6 } else { Family::Ipv4 };
        let mut rs = nfscope_ruleset::Ruleset::new(family, nfscope_ruleset::Backend::Nft);
        let rules = specs
            .into_iter()
            .filter(|s| s.only_family.is_none_or(|f| f == family))
            .map(|spec| nfscope_ruleset::Rule { counters: None, spec: spec.into(), line: 0 })
            .collect();
        rs.tables.push(nfscope_ruleset::Table {
            name: "filter".into(),
            chains: vec![nfscope_ruleset::Chain { name: "INPUT".into(), policy: None, counters: None, rules, line: 0 }],
            line: 0,
        });
        let text = render_ruleset(&rs);
        let back = parse_ruleset(&text, &ParseOptions::default()).unwrap();
        prop_assert_eq!(back.family, family);
        prop_assert_eq!(without_lines(back).tables, rs.tables);
    }
}
