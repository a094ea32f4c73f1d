//! Root tests of the flow monitor (`nfscope serve --flows`) with real TCP through a Service VIP.
//!
//! Topology, all in namespaces this test creates: `client` ─veth─ `node` ─veth─ `pod`. The node
//! forwards and DNATs the VIP 10.96.77.10:80 to the pod's 10.77.2.2:8080, and nfscope watches the
//! node namespace. Each connection's payload sizes are known, so `/api/flows` and the metrics
//! must report exact bytes, the pod (not the VIP), a positive handshake and the right end.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nfscope_kernel::run_in_netns;
use nfscope_test_support::Sample;
use nfscope_test_support::{TestNetns, root_or_skip};
use serde_json::Value;
use support::Server;

const VIP: &str = "10.96.77.10";
const POD: &str = "10.77.2.2";

struct Lab {
    client: TestNetns,
    node: TestNetns,
    pod: TestNetns,
    stop: Arc<AtomicBool>,
    names: tempfile_path::Path,
}

/// A names file that is removed on drop (no tempfile crate: a pid-named file in the temp dir).
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Lab {
    fn new(tag: &str) -> Self {
        Self::build(tag, false)
    }

    /// As [`Lab::new`], the client behind a port of the node's bridge `br0` (the demo lab's
    /// `br-lan`), with br_netfilter's iptables calls on and MASQUERADE to the pod, so the node
    /// captures each packet on the port (as sent), on the bridge (after DNAT) and on the pod's
    /// veth (after DNAT and SNAT): three tuples, of which conntrack reports two.
    fn bridged(tag: &str) -> Self {
        Self::build(tag, true)
    }

    fn build(tag: &str, bridged: bool) -> Self {
        let client = TestNetns::new(&format!("{tag}c")).expect("client netns");
        let node = TestNetns::new(&format!("{tag}n")).expect("node netns");
        let pod = TestNetns::new(&format!("{tag}p")).expect("pod netns");
        if bridged {
            let (_, port) = client
                .veth_to(&node, &["10.77.1.2/24"], &[])
                .expect("client veth");
            node.sh_ok(&format!(
                "ip link add br0 type bridge && ip link set {port} master br0 && \
                 ip addr add 10.77.1.1/24 dev br0 && ip link set br0 up && \
                 (sysctl -qw net.bridge.bridge-nf-call-iptables=1 || true) && \
                 iptables -t nat -A POSTROUTING -s 10.77.1.0/24 -d {POD} -j MASQUERADE"
            ));
        } else {
            client
                .veth_to(&node, &["10.77.1.2/24"], &["10.77.1.1/24"])
                .expect("client veth");
        }
        pod.veth_to(&node, &["10.77.2.2/24"], &["10.77.2.1/24"])
            .expect("pod veth");
        client.sh_ok("ip route add default via 10.77.1.1");
        pod.sh_ok("ip route add default via 10.77.2.1");
        node.sh_ok(&format!(
            "sysctl -qw net.ipv4.ip_forward=1 && \
             iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport 80 -j DNAT --to-destination {POD}:8080"
        ));
        let path =
            std::env::temp_dir().join(format!("nfscope-flow-names-{}-{tag}", std::process::id()));
        std::fs::write(
            &path,
            format!("10.77.1.0/24 shop/client\n{POD} shop/web\n{VIP} shop/web-svc\n"),
        )
        .unwrap();
        let lab = Self {
            client,
            node,
            pod,
            stop: Arc::new(AtomicBool::new(false)),
            names: tempfile_path::Path(path),
        };
        lab.start_pod_server();
        lab
    }

    fn names_file(&self) -> &str {
        self.names.0.to_str().unwrap()
    }

    /// The pod's server: reads a 9-byte header (mode, client bytes, server bytes), then
    /// `F`: reads the rest, answers, closes (FIN); `R`: closes with data unread (RST);
    /// `O`: reads the rest, answers, stays open; `C`: reads the rest, answers, closes once the
    /// client has.
    fn start_pod_server(&self) {
        let listener = run_in_netns(Some(self.pod.name()), || TcpListener::bind("0.0.0.0:8080"))
            .expect("enter pod netns")
            .expect("bind in pod");
        let stop = Arc::clone(&self.stop);
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let mut header = [0u8; 9];
                if stream.read_exact(&mut header).is_err() {
                    continue;
                }
                let up = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
                let down = u32::from_be_bytes(header[5..9].try_into().unwrap()) as usize;
                match header[0] {
                    b'R' => {
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(300));
                            drop(stream);
                        });
                    }
                    mode => {
                        let mut rest = vec![0u8; up - 9];
                        if stream.read_exact(&mut rest).is_err() {
                            continue;
                        }
                        let _ = stream.write_all(&vec![b'x'; down]);
                        if mode == b'O' {
                            kept.push(stream);
                        } else if mode == b'C' {
                            // The client closes first; close when it has.
                            std::thread::spawn(move || {
                                let _ = stream.read_to_end(&mut Vec::new());
                            });
                        }
                    }
                }
            }
        });
    }

    /// One connection from the client namespace to the VIP; returns (client port, stream if open).
    fn connect(&self, mode: u8, up: u32, down: u32) -> (u16, Option<TcpStream>) {
        run_in_netns(Some(self.client.name()), move || {
            let mut stream = TcpStream::connect_timeout(
                &format!("{VIP}:80").parse().unwrap(),
                Duration::from_secs(5),
            )
            .expect("connect to the VIP");
            let port = stream.local_addr().unwrap().port();
            let mut payload = vec![b'a'; up as usize];
            payload[0] = mode;
            payload[1..5].copy_from_slice(&up.to_be_bytes());
            payload[5..9].copy_from_slice(&down.to_be_bytes());
            stream.write_all(&payload).unwrap();
            match mode {
                b'F' => {
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).unwrap();
                    assert_eq!(answer.len(), down as usize);
                    (port, None)
                }
                b'O' => {
                    let mut answer = vec![0u8; down as usize];
                    stream.read_exact(&mut answer).unwrap();
                    (port, Some(stream))
                }
                b'C' => {
                    let mut answer = vec![0u8; down as usize];
                    stream.read_exact(&mut answer).unwrap();
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                    let rest = stream.read_to_end(&mut answer).unwrap();
                    assert_eq!(rest, 0, "the server closes after the client");
                    (port, None)
                }
                _ => {
                    let mut sink = Vec::new();
                    let _ = stream.read_to_end(&mut sink); // ends with ECONNRESET
                    (port, None)
                }
            }
        })
        .expect("enter client netns")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn flows(server: &Server) -> Value {
    let (status, body) = server.get("/api/flows");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/api/flows is JSON")
}

fn by_client_port(doc: &Value, list: &str) -> BTreeMap<u16, Value> {
    doc[list]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["dialled"]["port"] == 80)
        .map(|f| (f["client"]["port"].as_u64().unwrap() as u16, f.clone()))
        .collect()
}

/// Polls until `done(doc)` or 15 s.
fn wait_for(server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let doc = flows(server);
        if done(&doc) {
            return doc;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}: {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label_str(k) == *v))
        .map(|s| s.value)
        .sum()
}

fn serve(lab: &Lab, extra: &[&str]) -> Server {
    let mut args = vec![
        "--flows",
        "--netns",
        lab.node.name(),
        "--names",
        lab.names_file(),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    std::thread::sleep(Duration::from_millis(300)); // sockets are open before the address is printed; settle
    server
}

#[test]
fn connections_through_a_vip_report_exact_bytes_the_serving_pod_handshake_and_end() {
    if !root_or_skip(
        "connections_through_a_vip_report_exact_bytes_the_serving_pod_handshake_and_end",
    ) {
        return;
    }
    let lab = Lab::new("flw");
    let server = serve(&lab, &[]);
    let mut expected = BTreeMap::new(); // port → (end, up, down)
    let mut open_streams = Vec::new();
    for i in 0..4u32 {
        let (up, down) = (100 + 37 * i, 1000 + 1111 * i);
        let (port, _) = lab.connect(b'F', up, down);
        expected.insert(port, ("fin", up, Some(down)));
        let (port, _) = lab.connect(b'R', 500 + i, 0);
        expected.insert(port, ("rst_server", 500 + i, Some(0)));
        let (port, stream) = lab.connect(b'O', 20 + i, 30 + i);
        expected.insert(port, ("open", 20 + i, None));
        open_streams.push(stream);
    }
    let doc = wait_for(&server, "all connections", |doc| {
        let closed = by_client_port(doc, "closed");
        let live = by_client_port(doc, "live");
        expected.iter().all(|(port, (end, ..))| {
            let list = if *end == "open" { &live } else { &closed };
            list.get(port).is_some_and(|f| {
                f["end"] == *end && (*end == "open" || !f["handshake_seconds"].is_null())
            })
        })
    });
    let closed = by_client_port(&doc, "closed");
    let live = by_client_port(&doc, "live");
    for (port, (end, up, down)) in &expected {
        let flow = if *end == "open" {
            &live[port]
        } else {
            &closed[port]
        };
        assert_eq!(
            flow["server"]["ip"], POD,
            "served by the pod, not the VIP: {flow:#}"
        );
        assert_eq!(flow["server"]["port"], 8080);
        assert_eq!(flow["dialled"]["ip"], VIP);
        assert_eq!(flow["server"]["name"], "shop/web");
        assert_eq!(flow["client"]["name"], "shop/client");
        let handshake = flow["handshake_seconds"].as_f64().expect("handshake known");
        assert!(
            handshake > 0.0 && handshake < 1.0,
            "handshake {handshake}: {flow:#}"
        );
        if *end != "open" {
            assert_eq!(flow["payload_bytes"]["client_to_server"], *up, "{flow:#}");
            assert_eq!(
                flow["payload_bytes"]["server_to_client"],
                down.unwrap(),
                "{flow:#}"
            );
        }
    }
    // Filters.
    let (_, body) = server.get(&format!("/api/flows?ip={POD}&namespace=shop"));
    let filtered: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(by_client_port(&filtered, "closed").len(), 8);
    let (_, body) = server.get("/api/flows?namespace=elsewhere");
    let filtered: Value = serde_json::from_str(&body).unwrap();
    assert!(
        filtered["live"].as_array().unwrap().is_empty()
            && filtered["closed"].as_array().unwrap().is_empty()
    );
    assert_eq!(server.get("/api/flows?ip=banana").0, 400);
    // Unknown or repeated keys are refused rather than ignored.
    assert_eq!(server.get("/api/flows?nmespace=shop").0, 400);
    assert_eq!(server.get("/api/flows?ip=10.0.0.1&ip=10.0.0.2").0, 400);

    // Metrics: by workload, exact byte sums, resets by side, handshake histogram in seconds.
    let (_, samples) = server.metrics();
    let pair = [
        ("src_workload", "client"),
        ("dst_workload", "web"),
        ("dst_namespace", "shop"),
    ];
    fn with(
        pair: &[(&'static str, &'static str)],
        extra: (&'static str, &'static str),
    ) -> Vec<(&'static str, &'static str)> {
        pair.iter().copied().chain([extra]).collect()
    }
    assert_eq!(
        metric(
            &samples,
            "nfscope_tcp_connections_total",
            &with(&pair, ("end", "fin"))
        ),
        4.0
    );
    assert_eq!(
        metric(
            &samples,
            "nfscope_tcp_connections_total",
            &with(&pair, ("end", "rst_server"))
        ),
        4.0
    );
    assert_eq!(
        metric(
            &samples,
            "nfscope_tcp_resets_total",
            &with(&pair, ("side", "server"))
        ),
        4.0
    );
    let up: u32 = expected
        .values()
        .filter(|e| e.0 != "open")
        .map(|e| e.1)
        .sum();
    let down: u32 = expected.values().filter_map(|e| e.2).sum();
    assert_eq!(
        metric(
            &samples,
            "nfscope_tcp_bytes_total",
            &with(&pair, ("direction", "client_to_server"))
        ),
        f64::from(up)
    );
    assert_eq!(
        metric(
            &samples,
            "nfscope_tcp_bytes_total",
            &with(&pair, ("direction", "server_to_client"))
        ),
        f64::from(down)
    );
    assert_eq!(metric(&samples, "nfscope_tcp_connections_open", &pair), 4.0);
    let count = metric(&samples, "nfscope_tcp_handshake_seconds_count", &pair);
    assert_eq!(count, 12.0, "every handshake observed once");
    let sum = metric(&samples, "nfscope_tcp_handshake_seconds_sum", &pair);
    assert!(
        sum > 0.0 && sum / count < 0.5,
        "seconds, not milliseconds: mean {}",
        sum / count
    );
    let accounting = lab
        .node
        .sh_ok("cat /proc/sys/net/netfilter/nf_conntrack_acct")
        .trim()
        != "0";
    assert_eq!(
        metric(&samples, "nfscope_conntrack_accounting_enabled", &[]),
        f64::from(u8::from(accounting))
    );
    assert_eq!(metric(&samples, "nfscope_flow_sources_up", &[]), 2.0);
    drop(open_streams);
}

#[test]
fn node_graph_endpoints_satisfy_the_plugin_contract() {
    if !root_or_skip("node_graph_endpoints_satisfy_the_plugin_contract") {
        return;
    }
    let lab = Lab::new("flg");
    let server = serve(&lab, &[]);
    assert_eq!(server.get("/api/health").0, 200);
    lab.connect(b'F', 50, 60);
    lab.connect(b'R', 70, 0);
    wait_for(&server, "two closed", |doc| {
        by_client_port(doc, "closed").len() == 2
    });
    let query = "?namespace=shop&include=&exclude=&stats-type=connection&from=0&to=9999999999999";
    let (status, body) = server.get(&format!("/api/graph/fields{query}"));
    assert_eq!(status, 200);
    for bad in [
        "?stats-type=bogus",
        "?namespace=a&namespace=b",
        "?colour=red",
    ] {
        for endpoint in ["/api/graph/fields", "/api/graph/data"] {
            let (status, body) = server.get(&format!("{endpoint}{bad}"));
            assert_eq!(status, 400, "{endpoint}{bad}: {body}");
        }
    }
    let fields: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = server.get(&format!("/api/graph/data{query}"));
    assert_eq!(status, 200);
    let data: Value = serde_json::from_str(&body).unwrap();
    for (frame, required) in [
        ("nodes", &["id"][..]),
        ("edges", &["id", "source", "target"][..]),
    ] {
        let declared: BTreeMap<String, String> = fields[format!("{frame}_fields")]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field_name"].as_str().unwrap().to_owned(),
                    f["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for name in required {
            assert_eq!(
                declared.get(*name).map(String::as_str),
                Some("string"),
                "{frame}.{name}"
            );
        }
        let rows = data[frame].as_array().unwrap();
        assert!(!rows.is_empty(), "{frame} empty: {data:#}");
        for row in rows {
            for (key, value) in row.as_object().unwrap() {
                let kind = declared
                    .get(key)
                    .unwrap_or_else(|| panic!("undeclared {frame} field {key}"));
                assert_eq!(
                    kind == "number",
                    value.is_number(),
                    "{frame}.{key} = {value}"
                );
            }
        }
    }
    let ids: Vec<&str> = data["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    for edge in data["edges"].as_array().unwrap() {
        assert!(
            ids.contains(&edge["source"].as_str().unwrap())
                && ids.contains(&edge["target"].as_str().unwrap())
        );
    }
    assert!(
        data["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["source"] == "shop/client" && e["target"] == "shop/web")
    );
    for node in data["nodes"].as_array().unwrap() {
        let arcs: f64 = node
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("arc__"))
            .map(|(_, v)| v.as_f64().unwrap())
            .sum();
        assert!((arcs - 1.0).abs() < 1e-9, "arcs of {node} sum to {arcs}");
    }
    let web = data["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "shop/web")
        .unwrap();
    assert!(
        (web["arc__reset"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "one of two reset: {web}"
    );
}

#[test]
fn interface_churn_and_down_interfaces_lose_no_connections() {
    if !root_or_skip("interface_churn_and_down_interfaces_lose_no_connections") {
        return;
    }
    let lab = Lab::new("flc");
    // A down interface named like the tunnel k8spacket crash-looped on (no dummy/ipip modules here).
    lab.node
        .sh_ok("ip link add tunl0 type veth peer name tunl0peer");
    let mut server = serve(&lab, &[]);
    let churner = {
        let node = lab.node.name().to_owned();
        std::thread::spawn(move || {
            for round in 0..8 {
                let script = format!(
                    "ip link add chv{round}a type veth peer name chv{round}b && ip link set chv{round}a up && \
                     ip link set chv{round}b up && ip addr add 10.99.{round}.1/24 dev chv{round}a && \
                     sleep 0.05 && ip link del chv{round}a"
                );
                let status = std::process::Command::new("ip")
                    .args(["netns", "exec", &node, "sh", "-c", &script])
                    .status();
                assert!(status.is_ok_and(|s| s.success()), "churn round {round}");
            }
        })
    };
    let mut ports = Vec::new();
    // At most 900: the closed ring keeps the last 1,000, and a slow churner must not push the
    // first connections out of it.
    while (ports.len() < 30 || !churner.is_finished()) && ports.len() < 900 {
        let i = ports.len() as u32;
        ports.push(lab.connect(b'F', 100 + i, 200).0);
    }
    churner.join().expect("churn rounds succeeded");
    // The server closes first, so its side holds TIME_WAIT and the client may reuse a port for a
    // later connection: each connection is identified by (client port, bytes it sent), which the
    // client chose distinct.
    let sent: Vec<(u16, u64)> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| (port, 100 + i as u64))
        .collect();
    let closed_fin = |doc: &Value| -> Vec<(u16, u64)> {
        doc["closed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["dialled"]["port"] == 80 && f["end"] == "fin")
            .map(|f| {
                (
                    f["client"]["port"].as_u64().unwrap() as u16,
                    f["payload_bytes"]["client_to_server"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let doc = wait_for(&server, "every connection closed", |doc| {
        let closed = closed_fin(doc);
        sent.iter().all(|c| closed.contains(c))
    });
    let closed = closed_fin(&doc);
    for connection in &sent {
        assert_eq!(
            closed.iter().filter(|c| *c == connection).count(),
            1,
            "connection (client port, bytes sent) {connection:?} closed once"
        );
    }
    assert!(server.running(), "the server survived the churn");
    let (_, samples) = server.metrics();
    assert_eq!(
        metric(&samples, "nfscope_flow_capture_drops_total", &[]),
        0.0
    );
}

#[test]
fn more_connections_than_the_table_holds_are_evicted_and_counted() {
    if !root_or_skip("more_connections_than_the_table_holds_are_evicted_and_counted") {
        return;
    }
    let lab = Lab::new("flo");
    let server = serve(&lab, &["--max-connections", "20"]);
    let streams: Vec<_> = (0..60).map(|i| lab.connect(b'O', 10 + i, 5).1).collect();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, samples) = server.metrics();
        let live = metric(&samples, "nfscope_flow_connections_live", &[]);
        let evicted = metric(&samples, "nfscope_flow_table_evictions_total", &[]);
        assert!(live <= 20.0, "live {live} above the limit");
        assert_eq!(metric(&samples, "nfscope_flow_table_capacity", &[]), 20.0);
        if evicted >= 40.0 {
            break;
        }
        assert!(Instant::now() < until, "evictions {evicted}, live {live}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let doc = flows(&server);
    assert!(doc["live"].as_array().unwrap().len() <= 20);
    drop(streams);
}

/// Every record (live or closed) of the client's address, by client port.
fn records_by_client_port(doc: &Value) -> BTreeMap<u16, Vec<Value>> {
    let mut out: BTreeMap<u16, Vec<Value>> = BTreeMap::new();
    for list in ["live", "closed"] {
        for flow in doc[list].as_array().unwrap() {
            if flow["client"]["ip"] == "10.77.1.2" {
                let port = flow["client"]["port"].as_u64().unwrap() as u16;
                out.entry(port).or_default().push(flow.clone());
            }
        }
    }
    out
}

/// Issue 17: the demo lab's LAN clients behind `br-lan` had each connection twice, a closed
/// record and an "open" twin keyed on the post-DNAT address.
#[test]
fn a_client_behind_a_bridge_port_reaching_a_service_is_one_connection_closed_when_it_closes() {
    if !root_or_skip(
        "a_client_behind_a_bridge_port_reaching_a_service_is_one_connection_closed_when_it_closes",
    ) {
        return;
    }
    let lab = Lab::bridged("flbr");
    let server = serve(&lab, &[]);
    let mut sent = BTreeMap::new(); // port → bytes the client sent
    for i in 0..20u32 {
        let up = 100 + 13 * i;
        let (port, _) = lab.connect(b'C', up, 50);
        assert!(
            sent.insert(port, up).is_none(),
            "the client closed first: no port reuse"
        );
    }
    wait_for(&server, "every connection closed", |doc| {
        let closed = by_client_port(doc, "closed");
        sent.keys().all(|p| {
            closed
                .get(p)
                .is_some_and(|f| f["end"] == "fin" && !f["ct_id"].is_null())
        })
    });
    // Late copies (the bridge's, the pod veth's) had their chance to make twins.
    std::thread::sleep(Duration::from_secs(3));
    let doc = flows(&server);
    let records = records_by_client_port(&doc);
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        sent.keys().collect::<Vec<_>>(),
        "no record for a port the client did not use"
    );
    for (port, up) in &sent {
        let list = &records[port];
        assert_eq!(list.len(), 1, "port {port}: one record, got {list:#?}");
        let flow = &list[0];
        assert_eq!(flow["end"], "fin", "{flow:#}");
        assert_eq!(flow["dialled"]["ip"], VIP);
        assert_eq!(flow["server"]["ip"], POD, "{flow:#}");
        assert_eq!(flow["payload_bytes"]["client_to_server"], u64::from(*up));
        let handshake = flow["handshake_seconds"].as_f64().expect("handshake seen");
        assert!(
            handshake <= flow["duration_seconds"].as_f64().unwrap(),
            "{flow:#}"
        );
    }
    assert!(doc["live"].as_array().unwrap().is_empty(), "{doc:#}");
    let (_, samples) = server.metrics();
    assert_eq!(metric(&samples, "nfscope_tcp_connections_open", &[]), 0.0);
    assert_eq!(
        metric(&samples, "nfscope_flow_connections_seen_total", &[]),
        sent.len() as f64
    );
}

/// REJECTed attempts through the bridge port: after DNAT in FORWARD (as kube-router's
/// policies) and before it (as kube-proxy's Service without endpoints). Each is one record,
/// closed as unreachable: not open, not a timeout, not counted again on the pod edge.
#[test]
fn rejected_connections_are_one_closed_record_each_not_open() {
    if !root_or_skip("rejected_connections_are_one_closed_record_each_not_open") {
        return;
    }
    const EMPTY_VIP: &str = "10.96.77.11";
    let lab = Lab::bridged("flrj");
    lab.node.sh_ok(&format!(
        "iptables -A FORWARD -d {POD} -p tcp --dport 8080 -j REJECT && \
         iptables -A FORWARD -d {EMPTY_VIP} -p tcp --dport 80 -j REJECT && \
         ip route add 10.96.0.0/16 via 10.77.2.2 && sysctl -qw net.ipv4.icmp_ratelimit=0"
    ));
    // (A route for the Service range, as a node has, so the SYN reaches FORWARD; no rate limit
    // on the node's ICMP errors, so every attempt is answered.)
    let server = serve(&lab, &[]);
    let mut refused = 0;
    for i in 0..10 {
        let target = if i % 2 == 0 { VIP } else { EMPTY_VIP };
        let outcome = run_in_netns(Some(lab.client.name()), move || {
            TcpStream::connect_timeout(
                &format!("{target}:80").parse().unwrap(),
                Duration::from_secs(5),
            )
        })
        .expect("enter client netns");
        let error = outcome.expect_err("the node rejects it");
        // REJECT's default answer, ICMP port unreachable.
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "attempt {i}: {error}"
        );
        refused += 1;
    }
    wait_for(&server, "every attempt closed", |doc| {
        let records = records_by_client_port(doc);
        records
            .values()
            .flatten()
            .filter(|f| f["end"] == "unreachable")
            .count()
            == refused
    });
    std::thread::sleep(Duration::from_secs(3));
    let doc = flows(&server);
    let records = records_by_client_port(&doc);
    assert_eq!(records.len(), refused, "{doc:#}");
    for (port, list) in &records {
        assert_eq!(list.len(), 1, "port {port}: one record, got {list:#?}");
        assert_eq!(list[0]["end"], "unreachable", "{:#}", list[0]);
        assert!(
            list[0]["dialled"]["ip"] == VIP || list[0]["dialled"]["ip"] == EMPTY_VIP,
            "keyed on the address the client dialled: {:#}",
            list[0]
        );
    }
    assert!(doc["live"].as_array().unwrap().is_empty(), "{doc:#}");
    let (_, samples) = server.metrics();
    assert_eq!(metric(&samples, "nfscope_tcp_connections_open", &[]), 0.0);
    assert_eq!(
        metric(&samples, "nfscope_flow_connections_seen_total", &[]),
        refused as f64
    );
}

// ---- Failed attempts (issue 17): `/api/failures`, the metric and the graph, against what the
// clients saw. ----

/// The client's view of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Connected,
    Refused,
    TimedOut,
}

/// One TCP attempt from `netns` to `target` (`ip:port` or `[ip6]:port`), given up after `wait`.
fn tcp_attempt(netns: &str, target: &str, wait: Duration) -> Outcome {
    let target: std::net::SocketAddr = target.parse().unwrap();
    let result = run_in_netns(Some(netns), move || {
        TcpStream::connect_timeout(&target, wait)
    })
    .expect("enter client netns");
    match result {
        Ok(_) => Outcome::Connected,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Outcome::TimedOut,
        Err(e) => panic!("connect to {target}: {e}"),
    }
}

/// One UDP datagram from `netns` to `target`; refused when an ICMP unreachable answered it.
fn udp_attempt(netns: &str, target: &str) -> Outcome {
    let target: std::net::SocketAddr = target.parse().unwrap();
    run_in_netns(Some(netns), move || {
        let bind = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = std::net::UdpSocket::bind(bind).expect("bind");
        socket.connect(target).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket.send(b"are you there?").expect("send");
        match socket.recv(&mut [0u8; 64]) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
            Err(_) => Outcome::TimedOut,
            Ok(_) => Outcome::Connected,
        }
    })
    .expect("enter client netns")
}

fn failures_doc(server: &Server) -> Value {
    let (status, body) = server.get("/api/failures");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/api/failures is JSON")
}

/// (dialled ip, dialled port, proto, reason) → the group.
type Groups = BTreeMap<(String, u64, String, String), Value>;

fn groups(doc: &Value) -> Groups {
    doc["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let key = (
                g["dialled"]["ip"].as_str().unwrap().to_owned(),
                g["dialled"]["port"].as_u64().unwrap(),
                g["proto"].as_str().unwrap().to_owned(),
                g["reason"].as_str().unwrap().to_owned(),
            );
            (key, g.clone())
        })
        .collect()
}

/// The tests' `--syn-timeout`: 2 s, above the client's first SYN retransmission (1 s), so an
/// attempt whose first SYN is lost (the first packet to a new neighbour can be) and whose
/// retransmission is answered is not a timeout.
const SYN_TIMEOUT: &str = "2";

/// Polls `/api/failures` until its groups' counts are `want` ((dialled ip, port, proto, reason)
/// → count) or 20 s; then waits 3 s more (late copies, retransmissions) and checks again.
fn wait_for_failures(
    server: &Server,
    want: &BTreeMap<(String, u64, String, String), u64>,
) -> Groups {
    let counts = |g: &Groups| -> BTreeMap<(String, u64, String, String), u64> {
        g.iter()
            .map(|(k, v)| (k.clone(), v["count"].as_u64().unwrap()))
            .collect()
    };
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let got = groups(&failures_doc(server));
        if counts(&got) == *want {
            break;
        }
        assert!(
            Instant::now() < until,
            "failures: want {want:#?}, got {got:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(3));
    let got = groups(&failures_doc(server));
    assert_eq!(counts(&got), *want, "after settling: {got:#?}");
    got
}

fn key(ip: &str, port: u64, proto: &str, reason: &str) -> (String, u64, String, String) {
    (ip.to_owned(), port, proto.to_owned(), reason.to_owned())
}

/// Every failed TCP attempt is one closed record in `/api/flows`, with its failure; none is open.
fn assert_one_record_per_failed_attempt(
    doc: &Value,
    client: &str,
    failed: &BTreeMap<u64, (&str, usize)>,
) {
    assert!(
        doc["live"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !failed.contains_key(&f["dialled"]["port"].as_u64().unwrap())),
        "no failed attempt stays open: {doc:#}"
    );
    for (port, (failure, n)) in failed {
        let records: Vec<&Value> = doc["closed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["client"]["ip"] == client && f["dialled"]["port"] == *port)
            .collect();
        assert_eq!(records.len(), *n, "port {port}: {records:#?}");
        for r in records {
            assert_eq!(r["failure"], *failure, "{r:#}");
        }
    }
}

/// The routed lab with one Service port per way to fail: nothing listening on the pod (its RST),
/// REJECT with tcp-reset, REJECT with ICMP port unreachable, DROP, and UDP to a closed port.
#[test]
fn failed_attempts_are_detected_once_each_with_their_reason_and_server() {
    if !root_or_skip("failed_attempts_are_detected_once_each_with_their_reason_and_server") {
        return;
    }
    let lab = Lab::new("flfa");
    let dnat = |proto: &str, port: u16, to: u16| {
        format!(
            "iptables -t nat -A PREROUTING -d {VIP} -p {proto} --dport {port} -j DNAT --to-destination {POD}:{to}"
        )
    };
    lab.node.sh_ok(&format!(
        "{} && {} && {} && {} && {} && \
         iptables -A FORWARD -d {POD} -p tcp --dport 8082 -j REJECT --reject-with tcp-reset && \
         iptables -A FORWARD -d {POD} -p tcp --dport 8083 -j REJECT && \
         iptables -A FORWARD -d {POD} -p tcp --dport 8084 -j DROP && \
         sysctl -qw net.ipv4.icmp_ratelimit=0",
        dnat("tcp", 81, 8081),
        dnat("tcp", 82, 8082),
        dnat("tcp", 83, 8083),
        dnat("tcp", 84, 8084),
        dnat("udp", 53, 5353),
    ));
    lab.pod.sh_ok("sysctl -qw net.ipv4.icmp_ratelimit=0");
    let server = serve(&lab, &["--syn-timeout", SYN_TIMEOUT]);
    let client = lab.client.name();
    let wait = Duration::from_secs(3);
    for _ in 0..3 {
        for port in [81, 82, 83] {
            assert_eq!(
                tcp_attempt(client, &format!("{VIP}:{port}"), wait),
                Outcome::Refused,
                "port {port}"
            );
        }
        assert_eq!(udp_attempt(client, &format!("{VIP}:53")), Outcome::Refused);
    }
    for _ in 0..2 {
        assert_eq!(
            tcp_attempt(client, &format!("{VIP}:84"), Duration::from_millis(2500)),
            Outcome::TimedOut
        );
    }
    let (_, open) = lab.connect(b'F', 100, 10); // a good one, not a failure
    let _ = open;
    let want = BTreeMap::from([
        (key(VIP, 81, "tcp", "refused"), 3),
        (key(VIP, 82, "tcp", "refused"), 3),
        (key(VIP, 83, "tcp", "refused"), 3),
        (key(VIP, 84, "tcp", "timeout"), 2),
        (key(VIP, 53, "udp", "unreachable"), 3),
    ]);
    let got = wait_for_failures(&server, &want);
    let server_of = |k: (String, u64, String, String)| got[&k]["server"].clone();
    // The pod's RST: the SYN passed the rules, conntrack saw the DNAT.
    assert_eq!(server_of(key(VIP, 81, "tcp", "refused"))["ip"], POD);
    assert_eq!(server_of(key(VIP, 81, "tcp", "refused"))["port"], 8081);
    // Rejected or dropped in FORWARD: the SYN never reached the pod, conntrack never confirmed it.
    for port in [82, 83] {
        assert!(
            server_of(key(VIP, port, "tcp", "refused")).is_null(),
            "port {port}: {got:#?}"
        );
    }
    assert!(server_of(key(VIP, 84, "tcp", "timeout")).is_null());
    // The pod's port unreachable, seen on its veth quoting the datagram after DNAT.
    assert_eq!(server_of(key(VIP, 53, "udp", "unreachable"))["ip"], POD);
    for group in got.values() {
        assert_eq!(group["client"]["ip"], "10.77.1.2");
        assert_eq!(group["client"]["name"], "shop/client");
        assert!(group["explanation"].is_string(), "explained: {group:#}");
    }
    // Each failure traced through the node's rules: the rule that refused or dropped it, or
    // (the pod's RST, its port unreachable) no rule at all.
    let cause_of = |k: (String, u64, String, String)| got[&k]["cause"].clone();
    let decided = |k: (String, u64, String, String)| got[&k]["trace"]["decided_by"]["rule"].clone();
    for (port, cause, rule) in [
        (
            82,
            "rule-reject",
            "--dport 8082 -j REJECT --reject-with tcp-reset",
        ),
        (83, "rule-reject", "--dport 8083 -j REJECT"),
    ] {
        let k = key(VIP, port, "tcp", "refused");
        assert_eq!(cause_of(k.clone()), cause, "port {port}: {got:#?}");
        let text = decided(k).as_str().map(str::to_owned).unwrap_or_default();
        assert!(
            text.starts_with("-A FORWARD") && text.contains(rule),
            "port {port}: {text}"
        );
    }
    let k84 = key(VIP, 84, "tcp", "timeout");
    assert_eq!(cause_of(k84.clone()), "rule-drop", "{got:#?}");
    assert!(
        decided(k84)
            .as_str()
            .is_some_and(|r| r.contains("--dport 8084 -j DROP"))
    );
    assert_eq!(
        cause_of(key(VIP, 81, "tcp", "refused")),
        "no-listener",
        "{got:#?}"
    );
    assert_eq!(
        cause_of(key(VIP, 53, "udp", "unreachable")),
        "no-listener",
        "{got:#?}"
    );
    let tcp_groups: Vec<&Value> = got.values().filter(|g| g["proto"] == "tcp").collect();
    assert!(
        tcp_groups.iter().all(|g| g["in_interface"].is_string()),
        "{tcp_groups:#?}"
    );

    let doc = flows(&server);
    let failed = BTreeMap::from([
        (81, ("refused", 3)),
        (82, ("refused", 3)),
        (83, ("refused", 3)),
        (84, ("timeout", 2)),
    ]);
    assert_one_record_per_failed_attempt(&doc, "10.77.1.2", &failed);

    let (_, samples) = server.metrics();
    let failures = |reason: &str, dst: &str| {
        metric(
            &samples,
            "nfscope_connection_failures_total",
            &[("reason", reason), ("dst_workload", dst)],
        )
    };
    assert_eq!(failures("refused", "web"), 3.0, "81: served by the pod");
    assert_eq!(
        failures("refused", "web-svc"),
        6.0,
        "82, 83: rejected before the pod"
    );
    assert_eq!(failures("timeout", "web-svc"), 2.0);
    assert_eq!(failures("unreachable", "web"), 3.0);
    assert_eq!(metric(&samples, "nfscope_tcp_connections_open", &[]), 0.0);
    for (cause, n) in [
        ("no-listener", 6.0),
        ("rule-reject", 6.0),
        ("rule-drop", 2.0),
    ] {
        assert_eq!(
            metric(
                &samples,
                "nfscope_connection_failures_total",
                &[("cause", cause)]
            ),
            n,
            "{cause}"
        );
    }

    let (status, body) = server.get("/api/graph/data");
    assert_eq!(status, 200);
    let graph: Value = serde_json::from_str(&body).unwrap();
    let edge = |target: &str| {
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == "shop/client" && e["target"] == target)
            .cloned()
            .unwrap_or_else(|| panic!("an edge to {target}: {graph:#}"))
    };
    assert_eq!(edge("shop/web")["detail__failures"], 6);
    assert_eq!(edge("shop/web")["color"], "red");
    assert_eq!(
        edge("shop/web")["detail__resets"],
        0,
        "the pod's RSTs count as failures only"
    );
    assert_eq!(edge("shop/web-svc")["detail__failures"], 8);
    // Filters as /api/flows.
    let (status, body) = server.get("/api/failures?name=web&ip=10.77.1.2");
    assert_eq!(status, 200);
    let filtered: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        filtered["failures"].as_array().unwrap().len(),
        2,
        "{filtered:#}"
    );
    assert_eq!(server.get("/api/failures?bogus=1").0, 400);
}

/// The demo lab's LAN clients behind a bridge port (seen on the port, on the bridge after DNAT,
/// on the pod's veth after MASQUERADE): each failed attempt once.
#[test]
fn failed_attempts_of_a_client_behind_a_bridge_port_count_once() {
    if !root_or_skip("failed_attempts_of_a_client_behind_a_bridge_port_count_once") {
        return;
    }
    let lab = Lab::bridged("flbf");
    lab.node.sh_ok(&format!(
        "iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport 81 -j DNAT --to-destination {POD}:8081 && \
         iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport 83 -j DNAT --to-destination {POD}:8083 && \
         iptables -t nat -A PREROUTING -d {VIP} -p udp --dport 53 -j DNAT --to-destination {POD}:5353 && \
         iptables -t nat -A POSTROUTING -s 10.77.1.0/24 -d {POD} -p udp -j MASQUERADE && \
         iptables -A FORWARD -d {POD} -p tcp --dport 8083 -j REJECT && \
         ip route add 10.96.0.0/16 via 10.77.2.2 && sysctl -qw net.ipv4.icmp_ratelimit=0"
    ));
    lab.pod.sh_ok("sysctl -qw net.ipv4.icmp_ratelimit=0");
    let server = serve(&lab, &["--syn-timeout", SYN_TIMEOUT]);
    let client = lab.client.name();
    for _ in 0..4 {
        for port in [81, 83] {
            assert_eq!(
                tcp_attempt(client, &format!("{VIP}:{port}"), Duration::from_secs(3)),
                Outcome::Refused
            );
        }
        assert_eq!(udp_attempt(client, &format!("{VIP}:53")), Outcome::Refused);
    }
    let want = BTreeMap::from([
        (key(VIP, 81, "tcp", "refused"), 4),
        (key(VIP, 83, "tcp", "refused"), 4),
        (key(VIP, 53, "udp", "unreachable"), 4),
    ]);
    let got = wait_for_failures(&server, &want);
    assert_eq!(got[&key(VIP, 81, "tcp", "refused")]["server"]["ip"], POD);
    assert_eq!(
        got[&key(VIP, 83, "tcp", "refused")]["server"]["ip"],
        POD,
        "rejected after DNAT, seen on the bridge"
    );
    let doc = flows(&server);
    assert_one_record_per_failed_attempt(
        &doc,
        "10.77.1.2",
        &BTreeMap::from([(81, ("refused", 4)), (83, ("refused", 4))]),
    );
}

/// A pod dialling its own Service (hairpin, MASQUERADEd back to itself) with nothing
/// listening: its RST refuses each attempt once.
#[test]
fn a_hairpin_attempt_refused_by_the_pod_counts_once() {
    if !root_or_skip("a_hairpin_attempt_refused_by_the_pod_counts_once") {
        return;
    }
    let lab = Lab::new("flhp");
    lab.node.sh_ok(&format!(
        "iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport 81 -j DNAT --to-destination {POD}:8081 && \
         iptables -t nat -A POSTROUTING -s {POD} -d {POD} -j MASQUERADE"
    ));
    let server = serve(&lab, &["--syn-timeout", SYN_TIMEOUT]);
    for _ in 0..5 {
        assert_eq!(
            tcp_attempt(lab.pod.name(), &format!("{VIP}:81"), Duration::from_secs(3)),
            Outcome::Refused
        );
    }
    let want = BTreeMap::from([(key(VIP, 81, "tcp", "refused"), 5)]);
    let got = wait_for_failures(&server, &want);
    let group = &got[&key(VIP, 81, "tcp", "refused")];
    assert_eq!(group["client"]["ip"], POD);
    assert_eq!(group["server"]["ip"], POD);
    let doc = flows(&server);
    assert_one_record_per_failed_attempt(&doc, POD, &BTreeMap::from([(81, ("refused", 5))]));
}

/// IPv6, no NAT: ip6tables REJECT (ICMPv6 port unreachable), the pod's RST, DROP, and UDP to a
/// closed port (ICMPv6 from the pod). A conntrack rule, as every node has, so conntrack runs in
/// the node's IPv6 hooks and reports the attempts that passed.
#[test]
fn ipv6_failed_attempts_are_detected() {
    if !root_or_skip("ipv6_failed_attempts_are_detected") {
        return;
    }
    let client = TestNetns::new("fl6c").expect("client netns");
    let node = TestNetns::new("fl6n").expect("node netns");
    let pod = TestNetns::new("fl6p").expect("pod netns");
    client
        .veth_to(&node, &["fd77:1::2/64"], &["fd77:1::1/64"])
        .expect("client veth");
    pod.veth_to(&node, &["fd77:2::2/64"], &["fd77:2::1/64"])
        .expect("pod veth");
    client.sh_ok("ip -6 route add default via fd77:1::1");
    pod.sh_ok("ip -6 route add default via fd77:2::1 && sysctl -qw net.ipv6.icmp.ratelimit=0");
    node.sh_ok(
        "sysctl -qw net.ipv6.conf.all.forwarding=1 && sysctl -qw net.ipv6.icmp.ratelimit=0 && \
         ip6tables -A FORWARD -m conntrack --ctstate INVALID -j DROP && \
         ip6tables -A FORWARD -d fd77:2::2 -p tcp --dport 8083 -j REJECT && \
         ip6tables -A FORWARD -d fd77:2::2 -p tcp --dport 8084 -j DROP",
    );
    let names = std::env::temp_dir().join(format!("nfscope-flow-names-{}-fl6", std::process::id()));
    std::fs::write(&names, "fd77:1::/64 shop/client\nfd77:2::2 shop/web\n").unwrap();
    let _names = tempfile_path::Path(names.clone());
    let server = Server::start(&[
        "--flows",
        "--netns",
        node.name(),
        "--names",
        names.to_str().unwrap(),
        "--syn-timeout",
        SYN_TIMEOUT,
    ]);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        for port in [8081, 8083] {
            assert_eq!(
                tcp_attempt(
                    client.name(),
                    &format!("[fd77:2::2]:{port}"),
                    Duration::from_secs(3)
                ),
                Outcome::Refused
            );
        }
        assert_eq!(
            udp_attempt(client.name(), "[fd77:2::2]:5353"),
            Outcome::Refused
        );
    }
    assert_eq!(
        tcp_attempt(
            client.name(),
            "[fd77:2::2]:8084",
            Duration::from_millis(2500)
        ),
        Outcome::TimedOut
    );
    let pod_ip = "fd77:2::2";
    let want = BTreeMap::from([
        (key(pod_ip, 8081, "tcp", "refused"), 3),
        (key(pod_ip, 8083, "tcp", "refused"), 3),
        (key(pod_ip, 8084, "tcp", "timeout"), 1),
        (key(pod_ip, 5353, "udp", "unreachable"), 3),
    ]);
    let got = wait_for_failures(&server, &want);
    assert_eq!(
        got[&key(pod_ip, 8081, "tcp", "refused")]["server"]["ip"],
        pod_ip,
        "conntrack saw it pass"
    );
    for group in got.values() {
        assert_eq!(group["client"]["name"], "shop/client");
    }
    let (_, samples) = server.metrics();
    assert_eq!(
        metric(
            &samples,
            "nfscope_connection_failures_total",
            &[("dst_workload", "web")]
        ),
        10.0
    );
}
