//! The vocabulary of lint results: [`Finding`], its [`Severity`], where it is ([`Location`]),
//! its Kubernetes context ([`KubeContext`]) and the stable ids ([`FindingId`]).
//!
//! This module only defines the values and how they serialize; the checks that produce them live
//! in [`crate::checks`].

use std::fmt;

use nfscope_ruleset::typed::NftFamily;
use nfscope_ruleset::{Backend, Family};
use serde::Serialize;

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, nothing is wrong by itself.
    Info,
    /// Probably unintended; traffic may not go where the rules seem to say.
    Warning,
    /// A defect: rules that cannot load, never run, or a dump that cannot be trusted.
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable id of a kind of finding (what alerts and `--fail-on` filters key on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingId {
    /// A jump or goto to a chain the table does not have: iptables-restore rejects the dump.
    MissingJumpTarget,
    /// Jumps or gotos that form a loop (A→A, A→B→A): the kernel refuses the table when a
    /// built-in chain reaches the loop (error), and refuses any later hook jump into it (warning).
    JumpLoop,
    /// The same rule twice (after canonicalising option order), or the same match leading to
    /// sibling chains (stale CNI port mappings).
    DuplicateRule,
    /// A rule that earlier terminal rules of its chain always decide first.
    ShadowedRule,
    /// Rules after a terminal rule that matches every packet.
    UnreachableAfterCatchAll,
    /// A user chain nothing jumps to.
    UnreferencedChain,
    /// A referenced user chain without rules.
    EmptyChain,
    /// A Kubernetes service that kube-proxy says has no (local) endpoints.
    KubeServiceNoEndpoints,
    /// A kube-proxy chain left over (unreferenced) or whose name is not the hash of its service.
    KubeStaleChain,
    /// The `KUBE-NODEPORTS` jump is not the last rule of nat `KUBE-SERVICES`.
    KubeNodeportsNotLast,
    /// A rule the dump could not render faithfully, or a line that was skipped.
    GarbledRule,
    /// Rules in both the nft and the legacy backend: two rulesets are active at once.
    MixedBackends,
    /// A table iptables-nft could not list: it is missing from the dump, not empty.
    IncompatibleTable,
    /// A rule matches an ipset the ipset dump does not have.
    MissingIpset,
    /// A named nftables set or map no rule of its table refers to (`@name`).
    UnreferencedSet,
}

impl FindingId {
    /// Every id, in documentation order.
    pub const ALL: [Self; 15] = [
        Self::MissingJumpTarget,
        Self::JumpLoop,
        Self::DuplicateRule,
        Self::ShadowedRule,
        Self::UnreachableAfterCatchAll,
        Self::UnreferencedChain,
        Self::EmptyChain,
        Self::KubeServiceNoEndpoints,
        Self::KubeStaleChain,
        Self::KubeNodeportsNotLast,
        Self::GarbledRule,
        Self::MixedBackends,
        Self::IncompatibleTable,
        Self::MissingIpset,
        Self::UnreferencedSet,
    ];

    /// The id as written in JSON, text and metric labels, e.g. `shadowed-rule`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingJumpTarget => "missing-jump-target",
            Self::JumpLoop => "jump-loop",
            Self::DuplicateRule => "duplicate-rule",
            Self::ShadowedRule => "shadowed-rule",
            Self::UnreachableAfterCatchAll => "unreachable-after-catch-all",
            Self::UnreferencedChain => "unreferenced-chain",
            Self::EmptyChain => "empty-chain",
            Self::KubeServiceNoEndpoints => "kube-service-no-endpoints",
            Self::KubeStaleChain => "kube-stale-chain",
            Self::KubeNodeportsNotLast => "kube-nodeports-not-last",
            Self::GarbledRule => "garbled-rule",
            Self::MixedBackends => "mixed-backends",
            Self::IncompatibleTable => "incompatible-table",
            Self::MissingIpset => "missing-ipset",
            Self::UnreferencedSet => "unreferenced-set",
        }
    }

    /// The severities this id can be reported with (metrics export a zero for each).
    pub fn severities(self) -> &'static [Severity] {
        match self {
            Self::MissingJumpTarget
            | Self::UnreachableAfterCatchAll
            | Self::IncompatibleTable
            | Self::MissingIpset => &[Severity::Error],
            Self::GarbledRule | Self::MixedBackends | Self::JumpLoop => {
                &[Severity::Warning, Severity::Error]
            }
            Self::DuplicateRule | Self::KubeStaleChain | Self::KubeNodeportsNotLast => {
                &[Severity::Warning]
            }
            Self::ShadowedRule
            | Self::UnreferencedChain
            | Self::KubeServiceNoEndpoints
            | Self::UnreferencedSet => &[Severity::Info, Severity::Warning],
            Self::EmptyChain => &[Severity::Info],
        }
    }
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where something is: a table, a chain in it, a rule in the chain (all optional: a finding about
/// the whole dump has none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Table name.
    pub table: Option<String>,
    /// Chain name.
    pub chain: Option<String>,
    /// 1-based position of the rule in its chain.
    pub rule_index: Option<usize>,
    /// 1-based line in the dump, when known (0 never appears).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// A location another finding points at, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    /// Family of the ruleset the related item is in.
    pub family: Family,
    /// Backend of that ruleset.
    pub backend: Backend,
    /// Where.
    #[serde(flatten)]
    pub location: Location,
    /// What it has to do with the finding, e.g. `catch-all rule`.
    pub note: String,
}

/// Kubernetes or CNI meaning of the place a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeContext {
    /// The component that created the chain or rule (`kube-proxy`, `calico`, `cni-portmap`, …).
    pub owner: String,
    /// One-line meaning, e.g. `service default/kubernetes:https endpoint 10.0.0.1:6443`.
    pub meaning: Option<String>,
}

/// One problem found in a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id.
    pub id: FindingId,
    /// How bad.
    pub severity: Severity,
    /// Family of the ruleset.
    pub family: Family,
    /// Backend of the ruleset.
    pub backend: Backend,
    /// Where.
    #[serde(flatten)]
    pub location: Location,
    /// The consequence, in plain words.
    pub message: String,
    /// Other places involved (the covering rule, the first copy, …).
    pub related: Vec<Related>,
    /// Kubernetes meaning of the place, when there is one.
    pub kube: Option<KubeContext>,
    /// For a finding in a native nftables table: its nft family (`ip`, `ip6`, `inet`, …). `family`
    /// then says `ipv6` for `ip6` tables and `ipv4` otherwise, and `backend` `nft` (nf_tables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nftables: Option<NftFamily>,
}

impl Finding {
    /// The finding without dump line numbers, its own and its related places': for rules read
    /// from the live node, whose save-tool output the user never saw. Table, chain and rule
    /// position still say where.
    pub fn without_lines(mut self) -> Self {
        self.location.line = None;
        for related in &mut self.related {
            related.location.line = None;
        }
        self
    }
}

/// Counts of findings, for the summary line and JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// All findings.
    pub total: usize,
    /// `error` findings.
    pub errors: usize,
    /// `warning` findings.
    pub warnings: usize,
    /// `info` findings.
    pub infos: usize,
    /// Rulesets linted.
    pub rulesets: usize,
    /// Rules linted, all rulesets together.
    pub rules: usize,
}

impl Summary {
    /// Counts `findings` over `rulesets` rulesets holding `rules` rules.
    pub fn new(findings: &[Finding], rulesets: usize, rules: usize) -> Self {
        let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
        Self {
            total: findings.len(),
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
            rulesets,
            rules,
        }
    }
}
