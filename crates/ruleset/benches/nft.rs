//! nft text and JSON parse throughput on a generated kube-proxy nftables-mode listing
//! (`services` Services × 3 endpoints, kube-proxy's layout as `nft list ruleset` prints it).
//! Run: `cargo bench -p nfscope-ruleset --bench nft`.

use std::fmt::Write as _;

use nfscope_ruleset::{NftLimits, parse_nft_text, render_nft};

fn main() {
    divan::main();
}

fn kube_listing(services: usize) -> String {
    let ip = |s: usize| format!("172.30.{}.{}", (s >> 8) & 255, s & 255);
    let ep = |s: usize, e: usize| format!("10.{}.{}.{}", 180 + e, (s >> 8) & 255, s & 255);
    let mut t = String::from("table ip kube-proxy {\n\tcomment \"rules for kube-proxy\"\n");
    t.push_str("\tset cluster-ips {\n\t\ttype ipv4_addr\n\t\tcomment \"Active ClusterIPs\"\n\t\telements = { ");
    t.push_str(
        &(0..services)
            .map(ip)
            .collect::<Vec<_>>()
            .join(",\n\t\t\t     "),
    );
    t.push_str(" }\n\t}\n\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = { ");
    let elems: Vec<String> = (0..services)
        .map(|s| {
            format!(
                "{} . tcp . 80 : goto service-{s:08X}-ns{s}/svc{s}/tcp/p80",
                ip(s)
            )
        })
        .collect();
    t.push_str(&elems.join(",\n\t\t\t     "));
    t.push_str(" }\n\t}\n\n\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}\n");
    t.push_str("\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}\n");
    for s in 0..services {
        let svc = format!("service-{s:08X}-ns{s}/svc{s}/tcp/p80");
        let _ = writeln!(
            t,
            "\n\tchain {svc} {{\n\t\tip daddr {} ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
            ip(s)
        );
        let vm: Vec<String> = (0..3)
            .map(|e| {
                format!(
                    "{e} : goto endpoint-{s:08X}-ns{s}/svc{s}/tcp/p80__{}/80",
                    ep(s, e)
                )
            })
            .collect();
        let _ = writeln!(
            t,
            "\t\tnumgen random mod 3 vmap {{ {} }}\n\t}}",
            vm.join(", ")
        );
        for e in 0..3 {
            let _ = writeln!(
                t,
                "\n\tchain endpoint-{s:08X}-ns{s}/svc{s}/tcp/p80__{a}/80 {{\n\t\tip saddr {a} jump mark-for-masquerade\n\t\tmeta l4proto tcp dnat to {a}:80\n\t}}",
                a = ep(s, e)
            );
        }
    }
    t.push_str("}\n");
    t
}

#[divan::bench(args = [1_000, 5_000], sample_count = 10)]
fn parse_text(bencher: divan::Bencher, services: usize) {
    let text = kube_listing(services);
    bencher.bench(|| parse_nft_text(divan::black_box(&text), &NftLimits::default()).unwrap());
}

#[divan::bench(args = [5_000], sample_count = 10)]
fn render(bencher: divan::Bencher, services: usize) {
    let rs = parse_nft_text(&kube_listing(services), &NftLimits::default()).unwrap();
    bencher.bench(|| render_nft(divan::black_box(&rs)));
}
