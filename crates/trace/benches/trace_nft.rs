//! Trace latency on a kube-proxy nftables-mode ruleset: 5,000 services × 3 endpoints in
//! kube-proxy's layout (`service-ips` verdict map, one `service-` chain with a `numgen` vmap and
//! three `endpoint-` chains per service, ≈20,000 chains), a packet from the LAN to the last
//! service's cluster IP. `prepare_and_trace` includes indexing (chains by name, set and map
//! hashes: what one CLI run pays); `trace_prepared` is one more packet on an indexed ruleset (what
//! a server pays per request). The map lookups are hashed, so neither scans the 5,000 elements.
//!
//! Run: `cargo bench -p nfscope-trace --bench trace_nft`.

use std::fmt::Write as _;
use std::sync::LazyLock;

use nfscope_ruleset::nft::{NftLimits, parse_nft_text};
use nfscope_trace::{Packet, Proto, TraceInput, Tracer, Verdict};

const SERVICES: usize = 5_000;

fn main() {
    divan::main();
}

fn vip(i: usize) -> String {
    format!("10.96.{}.{}", i / 256, i % 256)
}

/// kube-proxy's nftables-mode table (the fixed chains of proxier.go, ≤ 1.33 priorities) with
/// `services` ClusterIP services of `endpoints` endpoints each.
fn kube_proxy_nft(services: usize, endpoints: usize) -> String {
    let mut t = String::from("table ip kube-proxy {\n");
    let mut elems = Vec::new();
    let mut chains = String::new();
    for i in 0..services {
        let svc = format!("service-{i:08}-ns{i}/svc{i}/tcp/p80");
        elems.push(format!("{} . tcp . 80 : goto {svc}", vip(i)));
        let mut branches = Vec::new();
        for e in 0..endpoints {
            let ep_ip = format!("10.{}.{}.{}", 100 + e, i / 256, i % 256);
            let ep = format!("endpoint-{i:06}{e:02}-ns{i}/svc{i}/tcp/p80__{ep_ip}/80");
            branches.push(format!("{e} : goto {ep}"));
            let _ = write!(
                chains,
                " chain {ep} {{\n  ip saddr {ep_ip} jump mark-for-masquerade\n  meta l4proto tcp dnat to {ep_ip}:80\n }}\n"
            );
        }
        let _ = write!(
            chains,
            " chain {svc} {{\n  ip daddr {} tcp dport 80 ip saddr != 10.100.0.0/14 jump mark-for-masquerade\n  numgen random mod {endpoints} vmap {{ {} }}\n }}\n",
            vip(i),
            branches.join(", ")
        );
    }
    let _ = write!(
        t,
        " set cluster-ips {{\n  type ipv4_addr\n  elements = {{ {} }}\n }}\n",
        (0..services).map(vip).collect::<Vec<_>>().join(", ")
    );
    let _ = write!(
        t,
        " map service-ips {{\n  type ipv4_addr . inet_proto . inet_service : verdict\n  elements = {{ {} }}\n }}\n",
        elems.join(", ")
    );
    t.push_str(
        " map no-endpoint-services {
  type ipv4_addr . inet_proto . inet_service : verdict
 }
 chain filter-prerouting {
  type filter hook prerouting priority -110; policy accept;
 }
 chain filter-forward {
  type filter hook forward priority -110; policy accept;
  ct state new jump service-endpoints-check
  ct state new jump cluster-ips-check
 }
 chain nat-prerouting {
  type nat hook prerouting priority -100; policy accept;
  jump services
 }
 chain nat-postrouting {
  type nat hook postrouting priority 100; policy accept;
  jump masquerading
 }
 chain services {
  ip daddr . meta l4proto . th dport vmap @service-ips
 }
 chain service-endpoints-check {
  ip daddr . meta l4proto . th dport vmap @no-endpoint-services
 }
 chain cluster-ips-check {
  ip daddr @cluster-ips reject
  ip daddr 10.96.0.0/16 drop
 }
 chain masquerading {
  meta mark & 0x00004000 == 0x00000000 return
  meta mark set meta mark ^ 0x00004000
  masquerade fully-random
 }
 chain mark-for-masquerade {
  meta mark set meta mark | 0x00004000
 }
",
    );
    t.push_str(&chains);
    t.push_str("}\n");
    t
}

static CASE: LazyLock<(TraceInput, Packet)> = LazyLock::new(|| {
    let text = kube_proxy_nft(SERVICES, 3);
    let rs = parse_nft_text(&text, &NftLimits::default()).expect("generated ruleset parses");
    let mut input = TraceInput::new(Vec::new());
    input.native = vec![rs];
    input.local_addrs = vec!["192.168.1.10".parse().expect("address")];
    let mut packet = Packet::new(
        "192.168.1.50".parse().expect("address"),
        vip(SERVICES - 1).parse().expect("address"),
        Proto::Tcp,
    );
    packet.dport = Some(80);
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
