//! The iptables → typed-model lowering (`Ruleset::lower`, `Rule::typed`) over the whole corpus:
//! every rule lowers, the modules nfscope models never leave an `Unmodelled` expression, and —
//! root-only, inside a throwaway network namespace — nft's own translator
//! (`iptables-restore-translate`) is the oracle: its output, parsed by `parse_nft_text`, must equal
//! the lowering rule by rule, up to the one canonical form of `nft::canonical_exprs`.

use std::collections::BTreeMap;

use nfscope_ruleset::lower::lower_matches;
use nfscope_ruleset::nft::canonical_exprs;
use nfscope_ruleset::typed::{Expr, TypedRule};
use nfscope_ruleset::{
    Family, NftLimits, ParseOptions, Ruleset, parse_nft_text, parse_ruleset, render_rule_spec,
};
use nfscope_test_support::{TestNetns, corpus_rules, root_or_skip, skip_unless};

fn corpus() -> Vec<(String, Ruleset)> {
    corpus_rules()
        .into_iter()
        .map(|(name, text)| {
            let rs = parse_ruleset(&text, &ParseOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, rs)
        })
        .collect()
}

/// Match modules and targets the lowering types completely (in the corpus's uses of them).
const MODELLED: &[&str] = &[
    "-m tcp",
    "-m udp",
    "-m multiport",
    "-m state",
    "-m conntrack",
    "-m comment",
    "-m mark",
    "-m connmark",
    "-m set",
    "-m addrtype",
    "-m statistic",
    "-m iprange",
    "-m icmp",
    "-m icmp6",
    "-m mac",
    "-m pkttype",
    "-j ACCEPT",
    "-j DROP",
    "-j RETURN",
    "-j REJECT",
    "-j DNAT",
    "-j SNAT",
    "-j MASQUERADE",
    "-j REDIRECT",
    "-j TPROXY",
    "-j MARK",
    "-j NOTRACK",
    "-j LOG",
    "-j NFLOG",
];

/// Uses of modelled modules that stay `Unmodelled` on purpose (text prefix, why).
const UNMODELLED_ON_PURPOSE: &[(&str, &str)] = &[
    (
        "-m multiport --ports",
        "source or destination port: no single typed key",
    ),
    (
        "-j DNAT --to-destination --random --to-destination",
        "a garbled dump (options repeated, no address)",
    ),
];

/// `-m NAME` / `-j NAME` of an `Unmodelled` expression's text.
fn module_of(text: &str) -> String {
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn every_corpus_rule_lowers_and_modelled_modules_leave_nothing_unmodelled() {
    let mut unmodelled: BTreeMap<String, usize> = BTreeMap::new();
    let mut rules = 0;
    for (name, rs) in corpus() {
        let lowered = rs.lower();
        assert_eq!(lowered.rule_count(), rs.rule_count(), "{name}: rule count");
        for (t, tt) in rs.tables.iter().zip(&lowered.tables) {
            for (c, tc) in t.chains.iter().zip(&tt.chains) {
                assert_eq!(c.name, tc.name);
                for (i, (r, tr)) in c.rules.iter().zip(&tc.rules).enumerate() {
                    rules += 1;
                    assert_eq!(tr.position, i + 1);
                    assert_eq!(&r.typed(rs.family, i + 1), tr, "{name}: typed() = lower()");
                    // The tracer's form is the same matches: everything before the rule's counter.
                    let end = tr
                        .exprs
                        .iter()
                        .rposition(|e| matches!(e, Expr::Counter { name: None, .. }))
                        .expect("every lowered rule counts");
                    assert_eq!(
                        lower_matches(r, rs.family),
                        tr.exprs[..end],
                        "{name}: lower_matches = the matches of lower(): {}",
                        tr.text
                    );
                    // Nothing is dropped: every comment is kept, a target becomes a statement.
                    let comments: Vec<&str> = r.spec.comments().collect();
                    assert_eq!(
                        tr.comment.is_some(),
                        !comments.is_empty(),
                        "{name}: {}",
                        tr.text
                    );
                    if r.spec.target.is_some() {
                        assert!(
                            !matches!(tr.exprs.last(), Some(Expr::Counter { .. })),
                            "{name}: target dropped: {}",
                            tr.text
                        );
                    }
                    for e in &tr.exprs {
                        if let Expr::Unmodelled { text } = e
                            && !UNMODELLED_ON_PURPOSE
                                .iter()
                                .any(|(p, _)| text.starts_with(p))
                        {
                            *unmodelled.entry(module_of(text)).or_default() += 1;
                            if MODELLED.contains(&module_of(text).as_str()) {
                                eprintln!("{name}: {text}");
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("{rules} rules; Unmodelled by module: {unmodelled:?}");
    let bad: Vec<_> = unmodelled
        .iter()
        .filter(|(m, _)| MODELLED.contains(&m.as_str()))
        .collect();
    assert!(bad.is_empty(), "modelled modules left Unmodelled: {bad:?}");
    assert!(rules > 9_000, "the corpus shrank: {rules} rules");
}

#[test]
fn the_lowering_follows_the_one_form_table() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC - [0:0]\n\
        -A PREROUTING -i veth+ ! -s 10.0.0.0/8 -p tcp -m tcp --dport 80 -m comment --comment \"web\" -j DNAT --to-destination 10.1.0.1:8080\n\
        -A PREROUTING -p tcp -m multiport --dports 80,443 -m conntrack --ctstate NEW -m mark --mark 0x4000/0x4000 -j KUBE-SVC\n\
        -A PREROUTING -m set --match-set S dst,dst -p tcp -m addrtype --dst-type LOCAL -m statistic --mode random --probability 0.5 -g KUBE-SVC\n\
        -A PREROUTING -m recent --set\nCOMMIT\n";
    let rs = parse_ruleset(text, &ParseOptions::default()).unwrap();
    let lowered = rs.lower();
    let texts: Vec<&str> = lowered.rules().map(|(_, _, r)| r.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "iifname \"veth*\" ip saddr != 10.0.0.0/8 tcp dport 80 counter dnat to 10.1.0.1:8080 comment \"web\"",
            "tcp dport { 80, 443 } ct state new meta mark & 0x00004000 == 0x00004000 counter jump KUBE-SVC",
            "ip daddr . tcp dport @S fib daddr type local numgen random mod 2147483648 < 1073741824 counter goto KUBE-SVC",
            "-m recent --set counter",
        ]
    );
    let (_, _, last) = lowered.rules().last().unwrap();
    assert!(!last.fully_modelled());
}

/// The typed rule without counter values (a dump's counters are not in the translation).
fn comparable(r: &TypedRule) -> (Vec<Expr>, Option<String>) {
    let exprs = r
        .exprs
        .iter()
        .cloned()
        .map(|e| match e {
            Expr::Counter { name, .. } => Expr::Counter {
                counters: None,
                name,
            },
            e => e,
        })
        .collect();
    (canonical_exprs(exprs), r.comment.clone())
}

/// Why the lowering and nft's translation of an iptables rule may differ, when the difference is
/// iptables-translate's (checked against what iptables does) or a construct neither side types.
fn known_difference(
    spec: &str,
    ours: &(Vec<Expr>, Option<String>),
    nft: &(Vec<Expr>, Option<String>),
) -> Option<&'static str> {
    use nfscope_ruleset::typed::{Key, Match};
    if ours.0 == nft.0 && ours.1.as_deref().is_some_and(|c| c.contains("; ")) {
        return Some("several --comment: nft keeps the last, the lowering joins them with `; `");
    }
    let without_proto: Vec<Expr> = ours
        .0
        .iter()
        .filter(|e| {
            !matches!(
                e,
                Expr::Match(Match {
                    key: Key::L4Proto { .. },
                    ..
                })
            )
        })
        .cloned()
        .collect();
    if without_proto == nft.0 && (spec.contains(" -m tcp") || spec.contains(" -m udp")) {
        return Some(
            "`-p tcp -m tcp` without options: iptables-translate drops the protocol check (the rule then matches every protocol)",
        );
    }
    if spec.contains("--ctstate") && (spec.contains("DNAT") || spec.contains("SNAT")) {
        return Some(
            "`[!] --ctstate …,DNAT`: iptables-translate loses the `!` and the other states",
        );
    }
    if spec.contains("CONNMARK --set-xmark") {
        return Some(
            "CONNMARK --set-xmark V/M: iptables-translate prints `ct mark xor V and ~M` (xor first, as \
             nfscope's nft parser reads it); the kernel computes (mark & ~M) ^ V",
        );
    }
    let opaque = |es: &[Expr]| {
        es.iter()
            .any(|e| matches!(e, Expr::Unmodelled { .. } | Expr::Stateful { .. }))
    };
    if opaque(&ours.0)
        && (spec.contains("-m hashlimit") || spec.contains("-j TCPMSS") || spec.contains("--ports"))
    {
        return Some(
            "not modelled (hashlimit meters, TCPMSS, multiport --ports): MAY on both sides",
        );
    }
    None
}

/// Translates `rules` (`-A CHAIN spec` lines) of one table with `iptables-restore-translate` in
/// the namespace: one nft rule body per rule, `None` where nft cannot translate it. A batch that
/// fails as a whole (one rule nft refuses aborts the restore) is split in halves.
fn translate(
    ns: &TestNetns,
    tool: &str,
    table: &str,
    decls: &str,
    rules: &[(String, String)],
) -> Vec<Option<String>> {
    if rules.is_empty() {
        return Vec::new();
    }
    let mut input = format!("*{table}\n{decls}");
    for (chain, spec) in rules {
        input.push_str(&format!("-A {chain} {spec}\n"));
    }
    input.push_str("COMMIT\n");
    let path = std::env::temp_dir().join(format!("nfscope-xlate-{}.rules", std::process::id()));
    std::fs::write(&path, &input).expect("write the translator's input");
    let out = ns.exec(&[tool, "-f", path.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("add rule ") || l.starts_with("# -t "))
        .collect();
    if out.status.success() && lines.len() == rules.len() {
        return lines
            .iter()
            .zip(rules)
            .map(|(l, (chain, _))| {
                l.strip_prefix("add rule ")
                    .and_then(|l| l.split_once(' '))
                    .and_then(|(_, l)| l.strip_prefix(table))
                    .and_then(|l| l.strip_prefix(' '))
                    .and_then(|l| l.strip_prefix(chain.as_str()))
                    .map(|l| l.trim().to_owned())
            })
            .collect();
    }
    if rules.len() == 1 {
        return vec![None];
    }
    let (a, b) = rules.split_at(rules.len() / 2);
    let mut v = translate(ns, tool, table, decls, a);
    v.extend(translate(ns, tool, table, decls, b));
    v
}

#[test]
fn the_lowering_equals_iptables_translate_on_the_corpus() {
    const TEST: &str = "the_lowering_equals_iptables_translate_on_the_corpus";
    if !root_or_skip(TEST) {
        return;
    }
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v iptables-restore-translate"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !skip_unless(TEST, found, "iptables-restore-translate is not installed") {
        return;
    }
    let ns = TestNetns::new("xlate").expect("create a test namespace");
    let (mut total, mut same, mut untranslated, mut unexplained) = (0usize, 0, 0, 0);
    let mut diffs: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (name, rs) in corpus() {
        let (tool, fam) = match rs.family {
            Family::Ipv4 => ("iptables-restore-translate", "ip"),
            Family::Ipv6 => ("ip6tables-restore-translate", "ip6"),
        };
        for t in &rs.tables {
            let decls: String = t
                .chains
                .iter()
                .map(|c| {
                    let builtin =
                        nfscope_ruleset::builtin_chains(&t.name).contains(&c.name.as_str());
                    format!(
                        "{} {} [0:0]\n",
                        c.name,
                        if builtin { "ACCEPT" } else { "-" }
                    )
                })
                .map(|l| format!(":{l}"))
                .collect();
            let mut rules = Vec::new();
            let mut ours = Vec::new();
            for c in &t.chains {
                for (i, r) in c.rules.iter().enumerate() {
                    rules.push((c.name.clone(), render_rule_spec(&r.spec)));
                    ours.push((c.name.clone(), r.typed(rs.family, i + 1)));
                }
            }
            let theirs = translate(&ns, tool, &t.name, &decls, &rules);
            for (((chain, mine), body), (_, spec)) in ours.iter().zip(theirs).zip(&rules) {
                total += 1;
                let Some(body) = body else {
                    untranslated += 1;
                    if untranslated % 100 == 1 {
                        eprintln!("untranslatable ({name}): {spec}");
                    }
                    continue;
                };
                let text = format!(
                    "table {fam} {} {{\nchain {chain} {{\n{body}\n}}\n}}\n",
                    t.name
                );
                let parsed = match parse_nft_text(&text, &NftLimits::default()) {
                    Ok(p) => p,
                    Err(e) => {
                        let d = diffs.entry(format!("nft parse: {e}")).or_default();
                        d.0 += 1;
                        d.1 = format!("{name}: {body}");
                        continue;
                    }
                };
                let (_, _, theirs) = parsed.rules().next().expect("one rule");
                let (a, b) = (comparable(mine), comparable(theirs));
                if a == b {
                    same += 1;
                    continue;
                }
                let why = known_difference(spec, &a, &b);
                let first = a
                    .0
                    .iter()
                    .zip(&b.0)
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!("{x:?} ≠ {y:?}"))
                    .unwrap_or_else(|| format!("{} vs {} exprs / comment", a.0.len(), b.0.len()));
                let key = match why {
                    Some(w) => format!("known: {w}"),
                    None => {
                        unexplained += 1;
                        format!(
                            "UNEXPLAINED: {}",
                            first.chars().take(160).collect::<String>()
                        )
                    }
                };
                let d = diffs.entry(key).or_default();
                d.0 += 1;
                d.1 = format!("{name}: `{spec}` → ours `{}` nft `{body}`", mine.text);
            }
        }
    }
    let mut sorted: Vec<_> = diffs.iter().collect();
    sorted.sort_by_key(|d| std::cmp::Reverse(d.1.0));
    for (k, (n, ex)) in &sorted {
        eprintln!("{n:5}  {k}\n       e.g. {ex}");
    }
    eprintln!(
        "{same} of {total} corpus rules lower identically to iptables-translate ({untranslated} it cannot translate)"
    );
    assert!(total > 9_000, "corpus shrank: {total}");
    assert_eq!(
        unexplained, 0,
        "lowering and iptables-translate differ (see above)"
    );
    // Every translated rule is either identical or a known translator difference: most are equal.
    assert!(
        same * 100 >= (total - untranslated) * 95,
        "{same} of {total}"
    );
}
