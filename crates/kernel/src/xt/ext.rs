//! One x_tables extension's payload → its `iptables-save` text.
//!
//! [`match_text`] and [`target_text`] append exactly what `iptables-save` prints for a match
//! (` -m NAME` and its options) or a target (` -j NAME` and its options), given the extension's
//! name, revision and data (the bytes after the 32-byte `xt_entry_match`/`xt_entry_target` head in
//! legacy entries, `NFTA_MATCH_INFO`/`NFTA_TARGET_INFO` in iptables-nft rules). Layouts follow the
//! kernel's uapi headers (`linux/netfilter/xt_*.h`), printing follows iptables 1.8's
//! `extensions/lib*t_*.c` save functions. Anything not modelled here — an unknown name, an
//! unexpected revision or size — is [`Unsupported`].

use nfscope_ruleset::Family;

mod bytes;
pub(crate) use bytes::{ipv6, prefix_len};
mod matches;
mod targets;

/// What one decoder returns: `Err(why)` when the payload is not modelled exactly.
type Decoded = Result<(), String>;
/// One decoder: (family, revision, data, out).
type Decoder = fn(Family, u8, &[u8], &mut String) -> Decoded;

/// The modelled matches, by extension name.
fn match_decoder(name: &str) -> Option<Decoder> {
    Some(match name {
        "comment" => comment,
        "mark" => matches::mark,
        "connmark" => matches::connmark,
        "state" => matches::state,
        "conntrack" => matches::conntrack,
        "multiport" => matches::multiport,
        "tcp" => matches::tcp,
        "udp" => matches::udp,
        "icmp" => matches::icmp,
        "icmp6" => matches::icmp6,
        "addrtype" => matches::addrtype,
        "statistic" => matches::statistic,
        "physdev" => matches::physdev,
        "mac" => matches::mac,
        "iprange" => matches::iprange,
        "owner" => matches::owner,
        "socket" => matches::socket,
        "limit" => matches::limit,
        "recent" => matches::recent,
        "length" => matches::length,
        "pkttype" => matches::pkttype,
        "tcpmss" => matches::tcpmss,
        "rpfilter" => matches::rpfilter,
        "ttl" => matches::ttl,
        _ => return None,
    })
}

/// The modelled targets, by extension name.
fn target_decoder(name: &str) -> Option<Decoder> {
    Some(match name {
        "REJECT" => targets::reject,
        "DNAT" => targets::dnat,
        "SNAT" => targets::snat,
        "MASQUERADE" => targets::masquerade,
        "REDIRECT" => targets::redirect,
        "NETMAP" => targets::netmap,
        "MARK" => targets::mark,
        "CONNMARK" => targets::connmark,
        "LOG" => targets::log,
        "NFLOG" => targets::nflog,
        "CT" => targets::ct,
        "NOTRACK" => targets::notrack,
        "TPROXY" => targets::tproxy,
        "TCPMSS" => targets::tcpmss,
        "CHECKSUM" => targets::checksum,
        "DSCP" => targets::dscp,
        "TOS" => targets::tos,
        _ => return None,
    })
}

/// Runs `decoder`; on failure `out` is left as it was.
fn run(
    kind: &'static str,
    decoder: Option<Decoder>,
    (family, name, revision, data): (Family, &str, u8, &[u8]),
    out: &mut String,
) -> Result<(), Unsupported> {
    let Some(decode) = decoder else {
        return Err(unsupported(kind, name, revision, "extension not modelled"));
    };
    let len = out.len();
    decode(family, revision, data, out).map_err(|why| {
        out.truncate(len);
        unsupported(kind, name, revision, why)
    })
}

/// `comment` (`xt_comment_info`: `char comment[256]`).
fn comment(_: Family, revision: u8, data: &[u8], out: &mut String) -> Decoded {
    if revision != 0 {
        return Err("revision not modelled".into());
    }
    out.push_str(" -m comment --comment");
    save_string(&nul_terminated(data, 256), out);
    Ok(())
}

/// A payload this module cannot render exactly; the reader falls back to the save tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsupported {
    /// `"match"` or `"target"`.
    pub kind: &'static str,
    /// The extension's name.
    pub name: String,
    /// The extension's revision.
    pub revision: u8,
    /// What did not fit (unknown extension, size mismatch, flag not modelled, …).
    pub why: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} revision {}: {}",
            self.kind, self.name, self.revision, self.why
        )
    }
}

fn unsupported(
    kind: &'static str,
    name: &str,
    revision: u8,
    why: impl Into<String>,
) -> Unsupported {
    Unsupported {
        kind,
        name: name.to_owned(),
        revision,
        why: why.into(),
    }
}

/// Appends ` -m NAME …` for one match, as `iptables-save` prints it.
pub(crate) fn match_text(
    family: Family,
    name: &str,
    revision: u8,
    data: &[u8],
    out: &mut String,
) -> Result<(), Unsupported> {
    run(
        "match",
        match_decoder(name),
        (family, name, revision, data),
        out,
    )
}

/// Appends ` -j NAME …` for one named target, as `iptables-save` prints it. Standard verdicts
/// and jumps (the empty target name) are the reader's: they depend on where the rule sits.
pub(crate) fn target_text(
    family: Family,
    name: &str,
    revision: u8,
    data: &[u8],
    out: &mut String,
) -> Result<(), Unsupported> {
    run(
        "target",
        target_decoder(name),
        (family, name, revision, data),
        out,
    )
}

/// The bytes up to the first NUL (at most `max`), lossily as UTF-8.
fn nul_terminated(data: &[u8], max: usize) -> std::borrow::Cow<'_, str> {
    let data = &data[..data.len().min(max)];
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end])
}

/// `xtables_save_string`: a space, then the value bare when it is only `[A-Za-z0-9_-]`, else in
/// double quotes with `"`, `\` and `'` escaped by a backslash.
pub(crate) fn save_string(value: &str, out: &mut String) {
    out.push(' ');
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_is_quoted_like_xtables_save_string() {
        let mut out = String::new();
        let mut data = b"default/kubernetes:https cluster IP".to_vec();
        data.resize(256, 0);
        match_text(Family::Ipv4, "comment", 0, &data, &mut out).unwrap();
        assert_eq!(
            out,
            r#" -m comment --comment "default/kubernetes:https cluster IP""#
        );
        out.clear();
        match_text(Family::Ipv4, "comment", 0, b"KUBE-MARK\0", &mut out).unwrap();
        assert_eq!(out, " -m comment --comment KUBE-MARK");
    }

    #[test]
    fn unknown_extensions_are_unsupported_not_guessed() {
        let mut out = String::new();
        let err = match_text(Family::Ipv4, "nosuchmatch", 0, &[], &mut out).unwrap_err();
        assert_eq!(err.name, "nosuchmatch");
        assert!(out.is_empty());
    }
}
