//! Pure state-machine tests with synthetic times.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::event::CtCounters;
use crate::failure::{ExplainFailure, FailedAttempt, FailureExplanation, FailureReason, Proto};
use crate::graph::{self, GraphQuery};
use crate::metrics::{self, SourceInfo};
use crate::packet::UdpUnreachable;
use std::net::SocketAddr;

const CLIENT: &str = "10.0.1.2";
const VIP: &str = "10.96.0.10";
const POD: &str = "10.0.2.7";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn t(ms: u64) -> Time {
    Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        sport,
        dport,
    }
}

fn dialled(sport: u16) -> Tuple {
    tuple(CLIENT, sport, VIP, 80)
}

fn served(sport: u16) -> Tuple {
    tuple(CLIENT, sport, POD, 8080)
}

fn packet(tuple: Tuple, flags: u8, seq: u32, ack: u32, payload_len: u32) -> PacketMeta {
    PacketMeta {
        ifindex: 2,
        tuple,
        flags: TcpFlags(flags),
        seq,
        ack,
        payload_len,
        unreachable: false,
    }
}

fn ct(kind: CtKind, sport: u16, state: Option<TcpState>) -> CtEvent {
    CtEvent {
        kind,
        id: Some(u32::from(sport)),
        proto: 6,
        orig: dialled(sport),
        reply: served(sport).reversed(),
        counters_orig: Some(CtCounters {
            packets: 5,
            bytes: 400,
        }),
        counters_reply: Some(CtCounters {
            packets: 4,
            bytes: 2300,
        }),
        status: 0,
        tcp_state: state,
    }
}

fn names() -> Names {
    Names::parse("10.0.1.0/24 shop/client\n10.0.2.7 shop/web\n10.96.0.10 shop/web-svc\n").unwrap()
}

fn table() -> FlowTable {
    FlowTable::new(FlowConfig::default(), names())
}

const SYN: u8 = TcpFlags::SYN;
const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
const FINACK: u8 = TcpFlags::FIN | TcpFlags::ACK;
const RSTACK: u8 = TcpFlags::RST | TcpFlags::ACK;

/// A full connection through the VIP, each packet seen before DNAT (client veth) and after
/// (pod veth); conntrack reports NEW before the ring delivers the SYN.
fn run_fin_connection(table: &mut FlowTable, sport: u16, up: u32, down: u32) {
    let (cisn, sisn) = (1000, 50_000);
    table.on_conntrack_event(t(1), ct(CtKind::New, sport, Some(TcpState::Handshake)));
    table.on_packet(t(0), packet(dialled(sport), SYN, cisn, 0, 0));
    table.on_packet(t(0), packet(served(sport), SYN, cisn, 0, 0));
    table.on_packet(
        t(2),
        packet(served(sport).reversed(), SYNACK, sisn, cisn + 1, 0),
    );
    table.on_packet(
        t(2),
        packet(dialled(sport).reversed(), SYNACK, sisn, cisn + 1, 0),
    );
    table.on_conntrack_event(t(3), ct(CtKind::Update, sport, Some(TcpState::Established)));
    // Client FIN after sending `up` bytes; server acks everything and sends its own FIN.
    table.on_packet(
        t(50),
        packet(dialled(sport), FINACK, cisn + 1 + up, sisn + 1 + down, 0),
    );
    table.on_packet(
        t(50),
        packet(served(sport), FINACK, cisn + 1 + up, sisn + 1 + down, 0),
    );
    table.on_packet(
        t(51),
        packet(
            served(sport).reversed(),
            FINACK,
            sisn + 1 + down,
            cisn + 2 + up,
            0,
        ),
    );
    table.on_packet(
        t(51),
        packet(
            dialled(sport).reversed(),
            FINACK,
            sisn + 1 + down,
            cisn + 2 + up,
            0,
        ),
    );
    // Conntrack keeps reporting TIME_WAIT etc.; the closed connection must not come back.
    table.on_conntrack_event(t(52), ct(CtKind::Update, sport, Some(TcpState::Closing)));
}

#[test]
fn a_connection_through_a_vip_is_one_connection_with_exact_bytes_and_the_serving_pod() {
    let mut table = table();
    run_fin_connection(&mut table, 40000, 100, 2000);
    assert_eq!(table.live().count(), 0, "closed by the two FINs");
    let conn = table
        .closed()
        .next()
        .expect("one closed connection")
        .clone();
    assert_eq!(table.closed().count(), 1);
    assert_eq!(conn.end, End::Fin);
    assert_eq!(conn.orig, dialled(40000));
    assert_eq!(conn.server().dst, ip(POD), "the pod, not the VIP");
    assert_eq!(conn.payload_client(), Some(100));
    assert_eq!(conn.payload_server(), Some(2000));
    assert_eq!(conn.ct_reply.unwrap().bytes, 2300);
    assert_eq!(
        conn.start,
        t(0),
        "the SYN's time, not the later conntrack event"
    );
    assert_eq!(conn.handshake(), Some(Duration::from_millis(3)));
    assert_eq!(conn.syn_to_synack(), Some(Duration::from_millis(2)));
    assert_eq!(conn.duration(t(999)), Duration::from_millis(51));

    let pair = table.aggregates().pairs().next().unwrap();
    assert_eq!(pair.0.src.display(), "shop/client");
    assert_eq!(pair.0.dst.display(), "shop/web");
    assert_eq!((pair.1.bytes_client, pair.1.bytes_server), (100, 2000));
    assert_eq!(pair.1.ended(End::Fin), 1);
    assert_eq!(
        pair.1.handshake.count, 1,
        "observed once although both sides were seen"
    );

    table.on_conntrack_event(t(60_000), ct(CtKind::Destroy, 40000, None));
    assert_eq!(
        table.live().count(),
        0,
        "destroy of a closed connection is ignored"
    );
    assert_eq!(table.stats().connections_seen, 1);
}

#[test]
fn syns_seen_on_both_sides_before_conntrack_merge_into_one_connection() {
    let mut table = table();
    table.on_packet(t(0), packet(dialled(1), SYN, 7, 0, 0));
    table.on_packet(t(1), packet(served(1), SYN, 7, 0, 0));
    assert_eq!(
        table.live().count(),
        1,
        "the same SYN after DNAT (same sequence number and source) is the same connection"
    );
    table.on_conntrack_event(t(2), ct(CtKind::New, 1, None));
    assert_eq!(table.live().count(), 1);
    let conn = table.live().next().unwrap();
    assert_eq!(conn.syn_at, Some(t(0)));
    assert_eq!(conn.translated, Some(served(1)));
    assert_eq!(
        table.stats().connections_seen,
        1,
        "one connection once merged (seen = closed + live + evicted)"
    );
}

#[test]
fn a_server_reset_counts_the_client_bytes_from_its_ack() {
    let mut table = table();
    table.on_conntrack_event(t(0), ct(CtKind::New, 2, None));
    table.on_packet(t(0), packet(served(2), SYN, 100, 0, 0));
    table.on_packet(t(1), packet(served(2).reversed(), SYNACK, 900, 101, 0));
    table.on_packet(
        t(9),
        packet(served(2).reversed(), RSTACK, 901, 101 + 333, 0),
    );
    let conn = table.closed().next().unwrap();
    assert_eq!(conn.end, End::RstServer);
    assert_eq!(conn.payload_client(), Some(333));
    assert_eq!(conn.payload_server(), Some(0));
    assert_eq!(
        table
            .aggregates()
            .pairs()
            .next()
            .unwrap()
            .1
            .ended(End::RstServer),
        1
    );
}

#[test]
fn a_client_reset_is_the_clients() {
    let mut table = table();
    table.on_packet(t(0), packet(dialled(3), SYN, 5, 0, 0));
    table.on_packet(t(1), packet(dialled(3).reversed(), SYNACK, 10, 6, 0));
    table.on_packet(t(2), packet(dialled(3), RSTACK, 6 + 12, 11 + 40, 0));
    let conn = table.closed().next().unwrap();
    assert_eq!(conn.end, End::RstClient);
    assert_eq!(
        (conn.payload_client(), conn.payload_server()),
        (Some(12), Some(40))
    );
}

#[test]
fn open_connections_stay_open_until_conntrack_destroys_them() {
    let mut table = table();
    table.on_conntrack_event(t(0), ct(CtKind::New, 4, None));
    table.expire(t(3_600_000));
    assert_eq!(
        table.live().count(),
        1,
        "conntrack-backed connections do not idle out"
    );
    table.on_conntrack_event(t(3_600_001), ct(CtKind::Destroy, 4, None));
    let conn = table.closed().next().unwrap();
    assert_eq!(conn.end, End::Timeout);
    assert_eq!(conn.ct_orig.unwrap().bytes, 400);
}

#[test]
fn a_conntrack_only_reset_ends_as_rst() {
    let mut table = table();
    table.on_conntrack_event(t(0), ct(CtKind::New, 5, None));
    table.on_conntrack_event(t(1), ct(CtKind::Update, 5, Some(TcpState::Close)));
    assert_eq!(table.live().count(), 1);
    table.on_conntrack_event(t(10_000), ct(CtKind::Destroy, 5, None));
    assert_eq!(table.closed().next().unwrap().end, End::Rst);
}

#[test]
fn unanswered_syns_time_out_only_after_the_handshake_timeout() {
    let mut table = table();
    table.on_packet(t(0), packet(dialled(6), SYN, 5, 0, 0));
    table.expire(t(29_999));
    assert_eq!(table.live().count(), 1);
    table.expire(t(30_000));
    assert_eq!(table.live().count(), 0);
    assert_eq!(table.closed().next().unwrap().end, End::Timeout);
}

#[test]
fn stray_packets_do_not_create_connections() {
    let mut table = table();
    table.on_packet(t(0), packet(dialled(7), FINACK, 5, 0, 0));
    table.on_packet(t(0), packet(dialled(7), SYNACK, 5, 0, 0));
    assert_eq!(table.live().count(), 0);
    assert_eq!(table.stats().packets_unmatched, 2);
    let mut udp = ct(CtKind::New, 7, None);
    udp.proto = 17;
    table.on_conntrack_event(t(0), udp);
    assert_eq!(table.live().count(), 0);
    assert_eq!(table.stats().ct_events_ignored, 1);
}

#[test]
fn a_full_table_evicts_the_oldest_and_counts_it() {
    let config = FlowConfig {
        max_live: 3,
        closed_capacity: 2,
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Names::default());
    for port in 0..10 {
        table.on_packet(t(u64::from(port)), packet(dialled(port), SYN, 1, 0, 0));
    }
    assert_eq!(table.live().count(), 3);
    assert_eq!(table.stats().evictions, 7);
    let mut ports: Vec<u16> = table.live().map(|c| c.orig.sport).collect();
    ports.sort_unstable();
    assert_eq!(ports, [7, 8, 9], "the newest stay");
    // The evicted ones are gone from the index too: their FINs match nothing.
    table.on_packet(t(20), packet(dialled(0), FINACK, 2, 0, 0));
    assert_eq!(table.stats().packets_unmatched, 1);
    for port in 7..10 {
        table.on_packet(t(30), packet(dialled(port), RSTACK, 2, 0, 0));
    }
    assert_eq!(table.closed().count(), 2, "the closed ring is bounded");
}

#[test]
fn port_reuse_starts_a_new_connection() {
    let mut table = table();
    table.on_packet(t(0), packet(dialled(8), SYN, 5, 0, 0));
    table.on_packet(t(1), packet(dialled(8), FINACK, 6, 0, 0));
    table.on_packet(t(2), packet(dialled(8), SYN, 9_999, 0, 0));
    assert_eq!(table.live().count(), 1);
    assert_eq!(table.closed().count(), 1);
    assert_eq!(table.stats().connections_seen, 2);
}

#[test]
fn node_graph_arcs_add_up_to_one_and_edges_point_at_the_pod() {
    let mut table = table();
    run_fin_connection(&mut table, 40000, 10, 20);
    table.on_packet(t(0), packet(dialled(9), SYN, 5, 0, 0));
    table.on_packet(t(1), packet(dialled(9), RSTACK, 6, 0, 0));
    table.on_conntrack_event(t(2), ct(CtKind::New, 10, None));
    let data = graph::data(&table, &GraphQuery::default());
    let edges = data["edges"].as_array().unwrap();
    let targets: Vec<&str> = edges
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(targets.contains(&"shop/web"), "{targets:?}");
    for node in data["nodes"].as_array().unwrap() {
        let sum: f64 = ["arc__ok", "arc__reset", "arc__timeout"]
            .iter()
            .map(|k| node[*k].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-9, "{node}");
    }
    let fields = graph::fields(&GraphQuery::default());
    let declared: Vec<&str> = fields["nodes_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field_name"].as_str().unwrap())
        .collect();
    for node in data["nodes"].as_array().unwrap() {
        for key in node.as_object().unwrap().keys() {
            assert!(
                declared.contains(&key.as_str()),
                "undeclared node field {key}"
            );
        }
    }
    let filtered = graph::data(
        &table,
        &GraphQuery::from_params([("namespace", "nope")]).expect("valid query"),
    );
    assert!(filtered["edges"].as_array().unwrap().is_empty());
}

#[test]
fn metrics_are_in_seconds_and_labelled_by_workload() {
    let mut table = table();
    run_fin_connection(&mut table, 40000, 10, 20);
    let mut text = String::new();
    metrics::render(
        &table,
        SourceInfo {
            accounting: Some(false),
            ..SourceInfo::default()
        },
        &mut text,
    );
    let labels = "src_namespace=\"shop\",src_workload=\"client\",dst_namespace=\"shop\",dst_workload=\"web\"";
    assert!(
        text.contains(&format!(
            "nfscope_tcp_connections_total{{{labels},end=\"fin\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "nfscope_tcp_bytes_total{{{labels},direction=\"server_to_client\"}} 20"
    )));
    assert!(
        text.contains(&format!(
            "nfscope_tcp_handshake_seconds_sum{{{labels}}} 0.003"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "nfscope_tcp_handshake_seconds_bucket{{{labels},le=\"0.0025\"}} 0"
    )));
    assert!(text.contains(&format!(
        "nfscope_tcp_handshake_seconds_bucket{{{labels},le=\"0.005\"}} 1"
    )));
    assert!(text.contains("nfscope_conntrack_accounting_enabled 0"));
    assert!(!text.contains("40000"), "no ports in labels");
}

#[test]
fn the_pair_limit_bounds_cardinality() {
    let config = FlowConfig {
        max_pairs: 2,
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Names::default());
    for i in 0..5u8 {
        let tuple = Tuple {
            src: IpAddr::from([10, 0, 0, i]),
            ..dialled(1)
        };
        table.on_packet(t(0), packet(tuple, SYN, 1, 0, 0));
        table.on_packet(t(1), packet(tuple, RSTACK, 2, 0, 0));
    }
    assert_eq!(
        table.aggregates().pairs().count(),
        3,
        "two pairs plus other"
    );
    assert_eq!(table.aggregates().overflowed, 3);
}

#[test]
fn a_conntrack_event_later_than_the_fins_completes_the_connection_instead_of_starting_one() {
    let config = FlowConfig {
        conntrack_grace: Duration::from_secs(2),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Names::default());
    // The whole connection as the capture sees it on the client side, before any event.
    table.on_packet(t(0), packet(dialled(4000), TcpFlags::SYN, 100, 0, 0));
    table.on_packet(
        t(1),
        packet(
            dialled(4000).reversed(),
            TcpFlags::SYN | TcpFlags::ACK,
            500,
            101,
            0,
        ),
    );
    table.on_packet(
        t(5),
        packet(
            dialled(4000).reversed(),
            TcpFlags::FIN | TcpFlags::ACK,
            501,
            111,
            0,
        ),
    );
    table.on_packet(
        t(6),
        packet(dialled(4000), TcpFlags::FIN | TcpFlags::ACK, 111, 502, 0),
    );
    assert_eq!(table.live().count(), 1, "waits for conntrack");
    // The lagging events: NEW, an update, and (much later) DESTROY.
    table.on_conntrack_event(t(50), ct(CtKind::New, 4000, Some(TcpState::Handshake)));
    table.on_conntrack_event(t(51), ct(CtKind::Update, 4000, Some(TcpState::Closing)));
    table.on_conntrack_event(t(9000), ct(CtKind::Destroy, 4000, Some(TcpState::Closing)));
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.connections_closed, stats.live),
        (1, 1, 0),
        "one connection, closed once"
    );
    let conn = table.closed().next().unwrap();
    assert_eq!(conn.end, End::Fin);
    assert_eq!(conn.end_at, Some(t(6)), "ended when the packets showed it");
    assert_eq!(
        conn.server().dst,
        ip(POD),
        "counted against the pod, not the VIP"
    );
    assert_eq!(conn.payload_client(), Some(10));

    // Without any conntrack event, the grace ends it as the packets saw it.
    table.on_packet(t(10_000), packet(dialled(4001), TcpFlags::SYN, 7, 0, 0));
    table.on_packet(t(10_001), packet(dialled(4001), TcpFlags::RST, 8, 0, 0));
    table.expire(t(11_000));
    assert_eq!(table.live().count(), 1, "still within the grace");
    table.expire(t(12_001));
    assert_eq!(table.live().count(), 0);
    let conn = table.closed().last().unwrap();
    assert_eq!((conn.end, conn.end_at), (End::RstClient, Some(t(10_001))));
}

#[test]
fn a_late_destroy_of_the_previous_entry_on_a_reused_port_is_ignored() {
    let mut table = table();
    let mut new = ct(CtKind::New, 4100, Some(TcpState::Handshake));
    new.id = Some(2);
    table.on_conntrack_event(t(0), new);
    let mut old_destroy = ct(CtKind::Destroy, 4100, Some(TcpState::Closing));
    old_destroy.id = Some(1);
    table.on_conntrack_event(t(1), old_destroy);
    assert_eq!(table.live().count(), 1, "entry 2 is still open");
    let mut destroy = ct(CtKind::Destroy, 4100, Some(TcpState::Closing));
    destroy.id = Some(2);
    table.on_conntrack_event(t(2), destroy);
    assert_eq!(table.live().count(), 0);
}

#[test]
fn the_destroy_of_the_time_wait_entry_a_new_syn_replaced_does_not_end_the_new_connection() {
    let mut table = table();
    // The old connection's tombstone is long gone; the client reuses the port.
    table.on_packet(t(0), packet(dialled(4200), SYN, 900, 0, 0));
    table.on_conntrack_event(t(1), ct(CtKind::Destroy, 4200, Some(TcpState::Closing)));
    assert_eq!(table.live().count(), 1, "the new connection is still open");
    table.on_conntrack_event(t(2), ct(CtKind::New, 4200, Some(TcpState::Handshake)));
    let stats = table.stats();
    assert_eq!((stats.connections_seen, stats.live), (1, 1));
    let conn = table.live().next().unwrap();
    assert_eq!(conn.server().dst, ip(POD));
}

/// The whole connection as the capture sees it on both veths (before and after DNAT), SYN to
/// both FINs, before conntrack reports any of it: two sightings until NEW joins them.
fn capture_whole_connection(table: &mut FlowTable, sport: u16, cisn: u32, ms: u64) {
    let sisn = 70_000;
    for tuple in [dialled(sport), served(sport)] {
        table.on_packet(t(ms), packet(tuple, SYN, cisn, 0, 0));
    }
    for tuple in [served(sport).reversed(), dialled(sport).reversed()] {
        table.on_packet(t(ms + 1), packet(tuple, SYNACK, sisn, cisn + 1, 0));
        table.on_packet(t(ms + 2), packet(tuple, FINACK, sisn + 201, cisn + 101, 0));
    }
    for tuple in [dialled(sport), served(sport)] {
        table.on_packet(t(ms + 3), packet(tuple, FINACK, cisn + 101, sisn + 202, 0));
    }
}

#[test]
fn the_predecessors_destroy_with_the_same_id_does_not_close_a_connection_seen_twice() {
    // Seen in `flow-load`: the port is reused after the old entry's tombstone is gone, the new
    // entry gets the old one's id, and the capture is ahead of the events. The old entry's
    // DESTROY used to join and close the two sightings of the new connection; the new entry's
    // own NEW then started a conntrack-only connection, counted again at its DESTROY.
    let config = FlowConfig {
        conntrack_grace: Duration::from_secs(2),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Names::default());
    let sport = 4300;
    capture_whole_connection(&mut table, sport, 1_000, 0);
    assert_eq!(
        table.live().count(),
        1,
        "two sightings (before and after DNAT) are one connection waiting for conntrack"
    );
    // The kernel's events for the reused port: DESTROY of the TIME_WAIT entry, then the new
    // entry (same id) through its states.
    table.on_conntrack_event(t(10), ct(CtKind::Destroy, sport, Some(TcpState::Closing)));
    assert_eq!(
        table.stats().connections_closed,
        0,
        "not this connection's end"
    );
    for (kind, state) in [
        (CtKind::New, TcpState::Handshake),
        (CtKind::Update, TcpState::Handshake),
        (CtKind::Update, TcpState::Established),
        (CtKind::Update, TcpState::Closing),
    ] {
        table.on_conntrack_event(t(11), ct(kind, sport, Some(state)));
    }
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.connections_closed, stats.live),
        (1, 1, 0),
        "one connection, closed once when its NEW came"
    );
    let conn = table.closed().next().unwrap();
    assert_eq!((conn.end, conn.end_at), (End::Fin, Some(t(3))));
    assert_eq!(conn.server().dst, ip(POD));
    assert_eq!(
        (conn.payload_client(), conn.payload_server()),
        (Some(100), Some(200))
    );

    // The next reuse of the port: its DESTROY is the tombstone's, no second count.
    capture_whole_connection(&mut table, sport, 9_000, 20_000);
    table.on_conntrack_event(
        t(20_010),
        ct(CtKind::Destroy, sport, Some(TcpState::Closing)),
    );
    table.on_conntrack_event(t(20_011), ct(CtKind::New, sport, Some(TcpState::Handshake)));
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.connections_closed, stats.live),
        (2, 2, 0)
    );
}

#[test]
fn a_port_reused_before_the_capture_caught_up_gives_each_connection_its_own_packets() {
    // Seen in `flow-load`: the client reuses a port within a millisecond, and the events of
    // both connections (the first one's DESTROY included: the new SYN replaced its TIME_WAIT
    // entry) come before the capture delivers the first one's packets. The destroyed entry used
    // to close at once; the second entry then got the first one's packets, and the second one's
    // packets started two more connections (before and after DNAT) that never met conntrack.
    for same_id in [false, true] {
        let config = FlowConfig {
            conntrack_grace: Duration::from_secs(2),
            ..FlowConfig::default()
        };
        let mut table = FlowTable::new(config, Names::default());
        let sport = 4400;
        let event = |kind, id, state| CtEvent {
            id: Some(id),
            ..ct(kind, sport, Some(state))
        };
        let (first, second) = (7, if same_id { 7 } else { 8 });
        for e in [
            event(CtKind::New, first, TcpState::Handshake),
            event(CtKind::Update, first, TcpState::Established),
            event(CtKind::Destroy, first, TcpState::Closing),
            event(CtKind::New, second, TcpState::Handshake),
            event(CtKind::Update, second, TcpState::Established),
        ] {
            table.on_conntrack_event(t(5), e);
        }
        assert_eq!(
            table.stats().connections_closed,
            0,
            "the first waits for its packets"
        );
        capture_whole_connection(&mut table, sport, 1_000, 0);
        assert_eq!(
            table.stats().connections_closed,
            1,
            "the first closed by its FINs"
        );
        capture_whole_connection(&mut table, sport, 5_000, 1);
        table.expire(t(10_000));
        let stats = table.stats();
        assert_eq!(
            (stats.connections_seen, stats.connections_closed, stats.live),
            (2, 2, 0),
            "two connections, each counted once (same id: {same_id})"
        );
        let closed: Vec<&Conn> = table.closed().collect();
        assert_eq!(
            closed
                .iter()
                .map(|c| (c.ct_id, c.syn_at))
                .collect::<Vec<_>>(),
            [(Some(first), Some(t(0))), (Some(second), Some(t(1)))],
            "each entry with its own SYN"
        );
        for conn in closed {
            assert_eq!((conn.end, conn.server().dst), (End::Fin, ip(POD)));
            assert_eq!(
                (conn.payload_client(), conn.payload_server()),
                (Some(100), Some(200))
            );
        }
    }
}

#[test]
fn a_destroyed_entry_whose_packets_never_come_closes_after_the_grace_as_conntrack_saw_it() {
    let config = FlowConfig {
        conntrack_grace: Duration::from_secs(2),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Names::default());
    table.on_conntrack_event(t(0), ct(CtKind::New, 4500, Some(TcpState::Handshake)));
    table.on_conntrack_event(t(100), ct(CtKind::Destroy, 4500, Some(TcpState::Close)));
    table.expire(t(1_000));
    assert_eq!(table.live().count(), 1, "still within the grace");
    table.expire(t(2_100));
    let stats = table.stats();
    assert_eq!((stats.connections_closed, stats.live), (1, 0));
    let conn = table.closed().next().unwrap();
    assert_eq!((conn.end, conn.end_at), (End::Rst, Some(t(100))));
}

/// Issue 17: the SYN as the capture sees it on a bridge port, on the bridge after
/// br_netfilter's DNAT, and on the pod's veth, all before conntrack reports the connection.
#[test]
fn a_syn_seen_on_a_bridge_port_and_after_dnat_on_the_bridge_is_one_connection() {
    let config = FlowConfig {
        conntrack_grace: Duration::from_secs(2),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, names());
    let (sport, cisn, sisn) = (41000, 123_456, 987_654);
    // lan port (before DNAT), br-lan (after DNAT), pod veth (after DNAT).
    for tuple in [dialled(sport), served(sport), served(sport)] {
        table.on_packet(t(0), packet(tuple, SYN, cisn, 0, 0));
    }
    for tuple in [
        served(sport).reversed(),
        dialled(sport).reversed(),
        dialled(sport).reversed(),
    ] {
        table.on_packet(t(1), packet(tuple, SYNACK, sisn, cisn + 1, 0));
    }
    assert_eq!(table.live().count(), 1, "one connection before conntrack");
    for tuple in [dialled(sport), served(sport), served(sport)] {
        table.on_packet(t(10), packet(tuple, FINACK, cisn + 11, sisn + 1, 0));
    }
    for tuple in [served(sport).reversed(), dialled(sport).reversed()] {
        table.on_packet(t(11), packet(tuple, FINACK, sisn + 1, cisn + 12, 0));
    }
    for (kind, state) in [
        (CtKind::New, TcpState::Handshake),
        (CtKind::Update, TcpState::Established),
        (CtKind::Update, TcpState::Closing),
    ] {
        table.on_conntrack_event(t(12), ct(kind, sport, Some(state)));
    }
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.connections_closed, stats.live),
        (1, 1, 0)
    );
    let conn = table.closed().next().unwrap();
    assert_eq!(conn.end, End::Fin);
    assert_eq!(conn.orig, dialled(sport));
    assert_eq!(conn.translated, Some(served(sport)));
    assert_eq!(conn.ct_id, Some(u32::from(sport)));
    assert_eq!(conn.payload_client(), Some(10));
}

/// A SYN the node REJECTs after DNAT is never confirmed: conntrack reports nothing, and the
/// two sightings stay one connection, ended by the packets.
#[test]
fn a_rejected_syn_seen_before_and_after_dnat_is_one_connection_closed_by_the_reset() {
    let config = FlowConfig {
        conntrack_grace: Duration::from_secs(2),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, names());
    let (sport, cisn) = (41001, 5_555);
    table.on_packet(t(0), packet(dialled(sport), SYN, cisn, 0, 0));
    table.on_packet(t(0), packet(served(sport), SYN, cisn, 0, 0));
    // REJECT --reject-with tcp-reset: the reset, de-NATted, goes back to the client.
    table.on_packet(
        t(1),
        packet(dialled(sport).reversed(), RSTACK, 0, cisn + 1, 0),
    );
    table.expire(t(3000));
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.connections_closed, stats.live),
        (1, 1, 0)
    );
    let conn = table.closed().next().unwrap();
    assert_eq!(conn.end, End::RstServer);
    assert_eq!(conn.end_at, Some(t(1)));
    assert_eq!(conn.server().dst, ip(POD), "the pod it was DNATed to");
}

#[test]
fn snat_hairpin_and_ipv6_sightings_join_but_other_connections_do_not() {
    let mut table = table();
    // MASQUERADE: source rewritten, destination kept.
    let out = tuple("10.0.1.9", 33000, "192.0.2.80", 443);
    let masq = tuple("198.51.100.1", 61000, "192.0.2.80", 443);
    table.on_packet(t(0), packet(out, SYN, 42, 0, 0));
    table.on_packet(t(0), packet(masq, SYN, 42, 0, 0));
    // Hairpin: a pod to its own Service, DNAT and MASQUERADE, source port kept.
    let hair = tuple(POD, 50000, VIP, 80);
    let pinned = tuple("10.0.2.1", 50000, POD, 8080);
    table.on_packet(t(0), packet(hair, SYN, 77, 0, 0));
    table.on_packet(t(0), packet(pinned, SYN, 77, 0, 0));
    // IPv6 through a Service.
    let v6 = tuple("fd00::2", 40000, "fd00:96::10", 80);
    let v6_pod = tuple("fd00::2", 40000, "fd00:244::7", 8080);
    table.on_packet(t(0), packet(v6, SYN, 99, 0, 0));
    table.on_packet(t(0), packet(v6_pod, SYN, 99, 0, 0));
    assert_eq!(table.live().count(), 3);
    for (orig, translated) in [(out, masq), (hair, pinned), (v6, v6_pod)] {
        let conn = table.live().find(|c| c.orig == orig).expect("kept");
        assert_eq!(conn.translated, Some(translated));
        assert_eq!(conn.ct_id, None);
    }
    // Answers to the translated tuple land on the same connection.
    table.on_packet(t(1), packet(masq.reversed(), SYNACK, 1, 43, 0));
    let conn = table.live().find(|c| c.orig == out).unwrap();
    assert_eq!(conn.synack_at, Some(t(1)));

    // Another client port to the same server with the same sequence number is another
    // connection, and so is a SYN with another sequence number on a joinable tuple.
    let mut table = self::table();
    table.on_packet(t(0), packet(dialled(1), SYN, 7, 0, 0));
    table.on_packet(t(0), packet(dialled(2), SYN, 7, 0, 0));
    table.on_packet(t(0), packet(served(3), SYN, 7, 0, 0));
    table.on_packet(t(0), packet(served(1), SYN, 8, 0, 0));
    assert_eq!(table.live().count(), 4);
}

/// `flow-load hold`: the table exactly as large as the connections held, the capture ahead of
/// conntrack. Each connection's second sighting used to be a second connection that evicted a
/// real one; conntrack's next event then re-created the evicted one, counted as seen again.
#[test]
fn a_table_sized_to_the_connections_holds_them_all_with_the_capture_ahead() {
    let n: u16 = 500;
    let config = FlowConfig {
        max_live: usize::from(n),
        conntrack_grace: Duration::from_secs(2),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, names());
    for sport in 0..n {
        let cisn = 1_000 + u32::from(sport) * 7_919;
        table.on_packet(t(0), packet(dialled(sport), SYN, cisn, 0, 0));
        table.on_packet(t(0), packet(served(sport), SYN, cisn, 0, 0));
        table.on_packet(
            t(1),
            packet(served(sport).reversed(), SYNACK, 9, cisn + 1, 0),
        );
        table.on_packet(
            t(1),
            packet(dialled(sport).reversed(), SYNACK, 9, cisn + 1, 0),
        );
    }
    for sport in 0..n {
        table.on_conntrack_event(t(5), ct(CtKind::New, sport, Some(TcpState::Handshake)));
        table.on_conntrack_event(t(5), ct(CtKind::Update, sport, Some(TcpState::Established)));
    }
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.evictions, stats.live),
        (u64::from(n), 0, u64::from(n))
    );
}

/// Conntrack's events are stamped when read (in batches), packets by the kernel: an
/// ESTABLISHED read after the FINs were captured made the handshake longer than the duration.
#[test]
fn a_duration_covers_its_handshake_when_conntrack_is_read_late() {
    let mut table = table();
    let (sport, cisn, sisn) = (42000, 10, 20);
    table.on_conntrack_event(t(5), ct(CtKind::New, sport, Some(TcpState::Handshake)));
    table.on_packet(t(0), packet(dialled(sport), SYN, cisn, 0, 0));
    table.on_packet(
        t(1),
        packet(dialled(sport).reversed(), SYNACK, sisn, cisn + 1, 0),
    );
    // The ESTABLISHED event is read 40 ms after the client's FIN passed.
    table.on_conntrack_event(
        t(50),
        ct(CtKind::Update, sport, Some(TcpState::Established)),
    );
    table.on_packet(t(10), packet(dialled(sport), FINACK, cisn + 1, sisn + 1, 0));
    table.on_packet(
        t(11),
        packet(dialled(sport).reversed(), FINACK, sisn + 1, cisn + 2, 0),
    );
    let conn = table.closed().next().expect("closed by the FINs");
    let (handshake, duration) = (conn.handshake().unwrap(), conn.duration(t(100)));
    assert!(handshake <= duration, "{handshake:?} > {duration:?}");
    assert_eq!(conn.end_at, Some(t(11)));
    assert_eq!(conn.established_at, Some(t(10)), "done by the client's FIN");

    // A connection ended by conntrack alone ends no earlier than its handshake.
    let mut table = self::table();
    table.on_conntrack_event(t(0), ct(CtKind::New, 1, Some(TcpState::Handshake)));
    table.on_packet(t(0), packet(dialled(1), SYN, 1, 0, 0));
    table.on_packet(t(90), packet(dialled(1).reversed(), SYNACK, 2, 2, 0));
    table.on_conntrack_event(t(80), ct(CtKind::Destroy, 1, Some(TcpState::Close)));
    let conn = table.closed().next().expect("destroyed");
    assert!(conn.handshake().unwrap() <= conn.duration(t(100)));
}

fn unreachable(tuple: Tuple, seq: u32) -> PacketMeta {
    PacketMeta {
        unreachable: true,
        ..packet(tuple, 0, seq, 0, 0)
    }
}

/// `REJECT` (ICMP port unreachable, kube-proxy's Service without endpoints and kube-router's
/// policies alike): conntrack never confirms the SYN, so only the packets can end the attempt.
/// It used to stay open, then end as a timeout, twice (before and after DNAT).
#[test]
fn an_icmp_rejected_syn_is_one_connection_ended_unreachable_not_a_timeout() {
    let config = FlowConfig {
        conntrack_grace: Duration::from_secs(2),
        ..FlowConfig::default()
    };
    for quoted in [dialled(43000), served(43000)] {
        let mut table = FlowTable::new(config.clone(), names());
        // lan port, then br-lan after DNAT; rejected in FORWARD.
        table.on_packet(t(0), packet(dialled(43000), SYN, 31, 0, 0));
        table.on_packet(t(0), packet(served(43000), SYN, 31, 0, 0));
        // The error, on br-lan and on the lan port.
        table.on_packet(t(1), unreachable(quoted, 31));
        table.on_packet(t(1), unreachable(dialled(43000), 31));
        table.expire(t(2500));
        let stats = table.stats();
        assert_eq!(
            (stats.connections_seen, stats.connections_closed, stats.live),
            (1, 1, 0),
            "quoting {quoted:?}"
        );
        let conn = table.closed().next().unwrap();
        assert_eq!((conn.end, conn.end_at), (End::Unreachable, Some(t(1))));
        assert!(table.expire_and_count_timeouts(t(60_000)) == 0);
    }

    // An error about a segment of an answered connection, or another SYN, ends nothing.
    let mut table = table();
    run_half_open(&mut table, 43001);
    table.on_packet(t(5), unreachable(dialled(43001), 999));
    table.on_packet(t(5), unreachable(dialled(43002), 1));
    assert_eq!(table.live().count(), 1);
    assert_eq!(table.stats().packets_unmatched, 2);
}

fn run_half_open(table: &mut FlowTable, sport: u16) {
    table.on_packet(t(0), packet(dialled(sport), SYN, 1, 0, 0));
    table.on_packet(t(1), packet(dialled(sport).reversed(), SYNACK, 5, 2, 0));
}

impl FlowTable {
    /// Expires at `now`; how many connections that ended as timeouts.
    fn expire_and_count_timeouts(&mut self, now: Time) -> usize {
        self.expire(now);
        self.closed().filter(|c| c.end == End::Timeout).count()
    }
}

/// The demo lab: a LAN client behind the node's bridge to a Service whose pods are reached
/// through MASQUERADE. The capture sees the SYN three ways: as sent (lan port), after DNAT
/// (on the bridge, br_netfilter) and after DNAT and SNAT (pod veth). Conntrack reports only the
/// first and the last; the middle one made an "open" twin that never got a handshake.
#[test]
fn a_syn_seen_between_dnat_and_snat_is_the_same_connection_in_either_order() {
    let node = "10.0.2.1";
    let between = |sport: u16| tuple(CLIENT, sport, POD, 8080);
    let masq = |sport: u16| tuple(node, sport + 1000, POD, 8080);
    let event = |kind, sport: u16, state| CtEvent {
        reply: masq(sport).reversed(),
        ..ct(kind, sport, Some(state))
    };
    for conntrack_first in [true, false] {
        let config = FlowConfig {
            conntrack_grace: Duration::from_secs(2),
            ..FlowConfig::default()
        };
        let mut table = FlowTable::new(config, names());
        let (sport, cisn, sisn) = (44000, 600, 900);
        if conntrack_first {
            table.on_conntrack_event(t(3), event(CtKind::New, sport, TcpState::Handshake));
            table.on_conntrack_event(t(3), event(CtKind::Update, sport, TcpState::Established));
        }
        for tuple in [dialled(sport), between(sport), masq(sport)] {
            table.on_packet(t(0), packet(tuple, SYN, cisn, 0, 0));
        }
        for tuple in [
            masq(sport).reversed(),
            dialled(sport).reversed(),
            dialled(sport).reversed(),
        ] {
            table.on_packet(t(1), packet(tuple, SYNACK, sisn, cisn + 1, 0));
        }
        if !conntrack_first {
            table.on_conntrack_event(t(3), event(CtKind::New, sport, TcpState::Handshake));
            table.on_conntrack_event(t(3), event(CtKind::Update, sport, TcpState::Established));
        }
        // The server closes first, then the client (every copy of each FIN).
        for tuple in [
            masq(sport).reversed(),
            dialled(sport).reversed(),
            dialled(sport).reversed(),
        ] {
            table.on_packet(t(5), packet(tuple, FINACK, sisn + 101, cisn + 41, 0));
        }
        for tuple in [dialled(sport), between(sport), masq(sport)] {
            table.on_packet(t(6), packet(tuple, FINACK, cisn + 41, sisn + 102, 0));
        }
        table.expire(t(10_000));
        let stats = table.stats();
        assert_eq!(
            (stats.connections_seen, stats.connections_closed, stats.live),
            (1, 1, 0),
            "conntrack first: {conntrack_first}"
        );
        let conn = table.closed().next().unwrap();
        assert_eq!(conn.end, End::Fin);
        assert_eq!(conn.translated, Some(masq(sport)));
        assert_eq!(conn.server().dst, ip(POD));
        assert_eq!(
            (conn.payload_client(), conn.payload_server()),
            (Some(40), Some(100))
        );
    }
}

#[test]
fn the_sequence_number_index_holds_only_unanswered_connections() {
    let mut table = table();
    for sport in 0..50u16 {
        let cisn = 10_000 + u32::from(sport);
        table.on_packet(t(0), packet(dialled(sport), SYN, cisn, 0, 0));
        if sport % 2 == 0 {
            table.on_packet(
                t(1),
                packet(dialled(sport).reversed(), SYNACK, 5, cisn + 1, 0),
            );
        }
    }
    assert_eq!(table.live().count(), 50);
    assert_eq!(
        table.syn_isns.len(),
        25,
        "answered connections left the index"
    );
    for sport in 0..50u16 {
        table.on_packet(
            t(2),
            packet(dialled(sport), RSTACK, 10_001 + u32::from(sport), 0, 0),
        );
    }
    assert!(
        table.syn_isns.is_empty(),
        "closed connections left the index"
    );
}

fn failing_table() -> FlowTable {
    let config = FlowConfig {
        conntrack_grace: Duration::from_secs(2),
        syn_timeout: Some(Duration::from_secs(3)),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, names());
    table.set_interface_names([(2, "lan0".to_owned())]);
    table
}

fn sock(ip_: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(ip_), port)
}

/// Nothing listening on the pod: the SYN passed the rules (conntrack confirmed it, with its
/// DNAT), the pod answered with a RST. Refused, the server known, one record in the flows.
#[test]
fn a_syn_answered_by_a_reset_is_a_refused_attempt_with_its_server() {
    let mut table = failing_table();
    table.on_packet(t(0), packet(dialled(45000), SYN, 77, 0, 0));
    table.on_packet(t(0), packet(served(45000), SYN, 77, 0, 0));
    table.on_packet(t(1), packet(served(45000).reversed(), RSTACK, 0, 78, 0));
    table.on_packet(t(1), packet(dialled(45000).reversed(), RSTACK, 0, 78, 0));
    // Conntrack speaks after the packets: the attempt waited for it.
    assert!(table.take_failed_attempts().is_empty());
    table.on_conntrack_event(t(5), ct(CtKind::New, 45000, Some(TcpState::Handshake)));
    let attempts = table.take_failed_attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let a = &attempts[0];
    assert_eq!((a.reason, a.proto), (FailureReason::Refused, Proto::Tcp));
    assert_eq!(a.client, sock(CLIENT, 45000));
    assert_eq!(a.dialled, sock(VIP, 80));
    assert_eq!(a.server, Some(sock(POD, 8080)));
    assert_eq!(a.in_interface.as_deref(), Some("lan0"));
    assert_eq!(a.at, t(1));
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.connections_closed, stats.live),
        (1, 1, 0)
    );
    let conn = table.closed().next().unwrap();
    assert_eq!(
        (conn.end, conn.failure),
        (End::RstServer, Some(FailureReason::Refused))
    );
}

#[test]
fn an_icmp_rejected_syn_is_a_refused_attempt_once() {
    let mut table = failing_table();
    table.on_packet(t(0), packet(dialled(45001), SYN, 31, 0, 0));
    table.on_packet(t(0), packet(served(45001), SYN, 31, 0, 0));
    table.on_packet(t(1), unreachable(served(45001), 31));
    table.on_packet(t(1), unreachable(dialled(45001), 31));
    table.expire(t(2500));
    let attempts = table.take_failed_attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].reason, FailureReason::Refused);
    assert_eq!(attempts[0].dialled, sock(VIP, 80));
    assert_eq!(
        attempts[0].server,
        Some(sock(POD, 8080)),
        "the REJECT saw it after DNAT"
    );
    table.expire(t(60_000));
    assert!(table.take_failed_attempts().is_empty());
}

/// DROP: the client retransmits its SYN (1 s, 3 s, 7 s); after the SYN timeout the attempt
/// ends as a timeout, once, and the retransmissions start nothing.
#[test]
fn an_unanswered_syn_times_out_once_after_the_syn_timeout() {
    let mut table = failing_table();
    for at in [0, 1_000] {
        table.on_packet(t(at), packet(dialled(45002), SYN, 500, 0, 0));
    }
    table.expire(t(2_999));
    assert!(table.take_failed_attempts().is_empty());
    assert_eq!(table.live().count(), 1);
    table.expire(t(3_000));
    let attempts = table.take_failed_attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].reason, attempts[0].server),
        (FailureReason::Timeout, None)
    );
    for at in [3_001, 7_000, 15_000] {
        table.on_packet(t(at), packet(dialled(45002), SYN, 500, 0, 0));
        table.expire(t(at + 4_000));
    }
    assert!(table.take_failed_attempts().is_empty());
    let stats = table.stats();
    assert_eq!(
        (stats.connections_seen, stats.connections_closed, stats.live),
        (1, 1, 0)
    );
    let conn = table.closed().next().unwrap();
    assert_eq!(
        (conn.end, conn.failure),
        (End::Timeout, Some(FailureReason::Timeout))
    );
    // A new attempt from the same port (another sequence number) is a connection of its own.
    table.on_packet(t(20_000), packet(dialled(45002), SYN, 9_000, 0, 0));
    assert_eq!(table.live().count(), 1);
}

/// A reset after the SYN/ACK is a failed handshake only when conntrack never reported the
/// connection ESTABLISHED; its events may come after the reset.
#[test]
fn a_reset_during_the_handshake_is_a_reset_attempt_and_after_it_is_not() {
    for established in [false, true] {
        let mut table = failing_table();
        table.on_conntrack_event(t(0), ct(CtKind::New, 45003, Some(TcpState::Handshake)));
        table.on_packet(t(0), packet(dialled(45003), SYN, 10, 0, 0));
        table.on_packet(t(1), packet(dialled(45003).reversed(), SYNACK, 90, 11, 0));
        table.on_packet(t(2), packet(dialled(45003).reversed(), RSTACK, 91, 11, 0));
        assert_eq!(table.live().count(), 1, "waits for conntrack");
        let state = if established {
            TcpState::Established
        } else {
            TcpState::Close
        };
        table.on_conntrack_event(t(3), ct(CtKind::Update, 45003, Some(state)));
        table.expire(t(10_000));
        let attempts = table.take_failed_attempts();
        let conn = table.closed().next().unwrap();
        assert_eq!(conn.end, End::RstServer);
        if established {
            assert!(attempts.is_empty(), "{attempts:?}");
            assert_eq!(conn.failure, None);
        } else {
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].reason, FailureReason::Reset);
            assert_eq!(attempts[0].server, Some(sock(POD, 8080)));
        }
    }
}

#[test]
fn without_failure_detection_nothing_is_queued() {
    let mut table = table();
    table.on_packet(t(0), packet(dialled(45004), SYN, 1, 0, 0));
    table.on_packet(t(1), packet(dialled(45004).reversed(), RSTACK, 0, 2, 0));
    table.on_udp_unreachable(t(1), udp_error(dialled(45005), 1));
    table.expire(t(5_000));
    assert!(table.take_failed_attempts().is_empty());
    assert_eq!(table.closed().next().unwrap().failure, None);
}

fn udp_error(tuple: Tuple, ip_id: u16) -> UdpUnreachable {
    UdpUnreachable {
        ifindex: 3,
        tuple,
        ip_id: Some(ip_id),
        udp_len: 40,
    }
}

/// A UDP datagram to a Service whose pod has no socket on the port: the pod's port
/// unreachable is seen on its veth (quoting the datagram after DNAT) and again on the client's
/// side (NAT undone), twice there on a bridge. One attempt, to the dialled VIP, served by the pod.
#[test]
fn copies_of_one_icmp_error_about_a_udp_datagram_are_one_unreachable_attempt() {
    let mut table = failing_table();
    let dns = |sport| tuple(CLIENT, sport, VIP, 53);
    let pod = |sport| tuple(CLIENT, sport, POD, 5353);
    table.on_udp_unreachable(t(0), udp_error(pod(5000), 11));
    table.on_udp_unreachable(t(0), udp_error(dns(5000), 11));
    table.on_udp_unreachable(t(0), udp_error(dns(5000), 11));
    // Another datagram of the same client port: another error, another attempt.
    table.on_udp_unreachable(t(100), udp_error(dns(5000), 12));
    table.expire(t(400));
    assert!(table.take_failed_attempts().is_empty(), "still settling");
    table.expire(t(1_000));
    let attempts = table.take_failed_attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let a = &attempts[0];
    assert_eq!(
        (a.proto, a.reason),
        (Proto::Udp, FailureReason::Unreachable)
    );
    assert_eq!((a.client, a.dialled), (sock(CLIENT, 5000), sock(VIP, 53)));
    assert_eq!(a.server, Some(sock(POD, 5353)));
    assert_eq!(attempts[1].server, None, "seen once, not translated");
    assert_eq!(table.live().count(), 0, "UDP makes no TCP connection");
}

/// The graph counts a failed attempt once, as a failure (not also as a reset or a timeout),
/// with the explanation in the edge's detail; the metric has it with its cause.
#[test]
fn failures_reach_the_graph_once_and_the_metric_with_their_cause() {
    struct Policy;
    impl ExplainFailure for Policy {
        fn explain(&self, a: &FailedAttempt) -> Option<FailureExplanation> {
            Some(FailureExplanation {
                trace_json: std::sync::Arc::from("{}"),
                explanation: format!("no NetworkPolicy admits {} to shop/web", a.client.ip()),
                cause: "networkpolicy".to_owned(),
            })
        }
    }
    let mut table = failing_table();
    run_fin_connection(&mut table, 46000, 10, 10);
    table.on_packet(t(100), packet(dialled(46001), SYN, 5, 0, 0));
    table.on_packet(t(100), packet(served(46001), SYN, 5, 0, 0));
    table.on_conntrack_event(t(100), ct(CtKind::New, 46001, Some(TcpState::Handshake)));
    table.on_packet(t(101), packet(served(46001).reversed(), RSTACK, 0, 6, 0));
    table.on_packet(t(200), packet(dialled(46002), SYN, 9, 0, 0));
    table.expire(t(10_000));
    table.explain_failures(&Policy);
    let stats = table.failures().stats();
    assert_eq!((stats.recorded, stats.groups), (2, 2));
    let doc = graph::data(&table, &GraphQuery::default());
    let edges = doc["edges"].as_array().unwrap();
    let web = edges
        .iter()
        .find(|e| e["target"] == "shop/web")
        .expect("an edge to the pod");
    assert_eq!(web["detail__failures"], 1, "{web:#}");
    assert_eq!(
        web["detail__resets"], 0,
        "the refused attempt is not also a reset"
    );
    assert_eq!(web["color"], "red");
    assert!(
        web["detail__failure"]
            .as_str()
            .unwrap()
            .contains("no NetworkPolicy")
    );
    for node in doc["nodes"].as_array().unwrap() {
        let arcs: f64 = ["arc__ok", "arc__reset", "arc__timeout", "arc__failed"]
            .iter()
            .map(|k| node[*k].as_f64().unwrap())
            .sum();
        assert!((arcs - 1.0).abs() < 1e-9, "{node:#}");
    }
    let svc = edges
        .iter()
        .find(|e| e["target"] == "shop/web-svc")
        .unwrap();
    assert_eq!(
        (svc["detail__failures"].as_u64(), svc["mainStat"].as_str()),
        (Some(1), Some("1 conns"))
    );
    let mut text = String::new();
    metrics::render(&table, SourceInfo::default(), &mut text);
    assert!(
        text.contains(r#"nfscope_connection_failures_total{reason="refused",src_namespace="shop",src_workload="client",dst_namespace="shop",dst_workload="web",cause="networkpolicy"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"nfscope_connection_failures_total{reason="timeout",src_namespace="shop",src_workload="client",dst_namespace="shop",dst_workload="web-svc",cause="networkpolicy"} 1"#),
        "{text}"
    );
    assert!(text.contains("nfscope_flow_failure_groups 2"), "{text}");
}
