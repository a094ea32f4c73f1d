//! The parser for `ipset save`, `ipset list` and `ipset list -t` output.
//!
//! Owns turning that text into [`IpSet`]s: `create NAME TYPE header…` / `add NAME MEMBER opts…`
//! lines (save), and `Name:` / `Type:` / `Revision:` / `Header:` / `Size in memory:` /
//! `References:` / `Number of entries:` / `Members:` blocks (list, with or without members). Names
//! are kept verbatim (kube-router's `inet6:` prefix, Weave's `|!$#;` characters). Blank lines, CRLF
//! and surrounding blanks are tolerated; unknown `Key: value` lines in list output are skipped.
//! It does no I/O and does not decide what a set means.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::Family;
use crate::parse::{Limits, ParseError, over_limit, trim_blanks};

use super::IpSet;

/// Header options that are flags (no value follows them).
const FLAG_OPTIONS: &[&str] = &[
    "counters",
    "comment",
    "skbinfo",
    "forceadd",
    "nomatch",
    "bucketsize-auto",
];

/// Parses `ipset save`, `ipset list` or `ipset list -t` output (the formats may even be mixed),
/// within the default [`Limits`].
pub fn parse_ipsets(text: &str) -> Result<Vec<IpSet>, ParseError> {
    parse_ipsets_with(text, &Limits::default())
}

/// [`parse_ipsets`] with explicit caps on input bytes, sets and members.
pub fn parse_ipsets_with(text: &str, limits: &Limits) -> Result<Vec<IpSet>, ParseError> {
    limits.check_input(text)?;
    let mut parser = IpsetParser {
        limits: *limits,
        ..IpsetParser::default()
    };
    for (i, raw) in text.lines().enumerate() {
        parser.line(i + 1, raw)?;
    }
    Ok(parser.finish())
}

/// Where list output is inside a `Name:` block.
#[derive(Debug, Default, PartialEq, Eq)]
enum ListState {
    #[default]
    Outside,
    Headers,
    Members,
}

#[derive(Default)]
struct IpsetParser {
    sets: Vec<IpSet>,
    by_name: HashMap<String, usize>,
    /// Indices of sets from list output that stated `Number of entries:`.
    counted: Vec<bool>,
    list: ListState,
    limits: Limits,
    members_seen: usize,
}

fn new_set(name: &str) -> IpSet {
    IpSet {
        name: name.to_owned(),
        set_type: String::new(),
        family: None,
        header: Vec::new(),
        members: Vec::new(),
        entries: 0,
        memory_bytes: None,
        references: None,
    }
}

/// Whitespace-separated words of `raw[from..]` with byte offsets.
fn words(raw: &str, from: usize) -> impl Iterator<Item = (usize, &str)> {
    let base = raw.as_ptr() as usize;
    raw[from..]
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .map(move |w| (w.as_ptr() as usize - base, w))
}

impl IpsetParser {
    fn line(&mut self, no: usize, raw: &str) -> Result<(), ParseError> {
        let (start, body) = trim_blanks(raw);
        if body.is_empty() {
            if self.list == ListState::Members || self.list == ListState::Headers {
                self.list = ListState::Outside;
            }
            return Ok(());
        }
        if self.list == ListState::Members && !body.starts_with("Name:") {
            return self.member(no, raw, start);
        }
        let save_line =
            body.starts_with("create ") || body.starts_with("add ") || body.starts_with('#');
        let in_block = self.list != ListState::Outside;
        let field = body
            .split_once(':')
            .filter(|(key, _)| !save_line && (in_block || *key == "Name"));
        if let Some((key, value)) = field {
            let value_at = start + key.len() + 1 + (value.len() - value.trim_start().len());
            return self.list_field(no, raw, key, value.trim(), value_at);
        }
        self.list = ListState::Outside;
        let mut it = words(raw, start);
        match it.next() {
            Some((_, "create")) => self.create(no, raw, it),
            Some((_, "add")) => self.add(no, raw, it),
            Some((_, w)) if w.starts_with('#') => Ok(()),
            _ => Err(ParseError::at_byte(
                no,
                raw,
                start,
                "expected `create NAME TYPE …`, `add NAME MEMBER …` or an `ipset list` block starting with `Name:`",
            )),
        }
    }

    fn push_set(
        &mut self,
        no: usize,
        raw: &str,
        at: usize,
        set: IpSet,
    ) -> Result<usize, ParseError> {
        if self.sets.len() >= self.limits.max_sets {
            let message = over_limit(
                "number of sets",
                "sets",
                self.sets.len() + 1,
                self.limits.max_sets,
                "max_sets",
            );
            return Err(ParseError::at_byte(no, raw, at, message));
        }
        if self.by_name.contains_key(&set.name) {
            return Err(ParseError::at_byte(
                no,
                raw,
                at,
                format!("set `{}` is listed twice", set.name),
            ));
        }
        self.by_name.insert(set.name.clone(), self.sets.len());
        self.sets.push(set);
        self.counted.push(false);
        Ok(self.sets.len() - 1)
    }

    fn create<'r>(
        &mut self,
        no: usize,
        raw: &'r str,
        mut it: impl Iterator<Item = (usize, &'r str)>,
    ) -> Result<(), ParseError> {
        let (name_at, name) = it.next().ok_or_else(|| {
            ParseError::at_byte(no, raw, raw.len(), "expected a set name after `create`")
        })?;
        let (_, set_type) = it.next().ok_or_else(|| {
            ParseError::at_byte(no, raw, raw.len(), "expected a set type after the set name")
        })?;
        let mut set = new_set(name);
        set.set_type = set_type.to_owned();
        apply_header(&mut set, it).map_err(|(at, m)| ParseError::at_byte(no, raw, at, m))?;
        self.push_set(no, raw, name_at, set)?;
        Ok(())
    }

    fn add<'r>(
        &mut self,
        no: usize,
        raw: &'r str,
        mut it: impl Iterator<Item = (usize, &'r str)>,
    ) -> Result<(), ParseError> {
        let (name_at, name) = it.next().ok_or_else(|| {
            ParseError::at_byte(no, raw, raw.len(), "expected a set name after `add`")
        })?;
        let idx = *self.by_name.get(name).ok_or_else(|| {
            ParseError::at_byte(
                no,
                raw,
                name_at,
                format!("set `{name}` used before its `create` line"),
            )
        })?;
        let (member_at, member) = it.next().ok_or_else(|| {
            ParseError::at_byte(no, raw, raw.len(), "expected a member after the set name")
        })?;
        self.count_member(no, raw, member_at)?;
        let set = &mut self.sets[idx];
        check_member(set, member).map_err(|m| ParseError::at_byte(no, raw, member_at, m))?;
        set.members.push(member.to_owned());
        set.entries = set.members.len() as u64;
        Ok(())
    }

    fn current(&mut self, no: usize, raw: &str, at: usize, key: &str) -> Result<usize, ParseError> {
        match self.list {
            ListState::Outside => Err(ParseError::at_byte(
                no,
                raw,
                at,
                format!("`{key}:` outside a `Name:` block"),
            )),
            _ => Ok(self.sets.len() - 1),
        }
    }

    fn list_field(
        &mut self,
        no: usize,
        raw: &str,
        key: &str,
        value: &str,
        value_at: usize,
    ) -> Result<(), ParseError> {
        let number = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                ParseError::at_byte(
                    no,
                    raw,
                    value_at,
                    format!("expected a number after `{key}:`, got `{v}`"),
                )
            })
        };
        if key == "Name" {
            if value.is_empty() {
                return Err(ParseError::at_byte(
                    no,
                    raw,
                    value_at,
                    "expected a set name after `Name:`",
                ));
            }
            self.push_set(no, raw, value_at, new_set(value))?;
            self.list = ListState::Headers;
            return Ok(());
        }
        let idx = self.current(no, raw, value_at, key)?;
        let set = &mut self.sets[idx];
        match key {
            "Type" => set.set_type = value.to_owned(),
            "Header" => {
                let words = words(raw, value_at);
                apply_header(set, words).map_err(|(at, m)| ParseError::at_byte(no, raw, at, m))?;
            }
            "Size in memory" => set.memory_bytes = Some(number(value)?),
            "References" => set.references = Some(number(value)?),
            "Number of entries" => {
                set.entries = number(value)?;
                self.counted[idx] = true;
            }
            "Members" => self.list = ListState::Members,
            _ => {} // Revision and fields of newer ipset versions.
        }
        Ok(())
    }

    fn member(&mut self, no: usize, raw: &str, start: usize) -> Result<(), ParseError> {
        let idx = self.current(no, raw, start, "Members")?;
        let (member_at, member) = words(raw, start).next().unwrap_or((start, ""));
        self.count_member(no, raw, member_at)?;
        let set = &mut self.sets[idx];
        check_member(set, member).map_err(|m| ParseError::at_byte(no, raw, member_at, m))?;
        set.members.push(member.to_owned());
        if !self.counted[idx] {
            set.entries = set.members.len() as u64;
        }
        Ok(())
    }

    fn count_member(&mut self, no: usize, raw: &str, at: usize) -> Result<(), ParseError> {
        self.members_seen += 1;
        if self.members_seen > self.limits.max_set_members {
            let message = over_limit(
                "number of set members",
                "members",
                self.members_seen,
                self.limits.max_set_members,
                "max_set_members",
            );
            return Err(ParseError::at_byte(no, raw, at, message));
        }
        Ok(())
    }

    fn finish(self) -> Vec<IpSet> {
        self.sets
    }
}

/// Reads `family inet hashsize 1024 comment …` into the set's family and header pairs, checking
/// the numbers the kernel checks. Errors carry the byte offset of the offending word.
fn apply_header<'w>(
    set: &mut IpSet,
    mut words: impl Iterator<Item = (usize, &'w str)>,
) -> Result<(), (usize, String)> {
    while let Some((key_at, key)) = words.next() {
        let (value_at, value) = if FLAG_OPTIONS.contains(&key) {
            (key_at, "")
        } else {
            words.next().unwrap_or((key_at, ""))
        };
        check_header_value(key, value).map_err(|m| (value_at, m))?;
        if key == "family" {
            set.family = match value {
                "inet" => Some(Family::Ipv4),
                "inet6" => Some(Family::Ipv6),
                _ => None,
            };
        }
        set.header.push((key.to_owned(), value.to_owned()));
    }
    Ok(())
}

/// The header numbers ipset and the kernel bound: `hashsize` is rounded up to a power of two of
/// at most 2^31 buckets, `maxelem` and `timeout` are 32-bit, `family` is `inet` or `inet6`.
fn check_header_value(key: &str, value: &str) -> Result<(), String> {
    let number = || value.parse::<u64>().ok();
    match key {
        "hashsize" => match number() {
            Some(n) if (1..=1 << 31).contains(&n) => Ok(()),
            _ => Err(format!(
                "invalid hashsize `{value}`: expected a number from 1 to 2147483648"
            )),
        },
        "maxelem" => match number() {
            Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => Ok(()),
            _ => Err(format!(
                "invalid maxelem `{value}`: expected a number from 1 to 4294967295"
            )),
        },
        "timeout" | "bucketsize" | "size" => match number() {
            Some(n) if n <= u64::from(u32::MAX) => Ok(()),
            _ => Err(format!(
                "invalid {key} `{value}`: expected an unsigned 32-bit number"
            )),
        },
        "family" => match value {
            "inet" | "inet6" => Ok(()),
            _ => Err(format!("invalid family `{value}`: expected inet or inet6")),
        },
        _ => Ok(()),
    }
}

/// The address parts of a member (`hash:ip`, `hash:net`, `hash:ip,port`, `hash:net,iface`,
/// `bitmap:ip`, …) must be addresses: ipset refuses `999.1.1.1`. (The family is not compared:
/// `ipset list` output is read as printed, and the tracer matches by family anyway.)
fn check_member(set: &IpSet, member: &str) -> Result<(), String> {
    let Some(dims) = set.set_type.split_once(':').map(|(_, d)| d) else {
        return Ok(());
    };
    if member.is_empty() {
        return Err("expected a member".to_owned());
    }
    for (dim, part) in dims.split(',').zip(member.split(',')) {
        if matches!(dim, "ip" | "net") {
            check_member_address(part)?;
        }
    }
    Ok(())
}

fn check_member_address(part: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "invalid address `{part}` in set member: expected an IPv4 or IPv6 address, \
             `ADDR/PREFIX` or `FIRST-LAST`"
        )
    };
    let (addr, rest) = match part.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (part, None),
    };
    let addrs: Vec<&str> = match addr.split_once('-') {
        Some((a, b)) if !addr.contains(':') || b.contains(':') => vec![a, b],
        _ => vec![addr],
    };
    for a in addrs {
        a.parse::<IpAddr>().map_err(|_| bad())?;
    }
    if let Some(prefix) = rest {
        let width = if addr.contains(':') { 128 } else { 32 };
        match prefix.parse::<u32>() {
            Ok(p) if p <= width => {}
            _ => {
                return Err(format!(
                    "invalid prefix length `{prefix}` in set member `{part}`: expected 0 to {width}"
                ));
            }
        }
    }
    Ok(())
}
