//! Meaning of native nftables tables, read from real dumps in `testdata/corpus/nft/` (origins in
//! `testdata/corpus/nft/SOURCES-nftparse.md` and `testdata/corpus/SOURCES.md`).

use nfscope_annotate::native::{
    KubeNftChain, kube_nft_chain, kube_nft_hash_matches, no_endpoint_services,
};
use nfscope_annotate::{Meaning, NativeAnnotations, Owner, ServiceKind, annotate_native};
use nfscope_ruleset::typed::NftRuleset;
use nfscope_ruleset::{NftLimits, parse_nft_text};
use nfscope_test_support::corpus::corpus_file;

fn load(name: &str) -> (NftRuleset, NativeAnnotations) {
    let text = corpus_file(&format!("nft/{name}"));
    let rs = parse_nft_text(&text, &NftLimits::default()).expect("corpus dump parses");
    let ann = annotate_native(&rs);
    (rs, ann)
}

/// (table, chain) indices of a chain by name.
fn chain(rs: &NftRuleset, table: &str, name: &str) -> (usize, usize) {
    let t = rs
        .tables
        .iter()
        .position(|t| t.name == table)
        .expect("table");
    let c = rs.tables[t]
        .chains
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("chain {name}"));
    (t, c)
}

fn summary(ann: &NativeAnnotations, (t, c): (usize, usize)) -> Option<String> {
    ann.chain(t, c).meaning.as_ref().map(Meaning::summary)
}

#[test]
fn k3s_kube_proxy_service_and_endpoint_chains() {
    let (rs, ann) = load("k3s-kubeproxy-nftables-mode-table-2025.nft");
    let svc = chain(
        &rs,
        "kube-proxy",
        "service-2QRHZV4L-default/kubernetes/tcp/https",
    );
    assert_eq!(ann.chain(svc.0, svc.1).owner, Owner::KubeProxy);
    assert_eq!(
        summary(&ann, svc).as_deref(),
        Some("service default/kubernetes:https")
    );
    // Rules of the service chain carry the service too (the numgen dispatch is rule 2).
    assert_eq!(
        ann.rule(svc.0, svc.1, 1)
            .meaning
            .as_ref()
            .map(Meaning::summary)
            .as_deref(),
        Some("service default/kubernetes:https")
    );
    let ep = chain(
        &rs,
        "kube-proxy",
        "endpoint-MIBO4EMV-default/kubernetes/tcp/https__10.34.4.142/6443",
    );
    assert_eq!(
        summary(&ann, ep).as_deref(),
        Some("service default/kubernetes:https endpoint 10.34.4.142:6443")
    );
    // An unnamed port: `riset/hellopod-np-svc/tcp/`.
    let ext = chain(
        &rs,
        "kube-proxy",
        "external-P6J77WGM-riset/hellopod-np-svc/tcp/",
    );
    assert_eq!(
        summary(&ann, ext).as_deref(),
        Some("service riset/hellopod-np-svc external destinations")
    );
    let reject = chain(&rs, "kube-proxy", "reject-chain");
    assert_eq!(
        summary(&ann, reject).as_deref(),
        Some("rejects connections to services without endpoints")
    );
    let masq = chain(&rs, "kube-proxy", "masquerading");
    assert!(summary(&ann, masq).unwrap().contains("masquerades"));
    let hook = chain(&rs, "kube-proxy", "filter-forward");
    assert_eq!(ann.chain(hook.0, hook.1).owner, Owner::KubeProxy);
    assert!(ann.chain(hook.0, hook.1).meaning.is_some());
    // Every chain of the table is kube-proxy's and every per-object chain has a service.
    let t = svc.0;
    for (c, ch) in rs.tables[t].chains.iter().enumerate() {
        assert_eq!(ann.chain(t, c).owner, Owner::KubeProxy, "{}", ch.name);
        assert!(
            ann.chain(t, c).meaning.is_some(),
            "{} has a meaning",
            ch.name
        );
    }
}

#[test]
fn k3s_kube_proxy_map_elements() {
    let (rs, ann) = load("k3s-kubeproxy-nftables-mode-table-2025.nft");
    let t = rs
        .tables
        .iter()
        .position(|t| t.name == "kube-proxy")
        .unwrap();
    let table = &rs.tables[t];
    let set = |name: &str| table.sets.iter().position(|s| s.name == name).unwrap();
    // service-ips element 10.43.0.1 . tcp . 443 → default/kubernetes:https, a cluster IP.
    let s = set("service-ips");
    let e = table.sets[s]
        .elements
        .iter()
        .position(|e| format!("{:?}", e.key).contains("10.43.0.1)"))
        .expect("10.43.0.1 element");
    assert_eq!(
        ann.element(t, s, e).map(Meaning::summary).as_deref(),
        Some("service default/kubernetes:https cluster IP")
    );
    let n = set("service-nodeports");
    assert_eq!(
        ann.element(t, n, 0).map(Meaning::summary).as_deref(),
        Some("service riset/hellopod-np-svc node port")
    );
    let ne = set("no-endpoint-services");
    assert_eq!(
        ann.element(t, ne, 0),
        Some(&Meaning::KubeNoEndpoints {
            service: nfscope_annotate::ServicePort::parse(
                "riset/otelcol-opentelemetry-collector:otlp"
            )
            .unwrap(),
            local_only: false,
        })
    );
    let none = no_endpoint_services(table);
    let names: Vec<String> = none.iter().map(|n| n.service.to_string()).collect();
    assert_eq!(
        names,
        [
            "riset/otelcol-opentelemetry-collector:otlp",
            "riset/otelcol-opentelemetry-collector:otlp-http"
        ]
    );
    assert!(
        none.iter()
            .all(|n| !n.local_only && n.map == "no-endpoint-services")
    );
}

#[test]
fn kube_proxy_upstream_layout_drop_firewall_and_ipv6() {
    let (rs, ann) = load("nftparse-kube-proxy-overall.nft");
    let t = 0;
    let table = &rs.tables[t];
    let none = no_endpoint_services(table);
    // ns2/svc2:p80 has no local endpoints: its elements drop.
    assert!(
        none.iter()
            .any(|n| n.service.to_string() == "ns2/svc2:p80" && n.local_only)
    );
    let fw = table
        .sets
        .iter()
        .position(|s| s.name == "firewall-ips")
        .unwrap();
    assert_eq!(
        ann.element(t, fw, 0).map(Meaning::summary).as_deref(),
        Some("service ns5/svc5:p80 load balancer source ranges")
    );
    let (rs6, ann6) = load("nftparse-kube-proxy-ipv6-knftables.nft");
    let ep = chain(
        &rs6,
        &rs6.tables[0].name.clone(),
        "endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80",
    );
    assert_eq!(
        summary(&ann6, ep).as_deref(),
        Some("service ns1/svc1:p80 endpoint [fd00:10:180::1]:80")
    );
}

#[test]
fn chain_names_parse_strictly() {
    assert_eq!(
        kube_nft_chain("firewall-HVFWP5L3-ns5/svc5/tcp/p80"),
        Some(KubeNftChain::Service {
            service: nfscope_annotate::ServicePort::parse("ns5/svc5:p80").unwrap(),
            protocol: "tcp".into(),
            kind: Some(ServiceKind::LoadBalancerSourceRanges),
        })
    );
    for bad in [
        "service-endpoints-check",
        "services",
        "service-abc-ns/svc/tcp/p",
        "service-ABCDEFGH-ns/svc/icmp/p",
        "service-ABCDEFGH-ns/svc/tcp",
        "endpoint-ABCDEFGH-ns/svc/tcp/p",
        "endpoint-ABCDEFGH-ns/svc/tcp/p__notanip/80",
        "external-ABCDEFGH-NS/svc/tcp/p",
    ] {
        assert_eq!(kube_nft_chain(bad), None, "{bad}");
    }
}

#[test]
fn calico_docker_istio_tables() {
    let (rs, ann) = load("calico-felix-fv-cali-nftables-dump-2026.nft");
    let (t, c) = chain(&rs, "calico", "filter-cali-FORWARD");
    assert_eq!(ann.chain(t, c).owner, Owner::Calico);
    assert_eq!(ann.rule(t, c, 0).owner, Owner::Calico);

    let (rs, ann) = load("nftparse-moby-usernet-portmap.nft");
    let t = rs
        .tables
        .iter()
        .position(|t| t.name == "docker-bridges")
        .unwrap();
    let dnat = rs.tables[t]
        .chains
        .iter()
        .enumerate()
        .flat_map(|(c, ch)| (0..ch.rules.len()).map(move |r| (c, r)))
        .find_map(|(c, r)| match &ann.rule(t, c, r).meaning {
            Some(m @ Meaning::DockerPort { .. }) => Some(m.summary()),
            _ => None,
        });
    assert_eq!(dnat.as_deref(), Some("docker port 8080 -> 192.0.2.2:80"));
    let (c, _) = (0..rs.tables[t].chains.len())
        .map(|c| (c, &rs.tables[t].chains[c]))
        .find(|(_, ch)| ch.name.starts_with("filter-forward-in__"))
        .unwrap();
    assert!(
        summary(&ann, (t, c))
            .unwrap()
            .starts_with("docker: forwarded traffic into bridge")
    );

    let (rs, ann) = load("istio-sidecar-nftables-mode-ruleset-2025.nft");
    let red = chain(&rs, "istio-proxy-nat", "istio-in-redirect");
    assert_eq!(ann.chain(red.0, red.1).owner, Owner::Istio);
    assert_eq!(
        ann.chain(red.0, red.1).meaning,
        Some(Meaning::IstioCapture {
            port: "15006".into()
        })
    );
    let inbound = chain(&rs, "istio-proxy-nat", "istio-inbound");
    assert_eq!(
        ann.rule(inbound.0, inbound.1, 0).meaning,
        Some(Meaning::IstioInboundPort {
            port: "15008".into(),
            captured: false
        })
    );
    // The output chain returns some traffic, so it has no single capture meaning.
    let out = chain(&rs, "istio-proxy-nat", "istio-output");
    assert_eq!(ann.chain(out.0, out.1).meaning, None);
}

#[test]
fn other_tables_have_no_owner() {
    let (rs, ann) = load("nftparse-upstream-sample-ruleset.nft");
    for (t, table) in rs.tables.iter().enumerate() {
        for c in 0..table.chains.len() {
            assert_eq!(ann.chain(t, c).owner, Owner::Other);
            assert_eq!(ann.chain(t, c).meaning, None);
        }
    }
}

#[test]
fn chain_name_hashes_are_kube_proxys() {
    // kube-proxy's own test values (NFTABLES.md §5): ns1/svc1/tcp/p80 → ULMVA6XW.
    assert_eq!(
        kube_nft_hash_matches("service-ULMVA6XW-ns1/svc1/tcp/p80"),
        Some(true)
    );
    assert_eq!(
        kube_nft_hash_matches("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
        Some(true)
    );
    assert_eq!(
        kube_nft_hash_matches("service-AAAAAAAA-ns1/svc1/tcp/p80"),
        Some(false)
    );
    assert_eq!(kube_nft_hash_matches("reject-chain"), None);
    // Every per-object chain of the k3s dump carries its own hash.
    let (rs, _) = load("k3s-kubeproxy-nftables-mode-table-2025.nft");
    let mut n = 0;
    for c in &rs.tables[0].chains {
        if kube_nft_chain(&c.name).is_some() {
            assert_eq!(kube_nft_hash_matches(&c.name), Some(true), "{}", c.name);
            n += 1;
        }
    }
    assert_eq!(n, 27);
    assert_eq!(
        kube_nft_chain("local-ABCDEFGH-ns/web/tcp/http").map(|k| k.meaning().summary()),
        Some("service ns/web:http local endpoints".to_owned())
    );
}

#[test]
fn calico_endpoint_chains_count_policy_decisions() {
    let text = r#"table ip calico {
	chain filter-cali-tw-cali1234 {
		ct state invalid drop comment "cali:a;"
		jump filter-cali-pi-_abc comment "cali:b;"
		meta mark & 0x00010000 == 0x00010000 return comment "cali:c; Return if policy accepted"
		drop comment "cali:d; Drop if no policies passed packet"
	}
	chain filter-cali-pi-_abc {
		ip saddr 10.0.0.0/8 drop comment "cali:e;"
		meta mark set meta mark | 0x00010000 comment "cali:f;"
	}
}
"#;
    let rs = parse_nft_text(text, &NftLimits::default()).unwrap();
    let ann = annotate_native(&rs);
    use nfscope_annotate::PolicyVerdict::{Accept, Deny};
    let verdicts: Vec<_> = (0..4).map(|r| ann.rule(0, 0, r).policy_verdict).collect();
    assert_eq!(verdicts, [None, None, Some(Accept), Some(Deny)]);
    assert_eq!(
        ann.chain(0, 0)
            .meaning
            .as_ref()
            .map(Meaning::summary)
            .as_deref(),
        Some("calico workload cali1234 ingress")
    );
    assert_eq!(ann.rule(0, 1, 0).policy_verdict, Some(Deny));
    assert_eq!(ann.rule(0, 1, 1).policy_verdict, None);
    assert_eq!(
        ann.chain(0, 1)
            .meaning
            .as_ref()
            .map(Meaning::summary)
            .as_deref(),
        Some("calico policy _abc ingress")
    );
}

/// Rule `index` (0-based) of chain `at`, summarised.
fn rule_summary(ann: &NativeAnnotations, (t, c): (usize, usize), index: usize) -> Option<String> {
    ann.rule(t, c, index).meaning.as_ref().map(Meaning::summary)
}

#[test]
fn firewalld_zones_policies_and_dispatch_chains() {
    let (rs, ann) = load("rhel8-firewalld-libvirt-iptables-nft-2019.nft");
    // All three firewalld tables (inet, ip, ip6) are firewalld's; iptables-nft's are not.
    for t in &rs.tables {
        let idx = rs.tables.iter().position(|x| std::ptr::eq(x, t)).unwrap();
        let want = (t.name == "firewalld").then_some(Owner::Firewalld);
        assert_eq!(ann.table_owner(idx), want, "table {} {}", t.family, t.name);
    }
    let allow = chain(&rs, "firewalld", "filter_IN_public_allow");
    assert_eq!(ann.chain(allow.0, allow.1).owner, Owner::Firewalld);
    assert_eq!(
        summary(&ann, allow).as_deref(),
        Some("firewalld zone public, input: allow rules")
    );
    // `tcp dport ssh … accept` in the allow chain is one of the zone's allow rules.
    assert_eq!(
        rule_summary(&ann, allow, 0).as_deref(),
        Some("firewalld zone public, input: allow rules")
    );
    let fwdi = chain(&rs, "firewalld", "filter_FWDI_public");
    assert_eq!(
        summary(&ann, fwdi).as_deref(),
        Some("firewalld zone public, forward in")
    );
    let libvirt = chain(&rs, "firewalld", "raw_PRE_libvirt_deny");
    assert_eq!(
        summary(&ann, libvirt).as_deref(),
        Some("firewalld zone libvirt, prerouting: deny rules")
    );
    // The dispatch chain picks a zone by interface; each of its gotos names the zone it picks.
    let zones = chain(&rs, "firewalld", "filter_INPUT_ZONES");
    assert_eq!(
        summary(&ann, zones).as_deref(),
        Some("firewalld: sends traffic to its zone by interface (else the default zone)")
    );
    assert_eq!(
        rule_summary(&ann, zones, 0).as_deref(),
        Some("firewalld zone public, input")
    );
    let source = chain(&rs, "firewalld", "filter_INPUT_ZONES_SOURCE");
    assert_eq!(
        summary(&ann, source).as_deref(),
        Some("firewalld: sends traffic to the zone bound to its source address")
    );
    // The input base chain's final reject is firewalld's default; its earlier rules mean nothing.
    let input = chain(&rs, "firewalld", "filter_INPUT");
    let last = rs.tables[input.0].chains[input.1].rules.len() - 1;
    assert_eq!(
        rule_summary(&ann, input, last).as_deref(),
        Some("firewalld: rejects what no zone or policy accepted")
    );
    assert_eq!(rule_summary(&ann, input, 0), None);
    assert_eq!(summary(&ann, input), None);
}
