//! One-shot views of a collection or a dump: the `rules` command and `/api/rules`.
//!
//! Annotates a whole [`Snapshot`] (parsed rules with their counters) and renders it as JSON or
//! as the terminal listing. No cache: every call reads what it is given from scratch.

use nfscope_annotate::Annotations;
use nfscope_exporter::{ExportOptions, RuleLabel};
use nfscope_kernel::CollectOptions;
use nfscope_ruleset::typed::{NftFamily, NftRuleset};
use nfscope_ruleset::{Backend, Family, Snapshot};

/// A snapshot with the Kubernetes meaning of its rulesets (parallel to `snapshot.rulesets`).
#[derive(Debug)]
pub struct Annotated {
    /// What was read.
    pub snapshot: Snapshot,
    /// Kubernetes meaning per ruleset.
    pub annotations: Vec<Annotations>,
}

/// Annotates every ruleset of `snapshot`.
pub fn annotate(snapshot: Snapshot) -> Annotated {
    let annotations = snapshot
        .rulesets
        .iter()
        .map(nfscope_annotate::annotate)
        .collect();
    Annotated {
        snapshot,
        annotations,
    }
}

/// The JSON view (`/api/rules`, `rules --format json`), with the rule source when known,
/// written straight into one buffer (see [`nfscope_exporter::write_rules_json`]).
pub fn rules_json(annotated: &Annotated) -> Result<String, serde_json::Error> {
    let mut text = Vec::new();
    nfscope_exporter::write_rules_json(&annotated.snapshot, &annotated.annotations, &mut text)?;
    // serde_json writes only UTF-8.
    Ok(String::from_utf8(text)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// The terminal listing (`rules --format text`).
pub fn rules_text(annotated: &Annotated) -> String {
    nfscope_exporter::rules_text(&annotated.snapshot, &annotated.annotations)
}

/// Limits a live collection to one family and/or backend.
pub fn restrict(options: &mut CollectOptions, family: Option<Family>, only: Option<Only>) {
    if let Some(family) = family {
        options.families = vec![family];
    }
    match only {
        Some(Only::Iptables(backend)) => {
            options.backends = vec![backend];
            options.native_nftables = false;
        }
        Some(Only::Native) => options.backends.clear(),
        None => {}
    }
}

/// Which rules `--backend` keeps: one iptables backend, or only native nftables tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// The iptables rules of this backend (no native tables).
    Iptables(Backend),
    /// Native nftables tables only (no iptables rules).
    Native,
}

/// Drops from a snapshot what `--family` / `--backend` leave out: iptables rulesets for
/// `Only::Native`, native tables for `Only::Iptables`, and native tables of other families
/// (`inet` tables carry both IPv4 and IPv6 and stay for either; arp, bridge and netdev tables
/// go when a family is given). iptables rulesets of files keep their own backend: `--backend`
/// only names the backend of dumps without a header there.
pub fn keep_only(snapshot: &mut Snapshot, family: Option<Family>, only: Option<Only>) {
    match only {
        Some(Only::Native) => snapshot.rulesets.clear(),
        Some(Only::Iptables(_)) => snapshot.nftables = Default::default(),
        None => {}
    }
    let (Some(family), Some(native)) = (family, &snapshot.nftables.ruleset) else {
        return;
    };
    let keep = |f: NftFamily| {
        matches!(
            (family, f),
            (_, NftFamily::Inet) | (Family::Ipv4, NftFamily::Ip) | (Family::Ipv6, NftFamily::Ip6)
        )
    };
    if native.tables.iter().all(|t| keep(t.family)) {
        return;
    }
    let mut kept = NftRuleset::clone(native);
    kept.tables.retain(|t| keep(t.family));
    snapshot.nftables.ruleset = Some(std::sync::Arc::new(kept));
}

/// Export options from `--rule-label` and `--max-rule-series` (0 = no limit).
pub fn export_options(full_rule_label: bool, max_rule_series: usize) -> ExportOptions {
    ExportOptions {
        rule_label: if full_rule_label {
            RuleLabel::Full
        } else {
            RuleLabel::None
        },
        max_rule_series: if max_rule_series == 0 {
            usize::MAX
        } else {
            max_rule_series
        },
        ..ExportOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_no_series_limit() {
        assert_eq!(export_options(false, 0).max_rule_series, usize::MAX);
        assert_eq!(export_options(true, 7).max_rule_series, 7);
        assert_eq!(export_options(true, 7).rule_label, RuleLabel::Full);
    }
}
