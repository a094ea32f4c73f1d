//! What a server keeps of a ruleset between two changes of its rules: names, positions and
//! counters, without the rules' specs ([`RulesetCounters`]).
//!
//! It is a type of its own, not a [`Ruleset`] with its specs emptied, so nothing that reads what
//! rules *say* (labels, lint, the tracer, the JSON view) can be handed one: that is a type error.
//! At 70k kube-proxy rules the specs are ~80 MiB of a parsed ruleset; its counters ~3 MiB.

use std::hash::{Hash, Hasher};

use crate::hash::FxHasher;
use crate::model::{Backend, Counters, Family, Policy, Ruleset};

/// Tables, chains, rule positions and counters of one ruleset (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetCounters {
    /// As [`Ruleset::family`].
    pub family: Family,
    /// As [`Ruleset::backend`].
    pub backend: Backend,
    /// The tables in the ruleset's order.
    pub tables: Vec<TableCounters>,
}

/// One table of a [`RulesetCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCounters {
    /// The table's name.
    pub name: String,
    /// Its chains in the ruleset's order.
    pub chains: Vec<ChainCounters>,
}

/// One chain of a [`RulesetCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCounters {
    /// The chain's name.
    pub name: String,
    /// The policy of a built-in chain.
    pub policy: Option<Policy>,
    /// The policy's counters.
    pub counters: Option<Counters>,
    /// Each rule's counters, by position (`None`: the rule has none).
    pub rules: Vec<Option<Counters>>,
}

impl RulesetCounters {
    /// The names, positions and counters of `ruleset`. Built as a fresh copy: its small
    /// allocations then come out of contiguous memory instead of staying scattered among the
    /// ruleset's specs once those are freed (measured: ~100 MiB of mostly-free heap kept resident
    /// at 25k chains otherwise).
    pub fn of(ruleset: &Ruleset) -> Self {
        let tables = ruleset
            .tables
            .iter()
            .map(|table| TableCounters {
                name: table.name.clone(),
                chains: table
                    .chains
                    .iter()
                    .map(|chain| ChainCounters {
                        name: chain.name.clone(),
                        policy: chain.policy,
                        counters: chain.counters,
                        rules: chain.rules.iter().map(|r| r.counters).collect(),
                    })
                    .collect(),
            })
            .collect();
        Self {
            family: ruleset.family,
            backend: ruleset.backend,
            tables,
        }
    }

    /// Number of rules in all tables.
    pub fn rule_count(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum()
    }

    /// Same tables, chains and rule counts, in the same places, as `ruleset`?
    pub fn same_shape(&self, ruleset: &Ruleset) -> bool {
        self.family == ruleset.family
            && self.backend == ruleset.backend
            && self.tables.len() == ruleset.tables.len()
            && self
                .tables
                .iter()
                .zip(&ruleset.tables)
                .all(|(mine, theirs)| {
                    mine.name == theirs.name
                        && mine.chains.len() == theirs.chains.len()
                        && mine
                            .chains
                            .iter()
                            .zip(&theirs.chains)
                            .all(|(m, t)| m.name == t.name && m.rules.len() == t.rules.len())
                })
    }

    /// Puts these counters on `ruleset`'s chains and rules. Returns false, changing nothing,
    /// when `ruleset` does not have the same shape ([`Self::same_shape`]).
    pub fn apply_to(&self, ruleset: &mut Ruleset) -> bool {
        if !self.same_shape(ruleset) {
            return false;
        }
        let chains = self
            .tables
            .iter()
            .zip(&mut ruleset.tables)
            .flat_map(|(mine, theirs)| mine.chains.iter().zip(&mut theirs.chains));
        for (mine, theirs) in chains {
            theirs.counters = mine.counters;
            for (counters, rule) in mine.rules.iter().zip(&mut theirs.rules) {
                rule.counters = *counters;
            }
        }
        true
    }
}

impl Ruleset {
    /// The identity of what these rules *say*: family, backend, tables, chains, policies, rule
    /// specs and notices; not counters nor line numbers. Equal ids mean equal rules (within one
    /// process: the value is never persisted). It is the one "did the rules change?" test of
    /// nfscope: the kernel reader gives it with every ruleset it reads, and the server keeps
    /// everything it derives from rules (labels, Kubernetes plan, lint) per id.
    pub fn rules_id(&self) -> u64 {
        let mut h = FxHasher::default();
        self.family.hash(&mut h);
        self.backend.hash(&mut h);
        for notice in &self.notices {
            h.write(format!("{:?}", notice.kind).as_bytes());
            h.write(notice.text.as_bytes());
        }
        for table in &self.tables {
            table.name.hash(&mut h);
            table.chains.len().hash(&mut h);
            for chain in &table.chains {
                chain.name.hash(&mut h);
                chain.policy.hash(&mut h);
                chain.rules.len().hash(&mut h);
                for rule in &chain.rules {
                    rule.spec.hash(&mut h);
                }
            }
        }
        h.finish()
    }
}
