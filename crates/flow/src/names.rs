//! Naming endpoints: a static names file (IP or CIDR → `namespace/name` or `name`) plus the
//! node's own addresses, looked up by longest prefix.
//!
//! File format, one entry a line, `#` starts a comment:
//!
//! ```text
//! 10.244.1.7       shop/web          # a pod, named by its workload
//! 10.244.2.0/24    shop/db           # a whole range
//! fd00:10:96::/112 kube-system/dns
//! ```
//!
//! Kubernetes-derived names (a later source) will feed the same [`Names`]. This module reads no
//! file itself: the caller passes the text.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

/// What an endpoint is called.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Name {
    /// Kubernetes namespace, when the name has one.
    pub namespace: Option<String>,
    /// Workload (or host, or service) name.
    pub name: String,
}

impl Name {
    /// Parses `namespace/name` or a bare `name`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Self {
                namespace: Some(ns.to_owned()),
                name: name.to_owned(),
            },
            _ => Self {
                namespace: None,
                name: text.to_owned(),
            },
        }
    }

    /// `namespace/name`, or `name` without a namespace.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A names file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct NameError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    network: IpAddr,
    len: u8,
    name: Name,
}

/// IP → name, longest prefix wins; exact addresses are a hash lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    exact: HashMap<IpAddr, Name>,
    /// Sorted longest prefix first.
    prefixes: Vec<Prefix>,
}

impl Names {
    /// Parses a names file.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let mut names = Self::default();
        for (idx, raw) in text.lines().enumerate() {
            let content = raw.split('#').next().unwrap_or_default();
            let mut fields = fields_with_columns(content);
            let Some((addr_col, addr)) = fields.next() else {
                continue;
            };
            let error = |column: usize, message: String| NameError {
                line: idx + 1,
                column,
                message,
            };
            let (network, len) = parse_prefix(addr).map_err(|m| error(addr_col, m))?;
            let Some((_, name)) = fields.next() else {
                return Err(error(
                    addr_col + addr.chars().count(),
                    "a name must follow the address".into(),
                ));
            };
            if let Some((col, extra)) = fields.next() {
                return Err(error(col, format!("unexpected {extra:?} after the name")));
            }
            names.insert(network, len, Name::parse(name));
        }
        Ok(names)
    }

    /// Adds (or replaces) one entry; `len` is the prefix length.
    pub fn insert(&mut self, network: IpAddr, len: u8, name: Name) {
        let full = if network.is_ipv4() { 32 } else { 128 };
        if len >= full {
            self.exact.insert(network, name);
            return;
        }
        let network = mask(network, len);
        self.prefixes
            .retain(|p| !(p.network == network && p.len == len));
        self.prefixes.push(Prefix { network, len, name });
        self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.len));
    }

    /// Adds every entry of `other`, replacing entries of this one for the same address or
    /// prefix (e.g. a names file over names built in).
    pub fn merge(&mut self, other: &Self) {
        for (addr, name) in &other.exact {
            self.exact.insert(*addr, name.clone());
        }
        for prefix in &other.prefixes {
            self.insert(prefix.network, prefix.len, prefix.name.clone());
        }
    }

    /// Names `addr` unless the file already does (the node's own interface addresses).
    pub fn add_local(&mut self, addr: IpAddr, name: &str) {
        if self.lookup(addr).is_none() {
            self.insert(addr, 128, Name::parse(name));
        }
    }

    /// The name for `addr`, if any entry covers it.
    pub fn lookup(&self, addr: IpAddr) -> Option<&Name> {
        if let Some(name) = self.exact.get(&addr) {
            return Some(name);
        }
        self.prefixes
            .iter()
            .find(|p| p.network.is_ipv4() == addr.is_ipv4() && mask(addr, p.len) == p.network)
            .map(|p| &p.name)
    }

    /// The name for `addr`, or the address itself (no namespace) when nothing covers it.
    pub fn name_or_ip(&self, addr: IpAddr) -> Name {
        self.lookup(addr).cloned().unwrap_or_else(|| Name {
            namespace: None,
            name: addr.to_string(),
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }

    /// No entries at all?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whitespace-separated fields with their 1-based character column.
fn fields_with_columns(line: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fields = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for (col, (byte, ch)) in line.char_indices().enumerate() {
        match (ch.is_whitespace(), start) {
            (true, Some((s_byte, s_col))) => {
                fields.push((s_col + 1, &line[s_byte..byte]));
                start = None;
            }
            (false, None) => start = Some((byte, col)),
            _ => {}
        }
    }
    if let Some((s_byte, s_col)) = start {
        fields.push((s_col + 1, &line[s_byte..]));
    }
    fields.into_iter()
}

fn parse_prefix(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => full,
        Some(len) => len
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= full)
            .ok_or_else(|| format!("prefix length {len:?} is not 0..={full}"))?,
    };
    Ok((addr, len))
}

/// `addr` with all but the first `len` bits cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6((bits & keep).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_exact_beats_ranges() {
        let names = Names::parse(
            "# pods\n10.244.0.0/16 cluster\n10.244.2.0/24 shop/db\n10.244.2.9 shop/web # one pod\n\nfd00::/8 v6\n",
        )
        .unwrap();
        assert_eq!(
            names.lookup(ip("10.244.2.9")).unwrap().display(),
            "shop/web"
        );
        assert_eq!(
            names.lookup(ip("10.244.2.10")).unwrap().display(),
            "shop/db"
        );
        assert_eq!(names.lookup(ip("10.244.3.1")).unwrap().display(), "cluster");
        assert_eq!(names.lookup(ip("fd12::1")).unwrap().name, "v6");
        assert!(names.lookup(ip("192.168.0.1")).is_none());
        assert_eq!(names.name_or_ip(ip("192.168.0.1")).name, "192.168.0.1");
        assert_eq!(names.len(), 4);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = Names::parse("10.0.0.1 a\n  10.0.0.300 b\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 3));
        let err = Names::parse("10.0.0.0/33 a\n").unwrap_err();
        assert_eq!((err.line, err.column), (1, 1));
        let err = Names::parse("10.0.0.1\n").unwrap_err();
        assert_eq!((err.line, err.column), (1, 9));
        let err = Names::parse("10.0.0.1 a b\n").unwrap_err();
        assert_eq!((err.line, err.column), (1, 12));
        assert!(err.to_string().starts_with("1:12: "));
    }

    #[test]
    fn merged_entries_replace_same_prefixes_and_keep_the_rest() {
        let mut names = Names::parse("10.0.0.1 built/in\n10.1.0.0/16 built/range\n").unwrap();
        let file = Names::parse("10.0.0.1 file/web\n10.2.0.0/16 file/range\n").unwrap();
        names.merge(&file);
        assert_eq!(names.lookup(ip("10.0.0.1")).unwrap().display(), "file/web");
        assert_eq!(
            names.lookup(ip("10.1.2.3")).unwrap().display(),
            "built/range"
        );
        assert_eq!(
            names.lookup(ip("10.2.2.3")).unwrap().display(),
            "file/range"
        );
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn local_addresses_do_not_override_the_file() {
        let mut names = Names::parse("10.0.0.1 shop/web\n").unwrap();
        names.add_local(ip("10.0.0.1"), "node");
        names.add_local(ip("10.0.0.2"), "node");
        assert_eq!(names.lookup(ip("10.0.0.1")).unwrap().name, "web");
        assert_eq!(names.lookup(ip("10.0.0.2")).unwrap().name, "node");
    }
}
