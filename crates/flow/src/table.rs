//! The connection table: a pure state machine over conntrack events and TCP control packets.
//!
//! A connection is keyed by every directional tuple it can be seen with: the client's original
//! tuple (client → Service VIP), its reverse, and, once conntrack reports the NAT translation,
//! the translated tuple (client → pod that served it) and its reverse. So the same SYN seen on the
//! client's veth (before DNAT) and on the pod's veth (after DNAT) lands on one connection, and
//! whichever source reports first (conntrack or the packet ring) creates it. A SYN the capture
//! sees on a tuple conntrack does not report (after DNAT but before SNAT, e.g. on a bridge with
//! br_netfilter) or before conntrack reports anything joins the connection whose SYN carried the
//! same initial sequence number (NAT never rewrites it) as a third tuple (`via`) or, until
//! conntrack speaks, as the translated one. An ICMP destination unreachable quoting a SYN ends
//! that attempt (`End::Unreachable`): REJECTed SYNs are never confirmed, so conntrack is silent.
//!
//! Failures (with `FlowConfig::syn_timeout` set): a connection that ends without a completed
//! handshake is a failed attempt, queued as a [`FailedAttempt`] when it closes — refused (RST or
//! ICMP unreachable answering the SYN), reset (after the SYN/ACK, before conntrack's ESTABLISHED;
//! such a reset waits for conntrack's events, which can lag), timeout (the SYN unanswered for the
//! SYN timeout; its later retransmissions are recognised by their sequence number and start
//! nothing). ICMP errors about UDP datagrams become unreachable attempts once their copies (one
//! per interface, before and after NAT) have settled. The record stays one closed connection.
//!
//! Bytes: conntrack accounting gives IP-layer bytes and packets (headers included) when
//! `nf_conntrack_acct` is on; sequence numbers of the SYN, FIN and RST packets give exact TCP
//! payload bytes each way (valid below 4 GiB per direction, the sequence space).
//!
//! Bounds: at most `max_live` live connections (the oldest is evicted and counted), a ring of the
//! last `closed_capacity` closed ones, and tombstones so late conntrack updates of a closed
//! connection do not resurrect it. Time is passed in; nothing here reads a clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use hashbrown::HashMap;
use serde::Serialize;

use crate::Time;
use crate::aggregate::Aggregates;
use crate::event::{CtCounters, CtEvent, CtKind, TcpState, Tuple};
use crate::failure::{
    ExplainFailure, FailedAttempt, FailureExplanation, FailureReason, FailureTable, Proto,
};
use crate::names::Names;
use crate::packet::{PacketMeta, TcpFlags, UdpUnreachable};

mod store;
use store::{ConnStore, Slot};

/// Limits and timeouts of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowConfig {
    /// Live connections kept at most; inserting beyond evicts the oldest.
    pub max_live: usize,
    /// Closed connections kept for `/api/flows`.
    pub closed_capacity: usize,
    /// A SYN not answered within this long ends the connection as a timeout (packet-only).
    pub handshake_timeout: Duration,
    /// A connection known only from packets (no conntrack entry) with no control packet for this
    /// long ends as a timeout.
    pub packet_idle_timeout: Duration,
    /// A connection with a FIN from one side only, and no conntrack entry, closes after this.
    pub half_close_timeout: Duration,
    /// How long a closed connection's conntrack tuple is remembered (TIME_WAIT is 120 s).
    pub tombstone_ttl: Duration,
    /// How long a connection the packets saw end waits for conntrack to report it, when
    /// conntrack has not yet (its events can lag the capture under load). Without the wait, a
    /// late NEW event would start a second connection, and the first would count against the
    /// Service VIP instead of the pod that served it. The other way round too: a connection
    /// conntrack destroyed waits this long for its packets (the capture can lag the events), so
    /// that they do not land on the next connection of a quickly reused port. Zero (the
    /// default) closes at once: right when no conntrack events are read.
    pub conntrack_grace: Duration,
    /// Distinct (source, destination) workload pairs the aggregates keep; the rest count as `other`.
    pub max_pairs: usize,
    /// Failure detection (`Some`): failed attempts are queued for [`FlowTable::take_failed_attempts`]
    /// (see [`crate::failure`]) and a SYN unanswered for this long ends its connection as a
    /// timeout, a failed attempt (its retransmissions join it, they start nothing). `None` (the
    /// default): no failures, unanswered SYNs end after `handshake_timeout`.
    pub syn_timeout: Option<Duration>,
    /// Failure groups kept at most (`--max-failures`; the least recently failing is evicted).
    pub max_failures: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            max_live: 100_000,
            closed_capacity: 1_000,
            handshake_timeout: Duration::from_secs(30),
            packet_idle_timeout: Duration::from_secs(600),
            half_close_timeout: Duration::from_secs(60),
            tombstone_ttl: Duration::from_secs(150),
            conntrack_grace: Duration::ZERO,
            max_pairs: 2_000,
            syn_timeout: None,
            max_failures: 1_000,
        }
    }
}

/// Which end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The side that sent the SYN.
    Client,
    /// The side that answered it.
    Server,
}

/// How a connection ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Still open.
    Open,
    /// Closed with FIN.
    Fin,
    /// Reset by the client.
    RstClient,
    /// Reset by the server.
    RstServer,
    /// Reset, side unknown (conntrack saw it, the capture did not).
    Rst,
    /// No close seen: handshake unanswered, idle, or conntrack timed it out.
    Timeout,
    /// The SYN was answered with an ICMP/ICMPv6 destination unreachable (e.g. REJECT).
    Unreachable,
}

impl End {
    /// Every variant, in label order.
    pub const ALL: [Self; 7] = [
        Self::Open,
        Self::Fin,
        Self::RstClient,
        Self::RstServer,
        Self::Rst,
        Self::Timeout,
        Self::Unreachable,
    ];

    /// The metric label / JSON value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Fin => "fin",
            Self::RstClient => "rst_client",
            Self::RstServer => "rst_server",
            Self::Rst => "rst",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
        }
    }

    /// Any reset?
    pub fn is_reset(self) -> bool {
        matches!(self, Self::RstClient | Self::RstServer | Self::Rst)
    }
}

/// Sequence-number state of one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SeqSide {
    isn: Option<u32>,
    fin_seq: Option<u32>,
    bytes: Option<u64>,
}

impl SeqSide {
    /// Records that this side sent everything up to (not including) `end_seq`.
    fn sent_up_to(&mut self, end_seq: u32) {
        if let Some(isn) = self.isn {
            let bytes = u64::from(end_seq.wrapping_sub(isn.wrapping_add(1)));
            if bytes < 1 << 31 {
                self.bytes = Some(self.bytes.map_or(bytes, |b| b.max(bytes)));
            }
        }
    }

    /// Records an acknowledgement `ack` the other side sent for this side's data.
    fn acked_up_to(&mut self, ack: u32) {
        let end = match self.fin_seq {
            Some(fin) if ack == fin.wrapping_add(1) => fin,
            _ => ack,
        };
        self.sent_up_to(end);
    }
}

/// One connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conn {
    /// The table's id (unique for the table's life).
    pub id: u64,
    /// Conntrack's id, once conntrack reported the connection.
    pub ct_id: Option<u32>,
    /// As the client sent it: client → the address it dialled (e.g. a Service VIP).
    pub orig: Tuple,
    /// After NAT, as conntrack reports it: client (after SNAT) → the pod that served it.
    /// `None` until conntrack reported the connection; equal to `orig` without NAT.
    pub translated: Option<Tuple>,
    /// As the capture also saw it between `orig` and `translated`: after DNAT, before SNAT
    /// (a client behind a bridge port, seen on the bridge after br_netfilter's DNAT, to a pod
    /// behind MASQUERADE). Conntrack reports only the two ends.
    #[serde(skip)]
    via: Option<Tuple>,
    /// First sight (SYN, or the conntrack event when the SYN was not seen).
    pub start: Time,
    /// When the client's SYN was seen.
    pub syn_at: Option<Time>,
    /// When the server's SYN/ACK was seen.
    pub synack_at: Option<Time>,
    /// When conntrack moved it to ESTABLISHED (the handshake's final ACK).
    pub established_at: Option<Time>,
    /// Last packet or event.
    pub last_seen: Time,
    /// How it ended.
    pub end: End,
    /// When it ended.
    pub end_at: Option<Time>,
    /// Conntrack accounting, client → server.
    pub ct_orig: Option<CtCounters>,
    /// Conntrack accounting, server → client.
    pub ct_reply: Option<CtCounters>,
    /// A failed attempt (with failure detection on): how it failed.
    pub failure: Option<FailureReason>,
    /// The interface the client's first SYN was seen on (0 when unknown).
    #[serde(skip)]
    syn_ifindex: u32,
    #[serde(skip)]
    client: SeqSide,
    #[serde(skip)]
    server: SeqSide,
    #[serde(skip)]
    ct_close_hint: Option<End>,
    #[serde(skip)]
    handshake_recorded: bool,
    /// How and when the packets ended it, while it waits for conntrack (`conntrack_grace`).
    #[serde(skip)]
    pending_end: Option<(End, Time)>,
    /// How and when conntrack ended it (DESTROY), while it waits for its packets, which the
    /// capture can deliver after the events (`conntrack_grace`).
    #[serde(skip)]
    ct_end: Option<(End, Time)>,
    /// The next connection on the same tuples (its conntrack NEW came while this one waits for
    /// its packets): kept out of the tuple index until this one closes, so this one's packets
    /// still find this one. Slot and id.
    #[serde(skip)]
    successor: Option<(Slot, u64)>,
    /// Not in the tuple index (a successor, see above).
    #[serde(skip)]
    hidden: bool,
    /// `translated` was inferred from the packets (the same SYN seen again after NAT, see
    /// [`FlowTable::join_nat_sighting`]), not reported by conntrack.
    #[serde(skip)]
    nat_from_packets: bool,
}

impl Conn {
    fn new(id: u64, orig: Tuple, now: Time) -> Self {
        Self {
            id,
            ct_id: None,
            orig,
            translated: None,
            via: None,
            start: now,
            syn_at: None,
            synack_at: None,
            established_at: None,
            last_seen: now,
            end: End::Open,
            end_at: None,
            ct_orig: None,
            ct_reply: None,
            failure: None,
            syn_ifindex: 0,
            client: SeqSide::default(),
            server: SeqSide::default(),
            ct_close_hint: None,
            handshake_recorded: false,
            pending_end: None,
            ct_end: None,
            successor: None,
            hidden: false,
            nat_from_packets: false,
        }
    }

    /// Has conntrack reported this connection (so its NAT translation is known, and it will
    /// report its end)?
    fn ct_known(&self) -> bool {
        self.ct_id.is_some() || (self.translated.is_some() && !self.nat_from_packets)
    }

    /// The server that actually answered: the translated destination when known.
    pub fn server(&self) -> Tuple {
        self.translated.map_or(self.orig, |t| Tuple {
            src: self.orig.src,
            sport: self.orig.sport,
            ..t
        })
    }

    /// SYN → final ACK when conntrack reported ESTABLISHED, else SYN → SYN/ACK.
    pub fn handshake(&self) -> Option<Duration> {
        let syn = self.syn_at?;
        let done = match (self.established_at, self.synack_at) {
            (Some(est), Some(synack)) => est.max(synack),
            (Some(est), None) => est,
            (None, Some(synack)) => synack,
            (None, None) => return None,
        };
        done.checked_sub(syn)
    }

    /// SYN → SYN/ACK, as seen where the capture runs.
    pub fn syn_to_synack(&self) -> Option<Duration> {
        self.synack_at?.checked_sub(self.syn_at?)
    }

    /// From start to end (or to `now` while open).
    pub fn duration(&self, now: Time) -> Duration {
        self.end_at.unwrap_or(now).saturating_sub(self.start)
    }

    /// TCP payload bytes client → server from sequence numbers, once a FIN or RST showed them.
    pub fn payload_client(&self) -> Option<u64> {
        self.client.bytes
    }

    /// TCP payload bytes server → client from sequence numbers.
    pub fn payload_server(&self) -> Option<u64> {
        self.server.bytes
    }

    /// Best byte count client → server: payload bytes, else conntrack's IP-layer bytes.
    pub fn bytes_client(&self) -> Option<u64> {
        self.client.bytes.or(self.ct_orig.map(|c| c.bytes))
    }

    /// Best byte count server → client.
    pub fn bytes_server(&self) -> Option<u64> {
        self.server.bytes.or(self.ct_reply.map(|c| c.bytes))
    }

    fn seq_mut(&mut self, side: Side) -> (&mut SeqSide, &mut SeqSide) {
        match side {
            Side::Client => (&mut self.client, &mut self.server),
            Side::Server => (&mut self.server, &mut self.client),
        }
    }

    /// Folds `other` (the same connection seen first through another tuple) into this one; the
    /// tuples stay (the store owns them, see [`ConnStore::set_tuples`]).
    fn absorb(&mut self, other: Self) {
        if other.syn_at.is_some() && self.syn_at.is_none_or(|mine| other.syn_at < Some(mine)) {
            self.syn_ifindex = other.syn_ifindex;
        }
        self.start = self.start.min(other.start);
        self.syn_at = min_opt(self.syn_at, other.syn_at);
        self.synack_at = min_opt(self.synack_at, other.synack_at);
        self.established_at = min_opt(self.established_at, other.established_at);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.ct_id = self.ct_id.or(other.ct_id);
        for (mine, theirs) in [
            (&mut self.client, other.client),
            (&mut self.server, other.server),
        ] {
            mine.isn = mine.isn.or(theirs.isn);
            mine.fin_seq = mine.fin_seq.or(theirs.fin_seq);
            mine.bytes = mine.bytes.max(theirs.bytes);
        }
    }
}

fn min_opt(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The table's own counters (self-metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowStats {
    /// Connections created (sightings merged into one count once), so at any time
    /// `connections_seen == connections_closed + live + evictions`.
    pub connections_seen: u64,
    /// Connections that ended (moved to the closed ring).
    pub connections_closed: u64,
    /// Live connections evicted because the table was full.
    pub evictions: u64,
    /// Live connections right now.
    pub live: u64,
    /// Packets given to the table.
    pub packets: u64,
    /// Packets that matched no connection and could not start one.
    pub packets_unmatched: u64,
    /// Conntrack events given to the table.
    pub ct_events: u64,
    /// Conntrack events for other protocols than TCP.
    pub ct_events_ignored: u64,
    /// Conntrack events the kernel dropped (ENOBUFS), as reported by the reader.
    pub ct_events_lost: u64,
    /// Packets the capture ring dropped (`PACKET_STATISTICS`), as reported by the reader.
    pub capture_drops: u64,
    /// Packets the capture delivered (`PACKET_STATISTICS`), as reported by the reader.
    pub capture_packets: u64,
}

/// A copy of the table for outputs.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// When it was taken.
    pub now: Time,
    /// Live connections (oldest first).
    pub live: Vec<Conn>,
    /// Recently closed connections (oldest first).
    pub closed: Vec<Conn>,
    /// Counters.
    pub stats: FlowStats,
}

/// The connection table.
#[derive(Debug)]
pub struct FlowTable {
    config: FlowConfig,
    names: Names,
    conns: ConnStore,
    /// Live slots and ids in creation order (lazily cleaned), for eviction.
    order: VecDeque<(Slot, u64)>,
    closed: VecDeque<Conn>,
    tombstones: HashMap<Tuple, Time>,
    tombstone_order: VecDeque<(Time, Tuple)>,
    /// Client initial sequence number → the live connection whose SYN carried it, until the
    /// SYN/ACK: a SYN seen again after NAT (other addresses, same sequence number) joins it
    /// instead of starting a second connection.
    syn_isns: HashMap<u32, Slot>,
    next_id: u64,
    stats: FlowStats,
    aggregates: Aggregates,
    /// Failed attempts detected and not yet taken (bounded: [`PENDING_ATTEMPTS`]).
    failed: VecDeque<FailedAttempt>,
    /// The failure groups and series.
    failures: FailureTable,
    /// Initial sequence number → (when, client tuple) of attempts that timed out: their SYN
    /// retransmissions join the failed attempt instead of starting connections.
    failed_syns: HashMap<u32, (Time, Tuple)>,
    failed_syn_order: VecDeque<(Time, u32)>,
    /// ICMP errors about UDP datagrams, gathered for [`UDP_SETTLE`] (the copies of one error seen
    /// on several interfaces, before and after NAT, become one attempt).
    udp_pending: HashMap<UdpKey, UdpPending>,
    /// Interface index → name, as the caller last read them.
    interfaces: std::collections::HashMap<u32, String>,
}

/// Failed attempts queued for the caller at most; beyond, the oldest is dropped and counted.
pub const PENDING_ATTEMPTS: usize = 8_192;

/// How long the copies of one ICMP error about a UDP datagram are gathered.
pub const UDP_SETTLE: Duration = Duration::from_millis(500);

/// ICMP errors about UDP datagrams gathered at most at once; beyond, they are dropped and counted.
const UDP_PENDING_MAX: usize = 4_096;

/// What the copies of one ICMP error about a UDP datagram share: NAT rewrites addresses and
/// (rarely) the source port, never the IPv4 identification or the UDP length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct UdpKey {
    v4: bool,
    ip_id: Option<u16>,
    sport: u16,
    udp_len: u16,
}

/// One ICMP error about a UDP datagram: the first and the last quoted datagram seen. The first
/// copy is the one nearest the host that answered (after DNAT), the last the one that reached
/// the client (NAT undone), so the last is what the client dialled.
#[derive(Debug, Clone, Copy)]
struct UdpPending {
    at: Time,
    first: Tuple,
    last: Tuple,
}

/// How an ended connection failed, if it was a failed attempt: it sent a SYN and never
/// completed the handshake.
fn failure_of(conn: &Conn) -> Option<FailureReason> {
    conn.syn_at?;
    if conn.established_at.is_some() {
        return None;
    }
    let answered = conn.synack_at.is_some();
    match conn.end {
        End::Unreachable => Some(FailureReason::Refused),
        End::RstServer | End::Rst if !answered => Some(FailureReason::Refused),
        // Conntrack reports ESTABLISHED; without it the capture cannot tell a reset
        // handshake from a reset connection that carried nothing.
        End::RstServer | End::RstClient | End::Rst if answered && conn.ct_known() => {
            Some(FailureReason::Reset)
        }
        End::Timeout if !answered => Some(FailureReason::Timeout),
        _ => None,
    }
}

fn socket(ip: std::net::IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

impl FlowTable {
    /// An empty table naming endpoints with `names`.
    pub fn new(config: FlowConfig, names: Names) -> Self {
        let aggregates = Aggregates::new(config.max_pairs);
        let (config_failures, config_pairs) = (config.max_failures, config.max_pairs);
        Self {
            conns: ConnStore::with_capacity(config.max_live),
            config,
            names,
            order: VecDeque::new(),
            closed: VecDeque::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            syn_isns: HashMap::new(),
            next_id: 1,
            stats: FlowStats::default(),
            aggregates,
            failed: VecDeque::new(),
            failures: FailureTable::new(config_failures, config_pairs),
            failed_syns: HashMap::new(),
            failed_syn_order: VecDeque::new(),
            udp_pending: HashMap::new(),
            interfaces: std::collections::HashMap::new(),
        }
    }

    /// One TCP control packet (SYN, FIN or RST; others are harmless).
    pub fn on_packet(&mut self, now: Time, packet: PacketMeta) {
        self.stats.packets += 1;
        if packet.unreachable {
            self.on_unreachable(now, &packet);
            return;
        }
        let flags = packet.flags;
        let pure_syn = flags.has(TcpFlags::SYN) && !flags.has(TcpFlags::ACK);
        let found = self.conns.find(&packet.tuple);
        let (slot, side) = match found {
            Some((slot, side)) if self.is_port_reuse(slot, side, &packet) => {
                self.close_superseded(slot, now);
                // Its successor (from conntrack, not yet seen by the capture) now has the tuple.
                match self.conns.find(&packet.tuple) {
                    Some((next, Side::Client))
                        if self.conns.get(next).is_some_and(|c| c.syn_at.is_none()) =>
                    {
                        (Some(next), Side::Client)
                    }
                    _ => (self.insert_from_packet(now, packet.tuple), Side::Client),
                }
            }
            Some((slot, side)) => (Some(slot), side),
            None if pure_syn && self.retransmits_a_failed_syn(&packet) => return,
            None if pure_syn => match self.join_nat_sighting(now, &packet) {
                Some(slot) => (Some(slot), Side::Client),
                None => (self.insert_from_packet(now, packet.tuple), Side::Client),
            },
            None => {
                self.stats.packets_unmatched += 1;
                return;
            }
        };
        let Some(slot) = slot else {
            return; // the slab is full beyond any sane max_live
        };
        if pure_syn && side == Side::Client {
            self.syn_isns.insert(packet.seq, slot);
        } else if side == Side::Server && flags.has(TcpFlags::SYN) && flags.has(TcpFlags::ACK) {
            // Every copy of the SYN passed before its answer: the index is for half-open
            // connections only, so holding many established ones costs it nothing.
            self.forget_isn(slot);
        }
        if let Some(end) = self.apply_packet(slot, side, now, &packet) {
            self.close_or_await_conntrack(slot, now, end);
        }
    }

    /// An ICMP destination unreachable about a client's SYN (the quoted header is the SYN as the
    /// client sent it, or as the rejecting hop saw it after DNAT: both are the connection's)
    /// ends the attempt: the client gives up at once. Errors about other packets (a later
    /// segment, another connection's SYN on a reused port) change nothing.
    fn on_unreachable(&mut self, now: Time, packet: &PacketMeta) {
        let slot = match self.conns.find(&packet.tuple) {
            Some((slot, Side::Client))
                if self.conns.get(slot).is_some_and(|c| {
                    c.client.isn.is_none_or(|isn| isn == packet.seq)
                        && c.synack_at.is_none()
                        && c.established_at.is_none()
                }) =>
            {
                slot
            }
            _ => {
                self.stats.packets_unmatched += 1;
                return;
            }
        };
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.last_seen = conn.last_seen.max(now);
        }
        self.close_or_await_conntrack(slot, now, End::Unreachable);
    }

    /// A SYN on a tuple no connection has, carrying the initial sequence number of a live
    /// connection, sharing one end with it (its
    /// source after DNAT, its destination after SNAT, its source port after both, as on a
    /// hairpin): the same SYN seen again after NAT. NAT rewrites addresses and ports, never
    /// sequence numbers. The packet's tuple becomes the connection's translated tuple (conntrack
    /// confirms or corrects it later), or, when that is known, the tuple seen between the two
    /// (`via`: after DNAT and before SNAT, which conntrack never reports), so the second
    /// sighting and the packets answering it land on the one connection. Without this, a SYN seen on a bridge port and again on the bridge
    /// after br_netfilter's DNAT, or on both veths of a node, made two connections whenever the
    /// capture ran ahead of conntrack, and forever when conntrack never reported the connection
    /// (a REJECTed SYN is never confirmed).
    fn join_nat_sighting(&mut self, now: Time, packet: &PacketMeta) -> Option<Slot> {
        let slot = *self.syn_isns.get(&packet.seq)?;
        let conn = self.conns.get(slot)?;
        let p = packet.tuple;
        let shares_an_end = |o: Tuple| {
            let dnat = o.src == p.src && o.sport == p.sport;
            let snat = o.dst == p.dst && o.dport == p.dport && o.src != p.src;
            let both = o.sport == p.sport && o.src != p.src && o.dst != p.dst;
            o.src.is_ipv4() == p.src.is_ipv4() && (dnat || snat || both)
        };
        let fresh = conn
            .syn_at
            .is_some_and(|syn| now.saturating_sub(syn) < self.config.handshake_timeout);
        let related = shares_an_end(conn.orig) || conn.translated.is_some_and(shares_an_end);
        if conn.client.isn != Some(packet.seq) || conn.hidden || !fresh || !related {
            return None;
        }
        if !conn.ct_known() && conn.translated.is_none() {
            let orig = conn.orig;
            self.conns.set_tuples(slot, orig, Some(p));
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.nat_from_packets = true;
            }
        } else if conn.via.is_none() {
            self.conns.set_via(slot, Some(p));
        } else {
            return None;
        }
        Some(slot)
    }

    /// Forgets `slot`'s entry in the initial-sequence-number index.
    fn forget_isn(&mut self, slot: Slot) {
        if let Some(isn) = self.conns.get(slot).and_then(|c| c.client.isn)
            && self.syn_isns.get(&isn) == Some(&slot)
        {
            self.syn_isns.remove(&isn);
        }
    }

    /// A new SYN with another initial sequence number on a tuple whose connection is closing.
    fn is_port_reuse(&self, slot: Slot, side: Side, packet: &PacketMeta) -> bool {
        let flags = packet.flags;
        if side != Side::Client || !flags.has(TcpFlags::SYN) || flags.has(TcpFlags::ACK) {
            return false;
        }
        self.conns
            .get(slot)
            .and_then(|c| c.client.isn)
            .is_some_and(|isn| isn != packet.seq)
    }

    /// Updates the connection; returns how it ended when this packet ended it.
    fn apply_packet(&mut self, slot: Slot, side: Side, now: Time, p: &PacketMeta) -> Option<End> {
        let conn = self.conns.get_mut(slot)?;
        conn.last_seen = conn.last_seen.max(now);
        let flags = p.flags;
        if flags.has(TcpFlags::SYN) {
            match (side, flags.has(TcpFlags::ACK)) {
                (Side::Client, false) => {
                    if conn.syn_at.is_none_or(|first| now < first) {
                        conn.syn_ifindex = p.ifindex;
                    }
                    conn.client.isn.get_or_insert(p.seq);
                    conn.syn_at = min_opt(conn.syn_at, Some(now));
                    conn.start = conn.start.min(now);
                }
                (Side::Server, true) => {
                    conn.server.isn.get_or_insert(p.seq);
                    conn.synack_at = min_opt(conn.synack_at, Some(now));
                }
                _ => {}
            }
        }
        if flags.has(TcpFlags::ACK) && !flags.has(TcpFlags::SYN) {
            // A packet after the handshake, stamped by the kernel as it passed: the handshake
            // was done by then. Conntrack's ESTABLISHED is stamped when the event was read,
            // which can be later (events are read in batches), later even than the FINs.
            conn.established_at = conn.established_at.map(|est| est.min(now));
        }
        let end_seq = p.seq.wrapping_add(p.payload_len);
        let (mine, theirs) = conn.seq_mut(side);
        if flags.has(TcpFlags::ACK) && !flags.has(TcpFlags::SYN) {
            theirs.acked_up_to(p.ack);
        }
        if flags.has(TcpFlags::RST) {
            mine.sent_up_to(end_seq);
            return Some(match side {
                Side::Client => End::RstClient,
                Side::Server => End::RstServer,
            });
        }
        if flags.has(TcpFlags::FIN) {
            mine.fin_seq.get_or_insert(end_seq);
            mine.sent_up_to(end_seq);
            if conn.client.fin_seq.is_some() && conn.server.fin_seq.is_some() {
                return Some(End::Fin);
            }
        }
        self.record_handshake_if_done(slot);
        None
    }

    /// One conntrack event.
    pub fn on_conntrack_event(&mut self, now: Time, event: CtEvent) {
        self.stats.ct_events += 1;
        if event.proto != 6 {
            self.stats.ct_events_ignored += 1;
            return;
        }
        if event.kind == CtKind::New {
            self.tombstones.remove(&event.orig);
        } else if self.tombstones.contains_key(&event.orig) {
            if event.kind == CtKind::Destroy {
                self.tombstones.remove(&event.orig);
            }
            return;
        }
        let translated = event.reply.reversed();
        let mut found: Vec<Slot> = Vec::with_capacity(4);
        let mut hits = 0;
        for tuple in [event.orig, event.orig.reversed(), translated, event.reply] {
            if let Some((slot, _)) = self.conns.find(&tuple) {
                hits += 1;
                if !found.contains(&slot) {
                    found.push(slot);
                }
            }
        }
        if found.is_empty() && event.kind == CtKind::Destroy {
            return;
        }
        if !self.hand_over_to_successors(now, &mut found, &event) {
            return;
        }
        if event.kind != CtKind::New && self.belongs_to_a_predecessor(&found, &event) {
            return;
        }
        let slot = match found.split_first() {
            Some((&keep, rest)) => {
                for &other in rest {
                    self.merge_into(keep, other);
                }
                keep
            }
            None => match self.insert_conn(now, event.orig) {
                Some(slot) => slot,
                None => return,
            },
        };
        // Most events are updates of a connection already indexed under exactly these tuples.
        let indexed = hits == 4
            && found.len() == 1
            && self
                .conns
                .get(slot)
                .is_some_and(|c| c.orig == event.orig && c.translated == Some(translated));
        if !indexed {
            // A translated tuple the packets inferred that conntrack does not report is the one
            // between the two NATs (after DNAT, before SNAT): keep it as `via`.
            let between = self.conns.get(slot).and_then(|c| {
                [c.translated.filter(|_| c.nat_from_packets), c.via]
                    .into_iter()
                    .flatten()
                    .find(|&t| t != translated && t != event.orig)
            });
            self.conns.set_tuples(slot, event.orig, Some(translated));
            self.conns.set_via(slot, between);
        }
        self.apply_ct_and_close(slot, now, &event);
    }

    /// Applies a conntrack event to `slot`; a DESTROY closes the connection, unless its packets
    /// may still come (the capture can lag the events): then it waits up to the grace for them.
    fn apply_ct_and_close(&mut self, slot: Slot, now: Time, event: &CtEvent) {
        let pending = self.conns.get(slot).and_then(|c| c.pending_end);
        match (self.apply_ct(slot, now, event), pending) {
            (_, Some((end, at))) => self.close(slot, at, end),
            (Some(end), None) if !self.config.conntrack_grace.is_zero() => {
                if let Some(conn) = self.conns.get_mut(slot) {
                    conn.ct_end.get_or_insert((end, now));
                }
            }
            (Some(end), None) => self.close(slot, now, end),
            (None, None) => {}
        }
    }

    /// Connections found whose conntrack entry is already destroyed (waiting for their packets)
    /// get no more events: they go to the next connection on the same tuples. A NEW for such a
    /// connection starts that next one, kept out of the index until the waiting one closes.
    /// Returns whether the event still needs handling with `found`.
    fn hand_over_to_successors(
        &mut self,
        now: Time,
        found: &mut Vec<Slot>,
        event: &CtEvent,
    ) -> bool {
        let Some(&gone) = found.iter().find(|&&s| self.ct_gone(s)) else {
            return true;
        };
        let mut last = gone;
        while let Some(next) = self.successor_of(last) {
            last = next;
        }
        found.retain(|&s| !self.ct_gone(s));
        if !self.ct_gone(last) {
            if !found.contains(&last) {
                found.insert(0, last);
            }
            return true;
        }
        if event.kind == CtKind::New
            && let Some(next) = self.insert_hidden(now, event)
        {
            let id = self.conns.get(next).map_or(0, |c| c.id);
            if let Some(conn) = self.conns.get_mut(last) {
                conn.successor = Some((next, id));
            }
            self.apply_ct_and_close(next, now, event);
        }
        false
    }

    fn ct_gone(&self, slot: Slot) -> bool {
        self.conns.get(slot).is_some_and(|c| c.ct_end.is_some())
    }

    /// The live successor of `slot`, if any.
    fn successor_of(&self, slot: Slot) -> Option<Slot> {
        let (next, id) = self.conns.get(slot)?.successor?;
        self.conns
            .get(next)
            .is_some_and(|c| c.id == id)
            .then_some(next)
    }

    /// A connection for a NEW event, kept out of the tuple index (see [`Conn::successor`]).
    fn insert_hidden(&mut self, now: Time, event: &CtEvent) -> Option<Slot> {
        let mut conn = Conn::new(self.next_id, event.orig, now);
        conn.translated = Some(event.reply.reversed());
        conn.hidden = true;
        self.insert_new(conn)
    }

    /// An update or destroy of another conntrack entry than the connections found by the tuples
    /// have: a late event of the previous connection on a reused port (e.g. conntrack destroying
    /// the old entry in TIME_WAIT when the new SYN arrives). It is one when every connection found
    /// either knows another entry id, or started with a SYN the capture saw and has not had its
    /// own NEW yet (events of one entry arrive in order, NEW first). The id alone cannot tell:
    /// the kernel derives it from the entry's address and tuples, so the entry that replaces a
    /// TIME_WAIT one on the same tuple often gets the same id. And the capture can have seen the
    /// new connection twice (before and after DNAT: two connections until NEW joins them).
    fn belongs_to_a_predecessor(&self, found: &[Slot], event: &CtEvent) -> bool {
        !found.is_empty()
            && found.iter().all(|&slot| {
                self.conns
                    .get(slot)
                    .is_some_and(|conn| match (conn.ct_id, event.id) {
                        (Some(known), Some(id)) => known != id,
                        (None, _) => conn.syn_at.is_some(),
                        (Some(_), None) => false,
                    })
            })
    }

    fn apply_ct(&mut self, slot: Slot, now: Time, event: &CtEvent) -> Option<End> {
        let conn = self.conns.get_mut(slot)?;
        conn.last_seen = conn.last_seen.max(now);
        conn.ct_id = event.id.or(conn.ct_id);
        conn.nat_from_packets = false;
        conn.ct_orig = event.counters_orig.or(conn.ct_orig);
        conn.ct_reply = event.counters_reply.or(conn.ct_reply);
        match event.tcp_state {
            Some(TcpState::Established) if conn.established_at.is_none() => {
                conn.established_at = Some(now);
            }
            Some(TcpState::Closing) => conn.ct_close_hint = Some(End::Fin),
            Some(TcpState::Close) if conn.ct_close_hint.is_none() => {
                conn.ct_close_hint = Some(End::Rst);
            }
            _ => {}
        }
        if event.kind == CtKind::Destroy {
            let seen_fin = conn.client.fin_seq.is_some() || conn.server.fin_seq.is_some();
            return Some(if seen_fin {
                End::Fin
            } else {
                conn.ct_close_hint.unwrap_or(End::Timeout)
            });
        }
        self.record_handshake_if_done(slot);
        None
    }

    /// Ends connections whose time is up; call about once a second.
    pub fn expire(&mut self, now: Time) {
        self.expire_failures(now);
        let config = &self.config;
        let due: Vec<Slot> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let idle = now.saturating_sub(c.last_seen);
                let packet_only = !c.ct_known();
                let half_closed = c.client.fin_seq.is_some() || c.server.fin_seq.is_some();
                let unanswered = c.synack_at.is_none() && c.established_at.is_none();
                packet_only
                    && (idle >= config.packet_idle_timeout
                        || (unanswered && idle >= config.handshake_timeout)
                        || (half_closed && idle >= config.half_close_timeout))
            })
            .map(|(slot, _)| slot)
            .collect();
        let grace = config.conntrack_grace;
        let awaited: Vec<(Slot, End, Time)> = self
            .conns
            .iter()
            .filter_map(|(slot, c)| {
                let (end, at) = c.pending_end?;
                (now.saturating_sub(at) >= grace).then_some((slot, end, at))
            })
            .collect();
        let gone: Vec<(Slot, End, Time)> = self
            .conns
            .iter()
            .filter_map(|(slot, c)| {
                let (end, at) = c.ct_end?;
                (now.saturating_sub(at) >= grace).then_some((slot, end, at))
            })
            .collect();
        for (slot, end, at) in awaited.into_iter().chain(gone) {
            self.close(slot, at, end);
        }
        for slot in due {
            let half_closed = self
                .conns
                .get(slot)
                .is_some_and(|c| c.client.fin_seq.is_some() || c.server.fin_seq.is_some());
            self.close(slot, now, if half_closed { End::Fin } else { End::Timeout });
        }
        while let Some(&(at, tuple)) = self.tombstone_order.front() {
            if now.saturating_sub(at) < self.config.tombstone_ttl {
                break;
            }
            self.tombstone_order.pop_front();
            if self.tombstones.get(&tuple) == Some(&at) {
                self.tombstones.remove(&tuple);
            }
        }
    }

    /// Failure detection's part of [`Self::expire`]: SYNs unanswered for the SYN timeout end as
    /// timeouts; ICMP errors about UDP datagrams that settled become attempts; old memories of
    /// timed-out SYNs are forgotten.
    fn expire_failures(&mut self, now: Time) {
        let Some(limit) = self.config.syn_timeout else {
            return;
        };
        let unanswered: Vec<Slot> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.syn_at.is_some_and(|syn| now.saturating_sub(syn) >= limit)
                    && c.synack_at.is_none()
                    && c.established_at.is_none()
                    && c.pending_end.is_none()
                    && c.ct_end.is_none()
            })
            .map(|(slot, _)| slot)
            .collect();
        for slot in unanswered {
            self.close(slot, now, End::Timeout);
        }
        let mut settled: Vec<(UdpKey, UdpPending)> = self
            .udp_pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.at) >= UDP_SETTLE)
            .map(|(k, p)| (*k, *p))
            .collect();
        settled.sort_by_key(|(_, p)| p.at);
        for (key, pending) in settled {
            self.udp_pending.remove(&key);
            let (first, last) = (pending.first, pending.last);
            self.push_attempt(FailedAttempt {
                at: pending.at,
                proto: Proto::Udp,
                reason: FailureReason::Unreachable,
                client: socket(last.src, last.sport),
                dialled: socket(last.dst, last.dport),
                server: (first != last).then(|| socket(first.dst, first.dport)),
                in_interface: None,
                mark: None,
            });
        }
        while let Some(&(at, isn)) = self.failed_syn_order.front() {
            if now.saturating_sub(at) < self.config.tombstone_ttl {
                break;
            }
            self.failed_syn_order.pop_front();
            if self.failed_syns.get(&isn).is_some_and(|(t, _)| *t == at) {
                self.failed_syns.remove(&isn);
            }
        }
    }

    /// Queues the failed attempt `conn` (just closed) was; a timed-out SYN is remembered, so
    /// its retransmissions start nothing.
    fn failed_attempt(&mut self, conn: &Conn, reason: FailureReason, now: Time) {
        let dialled = socket(conn.orig.dst, conn.orig.dport);
        // Where the attempt went after DNAT, as conntrack (or the SYN seen again after NAT)
        // showed; unknown when the SYN never got past the node's rules.
        let server = conn.translated.map(|_| {
            let s = conn.server();
            socket(s.dst, s.dport)
        });
        self.push_attempt(FailedAttempt {
            at: conn.end_at.unwrap_or(now),
            proto: Proto::Tcp,
            reason,
            client: socket(conn.orig.src, conn.orig.sport),
            dialled,
            server,
            in_interface: self.interfaces.get(&conn.syn_ifindex).cloned(),
            mark: None,
        });
        if reason == FailureReason::Timeout
            && let Some(isn) = conn.client.isn
        {
            self.failed_syns.insert(isn, (now, conn.orig));
            self.failed_syn_order.push_back((now, isn));
            while self.failed_syn_order.len() > self.config.max_live.max(16) {
                if let Some((at, isn)) = self.failed_syn_order.pop_front()
                    && self.failed_syns.get(&isn).is_some_and(|(t, _)| *t == at)
                {
                    self.failed_syns.remove(&isn);
                }
            }
        }
    }

    fn push_attempt(&mut self, attempt: FailedAttempt) {
        if self.failed.len() >= PENDING_ATTEMPTS {
            self.failed.pop_front();
            self.failures.add_dropped(1);
        }
        self.failed.push_back(attempt);
    }

    /// A SYN retransmitted by a client whose attempt already timed out (the same initial
    /// sequence number, from the same client port or address): it joins the failed attempt.
    fn retransmits_a_failed_syn(&self, packet: &PacketMeta) -> bool {
        let p = packet.tuple;
        self.config.syn_timeout.is_some()
            && self
                .failed_syns
                .get(&packet.seq)
                .is_some_and(|(_, orig)| orig.sport == p.sport || orig.src == p.src)
    }

    /// An ICMP/ICMPv6 destination unreachable about a UDP datagram (with failure detection on):
    /// after [`UDP_SETTLE`], one [`FailureReason::Unreachable`] attempt per error, whatever
    /// number of interfaces it was seen on.
    pub fn on_udp_unreachable(&mut self, now: Time, error: UdpUnreachable) {
        self.stats.packets += 1;
        if self.config.syn_timeout.is_none() {
            self.stats.packets_unmatched += 1;
            return;
        }
        let key = UdpKey {
            v4: error.tuple.src.is_ipv4(),
            ip_id: error.ip_id,
            sport: error.tuple.sport,
            udp_len: error.udp_len,
        };
        if let Some(pending) = self.udp_pending.get_mut(&key) {
            pending.last = error.tuple;
            return;
        }
        if self.udp_pending.len() >= UDP_PENDING_MAX {
            self.failures.add_dropped(1);
            return;
        }
        self.udp_pending.insert(
            key,
            UdpPending {
                at: now,
                first: error.tuple,
                last: error.tuple,
            },
        );
    }

    /// The failed attempts detected since the last call, oldest first, for the caller to explain
    /// (outside any lock, if it likes) and hand to [`Self::record_failure`].
    pub fn take_failed_attempts(&mut self) -> Vec<FailedAttempt> {
        self.failed.drain(..).collect()
    }

    /// Records an attempt (from [`Self::take_failed_attempts`]) with its explanation.
    pub fn record_failure(
        &mut self,
        attempt: FailedAttempt,
        explanation: Option<FailureExplanation>,
    ) {
        self.failures.record(attempt, explanation, &self.names);
    }

    /// Takes, explains and records the failed attempts detected since the last call.
    pub fn explain_failures(&mut self, explainer: &dyn ExplainFailure) {
        for attempt in self.take_failed_attempts() {
            let explanation = explainer.explain(&attempt);
            self.record_failure(attempt, explanation);
        }
    }

    /// The failure groups and series.
    pub fn failures(&self) -> &FailureTable {
        &self.failures
    }

    /// Interface index → name (the caller reads them; attempts name their incoming interface).
    pub fn set_interface_names(&mut self, names: impl IntoIterator<Item = (u32, String)>) {
        self.interfaces = names.into_iter().collect();
    }

    /// Is `ifindex` named?
    pub fn knows_interface(&self, ifindex: u32) -> bool {
        self.interfaces.contains_key(&ifindex)
    }

    /// Adds what a reader reports that the table cannot see itself.
    pub fn add_reader_losses(
        &mut self,
        ct_events_lost: u64,
        capture_drops: u64,
        capture_packets: u64,
    ) {
        self.stats.ct_events_lost += ct_events_lost;
        self.stats.capture_drops += capture_drops;
        self.stats.capture_packets += capture_packets;
    }

    /// Replaces the names (e.g. the names file was re-read).
    pub fn set_names(&mut self, names: Names) {
        self.names = names;
    }

    /// The names in use.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Live connections, in no particular order.
    pub fn live(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter().map(|(_, conn)| conn)
    }

    /// Recently closed connections, oldest first.
    pub fn closed(&self) -> impl Iterator<Item = &Conn> {
        self.closed.iter()
    }

    /// Counters.
    pub fn stats(&self) -> FlowStats {
        FlowStats {
            live: self.conns.len() as u64,
            ..self.stats
        }
    }

    /// Per workload pair totals.
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// A copy of everything, live connections oldest first.
    pub fn snapshot(&self, now: Time) -> TableSnapshot {
        let mut live: Vec<Conn> = self.live().cloned().collect();
        live.sort_by_key(|c| (c.start, c.id));
        TableSnapshot {
            now,
            live,
            closed: self.closed.iter().cloned().collect(),
            stats: self.stats(),
        }
    }

    fn insert_from_packet(&mut self, now: Time, tuple: Tuple) -> Option<Slot> {
        self.insert_conn(now, tuple)
    }

    /// A new connection known by `orig` (and its reverse); evicts the oldest when full.
    fn insert_conn(&mut self, now: Time, orig: Tuple) -> Option<Slot> {
        self.insert_new(Conn::new(self.next_id, orig, now))
    }

    fn insert_new(&mut self, conn: Conn) -> Option<Slot> {
        while self.conns.len() >= self.config.max_live.max(1) {
            if !self.evict_oldest() {
                break;
            }
        }
        let id = self.next_id;
        let slot = self.conns.insert(conn)?;
        self.next_id += 1;
        self.order.push_back((slot, id));
        if self.order.len() > 2 * self.config.max_live.max(16) {
            let conns = &self.conns;
            self.order
                .retain(|&(slot, id)| conns.get(slot).is_some_and(|c| c.id == id));
        }
        self.stats.connections_seen += 1;
        Some(slot)
    }

    /// Evicts the oldest live connection; `false` when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((slot, id)) = self.order.pop_front() {
            if self.conns.get(slot).is_some_and(|c| c.id == id) {
                self.take_out(slot);
                self.stats.evictions += 1;
                return true;
            }
        }
        false
    }

    /// Folds the connection in `other` into `keep`; the caller then sets `keep`'s tuples.
    fn merge_into(&mut self, keep: Slot, other: Slot) {
        if keep == other {
            return;
        }
        self.forget_isn(other);
        let Some(absorbed) = self.conns.remove(other) else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(keep) {
            conn.absorb(absorbed);
        }
        // Two sightings of one connection: count it once.
        self.stats.connections_seen = self.stats.connections_seen.saturating_sub(1);
    }

    fn record_handshake_if_done(&mut self, slot: Slot) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.handshake_recorded || conn.established_at.is_none() || conn.syn_at.is_none() {
            return;
        }
        conn.handshake_recorded = true;
        let conn = conn.clone();
        self.aggregates.record_handshake(&conn, &self.names);
    }

    /// Closes a connection the packets saw end, unless conntrack has not reported it yet and
    /// the configuration says to wait for it (see [`FlowConfig::conntrack_grace`]).
    fn close_or_await_conntrack(&mut self, slot: Slot, now: Time, end: End) {
        let grace = self.config.conntrack_grace;
        // A reset after the SYN/ACK of a connection conntrack has not reported ESTABLISHED yet:
        // its events can lag the packets; they tell a reset handshake from a reset connection.
        let handshake_reset = |c: &Conn| {
            self.config.syn_timeout.is_some()
                && end.is_reset()
                && c.synack_at.is_some()
                && c.established_at.is_none()
        };
        match self.conns.get_mut(slot) {
            Some(conn) if !grace.is_zero() && (!conn.ct_known() || handshake_reset(conn)) => {
                conn.pending_end.get_or_insert((end, now));
            }
            _ => self.close(slot, now, end),
        }
    }

    /// Removes a connection; its successor, if any, takes over its tuples in the index.
    fn take_out(&mut self, slot: Slot) -> Option<Conn> {
        let successor = self.successor_of(slot);
        self.forget_isn(slot);
        let conn = self.conns.remove(slot)?;
        if let Some(next) = successor {
            self.conns.reveal(next);
        }
        Some(conn)
    }

    /// Ends a connection a new one on the same tuple replaced: as the packets or conntrack saw
    /// it end, else as a timeout.
    fn close_superseded(&mut self, slot: Slot, now: Time) {
        let ended = self.conns.get(slot).and_then(|c| c.ct_end);
        let (end, at) = ended.unwrap_or((End::Timeout, now));
        self.close(slot, at, end);
    }

    /// Ends a connection; one the packets already saw end ends as they saw it.
    fn close(&mut self, slot: Slot, now: Time, end: End) {
        let Some(mut conn) = self.take_out(slot) else {
            return;
        };
        let (end, now) = conn.pending_end.take().unwrap_or((end, now));
        conn.end = end;
        // Never before what it saw: a duration covers the handshake.
        let latest = [conn.syn_at, conn.synack_at, conn.established_at]
            .into_iter()
            .flatten()
            .fold(conn.start, Time::max);
        conn.end_at = Some(now.max(latest));
        // With a successor, the tuples' later events are the successor's: no tombstone.
        if conn.successor.is_none() && conn.ct_known() {
            self.tombstones.insert(conn.orig, now);
            self.tombstone_order.push_back((now, conn.orig));
            while self.tombstone_order.len() > self.config.max_live.max(16) {
                if let Some((at, tuple)) = self.tombstone_order.pop_front()
                    && self.tombstones.get(&tuple) == Some(&at)
                {
                    self.tombstones.remove(&tuple);
                }
            }
        }
        if !conn.handshake_recorded && conn.handshake().is_some() {
            conn.handshake_recorded = true;
            self.aggregates.record_handshake(&conn, &self.names);
        }
        if self.config.syn_timeout.is_some()
            && let Some(reason) = failure_of(&conn)
        {
            conn.failure = Some(reason);
            self.failed_attempt(&conn, reason, now);
        }
        self.aggregates.record_close(&conn, &self.names);
        self.stats.connections_closed += 1;
        if self.closed.len() >= self.config.closed_capacity {
            self.closed.pop_front();
        }
        if self.config.closed_capacity > 0 {
            self.closed.push_back(conn);
        }
    }
}

#[cfg(test)]
mod tests;
