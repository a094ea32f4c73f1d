//! Memory of the pure table with 100,000 live connections (synthetic, each with NAT so four
//! index entries): prints RSS before and after. `cargo run --release -p nfscope-flow --example table_rss`
use std::net::IpAddr;
use std::time::Duration;

use nfscope_flow::{CtEvent, CtKind, FlowConfig, FlowTable, Names, PacketMeta, TcpFlags, Tuple};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let before = rss_kib();
    let mut table = FlowTable::new(FlowConfig::default(), Names::default());
    let started = std::time::Instant::now();
    for i in 0..100_000u32 {
        let client = IpAddr::from((0x0a00_0000u32 + i / 60_000).to_be_bytes());
        let orig = Tuple {
            src: client,
            dst: IpAddr::from([10, 96, 0, 10]),
            sport: (i % 60_000) as u16 + 1024,
            dport: 80,
        };
        let pod = Tuple {
            src: IpAddr::from([10, 244, (i % 200) as u8, 7]),
            dst: client,
            sport: 8080,
            dport: orig.sport,
        };
        let now = Duration::from_secs(1_700_000_000) + Duration::from_micros(u64::from(i));
        table.on_packet(
            now,
            PacketMeta {
                ifindex: 1,
                tuple: orig,
                flags: TcpFlags(TcpFlags::SYN),
                seq: i,
                ack: 0,
                payload_len: 0,
                unreachable: false,
            },
        );
        table.on_conntrack_event(
            now,
            CtEvent {
                kind: CtKind::New,
                id: Some(i),
                proto: 6,
                orig,
                reply: pod,
                counters_orig: None,
                counters_reply: None,
                status: 0,
                tcp_state: None,
            },
        );
    }
    let after = rss_kib();
    println!(
        "live={} rss_before={before} KiB rss_after={after} KiB table≈{} MiB insert={:?}",
        table.stats().live,
        (after - before) / 1024,
        started.elapsed()
    );
}
