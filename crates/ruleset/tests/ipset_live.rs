//! Root-only: build sets with the real `ipset` tool inside a throwaway network namespace and check
//! that `ipset save`, `ipset list` and `ipset list -t` of the same sets parse to agreeing results.
//! Skips when not root or when `ip`/`ipset` are missing, except under `CI=true`, where it fails.

use std::process::Command;

use nfscope_ruleset::{Family, parse_ipsets};
use nfscope_test_support::{TestNetns, root_or_skip, skip_unless};

const TEST: &str = "live_ipset_outputs_parse_and_agree";

fn skip_or_fail(why: &str) {
    skip_unless(TEST, false, why);
}

fn in_ns(ns: &TestNetns, args: &[&str], stdin: Option<&str>) -> String {
    let out = match stdin {
        Some(text) => ns.exec_input(args, text),
        None => ns.exec(args),
    };
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const SETS: &str = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 comment\n\
add KUBE-CLUSTER-IP 10.96.0.1,tcp:443 comment \"default/kubernetes:https\"\n\
add KUBE-CLUSTER-IP 10.96.0.10,udp:53\n\
create inet6:kube-router-svip hash:ip family inet6 timeout 300\n\
add inet6:kube-router-svip 2001:db8::1 timeout 0\n\
create weave-P.B|!ZhkAr5q=XZ?3}tMBA+0 hash:net counters\n\
add weave-P.B|!ZhkAr5q=XZ?3}tMBA+0 10.32.0.0/12 packets 5 bytes 300\n\
create KUBE-LIST list:set\n\
add KUBE-LIST KUBE-CLUSTER-IP\n";

#[test]
fn live_ipset_outputs_parse_and_agree() {
    if !root_or_skip(TEST) {
        return;
    }
    let Ok(ns) = TestNetns::new("ruleset-ipset") else {
        return skip_or_fail("cannot create a network namespace");
    };
    if Command::new("ipset").arg("--version").output().is_err() {
        return skip_or_fail("ipset not installed");
    }
    in_ns(&ns, &["ipset", "restore"], Some(SETS));
    let save = parse_ipsets(&in_ns(&ns, &["ipset", "save"], None)).unwrap();
    let list = parse_ipsets(&in_ns(&ns, &["ipset", "list"], None)).unwrap();
    let terse = parse_ipsets(&in_ns(&ns, &["ipset", "list", "-t"], None)).unwrap();

    let names = |s: &[nfscope_ruleset::IpSet]| s.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
    let expected = [
        "KUBE-CLUSTER-IP",
        "inet6:kube-router-svip",
        "weave-P.B|!ZhkAr5q=XZ?3}tMBA+0",
        "KUBE-LIST",
    ];
    for sets in [&save, &list, &terse] {
        let mut got = names(sets);
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
    }
    let find = |sets: &[nfscope_ruleset::IpSet], n: &str| {
        sets.iter().find(|s| s.name == n).cloned().unwrap()
    };
    let cluster = find(&list, "KUBE-CLUSTER-IP");
    assert_eq!((cluster.entries, cluster.references), (2, Some(1)));
    assert_eq!(find(&terse, "KUBE-CLUSTER-IP").entries, 2);
    assert!(find(&terse, "KUBE-CLUSTER-IP").members.is_empty());
    assert_eq!(
        find(&save, "inet6:kube-router-svip").family,
        Some(Family::Ipv6)
    );
    assert_eq!(
        find(&save, "weave-P.B|!ZhkAr5q=XZ?3}tMBA+0").members,
        vec!["10.32.0.0/12"]
    );
    assert_eq!(find(&list, "KUBE-LIST").members, vec!["KUBE-CLUSTER-IP"]);
}
