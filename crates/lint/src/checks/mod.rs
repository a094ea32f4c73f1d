//! The checks, one module per theme, and the per-ruleset context they share.
//!
//! [`lint_ruleset`] runs every per-ruleset check over one [`Ruleset`] and its lowering to the typed
//! rule model ([`Ctx::typed`], made once per lint): what a rule matches, where it jumps and which
//! ipsets it reads come from there, names and lines from the ruleset. [`cross::check`] looks at
//! several rulesets together (backends of one family). Each check only *adds* findings; ordering
//! and summaries are done by the caller ([`crate::lint`]).

pub mod cross;
pub mod integrity;
pub mod kube;
pub mod order;
pub mod structure;

use std::borrow::Cow;
use std::sync::Arc;

use nfscope_annotate::{Annotation, Annotations, Owner, annotate};
use nfscope_ruleset::typed::{Expr, NftRuleset, Rhs, TypedRule, Verdict};
use nfscope_ruleset::{IpSet, Ruleset};

use crate::finding::{Finding, FindingId, KubeContext, Location, Related, Severity};
use crate::scaffold::Known;

/// One ruleset, its annotations, and where findings go.
pub struct Ctx<'a> {
    /// The ruleset being linted.
    pub ruleset: &'a Ruleset,
    /// The same ruleset in the typed rule model (`Ruleset::lower_without_text`: no nft texts):
    /// tables, chains and rules at the same indices. What the checks judge of a rule they read here.
    pub typed: Arc<NftRuleset>,
    /// Its Kubernetes annotations (made here, or lent by a caller that has them).
    pub annotations: Cow<'a, Annotations>,
    /// ipsets known to exist, when the caller has an ipset dump.
    pub ipsets: Option<&'a [IpSet]>,
    /// The stock scaffolds that hold for this ruleset (what is empty or unhooked by design).
    pub scaffolds: Known,
    /// Findings so far.
    pub findings: Vec<Finding>,
}

impl<'a> Ctx<'a> {
    /// A context with no findings yet.
    pub fn new(ruleset: &'a Ruleset, ipsets: Option<&'a [IpSet]>) -> Self {
        Self::annotated(ruleset, Cow::Owned(annotate(ruleset)), ipsets)
    }

    /// As [`Ctx::new`], with `annotations` already made (`annotate(ruleset)`).
    pub fn annotated(
        ruleset: &'a Ruleset,
        annotations: Cow<'a, Annotations>,
        ipsets: Option<&'a [IpSet]>,
    ) -> Self {
        Self {
            ruleset,
            // The checks read expressions, never a lowered rule's nft text.
            typed: Arc::new(ruleset.lower_without_text()),
            annotations,
            ipsets,
            scaffolds: Known::for_ruleset(ruleset),
            findings: Vec::new(),
        }
    }

    /// The location of table `t`, chain `c` and (0-based) rule `r`.
    pub fn location(&self, t: usize, c: Option<usize>, r: Option<usize>) -> Location {
        let table = self.ruleset.tables.get(t);
        let chain = c.and_then(|c| table?.chains.get(c));
        let rule = r.and_then(|r| chain?.rules.get(r));
        let line = rule
            .map(|r| r.line)
            .or(chain.map(|c| c.line))
            .or(table.map(|t| t.line))
            .filter(|&l| l > 0);
        Location {
            table: table.map(|t| t.name.clone()),
            chain: chain.map(|c| c.name.clone()),
            rule_index: r.filter(|_| chain.is_some()).map(|r| r + 1),
            line,
        }
    }

    /// A related location in this ruleset.
    pub fn related(&self, t: usize, c: usize, r: Option<usize>, note: &str) -> Related {
        Related {
            family: self.ruleset.family,
            backend: self.ruleset.backend,
            location: self.location(t, Some(c), r),
            note: note.to_owned(),
        }
    }

    /// Records a finding at table `t`, chain `c`, rule `r` (0-based), with its Kubernetes context.
    pub fn report(
        &mut self,
        id: FindingId,
        severity: Severity,
        at: (usize, Option<usize>, Option<usize>),
        message: String,
        related: Vec<Related>,
    ) {
        let (t, c, r) = at;
        let kube = c.and_then(|c| {
            let annotation = match r {
                Some(r) => self.annotations.rule(t, c, r),
                None => self.annotations.chain(t, c),
            };
            kube_context(annotation)
        });
        self.findings.push(Finding {
            id,
            severity,
            family: self.ruleset.family,
            backend: self.ruleset.backend,
            location: self.location(t, c, r),
            message,
            related,
            kube,
            nftables: None,
        });
    }
}

/// Runs every per-ruleset check.
pub fn lint_ruleset(ruleset: &Ruleset, ipsets: Option<&[IpSet]>) -> Vec<Finding> {
    lint_annotated(Ctx::new(ruleset, ipsets))
}

/// [`lint_ruleset`] with the ruleset's annotations already made (`annotate(ruleset)`).
pub fn lint_ruleset_annotated(
    ruleset: &Ruleset,
    annotations: &Annotations,
    ipsets: Option<&[IpSet]>,
) -> Vec<Finding> {
    lint_annotated(Ctx::annotated(ruleset, Cow::Borrowed(annotations), ipsets))
}

fn lint_annotated(mut ctx: Ctx<'_>) -> Vec<Finding> {
    integrity::check(&mut ctx);
    structure::check(&mut ctx);
    order::check(&mut ctx);
    kube::check(&mut ctx);
    ctx.findings
}

fn kube_context(annotation: &Annotation) -> Option<KubeContext> {
    if annotation.owner == Owner::Other && annotation.meaning.is_none() {
        return None;
    }
    Some(KubeContext {
        owner: annotation.owner.as_str().to_owned(),
        meaning: annotation.meaning.as_ref().map(|m| m.summary()),
    })
}

/// The typed rule at table `t`, chain `c`, rule `r` (0-based) of a lowered ruleset.
pub fn typed_rule(typed: &NftRuleset, t: usize, c: usize, r: usize) -> &TypedRule {
    &typed.tables[t].chains[c].rules[r]
}

/// The user chain a rule jumps or goes to, if any (`-j CHAIN`, `-g CHAIN`, `jump`, `goto`).
pub fn chain_target(rule: &TypedRule) -> Option<&str> {
    rule.exprs.iter().find_map(|e| match e {
        Expr::Verdict(Verdict::Jump(name) | Verdict::Goto(name)) => Some(name.as_str()),
        _ => None,
    })
}

/// The named sets (ipsets) a rule's conditions look up, one per lookup.
pub fn set_refs(rule: &TypedRule) -> impl Iterator<Item = &str> {
    rule.exprs.iter().filter_map(|e| match e {
        Expr::Match(m) => match &m.rhs {
            Rhs::SetRef(name) => Some(name.as_str()),
            _ => None,
        },
        _ => None,
    })
}
