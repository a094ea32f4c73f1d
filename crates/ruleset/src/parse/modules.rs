//! Which option names belong to which well-known match module.
//!
//! Owns the small table the rule parser uses to bind a `--option` to its module when restore input
//! writes options out of order (`-m comment … -p tcp --dport 80`) or relies on the implicit protocol
//! match (`-p tcp --dport 80`). Modules missing from the table are "unknown": every option after
//! their `-m` binds to them. It does not validate option values.

/// Option names (without `--`) of a known match module, or `None` for a module not in the table.
pub(crate) fn module_options(module: &str) -> Option<&'static [&'static str]> {
    const PORTS: &[&str] = &["sport", "source-port", "dport", "destination-port"];
    Some(match module {
        "tcp" => &[
            "sport",
            "source-port",
            "dport",
            "destination-port",
            "tcp-flags",
            "syn",
            "tcp-option",
        ],
        "udp" | "udplite" => PORTS,
        "sctp" => &[
            "sport",
            "source-port",
            "dport",
            "destination-port",
            "chunk-types",
        ],
        "dccp" => &[
            "sport",
            "source-port",
            "dport",
            "destination-port",
            "dccp-types",
            "dccp-option",
        ],
        "icmp" => &["icmp-type"],
        "icmp6" | "icmpv6" => &["icmpv6-type"],
        "comment" => &["comment"],
        "conntrack" => &[
            "ctstate",
            "ctproto",
            "ctorigsrc",
            "ctorigdst",
            "ctreplsrc",
            "ctrepldst",
            "ctorigsrcport",
            "ctorigdstport",
            "ctreplsrcport",
            "ctrepldstport",
            "ctstatus",
            "ctexpire",
            "ctdir",
        ],
        "state" => &["state"],
        "mark" | "connmark" => &["mark"],
        "set" => &[
            "match-set",
            "set",
            "return-nomatch",
            "update-counters",
            "update-subcounters",
            "no-update-counters",
            "no-update-subcounters",
            "packets-eq",
            "packets-lt",
            "packets-gt",
            "bytes-eq",
            "bytes-lt",
            "bytes-gt",
        ],
        "addrtype" => &["src-type", "dst-type", "limit-iface-in", "limit-iface-out"],
        "multiport" => &[
            "sports",
            "source-ports",
            "dports",
            "destination-ports",
            "ports",
        ],
        "iprange" => &["src-range", "dst-range"],
        "physdev" => &[
            "physdev-in",
            "physdev-out",
            "physdev-is-in",
            "physdev-is-out",
            "physdev-is-bridged",
        ],
        "owner" => &[
            "uid-owner",
            "gid-owner",
            "socket-exists",
            "suppl-groups",
            "pid-owner",
            "sid-owner",
            "cmd-owner",
        ],
        "statistic" => &["mode", "probability", "every", "packet"],
        "recent" => &[
            "name", "set", "rcheck", "update", "remove", "seconds", "reap", "hitcount", "rttl",
            "rsource", "rdest", "mask",
        ],
        "limit" => &["limit", "limit-burst"],
        "hashlimit" => &[
            "hashlimit",
            "hashlimit-upto",
            "hashlimit-above",
            "hashlimit-burst",
            "hashlimit-mode",
            "hashlimit-srcmask",
            "hashlimit-dstmask",
            "hashlimit-name",
            "hashlimit-htable-size",
            "hashlimit-htable-max",
            "hashlimit-htable-expire",
            "hashlimit-htable-gcinterval",
            "hashlimit-rate-match",
            "hashlimit-rate-interval",
        ],
        "mac" => &["mac-source"],
        "pkttype" => &["pkt-type"],
        "length" => &["length"],
        "ttl" => &["ttl-eq", "ttl-lt", "ttl-gt"],
        "hl" => &["hl-eq", "hl-lt", "hl-gt"],
        "string" => &["algo", "from", "to", "string", "hex-string", "icase"],
        "rpfilter" => &["loose", "validmark", "accept-local", "invert"],
        "socket" => &["transparent", "nowildcard", "restore-skmark"],
        "policy" => &[
            "dir",
            "pol",
            "strict",
            "reqid",
            "spi",
            "proto",
            "mode",
            "tunnel-src",
            "tunnel-dst",
            "next",
        ],
        "tos" => &["tos"],
        "dscp" => &["dscp", "dscp-class"],
        "helper" => &["helper"],
        "nfacct" => &["nfacct-name"],
        "u32" => &["u32"],
        "devgroup" => &["src-group", "dst-group"],
        "cgroup" => &["path", "cgroup"],
        "rt" => &[
            "rt-type",
            "rt-segsleft",
            "rt-len",
            "rt-0-res",
            "rt-0-addrs",
            "rt-0-not-strict",
        ],
        "frag" => &[
            "fragid",
            "fraglen",
            "fragres",
            "fragfirst",
            "fragmore",
            "fraglast",
        ],
        "ipv6header" => &["header", "soft"],
        "hbh" => &["hbh-len", "hbh-opts"],
        "dst" => &["dst-len", "dst-opts"],
        "mh" => &["mh-type"],
        "ah" => &["ahspi", "ahlen", "ahres"],
        "esp" => &["espspi"],
        "connlimit" => &[
            "connlimit-upto",
            "connlimit-above",
            "connlimit-mask",
            "connlimit-saddr",
            "connlimit-daddr",
        ],
        "connbytes" => &["connbytes", "connbytes-dir", "connbytes-mode"],
        "connlabel" => &["label", "set"],
        "time" => &[
            "datestart",
            "datestop",
            "timestart",
            "timestop",
            "monthdays",
            "weekdays",
            "kerneltz",
            "contiguous",
            "utc",
            "localtz",
        ],
        "cpu" => &["cpu"],
        "realm" => &["realm"],
        "quota" => &["quota"],
        "bpf" => &["bytecode", "object-pinned"],
        "ecn" => &["ecn-tcp-cwr", "ecn-tcp-ece", "ecn-ip-ect"],
        "tcpmss" => &["mss"],
        "ipvs" => &[
            "ipvs", "vproto", "vaddr", "vport", "vdir", "vmethod", "vportctl",
        ],
        "osf" => &["genre", "ttl", "log"],
        "cluster" => &[
            "cluster-total-nodes",
            "cluster-local-node",
            "cluster-local-nodemask",
            "cluster-hash-seed",
        ],
        _ => return None,
    })
}

/// Does the known module `module` have option `name`? `false` for unknown modules.
pub(crate) fn module_has(module: &str, name: &str) -> bool {
    module_options(module).is_some_and(|opts| opts.contains(&name))
}

/// The match module `-p PROTO` loads implicitly when an unclaimed option follows, if any.
pub(crate) fn implicit_protocol_module(protocol: &str) -> Option<&'static str> {
    Some(match protocol.to_ascii_lowercase().as_str() {
        "tcp" | "6" => "tcp",
        "udp" | "17" => "udp",
        "sctp" | "132" => "sctp",
        "icmp" | "1" => "icmp",
        "icmpv6" | "ipv6-icmp" | "58" => "icmp6",
        "udplite" | "136" => "udplite",
        "dccp" | "33" => "dccp",
        _ => return None,
    })
}

/// Free-text options whose first argument is taken even when it starts with `-` (getopt's
/// `required_argument`: iptables-save prints `--comment -x` bare), unless it is `!` or an option
/// the rule grammar knows (`--name`, `-j`, `-m`, …).
pub(crate) fn takes_verbatim_argument(name: &str) -> bool {
    matches!(
        name,
        "comment" | "log-prefix" | "nflog-prefix" | "ulog-prefix"
    )
}

/// Free-text options that iptables-save always passes through `xtables_save_string`.
pub(crate) fn is_string_option(name: &str) -> bool {
    takes_verbatim_argument(name)
}
