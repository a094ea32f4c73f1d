//! Conntrack events as the table consumes them: one decoded `NFNLGRP_CONNTRACK_*` message.
//!
//! Decoding the netlink bytes is `nfscope-kernel`'s job; this module only defines the values.

use std::net::IpAddr;

use serde::Serialize;

/// One direction of a connection: addresses and ports as a packet carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl Tuple {
    /// The same flow seen from the other side.
    pub fn reversed(self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// What happened to a conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKind {
    /// `IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE`: a connection was confirmed.
    New,
    /// `IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`: state, status or counters changed.
    Update,
    /// `IPCTNL_MSG_CT_DELETE`: the entry was removed (closed, timed out or flushed).
    Destroy,
}

/// Packets and bytes (IP-layer, headers included) one direction carried, from conntrack
/// accounting (`nf_conntrack_acct`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CtCounters {
    /// Packets.
    pub packets: u64,
    /// Bytes including IP and TCP headers.
    pub bytes: u64,
}

/// Conntrack's TCP states (`enum tcp_conntrack`), as far as the table cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// SYN_SENT, SYN_RECV, SYN_SENT2: handshake in progress.
    Handshake,
    /// ESTABLISHED: the third packet of the handshake went through.
    Established,
    /// FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT: a FIN was seen.
    Closing,
    /// CLOSE: a RST was seen (or the connection closed without a handshake).
    Close,
    /// Any other value.
    Other(u8),
}

impl TcpState {
    /// Maps the kernel's `CTA_PROTOINFO_TCP_STATE` byte.
    pub fn from_kernel(state: u8) -> Self {
        match state {
            1 | 2 | 9 => Self::Handshake,
            3 => Self::Established,
            4..=7 => Self::Closing,
            8 => Self::Close,
            other => Self::Other(other),
        }
    }
}

/// One conntrack event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEvent {
    /// New, update or destroy.
    pub kind: CtKind,
    /// `CTA_ID`, when the kernel sent it.
    pub id: Option<u32>,
    /// IP protocol number (6 = TCP; others are ignored by the table).
    pub proto: u8,
    /// `CTA_TUPLE_ORIG`: client → address it dialled (e.g. a Service VIP).
    pub orig: Tuple,
    /// `CTA_TUPLE_REPLY`: the server that answered → the address it answered to (after NAT).
    pub reply: Tuple,
    /// `CTA_COUNTERS_ORIG`, when accounting is on.
    pub counters_orig: Option<CtCounters>,
    /// `CTA_COUNTERS_REPLY`, when accounting is on.
    pub counters_reply: Option<CtCounters>,
    /// `CTA_STATUS` bits.
    pub status: u32,
    /// `CTA_PROTOINFO_TCP_STATE`, when present.
    pub tcp_state: Option<TcpState>,
}
