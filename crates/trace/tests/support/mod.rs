//! Helpers of the tracer's root tests that need the ruleset model (so they cannot live in
//! `nfscope_test_support`, which knows no nfscope type): reading a lab namespace's
//! iptables-nft rules the way the live tracer does.

use nfscope_ruleset::{Backend, Family, ParseOptions, Ruleset, parse_ruleset};
use nfscope_test_support::TestNetns;

/// The iptables-nft rules of one family in `ns` (`ip6tables-nft-save` when `v6`), with the
/// kernel's counters when `counters`, parsed strictly (a dump the parser refuses fails the test).
pub fn iptables_nft_rules(ns: &TestNetns, v6: bool, counters: bool) -> Ruleset {
    let (tool, family) = if v6 {
        ("ip6tables-nft-save", Family::Ipv6)
    } else {
        ("iptables-nft-save", Family::Ipv4)
    };
    let text = ns.sh_ok(&format!("{tool}{}", if counters { " -c" } else { "" }));
    parse_ruleset(
        &text,
        &ParseOptions {
            family: Some(family),
            backend: Some(Backend::Nft),
            lenient: false,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{tool}: {e}"))
}
