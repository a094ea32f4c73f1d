//! Differential: the retired string matcher against the typed path, over every corpus ruleset
//! and a grid of packets built from each ruleset's own addresses, ports, interfaces and marks.

use std::collections::BTreeSet;
use std::net::IpAddr;

use nfscope_ruleset::typed::{Expr, IfaceDir, Key, MetaKey, Value};
use nfscope_ruleset::{Family, ParseOptions, Ruleset, parse_ipsets, parse_ruleset};
use nfscope_test_support::{corpus_files, corpus_rules};

use crate::packet::{CtState, Packet, Proto};
use crate::{TraceInput, TraceResult, Tracer};

/// Values the ruleset itself tests, so the grid reaches its rules.
#[derive(Default)]
struct Pools {
    addrs: BTreeSet<IpAddr>,
    ports: BTreeSet<u16>,
    ifaces: BTreeSet<String>,
    marks: BTreeSet<u32>,
}

fn first_addr(v: &Value) -> Option<IpAddr> {
    match v {
        Value::Addr(a) | Value::Prefix(a, _) => Some(*a),
        Value::Range(a, _) => first_addr(a),
        _ => None,
    }
}

fn harvest(rs: &Ruleset) -> Pools {
    let mut p = Pools::default();
    let lowered = rs.lower();
    for (_, _, rule) in lowered.rules() {
        for e in &rule.exprs {
            let Expr::Match(m) = e else { continue };
            let vals: Vec<&Value> = match &m.rhs {
                nfscope_ruleset::typed::Rhs::Values(v) => v.iter().collect(),
                nfscope_ruleset::typed::Rhs::Anon(es) => es.iter().map(|e| &e.key).collect(),
                nfscope_ruleset::typed::Rhs::SetRef(_) => Vec::new(),
            };
            for v in vals {
                match (&m.key, v) {
                    (Key::Addr { .. }, v) => p.addrs.extend(first_addr(v)),
                    (Key::Port { .. }, Value::Int(n)) => {
                        p.ports.extend(u16::try_from(*n).ok());
                    }
                    (Key::Port { .. }, Value::Range(a, b)) => {
                        for x in [a, b] {
                            if let Value::Int(n) = **x {
                                p.ports.extend(u16::try_from(n).ok());
                            }
                        }
                    }
                    (Key::Iface { .. } | Key::Physdev { .. }, Value::Str(s)) => {
                        let name = match s.strip_suffix('*') {
                            Some(pre) => format!("{pre}0"),
                            None => s.clone(),
                        };
                        if crate::packet::validate_iface_name(&name).is_ok() {
                            p.ifaces.insert(name);
                        }
                    }
                    (Key::Meta(MetaKey::Mark), Value::Int(n))
                    | (Key::Masked { .. }, Value::Int(n)) => {
                        p.marks.extend(u32::try_from(*n).ok());
                    }
                    _ => {}
                }
            }
            if let Key::Masked { key, value, .. } = &m.key
                && matches!(**key, Key::Meta(MetaKey::Mark))
            {
                p.marks.extend(u32::try_from(*value).ok());
            }
        }
    }
    let _ = IfaceDir::In;
    p
}

/// A small deterministic generator (no clock, no randomness source).
struct Lcg(u64);

impl Lcg {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        &items[((self.0 >> 33) as usize) % items.len()]
    }
}

fn grid(rs: &Ruleset, pools: &Pools, n: usize, seed: u64) -> Vec<Packet> {
    let v6 = rs.family == Family::Ipv6;
    let fam = |a: &&IpAddr| a.is_ipv6() == v6;
    let mut addrs: Vec<IpAddr> = pools.addrs.iter().filter(fam).copied().take(24).collect();
    let defaults: &[&str] = if v6 {
        &["2001:db8::1", "fd00::10", "::1", "ff02::1"]
    } else {
        &["10.0.0.1", "192.168.1.10", "8.8.8.8", "127.0.0.1", "10.96.0.10", "224.0.0.251"]
    };
    addrs.extend(defaults.iter().map(|a| a.parse::<IpAddr>().expect("address")));
    let mut ports: Vec<Option<u16>> = pools.ports.iter().take(24).map(|p| Some(*p)).collect();
    ports.extend([Some(80), Some(443), Some(53), Some(22), Some(30080), None]);
    let mut ifaces: Vec<Option<String>> = pools.ifaces.iter().take(16).cloned().map(Some).collect();
    ifaces.extend([Some("eth0".to_owned()), Some("lo".to_owned()), None, None]);
    let mut marks: Vec<u32> = pools.marks.iter().take(8).copied().collect();
    marks.extend([0, 0, 0]);
    let protos: &[Proto] = if v6 {
        &[Proto::Tcp, Proto::Tcp, Proto::Udp, Proto::Icmpv6]
    } else {
        &[Proto::Tcp, Proto::Tcp, Proto::Udp, Proto::Icmp]
    };
    let states = [
        CtState::New,
        CtState::New,
        CtState::New,
        CtState::Established,
        CtState::Related,
        CtState::Invalid,
        CtState::Untracked,
    ];
    let mut g = Lcg(seed);
    (0..n)
        .map(|_| {
            let proto = *g.pick(protos);
            let mut p = Packet::new(*g.pick(&addrs), *g.pick(&addrs), proto);
            if proto.has_ports() {
                p.dport = *g.pick(&ports);
                p.sport = *g.pick(&[Some(40000), Some(53), None, Some(8080)]);
            } else {
                p.icmp = *g.pick(&[None, Some((3, 3)), Some((0, 0)), Some((11, 0))]);
            }
            p.in_iface = g.pick(&ifaces).clone();
            p.out_iface = g.pick(&ifaces).clone();
            p.ct_state = *g.pick(&states);
            p.mark = *g.pick(&marks);
            let m = *g.pick(&marks);
            p.ct_mark = *g.pick(&[None, Some(0), Some(m)]);
            p.tcp_flags = *g.pick(&[None, None, Some(0x12), Some(0x01)]);
            if *g.pick(&[false, false, false, true]) {
                p.physdev = Some((g.pick(&ifaces).clone(), g.pick(&ifaces).clone()));
            }
            p.uid = *g.pick(&[None, Some(0), Some(1000)]);
            p
        })
        .collect()
}

/// What both paths must agree on: verdict, certainty, deciding rule, and every branch's
/// verdict, deciding rule, NAT and probability.
fn summary(r: &TraceResult) -> String {
    let branches: Vec<String> = r
        .branches
        .iter()
        .map(|b| {
            format!(
                "{:?} p={:.6} by={:?} dnat={:?}/{:?} snat={:?}",
                b.verdict, b.probability, b.decided_by, b.dnat, b.dnat_label, b.snat
            )
        })
        .collect();
    format!(
        "{:?} must={} by={:?} capped={} [{}]",
        r.verdict,
        r.must,
        r.decided_by,
        r.capped,
        branches.join("; ")
    )
}

#[test]
fn typed_path_decides_every_corpus_packet_as_the_string_matcher_did() {
    let ipsets: Vec<_> = corpus_files("ipset")
        .iter()
        .flat_map(|(name, text)| parse_ipsets(text).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect();
    let per_ruleset: usize = std::env::var("NFSCOPE_DIFF_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut compared = 0;
    let mut diffs = Vec::new();
    for (i, (name, text)) in corpus_rules().into_iter().enumerate() {
        let rs = parse_ruleset(&text, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let pools = harvest(&rs);
        let packets = grid(&rs, &pools, per_ruleset, i as u64 + 1);
        let mut input = TraceInput::new(vec![rs]);
        input.ipsets = Some(ipsets.clone());
        input.local_addrs = packets.iter().take(2).map(|p| p.dst).collect();
        let typed = Tracer::new(&input);
        let mut old = Tracer::new(&input);
        old.use_matcher = true;
        for p in &packets {
            let (a, b) = (old.trace(p), typed.trace(p));
            compared += 1;
            let (a, b) = match (a, b) {
                (Ok(a), Ok(b)) => (summary(&a), summary(&b)),
                (a, b) => (format!("{:?}", a.err()), format!("{:?}", b.err())),
            };
            if a != b {
                let conds = |t: &Tracer<'_>| -> BTreeSet<String> {
                    let r = t.trace(p).expect("traced");
                    let mut seen = BTreeSet::new();
                    r.branches
                        .iter()
                        .flat_map(|b| &b.steps)
                        .filter_map(|s| {
                            let c = s.condition.as_ref()?;
                            let at = s.at?;
                            let rule = at.rule.map(|i| {
                                let rs = &input.rulesets[at.ruleset];
                                nfscope_ruleset::render_rule_spec(
                                    &rs.tables[at.table].chains[at.chain].rules[i].spec,
                                )
                            });
                            let line = format!("{c} @ {:?}", rule);
                            seen.insert(line.clone()).then_some(line)
                        })
                        .collect()
                };
                let (ca, cb) = (conds(&old), conds(&typed));
                let only = |x: &BTreeSet<String>, y: &BTreeSet<String>| {
                    x.difference(y).cloned().collect::<Vec<_>>().join("\n      ")
                };
                diffs.push(format!(
                    "{name}: {p:?}\n  matcher: {a}\n   only: {}\n  typed:   {b}\n   only: {}",
                    only(&ca, &cb),
                    only(&cb, &ca)
                ));
            }
        }
    }
    for d in diffs.iter().take(40) {
        eprintln!("{d}");
    }
    eprintln!("{compared} packets compared, {} differ", diffs.len());
    assert!(compared > 5_000, "the corpus shrank: {compared} packets");
    assert!(diffs.is_empty(), "{} packets differ (see above)", diffs.len());
}
