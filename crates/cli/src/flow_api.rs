//! The flow monitor in the binary: the reader threads that feed `nfscope-flow`'s table from
//! `nfscope-kernel`'s sources, and its HTTP routes (`/api/flows`, `/api/failures`, `/api/health`,
//! `/api/graph/fields`, `/api/graph/data`). Its metrics are `nfscope-flow`'s families; the
//! monitor is handed to the server as one of its sources of families.
//!
//! Three threads: one reads conntrack events, one reads the packet ring and, about once a second,
//! expires connections and collects the ring's drop counters; both lock the table briefly per
//! batch. The third explains the failed attempts the table detected with the `ExplainFailure`
//! the monitor was started with (which may block while it reads the rules) and records them: the
//! capture thread hands them over through a bounded queue and never waits for an explanation
//! (when the queue is full, an attempt is recorded unexplained at once, so none is lost). A source that cannot be opened is logged and reported in `nfscope_flow_sources_up`; the
//! other keeps working. Interfaces coming and going need nothing: the capture is bound to all.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nfscope_exporter::kube_conntrack::NewConnection;
use nfscope_flow::api::{FlowFilter, flow_json};
use nfscope_flow::failure::failures_json;
use nfscope_flow::graph::{self, GraphQuery};
use nfscope_flow::metrics::{FlowFamilies, SourceInfo};
use nfscope_flow::{
    Conn, CtEvent, CtKind, FlowConfig, FlowTable, Names, TableSnapshot, Time, parse_ip_tcp,
};
use nfscope_flow::{
    ExplainFailure, FailedAttempt, FailureExplanation, NoExplanation, parse_icmp_udp_error,
};
use nfscope_kernel::flow::{ConntrackEvents, PacketCapture, open_sources};
use nfscope_server::failure_explain::FailureExplainer;
use nfscope_server::kube_conn::KubeConnections;
use nfscope_server::query::checked_params;
use nfscope_server::{MetricFamilies, ScrapeFacts};
use nfscope_trace::failure::{Attempt, AttemptFailure};

/// What `--flows` (and `nfscope flows`) configure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowOptions {
    /// `--names FILE`: IP or CIDR → name.
    pub names_file: Option<PathBuf>,
    /// Names known in-process (e.g. the demo's topology); `names_file` entries replace these.
    pub names: Names,
    /// Live connections kept at most (0 = the default, 100,000).
    pub max_connections: usize,
    /// Failure detection: `Some(--syn-timeout)` (see `nfscope_flow::FlowConfig::syn_timeout`).
    pub syn_timeout: Option<Duration>,
    /// Failure groups kept at most (0 = the default, 1,000).
    pub max_failures: usize,
}

/// Explains failed attempts for the monitor (shared with its explaining thread).
pub type Explainer = Arc<dyn ExplainFailure + Send + Sync>;

/// The flow monitor's seam filled by `nfscope-server`'s [`FailureExplainer`]: a failed attempt
/// is traced through the live rules as its first packet arrived.
pub struct TraceExplainer(pub Arc<FailureExplainer>);

impl ExplainFailure for TraceExplainer {
    fn explain(&self, attempt: &FailedAttempt) -> Option<FailureExplanation> {
        let explained = self.0.explain(&trace_attempt(attempt))?;
        Some(FailureExplanation {
            trace_json: explained.trace_json,
            explanation: explained.explanation,
            cause: explained.cause.as_str().to_owned(),
        })
    }
}

/// The failure explainer of `serve --flows` and `nfscope failures`: it reads the rules as
/// `collect` says (with the text read's longer limit: no capture waits for it).
pub fn trace_explainer(
    collect: &nfscope_kernel::CollectOptions,
) -> anyhow::Result<Arc<FailureExplainer>> {
    let mut trace_collect = collect.clone();
    trace_collect.timeout = collect.text_timeout.max(collect.timeout);
    let explainer = FailureExplainer::new(
        move || crate::trace_cmd::live_trace_input(trace_collect.clone()),
        nfscope_server::failure_explain::ExplainConfig::default(),
    )
    .map_err(|e| anyhow::anyhow!("cannot start the failure explainer: {e}"))?;
    Ok(Arc::new(explainer))
}

/// The tracer's description of a failed attempt the flow table detected.
fn trace_attempt(a: &FailedAttempt) -> Attempt {
    use nfscope_flow::{FailureReason, Proto as FlowProto};
    Attempt {
        client: a.client,
        dialled: a.dialled,
        proto: match a.proto {
            FlowProto::Tcp => nfscope_trace::Proto::Tcp,
            FlowProto::Udp => nfscope_trace::Proto::Udp,
        },
        in_iface: a.in_interface.clone(),
        mark: a.mark,
        failure: match a.reason {
            FailureReason::Refused => AttemptFailure::Refused,
            FailureReason::Reset => AttemptFailure::Reset,
            FailureReason::Timeout => AttemptFailure::Timeout,
            FailureReason::Unreachable => AttemptFailure::Unreachable,
        },
        server: a.server,
    }
}

/// `--syn-timeout`'s default.
pub const DEFAULT_SYN_TIMEOUT: Duration = Duration::from_secs(3);

/// Failed attempts waiting for the explainer at most.
const EXPLAIN_QUEUE: usize = 4_096;

/// How often the interface names (for failed attempts' incoming interface) are read again.
const INTERFACE_REFRESH: Duration = Duration::from_secs(5);

/// How long a connection the capture saw end waits for its conntrack NEW event (which brings
/// the NAT translation) before it is closed without it.
const CONNTRACK_GRACE: Duration = Duration::from_secs(2);

/// Conntrack events handled per table lock at most.
const CONNTRACK_BATCH: usize = 4096;

/// Pause after each batch of conntrack events, so a busy node's next wake-up finds many.
const CONNTRACK_PAUSE: Duration = Duration::from_millis(10);

/// A running flow monitor; its threads stop when it is dropped.
pub struct FlowMonitor {
    table: Arc<Mutex<FlowTable>>,
    info: SourceInfo,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for FlowMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowMonitor")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Wall-clock time as the table wants it.
pub fn wall_now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Reads and parses `--names FILE`.
pub fn read_names(path: Option<&std::path::Path>) -> anyhow::Result<Names> {
    let Some(path) = path else {
        return Ok(Names::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Names::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
}

impl FlowMonitor {
    /// Opens the sources in `netns` and starts the reader threads; the conntrack reader also
    /// counts NEW events into `kube_connections` (the Service connection counter of `serve`).
    /// Failures go unexplained.
    pub fn start(
        netns: Option<&str>,
        options: &FlowOptions,
        kube_connections: Option<Arc<KubeConnections>>,
    ) -> anyhow::Result<Self> {
        Self::start_explained(netns, options, kube_connections, Arc::new(NoExplanation))
    }

    /// As [`Self::start`], failed attempts explained by `explainer`.
    pub fn start_explained(
        netns: Option<&str>,
        options: &FlowOptions,
        kube_connections: Option<Arc<KubeConnections>>,
        explainer: Explainer,
    ) -> anyhow::Result<Self> {
        let mut names = options.names.clone();
        names.merge(&read_names(options.names_file.as_deref())?);
        let sources = open_sources(netns, Duration::from_millis(200)).with_context(|| {
            format!(
                "entering network namespace {}",
                netns.unwrap_or("(current)")
            )
        })?;
        for (ip, _ifname) in &sources.local_addresses {
            if !ip.is_loopback() {
                names.add_local(*ip, "node");
            }
        }
        let mut config = FlowConfig::default();
        if options.max_connections > 0 {
            config.max_live = options.max_connections;
        }
        config.syn_timeout = options.syn_timeout;
        if options.max_failures > 0 {
            config.max_failures = options.max_failures;
        }
        if sources.conntrack.is_ok() {
            // Conntrack events lag the capture under load; wait for them before closing.
            config.conntrack_grace = CONNTRACK_GRACE;
        }
        let mut table = FlowTable::new(config, names);
        match nfscope_kernel::flow::interface_names(netns) {
            Ok(interfaces) => table.set_interface_names(interfaces),
            Err(e) => tracing::warn!(error = %e, "flow monitor: interface names unavailable"),
        }
        let table = Arc::new(Mutex::new(table));
        let stop = Arc::new(AtomicBool::new(false));
        let mut info = SourceInfo {
            accounting: sources.accounting,
            ..SourceInfo::default()
        };
        match sources.conntrack {
            Ok(events) => {
                info.conntrack_up = true;
                if let Some(counter) = &kube_connections {
                    counter.set_up(true);
                }
                spawn(
                    "nfscope-conntrack",
                    read_conntrack(
                        events,
                        Arc::clone(&table),
                        Arc::clone(&stop),
                        kube_connections,
                    ),
                )?;
            }
            Err(e) => tracing::warn!(error = %e, "flow monitor: conntrack events unavailable"),
        }
        match sources.capture {
            Ok(capture) => {
                info.capture_up = true;
                let (queue, attempts) = std::sync::mpsc::sync_channel(EXPLAIN_QUEUE);
                spawn(
                    "nfscope-explain",
                    explain_failures(attempts, explainer, Arc::clone(&table)),
                )?;
                let reader = CaptureReader {
                    table: Arc::clone(&table),
                    stop: Arc::clone(&stop),
                    explain: queue,
                    netns: netns.map(str::to_owned),
                };
                spawn("nfscope-capture", reader.run(capture))?;
            }
            Err(e) => tracing::warn!(error = %e, "flow monitor: packet capture unavailable"),
        }
        if info.accounting == Some(false) {
            tracing::info!(
                "nf_conntrack_acct is off: bytes come from TCP sequence numbers only (not switching it on)"
            );
        }
        if !info.conntrack_up && !info.capture_up {
            anyhow::bail!(
                "flow monitor: neither conntrack events nor packet capture could be opened (needs CAP_NET_ADMIN and CAP_NET_RAW)"
            );
        }
        Ok(Self { table, info, stop })
    }

    /// The table, locked.
    pub fn table(&self) -> MutexGuard<'_, FlowTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the sources are doing.
    pub fn info(&self) -> SourceInfo {
        self.info
    }
}

impl Drop for FlowMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn spawn(name: &str, job: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(job)
        .map(|_| ())
        .context("starting a flow monitor thread")
}

fn lock(table: &Mutex<FlowTable>) -> MutexGuard<'_, FlowTable> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the Service connection counter needs of a conntrack event.
pub fn new_connection(e: &CtEvent) -> NewConnection {
    NewConnection {
        proto: e.proto,
        dst: e.orig.dst,
        dport: e.orig.dport,
        endpoint: e.reply.src,
        endpoint_port: e.reply.sport,
    }
}

fn read_conntrack(
    mut events: ConntrackEvents,
    table: Arc<Mutex<FlowTable>>,
    stop: Arc<AtomicBool>,
    kube_connections: Option<Arc<KubeConnections>>,
) -> impl FnOnce() + Send {
    move || {
        let mut batch = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = events.recv(|event| batch.push(event)) {
                tracing::warn!(error = %e, "conntrack events: receive failed");
                std::thread::sleep(Duration::from_millis(200));
            }
            // Drain the burst the socket holds, one wake-up and one lock for all of it.
            while batch.len() < CONNTRACK_BATCH
                && matches!(events.recv_nowait(|event| batch.push(event)), Ok(n) if n > 0)
            {
            }
            let lost = events.take_overruns();
            if batch.is_empty() && lost == 0 {
                continue;
            }
            if let Some(counter) = &kube_connections {
                let new = batch
                    .iter()
                    .filter(|e| e.kind == CtKind::New)
                    .map(new_connection);
                counter.observe(new, lost);
            }
            let now = wall_now();
            let mut table = lock(&table);
            for event in batch.drain(..) {
                table.on_conntrack_event(now, event);
            }
            table.add_reader_losses(lost, 0, 0);
            drop(table);
            // Let the next events gather in the 8 MiB socket buffer rather than waking for each
            // one (at most 100 wake-ups a second under load); overruns would still be counted.
            std::thread::sleep(CONNTRACK_PAUSE);
        }
    }
}

/// The packet's kernel timestamp, unless it is far from the wall clock (some egress paths stamp
/// with the monotonic clock); then the time it was read.
fn packet_time(sec: u32, nsec: u32, now: Time) -> Time {
    let stamped = Duration::new(u64::from(sec), nsec.min(999_999_999));
    let skew = stamped.abs_diff(now);
    if skew > Duration::from_secs(10) {
        now
    } else {
        stamped
    }
}

/// Explains the attempts the capture thread hands over and records them; ends when the capture
/// thread (the queue's sender) is gone.
fn explain_failures(
    attempts: std::sync::mpsc::Receiver<FailedAttempt>,
    explainer: Explainer,
    table: Arc<Mutex<FlowTable>>,
) -> impl FnOnce() + Send {
    move || {
        for attempt in attempts {
            let explanation = explainer.explain(&attempt);
            lock(&table).record_failure(attempt, explanation);
        }
    }
}

/// What the capture thread works with.
struct CaptureReader {
    table: Arc<Mutex<FlowTable>>,
    stop: Arc<AtomicBool>,
    /// Failed attempts for the explainer thread.
    explain: std::sync::mpsc::SyncSender<FailedAttempt>,
    netns: Option<String>,
}

/// One captured packet the table wants.
enum Captured {
    Tcp(nfscope_flow::PacketMeta),
    Udp(nfscope_flow::UdpUnreachable),
}

impl CaptureReader {
    fn run(self, capture: PacketCapture) -> impl FnOnce() + Send {
        move || self.read(capture)
    }

    /// Hands the failed attempts the table detected to the explainer thread; those the queue
    /// has no room for (or that no thread explains any more) are recorded unexplained.
    fn hand_over_failures(&self, table: &mut FlowTable) {
        for attempt in table.take_failed_attempts() {
            if let Err(
                std::sync::mpsc::TrySendError::Full(attempt)
                | std::sync::mpsc::TrySendError::Disconnected(attempt),
            ) = self.explain.try_send(attempt)
            {
                table.record_failure(attempt, None);
            }
        }
    }

    fn read(self, mut capture: PacketCapture) {
        let table = &self.table;
        let mut batch = Vec::new();
        let mut last_housekeeping = Instant::now();
        let mut last_interfaces = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let now = wall_now();
            let polled = capture.poll(Duration::from_millis(200), |sec, nsec, ifindex, bytes| {
                let at = packet_time(sec, nsec, now);
                if let Some(meta) = parse_ip_tcp(bytes, ifindex) {
                    batch.push((at, Captured::Tcp(meta)));
                } else if let Some(error) = parse_icmp_udp_error(bytes, ifindex) {
                    batch.push((at, Captured::Udp(error)));
                }
            });
            if let Err(e) = polled {
                tracing::warn!(error = %e, "packet capture: poll failed");
                std::thread::sleep(Duration::from_millis(200));
            }
            let housekeeping = last_housekeeping.elapsed() >= Duration::from_secs(1);
            if batch.is_empty() && !housekeeping {
                continue;
            }
            let stats = if housekeeping {
                capture.statistics().ok()
            } else {
                None
            };
            let interfaces = (housekeeping && last_interfaces.elapsed() >= INTERFACE_REFRESH)
                .then(|| {
                    last_interfaces = Instant::now();
                    nfscope_kernel::flow::interface_names(self.netns.as_deref()).ok()
                })
                .flatten();
            let mut table = lock(table);
            if let Some(interfaces) = interfaces {
                table.set_interface_names(interfaces);
            }
            for (at, captured) in batch.drain(..) {
                match captured {
                    Captured::Tcp(meta) => table.on_packet(at, meta),
                    Captured::Udp(error) => table.on_udp_unreachable(at, error),
                }
            }
            if housekeeping {
                last_housekeeping = Instant::now();
                table.expire(wall_now());
                if let Some(s) = stats {
                    table.add_reader_losses(0, s.drops, s.packets);
                }
            }
            self.hand_over_failures(&mut table);
        }
    }
}

impl MetricFamilies for FlowMonitor {
    /// The flow families of the table as it is now.
    fn encode(&self, facts: &ScrapeFacts<'_>, out: &mut nfscope_server::Exposition<'_>) {
        let table = self.table();
        FlowFamilies {
            table: &table,
            info: self.info,
        }
        .encode(facts, out);
    }
}

/// Starts the monitor for the server, failed attempts explained by `explainer`; returns it (for
/// `/metrics`) and its routes.
pub fn start_routes(
    netns: Option<&str>,
    options: &FlowOptions,
    kube_connections: Option<Arc<KubeConnections>>,
    explainer: Explainer,
) -> anyhow::Result<(Arc<FlowMonitor>, Router)> {
    let monitor = Arc::new(FlowMonitor::start_explained(
        netns,
        options,
        kube_connections,
        explainer,
    )?);
    Ok((Arc::clone(&monitor), routes(monitor)))
}

/// The flow routes over `monitor`.
pub fn routes(monitor: Arc<FlowMonitor>) -> Router {
    Router::new()
        .route("/api/flows", get(api_flows))
        .route("/api/failures", get(api_failures))
        .route("/api/health", get(api_health))
        .route("/api/graph/fields", get(api_graph_fields))
        .route("/api/graph/data", get(api_graph_data))
        .with_state(monitor)
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
        )
            .into_response(),
    }
}

type Params = Query<Vec<(String, String)>>;

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

/// Bytes of JSON per streamed chunk (under glibc's mmap threshold, like `/metrics`' chunks).
const JSON_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks queued between the encoder and the connection.
const JSON_CHUNKS_QUEUED: usize = 4;

type JsonChunk = Result<bytes::Bytes, std::io::Error>;

/// Runs `build` on the blocking pool (documents of a big table take a while to build and
/// serialise; the async workers keep answering `/healthz`) and streams its JSON to the client
/// in chunks through a small bounded channel, so no request holds its whole body: a response
/// holds the document and about [`JSON_CHUNKS_QUEUED`] + 2 chunks of text. Encoding stops when
/// the client goes away. A failure before the first chunk gives 500; one after it aborts the
/// response, so a client never takes a truncated body for a whole one.
async fn json_off_the_workers<T: serde::Serialize + Send + 'static>(
    build: impl FnOnce() -> T + Send + 'static,
) -> Response {
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<JsonChunk>(JSON_CHUNKS_QUEUED);
    let encoder = {
        let sender = sender.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter::new(sender.clone());
            let written = serde_json::to_writer(&mut out, &build())
                .map_err(std::io::Error::from)
                .and_then(|()| out.finish());
            if let Err(e) = written
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                let _ = sender
                    .blocking_send(Err(std::io::Error::other(format!("encoding failed: {e}"))));
            }
        })
    };
    tokio::spawn(async move {
        if let Err(e) = encoder.await {
            let _ = sender
                .send(Err(std::io::Error::other(format!("encoding failed: {e}"))))
                .await;
        }
    });
    let first = match chunks.recv().await {
        Some(Ok(first)) => first,
        Some(Err(e)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
        }
        None => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding failed: no output\n",
            )
                .into_response();
        }
    };
    let rest = futures::stream::poll_fn(move |cx| chunks.poll_recv(cx));
    let body = futures::StreamExt::chain(futures::stream::once(async { Ok(first) }), rest);
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// An `io::Write` that hands what is written to a channel in chunks of about
/// [`JSON_CHUNK_BYTES`], blocking while the channel is full; `BrokenPipe` once the receiver
/// (the response) is gone.
struct ChunkWriter {
    buf: Vec<u8>,
    sender: tokio::sync::mpsc::Sender<JsonChunk>,
}

impl ChunkWriter {
    fn new(sender: tokio::sync::mpsc::Sender<JsonChunk>) -> Self {
        Self {
            buf: Vec::with_capacity(JSON_CHUNK_BYTES),
            sender,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(JSON_CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(bytes::Bytes::from(chunk)))
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }

    /// Sends what is left (at least one chunk in all, so an empty document still answers).
    fn finish(mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= JSON_CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn api_flows(State(monitor): State<Arc<FlowMonitor>>, Query(params): Params) -> Response {
    let checked = checked_params(&params, FlowFilter::KEYS);
    let filter = match checked.and_then(FlowFilter::from_params) {
        Ok(filter) => filter,
        Err(message) => return bad_request(&message),
    };
    // The lock is held only to copy the table's records; naming, filtering and encoding
    // happen after it is released, one connection at a time.
    json_off_the_workers(move || {
        let table = monitor.table();
        StreamedFlows {
            snapshot: table.snapshot(wall_now()),
            names: table.names().clone(),
            filter,
        }
    })
    .await
}

/// `/api/flows`' document (`nfscope_flow::api::FlowsJson`'s JSON) built one connection at a
/// time while it is serialized: a request holds the copied records and a few chunks of text,
/// not a second document of every connection.
struct StreamedFlows {
    snapshot: TableSnapshot,
    names: Names,
    filter: FlowFilter,
}

impl serde::Serialize for StreamedFlows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let flows = |conns| NamedFlows {
            conns,
            names: &self.names,
            filter: &self.filter,
            now: self.snapshot.now,
        };
        let mut doc = serializer.serialize_struct("FlowsJson", 4)?;
        let now_ms = u64::try_from(self.snapshot.now.as_millis()).unwrap_or(u64::MAX);
        doc.serialize_field("now_unix_ms", &now_ms)?;
        doc.serialize_field("live", &flows(&self.snapshot.live))?;
        doc.serialize_field("closed", &flows(&self.snapshot.closed))?;
        doc.serialize_field("stats", &self.snapshot.stats)?;
        doc.end()
    }
}

/// Connections as `FlowJson`s, named and filtered as they are written.
struct NamedFlows<'a> {
    conns: &'a [Conn],
    names: &'a Names,
    filter: &'a FlowFilter,
    now: Time,
}

impl serde::Serialize for NamedFlows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.conns
                .iter()
                .map(|conn| flow_json(conn, self.names, self.now))
                .filter(|flow| self.filter.keeps(flow)),
        )
    }
}

async fn api_failures(State(monitor): State<Arc<FlowMonitor>>, Query(params): Params) -> Response {
    let checked = checked_params(&params, FlowFilter::KEYS);
    let filter = match checked.and_then(FlowFilter::from_params) {
        Ok(filter) => filter,
        Err(message) => return bad_request(&message),
    };
    // Bounded by --max-failures groups; built under the lock, encoded after it.
    json_off_the_workers(move || {
        let table = monitor.table();
        failures_json(table.failures(), table.names(), &filter, wall_now())
    })
    .await
}

async fn api_health(State(monitor): State<Arc<FlowMonitor>>) -> Response {
    let info = monitor.info();
    json_response(&serde_json::json!({
        "status": "ok",
        "conntrack_events": info.conntrack_up,
        "packet_capture": info.capture_up,
        "conntrack_accounting": info.accounting,
    }))
}

fn graph_query(params: &[(String, String)]) -> Result<GraphQuery, String> {
    GraphQuery::from_params(checked_params(params, GraphQuery::KEYS)?)
}

async fn api_graph_fields(Query(params): Params) -> Response {
    match graph_query(&params) {
        Ok(query) => json_response(&graph::fields(&query)),
        Err(message) => bad_request(&message),
    }
}

async fn api_graph_data(
    State(monitor): State<Arc<FlowMonitor>>,
    Query(params): Params,
) -> Response {
    let query = match graph_query(&params) {
        Ok(query) => query,
        Err(message) => return bad_request(&message),
    };
    json_off_the_workers(move || graph::data(&monitor.table(), &query)).await
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use axum::body::HttpBody as _;
    use futures::StreamExt as _;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_document_is_streamed_in_bounded_chunks() {
        let doc: Vec<String> = (0..40_000).map(|i| format!("connection {i:08}")).collect();
        let want = serde_json::to_string(&doc).expect("JSON");
        assert!(want.len() > 8 * JSON_CHUNK_BYTES, "{} bytes", want.len());
        let response = json_off_the_workers(move || doc).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body();
        assert_eq!(
            body.size_hint().exact(),
            None,
            "no length known up front: the body is streamed, not built whole"
        );
        let mut stream = body.into_data_stream();
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("no error");
            // A chunk is sent once it reaches the size; one write (here < 64 bytes) may overshoot.
            assert!(chunk.len() < JSON_CHUNK_BYTES + 64, "{}", chunk.len());
            got.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert!(chunks > 8, "{chunks} chunks");
        assert_eq!(String::from_utf8(got).expect("UTF-8"), want);
    }

    #[test]
    fn the_streamed_flows_document_is_the_flows_json_one() {
        use nfscope_flow::{PacketMeta, TcpFlags, Tuple};
        let names = Names::parse("10.1.0.0/24 shop/web\n10.2.0.9 db\n").expect("names");
        let mut table = FlowTable::new(FlowConfig::default(), names);
        let start = Duration::from_secs(1_700_000_000);
        for i in 0..50u8 {
            let client = if i % 3 == 0 {
                [10, 1, 0, i]
            } else {
                [10, 3, 0, i]
            };
            let tuple = Tuple {
                src: IpAddr::from(client),
                dst: IpAddr::from([10, 2, 0, 9]),
                sport: 40_000 + u16::from(i),
                dport: 5432,
            };
            let syn = PacketMeta {
                ifindex: 1,
                tuple,
                flags: TcpFlags(TcpFlags::SYN),
                seq: 1000,
                ack: 0,
                payload_len: 0,
                unreachable: false,
            };
            table.on_packet(start + Duration::from_millis(u64::from(i)), syn);
            if i % 5 == 0 {
                let rst = PacketMeta {
                    flags: TcpFlags(TcpFlags::RST),
                    seq: 1001,
                    ..syn
                };
                table.on_packet(start + Duration::from_millis(u64::from(i) + 1), rst);
            }
        }
        let now = start + Duration::from_secs(1);
        let snapshot = table.snapshot(now);
        assert!(!snapshot.live.is_empty() && !snapshot.closed.is_empty());
        let mut documents = Vec::new();
        for filter in [
            FlowFilter::default(),
            FlowFilter {
                namespace: Some("shop".to_owned()),
                ..FlowFilter::default()
            },
        ] {
            let want = serde_json::to_string(&nfscope_flow::api::flows_json(
                &snapshot,
                table.names(),
                &filter,
            ))
            .expect("JSON");
            let streamed = StreamedFlows {
                snapshot: table.snapshot(now),
                names: table.names().clone(),
                filter: filter.clone(),
            };
            assert_eq!(serde_json::to_string(&streamed).expect("JSON"), want);
            documents.push(want);
        }
        assert!(
            documents[1].len() < documents[0].len() && documents[1].contains("shop/web"),
            "the filter kept some connections, not all"
        );
    }

    #[tokio::test]
    async fn a_small_document_is_one_chunk() {
        let response = json_off_the_workers(|| serde_json::json!({"nodes": []})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        assert_eq!(&body[..], br#"{"nodes":[]}"#);
    }
}
