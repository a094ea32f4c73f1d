//! `nfscope serve`: the HTTP server (axum) in front of the scrape pipeline (`nfscope-server`).
//!
//! Owns the routes (`/`: plain text, or HTML for a browser; the console's `/ui/…` from
//! [`crate::ui`]; `/metrics`, `/healthz`, `/api/rules`, `/api/trace`, and with `--flows`
//! the flow monitor's `/api/flows`, `/api/health`, `/api/graph/fields`, `/api/graph/data`), the
//! overall deadline and what a request gets when it passes, and the wiring: which sources of
//! metric families (flow monitor, Kubernetes directory) the server is handed. It does not own the
//! scrape cache, single flight or the `/metrics` encoding (`nfscope-server`), the metric schema
//! (`nfscope-exporter`) nor how the kernel is read (`nfscope-kernel`).
//!
//! Deadline policy: a request waits at most `ServeConfig::deadline` for a collection. Past that it
//! gets **503** with a one-line plain-text reason, so Prometheus records `up == 0` rather than
//! stale numbers; the collection keeps running in the background and the next requests join it
//! (they never start a second one while it is stuck). The kernel crate kills each tool at its
//! own timeout, so a collection always ends eventually.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use nfscope_exporter::ExportOptions;
use nfscope_kernel::CollectOptions;
use nfscope_kube::SharedDirectory;
use nfscope_server::{
    Counters, Finished, MetricsEncoder, Scrape, SelfStats, SharedFamilies, SingleFlight, TimedOut,
    oneshot,
};

use crate::http::{FamilyLimit, HttpLimits};
use crate::trace_cmd::TraceModel;
use nfscope_server::api_reads::{ApiReadFamilies, ReadFailed, ReadStats, SharedRead};
use nfscope_server::http_stats::{EndpointFamily, HttpStats};
use nfscope_server::kube_conn::KubeConnections;
use nfscope_server::query::checked_params;

/// Extra time a whole collection gets beyond the per-tool timeout before requests give up.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// Everything `run_server` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind, e.g. `0.0.0.0:9455` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// How to collect (namespace, per-tool timeout, sources).
    pub collect: CollectOptions,
    /// How to render metrics (rule label, cardinality budget).
    pub export: ExportOptions,
    /// Reuse a finished collection this long; zero means every scrape collects (concurrent
    /// scrapes still share one).
    pub cache: Duration,
    /// How long a request waits for a collection before answering 503.
    pub deadline: Duration,
    /// `--flows`: run the flow monitor in the collection's namespace and serve its routes.
    pub flows: Option<crate::flow_api::FlowOptions>,
    /// Connection and request limits of the listener.
    pub http: HttpLimits,
    /// Kubernetes names for `/metrics` (the watcher's directory, or the demo's).
    pub kube: Option<SharedDirectory>,
    /// How long `/api/rules` and `/api/trace` reuse one read of the rules; it is dropped (its
    /// memory freed) when this has passed, whether or not requests come. Zero: no reuse
    /// (concurrent requests still share one read).
    pub api_reuse: Duration,
    /// Bound of the conntrack Service connection counter (`--kube-conntrack-keys`); 0 turns it
    /// off.
    pub kube_conntrack_keys: usize,
}

impl ServeConfig {
    /// Defaults for serving `netns` (or the current namespace) on `listen`: every scrape
    /// collects, 10 s per-tool timeout.
    pub fn new(listen: SocketAddr, netns: Option<String>) -> Self {
        let mut collect = default_collect_options();
        collect.netns = netns;
        collect.timeout = Duration::from_secs(10);
        Self {
            listen,
            deadline: collect.timeout + DEADLINE_GRACE,
            flows: None,
            kube: None,
            collect,
            export: ExportOptions::default(),
            cache: Duration::ZERO,
            http: HttpLimits::default(),
            api_reuse: API_REUSE,
            kube_conntrack_keys: nfscope_exporter::kube_conntrack::DEFAULT_MAX_KEYS,
        }
    }
}

/// Binds `config.listen`, prints `listening on http://ADDR` and serves until `shutdown` resolves.
pub async fn run_server(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Before the blocking pool starts its threads: they then share two malloc arenas.
    nfscope_kernel::tune_allocator();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    serve_on(listener, config, shutdown).await
}

/// Serves on an already bound listener (its address wins over `config.listen`).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    // The sources of families `/metrics` appends after its own, in this order.
    let mut families: Vec<SharedFamilies> = Vec::new();
    let kube_connections = (config.kube_conntrack_keys > 0)
        .then(|| Arc::new(KubeConnections::new(config.kube_conntrack_keys)));
    let flows = match &config.flows {
        Some(options) => {
            // The flow monitor's conntrack reader also feeds the Service connection counter.
            // Failed attempts are traced through the live rules (read at most once per window,
            // cached and budgeted by the explainer, whose families go on /metrics).
            let traces = crate::flow_api::trace_explainer(&config.collect)?;
            families.push(Arc::clone(&traces) as SharedFamilies);
            let explainer: crate::flow_api::Explainer =
                Arc::new(crate::flow_api::TraceExplainer(traces));
            let (monitor, routes) = crate::flow_api::start_routes(
                config.collect.netns.as_deref(),
                options,
                kube_connections.clone(),
                explainer,
            )?;
            families.push(monitor);
            Some(routes)
        }
        None => {
            if let Some(counter) = &kube_connections {
                start_new_connection_reader(config.collect.netns.as_deref(), Arc::clone(counter));
            }
            None
        }
    };
    if let Some(directory) = &config.kube {
        families.push(Arc::new(directory.clone()));
    }
    let limits = config.http.clone();
    let mut api_reads = ApiReadFamilies::default();
    let read_stats = (
        api_reads.add("rules"),
        api_reads.add("trace"),
        api_reads.add("lint"),
    );
    families.push(Arc::new(api_reads));
    let stats = Arc::new(HttpStats::default());
    // Last in the body, as before the families were handed in.
    families.push(Arc::clone(&stats) as SharedFamilies);
    let app = router(
        Arc::new(App::new(config, families, read_stats, kube_connections)),
        &limits,
        &stats,
        flows.is_some(),
    );
    let app = match flows {
        Some(flows) => app.merge(
            FamilyLimit::new(EndpointFamily::Flows, &limits, Arc::clone(&stats)).apply(flows),
        ),
        None => app,
    };
    // Not println!: a closed stdout must not take the server down.
    let _ = writeln!(std::io::stdout(), "listening on http://{addr}");
    tracing::info!(%addr, "listening");
    crate::http::serve(listener, app, limits, stats, shutdown).await?;
    tracing::info!("shut down");
    Ok(())
}

/// Starts the thread that feeds `counter` from a NEW-only conntrack subscription in `netns`
/// (without `--flows`; with it, the flow monitor's reader feeds the counter). A subscription
/// that cannot be opened is logged and leaves `nfscope_kube_conntrack_up` at 0.
fn start_new_connection_reader(netns: Option<&str>, counter: Arc<KubeConnections>) {
    let mut events = match nfscope_kernel::flow::open_new_connections(
        netns,
        Duration::from_millis(500),
    ) {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "conntrack NEW events unavailable: Service connections are not counted");
            return;
        }
    };
    counter.set_up(true);
    let spawned = std::thread::Builder::new()
        .name("nfscope-kube-ct".to_owned())
        .spawn(move || {
            let mut batch = Vec::new();
            loop {
                if let Err(error) = events.recv(|e| batch.push(crate::flow_api::new_connection(&e))) {
                    tracing::warn!(%error, "conntrack NEW events: receive failed");
                    std::thread::sleep(Duration::from_millis(200));
                }
                while batch.len() < 4096
                    && matches!(events.recv_nowait(|e| batch.push(crate::flow_api::new_connection(&e))), Ok(n) if n > 0)
                {}
                let lost = events.take_overruns();
                if !batch.is_empty() || lost > 0 {
                    counter.observe(batch.drain(..), lost);
                }
                // Let a burst gather in the socket buffer (at most 100 wake-ups a second).
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the conntrack NEW-event reader");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

/// The collection defaults `serve` and `rules` start from.
pub fn default_collect_options() -> CollectOptions {
    CollectOptions::default()
}

/// Export options from the command-line flags.
pub fn export_options(
    rule_label: crate::cli::RuleLabelArg,
    max_rule_series: usize,
) -> ExportOptions {
    oneshot::export_options(
        rule_label == crate::cli::RuleLabelArg::Full,
        max_rule_series,
    )
}

/// How long `/api/rules` and `/api/trace` reuse their shared read of the rules by default
/// (`--api-reuse-seconds`); it is dropped after that.
pub const API_REUSE: Duration = Duration::from_secs(5);

/// How long a `/api/rules` or `/api/trace` request waits for that read before 503 (the read
/// keeps running; later requests get its result).
const API_DEADLINE: Duration = Duration::from_secs(30);

struct App {
    flight: SingleFlight<Scrape>,
    encoder: MetricsEncoder,
    deadline: Duration,
    timeouts: AtomicU64,
    /// `/api/rules`' body, built once per read of the full rules and sent as it is to every
    /// request that shares or reuses the read (the scrape path keeps only counters).
    rules_body: SharedRead<Bytes>,
    /// `/api/trace`'s model of the live rules, shared and reused the same way.
    trace_model: SharedRead<TraceModel>,
    /// `/api/lint`'s body: the findings of one read of the full rules, shared the same way.
    lint_body: SharedRead<Bytes>,
}

impl App {
    fn new(
        config: ServeConfig,
        families: Vec<SharedFamilies>,
        (rules_stats, trace_stats, lint_stats): (Arc<ReadStats>, Arc<ReadStats>, Arc<ReadStats>),
        kube_connections: Option<Arc<KubeConnections>>,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let collect = config.collect.clone();
        // The API's reads are for people, not for every scrape: they may take the text read's
        // longer limit, since no request waits for them past API_DEADLINE.
        let mut trace_collect = collect.clone();
        trace_collect.timeout = collect.text_timeout.max(collect.timeout);
        let lint_collect = collect.clone();
        let lint_body = SharedRead::new(
            move || lint_body(&lint_collect),
            config.api_reuse,
            lint_stats,
        );
        let rules_body =
            SharedRead::new(move || rules_body(&collect), config.api_reuse, rules_stats);
        let trace_model = SharedRead::new(
            move || TraceModel::live(trace_collect.clone()),
            config.api_reuse,
            trace_stats,
        );
        let job = nfscope_server::collector(config.collect, Arc::clone(&counters));
        let mut encoder = MetricsEncoder::new(config.export, counters, families);
        if let Some(counter) = kube_connections {
            encoder = encoder.with_kube_connections(counter);
        }
        Self {
            flight: SingleFlight::new(job, config.cache),
            encoder,
            deadline: config.deadline,
            timeouts: AtomicU64::new(0),
            rules_body,
            trace_model,
            lint_body,
        }
    }

    /// The shared collection, or a ready-made error response.
    async fn collection(&self) -> Result<Arc<Finished<Scrape>>, Response> {
        match self.flight.get(self.deadline).await {
            Ok(done) if done.value.is_ok() => {
                tracing::debug!(run = done.run, "serving collection");
                Ok(done)
            }
            Ok(done) => {
                let reason = done.value.as_ref().err().cloned().unwrap_or_default();
                tracing::error!(%reason, "collection failed");
                Err(plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("collection failed: {reason}\n"),
                ))
            }
            Err(timed_out) => Err(self.timed_out(&timed_out)),
        }
    }

    fn timed_out(&self, timed_out: &TimedOut) -> Response {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        let previous = match timed_out.previous_finished {
            Some(finished) => format!(
                "; last completed collection finished {:.1} s ago",
                finished.elapsed().as_secs_f64()
            ),
            None => String::new(),
        };
        tracing::warn!(waited = ?timed_out.waited, "collection exceeded the deadline");
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "collection did not finish within {:.1} s (deadline); it keeps running and later requests \
                 will get its result{previous}\n",
                timed_out.waited.as_secs_f64()
            ),
        )
    }

    fn stats(&self, done: &Finished<Scrape>) -> SelfStats {
        SelfStats {
            collections: self.encoder.counters().collections.load(Ordering::Relaxed),
            deadline_exceeded: self.timeouts.load(Ordering::Relaxed),
            duration: done.finished.saturating_duration_since(done.started),
        }
    }
}

fn router(app: Arc<App>, limits: &HttpLimits, stats: &Arc<HttpStats>, flows: bool) -> Router {
    let index = index_text(flows);
    let limited = |family, routes: Router<Arc<App>>| {
        FamilyLimit::new(family, limits, Arc::clone(stats)).apply(routes)
    };
    Router::new()
        .route(
            "/",
            get(move |headers: axum::http::HeaderMap| async move {
                crate::ui::html_index(&headers, &index).unwrap_or_else(|| index.into_response())
            }),
        )
        .merge(crate::ui::routes())
        .route("/healthz", get(healthz))
        .merge(limited(
            EndpointFamily::Metrics,
            Router::new().route("/metrics", get(metrics)),
        ))
        .merge(limited(
            EndpointFamily::Rules,
            Router::new()
                .route("/api/rules", get(api_rules))
                .route("/api/lint", get(api_lint)),
        ))
        .merge(limited(
            EndpointFamily::Trace,
            Router::new().route("/api/trace", get(api_trace)),
        ))
        .with_state(app)
}

const INDEX: &str = "nfscope exporter\n\n\
/metrics           Prometheus text exposition of rule, chain, ipset and conntrack counters\n\
/healthz           liveness: answers \"ok\" without waiting for a collection\n\
/api/rules         every ruleset as JSON (iptables and native nftables; annotated rules with counters; one shared read, reused --api-reuse-seconds)\n\
/api/trace         which rule decides a packet's fate, e.g. /api/trace?src=10.0.0.1&dst=10.96.0.10&proto=tcp&dport=80\n\
/api/lint          the lint findings of the live rules as JSON (as `nfscope lint --format json`; shares the rules' limit)\n\
/ui/               web console for a browser: rules, traces, the workload graph and failures\n";

/// The index's lines for the flow monitor's routes (`serve --flows`).
const FLOW_INDEX: &str = "/api/flows         live and recent TCP connections as JSON (filters: ip, namespace, name)\n\
/api/failures      failed connection attempts (refused, reset, timeout, unreachable), newest first (filters: ip, namespace, name)\n\
/api/health        the flow monitor's sources: conntrack events, packet capture, accounting\n\
/api/graph/fields  Grafana Node Graph field definitions\n\
/api/graph/data    Grafana Node Graph nodes and edges of the workload pairs\n";

/// The `/` page: every route this server answers.
fn index_text(flows: bool) -> String {
    let mut text = INDEX.to_owned();
    if flows {
        text.push_str(FLOW_INDEX);
    } else {
        text.push_str("(start with --flows for /api/flows, /api/failures, /api/health, /api/graph/fields, /api/graph/data)\n");
    }
    text
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Bytes of exposition per streamed chunk: big enough that per-chunk costs vanish, small enough
/// to stay under glibc's mmap threshold (128 KiB), so chunk buffers come from and go back to the
/// heap instead of being mapped and faulted in each time.
const METRICS_CHUNK_BYTES: usize = 112 * 1024;

/// Chunks queued between the encoder and the connection; with the one being written and the one
/// hyper is sending, a response holds about this many + 2 chunks at a time.
const METRICS_CHUNKS_QUEUED: usize = 4;

type Chunk = Result<String, std::io::Error>;

/// `/metrics`: the encoder runs on the blocking pool and streams the body to the client through a
/// small bounded channel, so at most a few chunks of it exist at a time. It stops when the
/// client goes away (the channel closes). A failure before the first chunk gives 500; one after
/// it aborts the response, so a client never takes a truncated body for a whole one.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let done = match app.collection().await {
        Ok(done) => done,
        Err(response) => return response,
    };
    let stats = app.stats(&done);
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<Chunk>(METRICS_CHUNKS_QUEUED);
    let encoder = {
        let sender = sender.clone();
        tokio::task::spawn_blocking(move || {
            let scrape = done.value.as_ref().expect("checked by collection()");
            encode_metrics_into(scrape, &app, &stats, &sender);
            // The last request served from this collection frees its readings and labels
            // here, after the collector's own trim: without giving those pages back, every
            // idle period between scrapes kept ~12 MiB (72.5k legacy rules) of freed heap.
            if let Some(last) = Arc::into_inner(done) {
                drop(last);
                nfscope_kernel::release_free_memory();
            }
        })
    };
    tokio::spawn(async move {
        if let Err(e) = encoder.await {
            tracing::error!(error = %e, "encoding /metrics failed");
            let _ = sender
                .send(Err(std::io::Error::other(format!("encoding failed: {e}"))))
                .await;
        }
    });
    let first = match chunks.recv().await {
        Some(Ok(first)) => first,
        Some(Err(e)) => {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
        }
        None => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding failed: no output\n".to_owned(),
            );
        }
    };
    let rest = futures::stream::poll_fn(move |cx| chunks.poll_recv(cx));
    let body = futures::StreamExt::chain(futures::stream::once(async { Ok(first) }), rest);
    (
        [(header::CONTENT_TYPE, nfscope_exporter::CONTENT_TYPE)],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Runs the streaming encoder (blocking), sending chunks, then the tail, to `sender`.
fn encode_metrics_into(
    scrape: &Scrape,
    app: &App,
    stats: &SelfStats,
    sender: &tokio::sync::mpsc::Sender<Chunk>,
) {
    let mut sink = |chunk: String| {
        sender
            .blocking_send(Ok(chunk))
            .map_err(|_| nfscope_exporter::SinkClosed)
    };
    match app
        .encoder
        .stream(scrape, stats, METRICS_CHUNK_BYTES, &mut sink)
    {
        Ok(tail) => {
            let _ = sink(tail);
        }
        Err(nfscope_exporter::SinkClosed) => {
            tracing::debug!("client went away during /metrics; encoding stopped");
        }
    }
}

/// `/api/rules`' body from one read of the rules: the JSON document written straight into one
/// buffer (no value tree, no second copy); the rules it was built from are freed before it is
/// served.
fn rules_body(collect: &CollectOptions) -> Result<Bytes, String> {
    let annotated = oneshot::annotate(nfscope_kernel::collect(collect));
    let mut body = Vec::new();
    nfscope_exporter::write_rules_json(&annotated.snapshot, &annotated.annotations, &mut body)
        .map_err(|e| format!("encoding failed: {e:#}"))?;
    drop(annotated);
    nfscope_kernel::release_free_memory();
    Ok(Bytes::from(body))
}

/// `/api/lint`'s body: `nfscope lint --format json` of one read of the live rules (findings
/// cite table, chain and rule position; live rules have no lines).
fn lint_body(collect: &CollectOptions) -> Result<Bytes, String> {
    let snapshot = nfscope_kernel::collect(collect);
    let findings = crate::lint_cmd::lint_snapshot(&snapshot);
    let body = crate::lint_cmd::render(&findings, &snapshot, crate::cli::Format::Json);
    drop(snapshot);
    nfscope_kernel::release_free_memory();
    Ok(Bytes::from(body))
}

/// The live rules' lint findings as JSON, from a read shared and reused like `/api/rules`'.
async fn api_lint(State(app): State<Arc<App>>) -> Response {
    match shared(&app.lint_body, "linting the rules").await {
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/json")],
            axum::body::Body::from(Bytes::clone(&body)),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// The shared result of one of the API's reads, or a ready-made error response.
async fn shared<T: Send + Sync + 'static>(
    read: &SharedRead<T>,
    what: &str,
) -> Result<Arc<T>, Response> {
    match read.get(API_DEADLINE).await {
        Ok(value) => Ok(value),
        Err(ReadFailed::Failed(reason)) => Err(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed: {reason}\n"),
        )),
        Err(ReadFailed::TimedOut(timed_out)) => {
            let mut response = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{what} did not finish within {:.0} s; it keeps running, retry shortly\n",
                    timed_out.waited.as_secs_f64()
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            Err(response)
        }
    }
}

/// The whole parsed ruleset as JSON, from one read of the rules shared by concurrent requests
/// and reused for a few seconds (the scrape path keeps only counters).
async fn api_rules(State(app): State<Arc<App>>) -> Response {
    match shared(&app.rules_body, "reading the rules").await {
        // Every request sends the one shared body: a reference, never a copy.
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/json")],
            axum::body::Body::from(Bytes::clone(&body)),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// A trace against the shared model of the live rules. The query is checked before any work.
async fn api_trace(
    State(app): State<Arc<App>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(message) = checked_params(&params, crate::trace_cmd::API_TRACE_KEYS) {
        return plain(StatusCode::BAD_REQUEST, format!("{message}\n"));
    }
    let model = match shared(&app.trace_model, "reading the rules for the trace").await {
        Ok(model) => model,
        Err(response) => return response,
    };
    let result = tokio::task::spawn_blocking(move || {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        model.answer(&pairs)
    })
    .await;
    match result {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err((status, message))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            plain(status, format!("{message}\n"))
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("trace failed: {e}\n"),
        ),
    }
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_lists_every_route_the_server_answers() {
        let routes = [
            "/metrics",
            "/healthz",
            "/api/rules",
            "/api/trace",
            "/api/lint",
        ];
        let flow_routes = [
            "/api/flows",
            "/api/failures",
            "/api/health",
            "/api/graph/fields",
            "/api/graph/data",
        ];
        let with_flows = index_text(true);
        for route in routes.iter().chain(&flow_routes) {
            assert!(
                with_flows
                    .lines()
                    .any(|l| l.starts_with(&format!("{route} "))),
                "{route}: {with_flows}"
            );
        }
        let without = index_text(false);
        for route in routes {
            assert!(without.lines().any(|l| l.starts_with(&format!("{route} "))));
        }
        for route in flow_routes {
            assert!(
                !without.lines().any(|l| l.starts_with(&format!("{route} "))),
                "{route} is not served without --flows"
            );
        }
    }

    #[test]
    fn serve_help_lists_every_route() {
        use clap::CommandFactory;
        let mut command = crate::cli::Cli::command();
        let serve = command.find_subcommand_mut("serve").expect("serve");
        let help = serve.render_long_help().to_string();
        for route in [
            "/metrics",
            "/healthz",
            "/api/rules",
            "/api/trace",
            "/api/lint",
            "/api/flows",
            "/api/failures",
            "/api/health",
            "/api/graph/fields",
            "/api/graph/data",
        ] {
            assert!(help.contains(route), "{route}: {help}");
        }
    }
}
