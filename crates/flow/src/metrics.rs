//! Prometheus text exposition of the flow metrics and the monitor's self-metrics
//! ([`FlowFamilies`], written through `nfscope-expo`).
//!
//! Labels name workloads, never ports or raw connection ids, so the series count is bounded by
//! the aggregates' pair limit. Times are in seconds. Family headers are written even when a
//! family has no samples yet.

use std::collections::BTreeMap;

use nfscope_expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};

use crate::aggregate::{HANDSHAKE_BUCKETS, PairKey};
use crate::table::{End, FlowTable};

/// What the binary knows about the sources that the table does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// `nf_conntrack_acct`: `Some(true)` on, `Some(false)` off, `None` unknown.
    pub accounting: Option<bool>,
    /// Is the conntrack event subscription running?
    pub conntrack_up: bool,
    /// Is the packet capture running?
    pub capture_up: bool,
}

/// The flow families of one table and its sources.
#[derive(Debug, Clone, Copy)]
pub struct FlowFamilies<'a> {
    /// The connection table.
    pub table: &'a FlowTable,
    /// What the sources are doing.
    pub info: SourceInfo,
}

impl MetricFamilies for FlowFamilies<'_> {
    fn encode(&self, _: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        render_pairs(self.table, out);
        render_open(self.table, out);
        render_failures(self.table, out);
        render_self(self.table, self.info, out);
    }
}

/// Appends the flow families to `out`.
pub fn render(table: &FlowTable, info: SourceInfo, out: &mut String) {
    let mut expo = Exposition::appending_to(std::mem::take(out));
    FlowFamilies { table, info }.encode(&ScrapeFacts::default(), &mut expo);
    *out = expo.into_string();
}

/// The pair labels of `key`.
fn labels(key: &PairKey) -> [(&'static str, &str); 4] {
    [
        ("src_namespace", key.src.namespace.as_deref().unwrap_or("")),
        ("src_workload", &key.src.name),
        ("dst_namespace", key.dst.namespace.as_deref().unwrap_or("")),
        ("dst_workload", &key.dst.name),
    ]
}

/// The pair labels of `key` and one more.
fn labels_and<'a>(
    key: &'a PairKey,
    name: &'static str,
    value: &'a str,
) -> [(&'static str, &'a str); 5] {
    let [a, b, c, d] = labels(key);
    [a, b, c, d, (name, value)]
}

fn render_pairs(table: &FlowTable, out: &mut Exposition<'_>) {
    let pairs: Vec<_> = table.aggregates().pairs().collect();
    let name = "nfscope_tcp_connections_total";
    out.family(
        name,
        Kind::Counter,
        "TCP connections that ended, by client and server workload and how they ended.",
    );
    for (key, stats) in &pairs {
        for end in End::ALL.into_iter().filter(|&e| e != End::Open) {
            let n = stats.ended(end);
            if n > 0 {
                out.sample(name, &labels_and(key, "end", end.label()), n);
            }
        }
    }
    let name = "nfscope_tcp_bytes_total";
    out.family(
        name,
        Kind::Counter,
        "TCP payload bytes of ended connections (IP bytes where sequence numbers were not seen), by direction.",
    );
    for (key, stats) in &pairs {
        out.sample(
            name,
            &labels_and(key, "direction", "client_to_server"),
            stats.bytes_client,
        );
        out.sample(
            name,
            &labels_and(key, "direction", "server_to_client"),
            stats.bytes_server,
        );
    }
    let name = "nfscope_tcp_resets_total";
    out.family(
        name,
        Kind::Counter,
        "TCP connections ended by a reset, by the side that sent it (unknown when only conntrack saw it).",
    );
    for (key, stats) in &pairs {
        for (end, side) in [
            (End::RstClient, "client"),
            (End::RstServer, "server"),
            (End::Rst, "unknown"),
        ] {
            let n = stats.ended(end);
            if n > 0 {
                out.sample(name, &labels_and(key, "side", side), n);
            }
        }
    }
    out.family(
        "nfscope_tcp_handshake_seconds",
        Kind::Histogram,
        "TCP handshake time in seconds: SYN to the final ACK (SYN to SYN/ACK when the ACK was not reported).",
    );
    for (key, stats) in pairs.iter().filter(|(_, s)| s.handshake.count > 0) {
        let mut cumulative = 0;
        let bucket = "nfscope_tcp_handshake_seconds_bucket";
        for (bound, n) in HANDSHAKE_BUCKETS.iter().zip(stats.handshake.buckets) {
            cumulative += n;
            out.sample(
                bucket,
                &labels_and(key, "le", &bound.to_string()),
                cumulative,
            );
        }
        let h = &stats.handshake;
        out.sample(bucket, &labels_and(key, "le", "+Inf"), h.count);
        out.sample("nfscope_tcp_handshake_seconds_sum", &labels(key), h.sum);
        out.sample("nfscope_tcp_handshake_seconds_count", &labels(key), h.count);
    }
}

fn render_open(table: &FlowTable, out: &mut Exposition<'_>) {
    let names = table.names();
    let mut open: BTreeMap<PairKey, u64> = BTreeMap::new();
    for conn in table.live() {
        *open.entry(PairKey::of(conn, names)).or_default() += 1;
    }
    let name = "nfscope_tcp_connections_open";
    out.family(
        name,
        Kind::Gauge,
        "TCP connections open now, by client and server workload.",
    );
    let limit = table.config().max_pairs;
    let mut other = 0;
    for (i, (key, n)) in open.iter().enumerate() {
        if i < limit {
            out.sample(name, &labels(key), *n);
        } else {
            other += n;
        }
    }
    if other > 0 {
        let labels = [
            ("src_namespace", ""),
            ("src_workload", "other"),
            ("dst_namespace", ""),
            ("dst_workload", "other"),
        ];
        out.sample(name, &labels, other);
    }
}

/// `nfscope_connection_failures_total` (series bounded by the pair limit, overflow counted) and
/// the failure table's own counters.
fn render_failures(table: &FlowTable, out: &mut Exposition<'_>) {
    let failures = table.failures();
    let name = "nfscope_connection_failures_total";
    out.family(
        name,
        Kind::Counter,
        "Failed connection attempts (refused, reset, timeout, unreachable) by client and server workload and cause (policy, Service or rule kind; unexplained when nothing explained it).",
    );
    for (key, n) in failures.series() {
        let [a, b, c, d] = labels(&key.pair);
        out.sample(
            name,
            &[
                ("reason", key.reason.label()),
                a,
                b,
                c,
                d,
                ("cause", &key.cause),
            ],
            n,
        );
    }
    let s = failures.stats();
    let rows: [(&str, Kind, &str, u64); 4] = [
        (
            "nfscope_flow_failure_groups",
            Kind::Gauge,
            "Failure groups (client, dialled address, protocol, reason) held now (at most --max-failures).",
            s.groups,
        ),
        (
            "nfscope_flow_failure_evictions_total",
            Kind::Counter,
            "Failure groups evicted because the failure table was full.",
            s.evictions,
        ),
        (
            "nfscope_flow_failure_series_overflow_total",
            Kind::Counter,
            "Failed attempts counted under other/other because the failure series limit was reached.",
            s.series_overflow,
        ),
        (
            "nfscope_flow_failures_dropped_total",
            Kind::Counter,
            "Failed attempts dropped before they were recorded (the detection queue was full).",
            s.dropped,
        ),
    ];
    for (name, kind, help, value) in rows {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
}

fn render_self(table: &FlowTable, info: SourceInfo, out: &mut Exposition<'_>) {
    let s = table.stats();
    let rows: [(&str, Kind, &str, u64); 11] = [
        (
            "nfscope_flow_connections_live",
            Kind::Gauge,
            "Connections in the flow table now.",
            s.live,
        ),
        (
            "nfscope_flow_table_capacity",
            Kind::Gauge,
            "Live connections the flow table holds at most.",
            table.config().max_live as u64,
        ),
        (
            "nfscope_flow_table_evictions_total",
            Kind::Counter,
            "Live connections evicted because the flow table was full.",
            s.evictions,
        ),
        (
            "nfscope_flow_connections_seen_total",
            Kind::Counter,
            "Connections the flow table created.",
            s.connections_seen,
        ),
        (
            "nfscope_flow_conntrack_events_total",
            Kind::Counter,
            "Conntrack events received.",
            s.ct_events,
        ),
        (
            "nfscope_flow_conntrack_events_lost_total",
            Kind::Counter,
            "Times the kernel dropped conntrack events because the socket buffer was full (ENOBUFS; one or more events each).",
            s.ct_events_lost,
        ),
        (
            "nfscope_flow_capture_packets_total",
            Kind::Counter,
            "TCP control packets the capture ring received (PACKET_STATISTICS).",
            s.capture_packets,
        ),
        (
            "nfscope_flow_capture_drops_total",
            Kind::Counter,
            "TCP control packets the capture ring dropped (PACKET_STATISTICS).",
            s.capture_drops,
        ),
        (
            "nfscope_flow_packets_unmatched_total",
            Kind::Counter,
            "Captured packets that belonged to no known connection.",
            s.packets_unmatched,
        ),
        (
            "nfscope_flow_pairs_overflow_total",
            Kind::Counter,
            "Observations counted under other/other because the workload pair limit was reached.",
            table.aggregates().overflowed,
        ),
        (
            "nfscope_flow_sources_up",
            Kind::Gauge,
            "Flow sources running: 2 = conntrack events and capture, 1 = one of them, 0 = none.",
            u64::from(info.conntrack_up) + u64::from(info.capture_up),
        ),
    ];
    for (name, kind, help, value) in rows {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
    let name = "nfscope_conntrack_accounting_enabled";
    out.family(
        name,
        Kind::Gauge,
        "1 when nf_conntrack_acct is on (conntrack counts bytes per connection), 0 when off; absent when unknown. nfscope never turns it on.",
    );
    if let Some(on) = info.accounting {
        out.sample(name, &[], on);
    }
}
