//! Rule expressions and values of nft text, from tokens to the typed model. What cannot be
//! typed is returned as `None` by the sub-parsers; the rule parser then keeps its tokens as
//! [`Expr::Unmodelled`] text.

use std::net::IpAddr;

use crate::model::Counters;
use crate::typed::*;

use super::lexer::{Tok, Token};

/// A cursor over one rule's tokens (no newlines).
pub(crate) struct Cur<'a> {
    pub toks: &'a [Token],
    pub p: usize,
}

impl<'a> Cur<'a> {
    pub fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.p)
    }
    pub fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.toks.get(self.p + n)
    }
    pub fn word(&self) -> Option<&'a str> {
        self.peek().and_then(Token::word)
    }
    pub fn is(&self, w: &str) -> bool {
        self.word() == Some(w)
    }
    pub fn is_punct(&self, c: char) -> bool {
        self.peek().is_some_and(|t| t.is_punct(c))
    }
    pub fn eat(&mut self, w: &str) -> bool {
        if self.is(w) {
            self.p += 1;
            true
        } else {
            false
        }
    }
    pub fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.p += 1;
            true
        } else {
            false
        }
    }
    pub fn next_word(&mut self) -> Option<&'a str> {
        let w = self.word()?;
        self.p += 1;
        Some(w)
    }
    pub fn done(&self) -> bool {
        self.p >= self.toks.len()
    }
}

/// Words that start a statement or expression: where parsing resumes after an unmodelled part.
pub(crate) fn is_start(w: &str) -> bool {
    is_match_start(w) || is_statement(w)
}

/// Words that start a match.
fn is_match_start(w: &str) -> bool {
    matches!(
        w,
        "ip" | "ip6"
            | "tcp"
            | "udp"
            | "sctp"
            | "dccp"
            | "udplite"
            | "th"
            | "icmp"
            | "icmpv6"
            | "meta"
            | "ct"
            | "fib"
            | "numgen"
            | "jhash"
            | "symhash"
            | "iif"
            | "oif"
            | "iifname"
            | "oifname"
            | "mark"
            | "ether"
            | "vlan"
            | "arp"
    )
}

fn parse_int(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) {
        w.parse().ok()
    } else {
        None
    }
}

fn parse_addr(w: &str) -> Option<IpAddr> {
    let w = w
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(w);
    w.parse().ok()
}

/// Classifies one bare word as a value.
pub(crate) fn word_value(w: &str) -> Value {
    if w == "*" {
        return Value::CatchAll;
    }
    if let Some(a) = parse_addr(w) {
        return Value::Addr(a);
    }
    if let Some((a, l)) = w.split_once('/')
        && let (Some(a), Ok(l)) = (parse_addr(a), l.parse::<u8>())
    {
        return Value::Prefix(a, l);
    }
    if let Some(i) = parse_int(w) {
        return Value::Int(i);
    }
    if let Some((a, b)) = w.split_once('-') {
        let (va, vb) = (word_value(a), word_value(b));
        if matches!(
            (&va, &vb),
            (Value::Int(_), Value::Int(_)) | (Value::Addr(_), Value::Addr(_))
        ) {
            return Value::Range(Box::new(va), Box::new(vb));
        }
    }
    Value::Sym(w.to_string())
}

/// One value (a word or a quoted string), possibly a concatenation `a . b`.
fn value(c: &mut Cur) -> Option<Value> {
    let mut parts = vec![single_value(c)?];
    while c.is(".") {
        c.p += 1;
        parts.push(single_value(c)?);
    }
    Some(if parts.len() == 1 {
        parts.pop().expect("one")
    } else {
        Value::Concat(parts)
    })
}

fn single_value(c: &mut Cur) -> Option<Value> {
    let t = c.peek()?;
    let v = match &t.tok {
        Tok::Str(s) => Value::Str(s.clone()),
        Tok::Word(w)
            if !is_operator(w)
                && !w.starts_with('@')
                && !matches!(w.as_str(), "map" | "vmap" | "set") =>
        {
            word_value(w)
        }
        _ => return None,
    };
    c.p += 1;
    Some(v)
}

fn is_operator(w: &str) -> bool {
    matches!(
        w,
        "." | ":" | "==" | "!=" | "<" | ">" | "<=" | ">=" | "&" | "|" | "^" | "="
    )
}

fn verdict(c: &mut Cur) -> Option<Verdict> {
    let w = c.word()?;
    let v = match w {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "continue" => Verdict::Continue,
        "return" => Verdict::Return,
        "jump" | "goto" => {
            let target = match &c.peek_at(1)?.tok {
                Tok::Word(t) => t.clone(),
                Tok::Str(t) => t.clone(),
                _ => return None,
            };
            c.p += 2;
            return Some(if w == "jump" {
                Verdict::Jump(target)
            } else {
                Verdict::Goto(target)
            });
        }
        "reject" => {
            c.p += 1;
            if !c.eat("with") {
                return Some(Verdict::Reject { with: None });
            }
            let proto = c.next_word()?;
            c.eat("type");
            let code = c.next_word()?;
            return Some(Verdict::Reject {
                with: Some(format!("{proto} {code}")),
            });
        }
        "queue" => {
            c.p += 1;
            // Terminal: everything after it (the comment is already gone) is its options.
            let start = c.p;
            c.p = c.toks.len();
            return Some(Verdict::Queue {
                options: join(&c.toks[start..]),
            });
        }
        _ => return None,
    };
    c.p += 1;
    Some(v)
}

/// Tokens joined by single spaces, commas glued to the word before (nft's spelling).
pub(crate) fn join(toks: &[Token]) -> String {
    let mut s = String::new();
    for t in toks {
        let Some(piece) = t.source_form() else {
            continue;
        };
        if !s.is_empty() && !t.is_punct(',') && !s.ends_with(',') && !s.ends_with('(') {
            s.push(' ');
        }
        if t.is_punct(')') && s.ends_with(' ') {
            s.pop();
        }
        s.push_str(&piece);
    }
    s
}

/// One key (not a concatenation).
fn primary_key(c: &mut Cur) -> Option<Key> {
    let w = c.word()?;
    let next = c.peek_at(1).and_then(Token::word);
    let (key, used) = match (w, next) {
        ("ip" | "ip6", Some(f)) => {
            let v6 = w == "ip6";
            let k = match f {
                "saddr" => Key::Addr { v6, dir: Dir::Src },
                "daddr" => Key::Addr { v6, dir: Dir::Dst },
                "protocol" if !v6 => Key::L4Proto {
                    via: ProtoVia::IpProtocol,
                },
                "nexthdr" if v6 => Key::L4Proto {
                    via: ProtoVia::Ip6Nexthdr,
                },
                f if is_field(f) => Key::Payload {
                    proto: w.into(),
                    field: f.into(),
                },
                _ => return None,
            };
            (k, 2)
        }
        ("tcp", Some("flags")) => (Key::TcpFlags, 2),
        ("tcp" | "udp" | "sctp" | "dccp" | "udplite" | "th", Some(f)) => {
            let proto = L4Proto::parse(w);
            let k = match f {
                "dport" => Key::Port {
                    proto,
                    dir: Dir::Dst,
                },
                "sport" => Key::Port {
                    proto,
                    dir: Dir::Src,
                },
                f if is_field(f) => Key::Payload {
                    proto: w.into(),
                    field: f.into(),
                },
                _ => return None,
            };
            (k, 2)
        }
        ("icmp" | "icmpv6", Some(f)) => {
            let v6 = w == "icmpv6";
            let k = match f {
                "type" => Key::Icmp { v6, is_type: true },
                "code" => Key::Icmp { v6, is_type: false },
                f if is_field(f) => Key::Payload {
                    proto: w.into(),
                    field: f.into(),
                },
                _ => return None,
            };
            (k, 2)
        }
        ("ether" | "vlan" | "arp", Some(f)) if is_field(f) => (
            Key::Payload {
                proto: w.into(),
                field: f.into(),
            },
            2,
        ),
        ("meta", Some(k)) => (meta_key(k)?, 2),
        ("iif" | "oif" | "iifname" | "oifname" | "mark" | "skuid" | "skgid" | "pkttype", _) => {
            (meta_key(w)?, 1)
        }
        ("ct", Some(_)) => return ct_key(c),
        ("fib", _) => return fib_key(c),
        ("numgen", _) => return numgen_key(c),
        ("jhash" | "symhash", _) => return hash_key(c),
        _ => return None,
    };
    c.p += used;
    Some(key)
}

fn is_field(f: &str) -> bool {
    f.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !f.is_empty()
        && !is_start(f)
        && !matches!(f, "set" | "vmap" | "map" | "to" | "with")
}

fn meta_key(k: &str) -> Option<Key> {
    Some(match k {
        "l4proto" => Key::L4Proto {
            via: ProtoVia::Meta,
        },
        "nfproto" => Key::NfProto,
        "iif" => Key::Iface {
            dir: IfaceDir::In,
            by_name: false,
        },
        "oif" => Key::Iface {
            dir: IfaceDir::Out,
            by_name: false,
        },
        "iifname" => Key::Iface {
            dir: IfaceDir::In,
            by_name: true,
        },
        "oifname" => Key::Iface {
            dir: IfaceDir::Out,
            by_name: true,
        },
        "mark" => Key::Meta(MetaKey::Mark),
        "pkttype" => Key::Meta(MetaKey::Pkttype),
        "skuid" => Key::Meta(MetaKey::Skuid),
        "skgid" => Key::Meta(MetaKey::Skgid),
        k if is_field(k) => Key::Meta(MetaKey::Other(k.into())),
        _ => return None,
    })
}

fn ct_key(c: &mut Cur) -> Option<Key> {
    let save = c.p;
    c.p += 1; // ct
    let dir = match c.word() {
        Some("original") => Some(CtDir::Original),
        Some("reply") => Some(CtDir::Reply),
        _ => None,
    };
    if dir.is_some() {
        c.p += 1;
    }
    let w = c.next_word();
    let key = match w {
        Some("state") => CtKey::State,
        Some("status") => CtKey::Status,
        Some("mark") => CtKey::Mark,
        Some("zone") => CtKey::Zone,
        Some("direction") => CtKey::Direction,
        Some("saddr") => CtKey::Addr {
            v6: None,
            dir: Dir::Src,
        },
        Some("daddr") => CtKey::Addr {
            v6: None,
            dir: Dir::Dst,
        },
        Some(f @ ("ip" | "ip6")) => {
            let v6 = Some(f == "ip6");
            match c.next_word() {
                Some("saddr") => CtKey::Addr { v6, dir: Dir::Src },
                Some("daddr") => CtKey::Addr { v6, dir: Dir::Dst },
                _ => {
                    c.p = save;
                    return None;
                }
            }
        }
        Some("proto-src") => CtKey::ProtoPort(Dir::Src),
        Some("proto-dst") => CtKey::ProtoPort(Dir::Dst),
        Some("count") | None => {
            c.p = save;
            return None;
        }
        Some(k) if is_field(k) => CtKey::Other(k.into()),
        Some(_) => {
            c.p = save;
            return None;
        }
    };
    Some(Key::Ct { dir, key })
}

fn fib_key(c: &mut Cur) -> Option<Key> {
    let save = c.p;
    c.p += 1;
    let mut flags = Vec::new();
    while let Some(f @ ("saddr" | "daddr" | "mark" | "iif" | "oif")) = c.word() {
        flags.push(f.to_string());
        c.p += 1;
        if !c.eat(".") {
            break;
        }
    }
    match c.word() {
        Some(r @ ("type" | "oif" | "oifname" | "check")) if !flags.is_empty() => {
            c.p += 1;
            // `check missing` (nft ≥ 1.1) is `oif missing` of older listings: one form.
            let result = if r == "check" { "oif" } else { r };
            Some(Key::Fib {
                flags,
                result: result.to_string(),
            })
        }
        _ => {
            c.p = save;
            None
        }
    }
}

fn numgen_key(c: &mut Cur) -> Option<Key> {
    let save = c.p;
    c.p += 1;
    let random = match c.next_word() {
        Some("random") => true,
        Some("inc") => false,
        _ => {
            c.p = save;
            return None;
        }
    };
    let modulus = if c.eat("mod") {
        c.next_word().and_then(parse_int)
    } else {
        None
    };
    let Some(modulus) = modulus.and_then(|m| u32::try_from(m).ok()) else {
        c.p = save;
        return None;
    };
    let mut offset = 0;
    if c.eat("offset") {
        match c.next_word().and_then(parse_int) {
            Some(o) => offset = u32::try_from(o).ok()?,
            None => {
                c.p = save;
                return None;
            }
        }
    }
    Some(Key::Numgen {
        random,
        modulus,
        offset,
    })
}

fn hash_key(c: &mut Cur) -> Option<Key> {
    let start = c.p;
    c.p += 1;
    while let Some(w) = c.word() {
        c.p += 1;
        if w == "mod" {
            c.next_word()?;
            for opt in ["seed", "offset"] {
                if c.eat(opt) {
                    c.next_word()?;
                }
            }
            return Some(Key::Hash(join(&c.toks[start..c.p])));
        }
    }
    c.p = start;
    None
}

/// A key, possibly a concatenation, possibly with a bitwise operation.
pub(crate) fn key(c: &mut Cur) -> Option<Key> {
    let save = c.p;
    let mut keys = vec![primary_key(c)?];
    while c.is(".") {
        c.p += 1;
        match primary_key(c) {
            Some(k) => keys.push(k),
            None => {
                c.p = save;
                return None;
            }
        }
    }
    let mut k = if keys.len() == 1 {
        keys.pop().expect("one")
    } else {
        Key::Concat(keys)
    };
    while let Some(op) = c.word().and_then(bitop) {
        c.p += 1;
        let v = match c.word().and_then(parse_int) {
            Some(v) => {
                c.p += 1;
                Some(v)
            }
            None if k == Key::TcpFlags => tcp_flag_mask(c),
            None => None,
        };
        let Some(v) = v else {
            c.p = save;
            return None;
        };
        k = Key::Masked {
            key: Box::new(k),
            op,
            value: v,
        };
    }
    Some(k)
}

/// TCP flag names and bits, in header order.
pub(crate) const TCP_FLAGS: [(&str, u64); 8] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ecn", 0x40),
    ("cwr", 0x80),
];

pub(crate) fn tcp_flag(name: &str) -> Option<u64> {
    TCP_FLAGS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// `syn`, `(fin | syn | rst | ack)` or `syn,ack` → the OR of the bits.
fn tcp_flag_mask(c: &mut Cur) -> Option<u64> {
    let paren = c.eat_punct('(');
    let mut v = tcp_flag(c.next_word()?)?;
    while c.is("|") || c.is_punct(',') {
        c.p += 1;
        v |= tcp_flag(c.next_word()?)?;
    }
    if paren && !c.eat_punct(')') {
        return None;
    }
    Some(v)
}

fn bitop(w: &str) -> Option<BitOp> {
    Some(match w {
        "&" | "and" => BitOp::And,
        "|" | "or" => BitOp::Or,
        "^" | "xor" => BitOp::Xor,
        _ => return None,
    })
}

fn is_bitmask(k: &Key) -> bool {
    match k {
        Key::TcpFlags
        | Key::Ct {
            key: CtKey::State | CtKey::Status,
            ..
        } => true,
        Key::Masked { key, .. } => **key == Key::TcpFlags,
        _ => false,
    }
}

/// `{ elem, elem, … }` (the `{` not yet eaten). Elements end at `,` or `}`.
pub(crate) fn elements(c: &mut Cur) -> Option<Vec<SetElem>> {
    if !c.eat_punct('{') {
        return None;
    }
    let mut out = Vec::new();
    loop {
        if c.eat_punct('}') {
            return Some(out);
        }
        out.push(element(c)?);
        if c.eat_punct(',') {
            continue;
        }
        if c.eat_punct('}') {
            return Some(out);
        }
        return None;
    }
}

fn element(c: &mut Cur) -> Option<SetElem> {
    let key = value(c)?;
    let mut comment = None;
    let mut options = Vec::new();
    loop {
        match c.word() {
            Some("comment") => {
                c.p += 1;
                match &c.peek()?.tok {
                    Tok::Str(s) => comment = Some(s.clone()),
                    _ => return None,
                }
                c.p += 1;
            }
            Some(o @ ("timeout" | "expires")) => {
                c.p += 1;
                let v = c.next_word()?;
                options.push(format!("{o} {v}"));
            }
            Some("counter") => {
                let start = c.p;
                c.p += 1;
                if c.eat("packets") {
                    c.next_word()?;
                    c.eat("bytes");
                    c.next_word()?;
                }
                options.push(join(&c.toks[start..c.p]));
            }
            _ => break,
        }
    }
    let data = if c.eat(":") {
        if let Some(v) = verdict(c) {
            Some(MapData::Verdict(v))
        } else {
            Some(MapData::Value(value(c)?))
        }
    } else {
        None
    };
    Some(SetElem {
        key,
        data,
        comment,
        options,
    })
}

fn map_ref(c: &mut Cur) -> Option<MapRef> {
    if let Some(w) = c.word()
        && let Some(name) = w.strip_prefix('@')
    {
        c.p += 1;
        return Some(MapRef::Named(name.to_string()));
    }
    elements(c).map(MapRef::Anon)
}

fn op(c: &mut Cur) -> Option<Op> {
    let o = match c.word()? {
        "==" | "eq" => Op::Eq,
        "!=" | "ne" => Op::Ne,
        "<" | "lt" => Op::Lt,
        ">" | "gt" => Op::Gt,
        "<=" | "le" => Op::Le,
        ">=" | "ge" => Op::Ge,
        _ => return None,
    };
    c.p += 1;
    Some(o)
}

/// An expression that starts with a key: match, vmap, or `set` statement.
fn keyed(c: &mut Cur) -> Option<Expr> {
    let k = super::canon_key(key(c)?);
    if c.eat("vmap") {
        return Some(Expr::Vmap {
            key: k,
            map: map_ref(c)?,
        });
    }
    if c.eat("set") {
        return set_stmt(c, k);
    }
    let explicit = op(c);
    let rhs = if let Some(w) = c.word()
        && let Some(name) = w.strip_prefix('@')
    {
        c.p += 1;
        Rhs::SetRef(name.to_string())
    } else if c.is_punct('{') {
        super::canon_rhs(Rhs::Anon(elements(c)?))
    } else {
        let mut vals = vec![value(c)?];
        if is_bitmask(&k) {
            while c.is_punct(',') || c.is("|") {
                c.p += 1;
                vals.push(value(c)?);
            }
        }
        // `tcp flags syn / syn,ack` is `tcp flags & (syn | ack) == syn`.
        if k == Key::TcpFlags && matches!(explicit, None | Some(Op::Eq | Op::Ne)) && c.is("/") {
            c.p += 1;
            let mask = tcp_flag_mask(c)?;
            return Some(Expr::Match(Match {
                key: Key::Masked {
                    key: Box::new(k),
                    op: BitOp::And,
                    value: mask,
                },
                op: explicit.unwrap_or(Op::Eq),
                rhs: Rhs::Values(vals),
            }));
        }
        Rhs::Values(vals)
    };
    let op = match explicit {
        Some(o) => o,
        None if is_bitmask(&k) && matches!(rhs, Rhs::Values(_)) => Op::Implicit,
        None => Op::Eq,
    };
    Some(Expr::Match(Match { key: k, op, rhs }))
}

fn set_stmt(c: &mut Cur, k: Key) -> Option<Expr> {
    let target = match &k {
        Key::Meta(MetaKey::Mark) => Some(MarkTarget::Meta),
        Key::Ct {
            dir: None,
            key: CtKey::Mark,
        } => Some(MarkTarget::Ct),
        _ => None,
    };
    let start = c.p;
    if let Some(target) = target {
        let save = c.p;
        if let Some(src) = key(c) {
            let same = |src: &Key| src == &k;
            let v = match &src {
                Key::Masked {
                    key: inner,
                    op,
                    value,
                } if same(inner) => match op {
                    BitOp::Or => MarkValue::Or(*value),
                    BitOp::And => MarkValue::And(*value),
                    BitOp::Xor => MarkValue::Xor(*value),
                },
                _ => MarkValue::From { key: src },
            };
            if stmt_end(c) {
                return Some(Expr::SetMark { target, value: v });
            }
            c.p = save;
        } else if let Some(Value::Int(i)) = single_value(c)
            && stmt_end(c)
        {
            return Some(Expr::SetMark {
                target,
                value: MarkValue::Set(i),
            });
        }
        c.p = save;
    }
    // A plain value or key followed by the next expression.
    let at_next = |c: &Cur| c.done() || c.word().is_some_and(is_start);
    if single_value(c).is_some() && at_next(c) {
        return set_other(c, start, target, k);
    }
    c.p = start;
    if key(c).is_some() && at_next(c) {
        return set_other(c, start, target, k);
    }
    c.p = start;
    // Other values: up to the next statement (not expression) start, braces kept whole.
    while let Some(t) = c.peek() {
        if t.word().is_some_and(is_statement) {
            break;
        }
        if t.is_punct('{') || t.is_punct('(') {
            skip_group(c);
            continue;
        }
        c.p += 1;
    }
    set_other(c, start, target, k)
}

fn set_other(c: &Cur, start: usize, target: Option<MarkTarget>, k: Key) -> Option<Expr> {
    if c.p <= start {
        return None;
    }
    let text = join(&c.toks[start..c.p]);
    Some(match target {
        Some(target) => Expr::SetMark {
            target,
            value: MarkValue::Other(text),
        },
        None => Expr::Mangle {
            key: k,
            value: text,
        },
    })
}

/// Words that can only start a statement (not a match).
fn is_statement(w: &str) -> bool {
    matches!(
        w,
        "counter"
            | "log"
            | "limit"
            | "quota"
            | "notrack"
            | "accept"
            | "drop"
            | "reject"
            | "queue"
            | "continue"
            | "return"
            | "jump"
            | "goto"
            | "dnat"
            | "snat"
            | "masquerade"
            | "redirect"
            | "tproxy"
            | "update"
            | "add"
            | "delete"
    )
}

/// Moves past a balanced `{ … }` or `( … )` at the cursor (or to the end when unbalanced).
pub(crate) fn skip_group(c: &mut Cur) {
    let mut depth = 0usize;
    while let Some(t) = c.peek() {
        c.p += 1;
        if t.is_punct('{') || t.is_punct('(') {
            depth += 1;
        } else if t.is_punct('}') || t.is_punct(')') {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return;
            }
        }
    }
}

fn stmt_end(c: &Cur) -> bool {
    c.word().is_none_or(is_start) && !c.is_punct('{')
}

/// `ADDR`, `ADDR:PORT`, `[V6]:PORT`, `:PORT`, ranges of each.
fn nat_target(w: &str) -> Option<(Option<Value>, Option<Value>)> {
    if let Some(p) = w.strip_prefix(':') {
        return Some((None, Some(port_value(p)?)));
    }
    if let Some(rest) = w.strip_prefix('[') {
        let (a, after) = rest.split_once(']')?;
        let addr = word_value(a);
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port_value(p)?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((Some(addr), port));
    }
    let v = word_value(w);
    if !matches!(v, Value::Sym(_)) {
        return Some((Some(v), None));
    }
    let (a, p) = w.rsplit_once(':')?;
    let addr = word_value(a);
    if matches!(addr, Value::Sym(_)) {
        return None;
    }
    Some((Some(addr), Some(port_value(p)?)))
}

fn port_value(p: &str) -> Option<Value> {
    match word_value(p) {
        v @ (Value::Int(_) | Value::Range(..)) => Some(v),
        _ => None,
    }
}

fn nat(c: &mut Cur, kind: NatKind) -> Option<Expr> {
    c.p += 1;
    let family = match c.word() {
        Some("ip") if c.peek_at(1).is_some_and(|t| t.is_word("to")) => Some(false),
        Some("ip6") if c.peek_at(1).is_some_and(|t| t.is_word("to")) => Some(true),
        _ => None,
    };
    if family.is_some() {
        c.p += 1;
    }
    let mut addr = None;
    let mut port = None;
    if c.eat("to") {
        let save = c.p;
        if let Some(k) = key(c) {
            if !c.eat("map") {
                c.p = save;
                return None;
            }
            addr = Some(NatAddr::Map {
                key: k,
                map: map_ref(c)?,
            });
        } else {
            let (a, p) = nat_target(c.next_word()?)?;
            addr = a.map(NatAddr::Value);
            port = p;
        }
    }
    let mut flags = Vec::new();
    while let Some(f @ ("random" | "fully-random" | "persistent")) = c.word() {
        flags.push(f.to_string());
        c.p += 1;
        c.eat_punct(',');
    }
    if matches!(kind, NatKind::Dnat | NatKind::Snat | NatKind::Tproxy)
        && addr.is_none()
        && port.is_none()
    {
        return None;
    }
    Some(Expr::Nat(Nat {
        kind,
        family,
        addr,
        port,
        flags,
    }))
}

/// One expression or statement at the cursor; `None` (cursor unchanged) when it cannot be typed.
pub(crate) fn expr(c: &mut Cur) -> Option<Expr> {
    let save = c.p;
    let r = expr_inner(c);
    if r.is_none() {
        c.p = save;
    }
    r
}

fn expr_inner(c: &mut Cur) -> Option<Expr> {
    let w = c.word()?;
    match w {
        "accept" | "drop" | "continue" | "return" | "jump" | "goto" | "reject" | "queue" => {
            verdict(c).map(Expr::Verdict)
        }
        "counter" => {
            c.p += 1;
            if c.eat("name") {
                let n = match &c.peek()?.tok {
                    Tok::Word(w) => w.clone(),
                    Tok::Str(s) => s.clone(),
                    _ => return None,
                };
                c.p += 1;
                return Some(Expr::Counter {
                    counters: None,
                    name: Some(n),
                });
            }
            let counters = if c.eat("packets") {
                let packets = c.next_word().and_then(parse_int)?;
                if !c.eat("bytes") {
                    return None;
                }
                let bytes = c.next_word().and_then(parse_int)?;
                Some(Counters { packets, bytes })
            } else {
                None
            };
            Some(Expr::Counter {
                counters,
                name: None,
            })
        }
        "log" => {
            c.p += 1;
            let mut prefix = None;
            let mut group = None;
            let mut options = Vec::new();
            loop {
                match c.word() {
                    Some("prefix") => {
                        c.p += 1;
                        match &c.peek()?.tok {
                            Tok::Str(s) => prefix = Some(s.clone()),
                            _ => return None,
                        }
                        c.p += 1;
                    }
                    Some("group") => {
                        c.p += 1;
                        group = Some(u32::try_from(c.next_word().and_then(parse_int)?).ok()?);
                    }
                    Some(o @ ("level" | "snaplen" | "queue-threshold")) => {
                        c.p += 1;
                        let v = c.next_word()?;
                        options.push(format!("{o} {v}"));
                    }
                    Some("flags") => {
                        // `flags all`, `flags ip options`, `flags tcp sequence,options`, …
                        let start = c.p;
                        c.p += 1;
                        while let Some(t) = c.peek() {
                            let stop = match t.word() {
                                Some(w) => {
                                    (is_start(w) && !matches!(w, "ip" | "tcp" | "ether"))
                                        || matches!(
                                            w,
                                            "prefix" | "group" | "level" | "snaplen" | "flags"
                                        )
                                }
                                None => !t.is_punct(','),
                            };
                            if stop {
                                break;
                            }
                            c.p += 1;
                        }
                        options.push(join(&c.toks[start..c.p]));
                    }
                    _ => break,
                }
            }
            Some(Expr::Log {
                prefix,
                group,
                options,
            })
        }
        "limit" | "quota" => {
            let kind = w.to_string();
            let start = c.p;
            c.p += 1;
            while let Some(t) = c.peek() {
                if t.word().is_some_and(is_statement) {
                    break;
                }
                if t.is_punct('{') || t.is_punct('(') {
                    skip_group(c);
                    continue;
                }
                c.p += 1;
            }
            Some(Expr::Stateful {
                kind,
                text: join(&c.toks[start..c.p]),
            })
        }
        "ct" if c.peek_at(1).is_some_and(|t| t.is_word("count")) => {
            let text = until_start_after(c, 2);
            Some(Expr::Stateful {
                kind: "ct count".into(),
                text,
            })
        }
        "notrack" => {
            c.p += 1;
            Some(Expr::Notrack)
        }
        "dnat" => nat(c, NatKind::Dnat),
        "snat" => nat(c, NatKind::Snat),
        "masquerade" => nat(c, NatKind::Masquerade),
        "redirect" => nat(c, NatKind::Redirect),
        "tproxy" => nat(c, NatKind::Tproxy),
        "update" | "add" | "delete" => {
            let op = w.to_string();
            c.p += 1;
            let set = c.word()?.strip_prefix('@')?.to_string();
            c.p += 1;
            if !c.eat_punct('{') {
                return None;
            }
            let k = key(c)?;
            let start = c.p;
            while !c.is_punct('}') {
                c.peek()?;
                c.p += 1;
            }
            let opts = join(&c.toks[start..c.p]);
            c.p += 1;
            Some(Expr::SetUpdate {
                op,
                set,
                key: k,
                options: if opts.is_empty() { vec![] } else { vec![opts] },
            })
        }
        _ => keyed(c),
    }
}

fn until_start_after(c: &mut Cur, skip: usize) -> String {
    let start = c.p;
    c.p += skip;
    while let Some(t) = c.peek() {
        if t.word().is_some_and(is_start) {
            break;
        }
        c.p += 1;
    }
    join(&c.toks[start..c.p])
}

/// Parses one rule's tokens (without a trailing comment) into expressions; untypeable parts
/// become [`Expr::Unmodelled`] with their source text.
pub(crate) fn rule_exprs(toks: &[Token], src: &str) -> Vec<Expr> {
    let mut c = Cur { toks, p: 0 };
    let mut out = Vec::new();
    let mut unmod: Option<usize> = None;
    let flush = |out: &mut Vec<Expr>, unmod: &mut Option<usize>, end: usize| {
        if let Some(s) = unmod.take() {
            out.push(Expr::Unmodelled {
                text: source_text(src, &toks[s..end]),
            });
        }
    };
    while !c.done() {
        let at = c.p;
        // Resume typed parsing after an unmodelled part only at a word that starts an
        // expression and does not continue the previous one (`a . b`, `x == y`, `set v`).
        let continues = at > 0
            && (toks[at - 1].is_punct(',')
                || toks[at - 1].word().is_some_and(|w| {
                    is_operator(w)
                        || matches!(
                            w,
                            "and"
                                | "or"
                                | "xor"
                                | "set"
                                | "map"
                                | "vmap"
                                | "to"
                                | "with"
                                | "name"
                                | "mod"
                                | "in"
                                | "reqid"
                        )
                }));
        let parsed = if unmod.is_none() || (c.word().is_some_and(is_start) && !continues) {
            expr(&mut c)
        } else {
            None
        };
        match parsed {
            Some(e) => {
                flush(&mut out, &mut unmod, at);
                out.push(e);
            }
            None => {
                unmod.get_or_insert(at);
                c.p = at;
                if c.is_punct('{') || c.is_punct('(') {
                    skip_group(&mut c);
                } else {
                    c.p = at + 1;
                }
            }
        }
    }
    flush(&mut out, &mut unmod, toks.len());
    out
}

/// The tokens' source text, as written (`@th,160,128` stays glued), with whatever separated
/// two tokens (blanks, line breaks, `#` comments) reduced to one space.
pub(crate) fn source_text(src: &str, toks: &[Token]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        if i > 0 && t.start > toks[i - 1].end {
            s.push(' ');
        }
        s.push_str(&src[t.start..t.end]);
    }
    s
}
