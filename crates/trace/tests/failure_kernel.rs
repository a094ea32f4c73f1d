//! Ground truth for the failure explainer: real connections that fail in network namespaces,
//! the kernel as the oracle.
//!
//! One lab: a `client` namespace, a forwarding `node` with kube-router-style and kube-proxy-style
//! iptables rules (iptables-nft), and a `pod` namespace behind it with one listener. Each case
//! makes one real TCP connection from the client and checks three things agree:
//! - what the client saw (refused or timed out), against the case's expectation stated by hand;
//! - the kernel's counters (`iptables-nft-save -c` before and after): the deciding rule the
//!   explainer names counted the attempt's packet, and no other DROP/REJECT rule did; when the
//!   explainer blames no rule, no DROP/REJECT rule counted anything and the pod's namespace sent
//!   the RST (`Tcp OutRsts`) or stayed silent;
//! - the explainer, from the node's dump, addresses and routes after the attempt: the cause and
//!   the one-line explanation.
//!
//! IPv4 and IPv6. Each connection is bounded (1 s connect timeout); a missing `socat` or
//! `ip[6]tables-nft-restore` skips the test, but not under `CI=true`.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use nfscope_annotate::annotate;
use nfscope_ruleset::Ruleset;
use nfscope_test_support::{Children, RoutedLab, TestNetns, root_or_skip, tools_or_skip};
use nfscope_trace::TraceInput;
use nfscope_trace::failure::{Attempt, AttemptFailure, Cause, Explainer};
use nfscope_trace::{Proto, parse_routes};

const CLIENT: &str = "10.88.1.2";
const NODE1: &str = "10.88.1.1";
const NODE2: &str = "10.88.2.1";
/// The pod under kube-router's policy (listens on 8080).
const POD: &str = "10.88.2.2";
const CLIENT6: &str = "fd88:1::2";
const NODE6_1: &str = "fd88:1::1";
const NODE6_2: &str = "fd88:2::1";
const POD6: &str = "fd88:2::2";

/// The node's IPv6 rules: a REJECT with a TCP reset (the client is refused by the node, not by
/// the pod).
const RULES6: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d fd88:2::2/128 -p tcp -m tcp --dport 9443 -j REJECT --reject-with tcp-reset
COMMIT
";

/// The node's rules: kube-router's pod firewall for `shop/web-0` (only 10.88.1.99 admitted),
/// kube-proxy's REJECT of a Service without endpoints, a Service with one endpoint, and a plain
/// DROP. `@PODFW` is the pod firewall chain.
const RULES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEBHTTP0000000000 - [0:0]
:KUBE-SEP-WEBHTTP0000000000 - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.60/32 -p tcp -m comment --comment \"shop/web:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-WEBHTTP0000000000
-A KUBE-SVC-WEBHTTP0000000000 -m comment --comment \"shop/web:http -> 10.88.2.2:8080\" -j KUBE-SEP-WEBHTTP0000000000
-A KUBE-SEP-WEBHTTP0000000000 -p tcp -m comment --comment \"shop/web:http\" -m tcp -j DNAT --to-destination 10.88.2.2:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:@PODFW - [0:0]
:KUBE-NWPLCY-SHOPWEBALLOW0000 - [0:0]
-A FORWARD -m comment --comment \"kube-router netpol - TEMCG2JMHZYE7H7T\" -j KUBE-ROUTER-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A FORWARD -d 10.88.2.2/32 -p tcp -m tcp --dport 9090 -j DROP
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment \"shop/cart:http has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-ROUTER-FORWARD -d 10.88.2.2/32 -m comment --comment \"rule to jump traffic destined to POD name:web-0 namespace: shop to chain @PODFW\" -j @PODFW
-A @PODFW -m comment --comment \"rule for stateful firewall for pod\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A @PODFW -m comment --comment \"rule to drop invalid state for pod\" -m conntrack --ctstate INVALID -j DROP
-A @PODFW -d 10.88.2.2/32 -p tcp -m tcp --dport 8080 -m comment --comment \"run through nw policy allow-admin\" -j KUBE-NWPLCY-SHOPWEBALLOW0000
-A @PODFW -d 10.88.2.2/32 -p tcp ! --dport 8080 -m comment --comment \"run through nw policy allow-admin\" -j MARK --set-xmark 0x10000/0x10000
-A @PODFW -m comment --comment \"rule to REJECT traffic destined for POD name:web-0 namespace: shop\" -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable
-A @PODFW -j MARK --set-xmark 0x0/0x10000
-A @PODFW -m comment --comment \"set mark to ACCEPT traffic that comply to network policies\" -j MARK --set-xmark 0x20000/0x20000
-A KUBE-NWPLCY-SHOPWEBALLOW0000 -s 10.88.1.99/32 -m comment --comment \"rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-admin namespace shop\" -j MARK --set-xmark 0x10000/0x10000
COMMIT
";

const POD_FW: &str = "KUBE-POD-FW-SHOPWEB0ABCDEFGH";

struct Lab {
    /// First, so the listeners stop before their namespaces go.
    _listeners: Children,
    client: TestNetns,
    node: TestNetns,
    pod: TestNetns,
    if_client: String,
}

fn build_lab() -> Lab {
    let RoutedLab {
        client,
        node,
        server: pod,
        if_client,
        if_server: if_pod,
    } = RoutedLab::new(
        "failx",
        &[&format!("{NODE1}/24"), &format!("{NODE6_1}/64")],
        &[&format!("{CLIENT}/24"), &format!("{CLIENT6}/64")],
        &[&format!("{NODE2}/24"), &format!("{NODE6_2}/64")],
        &[&format!("{POD}/24"), &format!("{POD6}/64")],
    )
    .unwrap();
    // The Service CIDR leads towards the pods, as on a node whose default route is there.
    node.sh_ok(&format!("ip route add 10.96.0.0/24 dev {if_pod}"));
    let mut listeners = Children::default();
    listeners.push(pod.spawn(&[
        "socat",
        "TCP-LISTEN:8080,fork,reuseaddr,ipv6only=0,pf=ip6",
        "SYSTEM:echo ok",
    ]));
    let lab = Lab {
        _listeners: listeners,
        client,
        node,
        pod,
        if_client,
    };
    // No rules yet: wait until the listener answers through the node.
    let until = Instant::now() + Duration::from_secs(10);
    while connect(&lab.client, POD, 8080, 41000) != Seen::Connected
        || connect(&lab.client, POD6, 8080, 41001) != Seen::Connected
    {
        assert!(Instant::now() < until, "lab listener did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rules = RULES.replace("@PODFW", POD_FW);
    lab.node.exec_input_ok(&["iptables-nft-restore"], &rules);
    lab.node.exec_input_ok(&["ip6tables-nft-restore"], RULES6);
    lab
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Connected,
    Refused,
    TimedOut,
}

/// One TCP connection from `ns` to `dst:port` from source port `sport`.
fn connect(ns: &TestNetns, dst: &str, port: u16, sport: u16) -> Seen {
    let target = if dst.contains(':') {
        format!("TCP6:[{dst}]:{port},connect-timeout=1,sourceport={sport},reuseaddr")
    } else {
        format!("TCP4:{dst}:{port},connect-timeout=1,sourceport={sport},reuseaddr")
    };
    let out = ns.exec(&["timeout", "4", "socat", "-T", "2", "STDIO", &target]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok") {
        Seen::Connected
    } else if stderr.contains("refused") || stderr.contains("unreachable") {
        Seen::Refused
    } else {
        Seen::TimedOut
    }
}

/// The node's iptables-nft rules of one family with counters.
fn dump(lab: &Lab, v6: bool) -> Ruleset {
    support::iptables_nft_rules(&lab.node, v6, true)
}

/// `(table, chain, 1-based index, target, packets)` of every rule.
fn counters(rs: &Ruleset) -> Vec<(String, String, usize, String, u64)> {
    let mut v = Vec::new();
    for t in &rs.tables {
        for c in &t.chains {
            for (i, r) in c.rules.iter().enumerate() {
                v.push((
                    t.name.clone(),
                    c.name.clone(),
                    i + 1,
                    r.spec.target_name().unwrap_or("").to_owned(),
                    r.counters.map_or(0, |c| c.packets),
                ));
            }
        }
    }
    v
}

/// A namespace's `Tcp: … OutRsts` counter (both families: the kernel counts IPv6 TCP there too).
fn out_rsts(ns: &TestNetns) -> u64 {
    let text = ns.sh_ok("cat /proc/net/snmp");
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "OutRsts")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

fn input_of(lab: &Lab, rs: Ruleset) -> TraceInput {
    let mut input = TraceInput::new(vec![rs]);
    let mut routes = parse_routes(&lab.node.sh_ok("ip -4 route show table all")).unwrap();
    routes.extend(parse_routes(&lab.node.sh_ok("ip -6 route show table all")).unwrap());
    input.routes = Some(routes);
    input.local_addrs = [NODE1, NODE2, NODE6_1, NODE6_2]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    input.interfaces = Some(
        lab.node
            .sh_ok("ls /sys/class/net")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    );
    input
}

struct Case {
    name: &'static str,
    dst: &'static str,
    port: u16,
    /// What the client should see, by hand.
    seen: Seen,
    cause: Cause,
    explanation: &'static str,
    /// `(chain, 1-based index)` of the rule that decides, by hand; `None` when no rule may be blamed.
    by: Option<(&'static str, usize)>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "kube-router policy REJECT",
            dst: POD,
            port: 8080,
            seen: Seen::Refused,
            cause: Cause::NetworkPolicy,
            explanation: "no NetworkPolicy admits 10.88.1.2 to pod shop/web-0 on tcp/8080",
            by: Some((POD_FW, 5)),
        },
        Case {
            name: "kube-proxy no-endpoint REJECT",
            dst: "10.96.0.50",
            port: 80,
            seen: Seen::Refused,
            cause: Cause::ServiceNoEndpoints,
            explanation: "Service shop/cart:http has no endpoints: kube-proxy rejects 10.96.0.50:80",
            by: Some(("KUBE-SERVICES", 1)),
        },
        Case {
            name: "plain DROP",
            dst: POD,
            port: 9090,
            seen: Seen::TimedOut,
            cause: Cause::RuleDrop,
            explanation: "ipv4 filter/FORWARD rule 3 drops it: -A FORWARD -d 10.88.2.2/32 -p tcp -m tcp --dport 9090 -j DROP",
            by: Some(("FORWARD", 3)),
        },
        Case {
            name: "nothing listening on the pod",
            dst: POD,
            port: 7070,
            seen: Seen::Refused,
            cause: Cause::NoListener,
            explanation: "the rules accepted it; nothing listening on 10.88.2.2:7070 (tcp)",
            by: None,
        },
        Case {
            name: "IPv6: a REJECT with a TCP reset from the node",
            dst: POD6,
            port: 9443,
            seen: Seen::Refused,
            cause: Cause::RuleReject,
            explanation: "ipv6 filter/FORWARD rule 1 rejects it: -A FORWARD -d fd88:2::2/128 -p tcp -m tcp --dport 9443 -j REJECT --reject-with tcp-reset",
            by: Some(("FORWARD", 1)),
        },
        Case {
            name: "IPv6: nothing listening on the pod",
            dst: POD6,
            port: 7070,
            seen: Seen::Refused,
            cause: Cause::NoListener,
            explanation: "the rules accepted it; nothing listening on [fd88:2::2]:7070 (tcp)",
            by: None,
        },
        Case {
            name: "ClusterIP on a port its Service lacks",
            dst: "10.96.0.60",
            port: 81,
            seen: Seen::TimedOut,
            cause: Cause::ClusterIpWrongPort,
            explanation: "10.96.0.60 is the ClusterIP of Service shop/web, which has no port tcp/81: kube-proxy leaves it untranslated and nothing answers there",
            by: None,
        },
    ]
}

fn run_case(lab: &Lab, case: &Case, sport: u16) -> Result<(), String> {
    let v6 = case.dst.contains(':');
    let before = counters(&dump(lab, v6));
    let rsts = out_rsts(&lab.pod);
    let seen = connect(&lab.client, case.dst, case.port, sport);
    if seen != case.seen {
        return Err(format!("client saw {seen:?}, expected {:?}", case.seen));
    }
    let after_rs = dump(lab, v6);
    let after = counters(&after_rs);
    let moved: Vec<&(String, String, usize, String, u64)> = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a.4 > b.4 && matches!(a.3.as_str(), "DROP" | "REJECT"))
        .map(|(a, _)| a)
        .collect();
    let failure = match seen {
        Seen::Refused => AttemptFailure::Refused,
        _ => AttemptFailure::Timeout,
    };
    let attempt = Attempt {
        client: SocketAddr::new(
            if v6 { CLIENT6 } else { CLIENT }.parse::<IpAddr>().unwrap(),
            sport,
        ),
        dialled: SocketAddr::new(case.dst.parse().unwrap(), case.port),
        proto: Proto::Tcp,
        in_iface: Some(lab.if_client.clone()),
        mark: None,
        failure,
        server: None,
    };
    let input = input_of(lab, after_rs);
    let annotations: Vec<_> = input.rulesets.iter().map(annotate).collect();
    let e = Explainer::new(&input, &annotations, &[])
        .explain(&attempt)
        .map_err(|e| format!("explain: {e}"))?;
    if e.cause != case.cause || e.explanation != case.explanation {
        return Err(format!(
            "explainer said {} / {:?}, expected {} / {:?}",
            e.cause.as_str(),
            e.explanation,
            case.cause.as_str(),
            case.explanation
        ));
    }
    let named = e
        .trace
        .decided_by()
        .filter(|_| e.cause.blames_rules())
        .map(|d| (d.chain.clone(), d.rule_index));
    match case.by {
        Some((chain, index)) => {
            if named != Some((chain.to_owned(), Some(index))) {
                return Err(format!(
                    "explainer named {named:?}, expected {chain} #{index}"
                ));
            }
            // The kernel counted the packet on exactly that rule, and on no other DROP/REJECT.
            if moved.len() != 1 || moved[0].1 != chain || moved[0].2 != index {
                return Err(format!(
                    "kernel counters of DROP/REJECT rules moved: {moved:?}"
                ));
            }
            // The pod never saw it: any reset came from the node's rule.
            let sent = out_rsts(&lab.pod) - rsts;
            if sent != 0 {
                return Err(format!("the pod sent {sent} RSTs although a rule decided"));
            }
        }
        None => {
            if !moved.is_empty() {
                return Err(format!(
                    "no rule should be blamed, but the kernel counted {moved:?}"
                ));
            }
            let sent = out_rsts(&lab.pod) - rsts;
            let expect_rst = case.seen == Seen::Refused;
            if (sent > 0) != expect_rst {
                return Err(format!(
                    "the pod sent {sent} RSTs (expected some: {expect_rst})"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn the_explainer_names_the_rule_the_kernel_counted_or_blames_none() {
    let test = "the_explainer_names_the_rule_the_kernel_counted_or_blames_none";
    if !root_or_skip(test) {
        return;
    }
    if !tools_or_skip(
        test,
        &[
            "socat",
            "iptables-nft-restore",
            "iptables-nft-save",
            "ip6tables-nft-restore",
            "ip6tables-nft-save",
        ],
    ) {
        return;
    }
    let lab = build_lab();
    let mut failures = Vec::new();
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        let sport = 42000 + u16::try_from(i).unwrap();
        match run_case(&lab, case, sport) {
            Ok(()) => eprintln!("ok   {}", case.name),
            Err(e) => {
                eprintln!("FAIL {}: {e}", case.name);
                failures.push(format!("{}: {e}", case.name));
            }
        }
    }
    // The admitted client is let through by the same rules (the policy, not a typo, decides).
    lab.client
        .sh_ok("ip addr add 10.88.1.99/24 dev $(ls /sys/class/net | grep -v lo | head -1)");
    let target = "TCP4:10.88.2.2:8080,connect-timeout=1,bind=10.88.1.99";
    let out = lab
        .client
        .exec(&["timeout", "4", "socat", "-T", "2", "STDIO", target]);
    if !String::from_utf8_lossy(&out.stdout).contains("ok") {
        failures.push(format!(
            "the admitted client did not connect: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
