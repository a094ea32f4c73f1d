//! Rule lines `iptables-restore` refuses and accepts, shared by `strict.rs` (nfscope refuses
//! them too, at the right column) and `restore_oracle.rs` (the real tools agree).

/// A `*filter` table with the three built-in chains, a user chain `U` and `body` on line 6.
pub fn filter_with(body: &str) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:U - [0:0]\n{body}\nCOMMIT\n"
    )
}

/// `(rule line, expected 1-based column, words the message must contain)`: each is refused by
/// iptables-restore (both backends, checked in `restore_oracle.rs`) and must be refused here.
pub const BAD_RULES: &[(&str, usize, &[&str])] = &[
    (
        "-A INPUT -p tcp --dport -j ACCEPT",
        25,
        &["--dport", "needs a value", "port"],
    ),
    (
        "-A INPUT -p tcp --dport 80-90 -j ACCEPT",
        25,
        &["80-90", "FIRST:LAST"],
    ),
    ("-A INPUT -p tcp --dport 90:80 -j ACCEPT", 25, &["90:80"]),
    (
        "-A INPUT -p tcp --dport 65536 -j ACCEPT",
        25,
        &["65536", "0-65535"],
    ),
    (
        "-A INPUT -p bogus -j ACCEPT",
        13,
        &["unknown protocol `bogus`"],
    ),
    ("-A INPUT -p 256 -j ACCEPT", 13, &["0-255"]),
    ("-A INPUT -s 999.1.1.1 -j ACCEPT", 13, &["999.1.1.1"]),
    ("-A INPUT -s 10.0.0.1/33 -j ACCEPT", 13, &["33"]),
    (
        "-A INPUT -i abcdefghijklmnop -j ACCEPT",
        13,
        &["interface", "15"],
    ),
    (
        "-A INPUT -m mark --mark 0x1ffffffff -j ACCEPT",
        25,
        &["0x1ffffffff", "32-bit"],
    ),
    (
        "-A INPUT -m mark --mark -j ACCEPT",
        25,
        &["--mark", "needs a value"],
    ),
    (
        "-A INPUT -m conntrack --ctstate NEW,BOGUS -j ACCEPT",
        33,
        &["NEW,BOGUS", "ESTABLISHED"],
    ),
    (
        "-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j ACCEPT",
        39,
        &["15 ports"],
    ),
    (
        "-A INPUT -p tcp -m multiport --dports 22,,80 -j ACCEPT",
        39,
        &["22,,80"],
    ),
    (
        "-A INPUT -m limit --limit 5/fortnight -j ACCEPT",
        27,
        &["5/fortnight", "N/second"],
    ),
    ("-A INPUT -m limit --limit 0/sec -j ACCEPT", 27, &["0/sec"]),
    (
        "-A INPUT -p tcp --tcp-flags SYN -j ACCEPT",
        33,
        &["--tcp-flags", "needs a value"],
    ),
    (
        "-A INPUT -p tcp --syn 80 -j ACCEPT",
        23,
        &["--syn", "takes no value"],
    ),
    (
        "-A INPUT -m statistic --mode random --probability 1.5 -j ACCEPT",
        51,
        &["1.5", "probability"],
    ),
    (
        "-A INPUT -m set --match-set s -j ACCEPT",
        31,
        &["--match-set", "needs a value"],
    ),
    (
        "-A INPUT -j MARK --set-xmark",
        29,
        &["--set-xmark", "needs a value"],
    ),
    (
        "-A INPUT -m comment --comment -j ACCEPT",
        31,
        &["--comment", "needs a value"],
    ),
    (
        "-A INPUT -m addrtype --dst-type LOCAL,BOGUS -j ACCEPT",
        33,
        &["LOCAL,BOGUS"],
    ),
    ("-A INPUT -p icmp --icmp-type 300 -j ACCEPT", 30, &["300"]),
    (
        "-A INPUT -m length --length 70000 -j ACCEPT",
        29,
        &["70000"],
    ),
    ("-P U DROP", 4, &["`U` is not a built-in chain", "policy"]),
];

/// Lines both backends accept, and so must nfscope.
pub const GOOD_RULES: &[&str] = &[
    "-A INPUT -p tcp --dport 80 -j ACCEPT",
    "-A INPUT -p tcp --dport :80 -j ACCEPT",
    "-A INPUT -p tcp --dport ssh -j ACCEPT",
    "-A INPUT -p gre -j ACCEPT",
    "-A INPUT -i abcdefghijklmno -j ACCEPT",
    "-A INPUT -m mark --mark 0x4000/0x4000 -j ACCEPT",
    "-A INPUT -m conntrack --ctstate new,established -j ACCEPT",
    "-A INPUT -m state --state NEW -j ACCEPT",
    "-A INPUT -p tcp -m multiport --dports 22,80,443,8000:8100 -j ACCEPT",
    "-A INPUT -m limit --limit 5/sec --limit-burst 10 -j ACCEPT",
    "-A INPUT -m pkttype --pkt-type unicast -j ACCEPT",
    "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT",
    "-A INPUT -p tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
    "-A INPUT -m set --match-set s src,dst -j ACCEPT",
    "-A INPUT -j MARK --set-xmark 0x4000/0x4000",
    "-A INPUT -p udp -m statistic --mode random --probability 0.50000000000 -j U",
];
