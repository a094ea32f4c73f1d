//! `nfscope serve --kube auto` end to end (root): a namespace with kube-proxy rules for Service
//! `shop/web`, a fake Kubernetes API on 127.0.0.1 (recorded list responses from
//! `crates/kube/tests/fixtures`, watches that stay open) reached through a kubeconfig, and
//! `/metrics` must name the endpoint's pod and workload. Skips when not root, fails under `CI=true`.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NFSCOPE: &str = env!("CARGO_BIN_EXE_nfscope");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kube/tests/fixtures")
}

const RULES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-WEBHTTP00000001 - [0:0]
:KUBE-SEP-WEBHTTP00000001 - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment \"shop/web:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-WEBHTTP00000001
-A KUBE-SVC-WEBHTTP00000001 -m comment --comment \"shop/web:http -> 10.244.1.11:8080\" -j KUBE-SEP-WEBHTTP00000001
-A KUBE-SEP-WEBHTTP00000001 -s 10.244.1.11/32 -m comment --comment \"shop/web:http\" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEBHTTP00000001 -p tcp -m comment --comment \"shop/web:http\" -m tcp -j DNAT --to-destination 10.244.1.11:8080
COMMIT
";

/// Removes the namespace, stops nfscope and the fake API, deletes the temp dir.
struct Guard {
    netns: String,
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{cmd:?} failed");
}

/// A fake API server: lists from the fixtures, watches that stay open for a minute.
fn fake_api() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

fn answer(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if query.contains("watch=true") {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let file = match path {
        "/api/v1/pods" => "pods-list-1.json",
        "/api/v1/services" => "services-list.json",
        "/apis/discovery.k8s.io/v1/endpointslices" => "endpointslices-list.json",
        "/api/v1/nodes" => "nodes-list.json",
        _ => "",
    };
    let (status, body) = match std::fs::read_to_string(fixtures().join(file)) {
        Ok(body) if !file.is_empty() => ("200 OK", body),
        _ => ("404 Not Found", r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404}"#.to_owned()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn metrics(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply.split_once("\r\n\r\n")?.1.to_owned())
}

#[test]
fn serve_names_endpoint_pods_from_the_kubernetes_api() {
    if !nfscope_test_support::root_or_skip("serve_names_endpoint_pods_from_the_kubernetes_api") {
        return;
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("nfscope-kube-serve-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = Guard {
        netns: format!("nfscope-kube-{pid}"),
        child: None,
        dir: dir.clone(),
    };
    run(Command::new("ip").args(["netns", "add", &guard.netns]));
    let rules = dir.join("rules");
    std::fs::write(&rules, RULES).unwrap();
    run(Command::new("ip")
        .args(["netns", "exec", &guard.netns, "iptables-nft-restore"])
        .stdin(std::fs::File::open(&rules).unwrap()));

    let api_port = fake_api();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{api_port}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let port = nfscope_test_support::free_port();
    guard.child = Some(
        Command::new(NFSCOPE)
            .args(["serve", "--netns", &guard.netns])
            .arg(format!("--listen=127.0.0.1:{port}"))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nfscope serve"),
    );

    let want = r#"nfscope_kube_endpoint_info{endpoint="10.244.1.11:8080",pod="web-7d4b9c8f6d-x2x9k",workload="web",namespace="shop"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(body) = metrics(port) {
            if body.contains(want) {
                assert!(
                    body.contains("nfscope_kube_directory_entries "),
                    "directory series missing"
                );
                assert!(body.contains("nfscope_kube_watch_errors_total{resource=\"pods\"} 0"));
                return;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let kube_lines: Vec<&str> = last.lines().filter(|l| l.contains("kube")).collect();
    panic!(
        "no endpoint info series after 30 s; kube lines:\n{}",
        kube_lines.join("\n")
    );
}
