//! `nft -j list ruleset` JSON (libnftables-json(5), schema 1) → [`NftRuleset`], the same model
//! the text parser builds. Statements the model does not type (`xt`, raw payloads, …) become
//! [`Expr::Unmodelled`] holding their JSON.

use serde_json::Value as J;

use crate::model::Counters;
use crate::parse::ParseError;
use crate::typed::*;

use super::expr::word_value;
use super::{NftLimits, escape, render};

/// Parses `nft -j list ruleset` (or `list table`) output. Errors name the offending JSON item
/// (line and column from the JSON reader for syntax errors; `1:1` with the item's index for
/// structural ones).
pub fn parse_nft_json(text: &str, limits: &NftLimits) -> Result<NftRuleset, ParseError> {
    if text.len() > limits.max_input_bytes {
        return Err(err(format!(
            "input is {} bytes, more than the limit of {} bytes",
            text.len(),
            limits.max_input_bytes
        )));
    }
    let doc: J = serde_json::from_str(text).map_err(|e| ParseError {
        line: e.line().max(1),
        column: e.column().max(1),
        message: format!("invalid JSON: {}", escape(&e.to_string())),
    })?;
    let items = doc
        .get("nftables")
        .and_then(J::as_array)
        .ok_or_else(|| err("expected an object with an `nftables` array".into()))?;
    let mut rs = NftRuleset::default();
    let mut rules = 0usize;
    let mut elements = 0usize;
    for (i, item) in items.iter().enumerate() {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            return Err(err(format!("item {i}: expected an object")));
        };
        let fam_table = || -> Result<(NftFamily, String), ParseError> {
            let fam = body
                .get("family")
                .and_then(J::as_str)
                .and_then(NftFamily::parse)
                .ok_or_else(|| {
                    err(format!(
                        "item {i} ({}): expected a known `family`",
                        escape(kind)
                    ))
                })?;
            let key = if kind == "table" { "name" } else { "table" };
            let t = str_of(body, key)
                .ok_or_else(|| err(format!("item {i} ({}): expected `{key}`", escape(kind))))?;
            Ok((fam, t))
        };
        match kind.as_str() {
            "metainfo" => {}
            "table" => {
                let (family, name) = fam_table()?;
                rs.tables.push(NftTable {
                    family,
                    name,
                    handle: body.get("handle").and_then(J::as_u64),
                    comment: str_of(body, "comment"),
                    flags: strs(body.get("flags")),
                    sets: Vec::new(),
                    chains: Vec::new(),
                    objects: Vec::new(),
                    line: 0,
                });
            }
            "chain" => {
                let (family, tname) = fam_table()?;
                let table = table_mut(&mut rs, family, &tname, i)?;
                let name = str_of(body, "name")
                    .ok_or_else(|| err(format!("item {i} (chain): expected `name`")))?;
                let base = match (str_of(body, "type"), str_of(body, "hook")) {
                    (Some(t), Some(h)) => Some(BaseChain {
                        kind: ChainType::parse(&t).ok_or_else(|| {
                            err(format!(
                                "item {i} (chain {name}): unknown type `{}`",
                                escape(&t)
                            ))
                        })?,
                        hook: Hook::parse(&h).ok_or_else(|| {
                            err(format!(
                                "item {i} (chain {name}): unknown hook `{}`",
                                escape(&h)
                            ))
                        })?,
                        priority: body
                            .get("prio")
                            .and_then(J::as_i64)
                            .and_then(|p| i32::try_from(p).ok())
                            .ok_or_else(|| {
                                err(format!(
                                    "item {i} (chain {name}): expected a numeric `prio`"
                                ))
                            })?,
                        priority_text: None,
                        policy: match str_of(body, "policy").as_deref() {
                            Some("drop") => Some(Policy::Drop),
                            Some(_) => Some(Policy::Accept),
                            None => None,
                        },
                        devices: strs(body.get("dev")),
                    }),
                    _ => None,
                };
                table.chains.push(NftChain {
                    name,
                    handle: body.get("handle").and_then(J::as_u64),
                    comment: str_of(body, "comment"),
                    base,
                    rules: Vec::new(),
                    line: 0,
                });
            }
            "rule" => {
                let (family, tname) = fam_table()?;
                let table = table_mut(&mut rs, family, &tname, i)?;
                let cname = str_of(body, "chain")
                    .ok_or_else(|| err(format!("item {i} (rule): expected `chain`")))?;
                let Some(chain) = table.chains.iter_mut().find(|c| c.name == cname) else {
                    return Err(err(format!(
                        "item {i} (rule): chain `{}` was not listed before its rules",
                        escape(&cname)
                    )));
                };
                rules += 1;
                if rules > limits.max_rules {
                    return Err(err(format!("more than {} rules (limit)", limits.max_rules)));
                }
                let exprs: Vec<Expr> = body
                    .get("expr")
                    .and_then(J::as_array)
                    .map(|a| super::canon_exprs(a.iter().map(|s| stmt(s, family)).collect()))
                    .unwrap_or_default();
                elements += exprs.iter().map(anon_len).sum::<usize>();
                let mut rule = TypedRule {
                    exprs,
                    handle: body.get("handle").and_then(J::as_u64),
                    position: chain.rules.len() + 1,
                    comment: str_of(body, "comment"),
                    line: 0,
                    text: String::new(),
                };
                rule.text = render::render_rule(&rule);
                chain.rules.push(rule);
            }
            "set" | "map" => {
                let (family, tname) = fam_table()?;
                let table = table_mut(&mut rs, family, &tname, i)?;
                let s = set_def(body, kind == "map", i)?;
                elements += s.elements.len();
                table.sets.push(s);
            }
            _ => {
                let (family, tname) = fam_table()?;
                let table = table_mut(&mut rs, family, &tname, i)?;
                let mut b = body.clone();
                if let Some(o) = b.as_object_mut() {
                    for k in ["family", "table", "name", "handle"] {
                        o.remove(k);
                    }
                }
                table.objects.push(NftObject {
                    kind: kind.clone(),
                    name: str_of(body, "name").unwrap_or_default(),
                    text: b.to_string(),
                });
            }
        }
        if elements > limits.max_elements {
            return Err(err(format!(
                "more than {} set elements (limit)",
                limits.max_elements
            )));
        }
    }
    Ok(rs)
}

fn err(message: String) -> ParseError {
    ParseError {
        line: 1,
        column: 1,
        message,
    }
}

fn str_of(v: &J, k: &str) -> Option<String> {
    v.get(k).and_then(J::as_str).map(str::to_string)
}

/// A string or an array of strings.
fn strs(v: Option<&J>) -> Vec<String> {
    match v {
        Some(J::String(s)) => vec![s.clone()],
        Some(J::Array(a)) => a.iter().filter_map(J::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn table_mut<'a>(
    rs: &'a mut NftRuleset,
    family: NftFamily,
    name: &str,
    i: usize,
) -> Result<&'a mut NftTable, ParseError> {
    rs.tables
        .iter_mut()
        .find(|t| t.family == family && t.name == name)
        .ok_or_else(|| {
            err(format!(
                "item {i}: table {family} `{}` was not listed before its members",
                escape(name)
            ))
        })
}

fn anon_len(e: &Expr) -> usize {
    match e {
        Expr::Match(Match {
            rhs: Rhs::Anon(v), ..
        })
        | Expr::Vmap {
            map: MapRef::Anon(v),
            ..
        } => v.len(),
        _ => 0,
    }
}

/// nft's duration spelling: `3h`, `1h30m`, `10s`, `2d`.
pub(crate) fn duration(secs: u64) -> String {
    let mut s = String::new();
    let (d, h, m, sec) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    for (n, u) in [(d, "d"), (h, "h"), (m, "m"), (sec, "s")] {
        if n > 0 {
            s.push_str(&format!("{n}{u}"));
        }
    }
    if s.is_empty() {
        s.push_str("0s");
    }
    s
}

fn set_type(v: &J) -> Option<SetType> {
    match v {
        J::String(s) => Some(SetType::Types(
            s.trim_start_matches("interval ")
                .split(" . ")
                .map(str::to_string)
                .collect(),
        )),
        J::Array(a) => Some(SetType::Types(
            a.iter().filter_map(J::as_str).map(str::to_string).collect(),
        )),
        J::Object(o) => {
            let t = o.get("typeof")?;
            Some(SetType::Typeof(match key(t)? {
                Key::Concat(ks) => ks,
                k => vec![k],
            }))
        }
        _ => None,
    }
}

/// Per concatenation position: does this position hold a quoted string (interface names)?
fn string_positions(t: &SetType) -> Vec<bool> {
    match t {
        SetType::Types(v) => v.iter().map(|t| t == "ifname").collect(),
        SetType::Typeof(ks) => ks.iter().map(key_is_string).collect(),
        SetType::Other(_) => Vec::new(),
    }
}

fn key_is_string(k: &Key) -> bool {
    match k {
        Key::Iface { .. } => true,
        Key::Fib { result, .. } => result == "oifname",
        Key::Ct {
            key: CtKey::Other(o),
            ..
        } => o == "helper",
        Key::Meta(MetaKey::Other(o)) => matches!(
            o.as_str(),
            "iifkind" | "oifkind" | "ibrname" | "obrname" | "ibriport" | "obriport" | "sdifname"
        ),
        _ => false,
    }
}

fn key_string_positions(k: &Key) -> Vec<bool> {
    match k {
        Key::Concat(ks) => ks.iter().map(key_is_string).collect(),
        k => vec![key_is_string(k)],
    }
}

fn set_def(b: &J, is_map: bool, i: usize) -> Result<NftSetDef, ParseError> {
    let name = str_of(b, "name").ok_or_else(|| err(format!("item {i} (set): expected `name`")))?;
    let key_t = b
        .get("type")
        .and_then(set_type)
        .ok_or_else(|| err(format!("item {i} (set {}): expected `type`", escape(&name))))?;
    let data = b.get("map").and_then(set_type);
    let kpos = string_positions(&key_t);
    let dpos = data.as_ref().map(string_positions).unwrap_or_default();
    let elements = b
        .get("elem")
        .and_then(J::as_array)
        .map(|a| a.iter().map(|e| element(e, &kpos, &dpos)).collect())
        .unwrap_or_default();
    let mut extra = Vec::new();
    if let Some(p) = str_of(b, "policy") {
        extra.push(format!("policy {p}"));
    }
    // Statements every element gets (`counter` in the set's declaration).
    for st in b.get("stmt").and_then(J::as_array).into_iter().flatten() {
        match st.as_object().and_then(|o| o.iter().next()) {
            Some((k, J::Null)) => extra.push(k.clone()),
            _ => extra.push(st.to_string()),
        }
    }
    if let Some(g) = b.get("gc-interval").and_then(J::as_u64) {
        extra.push(format!("gc-interval {}", duration(g)));
    }
    Ok(NftSetDef {
        name,
        is_map,
        handle: b.get("handle").and_then(J::as_u64),
        key: key_t,
        data_interval: b
            .get("map")
            .and_then(J::as_str)
            .is_some_and(|m| m.starts_with("interval ")),
        data,
        flags: strs(b.get("flags")),
        timeout: b.get("timeout").and_then(J::as_u64).map(duration),
        size: b.get("size").and_then(J::as_u64),
        comment: str_of(b, "comment"),
        extra,
        elements,
        line: 0,
    })
}

fn element(e: &J, kpos: &[bool], dpos: &[bool]) -> SetElem {
    let (k, d) = match e {
        J::Array(a) if a.len() == 2 => (&a[0], Some(&a[1])),
        _ => (e, None),
    };
    let mut comment = None;
    let mut options = Vec::new();
    let kv = if let Some(inner) = k.get("elem") {
        comment = str_of(inner, "comment");
        for o in ["timeout", "expires"] {
            if let Some(s) = inner.get(o).and_then(J::as_u64) {
                options.push(format!("{o} {}", duration(s)));
            }
        }
        if let Some(c) = inner.get("counter") {
            options.push(counter_text(c));
        }
        inner.get("val").unwrap_or(&J::Null)
    } else {
        k
    };
    let data = d.map(|d| match verdict(d) {
        Some(v) => MapData::Verdict(v),
        None => MapData::Value(value(d, dpos)),
    });
    SetElem {
        key: value(kv, kpos),
        data,
        comment,
        options,
    }
}

fn counter_text(c: &J) -> String {
    match (
        c.get("packets").and_then(J::as_u64),
        c.get("bytes").and_then(J::as_u64),
    ) {
        (Some(p), Some(b)) => format!("counter packets {p} bytes {b}"),
        _ => "counter".into(),
    }
}

/// A JSON value; `strpos[i]` says position `i` of a concatenation is a quoted string.
fn value(v: &J, strpos: &[bool]) -> Value {
    let is_str = strpos.first().copied().unwrap_or(false);
    match v {
        J::String(s) if is_str && s != "*" => Value::Str(s.clone()),
        J::String(s) => word_value(s),
        J::Number(n) => n.as_u64().map_or(Value::Other(n.to_string()), Value::Int),
        // Existence tests (`fib … oif missing`, `exthdr … exists`).
        J::Bool(b) => Value::Sym(if *b { "exists" } else { "missing" }.into()),
        J::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let addr = p
                    .get("addr")
                    .and_then(J::as_str)
                    .and_then(|a| a.parse().ok());
                let len = p
                    .get("len")
                    .and_then(J::as_u64)
                    .and_then(|l| u8::try_from(l).ok());
                if let (Some(a), Some(l)) = (addr, len) {
                    return Value::Prefix(a, l);
                }
            } else if let Some(J::Array(r)) = o.get("range")
                && r.len() == 2
            {
                return Value::Range(
                    Box::new(value(&r[0], strpos)),
                    Box::new(value(&r[1], strpos)),
                );
            } else if let Some(J::Array(c)) = o.get("concat") {
                return Value::Concat(
                    c.iter()
                        .enumerate()
                        .map(|(i, x)| value(x, strpos.get(i..).unwrap_or(&[])))
                        .collect(),
                );
            }
            Value::Other(v.to_string())
        }
        _ => Value::Other(v.to_string()),
    }
}

fn verdict(v: &J) -> Option<Verdict> {
    let (k, b) = v.as_object()?.iter().next()?;
    Some(match k.as_str() {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "continue" => Verdict::Continue,
        "return" => Verdict::Return,
        "jump" => Verdict::Jump(str_of(b, "target")?),
        "goto" => Verdict::Goto(str_of(b, "target")?),
        _ => return None,
    })
}

fn payload_key(proto: &str, field: &str) -> Option<Key> {
    let dir = |f: &str| match f {
        "saddr" | "sport" => Some(Dir::Src),
        "daddr" | "dport" => Some(Dir::Dst),
        _ => None,
    };
    Some(match (proto, field) {
        ("ip" | "ip6", "saddr" | "daddr") => Key::Addr {
            v6: proto == "ip6",
            dir: dir(field)?,
        },
        ("ip", "protocol") => Key::L4Proto {
            via: ProtoVia::IpProtocol,
        },
        ("ip6", "nexthdr") => Key::L4Proto {
            via: ProtoVia::Ip6Nexthdr,
        },
        ("tcp", "flags") => Key::TcpFlags,
        ("tcp" | "udp" | "sctp" | "dccp" | "udplite" | "th", "sport" | "dport") => Key::Port {
            proto: L4Proto::parse(proto),
            dir: dir(field)?,
        },
        ("icmp" | "icmpv6", "type" | "code") => Key::Icmp {
            v6: proto == "icmpv6",
            is_type: field == "type",
        },
        _ => Key::Payload {
            proto: proto.into(),
            field: field.into(),
        },
    })
}

fn meta_key(k: &str) -> Key {
    match k {
        "l4proto" => Key::L4Proto {
            via: ProtoVia::Meta,
        },
        "nfproto" => Key::NfProto,
        "iif" | "oif" | "iifname" | "oifname" => Key::Iface {
            dir: if k.starts_with('i') {
                IfaceDir::In
            } else {
                IfaceDir::Out
            },
            by_name: k.ends_with("name"),
        },
        "mark" => Key::Meta(MetaKey::Mark),
        "pkttype" => Key::Meta(MetaKey::Pkttype),
        "skuid" => Key::Meta(MetaKey::Skuid),
        "skgid" => Key::Meta(MetaKey::Skgid),
        o => Key::Meta(MetaKey::Other(o.into())),
    }
}

fn key(v: &J) -> Option<Key> {
    let (k, b) = v.as_object()?.iter().next()?;
    Some(match k.as_str() {
        "payload" => payload_key(b.get("protocol")?.as_str()?, b.get("field")?.as_str()?)?,
        "meta" => meta_key(b.get("key")?.as_str()?),
        "ct" => {
            let dir = match b.get("dir").and_then(J::as_str) {
                Some("original") => Some(CtDir::Original),
                Some("reply") => Some(CtDir::Reply),
                Some(_) => return None,
                None => None,
            };
            let fam = b.get("family").and_then(J::as_str).map(|f| f == "ip6");
            let ck = match b.get("key")?.as_str()? {
                "state" => CtKey::State,
                "status" => CtKey::Status,
                "mark" => CtKey::Mark,
                "zone" => CtKey::Zone,
                "direction" => CtKey::Direction,
                "saddr" => CtKey::Addr {
                    v6: fam,
                    dir: Dir::Src,
                },
                "daddr" => CtKey::Addr {
                    v6: fam,
                    dir: Dir::Dst,
                },
                "proto-src" => CtKey::ProtoPort(Dir::Src),
                "proto-dst" => CtKey::ProtoPort(Dir::Dst),
                "count" => return None,
                o => CtKey::Other(o.into()),
            };
            Key::Ct { dir, key: ck }
        }
        "fib" => Key::Fib {
            flags: strs(b.get("flags")),
            result: b.get("result")?.as_str()?.into(),
        },
        "numgen" => Key::Numgen {
            random: b.get("mode")?.as_str()? == "random",
            modulus: u32::try_from(b.get("mod")?.as_u64()?).ok()?,
            offset: b
                .get("offset")
                .and_then(J::as_u64)
                .and_then(|o| u32::try_from(o).ok())
                .unwrap_or(0),
        },
        "concat" => Key::Concat(b.as_array()?.iter().map(key).collect::<Option<_>>()?),
        "&" | "|" | "^" => {
            let a = b.as_array()?;
            if a.len() != 2 {
                return None;
            }
            let inner = key(&a[0])?;
            let value = match &a[1] {
                J::Number(n) => n.as_u64()?,
                // `tcp flags & (fin | syn)`: flag names, one or OR'ed.
                v if inner == Key::TcpFlags => tcp_flags_value(v)?,
                _ => return None,
            };
            Key::Masked {
                key: Box::new(inner),
                op: match k.as_str() {
                    "&" => BitOp::And,
                    "|" => BitOp::Or,
                    _ => BitOp::Xor,
                },
                value,
            }
        }
        _ => return None,
    })
}

/// `{"jhash": {"expr": …, "mod": 4, "seed": …, "offset": …}}` / `{"symhash": {…}}` as nft text.
fn hash_text(v: &J) -> Option<String> {
    let (k, b) = v.as_object()?.iter().next()?;
    let mut s = k.clone();
    match k.as_str() {
        "jhash" => {
            s.push(' ');
            s.push_str(&render::render_key(&key(b.get("expr")?)?));
        }
        "symhash" => {}
        _ => return None,
    }
    s.push_str(&format!(" mod {}", b.get("mod")?.as_u64()?));
    if let Some(seed) = b.get("seed").and_then(J::as_u64) {
        s.push_str(&format!(" seed 0x{seed:x}"));
    }
    if let Some(o) = b.get("offset").and_then(J::as_u64) {
        s.push_str(&format!(" offset {o}"));
    }
    Some(s)
}

fn tcp_flags_value(v: &J) -> Option<u64> {
    match v {
        J::String(s) => super::expr::tcp_flag(s),
        J::Array(a) => a
            .iter()
            .try_fold(0, |acc, x| Some(acc | tcp_flags_value(x)?)),
        J::Object(o) if o.len() == 1 => tcp_flags_value(o.get("|")?),
        _ => None,
    }
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

fn anon(v: &J, strpos: &[bool]) -> Option<Vec<SetElem>> {
    let a = v.get("set")?;
    let items: Vec<&J> = match a {
        J::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    Some(items.into_iter().map(|e| element(e, strpos, &[])).collect())
}

fn map_ref(v: &J, strpos: &[bool]) -> Option<MapRef> {
    match v {
        J::String(s) => Some(MapRef::Named(s.strip_prefix('@')?.to_string())),
        o => anon(o, strpos).map(MapRef::Anon),
    }
}

fn stmt(s: &J, family: NftFamily) -> Expr {
    typed_stmt(s, family).unwrap_or_else(|| Expr::Unmodelled {
        text: s.to_string(),
    })
}

fn typed_stmt(s: &J, family: NftFamily) -> Option<Expr> {
    let (k, b) = s.as_object()?.iter().next()?;
    if let Some(v) = verdict(s) {
        return Some(Expr::Verdict(v));
    }
    Some(match k.as_str() {
        "match" => {
            let key = super::canon_key(key(b.get("left")?)?);
            let right = b.get("right")?;
            let strpos = key_string_positions(&key);
            let rhs = match right {
                J::String(s) if s.starts_with('@') => Rhs::SetRef(s[1..].to_string()),
                J::Object(o) if o.contains_key("set") => {
                    super::canon_rhs(Rhs::Anon(anon(right, &strpos)?))
                }
                // A negated bitmask list: `ct state != established,related`.
                J::Object(o) if o.len() == 1 && o.contains_key("|") => Rhs::Values(
                    o["|"]
                        .as_array()?
                        .iter()
                        .map(|x| value(x, &strpos))
                        .collect(),
                ),
                J::Array(a) => Rhs::Values(a.iter().map(|x| value(x, &strpos)).collect()),
                v => Rhs::Values(vec![value(v, &strpos)]),
            };
            let op = match b.get("op")?.as_str()? {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                ">" => Op::Gt,
                "<=" => Op::Le,
                ">=" => Op::Ge,
                "in" if is_bitmask(&key) && matches!(rhs, Rhs::Values(_)) => Op::Implicit,
                "in" => Op::Eq,
                _ => return None,
            };
            Expr::Match(Match { key, op, rhs })
        }
        "vmap" => {
            let key = key(b.get("key")?)?;
            let strpos = key_string_positions(&key);
            Expr::Vmap {
                map: map_ref(b.get("data")?, &strpos)?,
                key,
            }
        }
        "counter" => match b {
            J::String(n) => Expr::Counter {
                counters: None,
                name: Some(n.clone()),
            },
            J::Object(_) => Expr::Counter {
                counters: match (
                    b.get("packets").and_then(J::as_u64),
                    b.get("bytes").and_then(J::as_u64),
                ) {
                    (Some(packets), Some(bytes)) => Some(Counters { packets, bytes }),
                    _ => None,
                },
                name: None,
            },
            _ => Expr::Counter {
                counters: None,
                name: None,
            },
        },
        "log" => {
            let mut options = Vec::new();
            if let Some(l) = str_of(b, "level") {
                options.push(format!("level {l}"));
            }
            let flags = strs(b.get("flags"));
            if !flags.is_empty() {
                options.push(format!("flags {}", flags.join(",")));
            }
            Expr::Log {
                prefix: str_of(b, "prefix"),
                group: b
                    .get("group")
                    .and_then(J::as_u64)
                    .and_then(|g| u32::try_from(g).ok()),
                options,
            }
        }
        "limit" | "quota" | "last" => Expr::Stateful {
            kind: k.clone(),
            text: s.to_string(),
        },
        "notrack" => Expr::Notrack,
        "mangle" => {
            let target = key(b.get("key")?)?;
            let val = b.get("value")?;
            let mark = match &target {
                Key::Meta(MetaKey::Mark) => Some(MarkTarget::Meta),
                Key::Ct {
                    dir: None,
                    key: CtKey::Mark,
                } => Some(MarkTarget::Ct),
                _ => None,
            };
            match mark {
                Some(t) => Expr::SetMark {
                    target: t,
                    value: match val {
                        J::Number(n) => MarkValue::Set(n.as_u64()?),
                        v => match key(v) {
                            Some(Key::Masked {
                                key: inner,
                                op,
                                value,
                            }) if *inner == target => match op {
                                BitOp::Or => MarkValue::Or(value),
                                BitOp::And => MarkValue::And(value),
                                BitOp::Xor => MarkValue::Xor(value),
                            },
                            Some(k) => MarkValue::From { key: k },
                            // Maps, shifts, …: a mark nfscope cannot compute.
                            None => MarkValue::Other(v.to_string()),
                        },
                    },
                },
                None => Expr::Mangle {
                    key: target,
                    value: match val {
                        J::Number(n) => n.to_string(),
                        J::String(s) => s.clone(),
                        o => o.to_string(),
                    },
                },
            }
        }
        "set" => {
            let elem = b.get("elem")?;
            let (kv, options) = match elem.get("elem") {
                Some(inner) => {
                    let mut o = Vec::new();
                    if let Some(t) = inner.get("timeout").and_then(J::as_u64) {
                        o.push(format!("timeout {}", duration(t)));
                    }
                    (inner.get("val")?, o)
                }
                None => (elem, Vec::new()),
            };
            Expr::SetUpdate {
                op: b.get("op")?.as_str()?.to_string(),
                set: b.get("set")?.as_str()?.strip_prefix('@')?.to_string(),
                key: key(kv)?,
                options,
            }
        }
        "dnat" | "snat" | "masquerade" | "redirect" | "tproxy" => {
            let kind = match k.as_str() {
                "dnat" => NatKind::Dnat,
                "snat" => NatKind::Snat,
                "masquerade" => NatKind::Masquerade,
                "redirect" => NatKind::Redirect,
                _ => NatKind::Tproxy,
            };
            let b = if b.is_null() { &J::Null } else { b };
            let family = b.get("family").and_then(J::as_str).map(|f| f == "ip6");
            let addr = match b.get("addr") {
                None => None,
                Some(a) => Some(match a.get("map") {
                    Some(m) => {
                        let key = key(m.get("key")?)?;
                        let strpos = key_string_positions(&key);
                        NatAddr::Map {
                            map: map_ref(m.get("data")?, &strpos)?,
                            key,
                        }
                    }
                    None => NatAddr::Value(value(a, &[])),
                }),
            };
            Expr::Nat(Nat {
                kind,
                family,
                addr,
                port: b.get("port").map(|p| value(p, &[])),
                flags: strs(b.get("flags")),
            })
        }
        "queue" => {
            let mut parts = Vec::new();
            let flags = strs(b.get("flags"));
            if !flags.is_empty() {
                parts.push(format!("flags {}", flags.join(",")));
            }
            match b.get("num") {
                None => {}
                Some(J::Number(n)) => parts.push(format!("to {n}")),
                Some(n) => match value(n, &[]) {
                    v @ Value::Range(..) => {
                        parts.push(format!("to {}", render::render_value(&v, None)))
                    }
                    _ => parts.push(format!("to {}", hash_text(n)?)),
                },
            }
            Expr::Verdict(Verdict::Queue {
                options: parts.join(" "),
            })
        }
        "reject" => {
            let default = match family {
                NftFamily::Ip => "icmp",
                NftFamily::Ip6 => "icmpv6",
                _ => "icmpx",
            };
            let ty = b.get("type").and_then(J::as_str);
            let code = b.get("expr").and_then(J::as_str);
            let with = match (ty, code) {
                (None, None) => None,
                (Some(t), Some("port-unreachable")) if t == default => None,
                (Some("tcp reset"), _) => Some("tcp reset".to_string()),
                (Some(t), Some(c)) => Some(format!("{t} {c}")),
                (Some(t), None) => Some(t.to_string()),
                (None, Some(c)) => Some(format!("{default} {c}")),
            };
            Expr::Verdict(Verdict::Reject { with })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_print_as_nft_does() {
        assert_eq!(duration(10800), "3h");
        assert_eq!(duration(5400), "1h30m");
        assert_eq!(duration(90061), "1d1h1m1s");
        assert_eq!(duration(0), "0s");
    }
}
