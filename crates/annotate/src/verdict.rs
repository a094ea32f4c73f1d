//! Which rules count network-policy decisions, and which decision.
//!
//! A verdict goes only on the rule where the decision becomes final for the packet, so that
//! summing counters by verdict counts each packet once:
//! - kube-router `KUBE-POD-FW-*`: the REJECT/DROP of unmarked traffic is `Deny`; the closing
//!   `MARK` that sets `0x20000` ("set mark to ACCEPT traffic that comply to network policies") is
//!   `Accept`. Rules inside `KUBE-NWPLCY-*` get none (their packets are counted again there).
//! - Calico endpoint chains (`cali-tw-/fw-/th-/fh-/thfw-/fhfw-`): "Return if policy accepted" and
//!   "Return if profile accepted" are `Accept`; DROP/REJECT rules (e.g. "Drop if no policies passed
//!   packet", "Drop if no profiles matched") are `Deny`. In policy and profile chains
//!   (`cali-pi-/po-/pri-/pro-`) explicit DROP/REJECT rules are `Deny`; their accepts are counted
//!   by the endpoint chain's "Return if … accepted".
//! - Weave NPC: ACCEPT in `WEAVE-NPC-INGRESS` / `WEAVE-NPC-DEFAULT`, jumps to
//!   `WEAVE-NPC-EGRESS-ACCEPT` are `Accept`; the DROP of unmarked traffic in `WEAVE-NPC-EGRESS` and
//!   the `-o weave -j DROP` in `FORWARD` are `Deny`.
//!
//! DROPs of conntrack-INVALID packets are never verdicts: no policy decided them.

use nfscope_ruleset::typed::{
    BitOp, CtKey, Expr, Key, MarkTarget, MarkValue, Match, Op, Rhs, Value,
};
use nfscope_ruleset::{Family, RuleSpec};

use crate::types::PolicyVerdict;

const CALICO_ENDPOINT_PREFIXES: [&str; 6] = [
    "cali-tw-",
    "cali-fw-",
    "cali-th-",
    "cali-fh-",
    "cali-thfw-",
    "cali-fhfw-",
];
const CALICO_POLICY_PREFIXES: [&str; 4] = ["cali-pi-", "cali-po-", "cali-pri-", "cali-pro-"];

/// The verdict a rule in `chain` counts, if any.
pub fn rule_verdict(chain: &str, spec: &RuleSpec) -> Option<PolicyVerdict> {
    if chain.starts_with("KUBE-POD-FW-") {
        kube_router_pod_verdict(spec)
    } else if CALICO_ENDPOINT_PREFIXES
        .iter()
        .any(|p| chain.starts_with(p))
    {
        calico_endpoint_verdict(spec)
    } else if CALICO_POLICY_PREFIXES.iter().any(|p| chain.starts_with(p)) {
        is_policy_drop(spec).then_some(PolicyVerdict::Deny)
    } else if chain.starts_with("WEAVE-NPC") || chain == "FORWARD" {
        weave_verdict(chain, spec)
    } else {
        None
    }
}

fn kube_router_pod_verdict(spec: &RuleSpec) -> Option<PolicyVerdict> {
    if is_policy_drop(spec) {
        return Some(PolicyVerdict::Deny);
    }
    let says_accept = spec.comments().any(|c| c.starts_with("set mark to ACCEPT"));
    (says_accept || sets_mark_bit(spec, 0x20000)).then_some(PolicyVerdict::Accept)
}

fn calico_endpoint_verdict(spec: &RuleSpec) -> Option<PolicyVerdict> {
    if is_policy_drop(spec) {
        return Some(PolicyVerdict::Deny);
    }
    let accepted = |c: &str| {
        c.starts_with("Return if policy accepted") || c.starts_with("Return if profile accepted")
    };
    (spec.target_name() == Some("RETURN") && spec.comments().any(accepted))
        .then_some(PolicyVerdict::Accept)
}

fn weave_verdict(chain: &str, spec: &RuleSpec) -> Option<PolicyVerdict> {
    let target = spec.target_name()?;
    let out_weave = spec
        .out_interface
        .as_ref()
        .is_some_and(|i| !i.negated && i.value == "weave");
    match (chain, target) {
        ("FORWARD", "DROP") if out_weave && spec.matches.is_empty() => Some(PolicyVerdict::Deny),
        ("WEAVE-NPC-EGRESS", "DROP") => Some(PolicyVerdict::Deny),
        ("WEAVE-NPC-INGRESS" | "WEAVE-NPC-DEFAULT", "ACCEPT") => Some(PolicyVerdict::Accept),
        (c, "WEAVE-NPC-EGRESS-ACCEPT") if c.starts_with("WEAVE-NPC-EGRESS") => {
            Some(PolicyVerdict::Accept)
        }
        _ => None,
    }
}

/// A DROP or REJECT that is not about conntrack-INVALID packets.
fn is_policy_drop(spec: &RuleSpec) -> bool {
    matches!(spec.target_name(), Some("DROP" | "REJECT")) && !matches_invalid_state(spec)
}

/// Does the rule match conntrack-INVALID packets (`-m conntrack --ctstate …INVALID…`, `-m state
/// --state …`, not negated)? Read from its typed `ct state` match; only rules with such a module
/// are lowered.
fn matches_invalid_state(spec: &RuleSpec) -> bool {
    if !spec
        .matches
        .iter()
        .any(|m| matches!(m.module.as_str(), "conntrack" | "state"))
    {
        return false;
    }
    spec.typed_matches(Family::Ipv4).iter().any(|e| match e {
        Expr::Match(Match {
            key:
                Key::Ct {
                    dir: None,
                    key: CtKey::State | CtKey::XtState,
                },
            op,
            rhs: Rhs::Values(values),
        }) => *op != Op::Ne && values.iter().any(|v| *v == Value::Sym("invalid".into())),
        _ => false,
    })
}

/// Does the rule's MARK target set `bit` (`--set-xmark`, `--set-mark`, `--or-mark`)? Read from
/// the target's typed mark statement (marks do not depend on the address family).
fn sets_mark_bit(spec: &RuleSpec, bit: u32) -> bool {
    let Some(target) = spec.target.as_ref().filter(|t| t.name == "MARK") else {
        return false;
    };
    let bit = u64::from(bit);
    target.typed(Family::Ipv4).iter().any(|e| match e {
        Expr::SetMark {
            target: MarkTarget::Meta,
            value: MarkValue::Set(v) | MarkValue::Or(v),
        } => v & bit != 0,
        // `(mark & keep) ^ v`: sets the bit when it is cleared first and then xored in.
        Expr::SetMark {
            target: MarkTarget::Meta,
            value:
                MarkValue::From {
                    key:
                        Key::Masked {
                            key: inner,
                            op: BitOp::Xor,
                            value: v,
                        },
                },
        } => {
            v & bit != 0
                && matches!(&**inner, Key::Masked { op: BitOp::And, value: keep, .. } if keep & bit == 0)
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use nfscope_ruleset::{Match, Negatable, OptionArg, Target, TargetKind};

    use super::*;

    fn opt(name: &str, values: &[&str], negated: bool) -> OptionArg {
        OptionArg {
            negated,
            name: name.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn spec(
        comments: &[&str],
        extra: Vec<Match>,
        target: &str,
        target_opts: Vec<OptionArg>,
    ) -> RuleSpec {
        let mut matches: Vec<Match> = comments
            .iter()
            .map(|c| Match {
                module: "comment".into(),
                options: vec![opt("comment", &[c], false)],
            })
            .collect();
        matches.extend(extra);
        RuleSpec {
            matches,
            target: Some(Target {
                kind: TargetKind::Jump,
                name: target.into(),
                options: target_opts,
            }),
            ..RuleSpec::default()
        }
    }

    fn ctstate(state: &str) -> Match {
        Match {
            module: "conntrack".into(),
            options: vec![opt("ctstate", &[state], false)],
        }
    }

    #[test]
    fn kube_router_pod_firewall() {
        let reject = spec(
            &["rule to REJECT traffic destined for POD name:a namespace: b"],
            vec![],
            "REJECT",
            vec![],
        );
        assert_eq!(
            rule_verdict("KUBE-POD-FW-X", &reject),
            Some(PolicyVerdict::Deny)
        );
        let accept = spec(
            &[],
            vec![],
            "MARK",
            vec![opt("set-xmark", &["0x20000/0x20000"], false)],
        );
        assert_eq!(
            rule_verdict("KUBE-POD-FW-X", &accept),
            Some(PolicyVerdict::Accept)
        );
        let clear = spec(
            &[],
            vec![],
            "MARK",
            vec![opt("set-xmark", &["0x0/0x10000"], false)],
        );
        assert_eq!(rule_verdict("KUBE-POD-FW-X", &clear), None);
        let invalid = spec(
            &["rule to drop invalid state for pod"],
            vec![ctstate("INVALID")],
            "DROP",
            vec![],
        );
        assert_eq!(rule_verdict("KUBE-POD-FW-X", &invalid), None);
        let stateful = spec(
            &["rule for stateful firewall for pod"],
            vec![ctstate("RELATED,ESTABLISHED")],
            "ACCEPT",
            vec![],
        );
        assert_eq!(rule_verdict("KUBE-POD-FW-X", &stateful), None);
        // The same REJECT outside a pod firewall chain is no policy verdict.
        assert_eq!(rule_verdict("INPUT", &reject), None);
    }

    #[test]
    fn calico_endpoint_and_policy_chains() {
        let ret = spec(
            &["cali:RnZHt9r_TDuk8NI7", "Return if policy accepted"],
            vec![],
            "RETURN",
            vec![],
        );
        assert_eq!(
            rule_verdict("cali-tw-cali5125b8e5d77", &ret),
            Some(PolicyVerdict::Accept)
        );
        let drop = spec(
            &["cali:0HKmZy_mh8JT1Tl6", "Drop if no policies passed packet"],
            vec![],
            "DROP",
            vec![],
        );
        assert_eq!(
            rule_verdict("cali-fw-cali5125b8e5d77", &drop),
            Some(PolicyVerdict::Deny)
        );
        let invalid = spec(
            &["cali:eJTvIhsT4VBx2eYR"],
            vec![ctstate("INVALID")],
            "DROP",
            vec![],
        );
        assert_eq!(rule_verdict("cali-tw-cali5125b8e5d77", &invalid), None);
        let policy_drop = spec(&["cali:5MnLDRihpdsyPItp"], vec![], "DROP", vec![]);
        assert_eq!(
            rule_verdict("cali-po-_iIL2GVSReX3hYOgY4sn", &policy_drop),
            Some(PolicyVerdict::Deny)
        );
        let start = spec(
            &["cali:Zk6CbRlMMcKBWZg9", "Start of policies"],
            vec![],
            "MARK",
            vec![opt("set-xmark", &["0x0/0x20000"], false)],
        );
        assert_eq!(rule_verdict("cali-tw-cali5125b8e5d77", &start), None);
        assert_eq!(rule_verdict("cali-from-wl-dispatch", &drop), None);
    }

    #[test]
    fn weave_npc() {
        let mut fwd_drop = spec(&[], vec![], "DROP", vec![]);
        fwd_drop.out_interface = Some(Negatable::plain("weave".to_owned()));
        assert_eq!(
            rule_verdict("FORWARD", &fwd_drop),
            Some(PolicyVerdict::Deny)
        );
        let plain_drop = spec(&[], vec![], "DROP", vec![]);
        assert_eq!(rule_verdict("FORWARD", &plain_drop), None);
        assert_eq!(
            rule_verdict("WEAVE-NPC-EGRESS", &plain_drop),
            Some(PolicyVerdict::Deny)
        );
        let to_accept = spec(
            &["DefaultAllow egress isolation for namespace: default"],
            vec![],
            "WEAVE-NPC-EGRESS-ACCEPT",
            vec![],
        );
        assert_eq!(
            rule_verdict("WEAVE-NPC-EGRESS-DEFAULT", &to_accept),
            Some(PolicyVerdict::Accept)
        );
    }

    #[test]
    fn mark_parsing_tolerates_junk() {
        for value in ["", "0x", "zz/0x20000", "0x20000/", "/"] {
            let junk = spec(&[], vec![], "MARK", vec![opt("set-xmark", &[value], false)]);
            assert_eq!(rule_verdict("KUBE-POD-FW-X", &junk), None, "{value:?}");
        }
        let no_value = spec(&[], vec![], "MARK", vec![opt("set-xmark", &[], false)]);
        assert_eq!(rule_verdict("KUBE-POD-FW-X", &no_value), None);
    }
}
