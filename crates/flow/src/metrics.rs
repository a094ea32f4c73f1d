//! Prometheus text exposition of the flow metrics and the monitor's self-metrics.
//!
//! Labels name workloads, never ports or raw connection ids, so the series count is bounded by
//! the aggregates' pair limit. Times are in seconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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

/// Appends the flow families to `out`.
pub fn render(table: &FlowTable, info: SourceInfo, out: &mut String) {
    render_pairs(table, out);
    render_open(table, out);
    render_self(table, info, out);
}

fn labels(key: &PairKey) -> String {
    format!(
        "src_namespace=\"{}\",src_workload=\"{}\",dst_namespace=\"{}\",dst_workload=\"{}\"",
        escape(key.src.namespace.as_deref().unwrap_or("")),
        escape(&key.src.name),
        escape(key.dst.namespace.as_deref().unwrap_or("")),
        escape(&key.dst.name),
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn render_pairs(table: &FlowTable, out: &mut String) {
    let pairs: Vec<_> = table.aggregates().pairs().collect();
    header(
        out,
        "nfscope_tcp_connections_total",
        "counter",
        "TCP connections that ended, by client and server workload and how they ended.",
    );
    for (key, stats) in &pairs {
        for end in End::ALL.into_iter().filter(|&e| e != End::Open) {
            let n = stats.ended(end);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "nfscope_tcp_connections_total{{{},end=\"{}\"}} {n}",
                    labels(key),
                    end.label()
                );
            }
        }
    }
    header(
        out,
        "nfscope_tcp_bytes_total",
        "counter",
        "TCP payload bytes of ended connections (IP bytes where sequence numbers were not seen), by direction.",
    );
    for (key, stats) in &pairs {
        let l = labels(key);
        let _ = writeln!(
            out,
            "nfscope_tcp_bytes_total{{{l},direction=\"client_to_server\"}} {}",
            stats.bytes_client
        );
        let _ = writeln!(
            out,
            "nfscope_tcp_bytes_total{{{l},direction=\"server_to_client\"}} {}",
            stats.bytes_server
        );
    }
    header(
        out,
        "nfscope_tcp_resets_total",
        "counter",
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
                let _ = writeln!(
                    out,
                    "nfscope_tcp_resets_total{{{},side=\"{side}\"}} {n}",
                    labels(key)
                );
            }
        }
    }
    header(
        out,
        "nfscope_tcp_handshake_seconds",
        "histogram",
        "TCP handshake time in seconds: SYN to the final ACK (SYN to SYN/ACK when the ACK was not reported).",
    );
    for (key, stats) in pairs.iter().filter(|(_, s)| s.handshake.count > 0) {
        let l = labels(key);
        let mut cumulative = 0;
        for (bound, n) in HANDSHAKE_BUCKETS.iter().zip(stats.handshake.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "nfscope_tcp_handshake_seconds_bucket{{{l},le=\"{bound}\"}} {cumulative}"
            );
        }
        let h = &stats.handshake;
        let _ = writeln!(
            out,
            "nfscope_tcp_handshake_seconds_bucket{{{l},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "nfscope_tcp_handshake_seconds_sum{{{l}}} {}", h.sum);
        let _ = writeln!(
            out,
            "nfscope_tcp_handshake_seconds_count{{{l}}} {}",
            h.count
        );
    }
}

fn render_open(table: &FlowTable, out: &mut String) {
    let names = table.names();
    let mut open: BTreeMap<PairKey, u64> = BTreeMap::new();
    for conn in table.live() {
        *open.entry(PairKey::of(conn, names)).or_default() += 1;
    }
    header(
        out,
        "nfscope_tcp_connections_open",
        "gauge",
        "TCP connections open now, by client and server workload.",
    );
    let limit = table.config().max_pairs;
    let mut other = 0;
    for (i, (key, n)) in open.iter().enumerate() {
        if i < limit {
            let _ = writeln!(out, "nfscope_tcp_connections_open{{{}}} {n}", labels(key));
        } else {
            other += n;
        }
    }
    if other > 0 {
        let _ = writeln!(
            out,
            "nfscope_tcp_connections_open{{src_namespace=\"\",src_workload=\"other\",dst_namespace=\"\",dst_workload=\"other\"}} {other}"
        );
    }
}

fn render_self(table: &FlowTable, info: SourceInfo, out: &mut String) {
    let s = table.stats();
    let rows: [(&str, &str, &str, u64); 11] = [
        (
            "nfscope_flow_connections_live",
            "gauge",
            "Connections in the flow table now.",
            s.live,
        ),
        (
            "nfscope_flow_table_capacity",
            "gauge",
            "Live connections the flow table holds at most.",
            table.config().max_live as u64,
        ),
        (
            "nfscope_flow_table_evictions_total",
            "counter",
            "Live connections evicted because the flow table was full.",
            s.evictions,
        ),
        (
            "nfscope_flow_connections_seen_total",
            "counter",
            "Connections the flow table created.",
            s.connections_seen,
        ),
        (
            "nfscope_flow_conntrack_events_total",
            "counter",
            "Conntrack events received.",
            s.ct_events,
        ),
        (
            "nfscope_flow_conntrack_events_lost_total",
            "counter",
            "Times the kernel dropped conntrack events because the socket buffer was full (ENOBUFS; one or more events each).",
            s.ct_events_lost,
        ),
        (
            "nfscope_flow_capture_packets_total",
            "counter",
            "TCP control packets the capture ring received (PACKET_STATISTICS).",
            s.capture_packets,
        ),
        (
            "nfscope_flow_capture_drops_total",
            "counter",
            "TCP control packets the capture ring dropped (PACKET_STATISTICS).",
            s.capture_drops,
        ),
        (
            "nfscope_flow_packets_unmatched_total",
            "counter",
            "Captured packets that belonged to no known connection.",
            s.packets_unmatched,
        ),
        (
            "nfscope_flow_pairs_overflow_total",
            "counter",
            "Observations counted under other/other because the workload pair limit was reached.",
            table.aggregates().overflowed,
        ),
        (
            "nfscope_flow_sources_up",
            "gauge",
            "Flow sources running: 2 = conntrack events and capture, 1 = one of them, 0 = none.",
            u64::from(info.conntrack_up) + u64::from(info.capture_up),
        ),
    ];
    for (name, kind, help, value) in rows {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(
        out,
        "nfscope_conntrack_accounting_enabled",
        "gauge",
        "1 when nf_conntrack_acct is on (conntrack counts bytes per connection), 0 when off; absent when unknown. nfscope never turns it on.",
    );
    if let Some(on) = info.accounting {
        let _ = writeln!(out, "nfscope_conntrack_accounting_enabled {}", u8::from(on));
    }
}
