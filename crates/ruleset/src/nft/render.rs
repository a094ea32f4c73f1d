//! Canonical nft text of the typed model, in `nft list ruleset`'s layout (tabs, one member per
//! line, elements on one line). Parsing what this prints gives back the same model.

use std::fmt::Write as _;

use crate::typed::*;

/// The whole ruleset as nft text (valid `nft -f` input for what the model types).
pub fn render_nft(rs: &NftRuleset) -> String {
    let mut out = String::new();
    for n in &rs.notices {
        let _ = writeln!(out, "# {n}");
    }
    for t in &rs.tables {
        let _ = writeln!(
            out,
            "table {} {} {{{}",
            t.family,
            name(&t.name),
            handle(t.handle)
        );
        if let Some(c) = &t.comment {
            let _ = writeln!(out, "\tcomment {}", quote(c));
        }
        if !t.flags.is_empty() {
            let _ = writeln!(out, "\tflags {}", t.flags.join(","));
        }
        for o in &t.objects {
            let _ = writeln!(out, "\t{} {} {}", o.kind, name(&o.name), o.text);
        }
        for s in &t.sets {
            render_set(&mut out, s);
        }
        for c in &t.chains {
            let _ = writeln!(out, "\tchain {} {{{}", name(&c.name), handle(c.handle));
            if let Some(cm) = &c.comment {
                let _ = writeln!(out, "\t\tcomment {}", quote(cm));
            }
            if let Some(b) = &c.base {
                let prio = b
                    .priority_text
                    .clone()
                    .unwrap_or_else(|| b.priority.to_string());
                let mut dev = String::new();
                match b.devices.as_slice() {
                    [] => {}
                    [d] => dev = format!(" device {}", quote(d)),
                    ds => {
                        dev = format!(
                            " devices = {{ {} }}",
                            ds.iter().map(|d| quote(d)).collect::<Vec<_>>().join(", ")
                        )
                    }
                }
                let _ = write!(
                    out,
                    "\t\ttype {} hook {}{dev} priority {prio};",
                    b.kind.as_str(),
                    b.hook.as_str()
                );
                if let Some(p) = b.policy {
                    let _ = write!(
                        out,
                        " policy {};",
                        match p {
                            Policy::Accept => "accept",
                            Policy::Drop => "drop",
                        }
                    );
                }
                out.push('\n');
            }
            for r in &c.rules {
                let _ = writeln!(out, "\t\t{}{}", render_rule(r), handle(r.handle));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
    }
    out
}

fn render_set(out: &mut String, s: &NftSetDef) {
    let _ = writeln!(
        out,
        "\t{} {} {{{}",
        if s.is_map { "map" } else { "set" },
        name(&s.name),
        handle(s.handle)
    );
    let ty = |t: &SetType| match t {
        SetType::Types(v) => v.join(" . "),
        SetType::Typeof(ks) => ks.iter().map(render_key).collect::<Vec<_>>().join(" . "),
        SetType::Other(t) => t.clone(),
    };
    let typeof_ = |t: &SetType| matches!(t, SetType::Typeof(_));
    let kw = if typeof_(&s.key) || s.data.as_ref().is_some_and(typeof_) {
        "typeof"
    } else {
        "type"
    };
    let _ = write!(out, "\t\t{kw} {}", ty(&s.key));
    if let Some(d) = &s.data {
        let _ = write!(
            out,
            " : {}{}",
            if s.data_interval { "interval " } else { "" },
            ty(d)
        );
    }
    out.push('\n');
    if let Some(sz) = s.size {
        let _ = writeln!(out, "\t\tsize {sz}");
    }
    if !s.flags.is_empty() {
        let _ = writeln!(out, "\t\tflags {}", s.flags.join(","));
    }
    if let Some(t) = &s.timeout {
        let _ = writeln!(out, "\t\ttimeout {t}");
    }
    for e in &s.extra {
        let _ = writeln!(out, "\t\t{e}");
    }
    if let Some(c) = &s.comment {
        let _ = writeln!(out, "\t\tcomment {}", quote(c));
    }
    if !s.elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {}", elements(&s.elements));
    }
    out.push_str("\t}\n");
}

/// ` # handle N` as `nft -a` prints it, or nothing.
fn handle(h: Option<u64>) -> String {
    h.map(|h| format!(" # handle {h}")).unwrap_or_default()
}

/// Quotes a string for nft (`"…"`, backslash before `"` and `\`).
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// A name bare when nft prints it bare, else quoted.
fn name(n: &str) -> String {
    if !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '$' | '@'))
    {
        n.to_string()
    } else {
        quote(n)
    }
}

/// One rule's canonical text, comment included, handle not.
pub fn render_rule(r: &TypedRule) -> String {
    let mut s = r
        .exprs
        .iter()
        .map(render_expr)
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(c) = &r.comment {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str("comment ");
        s.push_str(&quote(c));
    }
    s
}

/// A rule's canonical text with counter values left out (`counter` stays): what a metric label
/// or a duplicate check compares, since counters move and the rule does not.
pub fn render_rule_without_counters(r: &TypedRule) -> String {
    if !r.exprs.iter().any(|e| {
        matches!(
            e,
            Expr::Counter {
                counters: Some(_),
                ..
            }
        )
    }) {
        return render_rule(r);
    }
    let mut bare = r.clone();
    for e in &mut bare.exprs {
        if let Expr::Counter { counters, .. } = e {
            *counters = None;
        }
    }
    render_rule(&bare)
}

fn elements(es: &[SetElem]) -> String {
    let parts: Vec<String> = es.iter().map(element).collect();
    format!("{{ {} }}", parts.join(", "))
}

fn element(e: &SetElem) -> String {
    let mut s = render_value(&e.key, None);
    for o in &e.options {
        s.push(' ');
        s.push_str(o);
    }
    if let Some(c) = &e.comment {
        s.push_str(" comment ");
        s.push_str(&quote(c));
    }
    if let Some(d) = &e.data {
        s.push_str(" : ");
        match d {
            MapData::Verdict(v) => s.push_str(&verdict(v)),
            MapData::Value(v) => s.push_str(&render_value(v, None)),
        }
    }
    s
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {}", name(c)),
        Verdict::Goto(c) => format!("goto {}", name(c)),
        Verdict::Reject { with: None } => "reject".into(),
        Verdict::Reject { with: Some(w) } => format!("reject with {w}"),
        Verdict::Queue { options } if options.is_empty() => "queue".into(),
        Verdict::Queue { options } => format!("queue {options}"),
    }
}

fn is_mark(k: &Key) -> bool {
    matches!(
        k,
        Key::Meta(MetaKey::Mark)
            | Key::Ct {
                key: CtKey::Mark,
                ..
            }
    ) || matches!(k, Key::Masked { key, .. } if is_mark(key))
}

/// A value; marks print as nft does (`0x00004000`).
pub fn render_value(v: &Value, key: Option<&Key>) -> String {
    match v {
        Value::Addr(a) => a.to_string(),
        Value::Prefix(a, l) => format!("{a}/{l}"),
        Value::Int(i) if key.is_some_and(is_mark) => format!("0x{i:08x}"),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => quote(s),
        Value::Sym(s) | Value::Other(s) => s.clone(),
        Value::Range(a, b) => format!("{}-{}", render_value(a, key), render_value(b, key)),
        Value::Concat(vs) => vs
            .iter()
            .map(|v| render_value(v, None))
            .collect::<Vec<_>>()
            .join(" . "),
        Value::CatchAll => "*".into(),
    }
}

/// A key as nft prints it.
pub fn render_key(k: &Key) -> String {
    match k {
        Key::Addr { v6, dir } => format!(
            "{} {}",
            if *v6 { "ip6" } else { "ip" },
            match dir {
                Dir::Src => "saddr",
                Dir::Dst => "daddr",
            }
        ),
        Key::Port { proto, dir } => format!(
            "{} {}",
            proto.map_or("th", L4Proto::as_str),
            match dir {
                Dir::Src => "sport",
                Dir::Dst => "dport",
            }
        ),
        Key::L4Proto { via } => match via {
            ProtoVia::Meta => "meta l4proto",
            ProtoVia::IpProtocol => "ip protocol",
            ProtoVia::Ip6Nexthdr => "ip6 nexthdr",
        }
        .into(),
        Key::NfProto => "meta nfproto".into(),
        Key::Iface { dir, by_name } => match (dir, by_name) {
            (IfaceDir::In, false) => "iif",
            (IfaceDir::Out, false) => "oif",
            (IfaceDir::In, true) => "iifname",
            (IfaceDir::Out, true) => "oifname",
        }
        .into(),
        Key::Meta(m) => format!(
            "meta {}",
            match m {
                MetaKey::Mark => "mark",
                MetaKey::Pkttype => "pkttype",
                MetaKey::Skuid => "skuid",
                MetaKey::Skgid => "skgid",
                MetaKey::Other(o) => o,
            }
        ),
        Key::Ct { dir, key } => {
            let mut s = String::from("ct");
            if let Some(d) = dir {
                s.push_str(match d {
                    CtDir::Original => " original",
                    CtDir::Reply => " reply",
                });
            }
            s.push(' ');
            match key {
                CtKey::State => s.push_str("state"),
                CtKey::Status => s.push_str("status"),
                CtKey::Mark => s.push_str("mark"),
                CtKey::Zone => s.push_str("zone"),
                CtKey::Direction => s.push_str("direction"),
                CtKey::Addr { v6, dir } => {
                    if let Some(v6) = v6 {
                        s.push_str(if *v6 { "ip6 " } else { "ip " });
                    }
                    s.push_str(match dir {
                        Dir::Src => "saddr",
                        Dir::Dst => "daddr",
                    });
                }
                CtKey::ProtoPort(Dir::Src) => s.push_str("proto-src"),
                CtKey::ProtoPort(Dir::Dst) => s.push_str("proto-dst"),
                CtKey::XtState => s.push_str("state"),
                CtKey::Other(o) => s.push_str(o),
            }
            s
        }
        Key::Icmp { v6, is_type } => format!(
            "{} {}",
            if *v6 { "icmpv6" } else { "icmp" },
            if *is_type { "type" } else { "code" }
        ),
        Key::TcpFlags => "tcp flags".into(),
        Key::Fib { flags, result } => format!("fib {} {result}", flags.join(" . ")),
        Key::Numgen {
            random,
            modulus,
            offset,
        } => {
            let mut s = format!(
                "numgen {} mod {modulus}",
                if *random { "random" } else { "inc" }
            );
            if *offset != 0 {
                let _ = write!(s, " offset {offset}");
            }
            s
        }
        Key::Hash(t) => t.clone(),
        Key::Payload { proto, field } => format!("{proto} {field}"),
        Key::Masked { key, op, value } if **key == Key::TcpFlags => {
            let names: Vec<&str> = super::expr::TCP_FLAGS
                .iter()
                .filter(|(_, b)| value & b != 0)
                .map(|(n, _)| *n)
                .collect();
            format!("tcp flags {} ({})", op.as_str(), names.join(" | "))
        }
        Key::Masked { key, op, value } => {
            let v = if is_mark(key) {
                format!("0x{value:08x}")
            } else {
                format!("0x{value:x}")
            };
            format!("{} {} {v}", render_key(key), op.as_str())
        }
        Key::Concat(ks) => ks.iter().map(render_key).collect::<Vec<_>>().join(" . "),
        Key::Physdev { dir } => match dir {
            Some(IfaceDir::In) => "physdev in",
            Some(IfaceDir::Out) => "physdev out",
            None => "physdev bridged",
        }
        .into(),
    }
}

fn map_ref(m: &MapRef) -> String {
    match m {
        MapRef::Named(n) => format!("@{n}"),
        MapRef::Anon(es) => elements(es),
    }
}

/// One expression or statement.
pub fn render_expr(e: &Expr) -> String {
    match e {
        Expr::Match(m) => {
            let mut s = render_key(&m.key);
            let op = match (m.op, &m.key) {
                (Op::Eq, Key::Masked { .. }) => "==",
                (o, _) => o.as_str(),
            };
            if !op.is_empty() {
                s.push(' ');
                s.push_str(op);
            }
            s.push(' ');
            match &m.rhs {
                Rhs::SetRef(n) => {
                    s.push('@');
                    s.push_str(n);
                }
                Rhs::Anon(es) => s.push_str(&elements(es)),
                Rhs::Values(vs) => s.push_str(
                    &vs.iter()
                        .map(|v| render_value(v, Some(&m.key)))
                        .collect::<Vec<_>>()
                        .join(if matches!(m.key, Key::Masked { .. }) {
                            " | "
                        } else {
                            ","
                        }),
                ),
            }
            s
        }
        Expr::Vmap { key, map } => format!("{} vmap {}", render_key(key), map_ref(map)),
        Expr::Counter {
            name: Some(n),
            counters: _,
        } => format!("counter name {}", name(n)),
        Expr::Counter {
            counters: Some(c),
            name: None,
        } => format!("counter packets {} bytes {}", c.packets, c.bytes),
        Expr::Counter {
            counters: None,
            name: None,
        } => "counter".into(),
        Expr::Log {
            prefix,
            group,
            options,
        } => {
            let mut s = String::from("log");
            if let Some(p) = prefix {
                s.push_str(" prefix ");
                s.push_str(&quote(p));
            }
            if let Some(g) = group {
                let _ = write!(s, " group {g}");
            }
            for o in options {
                s.push(' ');
                s.push_str(o);
            }
            s
        }
        Expr::Stateful { text, .. } | Expr::Unmodelled { text } => text.clone(),
        Expr::Notrack => "notrack".into(),
        Expr::SetMark { target, value } => {
            let k = match target {
                MarkTarget::Meta => Key::Meta(MetaKey::Mark),
                MarkTarget::Ct => Key::Ct {
                    dir: None,
                    key: CtKey::Mark,
                },
            };
            let kt = render_key(&k);
            let v = match value {
                MarkValue::Set(v) => format!("0x{v:08x}"),
                MarkValue::Or(v) => format!("{kt} | 0x{v:08x}"),
                MarkValue::And(v) => format!("{kt} & 0x{v:08x}"),
                MarkValue::Xor(v) => format!("{kt} ^ 0x{v:08x}"),
                MarkValue::From { key } => render_key(key),
                // No nft form (see `MarkValue::Copy`): the kernel's expression, spelled nft-like.
                MarkValue::Copy { key, mask, clear } => format!(
                    "{kt} & 0x{:08x} ^ {} & 0x{mask:08x}",
                    !clear & 0xffff_ffff,
                    render_key(key)
                ),
                MarkValue::Other(t) => t.clone(),
            };
            format!("{kt} set {v}")
        }
        Expr::Mangle { key, value } => format!("{} set {value}", render_key(key)),
        Expr::SetUpdate {
            op,
            set,
            key,
            options,
        } => {
            let mut s = format!("{op} @{set} {{ {}", render_key(key));
            for o in options {
                s.push(' ');
                s.push_str(o);
            }
            s.push_str(" }");
            s
        }
        Expr::Nat(n) => {
            let mut s = n.kind.as_str().to_string();
            if let Some(v6) = n.family {
                s.push_str(if v6 { " ip6" } else { " ip" });
            }
            match (&n.addr, &n.port) {
                (None, None) => {}
                (Some(NatAddr::Map { key, map }), _) => {
                    let _ = write!(s, " to {} map {}", render_key(key), map_ref(map));
                }
                (Some(NatAddr::Value(a)), port) => {
                    let a_txt = match a {
                        Value::Addr(std::net::IpAddr::V6(_)) if port.is_some() => {
                            format!("[{}]", render_value(a, None))
                        }
                        Value::Range(x, _)
                            if port.is_some()
                                && matches!(**x, Value::Addr(std::net::IpAddr::V6(_))) =>
                        {
                            format!("[{}]", render_value(a, None))
                        }
                        _ => render_value(a, None),
                    };
                    s.push_str(" to ");
                    s.push_str(&a_txt);
                    if let Some(p) = port {
                        s.push(':');
                        s.push_str(&render_value(p, None));
                    }
                }
                (None, Some(p)) => {
                    s.push_str(" to :");
                    s.push_str(&render_value(p, None));
                }
            }
            for f in &n.flags {
                s.push(' ');
                s.push_str(f);
            }
            s
        }
        Expr::Verdict(v) => verdict(v),
    }
}
