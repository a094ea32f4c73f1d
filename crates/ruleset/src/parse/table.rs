//! A table being filled while its lines are read: chains by name, undeclared built-in chains,
//! and the restore commands that edit chains (`-N -X -F -P -I -D -R`).
//!
//! Owns the chain bookkeeping of one `*table … COMMIT` block. It does not tokenize or parse rules.

use std::collections::HashMap;

use crate::model::{Chain, Policy, Rule, RuleSpec, Table, is_builtin_chain};

/// A table under construction with a name → index map of its chains.
#[derive(Debug)]
pub(crate) struct OpenTable {
    pub table: Table,
    index: HashMap<String, usize>,
}

impl OpenTable {
    pub(crate) fn new(name: &str, line: usize) -> Self {
        Self {
            table: Table {
                name: name.to_owned(),
                chains: Vec::new(),
                line,
            },
            index: HashMap::new(),
        }
    }

    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    fn reindex(&mut self) {
        self.index = self
            .table
            .chains
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
    }

    /// `:NAME POLICY [p:b]` or `-N NAME`. A built-in chain that rules already used without declaring
    /// it takes the declaration in place; any other repeat is an error.
    pub(crate) fn declare(&mut self, chain: Chain) -> Result<(), String> {
        match self.find(&chain.name) {
            Some(i) if self.table.chains[i].line == 0 => {
                let existing = &mut self.table.chains[i];
                existing.policy = chain.policy;
                existing.counters = chain.counters;
                existing.line = chain.line;
                Ok(())
            }
            Some(_) => Err(format!(
                "chain `{}` is declared twice in table {}",
                chain.name, self.table.name
            )),
            None => {
                self.index
                    .insert(chain.name.clone(), self.table.chains.len());
                self.table.chains.push(chain);
                Ok(())
            }
        }
    }

    /// The chain a rule command names: a declared chain, or a built-in chain created on first use
    /// (policy and counters `None`, placed before the declared chains).
    pub(crate) fn chain_for_rules(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.find(name) {
            return Some(i);
        }
        if !is_builtin_chain(name) {
            return None;
        }
        let at = self
            .table
            .chains
            .iter()
            .take_while(|c| c.line == 0 && c.is_builtin())
            .count();
        let chain = Chain {
            name: name.to_owned(),
            policy: None,
            counters: None,
            rules: Vec::new(),
            line: 0,
        };
        self.table.chains.insert(at, chain);
        self.reindex();
        Some(at)
    }

    pub(crate) fn chain_mut(&mut self, idx: usize) -> &mut Chain {
        &mut self.table.chains[idx]
    }

    /// `-X NAME`: removes a user chain.
    pub(crate) fn delete_chain(&mut self, name: &str) -> Result<(), String> {
        let Some(i) = self.find(name) else {
            return Err(format!("chain `{name}` used but not declared"));
        };
        if is_builtin_chain(name) {
            return Err(format!("cannot delete built-in chain `{name}`"));
        }
        self.table.chains.remove(i);
        self.reindex();
        Ok(())
    }

    /// `-X` without a name: removes every user chain.
    pub(crate) fn delete_user_chains(&mut self) {
        self.table.chains.retain(Chain::is_builtin);
        self.reindex();
    }

    /// `-F` without a name: empties every chain.
    pub(crate) fn flush_all(&mut self) {
        self.table.chains.iter_mut().for_each(|c| c.rules.clear());
    }

    /// `-P CHAIN POLICY`.
    pub(crate) fn set_policy(&mut self, idx: usize, policy: Policy) {
        self.table.chains[idx].policy = Some(policy);
    }

    /// `-D CHAIN RULESPEC`: removes the first rule with this spec.
    pub(crate) fn delete_matching(&mut self, idx: usize, spec: &RuleSpec) -> bool {
        let rules = &mut self.table.chains[idx].rules;
        match rules.iter().position(|r| *r.spec == *spec) {
            Some(i) => {
                rules.remove(i);
                true
            }
            None => false,
        }
    }

    /// Rules of a chain, for positional commands.
    pub(crate) fn rules_mut(&mut self, idx: usize) -> &mut Vec<Rule> {
        &mut self.table.chains[idx].rules
    }

    pub(crate) fn finish(self) -> Table {
        self.table
    }
}
