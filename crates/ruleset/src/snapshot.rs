//! A point-in-time picture of a node's netfilter state, as one collection produced it.
//!
//! Owns the plain data that flows from the kernel side (`nfscope-kernel`, which fills it) to the
//! outputs (`nfscope-exporter` for metrics and JSON, the CLI): the parsed rulesets per family and
//! backend, ipset headers, conntrack statistics, and a report per source saying whether it worked
//! and how long it took. It holds no handles and does no I/O.

use std::sync::Arc;

use serde::Serialize;

use crate::ipset::IpSet;
use crate::model::{Backend, Counters, Family, Ruleset};
use crate::typed::NftRuleset;

/// Everything one collection read, plus how each source fared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// One ruleset per (family, backend) that holds at least one table.
    pub rulesets: Vec<Ruleset>,
    /// ipset headers (and members when the source listed them).
    pub ipsets: Vec<IpSet>,
    /// Conntrack table size and the kernel's per-CPU statistics summed; `None` when unavailable.
    pub conntrack: Option<ConntrackStats>,
    /// One report per source that was tried, failed or not.
    pub sources: Vec<SourceReport>,
    /// Native nftables state (rules that are not iptables-nft rules, named counters, sets, and
    /// the typed rules of those tables).
    #[serde(skip_serializing_if = "NftablesState::is_empty")]
    pub nftables: NftablesState,
    /// How the rules were read: `netlink` or `exec` (empty when unknown, e.g. a file).
    pub rule_source: String,
    /// Times this collection started over because the ruleset changed while it was being read.
    pub retries: u64,
    /// Rule text this collection read with a save tool because the kernel decoder could not
    /// render a rule exactly (`nfscope_rule_text_fallbacks_total`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub text_fallbacks: Vec<TextFallback>,
}

/// One rule-text read that fell back from the kernel decoder to the save tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextFallback {
    /// The backend whose text was read with its save tool.
    pub backend: Backend,
    /// The family whose text was read with its save tool.
    pub family: Family,
    /// What could not be rendered, as a bounded label: `match NAME`, `target NAME`,
    /// `expression NAME` or `table NAME`.
    pub reason: String,
    /// The decoder's full explanation (for logs, not a label).
    pub detail: String,
}

/// Native nftables state: what `nft list ruleset` shows beyond iptables-nft.
///
/// `rules`, `counters` and `sets` are read on every collection (over netlink, or from the JSON
/// dump with `--source exec`); `ruleset` is the typed model of the native tables, whose text
/// (`nft -j list ruleset`) the netlink reader re-reads only when the nf_tables generation moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NftablesState {
    /// Rules with a `counter` statement in tables iptables-nft does not manage.
    pub rules: Vec<NftRule>,
    /// Named counter objects (`nft add counter …`), in every table.
    pub counters: Vec<NftNamedCounter>,
    /// Named sets and maps with their element counts, in every table.
    pub sets: Vec<NftSet>,
    /// The typed rules of the tables iptables-nft does not manage (their chains with hooks,
    /// priorities and policies, rules, sets and maps); `None` when they were not read (the
    /// failure is in the snapshot's `SourceKind::NativeRules` report) or not asked for.
    #[serde(skip)]
    pub ruleset: Option<Arc<NftRuleset>>,
    /// Times the reader that produced this state ran `nft -j list ruleset` since it was made
    /// (a reader re-reads the text only when the ruleset changed).
    pub text_reads: u64,
}

impl NftablesState {
    /// True when nothing was found (or nothing was read).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.counters.is_empty()
            && self.sets.is_empty()
            && self.ruleset.as_ref().is_none_or(|r| r.tables.is_empty())
    }
}

/// One native nftables rule with a counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftRule {
    /// nft family name: `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub family: String,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// The rule's handle (stable while the rule exists).
    pub handle: u64,
    /// The rule's comment, if it has one.
    pub comment: Option<String>,
    /// The rule's canonical nft text without counter values (`render_rule` of the typed rule
    /// with its counters blanked), when the typed rules were read.
    pub rule: Option<String>,
    /// Its first counter statement's values.
    pub counters: Counters,
}

/// A named nftables counter object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftNamedCounter {
    /// nft family name.
    pub family: String,
    /// Table name.
    pub table: String,
    /// Counter name.
    pub name: String,
    /// Its values.
    pub counters: Counters,
}

/// A named nftables set or map and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftSet {
    /// nft family name.
    pub family: String,
    /// Table name.
    pub table: String,
    /// Set name.
    pub name: String,
    /// Elements as `nft list` shows them: a range or prefix is one element (the kernel's
    /// interval end markers are not counted).
    pub elements: u64,
}

/// Which source a [`SourceReport`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceKind {
    /// An iptables/ip6tables ruleset of one backend.
    Rules {
        /// IPv4 or IPv6.
        family: Family,
        /// nft or legacy.
        backend: Backend,
    },
    /// ipset headers.
    Ipsets,
    /// Conntrack statistics.
    Conntrack,
    /// The rules of native nftables tables (`nft -j list ruleset`).
    NativeRules,
}

/// How one source fared in one collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    /// What was read.
    #[serde(flatten)]
    pub kind: SourceKind,
    /// How it was read, e.g. `exec iptables-nft-save -c` or `procfs`.
    pub method: String,
    /// `None` when it worked; the error otherwise (timeouts included).
    pub error: Option<String>,
    /// Wall time spent, in seconds.
    pub duration_seconds: f64,
}

/// Conntrack table fill and the kernel's statistics (`/proc/net/stat/nf_conntrack`, summed over CPUs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConntrackStats {
    /// `nf_conntrack_count`: entries in the table now.
    pub entries: u64,
    /// `nf_conntrack_max`: the table's limit.
    pub limit: u64,
    /// Per-CPU statistic name → value summed over CPUs (`found`, `invalid`, `insert_failed`,
    /// `drop`, `early_drop`, `search_restart`, …), in the kernel's column order.
    pub stats: Vec<(String, u64)>,
}
