//! The `iptables-save` / `ip6tables-save` / `iptables-restore` input parser.
//!
//! Owns reading a whole dump line by line: headers (family and backend), `*table`, `:CHAIN`
//! declarations, rule and restore commands (`-A -I -N -X -F -P -D -R`), `COMMIT`, and the comment
//! lines that carry meaning (the iptables-legacy warning, incompatible tables), into a [`Ruleset`].
//! Pasted dumps are tolerated: CRLF, indentation and blank lines always; shell prompts, markdown
//! fences and other stray lines in lenient mode, each recorded as a [`Notice`]. Tokenizing lives
//! in `lexer`, the rule grammar in `rule`, chain bookkeeping in `table`. It does no I/O and does not
//! render (see [`crate::render`]).

mod addr;
mod commands;
mod lexer;
mod modules;
mod rule;
mod table;
mod values;

use crate::escape::escape_control;
use crate::model::{
    Backend, Chain, Counters, Family, Notice, NoticeKind, Policy, Ruleset, Table, builtin_chains,
};

use commands::{Command, CommandContext};
pub(crate) use lexer::{Token, tokenize};
pub(crate) use modules::is_string_option;
use rule::Located;
use table::OpenTable;

/// How to read a dump. Explicit values win over what the dump's header says.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Force the family; `None`: from the header, else IPv6 if any address is IPv6, else IPv4.
    pub family: Option<Family>,
    /// Force the backend; `None`: from the header, else [`Backend::Unknown`].
    pub backend: Option<Backend>,
    /// Skip lines that are not part of a dump (prompts, markdown) with a notice instead of failing,
    /// and accept a missing final `COMMIT`. Errors inside a rule stay errors.
    pub lenient: bool,
    /// Caps on the input and on what it may create; beyond one, parsing fails naming the cap.
    pub limits: Limits,
}

/// Caps on offline input, so that a hostile or broken file costs bounded memory and time. The
/// defaults hold the largest real rulesets with room to spare (a 20,000-service kube-proxy node is
/// 290k rules, 100k chains, 46 MB); raise a cap by setting the field in [`ParseOptions::limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of input text (default 256 MiB).
    pub max_input_bytes: usize,
    /// Rules added by `-A`/`-I`/`-R` lines, all tables together (default 2,000,000).
    pub max_rules: usize,
    /// Chains declared, all tables together (default 500,000).
    pub max_chains: usize,
    /// ipsets in an ipset dump (default 65,536; the kernel's own limit is 65,534).
    pub max_sets: usize,
    /// ipset members, all sets together (default 10,000,000).
    pub max_set_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 256 << 20,
            max_rules: 2_000_000,
            max_chains: 500_000,
            max_sets: 65_536,
            max_set_members: 10_000_000,
        }
    }
}

impl Limits {
    /// No caps at all (for callers that have already bounded their input).
    pub fn unlimited() -> Self {
        Self {
            max_input_bytes: usize::MAX,
            max_rules: usize::MAX,
            max_chains: usize::MAX,
            max_sets: usize::MAX,
            max_set_members: usize::MAX,
        }
    }

    /// The error for input longer than [`Limits::max_input_bytes`], at the line where it is crossed.
    pub(crate) fn check_input(&self, text: &str) -> Result<(), ParseError> {
        if text.len() <= self.max_input_bytes {
            return Ok(());
        }
        let line = text.as_bytes()[..self.max_input_bytes]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Err(ParseError {
            line,
            column: 1,
            message: over_limit(
                "input",
                "bytes",
                text.len(),
                self.max_input_bytes,
                "max_input_bytes",
            ),
        })
    }
}

/// The message for a cap that was hit: what, how many, the cap, and the field that raises it.
pub(crate) fn over_limit(what: &str, unit: &str, count: usize, cap: usize, field: &str) -> String {
    format!(
        "{what} exceeds the limit of {cap} {unit} (at least {count}): refusing to read further; \
         raise `{field}` in the parser's limits (ParseOptions::limits) if this input is genuine"
    )
}

/// A parse failure at a 1-based line and column (the column points at the offending token).
/// Displayed as `LINE:COL: message`, with control characters from the input escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {}", escape_control(.message))]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What went wrong and what was expected.
    pub message: String,
}

impl ParseError {
    /// An error at a byte offset of a line's text.
    pub(crate) fn at_byte(
        line: usize,
        text: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let column = text.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
        Self {
            line,
            column,
            message: message.into(),
        }
    }
}

/// Parses a whole `iptables-save` / `ip6tables-save` dump or `iptables-restore` input.
pub fn parse_ruleset(text: &str, opts: &ParseOptions) -> Result<Ruleset, ParseError> {
    opts.limits.check_input(text)?;
    let mut parser = Parser::new(opts);
    let mut last_line = (0, "");
    for (i, raw) in text.lines().enumerate() {
        parser.line(i + 1, raw)?;
        last_line = (i + 1, raw);
    }
    parser.finish(last_line)
}

/// Trims the tokenizer's separators only (space, tab, CR, LF), so a token never loses a character
/// it would keep mid-line. Returns the offset of the trimmed text too.
pub(crate) fn trim_blanks(raw: &str) -> (usize, &str) {
    let is_blank = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let start = raw.len() - raw.trim_start_matches(is_blank).len();
    (start, raw[start..].trim_end_matches(is_blank))
}

struct Parser<'o, 'a> {
    opts: &'o ParseOptions,
    tables: Vec<Table>,
    open: Option<OpenTable>,
    notices: Vec<Notice>,
    header: Option<(Family, Backend)>,
    saw_ipv6: bool,
    tokens: Vec<Token<'a>>,
    /// Chains declared and rules added so far (for [`Limits`]).
    chains_seen: usize,
    rules_seen: usize,
}

impl<'o, 'a> Parser<'o, 'a> {
    fn new(opts: &'o ParseOptions) -> Self {
        Self {
            opts,
            tables: Vec::new(),
            open: None,
            notices: Vec::new(),
            header: None,
            saw_ipv6: false,
            tokens: Vec::new(),
            chains_seen: 0,
            rules_seen: 0,
        }
    }

    /// Counts one more chain or rule against its cap.
    fn count(&mut self, no: usize, raw: &str, at: usize, chain: bool) -> Result<(), ParseError> {
        let limits = &self.opts.limits;
        let (seen, cap, what, field) = if chain {
            self.chains_seen += 1;
            (self.chains_seen, limits.max_chains, "chains", "max_chains")
        } else {
            self.rules_seen += 1;
            (self.rules_seen, limits.max_rules, "rules", "max_rules")
        };
        if seen > cap {
            let message = over_limit(&format!("number of {what}"), what, seen, cap, field);
            return Err(ParseError::at_byte(no, raw, at, message));
        }
        Ok(())
    }

    /// A table is complete (`COMMIT`, or the next `*table` / end of input in lenient mode): refuse
    /// jump loops the kernel would refuse, and let a repeated table replace the earlier one as
    /// `iptables-restore` (without `--noflush`) does: it flushes the table at each `*table` line.
    fn close_table(&mut self, open: OpenTable, no: usize) -> Result<(), ParseError> {
        let table = open.finish();
        if let Some(found) = table.jump_loop().filter(|l| l.reachable) {
            let at = found.jumps.iter().map(|j| j.line).max().unwrap_or(no);
            let message = format!(
                "jump loop in table {}: {found}; the kernel refuses to load a table whose jumps \
                 or gotos form a loop (\"Too many links\")",
                table.name
            );
            let line = if at > 0 { at } else { no };
            return Err(ParseError {
                line,
                column: 1,
                message,
            });
        }
        if let Some(earlier) = self.tables.iter_mut().find(|t| t.name == table.name) {
            let text = format!(
                "table {} is given again on line {}: iptables-restore flushes it there, so the \
                 section from line {} is replaced",
                table.name, table.line, earlier.line
            );
            let first_line = earlier.line;
            *earlier = table;
            let kind = NoticeKind::TableReplaced {
                table: earlier.name.clone(),
                first_line,
            };
            let line = earlier.line;
            self.notice(line, kind, &text);
        } else {
            self.tables.push(table);
        }
        Ok(())
    }

    fn notice(&mut self, line: usize, kind: NoticeKind, text: &str) {
        self.notices.push(Notice {
            line,
            kind,
            text: text.to_owned(),
        });
    }

    fn line(&mut self, no: usize, raw: &'a str) -> Result<(), ParseError> {
        let (start, body) = trim_blanks(raw);
        match body.as_bytes().first() {
            None => Ok(()),
            Some(b'#') => {
                self.comment(no, body, body[1..].trim_start());
                Ok(())
            }
            Some(b'*') => self.table_start(no, raw, start, body),
            Some(b':') => self.chain_declaration(no, raw, start),
            Some(b'-' | b'[') => self.command(no, raw, start, body),
            _ if body == "COMMIT" => self.commit(no, raw, start),
            _ => self.other_line(no, raw, start, body),
        }
    }

    /// A `#` line: header, warning, incompatible table, or a plain comment.
    fn comment(&mut self, no: usize, body: &str, text: &str) {
        if text.contains("legacy tables present") {
            self.notice(no, NoticeKind::LegacyTablesPresent, body);
        } else if let Some(table) = incompatible_table(text) {
            self.notice(no, NoticeKind::IncompatibleTable { table }, body);
        } else if let Some(program) = text.strip_prefix("Generated by ") {
            self.header.get_or_insert_with(|| header_meaning(program));
        }
    }

    /// A line that fits no grammar: markdown-damaged comments, else ignored (lenient) or an error.
    fn other_line(
        &mut self,
        no: usize,
        raw: &str,
        start: usize,
        body: &str,
    ) -> Result<(), ParseError> {
        if body.contains("legacy tables present")
            || incompatible_table(body).is_some()
            || body.starts_with("Generated by ")
            || body.starts_with("Completed on ")
        {
            self.comment(no, body, body);
            return Ok(());
        }
        self.unrecognised(
            no,
            raw,
            start,
            body,
            "expected `*table`, `:CHAIN`, `-A`, `COMMIT` or a comment",
        )
    }

    fn unrecognised(
        &mut self,
        no: usize,
        raw: &str,
        offset: usize,
        body: &str,
        why: &str,
    ) -> Result<(), ParseError> {
        if self.opts.lenient {
            self.notice(
                no,
                NoticeKind::IgnoredLine {
                    reason: why.to_owned(),
                },
                body,
            );
            Ok(())
        } else {
            Err(ParseError::at_byte(no, raw, offset, why))
        }
    }

    fn table_start(
        &mut self,
        no: usize,
        raw: &str,
        start: usize,
        body: &str,
    ) -> Result<(), ParseError> {
        let name = body[1..].trim_matches([' ', '\t']);
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(ParseError::at_byte(
                no,
                raw,
                start + 1,
                "expected a table name after `*` (e.g. `*filter`)",
            ));
        }
        if !is_known_table(name) {
            return Err(ParseError::at_byte(
                no,
                raw,
                start + 1,
                format!(
                    "unknown table `{name}`: iptables-restore knows raw, mangle, nat, filter and security"
                ),
            ));
        }
        if let Some(open) = self.open.take() {
            let message = format!(
                "missing COMMIT for table {} before `*{name}`",
                open.table.name
            );
            if !self.opts.lenient {
                return Err(ParseError::at_byte(no, raw, start, message));
            }
            self.notice(no, NoticeKind::IgnoredLine { reason: message }, body);
            self.close_table(open, no)?;
        }
        self.open = Some(OpenTable::new(name, no));
        Ok(())
    }

    fn commit(&mut self, no: usize, raw: &str, start: usize) -> Result<(), ParseError> {
        match self.open.take() {
            Some(open) => self.close_table(open, no),
            None => self.unrecognised(no, raw, start, "COMMIT", "COMMIT without an open `*table`"),
        }
    }

    fn open_table(
        &mut self,
        no: usize,
        raw: &str,
        offset: usize,
        what: &str,
    ) -> Result<&mut OpenTable, ParseError> {
        self.open.as_mut().ok_or_else(|| {
            ParseError::at_byte(
                no,
                raw,
                offset,
                format!("{what} outside a table: expected `*table` first"),
            )
        })
    }

    /// `:NAME POLICY [packets:bytes]`.
    fn chain_declaration(&mut self, no: usize, raw: &str, start: usize) -> Result<(), ParseError> {
        let fields = split_fields(raw, start + 1);
        let err = |offset: usize, m: &str| ParseError::at_byte(no, raw, offset, m);
        let Some(&(name_at, name)) = fields.first() else {
            return Err(err(start + 1, "expected a chain name after `:`"));
        };
        check_chain_name(name).map_err(|m| err(name_at, &m))?;
        let Some(&(policy_at, policy_text)) = fields.get(1) else {
            return Err(err(
                raw.len(),
                "expected a policy (ACCEPT, DROP or `-`) after the chain name",
            ));
        };
        let policy = match policy_text {
            "-" => None,
            p => Some(
                parse_policy(p)
                    .ok_or_else(|| err(policy_at, "expected a policy: ACCEPT, DROP or `-`"))?,
            ),
        };
        let counters = match fields.get(2) {
            None => None,
            Some(&(at, text)) => {
                Some(parse_counters(text, at).map_err(|l| err(l.offset, &l.message))?)
            }
        };
        if let Some(&(extra_at, _)) = fields.get(3) {
            return Err(err(extra_at, "unexpected text after the chain counters"));
        }
        let chain = Chain {
            name: name.to_owned(),
            policy,
            counters,
            rules: Vec::new(),
            line: no,
        };
        self.count(no, raw, name_at, true)?;
        let open = self.open_table(no, raw, start, "chain declaration")?;
        if policy.is_some() {
            check_policy_chain(&open.table.name, name).map_err(|m| err(policy_at, &m))?;
        }
        open.declare(chain).map_err(|m| err(name_at, &m))
    }

    /// `[p:b] -A CHAIN …` and the other restore commands.
    fn command(
        &mut self,
        no: usize,
        raw: &'a str,
        start: usize,
        body: &str,
    ) -> Result<(), ParseError> {
        let (counters, rest) = match raw.as_bytes()[start] {
            b'[' => {
                let end = raw[start..].find(']').map_or(raw.len(), |i| start + i + 1);
                let c = parse_counters(&raw[start..end], start)
                    .map_err(|l| ParseError::at_byte(no, raw, l.offset, l.message))?;
                (Some(c), end)
            }
            _ => (None, start),
        };
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.clear();
        let result = tokenize(raw, rest, &mut tokens)
            .map_err(|q| ParseError::at_byte(no, raw, q.offset, "unterminated double quote"))
            .and_then(|()| self.run_command(no, raw, start, body, counters, &tokens));
        self.tokens = tokens;
        result
    }

    fn run_command(
        &mut self,
        no: usize,
        raw: &str,
        start: usize,
        body: &str,
        prefix: Option<Counters>,
        tokens: &[Token<'_>],
    ) -> Result<(), ParseError> {
        let Some(cmd) = tokens.first() else {
            return Err(ParseError::at_byte(
                no,
                raw,
                raw.len(),
                "expected a command such as `-A CHAIN` after the counters",
            ));
        };
        let kind = match cmd.quoted {
            false => Command::from_flag(cmd.as_str()),
            true => None,
        };
        let Some(kind) = kind else {
            return self.unrecognised(
                no,
                raw,
                cmd.offset,
                body,
                "expected `*table`, `:CHAIN`, `-A`, `COMMIT` or a comment",
            );
        };
        match kind {
            Command::Append | Command::Insert | Command::Replace => {
                self.count(no, raw, cmd.offset, false)?;
            }
            Command::NewChain => self.count(no, raw, cmd.offset, true)?,
            _ => {}
        }
        let mut ctx = CommandContext {
            no,
            raw,
            prefix,
            tokens,
            notices: Vec::new(),
            saw_ipv6: false,
        };
        let open = self.open_table(no, raw, start, "rule")?;
        let result = ctx.run(open, kind);
        self.saw_ipv6 |= ctx.saw_ipv6;
        self.notices.append(&mut ctx.notices);
        result
    }

    fn finish(mut self, (last_no, last_raw): (usize, &str)) -> Result<Ruleset, ParseError> {
        if let Some(open) = self.open.take() {
            let message = format!(
                "missing COMMIT at end of input for table {} (opened on line {})",
                open.table.name, open.table.line
            );
            if !self.opts.lenient {
                return Err(ParseError::at_byte(
                    last_no.max(1),
                    last_raw,
                    last_raw.len(),
                    message,
                ));
            }
            self.notice(last_no, NoticeKind::IgnoredLine { reason: message }, "");
            self.close_table(open, last_no)?;
        }
        let family = self
            .opts
            .family
            .or(self.header.map(|h| h.0))
            .unwrap_or(if self.saw_ipv6 {
                Family::Ipv6
            } else {
                Family::Ipv4
            });
        let (backend, backend_guessed) = match self.opts.backend.or(self.header.map(|h| h.1)) {
            Some(backend) => (backend, false),
            None => match guess_backend(&self.tables, &self.notices) {
                Some(backend) => (backend, true),
                None => (Backend::Unknown, false),
            },
        };
        let mut ruleset = Ruleset {
            family,
            backend,
            backend_guessed,
            tables: self.tables,
            notices: self.notices,
        };
        drop_other_family_rules(&mut ruleset);
        ruleset.notices.sort_by_key(|n| n.line);
        Ok(ruleset)
    }
}

/// iptables-restore skips a `-6` rule and ip6tables-restore a `-4` rule: do the same, with a notice.
fn drop_other_family_rules(ruleset: &mut Ruleset) {
    let family = ruleset.family;
    for chain in ruleset.tables.iter_mut().flat_map(|t| t.chains.iter_mut()) {
        chain.rules.retain(|rule| match rule.spec.only_family {
            Some(f) if f != family => {
                ruleset.notices.push(Notice {
                    line: rule.line,
                    kind: NoticeKind::SkippedOtherFamily,
                    text: format!("rule for {f} skipped in a {family} ruleset"),
                });
                false
            }
            _ => true,
        });
    }
}

/// The five tables `iptables-restore` can load (`*bogus` fails with "Table does not exist").
fn is_known_table(name: &str) -> bool {
    !builtin_chains(name).is_empty()
}

/// Only a built-in chain of the table has a policy; `iptables-restore` refuses one on any other
/// chain ("Can't set policy … Bad built-in chain name").
pub(crate) fn check_policy_chain(table: &str, chain: &str) -> Result<(), String> {
    if builtin_chains(table).contains(&chain) {
        Ok(())
    } else {
        Err(format!(
            "chain `{chain}` is not a built-in chain of table {table}: only built-in chains have a \
             policy (declare a user chain as `:{chain} - [0:0]`)"
        ))
    }
}

/// The backend of a dump without a `# Generated by` header, from what only one backend prints:
/// the `legacy tables present` warning and ``Table `x' is incompatible`` lines come from
/// iptables-nft-save only; iptables-nft before 1.8.9 listed nat's built-in chains in the
/// order it created them (PREROUTING, INPUT, POSTROUTING, OUTPUT), legacy always in hook order
/// (PREROUTING, INPUT, OUTPUT, POSTROUTING; kernels before 2.6.36 had no nat INPUT and
/// listed PREROUTING, POSTROUTING, OUTPUT — legacy too, nf_tables did not exist).
fn guess_backend(tables: &[Table], notices: &[Notice]) -> Option<Backend> {
    let nft_only_notice = notices.iter().any(|n| {
        matches!(
            n.kind,
            NoticeKind::LegacyTablesPresent | NoticeKind::IncompatibleTable { .. }
        )
    });
    if nft_only_notice {
        return Some(Backend::Nft);
    }
    let nat = tables.iter().find(|t| t.name == "nat")?;
    let declared = |name: &str| {
        nat.chains
            .iter()
            .position(|c| c.name == name && c.line > 0 && c.policy.is_some())
    };
    let (input, output, postrouting) = (
        declared("INPUT"),
        declared("OUTPUT"),
        declared("POSTROUTING"),
    );
    match (input, output, postrouting) {
        (Some(_), Some(o), Some(p)) if p < o => Some(Backend::Nft),
        (None, Some(o), Some(p)) if p < o => Some(Backend::Legacy),
        _ => None,
    }
}

/// What a `# Generated by PROGRAM vX.Y (nf_tables) on …` header says.
fn header_meaning(program: &str) -> (Family, Backend) {
    let family = if program.starts_with("ip6tables") {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let nft = program.contains("(nf_tables)")
        || program.starts_with("xtables")
        || program.contains("-nft");
    (family, if nft { Backend::Nft } else { Backend::Legacy })
}

/// ``Table `nat' is incompatible, use 'nft' tool.`` → `nat`.
fn incompatible_table(text: &str) -> Option<String> {
    let rest = text.strip_prefix("Table `")?;
    let (name, tail) = rest.split_once('\'')?;
    tail.contains("incompatible").then(|| name.to_owned())
}

fn parse_policy(text: &str) -> Option<Policy> {
    match text {
        "ACCEPT" => Some(Policy::Accept),
        "DROP" => Some(Policy::Drop),
        // `RETURN` is refused as a policy by both iptables-restore backends ("Bad policy name").
        _ => None,
    }
}

/// Chain names must survive the tokenizer: no quotes or blanks, not starting with `-` or `!`.
pub(crate) fn check_chain_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with(['-', '!'])
        || name.contains(|c: char| c == '"' || c.is_ascii_whitespace());
    if bad {
        Err(format!(
            "invalid chain name `{name}`: expected no quotes or blanks and no leading `-` or `!`"
        ))
    } else {
        Ok(())
    }
}

/// Whitespace-separated fields of `raw[from..]` with their byte offsets.
fn split_fields(raw: &str, from: usize) -> Vec<(usize, &str)> {
    let mut fields = Vec::new();
    let mut offset = from;
    for piece in raw[from..].split([' ', '\t']) {
        if !piece.is_empty() {
            fields.push((offset, piece));
        }
        offset += piece.len() + 1;
    }
    fields
}

/// `[packets:bytes]` at byte `offset`; both u64.
fn parse_counters(text: &str, offset: usize) -> Result<Counters, Located> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| Located::new(offset, "expected counters as `[packets:bytes]`"))?;
    let (p, b) = inner
        .split_once(':')
        .ok_or_else(|| Located::new(offset, "expected counters as `[packets:bytes]`"))?;
    let number = |s: &str, at: usize, what: &str| {
        s.parse::<u64>().map_err(|_| {
            Located::new(
                at,
                format!("expected the {what} counter (an unsigned 64-bit number), got `{s}`"),
            )
        })
    };
    Ok(Counters {
        packets: number(p, offset + 1, "packet")?,
        bytes: number(b, offset + 2 + p.len(), "byte")?,
    })
}
