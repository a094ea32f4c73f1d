//! What explaining a failed attempt costs on a generated kube-proxy ruleset: 5,000 services × 3
//! endpoints (≈75,000 rules), an attempt from the LAN to the last service's cluster IP (every
//! KUBE-SERVICES rule is tried). `explain_miss` is a cache miss as the server pays it (index the
//! rules, trace, report with meanings, JSON); `explain_prepared` the same on rules indexed once;
//! `cache_hit` an attempt answered from the cache; `generation` the fingerprint of the rules
//! computed once per read.
//!
//! Run: `cargo bench -p nfscope-trace --bench failure`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use nfscope_annotate::{Annotations, annotate};
use nfscope_bench::{GenOptions, kube_proxy_ruleset};
use nfscope_ruleset::{Family, ParseOptions, parse_ruleset};
use nfscope_trace::Proto;
use nfscope_trace::TraceInput;
use nfscope_trace::failure::{
    Attempt, AttemptFailure, CacheLimits, Explainer, Lookup, TraceCache, input_generation,
};

const SERVICES: usize = 5_000;

fn main() {
    divan::main();
}

static CASE: LazyLock<(TraceInput, Vec<Annotations>, Attempt)> = LazyLock::new(|| {
    let text = kube_proxy_ruleset(SERVICES, 3, &GenOptions::default());
    let ruleset = parse_ruleset(
        &text,
        &ParseOptions {
            family: Some(Family::Ipv4),
            ..Default::default()
        },
    )
    .expect("generated ruleset parses");
    let (vip, port) = last_service(&ruleset);
    let annotations = vec![annotate(&ruleset)];
    let mut input = TraceInput::new(vec![ruleset]);
    input.local_addrs = vec!["192.168.1.10".parse().expect("address")];
    let attempt = Attempt {
        client: "192.168.1.50:40000".parse().expect("address"),
        dialled: SocketAddr::new(vip, port),
        proto: Proto::Tcp,
        in_iface: Some("eth0".into()),
        mark: None,
        failure: AttemptFailure::Timeout,
        server: None,
    };
    (input, annotations, attempt)
});

/// The destination and port of the last cluster-IP rule in nat `KUBE-SERVICES`.
fn last_service(ruleset: &nfscope_ruleset::Ruleset) -> (IpAddr, u16) {
    let chain = ruleset
        .table("nat")
        .and_then(|t| t.chain("KUBE-SERVICES"))
        .expect("KUBE-SERVICES");
    chain
        .rules
        .iter()
        .rev()
        .find_map(|r| {
            let dst = r.spec.destination.as_ref()?.value.addr;
            let port = r
                .spec
                .matches
                .iter()
                .find_map(|m| m.value("dport"))?
                .parse()
                .ok()?;
            Some((dst, port))
        })
        .expect("a cluster IP rule")
}

#[divan::bench]
fn explain_miss() -> usize {
    let (input, annotations, attempt) = &*CASE;
    let e = Explainer::new(divan::black_box(input), annotations, &[])
        .explain(attempt)
        .expect("explains");
    e.trace_json.len()
}

#[divan::bench]
fn explain_prepared(bencher: divan::Bencher) {
    let (input, annotations, attempt) = &*CASE;
    let explainer = Explainer::new(input, annotations, &[]);
    bencher.bench(|| {
        explainer
            .explain(divan::black_box(attempt))
            .expect("explains")
            .trace_json
            .len()
    });
}

#[divan::bench]
fn cache_hit(bencher: divan::Bencher) {
    let (input, annotations, attempt) = &*CASE;
    let explainer = Explainer::new(input, annotations, &[]);
    let mut cache = TraceCache::new(CacheLimits::default());
    let first = cache.get_or_trace(attempt, 1, 0, || explainer.trace(attempt));
    assert!(matches!(first, Lookup::Explained(_)));
    bencher.bench_local(|| {
        match cache.get_or_trace(divan::black_box(attempt), 1, 0, || unreachable!("cached")) {
            Lookup::Explained(e) => Arc::strong_count(&e.trace_json),
            _ => 0,
        }
    });
}

#[divan::bench]
fn generation() -> u64 {
    input_generation(divan::black_box(&CASE.0))
}
