//! Restore command lines applied to the open table: `-A`, `-I`, `-N`, `-X`, `-F`, `-P`, `-D`, `-R`.
//!
//! Owns what each command does to the table being built (rules parsed by `rule`, chains kept by
//! `table`). It does not read lines or headers.

use std::sync::Arc;

use crate::model::{Chain, Counters, Notice, NoticeKind, Rule};

use super::lexer::Token;
use super::rule::parse_rule_spec;
use super::table::OpenTable;
use super::{ParseError, check_chain_name, check_policy_chain, parse_policy, trim_blanks};

/// The restore commands this parser applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    Append,
    Insert,
    NewChain,
    DeleteChain,
    Flush,
    Policy,
    Delete,
    Replace,
}

impl Command {
    pub(super) fn from_flag(flag: &str) -> Option<Self> {
        Some(match flag {
            "-A" | "--append" => Self::Append,
            "-I" | "--insert" => Self::Insert,
            "-N" | "--new-chain" => Self::NewChain,
            "-X" | "--delete-chain" => Self::DeleteChain,
            "-F" | "--flush" => Self::Flush,
            "-P" | "--policy" => Self::Policy,
            "-D" | "--delete" => Self::Delete,
            "-R" | "--replace" => Self::Replace,
            _ => return None,
        })
    }
}

/// One command line being applied to the open table.
pub(super) struct CommandContext<'l, 't, 'a> {
    pub no: usize,
    pub raw: &'l str,
    pub prefix: Option<Counters>,
    pub tokens: &'t [Token<'a>],
    pub notices: Vec<Notice>,
    pub saw_ipv6: bool,
}

impl CommandContext<'_, '_, '_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::at_byte(self.no, self.raw, offset, message)
    }

    pub(super) fn run(&mut self, open: &mut OpenTable, kind: Command) -> Result<(), ParseError> {
        match kind {
            Command::Append => {
                let chain = self.rule_chain(open)?;
                let rule = self.rule(2)?;
                open.chain_mut(chain).rules.push(rule);
                Ok(())
            }
            Command::Insert => self.insert(open),
            Command::NewChain => self.new_chain(open),
            Command::DeleteChain => self.delete_chain(open),
            Command::Flush => self.flush(open),
            Command::Policy => self.policy(open),
            Command::Delete => self.delete(open),
            Command::Replace => self.replace(open),
        }
    }

    fn chain_token(&self) -> Result<&Token<'_>, ParseError> {
        let cmd = &self.tokens[0];
        self.tokens
            .get(1)
            .filter(|t| !t.is_option() && !t.is_bang())
            .ok_or_else(|| {
                self.err(
                    cmd.offset,
                    format!("expected a chain name after `{}`", cmd.as_str()),
                )
            })
    }

    /// The chain a rule command targets (built-in chains are created on first use).
    fn rule_chain(&self, open: &mut OpenTable) -> Result<usize, ParseError> {
        let tok = self.chain_token()?;
        open.chain_for_rules(tok.as_str()).ok_or_else(|| {
            self.err(
                tok.offset,
                format!(
                    "chain `{}` used but not declared in table {}",
                    tok.as_str(),
                    open.table.name
                ),
            )
        })
    }

    /// Parses tokens from index `from` as a rule; counters from the `[p:b]` prefix or `-c`.
    fn rule(&mut self, from: usize) -> Result<Rule, ParseError> {
        let tokens = self.tokens.get(from..).unwrap_or_default();
        let parsed = parse_rule_spec(tokens).map_err(|l| self.err(l.offset, l.message))?;
        if let (Some(_), Some(_)) = (self.prefix, parsed.counters) {
            return Err(self.err(
                self.tokens[0].offset,
                "counters given twice: `[p:b]` prefix and `-c`",
            ));
        }
        self.saw_ipv6 |= parsed.saw_ipv6;
        for (offset, reason) in parsed.deprecations {
            let column = ParseError::at_byte(self.no, self.raw, offset, "").column;
            let reason = format!("column {column}: {reason}");
            let text = trim_blanks(self.raw).1.to_owned();
            self.notices.push(Notice {
                line: self.no,
                kind: NoticeKind::Deprecated { reason },
                text,
            });
        }
        Ok(Rule {
            counters: self.prefix.or(parsed.counters),
            spec: Arc::new(parsed.spec),
            line: self.no,
        })
    }

    /// A rule number at token index `at`, if that token is one.
    fn rule_number(&self, at: usize) -> Option<Result<usize, ParseError>> {
        let tok = self.tokens.get(at).filter(|t| {
            !t.quoted && !t.as_str().is_empty() && t.as_str().bytes().all(|b| b.is_ascii_digit())
        })?;
        Some(
            tok.as_str()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    self.err(
                        tok.offset,
                        format!("invalid rule number `{}`", tok.as_str()),
                    )
                }),
        )
    }

    fn insert(&mut self, open: &mut OpenTable) -> Result<(), ParseError> {
        let chain = self.rule_chain(open)?;
        let (position, from) = match self.rule_number(2) {
            Some(n) => (n?, 3),
            None => (1, 2),
        };
        let rule = self.rule(from)?;
        let rules = open.rules_mut(chain);
        if position > rules.len() + 1 {
            return Err(self.err(
                self.tokens[2].offset,
                format!(
                    "index of insertion too big: chain has {} rules",
                    rules.len()
                ),
            ));
        }
        rules.insert(position - 1, rule);
        Ok(())
    }

    fn expect_end(&self, from: usize) -> Result<(), ParseError> {
        match self.tokens.get(from) {
            Some(t) => Err(self.err(
                t.offset,
                format!("unexpected `{}` after the command", t.as_str()),
            )),
            None => Ok(()),
        }
    }

    fn new_chain(&mut self, open: &mut OpenTable) -> Result<(), ParseError> {
        let tok = self.chain_token()?;
        check_chain_name(tok.as_str()).map_err(|m| self.err(tok.offset, m))?;
        self.expect_end(2)?;
        let chain = Chain {
            name: tok.as_str().to_owned(),
            policy: None,
            counters: None,
            rules: Vec::new(),
            line: self.no,
        };
        open.declare(chain).map_err(|m| self.err(tok.offset, m))
    }

    fn delete_chain(&mut self, open: &mut OpenTable) -> Result<(), ParseError> {
        match self.tokens.get(1) {
            None => {
                open.delete_user_chains();
                Ok(())
            }
            Some(tok) => {
                self.expect_end(2)?;
                open.delete_chain(tok.as_str())
                    .map_err(|m| self.err(tok.offset, m))
            }
        }
    }

    fn flush(&mut self, open: &mut OpenTable) -> Result<(), ParseError> {
        if self.tokens.len() == 1 {
            open.flush_all();
            return Ok(());
        }
        let chain = self.rule_chain(open)?;
        self.expect_end(2)?;
        open.rules_mut(chain).clear();
        Ok(())
    }

    fn policy(&mut self, open: &mut OpenTable) -> Result<(), ParseError> {
        let chain = self.rule_chain(open)?;
        let tok = self.tokens.get(2).ok_or_else(|| {
            self.err(
                self.tokens[1].offset,
                "expected a policy after the chain name",
            )
        })?;
        let policy = parse_policy(tok.as_str())
            .ok_or_else(|| self.err(tok.offset, "expected a policy: ACCEPT or DROP"))?;
        self.expect_end(3)?;
        check_policy_chain(&open.table.name, self.tokens[1].as_str())
            .map_err(|m| self.err(self.tokens[1].offset, m))?;
        open.set_policy(chain, policy);
        Ok(())
    }

    fn delete(&mut self, open: &mut OpenTable) -> Result<(), ParseError> {
        let chain = self.rule_chain(open)?;
        if let Some(n) = self.rule_number(2) {
            let n = n?;
            self.expect_end(3)?;
            let rules = open.rules_mut(chain);
            if n > rules.len() {
                return Err(self.err(
                    self.tokens[2].offset,
                    format!("no rule number {n}: chain has {} rules", rules.len()),
                ));
            }
            rules.remove(n - 1);
            return Ok(());
        }
        let rule = self.rule(2)?;
        if open.delete_matching(chain, &rule.spec) {
            Ok(())
        } else {
            Err(self.err(
                self.tokens[1].offset,
                "no matching rule to delete in that chain",
            ))
        }
    }

    fn replace(&mut self, open: &mut OpenTable) -> Result<(), ParseError> {
        let chain = self.rule_chain(open)?;
        let at = self.tokens.get(2).map_or(self.raw.len(), |t| t.offset);
        let n = self
            .rule_number(2)
            .ok_or_else(|| self.err(at, "expected a rule number after the chain name"))??;
        let rule = self.rule(3)?;
        let rules = open.rules_mut(chain);
        match rules.get_mut(n - 1) {
            Some(slot) => {
                *slot = rule;
                Ok(())
            }
            None => Err(self.err(
                at,
                format!("no rule number {n}: chain has {} rules", rules.len()),
            )),
        }
    }
}
