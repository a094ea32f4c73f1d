//! `nfscope-trace`: which iptables, ip6tables or native nftables rule decides a packet's fate,
//! and what it means in Kubernetes terms.
//!
//! Owns the pure packet tracer: given the rulesets of a node (iptables of both backends and
//! families, native nftables tables in [`TraceInput::native`]), its ipset contents, local
//! addresses and routes, [`trace`] walks a described [`Packet`] through the netfilter hooks the
//! way the kernel would — at each hook every base chain registered there in priority order
//! (iptables tables at their standard priorities, native `ip`/`ip6` chains for their family and
//! `inet` chains for both; nat chains inside the NAT core until one sets up a binding; `accept`
//! ends only its base chain, a drop or reject anywhere is final), jumps, gotos, RETURN, policies,
//! NAT on new connections, marks, conntrack state — and returns every possible outcome as
//! [`Branch`]es with the deciding rule. Every rule's matches are decided by [`typed_eval`], an
//! evaluator of the typed rule model (`nfscope_ruleset::typed`), not of either syntax: native
//! rules as parsed, iptables rules lowered to that model (`nfscope_ruleset::lower::lower_matches`,
//! each rule once, when a walk first evaluates it; a rule whose `-d` excludes the packet is skipped
//! unlowered) and evaluated with the kernel's x_tables
//! semantics where they differ from nft's (a negated owner or physdev option without the field,
//! `-m addrtype` on IPv6, `--ctstate …,DNAT`, ipsets by their real type). No option string is
//! re-read to decide a match or apply a target: an iptables rule's target is lowered too
//! (`nfscope_ruleset::lower::lower_target`) and applied as the same typed NAT, mark and verdict
//! statements as native rules (`xt_target`, `stmt`; unknown targets and options are MAY). What it
//! cannot know (rate limits, `recent`, dynamic sets, modules or expressions it does not model,
//! missing chains) is explored both ways and reported as MAY rather than guessed; so are rules the
//! caller could not read ([`Unread`]), which make the verdict UNDETERMINED, and bridge/netdev
//! chains the packet may cross, which are named and not traced. [`report`] renders results as
//! text or the stable JSON contract, with the Kubernetes meaning from `nfscope-annotate`.
//! [`failure`] explains failed connection attempts from such traces (the rule, policy or Service
//! to blame, or what was at the other end when the rules let the packet through), with a bounded
//! cache and budget of traces.
//!
//! It does no I/O and reads no clock: reading the live node (rules, ipset members, addresses,
//! routes) is the caller's job (`nfscope-kernel`, the CLI). Approximations are documented where
//! they are made: at equal hook priority the legacy backend's table runs before the iptables-nft
//! one and both before native chains (the kernel runs the most recently registered first, which a
//! dump does not tell); policy routing and tables other than main/local are ignored; `statistic
//! --mode nth` and `numgen inc` are treated as their long-run share.

#![forbid(unsafe_code)]
mod engine;
pub mod failure;
mod nft_walk;
mod packet;
pub mod report;
mod result;
pub mod routes;
mod sets;
mod state;
mod stmt;
pub mod typed_eval;
mod xt_target;

use std::net::IpAddr;

use nfscope_ruleset::typed::NftRuleset;
use nfscope_ruleset::{Backend, Family, IpSet, Ruleset};

pub use engine::{Tracer, endpoint};
pub use packet::{CtState, Packet, Proto, tcp_flags, validate_iface_name};
pub use result::{Branch, Effect, RuleRef, Step, TraceResult, Verdict};
pub use routes::{RouteTable, parse_multicast_groups, parse_routes};
pub use state::Hook;

/// Default cap on explored branches.
pub const DEFAULT_MAX_BRANCHES: usize = 256;

/// Errors: bad packet description or unreadable route text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The packet description is inconsistent or names something unknown.
    #[error("{}", nfscope_ruleset::escape_control(.0))]
    Input(String),
    /// A line of `ip route` output could not be read.
    #[error("routes {line}:{column}: {}", nfscope_ruleset::escape_control(.message))]
    Routes {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
}

/// Everything the tracer knows about the node.
#[derive(Debug, Clone)]
pub struct TraceInput {
    /// Rulesets of any family and backend; each is traced when the packet's family matches.
    pub rulesets: Vec<Ruleset>,
    /// Native nftables tables (`nft list ruleset`), traced at their hooks and priorities beside
    /// the iptables tables: `ip` and `ip6` tables for their family, `inet` for both. Tables
    /// iptables-nft manages must not be here (they come as `rulesets` with backend nft, and would
    /// run twice); arp tables never see IP packets; bridge and netdev tables a packet may cross
    /// make the result MAY with a note.
    pub native: Vec<NftRuleset>,
    /// ipset contents (with members); `None` = not available, so set matches are undetermined.
    pub ipsets: Option<Vec<IpSet>>,
    /// The node's own addresses (loopback is always local).
    pub local_addrs: Vec<IpAddr>,
    /// Routes; `None` = unknown (outgoing interfaces then come only from the packet description).
    pub routes: Option<RouteTable>,
    /// The node's interface names when known for sure (live mode): other names are an error.
    pub interfaces: Option<Vec<String>>,
    /// Cap on explored branches.
    pub max_branches: usize,
    /// Multicast groups joined per interface (`/proc/net/igmp`, `igmp6`): the kernel delivers a
    /// multicast packet locally only to a group joined on its incoming interface. `None` =
    /// unknown (offline): delivered locally, with a note saying what that assumes.
    pub multicast_groups: Option<Vec<(String, IpAddr)>>,
    /// Sources of the node the caller could not read (a save tool timed out, a capability is
    /// missing, …). Unread rules of the packet's family (or of an unknown family) could decide
    /// its fate, so the verdict is then UNDETERMINED; each is named in the report.
    pub unread: Vec<Unread>,
}

/// [`Unread::source`] of native nftables tables that could not be read (`nft -j list ruleset`):
/// they may hold a base chain at any hook, of either family (`inet`).
pub const NATIVE_RULES_SOURCE: &str = "native nftables rules";

/// A source the caller could not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unread {
    /// What it holds: `rules`, `ipsets`, `routes`, `addresses`, …
    pub source: String,
    /// How it was read, e.g. `getsockopt IPT_SO_GET_ENTRIES` or `exec iptables-nft-save -c`.
    pub method: String,
    /// The family of the rules it holds; `None` when unknown (then it could hold either).
    pub family: Option<Family>,
    /// The backend of the rules it holds; `None` when unknown or not a ruleset.
    pub backend: Option<Backend>,
    /// Why it could not be read (the error).
    pub reason: String,
}

impl Unread {
    /// Could this unread source change the fate of a packet of `family`? Unread rules of that
    /// family (or of an unknown one) could hold a table at any hook the packet crosses, so yes;
    /// rules of the other family cannot. Other sources (ipsets, routes) lower certainty where
    /// they are used (a set match, the routing decision), not here.
    pub fn could_decide(&self, family: Family) -> bool {
        let rules = self.source == "rules" || self.source == NATIVE_RULES_SOURCE;
        rules && self.family.is_none_or(|f| f == family)
    }

    /// `ipv4 legacy rules (getsockopt …)`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = self.family {
            parts.push(f.as_str().to_owned());
        }
        if let Some(b) = self.backend {
            parts.push(b.as_str().to_owned());
        }
        parts.push(self.source.clone());
        format!("{} ({})", parts.join(" "), self.method)
    }
}

impl TraceInput {
    /// Rulesets only; everything else unknown, default branch cap.
    pub fn new(rulesets: Vec<Ruleset>) -> Self {
        Self {
            rulesets,
            native: Vec::new(),
            ipsets: None,
            local_addrs: Vec::new(),
            routes: None,
            interfaces: None,
            max_branches: DEFAULT_MAX_BRANCHES,
            multicast_groups: None,
            unread: Vec::new(),
        }
    }
}

/// The error for rulesets with a jump/goto loop that a built-in chain reaches. The parser refuses
/// such dumps (the kernel does), but rulesets built otherwise are checked here too: walking a
/// loop never ends.
fn jump_loop_error(rulesets: &[Ruleset]) -> Option<TraceError> {
    rulesets.iter().find_map(|rs| {
        rs.tables.iter().find_map(|table| {
            let found = table.jump_loop().filter(|l| l.reachable)?;
            Some(TraceError::Input(format!(
                "{} {} table {} has a jump loop: {found}; the kernel refuses such a table, so it cannot be traced",
                rs.family, rs.backend, table.name
            )))
        })
    })
}

/// Traces `packet` through `input` (indexes the input first; use [`Tracer`] to trace many packets).
pub fn trace(input: &TraceInput, packet: &Packet) -> Result<TraceResult, TraceError> {
    Tracer::new(input).trace(packet)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fidelity_tests;

#[cfg(test)]
mod nft_tests;

#[cfg(test)]
mod xt_target_tests;
