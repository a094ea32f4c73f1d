//! The packet being traced: what the caller says about it, checked for consistency.
//!
//! Owns [`Packet`] (addresses, protocol, ports, interfaces, conntrack state, marks) and the small
//! vocabularies it uses ([`Proto`], [`CtState`]). It does not know about rules or routes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use nfscope_ruleset::Family;
use serde::Serialize;

use crate::TraceError;

/// Transport protocol of the traced packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP for IPv4 (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
    /// SCTP (132).
    Sctp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
            Self::Icmpv6 => 58,
            Self::Sctp => 132,
        }
    }

    /// Lowercase name as `-p` prints it (`ipv6-icmp` is written `icmpv6` here).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Icmpv6 => "icmpv6",
            Self::Sctp => "sctp",
        }
    }

    /// Does this protocol carry ports?
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Sctp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = TraceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Ok(Self::Tcp),
            "udp" | "17" => Ok(Self::Udp),
            "icmp" | "1" => Ok(Self::Icmp),
            "icmpv6" | "ipv6-icmp" | "icmp6" | "58" => Ok(Self::Icmpv6),
            "sctp" | "132" => Ok(Self::Sctp),
            _ => Err(TraceError::Input(format!(
                "unknown protocol {s:?}: expected tcp, udp, icmp, icmpv6 or sctp"
            ))),
        }
    }
}

/// Conntrack state of the packet when it reaches the conntrack hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    /// First packet of a connection (the default): nat rules run.
    New,
    /// Part of a connection that has seen traffic both ways.
    Established,
    /// Related to an existing connection (ICMP errors, FTP data).
    Related,
    /// Conntrack could not classify it.
    Invalid,
    /// Exempted from conntrack (`NOTRACK`, `CT --notrack`).
    Untracked,
}

impl CtState {
    /// Upper-case name as `--ctstate` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Established => "ESTABLISHED",
            Self::Related => "RELATED",
            Self::Invalid => "INVALID",
            Self::Untracked => "UNTRACKED",
        }
    }
}

impl FromStr for CtState {
    type Err = TraceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "new" => Ok(Self::New),
            "established" => Ok(Self::Established),
            "related" => Ok(Self::Related),
            "invalid" => Ok(Self::Invalid),
            "untracked" => Ok(Self::Untracked),
            _ => Err(TraceError::Input(format!(
                "unknown conntrack state {s:?}: expected new, established, related, invalid or untracked"
            ))),
        }
    }
}

/// TCP flag bits as the `tcp` match names them.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// The packet to trace, as it is when it enters the first hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (before any DNAT).
    pub dst: IpAddr,
    /// Transport protocol.
    pub proto: Proto,
    /// Source port; `None` = unknown (rules on it are undetermined).
    pub sport: Option<u16>,
    /// Destination port; `None` = unknown.
    pub dport: Option<u16>,
    /// Incoming interface: `Some` = arrives from the network (PREROUTING); `None` = locally generated (OUTPUT).
    pub in_iface: Option<String>,
    /// Outgoing interface when the caller knows it; otherwise the route lookup decides.
    pub out_iface: Option<String>,
    /// Conntrack state.
    pub ct_state: CtState,
    /// Packet mark (`skb->mark`) on entry.
    pub mark: u32,
    /// Connection mark; `None` = unknown (the default for connections that are not new).
    pub ct_mark: Option<u32>,
    /// ICMP type and code; `None` = echo request.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags; `None` = SYN for a new connection, ACK otherwise.
    pub tcp_flags: Option<u8>,
    /// Bridge ports for a bridged packet (`physdev`): `(in, out)`; `None` = routed, not bridged.
    pub physdev: Option<(Option<String>, Option<String>)>,
    /// Socket owner uid for locally generated packets; `None` = unknown.
    pub uid: Option<u32>,
}

impl Packet {
    /// A new-connection packet from `src` to `dst`, locally generated, ports unknown.
    pub fn new(src: IpAddr, dst: IpAddr, proto: Proto) -> Self {
        Self {
            src,
            dst,
            proto,
            sport: None,
            dport: None,
            in_iface: None,
            out_iface: None,
            ct_state: CtState::New,
            mark: 0,
            ct_mark: None,
            icmp: None,
            tcp_flags: None,
            physdev: None,
            uid: None,
        }
    }

    /// IPv4 or IPv6 (from the source address; [`Packet::validate`] checks both agree).
    pub fn family(&self) -> Family {
        if self.src.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    /// Checks that the description is self-consistent.
    pub fn validate(&self) -> Result<(), TraceError> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err(TraceError::Input(format!(
                "source {} and destination {} are of different address families",
                self.src, self.dst
            )));
        }
        match (self.proto, self.family()) {
            (Proto::Icmp, Family::Ipv6) => {
                return Err(TraceError::Input(
                    "icmp is IPv4 only: use --proto icmpv6 for IPv6".into(),
                ));
            }
            (Proto::Icmpv6, Family::Ipv4) => {
                return Err(TraceError::Input(
                    "icmpv6 is IPv6 only: use --proto icmp for IPv4".into(),
                ));
            }
            _ => {}
        }
        if !self.proto.has_ports() && (self.sport.is_some() || self.dport.is_some()) {
            return Err(TraceError::Input(format!(
                "{} has no ports: drop --sport/--dport",
                self.proto
            )));
        }
        for name in [&self.in_iface, &self.out_iface].into_iter().flatten() {
            validate_iface_name(name)?;
        }
        Ok(())
    }

    /// The ICMP type and code the packet carries (echo request unless told otherwise).
    pub fn icmp_type_code(&self) -> (u8, u8) {
        self.icmp.unwrap_or(match self.proto {
            Proto::Icmpv6 => (128, 0),
            _ => (8, 0),
        })
    }

    /// The TCP flags the packet carries (SYN for a new connection, ACK otherwise).
    pub fn effective_tcp_flags(&self) -> u8 {
        self.tcp_flags.unwrap_or(if self.ct_state == CtState::New {
            tcp_flags::SYN
        } else {
            tcp_flags::ACK
        })
    }

    /// The connection mark (0 for a new connection, unknown otherwise unless given).
    pub fn effective_ct_mark(&self) -> Option<u32> {
        self.ct_mark
            .or((self.ct_state == CtState::New).then_some(0))
    }
}

/// An interface name the kernel would accept: 1 to 15 bytes, no `/`, `:` or whitespace.
pub fn validate_iface_name(name: &str) -> Result<(), TraceError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(TraceError::Input(format!(
            "{name:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"
        )));
    }
    Ok(())
}
