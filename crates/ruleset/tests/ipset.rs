//! `ipset save`, `ipset list` and `ipset list -t` parsing, over the corpus and real captures.
//!
//! The fixtures in `tests/fixtures/ipset-*.txt` were captured from ipset v7.17 inside a throwaway
//! network namespace (same sets restored, then `ipset list`, `ipset list -t`, `ipset save`).

mod common;

use nfscope_ruleset::{Family, IpSet, parse_ipsets};
use nfscope_test_support::corpus_files;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn by_name<'a>(sets: &'a [IpSet], name: &str) -> &'a IpSet {
    sets.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no set {name}"))
}

#[test]
fn corpus_ipset_saves_parse_with_inet6_names_verbatim() {
    for (name, text) in corpus_files("ipset") {
        let sets = parse_ipsets(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let creates = text.lines().filter(|l| l.starts_with("create ")).count();
        let adds = text.lines().filter(|l| l.starts_with("add ")).count();
        assert_eq!(sets.len(), creates, "{name}");
        assert_eq!(
            sets.iter().map(|s| s.members.len()).sum::<usize>(),
            adds,
            "{name}"
        );
        for set in &sets {
            let expected = if set.name.starts_with("inet6:") {
                Family::Ipv6
            } else {
                Family::Ipv4
            };
            assert_eq!(set.family, Some(expected), "{name}: {}", set.name);
            assert_eq!(set.entries, set.members.len() as u64);
        }
    }
}

#[test]
fn corpus_netpol_sets_have_expected_members() {
    let (_, text) = corpus_files("ipset")
        .into_iter()
        .find(|(n, _)| n.starts_with("kube-router-ipset_test"))
        .unwrap();
    let sets = parse_ipsets(&text).unwrap();
    let svip = by_name(&sets, "inet6:kube-router-svip-prt");
    assert_eq!(svip.set_type, "hash:ip,port");
    assert_eq!(
        svip.members,
        vec![
            "2001:db8:42:1200::,tcp:5000",
            "2001:db8:42:1::423b,tcp:5000"
        ]
    );
    assert!(
        svip.header
            .contains(&("timeout".to_owned(), "0".to_owned()))
    );
    assert!(
        svip.header
            .contains(&("initval".to_owned(), "0xdf8a8ddd".to_owned()))
    );
}

#[test]
fn save_list_and_terse_list_agree() {
    let save = parse_ipsets(&fixture("ipset-save.txt")).unwrap();
    let list = parse_ipsets(&fixture("ipset-list.txt")).unwrap();
    let terse = parse_ipsets(&fixture("ipset-list-terse.txt")).unwrap();
    let names = |sets: &[IpSet]| sets.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&save), names(&list));
    assert_eq!(names(&save), names(&terse));
    for ((s, l), t) in save.iter().zip(&list).zip(&terse) {
        assert_eq!(
            (&s.set_type, s.family),
            (&l.set_type, l.family),
            "{}",
            s.name
        );
        assert_eq!(
            (&s.set_type, s.family),
            (&t.set_type, t.family),
            "{}",
            s.name
        );
        assert_eq!(s.members, l.members, "{}", s.name);
        assert!(t.members.is_empty());
        assert_eq!(s.entries, l.entries);
        assert_eq!(
            s.entries, t.entries,
            "terse output still says how many entries"
        );
        assert!(l.memory_bytes.is_some() && l.references.is_some() && s.memory_bytes.is_none());
    }
}

#[test]
fn list_output_details() {
    let list = parse_ipsets(&fixture("ipset-list.txt")).unwrap();
    let cluster = by_name(&list, "KUBE-CLUSTER-IP");
    assert_eq!(cluster.references, Some(1), "KUBE-LIST refers to it");
    let mut members = cluster.members.clone();
    members.sort();
    assert_eq!(
        members,
        vec!["10.96.0.1,tcp:443", "10.96.0.10,udp:53"],
        "comments are not part of members"
    );
    assert!(
        cluster
            .header
            .contains(&("comment".to_owned(), String::new()))
    );
    let weave = by_name(&list, "weave-P.B|!ZhkAr5q=XZ?3}tMBA+0");
    assert_eq!(weave.members, vec!["10.32.0.0/12"]);
    assert_eq!(
        by_name(&list, "inet6:kube-router-svip").family,
        Some(Family::Ipv6)
    );
    let list_set = by_name(&list, "KUBE-LIST");
    assert_eq!(
        (list_set.family, list_set.members.as_slice()),
        (None, &["KUBE-CLUSTER-IP".to_owned()][..])
    );
    assert_eq!(by_name(&list, "empty-set").entries, 0);
    assert_eq!(
        by_name(&list, "bm").header,
        vec![("range".to_owned(), "0-1024".to_owned())]
    );
}

#[test]
fn member_comments_with_colons_stay_members() {
    let text = "Name: s\nType: hash:ip\nHeader: family inet comment\nNumber of entries: 2\nMembers:\n\
                10.0.0.1 comment \"ns/svc: port 80\"\nfd00::1 timeout 5\n";
    let sets = parse_ipsets(text).unwrap();
    assert_eq!(sets[0].members, vec!["10.0.0.1", "fd00::1"]);
}

#[test]
fn crlf_and_blank_lines_are_tolerated() {
    let text = "\r\ncreate a hash:net family inet6 hashsize 64\r\n\r\nadd a fd00::/8\r\n";
    let sets = parse_ipsets(text).unwrap();
    assert_eq!(
        (sets[0].family, sets[0].members.as_slice()),
        (Some(Family::Ipv6), &["fd00::/8".to_owned()][..])
    );
}

#[test]
fn errors_have_line_and_column() {
    let e = parse_ipsets("create a hash:ip\nadd b 10.0.0.1\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 5));
    assert!(e.message.contains("`b`"), "{e}");
    let e = parse_ipsets("Name: a\nSize in memory: lots\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 17));
    let e = parse_ipsets("hello\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 1));
    let e = parse_ipsets("create a hash:ip\ncreate a hash:ip\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 8));
}

#[test]
fn save_lines_right_after_a_list_block_are_not_headers() {
    let text = "Name: a\nType: hash:ip\nHeader: family inet\ncreate inet6:b hash:ip family inet6\nadd inet6:b fd00::1\n";
    let sets = parse_ipsets(text).unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(
        (sets[1].name.as_str(), sets[1].members.len()),
        ("inet6:b", 1)
    );
}
