//! iptables-legacy tables through `getsockopt(IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES)` and the
//! IPv6 equivalents: no fork, no `/proc` read needed.
//!
//! Owns the x_tables ABI (struct offsets of `ipt_getinfo`, `ipt_entry`, `ip6t_entry`,
//! `xt_entry_match`, `xt_entry_target`), walking an entries blob into chains and rules, and a
//! fingerprint of a table's rules that ignores counters (what tells "the rules changed"). It does
//! not parse rule text nor decide how counters meet parsed rules (`super` does).

use std::collections::HashMap;
use std::hash::Hasher as _;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nfscope_ruleset::{Family, FxHasher};

use super::nft::Count;
use crate::sys;

const SO_GET_INFO: libc::c_int = 64;
const SO_GET_ENTRIES: libc::c_int = 65;
const TABLE_NAME_LEN: usize = 32;
pub(crate) const GETINFO_LEN: usize = 84;
const GET_ENTRIES_HEADER: usize = 40;
const HOOK_NAMES: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
/// The tables iptables knows; probed when `/proc/net/ip_tables_names` cannot be read.
pub(crate) const STANDARD_TABLES: [&str; 5] = ["raw", "mangle", "nat", "filter", "security"];

/// Per-family layout of the entry struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    entry_size: usize,
    target_offset: usize,
    next_offset: usize,
    counters: usize,
}

const IPV4: Layout = Layout {
    entry_size: 112,
    target_offset: 88,
    next_offset: 90,
    counters: 96,
};
const IPV6: Layout = Layout {
    entry_size: 168,
    target_offset: 140,
    next_offset: 142,
    counters: 152,
};

fn layout(family: Family) -> Layout {
    match family {
        Family::Ipv4 => IPV4,
        Family::Ipv6 => IPV6,
    }
}

/// A raw IP socket of one family, for the get-sockopts.
pub(crate) struct XtSocket {
    fd: OwnedFd,
    family: Family,
}

impl XtSocket {
    /// Opens the socket (needs CAP_NET_RAW; the get-sockopts need CAP_NET_ADMIN).
    pub(crate) fn open(family: Family) -> io::Result<Self> {
        let domain = match family {
            Family::Ipv4 => libc::AF_INET,
            Family::Ipv6 => libc::AF_INET6,
        };
        Ok(Self {
            fd: sys::raw_ip_socket(domain)?,
            family,
        })
    }

    fn level(&self) -> libc::c_int {
        match self.family {
            Family::Ipv4 => libc::IPPROTO_IP,
            Family::Ipv6 => libc::IPPROTO_IPV6,
        }
    }

    /// The table's header; `Ok(None)` when the kernel has no such table (`ENOENT`).
    ///
    /// Asking creates the table when the kernel has it as a template (built in, or its module
    /// loaded) but not yet in this namespace: see `super::legacy_table_names`.
    pub(crate) fn info(&self, table: &str) -> io::Result<Option<TableInfo>> {
        Ok(self.info_bytes(table)?.map(|buf| TableInfo::decode(&buf)))
    }

    /// The raw `ipt_getinfo` reply (what [`TableInfo`] is decoded from).
    pub(crate) fn info_bytes(&self, table: &str) -> io::Result<Option<[u8; GETINFO_LEN]>> {
        let mut buf = [0u8; GETINFO_LEN];
        put_name(&mut buf, table)?;
        match sys::get_option_in_out(self.fd.as_fd(), self.level(), SO_GET_INFO, &mut buf) {
            Ok(_) => Ok(Some(buf)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a whole table: header and entries, both from the same table revision when the sizes
    /// agree (otherwise the table was replaced in between and the read says so with `Ok(None)`).
    pub(crate) fn read_table(&self, table: &str) -> io::Result<Option<XtTable>> {
        Ok(match self.read_table_into(table, Vec::new())? {
            TableRead::Read(table) => Some(table),
            TableRead::Missing(_) | TableRead::Replaced(_) => None,
        })
    }

    /// [`XtSocket::read_table`] into `buf` (its allocation reused: one table's entries are tens
    /// of MiB at 70k rules, so a reader holds one at a time and recycles it with
    /// [`XtTable::into_buffer`]).
    pub(crate) fn read_table_into(&self, table: &str, mut buf: Vec<u8>) -> io::Result<TableRead> {
        let Some(info_bytes) = self.info_bytes(table)? else {
            return Ok(TableRead::Missing(buf));
        };
        let info = TableInfo::decode(&info_bytes);
        buf.clear();
        buf.resize(GET_ENTRIES_HEADER + info.size, 0);
        put_name(&mut buf, table)?;
        buf[TABLE_NAME_LEN..TABLE_NAME_LEN + 4].copy_from_slice(&(info.size as u32).to_ne_bytes());
        match sys::get_option_in_out(self.fd.as_fd(), self.level(), SO_GET_ENTRIES, &mut buf) {
            Ok(_) => {}
            // EAGAIN: the table changed size between the two calls.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                return Ok(TableRead::Replaced(buf));
            }
            Err(e) => return Err(e),
        }
        // The header stays in front: moving 40 MiB of entries down by 40 bytes costs more than
        // an offset.
        XtTable::from_replies(table, self.family, &info_bytes, buf).map(TableRead::Read)
    }
}

/// What [`XtSocket::read_table_into`] found; the buffer comes back when there is no table.
pub(crate) enum TableRead {
    Read(XtTable),
    /// No such table (`ENOENT`).
    Missing(Vec<u8>),
    /// The table changed size between its header and entries reads.
    Replaced(Vec<u8>),
}

fn put_name(buf: &mut [u8], table: &str) -> io::Result<()> {
    if table.len() >= TABLE_NAME_LEN || table.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad table name",
        ));
    }
    buf[..table.len()].copy_from_slice(table.as_bytes());
    Ok(())
}

/// `ipt_getinfo` / `ip6t_getinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableInfo {
    valid_hooks: u32,
    hook_entry: [u32; 5],
    underflow: [u32; 5],
    pub num_entries: u32,
    pub size: usize,
}

impl TableInfo {
    fn decode(buf: &[u8; GETINFO_LEN]) -> Self {
        let word =
            |i: usize| u32::from_ne_bytes(buf[32 + 4 * i..36 + 4 * i].try_into().expect("4"));
        Self {
            valid_hooks: word(0),
            hook_entry: [word(1), word(2), word(3), word(4), word(5)],
            underflow: [word(6), word(7), word(8), word(9), word(10)],
            num_entries: word(11),
            size: word(12) as usize,
        }
    }
}

/// One table as read: header and entries blob.
pub(crate) struct XtTable {
    pub name: String,
    layout: Layout,
    info: TableInfo,
    /// The `ipt_get_entries` reply: a [`GET_ENTRIES_HEADER`]-byte header, then the entries.
    blob: Vec<u8>,
}

impl XtTable {
    /// A table from the bytes the kernel returned: the `*_SO_GET_INFO` reply and the
    /// `*_SO_GET_ENTRIES` reply (header and entries), as [`XtSocket::read_table`] reads them
    /// (tests replay captured bytes through this).
    pub(crate) fn from_replies(
        name: &str,
        family: Family,
        info: &[u8; GETINFO_LEN],
        entries_reply: Vec<u8>,
    ) -> io::Result<Self> {
        if entries_reply.len() < GET_ENTRIES_HEADER {
            return Err(io::Error::other(format!(
                "{name}: entries reply of {} bytes, shorter than its header",
                entries_reply.len()
            )));
        }
        let info = TableInfo::decode(info);
        let entries = entries_reply.len() - GET_ENTRIES_HEADER;
        if entries != info.size {
            return Err(io::Error::other(format!(
                "{name}: {entries} bytes of entries, the table header says {}",
                info.size
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            layout: layout(family),
            info,
            blob: entries_reply,
        })
    }

    /// The entries buffer, for the next read.
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.blob
    }

    /// The raw `*_SO_GET_ENTRIES` reply, for test captures.
    #[cfg(test)]
    pub(crate) fn entries_reply(&self) -> &[u8] {
        &self.blob
    }
}

/// One rule of a walked table, borrowed from the entries blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XtRule<'a> {
    pub count: Count,
    /// The text of a `comment` match, if any.
    pub comment: Option<&'a str>,
    /// The verdict or jump as `iptables-save` names it (`ACCEPT`, `DROP`, `RETURN`, `QUEUE`, a
    /// user chain), `Some("")` for a rule without a target, `None` for extension targets.
    pub standard_target: Option<&'a str>,
    /// The whole entry, for decoding its text (`crate::xt`).
    pub entry: Entry<'a>,
}

/// One chain of a walked table.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct XtChain<'a> {
    pub name: &'a str,
    /// Policy counters of a built-in chain.
    pub policy: Option<Count>,
    /// Policy verdict of a built-in chain (`ACCEPT`, `DROP`, …), `None` when not a verdict.
    pub policy_target: Option<&'a str>,
    pub rules: Vec<XtRule<'a>>,
}

impl XtTable {
    fn entries(&self) -> &[u8] {
        &self.blob[GET_ENTRIES_HEADER..]
    }

    /// A fingerprint of everything but the counters: equal fingerprints mean equal rules (and
    /// a rare false "equal" is still caught when counters are placed, by the comment, verdict
    /// and rule-count checks). A word-at-a-time multiply-rotate hash: at 70k rules the blob is
    /// 40 MiB, read on every scrape, so SipHash's cost showed in profiles.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut hash = FxHasher::default();
        hash.write(self.name.as_bytes());
        hash.add(u64::from(self.info.valid_hooks));
        hash.add(self.entries().len() as u64);
        let mut off = 0;
        while let Some(entry) = self.entry(off) {
            hash.write(&entry.bytes[..self.layout.counters]);
            hash.write(&entry.bytes[self.layout.counters + 16..]);
            off += entry.bytes.len();
        }
        hash.finish()
    }

    fn entry(&self, off: usize) -> Option<Entry<'_>> {
        let l = self.layout;
        let entries = self.entries();
        let head = entries.get(off..off + l.entry_size)?;
        let target_offset = usize::from(u16::from_ne_bytes([
            head[l.target_offset],
            head[l.target_offset + 1],
        ]));
        let next_offset = usize::from(u16::from_ne_bytes([
            head[l.next_offset],
            head[l.next_offset + 1],
        ]));
        if next_offset < l.entry_size || target_offset < l.entry_size || target_offset > next_offset
        {
            return None;
        }
        let bytes = entries.get(off..off + next_offset)?;
        Some(Entry {
            bytes,
            layout: l,
            target_offset,
        })
    }

    /// Walks the blob into chains in table order: built-in chains (rules, then the policy entry)
    /// and user chains (after their `ERROR` head entry, without the closing `RETURN`).
    pub(crate) fn chains(&self) -> io::Result<Vec<XtChain<'_>>> {
        let entries = self.entry_offsets()?;
        let chain_starts = self.user_chain_starts(&entries);
        let mut chains: Vec<XtChain<'_>> = Vec::new();
        let mut open = false;
        for (i, &(off, entry)) in entries.iter().enumerate() {
            if let Some(hook) = self.hook_at(off) {
                chains.push(XtChain {
                    name: HOOK_NAMES[hook],
                    ..XtChain::default()
                });
                open = true;
            }
            if let Some(name) = entry.error_name() {
                if name == "ERROR" {
                    break;
                }
                chains.push(XtChain {
                    name,
                    ..XtChain::default()
                });
                open = true;
                continue;
            }
            let chain = chains.last_mut().filter(|_| open).ok_or_else(|| {
                io::Error::other(format!("{}: entry at {off} outside any chain", self.name))
            })?;
            if self.is_underflow(off) {
                chain.policy = Some(entry.count());
                chain.policy_target = entry
                    .standard_target(off + entry.bytes.len(), &chain_starts)
                    .filter(|t| !t.is_empty());
                open = false;
                continue;
            }
            let closes_user_chain = entries
                .get(i + 1)
                .is_none_or(|(_, e)| e.error_name().is_some());
            if closes_user_chain && chain.policy.is_none() && !HOOK_NAMES.contains(&chain.name) {
                open = false; // the implicit RETURN of a user chain
                continue;
            }
            let next = off + entry.bytes.len();
            chain.rules.push(XtRule {
                count: entry.count(),
                comment: entry.comment(),
                standard_target: entry.standard_target(next, &chain_starts),
                entry,
            });
        }
        Ok(chains)
    }

    fn entry_offsets(&self) -> io::Result<Vec<(usize, Entry<'_>)>> {
        let mut out = Vec::with_capacity(self.info.num_entries as usize);
        let mut off = 0;
        while off < self.entries().len() {
            let entry = self.entry(off).ok_or_else(|| {
                io::Error::other(format!("{}: malformed entry at offset {off}", self.name))
            })?;
            out.push((off, entry));
            off += entry.bytes.len();
        }
        Ok(out)
    }

    /// Offset of each user chain's first entry → its name (jump verdicts point there).
    fn user_chain_starts<'a>(&self, entries: &[(usize, Entry<'a>)]) -> HashMap<usize, &'a str> {
        entries
            .iter()
            .filter_map(|(off, e)| e.error_name().map(|n| (off + e.bytes.len(), n)))
            .collect()
    }

    fn hook_at(&self, off: usize) -> Option<usize> {
        (0..5).find(|&h| {
            self.info.valid_hooks & (1 << h) != 0 && self.info.hook_entry[h] as usize == off
        })
    }

    fn is_underflow(&self, off: usize) -> bool {
        (0..5).any(|h| {
            self.info.valid_hooks & (1 << h) != 0 && self.info.underflow[h] as usize == off
        })
    }
}

/// One `ipt_entry` / `ip6t_entry` of a table's blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    bytes: &'a [u8],
    layout: Layout,
    target_offset: usize,
}

/// One `xt_entry_match` or `xt_entry_target`: user name, revision and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extension<'a> {
    pub name: &'a str,
    pub revision: u8,
    pub data: &'a [u8],
}

impl<'a> Entry<'a> {
    /// The `ipt_ip` / `ip6t_ip6` header (addresses, interfaces, protocol, flags).
    pub(crate) fn header(&self) -> &'a [u8] {
        // `nfcache` follows the header, then `target_offset`.
        &self.bytes[..self.layout.target_offset - 4]
    }

    /// The matches in order; `Err(offset)` for a malformed one (the walk stops there).
    pub(crate) fn matches(&self) -> impl Iterator<Item = Result<Extension<'a>, usize>> + 'a {
        let bytes = self.bytes;
        let end = self.target_offset;
        let mut off = self.layout.entry_size;
        std::iter::from_fn(move || {
            if off >= end {
                return None;
            }
            let m = &bytes[off..end];
            let size = m
                .get(..2)
                .map(|b| usize::from(u16::from_ne_bytes([b[0], b[1]])));
            match size {
                Some(size) if size >= 32 && size <= m.len() => {
                    off += size;
                    Some(Ok(Extension {
                        name: nul_str(&m[2..31]),
                        revision: m[31],
                        data: &m[32..size],
                    }))
                }
                _ => {
                    let at = off;
                    off = end;
                    Some(Err(at))
                }
            }
        })
    }

    /// The target extension (empty name: a standard verdict or jump).
    pub(crate) fn target_ext(&self) -> Extension<'a> {
        let t = &self.bytes[self.target_offset..];
        let size = t
            .get(..2)
            .map_or(0, |b| usize::from(u16::from_ne_bytes([b[0], b[1]])))
            .clamp(32.min(t.len()), t.len());
        Extension {
            name: t.get(2..31).map_or("", nul_str),
            revision: t.get(31).copied().unwrap_or(0),
            data: t.get(32..size).unwrap_or(&[]),
        }
    }

    fn count(&self) -> Count {
        let c = self.layout.counters;
        let word = |at: usize| u64::from_ne_bytes(self.bytes[at..at + 8].try_into().expect("8"));
        Count {
            packets: word(c),
            bytes: word(c + 8),
        }
    }

    /// (name, data) of the target.
    fn target(&self) -> (&'a str, &'a [u8]) {
        let t = &self.bytes[self.target_offset..];
        let name = t.get(2..31).map_or("", nul_str);
        (name, t.get(32..).unwrap_or(&[]))
    }

    fn error_name(&self) -> Option<&'a str> {
        let (name, data) = self.target();
        (name == "ERROR").then(|| nul_str(data))
    }

    fn standard_target(
        &self,
        next: usize,
        chain_starts: &HashMap<usize, &'a str>,
    ) -> Option<&'a str> {
        let (name, data) = self.target();
        if !name.is_empty() {
            return None;
        }
        let verdict = i32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
        Some(match verdict {
            -1 => "DROP",
            -2 => "ACCEPT",
            -4 => "QUEUE",
            -5 => "RETURN",
            v if v >= 0 && v as usize == next => "",
            v if v >= 0 => chain_starts.get(&(v as usize)).copied()?,
            _ => return None,
        })
    }

    /// The text of the first `comment` match.
    fn comment(&self) -> Option<&'a str> {
        let mut off = self.layout.entry_size;
        while off + 32 <= self.target_offset {
            let m = &self.bytes[off..self.target_offset];
            let size = usize::from(u16::from_ne_bytes([m[0], m[1]]));
            if size < 32 || size > m.len() {
                return None;
            }
            if nul_str(&m[2..31]) == "comment" {
                return Some(nul_str(&m[32..size]));
            }
            off += size;
        }
        None
    }
}

fn nul_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).unwrap_or("")
}
