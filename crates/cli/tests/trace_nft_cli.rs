//! `nfscope trace --rules` with native nftables dumps: `nft list ruleset` text and `nft -j`
//! JSON detected from the content, several dumps of one node together (iptables and nft), and
//! nft syntax errors reported at `file:line:col` with a non-zero exit.

use std::path::PathBuf;
use std::process::Output;

use nfscope_test_support::{run, run_json};
use serde_json::Value;

fn nft_corpus(file: &str) -> PathBuf {
    nfscope_test_support::corpus::nft_corpus_dir().join(file)
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

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nfscope-trace-nft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn k3s_nft_text_dump_rejects_a_service_without_endpoints() {
    let rules = nft_corpus("k3s-kubeproxy-nftables-mode-table-2025.nft");
    let report = json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--local-ip",
        "10.34.4.246",
        "--src",
        "10.42.1.7",
        "--dst",
        "10.43.21.102",
        "--proto",
        "tcp",
        "--dport",
        "4317",
        "--in",
        "flannel.1",
        "--out",
        "cni0",
    ]);
    assert_eq!(report["verdict"], "REJECT");
    assert_eq!(report["certainty"], "MUST");
    let by = &report["decided_by"];
    assert_eq!(by["backend"], "nftables");
    assert_eq!(by["family"], "ipv4");
    assert_eq!(by["table"], "kube-proxy");
    assert_eq!(by["chain"], "reject-chain");
    assert_eq!(by["rule_index"], 1);
    assert_eq!(by["rule"], "reject");
}

#[test]
fn nft_json_dump_traces_a_service_to_its_endpoint_with_handles() {
    let rules = nft_corpus("nftparse-kube-proxy-overall.json");
    let report = json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--local-ip",
        "192.168.0.2",
        "--src",
        "10.0.0.7",
        "--dst",
        "172.30.0.41",
        "--proto",
        "tcp",
        "--dport",
        "80",
        "--in",
        "eth0",
        "--out",
        "eth1",
    ]);
    assert_eq!(report["verdict"], "ACCEPT");
    assert_eq!(report["nat"]["dnat"], "10.180.0.1:80");
    let dnat_step = report["path"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["effect"].as_str().is_some_and(|e| e.starts_with("DNAT")))
        .expect("a DNAT step");
    assert_eq!(dnat_step["backend"], "nftables");
    assert!(
        dnat_step["rule"]
            .as_str()
            .unwrap()
            .contains("dnat to 10.180.0.1:80"),
        "{dnat_step}"
    );
    assert!(
        dnat_step["chain"]
            .as_str()
            .unwrap()
            .starts_with("endpoint-")
    );
}

#[test]
fn iptables_and_nft_dumps_of_one_node_trace_together() {
    // iptables (filter INPUT, priority 0) accepts port 80; a native table at priority 10 drops it.
    let ipt = temp(
        "node.iptables",
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 80 -j ACCEPT\nCOMMIT\n",
    );
    let nft = temp(
        "node.nft",
        "table ip late {\n\tchain c {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 80 drop\n\t}\n}\n",
    );
    let args = [
        "--rules",
        ipt.to_str().unwrap(),
        "--rules",
        nft.to_str().unwrap(),
        "--local-ip",
        "10.0.0.1",
        "--src",
        "10.0.0.2",
        "--dst",
        "10.0.0.1",
        "--proto",
        "tcp",
        "--dport",
        "80",
        "--in",
        "eth0",
    ];
    let report = json(&args);
    assert_eq!(report["verdict"], "DROP");
    assert_eq!(report["decided_by"]["table"], "late");
    let backends: Vec<&str> = report["path"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["backend"].as_str())
        .collect();
    let ipt_at = backends.iter().position(|b| *b != "nftables").unwrap();
    let nft_at = backends.iter().position(|b| *b == "nftables").unwrap();
    assert!(
        ipt_at < nft_at,
        "iptables filter (0) before the native chain (10): {backends:?}"
    );
    // Text output shows the nft rule text.
    let out = nfscope(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tcp dport 80 drop"), "{text}");
}

#[test]
fn nft_syntax_error_names_file_line_and_column() {
    let bad = temp(
        "bad.nft",
        "table ip s {\n\tchain i {\n\t\ttype filter hook input priority 0;\n\t\ttcp dport 5555 drop\n\t}\n",
    );
    let out = nfscope(&[
        "--rules",
        bad.to_str().unwrap(),
        "--src",
        "10.0.0.2",
        "--dst",
        "10.0.0.1",
        "--proto",
        "tcp",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:6:1:", bad.display());
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("expected"), "{err}");
    let bad_json = temp("bad.json", "{\"nftables\": [ {\"table\": 3} ]}\n");
    let out = nfscope(&[
        "--rules",
        bad_json.to_str().unwrap(),
        "--src",
        "10.0.0.2",
        "--dst",
        "10.0.0.1",
        "--proto",
        "tcp",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:1:", bad_json.display())), "{err}");
}
