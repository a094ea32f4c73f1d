//! `nfscope doctor` as root inside a throw-away network namespace: forwarding off, strict
//! rp_filter on a veth and a VXLAN tunnel down must be reported fail / warn / fail with evidence,
//! and fixing them must turn those checks to pass. The initial namespace is only read, never
//! changed (checked before and after).

mod support;

use std::process::{Command, Stdio};

use nfscope_test_support::{TestNetns, root_or_skip};
use support::NFSCOPE;

fn doctor(netns: &str) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(NFSCOPE)
        .args(["doctor", "--netns", netns, "--format", "json"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run nfscope doctor");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

fn check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}: {report}"))
}

fn status(report: &serde_json::Value, id: &str) -> String {
    check(report, id)["status"].as_str().unwrap().to_owned()
}

fn evidence(report: &serde_json::Value, id: &str) -> String {
    check(report, id)["evidence"].to_string()
}

/// What the test must not change in the initial namespace.
fn initial_namespace_state() -> (String, String) {
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    (
        forward,
        String::from_utf8_lossy(&links.stdout)
            .lines()
            .map(|l| l.split(':').nth(1).unwrap_or("").to_owned())
            .collect(),
    )
}

#[test]
fn doctor_judges_forwarding_rp_filter_and_tunnels_in_a_namespace() {
    if !root_or_skip("doctor_judges_forwarding_rp_filter_and_tunnels_in_a_namespace") {
        return;
    }
    let before = initial_namespace_state();
    let ns = TestNetns::new("doctor").expect("create namespace");
    ns.sh_ok(
        "sysctl -qw net.ipv4.ip_forward=0 && \
         ip link add vethnfs0 type veth peer name vethnfs1 && ip link set vethnfs0 up && ip link set vethnfs1 up && \
         sysctl -qw net.ipv4.conf.all.rp_filter=0 && sysctl -qw net.ipv4.conf.vethnfs0.rp_filter=1 && \
         ip link add vxlan.nfs mtu 1450 type vxlan id 42 dstport 4789 local 127.0.0.1",
    );

    let (code, broken) = doctor(ns.name());
    assert_eq!(code, Some(1), "a failed node check exits 1: {broken}");
    assert_eq!(status(&broken, "ip-forwarding"), "fail");
    assert!(evidence(&broken, "ip-forwarding").contains("net.ipv4.ip_forward = 0"));
    assert_eq!(status(&broken, "rp-filter"), "warn");
    assert!(
        evidence(&broken, "rp-filter").contains("net.ipv4.conf.vethnfs0.rp_filter = 1"),
        "{broken}"
    );
    assert_eq!(status(&broken, "tunnels"), "fail");
    assert!(
        evidence(&broken, "tunnels").contains("vxlan.nfs (vxlan): down"),
        "{broken}"
    );
    assert_eq!(status(&broken, "conntrack-accounting"), "info");

    ns.sh_ok(
        "sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.ipv4.conf.vethnfs0.rp_filter=2 && \
         sysctl -qw net.ipv4.conf.vethnfs1.rp_filter=0 && ip link set vxlan.nfs up",
    );
    let (_, fixed) = doctor(ns.name());
    for id in ["ip-forwarding", "rp-filter", "tunnels"] {
        assert_eq!(status(&fixed, id), "pass", "{id}: {fixed}");
    }
    // The tunnel is up now, and the veths (1500) are larger than the VXLAN MTU (1450).
    assert_eq!(status(&fixed, "mtu"), "warn", "{fixed}");

    drop(ns);
    assert_eq!(
        initial_namespace_state(),
        before,
        "the initial namespace changed"
    );
}
