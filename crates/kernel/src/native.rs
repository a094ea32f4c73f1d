//! Native nftables tables as typed rules: `nft -j list ruleset`, parsed by `nfscope-ruleset`
//! into its typed model, with the tables iptables-nft manages left out.
//!
//! Owns running `nft -j list ruleset` (with the crate's time limit, bounded by
//! [`NftLimits`]), telling iptables-nft's tables from native ones, and deriving from the typed
//! model what the netlink path reads from the kernel directly (per-rule counters, set sizes) for
//! `--source exec`. The netlink [`crate::Reader`] decides *when* to read (only after the
//! generation moved); this module does not cache.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nfscope_ruleset::nft::render_rule_without_counters as rule_text_without_counters;
use nfscope_ruleset::typed::{Expr, NftFamily, NftRuleset, NftTable};
use nfscope_ruleset::{Family, NftLimits, NftRule, NftSet, NftablesState, parse_nft_json};

use crate::error::KernelError;
use crate::exec::{find_tool, run_tool};

/// How native tables are read, for `SourceReport::method`.
pub(crate) const METHOD: &str = "exec nft -j list ruleset";

/// The table names iptables-nft (and ip6tables-nft) create.
const IPTABLES_TABLES: &[&str] = &["filter", "nat", "mangle", "raw", "security"];
/// The built-in chain names iptables-nft gives its base chains.
const IPTABLES_CHAINS: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Runs `nft -j list ruleset` and parses all of it (iptables-nft tables included), with the
/// input bounded by the default [`NftLimits`] (bytes, rules, set elements). Returns the parsed
/// model and the size of the text it came from.
pub(crate) fn read_all(
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<(NftRuleset, usize), KernelError> {
    let path = find_tool("nft", tool_dir)?;
    let output = run_tool("nft", &path, &["-j", "list", "ruleset"], timeout)?;
    let text = output.stdout;
    if text.trim().is_empty() {
        // nft prints nothing at all for an empty ruleset in some versions.
        return Ok((NftRuleset::default(), 0));
    }
    let ruleset =
        parse_nft_json(&text, &NftLimits::default()).map_err(|error| KernelError::Parse {
            tool: "nft -j".to_owned(),
            error,
        })?;
    Ok((ruleset, text.len()))
}

/// `ruleset` without the tables `is_iptables` says iptables-nft manages; notices are kept.
pub(crate) fn native_only(
    mut ruleset: NftRuleset,
    is_iptables: impl Fn(&NftTable) -> bool,
) -> NftRuleset {
    ruleset.tables.retain(|t| !is_iptables(t));
    ruleset
}

/// The `--source exec` native state from the whole JSON dump: tables of `known` (per family,
/// the table names of the iptables-nft rulesets read beside it) and, for families without such
/// a ruleset, tables that look like iptables-nft's are left out; counted rules and set sizes come
/// from the dump (named counters are kept as text in the model and not exported this way).
pub(crate) fn exec_state(all: NftRuleset, known: &[(Family, Vec<String>)]) -> NftablesState {
    let ruleset = native_only(all, |table| {
        let family = match table.family {
            NftFamily::Ip => Family::Ipv4,
            NftFamily::Ip6 => Family::Ipv6,
            _ => return false,
        };
        match known.iter().find(|(f, _)| *f == family) {
            Some((_, tables)) => tables.contains(&table.name),
            None => looks_like_iptables_nft(table),
        }
    });
    NftablesState {
        rules: counted_rules(&ruleset),
        counters: Vec::new(),
        sets: set_sizes(&ruleset),
        ruleset: Some(Arc::new(ruleset)),
        text_reads: 1,
    }
}

/// Whether a table looks like iptables-nft's when no iptables-nft text of its family was read:
/// an `ip`/`ip6` table with one of iptables' table names whose rules use `xt` matches or targets,
/// or whose base chains all carry iptables' built-in chain names.
pub(crate) fn looks_like_iptables_nft(table: &NftTable) -> bool {
    if !matches!(table.family, NftFamily::Ip | NftFamily::Ip6)
        || !IPTABLES_TABLES.contains(&table.name.as_str())
    {
        return false;
    }
    let xt = table.chains.iter().flat_map(|c| &c.rules).any(|r| {
        r.exprs
            .iter()
            .any(|e| matches!(e, Expr::Unmodelled { text } if text.contains("\"xt\"")))
    });
    let bases: Vec<&str> = table
        .chains
        .iter()
        .filter(|c| c.base.is_some())
        .map(|c| c.name.as_str())
        .collect();
    xt || (!bases.is_empty() && bases.iter().all(|n| IPTABLES_CHAINS.contains(n)))
}

/// The rules of `ruleset` that carry an inline counter, as the netlink reader reports them
/// (first counter's values, comment, canonical text): the `--source exec` view.
pub(crate) fn counted_rules(ruleset: &NftRuleset) -> Vec<NftRule> {
    ruleset
        .rules()
        .filter_map(|(t, c, r)| {
            let counters = r.exprs.iter().find_map(|e| match e {
                Expr::Counter {
                    counters: Some(k),
                    name: None,
                } => Some(*k),
                _ => None,
            })?;
            Some(NftRule {
                family: t.family.as_str().to_owned(),
                table: t.name.clone(),
                chain: c.name.clone(),
                handle: r.handle.unwrap_or(0),
                comment: r.comment.clone(),
                rule: Some(rule_text_without_counters(r)),
                counters,
            })
        })
        .collect()
}

/// Named sets and maps of `ruleset` with their element counts as `nft list` shows them.
pub(crate) fn set_sizes(ruleset: &NftRuleset) -> Vec<NftSet> {
    ruleset
        .tables
        .iter()
        .flat_map(|t| {
            t.sets.iter().map(move |s| NftSet {
                family: t.family.as_str().to_owned(),
                table: t.name.clone(),
                name: s.name.clone(),
                elements: s.elements.len() as u64,
            })
        })
        .collect()
}

/// Rule text by (family, table, handle), for labelling the rules the netlink dump counted.
#[derive(Debug, Default)]
pub(crate) struct RuleTexts {
    by_handle: std::collections::HashMap<(String, String, u64), Arc<str>>,
}

impl RuleTexts {
    pub(crate) fn of(ruleset: &NftRuleset) -> Self {
        let by_handle = ruleset
            .rules()
            .filter_map(|(t, _, r)| {
                let h = r.handle?;
                Some((
                    (t.family.as_str().to_owned(), t.name.clone(), h),
                    Arc::from(rule_text_without_counters(r)),
                ))
            })
            .collect();
        Self { by_handle }
    }

    pub(crate) fn get(&self, family: &str, table: &str, handle: u64) -> Option<&str> {
        self.by_handle
            .get(&(family.to_owned(), table.to_owned(), handle))
            .map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfscope_ruleset::parse_nft_text;

    fn parsed(text: &str) -> NftRuleset {
        parse_nft_text(text, &NftLimits::default()).expect("test text parses")
    }

    #[test]
    fn iptables_nft_tables_are_told_apart_from_native_ones() {
        let rs = parsed(
            "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n\
             table ip filter2 {\n\tchain INPUT {\n\t\ttype filter hook input priority 0;\n\t}\n}\n\
             table ip nat {\n\tchain prerouting {\n\t\ttype nat hook prerouting priority -100;\n\t}\n}\n\
             table inet filter {\n\tchain INPUT {\n\t\ttype filter hook input priority 0;\n\t}\n}\n",
        );
        let looks: Vec<bool> = rs.tables.iter().map(looks_like_iptables_nft).collect();
        assert_eq!(looks, [true, false, false, false]);
        let native = native_only(rs, looks_like_iptables_nft);
        let names: Vec<&str> = native.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["filter2", "nat", "filter"]);
    }

    #[test]
    fn counted_rules_and_set_sizes_read_as_nft_lists_them() {
        let rs = parsed(
            "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 1.2.3.4, 10.0.0.0/8, 192.168.1.1-192.168.1.9 }\n\t}\n\
             \tchain c {\n\t\ttype filter hook input priority 0;\n\t\tip saddr @s counter packets 3 bytes 180 drop comment \"x\" # handle 7\n\t\ttcp dport 22 accept # handle 8\n\t}\n}\n",
        );
        let rules = counted_rules(&rs);
        assert_eq!(rules.len(), 1, "only the rule with a counter");
        assert_eq!(rules[0].handle, 7);
        assert_eq!(rules[0].counters.packets, 3);
        assert_eq!(
            rules[0].rule.as_deref(),
            Some("ip saddr @s counter drop comment \"x\"")
        );
        assert_eq!(set_sizes(&rs)[0].elements, 3, "a range is one element");
        let texts = RuleTexts::of(&rs);
        assert_eq!(texts.get("inet", "t", 8), Some("tcp dport 22 accept"));
        assert_eq!(texts.get("ip", "t", 8), None);
    }
}
