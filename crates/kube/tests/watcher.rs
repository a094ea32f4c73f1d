//! The watcher against a local HTTP server on 127.0.0.1 that plays recorded Kubernetes API list and
//! watch responses (real API JSON shapes, in `fixtures/`): the pods watch adds a pod, then ends in
//! `410 Gone` (Expired), after which the watcher must relist and the directory must drop the pod
//! that vanished meanwhile. The kube client is pointed at the server with a hand-built
//! `kube::Config` (plain HTTP, no TLS).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nfscope_kube::{DirectoryConfig, NameIp, NamedKind, SharedDirectory, WorkloadKind, watch};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// What the fake API server answers; it logs every request line.
struct FakeApi {
    requests: Mutex<Vec<String>>,
}

enum Reply {
    Json(String),
    /// A watch: these event lines, then the stream ends.
    Events(Vec<String>),
    /// A watch that stays open without events.
    Hang,
    NotFound,
}

impl FakeApi {
    fn reply(&self, target: &str) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let watching = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let mut log = self.requests.lock().unwrap();
        log.push(target.to_owned());
        let earlier = |prefix: &str| {
            log.iter()
                .filter(|r| r.starts_with(prefix) && r.contains("watch=true") == watching)
                .count()
                - 1
        };
        match (path, watching) {
            ("/api/v1/pods", false) => Reply::Json(fixture(if earlier("/api/v1/pods") == 0 {
                "pods-list-1.json"
            } else {
                "pods-list-2.json"
            })),
            ("/api/v1/pods", true) if earlier("/api/v1/pods") == 0 => Reply::Events(
                fixture("pods-watch-1.jsonl")
                    .lines()
                    .map(str::to_owned)
                    .collect(),
            ),
            ("/api/v1/services", false) => Reply::Json(fixture("services-list.json")),
            ("/apis/discovery.k8s.io/v1/endpointslices", false) => {
                Reply::Json(fixture("endpointslices-list.json"))
            }
            ("/api/v1/nodes", false) => Reply::Json(fixture("nodes-list.json")),
            (_, true) => Reply::Hang,
            _ => Reply::NotFound,
        }
    }
}

async fn serve(listener: TcpListener, api: Arc<FakeApi>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(handle(stream, Arc::clone(&api)));
    }
}

async fn handle(mut stream: TcpStream, api: Arc<FakeApi>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let _ = match api.reply(&target) {
        Reply::Json(body) => {
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).await
        }
        Reply::Events(lines) => {
            let mut reply = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
            for line in lines {
                let chunk = format!("{line}\n");
                reply.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
            }
            reply.push_str("0\r\n\r\n");
            stream.write_all(reply.as_bytes()).await
        }
        Reply::Hang => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Reply::NotFound => {
            let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#;
            let reply = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).await
        }
    };
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn metrics(directory: &SharedDirectory) -> String {
    let mut out = String::new();
    directory.render_metrics(&mut out);
    out
}

/// Polls `done` every 50 ms for up to 30 s.
async fn eventually(what: &str, directory: &SharedDirectory, done: impl Fn() -> bool) {
    for _ in 0..600 {
        directory.expire();
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}\n{}", metrics(directory));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_names_ips_and_resyncs_after_410_gone() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let api = Arc::new(FakeApi {
        requests: Mutex::new(Vec::new()),
    });
    let server = tokio::spawn(serve(listener, Arc::clone(&api)));

    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).expect("client");
    // Grace 0: whatever the relist no longer contains is gone at the next expiry.
    let directory = SharedDirectory::new(DirectoryConfig {
        max_entries: 1000,
        grace: Duration::ZERO,
    });
    let tasks = watch::spawn(client, directory.clone());

    // From the first lists.
    eventually("the first lists", &directory, || {
        directory.name_ip(ip("192.168.1.10")).is_some()
            && directory.name_ip(ip("10.244.3.12")).is_some()
            && directory.service(ip("10.96.0.20"), 80).is_some()
    })
    .await;
    // From the watch (ADDED then MODIFIED with an IP), then the 410 and the relist, which no
    // longer has db-0 and shows the backup Job's pod Succeeded.
    eventually(
        "the watch events and the relist after 410",
        &directory,
        || {
            directory.name_ip(ip("10.244.1.21")).is_some()
                && directory.name_ip(ip("10.244.2.31")).is_none()
                && directory.name_ip(ip("10.244.1.40")).is_none()
        },
    )
    .await;

    let web = directory
        .name_ip(ip("fd00:10:244:1::b"))
        .expect("web pod (IPv6)");
    assert_eq!(
        (web.kind, web.name.as_str()),
        (NamedKind::Pod, "web-7d4b9c8f6d-x2x9k")
    );
    let workload = web.workload.expect("workload");
    assert_eq!(
        (workload.kind, workload.name.as_str()),
        (WorkloadKind::Deployment, "web")
    );
    let api_pod = directory.name_ip(ip("10.244.1.21")).unwrap();
    assert_eq!(api_pod.workload_or_name(), "api");
    assert_eq!(
        directory.name_ip(ip("192.168.1.10")).unwrap().kind,
        NamedKind::Node
    );
    let vip = directory.name_ip(ip("fd00:10:96::20")).unwrap();
    assert_eq!((vip.kind, vip.name.as_str()), (NamedKind::Service, "web"));
    let hit = directory.service(ip("10.96.0.20"), 80).unwrap();
    assert_eq!(hit.port_name.as_deref(), Some("http"));
    let remote = directory.name_ip(ip("10.244.3.12")).unwrap();
    assert_eq!(
        remote.name, "web-7d4b9c8f6d-remote",
        "pod known from its EndpointSlice"
    );

    let text = metrics(&directory);
    assert!(
        text.contains("nfscope_kube_watch_errors_total{resource=\"pods\"} 1"),
        "the 410 is counted once:\n{text}"
    );
    assert!(
        text.contains("nfscope_kube_watch_errors_total{resource=\"nodes\"} 0"),
        "{text}"
    );
    let stats = directory.stats();
    assert!(
        stats.resyncs_total >= 5,
        "4 initial lists + the pods relist: {stats:?}"
    );

    let requests = api.requests.lock().unwrap().clone();
    let pod_lists = requests
        .iter()
        .filter(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true"))
        .count();
    assert_eq!(pod_lists, 2, "listed again after 410: {requests:#?}");
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/pods?")
            && r.contains("watch=true")
            && r.contains("resourceVersion=1000")),
        "the first watch resumes from the list's resourceVersion: {requests:#?}"
    );

    let mut info = String::new();
    directory.render_endpoint_info(
        [
            "10.244.1.11:8080",
            "[fd00:10:244:1::b]:8080",
            "10.9.9.9:80",
            "10.244.1.11:8080",
        ],
        &mut info,
    );
    let series: Vec<&str> = info.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        series,
        [
            r#"nfscope_kube_endpoint_info{endpoint="10.244.1.11:8080",pod="web-7d4b9c8f6d-x2x9k",workload="web",namespace="shop"} 1"#,
            r#"nfscope_kube_endpoint_info{endpoint="[fd00:10:244:1::b]:8080",pod="web-7d4b9c8f6d-x2x9k",workload="web",namespace="shop"} 1"#,
        ]
    );

    tasks.iter().for_each(|t| t.abort());
    server.abort();
}
