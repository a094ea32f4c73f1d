//! ipset membership: answers `-m set --match-set NAME src,dst,…` for the traced packet.
//!
//! Owns reading the members of an [`IpSet`] as written by `ipset save` (`10.0.0.1`,
//! `10.0.0.0/8`, `10.96.0.1,tcp:443`, `10.0.0.1,tcp:80,10.0.0.2`, set names in a `list:set`) into
//! typed elements, and testing a packet tuple against them. A set whose members were not listed,
//! or a type it does not model, yields "unknown" rather than a guess. It does not parse the dump
//! (see `nfscope_ruleset::parse_ipsets`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use nfscope_ruleset::IpSet;

use crate::packet::Proto;

/// One dimension of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// An address range, inclusive (a single address or a CIDR becomes a range).
    Addr { low: u128, high: u128, v4: bool },
    /// A protocol and port range (`tcp:80`, `udp:53-54`, `80` = tcp).
    Port { proto: u8, low: u16, high: u16 },
    /// An interface name (`hash:net,iface`).
    Iface(String),
    /// A mark (`hash:ip,mark`).
    Mark(u32),
    /// A member set of a `list:set`.
    SetName(String),
}

/// One dimension of the packet tuple the match flags select.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// Address for this direction.
    pub addr: IpAddr,
    /// Port for this direction, when the protocol has ports and it is known.
    pub port: Option<u16>,
    /// Interface for this direction (in for src, out for dst), when known.
    pub iface: Option<&'a str>,
}

/// The packet as the set match sees it.
#[derive(Debug, Clone, Copy)]
pub struct SetQuery<'a> {
    /// Source side.
    pub src: Field<'a>,
    /// Destination side.
    pub dst: Field<'a>,
    /// Protocol.
    pub proto: Proto,
    /// ICMP type/code (used for `icmp:` port members).
    pub icmp: (u8, u8),
    /// Packet mark.
    pub mark: u32,
}

/// Result of a membership test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// The tuple is in the set.
    In,
    /// The tuple is not in the set.
    Out,
    /// Cannot tell, and why.
    Unknown(String),
}

struct PreparedSet {
    set_type: String,
    members: Vec<Vec<Part>>,
    unreadable: Option<String>,
}

/// Cap on remembered answers (set, flags, packet tuple); beyond it answers are recomputed.
const MEMO_LIMIT: usize = 4096;

/// The packet tuple and flags an answer depends on: the memo's key.
type MemoKey = (String, String, String);

/// All known sets, members parsed once; answers remembered per (set, flags, tuple).
#[derive(Default)]
pub struct SetIndex {
    sets: Option<HashMap<String, PreparedSet>>,
    memo: Mutex<HashMap<MemoKey, Membership>>,
}

impl SetIndex {
    /// Builds the index; `None` means "no ipset contents available at all".
    pub fn new(sets: Option<&[IpSet]>) -> Self {
        let sets = sets.map(|sets| sets.iter().map(|s| (s.name.clone(), prepare(s))).collect());
        Self {
            sets,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// Tests the tuple selected by `flags` (e.g. `["dst", "dst"]`) against set `name`.
    pub fn test(&self, name: &str, flags: &[&str], q: &SetQuery<'_>) -> Membership {
        self.test_counted(name, flags, q).0
    }

    /// [`Self::test`], also returning how many sets were examined to answer (each set at most
    /// once per query, however often `list:set`s name it).
    pub fn test_counted(
        &self,
        name: &str,
        flags: &[&str],
        q: &SetQuery<'_>,
    ) -> (Membership, usize) {
        let key = (name.to_owned(), flags.join(","), format!("{q:?}"));
        if let Some(known) = self.memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return (known, 0);
        }
        let mut seen = HashMap::new();
        let answer = self.test_depth(name, flags, q, 0, &mut seen);
        if let Ok(mut memo) = self.memo.lock()
            && memo.len() < MEMO_LIMIT
        {
            memo.insert(key, answer.clone());
        }
        (answer, seen.len())
    }

    fn test_depth(
        &self,
        name: &str,
        flags: &[&str],
        q: &SetQuery<'_>,
        depth: usize,
        seen: &mut HashMap<String, Membership>,
    ) -> Membership {
        if let Some(known) = seen.get(name) {
            return known.clone();
        }
        // A set reached again while being examined (a cycle) adds nothing: Out for now.
        seen.insert(name.to_owned(), Membership::Out);
        let answer = self.test_uncached(name, flags, q, depth, seen);
        seen.insert(name.to_owned(), answer.clone());
        answer
    }

    fn test_uncached(
        &self,
        name: &str,
        flags: &[&str],
        q: &SetQuery<'_>,
        depth: usize,
        seen: &mut HashMap<String, Membership>,
    ) -> Membership {
        let Some(sets) = &self.sets else {
            return Membership::Unknown(format!("no ipset contents given (set {name})"));
        };
        let Some(set) = sets.get(name) else {
            return Membership::Unknown(format!("set {name} is not in the ipset dump"));
        };
        if let Some(why) = &set.unreadable {
            return Membership::Unknown(why.clone());
        }
        if set.set_type == "list:set" {
            return self.test_list(set, flags, q, depth, seen);
        }
        let mut unknown = None;
        for member in &set.members {
            match member_matches(member, flags, q) {
                Some(true) => return Membership::In,
                Some(false) => {}
                None => {
                    unknown = Some(format!(
                        "set {name}: the packet lacks a field its members use (port or interface)"
                    ))
                }
            }
        }
        unknown.map_or(Membership::Out, Membership::Unknown)
    }

    fn test_list(
        &self,
        set: &PreparedSet,
        flags: &[&str],
        q: &SetQuery<'_>,
        depth: usize,
        seen: &mut HashMap<String, Membership>,
    ) -> Membership {
        if depth > 8 {
            return Membership::Unknown("list:set nesting too deep".into());
        }
        let mut unknown = None;
        for member in &set.members {
            let Some(Part::SetName(inner)) = member.first() else {
                continue;
            };
            match self.test_depth(inner, flags, q, depth + 1, seen) {
                Membership::In => return Membership::In,
                Membership::Out => {}
                Membership::Unknown(why) => unknown = Some(why),
            }
        }
        unknown.map_or(Membership::Out, Membership::Unknown)
    }
}

fn prepare(set: &IpSet) -> PreparedSet {
    let mut prepared = PreparedSet {
        set_type: set.set_type.clone(),
        members: Vec::new(),
        unreadable: None,
    };
    if set.members.is_empty() && set.entries > 0 {
        prepared.unreadable = Some(format!(
            "set {} has {} entries but its members were not listed",
            set.name, set.entries
        ));
        return prepared;
    }
    let dims: Vec<&str> = set
        .set_type
        .split_once(':')
        .map_or(vec![], |(_, d)| d.split(',').collect());
    for text in &set.members {
        match parse_member(text, &set.set_type, &dims) {
            Some(parts) => prepared.members.push(parts),
            None => {
                prepared.unreadable = Some(format!(
                    "set {}: member {text:?} of type {} is not modelled",
                    set.name, set.set_type
                ));
                return prepared;
            }
        }
    }
    prepared
}

fn parse_member(text: &str, set_type: &str, dims: &[&str]) -> Option<Vec<Part>> {
    if set_type == "list:set" {
        return Some(vec![Part::SetName(text.to_owned())]);
    }
    let pieces: Vec<&str> = text.split(',').collect();
    if pieces.len() != dims.len() {
        return None;
    }
    dims.iter()
        .zip(pieces)
        .map(|(dim, piece)| parse_part(dim, piece))
        .collect()
}

fn parse_part(dim: &str, piece: &str) -> Option<Part> {
    match dim {
        "ip" | "net" => parse_addr_part(piece),
        "port" => parse_port_part(piece),
        "iface" => Some(Part::Iface(piece.trim_start_matches("physdev:").to_owned())),
        "mark" => parse_u32(piece).map(Part::Mark),
        _ => None,
    }
}

fn parse_u32(text: &str) -> Option<u32> {
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn addr_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), true),
        IpAddr::V6(v6) => (u128::from(v6), false),
    }
}

fn parse_addr_part(piece: &str) -> Option<Part> {
    if let Some((a, b)) = piece.split_once('-') {
        let (low, v4) = addr_bits(a.parse().ok()?);
        let (high, v4b) = addr_bits(b.parse().ok()?);
        return (v4 == v4b).then_some(Part::Addr { low, high, v4 });
    }
    let (addr, len) = match piece.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u32>().ok()?)),
        None => (piece.parse::<IpAddr>().ok()?, None),
    };
    let (bits, v4) = addr_bits(addr);
    let width = if v4 { 32 } else { 128 };
    let len = len.unwrap_or(width);
    if len > width {
        return None;
    }
    let host_bits = width - len;
    let host_mask = if host_bits == 0 {
        0
    } else if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    Some(Part::Addr {
        low: bits & !host_mask,
        high: bits | host_mask,
        v4,
    })
}

fn parse_port_part(piece: &str) -> Option<Part> {
    let (proto, port) = piece.split_once(':').unwrap_or(("tcp", piece));
    let proto_num = match proto {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "udplite" => 136,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        other => other.parse().ok()?,
    };
    if proto_num == 1 || proto_num == 58 {
        let (t, c) = port.split_once('/').unwrap_or((port, "0"));
        let (t, c): (u8, u8) = (t.parse().ok()?, c.parse().ok()?);
        let code = (u16::from(t) << 8) | u16::from(c);
        return Some(Part::Port {
            proto: proto_num,
            low: code,
            high: code,
        });
    }
    let (low, high) = match port.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p = port.parse().ok()?;
            (p, p)
        }
    };
    Some(Part::Port {
        proto: proto_num,
        low,
        high,
    })
}

/// `Some(true/false)` when decidable, `None` when the packet lacks a needed field.
fn member_matches(member: &[Part], flags: &[&str], q: &SetQuery<'_>) -> Option<bool> {
    let mut all = true;
    for (i, part) in member.iter().enumerate() {
        // The kernel uses the last flag for dimensions beyond those given.
        let flag = flags.get(i).or(flags.last()).copied().unwrap_or("src");
        let field = if flag == "dst" { q.dst } else { q.src };
        match part_matches(part, &field, q)? {
            true => {}
            false => all = false,
        }
    }
    Some(all)
}

fn part_matches(part: &Part, field: &Field<'_>, q: &SetQuery<'_>) -> Option<bool> {
    match part {
        Part::Addr { low, high, v4 } => {
            let (bits, is_v4) = addr_bits(field.addr);
            Some(is_v4 == *v4 && (*low..=*high).contains(&bits))
        }
        Part::Port { proto, low, high } => {
            if *proto != q.proto.number() {
                return Some(false);
            }
            let value = if matches!(q.proto, Proto::Icmp | Proto::Icmpv6) {
                (u16::from(q.icmp.0) << 8) | u16::from(q.icmp.1)
            } else {
                field.port?
            };
            Some((*low..=*high).contains(&value))
        }
        Part::Iface(name) => Some(field.iface? == name),
        Part::Mark(mark) => Some(q.mark == *mark),
        Part::SetName(_) => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, set_type: &str, members: &[&str]) -> IpSet {
        IpSet {
            name: name.into(),
            set_type: set_type.into(),
            family: None,
            header: vec![],
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            entries: members.len() as u64,
            memory_bytes: None,
            references: None,
        }
    }

    fn query(src: &str, dst: &str, dport: Option<u16>) -> SetQuery<'static> {
        SetQuery {
            src: Field {
                addr: src.parse().unwrap(),
                port: Some(40000),
                iface: Some("eth0"),
            },
            dst: Field {
                addr: dst.parse().unwrap(),
                port: dport,
                iface: None,
            },
            proto: Proto::Tcp,
            icmp: (8, 0),
            mark: 0,
        }
    }

    #[test]
    fn hash_net_and_ip_port_members() {
        let sets = vec![
            set("NETS", "hash:net", &["10.0.0.0/8", "192.168.1.5"]),
            set(
                "KUBE-CLUSTER-IP",
                "hash:ip,port",
                &["10.96.0.1,tcp:443", "10.96.0.10,udp:53"],
            ),
        ];
        let index = SetIndex::new(Some(&sets));
        assert_eq!(
            index.test("NETS", &["src"], &query("10.3.4.5", "1.1.1.1", None)),
            Membership::In
        );
        assert_eq!(
            index.test("NETS", &["dst"], &query("10.3.4.5", "1.1.1.1", None)),
            Membership::Out
        );
        assert_eq!(
            index.test(
                "KUBE-CLUSTER-IP",
                &["dst", "dst"],
                &query("1.1.1.1", "10.96.0.1", Some(443))
            ),
            Membership::In
        );
        assert_eq!(
            index.test(
                "KUBE-CLUSTER-IP",
                &["dst", "dst"],
                &query("1.1.1.1", "10.96.0.1", Some(80))
            ),
            Membership::Out
        );
        // udp member never matches a tcp packet, even with the right port.
        assert_eq!(
            index.test(
                "KUBE-CLUSTER-IP",
                &["dst", "dst"],
                &query("1.1.1.1", "10.96.0.10", Some(53))
            ),
            Membership::Out
        );
    }

    #[test]
    fn missing_port_or_members_is_unknown_not_a_guess() {
        let sets = vec![
            set("P", "hash:ip,port", &["10.96.0.1,tcp:443"]),
            IpSet {
                entries: 3,
                ..set("HDR", "hash:ip", &[])
            },
        ];
        let index = SetIndex::new(Some(&sets));
        assert!(matches!(
            index.test("P", &["dst", "dst"], &query("1.1.1.1", "10.96.0.1", None)),
            Membership::Unknown(_)
        ));
        assert!(matches!(
            index.test("HDR", &["dst"], &query("1.1.1.1", "10.96.0.1", None)),
            Membership::Unknown(_)
        ));
        assert!(matches!(
            index.test("NOPE", &["dst"], &query("1.1.1.1", "10.96.0.1", None)),
            Membership::Unknown(_)
        ));
        assert!(matches!(
            SetIndex::new(None).test("P", &["dst"], &query("1.1.1.1", "2.2.2.2", None)),
            Membership::Unknown(_)
        ));
    }

    /// 12 levels of 12 `list:set`s, each naming all 12 of the next level: without memoising,
    /// answering for the top set examines 12^9 sets; with it, each set once.
    #[test]
    fn nested_list_sets_are_examined_once_per_set() {
        let mut sets = Vec::new();
        for level in 0..9 {
            for i in 0..12 {
                let members: Vec<String> = (0..12).map(|j| format!("L{}_{j}", level + 1)).collect();
                let refs: Vec<&str> = members.iter().map(String::as_str).collect();
                sets.push(set(&format!("L{level}_{i}"), "list:set", &refs));
            }
        }
        for i in 0..12 {
            let ip = if i == 11 { "10.0.0.9" } else { "10.0.0.1" };
            sets.push(set(&format!("L9_{i}"), "hash:ip", &[ip]));
        }
        let index = SetIndex::new(Some(&sets));
        let (hit, visited) =
            index.test_counted("L0_0", &["dst"], &query("1.1.1.1", "10.0.0.9", None));
        assert_eq!(hit, Membership::In);
        assert!(visited <= 12 * 10 + 1, "{visited} sets examined");
        let (shallow, visited) =
            index.test_counted("L2_0", &["dst"], &query("1.1.1.1", "10.0.0.9", None));
        assert_eq!(shallow, Membership::In);
        assert!(visited <= 12 * 8 + 1, "{visited} sets examined");
        let (miss, visited) =
            index.test_counted("L2_3", &["dst"], &query("1.1.1.1", "10.0.0.7", None));
        assert_eq!(miss, Membership::Out);
        assert!(visited <= 12 * 8 + 1, "{visited} sets examined");
        // Asked again for the same tuple: remembered, nothing examined.
        let (again, visited) =
            index.test_counted("L2_3", &["dst"], &query("1.1.1.1", "10.0.0.7", None));
        assert_eq!((again, visited), (Membership::Out, 0));
    }

    #[test]
    fn list_set_and_ipv6_and_three_dimensions() {
        let sets = vec![
            set("inet6:V6", "hash:net", &["fd00::/64"]),
            set("A", "hash:ip", &["10.0.0.1"]),
            set("L", "list:set", &["A"]),
            set("LB", "hash:ip,port,ip", &["10.0.0.9,tcp:80,10.0.0.1"]),
        ];
        let index = SetIndex::new(Some(&sets));
        let mut v6 = query("1.1.1.1", "1.1.1.1", None);
        v6.src.addr = "fd00::7".parse().unwrap();
        assert_eq!(index.test("inet6:V6", &["src"], &v6), Membership::In);
        assert_eq!(
            index.test("inet6:V6", &["src"], &query("10.0.0.1", "1.1.1.1", None)),
            Membership::Out
        );
        assert_eq!(
            index.test("L", &["dst"], &query("9.9.9.9", "10.0.0.1", None)),
            Membership::In
        );
        assert_eq!(
            index.test(
                "LB",
                &["dst", "dst", "src"],
                &query("10.0.0.1", "10.0.0.9", Some(80))
            ),
            Membership::In
        );
        assert_eq!(
            index.test(
                "LB",
                &["dst", "dst", "src"],
                &query("10.0.0.2", "10.0.0.9", Some(80))
            ),
            Membership::Out
        );
    }
}
