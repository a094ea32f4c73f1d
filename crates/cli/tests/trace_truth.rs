//! Kernel ground truth for issues 12 and 13 in `nfscope trace` and the one-shot commands, each
//! in its own network namespaces (the machine's own namespace is never touched):
//!
//! - sources that cannot be read (nfscope run as uid 65534 without capabilities, or with a
//!   time limit no tool can meet) are named, the verdict is UNDETERMINED (MAY), never the
//!   ACCEPT MUST an empty ruleset gives, and the commands exit non-zero when nothing was read;
//! - REDIRECT in PREROUTING (written `--to-port`, as Istio does) goes to the primary address of
//!   the incoming interface: the conntrack entry's reply tuple says where the kernel sent it;
//! - broadcast and multicast UDP is delivered locally: the INPUT rule the tracer names is the
//!   one whose counter moved, and FORWARD's counters stay still; multicast to a group no socket
//!   joined moves no counter at all, and the tracer says routing dropped it;
//! - TPROXY: with a transparent socket the connection is accepted through INPUT (the tracer's
//!   first branch), without one the kernel drops it at the TPROXY rule (its second branch).

use std::process::{Command, Output};
use std::time::Duration;

use nfscope_test_support::{TestNetns, root_or_skip};
use serde_json::Value;

const NFSCOPE: &str = env!("CARGO_BIN_EXE_nfscope");

/// uid/gid 65534 with no capabilities at all (none inheritable, none in the bounding set).
const NOBODY: &[&str] = &[
    "setpriv",
    "--reuid",
    "65534",
    "--regid",
    "65534",
    "--clear-groups",
    "--inh-caps",
    "-all",
    "--bounding-set",
    "-all",
];

/// Runs nfscope inside `ns` (entered as root), optionally with `prefix` (e.g. [`NOBODY`]).
fn nfscope_in(ns: &TestNetns, prefix: &[&str], args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(prefix)
        .arg(NFSCOPE)
        .args(args)
        .output()
        .expect("nfscope runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn unreadable_sources_are_named_and_never_give_a_certain_verdict() {
    if !root_or_skip("unreadable_sources_are_named_and_never_give_a_certain_verdict") {
        return;
    }
    let ns = TestNetns::new("unread").unwrap();
    ns.sh_ok("iptables-legacy -A INPUT -p tcp --dport 80 -j DROP");
    let trace = [
        "trace",
        "--src",
        "127.0.0.1",
        "--dst",
        "127.0.0.1",
        "--proto",
        "tcp",
        "--dport",
        "80",
        "--format",
        "json",
    ];
    // As root the DROP rule is read and decides.
    let root = nfscope_in(&ns, &[], &trace);
    assert!(root.status.success(), "{}", text(&root));
    let report = json_of(&root);
    assert_eq!(report["verdict"], "DROP", "{report}");
    assert_eq!(report["certainty"], "MUST");
    assert_eq!(report["unread"], Value::Array(vec![]));

    // Without capabilities nothing can be read: UNDETERMINED, each source named, exit 1.
    let nobody = nfscope_in(&ns, NOBODY, &trace);
    assert_eq!(nobody.status.code(), Some(1), "{}", text(&nobody));
    let report = json_of(&nobody);
    assert_eq!(report["verdict"], "UNDETERMINED", "{report}");
    assert_eq!(report["certainty"], "MAY");
    let unread = report["unread"].as_array().expect("unread list");
    let legacy_v4 = unread
        .iter()
        .find(|u| u["source"] == "rules" && u["family"] == "ipv4" && u["backend"] == "legacy")
        .unwrap_or_else(|| panic!("ipv4 legacy rules not named: {report}"));
    assert!(
        !legacy_v4["reason"].as_str().unwrap_or("").is_empty(),
        "{legacy_v4}"
    );
    assert!(
        unread
            .iter()
            .any(|u| u["family"] == "ipv4" && u["backend"] == "nft"),
        "{report}"
    );
    assert!(
        text(&nobody).contains("no ruleset could be read"),
        "{}",
        text(&nobody)
    );
    let plain = nfscope_in(&ns, NOBODY, &trace[..trace.len() - 2]);
    let plain = text(&plain);
    assert!(plain.contains("verdict: UNDETERMINED (MAY)"), "{plain}");
    assert!(plain.contains("not read: ipv4 legacy rules"), "{plain}");

    // A time limit no tool meets: named as a timeout, never ACCEPT MUST.
    let mut hurried = trace.to_vec();
    hurried.extend(["--timeout", "0.000001"]);
    let out = nfscope_in(&ns, &[], &hurried);
    if out.status.success() || !out.stdout.is_empty() {
        let report = json_of(&out);
        assert_ne!(
            (report["verdict"].as_str(), report["certainty"].as_str()),
            (Some("ACCEPT"), Some("MUST")),
            "{report}"
        );
    }
    assert!(
        text(&out).contains("timed out"),
        "the timeout is named: {}",
        text(&out)
    );

    // lint and rules: non-zero, naming what could not be read.
    for command in [
        &["lint"][..],
        &["rules"][..],
        &["lint", "--format", "json"][..],
    ] {
        let out = nfscope_in(&ns, NOBODY, command);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {}", text(&out));
        let all = text(&out);
        assert!(
            all.contains("no ruleset could be read") && all.contains("ipv4 legacy rules"),
            "{command:?}: {all}"
        );
    }
    // doctor: the backends check fails and says why, JSON lists the unread sources.
    let out = nfscope_in(&ns, NOBODY, &["doctor", "--format", "json"]);
    assert!(!out.status.success(), "{}", text(&out));
    let report = json_of(&out);
    let backends = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "backends")
        .cloned()
        .expect("backends check");
    assert_eq!(backends["status"], "fail", "{backends}");
    assert!(
        backends["summary"]
            .as_str()
            .unwrap()
            .contains("could not be read"),
        "{backends}"
    );
    assert!(
        report["unread"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["family"] == "ipv4" && u["backend"] == "legacy"),
        "{report}"
    );
}

/// Per-rule packet counters of `chain` (legacy backend), and the policy's.
fn counters(ns: &TestNetns, tool: &str, chain: &str) -> (Vec<u64>, u64) {
    let out = ns.sh_ok(&format!("{tool} -L {chain} -v -x -n"));
    let mut lines = out.lines();
    let header = lines.next().unwrap_or("");
    let policy = header
        .split("policy ")
        .nth(1)
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let rules = lines
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    (rules, policy)
}

fn moved(before: &(Vec<u64>, u64), after: &(Vec<u64>, u64)) -> Vec<Option<usize>> {
    let mut out: Vec<Option<usize>> = before
        .0
        .iter()
        .zip(&after.0)
        .enumerate()
        .filter(|(_, (b, a))| a > b)
        .map(|(i, _)| Some(i + 1))
        .collect();
    if after.1 > before.1 {
        out.push(None);
    }
    out
}

fn lab(tag: &str) -> (TestNetns, TestNetns) {
    let node = TestNetns::new(tag).unwrap();
    let client = TestNetns::new(tag).unwrap();
    node.sh_ok(&format!(
        "ip link add lan0 type veth peer name eth0 netns {}",
        client.name()
    ));
    node.sh_ok(
        "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 && \
         ip addr add 192.168.70.1/24 dev lan0 && ip addr add 192.168.70.100/24 dev lan0 && \
         ip addr add fd70::1/64 dev lan0 nodad && ip link set lan0 up",
    );
    client.sh_ok(
        "ip addr add 192.168.70.2/24 dev eth0 && ip addr add fd70::2/64 dev eth0 nodad && \
         ip link set eth0 up && ip route add default via 192.168.70.1",
    );
    client.sh_ok("ip -6 route add default via fd70::1");
    (node, client)
}

#[test]
fn redirect_goes_to_the_primary_address_of_the_incoming_interface() {
    if !root_or_skip("redirect_goes_to_the_primary_address_of_the_incoming_interface") {
        return;
    }
    let (node, client) = lab("redir");
    // Istio writes the abbreviation; iptables-restore accepts it.
    for tool in ["iptables-nft-restore", "ip6tables-nft-restore"] {
        node.sh_ok(&format!(
            "{tool} <<'EOF'\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A PREROUTING -i lan0 -p tcp --dport 8080 -j REDIRECT --to-port 15001\nCOMMIT\nEOF"
        ));
    }
    let mut listeners = Vec::new();
    for spec in [
        "TCP4-LISTEN:15001,reuseaddr,fork",
        "TCP6-LISTEN:15001,ipv6only=1,reuseaddr,fork",
    ] {
        let child = Command::new("ip")
            .args(["netns", "exec", node.name()])
            .args(["socat", spec, "SYSTEM:echo ok"])
            .spawn()
            .expect("socat listens");
        listeners.push(KillOnDrop(child));
    }
    std::thread::sleep(Duration::from_millis(300));
    // (family, client's source, destination, socat address, where the kernel should send it)
    // IPv4: to the secondary address of lan0, rewritten to the primary one. IPv6: to an address
    // routed through the node, rewritten to lan0's one global address.
    let cases = [
        (
            "ipv4",
            "192.168.70.2",
            "192.168.70.100",
            "TCP4:192.168.70.100:8080",
            "192.168.70.1:15001",
        ),
        (
            "ipv6",
            "fd70::2",
            "fd99::9",
            "TCP6:[fd99::9]:8080",
            "[fd70::1]:15001",
        ),
    ];
    let dump = node.sh_ok("iptables-nft-save && ip6tables-nft-save");
    for (family, src, dst, connect, expected) in cases {
        let reply = client.sh_ok(&format!("timeout 3 socat -u {connect} - ; true"));
        assert_eq!(
            reply.trim(),
            "ok",
            "{family}: the redirected connection was accepted"
        );
        let ct = node.sh_ok(&format!(
            "conntrack -L -f {family} -p tcp --orig-port-dst 8080 2>/dev/null"
        ));
        let kernel_dst = ct
            .lines()
            .find_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                // The second src= is the reply tuple's source: where the kernel sent the packet.
                let reply_src = fields.iter().filter(|f| f.starts_with("src=")).nth(1)?;
                let reply_sport = fields.iter().filter(|f| f.starts_with("sport=")).nth(1)?;
                let ip: std::net::IpAddr = reply_src.trim_start_matches("src=").parse().ok()?;
                let port: u16 = reply_sport.trim_start_matches("sport=").parse().ok()?;
                Some(std::net::SocketAddr::new(ip, port).to_string())
            })
            .unwrap_or_else(|| panic!("{family}: no conntrack entry: {ct}"));
        assert_eq!(kernel_dst, expected, "{ct}");

        let args = [
            "trace", "--src", src, "--dst", dst, "--proto", "tcp", "--sport", "40000", "--dport",
            "8080", "--in", "lan0", "--format", "json",
        ];
        let live = nfscope_in(&node, &[], &args);
        assert!(live.status.success(), "{}", text(&live));
        let report = json_of(&live);
        assert_eq!(report["nat"]["dnat"], kernel_dst.as_str(), "{report}");

        // Offline from the dump without routes: the address is not known, and the report says so.
        let dir = std::env::temp_dir().join(format!("nfscope-redir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.rules");
        let v4 = dump.split("# Generated by ip6tables").next().unwrap_or("");
        let v6 = &dump[v4.len()..];
        std::fs::write(&file, if family == "ipv4" { v4 } else { v6 }).unwrap();
        let mut offline_args = args.to_vec();
        offline_args.extend(["--rules", file.to_str().unwrap()]);
        let offline = Command::new(NFSCOPE).args(&offline_args).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(offline.status.success(), "{}", text(&offline));
        let report = json_of(&offline);
        assert_eq!(report["nat"]["dnat"], "REDIRECT(lan0):15001", "{report}");
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn broadcast_and_multicast_are_delivered_to_input_as_the_kernel_does() {
    if !root_or_skip("broadcast_and_multicast_are_delivered_to_input_as_the_kernel_does") {
        return;
    }
    let (node, client) = lab("bcast");
    node.sh_ok(
        "iptables-legacy -P INPUT DROP && iptables-legacy -P FORWARD DROP && \
         iptables-legacy -A INPUT -p udp --dport 5353 -j ACCEPT && \
         iptables-legacy -A INPUT -p udp --dport 1900 -j ACCEPT && \
         iptables-legacy -A INPUT -p udp --dport 68 -j ACCEPT && \
         iptables-legacy -A INPUT -p udp --dport 137 -m addrtype --dst-type BROADCAST -j ACCEPT && \
         iptables-legacy -A FORWARD -p udp -j DROP && \
         ip6tables-legacy -P INPUT DROP && ip6tables-legacy -P FORWARD DROP && \
         ip6tables-legacy -A INPUT -p udp --dport 5353 -m addrtype --dst-type MULTICAST -j ACCEPT && \
         ip6tables-legacy -A INPUT -p ipv6-icmp -j ACCEPT && \
         ip6tables-legacy -A FORWARD -p udp -j DROP",
    );
    // Members of the groups, as avahi and an SSDP client are.
    let mut members = Vec::new();
    for spec in [
        "UDP4-RECV:5353,reuseaddr,ip-add-membership=224.0.0.251:lan0",
        "UDP4-RECV:1900,reuseaddr,ip-add-membership=239.255.255.250:lan0",
        "UDP6-RECV:5353,reuseaddr,ipv6-join-group=[ff02::fb]:lan0",
    ] {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                node.name(),
                "socat",
                "-u",
                spec,
                "/dev/null",
            ])
            .spawn()
            .expect("socat joins");
        members.push(KillOnDrop(child));
    }
    std::thread::sleep(Duration::from_millis(500));
    // (family, destination, port, socat address); a socket joined every group but
    // 224.0.0.250 and ff02::1:3.
    let cases = [
        (
            "ipv4",
            "224.0.0.251",
            5353,
            "UDP4-DATAGRAM:224.0.0.251:5353",
        ),
        (
            "ipv4",
            "224.0.0.250",
            5353,
            "UDP4-DATAGRAM:224.0.0.250:5353",
        ),
        (
            "ipv4",
            "239.255.255.250",
            1900,
            "UDP4-DATAGRAM:239.255.255.250:1900",
        ),
        (
            "ipv4",
            "255.255.255.255",
            68,
            "UDP4-DATAGRAM:255.255.255.255:68,broadcast",
        ),
        (
            "ipv4",
            "192.168.70.255",
            137,
            "UDP4-DATAGRAM:192.168.70.255:137,broadcast",
        ),
        (
            "ipv6",
            "ff02::fb",
            5353,
            "UDP6-DATAGRAM:[ff02::fb]:5353,so-bindtodevice=eth0",
        ),
        (
            "ipv6",
            "ff02::1:3",
            5353,
            "UDP6-DATAGRAM:[ff02::1:3]:5353,so-bindtodevice=eth0",
        ),
    ];
    for (family, dst, dport, socat) in cases {
        let delivered = !matches!(dst, "224.0.0.250" | "ff02::1:3");
        let (tool, src) = if family == "ipv4" {
            ("iptables-legacy", "192.168.70.2")
        } else {
            ("ip6tables-legacy", "fd70::2")
        };
        let before = (
            counters(&node, tool, "INPUT"),
            counters(&node, tool, "FORWARD"),
        );
        client.sh_ok(&format!(
            "echo x | socat -u - {socat},sourceport=40000,reuseaddr"
        ));
        std::thread::sleep(Duration::from_millis(200));
        let after = (
            counters(&node, tool, "INPUT"),
            counters(&node, tool, "FORWARD"),
        );
        // Neighbour discovery and MLD (IPv6 rule 2) come and go on their own: not ours.
        let input_moved: Vec<Option<usize>> = moved(&before.0, &after.0)
            .into_iter()
            .filter(|&r| !(family == "ipv6" && r == Some(2)))
            .collect();
        let forward_moved = moved(&before.1, &after.1);
        assert!(forward_moved.is_empty(), "{dst}: FORWARD moved");
        assert_eq!(
            input_moved.len(),
            usize::from(delivered),
            "{dst}: INPUT moved {input_moved:?}"
        );

        let out = nfscope_in(
            &node,
            &[],
            &[
                "trace",
                "--src",
                src,
                "--dst",
                dst,
                "--proto",
                "udp",
                "--sport",
                "40000",
                "--dport",
                &dport.to_string(),
                "--in",
                "lan0",
                "--format",
                "json",
            ],
        );
        assert!(out.status.success(), "{dst}: {}", text(&out));
        let report = json_of(&out);
        let path = report["path"].as_array().unwrap();
        if !delivered {
            // Nobody joined the group: the kernel's routing drops it before INPUT.
            assert_eq!(report["verdict"], "DROP", "{dst}: {report}");
            assert!(
                path.iter().all(|s| s["hook"] == "PREROUTING"),
                "{dst}: {report}"
            );
            continue;
        }
        assert_eq!(report["verdict"], "ACCEPT", "{dst}: {report}");
        let by = &report["decided_by"];
        assert_eq!(by["chain"], "INPUT", "{dst}: {report}");
        let index = by["rule_index"].as_u64().map(|i| i as usize);
        assert_eq!(Some(index), input_moved.first().copied(), "{dst}: {report}");
        assert!(
            path.iter().all(|s| s["hook"] != "FORWARD"),
            "{dst}: {report}"
        );
    }
}

/// TPROXY hands the packet to a transparent socket (the mark routes it locally) or, with no
/// socket there, the kernel drops it: the tracer's two branches, each checked by counters.
#[test]
fn tproxy_delivers_to_the_proxy_socket_or_drops_without_one() {
    if !root_or_skip("tproxy_delivers_to_the_proxy_socket_or_drops_without_one") {
        return;
    }
    let (node, client) = lab("tproxy");
    node.sh_ok(
        "ip rule add fwmark 0x1/0x1 lookup 100 && ip route add local 0.0.0.0/0 dev lo table 100 && \
         iptables-legacy -t mangle -A PREROUTING -i lan0 -p tcp --dport 80 -j TPROXY --on-port 15001 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1 && \
         iptables-legacy -P INPUT DROP && iptables-legacy -P FORWARD DROP && \
         iptables-legacy -A INPUT -m mark --mark 0x1/0x1 -j ACCEPT && \
         iptables-legacy -A FORWARD -p tcp -j DROP",
    );
    let trace = [
        "trace",
        "--src",
        "192.168.70.2",
        "--dst",
        "10.99.99.9",
        "--proto",
        "tcp",
        "--sport",
        "40000",
        "--dport",
        "80",
        "--in",
        "lan0",
        "--format",
        "json",
    ];
    let out = nfscope_in(&node, &[], &trace);
    assert!(out.status.success(), "{}", text(&out));
    let report = json_of(&out);
    assert_eq!(report["verdict"], "UNDETERMINED", "{report}");
    let branches = report["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 2, "{report}");
    let (delivered, dropped) = (&branches[0], &branches[1]);
    assert_eq!(delivered["verdict"], "ACCEPT", "{report}");
    assert_eq!(delivered["decided_by"]["chain"], "INPUT", "{report}");
    assert_eq!(delivered["decided_by"]["rule_index"], 1, "{report}");
    assert_eq!(dropped["verdict"], "DROP", "{report}");
    assert_eq!(dropped["decided_by"]["table"], "mangle", "{report}");

    // No socket yet: the kernel drops at the TPROXY rule, INPUT never sees it.
    let input_before = counters(&node, "iptables-legacy", "INPUT");
    client.sh_ok("timeout 1 socat -u TCP:10.99.99.9:80,connect-timeout=0.5 - ; true");
    let input_after = counters(&node, "iptables-legacy", "INPUT");
    assert!(
        moved(&input_before, &input_after).is_empty(),
        "INPUT moved without a proxy socket"
    );
    let (mangle, _) = counters(&node, "iptables-legacy -t mangle", "PREROUTING");
    assert!(mangle[0] > 0, "the TPROXY rule saw the packet");

    // With a transparent socket on 127.0.0.1:15001 the connection is accepted through INPUT's
    // mark rule, which is the first branch's deciding rule.
    let listener = Command::new("ip")
        .args(["netns", "exec", node.name()])
        .args([
            "socat",
            "TCP4-LISTEN:15001,bind=127.0.0.1,ip-transparent,reuseaddr,fork",
            "SYSTEM:echo ok",
        ])
        .spawn()
        .expect("socat listens");
    let _kill = KillOnDrop(listener);
    std::thread::sleep(Duration::from_millis(300));
    let before = counters(&node, "iptables-legacy", "INPUT");
    let reply = client.sh_ok("timeout 3 socat -u TCP:10.99.99.9:80 - ; true");
    assert_eq!(reply.trim(), "ok", "the proxy accepted the connection");
    let after = counters(&node, "iptables-legacy", "INPUT");
    assert_eq!(moved(&before, &after), vec![Some(1)]);
}

/// `-m addrtype` on the node's own address: IPv4 says LOCAL only, IPv6 says UNICAST and LOCAL.
/// The INPUT rules the tracer says matched are exactly the ones whose counters moved.
#[test]
fn addrtype_matches_what_the_kernel_counts() {
    if !root_or_skip("addrtype_matches_what_the_kernel_counts") {
        return;
    }
    let (node, _client) = lab("addrtype");
    // Echo requests only: neighbour discovery and MLD arrive on their own and would blur counters.
    for (tool, echo) in [
        ("iptables-legacy", "-p icmp --icmp-type echo-request"),
        (
            "ip6tables-legacy",
            "-p ipv6-icmp --icmpv6-type echo-request",
        ),
    ] {
        node.sh_ok(&format!(
            "{tool} -A INPUT {echo} -m addrtype --dst-type UNICAST && \
             {tool} -A INPUT {echo} -m addrtype --dst-type LOCAL && \
             {tool} -A INPUT {echo} -m addrtype --dst-type MULTICAST"
        ));
    }
    for (tool, addr, proto) in [
        ("iptables-legacy", "192.168.70.1", "icmp"),
        ("ip6tables-legacy", "fd70::1", "icmpv6"),
    ] {
        let before = counters(&node, tool, "INPUT");
        node.sh_ok(&format!("ping -c 1 -W 1 {addr} >/dev/null"));
        let after = counters(&node, tool, "INPUT");
        // The rules have no target: the packet goes on to the policy, whose counter moves too.
        let kernel: Vec<Option<usize>> = moved(&before, &after)
            .into_iter()
            .filter(Option::is_some)
            .collect();
        let out = nfscope_in(
            &node,
            &[],
            &[
                "trace", "--src", addr, "--dst", addr, "--proto", proto, "--format", "json",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let report = json_of(&out);
        let traced: Vec<Option<usize>> = report["path"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["hook"] == "INPUT" && s["table"] == "filter" && s["rule_index"].is_u64())
            .map(|s| s["rule_index"].as_u64().map(|i| i as usize))
            .collect();
        assert_eq!(traced, kernel, "{tool}: {report}");
    }
}
