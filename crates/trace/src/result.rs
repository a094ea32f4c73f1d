//! What a trace produces: branches of steps with verdicts, before any rendering.
//!
//! Owns [`TraceResult`], [`Branch`], [`Step`], [`Effect`], [`RuleRef`] and [`Verdict`]: plain
//! data indexed into the traced rulesets. Rendering to text or JSON (with Kubernetes meaning) is
//! in `report`.

use std::net::IpAddr;

use nfscope_ruleset::Policy;
use serde::Serialize;

use crate::state::Hook;

/// Fate of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Delivered locally or sent out.
    Accept,
    /// Silently discarded.
    Drop,
    /// Discarded with an error reply.
    Reject,
    /// The rules alone do not decide (userspace queue, unmodelled target, or branches disagree).
    Undetermined,
}

impl Verdict {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "ACCEPT",
            Self::Drop => "DROP",
            Self::Reject => "REJECT",
            Self::Undetermined => "UNDETERMINED",
        }
    }
}

/// A place in the traced rulesets: indices into `TraceInput::rulesets[ruleset].tables[table].chains[chain].rules[rule]`,
/// or, when `native`, into `TraceInput::native[ruleset].tables[table].chains[chain].rules[rule]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// A native nftables rule (`TraceInput::native`) rather than an iptables one.
    pub native: bool,
    /// Index of the ruleset.
    pub ruleset: usize,
    /// Index of the table.
    pub table: usize,
    /// Index of the chain.
    pub chain: usize,
    /// 0-based rule index; `None` for the chain's policy.
    pub rule: Option<usize>,
}

/// What happened at one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Jumped to a user chain.
    Jump(String),
    /// Went to a user chain (`-g`).
    Goto(String),
    /// `-j RETURN`.
    Return,
    /// Fell off the end of a user chain.
    EndOfChain,
    /// The built-in chain's policy applied.
    Policy(Policy),
    /// `-j ACCEPT`: ends this table for this hook.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j REJECT`.
    Reject,
    /// Handed to userspace (`QUEUE`, `NFQUEUE`): the verdict is not in the rules.
    Queue(String),
    /// Destination rewritten (DNAT, REDIRECT, NETMAP in PREROUTING/OUTPUT).
    Dnat(String),
    /// Source rewritten (SNAT, MASQUERADE, NETMAP in POSTROUTING/INPUT).
    Snat(String),
    /// Packet mark changed.
    Mark { old: u32, new: u32 },
    /// Connection mark changed (`None` = unknown).
    ConnMark { old: Option<u32>, new: Option<u32> },
    /// Packet mark restored from the connection mark.
    RestoreMark { new: u32 },
    /// Exempted from conntrack.
    Notrack,
    /// Matched; a target that does not change the verdict (LOG, NFLOG, …) or no target at all.
    Continue(String),
    /// The rule jumps to a chain the dump does not have.
    MissingChain(String),
    /// A target the tracer does not model.
    UnknownTarget(String),
    /// nat table not consulted.
    NatSkipped(String),
    /// The routing decision.
    Routed(String),
    /// The packet was handed to IPVS (kube-proxy IPVS mode).
    Ipvs(String),
    /// TPROXY: handed to the transparent proxy socket `to` (`ip:port`), packet mark changed;
    /// delivered locally, the destination unchanged.
    Tproxy {
        /// The proxy socket.
        to: String,
        /// Mark before.
        old_mark: u32,
        /// Mark after (`--tproxy-mark`).
        new_mark: u32,
    },
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Hook being traversed.
    pub hook: Hook,
    /// Rule or policy; `None` for routing and similar non-rule steps.
    pub at: Option<RuleRef>,
    /// What happened.
    pub effect: Effect,
    /// Set when this step holds only under an assumption or a random choice.
    pub condition: Option<String>,
}

/// One complete exploration: a possible fate of the packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// Verdict of this branch.
    pub verdict: Verdict,
    /// Probability from statistic choices (1.0 when none were taken).
    pub probability: f64,
    /// Assumptions about undetermined matches made on the way.
    pub assumptions: Vec<String>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// The deciding rule (see the crate docs).
    pub decided_by: Option<RuleRef>,
    /// The first rule where exploration split, if any.
    pub first_fork: Option<RuleRef>,
    /// Destination after DNAT, when rewritten to a known address.
    pub dnat: Option<(IpAddr, Option<u16>)>,
    /// Destination after a rewrite to an address the tracer does not know (REDIRECT outside
    /// OUTPUT without routes): `REDIRECT(iface):port`, the primary address of `iface`.
    pub dnat_label: Option<String>,
    /// Source after SNAT/MASQUERADE, when rewritten (`ip[:port]`, or `MASQUERADE(iface)` when the address is unknown).
    pub snat: Option<String>,
    /// Things worth saying (IPVS hand-off, approximations).
    pub notes: Vec<String>,
}

impl Branch {
    /// Did this branch reach its verdict without assuming anything about undetermined matches?
    pub fn is_certain(&self) -> bool {
        self.assumptions.is_empty() && self.verdict != Verdict::Undetermined
    }
}

/// The result of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceResult {
    /// Overall verdict: the one every branch reached, else `Undetermined`.
    pub verdict: Verdict,
    /// `true` when every possibility was explored and all agree (MUST); `false` = MAY.
    pub must: bool,
    /// The deciding rule: shared by all branches, else the first branch's; for an undetermined
    /// outcome the rule where exploration split (or the rule that handed the packet away).
    pub decided_by: Option<RuleRef>,
    /// All explored branches, most likely first within each split (at least one).
    pub branches: Vec<Branch>,
    /// Exploration stopped at the branch cap.
    pub capped: bool,
    /// Set when rules that could decide this packet were not read (`TraceInput::unread`): the
    /// verdict and certainty (`true` = MUST) the rules that were read gave on their own. The
    /// result itself is then UNDETERMINED (MAY).
    pub read_rules_said: Option<(Verdict, bool)>,
}

impl TraceResult {
    /// The main branch (the first explored).
    pub fn main(&self) -> &Branch {
        &self.branches[0]
    }
}
