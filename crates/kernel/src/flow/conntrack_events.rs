//! Conntrack events over netlink: a `NETLINK_NETFILTER` socket joined to the
//! `NFNLGRP_CONNTRACK_NEW` (1), `_UPDATE` (2) and `_DESTROY` (3) multicast groups, and a decoder
//! of the messages (`CTA_TUPLE_ORIG/REPLY`, `CTA_COUNTERS_ORIG/REPLY`, `CTA_ID`, `CTA_STATUS`,
//! `CTA_PROTOINFO_TCP_STATE`) into [`CtEvent`]s.
//!
//! Listening changes nothing on the host. When the socket buffer overflows the kernel drops events
//! and the next `recv` fails with `ENOBUFS`; that is counted as an overrun, never an error.
//!
//! Cost: a busy node sends several events per TCP connection (NEW, one UPDATE per state change:
//! SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, then DESTROY), one datagram
//! each. A classic-BPF filter on the socket ([`filter_program`]) drops, inside the kernel and
//! before they are queued, the UPDATEs the flow table does nothing with: all but the ones that
//! report ESTABLISHED (the handshake's final ACK) or CLOSE (a reset). Destroy events carry the
//! final TCP state themselves. What passes is read up to [`DATAGRAMS_PER_CALL`] datagrams per
//! `recvmmsg` call.
//!
//! A second kind of subscription, [`ConntrackEvents::open_new_only`], joins the NEW group only
//! (with [`new_only_filter`]): one event per new connection, what `serve` counts Service
//! connections from when the flow monitor is off.
//!
//! The socket, the batching and the framing are the crate's one netlink stack
//! (`crate::netlink::socket`); this module owns the filter program and the decoder.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nfscope_flow::{CtCounters, CtEvent, CtKind, TcpState, Tuple};

use crate::netlink::socket::{
    NFNL_ATTRS_AT, NLM_F_CREATE, Subscription, attrs, be_u16, be_u32, be_u64, frames,
};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const GROUPS: u32 = 0b111; // NFNLGRP_CONNTRACK_NEW | _UPDATE | _DESTROY
const GROUP_NEW: u32 = 0b001; // NFNLGRP_CONNTRACK_NEW only

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
/// `CTA_PROTOINFO_TCP` inside `CTA_PROTOINFO`, and `CTA_PROTOINFO_TCP_STATE` inside that.
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
/// `enum tcp_conntrack` values the filter lets through in UPDATE events.
const TCP_CONNTRACK_ESTABLISHED: u32 = 3;
const TCP_CONNTRACK_CLOSE: u32 = 8;

/// Datagrams (one event each) read per `recvmmsg` call at most.
pub const DATAGRAMS_PER_CALL: usize = 64;
/// Room for one datagram: conntrack event messages are a few hundred bytes.
const DATAGRAM_ROOM: usize = 4096;

/// Where the low and high bytes of a host-order `u16` field at `field` sit (the BPF filter
/// loads single bytes).
const fn low_byte_at(field: u32) -> u32 {
    if cfg!(target_endian = "little") {
        field
    } else {
        field + 1
    }
}

const fn high_byte_at(field: u32) -> u32 {
    if cfg!(target_endian = "little") {
        field + 1
    } else {
        field
    }
}

/// Top-level attributes the filter looks through for `CTA_PROTOINFO`: an UPDATE has the two
/// tuples, zone, id, status and timeout before it.
const ATTRS_SEARCHED: usize = 10;

/// Where a filter jump goes.
#[derive(Clone, Copy, PartialEq)]
enum To {
    Next,
    Found,
    Drop,
    Accept,
}

/// The socket filter: keeps every message but conntrack UPDATEs (`IPCTNL_MSG_CT_NEW` without
/// `NLM_F_CREATE`), and of those only the ones whose TCP state is ESTABLISHED or CLOSE.
///
/// It walks the top-level attributes itself (unrolled: classic BPF has no backward jumps) for
/// `CTA_PROTOINFO`, whose first nested attribute is `CTA_PROTOINFO_TCP` and that one's first is
/// `CTA_PROTOINFO_TCP_STATE` (the order `tcp_to_nlattr` writes). The kernel's `SKF_AD_NLATTR`
/// extension would find attributes by itself, but returns nothing for these messages on the
/// kernels tried (6.18), so it is not used.
pub fn filter_program() -> Vec<libc::sock_filter> {
    const LD_B_ABS: u16 = 0x30;
    const LD_B_IND: u16 = 0x50;
    const LDX_IMM: u16 = 0x01;
    const LDX_MEM: u16 = 0x61;
    const ST: u16 = 0x02;
    const STX: u16 = 0x03;
    const TAX: u16 = 0x07;
    const LSH_K: u16 = 0x64;
    const OR_X: u16 = 0x4c;
    const ADD_K: u16 = 0x04;
    const ADD_X: u16 = 0x0c;
    const AND_K: u16 = 0x54;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const ATTRS_AT: u32 = NFNL_ATTRS_AT as u32;
    type Code = Vec<(u16, To, To, u32)>;
    let jump = |code: &mut Code, c: u16, k: u32, yes: To, no: To| code.push((c, yes, no, k));
    let plain = |code: &mut Code, c: u16, k: u32| code.push((c, To::Next, To::Next, k));
    let mut code = Code::new();
    plain(&mut code, LD_B_ABS, high_byte_at(4)); // A = subsystem
    jump(
        &mut code,
        JEQ_K,
        u32::from(NFNL_SUBSYS_CTNETLINK),
        To::Next,
        To::Accept,
    );
    plain(&mut code, LD_B_ABS, low_byte_at(4)); // A = message type
    jump(
        &mut code,
        JEQ_K,
        u32::from(IPCTNL_MSG_CT_NEW),
        To::Next,
        To::Accept,
    ); // DESTROY passes
    plain(&mut code, LD_B_ABS, high_byte_at(6)); // A = flags >> 8
    jump(
        &mut code,
        JSET_K,
        u32::from(NLM_F_CREATE >> 8),
        To::Accept,
        To::Next,
    ); // NEW passes
    // An UPDATE: X = offset of the current attribute; step over the ones that are not
    // CTA_PROTOINFO. M[0] = length's high byte << 8, M[1] = saved X.
    plain(&mut code, LDX_IMM, ATTRS_AT);
    for _ in 0..ATTRS_SEARCHED {
        plain(&mut code, LD_B_IND, low_byte_at(2)); // type (below 256; flag bits are high)
        jump(
            &mut code,
            JEQ_K,
            u32::from(CTA_PROTOINFO),
            To::Found,
            To::Next,
        );
        plain(&mut code, LD_B_IND, high_byte_at(0));
        plain(&mut code, LSH_K, 8);
        plain(&mut code, ST, 0);
        plain(&mut code, LD_B_IND, low_byte_at(0));
        plain(&mut code, STX, 1);
        plain(&mut code, LDX_MEM, 0);
        plain(&mut code, OR_X, 0); // A = length
        plain(&mut code, ADD_K, 3);
        plain(&mut code, AND_K, !3);
        plain(&mut code, LDX_MEM, 1);
        plain(&mut code, ADD_X, 0);
        plain(&mut code, TAX, 0); // X = next attribute
    }
    plain(&mut code, RET_K, 0); // not found: drop
    let found = code.len();
    plain(&mut code, LD_B_IND, 4 + low_byte_at(2));
    jump(
        &mut code,
        JEQ_K,
        u32::from(CTA_PROTOINFO_TCP),
        To::Next,
        To::Drop,
    );
    plain(&mut code, LD_B_IND, 8 + low_byte_at(2));
    jump(
        &mut code,
        JEQ_K,
        u32::from(CTA_PROTOINFO_TCP_STATE),
        To::Next,
        To::Drop,
    );
    plain(&mut code, LD_B_IND, 12); // the state byte
    jump(
        &mut code,
        JEQ_K,
        TCP_CONNTRACK_ESTABLISHED,
        To::Accept,
        To::Next,
    );
    jump(&mut code, JEQ_K, TCP_CONNTRACK_CLOSE, To::Accept, To::Drop);
    let drop_at = code.len();
    plain(&mut code, RET_K, 0);
    let accept_at = code.len();
    plain(&mut code, RET_K, u32::MAX);
    let offset = |from: usize, to: To| -> u8 {
        let target = match to {
            To::Next => from + 1,
            To::Found => found,
            To::Drop => drop_at,
            To::Accept => accept_at,
        };
        u8::try_from(target - from - 1).expect("filter jump within 255")
    };
    code.iter()
        .enumerate()
        .map(|(at, &(c, yes, no, k))| libc::sock_filter {
            code: c,
            jt: offset(at, yes),
            jf: offset(at, no),
            k,
        })
        .collect()
}

/// The filter of a NEW-only subscription ([`ConntrackEvents::open_new_only`]): keeps conntrack
/// messages of type `IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE` (a connection's first event) and
/// drops everything else. The NEW group carries little else; the filter makes "NEW only" hold
/// whatever the kernel adds to that group.
pub fn new_only_filter() -> Vec<libc::sock_filter> {
    const LD_B_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    vec![
        op(LD_B_ABS, 0, 0, high_byte_at(4)),               // subsystem
        op(JEQ_K, 0, 4, u32::from(NFNL_SUBSYS_CTNETLINK)), // else drop (6)
        op(LD_B_ABS, 0, 0, low_byte_at(4)),                // message type
        op(JEQ_K, 0, 2, u32::from(IPCTNL_MSG_CT_NEW)),     // else drop
        op(LD_B_ABS, 0, 0, high_byte_at(6)),               // flags >> 8
        op(JSET_K, 1, 0, u32::from(NLM_F_CREATE >> 8)),
        op(RET_K, 0, 0, 0),
        op(RET_K, 0, 0, u32::MAX),
    ]
}

/// A subscription to conntrack events in the namespace it was opened in.
#[derive(Debug)]
pub struct ConntrackEvents {
    socket: Subscription,
    overruns: u64,
}

impl ConntrackEvents {
    /// Opens the socket (needs CAP_NET_ADMIN) with an 8 MiB receive buffer where allowed, the
    /// module's socket filter (`filter_program`: drops the UPDATEs other than TCP ESTABLISHED
    /// and CLOSE in the kernel) attached, and a `timeout` on each receive.
    pub fn open(timeout: Duration) -> io::Result<Self> {
        let socket = Subscription::open(
            GROUPS,
            &mut filter_program(),
            8 << 20,
            timeout,
            DATAGRAMS_PER_CALL,
            DATAGRAM_ROOM,
        )?;
        Ok(Self {
            socket,
            overruns: 0,
        })
    }

    /// Opens a subscription to NEW events only (the `NFNLGRP_CONNTRACK_NEW` group, with
    /// `new_only_filter`): one event per new connection, for counting connections without the
    /// flow monitor's updates and destroys. A 4 MiB receive buffer where allowed.
    pub fn open_new_only(timeout: Duration) -> io::Result<Self> {
        let socket = Subscription::open(
            GROUP_NEW,
            &mut new_only_filter(),
            4 << 20,
            timeout,
            DATAGRAMS_PER_CALL,
            DATAGRAM_ROOM,
        )?;
        Ok(Self {
            socket,
            overruns: 0,
        })
    }

    /// Waits (at most the timeout) for a datagram, takes it and any others already queued (up to
    /// [`DATAGRAMS_PER_CALL`], one `recvmmsg`), and passes each TCP or other event in them to
    /// `each`. Returns the number of events; a timeout or an overrun returns 0.
    pub fn recv(&mut self, each: impl FnMut(CtEvent)) -> io::Result<usize> {
        self.recv_flags(libc::MSG_WAITFORONE, each)
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
        let mut count = 0;
        let received = self.socket.recv_batch(flags, |datagram| {
            parse_messages(datagram, |event| {
                count += 1;
                each(event);
            });
        });
        if let Err(err) = received {
            return match err.raw_os_error() {
                Some(libc::ENOBUFS) => {
                    self.overruns += 1;
                    Ok(0)
                }
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(err),
            };
        }
        Ok(count)
    }

    /// Overruns (`ENOBUFS`: the kernel dropped one or more events) since the last call.
    pub fn take_overruns(&mut self) -> u64 {
        std::mem::take(&mut self.overruns)
    }
}

/// Decodes every conntrack message in one netlink datagram; anything else is skipped, and a
/// malformed message ends the datagram.
pub fn parse_messages(buf: &[u8], mut each: impl FnMut(CtEvent)) {
    for frame in frames(buf).map_while(Result::ok) {
        if frame.kind >> 8 != NFNL_SUBSYS_CTNETLINK {
            continue;
        }
        let ct_kind = match (frame.kind & 0xff, frame.flags & NLM_F_CREATE != 0) {
            (IPCTNL_MSG_CT_NEW, true) => Some(CtKind::New),
            (IPCTNL_MSG_CT_NEW, false) => Some(CtKind::Update),
            (IPCTNL_MSG_CT_DELETE, _) => Some(CtKind::Destroy),
            _ => None,
        };
        // The body starts with the 4-byte nfgenmsg.
        if let (Some(ct_kind), Some(attrs)) = (ct_kind, frame.body.get(4..))
            && let Some(event) = parse_event(ct_kind, attrs)
        {
            each(event);
        }
    }
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
            CTA_STATUS => event.status = be_u32(payload).unwrap_or(0),
            CTA_ID => event.id = be_u32(payload),
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
                        2 => sport = be_u16(value).unwrap_or(0),
                        3 => dport = be_u16(value).unwrap_or(0),
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
            1 => counters.packets = be_u64(value)?,
            2 => counters.bytes = be_u64(value)?,
            3 => counters.packets = u64::from(be_u32(value)?),
            4 => counters.bytes = u64::from(be_u32(value)?),
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
        out.resize((out.len() + 3) & !3, 0);
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

    /// Runs a classic-BPF program over `packet` as the kernel would (only the instructions
    /// [`filter_program`] uses); returns the verdict (bytes kept, 0 = dropped). A load past the
    /// end drops, as in the kernel.
    fn run_filter(program: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let (mut a, mut x, mut pc, mut mem) = (0u32, 0u32, 0usize, [0u32; 16]);
        loop {
            let op = program[pc];
            pc += 1;
            let byte = |at: u32| packet.get(at as usize).map(|&b| u32::from(b));
            match op.code {
                0x30 | 0x50 => {
                    let at = if op.code == 0x50 { x + op.k } else { op.k };
                    match byte(at) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                0x01 => x = op.k,
                0x61 => x = mem[op.k as usize],
                0x02 => mem[op.k as usize] = a,
                0x03 => mem[op.k as usize] = x,
                0x07 => x = a,
                0x64 => a <<= op.k,
                0x4c => a |= x,
                0x04 => a = a.wrapping_add(op.k),
                0x0c => a = a.wrapping_add(x),
                0x54 => a &= op.k,
                0x15 | 0x45 => {
                    let taken = if op.code == 0x15 {
                        a == op.k
                    } else {
                        a & op.k != 0
                    };
                    pc += usize::from(if taken { op.jt } else { op.jf });
                }
                0x06 => return op.k,
                other => panic!("instruction {other:#x} not modelled"),
            }
        }
    }

    fn update(state: Option<u8>) -> Vec<u8> {
        let mut attrs = vec![
            tuple(CTA_TUPLE_ORIG, [10, 0, 1, 2], [10, 96, 0, 10], 40000, 80),
            tuple(CTA_TUPLE_REPLY, [10, 0, 2, 7], [10, 0, 1, 2], 8080, 40000),
            attr(CTA_STATUS, &0x18eu32.to_be_bytes()),
            attr(7, &120u32.to_be_bytes()), // CTA_TIMEOUT
        ];
        if let Some(state) = state {
            // CTA_PROTOINFO_TCP: state, then the window scales and flags the kernel adds.
            attrs.push(nested(
                CTA_PROTOINFO,
                &[nested(
                    CTA_PROTOINFO_TCP,
                    &[
                        attr(CTA_PROTOINFO_TCP_STATE, &[state]),
                        attr(2, &[7]),
                        attr(3, &[7]),
                        attr(4, &[0x23, 0]),
                    ],
                )],
            ));
        }
        attrs.push(attr(CTA_ID, &9u32.to_be_bytes()));
        message(IPCTNL_MSG_CT_NEW, 0, &attrs)
    }

    #[test]
    fn the_filter_keeps_new_destroy_and_the_updates_the_table_uses() {
        let program = filter_program();
        let kept = |msg: &[u8]| run_filter(&program, msg) != 0;
        let new = message(
            IPCTNL_MSG_CT_NEW,
            NLM_F_CREATE | 0x200,
            &[
                tuple(CTA_TUPLE_ORIG, [1, 1, 1, 1], [2, 2, 2, 2], 1, 2),
                tuple(CTA_TUPLE_REPLY, [2, 2, 2, 2], [1, 1, 1, 1], 2, 1),
            ],
        );
        assert!(kept(&new), "NEW");
        assert!(kept(&message(IPCTNL_MSG_CT_DELETE, 0, &[])), "DESTROY");
        let mut other_subsystem = new.clone();
        other_subsystem[usize::try_from(high_byte_at(4)).unwrap()] = 2;
        assert!(
            kept(&other_subsystem),
            "not conntrack: not the filter's business"
        );
        // Every TCP state an UPDATE can report: kept exactly when the decoder says the table
        // gets ESTABLISHED or CLOSE from it.
        for state in 0..=10u8 {
            let msg = update(Some(state));
            let mut decoded = Vec::new();
            parse_messages(&msg, |e| decoded.push(e.tcp_state));
            let wanted = matches!(
                decoded.as_slice(),
                [Some(TcpState::Established | TcpState::Close)]
            );
            assert_eq!(kept(&msg), wanted, "UPDATE in state {state}");
        }
        assert!(!kept(&update(None)), "an UPDATE without TCP state");
        assert!(!kept(&update(Some(3))[..40]), "truncated");
    }

    #[test]
    fn the_kernel_delivers_new_established_and_destroy_but_not_the_other_updates() {
        use std::io::{Read as _, Write as _};
        if !crate::testns::root_or_skip("conntrack event filter") {
            return;
        }
        let netns = crate::testns::TestNetns::new("ctfilter").expect("a test namespace");
        // Anything using conntrack in the namespace makes it track connections there.
        netns.sh_ok("iptables -A OUTPUT -p tcp -m conntrack --ctstate NEW -j ACCEPT");
        let events = crate::run_in_netns(Some(netns.name()), || {
            let mut events = ConntrackEvents::open(Duration::from_millis(100)).expect("open");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.write_all(b"ping").unwrap();
            let mut got = [0; 4];
            server.read_exact(&mut got).unwrap();
            drop(client); // FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT: all filtered out
            drop(server);
            std::thread::sleep(Duration::from_millis(100));
            netns.sh_ok("conntrack -F 2>/dev/null"); // DESTROY
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < deadline
                && !seen.iter().any(|&(kind, _)| kind == CtKind::Destroy)
            {
                events
                    .recv(|e| seen.push((e.kind, e.tcp_state)))
                    .expect("recv");
            }
            seen
        })
        .expect("enter the namespace");
        assert_eq!(
            events.first(),
            Some(&(CtKind::New, Some(TcpState::Handshake)))
        );
        let updates: Vec<_> = events
            .iter()
            .filter(|(kind, _)| *kind == CtKind::Update)
            .collect();
        assert_eq!(
            updates,
            [&(CtKind::Update, Some(TcpState::Established))],
            "only the ESTABLISHED update passes: {events:?}"
        );
        assert_eq!(
            events.last(),
            Some(&(CtKind::Destroy, Some(TcpState::Closing))),
            "the DESTROY, with the TIME_WAIT state: {events:?}"
        );
    }

    #[test]
    fn the_new_only_filter_keeps_new_events_and_nothing_else() {
        let program = new_only_filter();
        let kept = |msg: &[u8]| run_filter(&program, msg) != 0;
        let new = message(
            IPCTNL_MSG_CT_NEW,
            NLM_F_CREATE | 0x200,
            &[
                tuple(CTA_TUPLE_ORIG, [1, 1, 1, 1], [2, 2, 2, 2], 1, 2),
                tuple(CTA_TUPLE_REPLY, [2, 2, 2, 2], [1, 1, 1, 1], 2, 1),
            ],
        );
        assert!(kept(&new), "NEW");
        assert!(!kept(&message(IPCTNL_MSG_CT_DELETE, 0, &[])), "DESTROY");
        for state in [None, Some(3), Some(8)] {
            assert!(!kept(&update(state)), "UPDATE {state:?}");
        }
        let mut other_subsystem = new.clone();
        other_subsystem[usize::try_from(high_byte_at(4)).unwrap()] = 2;
        assert!(!kept(&other_subsystem), "not conntrack");
        assert!(!kept(&new[..5]), "truncated");
    }

    #[test]
    fn a_new_only_subscription_gets_one_event_per_connection_with_the_dnat_reply() {
        use std::io::{Read as _, Write as _};
        if !crate::testns::root_or_skip("conntrack NEW-only subscription") {
            return;
        }
        let netns = crate::testns::TestNetns::new("ctnew").expect("a test namespace");
        // 127.0.0.1:7 is DNATed to the listener's port, as kube-proxy DNATs a Service IP (the
        // namespace is new: the port is free there).
        let listener_port = 8080;
        netns.sh_ok(&format!(
            "nft add table ip t && nft add chain ip t out '{{ type nat hook output priority -100; }}' \
             && nft add rule ip t out tcp dport 7 dnat to 127.0.0.1:{listener_port}"
        ));
        let events = crate::run_in_netns(Some(netns.name()), || {
            let mut events =
                ConntrackEvents::open_new_only(Duration::from_millis(100)).expect("open");
            let listener =
                std::net::TcpListener::bind(("127.0.0.1", listener_port)).expect("listen");
            for _ in 0..3 {
                let mut client = std::net::TcpStream::connect("127.0.0.1:7").unwrap();
                let (mut server, _) = listener.accept().unwrap();
                client.write_all(b"ping").unwrap();
                let mut got = [0; 4];
                server.read_exact(&mut got).unwrap();
            }
            netns.sh_ok("conntrack -F 2>/dev/null"); // DESTROYs: must not arrive
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_millis(600);
            while std::time::Instant::now() < deadline {
                events.recv(|e| seen.push(e)).expect("recv");
            }
            seen
        })
        .expect("enter the namespace");
        assert_eq!(events.len(), 3, "{events:?}");
        for e in &events {
            assert_eq!(e.kind, CtKind::New);
            assert_eq!((e.proto, e.orig.dport), (6, 7));
            assert_eq!(
                e.reply.sport, listener_port,
                "the reply comes from the DNAT target"
            );
        }
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
