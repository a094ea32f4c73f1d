//! The walker: hooks, tables, chains and targets, with branching on what cannot be decided.
//!
//! Owns the traversal semantics: per hook every base chain in priority order — the iptables
//! tables (raw → mangle → nat(dst) → filter → security → nat(src)) of each backend and the native
//! nftables base chains (run by `nft_walk`) — with nat chains inside the NAT core until one binds
//! (legacy before iptables-nft before native at equal priority: an approximation, the kernel uses
//! registration order), jumps, gotos, RETURN, fall-through, policies, and where a target's
//! effect lands (NAT only on a new connection, the NAT core ending at the first binding, TPROXY's
//! no-socket DROP as a second branch). The routing decision between hooks uses the local
//! addresses and the route table (broadcast and multicast destinations are delivered locally).
//! Exploration is a worklist of cloned branches, capped. Rules the caller
//! could not read (`TraceInput::unread`) turn a verdict they could change into UNDETERMINED.
//! It does not decide single matches (`typed_eval`, on each iptables rule lowered to the typed
//! model the first time a walk evaluates it), apply a rule's target (`xt_target`, from the same
//! lowering; NAT and mark statements in `stmt`, shared with native rules) or render anything
//! (see `report`). No option string of the string model is read here.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use nfscope_ruleset::{Chain, Family, Policy, Rule, Ruleset};

use crate::packet::{CtState, Packet};
use crate::result::{Branch, Effect, RuleRef, Step, TraceResult, Verdict};
use crate::routes::RouteKind;
use crate::sets::SetIndex;
use crate::state::{Hook, PktState};
use crate::typed_eval::{NoSets, Outcome, TypedEnv, eval_match};
use crate::xt_target::{has_no_effect, tproxy_of};
use crate::{TraceError, TraceInput};
use nfscope_ruleset::lower::{lower_matches, lower_target};
use nfscope_ruleset::typed::{Dir, Expr, IfaceDir, Key, Match, Rhs};

/// Which table a stage runs, for priority and semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    Raw,
    Mangle,
    Nat,
    Filter,
    Security,
}

/// Tables of each hook in priority order.
fn tables_of(hook: Hook) -> &'static [TableKind] {
    use TableKind::*;
    match hook {
        Hook::Prerouting => &[Raw, Mangle, Nat],
        Hook::Input => &[Mangle, Filter, Security, Nat],
        Hook::Forward => &[Mangle, Filter, Security],
        Hook::Output => &[Raw, Mangle, Nat, Filter, Security],
        Hook::Postrouting => &[Mangle, Nat],
    }
}

/// The hook priority of an iptables table (`NF_IP_PRI_*`); the nat table's is its own priority
/// within the NAT core. iptables-nft registers its security chains at 150, not `NF_IP_PRI_SECURITY`
/// (50) as legacy does (`iptables/nft.c`; NFTABLES.md §1, measured).
fn ipt_priority(kind: TableKind, hook: Hook, nft_backend: bool) -> i64 {
    match kind {
        TableKind::Raw => -300,
        TableKind::Mangle => -150,
        TableKind::Nat if matches!(hook, Hook::Prerouting | Hook::Output) => -100,
        TableKind::Nat => 100,
        TableKind::Filter => 0,
        TableKind::Security if nft_backend => 150,
        TableKind::Security => 50,
    }
}

fn table_name(kind: TableKind) -> &'static str {
    match kind {
        TableKind::Raw => "raw",
        TableKind::Mangle => "mangle",
        TableKind::Nat => "nat",
        TableKind::Filter => "filter",
        TableKind::Security => "security",
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Stage {
    /// A native nftables base chain (`TraceInput::native`) rather than an iptables table.
    pub(crate) native: bool,
    pub(crate) ruleset: usize,
    pub(crate) table: usize,
    pub(crate) chain: usize,
    pub(crate) kind: TableKind,
    /// Conntrack has run (false before priority -200 in prerouting/output: raw).
    pub(crate) ct_attached: bool,
    /// Where it runs: (hook priority, priority within the NAT core for nat chains).
    pub(crate) order: (i64, i64),
}

impl Stage {
    pub(crate) fn at(&self, chain: usize, rule: Option<usize>) -> RuleRef {
        RuleRef {
            native: self.native,
            ruleset: self.ruleset,
            table: self.table,
            chain,
            rule,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) chain: usize,
    pub(crate) pos: usize,
    /// The built-in chain (or a chain reached from it by goto): its end applies the policy.
    pub(crate) base: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Walk {
    pub(crate) pkt: PktState,
    pub(crate) hook: Hook,
    pub(crate) stages: Vec<Stage>,
    pub(crate) stage: usize,
    pub(crate) stack: Vec<Frame>,
    pub(crate) steps: Vec<Step>,
    pub(crate) probability: f64,
    pub(crate) assumptions: Vec<String>,
    pub(crate) filter_accept: Option<RuleRef>,
    pub(crate) first_fork: Option<RuleRef>,
    pub(crate) notes: Vec<String>,
    pub(crate) ipvs: bool,
    pub(crate) snat_label: Option<String>,
    pub(crate) nat_skip_noted: bool,
    pub(crate) locally_generated: bool,
    /// A fork that ends at once with this verdict (the alternative of a TPROXY without socket).
    pub(crate) forced_end: Option<(Verdict, Option<RuleRef>)>,
    /// Rules still allowed to be evaluated on this walk: a bound against loops in rulesets
    /// built by hand (the kernel refuses jump loops, a dump from it has none).
    pub(crate) budget: usize,
}

/// Rule evaluations one walk may make before it stops as UNDETERMINED.
const WALK_BUDGET: usize = 1_000_000;

/// How a rule's target leaves the walk.
pub(crate) enum Flow {
    Next,
    EndTable,
    Final(Verdict, Option<RuleRef>),
    Enter { chain: usize, goto: bool },
    Return,
}

/// One iptables rule in the typed model: its matches (`lower_matches`) and the statements of
/// its target (`lower_target`).
pub(crate) struct Lowered {
    matches: Vec<Expr>,
    target: Vec<Expr>,
}

/// The typed form of one iptables chain's rules, each lowered when first evaluated.
type LoweredChain = OnceLock<Box<[OnceLock<Lowered>]>>;

/// A prepared tracer: chain indexes, set members and local addresses computed once.
pub struct Tracer<'a> {
    pub(crate) input: &'a TraceInput,
    pub(crate) chain_index: Vec<Vec<HashMap<&'a str, usize>>>,
    /// Chains by name per native table.
    pub(crate) nft_chain_index: Vec<Vec<HashMap<&'a str, usize>>>,
    /// Set and map indexes per native table (exact keys hashed: lookups do not scan).
    pub(crate) nft_set_index: Vec<Vec<HashMap<String, crate::typed_eval::SetIndex>>>,
    sets: SetIndex,
    /// Every iptables rule in the typed model (`lower_matches`, `lower_target`), per ruleset,
    /// table, chain and rule as in `input.rulesets`: matches decided by `typed_eval`, targets
    /// applied by `xt_target`. A rule is lowered once, when a walk first evaluates it (a trace
    /// evaluates few rules of a large ruleset: see [`excluded_by_destination`]).
    lowered: Vec<Vec<Vec<LoweredChain>>>,
    locals: HashSet<IpAddr>,
    backend_order: Vec<usize>,
    /// A jump loop a hook reaches: the kernel would not have loaded it, and walking it never ends.
    refused: Option<TraceError>,
}

impl<'a> Tracer<'a> {
    /// Indexes `input` for tracing (chains by name, ipset members, local addresses).
    pub fn new(input: &'a TraceInput) -> Self {
        let chain_index = input
            .rulesets
            .iter()
            .map(|rs| {
                rs.tables
                    .iter()
                    .map(|t| {
                        t.chains
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (c.name.as_str(), i))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let nft_chain_index = input
            .native
            .iter()
            .map(|rs| {
                rs.tables
                    .iter()
                    .map(|t| {
                        t.chains
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (c.name.as_str(), i))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let nft_set_index = input
            .native
            .iter()
            .map(|rs| {
                rs.tables
                    .iter()
                    .map(crate::typed_eval::index_table)
                    .collect()
            })
            .collect();
        let mut locals: HashSet<IpAddr> = input.local_addrs.iter().copied().collect();
        if let Some(routes) = &input.routes {
            locals.extend(routes.local_addresses());
        }
        let mut backend_order: Vec<usize> = (0..input.rulesets.len()).collect();
        backend_order.sort_by_key(|&i| backend_rank(&input.rulesets[i]));
        Self {
            input,
            chain_index,
            nft_chain_index,
            nft_set_index,
            sets: SetIndex::new(input.ipsets.as_deref()),
            lowered: input
                .rulesets
                .iter()
                .map(|rs| {
                    rs.tables
                        .iter()
                        .map(|t| t.chains.iter().map(|_| OnceLock::new()).collect())
                        .collect()
                })
                .collect(),
            locals,
            backend_order,
            refused: crate::jump_loop_error(&input.rulesets),
        }
    }

    /// Is `ip` an address of this node (given, from `local` routes, or loopback)?
    pub fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback()
            || self.locals.contains(&ip)
            || self.input.routes.as_ref().is_some_and(|r| r.is_local(ip))
    }

    pub(crate) fn is_broadcast(&self, ip: IpAddr) -> bool {
        self.input
            .routes
            .as_ref()
            .is_some_and(|r| r.is_broadcast(ip))
    }

    /// Traces `packet` through every ruleset of its family.
    pub fn trace(&self, packet: &Packet) -> Result<TraceResult, TraceError> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        packet.validate()?;
        self.check_interfaces(packet)?;
        let mut pkt = PktState::from_packet(packet);
        let locally_generated = packet.in_iface.is_none();
        let first_hook = if locally_generated {
            Hook::Output
        } else {
            Hook::Prerouting
        };
        let mut notes = Vec::new();
        if locally_generated && pkt.out_iface.is_none() {
            pkt.out_iface = self.route_out(pkt.dst, &mut notes);
        }
        let walk = Walk {
            pkt,
            hook: first_hook,
            stages: Vec::new(),
            stage: 0,
            stack: Vec::new(),
            steps: Vec::new(),
            probability: 1.0,
            assumptions: Vec::new(),
            filter_accept: None,
            first_fork: None,
            notes,
            ipvs: false,
            snat_label: None,
            nat_skip_noted: false,
            locally_generated,
            forced_end: None,
            budget: WALK_BUDGET,
        };
        let mut walk = walk;
        walk.stages = self.stages(walk.hook, packet.family());
        self.note_equal_priorities(&mut walk);
        let mut result = self.explore(walk, packet.family());
        for (note, drops) in self.untraced_crossings(packet) {
            for b in &mut result.branches {
                b.notes.push(note.clone());
            }
            result.must = false;
            if drops && result.verdict == Verdict::Accept {
                result.verdict = Verdict::Undetermined;
                result.decided_by = None;
            }
        }
        Ok(self.account_unread(result, packet.family()))
    }

    /// Rules that could decide the packet were not read: the answer of the rules that were
    /// read is kept aside and the result becomes UNDETERMINED (MAY).
    fn account_unread(&self, mut result: TraceResult, family: Family) -> TraceResult {
        if self.input.unread.iter().any(|u| u.could_decide(family)) {
            result.read_rules_said = Some((result.verdict, result.must));
            result.verdict = Verdict::Undetermined;
            result.must = false;
            result.decided_by = None;
        }
        result
    }

    fn check_interfaces(&self, packet: &Packet) -> Result<(), TraceError> {
        let Some(known) = &self.input.interfaces else {
            return Ok(());
        };
        for name in [&packet.in_iface, &packet.out_iface].into_iter().flatten() {
            if !known.iter().any(|k| k == name) {
                return Err(TraceError::Input(format!(
                    "unknown interface {name:?}; this node has: {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The outgoing interface for `dst`: `lo` for a local address, else the route's device.
    fn route_out(&self, dst: IpAddr, notes: &mut Vec<String>) -> Option<String> {
        if self.is_local(dst) {
            return Some("lo".to_owned());
        }
        let route = self.input.routes.as_ref()?.lookup(dst);
        if route.is_none() {
            notes.push(format!("no route to {dst}"));
        }
        route.and_then(|r| r.dev.clone())
    }

    fn explore(&self, first: Walk, family: Family) -> TraceResult {
        let cap = self.input.max_branches.max(1);
        let mut pending = vec![first];
        let mut done: Vec<Branch> = Vec::new();
        let mut capped = false;
        while let Some(mut walk) = pending.pop() {
            let room = cap.saturating_sub(done.len() + pending.len() + 1);
            let (branch, forks, hit_cap) = self.run(&mut walk, family, room);
            capped |= hit_cap;
            done.push(branch);
            // Push in reverse so the first alternative is explored next.
            pending.extend(forks.into_iter().rev());
        }
        summarize(done, capped)
    }

    /// Runs one walk to its end; returns its branch and the alternatives it split off.
    fn run(&self, walk: &mut Walk, family: Family, mut room: usize) -> (Branch, Vec<Walk>, bool) {
        let mut forks = Vec::new();
        let mut capped = false;
        walk.stages = self.stages(walk.hook, family);
        if let Some((verdict, by)) = walk.forced_end.take() {
            return (self.finish(walk, verdict, by), forks, capped);
        }
        loop {
            let Some(frame) = walk.stack.last().copied() else {
                match self.next_stage(walk, family) {
                    Some(verdict) => {
                        return (self.finish(walk, verdict.0, verdict.1), forks, capped);
                    }
                    None => continue,
                }
            };
            let stage = walk.stages[walk.stage];
            if walk.budget == 0 {
                walk.notes.push(format!(
                    "stopped after {WALK_BUDGET} rule evaluations: the ruleset loops (the kernel would not load it)"
                ));
                let at = stage.at(frame.chain, None);
                return (
                    self.finish(walk, Verdict::Undetermined, Some(at)),
                    forks,
                    capped,
                );
            }
            walk.budget -= 1;
            if stage.native {
                let chain = self.nft_chain(stage, frame.chain);
                let Some(rule) = chain.rules.get(frame.pos) else {
                    if let Some((v, by)) = self.chain_end(walk, stage) {
                        return (self.finish(walk, v, by), forks, capped);
                    }
                    continue;
                };
                if let Some(top) = walk.stack.last_mut() {
                    top.pos += 1;
                }
                let at = stage.at(frame.chain, Some(frame.pos));
                let flow =
                    self.run_nft_rule(rule, walk, stage, at, &mut forks, &mut room, &mut capped);
                if let Some(flow) = flow
                    && let Some((v, by)) = self.follow(walk, stage, flow, at)
                {
                    return (self.finish(walk, v, by), forks, capped);
                }
                continue;
            }
            let chain = self.chain(stage, frame.chain);
            let Some(rule) = chain.rules.get(frame.pos) else {
                if let Some((v, by)) = self.chain_end(walk, stage) {
                    return (self.finish(walk, v, by), forks, capped);
                }
                continue;
            };
            if let Some(top) = walk.stack.last_mut() {
                top.pos += 1;
            }
            let at = stage.at(frame.chain, Some(frame.pos));
            if rule.spec.only_family.is_some_and(|f| f != family) {
                continue;
            }
            if excluded_by_destination(rule, &walk.pkt) {
                continue;
            }
            let typed = self.typed_rule(stage, frame.chain, frame.pos);
            let outcome = self.evaluate(&typed.matches, walk, stage);
            let condition = match outcome {
                Outcome::No => continue,
                Outcome::Yes => None,
                Outcome::Chance(p) => {
                    self.split(walk, &mut forks, &mut room, &mut capped, at, p, None);
                    Some(format!("random choice, probability {}", fmt_prob(p)))
                }
                Outcome::Maybe(why) => {
                    if has_no_effect(rule, &typed.target) {
                        walk.steps.push(Step {
                            hook: walk.hook,
                            at: Some(at),
                            effect: Effect::Continue(target_label(rule)),
                            condition: Some(format!("may match: {why}")),
                        });
                        continue;
                    }
                    self.split(
                        walk,
                        &mut forks,
                        &mut room,
                        &mut capped,
                        at,
                        1.0,
                        Some(&why),
                    );
                    Some(format!("assumed to match: {why}"))
                }
            };
            if let Some(nat) = tproxy_of(&typed.target)
                && walk.hook == Hook::Prerouting
            {
                self.split_tproxy(walk, &mut forks, &mut room, &mut capped, at, nat);
            }
            let flow = self.apply(rule, typed, walk, stage, at, condition);
            if let Some((v, by)) = self.follow(walk, stage, flow, at) {
                return (self.finish(walk, v, by), forks, capped);
            }
        }
    }

    /// Records an alternative where the rule does not match (probability `1 - p` or an assumption).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn split(
        &self,
        walk: &mut Walk,
        forks: &mut Vec<Walk>,
        room: &mut usize,
        capped: &mut bool,
        at: RuleRef,
        p: f64,
        why: Option<&str>,
    ) {
        walk.first_fork.get_or_insert(at);
        if *room == 0 {
            *capped = true;
            let what = why.map_or_else(
                || "a random choice".to_owned(),
                |w| format!("an undetermined match ({w})"),
            );
            walk.notes.push(format!("branch cap reached: the case where this rule does not match was not explored ({what})"));
            if why.is_some() {
                walk.assumptions.push("branch cap reached".into());
            }
            return;
        }
        *room -= 1;
        let mut alt = walk.clone();
        match why {
            Some(why) => {
                alt.assumptions.push(format!("assumed not to match: {why}"));
                alt.steps.push(Step {
                    hook: walk.hook,
                    at: Some(at),
                    effect: Effect::Continue("no match".into()),
                    condition: Some(format!("assumed not to match: {why}")),
                });
                walk.assumptions.push(format!("assumed to match: {why}"));
            }
            None => {
                alt.probability *= 1.0 - p;
                walk.probability *= p;
            }
        }
        forks.push(alt);
    }

    /// The primary address of `dev` in `like`'s family, when the routes say.
    pub(crate) fn primary_address(&self, dev: &str, like: IpAddr) -> Option<IpAddr> {
        self.input
            .routes
            .as_ref()
            .and_then(|r| r.primary_address(dev, like))
    }

    /// Rule `pos` of chain `chain` of an iptables stage in the typed model, lowered on first use.
    fn typed_rule(&self, stage: Stage, chain: usize, pos: usize) -> &Lowered {
        let rules = self.lowered[stage.ruleset][stage.table][chain].get_or_init(|| {
            (0..self.chain(stage, chain).rules.len())
                .map(|_| OnceLock::new())
                .collect()
        });
        rules[pos].get_or_init(|| {
            let family = self.input.rulesets[stage.ruleset].family;
            let rule = &self.chain(stage, chain).rules[pos];
            Lowered {
                matches: lower_matches(rule, family),
                target: lower_target(rule, family),
            }
        })
    }

    /// Does the match part of an iptables rule hold? Every match of its lowered form is decided
    /// by `typed_eval` with x_tables semantics; a definite "no" anywhere wins, then "cannot tell"
    /// (the reason of the first such base match, else module, as iptables lists them), then the
    /// product of the random choices.
    fn evaluate(&self, typed: &[Expr], walk: &Walk, stage: Stage) -> Outcome {
        self.with_xt_env(walk, stage, |env| self.evaluate_in(typed, walk, env))
    }

    /// Runs `f` with the evaluation environment of an iptables stage (x_tables semantics, ipsets).
    pub(crate) fn with_xt_env<R>(
        &self,
        walk: &Walk,
        stage: Stage,
        f: impl FnOnce(&TypedEnv<'_, '_>) -> R,
    ) -> R {
        let is_local = |ip: IpAddr| self.is_local(ip);
        let is_broadcast = |ip: IpAddr| self.is_broadcast(ip);
        f(&TypedEnv {
            hook: walk.hook,
            ct_attached: stage.ct_attached,
            is_local: &is_local,
            is_broadcast: &is_broadcast,
            locally_generated: walk.locally_generated,
            sets: &NoSets,
            xt: true,
            ipsets: Some(&self.sets),
        })
    }

    fn evaluate_in(&self, typed: &[Expr], walk: &Walk, env: &TypedEnv<'_, '_>) -> Outcome {
        let mut maybe: Option<(u8, String)> = None;
        let mut chance: Option<f64> = None;
        for e in typed {
            let (outcome, rank) = match e {
                Expr::Match(m) => (eval_match(m, &walk.pkt, env), base_rank(&m.key)),
                Expr::Stateful { kind, text } => (
                    Outcome::Maybe(format!(
                        "`{text}` depends on the packet rate or earlier packets ({kind})"
                    )),
                    5,
                ),
                Expr::Unmodelled { text } => {
                    (Outcome::Maybe(format!("`{text}` is not modelled")), 5)
                }
                _ => (Outcome::Yes, 5),
            };
            match outcome {
                Outcome::Yes => {}
                Outcome::No => return Outcome::No,
                Outcome::Chance(p) => chance = Some(chance.unwrap_or(1.0) * p),
                Outcome::Maybe(why) => {
                    if maybe.as_ref().is_none_or(|(r, _)| rank < *r) {
                        maybe = Some((rank, why));
                    }
                }
            }
        }
        match (maybe, chance) {
            (Some((_, why)), _) => Outcome::Maybe(why),
            (None, Some(p)) => Outcome::Chance(p),
            (None, None) => Outcome::Yes,
        }
    }

    fn chain(&self, stage: Stage, chain: usize) -> &'a Chain {
        &self.input.rulesets[stage.ruleset].tables[stage.table].chains[chain]
    }

    /// Stages of `hook` in the kernel's order: every base chain registered there (iptables
    /// tables of both backends at their standard priorities, native base chains of the packet's
    /// family and `inet`) sorted by priority. Nat chains are not hooks: the NAT core runs them
    /// at its own priority (-100 for prerouting/output, 100 for input/postrouting), among
    /// themselves by theirs. Equal priorities: the kernel runs the most recently registered
    /// first, which a dump does not tell; nfscope runs legacy, then iptables-nft, then native
    /// chains in listing order (an approximation, documented in the crate docs).
    fn stages(&self, hook: Hook, family: Family) -> Vec<Stage> {
        // (sort key, stage)
        let mut out: Vec<((i64, i64, u8, usize), Stage)> = Vec::new();
        let nat_core = |hook: Hook| -> i64 {
            if matches!(hook, Hook::Prerouting | Hook::Output) {
                -100
            } else {
                100
            }
        };
        let raw_hook = matches!(hook, Hook::Prerouting | Hook::Output);
        for &kind in tables_of(hook) {
            for (n, &rs) in self.backend_order.iter().enumerate() {
                let ruleset = &self.input.rulesets[rs];
                if ruleset.family != family {
                    continue;
                }
                let Some(table) = ruleset
                    .tables
                    .iter()
                    .position(|t| t.name == table_name(kind))
                else {
                    continue;
                };
                if let Some(&chain) = self.chain_index[rs][table].get(hook.chain()) {
                    let nft = ruleset.backend == nfscope_ruleset::Backend::Nft;
                    let prio = ipt_priority(kind, hook, nft);
                    let key = if kind == TableKind::Nat {
                        (nat_core(hook), prio, 0, n)
                    } else {
                        (prio, 0, 0, n)
                    };
                    out.push((
                        key,
                        Stage {
                            native: false,
                            ruleset: rs,
                            table,
                            chain,
                            kind,
                            ct_attached: kind != TableKind::Raw,
                            order: (key.0, key.1),
                        },
                    ));
                }
            }
        }
        let mut order = 0;
        for (rs, ruleset) in self.input.native.iter().enumerate() {
            for (ti, table) in ruleset.tables.iter().enumerate() {
                if !crate::nft_walk::family_applies(table.family, family) {
                    continue;
                }
                for (ci, chain) in table.chains.iter().enumerate() {
                    let Some(base) = &chain.base else { continue };
                    if crate::nft_walk::trace_hook(base.hook) != Some(hook) {
                        continue;
                    }
                    order += 1;
                    let prio = i64::from(base.priority);
                    let nat = base.kind == nfscope_ruleset::typed::ChainType::Nat;
                    let key = if nat {
                        (nat_core(hook), prio, 1, order)
                    } else {
                        (prio, 0, 1, order)
                    };
                    let kind = match base.kind {
                        nfscope_ruleset::typed::ChainType::Nat => TableKind::Nat,
                        _ if raw_hook && prio <= -200 => TableKind::Raw,
                        nfscope_ruleset::typed::ChainType::Filter => TableKind::Filter,
                        nfscope_ruleset::typed::ChainType::Route => TableKind::Mangle,
                    };
                    out.push((
                        key,
                        Stage {
                            native: true,
                            ruleset: rs,
                            table: ti,
                            chain: ci,
                            kind,
                            ct_attached: !(raw_hook && prio <= -200),
                            order: (key.0, key.1),
                        },
                    ));
                }
            }
        }
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// Starts the next stage, or moves to the next hook; `Some` when the packet's fate is sealed.
    fn next_stage(&self, walk: &mut Walk, family: Family) -> Option<(Verdict, Option<RuleRef>)> {
        while let Some(&stage) = walk.stages.get(walk.stage) {
            if stage.kind == TableKind::Nat && !self.nat_applies(walk) {
                walk.stage += 1;
                continue;
            }
            if stage.kind == TableKind::Nat && self.binding_made(walk) {
                // The NAT core stops at the first nat chain that set up a binding.
                walk.stage += 1;
                continue;
            }
            walk.stack.push(Frame {
                chain: stage.chain,
                pos: 0,
                base: true,
            });
            return None;
        }
        let next = self.route_after(walk)?;
        match next {
            Ok(hook) => {
                walk.hook = hook;
                walk.stages = self.stages(hook, family);
                walk.stage = 0;
                self.note_equal_priorities(walk);
                None
            }
            Err(verdict) => Some((verdict, walk.filter_accept)),
        }
    }

    /// Base chains of different tables at one priority, one of them native: the kernel runs the
    /// most recently registered first, which a dump does not tell.
    fn note_equal_priorities(&self, walk: &mut Walk) {
        for pair in walk.stages.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.order == b.order
                && (a.native || b.native)
                && (a.native, a.ruleset, a.table) != (b.native, b.ruleset, b.table)
            {
                let name = |s: Stage| -> String {
                    if s.native {
                        let t = self.nft_table(s);
                        format!("{} {} chain {}", t.family, t.name, t.chains[s.chain].name)
                    } else {
                        let rs = &self.input.rulesets[s.ruleset];
                        format!(
                            "{} {} {} {}",
                            rs.family,
                            rs.backend,
                            rs.tables[s.table].name,
                            walk.hook.chain()
                        )
                    }
                };
                walk.notes.push(format!(
                    "at {} {} and {} share priority {}: the kernel runs the most recently registered first, which a dump does not tell; traced in the order shown",
                    walk.hook,
                    name(a),
                    name(b),
                    if a.order.0 == a.order.1 || a.kind != TableKind::Nat {
                        a.order.0.to_string()
                    } else {
                        format!("{} (within the NAT core)", a.order.1)
                    }
                ));
            }
        }
    }

    /// Has a nat chain of this hook already set up this hook's binding (DNAT in
    /// prerouting/output, SNAT in input/postrouting)?
    fn binding_made(&self, walk: &Walk) -> bool {
        match walk.hook {
            Hook::Prerouting | Hook::Output => walk.pkt.dnat_done && !walk.pkt.looped,
            Hook::Input | Hook::Postrouting => walk.pkt.snat_done,
            Hook::Forward => false,
        }
    }

    fn nat_applies(&self, walk: &mut Walk) -> bool {
        let why = if walk.pkt.looped {
            Some("looped back: the connection's NAT was set up on the way out")
        } else {
            match walk.pkt.ct_state {
                CtState::New => None,
                CtState::Untracked => Some("untracked packets skip nat"),
                _ => Some(
                    "not a new connection: conntrack applies the NAT chosen by its first packet",
                ),
            }
        };
        let Some(why) = why else { return true };
        if !walk.nat_skip_noted {
            walk.nat_skip_noted = true;
            walk.steps.push(Step {
                hook: walk.hook,
                at: None,
                effect: Effect::NatSkipped(why.to_owned()),
                condition: None,
            });
        }
        false
    }

    /// The hook after the current one, `Err(verdict)` when the packet's journey ends.
    fn route_after(&self, walk: &mut Walk) -> Option<Result<Hook, Verdict>> {
        let hook = match walk.hook {
            Hook::Prerouting => self.route_incoming(walk),
            Hook::Input => Err(Verdict::Accept),
            Hook::Forward => Ok(Hook::Postrouting),
            Hook::Output => {
                if walk.pkt.dnat_done && !walk.pkt.looped {
                    let mut notes = Vec::new();
                    if let Some(dev) = self.route_out(walk.pkt.dst, &mut notes) {
                        walk.pkt.out_iface = Some(dev);
                    }
                    self.routed(
                        walk,
                        format!(
                            "rerouted after DNAT to {}: out {}",
                            walk.pkt.dst,
                            out_label(&walk.pkt.out_iface)
                        ),
                    );
                }
                Ok(Hook::Postrouting)
            }
            Hook::Postrouting => {
                if walk.locally_generated && !walk.pkt.looped && self.is_local(walk.pkt.dst) {
                    walk.pkt.looped = true;
                    walk.pkt.in_iface = Some("lo".into());
                    self.routed(
                        walk,
                        format!("{} is local: looped back through lo", walk.pkt.dst),
                    );
                    Ok(Hook::Prerouting)
                } else {
                    Err(Verdict::Accept)
                }
            }
        };
        Some(hook)
    }

    fn route_incoming(&self, walk: &mut Walk) -> Result<Hook, Verdict> {
        let dst = walk.pkt.dst;
        if let Some(proxy) = walk.pkt.tproxy.clone() {
            walk.pkt.out_iface = None;
            self.routed(
                walk,
                format!(
                    "TPROXY: delivered locally to the proxy socket {proxy}: INPUT (assumes the policy routing TPROXY set-ups add for the mark: `ip rule add fwmark M lookup T` with `local default dev lo table T`)"
                ),
            );
            return Ok(Hook::Input);
        }
        if let Some(placeholder) = walk.pkt.dst_unknown.clone() {
            walk.pkt.out_iface = None;
            self.routed(walk, format!("{placeholder} is a local address: INPUT"));
            return Ok(Hook::Input);
        }
        if let Some(what) = self.local_delivery_class(dst) {
            let dev = walk.pkt.in_iface.clone().unwrap_or_default();
            let joined = (dst.is_multicast() && !always_joined(dst)).then(|| {
                self.input
                    .multicast_groups
                    .as_ref()
                    .map(|groups| groups.iter().any(|(d, g)| *g == dst && *d == dev))
            });
            if joined == Some(Some(false)) {
                self.routed(
                    walk,
                    format!(
                        "no socket on {dev} joined multicast group {dst}: dropped by routing (multicast routing is not modelled)"
                    ),
                );
                return Err(Verdict::Drop);
            }
            walk.pkt.out_iface = None;
            let text = format!("{dst} is {what}: delivered locally, INPUT");
            self.routed(walk, text);
            if joined == Some(None) {
                walk.notes.push(format!(
                    "multicast {dst}: the kernel delivers it locally only when a socket on {} joined the group (otherwise routing drops it before INPUT); group memberships are not known offline, and multicast routing is not modelled",
                    if dev.is_empty() { "the incoming interface" } else { &dev }
                ));
            }
            return Ok(Hook::Input);
        }
        if self.is_local(dst) {
            walk.pkt.out_iface = None;
            self.routed(walk, format!("{dst} is a local address: INPUT"));
            return Ok(Hook::Input);
        }
        if walk.pkt.looped {
            return Ok(Hook::Input);
        }
        let route = self.input.routes.as_ref().map(|r| r.lookup(dst));
        match route {
            Some(None) if walk.pkt.out_iface.is_none() => {
                self.routed(walk, format!("no route to {dst}: dropped by routing"));
                return Err(Verdict::Drop);
            }
            Some(Some(r))
                if matches!(
                    r.kind,
                    RouteKind::Blackhole | RouteKind::Unreachable | RouteKind::Prohibit
                ) =>
            {
                self.routed(
                    walk,
                    format!("route to {dst} is {:?}: dropped by routing", r.kind).to_lowercase(),
                );
                return Err(if r.kind == RouteKind::Blackhole {
                    Verdict::Drop
                } else {
                    Verdict::Reject
                });
            }
            Some(Some(r)) if walk.pkt.out_iface.is_none() => walk.pkt.out_iface = r.dev.clone(),
            _ => {}
        }
        self.routed(
            walk,
            format!(
                "{dst} is not local: FORWARD, out {}",
                out_label(&walk.pkt.out_iface)
            ),
        );
        Ok(Hook::Forward)
    }

    /// Destinations the kernel's input routing delivers locally although they are not an
    /// address of the node: limited broadcast, the broadcast address of a local subnet
    /// (`broadcast` entries of the local table) and multicast groups.
    fn local_delivery_class(&self, dst: IpAddr) -> Option<&'static str> {
        match dst {
            IpAddr::V4(v4) if v4.is_broadcast() => Some("the limited broadcast address"),
            _ if dst.is_multicast() => Some("a multicast group"),
            _ if self.is_broadcast(dst) => Some("the broadcast address of a local subnet"),
            _ => None,
        }
    }

    fn routed(&self, walk: &mut Walk, text: String) {
        walk.steps.push(Step {
            hook: walk.hook,
            at: None,
            effect: Effect::Routed(text),
            condition: None,
        });
    }

    /// End of the current chain: return to the caller, or the policy of a built-in chain.
    fn chain_end(&self, walk: &mut Walk, stage: Stage) -> Option<(Verdict, Option<RuleRef>)> {
        let frame = walk.stack.pop()?;
        if !frame.base {
            let at = stage.at(frame.chain, None);
            walk.steps.push(Step {
                hook: walk.hook,
                at: Some(at),
                effect: Effect::EndOfChain,
                condition: None,
            });
            return None;
        }
        self.policy(walk, stage)
    }

    fn policy(&self, walk: &mut Walk, stage: Stage) -> Option<(Verdict, Option<RuleRef>)> {
        walk.stack.clear();
        let at = stage.at(stage.chain, None);
        let (policy, condition) = if stage.native {
            let base = self.nft_chain(stage, stage.chain).base.as_ref();
            let drop = base.and_then(|b| b.policy) == Some(nfscope_ruleset::typed::Policy::Drop);
            (if drop { Policy::Drop } else { Policy::Accept }, None)
        } else {
            let chain = self.chain(stage, stage.chain);
            (
                chain.policy.unwrap_or(Policy::Accept),
                chain
                    .policy
                    .is_none()
                    .then(|| "the dump does not state this policy: ACCEPT assumed".to_owned()),
            )
        };
        walk.steps.push(Step {
            hook: walk.hook,
            at: Some(at),
            effect: Effect::Policy(policy),
            condition,
        });
        match policy {
            Policy::Drop => Some((Verdict::Drop, Some(at))),
            Policy::Accept | Policy::Return => {
                self.end_table(walk, stage, at);
                None
            }
        }
    }

    pub(crate) fn end_table(&self, walk: &mut Walk, stage: Stage, at: RuleRef) {
        walk.stack.clear();
        walk.stage += 1;
        if stage.kind == TableKind::Filter {
            walk.filter_accept = Some(at);
        }
    }

    pub(crate) fn follow(
        &self,
        walk: &mut Walk,
        stage: Stage,
        flow: Flow,
        at: RuleRef,
    ) -> Option<(Verdict, Option<RuleRef>)> {
        match flow {
            Flow::Next => None,
            Flow::EndTable => {
                self.end_table(walk, stage, at);
                None
            }
            Flow::Final(verdict, by) => Some((verdict, by)),
            Flow::Enter { chain, goto } => {
                let base = if goto {
                    walk.stack.pop().is_some_and(|f| f.base)
                } else {
                    false
                };
                walk.stack.push(Frame {
                    chain,
                    pos: 0,
                    base,
                });
                None
            }
            Flow::Return => {
                let frame = walk.stack.pop()?;
                if frame.base {
                    self.policy(walk, stage)
                } else {
                    None
                }
            }
        }
    }

    /// Applies the target of a matching rule.
    fn apply(
        &self,
        rule: &Rule,
        typed: &Lowered,
        walk: &mut Walk,
        stage: Stage,
        at: RuleRef,
        condition: Option<String>,
    ) -> Flow {
        if stage.kind == TableKind::Nat
            && typed.matches.iter().any(|e| {
                matches!(e, Expr::Match(Match { rhs: Rhs::SetRef(name), .. }) if is_ipvs_set(Some(name)))
            })
        {
            walk.ipvs = true;
        }
        let (effect, flow) = match &rule.spec.target {
            None => (Effect::Continue("counted (no target)".into()), Flow::Next),
            Some(target) => self.xt_target(target, &typed.target, walk, stage, at),
        };
        walk.steps.push(Step {
            hook: walk.hook,
            at: Some(at),
            effect,
            condition,
        });
        flow
    }

    fn finish(&self, walk: &mut Walk, verdict: Verdict, by: Option<RuleRef>) -> Branch {
        let decided_by = match verdict {
            Verdict::Accept => walk.filter_accept,
            _ => by,
        };
        let dnat_label = walk
            .pkt
            .dst_unknown
            .as_ref()
            .filter(|_| walk.pkt.dnat_done)
            .map(|p| {
                walk.pkt
                    .dport
                    .map_or(p.clone(), |port| format!("{p}:{port}"))
            });
        let dnat =
            (walk.pkt.dnat_done && dnat_label.is_none()).then_some((walk.pkt.dst, walk.pkt.dport));
        let mut notes = std::mem::take(&mut walk.notes);
        if walk.ipvs {
            notes.push(format!(
                "handed to IPVS: {} is an IPVS virtual service; IPVS picks a real server after INPUT (the DNAT is not in iptables)",
                endpoint(walk.pkt.dst, walk.pkt.dport)
            ));
        }
        Branch {
            verdict,
            probability: walk.probability,
            assumptions: std::mem::take(&mut walk.assumptions),
            steps: std::mem::take(&mut walk.steps),
            decided_by,
            first_fork: walk.first_fork,
            dnat,
            dnat_label,
            snat: walk.snat_label.take(),
            notes,
        }
    }
}

/// Can the rule's destination (`-d`, a parsed address and mask) not hold for the packet? Then its
/// lowered `ip daddr` match would answer "no" and the rule is skipped before it is lowered or
/// evaluated: the index that keeps a walk through kube-proxy's `KUBE-SERVICES` (one `-d VIP`
/// rule per service) from lowering thousands of rules. A destination REDIRECT made unknown is
/// never excluded.
fn excluded_by_destination(rule: &Rule, pkt: &PktState) -> bool {
    pkt.dst_unknown.is_none()
        && rule
            .spec
            .destination
            .as_ref()
            .is_some_and(|d| !d.negated && !d.value.contains(pkt.dst))
}

/// The order iptables lists a rule's base matches in (`-s -d -p -i -o`), for picking which
/// undetermined part a MAY names; modules come after.
fn base_rank(key: &Key) -> u8 {
    match key {
        Key::Addr { dir: Dir::Src, .. } => 0,
        Key::Addr { dir: Dir::Dst, .. } => 1,
        Key::L4Proto { .. } => 2,
        Key::Iface {
            dir: IfaceDir::In, ..
        } => 3,
        Key::Iface {
            dir: IfaceDir::Out, ..
        } => 4,
        _ => 5,
    }
}

fn backend_rank(rs: &Ruleset) -> u8 {
    match rs.backend {
        nfscope_ruleset::Backend::Legacy => 0,
        nfscope_ruleset::Backend::Nft => 1,
        nfscope_ruleset::Backend::Unknown => 2,
    }
}

fn summarize(branches: Vec<Branch>, capped: bool) -> TraceResult {
    let first = branches[0].verdict;
    let agree = branches.iter().all(|b| b.verdict == first);
    let verdict = if agree { first } else { Verdict::Undetermined };
    let must = agree && !capped && verdict != Verdict::Undetermined;
    let same_rule = branches
        .iter()
        .all(|b| b.decided_by == branches[0].decided_by);
    let decided_by = if verdict == Verdict::Undetermined && !agree {
        branches[0].first_fork
    } else if same_rule || agree {
        branches[0].decided_by
    } else {
        None
    };
    TraceResult {
        verdict,
        must,
        decided_by,
        branches,
        capped,
        read_rules_said: None,
    }
}

fn target_label(rule: &Rule) -> String {
    rule.spec
        .target
        .as_ref()
        .map_or_else(|| "counted (no target)".to_owned(), |t| t.name.clone())
}

fn is_ipvs_set(name: Option<&str>) -> bool {
    matches!(
        name,
        Some(
            "KUBE-CLUSTER-IP"
                | "KUBE-LOAD-BALANCER"
                | "KUBE-EXTERNAL-IP"
                | "KUBE-EXTERNAL-IP-LOCAL"
                | "KUBE-LOAD-BALANCER-LOCAL"
        )
    ) || name.is_some_and(|n| n.starts_with("KUBE-NODE-PORT-"))
}

/// Groups every interface is a member of: all-hosts (224.0.0.1, ff01::1, ff02::1).
fn always_joined(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::new(224, 0, 0, 1),
        IpAddr::V6(v6) => matches!(v6.segments(), [0xff01 | 0xff02, 0, 0, 0, 0, 0, 0, 1]),
    }
}

/// `ip:port`, `[v6]:port`, or the address alone.
pub fn endpoint(ip: IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    }
}

fn out_label(out: &Option<String>) -> String {
    out.clone().unwrap_or_else(|| "unknown interface".into())
}

/// A probability as a short decimal.
pub fn fmt_prob(p: f64) -> String {
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}
