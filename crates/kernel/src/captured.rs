//! Tests of the binary decoders over bytes captured from the kernel, committed in
//! `testdata/kernel/` at the repository root (how each file was made: its `SOURCES.md`). They run without
//! root: the x_tables entry walker (`IPT_SO_GET_ENTRIES` / `IP6T_SO_GET_ENTRIES` replies), the
//! nf_tables message decoders with the netlink framing they go through, and the `TPACKET_V3`
//! block walker. Every expected value is what the capture loaded or sent, worked out by hand.
//!
//! [`capture_testdata`] (ignored; root) made the files: it builds namespaces with known rules,
//! sends known traffic, and writes what the kernel answered. Re-running it rewrites them.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use nfscope_ruleset::Family;

use crate::flow::capture::walk_block_bytes;
use crate::netlink::legacy::{GETINFO_LEN, XtChain, XtTable};
use crate::netlink::nft::{self, Count};
use crate::netlink::socket::{DumpEnd, Frame, Message, NLM_F_DUMP, frames, reply_datagram};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/kernel")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    fs::read(path(name)).unwrap_or_else(|e| panic!("testdata/kernel/{name}: {e}"))
}

/// A file of records, each a little-endian `u32` length and that many bytes (datagrams or
/// ring blocks).
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let record = rest.get(4..4 + len).expect("record within the file");
        out.push(record);
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty(), "trailing bytes after the last record");
    out
}

fn count(packets: u64, bytes: u64) -> Count {
    Count { packets, bytes }
}

// ---- x_tables ----------------------------------------------------------------------------

/// The table as captured: the `*_SO_GET_INFO` reply, then the `*_SO_GET_ENTRIES` reply.
fn xt_table(name: &str, family: Family) -> XtTable {
    let bytes = read(name);
    let (info, entries) = bytes.split_at(GETINFO_LEN);
    XtTable::from_replies(
        "filter",
        family,
        info.try_into().expect("84 bytes"),
        entries.to_vec(),
    )
    .expect("a table")
}

fn chain<'a>(chains: &'a [XtChain<'a>], name: &str) -> &'a XtChain<'a> {
    chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no chain {name} in {chains:?}"))
}

#[test]
fn ipv4_entries_decode_into_the_chains_rules_and_counters_that_were_loaded() {
    let table = xt_table("xt-ipv4-filter.bin", Family::Ipv4);
    let chains = table.chains().expect("walks");
    let names: Vec<&str> = chains.iter().map(|c| c.name).collect();
    // Built-in chains in hook order, then the user chain.
    assert_eq!(names, ["INPUT", "FORWARD", "OUTPUT", "NFSCOPE-IN"]);

    // ping -c 3 127.0.0.1: 3 requests and 3 replies of 84 bytes enter INPUT on lo.
    let input = chain(&chains, "INPUT");
    assert_eq!(input.rules.len(), 2);
    assert_eq!(input.rules[0].count, count(6, 504));
    assert_eq!(input.rules[0].comment, Some("ping in"));
    assert_eq!(input.rules[0].standard_target, Some("NFSCOPE-IN"));
    // One SYN (60 bytes: 20 IP + 40 TCP with options) to port 9, dropped.
    assert_eq!(input.rules[1].count, count(1, 60));
    assert_eq!(input.rules[1].comment, None);
    assert_eq!(input.rules[1].standard_target, Some("DROP"));
    // The replies return from NFSCOPE-IN and fall through to the policy.
    assert_eq!(input.policy, Some(count(3, 252)));

    let user = chain(&chains, "NFSCOPE-IN");
    assert_eq!(user.policy, None, "a user chain has no policy");
    assert_eq!(user.rules.len(), 2, "the implicit RETURN is not a rule");
    assert_eq!(user.rules[0].count, count(3, 252), "echo requests");
    assert_eq!(user.rules[0].standard_target, Some("ACCEPT"));
    assert_eq!(user.rules[1].count, count(3, 252), "echo replies");
    assert_eq!(user.rules[1].comment, Some("replies"));
    assert_eq!(user.rules[1].standard_target, Some("RETURN"));

    let forward = chain(&chains, "FORWARD");
    assert!(forward.rules.is_empty());
    assert_eq!(forward.policy, Some(count(0, 0)));
    // OUTPUT: the 6 ICMP packets and the SYN leave through the policy.
    let output = chain(&chains, "OUTPUT");
    assert!(output.rules.is_empty());
    assert_eq!(output.policy, Some(count(7, 564)));
}

#[test]
fn ipv6_entries_decode_with_the_ipv6_layout() {
    let table = xt_table("xt-ipv6-filter.bin", Family::Ipv6);
    let chains = table.chains().expect("walks");
    let names: Vec<&str> = chains.iter().map(|c| c.name).collect();
    assert_eq!(names, ["INPUT", "FORWARD", "OUTPUT"]);
    // ping -6 -c 2 ::1: 2 requests and 2 replies of 104 bytes (40 IPv6 + 8 ICMPv6 + 56).
    let input = chain(&chains, "INPUT");
    assert_eq!(input.rules.len(), 1);
    assert_eq!(input.rules[0].count, count(4, 416));
    assert_eq!(input.rules[0].comment, Some("icmp6 in"));
    assert_eq!(input.rules[0].standard_target, Some("ACCEPT"));
    assert_eq!(input.policy, Some(count(0, 0)));
    assert_eq!(chain(&chains, "FORWARD").policy, Some(count(0, 0)));
    assert_eq!(chain(&chains, "OUTPUT").policy, Some(count(4, 416)));
}

#[test]
fn the_fingerprint_ignores_counters_but_not_rules() {
    let bytes = read("xt-ipv4-filter.bin");
    let (info, entries) = bytes.split_at(GETINFO_LEN);
    let info: &[u8; GETINFO_LEN] = info.try_into().unwrap();
    let table = |entries: Vec<u8>| XtTable::from_replies("filter", Family::Ipv4, info, entries);
    let original = table(entries.to_vec()).unwrap().fingerprint();
    // The first entry's packet counter sits at offset 40 (reply header) + 96.
    let mut recounted = entries.to_vec();
    recounted[40 + 96] ^= 0x55;
    assert_eq!(table(recounted).unwrap().fingerprint(), original);
    // Its destination address (ipt_ip.dst at offset 4) is part of the rule.
    let mut edited = entries.to_vec();
    edited[40 + 4] ^= 0x01;
    assert_ne!(table(edited).unwrap().fingerprint(), original);
}

#[test]
fn truncated_or_corrupted_entries_are_errors_not_panics() {
    let bytes = read("xt-ipv4-filter.bin");
    let (info, entries) = bytes.split_at(GETINFO_LEN);
    let info: &[u8; GETINFO_LEN] = info.try_into().unwrap();
    for cut in 0..entries.len() {
        let err = XtTable::from_replies("filter", Family::Ipv4, info, entries[..cut].to_vec())
            .err()
            .unwrap_or_else(|| panic!("a reply cut at {cut} was taken"));
        let err = err.to_string();
        assert!(
            err.contains("shorter than its header") || err.contains("the table header says"),
            "{err}"
        );
    }
    // A next_offset of 0 in the first entry (offset 40 + 90) cannot be walked.
    let mut bad = entries.to_vec();
    bad[40 + 90] = 0;
    bad[40 + 91] = 0;
    let table = XtTable::from_replies("filter", Family::Ipv4, info, bad).unwrap();
    let err = table.chains().expect_err("malformed");
    assert!(
        err.to_string().contains("malformed entry at offset 0"),
        "{err}"
    );
    // Any single corrupted byte: the walk answers (Ok or an error) without panicking.
    for at in 40..entries.len() {
        let mut flipped = entries.to_vec();
        flipped[at] ^= 0xff;
        let table = XtTable::from_replies("filter", Family::Ipv4, info, flipped).unwrap();
        let _ = table.chains();
        let _ = table.fingerprint();
    }
}

// ---- nf_tables ---------------------------------------------------------------------------

/// Replays a captured reply through the same framing code a live request uses; `each` gets
/// every message. Returns how the dump ended.
fn replay(name: &str, flags: u16, mut each: impl FnMut(&Message<'_>)) -> DumpEnd {
    let bytes = read(name);
    let datagrams = records(&bytes);
    let first: Frame<'_> = frames(datagrams[0])
        .next()
        .expect("a message")
        .expect("framed");
    let mut end = DumpEnd::default();
    for (i, datagram) in datagrams.iter().enumerate() {
        let done = reply_datagram(datagram, first.seq, flags, &mut end, &mut |m| {
            each(m);
            Ok(())
        })
        .expect("a good reply");
        if done {
            assert_eq!(i + 1, datagrams.len(), "{name}: datagrams after the end");
            return end;
        }
    }
    panic!("{name}: the reply never ended");
}

#[test]
fn the_generation_reply_decodes_to_a_generation_id() {
    let mut generation = None;
    replay("nft-getgen.bin", 0, |m| {
        generation = nft::decode_generation(m)
    });
    let generation = generation.expect("NFTA_GEN_ID");
    assert!(
        generation > 0,
        "the capture loaded rules, so transactions happened"
    );
}

#[test]
fn the_chain_dump_names_every_chain_and_the_base_chain_policy_counters() {
    let mut chains = Vec::new();
    let end = replay("nft-getchain.bin", NLM_F_DUMP, |m| {
        let c = nft::decode_chain(m);
        chains.push((
            nft::family_name(c.family),
            c.table.to_owned(),
            c.name.to_owned(),
            c.counters,
        ));
    });
    assert!(!end.interrupted);
    let find = |family: &str, table: &str, name: &str| {
        chains
            .iter()
            .find(|c| c.0 == family && c.1 == table && c.2 == name)
            .unwrap_or_else(|| panic!("no {family} {table} {name} in {chains:?}"))
            .3
    };
    // iptables-nft: every ICMP packet is accepted by a rule and the SYN dropped by one, so
    // nothing reaches INPUT's policy; OUTPUT's policy sees the 6 ICMP packets and the SYN.
    assert_eq!(find("ip", "filter", "INPUT"), Some(count(0, 0)));
    assert_eq!(find("ip", "filter", "OUTPUT"), Some(count(7, 564)));
    // A native base chain created without counters has none.
    assert_eq!(find("inet", "nfscope", "in"), None);
    // iptables-nft-restore creates only the base chains the dump declares.
    assert_eq!(chains.len(), 3, "{chains:?}");
}

type OwnedRule = (String, String, u64, Option<Count>, Option<String>);

fn rules(name: &str) -> Vec<OwnedRule> {
    let mut out = Vec::new();
    replay(name, NLM_F_DUMP, |m| {
        let r = nft::decode_rule(m);
        out.push((
            r.table.to_owned(),
            r.chain.to_owned(),
            r.handle,
            r.counter,
            r.comment.map(str::to_owned),
        ));
    });
    out
}

#[test]
fn iptables_nft_rules_decode_with_counters_comments_and_rising_handles() {
    let rules = rules("nft-getrule-ip-filter-INPUT.bin");
    assert_eq!(rules.len(), 2);
    let (table, chain, first_handle, counter, comment) = &rules[0];
    assert_eq!((table.as_str(), chain.as_str()), ("filter", "INPUT"));
    assert_eq!(*counter, Some(count(6, 504)), "3 pings in, 3 replies in");
    assert_eq!(comment.as_deref(), Some("ping in"));
    assert_eq!(rules[1].3, Some(count(1, 60)), "the dropped SYN");
    assert_eq!(rules[1].4, None);
    assert!(rules[1].2 > *first_handle, "handles rise in rule order");
}

#[test]
fn native_rules_keep_the_first_anonymous_counter_and_the_userdata_comment() {
    let rules = rules("nft-getrule-inet-nfscope-in.bin");
    assert_eq!(rules.len(), 3);
    // `counter name seen`: an object reference, not a counter expression.
    assert_eq!(rules[0].3, None);
    // `counter comment "all in"` at priority 10: the 6 ICMP packets; the SYN was dropped at
    // priority 0 by iptables-nft.
    assert_eq!(rules[1].3, Some(count(6, 504)));
    assert_eq!(rules[1].4.as_deref(), Some("all in"));
    // `ip saddr { … } drop`: an anonymous set, no counter, no comment.
    assert_eq!((rules[2].3, rules[2].4.as_deref()), (None, None));
}

#[test]
fn named_counters_and_sets_decode_from_their_dumps() {
    let mut counters = Vec::new();
    replay("nft-getobj.bin", NLM_F_DUMP, |m| {
        counters.extend(nft::decode_named_counter(m));
    });
    assert_eq!(counters.len(), 1);
    assert_eq!(
        (
            nft::family_name(counters[0].family),
            counters[0].table.as_str(),
            counters[0].name.as_str()
        ),
        ("inet", "nfscope", "seen")
    );
    assert_eq!(counters[0].count, count(6, 504), "ip protocol icmp");

    let mut sets = Vec::new();
    replay("nft-getset.bin", NLM_F_DUMP, |m| {
        sets.extend(nft::decode_named_set(m));
    });
    let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["blocked"], "anonymous sets are left out");
    let mut elements = 0;
    replay("nft-getsetelem-blocked.bin", NLM_F_DUMP, |m| {
        elements += nft::count_elements_in(m);
    });
    assert_eq!(elements, 2, "192.0.2.1 and 192.0.2.2");
}

#[test]
fn a_captured_dump_cut_anywhere_is_an_error_or_incomplete_never_a_panic() {
    let bytes = read("nft-getrule-ip-filter-INPUT.bin");
    let datagram = records(&bytes)[0];
    let seq = frames(datagram).next().unwrap().unwrap().seq;
    for cut in 0..datagram.len() {
        let mut end = DumpEnd::default();
        let mut seen = 0;
        let result = reply_datagram(&datagram[..cut], seq, NLM_F_DUMP, &mut end, &mut |m| {
            let _ = nft::decode_rule(m);
            seen += 1;
            Ok(())
        });
        if let Ok(done) = result {
            assert!(!done || cut == datagram.len(), "a cut dump never completes");
        }
    }
}

// ---- TPACKET_V3 --------------------------------------------------------------------------

/// (source, destination, source port, destination port, TCP flags) of an IP packet.
fn tcp(packet: &[u8]) -> (IpAddr, IpAddr, u16, u16, u8) {
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match packet[0] >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let src: [u8; 4] = packet[12..16].try_into().unwrap();
            let dst: [u8; 4] = packet[16..20].try_into().unwrap();
            let t = &packet[ihl..];
            (src.into(), dst.into(), port(t), port(&t[2..]), t[13])
        }
        6 => {
            let src: [u8; 16] = packet[8..24].try_into().unwrap();
            let dst: [u8; 16] = packet[24..40].try_into().unwrap();
            let t = &packet[40..];
            (src.into(), dst.into(), port(t), port(&t[2..]), t[13])
        }
        v => panic!("IP version {v}"),
    }
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

#[test]
fn ring_blocks_yield_the_tcp_control_packets_that_were_sent() {
    let bytes = read("tpacket-v3-blocks.bin");
    let mut packets = Vec::new();
    let mut last_time = (0, 0);
    for block in records(&bytes) {
        walk_block_bytes(block, &mut |sec, nsec, ifindex, data: &[u8]| {
            assert_eq!(ifindex, 1, "everything went over lo");
            assert!(data.len() <= 160, "snapped to 160 bytes");
            assert!((sec, nsec) >= last_time, "timestamps do not go back");
            last_time = (sec, nsec);
            packets.push(tcp(data));
        });
    }
    // Per family: a connection to port 8080 (SYN, SYN-ACK, the client's FIN, the server's FIN)
    // and one to the closed port 9 (SYN, RST-ACK); on lo each is seen leaving and arriving.
    assert_eq!(packets.len(), 24, "{packets:?}");
    for (v6, lo) in [
        (false, IpAddr::from([127, 0, 0, 1])),
        (true, IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ] {
        let mine: Vec<_> = packets.iter().filter(|p| p.0.is_ipv6() == v6).collect();
        assert_eq!(mine.len(), 12, "{mine:?}");
        assert!(mine.iter().all(|p| p.0 == lo && p.1 == lo), "{mine:?}");
        let with = |flags: u8, sport: Option<u16>, dport: Option<u16>| {
            mine.iter()
                .filter(|p| {
                    p.4 & (FIN | SYN | RST | ACK) == flags
                        && sport.is_none_or(|s| p.2 == s)
                        && dport.is_none_or(|d| p.3 == d)
                })
                .count()
        };
        let syn = mine
            .iter()
            .find(|p| p.4 == SYN && p.3 == 8080)
            .expect("the SYN to 8080");
        let client = syn.2;
        assert_eq!(with(SYN, Some(client), Some(8080)), 2);
        assert_eq!(with(SYN | ACK, Some(8080), Some(client)), 2);
        assert_eq!(with(FIN | ACK, Some(client), Some(8080)), 2);
        assert_eq!(with(FIN | ACK, Some(8080), Some(client)), 2);
        assert_eq!(with(SYN, None, Some(9)), 2);
        assert_eq!(with(RST | ACK, Some(9), None), 2);
    }
}

#[test]
fn a_corrupted_block_is_walked_within_its_bounds() {
    let bytes = read("tpacket-v3-blocks.bin");
    let block = records(&bytes)[0].to_vec();
    let mut seen = 0;
    walk_block_bytes(&block, &mut |_, _, _, _: &[u8]| seen += 1);
    assert!(seen > 0);
    for cut in 0..block.len().min(600) {
        walk_block_bytes(&block[..cut], &mut |_, _, _, _: &[u8]| {});
    }
    // A packet count far beyond the data, and a first-packet offset past the end.
    let mut lying = block.clone();
    lying[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
    let mut more = 0;
    walk_block_bytes(&lying, &mut |_, _, _, _: &[u8]| more += 1);
    assert!(
        more <= seen + 1,
        "stops at the end of the data: {more} vs {seen}"
    );
    let mut far = block;
    far[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(walk_block_bytes(&far, &mut |_, _, _, _: &[u8]| {}), 0);
}

// ---- iptables-nft text --------------------------------------------------------------------

/// The captured table, chain and rule dumps of one family (three requests in one file, told
/// apart by sequence number) assembled into save text, as the reader does live.
fn assembled_text(name: &str, family: Family) -> Result<String, crate::xt::ext::Unsupported> {
    use crate::xt::nft_line::Assembler;
    let bytes = read(name);
    let datagrams = records(&bytes);
    let seq = |d: &[u8]| frames(d).next().expect("a message").expect("framed").seq;
    let mut requests: Vec<(u32, Vec<&[u8]>)> = Vec::new();
    for datagram in datagrams {
        let s = seq(datagram);
        match requests.last_mut() {
            Some((last, group)) if *last == s => group.push(datagram),
            _ => requests.push((s, vec![datagram])),
        }
    }
    assert_eq!(requests.len(), 3, "{name}: tables, chains, rules");
    let replay_group = |i: usize, each: &mut dyn FnMut(&Message<'_>)| {
        let (s, group) = &requests[i];
        let mut end = DumpEnd::default();
        let mut done = false;
        for datagram in group {
            done = reply_datagram(datagram, *s, NLM_F_DUMP, &mut end, &mut |m| {
                each(m);
                Ok(())
            })
            .expect("a good reply");
        }
        assert!(
            done && !end.interrupted,
            "{name}: request {i} ended cleanly"
        );
    };
    let mut tables = Vec::new();
    replay_group(0, &mut |m| {
        if let Some((_, t)) = crate::netlink::socket::attrs(m.attrs).find(|&(k, _)| k == 1) {
            tables.push(crate::netlink::socket::c_str(t).to_owned());
        }
    });
    let mut text = Assembler::new(family, &tables, false);
    replay_group(1, &mut |m| text.add_chain(&nft::decode_chain(m)));
    replay_group(2, &mut |m| text.add_rule(&nft::decode_rule(m)));
    text.finish()
}

fn save_lines(name: &str) -> String {
    let saved = String::from_utf8(read(name)).expect("UTF-8");
    saved
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn native_iptables_nft_expressions_decode_to_the_save_tools_text() {
    // testdata/kernel/nft-native.rules: every native expression iptables-nft 1.8.9 emits
    // (interfaces with `+` and `!`, `! -i +`, masks contiguous or not, `-f`/`! -f`, protocol
    // names and numbers, tcp/udp ports single, ranged, `:hi`, inverted and combined, tcp flags,
    // marks, limits, jumps and gotos) in filter and nat, user chains in creation order.
    let text = assembled_text("nft-native-ip.bin", Family::Ipv4).expect("decodes");
    assert_eq!(text, save_lines("nft-native-ip.save"));
    let text = assembled_text("nft-native-ip6.bin", Family::Ipv6).expect("decodes");
    assert_eq!(text, save_lines("nft-native-ip6.save"));
}

#[test]
fn decoded_text_lays_tables_out_as_the_save_tool_does() {
    let text = assembled_text("nft-native-ip.bin", Family::Ipv4).expect("decodes");
    let heads: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('*') || l.starts_with(':'))
        .collect();
    assert_eq!(
        heads,
        [
            // filter before nat; built-in chains in hook order, FORWARD's DROP policy.
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD DROP [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            // User chains by name, not in the order they were made.
            ":A-EMPTY - [0:0]",
            ":CUSTOM - [0:0]",
            "*nat",
            ":PREROUTING ACCEPT [0:0]",
            // Not in the kernel (the dump declared only PREROUTING and OUTPUT): the save tool
            // prints it anyway.
            ":INPUT ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            ":POSTROUTING ACCEPT [0:0]",
            ":KUBE-MARK-MASQ - [0:0]",
            ":KUBE-SEP-B - [0:0]",
            ":KUBE-SVC-A - [0:0]",
        ]
    );
}

#[test]
fn a_meta_key_the_decoder_does_not_model_is_unsupported_not_guessed() {
    use crate::xt::nft_line::rule_line;
    // The native table's rules: `ip protocol icmp counter name seen` and `ip saddr { 192.0.2.7,
    // 192.0.2.8 } drop` (in inet, `ip …` first compares `meta nfproto`, a key iptables never
    // emits), and `counter comment "all in"` (a userdata comment, which the save tool prints).
    let mut results = Vec::new();
    replay("nft-getrule-inet-nfscope-in.bin", NLM_F_DUMP, |m| {
        let rule = nft::decode_rule(m);
        let mut out = String::new();
        results.push(
            rule_line(Family::Ipv4, rule.chain, rule.exprs, rule.udata, &mut out)
                .map(|()| out)
                .map_err(|e| (e.kind, e.name)),
        );
    });
    assert_eq!(
        results,
        [
            Err(("expression", "meta".to_owned())),
            Ok("-A in -m comment --comment \"all in\"\n".to_owned()),
            Err(("expression", "meta".to_owned())),
        ]
    );
}

// ---- the capture -------------------------------------------------------------------------

fn write_records(name: &str, records: &[Vec<u8>]) {
    let mut out = Vec::new();
    for record in records {
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(record);
    }
    fs::write(path(name), out).unwrap_or_else(|e| panic!("write testdata/kernel/{name}: {e}"));
}

/// Writes every file the tests above read. Run as root:
/// `cargo test -p nfscope-kernel --lib captured::capture_testdata -- --ignored`.
#[test]
#[ignore = "root; rewrites testdata/kernel (see its SOURCES.md)"]
fn capture_testdata() {
    assert!(
        crate::testns::root_or_skip("capture_testdata"),
        "needs root"
    );
    fs::create_dir_all(path("")).unwrap();
    capture_x_tables();
    capture_nf_tables();
    capture_tpacket();
}

fn capture_x_tables() {
    use crate::netlink::legacy::XtSocket;
    let ns = crate::testns::TestNetns::new("capxt").unwrap();
    ns.sh_ok(
        "iptables-legacy-restore <<'EOF'\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
         :OUTPUT ACCEPT [0:0]\n:NFSCOPE-IN - [0:0]\n\
         -A INPUT -i lo -p icmp -m comment --comment \"ping in\" -j NFSCOPE-IN\n\
         -A INPUT -p tcp --dport 9 -j DROP\n\
         -A NFSCOPE-IN -p icmp --icmp-type echo-request -j ACCEPT\n\
         -A NFSCOPE-IN -m comment --comment replies -j RETURN\nCOMMIT\nEOF\n\
         ip6tables-legacy-restore <<'EOF'\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
         :OUTPUT ACCEPT [0:0]\n\
         -A INPUT -p ipv6-icmp -m comment --comment \"icmp6 in\" -j ACCEPT\nCOMMIT\nEOF",
    );
    send_probe_traffic(&ns);
    ns.sh_ok("ping -6 -c 2 -i 0.2 -W 1 ::1 >/dev/null");
    crate::run_in_netns(Some(ns.name()), || {
        for (family, name) in [
            (Family::Ipv4, "xt-ipv4-filter.bin"),
            (Family::Ipv6, "xt-ipv6-filter.bin"),
        ] {
            let sock = XtSocket::open(family).unwrap();
            let info = sock.info_bytes("filter").unwrap().expect("filter exists");
            let table = sock.read_table("filter").unwrap().expect("filter exists");
            let mut bytes = info.to_vec();
            bytes.extend_from_slice(table.entries_reply());
            fs::write(path(name), bytes).unwrap();
        }
    })
    .unwrap();
}

/// Writes `nft-native-{ip,ip6}.{bin,save}` only (the other files stay as they are). Run as
/// root: `cargo test -p nfscope-kernel --lib captured::capture_nft_native -- --ignored`.
#[test]
#[ignore = "root; rewrites testdata/kernel/nft-native-* (see its SOURCES.md)"]
fn capture_nft_native() {
    use crate::netlink::socket::NfSocket;
    assert!(
        crate::testns::root_or_skip("capture_nft_native"),
        "needs root"
    );
    let native = crate::testns::TestNetns::new("capnftx").unwrap();
    for (file, tool, name) in [
        ("nft-native.rules", "iptables-nft", "ip"),
        ("nft-native.ip6.rules", "ip6tables-nft", "ip6"),
    ] {
        let rules = path(file);
        native.sh_ok(&format!("{tool}-restore < {}", rules.display()));
        let saved = native.sh_ok(&format!("{tool}-save"));
        fs::write(path(&format!("nft-native-{name}.save")), saved).unwrap();
    }
    crate::run_in_netns(Some(native.name()), || {
        let mut sock = NfSocket::open().unwrap();
        for (family, name) in [(nft::FAMILY_IP, "ip"), (nft::FAMILY_IP6, "ip6")] {
            sock.tap = Some(Vec::new());
            nft::dump_tables(&mut sock, family).unwrap();
            nft::dump_chains(&mut sock, family, |_| {}).unwrap();
            nft::dump_rules(&mut sock, family, |_| Ok(())).unwrap();
            write_records(&format!("nft-native-{name}.bin"), &sock.tap.take().unwrap());
        }
    })
    .unwrap();
}

/// Three pings to 127.0.0.1 and one SYN to 127.0.0.1:9 (given up after half a second, before
/// the first retransmission).
fn send_probe_traffic(ns: &crate::testns::TestNetns) {
    ns.sh_ok("ping -c 3 -i 0.2 -W 1 127.0.0.1 >/dev/null");
    ns.sh("socat -u OPEN:/dev/null TCP:127.0.0.1:9,connect-timeout=0.5");
}

fn capture_nf_tables() {
    use crate::netlink::socket::NfSocket;
    let ns = crate::testns::TestNetns::new("capnft").unwrap();
    ns.sh_ok(
        "iptables-nft-restore <<'EOF'\n*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -p icmp -m comment --comment \"ping in\" -j ACCEPT\n\
         -A INPUT -p tcp --dport 9 -j DROP\nCOMMIT\nEOF\n\
         nft -f - <<'EOF'\ntable inet nfscope {\n  counter seen { }\n\
           set blocked { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }\n\
           chain in {\n    type filter hook input priority 10;\n\
             ip protocol icmp counter name seen\n    counter comment \"all in\"\n\
             ip saddr { 192.0.2.7, 192.0.2.8 } drop\n  }\n}\nEOF",
    );
    send_probe_traffic(&ns);
    crate::run_in_netns(Some(ns.name()), || {
        let mut sock = NfSocket::open().unwrap();
        let tap = |sock: &mut NfSocket, name: &str, run: &dyn Fn(&mut NfSocket)| {
            sock.tap = Some(Vec::new());
            run(sock);
            write_records(name, &sock.tap.take().unwrap());
        };
        tap(&mut sock, "nft-getgen.bin", &|s| {
            nft::generation(s).unwrap();
        });
        tap(&mut sock, "nft-getchain.bin", &|s| {
            nft::dump_chains(s, nft::FAMILY_ALL, |_| {}).unwrap();
        });
        tap(&mut sock, "nft-getrule-ip-filter-INPUT.bin", &|s| {
            nft::dump_chain_rules(s, nft::FAMILY_IP, "filter", "INPUT", |_| Ok(())).unwrap();
        });
        tap(&mut sock, "nft-getrule-inet-nfscope-in.bin", &|s| {
            nft::dump_chain_rules(s, 1, "nfscope", "in", |_| Ok(())).unwrap();
        });
        tap(&mut sock, "nft-getobj.bin", &|s| {
            nft::dump_named_counters(s).unwrap();
        });
        // The set dump and the element dump are two requests: split the capture by sequence.
        sock.tap = Some(Vec::new());
        nft::dump_set_sizes(&mut sock).unwrap();
        let datagrams = sock.tap.take().unwrap();
        let seq = |d: &Vec<u8>| frames(d).next().unwrap().unwrap().seq;
        let first = seq(&datagrams[0]);
        let (sets, elements): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            datagrams.into_iter().partition(|d| seq(d) == first);
        write_records("nft-getset.bin", &sets);
        write_records("nft-getsetelem-blocked.bin", &elements);
    })
    .unwrap();
}

fn capture_tpacket() {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};
    let ns = crate::testns::TestNetns::new("cappkt").unwrap();
    let blocks = crate::run_in_netns(Some(ns.name()), || {
        let mut capture = crate::flow::PacketCapture::open().unwrap();
        for host in ["127.0.0.1", "::1"] {
            let listener = std::net::TcpListener::bind((host, 8080)).unwrap();
            let client = std::net::TcpStream::connect((host, 8080)).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            drop(client); // FIN from the client
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).unwrap();
            server.flush().unwrap();
            drop(server); // FIN from the server
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect((host, 9)).expect_err("port 9 is closed"); // SYN, RST
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut blocks = Vec::new();
        let mut packets = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while packets < 24 && Instant::now() < deadline {
            if let Some(block) = capture.take_block(Duration::from_millis(500)) {
                packets += walk_block_bytes(&block, &mut |_, _, _, _: &[u8]| {});
                blocks.push(block);
            }
        }
        blocks
    })
    .unwrap();
    write_records("tpacket-v3-blocks.bin", &blocks);
}
