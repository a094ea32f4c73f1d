//! `nfscope_kube_endpoint_new_connections_total` in kube-proxy's nftables mode, whose rules
//! carry no counters: counted from conntrack NEW events by a plain `nfscope serve` (default
//! flags) running inside a namespace that holds a native `kube-proxy` table in kube-proxy's
//! layout, with real TCP connections to a ClusterIP and a node port DNATed to endpoints in that
//! namespace. What the clients were answered by is the oracle.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nfscope_test_support::{
    Children, Sample, TestNetns, named, parse_samples, promtool_check, root_or_skip, tools_or_skip,
    wait_listening,
};

/// kube-proxy's nftables table (≤ 1.33 layout, as in `crates/trace/tests/nft_kernel.rs`): Service
/// `ns1/web:http` (ClusterIP 10.96.0.10:80, node port 30080) with endpoints 10.0.2.7:8080 and
/// 10.0.2.8:8080 chosen by `numgen`, Service `ns1/api` (10.96.0.11:443, one endpoint
/// 10.0.2.9:8443) and `ns2/empty:http` without endpoints.
const KUBE: &str = "table ip kube-proxy {
 comment \"rules for kube-proxy\"
 set cluster-ips {
  type ipv4_addr
  elements = { 10.96.0.10, 10.96.0.11, 10.96.0.12 }
 }
 set nodeport-ips {
  type ipv4_addr
  elements = { 10.0.2.1 }
 }
 map no-endpoint-services {
  type ipv4_addr . inet_proto . inet_service : verdict
  elements = { 10.96.0.12 . tcp . 80 comment \"ns2/empty:http\" : goto reject-chain }
 }
 map no-endpoint-nodeports {
  type inet_proto . inet_service : verdict
 }
 map firewall-ips {
  type ipv4_addr . inet_proto . inet_service : verdict
 }
 map service-ips {
  type ipv4_addr . inet_proto . inet_service : verdict
  elements = { 10.96.0.10 . tcp . 80 : goto service-ULMVA6XW-ns1/web/tcp/http,
               10.96.0.11 . tcp . 443 : goto service-4QWJ4QZB-ns1/api/tcp/ }
 }
 map service-nodeports {
  type inet_proto . inet_service : verdict
  elements = { tcp . 30080 : goto external-ULMVA6XW-ns1/web/tcp/http }
 }
 chain filter-prerouting {
  type filter hook prerouting priority -110; policy accept;
  ct state new jump firewall-check
 }
 chain filter-input {
  type filter hook input priority -110; policy accept;
  ct state new jump nodeport-endpoints-check
  ct state new jump service-endpoints-check
 }
 chain filter-forward {
  type filter hook forward priority -110; policy accept;
  ct state new jump service-endpoints-check
  ct state new jump cluster-ips-check
 }
 chain filter-output {
  type filter hook output priority -110; policy accept;
  ct state new jump service-endpoints-check
  ct state new jump firewall-check
 }
 chain filter-output-post-dnat {
  type filter hook output priority -90; policy accept;
  ct state new jump cluster-ips-check
 }
 chain nat-prerouting {
  type nat hook prerouting priority -100; policy accept;
  jump services
 }
 chain nat-output {
  type nat hook output priority -100; policy accept;
  jump services
 }
 chain nat-postrouting {
  type nat hook postrouting priority 100; policy accept;
  jump masquerading
 }
 chain nodeport-endpoints-check {
  ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
 }
 chain service-endpoints-check {
  ip daddr . meta l4proto . th dport vmap @no-endpoint-services
 }
 chain firewall-check {
  ip daddr . meta l4proto . th dport vmap @firewall-ips
 }
 chain services {
  ip daddr . meta l4proto . th dport vmap @service-ips
  ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
 }
 chain masquerading {
  meta mark & 0x00004000 == 0x00000000 return
  meta mark set meta mark ^ 0x00004000
  masquerade fully-random
 }
 chain cluster-ips-check {
  ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"
  ip daddr 10.96.0.0/16 drop comment \"Drop traffic to unallocated ClusterIPs\"
 }
 chain mark-for-masquerade {
  meta mark set meta mark | 0x00004000
 }
 chain reject-chain {
  comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"
  reject
 }
 chain external-ULMVA6XW-ns1/web/tcp/http {
  jump mark-for-masquerade
  goto service-ULMVA6XW-ns1/web/tcp/http
 }
 chain service-ULMVA6XW-ns1/web/tcp/http {
  ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
  numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/web/tcp/http__10.0.2.7/8080, 1 : goto endpoint-ZQ3M2CBA-ns1/web/tcp/http__10.0.2.8/8080 }
 }
 chain endpoint-5OJB2KTY-ns1/web/tcp/http__10.0.2.7/8080 {
  ip saddr 10.0.2.7 jump mark-for-masquerade
  meta l4proto tcp dnat to 10.0.2.7:8080
 }
 chain endpoint-ZQ3M2CBA-ns1/web/tcp/http__10.0.2.8/8080 {
  ip saddr 10.0.2.8 jump mark-for-masquerade
  meta l4proto tcp dnat to 10.0.2.8:8080
 }
 chain service-4QWJ4QZB-ns1/api/tcp/ {
  ip daddr 10.96.0.11 tcp dport 443 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
  goto endpoint-7RTPTKJN-ns1/api/tcp/__10.0.2.9/8443
 }
 chain endpoint-7RTPTKJN-ns1/api/tcp/__10.0.2.9/8443 {
  ip saddr 10.0.2.9 jump mark-for-masquerade
  meta l4proto tcp dnat to 10.0.2.9:8443
 }
}
";

/// The node: the endpoints' and the node's addresses on one end of a veth pair (the ClusterIP range routed
/// there), the kube-proxy table, and one `socat` server per endpoint that answers its name.
struct Lab {
    /// First, so the servers stop before their namespace goes.
    _servers: Children,
    ns: TestNetns,
}

const ENDPOINTS: [(&str, &str); 3] = [
    ("10.0.2.7", "8080"),
    ("10.0.2.8", "8080"),
    ("10.0.2.9", "8443"),
];

fn lab() -> Lab {
    let ns = TestNetns::new("kubect").expect("a test namespace");
    ns.sh_ok(
        "ip link add d0 type veth peer name d1 && ip link set d1 up && ip link set d0 up \
         && ip addr add 10.0.2.1/24 dev d0 \
         && for a in 7 8 9; do ip addr add 10.0.2.$a/32 dev d0; done \
         && ip route add 10.96.0.0/16 dev d0",
    );
    ns.exec_input_ok(&["nft", "-f", "-"], KUBE);
    let mut servers = Children::default();
    for (ip, port) in ENDPOINTS {
        servers.push(ns.spawn(&[
            "socat",
            &format!("TCP-LISTEN:{port},bind={ip},fork,reuseaddr"),
            // socat would split `ip:port` in its address: the endpoint says `ip/port`.
            &format!("SYSTEM:echo {ip}/{port}"),
        ]));
    }
    for (ip, port) in ENDPOINTS {
        wait_listening(&ns, ip, port, Duration::from_secs(5));
    }
    Lab {
        _servers: servers,
        ns,
    }
}

/// Connects `n` times to `dst:port` from inside the node; returns how often each endpoint
/// answered (the endpoint prints its own address and port).
fn connect(ns: &TestNetns, dst: &str, port: u16, n: usize) -> BTreeMap<String, u64> {
    let out = ns.sh_ok(&format!(
        "for i in $(seq {n}); do timeout 3 socat -u TCP:{dst}:{port},connect-timeout=2 - ; done"
    ));
    let mut seen = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        *seen.entry(line.replace('/', ":")).or_default() += 1;
    }
    assert_eq!(
        seen.values().sum::<u64>(),
        n as u64,
        "every connection answered: {out}"
    );
    seen
}

/// GET `path` from the server listening inside the namespace.
fn get(ns: &TestNetns, addr: &str, path: &str) -> String {
    let out = ns.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "30",
        &format!("http://{addr}{path}"),
    ]);
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 body")
}

fn endpoint_counts(samples: &[Sample]) -> BTreeMap<(String, String, String), u64> {
    named(samples, "nfscope_kube_endpoint_new_connections_total")
        .into_iter()
        .map(|s| {
            assert_eq!(s.label_str("backend"), "nftables");
            assert_eq!(s.label_str("family"), "ipv4");
            assert_eq!(s.label_str("namespace"), "ns1");
            (
                (
                    s.label_str("service").to_owned(),
                    s.label_str("port").to_owned(),
                    s.label_str("endpoint").to_owned(),
                ),
                s.value_u64(),
            )
        })
        .collect()
}

#[test]
fn nftables_mode_service_connections_are_counted_per_endpoint_from_conntrack() {
    // Plain `nfscope serve` inside the namespace: default flags, no --netns, no --flows.
    counts_per_endpoint(&[]);
}

#[test]
fn with_flows_the_flow_monitors_reader_counts_the_same() {
    counts_per_endpoint(&["--flows"]);
}

fn counts_per_endpoint(flags: &[&str]) {
    if !root_or_skip("kube conntrack counting") {
        return;
    }
    if !tools_or_skip("kube conntrack counting", &["socat", "curl", "nft"]) {
        return;
    }
    let lab = lab();
    let ns = &lab.ns;
    let server = support::Server::start_under(&["ip", "netns", "exec", ns.name()], flags);
    let addr = server.addr.to_string();

    // Before any connection: the Service without endpoints is listed, nothing is counted.
    let body = get(ns, &addr, "/metrics");
    let samples = parse_samples(&body);
    assert!(endpoint_counts(&samples).is_empty(), "{body}");
    let listed = named(&samples, "nfscope_kube_service_no_endpoints");
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(
        (
            listed[0].label_str("namespace"),
            listed[0].label_str("service"),
            listed[0].label_str("port"),
            listed[0].label_str("local_only"),
            listed[0].value_u64()
        ),
        ("ns2", "empty", "http", "false", 1)
    );
    assert_eq!(
        named(&samples, "nfscope_kube_conntrack_up")[0].value_u64(),
        1,
        "{body}"
    );

    // Real connections: to the ClusterIP (load balanced), the node port, the second Service, an
    // endpoint directly (no Service: not counted) and the Service without endpoints (rejected).
    let mut want: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut pairs = std::collections::BTreeSet::new();
    for (dst, port, n, service, port_name) in [
        ("10.96.0.10", 80, 24, "web", "http"),
        ("10.0.2.1", 30080, 6, "web", "http"),
        ("10.96.0.11", 443, 5, "api", ""),
    ] {
        for (endpoint, count) in connect(ns, dst, port, n) {
            pairs.insert((dst, endpoint.clone()));
            *want
                .entry((service.to_owned(), port_name.to_owned(), endpoint))
                .or_default() += count;
        }
    }
    assert_eq!(
        want.len(),
        3,
        "both web endpoints answered 30 connections: {want:?}"
    );
    connect(ns, "10.0.2.7", 8080, 3);
    let rejected = ns.sh("timeout 3 socat -u TCP:10.96.0.12:80,connect-timeout=2 - ");
    assert!(
        !rejected.status.success(),
        "no endpoints: the connection is rejected"
    );

    // Events arrive asynchronously: wait until the total is reached, then compare exactly.
    let total: u64 = want.values().sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (body, got) = loop {
        let body = get(ns, &addr, "/metrics");
        let got = endpoint_counts(&parse_samples(&body));
        if got.values().sum::<u64>() >= total || Instant::now() > deadline {
            break (body, got);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(got, want, "{body}");
    let samples = parse_samples(&body);
    let value = |name: &str| named(&samples, name)[0].value_u64();
    // ClusterIP and node port destinations are separate keys of the same endpoint series (which
    // endpoints answered each destination is up to numgen).
    assert_eq!(
        value("nfscope_kube_conntrack_keys"),
        pairs.len() as u64,
        "{pairs:?}: {body}"
    );
    assert_eq!(value("nfscope_kube_conntrack_keys_dropped_total"), 0);
    assert_eq!(value("nfscope_kube_conntrack_overruns_total"), 0);
    assert!(
        value("nfscope_kube_conntrack_events_total") >= total + 3,
        "the direct connections were seen but not counted: {body}"
    );
    let (ok, report) = promtool_check(&body).expect("promtool installed");
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

#[test]
fn the_bound_on_tracked_keys_holds_and_overflow_is_counted() {
    if !root_or_skip("kube conntrack bound") {
        return;
    }
    if !tools_or_skip("kube conntrack bound", &["socat", "curl"]) {
        return;
    }
    let lab = lab();
    let ns = &lab.ns;
    let server = support::Server::start_under(
        &["ip", "netns", "exec", ns.name()],
        &["--kube-conntrack-keys", "1"],
    );
    let addr = server.addr.to_string();
    let api = connect(ns, "10.96.0.11", 443, 2);
    assert_eq!(api.values().sum::<u64>(), 2);
    // The first key takes the one slot; both connections to the node port overflow (scrapes
    // are connections too, and NEW events, but without DNAT they are never keys).
    let wait_for = |what: &str, done: &dyn Fn(&[Sample]) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = get(ns, &addr, "/metrics");
            if done(&parse_samples(&body)) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what} never happened: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let value_in = |samples: &[Sample], name: &str| named(samples, name)[0].value_u64();
    wait_for("the first key", &|s| {
        value_in(s, "nfscope_kube_conntrack_keys") == 1
    });
    connect(ns, "10.0.2.1", 30080, 2);
    let body = wait_for("the overflow", &|s| {
        value_in(s, "nfscope_kube_conntrack_keys_dropped_total") >= 2
    });
    let samples = parse_samples(&body);
    let value = |name: &str| named(&samples, name)[0].value_u64();
    assert_eq!(value("nfscope_kube_conntrack_keys_limit"), 1, "{body}");
    assert_eq!(value("nfscope_kube_conntrack_keys"), 1, "{body}");
    assert_eq!(
        value("nfscope_kube_conntrack_keys_dropped_total"),
        2,
        "{body}"
    );
    let counted = named(&samples, "nfscope_kube_endpoint_new_connections_total");
    assert_eq!(counted.len(), 1, "{body}");
    assert_eq!(
        (counted[0].label_str("service"), counted[0].value_u64()),
        ("api", 2)
    );
}
