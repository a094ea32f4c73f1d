//! Root test: the generated ruleset loads with `iptables-restore` on both backends, in a throwaway
//! network namespace, and `iptables-save` prints it back unchanged (same tables, chains, rules,
//! and for IPv4 the same counters). Skips when not root, fails instead under `CI=true`.

use std::collections::BTreeMap;
use std::process::Command;

use nfscope_bench::{GenOptions, count_rules, kube_proxy_ruleset};
use nfscope_test_support::{TestNetns, root_or_skip};

/// Runs `program ARGS…` in the namespace (with `stdin` as its input, if any) and returns its
/// output; panics unless it succeeds.
fn run(ns: &TestNetns, program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let argv: Vec<&str> = std::iter::once(program)
        .chain(args.iter().copied())
        .collect();
    let out = ns.exec_input(&argv, stdin.unwrap_or(""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Table name → its chain declarations and rules in order, with or without counters.
fn tables(text: &str, keep_counters: bool) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            current = name.to_owned();
            out.entry(current.clone()).or_default();
        } else if line.starts_with(':') || line.starts_with('[') || line.starts_with("-A ") {
            let line = match (keep_counters, line.split_once("] -A ")) {
                (false, Some((_, rest))) if line.starts_with('[') => format!("-A {rest}"),
                (false, _) if line.starts_with(':') => line
                    .rsplit_once(' ')
                    .map_or(line, |(decl, _)| decl)
                    .to_owned(),
                _ => line.to_owned(),
            };
            out.get_mut(&current)
                .expect("rule inside a table")
                .push(line);
        }
    }
    out
}

fn round_trip(backend: &str, ipv6: bool) {
    if !root_or_skip("bench restore round trip") {
        return;
    }
    if backend == "legacy" {
        // x_tables modules may be built in or already loaded; a failure here shows up at restore.
        let _ = Command::new("modprobe")
            .args(["-q", "ip_tables", "iptable_nat", "iptable_filter"])
            .status();
    }
    let opts = GenOptions {
        counters: true,
        ipv6,
        no_endpoints_percent: 5,
        ..GenOptions::default()
    };
    let generated = kube_proxy_ruleset(120, 3, &opts);
    let family = if ipv6 { "ip6tables" } else { "iptables" };
    let ns = TestNetns::new(&format!("benchtest-{backend}{}", if ipv6 { 6 } else { 4 }))
        .expect("create a test namespace");
    run(
        &ns,
        &format!("{family}-{backend}-restore"),
        &["--counters"],
        Some(&generated),
    );
    let saved = run(&ns, &format!("{family}-{backend}-save"), &["-c"], None);

    assert_eq!(count_rules(&saved), count_rules(&generated));
    assert_eq!(
        tables(&saved, false),
        tables(&generated, false),
        "{backend} {family}: ruleset differs"
    );
    // ip6tables-nft-restore 1.8.9 drops `[p:b]` counters; every other combination keeps them.
    if !(ipv6 && backend == "nft") {
        assert_eq!(
            tables(&saved, true),
            tables(&generated, true),
            "{backend} {family}: counters differ"
        );
    }
}

/// The kube-proxy shape (kube-proxy's argument order, quoting and chain order) puts the same
/// rules into the kernel as the save-syntax text of the same services: `iptables-save` prints
/// the two namespaces alike (save sorts user chains by name; counters are drawn in another
/// order, so they are left out).
fn kube_proxy_shape_loads_like_the_generated_text(backend: &str, ipv6: bool) {
    if !root_or_skip("bench kube-proxy shape") {
        return;
    }
    if backend == "legacy" {
        let _ = Command::new("modprobe")
            .args(["-q", "ip_tables", "iptable_nat", "iptable_filter"])
            .status();
    }
    let opts = GenOptions {
        counters: true,
        ipv6,
        no_endpoints_percent: 5,
        ..GenOptions::default()
    };
    let family = if ipv6 { "ip6tables" } else { "iptables" };
    let mut saved = Vec::new();
    for (tag, text) in [
        ("k", nfscope_bench::kube_proxy_restore_input(120, 3, &opts)),
        (
            "g",
            nfscope_bench::kube_proxy_ruleset_with_cluster_names(120, 3, &opts),
        ),
    ] {
        let ns = TestNetns::new(&format!(
            "benchshape-{tag}{backend}{}",
            if ipv6 { 6 } else { 4 }
        ))
        .expect("create a test namespace");
        run(
            &ns,
            &format!("{family}-{backend}-restore"),
            &["--counters"],
            Some(&text),
        );
        let out = run(&ns, &format!("{family}-{backend}-save"), &["-c"], None);
        assert_eq!(
            count_rules(&out),
            count_rules(&text),
            "{tag} {backend} {family}"
        );
        saved.push(tables(&out, false));
    }
    assert!(saved[0]["nat"].len() > 1500, "{}", saved[0]["nat"].len());
    // The same rules in every table; the shared chains (`KUBE-SERVICES`, `KUBE-NODEPORTS`, …)
    // hold them in kube-proxy's service order, so compare those as sets, and the per-service
    // chains (`KUBE-SVC-`, `KUBE-SEP-`, `KUBE-EXT-`, listed by name) rule for rule, in order.
    let per_service = |line: &&String| {
        ["-A KUBE-SVC-", "-A KUBE-SEP-", "-A KUBE-EXT-"]
            .iter()
            .any(|p| line.starts_with(p))
    };
    assert_eq!(
        saved[0].keys().collect::<Vec<_>>(),
        saved[1].keys().collect::<Vec<_>>()
    );
    for (table, lines) in &saved[0] {
        let other = &saved[1][table];
        let mut a = lines.clone();
        let mut b = other.clone();
        a.sort();
        b.sort();
        let only_k: Vec<&String> = a.iter().filter(|l| !b.contains(l)).take(3).collect();
        let only_g: Vec<&String> = b.iter().filter(|l| !a.contains(l)).take(3).collect();
        assert!(
            a == b,
            "{backend} {family} {table}: kube-proxy shape only {only_k:?}, generated only {only_g:?}"
        );
        let ordered = |v: &Vec<String>| v.iter().filter(per_service).cloned().collect::<Vec<_>>();
        assert!(
            ordered(lines) == ordered(other),
            "{backend} {family} {table}: per-service chains differ in order"
        );
    }
}

#[test]
fn kube_proxy_shape_loads_the_generated_rules_on_iptables_nft() {
    kube_proxy_shape_loads_like_the_generated_text("nft", false);
}

#[test]
fn kube_proxy_shape_loads_the_generated_rules_on_iptables_legacy() {
    kube_proxy_shape_loads_like_the_generated_text("legacy", false);
}

#[test]
fn kube_proxy_shape_loads_the_generated_rules_on_ip6tables_nft() {
    kube_proxy_shape_loads_like_the_generated_text("nft", true);
}

#[test]
fn ipv4_ruleset_round_trips_through_iptables_nft() {
    round_trip("nft", false);
}

#[test]
fn ipv4_ruleset_round_trips_through_iptables_legacy() {
    round_trip("legacy", false);
}

#[test]
fn ipv6_ruleset_round_trips_through_ip6tables_nft() {
    round_trip("nft", true);
}

#[test]
fn ipv6_ruleset_round_trips_through_ip6tables_legacy() {
    round_trip("legacy", true);
}

/// kube-proxy's nftables-mode table loads with `nft -f` and `nft list ruleset` gives the same
/// typed table back (the generator writes what the kernel keeps, as nft prints it); the JSON
/// listing has the same number of chains, rules and elements.
fn nft_round_trip(ipv6: bool) {
    use nfscope_ruleset::{NftLimits, parse_nft_json, parse_nft_text};
    if !root_or_skip("bench nft round trip") {
        return;
    }
    let opts = GenOptions {
        ipv6,
        no_endpoints_percent: 10,
        ..GenOptions::default()
    };
    let generated = nfscope_bench::kube_proxy_nft_ruleset(40, 3, &opts);
    let ns = TestNetns::new("bench-nft").expect("a test namespace");
    run(&ns, "nft", &["-f", "-"], Some(&generated));
    let listed = run(&ns, "nft", &["list", "ruleset"], None);
    let json = run(&ns, "nft", &["-j", "list", "ruleset"], None);
    let limits = NftLimits::default();
    let want = parse_nft_text(&generated, &limits).expect("the generated table parses");
    let got = parse_nft_text(&listed, &limits).expect("nft's listing parses");
    // The kernel lists hashed set elements in its own order.
    let sorted = |r: &nfscope_ruleset::typed::NftRuleset| {
        let mut r = r.normalised();
        for set in r.tables.iter_mut().flat_map(|t| t.sets.iter_mut()) {
            set.elements.sort_by_cached_key(|e| format!("{e:?}"));
        }
        r
    };
    nfscope_test_support::assert_same(
        &sorted(&got),
        &sorted(&want),
        "the kernel's table is the generated one",
    );
    let from_json = parse_nft_json(&json, &limits).expect("nft's JSON parses");
    let shape = |r: &nfscope_ruleset::typed::NftRuleset| {
        let t = &r.tables[0];
        (
            t.chains.len(),
            r.rule_count(),
            t.sets.iter().map(|s| s.elements.len()).sum::<usize>(),
        )
    };
    assert_eq!(shape(&from_json), shape(&want));
    let table = &want.tables[0];
    assert_eq!(table.set("no-endpoint-services").unwrap().elements.len(), 4);
}

#[test]
fn ipv4_nftables_table_round_trips_through_the_kernel() {
    nft_round_trip(false);
}

#[test]
fn ipv6_nftables_table_round_trips_through_the_kernel() {
    nft_round_trip(true);
}
