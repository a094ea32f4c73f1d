//! Conntrack events over netlink: a `NETLINK_NETFILTER` socket joined to the
//! `NFNLGRP_CONNTRACK_NEW` (1), `_UPDATE` (2) and `_DESTROY` (3) multicast groups, and a decoder
//! of the messages (`CTA_TUPLE_ORIG/REPLY`, `CTA_COUNTERS_ORIG/REPLY`, `CTA_ID`, `CTA_STATUS`,
//! `CTA_PROTOINFO_TCP_STATE`) into [`CtEvent`]s.
//!
//! Listening changes nothing on the host. When the socket buffer overflows the kernel drops events
//! and the next `recv` fails with `ENOBUFS`; that is counted as an overrun, never an error.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nfscope_flow::{CtCounters, CtEvent, CtKind, TcpState, Tuple};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_CREATE: u16 = 0x400;
const GROUPS: u32 = 0b111; // NFNLGRP_CONNTRACK_NEW | _UPDATE | _DESTROY

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;

/// A subscription to conntrack events in the namespace it was opened in.
#[derive(Debug)]
pub struct ConntrackEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
    overruns: u64,
}

impl ConntrackEvents {
    /// Opens the socket (needs CAP_NET_ADMIN) with an 8 MiB receive buffer where allowed and a
    /// `timeout` on each receive.
    pub fn open(timeout: Duration) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own exclusively.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size: libc::c_int = 8 << 20;
        if super::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            super::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
        }
        super::set_receive_timeout(&fd, timeout)?;
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = GROUPS;
        // SAFETY: `addr` is a valid sockaddr_nl and the length matches its type.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            buf: vec![0; 256 * 1024],
            overruns: 0,
        })
    }

    /// Waits (at most the timeout) for one datagram and passes each TCP or other event in it to
    /// `each`. Returns the number of events; a timeout or an overrun returns 0.
    pub fn recv(&mut self, each: impl FnMut(CtEvent)) -> io::Result<usize> {
        self.recv_flags(0, each)
    }

    /// Like [`Self::recv`] but never waits: returns 0 at once when nothing is queued. Lets a
    /// reader drain a burst with one wake-up (and one table lock) instead of one per event.
    pub fn recv_nowait(&mut self, each: impl FnMut(CtEvent)) -> io::Result<usize> {
        self.recv_flags(libc::MSG_DONTWAIT, each)
    }

    fn recv_flags(
        &mut self,
        flags: libc::c_int,
        mut each: impl FnMut(CtEvent),
    ) -> io::Result<usize> {
        // SAFETY: the buffer is valid for writes of its full length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                flags,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOBUFS) => {
                    self.overruns += 1;
                    Ok(0)
                }
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(err),
            };
        }
        let len = usize::try_from(n).unwrap_or(0).min(self.buf.len());
        let mut count = 0;
        parse_messages(&self.buf[..len], |event| {
            count += 1;
            each(event);
        });
        Ok(count)
    }

    /// Overruns (`ENOBUFS`: the kernel dropped one or more events) since the last call.
    pub fn take_overruns(&mut self) -> u64 {
        std::mem::take(&mut self.overruns)
    }
}

/// Decodes every conntrack message in one netlink datagram; anything else is skipped.
pub fn parse_messages(mut buf: &[u8], mut each: impl FnMut(CtEvent)) {
    while buf.len() >= 16 {
        let len = u32_ne(buf, 0) as usize;
        if len < 16 || len > buf.len() {
            return;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let flags = u16::from_ne_bytes([buf[6], buf[7]]);
        if kind >> 8 == NFNL_SUBSYS_CTNETLINK {
            let ct_kind = match (kind & 0xff, flags & NLM_F_CREATE != 0) {
                (IPCTNL_MSG_CT_NEW, true) => Some(CtKind::New),
                (IPCTNL_MSG_CT_NEW, false) => Some(CtKind::Update),
                (IPCTNL_MSG_CT_DELETE, _) => Some(CtKind::Destroy),
                _ => None,
            };
            // 16 bytes nlmsghdr + 4 bytes nfgenmsg.
            if let (Some(ct_kind), Some(attrs)) = (ct_kind, buf.get(20..len))
                && let Some(event) = parse_event(ct_kind, attrs)
            {
                each(event);
            }
        }
        buf = buf.get(align4(len)..).unwrap_or_default();
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_ne(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// (type without flag bits, payload) of each attribute.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = buf.get(align4(len)..).unwrap_or_default();
        Some((kind, payload))
    })
}

fn be16(p: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(..2)?.try_into().ok()?))
}

fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

fn be64(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

fn parse_event(kind: CtKind, buf: &[u8]) -> Option<CtEvent> {
    let mut orig = None;
    let mut reply = None;
    let mut event = CtEvent {
        kind,
        id: None,
        proto: 0,
        orig: placeholder(),
        reply: placeholder(),
        counters_orig: None,
        counters_reply: None,
        status: 0,
        tcp_state: None,
    };
    for (attr, payload) in attrs(buf) {
        match attr {
            CTA_TUPLE_ORIG => orig = parse_tuple(payload),
            CTA_TUPLE_REPLY => reply = parse_tuple(payload),
            CTA_STATUS => event.status = be32(payload).unwrap_or(0),
            CTA_ID => event.id = be32(payload),
            CTA_COUNTERS_ORIG => event.counters_orig = parse_counters(payload),
            CTA_COUNTERS_REPLY => event.counters_reply = parse_counters(payload),
            CTA_PROTOINFO => event.tcp_state = parse_tcp_state(payload),
            _ => {}
        }
    }
    let ((proto, orig), (_, reply)) = (orig?, reply?);
    event.proto = proto;
    event.orig = orig;
    event.reply = reply;
    Some(event)
}

fn placeholder() -> Tuple {
    Tuple {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        sport: 0,
        dport: 0,
    }
}

/// `CTA_TUPLE_*`: (protocol number, tuple).
fn parse_tuple(buf: &[u8]) -> Option<(u8, Tuple)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, 0, 0, 0);
    for (attr, payload) in attrs(buf) {
        match attr {
            1 => {
                for (kind, addr) in attrs(payload) {
                    let ip = match kind {
                        1 | 2 => <[u8; 4]>::try_from(addr)
                            .ok()
                            .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                        3 | 4 => <[u8; 16]>::try_from(addr)
                            .ok()
                            .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
                        _ => None,
                    };
                    match kind {
                        1 | 3 => src = ip,
                        2 | 4 => dst = ip,
                        _ => {}
                    }
                }
            }
            2 => {
                for (kind, value) in attrs(payload) {
                    match kind {
                        1 => proto = value.first().copied().unwrap_or(0),
                        2 => sport = be16(value).unwrap_or(0),
                        3 => dport = be16(value).unwrap_or(0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        proto,
        Tuple {
            src: src?,
            dst: dst?,
            sport,
            dport,
        },
    ))
}

fn parse_counters(buf: &[u8]) -> Option<CtCounters> {
    let mut counters = CtCounters::default();
    for (attr, value) in attrs(buf) {
        match attr {
            1 => counters.packets = be64(value)?,
            2 => counters.bytes = be64(value)?,
            3 => counters.packets = u64::from(be32(value)?),
            4 => counters.bytes = u64::from(be32(value)?),
            _ => {}
        }
    }
    Some(counters)
}

/// `CTA_PROTOINFO` → `CTA_PROTOINFO_TCP` → `CTA_PROTOINFO_TCP_STATE`.
fn parse_tcp_state(buf: &[u8]) -> Option<TcpState> {
    let (_, tcp) = attrs(buf).find(|&(kind, _)| kind == 1)?;
    let (_, state) = attrs(tcp).find(|&(kind, _)| kind == 1)?;
    state.first().map(|&s| TcpState::from_kernel(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u16::try_from(4 + payload.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align4(out.len()), 0);
        out
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | 0x8000, &parts.concat())
    }

    fn tuple(kind: u16, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        nested(
            kind,
            &[
                nested(1, &[attr(1, &src), attr(2, &dst)]),
                nested(
                    2,
                    &[
                        attr(1, &[6]),
                        attr(2, &sport.to_be_bytes()),
                        attr(3, &dport.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    fn message(kind: u16, flags: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body = attrs.concat();
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(20 + body.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&[2, 0, 0, 0]);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn decodes_a_destroy_with_nat_counters_and_state() {
        let msg = message(
            IPCTNL_MSG_CT_DELETE,
            0,
            &[
                tuple(CTA_TUPLE_ORIG, [10, 0, 1, 2], [10, 96, 0, 10], 40000, 80),
                tuple(CTA_TUPLE_REPLY, [10, 0, 2, 7], [10, 0, 1, 2], 8080, 40000),
                attr(CTA_ID, &77u32.to_be_bytes()),
                attr(CTA_STATUS, &0x0eu32.to_be_bytes()),
                nested(
                    CTA_COUNTERS_ORIG,
                    &[attr(1, &5u64.to_be_bytes()), attr(2, &400u64.to_be_bytes())],
                ),
                nested(CTA_PROTOINFO, &[nested(1, &[attr(1, &[3])])]),
            ],
        );
        let mut twice = msg.clone();
        twice.extend_from_slice(&message(
            IPCTNL_MSG_CT_NEW,
            NLM_F_CREATE,
            &[
                tuple(CTA_TUPLE_ORIG, [1, 1, 1, 1], [2, 2, 2, 2], 1, 2),
                tuple(CTA_TUPLE_REPLY, [2, 2, 2, 2], [1, 1, 1, 1], 2, 1),
            ],
        ));
        let mut events = Vec::new();
        parse_messages(&twice, |e| events.push(e));
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e.kind, CtKind::Destroy);
        assert_eq!((e.proto, e.id, e.status), (6, Some(77), 0x0e));
        assert_eq!(e.orig.dst, IpAddr::from([10, 96, 0, 10]));
        assert_eq!(
            (e.reply.src, e.reply.sport),
            (IpAddr::from([10, 0, 2, 7]), 8080)
        );
        assert_eq!(
            e.counters_orig,
            Some(CtCounters {
                packets: 5,
                bytes: 400
            })
        );
        assert_eq!(e.counters_reply, None);
        assert_eq!(e.tcp_state, Some(TcpState::Established));
        assert_eq!(events[1].kind, CtKind::New);
    }

    #[test]
    fn truncated_or_garbage_input_yields_nothing_and_never_panics() {
        let msg = message(
            IPCTNL_MSG_CT_NEW,
            0,
            &[tuple(CTA_TUPLE_ORIG, [1, 1, 1, 1], [2, 2, 2, 2], 1, 2)],
        );
        for cut in 0..msg.len() {
            parse_messages(&msg[..cut], |_| {});
        }
        let mut events = 0;
        parse_messages(&msg, |_| events += 1);
        assert_eq!(events, 0, "no reply tuple, no event");
        parse_messages(&[0xff; 64], |_| panic!("garbage decoded"));
    }
}
