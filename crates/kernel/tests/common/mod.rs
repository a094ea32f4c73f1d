//! Helpers for this crate's integration tests: the workspace's test support (namespaces, the
//! root check) plus a few checks of the test machine and save-tool round trips of this crate.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use nfscope_ruleset::{Backend, Family, ParseOptions, Ruleset, parse_ruleset};
pub use nfscope_test_support::{TestNetns, root_or_skip};

/// True when legacy iptables (x_tables for both families) can be used here, loading `ip_tables`
/// and `ip6_tables` with modprobe if needed (a host change accepted for tests). Under `CI=true`
/// a failure panics; otherwise the test is skipped.
pub fn legacy_or_skip(test: &str) -> bool {
    let present = |f: &str| Path::new("/proc/net").join(f).exists();
    for (file, module) in [
        ("ip_tables_names", "ip_tables"),
        ("ip6_tables_names", "ip6_tables"),
    ] {
        if !present(file) {
            let _ = Command::new("modprobe").arg(module).status();
        }
        if !present(file) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: {module} not available (modprobe failed)"
            );
            eprintln!("{test}: skipped ({module} not available)");
            return false;
        }
    }
    true
}

/// Parses save-tool output the way the crate does (strict, explicit family and backend).
pub fn parse(text: &str, family: Family, backend: Backend) -> Ruleset {
    let options = ParseOptions {
        family: Some(family),
        backend: Some(backend),
        lenient: false,
        ..Default::default()
    };
    parse_ruleset(text, &options).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `ip netns exec NS <tool> -c`, parsed: the oracle the crate's reads are compared with.
pub fn save_in(netns: &TestNetns, tool: &str, family: Family, backend: Backend) -> Ruleset {
    let out = netns.exec(&[tool, "-c"]);
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&String::from_utf8_lossy(&out.stdout), family, backend)
}

/// Loads restore input into a namespace with `ip netns exec NS <restore tool>`.
pub fn restore_in(netns: &TestNetns, tool: &str, rules: &str) {
    netns.sh_ok(&format!("{tool} <<'RULES'\n{rules}RULES\n"));
}
