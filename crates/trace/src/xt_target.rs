//! iptables targets in the walk, applied from the typed statements they lower to.
//!
//! Owns what a matching iptables rule's target does (`engine` decides that the rule matches):
//! its statements from `nfscope_ruleset::lower::lower_target` — verdicts and jumps to the
//! table's chains (a missing chain, an unknown target: UNDETERMINED), NAT and NETMAP and marks
//! through the functions native rules use (`stmt`), NOTRACK, and TPROXY with x_tables'
//! semantics (prerouting only; the proxy socket at `--on-ip`/the incoming interface's primary
//! address and `--on-port`/the packet's port, `--tproxy-mark`; no socket is a second, dropping
//! branch). Targets that only observe or change what no rule or verdict here reads (LOG, TCPMSS,
//! CT helpers and zones, …) continue whatever options they carry. Any other target or option
//! the lowering left [`Expr::Unmodelled`] ends the walk UNDETERMINED (MAY): no option string is
//! read here.

use nfscope_ruleset::typed::{self, Expr, MarkTarget, Nat, NatAddr, NatKind, Value};
use nfscope_ruleset::{Rule, Target, TargetKind};

use crate::engine::{Flow, Stage, Tracer, Walk, endpoint};
use crate::packet::CtState;
use crate::result::{Effect, RuleRef, Step, Verdict};
use crate::state::{Hook, PktState};
use crate::stmt::{Lang, nat_port};

/// Targets that only observe or tweak things the verdict does not depend on.
fn is_continue_target(name: &str) -> bool {
    matches!(
        name,
        "LOG"
            | "NFLOG"
            | "ULOG"
            | "TRACE"
            | "CT"
            | "CHECKSUM"
            | "TCPMSS"
            | "AUDIT"
            | "CLASSIFY"
            | "DSCP"
            | "TOS"
            | "TTL"
            | "HL"
            | "ECN"
            | "SET"
            | "IDLETIMER"
            | "LED"
            | "CONNSECMARK"
            | "SECMARK"
            | "TEE"
            | "RATEEST"
            | "NFACCT"
    )
}

/// A rule whose match being undetermined cannot change anything: no target, or a logging one
/// (`stmts`: its lowered target).
pub(crate) fn has_no_effect(rule: &Rule, stmts: &[Expr]) -> bool {
    match &rule.spec.target {
        None => true,
        Some(t) => {
            t.kind == TargetKind::Jump
                && is_continue_target(&t.name)
                && !stmts.iter().any(|e| matches!(e, Expr::Notrack))
        }
    }
}

/// The TPROXY statement of a lowered target, if it is one.
pub(crate) fn tproxy_of(stmts: &[Expr]) -> Option<&Nat> {
    match stmts.first() {
        Some(Expr::Nat(n)) if n.kind == NatKind::Tproxy => Some(n),
        _ => None,
    }
}

fn notrack(pkt: &mut PktState) -> (Effect, Flow) {
    pkt.ct_state = CtState::Untracked;
    (Effect::Notrack, Flow::Next)
}

fn undetermined(effect: Effect, at: RuleRef) -> (Effect, Flow) {
    (effect, Flow::Final(Verdict::Undetermined, Some(at)))
}

impl<'a> Tracer<'a> {
    /// The effect of `target` (lowered to `stmts`) on `walk`, and how the walk goes on.
    pub(crate) fn xt_target(
        &self,
        target: &Target,
        stmts: &[Expr],
        walk: &mut Walk,
        stage: Stage,
        at: RuleRef,
    ) -> (Effect, Flow) {
        if stmts.iter().any(|e| matches!(e, Expr::Notrack)) {
            return notrack(&mut walk.pkt);
        }
        if is_continue_target(&target.name) {
            return (Effect::Continue(target.name.clone()), Flow::Next);
        }
        match stmts {
            [Expr::Verdict(v)] => self.xt_verdict(v, stage, at),
            [Expr::Nat(n), ..] if n.kind == NatKind::Tproxy => {
                self.xt_tproxy(n, stmts, walk, stage, at)
            }
            [Expr::Nat(n)] => self
                .apply_nat(n, None, walk)
                .unwrap_or_else(|| undetermined(Effect::UnknownTarget(target.name.clone()), at)),
            [Expr::SetMark { target: m, value }] => (
                self.apply_mark(*m, value, walk, stage, Lang::Xt),
                Flow::Next,
            ),
            _ if target.name == "NFQUEUE" => undetermined(Effect::Queue(target.name.clone()), at),
            _ => {
                let text = stmts.iter().find_map(|e| match e {
                    Expr::Unmodelled { text } => Some(text.clone()),
                    _ => None,
                });
                undetermined(
                    Effect::UnknownTarget(text.unwrap_or_else(|| target.name.clone())),
                    at,
                )
            }
        }
    }

    /// A lowered verdict: ACCEPT ends the table, a jump or goto enters a chain of this table (a
    /// chain the dump does not have: UNDETERMINED).
    fn xt_verdict(&self, v: &typed::Verdict, stage: Stage, at: RuleRef) -> (Effect, Flow) {
        let (name, goto) = match v {
            typed::Verdict::Queue { .. } => {
                return undetermined(Effect::Queue("QUEUE".into()), at);
            }
            typed::Verdict::Jump(name) => (name, false),
            typed::Verdict::Goto(name) => (name, true),
            v => return self.nft_verdict(v, stage, at),
        };
        if let Some(&chain) = self.chain_index[stage.ruleset][stage.table].get(name.as_str()) {
            let effect = if goto {
                Effect::Goto(name.clone())
            } else {
                Effect::Jump(name.clone())
            };
            return (effect, Flow::Enter { chain, goto });
        }
        if goto || name.chars().any(|c| c.is_ascii_lowercase()) || name.starts_with("KUBE-") {
            undetermined(Effect::MissingChain(name.clone()), at)
        } else {
            undetermined(Effect::UnknownTarget(name.clone()), at)
        }
    }

    /// TPROXY (prerouting only): the packet goes to the proxy socket, its mark set by
    /// `--tproxy-mark`; the table ends. The no-socket case is the fork [`Self::split_tproxy`] made.
    fn xt_tproxy(
        &self,
        nat: &Nat,
        stmts: &[Expr],
        walk: &mut Walk,
        stage: Stage,
        at: RuleRef,
    ) -> (Effect, Flow) {
        if walk.hook != Hook::Prerouting {
            return undetermined(Effect::UnknownTarget("TPROXY".into()), at);
        }
        let proxy = self.tproxy_socket(nat, &walk.pkt);
        let old = walk.pkt.mark;
        let new = stmts
            .iter()
            .find_map(|e| match e {
                Expr::SetMark {
                    target: MarkTarget::Meta,
                    value,
                } => Some(value),
                _ => None,
            })
            .map_or(Some(old), |v| {
                self.mark_after(v, Some(old), walk, stage, Lang::Xt)
            })
            .unwrap_or(old);
        walk.pkt.mark = new;
        walk.pkt.tproxy = Some(proxy.clone());
        (
            Effect::Tproxy {
                to: proxy,
                old_mark: old,
                new_mark: new,
            },
            Flow::EndTable,
        )
    }

    /// TPROXY's proxy socket as `ip:port`: `--on-ip` (else the incoming interface's primary
    /// address; `TPROXY(iface)` when the routes do not say it) and `--on-port` (0 or none: the
    /// packet's destination port).
    fn tproxy_socket(&self, nat: &Nat, pkt: &PktState) -> String {
        let port = nat
            .port
            .as_ref()
            .and_then(nat_port)
            .filter(|&p| p != 0)
            .or(pkt.dport);
        let ip = match &nat.addr {
            Some(NatAddr::Value(Value::Addr(a))) if !a.is_unspecified() => Some(*a),
            _ => None,
        };
        let dev = pkt.in_iface.as_deref().unwrap_or("");
        match ip.or_else(|| self.primary_address(dev, pkt.dst)) {
            Some(ip) => endpoint(ip, port),
            None => {
                let placeholder = format!("TPROXY({dev})");
                port.map_or(placeholder.clone(), |p| format!("{placeholder}:{p}"))
            }
        }
    }

    /// TPROXY hands the packet to a transparent socket at the proxy address; the kernel drops it
    /// when no such socket exists, which the rules do not say: that case is a second branch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn split_tproxy(
        &self,
        walk: &mut Walk,
        forks: &mut Vec<Walk>,
        room: &mut usize,
        capped: &mut bool,
        at: RuleRef,
        nat: &Nat,
    ) {
        let proxy = self.tproxy_socket(nat, &walk.pkt);
        walk.first_fork.get_or_insert(at);
        if *room == 0 {
            *capped = true;
            walk.notes.push(format!(
                "branch cap reached: the case where no socket listens on {proxy} (the kernel drops) was not explored"
            ));
            walk.assumptions.push("branch cap reached".into());
            return;
        }
        *room -= 1;
        let mut alt = walk.clone();
        alt.assumptions
            .push(format!("assumed: no transparent socket listens on {proxy}"));
        alt.steps.push(Step {
            hook: walk.hook,
            at: Some(at),
            effect: Effect::Drop,
            condition: Some(format!(
                "TPROXY finds no transparent socket on {proxy}: the kernel drops the packet"
            )),
        });
        alt.forced_end = Some((Verdict::Drop, Some(at)));
        walk.assumptions
            .push(format!("assumed: a transparent socket listens on {proxy}"));
        forks.push(alt);
    }
}
