//! The failure explainer on corpus rulesets: kube-router NetworkPolicy rejects (both ways),
//! kube-proxy's no-endpoint REJECT, a ClusterIP dialled on a port its Service lacks and an
//! unallocated ClusterIP (iptables and nftables modes), accepted packets that still failed, and
//! the cache's bounds.

use nfscope_annotate::{annotate, annotate_native};
use nfscope_ruleset::nft::{NftLimits, parse_nft_text};
use nfscope_ruleset::{Backend, Family, ParseOptions, Ruleset, parse_ruleset};
use nfscope_test_support::corpus::{corpus_file, nft_corpus_dir};

use super::*;
use crate::parse_routes;

fn ipt(text: &str) -> Ruleset {
    parse_ruleset(
        text,
        &ParseOptions {
            family: Some(Family::Ipv4),
            backend: Some(Backend::Nft),
            lenient: false,
            ..Default::default()
        },
    )
    .unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn attempt(
    client: &str,
    dialled: &str,
    proto: Proto,
    iface: &str,
    failure: AttemptFailure,
) -> Attempt {
    Attempt {
        client: sa(client),
        dialled: sa(dialled),
        proto,
        in_iface: Some(iface.to_owned()),
        mark: None,
        failure,
        server: None,
    }
}

/// The input with its meanings, owned, so an [`Explainer`] can borrow it.
struct Node {
    input: TraceInput,
    annotations: Vec<Annotations>,
    native: Vec<NativeAnnotations>,
}

impl Node {
    fn new(input: TraceInput) -> Self {
        let annotations = input.rulesets.iter().map(annotate).collect();
        let native = input.native.iter().map(annotate_native).collect();
        Self {
            input,
            annotations,
            native,
        }
    }

    fn explainer(&self) -> Explainer<'_> {
        Explainer::new(&self.input, &self.annotations, &self.native)
    }

    fn explain(&self, a: &Attempt) -> Explained {
        self.explainer().explain(a).unwrap()
    }
}

/// A k3s node with kube-router's network policies (real dump), its LAN on eth0 and pods on cni0.
fn kube_router_node(rules: &str) -> Node {
    let mut input = TraceInput::new(vec![ipt(rules)]);
    input.local_addrs = vec![
        "192.168.1.10".parse().unwrap(),
        "10.42.0.1".parse().unwrap(),
    ];
    input.routes = Some(
        parse_routes(
            "default via 192.168.1.1 dev eth0\n\
             10.42.0.0/24 dev cni0 proto kernel scope link src 10.42.0.1\n\
             192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.10\n",
        )
        .unwrap(),
    );
    Node::new(input)
}

const KUBE_ROUTER: &str = "k3s-kube-router-netpol-flannel-nft-2026.rules";
const REDIS_POD: &str = "KUBE-POD-FW-4BDGZEWEU32YM75H";

/// The dump without the jump of the redis pod's firewall to the default policy chain in one
/// direction: no policy marks that traffic any more, so the pod firewall's REJECT decides it.
fn without_policy(direction: &str) -> String {
    let text = corpus_file(KUBE_ROUTER);
    let removed = format!("run through default {direction} network policy chain");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !(l.starts_with(&format!("-A {REDIS_POD} ")) && l.contains(&removed)))
        .collect();
    assert_eq!(kept.len() + 1, text.lines().count(), "one rule removed");
    kept.join("\n") + "\n"
}

#[test]
fn kube_router_policy_reject_names_the_client_pod_and_port() {
    let node = kube_router_node(&without_policy("ingress"));
    let a = attempt(
        "192.168.1.50:40000",
        "10.42.0.11:6379",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Refused,
    );
    let e = node.explain(&a);
    assert_eq!(e.cause, Cause::NetworkPolicy);
    assert_eq!(
        e.explanation,
        "no NetworkPolicy admits 192.168.1.50 to pod default/redis-84f85f9cdc-nfbl2 on tcp/6379"
    );
    let by = e.trace.decided_by().expect("a deciding rule");
    assert_eq!(
        (by.table.as_str(), by.chain.as_str()),
        ("filter", REDIS_POD)
    );
    assert!(by.rule.contains("-j REJECT"), "{}", by.rule);
    let json: serde_json::Value = serde_json::from_str(&e.trace_json).unwrap();
    assert_eq!(json["verdict"], "REJECT");
    assert_eq!(json["certainty"], "MUST");
    assert_eq!(json["decided_by"]["chain"], REDIS_POD);
    // Without the removal the same attempt is accepted: the rule, not the dump, decides.
    let node = kube_router_node(&corpus_file(KUBE_ROUTER));
    let e = node.explain(&a);
    assert_eq!(e.cause, Cause::NoListener, "{}", e.explanation);
    assert!(!e.cause.blames_rules());
}

#[test]
fn kube_router_egress_reject_names_the_pod_as_the_one_not_allowed() {
    let node = kube_router_node(&without_policy("egress"));
    let a = attempt(
        "10.42.0.11:40000",
        "192.168.1.99:443",
        Proto::Tcp,
        "cni0",
        AttemptFailure::Refused,
    );
    let e = node.explain(&a);
    assert_eq!(e.cause, Cause::NetworkPolicy);
    assert_eq!(
        e.explanation,
        "no NetworkPolicy lets pod default/redis-84f85f9cdc-nfbl2 connect to 192.168.1.99 on tcp/443"
    );
    // The report's own explanation says the same way round.
    assert!(
        e.trace
            .report
            .explanation
            .as_deref()
            .unwrap()
            .starts_with("no NetworkPolicy rule lets pod default/redis-84f85f9cdc-nfbl2"),
        "{:?}",
        e.trace.report.explanation
    );
}

fn kube_proxy_iptables_node() -> Node {
    let mut input = TraceInput::new(vec![ipt(&corpus_file(
        "k3s-node-iptables-save-c-counters-2022.rules",
    ))]);
    input.local_addrs = vec!["192.168.1.10".parse().unwrap()];
    input.routes = Some(
        parse_routes(
            "default via 192.168.1.1 dev eth0\n\
             10.42.0.0/24 dev cni0 proto kernel scope link src 10.42.0.1\n",
        )
        .unwrap(),
    );
    Node::new(input)
}

#[test]
fn kube_proxy_iptables_no_endpoints_blames_the_service() {
    let node = kube_proxy_iptables_node();
    let a = attempt(
        "10.42.0.9:53000",
        "10.43.0.10:53",
        Proto::Udp,
        "cni0",
        AttemptFailure::Unreachable,
    );
    let e = node.explain(&a);
    assert_eq!(e.cause, Cause::ServiceNoEndpoints);
    assert_eq!(
        e.explanation,
        "Service kube-system/kube-dns:dns has no endpoints: kube-proxy rejects 10.43.0.10:53"
    );
    let by = e.trace.decided_by().unwrap();
    assert_eq!(
        (by.table.as_str(), by.chain.as_str()),
        ("filter", "KUBE-SERVICES")
    );
    assert!(
        by.rule.contains("kube-dns:dns has no endpoints"),
        "{}",
        by.rule
    );
}

#[test]
fn kube_proxy_iptables_cluster_ip_on_a_wrong_port() {
    let node = kube_proxy_iptables_node();
    let a = attempt(
        "10.42.0.9:40000",
        "10.43.0.1:444",
        Proto::Tcp,
        "cni0",
        AttemptFailure::Timeout,
    );
    let e = node.explain(&a);
    assert_eq!(e.cause, Cause::ClusterIpWrongPort, "{}", e.explanation);
    assert!(
        e.explanation.starts_with(
            "10.43.0.1 is the ClusterIP of Service default/kubernetes, which has no port tcp/444"
        ),
        "{}",
        e.explanation
    );
    // This dump's FORWARD policy drops what no rule accepts; the ClusterIP is the cause all
    // the same, and the text says what came of it.
    assert!(
        e.explanation.ends_with("the chain's policy drops it"),
        "{}",
        e.explanation
    );
    // From the node itself (OUTPUT): accepted, untranslated, nothing answers.
    let mut local = a.clone();
    local.client = sa("192.168.1.10:40000");
    local.in_iface = None;
    let e = node.explain(&local);
    assert_eq!(e.cause, Cause::ClusterIpWrongPort, "{}", e.explanation);
    assert!(
        e.explanation.contains("nothing answers there"),
        "{}",
        e.explanation
    );
    // The right port is translated to the endpoint: no such claim then.
    local.dialled = sa("10.43.0.1:443");
    let e = node.explain(&local);
    assert_eq!(e.cause, Cause::EndpointSilent, "{}", e.explanation);
    assert_eq!(
        e.explanation,
        "the rules accepted it; 10.0.20.5:6443 (endpoint of Service default/kubernetes:https) did not answer"
    );
}

fn kube_proxy_nft_node() -> Node {
    let text = std::fs::read_to_string(
        nft_corpus_dir().join("k3s-kubeproxy-nftables-mode-table-2025.nft"),
    )
    .unwrap();
    let mut input = TraceInput::new(Vec::new());
    input.native = vec![parse_nft_text(&text, &NftLimits::default()).unwrap()];
    input.local_addrs = vec!["10.34.4.246".parse().unwrap()];
    input.routes = Some(
        parse_routes(
            "default via 10.34.4.1 dev eth0\n\
             10.42.0.0/24 dev cni0 proto kernel scope link src 10.42.0.1\n\
             10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink\n\
             10.34.4.0/24 dev eth0 proto kernel scope link src 10.34.4.246\n",
        )
        .unwrap(),
    );
    Node::new(input)
}

#[test]
fn kube_proxy_nftables_mode_causes() {
    let node = kube_proxy_nft_node();
    let explain = |dialled: &str, failure| {
        node.explain(&attempt(
            "10.42.1.7:40000",
            dialled,
            Proto::Tcp,
            "flannel.1",
            failure,
        ))
    };
    let e = explain("10.43.21.102:4317", AttemptFailure::Refused);
    assert_eq!(e.cause, Cause::ServiceNoEndpoints);
    assert_eq!(
        e.explanation,
        "Service riset/otelcol-opentelemetry-collector:otlp has no endpoints: kube-proxy rejects 10.43.21.102:4317"
    );
    let e = explain("10.43.99.99:80", AttemptFailure::Timeout);
    assert_eq!(e.cause, Cause::UnallocatedClusterIp);
    assert_eq!(
        e.explanation,
        "ClusterIP 10.43.99.99 is not allocated: no Service has it, kube-proxy drops it"
    );
    let e = explain("10.43.195.72:9999", AttemptFailure::Refused);
    assert_eq!(e.cause, Cause::ClusterIpWrongPort);
    assert_eq!(
        e.explanation,
        "10.43.195.72 is a ClusterIP, but no Service has port tcp/9999 on it: kube-proxy rejects it"
    );
    // A Service with one endpoint: accepted, so the failure is put on the endpoint.
    let e = explain("10.43.0.1:443", AttemptFailure::Refused);
    assert_eq!(e.cause, Cause::NoListener);
    assert_eq!(
        e.explanation,
        "the rules accepted it; nothing listening on 10.34.4.142:6443 (endpoint of Service default/kubernetes:https) (tcp)"
    );
    let e = explain("10.43.0.1:443", AttemptFailure::Timeout);
    assert_eq!(e.cause, Cause::EndpointSilent);
    assert!(
        e.explanation.contains("did not answer"),
        "{}",
        e.explanation
    );
    let e = explain("10.43.0.1:443", AttemptFailure::Reset);
    assert_eq!(e.cause, Cause::EndpointReset);
}

#[test]
fn a_load_balanced_service_names_the_server_the_attempt_reached() {
    let node = kube_proxy_nft_node();
    let mut a = attempt(
        "10.42.1.7:40000",
        "10.43.195.72:8000",
        Proto::Tcp,
        "flannel.1",
        AttemptFailure::Refused,
    );
    let e = node.explain(&a);
    assert_eq!(e.cause, Cause::NoListener);
    assert!(e.explanation.contains("one of 9"), "{}", e.explanation);
    a.server = Some(sa("10.42.4.201:8080"));
    let e = node.explain(&a);
    assert!(
        e.explanation
            .contains("nothing listening on 10.42.4.201:8080 (endpoint of Service "),
        "{}",
        e.explanation
    );
}

fn small_node(rules: &str, routes: &str) -> Node {
    let mut input = TraceInput::new(vec![ipt(rules)]);
    input.local_addrs = vec!["10.0.0.1".parse().unwrap()];
    input.routes = Some(parse_routes(routes).unwrap());
    Node::new(input)
}

const ROUTES: &str = "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n\
                      10.1.0.0/24 dev eth1 proto kernel scope link src 10.1.0.1\n";

#[test]
fn plain_rules_routes_and_policies_are_named() {
    let node = small_node(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -p tcp --dport 22 -j DROP\n-A INPUT -p tcp --dport 23 -j REJECT\n\
         -A FORWARD -d 10.1.0.5/32 -j ACCEPT\nCOMMIT\n",
        ROUTES,
    );
    let e = node.explain(&attempt(
        "10.0.0.7:1000",
        "10.0.0.1:22",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Timeout,
    ));
    assert_eq!(e.cause, Cause::RuleDrop);
    assert_eq!(
        e.explanation,
        "ipv4 filter/INPUT rule 1 drops it: -A INPUT -p tcp -m tcp --dport 22 -j DROP"
    );
    let e = node.explain(&attempt(
        "10.0.0.7:1000",
        "10.0.0.1:23",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Refused,
    ));
    assert_eq!(e.cause, Cause::RuleReject);
    let e = node.explain(&attempt(
        "10.0.0.7:1000",
        "10.1.0.9:80",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Timeout,
    ));
    assert_eq!(e.cause, Cause::ChainPolicyDrop);
    assert_eq!(
        e.explanation,
        "no rule in ipv4 filter/FORWARD accepts 10.1.0.9:80 (tcp/80): the chain's policy drops it"
    );
    let e = node.explain(&attempt(
        "10.0.0.7:1000",
        "172.16.0.1:80",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Timeout,
    ));
    assert_eq!(e.cause, Cause::NoRoute);
    assert_eq!(e.explanation, "no route to 172.16.0.1: dropped by routing");
    // Accepted to a forwarded host that answered with RST: not a rule's doing.
    let e = node.explain(&attempt(
        "10.0.0.7:1000",
        "10.1.0.5:80",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Refused,
    ));
    assert_eq!(e.cause, Cause::NoListener);
    assert_eq!(
        e.explanation,
        "the rules accepted it; nothing listening on 10.1.0.5:80 (tcp)"
    );
    // A drop does not answer: a refusal then came from elsewhere, and the text says so.
    let e = node.explain(&attempt(
        "10.0.0.7:1000",
        "10.0.0.1:22",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Refused,
    ));
    assert_eq!(e.cause, Cause::RuleDrop);
    assert!(
        e.explanation.contains("a drop sends no answer"),
        "{}",
        e.explanation
    );
}

#[test]
fn an_unknown_incoming_interface_is_taken_from_the_route_back() {
    let node = small_node(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -i eth1 -p tcp --dport 80 -j DROP\nCOMMIT\n",
        ROUTES,
    );
    let mut a = attempt(
        "10.1.0.7:1000",
        "10.0.0.1:80",
        Proto::Tcp,
        "x",
        AttemptFailure::Timeout,
    );
    a.in_iface = None;
    let e = node.explain(&a);
    assert_eq!(e.cause, Cause::RuleDrop, "{}", e.explanation);
    assert!(
        e.trace
            .report
            .notes
            .iter()
            .any(|n| n.contains("taken as eth1")),
        "{:?}",
        e.trace.report.notes
    );
    a.client = sa("192.0.2.1:1000");
    let err = node.explainer().explain(&a).unwrap_err();
    assert!(err.to_string().contains("no route leads back"), "{err}");
}

#[test]
fn the_cache_shares_a_trace_per_client_prefix_and_says_each_client() {
    let node = kube_router_node(&without_policy("ingress"));
    let explainer = node.explainer();
    let generation = input_generation(&node.input);
    let mut cache = TraceCache::new(CacheLimits::default());
    let mut traced = 0;
    let mut ask = |cache: &mut TraceCache, client: &str| {
        let a = attempt(
            client,
            "10.42.0.11:6379",
            Proto::Tcp,
            "eth0",
            AttemptFailure::Refused,
        );
        match cache.get_or_trace(&a, generation, 0, || {
            traced += 1;
            explainer.trace(&a)
        }) {
            Lookup::Explained(e) => e,
            other => panic!("{other:?}"),
        }
    };
    let first = ask(&mut cache, "192.168.1.50:40000");
    let second = ask(&mut cache, "192.168.1.51:40001");
    let other_net = ask(&mut cache, "192.168.2.50:40000");
    assert_eq!(traced, 2, "the /24 shares one trace");
    assert!(Arc::ptr_eq(&first.trace, &second.trace));
    assert!(
        second.explanation.contains("admits 192.168.1.51 to pod"),
        "{}",
        second.explanation
    );
    assert!(other_net.explanation.contains("admits 192.168.2.50 to pod"));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries, s.evictions), (1, 2, 2, 0));
}

#[test]
fn the_cache_is_bounded_evicts_the_least_recent_and_keeps_a_budget() {
    let node = small_node(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
        ROUTES,
    );
    let explainer = node.explainer();
    let limits = CacheLimits {
        capacity: 2,
        traces_per_second: 2,
        burst: 3,
        ..CacheLimits::default()
    };
    let mut cache = TraceCache::new(limits);
    let port = |p: u16, now: u64, cache: &mut TraceCache| {
        let a = attempt(
            "10.0.0.7:1000",
            &format!("10.0.0.1:{p}"),
            Proto::Tcp,
            "eth0",
            AttemptFailure::Refused,
        );
        cache.get_or_trace(&a, 1, now, || explainer.trace(&a))
    };
    assert!(matches!(port(1, 0, &mut cache), Lookup::Explained(_)));
    assert!(matches!(port(2, 0, &mut cache), Lookup::Explained(_)));
    assert!(
        matches!(port(1, 0, &mut cache), Lookup::Explained(_)),
        "hit"
    );
    // A third key evicts port 2 (least recently used), the last token of the burst.
    assert!(matches!(port(3, 0, &mut cache), Lookup::Explained(_)));
    // A scanner's next ports find no token at the same instant.
    assert!(matches!(port(4, 0, &mut cache), Lookup::OverBudget));
    assert!(matches!(port(5, 0, &mut cache), Lookup::OverBudget));
    // Port 1 is still cached (a hit costs no token); port 2 was evicted.
    assert!(matches!(port(1, 0, &mut cache), Lookup::Explained(_)));
    assert!(matches!(port(2, 0, &mut cache), Lookup::OverBudget));
    // Half a second later one more trace may be made (2 per second).
    assert!(matches!(port(4, 500, &mut cache), Lookup::Explained(_)));
    let s = cache.stats();
    assert_eq!(s.entries, 2);
    assert_eq!((s.hits, s.misses, s.evictions, s.over_budget), (2, 7, 2, 3));
    // Another generation of the rules: nothing of the old one hits, and it can be dropped.
    let a = attempt(
        "10.0.0.7:1000",
        "10.0.0.1:1",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Refused,
    );
    assert!(matches!(
        cache.get_or_trace(&a, 2, 5000, || explainer.trace(&a)),
        Lookup::Explained(_)
    ));
    assert_eq!(cache.stats().hits, 2);
    assert_eq!(cache.retain_generation(2), 1);
    assert_eq!(cache.stats().entries, 1);
}

#[test]
fn a_failed_trace_is_cached_and_counted() {
    let mut node = small_node(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
        ROUTES,
    );
    node.input.interfaces = Some(vec!["eth0".into(), "eth1".into()]);
    let explainer = node.explainer();
    let mut cache = TraceCache::new(CacheLimits::default());
    let a = attempt(
        "10.0.0.7:1000",
        "10.0.0.1:80",
        Proto::Tcp,
        "nope0",
        AttemptFailure::Refused,
    );
    for _ in 0..2 {
        match cache.get_or_trace(&a, 1, 0, || explainer.trace(&a)) {
            Lookup::Failed(e) => assert!(e.contains("unknown interface"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    let s = cache.stats();
    assert_eq!((s.errors, s.misses, s.hits), (1, 1, 1));
}

#[test]
fn the_generation_follows_what_decides_a_trace() {
    let rules = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    let a = small_node(rules, ROUTES);
    let b = small_node(rules, ROUTES);
    assert_eq!(input_generation(&a.input), input_generation(&b.input));
    let c = small_node("*filter\n:INPUT DROP [0:0]\nCOMMIT\n", ROUTES);
    assert_ne!(input_generation(&a.input), input_generation(&c.input));
    let d = small_node(
        rules,
        "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n",
    );
    assert_ne!(input_generation(&a.input), input_generation(&d.input));
}

#[test]
fn prefixes_keep_the_network_part() {
    assert_eq!(
        prefix("192.168.1.77".parse().unwrap(), 24),
        "192.168.1.0".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        prefix("fd00:1:2:3:4::9".parse().unwrap(), 64),
        "fd00:1:2:3::".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        prefix("10.1.2.3".parse().unwrap(), 0),
        "0.0.0.0".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        prefix("10.1.2.3".parse().unwrap(), 32),
        "10.1.2.3".parse::<IpAddr>().unwrap()
    );
    let causes: std::collections::HashSet<&str> = Cause::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(causes.len(), Cause::ALL.len(), "distinct identifiers");
}

/// A Calico node (real endpoint chains of one workload, `cali5125b8e5d77` at 10.0.5.9, from the
/// corpus) behind a minimal dispatch: its ingress policy admits only 10.0.0.99; its egress
/// policy chain sends everything to a second one that drops 1.2.3.4, and passes nothing.
fn calico_node() -> Node {
    let fragment = corpus_file("fragments/calico-accountant-cali-fw-tw-counters.rules");
    let body: Vec<&str> = fragment
        .lines()
        .map(|l| l.split_once("] ").map_or(l, |(_, rule)| rule))
        .collect();
    let mut chains: Vec<&str> = body
        .iter()
        .filter_map(|l| l.strip_prefix("-A ")?.split_whitespace().next())
        .chain(body.iter().filter_map(|l| l.split(" -j ").nth(1)))
        .filter(|c| c.starts_with("cali-"))
        .collect();
    chains.sort_unstable();
    chains.dedup();
    let mut text =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in &chains {
        text.push_str(&format!(":{c} - [0:0]\n"));
    }
    text.push_str("-A FORWARD -o cali5125b8e5d77 -j cali-tw-cali5125b8e5d77\n");
    text.push_str("-A FORWARD -i cali5125b8e5d77 -j cali-fw-cali5125b8e5d77\n");
    for l in &body {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str(
        "-A cali-pi-_hvIhg5e42MGXRa9paIF -s 10.0.0.99/32 -m comment --comment \"cali:admin\" -j MARK --set-xmark 0x10000/0x10000\n\
         -A cali-po-_hvIhg5e42MGXRa9paIF -m comment --comment \"cali:deny-list\" -j cali-po-_iIL2GVSReX3hYOgY4sn\n",
    );
    text.push_str("COMMIT\n");
    small_node(
        &text,
        "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n\
         10.0.5.9 dev cali5125b8e5d77 scope link\n\
         default via 10.0.0.254 dev eth0\n",
    )
}

#[test]
fn calico_workload_and_policy_denials() {
    let node = calico_node();
    let e = node.explain(&attempt(
        "10.0.0.7:1000",
        "10.0.5.9:80",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Timeout,
    ));
    assert_eq!(e.cause, Cause::NetworkPolicy, "{}", e.explanation);
    assert_eq!(
        e.explanation,
        "no Calico policy or profile admits 10.0.0.7 to workload cali5125b8e5d77 on tcp/80"
    );
    let by = e.trace.decided_by().unwrap();
    assert_eq!(by.chain, "cali-tw-cali5125b8e5d77");
    assert!(
        by.rule.contains("Drop if no policies passed packet"),
        "{}",
        by.rule
    );
    // The admitted source reaches the workload: then the workload is blamed, not a rule.
    let e = node.explain(&attempt(
        "10.0.0.99:1000",
        "10.0.5.9:80",
        Proto::Tcp,
        "eth0",
        AttemptFailure::Refused,
    ));
    assert_eq!(e.cause, Cause::NoListener, "{}", e.explanation);
    // Egress: the workload's policy chain drops 1.2.3.4 explicitly.
    let e = node.explain(&attempt(
        "10.0.5.9:1000",
        "1.2.3.4:443",
        Proto::Tcp,
        "cali5125b8e5d77",
        AttemptFailure::Timeout,
    ));
    assert_eq!(e.cause, Cause::NetworkPolicy, "{}", e.explanation);
    assert!(
        e.explanation.starts_with("Calico policy ")
            && e.explanation
                .contains("(egress) denies 10.0.5.9 → 1.2.3.4 on tcp/443"),
        "{}",
        e.explanation
    );
    let by = e.trace.decided_by().unwrap();
    assert_eq!(by.chain, "cali-po-_iIL2GVSReX3hYOgY4sn");
    // Elsewhere no egress policy passes it: the workload's chain drops it.
    let e = node.explain(&attempt(
        "10.0.5.9:1000",
        "8.8.8.8:443",
        Proto::Tcp,
        "cali5125b8e5d77",
        AttemptFailure::Timeout,
    ));
    assert_eq!(
        e.explanation,
        "no Calico policy or profile lets workload cali5125b8e5d77 connect to 8.8.8.8 on tcp/443"
    );
}
