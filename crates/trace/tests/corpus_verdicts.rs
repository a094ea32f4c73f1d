//! Corpus-wide regression of the tracer's iptables verdicts: every corpus ruleset (with the
//! corpus ipsets) and a deterministic grid of packets built from the ruleset's own addresses,
//! ports, interfaces and marks, traced, and compared with the verdicts recorded in
//! `testdata/trace/corpus-verdicts.tsv`: verdict, certainty, deciding rule, and every branch's
//! verdict, probability, deciding rule and NAT.
//!
//! The recording is what the retired string matcher (`matcher.rs`, iptables options read as
//! strings) decided: it was written when the typed path (`typed_eval` on the lowered model) was
//! proved equal to the matcher on these packets and 250,000 more (see `testdata/trace/SOURCES.md`).
//! A change to the tracer that changes a line must say why; `NFSCOPE_RECORD_VERDICTS=1` rewrites
//! the file from the current tracer (review the diff).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use nfscope_ruleset::typed::{Expr, Key, MetaKey, Value};
use nfscope_ruleset::{Family, ParseOptions, Ruleset, parse_ipsets, parse_ruleset};
use nfscope_test_support::{corpus_files, corpus_rules};
use nfscope_trace::{CtState, Packet, Proto, RuleRef, TraceInput, TraceResult, Tracer};

/// Packets per corpus ruleset.
const PER_RULESET: usize = 60;

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
                        if nfscope_trace::validate_iface_name(&name).is_ok() {
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
        &[
            "10.0.0.1",
            "192.168.1.10",
            "8.8.8.8",
            "127.0.0.1",
            "10.96.0.10",
            "224.0.0.251",
        ]
    };
    addrs.extend(
        defaults
            .iter()
            .map(|a| a.parse::<IpAddr>().expect("address")),
    );
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

fn rule_ref(r: Option<RuleRef>) -> String {
    r.map_or("-".to_owned(), |r| {
        format!(
            "{}.{}.{}",
            r.table,
            r.chain,
            r.rule.map_or("P".to_owned(), |i| i.to_string())
        )
    })
}

/// One line: verdict, certainty, deciding rule (`table.chain.rule`, `P` for a policy), then per
/// branch its verdict, probability, deciding rule, DNAT and SNAT.
fn summary(r: &TraceResult) -> String {
    let mut s = format!(
        "{} {} {}{}",
        r.verdict.as_str(),
        if r.must { "MUST" } else { "MAY" },
        rule_ref(r.decided_by),
        if r.capped { " capped" } else { "" }
    );
    for b in &r.branches {
        let _ = write!(
            s,
            " | {} {:.6} {}",
            b.verdict.as_str(),
            b.probability,
            rule_ref(b.decided_by)
        );
        if let Some((ip, port)) = b.dnat {
            let _ = write!(s, " dnat={ip}:{port:?}");
        }
        if let Some(l) = &b.dnat_label {
            let _ = write!(s, " dnat={l}");
        }
        if let Some(l) = &b.snat {
            let _ = write!(s, " snat={l}");
        }
    }
    s
}

/// FNV-1a of the packet's description: a recorded line belongs to this very packet.
fn fingerprint(p: &Packet) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{p:?}").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn recording_path() -> std::path::PathBuf {
    nfscope_test_support::corpus_dir().join("../trace/corpus-verdicts.tsv")
}

fn current() -> Vec<String> {
    let ipsets: Vec<_> = corpus_files("ipset")
        .iter()
        .flat_map(|(name, text)| parse_ipsets(text).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect();
    let mut lines = Vec::new();
    for (i, (name, text)) in corpus_rules().into_iter().enumerate() {
        let rs = parse_ruleset(&text, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let pools = harvest(&rs);
        let packets = grid(&rs, &pools, PER_RULESET, i as u64 + 1);
        let mut input = TraceInput::new(vec![rs]);
        input.ipsets = Some(ipsets.clone());
        input.local_addrs = packets.iter().take(2).map(|p| p.dst).collect();
        let tracer = Tracer::new(&input);
        for (n, p) in packets.iter().enumerate() {
            let out = match tracer.trace(p) {
                Ok(r) => summary(&r),
                Err(e) => format!("error: {e}"),
            };
            lines.push(format!("{name}\t{n}\t{}\t{out}", fingerprint(p)));
        }
    }
    lines
}

#[test]
fn corpus_packets_keep_their_recorded_verdicts() {
    let now = current();
    assert!(
        now.len() > 3_000,
        "the corpus shrank: {} packets",
        now.len()
    );
    let path = recording_path();
    if std::env::var_os("NFSCOPE_RECORD_VERDICTS").is_some() {
        std::fs::write(&path, now.join("\n") + "\n").expect("write the recording");
        return;
    }
    let recorded =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let recorded: Vec<&str> = recorded.lines().collect();
    let mut differ = Vec::new();
    for (i, line) in now.iter().enumerate() {
        if recorded.get(i) != Some(&line.as_str()) {
            differ.push(format!(
                "now:      {line}\nrecorded: {}",
                recorded.get(i).unwrap_or(&"(none)")
            ));
        }
    }
    for d in differ.iter().take(20) {
        eprintln!("{d}");
    }
    assert_eq!(recorded.len(), now.len(), "packets recorded vs traced");
    assert!(
        differ.is_empty(),
        "{} of {} verdicts changed (see above)",
        differ.len(),
        now.len()
    );
}
