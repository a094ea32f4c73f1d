//! Native nftables base chains in the walk: one typed rule at a time, statements applied.
//!
//! Owns running a [`TypedRule`] of a native table inside the engine's walk: expressions left to
//! right (a failing match ends the rule, an undetermined one splits the walk), verdict maps and
//! NAT maps with their branches (`numgen` with probabilities, undetermined keys and dynamic maps
//! as assumptions), `meta mark set` / `ct mark set`, `notrack`, NAT (dnat/snat/masquerade/
//! redirect with addresses and ports from maps; a NAT statement accepts, ending its base chain;
//! what a NAT or mark statement computes is `stmt`'s, shared with iptables targets),
//! and verdicts (`accept` ends only its base chain, `drop`/`reject` are final, `queue` hands the
//! packet away: UNDETERMINED). Which base chains run at a hook and in what order is the engine's
//! (`engine::Tracer::stages`); deciding single expressions is `typed_eval`'s. Also owns the notes
//! for bridge, netdev and inet-ingress chains the packet may cross, which are not traced.

use std::net::IpAddr;

use nfscope_ruleset::Family;
use nfscope_ruleset::nft::render_key;
use nfscope_ruleset::typed::{
    self, Expr, MapData, NatAddr, NftChain, NftFamily, NftTable, TypedRule,
};

use crate::engine::{Flow, Stage, Tracer, Walk, fmt_prob};
use crate::packet::{CtState, Packet};
use crate::result::{Effect, RuleRef, Step, Verdict};
use crate::state::Hook;
use crate::stmt::Lang;
use crate::typed_eval::{Lookup, Outcome, TableSets, TypedEnv, Weight, eval_match, lookup};

/// Do tables of nft family `table` see packets of `family`?
pub(crate) fn family_applies(table: NftFamily, family: Family) -> bool {
    match table {
        NftFamily::Ip => family == Family::Ipv4,
        NftFamily::Ip6 => family == Family::Ipv6,
        NftFamily::Inet => true,
        NftFamily::Arp | NftFamily::Bridge | NftFamily::Netdev => false,
    }
}

/// The tracer's hook for an nft hook (ingress and egress are not traced).
pub(crate) fn trace_hook(h: typed::Hook) -> Option<Hook> {
    Some(match h {
        typed::Hook::Prerouting => Hook::Prerouting,
        typed::Hook::Input => Hook::Input,
        typed::Hook::Forward => Hook::Forward,
        typed::Hook::Output => Hook::Output,
        typed::Hook::Postrouting => Hook::Postrouting,
        typed::Hook::Ingress | typed::Hook::Egress => return None,
    })
}

/// Expressions after an undetermined one that cannot change anything (the rule's outcome does
/// not matter then).
fn no_effect(rest: &[Expr]) -> bool {
    rest.iter().all(|e| {
        matches!(
            e,
            Expr::Match(_)
                | Expr::Counter { .. }
                | Expr::Log { .. }
                | Expr::SetUpdate { .. }
                | Expr::Stateful { .. }
                | Expr::Verdict(typed::Verdict::Continue)
        )
    })
}

/// Applies one alternative of a lookup (its map data, or none) to a walk.
type ApplyAlt<'a, 'b> =
    dyn Fn(&Tracer<'a>, &mut Walk, Option<&'a MapData>) -> Option<(Effect, Flow)> + 'b;

impl<'a> Tracer<'a> {
    pub(crate) fn nft_table(&self, stage: Stage) -> &'a NftTable {
        &self.input.native[stage.ruleset].tables[stage.table]
    }

    pub(crate) fn nft_chain(&self, stage: Stage, chain: usize) -> &'a NftChain {
        &self.nft_table(stage).chains[chain]
    }

    pub(crate) fn with_env<R>(
        &self,
        walk: &Walk,
        stage: Stage,
        f: impl FnOnce(&TypedEnv<'_, 'a>) -> R,
    ) -> R {
        let is_local = |ip: IpAddr| self.is_local(ip);
        let is_broadcast = |ip: IpAddr| self.is_broadcast(ip);
        let env = TypedEnv {
            hook: walk.hook,
            ct_attached: stage.ct_attached,
            is_local: &is_local,
            is_broadcast: &is_broadcast,
            locally_generated: walk.locally_generated,
            sets: &TableSets {
                table: self.nft_table(stage),
                index: self
                    .nft_set_index
                    .get(stage.ruleset)
                    .and_then(|t| t.get(stage.table)),
            },
            xt: false,
            ipsets: None,
        };
        f(&env)
    }

    /// Runs one native rule on `walk`; `Some(flow)` when it ends the rule with a verdict (or
    /// NAT), `None` when the walk goes on with the next rule.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_nft_rule(
        &self,
        rule: &'a TypedRule,
        walk: &mut Walk,
        stage: Stage,
        at: RuleRef,
        forks: &mut Vec<Walk>,
        room: &mut usize,
        capped: &mut bool,
    ) -> Option<Flow> {
        let mut condition: Option<String> = None;
        let mut stepped = false;
        for (i, e) in rule.exprs.iter().enumerate() {
            let outcome = match e {
                Expr::Match(m) => self.with_env(walk, stage, |env| eval_match(m, &walk.pkt, env)),
                Expr::Stateful { text, .. } => {
                    Outcome::Maybe(format!("`{text}` depends on state a dump cannot show"))
                }
                Expr::Unmodelled { text } => {
                    Outcome::Maybe(format!("`{text}` is not modelled by nfscope"))
                }
                _ => Outcome::Yes,
            };
            match outcome {
                Outcome::Yes => {}
                Outcome::No => return None,
                Outcome::Chance(p) => {
                    self.split(walk, forks, room, capped, at, p, None);
                    condition = Some(format!("random choice, probability {}", fmt_prob(p)));
                    continue;
                }
                Outcome::Maybe(why) => {
                    if no_effect(&rule.exprs[i + 1..]) {
                        walk.steps.push(Step {
                            hook: walk.hook,
                            at: Some(at),
                            effect: Effect::Continue("no verdict".into()),
                            condition: Some(format!("may match: {why}")),
                        });
                        return None;
                    }
                    self.split(walk, forks, room, capped, at, 1.0, Some(&why));
                    condition = Some(format!("assumed to match: {why}"));
                    continue;
                }
            }
            let result: Option<(Effect, Option<Flow>)> = match e {
                Expr::Match(_)
                | Expr::Counter { .. }
                | Expr::Log { .. }
                | Expr::SetUpdate { .. }
                | Expr::Stateful { .. }
                | Expr::Unmodelled { .. } => None,
                Expr::Mangle { key, value } => Some((
                    Effect::Continue(format!("{} set {value}", render_key(key))),
                    None,
                )),
                Expr::Notrack => Some(if stage.ct_attached {
                    (
                        Effect::Continue("notrack after conntrack: no effect".into()),
                        None,
                    )
                } else {
                    walk.pkt.ct_state = CtState::Untracked;
                    (Effect::Notrack, None)
                }),
                Expr::SetMark { target, value } => Some((
                    self.apply_mark(*target, value, walk, stage, Lang::Nft),
                    None,
                )),
                Expr::Nat(nat) => match &nat.addr {
                    Some(NatAddr::Map { key, map }) => {
                        let found =
                            self.with_env(walk, stage, |env| lookup(key, map, &walk.pkt, env));
                        return self.branch_lookup(
                            found,
                            walk,
                            stage,
                            at,
                            condition,
                            forks,
                            room,
                            capped,
                            &|t, w, data| match data {
                                Some(MapData::Value(v)) => t.apply_nat(nat, Some(v), w),
                                Some(MapData::Verdict(_)) => Some((
                                    Effect::UnknownTarget("a NAT map with verdicts".into()),
                                    Flow::Final(Verdict::Undetermined, Some(at)),
                                )),
                                None => None,
                            },
                        );
                    }
                    _ => match self.apply_nat(nat, None, walk) {
                        Some((effect, flow)) => Some((effect, Some(flow))),
                        None => return None,
                    },
                },
                Expr::Verdict(typed::Verdict::Continue) => None,
                Expr::Verdict(v) => {
                    let (effect, flow) = self.nft_verdict(v, stage, at);
                    Some((effect, Some(flow)))
                }
                Expr::Vmap { key, map } => {
                    let found = self.with_env(walk, stage, |env| lookup(key, map, &walk.pkt, env));
                    return self.branch_lookup(
                        found,
                        walk,
                        stage,
                        at,
                        condition,
                        forks,
                        room,
                        capped,
                        &|t, _, data| match data {
                            Some(MapData::Verdict(typed::Verdict::Continue)) => None,
                            Some(MapData::Verdict(v)) => Some(t.nft_verdict(v, stage, at)),
                            Some(MapData::Value(_)) => Some((
                                Effect::UnknownTarget("a verdict map with values".into()),
                                Flow::Final(Verdict::Undetermined, Some(at)),
                            )),
                            None => None,
                        },
                    );
                }
            };
            if let Some((effect, flow)) = result {
                walk.steps.push(Step {
                    hook: walk.hook,
                    at: Some(at),
                    effect,
                    condition: condition.take(),
                });
                stepped = true;
                if flow.is_some() {
                    return flow;
                }
            }
        }
        if !stepped {
            walk.steps.push(Step {
                hook: walk.hook,
                at: Some(at),
                effect: Effect::Continue("matched, no verdict".into()),
                condition,
            });
        }
        None
    }

    /// Applies a lookup's outcome: one element (or none) on `walk`; several alternatives as
    /// forks, `walk` taking the first.
    #[allow(clippy::too_many_arguments)]
    fn branch_lookup(
        &self,
        found: Result<Lookup<'a>, String>,
        walk: &mut Walk,
        stage: Stage,
        at: RuleRef,
        condition: Option<String>,
        forks: &mut Vec<Walk>,
        room: &mut usize,
        capped: &mut bool,
        apply: &ApplyAlt<'a, '_>,
    ) -> Option<Flow> {
        let alternatives = match found {
            Err(why) => {
                walk.steps.push(Step {
                    hook: walk.hook,
                    at: Some(at),
                    effect: Effect::UnknownTarget(why),
                    condition,
                });
                return Some(Flow::Final(Verdict::Undetermined, Some(at)));
            }
            Ok(Lookup::Miss) => return None,
            Ok(Lookup::Hit(data, _)) => {
                let (effect, flow) = apply(self, walk, Some(data))?;
                walk.steps.push(Step {
                    hook: walk.hook,
                    at: Some(at),
                    effect,
                    condition,
                });
                return Some(flow);
            }
            Ok(Lookup::Branches(b)) => b,
        };
        walk.first_fork.get_or_insert(at);
        let base = walk.clone();
        let mut main_flow = None;
        for (n, (weight, data)) in alternatives.into_iter().enumerate() {
            let mut w = if n == 0 {
                std::mem::replace(walk, base.clone())
            } else {
                if *room == 0 {
                    *capped = true;
                    walk.notes.push(
                        "branch cap reached: not every element of a map lookup was explored".into(),
                    );
                    if matches!(weight, Weight::Assume(_)) {
                        walk.assumptions.push("branch cap reached".into());
                    }
                    break;
                }
                *room -= 1;
                base.clone()
            };
            let cond = match &weight {
                Weight::Chance(p) => {
                    w.probability *= p;
                    format!("random choice, probability {}", fmt_prob(*p))
                }
                Weight::Assume(why) => {
                    w.assumptions.push(format!("assumed: {why}"));
                    format!("assumed: {why}")
                }
            };
            let cond = match &condition {
                Some(c) => format!("{c}; {cond}"),
                None => cond,
            };
            let flow = match apply(self, &mut w, data) {
                Some((effect, flow)) => {
                    w.steps.push(Step {
                        hook: w.hook,
                        at: Some(at),
                        effect,
                        condition: Some(cond),
                    });
                    Some(flow)
                }
                None => {
                    w.steps.push(Step {
                        hook: w.hook,
                        at: Some(at),
                        effect: Effect::Continue("no element: next rule".into()),
                        condition: Some(cond),
                    });
                    None
                }
            };
            if n == 0 {
                *walk = w;
                main_flow = flow;
            } else {
                if let Some(flow) = flow
                    && let Some(end) = self.follow(&mut w, stage, flow, at)
                {
                    w.forced_end = Some(end);
                }
                forks.push(w);
            }
        }
        main_flow
    }

    /// A verdict statement's effect and flow.
    pub(crate) fn nft_verdict(
        &self,
        v: &typed::Verdict,
        stage: Stage,
        at: RuleRef,
    ) -> (Effect, Flow) {
        match v {
            typed::Verdict::Accept => (Effect::Accept, Flow::EndTable),
            typed::Verdict::Drop => (Effect::Drop, Flow::Final(Verdict::Drop, Some(at))),
            typed::Verdict::Reject { .. } => {
                (Effect::Reject, Flow::Final(Verdict::Reject, Some(at)))
            }
            typed::Verdict::Queue { options } => (
                Effect::Queue(format!("queue {options}").trim_end().to_owned()),
                Flow::Final(Verdict::Undetermined, Some(at)),
            ),
            typed::Verdict::Continue => (Effect::Continue("continue".into()), Flow::Next),
            typed::Verdict::Return => (Effect::Return, Flow::Return),
            typed::Verdict::Jump(name) | typed::Verdict::Goto(name) => {
                let goto = matches!(v, typed::Verdict::Goto(_));
                match self.nft_chain_index[stage.ruleset][stage.table].get(name.as_str()) {
                    Some(&chain) => (
                        if goto {
                            Effect::Goto(name.clone())
                        } else {
                            Effect::Jump(name.clone())
                        },
                        Flow::Enter { chain, goto },
                    ),
                    None => (
                        Effect::MissingChain(name.clone()),
                        Flow::Final(Verdict::Undetermined, Some(at)),
                    ),
                }
            }
        }
    }

    /// Bridge, netdev and inet-ingress base chains the packet may cross: nfscope does not trace
    /// them, so each is named; `true` in the pair when it could drop the packet (a drop policy
    /// or any rule).
    pub(crate) fn untraced_crossings(&self, packet: &Packet) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let family = packet.family();
        for rs in &self.input.native {
            for t in &rs.tables {
                for c in &t.chains {
                    let Some(base) = &c.base else { continue };
                    let on_dev = |dev: Option<&str>| {
                        base.devices.is_empty()
                            || dev.is_none_or(|d| base.devices.iter().any(|x| x == d))
                    };
                    let why = match (t.family, base.hook) {
                        (NftFamily::Netdev, typed::Hook::Ingress)
                        | (NftFamily::Inet, typed::Hook::Ingress)
                            if packet.in_iface.is_some()
                                && on_dev(packet.in_iface.as_deref())
                                && (t.family == NftFamily::Netdev
                                    || family_applies(t.family, family)) =>
                        {
                            format!("it enters on {}", packet.in_iface.as_deref().unwrap_or(""))
                        }
                        (NftFamily::Netdev, typed::Hook::Egress)
                            if !self.is_local(packet.dst)
                                && on_dev(packet.out_iface.as_deref()) =>
                        {
                            "it may leave by one of its devices".to_owned()
                        }
                        (NftFamily::Bridge, _)
                            if packet.in_iface.is_some() || packet.physdev.is_some() =>
                        {
                            "it may be bridged or enter through a bridge port".to_owned()
                        }
                        _ => continue,
                    };
                    let could_drop =
                        !c.rules.is_empty() || base.policy == Some(typed::Policy::Drop);
                    if !could_drop {
                        continue;
                    }
                    let drops = base.policy == Some(typed::Policy::Drop);
                    out.push((
                        format!(
                            "{} table {} chain {} (hook {}) is not traced and may see this packet ({why}){}",
                            t.family,
                            t.name,
                            c.name,
                            base.hook.as_str(),
                            if drops { "; its policy is drop" } else { "" }
                        ),
                        drops,
                    ));
                }
            }
        }
        out
    }
}
