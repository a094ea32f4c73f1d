//! The linter reads the typed rule model (`nfscope_ruleset::typed`): proof that this changed no
//! finding. `data/findings-before-typed.tsv` holds every finding (id, severity, place, line,
//! message, related places) and every rule set's ipset references that the linter made of every
//! corpus dump — iptables dumps, fragments and native nftables listings (text and JSON) — when
//! its iptables checks still read the option strings of `Match`/`Target` (main at `89dac0f`, written
//! by this test with `NFSCOPE_WRITE_BASELINE=1`). The linter over the typed model must make the
//! same, except for the differences listed in [`BETTER`], each a finding the old path could not
//! see or made on a guess.

use std::fmt::Write as _;

use nfscope_lint::{Finding, IpsetRefs, LintInput, lint, lint_nft};
use nfscope_ruleset::{NftLimits, ParseOptions, parse_nft_json, parse_nft_text, parse_ruleset};
use nfscope_test_support::{corpus_dir, corpus_file, corpus_files, nft_corpus_files};

const BASELINE: &str = "tests/data/findings-before-typed.tsv";

/// Lines of the baseline the typed linter no longer makes (`-`) or makes anew (`+`), with why.
const BETTER: &[(&str, &str)] = &[
    (
        "+fffuu-parser-test.rules\tshadowed-rule\tWarning\tipv4/legacy\tfilter\tFORWARD\t20\t",
        "`-m iprange --src-range 127.0.0.1-127.0.10.0` lowers to an address range, which coverage \
         reads like a prefix: it lies inside rule 2's `-s 127.0.0.0/8 -j DROP` (the old path knew \
         only `-s`/`-d`)",
    ),
    (
        "+nft/kubeadm-flannel-nftables-mode-table-2025.nft\tshadowed-rule\tWarning\tipv4/nft\tflannel-ipv4\tpostrtg\t6\t",
        "native rules now get the iptables path's address reasoning: every source outside \
         10.244.0.0/16 is outside 10.244.1.0/24 too, so rule 4's `return` takes every packet of \
         rule 6's masquerade (the old native path compared condition texts only)",
    ),
    (
        "+nft/nftparse-upstream-0012different_defines_0.nft\tshadowed-rule\tWarning\tipv4/nft\tt\tc\t1",
        "`queue` ends the chain as iptables' QUEUE/NFQUEUE always did in the iptables path; rules \
         14-17 repeat rule 13's conditions with another queue statement",
    ),
    (
        "+nft/nftparse-upstream-0012different_defines_0.json\tshadowed-rule\tWarning\tipv4/nft\tt\tc\t1",
        "the same rules read from `nft -j` JSON",
    ),
];

fn finding_line(file: &str, f: &Finding) -> String {
    let l = &f.location;
    let mut s = format!(
        "{file}\t{}\t{:?}\t{}/{}\t{}\t{}\t{}\t{}\t{}",
        f.id.as_str(),
        f.severity,
        f.family,
        f.backend,
        l.table.as_deref().unwrap_or("-"),
        l.chain.as_deref().unwrap_or("-"),
        l.rule_index.map_or("-".into(), |r| r.to_string()),
        l.line.map_or("-".into(), |r| r.to_string()),
        f.message.replace(['\t', '\n'], " "),
    );
    for r in &f.related {
        let _ = write!(
            s,
            "\trelated {} {} #{} line {} ({})",
            r.location.table.as_deref().unwrap_or("-"),
            r.location.chain.as_deref().unwrap_or("-"),
            r.location.rule_index.map_or("-".into(), |r| r.to_string()),
            r.location.line.map_or("-".into(), |r| r.to_string()),
            r.note
        );
    }
    if let Some(k) = &f.kube {
        let _ = write!(s, "\tkube {} {:?}", k.owner, k.meaning);
    }
    s
}

/// Every finding of every corpus dump, one line each, in a stable order.
fn current() -> Vec<String> {
    let mut out = Vec::new();
    let lenient = ParseOptions {
        lenient: true,
        ..ParseOptions::default()
    };
    let mut iptables: Vec<String> = corpus_files("rules").into_iter().map(|(n, _)| n).collect();
    let fragments = std::fs::read_dir(corpus_dir().join("fragments")).expect("fragments dir");
    let mut frags: Vec<String> = fragments
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules"))
        .map(|n| format!("fragments/{n}"))
        .collect();
    frags.sort();
    iptables.extend(frags);
    for file in &iptables {
        let ruleset = match parse_ruleset(&corpus_file(file), &lenient) {
            Ok(r) => r,
            Err(e) => {
                out.push(format!("{file}\tparse error {e}"));
                continue;
            }
        };
        let findings = lint(&LintInput {
            rulesets: std::slice::from_ref(&ruleset),
            ipsets: None,
        });
        out.extend(findings.iter().map(|f| finding_line(file, f)));
        out.push(format!("{file}\tipsets {:?}", IpsetRefs::of(&ruleset)));
    }
    for suffix in [".nft", ".json"] {
        for (file, text) in nft_corpus_files(suffix) {
            let parsed = if suffix == ".nft" {
                parse_nft_text(&text, &NftLimits::default())
            } else {
                parse_nft_json(&text, &NftLimits::default())
            };
            match parsed {
                Ok(rs) => out.extend(
                    lint_nft(&rs)
                        .iter()
                        .map(|f| finding_line(&format!("nft/{file}"), f)),
                ),
                Err(e) => out.push(format!("nft/{file}\tparse error {e}")),
            }
        }
    }
    out
}

#[test]
fn typed_linter_makes_the_findings_of_the_option_string_linter() {
    let now = current();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(BASELINE);
    if std::env::var_os("NFSCOPE_WRITE_BASELINE").is_some() {
        std::fs::write(&path, now.join("\n") + "\n").expect("write baseline");
        return;
    }
    let before = std::fs::read_to_string(&path).expect("baseline committed");
    let before: Vec<&str> = before.lines().collect();
    assert!(before.len() > 500, "baseline has {} lines", before.len());
    let gone: Vec<&str> = before
        .iter()
        .copied()
        .filter(|l| !now.iter().any(|n| n == l))
        .collect();
    let new: Vec<&str> = now
        .iter()
        .map(String::as_str)
        .filter(|l| !before.contains(l))
        .collect();
    let listed = |sign: &str, l: &str| {
        BETTER
            .iter()
            .any(|(d, _)| d.strip_prefix(sign).is_some_and(|d| l.starts_with(d)))
    };
    let unexplained_gone: Vec<&&str> = gone.iter().filter(|l| !listed("-", l)).collect();
    let unexplained_new: Vec<&&str> = new.iter().filter(|l| !listed("+", l)).collect();
    assert!(
        unexplained_gone.is_empty() && unexplained_new.is_empty(),
        "lost:\n{}\n\nnew:\n{}",
        unexplained_gone
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        unexplained_new
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every listed difference still happens (the list is not stale).
    for (d, why) in BETTER {
        let (sign, prefix) = d.split_at(1);
        let pool = if sign == "-" { &gone } else { &new };
        assert!(
            pool.iter().any(|l| l.starts_with(prefix)),
            "listed difference no longer seen: {d} ({why})"
        );
    }
}
