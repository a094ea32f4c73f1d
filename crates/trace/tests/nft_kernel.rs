//! Ground truth for native nftables tracing: real packets through real rulesets in network
//! namespaces, the kernel as the oracle.
//!
//! One lab: a `client` namespace, a forwarding `node` and a `server` behind it (three endpoint
//! addresses), IPv4 and IPv6. Each case flushes the node's ruleset, loads native tables (and,
//! in some cases, iptables-nft rules at the same hooks), adds a `meta nftrace set 1` rule at
//! priority -500 for the case's port inside the node namespace only, and opens one TCP
//! connection. Three answers must agree:
//! - what the client saw (connected — and to which address the server says it was reached from
//!   whom —, refused, or timed out), against the case's expectation stated by hand;
//! - the kernel's path from `nft -a monitor trace`: its verdict, the deciding rule (by handle)
//!   and the sequence of rules that matched, which must be exactly one branch of the tracer;
//! - the tracer, offline, from `nft -j list ruleset` (and `iptables-nft-save`) of the node, its
//!   addresses and routes: verdict (MUST), deciding rule, and NAT as the server saw it.
//!
//! Each case is bounded (1 s connect timeout, 5 s for the monitor); a missing `nft`, `socat` or
//! `conntrack` skips the test, but not under `CI=true`.

mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nfscope_ruleset::nft::{NftLimits, parse_nft_json};
use nfscope_ruleset::typed::NftRuleset;
use nfscope_ruleset::{Family, Ruleset};
use nfscope_test_support::{Children, RoutedLab, TestNetns, root_or_skip, tools_or_skip};
use nfscope_trace::{Packet, Proto, TraceInput, TraceResult, Tracer, Verdict, parse_routes};

/// Addresses of one family.
struct Fam {
    v6: bool,
    client: &'static str,
    node1: &'static str,
    node2: &'static str,
    server: [&'static str; 3],
    net2: &'static str,
    vip: &'static str,
    vip2: &'static str,
    vip3: &'static str,
    len: u8,
}

const V4: Fam = Fam {
    v6: false,
    client: "10.77.1.2",
    node1: "10.77.1.1",
    node2: "10.77.2.1",
    server: ["10.77.2.2", "10.77.2.3", "10.77.2.4"],
    net2: "10.77.2.0/24",
    vip: "10.96.0.10",
    vip2: "10.96.0.20",
    vip3: "10.96.0.30",
    len: 24,
};

const V6: Fam = Fam {
    v6: true,
    client: "fd77:1::2",
    node1: "fd77:1::1",
    node2: "fd77:2::1",
    server: ["fd77:2::2", "fd77:2::3", "fd77:2::4"],
    net2: "fd77:2::/64",
    vip: "fd96::10",
    vip2: "fd96::20",
    vip3: "fd96::30",
    len: 64,
};

/// Where the connection starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Origin {
    Client,
    Node,
}

/// What the client sees.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// Connected: the server's address:port of the connection and the peer it saw.
    Connected {
        at: String,
        peer: String,
    },
    Refused,
    TimedOut,
}

struct Case {
    name: &'static str,
    fam: &'static Fam,
    from: Origin,
    /// Native tables (placeholders: see `fill`).
    nft: &'static str,
    /// iptables-nft rules (`iptables-nft-restore` input), if any.
    ipt: Option<&'static str>,
    dst: &'static str,
    dport: u16,
    /// What the kernel should do, stated by hand.
    expect: Verdict,
    /// `table/chain#index` (index 0 = policy) of the deciding rule, for DROP and REJECT.
    by: Option<&'static str>,
    /// Where the server should be reached (`@S1:8080`, or several for load balancing).
    at: &'static [&'static str],
    /// The peer address the server should see (`@C` or `@N2` after masquerade).
    peer: &'static str,
}

fn fill(t: &str, f: &Fam, lab: &Lab) -> String {
    let ip = if f.v6 { "ip6" } else { "ip" };
    let addr_t = if f.v6 { "ipv6_addr" } else { "ipv4_addr" };
    let br = |a: &str| {
        if f.v6 { format!("[{a}]") } else { a.to_owned() }
    };
    let vipnet = if f.v6 { "fd96::/64" } else { "10.96.0.0/24" };
    let podnet = if f.v6 { "fd77:9::/64" } else { "10.77.9.0/24" };
    let len1 = if f.v6 { "128" } else { "32" };
    t.replace("@VIPNET", vipnet)
        .replace("@PODNET", podnet)
        .replace("@LEN1", len1)
        .replace("@IFC", &lab.if_client)
        .replace("@IFS", &lab.if_server)
        .replace("@ADDRT", addr_t)
        .replace("@ip", ip)
        .replace("@NET2", f.net2)
        .replace("@VIP3", f.vip3)
        .replace("@VIP2", f.vip2)
        .replace("@VIP", f.vip)
        .replace("@BS1", &br(f.server[0]))
        .replace("@BS2", &br(f.server[1]))
        .replace("@BS3", &br(f.server[2]))
        .replace("@BN1", &br(f.node1))
        .replace("@S1", f.server[0])
        .replace("@S2", f.server[1])
        .replace("@S3", f.server[2])
        .replace("@N1", f.node1)
        .replace("@N2", f.node2)
        .replace("@C", f.client)
}

const SERVER_PORTS: [u16; 3] = [80, 8080, 8081];
const NODE_PORTS: [u16; 3] = [80, 443, 8443];

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut c = |name,
                 fam: &'static Fam,
                 from,
                 nft,
                 ipt,
                 dst,
                 dport,
                 expect,
                 by,
                 at: &'static [&'static str],
                 peer| {
        v.push(Case {
            name,
            fam,
            from,
            nft,
            ipt,
            dst,
            dport,
            expect,
            by,
            at,
            peer,
        });
    };
    use Origin::{Client, Node};
    use Verdict::{Accept, Drop, Reject};

    // The one-rule table (with the semicolons nft 1.0.6 needs).
    const ONE_RULE: &str = "table @ip s {\n chain i {\n  type filter hook input priority 0;\n  tcp dport 5555 drop\n  tcp dport 8443 reject\n }\n}\n";
    c(
        "one-rule table drops",
        &V4,
        Client,
        ONE_RULE,
        None,
        "@N1",
        5555,
        Drop,
        Some("s/i#1"),
        &[],
        "",
    );
    c(
        "one-rule table lets other ports pass",
        &V4,
        Client,
        ONE_RULE,
        None,
        "@N1",
        80,
        Accept,
        None,
        &["@N1:80"],
        "@C",
    );
    c(
        "one-rule table rejects",
        &V4,
        Client,
        ONE_RULE,
        None,
        "@N1",
        8443,
        Reject,
        Some("s/i#2"),
        &[],
        "",
    );
    c(
        "ip6 one-rule table drops",
        &V6,
        Client,
        ONE_RULE,
        None,
        "@N1",
        5555,
        Drop,
        Some("s/i#1"),
        &[],
        "",
    );

    const INET: &str = "table inet a {\n chain i {\n  type filter hook input priority 0; policy accept;\n  meta nfproto ipv6 tcp dport 80 drop\n  meta nfproto ipv4 tcp dport 443 reject\n }\n}\n";
    c(
        "inet table drops IPv6",
        &V6,
        Client,
        INET,
        None,
        "@N1",
        80,
        Drop,
        Some("a/i#1"),
        &[],
        "",
    );
    c(
        "inet table passes IPv4 on that port",
        &V4,
        Client,
        INET,
        None,
        "@N1",
        80,
        Accept,
        None,
        &["@N1:80"],
        "@C",
    );
    c(
        "inet table rejects IPv4",
        &V4,
        Client,
        INET,
        None,
        "@N1",
        443,
        Reject,
        Some("a/i#2"),
        &[],
        "",
    );

    const ACCEPT_THEN_DROP: &str = "table @ip early {\n chain i {\n  type filter hook input priority -10;\n  tcp dport 80 accept\n }\n}\ntable @ip late {\n chain i {\n  type filter hook input priority 10;\n  tcp dport 80 drop\n }\n}\n";
    c(
        "accept in one table, drop in a later one",
        &V4,
        Client,
        ACCEPT_THEN_DROP,
        None,
        "@N1",
        80,
        Drop,
        Some("late/i#1"),
        &[],
        "",
    );
    c(
        "ip6 accept in one table, drop in a later one",
        &V6,
        Client,
        ACCEPT_THEN_DROP,
        None,
        "@N1",
        80,
        Drop,
        Some("late/i#1"),
        &[],
        "",
    );

    const POLICY_DROP_LATER: &str = "table @ip early {\n chain i {\n  type filter hook input priority -10;\n  tcp dport 443 accept\n }\n}\ntable @ip late {\n chain i {\n  type filter hook input priority 10; policy drop;\n  tcp dport 80 accept\n }\n}\n";
    c(
        "a later base chain's drop policy undoes an accept",
        &V4,
        Client,
        POLICY_DROP_LATER,
        None,
        "@N1",
        443,
        Drop,
        Some("late/i#0"),
        &[],
        "",
    );

    // Native and iptables-nft at one hook, interleaved priorities (iptables filter is 0).
    const MIX: &str = "table @ip before {\n chain i {\n  type filter hook input priority -5;\n  tcp dport { 80, 443 } counter\n }\n}\ntable @ip after {\n chain i {\n  type filter hook input priority 5;\n  tcp dport 443 drop\n }\n}\n";
    const MIX_IPT: &str = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 443 -j ACCEPT\n-A INPUT -p tcp --dport 8443 -j DROP\nCOMMIT\n";
    c(
        "native -5, iptables-nft 0 accepts, native 5 drops",
        &V4,
        Client,
        MIX,
        Some(MIX_IPT),
        "@N1",
        443,
        Drop,
        Some("after/i#1"),
        &[],
        "",
    );
    c(
        "iptables-nft drops after a native counter",
        &V4,
        Client,
        MIX,
        Some(MIX_IPT),
        "@N1",
        8443,
        Drop,
        Some("filter/INPUT#2"),
        &[],
        "",
    );
    c(
        "native and iptables-nft both pass",
        &V4,
        Client,
        MIX,
        Some(MIX_IPT),
        "@N1",
        80,
        Accept,
        None,
        &["@N1:80"],
        "@C",
    );
    c(
        "ip6 native 5 drops after ip6tables-nft accepts",
        &V6,
        Client,
        MIX,
        Some(MIX_IPT),
        "@N1",
        443,
        Drop,
        Some("after/i#1"),
        &[],
        "",
    );

    // Forwarding with an interval set and a port interval set.
    const INTERVALS: &str = "table @ip f {\n set nets {\n  type @ADDRT; flags interval;\n  elements = { @C/@LEN1, @VIP }\n }\n set ports {\n  type inet_service; flags interval;\n  elements = { 8000-8079, 8081-8099 }\n }\n chain fw {\n  type filter hook forward priority 0; policy accept;\n  @ip saddr @nets tcp dport @ports drop\n }\n}\n";
    c(
        "interval sets: port outside the ranges passes",
        &V4,
        Client,
        INTERVALS,
        None,
        "@S1",
        8080,
        Accept,
        None,
        &["@S1:8080"],
        "@C",
    );
    c(
        "interval sets: port inside a range drops",
        &V4,
        Client,
        INTERVALS,
        None,
        "@S1",
        8081,
        Drop,
        Some("f/fw#1"),
        &[],
        "",
    );
    c(
        "ip6 interval sets drop",
        &V6,
        Client,
        INTERVALS,
        None,
        "@S1",
        8081,
        Drop,
        Some("f/fw#1"),
        &[],
        "",
    );

    // A verdict map on a concatenation.
    const CONCAT: &str = "table @ip v {\n map m {\n  type @ADDRT . inet_service : verdict\n  elements = { @S1 . 80 : accept, @S1 . 8080 : drop, @S2 . 80 : jump no }\n }\n chain fw {\n  type filter hook forward priority 0; policy accept;\n  @ip daddr . tcp dport vmap @m\n }\n chain no {\n  reject\n }\n}\n";
    c(
        "vmap on a concatenation accepts",
        &V4,
        Client,
        CONCAT,
        None,
        "@S1",
        80,
        Accept,
        None,
        &["@S1:80"],
        "@C",
    );
    c(
        "vmap on a concatenation drops",
        &V4,
        Client,
        CONCAT,
        None,
        "@S1",
        8080,
        Drop,
        Some("v/fw#1"),
        &[],
        "",
    );
    c(
        "vmap on a concatenation jumps to a reject",
        &V4,
        Client,
        CONCAT,
        None,
        "@S2",
        80,
        Reject,
        Some("v/no#1"),
        &[],
        "",
    );
    c(
        "ip6 vmap on a concatenation drops",
        &V6,
        Client,
        CONCAT,
        None,
        "@S1",
        8080,
        Drop,
        Some("v/fw#1"),
        &[],
        "",
    );

    // DNAT, numgen load balancing, NAT maps, masquerade, redirect.
    const NAT: &str = "table @ip n {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  @ip daddr @VIP tcp dport 80 dnat to @BS1:8080\n  @ip daddr @VIP2 tcp dport 80 numgen random mod 3 vmap { 0 : goto e1, 1 : goto e2, 2 : goto e3 }\n  @ip daddr @VIP3 tcp dport 80 dnat to @ip daddr . tcp dport map { @VIP3 . 80 : @S2 . 8081 }\n  @ip daddr @N1 tcp dport 8080 redirect to :8443\n }\n chain e1 {\n  meta l4proto tcp dnat to @BS1:80\n }\n chain e2 {\n  meta l4proto tcp dnat to @BS2:80\n }\n chain e3 {\n  meta l4proto tcp dnat to @BS3:80\n }\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"@IFS\" tcp dport 8081 masquerade\n }\n}\n";
    c(
        "dnat to an address and port",
        &V4,
        Client,
        NAT,
        None,
        "@VIP",
        80,
        Accept,
        None,
        &["@S1:8080"],
        "@C",
    );
    c(
        "numgen load balancing over three endpoints",
        &V4,
        Client,
        NAT,
        None,
        "@VIP2",
        80,
        Accept,
        None,
        &["@S1:80", "@S2:80", "@S3:80"],
        "@C",
    );
    c(
        "dnat by a concatenation map, then masquerade",
        &V4,
        Client,
        NAT,
        None,
        "@VIP3",
        80,
        Accept,
        None,
        &["@S2:8081"],
        "@N2",
    );
    c(
        "redirect to a local port",
        &V4,
        Client,
        NAT,
        None,
        "@N1",
        8080,
        Accept,
        None,
        &["@N1:8443"],
        "@C",
    );
    c(
        "ip6 numgen load balancing",
        &V6,
        Client,
        NAT,
        None,
        "@VIP2",
        80,
        Accept,
        None,
        &["@S1:80", "@S2:80", "@S3:80"],
        "@C",
    );
    c(
        "ip6 dnat map then masquerade",
        &V6,
        Client,
        NAT,
        None,
        "@VIP3",
        80,
        Accept,
        None,
        &["@S2:8081"],
        "@N2",
    );

    // An inet nat table: dnat and snat with family qualifiers, a numgen NAT map.
    const INET_NAT: &str = "table inet s {\n chain pre {\n  type nat hook prerouting priority -100; policy accept;\n  @ip daddr @VIP tcp dport 80 dnat @ip to @BS1:80\n  @ip daddr @VIP2 tcp dport 80 dnat @ip to numgen inc mod 2 map { 0 : @S2, 1 : @S3 }\n }\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  oifname \"@IFS\" snat @ip to @N2\n }\n}\n";
    c(
        "inet dnat then snat",
        &V4,
        Client,
        INET_NAT,
        None,
        "@VIP",
        80,
        Accept,
        None,
        &["@S1:80"],
        "@N2",
    );
    c(
        "ip6 inet dnat then snat",
        &V6,
        Client,
        INET_NAT,
        None,
        "@VIP",
        80,
        Accept,
        None,
        &["@S1:80"],
        "@N2",
    );
    c(
        "dnat by a numgen inc map",
        &V4,
        Client,
        INET_NAT,
        None,
        "@VIP2",
        80,
        Accept,
        None,
        &["@S2:80", "@S3:80"],
        "@N2",
    );

    // Marks across tables, ct state, jump/return/goto and policies.
    const MARKS: &str = "table @ip m {\n chain mangle {\n  type filter hook prerouting priority mangle;\n  tcp dport 8080 meta mark set 0x10\n }\n}\ntable inet g {\n chain fw {\n  type filter hook forward priority 0; policy drop;\n  ct state established,related accept\n  meta mark 0x10 drop\n  ct state new jump check\n  goto allow\n }\n chain check {\n  tcp dport 8081 return\n  tcp dport 8081 drop\n }\n chain allow {\n  tcp dport { 80, 8081 } accept\n }\n}\n";
    c(
        "a mark set in one table drops in another",
        &V4,
        Client,
        MARKS,
        None,
        "@S1",
        8080,
        Drop,
        Some("g/fw#2"),
        &[],
        "",
    );
    c(
        "jump, return, goto and accept",
        &V4,
        Client,
        MARKS,
        None,
        "@S1",
        8081,
        Accept,
        None,
        &["@S1:8081"],
        "@C",
    );
    c(
        "ip6 mark drop in an inet table",
        &V6,
        Client,
        MARKS,
        None,
        "@S1",
        8080,
        Drop,
        Some("g/fw#2"),
        &[],
        "",
    );

    // Locally generated packets (output, nat output, loopback to a local address).
    const LOCAL: &str = "table @ip o {\n chain out {\n  type filter hook output priority 0;\n  @ip daddr @S1 tcp dport 8080 reject with tcp reset\n }\n chain natout {\n  type nat hook output priority -100;\n  @ip daddr @VIP tcp dport 80 dnat to @BS2:80\n }\n chain in {\n  type filter hook input priority 0;\n  iifname \"lo\" tcp dport 443 drop\n  fib daddr type local tcp dport 8443 reject\n }\n}\n";
    c(
        "output chain rejects a local connection",
        &V4,
        Node,
        LOCAL,
        None,
        "@S1",
        8080,
        Reject,
        Some("o/out#1"),
        &[],
        "",
    );
    c(
        "nat output dnat for a local connection",
        &V4,
        Node,
        LOCAL,
        None,
        "@VIP",
        80,
        Accept,
        None,
        &["@S2:80"],
        "@N2",
    );
    c(
        "loopback to a local address is dropped on input",
        &V4,
        Node,
        LOCAL,
        None,
        "@N1",
        443,
        Drop,
        Some("o/in#1"),
        &[],
        "",
    );
    c(
        "fib daddr type local rejects",
        &V4,
        Client,
        LOCAL,
        None,
        "@N1",
        8443,
        Reject,
        Some("o/in#2"),
        &[],
        "",
    );
    c(
        "ip6 output chain rejects",
        &V6,
        Node,
        LOCAL,
        None,
        "@S1",
        8080,
        Reject,
        Some("o/out#1"),
        &[],
        "",
    );

    // Docker's nftables backend layout (moby's golden `usernet-portmap`), the server side as its bridge.
    c(
        "docker: published port is DNATed and accepted",
        &V4,
        Client,
        DOCKER,
        None,
        "@N1",
        8443,
        Accept,
        None,
        &["@S1:8080"],
        "@C",
    );
    c(
        "docker: unpublished port is dropped",
        &V4,
        Client,
        DOCKER,
        None,
        "@S1",
        80,
        Drop,
        Some("docker-bridges/filter-forward-in__br#4"),
        &[],
        "",
    );
    c(
        "docker: direct access is dropped in raw",
        &V4,
        Client,
        DOCKER,
        None,
        "@S2",
        80,
        Drop,
        Some("docker-bridges/raw-PREROUTING#1"),
        &[],
        "",
    );
    // Calico's nftables dataplane layout: interface dispatch maps, policy marks, return.
    c(
        "calico: policy mark admits, return, accept",
        &V4,
        Client,
        CALICO,
        None,
        "@S1",
        80,
        Accept,
        None,
        &["@S1:80"],
        "@C",
    );
    c(
        "calico: no policy passed the packet",
        &V4,
        Client,
        CALICO,
        None,
        "@S1",
        8080,
        Drop,
        Some("calico/filter-cali-tw-x#4"),
        &[],
        "",
    );
    c(
        "calico ip6: policy mark admits",
        &V6,
        Client,
        CALICO,
        None,
        "@S1",
        80,
        Accept,
        None,
        &["@S1:80"],
        "@C",
    );

    // kube-proxy nftables mode, its layout (≤ 1.33 priorities) with this lab's addresses.
    c(
        "kube-proxy: Service to its endpoints",
        &V4,
        Client,
        KUBE,
        None,
        "@VIP",
        80,
        Accept,
        None,
        &["@S1:80", "@S2:80"],
        "@N2",
    );
    c(
        "kube-proxy: Service without endpoints is rejected",
        &V4,
        Client,
        KUBE,
        None,
        "@VIP2",
        80,
        Reject,
        Some("kube-proxy/reject-chain#1"),
        &[],
        "",
    );
    c(
        "kube-proxy: wrong port of a ClusterIP is rejected",
        &V4,
        Client,
        KUBE,
        None,
        "@VIP",
        8080,
        Reject,
        Some("kube-proxy/cluster-ips-check#1"),
        &[],
        "",
    );
    c(
        "kube-proxy: unallocated ClusterIP is dropped",
        &V4,
        Client,
        KUBE,
        None,
        "@VIP3",
        80,
        Drop,
        Some("kube-proxy/cluster-ips-check#2"),
        &[],
        "",
    );
    c(
        "kube-proxy: NodePort",
        &V4,
        Client,
        KUBE,
        None,
        "@N1",
        30080,
        Accept,
        None,
        &["@S1:80", "@S2:80"],
        "@N2",
    );
    c(
        "kube-proxy ip6: Service to its endpoints",
        &V6,
        Client,
        KUBE,
        None,
        "@VIP",
        80,
        Accept,
        None,
        &["@S1:80", "@S2:80"],
        "@N2",
    );
    c(
        "kube-proxy ip6: Service without endpoints",
        &V6,
        Client,
        KUBE,
        None,
        "@VIP2",
        80,
        Reject,
        Some("kube-proxy/reject-chain#1"),
        &[],
        "",
    );
    v
}

/// Docker's `docker-bridges` table (nftables backend) for one bridge network behind `@IFS` with
/// one published port (node :8443 → `@S1:8080`).
const DOCKER: &str = "table @ip docker-bridges {
 map filter-forward-in-jumps {
  type ifname : verdict
  elements = { \"@IFS\" : jump filter-forward-in__br }
 }
 map filter-forward-out-jumps {
  type ifname : verdict
  elements = { \"@IFS\" : jump filter-forward-out__br }
 }
 chain filter-FORWARD {
  type filter hook forward priority filter; policy accept;
  oifname vmap @filter-forward-in-jumps
  iifname vmap @filter-forward-out-jumps
 }
 chain nat-PREROUTING {
  type nat hook prerouting priority dstnat; policy accept;
  fib daddr type local counter jump nat-prerouting-and-output
 }
 chain nat-prerouting-and-output {
  iifname != \"@IFS\" tcp dport 8443 counter dnat to @BS1:8080 comment \"DNAT\"
 }
 chain raw-PREROUTING {
  type filter hook prerouting priority raw; policy accept;
  @ip daddr @S2 iifname != \"@IFS\" counter drop comment \"DROP DIRECT ACCESS\"
 }
 chain filter-forward-in__br {
  ct state established,related counter accept
  iifname \"@IFS\" counter accept comment \"ICC\"
  @ip daddr @S1 tcp dport 8080 counter accept
  counter drop comment \"UNPUBLISHED PORT DROP\"
 }
 chain filter-forward-out__br {
  ct state established,related counter accept
  counter accept comment \"OUTGOING\"
 }
}
";

/// Calico's nftables dataplane shape: `calico` table, `filter-` layer, workload dispatch by
/// interface, a policy that sets the accept mark and returns.
const CALICO: &str = "table @ip calico {
 set cali40allowed {
  type @ADDRT; flags interval;
  elements = { @C/@LEN1 }
 }
 chain filter-FORWARD {
  type filter hook forward priority filter; policy accept;
  ct state established,related accept
  oifname \"@IFS\" jump filter-cali-to-wl-dispatch
  meta mark & 0x00010000 == 0x00010000 accept
 }
 chain filter-cali-to-wl-dispatch {
  oifname vmap { \"@IFS\" : goto filter-cali-tw-x }
  drop comment \"Unknown interface\"
 }
 chain filter-cali-tw-x {
  meta mark set meta mark & 0xfffeffff
  @ip saddr @cali40allowed tcp dport 80 meta mark set meta mark | 0x00010000
  meta mark & 0x00010000 == 0x00010000 return
  drop comment \"Drop if no policies passed packet\"
 }
}
";

/// kube-proxy's nftables-mode table as its proxier writes it (≤ 1.33 base chains; one Service
/// `ns1/svc1:p80` with two endpoints, one without endpoints; ServiceCIDR = this lab's VIP range).
const KUBE: &str = "table @ip kube-proxy {
 comment \"rules for kube-proxy\"
 set cluster-ips {
  type @ADDRT
  elements = { @VIP, @VIP2 }
 }
 set nodeport-ips {
  type @ADDRT
  elements = { @N1 }
 }
 map no-endpoint-services {
  type @ADDRT . inet_proto . inet_service : verdict
  elements = { @VIP2 . tcp . 80 comment \"ns2/svc2:p80\" : goto reject-chain }
 }
 map no-endpoint-nodeports {
  type inet_proto . inet_service : verdict
 }
 map firewall-ips {
  type @ADDRT . inet_proto . inet_service : verdict
 }
 map service-ips {
  type @ADDRT . inet_proto . inet_service : verdict
  elements = { @VIP . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
 }
 map service-nodeports {
  type inet_proto . inet_service : verdict
  elements = { tcp . 30080 : goto external-ULMVA6XW-ns1/svc1/tcp/p80 }
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
  @ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
 }
 chain service-endpoints-check {
  @ip daddr . meta l4proto . th dport vmap @no-endpoint-services
 }
 chain firewall-check {
  @ip daddr . meta l4proto . th dport vmap @firewall-ips
 }
 chain services {
  @ip daddr . meta l4proto . th dport vmap @service-ips
  @ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
 }
 chain masquerading {
  meta mark & 0x00004000 == 0x00000000 return
  meta mark set meta mark ^ 0x00004000
  masquerade fully-random
 }
 chain cluster-ips-check {
  @ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"
  @ip daddr @VIPNET drop comment \"Drop traffic to unallocated ClusterIPs\"
 }
 chain mark-for-masquerade {
  meta mark set meta mark | 0x00004000
 }
 chain reject-chain {
  comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"
  reject
 }
 chain external-ULMVA6XW-ns1/svc1/tcp/p80 {
  jump mark-for-masquerade
  goto service-ULMVA6XW-ns1/svc1/tcp/p80
 }
 chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
  @ip daddr @VIP tcp dport 80 @ip saddr != @PODNET jump mark-for-masquerade
  numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__ep1/80, 1 : goto endpoint-ZZZZZZZZ-ns1/svc1/tcp/p80__ep2/80 }
 }
 chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__ep1/80 {
  @ip saddr @S1 jump mark-for-masquerade
  meta l4proto tcp dnat to @BS1:80
 }
 chain endpoint-ZZZZZZZZ-ns1/svc1/tcp/p80__ep2/80 {
  @ip saddr @S2 jump mark-for-masquerade
  meta l4proto tcp dnat to @BS2:80
 }
}
";

/// The lab: client — node — server.
struct Lab {
    /// First, so the listeners stop before their namespaces go.
    listeners: Children,
    client: TestNetns,
    node: TestNetns,
    server: TestNetns,
    /// The node's interface toward the client, and toward the server.
    if_client: String,
    if_server: String,
}

fn build_lab() -> Lab {
    let mut there: Vec<String> = Vec::new();
    for f in [&V4, &V6] {
        for s in f.server {
            there.push(format!("{s}/{}", f.len));
        }
    }
    let there: Vec<&str> = there.iter().map(String::as_str).collect();
    let RoutedLab {
        client,
        node,
        server,
        if_client,
        if_server,
    } = RoutedLab::new(
        "nftgt",
        &[&format!("{}/24", V4.node1), &format!("{}/64", V6.node1)],
        &[&format!("{}/24", V4.client), &format!("{}/64", V6.client)],
        &[&format!("{}/24", V4.node2), &format!("{}/64", V6.node2)],
        &there,
    )
    .unwrap();
    node.sh_ok(&format!(
        "ip route add 10.96.0.0/24 dev {if_server} && ip -6 route add fd96::/64 dev {if_server}"
    ));
    let mut lab = Lab {
        listeners: Children::default(),
        client,
        node,
        server,
        if_client,
        if_server,
    };
    let echo = "SYSTEM:echo $SOCAT_SOCKADDR $SOCAT_SOCKPORT $SOCAT_PEERADDR";
    let mut spawn = |ns: &TestNetns, port: u16| {
        for listen in [
            format!("TCP4-LISTEN:{port},fork,reuseaddr"),
            format!("TCP6-LISTEN:{port},fork,reuseaddr,ipv6only=1"),
        ] {
            lab.listeners.push(ns.spawn(&["socat", &listen, echo]));
        }
    };
    for p in SERVER_PORTS {
        spawn(&lab.server, p);
    }
    for p in NODE_PORTS {
        spawn(&lab.node, p);
    }
    // Wait until the listeners answer and neighbours are resolved (both families).
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = [&V4, &V6].iter().all(|f| {
            matches!(
                connect(&lab.client, f, f.server[0], 80),
                Seen::Connected { .. }
            ) && matches!(connect(&lab.client, f, f.node1, 80), Seen::Connected { .. })
        });
        if ok {
            break;
        }
        assert!(Instant::now() < until, "lab listeners did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    for f in [&V4, &V6] {
        for s in f.server {
            let _ = lab.node.sh(&format!(
                "ping -c1 -W1 {} {s} >/dev/null 2>&1",
                if f.v6 { "-6" } else { "-4" }
            ));
        }
    }
    lab
}

/// One TCP connection from `ns` to `dst:port`, reading the server's echo line.
fn connect(ns: &TestNetns, f: &Fam, dst: &str, port: u16) -> Seen {
    let target = if f.v6 {
        format!("TCP6:[{dst}]:{port},connect-timeout=1")
    } else {
        format!("TCP4:{dst}:{port},connect-timeout=1")
    };
    let out = ns.exec(&["timeout", "4", "socat", "-T", "2", "STDIO", &target]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    let words: Vec<&str> = stdout.split_whitespace().collect();
    if out.status.success()
        && let [addr, port, peer] = words.as_slice()
    {
        let clean = |a: &str| {
            let a = a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_start_matches("::ffff:");
            a.parse::<IpAddr>()
                .map_or_else(|_| a.to_owned(), |ip| ip.to_string())
        };
        let at = if f.v6 {
            format!("[{}]:{port}", clean(addr))
        } else {
            format!("{}:{port}", clean(addr))
        };
        return Seen::Connected {
            at,
            peer: clean(peer),
        };
    }
    if stderr.contains("refused") || stderr.contains("unreachable") {
        Seen::Refused
    } else {
        Seen::TimedOut
    }
}

/// The namespace's `Icmp6InDestUnreachs` counter.
fn icmp6_dest_unreachs(ns: &TestNetns) -> u64 {
    let text = ns.sh_ok("cat /proc/net/snmp6");
    text.lines()
        .find_map(|l| l.strip_prefix("Icmp6InDestUnreachs"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `nft -a monitor trace` in the node namespace.
struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    fn start(ns: &TestNetns) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "nft", "-a", "monitor", "trace"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        Self { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Sends traced UDP sentinels from `ns` until the monitor reports one.
    fn wait_ready(&self, ns: &TestNetns, f: &Fam) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(5);
        let target = if f.v6 {
            format!("UDP6-SENDTO:[{}]:9", f.node1)
        } else {
            format!("UDP4-SENDTO:{}:9", f.node1)
        };
        while Instant::now() < until {
            let _ = ns.exec(&["sh", "-c", &format!("echo x | socat -u - {target}")]);
            std::thread::sleep(Duration::from_millis(100));
            if self.lines().iter().any(|l| l.contains("udp dport 9")) {
                return Ok(());
            }
        }
        Err("nft monitor trace did not report the sentinel".into())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One kernel trace event of the case's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    family: String,
    table: String,
    chain: String,
    /// `Some(handle)` for a rule, `None` for a policy.
    handle: Option<u64>,
    verdict: String,
}

/// The events of the first traced SYN to `dport`: one trace id, until that packet re-enters the
/// first chain it was seen in (a retransmission). A locally generated packet looped back to a
/// local address is traced again under a new id from prerouting: that copy's events follow.
fn packet_events(lines: &[String], dport: u16) -> Vec<Event> {
    let want = format!("tcp dport {dport} ");
    let syn =
        |l: &String| l.contains(" packet: ") && l.contains(&want) && l.contains("tcp flags == syn");
    let Some(start) = lines.iter().position(syn) else {
        return Vec::new();
    };
    let (mut out, looped) = events_of(&lines[start..]);
    if looped
        && !out.iter().any(|e| e.verdict == "drop")
        && let Some(next) = lines[start + 1..]
            .iter()
            .position(|l| syn(l) && l.contains(" pre packet: "))
    {
        out.extend(events_of(&lines[start + 1 + next..]).0);
    }
    out
}

/// Events of the trace id of `lines[0]`; `true` when it started in the output chain.
fn events_of(lines: &[String]) -> (Vec<Event>, bool) {
    let id = lines[0].split_whitespace().nth(2).unwrap_or("").to_owned();
    let looped = lines[0].contains(" out packet: ");
    let mut seen_packet_at = Vec::new();
    let mut out = Vec::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 6 || w[0] != "trace" || w[2] != id {
            continue;
        }
        let (family, table, chain) = (w[3], w[4], w[5]);
        match w.get(6).copied() {
            Some("packet:") => {
                let here = (table.to_owned(), chain.to_owned());
                if seen_packet_at.contains(&here) {
                    break;
                }
                seen_packet_at.push(here);
            }
            Some("rule") => {
                let handle = l
                    .rsplit_once(" # handle ")
                    .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok());
                let verdict = l
                    .rsplit_once("(verdict ")
                    .map(|(_, v)| v.trim_end_matches(')').to_owned())
                    .unwrap_or_default();
                out.push(Event {
                    family: family.into(),
                    table: table.into(),
                    chain: chain.into(),
                    handle,
                    verdict,
                });
            }
            Some("policy") => out.push(Event {
                family: family.into(),
                table: table.into(),
                chain: chain.into(),
                handle: None,
                verdict: w.get(7).copied().unwrap_or("").to_owned(),
            }),
            _ => {}
        }
    }
    (out, looped)
}

/// (family, table, chain, 1-based index; 0 = policy).
type Key = (String, String, String, usize);

struct Dump {
    input: TraceInput,
    /// handle → position of every rule the kernel lists, iptables-nft tables included.
    positions: HashMap<(String, String, String, u64), usize>,
}

fn dump(lab: &Lab, case: &Case) -> Dump {
    let json = lab.node.sh_ok("nft -j list ruleset");
    let all: NftRuleset = parse_nft_json(&json, &NftLimits::default()).unwrap();
    let mut positions = HashMap::new();
    for t in &all.tables {
        for c in &t.chains {
            for r in &c.rules {
                if let Some(h) = r.handle {
                    positions.insert(
                        (t.family.to_string(), t.name.clone(), c.name.clone(), h),
                        r.position,
                    );
                }
            }
        }
    }
    let mut rulesets: Vec<Ruleset> = Vec::new();
    if case.ipt.is_some() {
        rulesets.push(support::iptables_nft_rules(&lab.node, case.fam.v6, false));
    }
    // Tables iptables-nft manages come from its dump; the rest are native.
    let mut native = all;
    native.tables.retain(|t| {
        !rulesets.iter().any(|r| {
            let fam = if r.family == Family::Ipv6 {
                "ip6"
            } else {
                "ip"
            };
            t.family.to_string() == fam && r.tables.iter().any(|rt| rt.name == t.name)
        })
    });
    let mut input = TraceInput::new(rulesets);
    input.native = vec![native];
    let mut routes = parse_routes(&lab.node.sh_ok("ip -4 route show table all")).unwrap();
    routes.extend(parse_routes(&lab.node.sh_ok("ip -6 route show table all")).unwrap());
    input.routes = Some(routes);
    input.local_addrs = [V4.node1, V4.node2, V6.node1, V6.node2]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    Dump { input, positions }
}

fn event_key(d: &Dump, e: &Event) -> Key {
    let pos = match e.handle {
        Some(h) => d
            .positions
            .get(&(e.family.clone(), e.table.clone(), e.chain.clone(), h))
            .copied()
            .unwrap_or(usize::MAX),
        None => 0,
    };
    (e.family.clone(), e.table.clone(), e.chain.clone(), pos)
}

fn ref_key(input: &TraceInput, r: nfscope_trace::RuleRef) -> Key {
    if r.native {
        let t = &input.native[r.ruleset].tables[r.table];
        let c = &t.chains[r.chain];
        let pos = r.rule.map_or(0, |i| c.rules[i].position);
        (t.family.to_string(), t.name.clone(), c.name.clone(), pos)
    } else {
        let rs = &input.rulesets[r.ruleset];
        let t = &rs.tables[r.table];
        let fam = if rs.family == Family::Ipv6 {
            "ip6"
        } else {
            "ip"
        };
        (
            fam.to_owned(),
            t.name.clone(),
            t.chains[r.chain].name.clone(),
            r.rule.map_or(0, |i| i + 1),
        )
    }
}

/// The rules a branch says matched, in order (one entry per rule).
fn branch_path(input: &TraceInput, b: &nfscope_trace::Branch) -> Vec<Key> {
    let mut out: Vec<Key> = Vec::new();
    for s in &b.steps {
        let Some(r) = s.at else { continue };
        if r.rule.is_none() {
            continue;
        }
        let k = ref_key(input, r);
        if out.last() != Some(&k) {
            out.push(k);
        }
    }
    out
}

fn run_case(lab: &Lab, case: &Case) -> Result<String, String> {
    let f = case.fam;
    let node = &lab.node;
    node.sh_ok("nft flush ruleset; conntrack -F >/dev/null 2>&1 || true");
    if let Some(ipt) = case.ipt {
        let tool = if f.v6 {
            "ip6tables-nft-restore"
        } else {
            "iptables-nft-restore"
        };
        let out = node.exec_input(&[tool], ipt);
        if !out.status.success() {
            return Err(format!("{tool}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    let text = fill(case.nft, f, lab);
    let tracer_table = format!(
        "table inet nftrace-gt {{\n chain pre {{\n  type filter hook prerouting priority -500;\n  tcp dport {0} meta nftrace set 1\n  udp dport 9 meta nftrace set 1\n }}\n chain out {{\n  type filter hook output priority -500;\n  tcp dport {0} meta nftrace set 1\n }}\n}}\n",
        case.dport
    );
    let out = node.exec_input(&["nft", "-f", "-"], &format!("{text}{tracer_table}"));
    if !out.status.success() {
        return Err(format!(
            "nft -f: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let sender = match case.from {
        Origin::Client => &lab.client,
        Origin::Node => &lab.node,
    };
    let dst = fill(case.dst, f, lab);
    let monitor = Monitor::start(node);
    monitor.wait_ready(&lab.client, f)?;
    let unreach_before = icmp6_dest_unreachs(sender);
    let mut seen = connect(sender, f, &dst, case.dport);
    if f.v6 && seen == Seen::TimedOut && icmp6_dest_unreachs(sender) > unreach_before {
        // Linux TCP does not abort a connecting IPv6 socket on ICMPv6 port unreachable (the
        // default reject): the client times out, but it did receive the rejection.
        seen = Seen::Refused;
    }
    std::thread::sleep(Duration::from_millis(200));
    let events = packet_events(&monitor.lines(), case.dport);
    drop(monitor);
    if events.is_empty() {
        return Err("the kernel traced no packet".into());
    }
    let d = dump(lab, case);
    // 1. The client saw what the case says.
    let want_seen_kind = match case.expect {
        Verdict::Accept => "connected",
        Verdict::Drop => "timed out",
        _ => "refused",
    };
    let seen_ok = matches!(
        (&seen, case.expect),
        (Seen::Connected { .. }, Verdict::Accept)
            | (Seen::TimedOut, Verdict::Drop)
            | (Seen::Refused, Verdict::Reject)
    );
    if !seen_ok {
        return Err(format!("client: {seen:?}, expected {want_seen_kind}"));
    }
    // 2. The kernel's verdict and deciding rule.
    let kernel_drop = events.iter().find(|e| e.verdict == "drop");
    let kernel_by = kernel_drop.map(|e| event_key(&d, e));
    if kernel_drop.is_some() == (case.expect == Verdict::Accept) {
        return Err(format!(
            "kernel events {events:?} disagree with {:?}",
            case.expect
        ));
    }
    if let (Some(want), Some(k)) = (case.by, &kernel_by) {
        let got = format!("{}/{}#{}", k.1, k.2, k.3);
        if got != want {
            return Err(format!("kernel decided by {got}, the case says {want}"));
        }
    }
    // 3. The tracer, offline from the dump.
    let mut packet = Packet::new(
        f.client.parse::<IpAddr>().unwrap(),
        dst.parse::<IpAddr>().unwrap(),
        Proto::Tcp,
    );
    packet.dport = Some(case.dport);
    match case.from {
        Origin::Client => packet.in_iface = Some(lab.if_client.clone()),
        Origin::Node => {
            packet.src = if dst == f.node1 || dst == f.node2 {
                dst.parse().unwrap()
            } else {
                f.node2.parse().unwrap()
            };
        }
    }
    let result: TraceResult = Tracer::new(&d.input)
        .trace(&packet)
        .map_err(|e| e.to_string())?;
    if result.verdict != case.expect || !result.must {
        return Err(format!(
            "tracer says {:?} (must {}), expected {:?} MUST; branches: {:?}",
            result.verdict,
            result.must,
            case.expect,
            result
                .branches
                .iter()
                .map(|b| (b.verdict, branch_path(&d.input, b)))
                .collect::<Vec<_>>()
        ));
    }
    if let Some(k) = &kernel_by {
        let by = result.decided_by.map(|r| ref_key(&d.input, r));
        if by.as_ref() != Some(k) {
            return Err(format!("tracer decided by {by:?}, kernel by {k:?}"));
        }
    }
    // 4. The kernel's path is one tracer branch, exactly.
    let kernel_path: Vec<Key> = events
        .iter()
        .filter(|e| e.handle.is_some() && e.table != "nftrace-gt")
        .map(|e| event_key(&d, e))
        .collect();
    let branch = result.branches.iter().find(|b| {
        let p: Vec<Key> = branch_path(&d.input, b)
            .into_iter()
            .filter(|k| k.1 != "nftrace-gt")
            .collect();
        p == kernel_path
    });
    let Some(branch) = branch else {
        return Err(format!(
            "kernel path {kernel_path:?} is no tracer branch: {:?}",
            result
                .branches
                .iter()
                .map(|b| branch_path(&d.input, b))
                .collect::<Vec<_>>()
        ));
    };
    // 5. NAT as the server saw it.
    if let Seen::Connected { at, peer } = &seen {
        let wanted: Vec<String> = case
            .at
            .iter()
            .map(|a| {
                let s = fill(a, f, lab);
                if f.v6 {
                    let (addr, port) = s.rsplit_once(':').unwrap();
                    format!("[{addr}]:{port}")
                } else {
                    s
                }
            })
            .collect();
        if !wanted.contains(at) {
            return Err(format!(
                "server reached at {at}, expected one of {wanted:?}"
            ));
        }
        let traced_at = branch
            .dnat
            .map(|(ip, port)| nfscope_trace::endpoint(ip, port))
            .unwrap_or_else(|| nfscope_trace::endpoint(packet.dst, packet.dport));
        if &traced_at != at {
            return Err(format!(
                "tracer's branch reaches {traced_at}, the server was reached at {at}"
            ));
        }
        let want_peer = fill(case.peer, f, lab);
        if *peer != want_peer && !(case.from == Origin::Node) {
            return Err(format!("server saw peer {peer}, expected {want_peer}"));
        }
        let traced_peer = branch.snat.clone().map(|s| {
            s.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .to_owned()
        });
        let traced_peer = match traced_peer {
            Some(p) if p.parse::<IpAddr>().is_ok() => p,
            Some(p) => p,
            None => packet.src.to_string(),
        };
        if traced_peer != *peer && !traced_peer.starts_with("MASQUERADE(") {
            return Err(format!(
                "tracer's source {traced_peer}, the server saw {peer}"
            ));
        }
        if case.at.len() > 1 && result.branches.len() != case.at.len() {
            return Err(format!(
                "{} endpoints but {} tracer branches",
                case.at.len(),
                result.branches.len()
            ));
        }
    }
    Ok(format!(
        "{:?} by {:?}, kernel path of {} rules",
        result.verdict,
        kernel_by,
        kernel_path.len()
    ))
}

#[test]
fn tracer_agrees_with_nft_monitor_trace_and_the_client() {
    let test = "tracer_agrees_with_nft_monitor_trace_and_the_client";
    if !root_or_skip(test) {
        return;
    }
    let tools = [
        "nft",
        "socat",
        "conntrack",
        "iptables-nft-restore",
        "ip6tables-nft-restore",
    ];
    if !tools_or_skip(test, &tools) {
        return;
    }
    let lab = build_lab();
    let cases = cases();
    let only = std::env::var("NFSCOPE_NFT_CASE").ok();
    let mut failures = Vec::new();
    let mut passed = 0;
    for case in &cases {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        match run_case(&lab, case) {
            Ok(what) => {
                passed += 1;
                eprintln!("ok   {}: {what}", case.name);
            }
            Err(e) => {
                eprintln!("FAIL {}: {e}", case.name);
                failures.push(format!("{}: {e}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        passed + failures.len(),
        failures.join("\n")
    );
    if only.is_none() {
        assert!(passed >= 30, "only {passed} ground-truth cases ran");
    }
}
