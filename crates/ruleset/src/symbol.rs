//! [`Symbol`]: a name of the rule grammar (match module, option, target, protocol) stored without
//! a heap allocation when it is one of the names iptables writes.
//!
//! A kube-proxy ruleset of 72.5k rules spells `comment`, `tcp`, `DNAT`, `to-destination`, … a few
//! hundred thousand times; as `String`s each was its own allocation (a 32-byte block or more), a
//! sixth of the parsed model. A [`Symbol`] of a well-known name points into a static table; any
//! other name (a user chain as a jump target, an unknown module) owns a boxed copy, exactly sized.
//! No global interner grows with the input, so a hostile dump cannot make it leak.
//!
//! It reads like a `&str`: it derefs to `str`, compares with `&str`, `str` and `String`, hashes
//! and orders as its text, and serializes as a string, so code written for a `String` field
//! reads it unchanged. It does not own which names belong to which module (`parse::modules`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Serialize, Serializer};

/// A name of the rule grammar: static when it is well known, else an owned exact-size copy.
#[derive(Clone)]
pub struct Symbol(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Owned(Box<str>),
}

impl Symbol {
    /// The symbol for `name`: no allocation when `name` is a well-known name.
    pub fn new(name: &str) -> Self {
        match known(name) {
            Some(s) => Self(Repr::Static(s)),
            None => Self(Repr::Owned(name.into())),
        }
    }

    /// A symbol for a name known at compile time (never allocates).
    pub const fn from_static(name: &'static str) -> Self {
        Self(Repr::Static(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Owned(s) => s,
        }
    }

    /// Is this a well-known name, stored without an allocation?
    pub fn is_static(&self) -> bool {
        matches!(self.0, Repr::Static(_))
    }
}

/// The well-known spelling of `name`, if it is one.
fn known(name: &str) -> Option<&'static str> {
    KNOWN.binary_search(&name).ok().map(|i| KNOWN[i])
}

/// Names iptables writes often: match modules, their options, targets and their options,
/// protocols. Sorted (byte order) and without duplicates; a test checks both.
const KNOWN: &[&str] = &[
    "ACCEPT",
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CONNMARK",
    "CT",
    "DNAT",
    "DROP",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-FIREWALL",
    "KUBE-FORWARD",
    "KUBE-KUBELET-CANARY",
    "KUBE-MARK-DROP",
    "KUBE-MARK-MASQ",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
    "KUBE-PROXY-CANARY",
    "KUBE-PROXY-FIREWALL",
    "KUBE-SERVICES",
    "LOG",
    "MARK",
    "MASQUERADE",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "QUEUE",
    "REDIRECT",
    "REJECT",
    "RETURN",
    "SNAT",
    "TCPMSS",
    "TPROXY",
    "TRACE",
    "addrtype",
    "all",
    "and-mark",
    "clamp-mss-to-pmtu",
    "comment",
    "connbytes",
    "connlimit",
    "connlimit-above",
    "connlimit-mask",
    "connmark",
    "conntrack",
    "ctdir",
    "ctorigdst",
    "ctorigdstport",
    "ctorigsrc",
    "ctproto",
    "ctstate",
    "ctstatus",
    "destination-port",
    "destination-ports",
    "dport",
    "dports",
    "dst-range",
    "dst-type",
    "esp",
    "every",
    "gid-owner",
    "hashlimit",
    "helper",
    "icmp",
    "icmp-type",
    "icmp6",
    "icmpv6",
    "icmpv6-type",
    "iprange",
    "ipv6-icmp",
    "length",
    "limit",
    "limit-burst",
    "limit-iface-in",
    "limit-iface-out",
    "log-level",
    "log-prefix",
    "mark",
    "match-set",
    "mode",
    "multiport",
    "nfacct",
    "nflog-group",
    "nflog-prefix",
    "notrack",
    "or-mark",
    "owner",
    "packet",
    "physdev",
    "physdev-in",
    "physdev-is-bridged",
    "physdev-is-in",
    "physdev-out",
    "pkt-type",
    "pkttype",
    "policy",
    "ports",
    "probability",
    "queue-num",
    "random",
    "random-fully",
    "recent",
    "reject-with",
    "restore-mark",
    "return-nomatch",
    "rpfilter",
    "save-mark",
    "sctp",
    "set",
    "set-mark",
    "set-xmark",
    "socket",
    "source-port",
    "source-ports",
    "sport",
    "sports",
    "src-range",
    "src-type",
    "state",
    "statistic",
    "string",
    "syn",
    "tcp",
    "tcp-flags",
    "tcpmss",
    "to-destination",
    "to-ports",
    "to-source",
    "udp",
    "udplite",
    "uid-owner",
    "xor-mark",
    "zone",
];

impl Default for Symbol {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl Deref for Symbol {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Symbol {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Symbol {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Symbol {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<&String> for Symbol {
    fn from(name: &String) -> Self {
        Self::new(name)
    }
}

impl From<String> for Symbol {
    fn from(name: String) -> Self {
        match known(&name) {
            Some(s) => Self(Repr::Static(s)),
            None => Self(Repr::Owned(name.into_boxed_str())),
        }
    }
}

impl From<Symbol> for String {
    fn from(symbol: Symbol) -> Self {
        symbol.as_str().to_owned()
    }
}

impl PartialEq for Symbol {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Symbol {}

impl PartialEq<str> for Symbol {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Symbol {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Symbol {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Symbol> for str {
    fn eq(&self, other: &Symbol) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Symbol> for &str {
    fn eq(&self, other: &Symbol) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Symbol> for String {
    fn eq(&self, other: &Symbol) -> bool {
        self == other.as_str()
    }
}

impl Hash for Symbol {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Symbol {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
        let mut h = DefaultHasher::new();
        value.hash(&mut h);
        h.finish()
    }

    #[test]
    fn the_table_is_sorted_without_duplicates_so_binary_search_finds_every_name() {
        for pair in KNOWN.windows(2) {
            assert!(
                pair[0] < pair[1],
                "{:?} must sort before {:?}",
                pair[0],
                pair[1]
            );
        }
        for name in KNOWN {
            assert!(Symbol::new(name).is_static(), "{name} is not found");
        }
    }

    #[test]
    fn well_known_names_are_static_and_others_are_owned_with_the_same_text() {
        let comment = Symbol::new("comment");
        assert!(comment.is_static());
        assert_eq!(comment.as_str(), "comment");
        let chain = Symbol::new("KUBE-SEP-ABCDEF");
        assert!(!chain.is_static());
        assert_eq!(chain.as_str(), "KUBE-SEP-ABCDEF");
        // Owned and static spellings of one name are the same symbol.
        assert_eq!(
            Symbol::from(String::from("tcp")),
            Symbol::from_static("tcp")
        );
        assert!(Symbol::from(String::from("tcp")).is_static());
        assert!(!Symbol::from(String::from("tcpx")).is_static());
        assert_eq!(Symbol::default().as_str(), "");
    }

    #[test]
    fn compares_hashes_and_orders_as_its_text() {
        let s = Symbol::new("dport");
        let owned = String::from("dport");
        assert_eq!(s, "dport");
        assert_eq!("dport", s);
        assert_eq!(s, *"dport");
        assert_eq!(s, owned);
        assert_eq!(owned, s);
        assert!(s != "sport");
        assert_eq!(hash_of(&s), hash_of("dport"));
        let set: HashSet<Symbol> = [Symbol::new("udp"), Symbol::new("MY-CHAIN")].into();
        assert!(set.contains("udp") && set.contains("MY-CHAIN") && !set.contains("tcp"));
        let ordered: Vec<Symbol> = ["tcp", "MY-CHAIN", "ACCEPT", "comment"]
            .into_iter()
            .map(Symbol::new)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(ordered, ["ACCEPT", "MY-CHAIN", "comment", "tcp"]);
        assert_eq!(s.len(), 5, "derefs to str");
        assert_eq!(format!("{s} {s:?}"), "dport \"dport\"");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"dport\"");
        assert_eq!(String::from(s), "dport");
    }
}
