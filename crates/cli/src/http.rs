//! The HTTP listener in front of the axum router: bounded connections and bounded requests.
//!
//! Owns the accept loop, the per-connection hyper driver and the limits a hostile or broken
//! client runs into: a cap on open connections below the process's descriptor limit (the oldest
//! idle keep-alive connection is closed to admit a new one; past the cap a small overflow
//! reserve still answers `/healthz` and gives everything else 503), a header read timeout
//! (slowloris, silent and idle keep-alive connections), and a concurrency limit per endpoint
//! family answered with 503 + `Retry-After`. Every rejection and forced close is counted in
//! [`HttpStats`], which `/metrics` publishes. It does not own the routes nor what they serve.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use nfscope_server::http_stats::{CloseReason, EndpointFamily, HttpStats};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

/// Descriptors kept free for everything that is not a client connection (sockets to the
/// kernel, forked tools' pipes, files, the overflow reserve).
const DESCRIPTORS_RESERVED: u64 = 96;

/// Connections past the cap that are still read to answer `/healthz` (and 503 to the rest).
const OVERFLOW_RESERVE: usize = 32;

/// How long an overflow connection may take to send its request line.
const OVERFLOW_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long shutdown waits for connections with requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The limits the listener enforces.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open client connections at most (lowered to fit the descriptor limit, see [`Self::fit`]).
    pub max_connections: usize,
    /// A request's headers must arrive within this time, counted from the connection's start or
    /// the end of the previous response: it also closes silent and idle keep-alive connections.
    pub header_timeout: Duration,
    /// Requests served at once per endpoint family; more get 503 + `Retry-After`.
    pub per_family: [usize; 4],
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            // metrics, rules, trace, flows. /api/rules and /api/trace answer from one shared read
            // (the rules body is written once and shared; a trace costs milliseconds on the shared
            // model), so 20 concurrent callers cost little more than one; flows still copy the
            // connection records per request.
            per_family: [16, 32, 32, 4],
        }
    }
}

impl HttpLimits {
    /// Lowers `max_connections` so that connections, the overflow reserve and the descriptors
    /// the rest of the process needs fit under `descriptor_limit` (the soft `RLIMIT_NOFILE`).
    pub fn fit(mut self, descriptor_limit: Option<u64>) -> Self {
        if let Some(limit) = descriptor_limit {
            let usable = limit.saturating_sub(DESCRIPTORS_RESERVED + OVERFLOW_RESERVE as u64);
            let usable = usize::try_from(usable).unwrap_or(usize::MAX).max(1);
            self.max_connections = self.max_connections.min(usable);
        }
        self
    }

    /// The limit of one endpoint family.
    pub fn family_limit(&self, family: EndpointFamily) -> usize {
        self.per_family[family.index()]
    }
}

/// The soft descriptor limit of this process, from `/proc/self/limits`.
pub fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&text)
}

/// The soft "Max open files" value of a `/proc/PID/limits` text (`None` when unlimited or absent).
fn parse_open_files_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One endpoint family's concurrency limit, as axum middleware state.
#[derive(Clone)]
pub struct FamilyLimit {
    family: EndpointFamily,
    permits: Arc<Semaphore>,
    stats: Arc<HttpStats>,
}

impl FamilyLimit {
    /// The limit for `family` under `limits`, counting rejections in `stats`.
    pub fn new(family: EndpointFamily, limits: &HttpLimits, stats: Arc<HttpStats>) -> Self {
        Self {
            family,
            permits: Arc::new(Semaphore::new(limits.family_limit(family).max(1))),
            stats,
        }
    }

    /// Wraps `router`'s routes in this limit.
    pub fn apply<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self, limit_family))
    }
}

/// Middleware: serve the request while a permit of its family is free, else 503 + Retry-After.
/// The permit is held until the handler has produced its response (a streamed body is bounded by
/// its own channel).
async fn limit_family(State(limit): State<FamilyLimit>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limit.permits.clone().try_acquire_owned() else {
        limit.stats.count_busy(limit.family);
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "too many concurrent {} requests; retry shortly\n",
                limit.family.label()
            ),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}

/// What one open connection shares with the accept loop.
#[derive(Debug)]
struct ConnState {
    /// Requests being handled on this connection.
    in_flight: AtomicUsize,
    /// Milliseconds since the listener started at the last byte read or written.
    last_active_ms: AtomicU64,
    /// Asks the connection to close (eviction, shutdown).
    close: Notify,
}

/// The open connections, for the cap and eviction.
#[derive(Debug)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    overflow: AtomicUsize,
    started: Instant,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection if there is room, evicting the longest-idle one at the cap.
    /// `None` when every connection is busy.
    fn admit(&self, max: usize, stats: &HttpStats) -> Option<(u64, Arc<ConnState>)> {
        let mut conns = self.lock();
        if conns.len() >= max && !evict_longest_idle(&mut conns, stats) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        conns.insert(id, Arc::clone(&state));
        Some((id, state))
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the longest-idle connection (to free a descriptor after an accept error).
    fn evict_one_idle(&self, stats: &HttpStats) {
        evict_longest_idle(&mut self.lock(), stats);
    }

    fn close_all(&self) {
        for conn in self.lock().values() {
            conn.close.notify_one();
        }
    }
}

/// Asks the connection with no request in flight that was active longest ago to close, and
/// forgets it. False when every connection is busy.
fn evict_longest_idle(conns: &mut HashMap<u64, Arc<ConnState>>, stats: &HttpStats) -> bool {
    let idle = conns
        .iter()
        .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
        .min_by_key(|(_, c)| c.last_active_ms.load(Ordering::Relaxed))
        .map(|(id, _)| *id);
    let Some(victim) = idle.and_then(|id| conns.remove(&id)) else {
        return false;
    };
    victim.close.notify_one();
    stats.count_close(CloseReason::Evicted);
    true
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stats: Arc<HttpStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = limits.fit(descriptor_limit());
    stats.set_limit(limits.max_connections as u64);
    let registry = Arc::new(Registry {
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        overflow: AtomicUsize::new(0),
        started: Instant::now(),
    });
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                stats.count_close(CloseReason::AcceptError);
                tracing::warn!(%error, "accept failed; closing the longest-idle connection");
                registry.evict_one_idle(&stats);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        stats.count_accepted();
        match registry.admit(limits.max_connections, &stats) {
            Some((id, state)) => {
                stats.connection_opened();
                let conn = Connection {
                    id,
                    state,
                    registry: Arc::clone(&registry),
                    stats: Arc::clone(&stats),
                    limits: limits.clone(),
                };
                tokio::spawn(conn.run(stream, app.clone()));
            }
            None => overflow(stream, &registry, &stats),
        }
    }
    registry.close_all();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !registry.lock().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A connection past the cap: answered from the overflow reserve, or closed at once.
fn overflow(stream: TcpStream, registry: &Arc<Registry>, stats: &Arc<HttpStats>) {
    if registry.overflow.fetch_add(1, Ordering::AcqRel) >= OVERFLOW_RESERVE {
        registry.overflow.fetch_sub(1, Ordering::AcqRel);
        stats.count_close(CloseReason::OverCapacity);
        drop(stream);
        return;
    }
    stats.count_close(CloseReason::Overflow);
    let registry = Arc::clone(registry);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(OVERFLOW_READ_TIMEOUT, answer_overflow(stream)).await;
        registry.overflow.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Reads a request line: `GET /healthz` gets `ok`, anything else 503; then closes.
async fn answer_overflow(mut stream: TcpStream) {
    let mut buf = [0u8; 512];
    let mut filled = 0;
    while filled < buf.len() && !buf[..filled].contains(&b'\n') {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    }
    let response: &[u8] = if buf[..filled].starts_with(b"GET /healthz ") {
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
    } else {
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\ncontent-length: 29\r\nconnection: close\r\n\r\ntoo many connections; retry\n\n"
    };
    let _ = stream.write_all(response).await;
    let _ = stream.shutdown().await;
}

/// One admitted connection.
struct Connection {
    id: u64,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    stats: Arc<HttpStats>,
    limits: HttpLimits,
}

impl Connection {
    async fn run(self, stream: TcpStream, app: Router) {
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let service = counting_service(app, Arc::clone(&self.state), Arc::clone(&self.registry));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = self.state.close.notified() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            if error.is_timeout() {
                self.stats.count_close(CloseReason::HeaderTimeout);
            } else {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        self.registry.remove(self.id);
        self.stats.connection_closed();
    }
}

/// The router as a hyper service that counts requests in flight on its connection.
fn counting_service(
    app: Router,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let state = Arc::clone(&state);
        let registry = Arc::clone(&registry);
        async move {
            state.in_flight.fetch_add(1, Ordering::Relaxed);
            let response = tower::ServiceExt::oneshot(app, request.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            state
                .last_active_ms
                .store(registry.now_ms(), Ordering::Relaxed);
            state.in_flight.fetch_sub(1, Ordering::Relaxed);
            Ok::<_, Infallible>(response)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
    }

    #[test]
    fn the_cap_fits_under_the_descriptor_limit() {
        let limits = HttpLimits::default().fit(Some(1024));
        assert!(limits.max_connections + OVERFLOW_RESERVE < 1024);
        assert_eq!(limits.max_connections, 512, "512 fits under 1024");
        let tight = HttpLimits::default().fit(Some(256));
        assert_eq!(tight.max_connections, 256 - 96 - 32);
        assert_eq!(HttpLimits::default().fit(None).max_connections, 512);
    }

    #[test]
    fn admission_evicts_the_longest_idle_connection_and_refuses_when_all_are_busy() {
        let registry = Registry {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            overflow: AtomicUsize::new(0),
            started: Instant::now(),
        };
        let stats = HttpStats::default();
        let (a, state_a) = registry.admit(2, &stats).expect("room");
        let (_b, state_b) = registry.admit(2, &stats).expect("room");
        state_a.last_active_ms.store(5, Ordering::Relaxed);
        state_b.last_active_ms.store(10, Ordering::Relaxed);
        let (_c, state_c) = registry.admit(2, &stats).expect("evicts a");
        assert!(
            !registry.lock().contains_key(&a),
            "the oldest idle one goes"
        );
        assert_eq!(stats.closed(CloseReason::Evicted), 1);
        state_b.in_flight.store(1, Ordering::Relaxed);
        state_c.in_flight.store(1, Ordering::Relaxed);
        assert!(registry.admit(2, &stats).is_none(), "all busy: refused");
        let mut text = String::new();
        stats.render(&mut text);
        assert!(text.contains("nfscope_http_connections_closed_total{reason=\"evicted\"} 1\n"));
    }
}
