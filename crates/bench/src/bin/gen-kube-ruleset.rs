//! `gen-kube-ruleset`: prints a synthetic kube-proxy ruleset (iptables-restore input in save
//! syntax, or with `--nftables` kube-proxy's nftables-mode table as `nft -f` input) to stdout.
//! `--shape kube-proxy` writes the same services as kube-proxy writes its restore input
//! (names, argument order, chain order; see `nfscope_bench::kube_proxy_shape`).
//! Example: `gen-kube-ruleset --services 1000 --endpoints 3 --counters [--shape kube-proxy]`.

use std::io::Write as _;

use clap::Parser;
use nfscope_bench::{GenOptions, Shape, kube_proxy_nft_ruleset, ruleset_of_shape};

/// Prints `iptables-restore` input for a kube-proxy node with N services of E endpoints each.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of services (one port each).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints per service.
    #[arg(long, default_value_t = 3)]
    endpoints: usize,
    /// Prefix rules with deterministic pseudo-random `[packets:bytes]` counters.
    #[arg(long)]
    counters: bool,
    /// Write an ip6tables ruleset.
    #[arg(long)]
    ipv6: bool,
    /// Percentage of NodePort services.
    #[arg(long, default_value_t = GenOptions::default().nodeport_percent)]
    nodeport_percent: u8,
    /// Percentage of services with a LoadBalancer IP (among the NodePort ones).
    #[arg(long, default_value_t = GenOptions::default().loadbalancer_percent)]
    loadbalancer_percent: u8,
    /// Percentage of services without endpoints.
    #[arg(long, default_value_t = 0)]
    no_endpoints_percent: u8,
    /// Write kube-proxy's nftables mode (`nft -f` input) instead of iptables mode.
    #[arg(long)]
    nftables: bool,
    /// Text of the iptables-mode ruleset: `generated` (save syntax, sorted chains) or
    /// `kube-proxy` (kube-proxy's own restore input: names, argument order, chain order).
    #[arg(long, default_value = "generated")]
    shape: Shape,
    /// Seed of the counter values.
    #[arg(long, default_value_t = GenOptions::default().seed)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts = GenOptions {
        counters: args.counters,
        ipv6: args.ipv6,
        nodeport_percent: args.nodeport_percent,
        loadbalancer_percent: args.loadbalancer_percent,
        no_endpoints_percent: args.no_endpoints_percent,
        seed: args.seed,
    };
    if args.nftables && args.shape != Shape::Generated {
        anyhow::bail!("--shape applies to the iptables-mode ruleset, not to --nftables");
    }
    let text = if args.nftables {
        kube_proxy_nft_ruleset(args.services, args.endpoints, &opts)
    } else {
        ruleset_of_shape(args.shape, args.services, args.endpoints, &opts)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
