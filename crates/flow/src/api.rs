//! The JSON of `/api/flows` and `nfscope flows --format json`: live connections plus the ring of
//! recently closed ones, each with its endpoints named, filterable by namespace, name and IP.

use std::net::IpAddr;

use serde::Serialize;

use crate::Time;
use crate::event::CtCounters;
use crate::names::{Name, Names};
use crate::table::{Conn, End, FlowStats, TableSnapshot};

/// Which connections to list. Every given filter must match (any endpoint may match each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// An endpoint's namespace equals this.
    pub namespace: Option<String>,
    /// An endpoint's name (`name` or `namespace/name`) equals this.
    pub name: Option<String>,
    /// An endpoint's address equals this.
    pub ip: Option<IpAddr>,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointJson {
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// Name from the names file or local interfaces (`namespace/name`), or the address.
    pub name: String,
    /// Namespace, when named with one.
    pub namespace: Option<String>,
}

/// Two directions of a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Directions {
    /// Client → server.
    pub client_to_server: Option<u64>,
    /// Server → client.
    pub server_to_client: Option<u64>,
}

/// One connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowJson {
    /// The table's id.
    pub id: u64,
    /// Conntrack's id.
    pub ct_id: Option<u32>,
    /// The side that sent the SYN.
    pub client: EndpointJson,
    /// What the client dialled (e.g. a Service VIP).
    pub dialled: EndpointJson,
    /// Who answered (the DNAT target; the same as `dialled` without NAT).
    pub server: EndpointJson,
    /// Start, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Seconds from start to end (or to now while open).
    pub duration_seconds: f64,
    /// SYN to the final ACK (or to SYN/ACK), seconds.
    pub handshake_seconds: Option<f64>,
    /// SYN to SYN/ACK, seconds.
    pub syn_to_synack_seconds: Option<f64>,
    /// `open`, `fin`, `rst_client`, `rst_server`, `rst`, `timeout`, `unreachable`.
    pub end: End,
    /// A failed attempt: `refused`, `reset` or `timeout` (also listed in `/api/failures`).
    pub failure: Option<crate::failure::FailureReason>,
    /// Best byte counts (payload bytes, else conntrack's IP bytes).
    pub bytes: Directions,
    /// TCP payload bytes from sequence numbers (known once a FIN or RST was seen).
    pub payload_bytes: Directions,
    /// IP-layer bytes from conntrack accounting.
    pub ip_bytes: Directions,
    /// Packets from conntrack accounting.
    pub packets: Directions,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowsJson {
    /// When it was taken, milliseconds since the Unix epoch.
    pub now_unix_ms: u64,
    /// Live connections, oldest first.
    pub live: Vec<FlowJson>,
    /// Recently closed connections, oldest first.
    pub closed: Vec<FlowJson>,
    /// Table counters.
    pub stats: FlowStats,
}

fn millis(t: Time) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn endpoint(ip: IpAddr, port: u16, names: &Names) -> EndpointJson {
    let Name { namespace, name } = names.name_or_ip(ip);
    let name = match &namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    };
    EndpointJson {
        ip,
        port,
        name,
        namespace,
    }
}

fn directions(a: Option<u64>, b: Option<u64>) -> Directions {
    Directions {
        client_to_server: a,
        server_to_client: b,
    }
}

fn counters(c: Option<CtCounters>, f: fn(CtCounters) -> u64) -> Option<u64> {
    c.map(f)
}

/// One connection as JSON.
pub fn flow_json(conn: &Conn, names: &Names, now: Time) -> FlowJson {
    let server = conn.server();
    FlowJson {
        id: conn.id,
        ct_id: conn.ct_id,
        client: endpoint(conn.orig.src, conn.orig.sport, names),
        dialled: endpoint(conn.orig.dst, conn.orig.dport, names),
        server: endpoint(server.dst, server.dport, names),
        start_unix_ms: millis(conn.start),
        duration_seconds: conn.duration(now).as_secs_f64(),
        handshake_seconds: conn.handshake().map(|d| d.as_secs_f64()),
        syn_to_synack_seconds: conn.syn_to_synack().map(|d| d.as_secs_f64()),
        end: conn.end,
        failure: conn.failure,
        bytes: directions(conn.bytes_client(), conn.bytes_server()),
        payload_bytes: directions(conn.payload_client(), conn.payload_server()),
        ip_bytes: directions(
            counters(conn.ct_orig, |c| c.bytes),
            counters(conn.ct_reply, |c| c.bytes),
        ),
        packets: directions(
            counters(conn.ct_orig, |c| c.packets),
            counters(conn.ct_reply, |c| c.packets),
        ),
    }
}

impl FlowFilter {
    /// The query keys `/api/flows` understands.
    pub const KEYS: &[&str] = &["namespace", "name", "ip"];

    /// From query parameters `namespace`, `name`, `ip`; an unparsable `ip` is an error message.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut filter = Self::default();
        for (key, value) in params {
            if value.is_empty() {
                continue;
            }
            match key {
                "namespace" => filter.namespace = Some(value.to_owned()),
                "name" => filter.name = Some(value.to_owned()),
                "ip" => {
                    filter.ip = Some(
                        value
                            .parse()
                            .map_err(|_| format!("ip={value:?} is not an IP address"))?,
                    );
                }
                _ => {}
            }
        }
        Ok(filter)
    }

    /// Does `flow` pass?
    pub fn keeps(&self, flow: &FlowJson) -> bool {
        let ends = [&flow.client, &flow.dialled, &flow.server]
            .map(|e| (e.ip, e.name.as_str(), e.namespace.as_deref()));
        self.keeps_ends(&ends)
    }

    /// Do endpoints given as (address, name, namespace) pass? (`/api/failures` uses the same
    /// filters.)
    pub fn keeps_ends(&self, ends: &[(IpAddr, &str, Option<&str>)]) -> bool {
        let ns_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| ends.iter().any(|e| e.2 == Some(ns)));
        let name_ok = self.name.as_deref().is_none_or(|name| {
            ends.iter()
                .any(|e| e.1 == name || e.1.rsplit('/').next() == Some(name))
        });
        let ip_ok = self.ip.is_none_or(|ip| ends.iter().any(|e| e.0 == ip));
        ns_ok && name_ok && ip_ok
    }
}

/// The `/api/flows` document for `snapshot`, filtered.
pub fn flows_json(snapshot: &TableSnapshot, names: &Names, filter: &FlowFilter) -> FlowsJson {
    let convert = |conns: &[Conn]| -> Vec<FlowJson> {
        conns
            .iter()
            .map(|c| flow_json(c, names, snapshot.now))
            .filter(|f| filter.keeps(f))
            .collect()
    };
    FlowsJson {
        now_unix_ms: millis(snapshot.now),
        live: convert(&snapshot.live),
        closed: convert(&snapshot.closed),
        stats: snapshot.stats,
    }
}
