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
pub(crate) use matches::print_rate;
mod set;
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
        "hashlimit" => matches::hashlimit,
        "connlimit" => matches::connlimit,
        "set" => set::set,
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

/// Decoders from hand-built payloads (the layouts of the uapi headers, host byte order where
/// the kernel uses it); the root test `tests/xt_text.rs` checks them against the save tools.
#[cfg(test)]
mod decoder_tests {
    use super::*;

    /// A payload builder: fields at offsets, zero elsewhere.
    struct Buf(Vec<u8>);

    impl Buf {
        fn new(size: usize) -> Self {
            Self(vec![0; size])
        }
        fn u8(mut self, at: usize, v: u8) -> Self {
            self.0[at] = v;
            self
        }
        fn u16(mut self, at: usize, v: u16) -> Self {
            self.0[at..at + 2].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn be16(mut self, at: usize, v: u16) -> Self {
            self.0[at..at + 2].copy_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, at: usize, v: u32) -> Self {
            self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn u64(mut self, at: usize, v: u64) -> Self {
            self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn bytes(mut self, at: usize, v: &[u8]) -> Self {
            self.0[at..at + v.len()].copy_from_slice(v);
            self
        }
    }

    fn m(family: Family, name: &str, rev: u8, data: Buf) -> String {
        let mut out = String::new();
        match_text(family, name, rev, &data.0, &mut out).unwrap();
        out
    }

    fn t(family: Family, name: &str, rev: u8, data: Buf) -> String {
        let mut out = String::new();
        target_text(family, name, rev, &data.0, &mut out).unwrap();
        out
    }

    const V4: Family = Family::Ipv4;
    const V6: Family = Family::Ipv6;

    #[test]
    fn tcp_udp_and_multiport_ports() {
        let tcp = Buf::new(12)
            .u16(0, 0)
            .u16(2, 0xffff)
            .u16(4, 8080)
            .u16(6, 8080)
            .u8(9, 0x17)
            .u8(10, 0x02)
            .u8(11, 0x02);
        assert_eq!(
            m(V4, "tcp", 0, tcp),
            " -m tcp ! --dport 8080 --tcp-flags FIN,SYN,RST,ACK SYN"
        );
        let udp = Buf::new(12).u16(0, 1000).u16(2, 2000).u16(6, 0xffff);
        assert_eq!(m(V4, "udp", 0, udp), " -m udp --sport 1000:2000");
        let multi = Buf::new(48)
            .u8(0, 1)
            .u8(1, 3)
            .u16(2, 53)
            .u16(4, 8000)
            .u16(6, 8080)
            .u8(33, 1)
            .u8(47, 1);
        assert_eq!(
            m(V4, "multiport", 1, multi),
            " -m multiport ! --dports 53,8000:8080"
        );
    }

    #[test]
    fn conntrack_state_alias_and_ctstate() {
        let ct =
            |flags: u16, states: u16| Buf::new(164).u16(146, flags).u16(150, states).u16(136, 6);
        // STATE | STATE_ALIAS: iptables stored `-m state --state` through conntrack.
        assert_eq!(
            m(V4, "conntrack", 3, ct(1 | 1 << 13, 2 | 4)),
            " -m state --state RELATED,ESTABLISHED"
        );
        assert_eq!(
            m(V4, "conntrack", 3, ct(1 | 2, 1 | 8 | 128)),
            " -m conntrack --ctstate INVALID,NEW,DNAT --ctproto 6"
        );
        let mut out = String::new();
        let err = match_text(V4, "conntrack", 3, &ct(1, 0).0, &mut out).unwrap_err();
        assert!(err.why.contains("state mask"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn marks_addrtype_statistic_limit() {
        let mark = Buf::new(16).u32(0, 0x4000).u32(4, 0x4000).u8(8, 1);
        assert_eq!(m(V4, "mark", 1, mark), " -m mark ! --mark 0x4000/0x4000");
        let full = Buf::new(16).u32(0, 0x1).u32(4, u32::MAX);
        assert_eq!(m(V4, "mark", 1, full), " -m mark --mark 0x1");
        let addrtype = Buf::new(8).u16(2, 1 << 2).u32(4, 2);
        assert_eq!(
            m(V4, "addrtype", 1, addrtype),
            " -m addrtype ! --dst-type LOCAL"
        );
        let random = Buf::new(24).u32(4, 0x4000_0000);
        assert_eq!(
            m(V4, "statistic", 0, random),
            " -m statistic --mode random --probability 0.50000000000"
        );
        let nth = Buf::new(24).u16(0, 1).u32(4, 2);
        assert_eq!(
            m(V4, "statistic", 0, nth),
            " -m statistic --mode nth --every 3 --packet 0"
        );
        let limit = Buf::new(40).u32(0, 10_000 * 60 / 5).u32(4, 10);
        assert_eq!(
            m(V4, "limit", 0, limit),
            " -m limit --limit 5/min --limit-burst 10"
        );
    }

    #[test]
    fn physdev_owner_icmp_hashlimit() {
        let physdev = Buf::new(72)
            .bytes(0, b"eth+")
            .u8(65, 0x01 | 0x04)
            .u8(64, 0x04);
        assert_eq!(
            m(V4, "physdev", 0, physdev),
            r#" -m physdev --physdev-in "eth+" ! --physdev-is-bridged"#
        );
        let owner = Buf::new(20).u32(0, 1337).u32(4, 1337).u8(16, 1).u8(17, 1);
        assert_eq!(m(V4, "owner", 1, owner), " -m owner ! --uid-owner 1337");
        let icmp = Buf::new(8).u8(0, 8).u8(2, 0xff);
        assert_eq!(m(V4, "icmp", 0, icmp), " -m icmp --icmp-type 8");
        let icmp6 = Buf::new(8).u8(0, 1).u8(1, 4).u8(2, 4);
        assert_eq!(m(V6, "icmp6", 0, icmp6), " -m icmp6 --icmpv6-type 1/4");
        let hashlimit = Buf::new(312)
            .bytes(0, b"limited")
            .u64(256, 1_000_000 / 10)
            .u64(264, 5)
            .u32(272, 4 | 0x10)
            .u32(284, 1000)
            .u32(288, 1000)
            .u8(296, 32)
            .u8(297, 32);
        assert_eq!(
            m(V4, "hashlimit", 3, hashlimit),
            " -m hashlimit --hashlimit-above 10/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name limited"
        );
    }

    #[test]
    fn nat_targets_all_layouts() {
        // Revision 2 (`nf_nat_range2`): MAP_IPS | PROTO_SPECIFIED.
        let dnat = Buf::new(48)
            .u32(0, 3)
            .bytes(4, &[10, 0, 0, 1])
            .bytes(20, &[10, 0, 0, 1])
            .be16(36, 8080)
            .be16(38, 8080);
        assert_eq!(
            t(V4, "DNAT", 2, dnat),
            " -j DNAT --to-destination 10.0.0.1:8080"
        );
        let v6 = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let dnat6 = Buf::new(48)
            .u32(0, 3)
            .bytes(4, &v6)
            .bytes(20, &v6)
            .be16(36, 80)
            .be16(38, 80);
        assert_eq!(
            t(V6, "DNAT", 2, dnat6),
            " -j DNAT --to-destination [fd00::1]:80"
        );
        // Revision 0 (`nf_nat_ipv4_multi_range_compat`): one range, an address span.
        let snat = Buf::new(24)
            .u32(0, 1)
            .u32(4, 1)
            .bytes(8, &[192, 0, 2, 1])
            .bytes(12, &[192, 0, 2, 9]);
        assert_eq!(
            t(V4, "SNAT", 0, snat),
            " -j SNAT --to-source 192.0.2.1-192.0.2.9"
        );
        let masq = Buf::new(24).u32(0, 1).u32(4, 16);
        assert_eq!(
            t(V4, "MASQUERADE", 0, masq),
            " -j MASQUERADE --random-fully"
        );
        let redirect = Buf::new(40).u32(0, 2).be16(36, 15001).be16(38, 15001);
        assert_eq!(
            t(V6, "REDIRECT", 0, redirect),
            " -j REDIRECT --to-ports 15001"
        );
        let mut out = String::new();
        let two_ranges = Buf::new(24).u32(0, 2);
        assert!(target_text(V4, "SNAT", 0, &two_ranges.0, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn mark_log_ct_and_friends() {
        let mark = Buf::new(8).u32(0, 0x4000).u32(4, 0x4000);
        assert_eq!(t(V4, "MARK", 2, mark), " -j MARK --set-xmark 0x4000/0x4000");
        let connmark = Buf::new(16).u32(4, u32::MAX).u32(8, 0xff).u8(12, 2);
        assert_eq!(
            t(V4, "CONNMARK", 1, connmark),
            " -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xffffffff"
        );
        let log = Buf::new(32).u8(0, 6).u8(1, 0x08).bytes(2, b"dropped: ");
        assert_eq!(
            t(V4, "LOG", 0, log),
            r#" -j LOG --log-prefix "dropped: " --log-level 6 --log-uid"#
        );
        let nflog = Buf::new(80).u16(4, 100).u16(6, 42);
        assert_eq!(
            t(V4, "NFLOG", 0, nflog),
            " -j NFLOG --nflog-group 100 --nflog-threshold 42"
        );
        let zone = Buf::new(72).u16(2, 1);
        assert_eq!(t(V4, "CT", 2, zone), " -j CT --zone 1");
        let notrack = Buf::new(72).u16(0, 1 | 2);
        assert_eq!(t(V4, "CT", 2, notrack), " -j NOTRACK");
        let tproxy = Buf::new(32)
            .u32(0, 0x1)
            .u32(4, 0x1)
            .bytes(8, &[127, 0, 0, 1])
            .be16(24, 15006);
        assert_eq!(
            t(V4, "TPROXY", 1, tproxy),
            " -j TPROXY --on-port 15006 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1"
        );
        let reject = Buf::new(8).u32(0, 7);
        assert_eq!(
            t(V4, "REJECT", 0, reject),
            " -j REJECT --reject-with tcp-reset"
        );
        let reject6 = Buf::new(8).u32(0, 1);
        assert_eq!(
            t(V6, "REJECT", 0, reject6),
            " -j REJECT --reject-with icmp6-adm-prohibited"
        );
        let mss = Buf::new(8).u16(0, 0xffff);
        assert_eq!(t(V4, "TCPMSS", 0, mss), " -j TCPMSS --clamp-mss-to-pmtu");
    }

    #[test]
    fn wrong_sizes_and_revisions_are_unsupported() {
        let mut out = String::from("-A X");
        for (name, rev, len) in [("tcp", 0, 4), ("mark", 0, 16), ("conntrack", 4, 164)] {
            let err = match_text(V4, name, rev, &vec![0; len], &mut out).unwrap_err();
            assert_eq!((err.kind, err.name.as_str()), ("match", name));
        }
        // A set match of dimension 0 is refused before its name is asked of the kernel.
        let err = match_text(V4, "set", 4, &[0; 48], &mut out).unwrap_err();
        assert!(err.why.contains("dimension 0"), "{err}");
        let err = target_text(V4, "MARK", 2, &[0; 32], &mut out).unwrap_err();
        assert!(err.why.contains("bytes"), "{err}");
        assert_eq!(out, "-A X", "a failed decode leaves the line as it was");
    }
}
