//! The ruleset **as kube-proxy itself writes it** (shape `kube-proxy`), beside the save-syntax
//! text of [`crate::kube_proxy_ruleset`] (shape `generated`).
//!
//! Both shapes load the same numbers of rules per service (14 or 15 with three endpoints) with
//! the same addresses, node ports and load balancers, and both use kube-proxy's chain hashes and
//! comment texts. What this shape adds is what a real node's kernel receives from kube-proxy
//! (`pkg/proxy/iptables/proxier.go`, 1.28+), checked line by line against the restore input of
//! kube-proxy's own `TestOverallIPTablesRules` (`testdata/corpus/k8s-proxier-test-overall-restore-input.rules`):
//!
//! - **names as a cluster has them**: services spread over a few dozen namespaces with
//!   application-like names, port names as people write them, and unnamed ports, whose
//!   `ServicePortName` is `ns/name` without `:port` (the hash input and the comments follow);
//! - **kube-proxy's argument order and quoting**: `-m comment --comment "ns/name:port cluster IP"
//!   -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-…`, no `/32`, comments without spaces
//!   unquoted (`--comment ns/name:port`), `%0.10f` probabilities, `--or-mark` / `--xor-mark`;
//! - **kube-proxy's order**: the chain declarations of a table are written as kube-proxy meets
//!   them (fixed chains, then per service its `KUBE-SVC-`, `KUBE-EXT-` and `KUBE-SEP-` chains),
//!   services in an unsorted (seeded, shuffled) order as Go's map iteration gives them, and
//!   the rules of one service written together across chains. On the nft backend the kernel
//!   keeps chains and rule handles in this creation order, which is what `iptables-nft-save`
//!   and nfscope read back; the generated shape declares chains sorted by name.
//!
//! The rules kubelet and kube-proxy add to the built-in chains with `iptables -I` (hooks,
//! canaries, `KUBE-FIREWALL`) are written first in each table, in the same syntax.
//!
//! Pure text generation: no I/O, no clock; the shuffle and counters come from the seed.

use std::collections::HashSet;
use std::fmt::Write as _;

use nfscope_annotate::kube_proxy_rules::{
    ServicePort, endpoint_chain, external_chain, service_chain,
};

use crate::{CounterSource, GenOptions};

/// Namespaces of the synthetic cluster (a few platform ones, then application teams).
const NAMESPACES: [&str; 12] = [
    "default",
    "kube-system",
    "monitoring",
    "ingress-nginx",
    "cert-manager",
    "logging",
    "payments",
    "checkout",
    "catalog",
    "search",
    "identity",
    "notifications",
];

/// Application name stems; a service is `{stem}-{n}` or `{stem}` the first time.
const APPS: [&str; 16] = [
    "api",
    "web",
    "frontend",
    "backend",
    "redis-master",
    "postgres",
    "kafka-broker",
    "grafana",
    "prometheus-node-exporter",
    "worker",
    "gateway",
    "auth-server",
    "billing-service",
    "elasticsearch-client",
    "rabbitmq",
    "memcached",
];

/// Port names by the generator's port shape (`PORT_SHAPES` order: http, https, grpc, metrics,
/// dns); `""` is an unnamed port (`ns/name`, no `:port`).
const PORT_NAMES: [&str; 5] = ["", "https", "grpc-api", "http-metrics", "dns"];

/// kube-proxy's `ServicePortName` of synthetic service `index` in this shape.
pub fn service_port_name(index: usize) -> String {
    let namespace = NAMESPACES[(index * 7 + index / NAMESPACES.len()) % NAMESPACES.len()];
    let stem = APPS[index % APPS.len()];
    let round = index / APPS.len();
    let name = if round == 0 {
        stem.to_owned()
    } else {
        format!("{stem}-{round}")
    };
    match PORT_NAMES[index % PORT_NAMES.len()] {
        "" => format!("{namespace}/{name}"),
        port => format!("{namespace}/{name}:{port}"),
    }
}

/// One table of kube-proxy-written restore input: declarations and rules in write order.
struct Table {
    name: &'static str,
    builtins: &'static [&'static str],
    declared: HashSet<String>,
    chains: Vec<String>,
    rules: Vec<String>,
}

impl Table {
    fn new(name: &'static str, builtins: &'static [&'static str]) -> Self {
        Self {
            name,
            builtins,
            declared: HashSet::new(),
            chains: Vec::new(),
            rules: Vec::new(),
        }
    }

    fn declare(&mut self, chain: &str) {
        if !self.builtins.contains(&chain) && self.declared.insert(chain.to_owned()) {
            self.chains.push(chain.to_owned());
        }
    }

    /// `-A chain spec`, declaring the chain first if needed.
    fn rule(&mut self, chain: &str, spec: impl AsRef<str>) {
        self.declare(chain);
        self.rules.push(format!("-A {chain} {}", spec.as_ref()));
    }

    fn write(&self, out: &mut String, counters: &mut Option<CounterSource>) {
        let _ = writeln!(out, "*{}", self.name);
        for builtin in self.builtins {
            let (p, b) = counters.as_mut().map_or((0, 0), CounterSource::pair);
            let _ = writeln!(out, ":{builtin} ACCEPT [{p}:{b}]");
        }
        for chain in &self.chains {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for rule in &self.rules {
            if let Some(c) = counters.as_mut() {
                let (p, b) = c.pair();
                let _ = write!(out, "[{p}:{b}] ");
            }
            out.push_str(rule);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
}

/// Go's `%q`-free comment writing in kube-proxy: a comment with a space is quoted, one without
/// is written bare (`--comment ns/name:port`).
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

/// `%0.10f` of 1/n, as kube-proxy writes the `--probability`.
fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Seeded Fisher–Yates order of `0..n` (Go's map iteration order is random; this one is fixed
/// by the seed).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = CounterSource {
        state: seed ^ 0x5eed,
    };
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// `iptables-restore` input for the services in `ports` as kube-proxy writes it (see the module
/// docs). `pod_cidr` is kube-proxy's `--cluster-cidr`; `ipv6` selects the localnet rule (IPv4
/// only) like the generated shape.
pub(crate) fn write(
    ports: &[ServicePort],
    pod_cidr: &str,
    ipv6: bool,
    opts: &GenOptions,
    header: &str,
) -> String {
    let mut mangle = Table::new(
        "mangle",
        &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    );
    let mut filter = Table::new("filter", &["INPUT", "FORWARD", "OUTPUT"]);
    let mut nat = Table::new("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]);

    // kubelet: canaries and the iptables hint; kube-proxy's ensured jumps in the built-ins.
    for chain in [
        "KUBE-IPTABLES-HINT",
        "KUBE-KUBELET-CANARY",
        "KUBE-PROXY-CANARY",
    ] {
        mangle.declare(chain);
    }
    for t in [&mut filter, &mut nat] {
        t.declare("KUBE-KUBELET-CANARY");
        t.declare("KUBE-PROXY-CANARY");
    }
    let fw = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL";
    let svc = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES";
    let ext = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES";
    // kube-proxy's own chains first, in proxier.go's order, so the hooks find them declared.
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        filter.declare(chain);
    }
    filter.rule("INPUT", fw);
    filter.rule(
        "INPUT",
        "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
    );
    filter.rule("INPUT", ext);
    filter.rule("FORWARD", fw);
    filter.rule(
        "FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    );
    filter.rule("FORWARD", svc);
    filter.rule("FORWARD", ext);
    filter.rule("OUTPUT", fw);
    filter.rule("OUTPUT", svc);
    if !ipv6 {
        filter.rule("INPUT", "-j KUBE-FIREWALL");
        filter.rule("OUTPUT", "-j KUBE-FIREWALL");
        filter.rule(
            "KUBE-FIREWALL",
            "-m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        );
    }
    filter.rule("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP");
    filter.rule(
        "KUBE-FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT",
    );
    filter.rule(
        "KUBE-FORWARD",
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );

    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        nat.declare(chain);
    }
    nat.rule(
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    nat.rule(
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    nat.rule(
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    );
    nat.rule(
        "KUBE-POSTROUTING",
        "-m mark ! --mark 0x4000/0x4000 -j RETURN",
    );
    nat.rule("KUBE-POSTROUTING", "-j MARK --xor-mark 0x4000");
    nat.rule(
        "KUBE-POSTROUTING",
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
    );
    nat.rule("KUBE-MARK-MASQ", "-j MARK --or-mark 0x4000");

    for index in shuffled(ports.len(), opts.seed) {
        let port = &ports[index];
        if port.endpoints.is_empty() {
            no_endpoints(&mut filter, port);
        } else {
            service(&mut nat, port, pod_cidr);
        }
    }
    nat.rule(
        "KUBE-SERVICES",
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    );

    let mut counters = opts.counters.then(|| CounterSource::new(opts));
    let mut out = String::with_capacity(
        256 * (mangle.rules.len() + filter.rules.len() + nat.rules.len()) + 1024,
    );
    out.push_str(header);
    for table in [&mangle, &filter, &nat] {
        table.write(&mut out, &mut counters);
    }
    out
}

/// `-m tcp -p tcp` as kube-proxy writes a protocol match.
fn proto(p: &str) -> String {
    format!("-m {p} -p {p}")
}

fn no_endpoints(filter: &mut Table, port: &ServicePort) {
    let (name, p) = (&port.name, proto(&port.protocol));
    let why = comment(&format!("{name} has no endpoints"));
    filter.rule(
        "KUBE-SERVICES",
        format!(
            "{why} {p} -d {} --dport {} -j REJECT",
            port.cluster_ip, port.port
        ),
    );
    let Some(node_port) = port.node_port else {
        return;
    };
    if let Some(lb) = port.loadbalancer_ip {
        filter.rule(
            "KUBE-EXTERNAL-SERVICES",
            format!("{why} {p} -d {lb} --dport {} -j REJECT", port.port),
        );
    }
    filter.rule(
        "KUBE-EXTERNAL-SERVICES",
        format!("{why} -m addrtype --dst-type LOCAL {p} --dport {node_port} -j REJECT"),
    );
}

/// One service port with endpoints, as `syncProxyRules` writes it: the chain lines as the
/// chains are met, then the rules (KUBE-SERVICES jumps, node port, the external chain, the
/// service chain, the endpoint chains).
fn service(nat: &mut Table, port: &ServicePort, pod_cidr: &str) {
    let (name, protocol) = (&port.name, &port.protocol);
    let p = proto(protocol);
    let svc_chain = service_chain(name, protocol);
    let ext_chain = external_chain(name, protocol);
    let endpoints: Vec<(String, String)> = port
        .endpoints
        .iter()
        .map(|e| {
            let text = e.to_string();
            (endpoint_chain(name, protocol, &text), text)
        })
        .collect();
    nat.declare(&svc_chain);
    if port.node_port.is_some() {
        nat.declare(&ext_chain);
    }
    for (chain, _) in &endpoints {
        nat.declare(chain);
    }
    let vip = port.cluster_ip;
    nat.rule(
        "KUBE-SERVICES",
        format!(
            "{} {p} -d {vip} --dport {} -j {svc_chain}",
            comment(&format!("{name} cluster IP")),
            port.port
        ),
    );
    if let Some(node_port) = port.node_port {
        if let Some(lb) = port.loadbalancer_ip {
            nat.rule(
                "KUBE-SERVICES",
                format!(
                    "{} {p} -d {lb} --dport {} -j {ext_chain}",
                    comment(&format!("{name} loadbalancer IP")),
                    port.port
                ),
            );
        }
        nat.rule(
            "KUBE-NODEPORTS",
            format!("{} {p} --dport {node_port} -j {ext_chain}", comment(name)),
        );
        nat.rule(
            &ext_chain,
            format!(
                "{} -j KUBE-MARK-MASQ",
                comment(&format!(
                    "masquerade traffic for {name} external destinations"
                ))
            ),
        );
        nat.rule(&ext_chain, format!("-j {svc_chain}"));
    }
    nat.rule(
        &svc_chain,
        format!(
            "{} {p} -d {vip} --dport {} ! -s {pod_cidr} -j KUBE-MARK-MASQ",
            comment(&format!("{name} cluster IP")),
            port.port
        ),
    );
    let total = endpoints.len();
    for (i, (chain, text)) in endpoints.iter().enumerate() {
        let statistic = match total - i {
            1 => String::new(),
            remaining => format!(
                "-m statistic --mode random --probability {} ",
                probability(remaining)
            ),
        };
        nat.rule(
            &svc_chain,
            format!(
                "{} {statistic}-j {chain}",
                comment(&format!("{name} -> {text}"))
            ),
        );
    }
    for ((chain, text), endpoint) in endpoints.iter().zip(&port.endpoints) {
        nat.rule(
            chain,
            format!("{} -s {} -j KUBE-MARK-MASQ", comment(name), endpoint.ip()),
        );
        nat.rule(
            chain,
            format!("{} {p} -j DNAT --to-destination {text}", comment(name)),
        );
    }
}

/// The kube-proxy-shape text of one service port, for tests against kube-proxy's own output.
#[cfg(test)]
pub(crate) fn service_lines(port: &ServicePort, pod_cidr: &str) -> Vec<String> {
    let mut nat = Table::new("nat", &[]);
    service(&mut nat, port, pod_cidr);
    nat.rules
}
