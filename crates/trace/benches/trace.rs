//! Trace latency on a generated kube-proxy ruleset: 5,000 services × 3 endpoints (≈75,000 rules),
//! a packet from the LAN to the last service's cluster IP (the worst case: every KUBE-SERVICES
//! rule is tried). `prepare_and_trace` includes indexing the ruleset (what one CLI run pays);
//! `trace_prepared` is one more packet on an indexed ruleset (what a server pays per request).
//!
//! Run: `cargo bench -p nfscope-trace --bench trace`.

use std::net::IpAddr;
use std::sync::LazyLock;

use nfscope_bench::{GenOptions, kube_proxy_ruleset};
use nfscope_ruleset::{Family, ParseOptions, parse_ruleset};
use nfscope_trace::{Packet, Proto, TraceInput, Tracer, Verdict};

const SERVICES: usize = 5_000;

fn main() {
    divan::main();
}

/// The input and a packet to the last service's cluster IP and port.
static CASE: LazyLock<(TraceInput, Packet)> = LazyLock::new(|| {
    let text = kube_proxy_ruleset(SERVICES, 3, &GenOptions::default());
    let ruleset = parse_ruleset(
        &text,
        &ParseOptions {
            family: Some(Family::Ipv4),
            ..Default::default()
        },
    )
    .expect("generated ruleset parses");
    let (vip, port) = last_service(&ruleset);
    let mut input = TraceInput::new(vec![ruleset]);
    input.local_addrs = vec!["192.168.1.10".parse().expect("address")];
    let mut packet = Packet::new("192.168.1.50".parse().expect("address"), vip, Proto::Tcp);
    packet.dport = Some(port);
    packet.sport = Some(40000);
    packet.in_iface = Some("eth0".into());
    (input, packet)
});

/// The destination and port of the last cluster-IP rule in nat `KUBE-SERVICES`.
fn last_service(ruleset: &nfscope_ruleset::Ruleset) -> (IpAddr, u16) {
    let chain = ruleset
        .table("nat")
        .and_then(|t| t.chain("KUBE-SERVICES"))
        .expect("KUBE-SERVICES");
    chain
        .rules
        .iter()
        .rev()
        .find_map(|r| {
            let dst = r.spec.destination.as_ref()?.value.addr;
            let port = r
                .spec
                .matches
                .iter()
                .find_map(|m| m.value("dport"))?
                .parse()
                .ok()?;
            Some((dst, port))
        })
        .expect("a cluster IP rule")
}

#[divan::bench]
fn prepare_and_trace() -> Verdict {
    let (input, packet) = &*CASE;
    Tracer::new(divan::black_box(input))
        .trace(packet)
        .expect("traces")
        .verdict
}

#[divan::bench]
fn trace_prepared(bencher: divan::Bencher) {
    let (input, packet) = &*CASE;
    let tracer = Tracer::new(input);
    assert!(
        input.rulesets[0].rule_count() > 70_000,
        "about 75,000 rules"
    );
    bencher.bench(|| {
        tracer
            .trace(divan::black_box(packet))
            .expect("traces")
            .verdict
    });
}
