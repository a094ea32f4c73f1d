//! Per-rule label strings that depend only on what rules *say*, not on their counters: the stable
//! `rule_id`, the canonical rule text and the decoded comment.
//!
//! Owns the `rule_id` algorithm: the first 16 hex digits of SHA-256 over
//! `family \0 backend \0 table \0 chain \0 canonical-rule-text`. The k-th rule (k ≥ 2) in a
//! ruleset whose digest was already handed out (an exact duplicate in the same chain, or — never
//! seen in practice — a hash collision) gets `-k` appended, so ids are unique within a ruleset
//! and a rule's id does not move when unrelated rules are inserted or removed. Native nftables
//! rules use the same digest with backend `nftables` ([`native_rule_id`]).
//!
//! Computing these strings is the expensive part of an encoding (rendering and hashing every
//! rule); [`RuleLabels`] is the cacheable result. Rule texts and comments are stored already
//! escaped as exposition label values (see [`crate::expo`]), so writing a series copies them as
//! they are; the accessors decode them again for the JSON and text views.

use nfscope_ruleset::{RuleSpec, Ruleset, RulesetCounters};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;

use nfscope_annotate::Annotations;

use crate::expo::{push_escaped_label_value, unescape_label_value};
use crate::kube::KubePlan;

/// Many short strings in one buffer, addressed by position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StrTable {
    buf: String,
    ends: Vec<usize>,
}

impl StrTable {
    fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }

    /// Drops the spare capacity growth left (kept for the life of a ruleset).
    fn shrink(&mut self) {
        self.buf.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.buf[start..end])
    }
}

/// Maps `(table_idx, chain_idx, rule_idx0)` to a flat position, with bounds checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ChainIndex {
    /// `chains[t][c] = (first flat position, rule count)`.
    chains: Vec<Vec<(usize, usize)>>,
}

impl ChainIndex {
    fn of(ruleset: &Ruleset) -> Self {
        let mut next = 0;
        let chains = ruleset
            .tables
            .iter()
            .map(|t| {
                t.chains
                    .iter()
                    .map(|c| {
                        let entry = (next, c.rules.len());
                        next += c.rules.len();
                        entry
                    })
                    .collect()
            })
            .collect();
        Self { chains }
    }

    fn flat(&self, t: usize, c: usize, r0: usize) -> Option<usize> {
        let &(start, len) = self.chains.get(t)?.get(c)?;
        (r0 < len).then_some(start + r0)
    }

    /// Same tables, chains and rule counts as `counters`?
    fn same_shape(&self, counters: &RulesetCounters) -> bool {
        self.chains.len() == counters.tables.len()
            && self
                .chains
                .iter()
                .zip(&counters.tables)
                .all(|(chains, table)| {
                    chains.len() == table.chains.len()
                        && chains
                            .iter()
                            .zip(&table.chains)
                            .all(|(&(_, n), c)| n == c.rules.len())
                })
    }
}

/// Stable, unique rule ids of one ruleset (see the module docs for the algorithm).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleIds {
    index: ChainIndex,
    ids: StrTable,
}

impl RuleIds {
    /// The id of rule `r0` (0-based) of chain `c` of table `t`; empty when out of range.
    pub fn get(&self, t: usize, c: usize, r0: usize) -> &str {
        self.try_get(t, c, r0).unwrap_or("")
    }

    /// The id of rule `r0` (0-based) of chain `c` of table `t`, if that rule exists.
    pub fn try_get(&self, t: usize, c: usize, r0: usize) -> Option<&str> {
        self.ids.get(self.index.flat(t, c, r0)?)
    }

    /// Number of ids (= rules in the ruleset).
    pub fn len(&self) -> usize {
        self.ids.ends.len()
    }

    /// `true` for a ruleset without rules.
    pub fn is_empty(&self) -> bool {
        self.ids.ends.is_empty()
    }
}

/// The stable rule ids of a ruleset. Renders every rule; prefer [`RuleLabels::new`] when the
/// rule texts are needed too.
pub fn rule_ids(ruleset: &Ruleset) -> RuleIds {
    RuleLabels::new(ruleset).ids
}

/// Everything per rule that an encoding needs besides counters and annotations: id, canonical
/// text, decoded comment (text and comment held escaped for the exposition). Build it once per
/// ruleset *change* (`Ruleset::rules_id`) and reuse it across scrapes whose rules are unchanged
/// (counters may differ): see [`crate::encode_counters_streaming`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleLabels {
    ids: RuleIds,
    texts: StrTable,
    comments: StrTable,
    /// Which rules feed which Kubernetes series, when attached ([`Self::attach_kube_plan`]).
    kube: Option<KubePlan>,
}

impl RuleLabels {
    /// Renders, hashes and indexes every rule of `ruleset`.
    pub fn new(ruleset: &Ruleset) -> Self {
        let index = ChainIndex::of(ruleset);
        let mut ids = StrTable::default();
        let mut texts = StrTable::default();
        let mut comments = StrTable::default();
        let mut seen: HashMap<[u8; 8], u32> = HashMap::with_capacity(ruleset.rule_count());
        let mut text = String::new();
        let mut comment = String::new();
        let mut escaped = String::new();
        for table in &ruleset.tables {
            for chain in &table.chains {
                let prefix = chain_hasher(ruleset, &table.name, &chain.name);
                for rule in &chain.rules {
                    text.clear();
                    text.push_str(&nfscope_ruleset::render_rule_spec(&rule.spec));
                    push_escaped(&mut texts, &mut escaped, &text);
                    join_comments(&rule.spec, &mut comment);
                    push_escaped(&mut comments, &mut escaped, &comment);
                    let digest = short_digest(prefix.clone(), &text);
                    let count = seen.entry(digest).or_insert(0);
                    *count += 1;
                    ids.push(&format_id(digest, *count));
                }
            }
        }
        for table in [&mut ids, &mut texts, &mut comments] {
            table.shrink();
        }
        Self {
            ids: RuleIds { index, ids },
            texts,
            comments,
            kube: None,
        }
    }

    /// Also keeps which of `ruleset`'s rules feed which Kubernetes series, so encodings need
    /// neither the annotations nor the rules' specs for those families (a server can drop both).
    pub fn attach_kube_plan(&mut self, ruleset: &Ruleset, annotations: &Annotations) {
        self.kube = Some(KubePlan::new(ruleset, annotations));
    }

    /// The attached Kubernetes plan, if any.
    pub(crate) fn kube_plan(&self) -> Option<&KubePlan> {
        self.kube.as_ref()
    }

    /// Same tables, chains and rule counts as `counters` (a sanity check: whether the rules
    /// are the same is `Ruleset::rules_id`'s to say).
    pub fn same_shape(&self, counters: &RulesetCounters) -> bool {
        self.ids.index.same_shape(counters)
    }

    /// Bytes of all rule texts and comments: sizes the exposition buffer.
    pub(crate) fn text_bytes(&self) -> (usize, usize) {
        (self.texts.buf.len(), self.comments.buf.len())
    }

    /// The stable rule ids.
    pub fn ids(&self) -> &RuleIds {
        &self.ids
    }

    /// Canonical rule text (the part after `-A CHAIN `); empty when out of range.
    pub fn rule_text(&self, t: usize, c: usize, r0: usize) -> Cow<'_, str> {
        unescape_label_value(self.lookup(&self.texts, t, c, r0))
    }

    /// Decoded comments joined with `; `; empty when the rule has none or is out of range.
    pub fn comment(&self, t: usize, c: usize, r0: usize) -> Cow<'_, str> {
        unescape_label_value(self.lookup(&self.comments, t, c, r0))
    }

    /// Flat position of the first rule of chain `c` of table `t` and the chain's rule count.
    pub(crate) fn chain_span(&self, t: usize, c: usize) -> Option<(usize, usize)> {
        self.ids.index.chains.get(t)?.get(c).copied()
    }

    /// Id, escaped rule text and escaped comment of the rule at flat position `i` (empty
    /// strings when out of range).
    pub(crate) fn escaped(&self, i: usize) -> (&str, &str, &str) {
        (
            self.ids.ids.get(i).unwrap_or(""),
            self.texts.get(i).unwrap_or(""),
            self.comments.get(i).unwrap_or(""),
        )
    }

    fn lookup<'a>(&self, table: &'a StrTable, t: usize, c: usize, r0: usize) -> &'a str {
        self.ids
            .index
            .flat(t, c, r0)
            .and_then(|i| table.get(i))
            .unwrap_or("")
    }
}

/// Appends `value` escaped as a label value to `table` (`scratch` is a reusable buffer).
fn push_escaped(table: &mut StrTable, scratch: &mut String, value: &str) {
    scratch.clear();
    push_escaped_label_value(scratch, value);
    table.push(scratch);
}

fn chain_hasher(ruleset: &Ruleset, table: &str, chain: &str) -> Sha256 {
    let mut h = Sha256::new();
    for part in [
        ruleset.family.as_str(),
        ruleset.backend.as_str(),
        table,
        chain,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h
}

fn short_digest(mut hasher: Sha256, text: &str) -> [u8; 8] {
    hasher.update(text.as_bytes());
    let full = hasher.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

fn format_id(digest: [u8; 8], occurrence: u32) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(20);
    for b in digest {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 0xf)] as char);
    }
    if occurrence >= 2 {
        id.push('-');
        id.push_str(&occurrence.to_string());
    }
    id
}

/// The `rule_id` of a native nftables rule: the same algorithm with the nft family keyword and
/// backend `nftables` (`family \0 nftables \0 table \0 chain \0 text`, text without counter
/// values). Native rules also carry their kernel handle, which tells exact duplicates apart.
pub fn native_rule_id(family: &str, table: &str, chain: &str, text: &str) -> String {
    let mut h = Sha256::new();
    for part in [family, "nftables", table, chain] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format_id(short_digest(h, text), 1)
}

/// All `--comment` values of a rule joined with `; ` into `out` (cleared first).
pub(crate) fn join_comments(spec: &RuleSpec, out: &mut String) {
    out.clear();
    for (i, c) in spec.comments().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_hex_digits_then_occurrence() {
        assert_eq!(
            format_id([0xab, 0, 1, 2, 3, 4, 5, 0xff], 1),
            "ab000102030405ff"
        );
        assert_eq!(format_id([0; 8], 3), "0000000000000000-3");
    }

    #[test]
    fn str_table_round_trips_including_empty() {
        let mut t = StrTable::default();
        for s in ["a", "", "ccc"] {
            t.push(s);
        }
        assert_eq!(
            (t.get(0), t.get(1), t.get(2), t.get(3)),
            (Some("a"), Some(""), Some("ccc"), None)
        );
    }
}
