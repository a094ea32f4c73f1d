//! Trace latency on a kube-proxy nftables-mode ruleset: 5,000 services × 3 endpoints in
//! kube-proxy's layout, from the benchmarks' generator (`nfscope_bench::kube_proxy_nft_ruleset`,
//! the same table `scrape-bench --backends nftables` loads: `service-ips` verdict map, one
//! `service-` chain with a `numgen` vmap and three `endpoint-` chains per service, node ports and
//! load balancer IPs with their `external-` chains, ≈22,500 chains), a packet from the LAN to the
//! cluster IP of one of the last services. `prepare_and_trace` includes indexing (chains by name, set and map
//! hashes: what one CLI run pays); `trace_prepared` is one more packet on an indexed ruleset (what
//! a server pays per request). The map lookups are hashed, so neither scans the 5,000 elements.
//!
//! Run: `cargo bench -p nfscope-trace --bench trace_nft`.

use std::sync::LazyLock;

use nfscope_bench::GenOptions;
use nfscope_ruleset::nft::{NftLimits, parse_nft_text};
use nfscope_trace::{Packet, Proto, TraceInput, Tracer, Verdict};

const SERVICES: usize = 5_000;

fn main() {
    divan::main();
}

/// The service traced: the last TCP one (the generator's shapes cycle, every fifth is UDP).
const TRACED: usize = SERVICES - 5;

static CASE: LazyLock<(TraceInput, Packet)> = LazyLock::new(|| {
    let text = nfscope_bench::kube_proxy_nft_ruleset(SERVICES, 3, &GenOptions::default());
    let rs = parse_nft_text(&text, &NftLimits::default()).expect("generated ruleset parses");
    let mut input = TraceInput::new(Vec::new());
    input.native = vec![rs];
    input.local_addrs = vec!["192.168.1.10".parse().expect("address")];
    let mut packet = Packet::new(
        "192.168.1.50".parse().expect("address"),
        nfscope_bench::cluster_ip(TRACED, false),
        Proto::Tcp,
    );
    packet.dport = Some(80); // the `http` shape (TRACED % 5 == 0)
    packet.sport = Some(40000);
    packet.in_iface = Some("eth0".into());
    packet.out_iface = Some("eth1".into());
    (input, packet)
});

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
    let result = tracer.trace(packet).expect("traces");
    assert_eq!(result.verdict, Verdict::Accept);
    assert_eq!(result.branches.len(), 3, "three endpoints");
    assert!(result.branches.iter().all(|b| b.dnat.is_some()));
    bencher.bench(|| {
        tracer
            .trace(divan::black_box(packet))
            .expect("traces")
            .verdict
    });
}
