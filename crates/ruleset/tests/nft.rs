//! Native nftables: every `nft list ruleset` file of the corpus parses and survives parse →
//! render → parse; the JSON of the same rulesets gives the same model and the element counts
//! nft itself reports; kube-proxy's nftables mode lands in the expected typed forms; broken input
//! fails at `line:col`; what the model does not type is kept as `Unmodelled`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use nfscope_ruleset::typed::*;
use nfscope_ruleset::{NftLimits, parse_nft_json, parse_nft_text, render_nft};
use nfscope_test_support::{assert_same, nft_corpus_dir, nft_corpus_files};

fn text(t: &str) -> NftRuleset {
    parse_nft_text(t, &NftLimits::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn rule_of(body: &str) -> TypedRule {
    let rs = text(&format!(
        "table ip t {{\n\tchain c {{\n\t\t{body}\n\t}}\n}}\n"
    ));
    rs.tables[0].chains[0].rules[0].clone()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn every_nft_file_parses_and_round_trips_through_render() {
    let files = nft_corpus_files(".nft");
    assert!(files.len() >= 20, "corpus shrank: {} files", files.len());
    for (name, t) in files {
        let a = parse_nft_text(&t, &NftLimits::default()).unwrap_or_else(|e| panic!("{name}:{e}"));
        assert!(!a.tables.is_empty(), "{name}: no tables");
        let rendered = render_nft(&a);
        let b = parse_nft_text(&rendered, &NftLimits::default())
            .unwrap_or_else(|e| panic!("{name} (rendered):{e}\n{rendered}"));
        // Same model apart from source lines (the rendering lays lines out anew).
        assert_same(
            &strip_lines(&a),
            &strip_lines(&b),
            &format!("{name}: parse → render → parse"),
        );
        assert_eq!(
            rendered,
            render_nft(&b),
            "{name}: rendering is not a fixed point"
        );
        for (_, c, r) in a.rules() {
            assert_eq!(
                r.position,
                c.rules.iter().position(|x| std::ptr::eq(x, r)).unwrap() + 1
            );
            assert!(r.line > 0, "{name}: rule without a source line");
        }
    }
}

/// Clears line numbers only (symbolic priorities must survive rendering).
fn strip_lines(rs: &NftRuleset) -> NftRuleset {
    let mut n = rs.normalised();
    for (t, o) in n.tables.iter_mut().zip(&rs.tables) {
        for (c, oc) in t.chains.iter_mut().zip(&o.chains) {
            if let (Some(b), Some(ob)) = (c.base.as_mut(), oc.base.as_ref()) {
                b.priority_text.clone_from(&ob.priority_text);
            }
        }
    }
    n
}

/// Element counts per (table, set) straight from nft's own JSON, the oracle for "as `nft list`
/// shows them".
fn json_element_counts(json: &str) -> BTreeMap<(String, String), usize> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = BTreeMap::new();
    for item in v["nftables"].as_array().unwrap() {
        for kind in ["set", "map"] {
            if let Some(s) = item.get(kind) {
                let n = s.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len);
                out.insert(
                    (
                        s["table"].as_str().unwrap().to_string(),
                        s["name"].as_str().unwrap().to_string(),
                    ),
                    n,
                );
            }
        }
    }
    out
}

#[test]
fn json_and_text_of_the_same_ruleset_give_the_same_model() {
    let mut compared_rules = 0;
    let mut pairs = 0;
    for (name, json) in nft_corpus_files(".json") {
        let stem = name.trim_end_matches(".json");
        let Ok(t) = std::fs::read_to_string(nft_corpus_dir().join(format!("{stem}.nft"))) else {
            continue;
        };
        pairs += 1;
        let from_text = text(&t).normalised();
        let from_json = parse_nft_json(&json, &NftLimits::default())
            .unwrap_or_else(|e| panic!("{name}:{e}"))
            .normalised();

        // Element counts: ours from the text listing == nft's JSON, set by set.
        let counts = json_element_counts(&json);
        let mut ours = BTreeMap::new();
        for tb in &from_text.tables {
            for s in &tb.sets {
                ours.insert((tb.name.clone(), s.name.clone()), s.elements.len());
            }
        }
        assert_eq!(ours, counts, "{name}: set element counts differ from nft's");

        assert_eq!(from_text.tables.len(), from_json.tables.len(), "{name}");
        for (a, b) in from_text.tables.iter().zip(&from_json.tables) {
            assert_eq!((a.family, &a.name), (b.family, &b.name), "{name}");
            assert_eq!(a.chains.len(), b.chains.len(), "{name} {}", a.name);
            for (ca, cb) in a.chains.iter().zip(&b.chains) {
                assert_eq!(ca.name, cb.name, "{name}");
                assert_eq!(ca.base, cb.base, "{name} chain {}", ca.name);
                assert_eq!(ca.rules.len(), cb.rules.len(), "{name} chain {}", ca.name);
                for (ra, rb) in ca.rules.iter().zip(&cb.rules) {
                    assert_eq!(ra.comment, rb.comment, "{name} {}", ra.text);
                    assert_eq!(ra.position, rb.position);
                    if ra.fully_modelled() && rb.fully_modelled() {
                        // Counter values differ between two dumps taken at different times
                        // (the moby listing shows none); everything else must agree.
                        assert_eq!(
                            without_counter_values(&ra.exprs),
                            without_counter_values(&rb.exprs),
                            "{name} chain {}: {}",
                            ca.name,
                            ra.text
                        );
                        compared_rules += 1;
                    } else {
                        // Both must say the rule holds something unmodelled.
                        assert_eq!(
                            ra.fully_modelled(),
                            rb.fully_modelled(),
                            "{name}: {}",
                            ra.text
                        );
                    }
                }
            }
            for (sa, sb) in a.sets.iter().zip(&b.sets) {
                assert_eq!(sa.name, sb.name, "{name}");
                assert_eq!(
                    sa.elements.len(),
                    sb.elements.len(),
                    "{name} set {}",
                    sa.name
                );
            }
        }
    }
    assert!(pairs >= 15, "only {pairs} text/JSON pairs");
    assert!(
        compared_rules >= 400,
        "only {compared_rules} rules compared"
    );
}

fn without_counter_values(exprs: &[Expr]) -> Vec<Expr> {
    exprs
        .iter()
        .map(|e| match e {
            Expr::Counter { name, .. } => Expr::Counter {
                counters: None,
                name: name.clone(),
            },
            e => e.clone(),
        })
        .collect()
}

#[test]
fn kube_proxy_json_equals_text_exactly() {
    // Everything kube-proxy writes is modelled, so the two dumps must agree completely.
    for stem in [
        "nftparse-kube-proxy-overall",
        "nftparse-moby-usernet-portmap",
    ] {
        let dir = nft_corpus_dir();
        let t = std::fs::read_to_string(dir.join(format!("{stem}.nft"))).unwrap();
        let j = std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap();
        let mut a = text(&t).normalised();
        // nft 1.0.6's JSON has no table or chain comments and drops the `dynamic` set flag (both fixed
        // in later versions; NFTABLES.md §3.2).
        for tb in &mut a.tables {
            tb.comment = None;
            tb.chains.iter_mut().for_each(|c| c.comment = None);
            for s in &mut tb.sets {
                s.flags.retain(|f| f != "dynamic");
            }
        }
        let mut b = parse_nft_json(&j, &NftLimits::default())
            .unwrap()
            .normalised();
        // The text files carry no handles; the JSON does.
        for tb in &mut b.tables {
            tb.handle = None;
            for s in &mut tb.sets {
                s.handle = None;
            }
            for c in &mut tb.chains {
                c.handle = None;
                for r in &mut c.rules {
                    r.handle = None;
                }
            }
        }
        if stem.contains("moby") {
            // The moby listing has no counter values (it was loaded for the JSON), and nft 1.0.6
            // could not load `priority dstnat` on output (see SOURCES).
            for (_, c, r) in a.rules() {
                assert!(r.fully_modelled(), "{}: {}", c.name, r.text);
            }
            assert_eq!(a.rule_count(), b.rule_count());
            continue;
        }
        assert_same(&a, &b, stem);
    }
}

#[test]
fn handles_are_read_from_dash_a_listings() {
    let dir = nft_corpus_dir();
    let with = text(
        &std::fs::read_to_string(dir.join("nftparse-kube-proxy-overall-handles.nft")).unwrap(),
    );
    let without =
        text(&std::fs::read_to_string(dir.join("nftparse-kube-proxy-overall.nft")).unwrap());
    assert_eq!(with.tables[0].handle, Some(1));
    let mut handles = Vec::new();
    for (_, c, r) in with.rules() {
        handles.push(r.handle.expect("every rule has a handle"));
        assert!(c.handle.is_some());
    }
    handles.sort_unstable();
    handles.dedup();
    assert_eq!(handles.len(), with.rule_count(), "handles are unique");
    for s in &with.tables[0].sets {
        assert!(s.handle.is_some(), "set {}", s.name);
    }
    // Apart from handles, the same model.
    let strip = |rs: &NftRuleset| {
        let mut rs = rs.normalised();
        for t in &mut rs.tables {
            t.handle = None;
            t.sets.iter_mut().for_each(|s| s.handle = None);
            for c in &mut t.chains {
                c.handle = None;
                c.rules.iter_mut().for_each(|r| r.handle = None);
            }
        }
        rs
    };
    assert_eq!(strip(&with), strip(&without));
}

#[test]
fn kube_proxy_nftables_mode_in_typed_forms() {
    let t =
        std::fs::read_to_string(nft_corpus_dir().join("nftparse-kube-proxy-overall.nft")).unwrap();
    let rs = text(&t);
    let kp = rs
        .table(NftFamily::Ip, "kube-proxy")
        .expect("ip kube-proxy");
    assert_eq!(kp.comment.as_deref(), Some("rules for kube-proxy"));

    // service-ips: a verdict map keyed by a concatenation, 9 elements as nft lists them.
    let sips = kp.set("service-ips").unwrap();
    assert!(sips.is_map && sips.is_verdict_map());
    assert_eq!(
        sips.key,
        SetType::Types(vec![
            "ipv4_addr".into(),
            "inet_proto".into(),
            "inet_service".into()
        ])
    );
    assert_eq!(sips.elements.len(), 9);
    let e = sips
        .elements
        .iter()
        .find(|e| {
            e.key
                == Value::Concat(vec![
                    Value::Addr(ip("172.30.0.41")),
                    Value::Sym("tcp".into()),
                    Value::Int(80),
                ])
        })
        .expect("svc1's element");
    assert_eq!(
        e.data,
        Some(MapData::Verdict(Verdict::Goto(
            "service-ULMVA6XW-ns1/svc1/tcp/p80".into()
        )))
    );
    let noep = kp.set("no-endpoint-services").unwrap();
    assert_eq!(noep.elements.len(), 3);
    let svc6 = noep
        .elements
        .iter()
        .find(|e| e.comment.as_deref() == Some("ns6/svc6:p80"))
        .unwrap();
    assert_eq!(
        svc6.data,
        Some(MapData::Verdict(Verdict::Goto("reject-chain".into())))
    );
    assert_eq!(kp.set("cluster-ips").unwrap().elements.len(), 6);
    let aff = kp
        .set("affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80")
        .unwrap();
    assert!(aff.is_dynamic());
    assert_eq!(aff.timeout.as_deref(), Some("3h"));

    // The services chain: ip daddr . meta l4proto . th dport vmap @service-ips.
    let services = kp.chain("services").unwrap();
    assert_eq!(
        services.rules[0].exprs,
        vec![Expr::Vmap {
            key: Key::Concat(vec![
                Key::Addr {
                    v6: false,
                    dir: Dir::Dst
                },
                Key::L4Proto {
                    via: ProtoVia::Meta
                },
                Key::Port {
                    proto: None,
                    dir: Dir::Dst
                },
            ]),
            map: MapRef::Named("service-ips".into()),
        }]
    );
    assert_eq!(services.rules[1].position, 2);

    // numgen endpoint selection: uniform over two endpoints.
    let svc4 = kp.chain("service-LAUZTJTB-ns4/svc4/tcp/p80").unwrap();
    let Expr::Vmap {
        key:
            Key::Numgen {
                random: true,
                modulus: 2,
                offset: 0,
            },
        map: MapRef::Anon(elems),
    } = &svc4.rules[1].exprs[0]
    else {
        panic!("expected numgen vmap, got {:?}", svc4.rules[1].exprs);
    };
    assert_eq!(elems.len(), 2);
    assert_eq!(elems[0].key, Value::Int(0));
    let branches = numgen_branches(
        &Key::Numgen {
            random: true,
            modulus: 2,
            offset: 0,
        },
        elems,
    )
    .expect("numeric keys");
    assert_eq!(branches.len(), 2);
    assert!(
        branches.iter().all(|(p, _)| (*p - 0.5).abs() < 1e-9),
        "{branches:?}"
    );
    assert_eq!(
        elems[1].data,
        Some(MapData::Verdict(Verdict::Goto(
            "endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80".into()
        )))
    );
    // ... and the masquerade-marking rule before it: a negated prefix.
    assert_eq!(
        svc4.rules[0].exprs[1],
        Expr::Match(Match {
            key: Key::Addr {
                v6: false,
                dir: Dir::Src
            },
            op: Op::Ne,
            rhs: Rhs::Values(vec![Value::Prefix(ip("10.0.0.0"), 8)]),
        })
    );

    // The endpoint chain's DNAT.
    let ep = kp
        .chain("endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80")
        .unwrap();
    assert_eq!(
        ep.rules[1].exprs,
        vec![
            Expr::Match(Match {
                key: Key::L4Proto {
                    via: ProtoVia::Meta
                },
                op: Op::Eq,
                rhs: Rhs::Values(vec![Value::Sym("tcp".into())]),
            }),
            Expr::Nat(Nat {
                kind: NatKind::Dnat,
                family: None,
                addr: Some(NatAddr::Value(Value::Addr(ip("10.180.0.5")))),
                port: Some(Value::Int(80)),
                flags: vec![],
            }),
        ]
    );

    // The reject chain and the ClusterIP checks.
    let reject = kp.chain("reject-chain").unwrap();
    assert_eq!(
        reject.comment.as_deref(),
        Some("helper for @no-endpoint-services / @no-endpoint-nodeports")
    );
    assert_eq!(
        reject.rules[0].exprs,
        vec![Expr::Verdict(Verdict::Reject { with: None })]
    );
    let cic = kp.chain("cluster-ips-check").unwrap();
    assert_eq!(
        cic.rules[0].comment.as_deref(),
        Some("Reject traffic to invalid ports of ClusterIPs")
    );
    assert_eq!(
        cic.rules[0].exprs[0],
        Expr::Match(Match {
            key: Key::Addr {
                v6: false,
                dir: Dir::Dst
            },
            op: Op::Eq,
            rhs: Rhs::SetRef("cluster-ips".into()),
        })
    );

    // Marks and masquerade.
    let masq = kp.chain("masquerading").unwrap();
    assert_eq!(
        masq.rules[0].exprs,
        vec![
            Expr::Match(Match {
                key: Key::Masked {
                    key: Box::new(Key::Meta(MetaKey::Mark)),
                    op: BitOp::And,
                    value: 0x4000
                },
                op: Op::Eq,
                rhs: Rhs::Values(vec![Value::Int(0)]),
            }),
            Expr::Verdict(Verdict::Return),
        ]
    );
    assert_eq!(
        masq.rules[1].exprs,
        vec![Expr::SetMark {
            target: MarkTarget::Meta,
            value: MarkValue::Xor(0x4000)
        }]
    );
    assert_eq!(
        masq.rules[2].exprs,
        vec![Expr::Nat(Nat {
            kind: NatKind::Masquerade,
            family: None,
            addr: None,
            port: None,
            flags: vec!["fully-random".into()],
        })]
    );

    // Base chains: symbolic priorities resolved per hook, numbers kept.
    let pre = kp
        .chain("filter-prerouting-pre-dnat")
        .unwrap()
        .base
        .clone()
        .unwrap();
    assert_eq!(
        (pre.kind, pre.hook, pre.priority),
        (ChainType::Filter, Hook::Prerouting, -110)
    );
    assert_eq!(pre.priority_text.as_deref(), Some("dstnat - 10"));
    assert_eq!(pre.policy, Some(Policy::Accept));
    let out = kp
        .chain("filter-output-pre-dnat")
        .unwrap()
        .base
        .clone()
        .unwrap();
    assert_eq!((out.priority, out.priority_text), (-110, None));
    let post = kp.chain("nat-postrouting").unwrap().base.clone().unwrap();
    assert_eq!((post.kind, post.priority), (ChainType::Nat, 100));

    // ct state new jump …: a bitmask test, not equality.
    let fwd = kp.chain("filter-forward").unwrap();
    assert_eq!(
        fwd.rules[0].exprs[0],
        Expr::Match(Match {
            key: Key::Ct {
                dir: None,
                key: CtKey::State
            },
            op: Op::Implicit,
            rhs: Rhs::Values(vec![Value::Sym("new".into())]),
        })
    );
    // Affinity: a packet-path set update.
    let aff_ep = kp
        .chain("endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80")
        .unwrap();
    assert!(matches!(
        &aff_ep.rules[1].exprs[0],
        Expr::SetUpdate { op, key: Key::Addr { v6: false, dir: Dir::Src }, .. } if op == "update"
    ));
    // Every kube-proxy rule is fully modelled.
    for (_, c, r) in rs.rules() {
        assert!(r.fully_modelled(), "{}: {}", c.name, r.text);
    }
}

#[test]
fn kube_proxy_ipv6_in_typed_forms() {
    // kube-proxy ≤ 1.33 layout (filter chains at -110, filter-output-post-dnat at -90), IPv6.
    let t =
        std::fs::read_to_string(nft_corpus_dir().join("nftparse-kube-proxy-ipv6-knftables.nft"))
            .unwrap();
    let rs = text(&t);
    let kp = rs.table(NftFamily::Ip6, "kube-proxy").unwrap();
    let prio = |c: &str| kp.chain(c).unwrap().base.as_ref().unwrap().priority;
    assert_eq!(prio("filter-forward"), -110);
    assert_eq!(prio("filter-output-post-dnat"), -90);
    let ep = kp
        .chain("endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80")
        .unwrap();
    assert_eq!(
        ep.rules[1].exprs[1],
        Expr::Nat(Nat {
            kind: NatKind::Dnat,
            family: None,
            addr: Some(NatAddr::Value(Value::Addr(ip("fd00:10:180::1")))),
            port: Some(Value::Int(80)),
            flags: vec![],
        })
    );
    assert_eq!(
        ep.rules[1].text,
        "meta l4proto tcp dnat to [fd00:10:180::1]:80"
    );
    let svc = kp.chain("service-ULMVA6XW-ns1/svc1/tcp/p80").unwrap();
    assert_eq!(
        svc.rules[0].exprs[..3],
        [
            Expr::Match(Match {
                key: Key::Addr {
                    v6: true,
                    dir: Dir::Dst
                },
                op: Op::Eq,
                rhs: Rhs::Values(vec![Value::Addr(ip("fd00:172:30::41"))]),
            }),
            Expr::Match(Match {
                key: Key::Port {
                    proto: Some(L4Proto::Tcp),
                    dir: Dir::Dst
                },
                op: Op::Eq,
                rhs: Rhs::Values(vec![Value::Int(80)]),
            }),
            Expr::Match(Match {
                key: Key::Addr {
                    v6: true,
                    dir: Dir::Src
                },
                op: Op::Ne,
                rhs: Rhs::Values(vec![Value::Prefix(ip("fd00:10::"), 64)]),
            }),
        ]
    );
    let np = kp.set("nodeport-ips").unwrap();
    assert_eq!(np.elements.len(), 2);
    assert_eq!(np.elements[0].comment.as_deref(), Some("test comment"));
    for (_, c, r) in rs.rules() {
        assert!(r.fully_modelled(), "{}: {}", c.name, r.text);
    }
}

#[test]
fn docker_layout_in_typed_forms() {
    let t = std::fs::read_to_string(nft_corpus_dir().join("nftparse-moby-usernet-portmap.nft"))
        .unwrap();
    let rs = text(&t);
    let tb = rs.table(NftFamily::Ip, "docker-bridges").unwrap();
    let m = tb.set("filter-forward-in-jumps").unwrap();
    assert_eq!(m.key, SetType::Types(vec!["ifname".into()]));
    assert_eq!(m.elements[0].key, Value::Str("docker0".into()));
    let dnat = &tb.chain("nat-prerouting-and-output").unwrap().rules[0];
    assert_eq!(dnat.comment.as_deref(), Some("DNAT"));
    assert_eq!(
        dnat.exprs[0],
        Expr::Match(Match {
            key: Key::Iface {
                dir: IfaceDir::In,
                by_name: true
            },
            op: Op::Ne,
            rhs: Rhs::Values(vec![Value::Str("bridge1".into())]),
        })
    );
    assert_eq!(
        dnat.exprs[1],
        Expr::Match(Match {
            key: Key::Port {
                proto: Some(L4Proto::Tcp),
                dir: Dir::Dst
            },
            op: Op::Eq,
            rhs: Rhs::Values(vec![Value::Int(8080)]),
        })
    );
    assert_eq!(
        dnat.exprs[2],
        Expr::Counter {
            counters: None,
            name: None
        }
    );
    let out = tb.chain("nat-OUTPUT").unwrap();
    let b = out.base.as_ref().unwrap();
    assert_eq!(
        (b.priority, b.priority_text.as_deref()),
        (-100, Some("dstnat"))
    );
    assert_eq!(
        out.rules[0].exprs[1],
        Expr::Match(Match {
            key: Key::Fib {
                flags: vec!["daddr".into()],
                result: "type".into()
            },
            op: Op::Eq,
            rhs: Rhs::Values(vec![Value::Sym("local".into())]),
        })
    );
    let raw = tb.chain("raw-PREROUTING").unwrap().base.clone().unwrap();
    assert_eq!(raw.priority, -300);
    assert!(
        tb.chain("nat-postrouting-in__docker0")
            .unwrap()
            .rules
            .is_empty()
    );
}

#[test]
fn calico_layout_in_typed_forms() {
    let t = std::fs::read_to_string(
        nft_corpus_dir().join("nftparse-calico-felix-fv-cali-nftables-dump.nft"),
    )
    .unwrap();
    let rs = text(&t);
    let tb = rs.table(NftFamily::Ip, "calico").unwrap();
    for (_, c, r) in rs.rules() {
        assert!(r.fully_modelled(), "{}: {}", c.name, r.text);
        assert!(
            r.comment.as_deref().is_some_and(|c| c.starts_with("cali:")),
            "{}",
            r.text
        );
    }
    let prio = |c: &str| tb.chain(c).unwrap().base.as_ref().unwrap().priority;
    assert_eq!(prio("nat-POSTROUTING"), 110);
    assert_eq!(prio("mangle-PREROUTING"), -150);
    assert_eq!(prio("raw-OUTPUT"), -300);
    assert_eq!(prio("nat-OUTPUT"), 110);
    assert_eq!(
        tb.chain("mangle-OUTPUT")
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .kind,
        ChainType::Route
    );
    // Workload dispatch: an ifname verdict map, empty on this node.
    let d = tb.set("filter-cali-from-wl-dispatch").unwrap();
    assert!(d.is_verdict_map() && d.elements.is_empty());
    assert_eq!(
        tb.chain("filter-cali-from-wl-dispatch").unwrap().rules[0].exprs,
        vec![Expr::Vmap {
            key: Key::Iface {
                dir: IfaceDir::In,
                by_name: true
            },
            map: MapRef::Named("filter-cali-from-wl-dispatch".into()),
        }]
    );
    // Strict RPF: fib with the mark in the tuple, result oif compared with 0.
    let rpf = &tb.chain("raw-cali-PREROUTING").unwrap().rules[4];
    assert_eq!(
        rpf.exprs[1],
        Expr::Match(Match {
            key: Key::Fib {
                flags: vec!["saddr".into(), "mark".into(), "iif".into()],
                result: "oif".into()
            },
            op: Op::Eq,
            rhs: Rhs::Values(vec![Value::Int(0)]),
        })
    );
    // Mark clearing and VXLAN notrack.
    assert_eq!(
        tb.chain("raw-cali-PREROUTING").unwrap().rules[0].exprs[1],
        Expr::SetMark {
            target: MarkTarget::Meta,
            value: MarkValue::And(0xffe4_ffff)
        }
    );
    assert_eq!(
        tb.chain("raw-cali-PREROUTING").unwrap().rules[1].exprs[2],
        Expr::Notrack
    );
    // Outgoing NAT: two set lookups, one negated.
    assert_eq!(
        tb.chain("nat-cali-nat-outgoing").unwrap().rules[0].exprs[1],
        Expr::Match(Match {
            key: Key::Addr {
                v6: false,
                dir: Dir::Dst
            },
            op: Op::Ne,
            rhs: Rhs::SetRef("cali40network-ip-pools".into()),
        })
    );
    assert_eq!(tb.set("cali40this-host").unwrap().elements.len(), 4);
}

#[test]
fn symbolic_priorities_resolve_per_family_and_hook() {
    let rs = text(
        "table bridge b {\n\tchain p {\n\t\ttype filter hook prerouting priority dstnat; policy accept;\n\t}\n\tchain f {\n\t\ttype filter hook forward priority filter + 5; policy drop;\n\t}\n}\ntable inet i {\n\tchain s {\n\t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\t}\n\tchain m {\n\t\ttype route hook output priority mangle; policy accept;\n\t}\n}\n",
    );
    let prio = |t: usize, c: usize| rs.tables[t].chains[c].base.as_ref().unwrap().priority;
    assert_eq!(prio(0, 0), -300);
    assert_eq!(prio(0, 1), -195);
    assert_eq!(
        rs.tables[0].chains[1].base.as_ref().unwrap().policy,
        Some(Policy::Drop)
    );
    assert_eq!(prio(1, 0), 110);
    assert_eq!(prio(1, 1), -150);
    assert_eq!(
        rs.tables[1].chains[1].base.as_ref().unwrap().kind,
        ChainType::Route
    );
    // A name not valid in that family is an error at the priority.
    let e = parse_nft_text(
        "table bridge b {\n\tchain p {\n\t\ttype filter hook input priority mangle;\n\t}\n}\n",
        &NftLimits::default(),
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (3, 35), "{e}");
    assert!(e.message.contains("expected a priority"), "{e}");
}

#[test]
fn broken_input_fails_at_line_and_column() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("tabel ip t {\n}\n", 1, 1, "expected `table`, found `tabel`"),
        (
            "table ip t {\n\tchain c {\n\t\tip saddr 1.2.3.4 accept\n",
            4,
            1,
            "expected `}` closing the chain",
        ),
        (
            "table ip t {\n\tchain c {\n\t\ttype filter hook sideways priority 0;\n\t}\n}\n",
            3,
            20,
            "expected a hook",
        ),
        (
            "table ip t {\n\tchain c {\n\t\ttype filter priority 0;\n\t}\n}\n",
            3,
            15,
            "expected `hook`",
        ),
        (
            "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 1.2.3.4 2.3.4.5 }\n\t}\n}\n",
            4,
            14,
            "expected set elements",
        ),
        (
            "table ip t {\n\tchain c {\n\t\tcomment \"unterminated\n\t}\n}\n",
            3,
            11,
            "unterminated string",
        ),
        (
            "table ip t {\n\tchain c {\n\t\tpolicy drop;\n\t}\n}\n",
            3,
            3,
            "a policy needs a base chain",
        ),
        (
            "table ip t {\n\tchain c {\n\t\tip daddr { 1.2.3.4\n",
            3,
            12,
            "unclosed `{` in this rule",
        ),
        (
            "table ip t {\n\tchain c {\n\t\ttcp flags & (syn | ack } drop\n\t}\n}\n",
            3,
            26,
            "expected `)`, found `}`",
        ),
        (
            "table ip t {\n\tchain c {\n\t\tip daddr { 1.2.3.4\n\t}\n}\n",
            6,
            1,
            "expected `}` closing the table",
        ),
        (
            "table ip t {\n\tset s {\n\t\telements = 1\n\t}\n}\n",
            3,
            14,
            "expected `{`",
        ),
    ];
    for (input, line, col, what) in cases {
        let e = parse_nft_text(input, &NftLimits::default()).expect_err(input);
        assert_eq!((e.line, e.column), (*line, *col), "{input:?}: {e}");
        assert!(e.message.contains(what), "{input:?}: {e}");
    }
    // Control characters in what was found are escaped in the message.
    let e = parse_nft_text(
        "table ip t {\n\tchain c {\n\t\ttype \u{1b}[31m hook input priority 0;\n\t}\n}\n",
        &NftLimits::default(),
    )
    .unwrap_err();
    assert!(e.message.contains("\\u{1b}"), "{e}");
    assert!(!e.to_string().contains('\u{1b}'));
    // Limits are enforced with a clear message.
    let lim = NftLimits {
        max_rules: 1,
        ..NftLimits::default()
    };
    let e = parse_nft_text(
        "table ip t {\n\tchain c {\n\t\taccept\n\t\tdrop\n\t}\n}\n",
        &lim,
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (4, 3));
    assert!(e.message.contains("more than 1 rules"), "{e}");
    // JSON: syntax errors keep the reader's position, structure errors name the item.
    let e = parse_nft_json(
        "{\"nftables\": [\n  {\"table\": }\n]}",
        &NftLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let e = parse_nft_json(
        "{\"nftables\": [{\"chain\": {\"family\": \"ip\", \"table\": \"nope\", \"name\": \"c\"}}]}",
        &NftLimits::default(),
    )
    .unwrap_err();
    assert!(
        e.message.contains("item 0") && e.message.contains("`nope`"),
        "{e}"
    );
}

#[test]
fn unknown_expressions_become_unmodelled_and_the_rest_stays_typed() {
    let r = rule_of("rt type 0 counter packets 0 bytes 0 drop");
    assert_eq!(
        r.exprs,
        vec![
            Expr::Unmodelled {
                text: "rt type 0".into()
            },
            Expr::Counter {
                counters: Some(nfscope_ruleset::Counters {
                    packets: 0,
                    bytes: 0
                }),
                name: None
            },
            Expr::Verdict(Verdict::Drop),
        ]
    );
    assert!(!r.fully_modelled());
    // A concatenation with an unknown part is unmodelled as a whole: its `iifname` must not be
    // read as a vmap key of its own.
    let r = rule_of("ipsec in reqid . iifname vmap @m5");
    assert_eq!(
        r.exprs,
        vec![Expr::Unmodelled {
            text: "ipsec in reqid . iifname vmap @m5".into()
        }]
    );
    // An anonymous chain is kept whole, braces and all.
    let r = rule_of("ip daddr 192.168.2.20 jump { tcp dport { 80, 443 } accept }");
    assert_eq!(r.exprs.len(), 2);
    assert_eq!(
        r.exprs[1],
        Expr::Unmodelled {
            text: "jump { tcp dport { 80, 443 } accept }".into()
        }
    );
    assert_eq!(
        r.text,
        "ip daddr 192.168.2.20 jump { tcp dport { 80, 443 } accept }"
    );
    // Raw payloads, options and shifts.
    for body in [
        "@th,160,128 0x1 drop",
        "tcp option maxseg size set rt mtu",
        "ip saddr . \"lo\" @s counter",
    ] {
        let r = rule_of(body);
        assert!(
            r.exprs.iter().any(|e| matches!(e, Expr::Unmodelled { .. })),
            "{body}: {:?}",
            r.exprs
        );
        let again = rule_of(&r.text);
        assert_eq!(again.exprs, r.exprs, "{body}");
    }
    // limit/quota are modelled as state nfscope cannot know (MAY), not as pass or fail.
    let r = rule_of("limit rate over 10/second burst 5 packets drop");
    assert_eq!(
        r.exprs[0],
        Expr::Stateful {
            kind: "limit".into(),
            text: "limit rate over 10/second burst 5 packets".into()
        }
    );
    assert_eq!(r.exprs[1], Expr::Verdict(Verdict::Drop));
    assert!(!r.fully_modelled());
    // JSON: an xt statement (iptables-nft's opaque blob) is kept as its JSON.
    let rs = parse_nft_json(
        r#"{"nftables": [{"table": {"family": "ip", "name": "nat", "handle": 1}},
            {"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "handle": 2, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth0"}},
                {"counter": {"packets": 3, "bytes": 180}},
                {"xt": {"type": "target", "name": "MASQUERADE"}}]}}]}"#,
        &NftLimits::default(),
    )
    .unwrap();
    let r = &rs.tables[0].chains[0].rules[0];
    assert_eq!(r.handle, Some(2));
    assert_eq!(
        r.exprs[0],
        Expr::Match(Match {
            key: Key::Iface {
                dir: IfaceDir::Out,
                by_name: true
            },
            op: Op::Eq,
            rhs: Rhs::Values(vec![Value::Str("eth0".into())]),
        })
    );
    assert!(
        matches!(&r.exprs[2], Expr::Unmodelled { text } if text.contains("MASQUERADE")),
        "{:?}",
        r.exprs
    );
}

#[test]
fn statements_in_typed_forms() {
    let cases: Vec<(&str, Vec<Expr>)> = vec![
        (
            "iifname \"veth*\" oif 3 accept",
            vec![
                Expr::Match(Match {
                    key: Key::Iface {
                        dir: IfaceDir::In,
                        by_name: true,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Str("veth*".into())]),
                }),
                Expr::Match(Match {
                    key: Key::Iface {
                        dir: IfaceDir::Out,
                        by_name: false,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Int(3)]),
                }),
                Expr::Verdict(Verdict::Accept),
            ],
        ),
        (
            "tcp dport { 80, 1000-2000 } ct state established,related ct mark set meta mark & 0x0000ff00",
            vec![
                Expr::Match(Match {
                    key: Key::Port {
                        proto: Some(L4Proto::Tcp),
                        dir: Dir::Dst,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Anon(vec![
                        SetElem {
                            key: Value::Int(80),
                            data: None,
                            comment: None,
                            options: vec![],
                        },
                        SetElem {
                            key: Value::Range(
                                Box::new(Value::Int(1000)),
                                Box::new(Value::Int(2000)),
                            ),
                            data: None,
                            comment: None,
                            options: vec![],
                        },
                    ]),
                }),
                Expr::Match(Match {
                    key: Key::Ct {
                        dir: None,
                        key: CtKey::State,
                    },
                    op: Op::Implicit,
                    rhs: Rhs::Values(vec![
                        Value::Sym("established".into()),
                        Value::Sym("related".into()),
                    ]),
                }),
                Expr::SetMark {
                    target: MarkTarget::Ct,
                    value: MarkValue::From {
                        key: Key::Masked {
                            key: Box::new(Key::Meta(MetaKey::Mark)),
                            op: BitOp::And,
                            value: 0xff00,
                        },
                    },
                },
            ],
        ),
        (
            "ct original ip daddr 10.96.0.1 meta skuid 0 meta pkttype host notrack",
            vec![
                Expr::Match(Match {
                    key: Key::Ct {
                        dir: Some(CtDir::Original),
                        key: CtKey::Addr {
                            v6: Some(false),
                            dir: Dir::Dst,
                        },
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Addr(ip("10.96.0.1"))]),
                }),
                Expr::Match(Match {
                    key: Key::Meta(MetaKey::Skuid),
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Int(0)]),
                }),
                Expr::Match(Match {
                    key: Key::Meta(MetaKey::Pkttype),
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Sym("host".into())]),
                }),
                Expr::Notrack,
            ],
        ),
        (
            "dnat ip to numgen inc mod 2 map { 0 : 10.0.0.1, 1 : 10.0.0.2 }",
            vec![Expr::Nat(Nat {
                kind: NatKind::Dnat,
                family: Some(false),
                addr: Some(NatAddr::Map {
                    key: Key::Numgen {
                        random: false,
                        modulus: 2,
                        offset: 0,
                    },
                    map: MapRef::Anon(vec![
                        SetElem {
                            key: Value::Int(0),
                            data: Some(MapData::Value(Value::Addr(ip("10.0.0.1")))),
                            comment: None,
                            options: vec![],
                        },
                        SetElem {
                            key: Value::Int(1),
                            data: Some(MapData::Value(Value::Addr(ip("10.0.0.2")))),
                            comment: None,
                            options: vec![],
                        },
                    ]),
                }),
                port: None,
                flags: vec![],
            })],
        ),
        (
            "dnat ip6 to [fd10:88:a::1]:53 snat to 192.168.3.2-192.168.3.4:8080-8999 redirect to :15001 tproxy ip to 127.0.0.1:3129",
            vec![
                Expr::Nat(Nat {
                    kind: NatKind::Dnat,
                    family: Some(true),
                    addr: Some(NatAddr::Value(Value::Addr(ip("fd10:88:a::1")))),
                    port: Some(Value::Int(53)),
                    flags: vec![],
                }),
                Expr::Nat(Nat {
                    kind: NatKind::Snat,
                    family: None,
                    addr: Some(NatAddr::Value(Value::Range(
                        Box::new(Value::Addr(ip("192.168.3.2"))),
                        Box::new(Value::Addr(ip("192.168.3.4"))),
                    ))),
                    port: Some(Value::Range(
                        Box::new(Value::Int(8080)),
                        Box::new(Value::Int(8999)),
                    )),
                    flags: vec![],
                }),
                Expr::Nat(Nat {
                    kind: NatKind::Redirect,
                    family: None,
                    addr: None,
                    port: Some(Value::Int(15001)),
                    flags: vec![],
                }),
                Expr::Nat(Nat {
                    kind: NatKind::Tproxy,
                    family: Some(false),
                    addr: Some(NatAddr::Value(Value::Addr(ip("127.0.0.1")))),
                    port: Some(Value::Int(3129)),
                    flags: vec![],
                }),
            ],
        ),
        (
            "log prefix \"drop: \" group 2 reject with tcp reset",
            vec![
                Expr::Log {
                    prefix: Some("drop: ".into()),
                    group: Some(2),
                    options: vec![],
                },
                Expr::Verdict(Verdict::Reject {
                    with: Some("tcp reset".into()),
                }),
            ],
        ),
        (
            "fib saddr . iif oif missing icmpv6 type { nd-neighbor-solicit, nd-router-advert } queue flags bypass to 0-3",
            vec![
                Expr::Match(Match {
                    key: Key::Fib {
                        flags: vec!["saddr".into(), "iif".into()],
                        result: "oif".into(),
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Sym("missing".into())]),
                }),
                Expr::Match(Match {
                    key: Key::Icmp {
                        v6: true,
                        is_type: true,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Anon(vec![
                        SetElem {
                            key: Value::Sym("nd-neighbor-solicit".into()),
                            data: None,
                            comment: None,
                            options: vec![],
                        },
                        SetElem {
                            key: Value::Sym("nd-router-advert".into()),
                            data: None,
                            comment: None,
                            options: vec![],
                        },
                    ]),
                }),
                Expr::Verdict(Verdict::Queue {
                    options: "flags bypass to 0-3".into(),
                }),
            ],
        ),
        (
            "meta mark set 0x00000010 ct zone set 3 meta nfproto ipv6 goto other",
            vec![
                Expr::SetMark {
                    target: MarkTarget::Meta,
                    value: MarkValue::Set(0x10),
                },
                Expr::Mangle {
                    key: Key::Ct {
                        dir: None,
                        key: CtKey::Zone,
                    },
                    value: "3".into(),
                },
                Expr::Match(Match {
                    key: Key::NfProto,
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Sym("ipv6".into())]),
                }),
                Expr::Verdict(Verdict::Goto("other".into())),
            ],
        ),
    ];
    let syn_of_four = Key::Masked {
        key: Box::new(Key::TcpFlags),
        op: BitOp::And,
        value: 0x17,
    };
    let cases = cases.into_iter().chain([
        (
            // Service names as older nft prints them are the port numbers.
            "udp dport { domain, ntp } tcp sport ssh accept",
            vec![
                Expr::Match(Match {
                    key: Key::Port {
                        proto: Some(L4Proto::Udp),
                        dir: Dir::Dst,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Anon(vec![
                        SetElem {
                            key: Value::Int(53),
                            data: None,
                            comment: None,
                            options: vec![],
                        },
                        SetElem {
                            key: Value::Int(123),
                            data: None,
                            comment: None,
                            options: vec![],
                        },
                    ]),
                }),
                Expr::Match(Match {
                    key: Key::Port {
                        proto: Some(L4Proto::Tcp),
                        dir: Dir::Src,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Int(22)]),
                }),
                Expr::Verdict(Verdict::Accept),
            ],
        ),
        (
            // iptables-nft's `-p udp --dport 53`: the explicit protocol check is the port key's.
            "meta l4proto udp udp dport 53 accept",
            vec![
                Expr::Match(Match {
                    key: Key::Port {
                        proto: Some(L4Proto::Udp),
                        dir: Dir::Dst,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Int(53)]),
                }),
                Expr::Verdict(Verdict::Accept),
            ],
        ),
        (
            // ... but not when it guards something else, nor `ip protocol` (IPv4-only in inet).
            "meta l4proto tcp ip protocol tcp tcp dport 22 accept",
            vec![
                Expr::Match(Match {
                    key: Key::L4Proto {
                        via: ProtoVia::Meta,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Sym("tcp".into())]),
                }),
                Expr::Match(Match {
                    key: Key::L4Proto {
                        via: ProtoVia::IpProtocol,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Sym("tcp".into())]),
                }),
                Expr::Match(Match {
                    key: Key::Port {
                        proto: Some(L4Proto::Tcp),
                        dir: Dir::Dst,
                    },
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Int(22)]),
                }),
                Expr::Verdict(Verdict::Accept),
            ],
        ),
        (
            "tcp flags & (fin | syn | rst | ack) != syn drop",
            vec![
                Expr::Match(Match {
                    key: syn_of_four.clone(),
                    op: Op::Ne,
                    rhs: Rhs::Values(vec![Value::Sym("syn".into())]),
                }),
                Expr::Verdict(Verdict::Drop),
            ],
        ),
        (
            // nft ≥ 1.0.x spelling of the same test.
            "tcp flags syn / fin,syn,rst,ack accept",
            vec![
                Expr::Match(Match {
                    key: syn_of_four,
                    op: Op::Eq,
                    rhs: Rhs::Values(vec![Value::Sym("syn".into())]),
                }),
                Expr::Verdict(Verdict::Accept),
            ],
        ),
    ]);
    for (body, want) in cases {
        let r = rule_of(body);
        assert_eq!(r.exprs, want, "{body}");
        assert_eq!(rule_of(&r.text).exprs, want, "{body} → {}", r.text);
    }
}

#[test]
fn iptables_nft_tables_as_nft_lists_them() {
    // nft 1.0.6 listing of a namespace with three iptables-nft rules (with its stderr warnings
    // appended): `-m recent` has no translation, `-m statistic` has, `-m comment` is dropped.
    let rs = text(
        "table ip nat {\n\tchain POSTROUTING {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"eth0\"  counter packets 0 bytes 0 masquerade fully-random\n\t}\n}\ntable ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 ct state new xt match recent counter packets 0 bytes 0 accept\n\t\tmeta random & 2147483647 < 536870912 counter packets 0 bytes 0 drop\n\t}\n}\n# Warning: table ip nat is managed by iptables-nft, do not touch!\n# Warning: table ip filter is managed by iptables-nft, do not touch!\n",
    );
    assert_eq!(rs.notices.len(), 2);
    assert!(rs.notices[0].contains("managed by iptables-nft"));
    let input = &rs.tables[1].chains[0];
    assert_eq!(
        input.rules[0].exprs[2],
        Expr::Unmodelled {
            text: "xt match recent".into()
        }
    );
    assert_eq!(input.rules[0].exprs[4], Expr::Verdict(Verdict::Accept));
    // -m statistic --probability 0.25, as nft translates it: one numgen form.
    assert_eq!(
        input.rules[1].exprs[0],
        Expr::Match(Match {
            key: Key::Numgen {
                random: true,
                modulus: 1 << 31,
                offset: 0
            },
            op: Op::Lt,
            rhs: Rhs::Values(vec![Value::Int(536_870_912)]),
        })
    );
    let again = text(&render_nft(&rs));
    assert_eq!(again.notices, rs.notices);
    assert_eq!(strip_lines(&again), strip_lines(&rs));
}

#[test]
fn dump_formats_are_detected() {
    use nfscope_ruleset::{Format, detect_format};
    for (name, t) in nft_corpus_files(".nft") {
        assert_eq!(detect_format(&t), Format::NftText, "{name}");
    }
    for (name, t) in nft_corpus_files(".json") {
        assert_eq!(detect_format(&t), Format::NftJson, "{name}");
    }
    for t in [
        "# Generated by iptables-save v1.8.10 (nf_tables) on Sat Mar  7 10:00:00 2026\n*nat\n",
        "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
        "-P INPUT ACCEPT\n-A INPUT -j DROP\n",
    ] {
        assert_eq!(detect_format(t), Format::IptablesSave, "{t}");
    }
}

#[test]
fn numgen_branch_probabilities() {
    let r = rule_of("numgen inc mod 4 offset 10 vmap { 10-12 : goto a, 13 : goto b, 99 : drop }");
    let Expr::Vmap {
        key,
        map: MapRef::Anon(elems),
    } = &r.exprs[0]
    else {
        panic!("{:?}", r.exprs);
    };
    let b = numgen_branches(key, elems).unwrap();
    let p: Vec<f64> = b.iter().map(|(p, _)| *p).collect();
    assert_eq!(p, vec![0.75, 0.25, 0.0]);
    assert_eq!(b[1].1, &MapData::Verdict(Verdict::Goto("b".into())));
    assert!(numgen_branches(&Key::TcpFlags, elems).is_none());
}

#[test]
fn line_continuations_comments_and_semicolons() {
    let a = text(
        "# a ruleset\ntable inet f { # handle 3\n\tchain c { # handle 1\n\t\ttype filter hook input priority 0; policy drop;\n\t\tip saddr 10.0.0.1\\\n\t\t  tcp dport 22 accept; udp dport 53 accept # handle 7\n\t}\n}\n",
    );
    let c = &a.tables[0].chains[0];
    assert_eq!(a.tables[0].handle, Some(3));
    assert_eq!(c.handle, Some(1));
    assert_eq!(c.rules.len(), 2);
    assert_eq!(c.rules[0].text, "ip saddr 10.0.0.1 tcp dport 22 accept");
    assert_eq!((c.rules[0].line, c.rules[0].handle), (5, None));
    assert_eq!((c.rules[1].position, c.rules[1].handle), (2, Some(7)));
    // A backslash that does not end a line is refused where it stands.
    let e = parse_nft_text(
        "table ip t {\n\tchain c {\n\t\tip saddr 1.2.3.4\\ accept\n\t}\n}\n",
        &NftLimits::default(),
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (3, 19), "{e}");
}

#[test]
fn one_line_input_as_people_write_it() {
    // The issue's one-rule table, written on one line as `nft -f` accepts it.
    let rs = text(
        "table ip s { chain i { type filter hook input priority 0; tcp dport 5555 drop } }\ntable inet f { set b { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 1.2.3.4 } }; chain o { type filter hook output priority 0; policy drop; ip daddr @b accept; } }\n",
    );
    let i = rs.tables[0].chain("i").unwrap();
    assert_eq!(i.base.as_ref().unwrap().hook, Hook::Input);
    assert_eq!(
        i.rules[0].exprs,
        vec![
            Expr::Match(Match {
                key: Key::Port {
                    proto: Some(L4Proto::Tcp),
                    dir: Dir::Dst
                },
                op: Op::Eq,
                rhs: Rhs::Values(vec![Value::Int(5555)]),
            }),
            Expr::Verdict(Verdict::Drop),
        ]
    );
    let f = &rs.tables[1];
    assert_eq!(f.set("b").unwrap().elements.len(), 2);
    let o = f.chain("o").unwrap();
    assert_eq!(o.base.as_ref().unwrap().policy, Some(Policy::Drop));
    assert_eq!(o.rules.len(), 1);
    assert_eq!(o.rules[0].text, "ip daddr @b accept");
}

#[test]
fn interval_and_concatenated_set_elements_count_as_listed() {
    let rs = text(
        "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 1.2.3.4, 10.0.0.0/8,\n\t\t\t     192.168.1.1-192.168.1.9 }\n\t}\n\tset c {\n\t\ttype ipv4_addr . inet_service\n\t\tflags interval\n\t\telements = { 10.0.0.0/24 . 80-90 comment \"a\", 10.1.0.1 . 443 timeout 1h expires 59m counter packets 4 bytes 336 }\n\t}\n}\n",
    );
    let s = &rs.tables[0].sets[0];
    assert_eq!(
        s.elements.len(),
        3,
        "the kernel's 7 boundaries are 3 listed elements"
    );
    assert_eq!(s.flags, vec!["interval".to_string()]);
    assert_eq!(
        s.elements[2].key,
        Value::Range(
            Box::new(Value::Addr(ip("192.168.1.1"))),
            Box::new(Value::Addr(ip("192.168.1.9")))
        )
    );
    let c = &rs.tables[0].sets[1];
    assert_eq!(c.elements.len(), 2);
    assert_eq!(c.elements[0].comment.as_deref(), Some("a"));
    assert_eq!(
        c.elements[1].options,
        vec!["timeout 1h", "expires 59m", "counter packets 4 bytes 336"]
    );
}
