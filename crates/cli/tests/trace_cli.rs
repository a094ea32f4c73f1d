//! `nfscope trace` offline: traces over the Kubernetes dumps of the test corpus (JSON checked
//! against what the dumps say, read by hand), and bad input (malformed addresses, bad interface
//! names, a jump to a chain the dump lacks) giving clear errors or a marked undetermined step.

use std::path::PathBuf;
use std::process::Output;

use nfscope_test_support::{run, run_json};
use serde_json::Value;

fn corpus(file: &str) -> PathBuf {
    nfscope_test_support::corpus_path(file)
}

const NFSCOPE: &str = env!("CARGO_BIN_EXE_nfscope");

/// `nfscope trace ARGS…`.
fn nfscope(args: &[&str]) -> Output {
    run(NFSCOPE, &[&["trace"], args].concat())
}

/// `nfscope trace ARGS… --format json`, which must succeed.
fn json(args: &[&str]) -> Value {
    run_json(NFSCOPE, &[&["trace"], args, &["--format", "json"]].concat())
}

#[test]
fn kube_router_node_accepts_lan_traffic_to_a_pod_by_the_policy_mark() {
    let rules = corpus("k3s-kube-router-netpol-flannel-nft-2026.rules");
    let report = json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--local-ip",
        "192.168.1.10",
        "--src",
        "192.168.1.50",
        "--dst",
        "10.42.0.11",
        "--proto",
        "tcp",
        "--sport",
        "40000",
        "--dport",
        "6379",
        "--in",
        "eth0",
        "--out",
        "cni0",
    ]);
    assert_eq!(report["verdict"], "ACCEPT");
    assert_eq!(report["certainty"], "MUST");
    // filter FORWARD rule 8: "-m mark --mark 0x20000/0x20000 -j ACCEPT", after the pod firewall
    // of default/redis-… set the mark (the namespace has only the allow-all default policy).
    assert_eq!(report["decided_by"]["chain"], "FORWARD");
    assert_eq!(report["decided_by"]["rule_index"], 8);
    assert_eq!(report["decided_by"]["backend"], "nft");
    let path = report["path"].as_array().unwrap();
    let pod_fw = path
        .iter()
        .find(|s| s["chain"] == "KUBE-ROUTER-FORWARD")
        .expect("pod firewall dispatch");
    assert!(
        pod_fw["annotation"]
            .as_str()
            .unwrap()
            .contains("pod default/redis-84f85f9cdc-nfbl2"),
        "{pod_fw}"
    );
}

#[test]
fn service_without_endpoints_is_rejected_with_an_explanation() {
    let rules = corpus("k3s-node-iptables-save-c-counters-2022.rules");
    let report = json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--src",
        "10.42.0.9",
        "--dst",
        "10.43.0.10",
        "--proto",
        "udp",
        "--dport",
        "53",
        "--in",
        "cni0",
        "--out",
        "eth0",
    ]);
    assert_eq!(report["verdict"], "REJECT");
    assert_eq!(report["decided_by"]["chain"], "KUBE-SERVICES");
    assert!(
        report["decided_by"]["rule"]
            .as_str()
            .unwrap()
            .contains("kube-dns:dns has no endpoints")
    );
    assert!(
        report["explanation"]
            .as_str()
            .unwrap()
            .contains("has no endpoints"),
        "{}",
        report["explanation"]
    );
}

#[test]
fn shadowing_reject_in_forward_decides_before_flannel() {
    let rules = corpus("centos7-kubeproxy-flannel-docker-libvirt-broken-2024.rules");
    let report = json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--src",
        "10.244.1.7",
        "--dst",
        "10.244.0.5",
        "--proto",
        "tcp",
        "--dport",
        "80",
        "--in",
        "flannel.1",
        "--out",
        "cni0",
    ]);
    assert_eq!(report["verdict"], "REJECT");
    assert_eq!(report["decided_by"]["chain"], "FORWARD");
    assert!(
        report["decided_by"]["rule"]
            .as_str()
            .unwrap()
            .contains("icmp-host-prohibited")
    );
}

#[test]
fn ipvs_cluster_ip_without_ipset_contents_is_explored_both_ways() {
    let rules = corpus("kubeproxy-ipvs-calico-vxlan-nat-2022.rules");
    let report = json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--src",
        "192.168.10.20",
        "--dst",
        "10.96.0.1",
        "--proto",
        "tcp",
        "--dport",
        "443",
        "--in",
        "eth0",
    ]);
    let branches = report["branches"].as_array().unwrap();
    assert!(branches.len() >= 2, "{report}");
    assert!(
        branches
            .iter()
            .any(|b| b["assumptions"].to_string().contains("KUBE-CLUSTER-IP")),
        "{report}"
    );
}

#[test]
fn ipvs_cluster_ip_with_ipset_contents_is_handed_to_ipvs() {
    let dir = std::env::temp_dir().join(format!("nfscope-trace-ipvs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sets = dir.join("sets.ipset");
    std::fs::write(&sets, "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\nadd KUBE-CLUSTER-IP 10.96.0.1,tcp:443\ncreate KUBE-LOOP-BACK hash:ip,port,ip family inet\n").unwrap();
    let rules = corpus("kubeproxy-ipvs-calico-vxlan-nat-2022.rules");
    let report = json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--ipsets",
        sets.to_str().unwrap(),
        "--local-ip",
        "10.96.0.1",
        "--src",
        "192.168.10.20",
        "--dst",
        "10.96.0.1",
        "--proto",
        "tcp",
        "--dport",
        "443",
        "--in",
        "eth0",
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        report["notes"].to_string().contains("handed to IPVS"),
        "{report}"
    );
    assert_eq!(report["nat"]["dnat"], Value::Null);
}

#[test]
fn malformed_address_is_a_clear_usage_error() {
    let out = nfscope(&[
        "--rules",
        "/dev/null",
        "--src",
        "10.0.0.300",
        "--dst",
        "10.0.0.1",
        "--proto",
        "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--src") && err.contains("10.0.0.300"), "{err}");
}

#[test]
fn bad_interface_name_and_mixed_families_are_errors() {
    let rules = corpus("k3s-node-iptables-save-c-counters-2022.rules");
    let r = rules.to_str().unwrap();
    let out = nfscope(&[
        "--rules", r, "--src", "10.0.0.1", "--dst", "10.0.0.2", "--proto", "tcp", "--in", "eth0/1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid interface name"));
    let out = nfscope(&[
        "--rules", r, "--src", "10.0.0.1", "--dst", "fd00::1", "--proto", "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different address families"));
}

#[test]
fn jump_to_a_missing_chain_is_a_marked_undetermined_step() {
    let dir = std::env::temp_dir().join(format!("nfscope-trace-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("missing.rules");
    std::fs::write(&file, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j KUBE-ROUTER-FORWARD\nCOMMIT\n").unwrap();
    let report = json(&[
        "--rules",
        file.to_str().unwrap(),
        "--lenient",
        "--src",
        "10.0.0.1",
        "--dst",
        "10.0.0.2",
        "--proto",
        "tcp",
        "--in",
        "eth0",
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(report["verdict"], "UNDETERMINED");
    let last = report["path"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["effect"].as_str().unwrap().contains("no such chain"),
        "{last}"
    );
}

#[test]
fn a_port_given_by_name_resolves_and_an_unknown_name_is_a_usage_error() {
    let rules = corpus("k3s-node-iptables-save-c-counters-2022.rules");
    let r = rules.to_str().unwrap();
    // The DNS Service of the dump, which has no endpoints (see the test above).
    let packet = |dport: &'static str| {
        let mut args = vec!["--rules", r, "--dport", dport];
        args.extend("--src 10.42.0.9 --dst 10.43.0.10 --proto udp --in cni0 --out eth0".split(' '));
        args
    };
    // `domain` is 53 in /etc/services, as iptables resolves it: the same report as the number.
    assert_eq!(json(&packet("domain")), json(&packet("53")));
    let out = nfscope(&packet("nosuchservice"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--dport") && err.contains("nosuchservice") && err.contains("service name"),
        "{err}"
    );
    let out = nfscope(&packet("65536"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0-65535"));
}
