//! TCP control packets (SYN, FIN, RST) and ICMP/ICMPv6 destination unreachable errors about TCP
//! packets and UDP datagrams as the table consumes them, and a parser from the bytes an `AF_PACKET`/`SOCK_DGRAM`
//! socket delivers (starting at the IPv4 or IPv6 header).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Tuple;

/// The TCP flag bits the table looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// Is `bit` set?
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// One TCP packet's header facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Interface it was seen on (0 when unknown).
    pub ifindex: u32,
    /// Addresses and ports.
    pub tuple: Tuple,
    /// Flags.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful only with ACK).
    pub ack: u32,
    /// TCP payload length.
    pub payload_len: u32,
    /// An ICMP/ICMPv6 destination unreachable error about the TCP packet described by the other
    /// fields (the quoted header as it was sent: `tuple` and `seq`; no flags), e.g. a REJECT.
    pub unreachable: bool,
}

/// Parses an IPv4 or IPv6 packet carrying TCP; `None` for anything else or a truncated header.
/// IPv6 extension headers are not followed (the capture filter does not pass them either).
pub fn parse_ip_tcp(bytes: &[u8], ifindex: u32) -> Option<PacketMeta> {
    match bytes.first()? >> 4 {
        4 if bytes.get(9) == Some(&1) => parse_icmp_error(bytes, ifindex),
        4 => parse_v4(bytes, ifindex),
        6 if bytes.get(6) == Some(&58) => parse_icmp_error(bytes, ifindex),
        6 => parse_v6(bytes, ifindex),
        _ => None,
    }
}

/// The packet an ICMP destination unreachable error (not "fragmentation needed", which is path
/// MTU discovery) or ICMPv6 destination unreachable quotes: its IP header and the first 8 bytes
/// of its transport header, as every such error carries.
struct Quoted<'a> {
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    /// The IPv4 identification field (NAT keeps it); `None` for IPv6.
    ip_id: Option<u16>,
    l4: &'a [u8],
}

fn icmp_quoted(bytes: &[u8]) -> Option<Quoted<'_>> {
    let (icmp, v4) = match bytes.first()? >> 4 {
        4 => {
            let ihl = usize::from(bytes.first()? & 0x0f) * 4;
            let fragment = u16::from_be_bytes([*bytes.get(6)?, *bytes.get(7)?]) & 0x1fff;
            if ihl < 20 || fragment != 0 || bytes.get(9) != Some(&1) {
                return None;
            }
            (bytes.get(ihl..)?, true)
        }
        6 if bytes.get(6) == Some(&58) => (bytes.get(40..)?, false),
        _ => return None,
    };
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let unreachable = if v4 {
        kind == 3 && code != 4
    } else {
        kind == 1
    };
    if !unreachable {
        return None;
    }
    let quoted = icmp.get(8..)?;
    match (quoted.first()? >> 4, v4) {
        (4, true) => {
            let ihl = usize::from(quoted.first()? & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            Some(Quoted {
                proto: *quoted.get(9)?,
                src: IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(quoted.get(12..16)?).ok()?,
                )),
                dst: IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(quoted.get(16..20)?).ok()?,
                )),
                ip_id: Some(u16::from_be_bytes([*quoted.get(4)?, *quoted.get(5)?])),
                l4: quoted.get(ihl..)?,
            })
        }
        (6, false) => Some(Quoted {
            proto: *quoted.get(6)?,
            src: IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(quoted.get(8..24)?).ok()?,
            )),
            dst: IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(quoted.get(24..40)?).ok()?,
            )),
            ip_id: None,
            l4: quoted.get(40..)?,
        }),
        _ => None,
    }
}

/// An ICMP/ICMPv6 destination unreachable quoting a TCP packet (ports and sequence number).
fn parse_icmp_error(bytes: &[u8], ifindex: u32) -> Option<PacketMeta> {
    let q = icmp_quoted(bytes)?;
    if q.proto != 6 {
        return None;
    }
    let tcp = q.l4;
    Some(PacketMeta {
        ifindex,
        tuple: Tuple {
            src: q.src,
            dst: q.dst,
            sport: u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]),
            dport: u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]),
        },
        flags: TcpFlags::default(),
        seq: u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?),
        ack: 0,
        payload_len: 0,
        unreachable: true,
    })
}

/// An ICMP/ICMPv6 destination unreachable answering a UDP datagram (e.g. port unreachable from a
/// closed port, or a REJECT): the datagram as quoted. The capture sees one error on several
/// interfaces, quoted before and after NAT; `ip_id` and `udp_len` (which NAT keeps) and the
/// source port tell the copies of one error apart from other errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpUnreachable {
    /// Interface it was seen on (0 when unknown).
    pub ifindex: u32,
    /// The quoted datagram's addresses and ports (client → where it was going, at that hop).
    pub tuple: Tuple,
    /// The quoted IPv4 identification; `None` for IPv6.
    pub ip_id: Option<u16>,
    /// The quoted UDP length field.
    pub udp_len: u16,
}

/// Parses an ICMP/ICMPv6 destination unreachable about a UDP datagram; `None` for anything else.
pub fn parse_icmp_udp_error(bytes: &[u8], ifindex: u32) -> Option<UdpUnreachable> {
    let q = icmp_quoted(bytes)?;
    if q.proto != 17 {
        return None;
    }
    let udp = q.l4;
    Some(UdpUnreachable {
        ifindex,
        tuple: Tuple {
            src: q.src,
            dst: q.dst,
            sport: u16::from_be_bytes([*udp.first()?, *udp.get(1)?]),
            dport: u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]),
        },
        ip_id: q.ip_id,
        udp_len: u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]),
    })
}

fn parse_v4(bytes: &[u8], ifindex: u32) -> Option<PacketMeta> {
    let ihl = usize::from(bytes.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
    let fragment = u16::from_be_bytes([*bytes.get(6)?, *bytes.get(7)?]) & 0x1fff;
    if *bytes.get(9)? != 6 || ihl < 20 || fragment != 0 {
        return None;
    }
    let src = IpAddr::V4(Ipv4Addr::from(
        <[u8; 4]>::try_from(bytes.get(12..16)?).ok()?,
    ));
    let dst = IpAddr::V4(Ipv4Addr::from(
        <[u8; 4]>::try_from(bytes.get(16..20)?).ok()?,
    ));
    let l4_len = total.checked_sub(ihl)?;
    parse_tcp(bytes.get(ihl..)?, src, dst, l4_len, ifindex)
}

fn parse_v6(bytes: &[u8], ifindex: u32) -> Option<PacketMeta> {
    let payload = usize::from(u16::from_be_bytes([*bytes.get(4)?, *bytes.get(5)?]));
    if *bytes.get(6)? != 6 {
        return None;
    }
    let src = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(bytes.get(8..24)?).ok()?,
    ));
    let dst = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(bytes.get(24..40)?).ok()?,
    ));
    parse_tcp(bytes.get(40..)?, src, dst, payload, ifindex)
}

fn parse_tcp(
    tcp: &[u8],
    src: IpAddr,
    dst: IpAddr,
    l4_len: usize,
    ifindex: u32,
) -> Option<PacketMeta> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(tcp.get(at..at + 4)?.try_into().ok()?))
    };
    let sport = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dport = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    if data_offset < 20 || tcp.len() < 20 {
        return None;
    }
    Some(PacketMeta {
        ifindex,
        tuple: Tuple {
            src,
            dst,
            sport,
            dport,
        },
        flags: TcpFlags(*tcp.get(13)?),
        seq: word(4)?,
        ack: word(8)?,
        payload_len: u32::try_from(l4_len.saturating_sub(data_offset)).unwrap_or(u32::MAX),
        unreachable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_syn() -> Vec<u8> {
        let mut p = vec![0u8; 40 + 5];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&45u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 96, 0, 10]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&1000u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = TcpFlags::SYN | TcpFlags::FIN;
        p
    }

    #[test]
    fn parses_a_v4_tcp_header_with_payload_length() {
        let meta = parse_ip_tcp(&v4_syn(), 3).expect("parses");
        assert_eq!(meta.tuple.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(meta.tuple.dport, 80);
        assert_eq!(meta.seq, 1000);
        assert_eq!(meta.payload_len, 5);
        assert!(meta.flags.has(TcpFlags::SYN) && !meta.flags.has(TcpFlags::RST));
        assert_eq!(meta.ifindex, 3);
    }

    #[test]
    fn rejects_truncated_fragments_and_other_protocols() {
        let p = v4_syn();
        for cut in 0..40 {
            assert!(parse_ip_tcp(&p[..cut], 0).is_none(), "cut at {cut}");
        }
        let mut udp = p.clone();
        udp[9] = 17;
        assert!(parse_ip_tcp(&udp, 0).is_none());
        let mut fragment = p;
        fragment[7] = 1;
        assert!(parse_ip_tcp(&fragment, 0).is_none());
    }

    #[test]
    fn parses_v6() {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&20u16.to_be_bytes());
        p[6] = 6;
        p[23] = 1;
        p[39] = 2;
        p[40 + 12] = 5 << 4;
        p[40 + 13] = TcpFlags::RST;
        let meta = parse_ip_tcp(&p, 0).expect("parses");
        assert_eq!(meta.tuple.src, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(meta.tuple.dst, "::2".parse::<IpAddr>().unwrap());
        assert!(meta.flags.has(TcpFlags::RST));
        assert_eq!(meta.payload_len, 0);
    }

    #[test]
    fn parses_icmp_and_icmpv6_unreachables_about_tcp() {
        // IPv4: outer header, ICMP port unreachable, the quoted SYN's header and 8 bytes.
        let syn = v4_syn();
        let mut p = vec![0u8; 20 + 8];
        p[0] = 0x45;
        p[9] = 1;
        p[20] = 3;
        p[21] = 3;
        p.extend_from_slice(&syn[..28]);
        let meta = parse_ip_tcp(&p, 4).expect("parses");
        assert!(meta.unreachable);
        assert_eq!(meta.tuple.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(meta.tuple.dst, "10.96.0.10".parse::<IpAddr>().unwrap());
        assert_eq!((meta.tuple.sport, meta.tuple.dport), (40000, 80));
        assert_eq!((meta.seq, meta.flags.0), (1000, 0));
        // Fragmentation needed is path MTU discovery, not an answer to the connection.
        let mut mtu = p.clone();
        mtu[21] = 4;
        assert!(parse_ip_tcp(&mtu, 4).is_none());
        let mut echo = p.clone();
        echo[20] = 0;
        assert!(parse_ip_tcp(&echo, 4).is_none());
        for cut in 0..p.len() {
            assert!(parse_ip_tcp(&p[..cut], 0).is_none(), "cut at {cut}");
        }

        // IPv6: ICMPv6 administratively prohibited about a quoted IPv6 TCP header.
        let mut p = vec![0u8; 40 + 8 + 40 + 8];
        p[0] = 0x60;
        p[6] = 58;
        p[40] = 1;
        p[41] = 1;
        p[48] = 0x60;
        p[48 + 6] = 6;
        p[48 + 23] = 1;
        p[48 + 39] = 2;
        p[88..90].copy_from_slice(&41000u16.to_be_bytes());
        p[90..92].copy_from_slice(&443u16.to_be_bytes());
        p[92..96].copy_from_slice(&77u32.to_be_bytes());
        let meta = parse_ip_tcp(&p, 0).expect("parses");
        assert!(meta.unreachable);
        assert_eq!(meta.tuple.dst, "::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (meta.tuple.sport, meta.tuple.dport, meta.seq),
            (41000, 443, 77)
        );
    }

    #[test]
    fn parses_icmp_errors_about_udp_datagrams_and_only_those() {
        let mut udp = vec![0u8; 28];
        udp[0] = 0x45;
        udp[4..6].copy_from_slice(&4321u16.to_be_bytes());
        udp[9] = 17;
        udp[12..16].copy_from_slice(&[10, 0, 0, 1]);
        udp[16..20].copy_from_slice(&[10, 96, 0, 53]);
        udp[20..22].copy_from_slice(&5000u16.to_be_bytes());
        udp[22..24].copy_from_slice(&53u16.to_be_bytes());
        udp[24..26].copy_from_slice(&40u16.to_be_bytes());
        let mut p = vec![0u8; 20 + 8];
        p[0] = 0x45;
        p[9] = 1;
        p[20] = 3;
        p[21] = 3;
        p.extend_from_slice(&udp);
        let error = parse_icmp_udp_error(&p, 7).expect("parses");
        assert_eq!(error.tuple.dst, "10.96.0.53".parse::<IpAddr>().unwrap());
        assert_eq!((error.tuple.sport, error.tuple.dport), (5000, 53));
        assert_eq!(
            (error.ip_id, error.udp_len, error.ifindex),
            (Some(4321), 40, 7)
        );
        assert!(parse_ip_tcp(&p, 7).is_none(), "not a TCP error");
        // Ports and length are the first 6 bytes of the quoted UDP header; the checksum is not read.
        for cut in 0..p.len() - 2 {
            assert!(parse_icmp_udp_error(&p[..cut], 0).is_none(), "cut at {cut}");
        }
        let mut tcp = p.clone();
        tcp[20 + 8 + 9] = 6;
        assert!(parse_icmp_udp_error(&tcp, 0).is_none());
    }
}
