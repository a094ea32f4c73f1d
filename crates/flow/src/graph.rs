//! The Grafana Node Graph API documents (`/api/graph/fields`, `/api/graph/data`).
//!
//! Contract (PEERS.md Part 2 §2, the `hamedkarbasi93-nodegraphapi-datasource` plugin): fields
//! lists `nodes_fields` / `edges_fields` with `field_name` and `type` (`string` | `number`),
//! `id` required on nodes, `id`, `source`, `target` on edges; node `arc__*` values add up to 1.
//! Nodes are workloads (bounded by the aggregates' pair limit), edges are client → server pairs,
//! counting closed connections plus the open ones. Failed attempts (see [`crate::failure`]) count
//! once, as failures: the edge's `detail__failures` and its colour (red), the nodes' `arc__failed`,
//! and the latest explanation in the edge's detail.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::aggregate::PairKey;
use crate::failure::FailureReason;
use crate::names::Name;
use crate::table::{End, FlowTable};

/// Query parameters of both endpoints (the panel sends the same query string to each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphQuery {
    /// Keep edges whose source or target is in this namespace.
    pub namespace: Option<String>,
    /// Keep edges where either end's name contains this text.
    pub include: Option<String>,
    /// Drop edges where either end's name contains this text.
    pub exclude: Option<String>,
    /// `bytes` puts bytes in the main stat; anything else (`connection`) connection counts.
    pub stats_type: Option<String>,
}

impl GraphQuery {
    /// The query keys both endpoints understand.
    /// (`from` and `to`, the dashboard's time range, are accepted and ignored: the graph is of
    /// the connections held now.)
    pub const KEYS: &[&str] = &[
        "namespace",
        "include",
        "exclude",
        "stats-type",
        "stats_type",
        "from",
        "to",
    ];

    /// From query parameters; empty values and Grafana's "all" values (`.*`, `All`, `$__all`) mean
    /// no filter. Matching is plain text, never a regular expression. Keys other than [`Self::KEYS`]
    /// are ignored here (the HTTP layer refuses them); a `stats-type` other than `connection` or
    /// `bytes` is an error (HTTP 400), so a typo never silently changes the graph.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut query = Self::default();
        for (key, value) in params {
            let value = value.trim();
            if value.is_empty() || matches!(value, ".*" | "All" | "$__all" | "*") {
                continue;
            }
            let slot = match key {
                "namespace" => &mut query.namespace,
                "include" => &mut query.include,
                "exclude" => &mut query.exclude,
                "stats-type" | "stats_type" => {
                    if !matches!(value, "connection" | "connections" | "bytes") {
                        return Err(format!("{key}={value:?}: expected connection or bytes"));
                    }
                    &mut query.stats_type
                }
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        Ok(query)
    }

    fn keeps(&self, key: &PairKey) -> bool {
        let in_ns = |n: &Name| n.namespace.as_deref() == self.namespace.as_deref();
        let contains =
            |text: &str| key.src.display().contains(text) || key.dst.display().contains(text);
        self.namespace
            .as_ref()
            .is_none_or(|_| in_ns(&key.src) || in_ns(&key.dst))
            && self.include.as_deref().is_none_or(contains)
            && !self.exclude.as_deref().is_some_and(contains)
    }

    fn bytes_mode(&self) -> bool {
        self.stats_type.as_deref() == Some("bytes")
    }
}

/// `/api/graph/fields`.
pub fn fields(query: &GraphQuery) -> Value {
    let (main, secondary) = if query.bytes_mode() {
        ("Bytes", "Connections")
    } else {
        ("Connections", "Bytes")
    };
    json!({
        "nodes_fields": [
            {"field_name": "id", "type": "string"},
            {"field_name": "title", "type": "string"},
            {"field_name": "subTitle", "type": "string"},
            {"field_name": "mainStat", "type": "string", "displayName": main},
            {"field_name": "secondaryStat", "type": "string", "displayName": secondary},
            {"field_name": "arc__ok", "type": "number", "color": "green", "displayName": "Open or closed with FIN"},
            {"field_name": "arc__reset", "type": "number", "color": "red", "displayName": "Reset"},
            {"field_name": "arc__timeout", "type": "number", "color": "orange", "displayName": "Timed out"},
            {"field_name": "arc__failed", "type": "number", "color": "red", "displayName": "Failed attempts (refused, reset, timeout, unreachable)"},
            {"field_name": "detail__namespace", "type": "string", "displayName": "Namespace"},
        ],
        "edges_fields": [
            {"field_name": "id", "type": "string"},
            {"field_name": "source", "type": "string"},
            {"field_name": "target", "type": "string"},
            {"field_name": "mainStat", "type": "string", "displayName": main},
            {"field_name": "secondaryStat", "type": "string", "displayName": secondary},
            {"field_name": "detail__resets", "type": "number", "displayName": "Resets"},
            {"field_name": "detail__handshake_avg_seconds", "type": "number", "displayName": "Average handshake (s)"},
            {"field_name": "detail__failures", "type": "number", "displayName": "Failed attempts"},
            {"field_name": "detail__failure", "type": "string", "displayName": "Latest failure"},
            {"field_name": "color", "type": "string"},
        ],
    })
}

#[derive(Debug, Default, Clone)]
struct Tally {
    ok: u64,
    reset: u64,
    timeout: u64,
    failed: u64,
    /// The latest failure's explanation (or reason), with its time.
    failure: Option<(crate::Time, String)>,
    bytes: u64,
    handshake_sum: f64,
    handshake_count: u64,
}

impl Tally {
    fn connections(&self) -> u64 {
        self.ok + self.reset + self.timeout + self.failed
    }

    fn add(&mut self, other: &Self) {
        self.ok += other.ok;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.failed += other.failed;
        self.bytes += other.bytes;
        self.handshake_sum += other.handshake_sum;
        self.handshake_count += other.handshake_count;
    }

    /// (ok, reset, timeout, failed) fractions adding up to exactly 1.
    fn arcs(&self) -> (f64, f64, f64, f64) {
        let total = self.connections();
        if total == 0 {
            return (1.0, 0.0, 0.0, 0.0);
        }
        let reset = self.reset as f64 / total as f64;
        let timeout = self.timeout as f64 / total as f64;
        let failed = self.failed as f64 / total as f64;
        (
            (1.0 - reset - timeout - failed).max(0.0),
            reset,
            timeout,
            failed,
        )
    }
}

/// Edge tallies: closed connections from the aggregates plus the open ones.
fn edges(table: &FlowTable, query: &GraphQuery) -> BTreeMap<PairKey, Tally> {
    let mut edges: BTreeMap<PairKey, Tally> = BTreeMap::new();
    for (key, stats) in table.aggregates().pairs().filter(|(k, _)| query.keeps(k)) {
        let tally = edges.entry(key.clone()).or_default();
        // Failed attempts count once, as failures (from the failure table, below).
        let good = |end| stats.ended(end) - stats.failed_ended(end);
        tally.ok += good(End::Fin);
        tally.reset += good(End::RstClient) + good(End::RstServer) + good(End::Rst);
        tally.timeout += good(End::Timeout);
        tally.bytes += stats.bytes_client + stats.bytes_server;
        tally.handshake_sum += stats.handshake.sum;
        tally.handshake_count += stats.handshake.count;
    }
    for conn in table.live() {
        let key = PairKey::of(conn, table.names());
        if query.keeps(&key) {
            edges.entry(key).or_default().ok += 1;
        }
    }
    let failures = table.failures();
    for (key, n) in failures.per_pair() {
        if query.keeps(key) {
            edges.entry(key.clone()).or_default().failed += n;
        }
    }
    let names = table.names();
    for group in failures.groups_newest_first() {
        let server = group.server.unwrap_or(group.key.dialled);
        let key = PairKey {
            src: names.name_or_ip(group.key.client),
            dst: names.name_or_ip(server.ip()),
        };
        let Some(tally) = edges.get_mut(&key) else {
            continue;
        };
        if tally.failure.is_none() {
            let text = group.explanation.as_ref().map_or_else(
                || failure_text(group.key.reason, group.key.dialled),
                |e| e.explanation.clone(),
            );
            tally.failure = Some((group.last, text));
        }
    }
    edges
}

/// A failure nothing explained, in words.
fn failure_text(reason: FailureReason, dialled: std::net::SocketAddr) -> String {
    format!("{} to {dialled} (unexplained)", reason.label())
}

fn stats_text(tally: &Tally, bytes_mode: bool) -> (String, String) {
    let conns = format!("{} conns", tally.connections());
    let bytes = format!("{} B", tally.bytes);
    if bytes_mode {
        (bytes, conns)
    } else {
        (conns, bytes)
    }
}

/// `/api/graph/data`.
pub fn data(table: &FlowTable, query: &GraphQuery) -> Value {
    let edges = edges(table, query);
    let mut nodes: BTreeMap<Name, Tally> = BTreeMap::new();
    for (key, tally) in &edges {
        nodes.entry(key.src.clone()).or_default().add(tally);
        if key.dst != key.src {
            nodes.entry(key.dst.clone()).or_default().add(tally);
        }
    }
    let bytes_mode = query.bytes_mode();
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|(name, tally)| {
            let (main, secondary) = stats_text(tally, bytes_mode);
            let (ok, reset, timeout, failed) = tally.arcs();
            json!({
                "id": name.display(),
                "title": name.name,
                "subTitle": name.namespace.as_deref().unwrap_or(""),
                "mainStat": main,
                "secondaryStat": secondary,
                "arc__ok": ok,
                "arc__reset": reset,
                "arc__timeout": timeout,
                "arc__failed": failed,
                "detail__namespace": name.namespace.as_deref().unwrap_or(""),
            })
        })
        .collect();
    let edges: Vec<Value> = edges
        .iter()
        .map(|(key, tally)| {
            let (main, secondary) = stats_text(tally, bytes_mode);
            let handshake = if tally.handshake_count > 0 {
                tally.handshake_sum / tally.handshake_count as f64
            } else {
                0.0
            };
            let (src, dst) = (key.src.display(), key.dst.display());
            json!({
                "id": format!("{src}->{dst}"),
                "source": src,
                "target": dst,
                "mainStat": main,
                "secondaryStat": secondary,
                "detail__resets": tally.reset,
                "detail__handshake_avg_seconds": handshake,
                "detail__failures": tally.failed,
                "detail__failure": tally.failure.as_ref().map_or("", |(_, text)| text.as_str()),
                "color": if tally.failed > 0 { Value::from("red") } else { Value::Null },
            })
        })
        .collect();
    json!({ "nodes": nodes, "edges": edges })
}

#[cfg(test)]
mod query_tests {
    use super::GraphQuery;

    #[test]
    fn stats_type_must_be_connection_or_bytes() {
        let bytes = GraphQuery::from_params([("stats-type", "bytes")]).expect("bytes");
        assert!(bytes.bytes_mode());
        assert!(GraphQuery::from_params([("stats-type", "connection")]).is_ok());
        let error = GraphQuery::from_params([("stats-type", "bogus")]).unwrap_err();
        assert!(error.contains("expected connection or bytes"), "{error}");
        // Grafana's "all" values still mean no choice.
        assert!(GraphQuery::from_params([("stats-type", "$__all")]).is_ok());
    }
}
