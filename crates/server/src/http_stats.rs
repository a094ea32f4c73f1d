//! The HTTP listener's counters: connections open, the cap, and every connection or request the
//! listener refused or closed, as the `nfscope_http_*` families.
//!
//! Owns the counters and their encoding; the accept loop and the limits themselves live with the
//! HTTP routes in the binary, which counts here.

use std::sync::atomic::{AtomicU64, Ordering};

use nfscope_expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};

/// Endpoint families with their own concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointFamily {
    /// `/metrics`.
    Metrics,
    /// `/api/rules`.
    Rules,
    /// `/api/trace`.
    Trace,
    /// `/api/flows`, `/api/graph/*`.
    Flows,
}

impl EndpointFamily {
    /// Every family, in label order.
    pub const ALL: [Self; 4] = [Self::Metrics, Self::Rules, Self::Trace, Self::Flows];

    /// The `endpoint` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Metrics => "metrics",
            Self::Rules => "rules",
            Self::Trace => "trace",
            Self::Flows => "flows",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a connection was closed by the server, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Headers did not arrive within `header_timeout` (slow, silent or idle keep-alive clients).
    HeaderTimeout,
    /// Closed to make room for a new connection at the cap.
    Evicted,
    /// Past the cap and the overflow reserve: closed at once.
    OverCapacity,
    /// Past the cap: served from the overflow reserve (`/healthz` or 503).
    Overflow,
    /// `accept` failed (e.g. out of descriptors).
    AcceptError,
}

impl CloseReason {
    const ALL: [Self; 5] = [
        Self::HeaderTimeout,
        Self::Evicted,
        Self::OverCapacity,
        Self::Overflow,
        Self::AcceptError,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::Evicted => "evicted",
            Self::OverCapacity => "over_capacity",
            Self::Overflow => "overflow",
            Self::AcceptError => "accept_error",
        }
    }
}

/// The listener's counters, published in `/metrics`.
#[derive(Debug, Default)]
pub struct HttpStats {
    open: AtomicU64,
    limit: AtomicU64,
    accepted: AtomicU64,
    closed: [AtomicU64; 5],
    busy: [AtomicU64; 4],
}

impl HttpStats {
    /// Counts a connection closed or refused for `reason`.
    pub fn count_close(&self, reason: CloseReason) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted connection.
    pub fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was admitted (`+1`) or ended (`-1`).
    pub fn connection_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// An admitted connection ended.
    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The connection cap in force.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Counts a request refused because `family` was at its limit.
    pub fn count_busy(&self, family: EndpointFamily) {
        self.busy[family.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed or refused for `reason` so far.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[i].load(Ordering::Relaxed)
    }

    /// The `nfscope_http_*` families in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut expo = Exposition::appending_to(std::mem::take(out));
        self.encode(&ScrapeFacts::default(), &mut expo);
        *out = expo.into_string();
    }
}

impl MetricFamilies for HttpStats {
    /// The `nfscope_http_*` families.
    fn encode(&self, _: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, kind, help, value) in [
            (
                "nfscope_http_connections_open",
                Kind::Gauge,
                "Client connections open now.",
                load(&self.open),
            ),
            (
                "nfscope_http_connections_limit",
                Kind::Gauge,
                "Client connections served at most (fitted under the descriptor limit).",
                load(&self.limit),
            ),
            (
                "nfscope_http_connections_accepted_total",
                Kind::Counter,
                "Client connections accepted.",
                load(&self.accepted),
            ),
        ] {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
        let name = "nfscope_http_connections_closed_total";
        out.family(
            name,
            Kind::Counter,
            "Connections the server closed or refused, by reason.",
        );
        for (reason, count) in CloseReason::ALL.iter().zip(&self.closed) {
            out.sample(name, &[("reason", reason.label())], load(count));
        }
        let name = "nfscope_http_requests_rejected_total";
        out.family(
            name,
            Kind::Counter,
            "Requests answered 503 because their endpoint family was at its concurrency limit.",
        );
        for (family, count) in EndpointFamily::ALL.iter().zip(&self.busy) {
            out.sample(name, &[("endpoint", family.label())], load(count));
        }
    }
}
