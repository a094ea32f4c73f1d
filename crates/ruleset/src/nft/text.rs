//! `nft list ruleset` / `nft list table` text → [`NftRuleset`].

use crate::parse::ParseError;
use crate::typed::*;

use super::expr::{self, Cur, join};
use super::lexer::{Tok, Token, tokenize};
use super::{NftLimits, escape, render};

struct P<'a> {
    src: &'a str,
    toks: Vec<Token>,
    p: usize,
    limits: NftLimits,
    rules: usize,
    elements: usize,
}

/// Parses `nft list ruleset` or `nft list table` output (with or without `-a`) into the typed
/// model. Errors carry the line and column of the offending token and what was expected there.
pub fn parse_nft_text(text: &str, limits: &NftLimits) -> Result<NftRuleset, ParseError> {
    if text.len() > limits.max_input_bytes {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!(
                "input is {} bytes, more than the limit of {} bytes",
                text.len(),
                limits.max_input_bytes
            ),
        });
    }
    let toks = tokenize(text)?;
    let mut p = P {
        src: text,
        toks,
        p: 0,
        limits: *limits,
        rules: 0,
        elements: 0,
    };
    let mut rs = NftRuleset::default();
    loop {
        while let Some(t) = p.peek() {
            match &t.tok {
                Tok::Comment(c) => {
                    if !c.is_empty() {
                        rs.notices.push(c.clone());
                    }
                    p.p += 1;
                }
                Tok::Newline | Tok::Punct(';') => p.p += 1,
                _ => break,
            }
        }
        let Some(t) = p.peek() else { break };
        if t.is_word("table") {
            let table = p.table()?;
            rs.tables.push(table);
        } else {
            return Err(p.err_at(p.p, "expected `table`"));
        }
    }
    Ok(rs)
}

impl P<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.p)
    }

    fn err_at(&self, i: usize, what: &str) -> ParseError {
        match self.toks.get(i) {
            Some(t) => ParseError {
                line: t.line,
                column: t.col,
                message: format!("{what}, found {}", t.describe()),
            },
            None => {
                let line = self.src.matches('\n').count() + 1;
                let column = self
                    .src
                    .rsplit('\n')
                    .next()
                    .map_or(0, |l| l.chars().count())
                    + 1;
                ParseError {
                    line,
                    column,
                    message: format!("{what}, found end of input"),
                }
            }
        }
    }

    /// Skips newlines, `;` and comments.
    fn skip_blank(&mut self) {
        while let Some(t) = self.peek() {
            match t.tok {
                Tok::Newline | Tok::Comment(_) | Tok::Punct(';') => self.p += 1,
                _ => break,
            }
        }
    }

    /// After an opening `{`: a `# handle N` up to the end of the line (listings), or nothing when
    /// the body goes on on the same line (`table ip t { chain c { … } }`, hand-written input).
    fn end_of_line(&mut self) -> Option<u64> {
        let mut handle = None;
        while let Some(t) = self.peek() {
            match &t.tok {
                Tok::Newline => {
                    self.p += 1;
                    break;
                }
                Tok::Comment(c) => {
                    if let Some(h) = c.strip_prefix("handle ") {
                        handle = h.trim().parse().ok();
                    }
                    self.p += 1;
                }
                Tok::Punct(';') => self.p += 1,
                _ => break,
            }
        }
        handle
    }

    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        let t = self.peek().ok_or_else(|| self.err_at(self.p, what))?;
        let n = match &t.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => s.clone(),
            _ => return Err(self.err_at(self.p, what)),
        };
        self.p += 1;
        Ok(n)
    }

    fn expect_punct(&mut self, c: char, what: &str) -> Result<(), ParseError> {
        if self.peek().is_some_and(|t| t.is_punct(c)) {
            self.p += 1;
            Ok(())
        } else {
            Err(self.err_at(self.p, what))
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.p += 1;
                Ok(s)
            }
            _ => Err(self.err_at(self.p, what)),
        }
    }

    fn table(&mut self) -> Result<NftTable, ParseError> {
        let line = self.peek().map_or(0, |t| t.line);
        self.p += 1;
        let first = self.name("expected a table family or name")?;
        let (family, name) = match NftFamily::parse(&first) {
            Some(f) if !self.peek().is_some_and(|t| t.is_punct('{')) => {
                (f, self.name("expected a table name")?)
            }
            _ => (NftFamily::Ip, first),
        };
        self.expect_punct('{', "expected `{` after the table name")?;
        let handle = self.end_of_line();
        let mut t = NftTable {
            family,
            name,
            handle,
            comment: None,
            flags: Vec::new(),
            sets: Vec::new(),
            chains: Vec::new(),
            objects: Vec::new(),
            line,
        };
        loop {
            self.skip_blank();
            let Some(tok) = self.peek() else {
                return Err(self.err_at(self.p, "expected `}` closing the table"));
            };
            if tok.is_punct('}') {
                self.p += 1;
                return Ok(t);
            }
            match tok.word() {
                Some("comment") => {
                    self.p += 1;
                    t.comment = Some(self.string("expected a quoted comment")?);
                }
                Some("flags") => {
                    self.p += 1;
                    t.flags = self.word_list()?;
                }
                Some("chain") => {
                    let c = self.chain(family)?;
                    t.chains.push(c);
                }
                Some(k @ ("set" | "map")) => {
                    let is_map = k == "map";
                    let s = self.set(is_map)?;
                    t.sets.push(s);
                }
                Some(_) => {
                    let o = self.object()?;
                    t.objects.push(o);
                }
                None => return Err(self.err_at(self.p, "expected a table member or `}`")),
            }
        }
    }

    fn word_list(&mut self) -> Result<Vec<String>, ParseError> {
        let mut v = vec![self.name("expected a word")?];
        while self.peek().is_some_and(|t| t.is_punct(',')) {
            self.p += 1;
            v.push(self.name("expected a word after `,`")?);
        }
        Ok(v)
    }

    /// A member kept as text: `KIND [KIND2] NAME { … }`.
    fn object(&mut self) -> Result<NftObject, ParseError> {
        let start = self.p;
        // KIND words in source form; NAME (the last word) as its value: rendering quotes it.
        let mut words = Vec::new();
        let mut last: Option<(String, String)> = None;
        while let Some(t) = self.peek() {
            if t.is_punct('{') {
                break;
            }
            match &t.tok {
                Tok::Word(w) | Tok::Str(w) => {
                    let form = t.source_form().unwrap_or_default();
                    if let Some((_, previous)) = last.replace((w.clone(), form)) {
                        words.push(previous);
                    }
                }
                _ => return Err(self.err_at(self.p, "expected `set`, `map`, `chain` or an object")),
            }
            self.p += 1;
        }
        let Some((name, _)) = last.filter(|_| !words.is_empty()) else {
            return Err(self.err_at(start, "expected `set`, `map`, `chain` or an object"));
        };
        let body_start = self.p;
        self.braced_block()?;
        let body = join(&self.toks[body_start..self.p]);
        Ok(NftObject {
            kind: words.join(" "),
            name,
            text: body,
        })
    }

    /// Skips `{ … }` with nesting, the `{` at the cursor.
    fn braced_block(&mut self) -> Result<(), ParseError> {
        let open = self.p;
        self.expect_punct('{', "expected `{`")?;
        let mut depth = 1;
        while depth > 0 {
            let Some(t) = self.peek() else {
                return Err(self.err_at(open, "unclosed `{`"));
            };
            if t.is_punct('{') {
                depth += 1;
                if depth > self.limits.max_depth {
                    return Err(self.err_at(self.p, "braces nested too deeply"));
                }
            } else if t.is_punct('}') {
                depth -= 1;
            }
            self.p += 1;
        }
        Ok(())
    }

    fn set(&mut self, is_map: bool) -> Result<NftSetDef, ParseError> {
        let line = self.peek().map_or(0, |t| t.line);
        self.p += 1;
        let name = self.name("expected a set name")?;
        self.expect_punct('{', "expected `{` after the set name")?;
        let handle = self.end_of_line();
        let mut s = NftSetDef {
            name,
            is_map,
            handle,
            key: SetType::Types(Vec::new()),
            data: None,
            data_interval: false,
            flags: Vec::new(),
            timeout: None,
            size: None,
            comment: None,
            extra: Vec::new(),
            elements: Vec::new(),
            line,
        };
        loop {
            self.skip_blank();
            let Some(tok) = self.peek() else {
                return Err(self.err_at(self.p, "expected `}` closing the set"));
            };
            if tok.is_punct('}') {
                if matches!(&s.key, SetType::Types(t) if t.is_empty()) {
                    return Err(self.err_at(
                        self.p,
                        &format!("expected `type` or `typeof` in set `{}`", escape(&s.name)),
                    ));
                }
                self.p += 1;
                return Ok(s);
            }
            let kw = tok.word().map(str::to_string);
            match kw.as_deref() {
                Some(k @ ("type" | "typeof")) => {
                    self.p += 1;
                    let (key, data, interval) = self.set_type(k == "typeof")?;
                    s.key = key;
                    s.data = data;
                    s.data_interval = interval;
                }
                Some("flags") => {
                    self.p += 1;
                    s.flags = self.word_list()?;
                }
                Some("timeout") => {
                    self.p += 1;
                    s.timeout = Some(self.name("expected a timeout")?);
                }
                Some("size") => {
                    self.p += 1;
                    let at = self.p;
                    s.size = Some(
                        self.name("expected a size")?
                            .parse()
                            .map_err(|_| self.err_at(at, "expected a number"))?,
                    );
                }
                Some("comment") => {
                    self.p += 1;
                    s.comment = Some(self.string("expected a quoted comment")?);
                }
                Some("elements") => {
                    self.p += 1;
                    if !self.peek().is_some_and(|t| t.is_word("=")) {
                        return Err(self.err_at(self.p, "expected `=` after `elements`"));
                    }
                    self.p += 1;
                    let start = self.p;
                    self.braced_block()?;
                    let toks: Vec<Token> = self.toks[start..self.p]
                        .iter()
                        .filter(|t| !matches!(t.tok, Tok::Newline | Tok::Comment(_)))
                        .cloned()
                        .collect();
                    let mut c = Cur { toks: &toks, p: 0 };
                    let elems = expr::elements(&mut c)
                        .filter(|_| c.done())
                        .ok_or_else(|| self.err_at(start, "expected set elements"))?;
                    self.count_elements(elems.len(), start)?;
                    s.elements.extend(elems);
                }
                Some(_) => {
                    let start = self.p;
                    while self
                        .peek()
                        .is_some_and(|t| !matches!(t.tok, Tok::Newline | Tok::Punct('}')))
                    {
                        self.p += 1;
                    }
                    s.extra.push(join(&self.toks[start..self.p]));
                }
                None => return Err(self.err_at(self.p, "expected a set declaration line")),
            }
        }
    }

    fn count_elements(&mut self, n: usize, at: usize) -> Result<(), ParseError> {
        self.elements += n;
        if self.elements > self.limits.max_elements {
            return Err(self.err_at(
                at,
                &format!(
                    "more than {} set elements (limit)",
                    self.limits.max_elements
                ),
            ));
        }
        Ok(())
    }

    /// `a . b [: [interval] c . d]` for `type`, or keys for `typeof`, to the end of the line.
    fn set_type(&mut self, typeof_: bool) -> Result<(SetType, Option<SetType>, bool), ParseError> {
        let start = self.p;
        while self
            .peek()
            .is_some_and(|t| !matches!(t.tok, Tok::Newline | Tok::Comment(_) | Tok::Punct(';')))
        {
            self.p += 1;
        }
        let toks = &self.toks[start..self.p];
        if toks.is_empty() {
            return Err(self.err_at(start, "expected a datatype like `ipv4_addr`"));
        }
        let split = toks.iter().position(|t| t.is_word(":"));
        let (k, mut d) = match split {
            Some(i) => (&toks[..i], Some(&toks[i + 1..])),
            None => (toks, None),
        };
        let mut interval = false;
        if let Some(dt) = d
            && dt.first().is_some_and(|t| t.is_word("interval"))
        {
            interval = true;
            d = Some(&dt[1..]);
        }
        let conv = |part: &[Token]| -> Result<SetType, ParseError> {
            if part.is_empty() {
                return Err(self.err_at(start, "expected a datatype after `:`"));
            }
            let names: Option<Vec<String>> = part
                .iter()
                .enumerate()
                .map(|(i, t)| match t.word() {
                    Some(".") if i % 2 == 1 => Some(None),
                    Some(w) if i % 2 == 0 && w != "." => Some(Some(w.to_string())),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(|v| v.into_iter().flatten().collect());
            let plain = || match &names {
                Some(n) if part.len() % 2 == 1 => SetType::Types(n.clone()),
                _ => SetType::Other(join(part)),
            };
            if !typeof_ || (part.len() == 1 && !part[0].word().is_some_and(expr::is_start)) {
                return Ok(plain());
            }
            let mut c = Cur { toks: part, p: 0 };
            Ok(match expr::key(&mut c).filter(|_| c.done()) {
                Some(Key::Concat(ks)) => SetType::Typeof(ks),
                Some(k) => SetType::Typeof(vec![k]),
                None => SetType::Other(join(part)),
            })
        };
        let key = conv(k)?;
        let data = d.map(conv).transpose()?;
        Ok((key, data, interval))
    }

    fn chain(&mut self, family: NftFamily) -> Result<NftChain, ParseError> {
        let line = self.peek().map_or(0, |t| t.line);
        self.p += 1;
        let name = self.name("expected a chain name")?;
        self.expect_punct('{', "expected `{` after the chain name")?;
        let handle = self.end_of_line();
        let mut c = NftChain {
            name,
            handle,
            comment: None,
            base: None,
            rules: Vec::new(),
            line,
        };
        let mut policy = None;
        let mut policy_at = 0;
        loop {
            self.skip_blank();
            let Some(tok) = self.peek() else {
                return Err(self.err_at(self.p, "expected `}` closing the chain"));
            };
            if tok.is_punct('}') {
                self.p += 1;
                break;
            }
            match tok.word() {
                Some("type") => {
                    let b = self.base_chain(family)?;
                    c.base = Some(b);
                    continue;
                }
                Some("policy") => {
                    policy_at = self.p;
                    self.p += 1;
                    policy = Some(self.policy()?);
                    continue;
                }
                Some("comment")
                    if matches!(self.toks.get(self.p + 1).map(|t| &t.tok), Some(Tok::Str(_)))
                        && matches!(
                            self.toks.get(self.p + 2).map(|t| &t.tok),
                            None | Some(Tok::Newline | Tok::Comment(_) | Tok::Punct(';' | '}'))
                        ) =>
                {
                    self.p += 1;
                    c.comment = Some(self.string("expected a quoted comment")?);
                    continue;
                }
                _ => {}
            }
            let rule = self.rule(c.rules.len() + 1)?;
            c.rules.push(rule);
        }
        if let Some(b) = c.base.as_mut() {
            if policy.is_some() {
                b.policy = policy;
            }
        } else if policy.is_some() {
            return Err(self.err_at(policy_at, "a policy needs a base chain (`type … hook …`)"));
        }
        Ok(c)
    }

    fn policy(&mut self) -> Result<Policy, ParseError> {
        let at = self.p;
        let p = match self.name("expected `accept` or `drop`")?.as_str() {
            "accept" => Policy::Accept,
            "drop" => Policy::Drop,
            _ => return Err(self.err_at(at, "expected `accept` or `drop`")),
        };
        if self.peek().is_some_and(|t| t.is_punct(';')) {
            self.p += 1;
        }
        Ok(p)
    }

    /// `type T hook H [device D | devices = { … }] priority P; [policy X;]`
    fn base_chain(&mut self, family: NftFamily) -> Result<BaseChain, ParseError> {
        self.p += 1;
        let at = self.p;
        let kind = ChainType::parse(&self.name("expected a chain type")?)
            .ok_or_else(|| self.err_at(at, "expected `filter`, `nat` or `route`"))?;
        if !self.peek().is_some_and(|t| t.is_word("hook")) {
            return Err(self.err_at(self.p, "expected `hook`"));
        }
        self.p += 1;
        let at = self.p;
        let hook = Hook::parse(&self.name("expected a hook")?).ok_or_else(|| {
            self.err_at(
                at,
                "expected a hook (`prerouting`, `input`, `forward`, `output`, `postrouting`, `ingress`, `egress`)",
            )
        })?;
        let mut devices = Vec::new();
        loop {
            match self.peek().and_then(Token::word) {
                Some("device") => {
                    self.p += 1;
                    devices.push(self.name("expected a device name")?);
                }
                Some("devices") => {
                    self.p += 1;
                    if self.peek().is_some_and(|t| t.is_word("=")) {
                        self.p += 1;
                    }
                    self.expect_punct('{', "expected `{` after `devices =`")?;
                    loop {
                        if self.peek().is_some_and(|t| t.is_punct('}')) {
                            self.p += 1;
                            break;
                        }
                        devices.push(self.name("expected a device name")?);
                        if self.peek().is_some_and(|t| t.is_punct(',')) {
                            self.p += 1;
                        }
                    }
                }
                _ => break,
            }
        }
        if !self.peek().is_some_and(|t| t.is_word("priority")) {
            return Err(self.err_at(self.p, "expected `priority`"));
        }
        self.p += 1;
        let start = self.p;
        while self
            .peek()
            .is_some_and(|t| !matches!(t.tok, Tok::Newline | Tok::Punct(';') | Tok::Comment(_)))
        {
            self.p += 1;
        }
        let words: Vec<&str> = self.toks[start..self.p]
            .iter()
            .filter_map(Token::word)
            .collect();
        let (priority, priority_text) = resolve_priority(family, hook, &words)
            .ok_or_else(|| self.err_at(start, "expected a priority: a number, or a name like `filter` / `dstnat - 10` valid for this family and hook"))?;
        if self.peek().is_some_and(|t| t.is_punct(';')) {
            self.p += 1;
        }
        let mut policy = None;
        if self.peek().is_some_and(|t| t.is_word("policy")) {
            self.p += 1;
            policy = Some(self.policy()?);
        }
        Ok(BaseChain {
            kind,
            hook,
            priority,
            priority_text,
            policy,
            devices,
        })
    }

    /// One rule: tokens to the end of the line (or `;`, or the chain's `}`), braces balanced.
    fn rule(&mut self, position: usize) -> Result<TypedRule, ParseError> {
        let first = self.p;
        let line = self.toks[first].line;
        let mut open: Vec<(char, usize)> = Vec::new();
        let mut handle = None;
        let mut body = Vec::new();
        while let Some(t) = self.peek() {
            match &t.tok {
                Tok::Punct(c @ ('{' | '(')) => {
                    open.push((if *c == '{' { '}' } else { ')' }, self.p));
                    if open.len() > self.limits.max_depth {
                        return Err(self.err_at(self.p, "braces nested too deeply"));
                    }
                }
                Tok::Punct('}') if open.is_empty() => break,
                Tok::Punct(c @ ('}' | ')')) => match open.pop() {
                    Some((want, _)) if want == *c => {}
                    Some((want, _)) => {
                        return Err(self.err_at(self.p, &format!("expected `{want}`")));
                    }
                    None => return Err(self.err_at(self.p, "unbalanced `)`")),
                },
                Tok::Newline | Tok::Punct(';') if open.is_empty() => {
                    self.p += 1;
                    break;
                }
                Tok::Newline => {
                    self.p += 1;
                    continue;
                }
                Tok::Comment(c) => {
                    if let Some(h) = c.strip_prefix("handle ") {
                        handle = h.trim().parse().ok();
                    }
                    self.p += 1;
                    continue;
                }
                _ => {}
            }
            body.push(t.clone());
            self.p += 1;
        }
        if let Some(&(want, at)) = open.last() {
            let opener = if want == '}' { '{' } else { '(' };
            let t = &self.toks[at];
            return Err(ParseError {
                line: t.line,
                column: t.col,
                message: format!("unclosed `{opener}` in this rule: expected a matching `{want}`"),
            });
        }
        self.rules += 1;
        if self.rules > self.limits.max_rules {
            return Err(self.err_at(
                first,
                &format!("more than {} rules (limit)", self.limits.max_rules),
            ));
        }
        let mut comment = None;
        if body.len() >= 2
            && body[body.len() - 2].is_word("comment")
            && let Tok::Str(s) = &body[body.len() - 1].tok
        {
            comment = Some(s.clone());
            body.truncate(body.len() - 2);
        }
        let exprs = super::canon_exprs(expr::rule_exprs(&body, self.src));
        let n_elems: usize = exprs.iter().map(anon_elements).sum();
        self.count_elements(n_elems, first)?;
        let mut rule = TypedRule {
            exprs,
            handle,
            position,
            comment,
            line,
            text: String::new(),
        };
        rule.text = render::render_rule(&rule);
        Ok(rule)
    }
}

fn anon_elements(e: &Expr) -> usize {
    match e {
        Expr::Match(Match {
            rhs: Rhs::Anon(v), ..
        }) => v.len(),
        Expr::Vmap {
            map: MapRef::Anon(v),
            ..
        } => v.len(),
        Expr::Nat(Nat {
            addr:
                Some(NatAddr::Map {
                    map: MapRef::Anon(v),
                    ..
                }),
            ..
        }) => v.len(),
        _ => 0,
    }
}

/// `-110`, `filter`, `dstnat - 10`, `filter + 10` → (number, the symbolic text if symbolic).
pub(crate) fn resolve_priority(
    family: NftFamily,
    hook: Hook,
    words: &[&str],
) -> Option<(i32, Option<String>)> {
    let num = |w: &str| w.parse::<i32>().ok();
    match words {
        [n] if num(n).is_some() => Some((num(n)?, None)),
        [name] => Some((standard_priority(family, hook, name)?, Some((*name).into()))),
        [name, sign @ ("+" | "-"), n] => {
            let base = standard_priority(family, hook, name)?;
            let d = n.parse::<i32>().ok()?;
            let v = if *sign == "+" { base + d } else { base - d };
            Some((v, Some(format!("{name} {sign} {d}"))))
        }
        _ => None,
    }
}
