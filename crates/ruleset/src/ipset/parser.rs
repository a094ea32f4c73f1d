//! The parser for `ipset save`, `ipset list` and `ipset list -t` output.
//!
//! Owns turning that text into [`IpSet`]s: `create NAME TYPE header…` / `add NAME MEMBER opts…`
//! lines (save), and `Name:` / `Type:` / `Revision:` / `Header:` / `Size in memory:` /
//! `References:` / `Number of entries:` / `Members:` blocks (list, with or without members). Names
//! are kept verbatim (kube-router's `inet6:` prefix, Weave's `|!$#;` characters). Blank lines, CRLF
//! and surrounding blanks are tolerated; unknown `Key: value` lines in list output are skipped.
//! It does no I/O and does not decide what a set means.

use std::collections::HashMap;

use crate::model::Family;
use crate::parse::{ParseError, trim_blanks};

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

/// Parses `ipset save`, `ipset list` or `ipset list -t` output (the formats may even be mixed).
pub fn parse_ipsets(text: &str) -> Result<Vec<IpSet>, ParseError> {
    let mut parser = IpsetParser::default();
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
        apply_header(&mut set, it.map(|(_, w)| w));
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
        let (_, member) = it.next().ok_or_else(|| {
            ParseError::at_byte(no, raw, raw.len(), "expected a member after the set name")
        })?;
        let set = &mut self.sets[idx];
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
            "Header" => apply_header(set, value.split_ascii_whitespace()),
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
        let member = words(raw, start).next().map_or("", |(_, w)| w);
        let set = &mut self.sets[idx];
        set.members.push(member.to_owned());
        if !self.counted[idx] {
            set.entries = set.members.len() as u64;
        }
        Ok(())
    }

    fn finish(self) -> Vec<IpSet> {
        self.sets
    }
}

/// Reads `family inet hashsize 1024 comment …` into the set's family and header pairs.
fn apply_header<'w>(set: &mut IpSet, mut words: impl Iterator<Item = &'w str>) {
    while let Some(key) = words.next() {
        let value = if FLAG_OPTIONS.contains(&key) {
            ""
        } else {
            words.next().unwrap_or("")
        };
        if key == "family" {
            set.family = match value {
                "inet" => Some(Family::Ipv4),
                "inet6" => Some(Family::Ipv6),
                _ => None,
            };
        }
        set.header.push((key.to_owned(), value.to_owned()));
    }
}
