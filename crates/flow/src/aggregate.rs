//! Totals per (source workload, destination workload) pair, with bounded cardinality.
//!
//! A connection is counted when it closes (how it ended, bytes each way) and its handshake time
//! when it is known. The destination is the pod that served the connection (the DNAT target),
//! not the Service VIP. Beyond `max_pairs` distinct pairs, new pairs are counted under
//! `other → other` so the metric series stay bounded.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::names::{Name, Names};
use crate::table::{Conn, End};

/// Upper bounds (seconds) of the handshake histogram.
pub const HANDSHAKE_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0,
];

/// Source and destination workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PairKey {
    /// Client side.
    pub src: Name,
    /// The server that answered.
    pub dst: Name,
}

impl PairKey {
    /// The key a connection counts under.
    pub fn of(conn: &Conn, names: &Names) -> Self {
        Self {
            src: names.name_or_ip(conn.orig.src),
            dst: names.name_or_ip(conn.server().dst),
        }
    }

    fn other() -> Self {
        let other = Name {
            namespace: None,
            name: "other".to_owned(),
        };
        Self {
            src: other.clone(),
            dst: other,
        }
    }
}

/// A cumulative histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Observations at or below each bound of [`HANDSHAKE_BUCKETS`] (not cumulative).
    pub buckets: [u64; HANDSHAKE_BUCKETS.len()],
    /// All observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        if let Some(i) = HANDSHAKE_BUCKETS.iter().position(|&b| value <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }
}

/// Totals of one pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PairStats {
    /// Closed connections by [`End`] (index as in [`End::ALL`]).
    pub connections: [u64; End::ALL.len()],
    /// Bytes client → server of closed connections (payload, or IP bytes without sequence data).
    pub bytes_client: u64,
    /// Bytes server → client.
    pub bytes_server: u64,
    /// Handshake times.
    pub handshake: Histogram,
    /// Of the closed connections by [`End`], the failed attempts (see [`crate::failure`]).
    pub failed: [u64; End::ALL.len()],
}

impl PairStats {
    /// Closed connections that ended as `end`.
    pub fn ended(&self, end: End) -> u64 {
        End::ALL
            .iter()
            .position(|&e| e == end)
            .map_or(0, |i| self.connections[i])
    }

    /// Closed connections that ended as `end` and were failed attempts.
    pub fn failed_ended(&self, end: End) -> u64 {
        End::ALL
            .iter()
            .position(|&e| e == end)
            .map_or(0, |i| self.failed[i])
    }

    /// All closed connections.
    pub fn closed(&self) -> u64 {
        self.connections.iter().sum()
    }
}

/// All pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    max_pairs: usize,
    pairs: BTreeMap<PairKey, PairStats>,
    /// Observations that went to `other → other` because `max_pairs` was reached.
    pub overflowed: u64,
}

impl Aggregates {
    /// Empty, keeping at most `max_pairs` pairs (plus `other → other`).
    pub fn new(max_pairs: usize) -> Self {
        Self {
            max_pairs,
            ..Self::default()
        }
    }

    /// Counts a closed connection.
    pub fn record_close(&mut self, conn: &Conn, names: &Names) {
        let stats = self.entry(PairKey::of(conn, names));
        let i = End::ALL.iter().position(|&e| e == conn.end).unwrap_or(0);
        stats.connections[i] += 1;
        if conn.failure.is_some() {
            stats.failed[i] += 1;
        }
        stats.bytes_client += conn.bytes_client().unwrap_or(0);
        stats.bytes_server += conn.bytes_server().unwrap_or(0);
    }

    /// Observes a connection's handshake time.
    pub fn record_handshake(&mut self, conn: &Conn, names: &Names) {
        if let Some(handshake) = conn.handshake() {
            let key = PairKey::of(conn, names);
            self.entry(key).handshake.observe(handshake.as_secs_f64());
        }
    }

    /// Every pair, sorted.
    pub fn pairs(&self) -> impl Iterator<Item = (&PairKey, &PairStats)> {
        self.pairs.iter()
    }

    fn entry(&mut self, key: PairKey) -> &mut PairStats {
        if !self.pairs.contains_key(&key) && self.pairs.len() >= self.max_pairs {
            self.overflowed += 1;
            return self.pairs.entry(PairKey::other()).or_default();
        }
        self.pairs.entry(key).or_default()
    }
}
