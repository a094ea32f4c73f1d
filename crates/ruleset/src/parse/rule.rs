//! The rule parser: tokens after `-A CHAIN` → [`RuleSpec`] (plus `-c` counters).
//!
//! Owns the option grammar of one rule: base options (`-s -d -i -o -p -f -4 -6 -c`) anywhere, `!`
//! before an option (and the deprecated `--opt ! value`), `-m NAME` opening a match whose options
//! follow, `-j`/`-g` with target options, and binding options to the right module when restore input
//! writes them out of order (see [`super::modules`]). It does not know about tables or chains.

use crate::model::{
    Counters, Family, Match, Negatable, OptionArg, RuleSpec, Symbol, Target, TargetKind,
};

use super::addr::parse_addr;
use super::lexer::Token;
use super::modules::{
    implicit_protocol_module, module_has, module_options, takes_verbatim_argument,
};
use super::values::{check_match_option, check_target_option, interface_name, protocol};

/// An error at a byte offset of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    /// Byte offset in the line of the offending token.
    pub offset: usize,
    /// What went wrong and what was expected.
    pub message: String,
}

impl Located {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

/// A parsed rule body.
#[derive(Debug, Default)]
pub(crate) struct ParsedRule {
    /// The rule.
    pub spec: RuleSpec,
    /// Counters from `-c P B`, if given.
    pub counters: Option<Counters>,
    /// Deprecated constructs seen: (byte offset, reason).
    pub deprecations: Vec<(usize, String)>,
    /// Whether `-s`/`-d` carried an IPv6 address.
    pub saw_ipv6: bool,
}

/// Where an unclaimed `--option` goes by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Nothing,
    Match(usize),
    Target,
}

struct RuleParser<'t, 'a> {
    toks: &'t [Token<'a>],
    pos: usize,
    out: ParsedRule,
    context: Context,
    implicit_module: Option<&'static str>,
    seen_protocol: bool,
}

/// Parses the tokens of one rule (everything after `-A CHAIN`).
pub(crate) fn parse_rule_spec(toks: &[Token<'_>]) -> Result<ParsedRule, Located> {
    let mut parser = RuleParser {
        toks,
        pos: 0,
        out: ParsedRule::default(),
        context: Context::Nothing,
        implicit_module: protocol_hint(toks),
        seen_protocol: false,
    };
    parser.run()?;
    let mut out = parser.out;
    compact(&mut out.spec);
    Ok(out)
}

/// Gives back the room the lists grew into while the rule was read (a `Vec` grows to four
/// entries at its first push): a parsed ruleset keeps every rule's lists for as long as it lives.
fn compact(spec: &mut RuleSpec) {
    spec.matches.shrink_to_fit();
    for m in &mut spec.matches {
        m.options.shrink_to_fit();
    }
    if let Some(t) = &mut spec.target {
        t.options.shrink_to_fit();
    }
}

/// The implicit protocol module of the rule's `-p`, wherever `-p` is written.
fn protocol_hint(toks: &[Token<'_>]) -> Option<&'static str> {
    let at = toks.iter().position(|t| t.is("-p") || t.is("--protocol"))?;
    let mut value = toks.get(at + 1)?;
    if value.is_bang() {
        value = toks.get(at + 2)?;
    }
    implicit_protocol_module(value.as_str())
}

impl<'t, 'a> RuleParser<'t, 'a> {
    fn run(&mut self) -> Result<(), Located> {
        let toks: &'t [Token<'a>] = self.toks;
        while let Some(tok) = toks.get(self.pos) {
            self.pos += 1;
            let negated = if tok.is_bang() {
                Some(tok.offset)
            } else {
                None
            };
            let tok = match negated {
                Some(bang_at) => self.after_bang(bang_at)?,
                None => tok,
            };
            if !tok.is_option() {
                return Err(Located::new(
                    tok.offset,
                    format!(
                        "unexpected `{}`: expected an option such as -m, -j or --name",
                        tok.as_str()
                    ),
                ));
            }
            self.option(tok, negated.is_some())?;
        }
        Ok(())
    }

    fn after_bang(&mut self, bang_at: usize) -> Result<&'t Token<'a>, Located> {
        let toks: &'t [Token<'a>] = self.toks;
        let Some(next) = toks.get(self.pos) else {
            return Err(Located::new(
                bang_at,
                "`!` at end of rule: expected an option after it",
            ));
        };
        self.pos += 1;
        if next.is_bang() {
            return Err(Located::new(next.offset, "double `!`: expected an option"));
        }
        if !next.is_option() {
            return Err(Located::new(
                next.offset,
                format!("expected an option after `!`, got `{}`", next.as_str()),
            ));
        }
        Ok(next)
    }

    fn option(&mut self, tok: &Token<'a>, negated: bool) -> Result<(), Located> {
        match tok.as_str() {
            "-s" | "--source" | "--src" => self.address(tok, negated, true),
            "-d" | "--destination" | "--dst" => self.address(tok, negated, false),
            "-i" | "--in-interface" => self.interface(tok, negated, true),
            "-o" | "--out-interface" => self.interface(tok, negated, false),
            "-p" | "--protocol" => self.protocol(tok, negated),
            "-f" | "--fragment" | "--fragments" => self.fragment(tok, negated),
            "-4" | "--ipv4" => self.only_family(tok, negated, Family::Ipv4),
            "-6" | "--ipv6" => self.only_family(tok, negated, Family::Ipv6),
            "-c" | "--set-counters" => self.counters(tok, negated),
            "-m" | "--match" => self.start_match(tok, negated),
            "-j" | "--jump" => self.start_target(tok, negated, TargetKind::Jump),
            "-g" | "--goto" => self.start_target(tok, negated, TargetKind::Goto),
            name if name.starts_with("--") => self.long_option(tok, negated),
            name => Err(Located::new(
                tok.offset,
                format!("unknown option `{name}` in a rule"),
            )),
        }
    }

    /// The value of a base option, accepting the deprecated `-s ! value`.
    fn base_value(
        &mut self,
        opt: &Token<'a>,
        negated: &mut bool,
    ) -> Result<&'t Token<'a>, Located> {
        let missing = || {
            Located::new(
                opt.offset,
                format!("option `{}` needs a value", opt.as_str()),
            )
        };
        let toks: &'t [Token<'a>] = self.toks;
        let mut value = toks.get(self.pos).ok_or_else(missing)?;
        if value.is_bang() {
            if *negated {
                return Err(Located::new(value.offset, "double `!`"));
            }
            *negated = true;
            self.deprecated(value.offset, opt.as_str());
            self.pos += 1;
            value = toks.get(self.pos).ok_or_else(missing)?;
        }
        if value.is_option() {
            return Err(missing());
        }
        self.pos += 1;
        Ok(value)
    }

    fn deprecated(&mut self, offset: usize, option: &str) {
        self.out.deprecations.push((
            offset,
            format!("intrapositioned negation (`{option} ! value`) is deprecated in favor of `! {option} value`"),
        ));
    }

    fn duplicate(tok: &Token<'_>) -> Located {
        Located::new(
            tok.offset,
            format!("option `{}` given twice in one rule", tok.as_str()),
        )
    }

    fn address(&mut self, tok: &Token<'a>, mut negated: bool, source: bool) -> Result<(), Located> {
        let slot_taken = if source {
            self.out.spec.source.is_some()
        } else {
            self.out.spec.destination.is_some()
        };
        if slot_taken {
            return Err(Self::duplicate(tok));
        }
        let value = self.base_value(tok, &mut negated)?;
        let addr = parse_addr(value.as_str()).map_err(|m| Located::new(value.offset, m))?;
        self.out.saw_ipv6 |= addr.addr.is_ipv6();
        let entry = Some(Negatable {
            negated,
            value: addr,
        });
        if source {
            self.out.spec.source = entry;
        } else {
            self.out.spec.destination = entry;
        }
        Ok(())
    }

    fn interface(
        &mut self,
        tok: &Token<'a>,
        mut negated: bool,
        input: bool,
    ) -> Result<(), Located> {
        let slot_taken = if input {
            self.out.spec.in_interface.is_some()
        } else {
            self.out.spec.out_interface.is_some()
        };
        if slot_taken {
            return Err(Self::duplicate(tok));
        }
        let value = self.base_value(tok, &mut negated)?;
        interface_name(value.as_str()).map_err(|m| Located::new(value.offset, m))?;
        let value = value.as_str().to_owned();
        let entry = Some(Negatable { negated, value });
        if input {
            self.out.spec.in_interface = entry;
        } else {
            self.out.spec.out_interface = entry;
        }
        Ok(())
    }

    fn protocol(&mut self, tok: &Token<'a>, mut negated: bool) -> Result<(), Located> {
        if self.seen_protocol {
            return Err(Self::duplicate(tok));
        }
        self.seen_protocol = true;
        let value = self.base_value(tok, &mut negated)?;
        protocol(value.as_str()).map_err(|m| Located::new(value.offset, m))?;
        let value = value.as_str();
        if negated || !value.eq_ignore_ascii_case("all") {
            self.out.spec.protocol = Some(Negatable {
                negated,
                value: Symbol::new(value),
            });
        }
        Ok(())
    }

    fn fragment(&mut self, tok: &Token<'a>, negated: bool) -> Result<(), Located> {
        if self.out.spec.fragment.is_some() {
            return Err(Self::duplicate(tok));
        }
        self.out.spec.fragment = Some(negated);
        Ok(())
    }

    fn only_family(
        &mut self,
        tok: &Token<'a>,
        negated: bool,
        family: Family,
    ) -> Result<(), Located> {
        if negated {
            return Err(Located::new(
                tok.offset,
                format!("`!` cannot negate `{}`", tok.as_str()),
            ));
        }
        match self.out.spec.only_family {
            Some(f) if f != family => {
                Err(Located::new(tok.offset, "`-4` and `-6` in the same rule"))
            }
            _ => {
                self.out.spec.only_family = Some(family);
                Ok(())
            }
        }
    }

    fn counters(&mut self, tok: &Token<'a>, negated: bool) -> Result<(), Located> {
        if negated {
            return Err(Located::new(tok.offset, "`!` cannot negate `-c`"));
        }
        if self.out.counters.is_some() {
            return Err(Self::duplicate(tok));
        }
        let mut number = |what: &str| -> Result<u64, Located> {
            let t = self.toks.get(self.pos).ok_or_else(|| {
                Located::new(
                    tok.offset,
                    format!("`-c` needs two numbers: missing {what}"),
                )
            })?;
            self.pos += 1;
            t.as_str().parse::<u64>().map_err(|_| {
                Located::new(
                    t.offset,
                    format!(
                        "expected the {what} counter (an unsigned 64-bit number), got `{}`",
                        t.as_str()
                    ),
                )
            })
        };
        let packets = number("packet")?;
        let bytes = number("byte")?;
        self.out.counters = Some(Counters { packets, bytes });
        Ok(())
    }

    fn name_after<T: for<'s> From<&'s str>>(
        &mut self,
        tok: &Token<'a>,
        what: &str,
    ) -> Result<T, Located> {
        let name = self.toks.get(self.pos).ok_or_else(|| {
            Located::new(
                tok.offset,
                format!("`{}` needs a {what} name", tok.as_str()),
            )
        })?;
        if name.is_bang() || name.as_str().is_empty() {
            return Err(Located::new(
                name.offset,
                format!("expected a {what} name after `{}`", tok.as_str()),
            ));
        }
        self.pos += 1;
        Ok(T::from(name.as_str()))
    }

    fn start_match(&mut self, tok: &Token<'a>, negated: bool) -> Result<(), Located> {
        if negated {
            return Err(Located::new(
                tok.offset,
                "unexpected `!` before `-m`: negate the module's options instead",
            ));
        }
        let module = self.name_after(tok, "match module")?;
        self.out.spec.matches.push(Match {
            module,
            options: Vec::new(),
        });
        self.context = Context::Match(self.out.spec.matches.len() - 1);
        Ok(())
    }

    fn start_target(
        &mut self,
        tok: &Token<'a>,
        negated: bool,
        kind: TargetKind,
    ) -> Result<(), Located> {
        if negated {
            return Err(Located::new(
                tok.offset,
                format!("`!` cannot negate `{}`", tok.as_str()),
            ));
        }
        if self.out.spec.target.is_some() {
            return Err(Located::new(
                tok.offset,
                "a rule has at most one `-j` or `-g`",
            ));
        }
        let name = self.name_after(tok, "target")?;
        self.out.spec.target = Some(Target {
            kind,
            name,
            options: Vec::new(),
        });
        self.context = Context::Target;
        Ok(())
    }

    fn long_option(&mut self, tok: &Token<'a>, mut negated: bool) -> Result<(), Located> {
        let name = &tok.as_str()[2..];
        // Sized once: most options have one value, and a grown `Vec` would hold four.
        let mut values = Vec::with_capacity(self.values_ahead(name));
        let mut offsets = Vec::new();
        if takes_verbatim_argument(name) {
            if let Some(first) = self
                .toks
                .get(self.pos)
                .filter(|t| !t.is_bang() && !is_rule_option(t))
            {
                values.push(first.as_str().to_owned());
                offsets.push(first.offset);
                self.pos += 1;
            }
        } else if self.intrapositioned_bang() {
            if negated {
                return Err(Located::new(self.toks[self.pos].offset, "double `!`"));
            }
            negated = true;
            self.deprecated(self.toks[self.pos].offset, tok.as_str());
            self.pos += 1;
        }
        while let Some(v) = self.toks.get(self.pos) {
            if v.is_option() || v.is_bang() {
                break;
            }
            values.push(v.as_str().to_owned());
            offsets.push(v.offset);
            self.pos += 1;
        }
        let arg = OptionArg {
            negated,
            name: Symbol::new(name),
            values,
        };
        // Where a missing value was expected: the next token, else just after the option.
        let end = self
            .toks
            .get(self.pos)
            .map_or(tok.offset + tok.as_str().len(), |t| t.offset);
        offsets.push(end);
        self.bind(tok, arg, &offsets)
    }

    /// How many values [`Self::long_option`] will take for `--name` (an upper bound: the
    /// tokens up to the next option or `!`, plus a verbatim first one and an intrapositioned
    /// `!`'s value), so that its `Vec` is allocated once at its size.
    fn values_ahead(&self, name: &str) -> usize {
        let rest = self.toks.get(self.pos..).unwrap_or_default();
        let skip = usize::from(takes_verbatim_argument(name) || self.intrapositioned_bang());
        skip + rest
            .iter()
            .skip(skip)
            .take_while(|v| !v.is_option() && !v.is_bang())
            .count()
    }

    /// `--opt ! value`: a `!` right after the option name, followed by a value (not an option).
    fn intrapositioned_bang(&self) -> bool {
        let is_bang = self.toks.get(self.pos).is_some_and(Token::is_bang);
        let value_follows = self
            .toks
            .get(self.pos + 1)
            .is_some_and(|t| !t.is_option() && !t.is_bang());
        is_bang && value_follows
    }

    /// Attaches an option to the match or target it belongs to, after checking its values
    /// against what that module or target takes (`offsets`: each value's byte offset, then
    /// where a missing value would be).
    fn bind(&mut self, tok: &Token<'a>, arg: OptionArg, offsets: &[usize]) -> Result<(), Located> {
        let place = self.destination(tok, &arg)?;
        let at = |(i, message): (usize, String)| {
            let offset = offsets.get(i).copied().unwrap_or(tok.offset);
            Located::new(offset, message)
        };
        let matches = &mut self.out.spec.matches;
        match place {
            Place::Match(i) => {
                check_match_option(&matches[i].module, &arg.name, &arg.values).map_err(at)?;
                matches[i].options.push(arg);
            }
            Place::Implicit(module) => {
                check_match_option(module, &arg.name, &arg.values).map_err(at)?;
                matches.push(Match {
                    module: Symbol::from_static(module),
                    options: vec![arg],
                });
                self.context = Context::Match(matches.len() - 1);
            }
            Place::Target => {
                if let Some(t) = self.out.spec.target.as_mut() {
                    check_target_option(&t.name, &arg.name, &arg.values).map_err(at)?;
                    t.options.push(arg);
                }
            }
        }
        Ok(())
    }

    /// Which match or target an option belongs to.
    fn destination(&self, tok: &Token<'a>, arg: &OptionArg) -> Result<Place, Located> {
        let matches = &self.out.spec.matches;
        match self.context {
            Context::Target => return Ok(Place::Target),
            Context::Match(i)
                if module_options(&matches[i].module).is_none()
                    || module_has(&matches[i].module, &arg.name) =>
            {
                return Ok(Place::Match(i));
            }
            _ => {}
        }
        if let Some(j) = matches
            .iter()
            .rposition(|m| module_has(&m.module, &arg.name))
        {
            return Ok(Place::Match(j));
        }
        if let Some(module) = self.implicit_module.filter(|m| module_has(m, &arg.name)) {
            return Ok(Place::Implicit(module));
        }
        if self.out.spec.target.is_some() {
            return Ok(Place::Target);
        }
        match self.context {
            Context::Match(i) => Ok(Place::Match(i)),
            _ => Err(Located::new(
                tok.offset,
                format!(
                    "option `{}` needs a match: no `-m` module, `-p` protocol or `-j` target claims it",
                    tok.as_str()
                ),
            )),
        }
    }
}

/// Where [`RuleParser::destination`] puts an option.
enum Place {
    Match(usize),
    Implicit(&'static str),
    Target,
}

/// An option the rule grammar itself knows (`--anything` or a base short option such as `-j`):
/// a free-text argument like `--comment -x` never swallows one of these.
fn is_rule_option(tok: &Token<'_>) -> bool {
    tok.is_option()
        && (tok.as_str().starts_with("--")
            || matches!(
                tok.as_str(),
                "-s" | "-d" | "-i" | "-o" | "-p" | "-f" | "-4" | "-6" | "-c" | "-m" | "-j" | "-g"
            ))
}
