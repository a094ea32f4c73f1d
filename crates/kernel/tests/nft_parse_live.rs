//! Root test: the kernel's own nft is the oracle for the offline nft parsers. Each corpus ruleset
//! is loaded into a throw-away network namespace; `nft list ruleset` and `nft -j list ruleset`
//! of what the kernel then holds must parse to the same typed model, and that model must say what
//! the original file said.

mod common;

use nfscope_test_support::assert_same;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{TestNetns, root_or_skip};
use nfscope_ruleset::typed::*;
use nfscope_ruleset::{NftLimits, parse_nft_json, parse_nft_text};

fn corpus() -> PathBuf {
    nfscope_test_support::nft_corpus_dir()
}

fn nft_available() -> bool {
    let ok = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    nfscope_test_support::skip_unless("nft_parse_live", ok, "nft is not installed")
}

/// Loads `file` into a fresh namespace; `None` when this nft refuses the file (newer syntax).
fn load_and_dump(file: &Path) -> Option<(String, String)> {
    let ns = TestNetns::new("nftparse").expect("create a test namespace");
    let load = ns.exec(&["nft", "-f", file.to_str().unwrap()]);
    if !load.status.success() {
        eprintln!(
            "{}: this nft cannot load it: {}",
            file.display(),
            String::from_utf8_lossy(&load.stderr)
                .lines()
                .next()
                .unwrap_or("")
        );
        return None;
    }
    let text = ns.sh_ok("nft -a list ruleset");
    let json = ns.sh_ok("nft -j list ruleset");
    Some((text, json))
}

/// What nft's JSON leaves out in older versions (table and chain comments, the `dynamic` set flag
/// before 1.0.9, `typeof` declarations): taken from the JSON where it lacks them.
fn align_with_json(text: &mut NftRuleset, json: &NftRuleset) {
    for (t, j) in text.tables.iter_mut().zip(&json.tables) {
        if j.comment.is_none() {
            t.comment = None;
        }
        for (c, jc) in t.chains.iter_mut().zip(&j.chains) {
            if jc.comment.is_none() {
                c.comment = None;
            }
        }
        for (s, js) in t.sets.iter_mut().zip(&j.sets) {
            if !js.flags.iter().any(|f| f == "dynamic") {
                s.flags.retain(|f| f != "dynamic");
            }
            // nft 1.0.6 JSON shows `typeof` sets by their resolved datatypes.
            let is_typeof = |t: &SetType| matches!(t, SetType::Typeof(_));
            if is_typeof(&s.key) && !is_typeof(&js.key) {
                s.key = js.key.clone();
            }
            if s.data.as_ref().is_some_and(is_typeof) && !js.data.as_ref().is_some_and(is_typeof) {
                s.data.clone_from(&js.data);
            }
        }
    }
}

/// Counters without values, anonymous sets in a fixed order (nft versions list them differently;
/// a set has no order).
fn without_counter_values(exprs: &[Expr]) -> Vec<Expr> {
    let sorted = |v: &[SetElem]| {
        let mut v = v.to_vec();
        v.sort_by_key(|e| format!("{e:?}"));
        v
    };
    exprs
        .iter()
        .map(|e| match e {
            Expr::Counter { name, .. } => Expr::Counter {
                counters: None,
                name: name.clone(),
            },
            Expr::Match(Match {
                key,
                op,
                rhs: Rhs::Anon(v),
            }) => Expr::Match(Match {
                key: key.clone(),
                op: *op,
                rhs: Rhs::Anon(sorted(v)),
            }),
            Expr::Vmap {
                key,
                map: MapRef::Anon(v),
            } => Expr::Vmap {
                key: key.clone(),
                map: MapRef::Anon(sorted(v)),
            },
            e => e.clone(),
        })
        .collect()
}

/// The original file and the kernel's listing of it say the same: tables, chains with their
/// hooks, numeric priorities and policies, rules (typed ones equal, counters aside), set elements
/// (as sets: nft may list them in another order).
fn assert_same_meaning(name: &str, orig: &NftRuleset, live: &NftRuleset) -> usize {
    let mut compared = 0;
    let key = |t: &NftTable| (t.family, t.name.clone());
    let mut lt: Vec<&NftTable> = live.tables.iter().collect();
    lt.sort_by_key(|t| key(t));
    let mut ot: Vec<&NftTable> = orig.tables.iter().collect();
    ot.sort_by_key(|t| key(t));
    assert_eq!(lt.len(), ot.len(), "{name}: tables");
    for (o, l) in ot.iter().zip(&lt) {
        assert_eq!(key(o), key(l), "{name}");
        assert_eq!(o.chains.len(), l.chains.len(), "{name} {}: chains", o.name);
        for oc in &o.chains {
            let lc = l
                .chain(&oc.name)
                .unwrap_or_else(|| panic!("{name}: chain {} missing live", oc.name));
            let strip = |b: &Option<BaseChain>| {
                b.clone().map(|mut b| {
                    b.priority_text = None;
                    b.policy.get_or_insert(Policy::Accept);
                    b
                })
            };
            assert_eq!(strip(&oc.base), strip(&lc.base), "{name} chain {}", oc.name);
            assert_eq!(oc.rules.len(), lc.rules.len(), "{name} chain {}", oc.name);
            for (or, lr) in oc.rules.iter().zip(&lc.rules) {
                assert_eq!(or.comment, lr.comment, "{name}: {}", or.text);
                if or.fully_modelled() && lr.fully_modelled() {
                    assert_eq!(
                        without_counter_values(&or.exprs),
                        without_counter_values(&lr.exprs),
                        "{name} chain {}: file says `{}`, kernel lists `{}`",
                        oc.name,
                        or.text,
                        lr.text
                    );
                    compared += 1;
                }
            }
        }
        for os in &o.sets {
            let ls = l
                .set(&os.name)
                .unwrap_or_else(|| panic!("{name}: set {} missing live", os.name));
            let elems = |s: &NftSetDef| -> BTreeSet<String> {
                s.elements
                    .iter()
                    .map(|e| format!("{:?} {:?} {:?}", e.key, e.data, e.comment))
                    .collect()
            };
            assert_eq!(elems(os), elems(ls), "{name} set {}", os.name);
        }
    }
    compared
}

#[test]
fn kernel_listings_parse_to_the_same_model_as_text_json_and_the_file() {
    if !root_or_skip("nft_parse_live") || !nft_available() {
        return;
    }
    let lim = NftLimits::default();
    let dir = corpus();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("nft corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "nft")
                && !p.to_string_lossy().ends_with("-handles.nft")
        })
        .collect();
    files.sort();
    let mut loaded = Vec::new();
    let mut compared = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let original = std::fs::read_to_string(file).unwrap();
        // nft 1.0.6 knows `priority dstnat` only on prerouting; its number is the same.
        let loadable =
            original.replace("hook output priority dstnat;", "hook output priority -100;");
        let tmp =
            std::env::temp_dir().join(format!("nfscope-nftparse-{}-{name}", std::process::id()));
        std::fs::write(&tmp, &loadable).unwrap();
        let dumped = load_and_dump(&tmp);
        let _ = std::fs::remove_file(&tmp);
        let Some((text, json)) = dumped else { continue };
        let mut from_text = parse_nft_text(&text, &lim)
            .unwrap_or_else(|e| panic!("{name}: live listing: {e}\n{text}"))
            .normalised();
        let from_json = parse_nft_json(&json, &lim)
            .unwrap_or_else(|e| panic!("{name}: live JSON: {e}"))
            .normalised();
        align_with_json(&mut from_text, &from_json);
        // Text and JSON of one kernel state: the same model, handles included, wherever both
        // type a rule; where one does not, the other must not claim to either.
        for ((_, ca, ra), (_, cb, rb)) in from_text.rules().zip(from_json.rules()) {
            assert_eq!(ca.name, cb.name, "{name}");
            assert_eq!(ra.handle, rb.handle, "{name}: {}", ra.text);
            assert_eq!(
                ra.fully_modelled(),
                rb.fully_modelled(),
                "{name}: {}",
                ra.text
            );
            if ra.fully_modelled() {
                assert_eq!(ra.exprs, rb.exprs, "{name} chain {}: {}", ca.name, ra.text);
            }
        }
        let fully = from_text.rules().all(|(_, _, r)| r.fully_modelled());
        if fully {
            assert_same(&from_text, &from_json, &format!("{name}: text vs JSON"));
        }
        // …and what the file said.
        let orig = parse_nft_text(&original, &lim).unwrap().normalised();
        compared += assert_same_meaning(&name, &orig, &from_text);
        loaded.push(name);
    }
    for must in [
        "nftparse-kube-proxy-overall.nft",
        "nftparse-moby-usernet-portmap.nft",
    ] {
        assert!(
            loaded.iter().any(|n| n == must),
            "{must} did not load: {loaded:?}"
        );
    }
    assert!(compared >= 80, "only {compared} rules compared");
    eprintln!(
        "loaded {} of {} files, {compared} rules compared",
        loaded.len(),
        files.len()
    );
}

#[test]
fn kube_proxy_commands_load_to_the_committed_listing() {
    if !root_or_skip("nft_parse_live") || !nft_available() {
        return;
    }
    let lim = NftLimits::default();
    let (text, json) = load_and_dump(&corpus().join("nftparse-kube-proxy-overall.commands"))
        .expect("kube-proxy's own commands load");
    // A fresh namespace numbers handles the same way, so the committed `-a` listing is exact.
    let committed =
        std::fs::read_to_string(corpus().join("nftparse-kube-proxy-overall-handles.nft")).unwrap();
    let live = parse_nft_text(&text, &lim).unwrap().normalised();
    assert_same(
        &live,
        &parse_nft_text(&committed, &lim).unwrap().normalised(),
        "live vs committed listing",
    );
    let kp = live.table(NftFamily::Ip, "kube-proxy").unwrap();
    assert_eq!(kp.set("service-ips").unwrap().elements.len(), 9);
    // The JSON of the same state, after nft's JSON omissions, is the same model.
    let mut from_text = parse_nft_text(&text, &lim).unwrap().normalised();
    let from_json = parse_nft_json(&json, &lim).unwrap().normalised();
    align_with_json(&mut from_text, &from_json);
    assert_same(&from_text, &from_json, "kube-proxy text vs JSON");

    // The IPv6 transaction likewise gives the committed IPv6 listing (handles aside).
    let (text, json) = load_and_dump(&corpus().join("nftparse-kube-proxy-ipv6-knftables.commands"))
        .expect("kube-proxy's IPv6 commands load");
    let committed =
        std::fs::read_to_string(corpus().join("nftparse-kube-proxy-ipv6-knftables.nft")).unwrap();
    let mut live = parse_nft_text(&text, &lim).unwrap().normalised();
    let mut from_json = parse_nft_json(&json, &lim).unwrap().normalised();
    align_with_json(&mut live, &from_json);
    assert_same(&live, &from_json, "kube-proxy IPv6 text vs JSON");
    for rs in [&mut live, &mut from_json] {
        for t in &mut rs.tables {
            t.handle = None;
            t.sets.iter_mut().for_each(|s| s.handle = None);
            for c in &mut t.chains {
                c.handle = None;
                c.rules.iter_mut().for_each(|r| r.handle = None);
            }
        }
    }
    let mut committed = parse_nft_text(&committed, &lim).unwrap().normalised();
    align_with_json(&mut committed, &from_json);
    assert_same(
        &live,
        &committed,
        "kube-proxy IPv6 live vs committed listing",
    );
}
