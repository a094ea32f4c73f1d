//! Root-only: build sets with the real `ipset` tool inside a throwaway network namespace and check
//! that `ipset save`, `ipset list` and `ipset list -t` of the same sets parse to agreeing results.
//! Skips when not root or when `ip`/`ipset` are missing, except under `CI=true`, where it fails.

use std::io::Write as _;
use std::process::{Command, Stdio};

use nfscope_ruleset::{Family, parse_ipsets};

/// Deletes the namespace when dropped, even if the test panics.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("cannot run under CI=true: {why}");
    }
    eprintln!("skipping: {why}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn in_ns(ns: &Netns, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ip netns exec");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
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
    if !is_root() {
        return skip_or_fail("not root");
    }
    let ns = Netns(format!("nfscope-ruleset-ipset-{}", std::process::id()));
    match Command::new("ip").args(["netns", "add", &ns.0]).status() {
        Ok(s) if s.success() => {}
        _ => return skip_or_fail("cannot create a network namespace"),
    }
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
