//! One small hand-written dump per annotation pattern: how evidence flows between chains.

use nfscope_annotate::{
    Annotation, Annotations, HashCheck, Meaning, Owner, PolicyVerdict, ServiceKind, ServicePort,
    annotate,
};
use nfscope_ruleset::{ParseOptions, Ruleset, parse_ruleset};

fn parse(text: &str) -> Ruleset {
    parse_ruleset(text, &ParseOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// (table index, chain index) of a chain by name.
fn find(ruleset: &Ruleset, table: &str, chain: &str) -> (usize, usize) {
    let ti = ruleset.tables.iter().position(|t| t.name == table).unwrap();
    let ci = ruleset.tables[ti]
        .chains
        .iter()
        .position(|c| c.name == chain)
        .unwrap();
    (ti, ci)
}

fn chain<'a>(a: &'a Annotations, r: &Ruleset, table: &str, name: &str) -> &'a Annotation {
    let (ti, ci) = find(r, table, name);
    a.chain(ti, ci)
}

fn rule<'a>(
    a: &'a Annotations,
    r: &Ruleset,
    table: &str,
    name: &str,
    idx0: usize,
) -> &'a Annotation {
    let (ti, ci) = find(r, table, name);
    a.rule(ti, ci, idx0)
}

fn sp(text: &str) -> ServicePort {
    ServicePort::parse(text).unwrap()
}

#[test]
fn old_kube_proxy_without_comments_gets_meaning_from_jumps_and_hash_siblings() {
    let r = parse(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]\n:KUBE-XLB-NPX46M4PTMTKRN6Y - [0:0]\n\
         :KUBE-SEP-QAX236RR3UXXQODE - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
         -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment \"default/kubernetes:https cluster IP\" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y\n\
         -A KUBE-SVC-NPX46M4PTMTKRN6Y -j KUBE-SEP-QAX236RR3UXXQODE\n\
         -A KUBE-XLB-NPX46M4PTMTKRN6Y -j KUBE-SEP-QAX236RR3UXXQODE\n\
         -A KUBE-SEP-QAX236RR3UXXQODE -s 10.128.0.183/32 -j KUBE-MARK-MASQ\n\
         -A KUBE-SEP-QAX236RR3UXXQODE -p tcp -m tcp -j DNAT --to-destination 10.128.0.183:6443\nCOMMIT\n",
    );
    let a = annotate(&r);
    let https = sp("default/kubernetes:https");
    let endpoint = Meaning::KubeEndpoint {
        service: https.clone(),
        endpoint: "10.128.0.183:6443".into(),
    };
    assert_eq!(
        chain(&a, &r, "nat", "KUBE-SVC-NPX46M4PTMTKRN6Y").meaning,
        Some(Meaning::KubeService {
            service: https.clone(),
            kind: None
        })
    );
    assert_eq!(
        chain(&a, &r, "nat", "KUBE-XLB-NPX46M4PTMTKRN6Y").meaning,
        Some(Meaning::KubeService {
            service: https,
            kind: Some(ServiceKind::LocalEndpoints)
        })
    );
    assert_eq!(
        chain(&a, &r, "nat", "KUBE-SEP-QAX236RR3UXXQODE").meaning,
        Some(endpoint.clone())
    );
    // The comment-less SVC→SEP jump and the SEP's own rules carry the endpoint.
    assert_eq!(
        rule(&a, &r, "nat", "KUBE-SVC-NPX46M4PTMTKRN6Y", 0).meaning,
        Some(endpoint.clone())
    );
    assert_eq!(
        rule(&a, &r, "nat", "KUBE-SEP-QAX236RR3UXXQODE", 0).meaning,
        Some(endpoint)
    );
    // Only the endpoint's DNAT counts its new connections (not the hairpin MASQ, not the jump).
    let counts = |chain: &str, i: usize| rule(&a, &r, "nat", chain, i).counts_endpoint_connections;
    assert!(counts("KUBE-SEP-QAX236RR3UXXQODE", 1));
    assert!(!counts("KUBE-SEP-QAX236RR3UXXQODE", 0));
    assert!(!counts("KUBE-SVC-NPX46M4PTMTKRN6Y", 0));
    let (ti, ci) = find(&r, "nat", "KUBE-SEP-QAX236RR3UXXQODE");
    assert_eq!(
        a.hash_check(ti, ci, "KUBE-SEP-QAX236RR3UXXQODE"),
        HashCheck::Matches
    );
    assert_eq!(a.chain_protocol(ti, ci), Some("tcp"));
    // KUBE-MARK-MASQ is jumped to with service comments elsewhere, but is no service's chain.
    assert_eq!(chain(&a, &r, "nat", "KUBE-MARK-MASQ").meaning, None);
}

#[test]
fn a_chain_named_for_another_service_is_a_hash_mismatch() {
    // The chain name is default/kubernetes:https's hash, the comments say another service.
    let r = parse(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]\n\
         -A KUBE-SERVICES -d 10.96.0.2/32 -p tcp -m comment --comment \"default/other:https cluster IP\" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y\n\
         COMMIT\n",
    );
    let a = annotate(&r);
    let (ti, ci) = find(&r, "nat", "KUBE-SVC-NPX46M4PTMTKRN6Y");
    assert_eq!(
        a.hash_check(ti, ci, "KUBE-SVC-NPX46M4PTMTKRN6Y"),
        HashCheck::Mismatch {
            service_port: "default/other:https".into(),
            protocol: "tcp".into()
        }
    );
    let (ti, ci) = find(&r, "nat", "KUBE-SERVICES");
    assert_eq!(a.hash_check(ti, ci, "KUBE-SERVICES"), HashCheck::Unknown);
}

#[test]
fn garbled_dnat_falls_back_to_the_hairpin_source_and_skips_the_hash() {
    let r = parse(
        "*nat\n:KUBE-SEP-5JL6OY6WVFSZ67SX - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
         -A KUBE-SEP-5JL6OY6WVFSZ67SX -s 20.225.0.9/32 -m comment --comment \"kube-system/kube-dns:metrics\" -j KUBE-MARK-MASQ\n\
         -A KUBE-SEP-5JL6OY6WVFSZ67SX -p tcp -m comment --comment \"kube-system/kube-dns:metrics\" -m tcp -j DNAT --to-destination 0.0.0.0:0\n\
         COMMIT\n",
    );
    let a = annotate(&r);
    let expected = Meaning::KubeEndpoint {
        service: sp("kube-system/kube-dns:metrics"),
        endpoint: "20.225.0.9".into(),
    };
    assert_eq!(
        chain(&a, &r, "nat", "KUBE-SEP-5JL6OY6WVFSZ67SX").meaning,
        Some(expected)
    );
    let (ti, ci) = find(&r, "nat", "KUBE-SEP-5JL6OY6WVFSZ67SX");
    assert_eq!(
        a.hash_check(ti, ci, "KUBE-SEP-5JL6OY6WVFSZ67SX"),
        HashCheck::Unknown
    );
}

#[test]
fn kube_router_policy_chain_gets_its_namespace_from_the_pod_that_runs_it() {
    let r = parse(
        "*filter\n:KUBE-POD-FW-AAAA - [0:0]\n:KUBE-NWPLCY-BBBB - [0:0]\n:KUBE-NWPLCY-CCCC - [0:0]\n\
         -A KUBE-POD-FW-AAAA -m comment --comment \"run through nw policy allow-web\" -j KUBE-NWPLCY-BBBB\n\
         -A KUBE-POD-FW-AAAA -m comment --comment \"rule to REJECT traffic destined for POD name:web-1 namespace: shop\" -m mark ! --mark 0x10000/0x10000 -j REJECT\n\
         -A KUBE-NWPLCY-CCCC -m comment --comment \"rule to ACCEPT traffic from all sources to dest pods selected by policy name: allow-db namespace data\" -j MARK --set-xmark 0x10000/0x10000\n\
         COMMIT\n",
    );
    let a = annotate(&r);
    let pod = Meaning::KubeRouterPod {
        namespace: "shop".into(),
        pod: "web-1".into(),
    };
    assert_eq!(
        chain(&a, &r, "filter", "KUBE-POD-FW-AAAA").meaning,
        Some(pod)
    );
    let web = Meaning::KubeRouterPolicy {
        namespace: Some("shop".into()),
        policy: "allow-web".into(),
    };
    assert_eq!(
        chain(&a, &r, "filter", "KUBE-NWPLCY-BBBB").meaning,
        Some(web.clone())
    );
    assert_eq!(
        rule(&a, &r, "filter", "KUBE-POD-FW-AAAA", 0).meaning,
        Some(web)
    );
    assert_eq!(
        rule(&a, &r, "filter", "KUBE-POD-FW-AAAA", 1).policy_verdict,
        Some(PolicyVerdict::Deny)
    );
    let db = Meaning::KubeRouterPolicy {
        namespace: Some("data".into()),
        policy: "allow-db".into(),
    };
    assert_eq!(
        chain(&a, &r, "filter", "KUBE-NWPLCY-CCCC").meaning,
        Some(db)
    );
    // Policy-chain accepts are counted at the pod firewall, not here.
    assert_eq!(
        rule(&a, &r, "filter", "KUBE-NWPLCY-CCCC", 0).policy_verdict,
        None
    );
}

#[test]
fn calico_policy_name_comes_from_the_first_rule_comment() {
    let r = parse(
        "*filter\n:cali-pi-_DGlcbEzkd1cvh5X1F7M - [0:0]\n:cali-pri-kns.shop - [0:0]\n\
         -A cali-pi-_DGlcbEzkd1cvh5X1F7M -m comment --comment \"cali:abc\" -m comment --comment \"Policy shop/knp.default.allow-web ingress\" -j MARK --set-xmark 0x10000/0x10000\n\
         -A cali-pi-_DGlcbEzkd1cvh5X1F7M -m comment --comment \"cali:def\" -j DROP\n\
         COMMIT\n",
    );
    let a = annotate(&r);
    let policy = Meaning::CalicoPolicy {
        policy: "shop/knp.default.allow-web".into(),
        direction: nfscope_annotate::Direction::Ingress,
    };
    assert_eq!(
        chain(&a, &r, "filter", "cali-pi-_DGlcbEzkd1cvh5X1F7M").meaning,
        Some(policy)
    );
    assert_eq!(
        rule(&a, &r, "filter", "cali-pi-_DGlcbEzkd1cvh5X1F7M", 1).policy_verdict,
        Some(PolicyVerdict::Deny)
    );
    let profile = Meaning::CalicoProfile {
        profile: "kns.shop".into(),
        direction: nfscope_annotate::Direction::Ingress,
    };
    assert_eq!(
        chain(&a, &r, "filter", "cali-pri-kns.shop").meaning,
        Some(profile)
    );
}

#[test]
fn builtin_rules_are_owned_by_comment_then_target_then_interface() {
    let r = parse(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:MY-CHAIN - [0:0]\n:cali-INPUT - [0:0]\n\
         -A INPUT -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j MY-CHAIN\n\
         -A INPUT -j cali-INPUT\n\
         -A FORWARD -o docker0 -j ACCEPT\n\
         -A FORWARD -i eth0 -j ACCEPT\n\
         -A FORWARD -m comment --comment \"\"\n\
         -A MY-CHAIN -m comment --comment \"default/kubernetes:https cluster IP\"\n\
         COMMIT\n",
    );
    let a = annotate(&r);
    let owners: Vec<Owner> = (0..2)
        .map(|i| rule(&a, &r, "filter", "INPUT", i).owner)
        .collect();
    assert_eq!(owners, [Owner::Calico, Owner::Calico]);
    let owners: Vec<Owner> = (0..3)
        .map(|i| rule(&a, &r, "filter", "FORWARD", i).owner)
        .collect();
    assert_eq!(owners, [Owner::Docker, Owner::Other, Owner::Other]);
    assert_eq!(
        chain(&a, &r, "filter", "MY-CHAIN"),
        &Annotation::owned_by(Owner::Other)
    );
    // A service comment means something even in a chain nobody owns.
    let cluster_ip = Meaning::KubeService {
        service: sp("default/kubernetes:https"),
        kind: Some(ServiceKind::ClusterIp),
    };
    assert_eq!(
        rule(&a, &r, "filter", "MY-CHAIN", 0).meaning,
        Some(cluster_ip)
    );
}

#[test]
fn cni_portmap_chain_takes_the_container_from_the_dnat_jump() {
    let r = parse(
        "*nat\n:CNI-HOSTPORT-DNAT - [0:0]\n:CNI-DN-a07f9dd15b9a28dd35dd9 - [0:0]\n\
         -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"k8s-pod-network\\\" id: \\\"7ad6a8ce5b6ddfe4\\\"\" -m multiport --dports 80,443 -j CNI-DN-a07f9dd15b9a28dd35dd9\n\
         -A CNI-DN-a07f9dd15b9a28dd35dd9 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.5:80\n\
         COMMIT\n",
    );
    let a = annotate(&r);
    let container = Meaning::CniContainer {
        network: "k8s-pod-network".into(),
        container_id: "7ad6a8ce5b6ddfe4".into(),
    };
    assert_eq!(
        chain(&a, &r, "nat", "CNI-DN-a07f9dd15b9a28dd35dd9").meaning,
        Some(container.clone())
    );
    assert_eq!(
        rule(&a, &r, "nat", "CNI-DN-a07f9dd15b9a28dd35dd9", 0).meaning,
        Some(container)
    );
    assert_eq!(
        rule(&a, &r, "nat", "CNI-DN-a07f9dd15b9a28dd35dd9", 0).owner,
        Owner::CniPortmap
    );
}

#[test]
fn self_jumps_and_targetless_rules_do_not_confuse_propagation() {
    let r = parse(
        "*nat\n:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n\
         -A KUBE-SVC-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O\n\
         -A KUBE-SVC-XPGD46QRK7WJZT7O\n\
         COMMIT\n",
    );
    let a = annotate(&r);
    let annotation = chain(&a, &r, "nat", "KUBE-SVC-XPGD46QRK7WJZT7O");
    assert_eq!(
        (annotation.owner, &annotation.meaning),
        (Owner::KubeProxy, &None)
    );
    assert_eq!(
        rule(&a, &r, "nat", "KUBE-SVC-XPGD46QRK7WJZT7O", 1).meaning,
        None
    );
}

/// kube-proxy-shaped ruleset: `services` service ports with `endpoints` endpoints each.
fn synthetic_kube_proxy(services: usize, endpoints: usize) -> String {
    let mut decl = String::from("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let mut rules = String::new();
    for s in 0..services {
        let name = format!("ns{s}/svc{s}:http");
        let svc = nfscope_annotate::kube_chain_hash("KUBE-SVC-", &name, "tcp");
        decl.push_str(&format!(":{svc} - [0:0]\n"));
        rules.push_str(&format!("-A KUBE-SERVICES -d 10.96.{}.{}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport 80 -j {svc}\n", s / 250, s % 250));
        for e in 0..endpoints {
            let ep = format!("10.{}.{}.{e}:8080", s / 250, s % 250);
            let sep = nfscope_annotate::kube_endpoint_chain_hash(&name, "tcp", &ep);
            decl.push_str(&format!(":{sep} - [0:0]\n"));
            rules.push_str(&format!(
                "-A {svc} -m comment --comment \"{name} -> {ep}\" -j {sep}\n"
            ));
            rules.push_str(&format!("-A {sep} -p tcp -m comment --comment \"{name}\" -m tcp -j DNAT --to-destination {ep}\n"));
        }
    }
    format!("{decl}{rules}COMMIT\n")
}

#[test]
fn synthetic_ruleset_is_fully_annotated_and_hashes_match() {
    let r = parse(&synthetic_kube_proxy(50, 3));
    let a = annotate(&r);
    let table = &r.tables[0];
    for (ci, c) in table
        .chains
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name.starts_with("KUBE-S") && c.name != "KUBE-SERVICES")
    {
        assert_eq!(
            a.hash_check(0, ci, &c.name),
            HashCheck::Matches,
            "{}",
            c.name
        );
    }
}

/// `cargo test --release -p nfscope-annotate --test patterns -- --ignored --nocapture`
#[test]
#[ignore = "timing measurement, run by hand in release mode"]
fn measure_300k_rules() {
    let text = synthetic_kube_proxy(50_000, 2);
    let r = parse(&text);
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let a = annotate(&r);
        let elapsed = start.elapsed();
        println!(
            "annotate: {} rules, {} chains in {elapsed:?}",
            r.rule_count(),
            r.tables[0].chains.len()
        );
        assert!(a.rule(0, 0, 0).meaning.is_some());
    }
}
