//! nfnetlink framing: requests out, borrowed messages and attributes in.
//!
//! Owns the `NETLINK_NETFILTER` socket, building a request (`nlmsghdr` + `nfgenmsg` + attributes),
//! reading a dump to `NLMSG_DONE` while handing each message's payload to a callback *without
//! copying or decoding it*, and a borrowed attribute iterator. It does not know what the messages
//! mean (`nft`, `ipset`, `conntrack` do).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// Set by the kernel on dump messages when the object set changed during the dump.
const NLM_F_DUMP_INTR: u16 = 0x10;
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
}

impl NfSocket {
    /// Opens and binds the socket (needs CAP_NET_ADMIN for the nf_tables and ipset dumps).
    pub(crate) fn open() -> io::Result<Self> {
        let fd = sys::netfilter_socket()?;
        // Best effort: a bigger socket buffer only avoids ENOBUFS under load.
        let _ = sys::set_int_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20);
        Ok(Self {
            fd,
            buf: vec![0; RECV_BUF],
            seq: 0,
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
            let mut rest = &self.buf[..len];
            while rest.len() >= NLMSG_HDRLEN {
                let header = Header::read(rest)?;
                let body = &rest[NLMSG_HDRLEN..header.len];
                rest = &rest[align4(header.len).min(rest.len())..];
                if header.seq != seq {
                    continue; // a stale reply to an abandoned request
                }
                end.interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                match header.kind {
                    NLMSG_DONE => return Ok(end),
                    NLMSG_ERROR => {
                        let errno = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if errno == 0 {
                            return Ok(end); // an ACK
                        }
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    _ => {
                        each(&parse_message(body)?)?;
                        if header.flags & NLM_F_MULTI == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(end);
                        }
                    }
                }
            }
        }
    }
}

struct Header {
    len: usize,
    kind: u16,
    flags: u16,
    seq: u32,
}

impl Header {
    fn read(bytes: &[u8]) -> io::Result<Self> {
        let len = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDRLEN || len > bytes.len() {
            return Err(io::Error::other(format!(
                "netlink message length {len} out of range"
            )));
        }
        Ok(Self {
            len,
            kind: u16::from_ne_bytes([bytes[4], bytes[5]]),
            flags: u16::from_ne_bytes([bytes[6], bytes[7]]),
            seq: u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes")),
        })
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
