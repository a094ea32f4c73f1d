//! A point-in-time picture of a node's netfilter state, as one collection produced it.
//!
//! Owns the plain data that flows from the kernel side (`nfscope-kernel`, which fills it) to the
//! outputs (`nfscope-exporter` for metrics and JSON, the CLI): the parsed rulesets per family and
//! backend, ipset headers, conntrack statistics, and a report per source saying whether it worked
//! and how long it took. It holds no handles and does no I/O.

use serde::Serialize;

use crate::ipset::IpSet;
use crate::model::{Backend, Family, Ruleset};

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
