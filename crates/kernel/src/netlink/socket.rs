//! The crate's one netlink stack: sockets, message framing, attribute walking.
//!
//! Owns the `NETLINK_NETFILTER` sockets — [`NfSocket`] for request/dump exchanges (nf_tables)
//! and [`Subscription`] for multicast groups read in `recvmmsg` batches (conntrack events) —
//! building a request (`nlmsghdr` + `nfgenmsg` + attributes), splitting a datagram into messages
//! ([`frames`]), reading a dump to `NLMSG_DONE` while handing each message's payload to a callback
//! *without copying or decoding it*, a borrowed attribute iterator ([`attrs`]) and the payload
//! readers (`be_u16`/`be_u32`/`be_u64`/[`c_str`]). The raw system calls and socket options behind
//! it are in `crate::sys`. It does not know what the messages mean (`nft` and
//! `flow::conntrack_events` do).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::sys;

const NLMSG_HDRLEN: usize = 16;
/// `nlmsghdr` + `nfgenmsg`: where a netfilter message's attributes start.
pub(crate) const NFNL_ATTRS_AT: usize = NLMSG_HDRLEN + NFGENMSG_LEN;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// Set by the kernel on dump messages when the object set changed during the dump.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_CREATE`: on a conntrack `IPCTNL_MSG_CT_NEW` event, "new" rather than "update".
pub(crate) const NLM_F_CREATE: u16 = 0x400;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Receive buffer: the kernel's dump skbs are at most 32 KiB (64 KiB with large pages).
const RECV_BUF: usize = 256 * 1024;

/// One nfnetlink message as received: its family (`nfgenmsg`) and its attributes, borrowed from
/// the receive buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    /// `nfgenmsg.nfgen_family`.
    pub family: u8,
    /// The attributes after `nfgenmsg`.
    pub attrs: &'a [u8],
}

/// How a dump ended besides its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DumpEnd {
    /// The kernel flagged at least one message `NLM_F_DUMP_INTR`: the set changed mid-dump.
    pub interrupted: bool,
}

/// A `NETLINK_NETFILTER` socket with its receive buffer and sequence counter.
pub(crate) struct NfSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
    /// Test captures: every datagram received is also copied here when set.
    #[cfg(test)]
    pub tap: Option<Vec<Vec<u8>>>,
}

impl NfSocket {
    /// Opens and binds the socket (needs CAP_NET_ADMIN for the nf_tables and ipset dumps).
    pub(crate) fn open() -> io::Result<Self> {
        let fd = sys::netfilter_socket(0)?;
        // Best effort: a bigger socket buffer only avoids ENOBUFS under load.
        let _ = sys::set_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &(1 << 20));
        Ok(Self {
            fd,
            buf: vec![0; RECV_BUF],
            seq: 0,
            #[cfg(test)]
            tap: None,
        })
    }

    /// Sends a request and calls `each` for every message of the reply until `NLMSG_DONE` (for
    /// dumps) or the first message (for plain requests without `NLM_F_MULTI`). A netlink error
    /// reply becomes an `io::Error` with the kernel's errno.
    pub(crate) fn request(
        &mut self,
        kind: u16,
        flags: u16,
        family: u8,
        attrs: &[u8],
        mut each: impl FnMut(&Message<'_>) -> io::Result<()>,
    ) -> io::Result<DumpEnd> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = build_request(kind, flags, seq, family, attrs);
        sys::send_to_kernel(self.fd.as_fd(), &request)?;
        let mut end = DumpEnd::default();
        loop {
            let len = sys::recv_truncating(self.fd.as_fd(), &mut self.buf)?;
            if len > self.buf.len() {
                return Err(io::Error::other(format!(
                    "netlink message of {len} bytes truncated"
                )));
            }
            #[cfg(test)]
            if let Some(tap) = &mut self.tap {
                tap.push(self.buf[..len].to_vec());
            }
            if reply_datagram(&self.buf[..len], seq, flags, &mut end, &mut each)? {
                return Ok(end);
            }
        }
    }
}

/// Handles one datagram of the reply to request `seq` (sent with `flags`): every message of
/// that sequence goes to `each`. Returns true when the reply is complete (`NLMSG_DONE`, an ACK,
/// or the single message of a plain request); a netlink error becomes the kernel's errno.
pub(crate) fn reply_datagram(
    datagram: &[u8],
    seq: u32,
    flags: u16,
    end: &mut DumpEnd,
    each: &mut impl FnMut(&Message<'_>) -> io::Result<()>,
) -> io::Result<bool> {
    for frame in frames(datagram) {
        let frame = frame?;
        if frame.seq != seq {
            continue; // a stale reply to an abandoned request
        }
        end.interrupted |= frame.flags & NLM_F_DUMP_INTR != 0;
        match frame.kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = frame
                    .body
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if errno == 0 {
                    return Ok(true); // an ACK
                }
                return Err(io::Error::from_raw_os_error(-errno));
            }
            _ => {
                each(&parse_message(frame.body)?)?;
                if frame.flags & NLM_F_MULTI == 0 && flags & NLM_F_ACK == 0 {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// One netlink message of a datagram: its header fields and the bytes after the header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// Everything after the 16-byte header, up to `nlmsg_len`.
    pub body: &'a [u8],
}

/// The messages of one datagram, in order. A header whose length is out of range yields one
/// error and ends the walk; a tail shorter than a header is ignored.
pub(crate) fn frames(datagram: &[u8]) -> Frames<'_> {
    Frames { rest: datagram }
}

/// Iterator over a datagram's messages, see [`frames`].
pub(crate) struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = io::Result<Frame<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            self.rest = &[];
            return Some(Err(io::Error::other(format!(
                "netlink message length {len} out of range"
            ))));
        }
        self.rest = &rest[align4(len).min(rest.len())..];
        Some(Ok(Frame {
            kind: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
            body: &rest[NLMSG_HDRLEN..len],
        }))
    }
}

/// A `NETLINK_NETFILTER` socket joined to multicast `groups` (e.g. conntrack events), read a
/// batch of datagrams per `recvmmsg` call into fixed slots of one buffer.
#[derive(Debug)]
pub(crate) struct Subscription {
    fd: OwnedFd,
    buf: Vec<u8>,
    slot: usize,
    /// Per slot, the length of the datagram the last call put there (`None`: truncated).
    lengths: Vec<Option<usize>>,
}

impl Subscription {
    /// Opens the socket with `filter` (classic BPF) attached *before* joining the groups, so no
    /// unfiltered message is ever queued; a receive buffer of `rcvbuf` bytes (forced where
    /// CAP_NET_ADMIN allows, else as large as `net.core.rmem_max` lets), and a `timeout` on each
    /// wait. `slots` datagrams of at most `slot` bytes are read per call.
    pub(crate) fn open(
        groups: u32,
        filter: &mut [libc::sock_filter],
        rcvbuf: libc::c_int,
        timeout: Duration,
        slots: usize,
        slot: usize,
    ) -> io::Result<Self> {
        if slots > sys::BATCH_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("at most {} datagrams per call", sys::BATCH_MAX),
            ));
        }
        let fd = sys::netfilter_socket_unbound()?;
        let sock = fd.as_fd();
        if sys::set_option(sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
            sys::set_option(sock, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf)?;
        }
        sys::set_receive_timeout(sock, timeout)?;
        sys::attach_filter(sock, filter)?;
        sys::bind_netlink(sock, groups)?;
        Ok(Self {
            fd,
            buf: vec![0; slots * slot],
            slot,
            lengths: vec![None; slots],
        })
    }

    /// One `recvmmsg` with `flags` (`MSG_WAITFORONE` waits up to the timeout for the first,
    /// `MSG_DONTWAIT` never waits); `each` gets every datagram received whole (a truncated one
    /// is skipped). Errors are the kernel's (`ENOBUFS`: events were dropped; `EAGAIN`: none).
    pub(crate) fn recv_batch(
        &mut self,
        flags: libc::c_int,
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        let received = sys::recv_batch(
            self.fd.as_fd(),
            &mut self.buf,
            self.slot,
            flags,
            &mut self.lengths,
        )?;
        for (slot, len) in self.buf.chunks(self.slot).zip(&self.lengths[..received]) {
            if let Some(len) = *len {
                each(&slot[..len]);
            }
        }
        Ok(received)
    }
}

fn parse_message(body: &[u8]) -> io::Result<Message<'_>> {
    if body.len() < NFGENMSG_LEN {
        return Err(io::Error::other("nfnetlink message without nfgenmsg"));
    }
    Ok(Message {
        family: body[0],
        attrs: &body[NFGENMSG_LEN..],
    })
}

fn build_request(kind: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0, 0, 0]); // nfgen_family, NFNETLINK_V0, res_id 0
    out.extend_from_slice(attrs);
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends one attribute (header, payload, padding) to `out`.
pub(crate) fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
}

/// Appends a NUL-terminated string attribute.
pub(crate) fn put_str(out: &mut Vec<u8>, kind: u16, value: &str) {
    let mut payload = Vec::with_capacity(value.len() + 1);
    payload.extend_from_slice(value.as_bytes());
    payload.push(0);
    put_attr(out, kind, &payload);
}

/// Iterates the attributes in `bytes` as (type without flag bits, payload); stops at the first
/// malformed header rather than failing, so unknown or truncated tails are ignored.
pub(crate) fn attrs(bytes: &[u8]) -> Attrs<'_> {
    Attrs { rest: bytes }
}

/// Borrowed attribute iterator, see [`attrs`].
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([self.rest[0], self.rest[1]]));
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let payload = &self.rest[4..len];
        self.rest = &self.rest[align4(len).min(self.rest.len())..];
        Some((kind, payload))
    }
}

/// A big-endian u16 attribute payload (ports); `None` if it is shorter than 2 bytes.
pub(crate) fn be_u16(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(payload.get(..2)?.try_into().ok()?))
}

/// A big-endian u64 attribute payload (counters, handles); `None` if it is not 8 bytes.
pub(crate) fn be_u64(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.try_into().ok()?))
}

/// A big-endian u32 attribute payload; `None` if it is not 4 bytes.
pub(crate) fn be_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.try_into().ok()?))
}

/// A NUL-terminated string payload, without the NUL (lossy: invalid UTF-8 is replaced).
pub(crate) fn c_str(payload: &[u8]) -> &str {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    std::str::from_utf8(&payload[..end]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding_and_flag_bits_masked() {
        let mut bytes = Vec::new();
        put_str(&mut bytes, 1, "nat");
        put_attr(&mut bytes, 0x8000 | 4, &7u64.to_be_bytes());
        put_attr(&mut bytes, 2, &[9]);
        let got: Vec<(u16, Vec<u8>)> = attrs(&bytes).map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0, c_str(&got[0].1)), (1, "nat"));
        assert_eq!((got[1].0, be_u64(&got[1].1)), (4, Some(7)));
        assert_eq!(got[2], (2, vec![9]));
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn a_truncated_attribute_ends_the_iteration_without_panicking() {
        let mut bytes = Vec::new();
        put_str(&mut bytes, 1, "filter");
        bytes.extend_from_slice(&[200, 0, 2, 0, 1, 2]);
        assert_eq!(attrs(&bytes).count(), 1);
        assert_eq!(attrs(&[1, 0]).count(), 0);
    }

    #[test]
    fn a_request_carries_its_length_type_flags_and_family() {
        let req = build_request(0x0a07, NLM_F_DUMP, 5, 2, &[]);
        assert_eq!(req.len(), 20);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), 0x0a07);
        assert_eq!(
            u16::from_ne_bytes([req[6], req[7]]),
            NLM_F_DUMP | NLM_F_REQUEST
        );
        assert_eq!(req[16], 2);
        let msg = parse_message(&[10, 0, 0x12, 0x34, 1, 2]).unwrap();
        assert_eq!((msg.family, msg.attrs), (10, &[1u8, 2][..]));
    }
}
