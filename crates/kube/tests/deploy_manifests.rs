//! `deploy/` validates against the Kubernetes schemas (offline, the `kubernetes-validate` PyPI
//! package that `scripts/install-deps` installs) and keeps its least-privilege promises: no
//! privileged container, only NET_ADMIN and NET_RAW added, drop ALL, non-root, read-only root
//! filesystem, read-only RBAC. The checks live in `manifests.py` beside this file; this test runs
//! them so `cargo test` stays the single runner.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `python3` can import kubernetes_validate and yaml. Under `CI=true` a missing tool is a
/// failure, elsewhere the test is skipped with a note.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import kubernetes_validate, yaml"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with kubernetes-validate is required under CI=true (run scripts/install-deps)"
        );
        eprintln!(
            "skipped: python3 -c 'import kubernetes_validate' failed (run scripts/install-deps)"
        );
    }
    ok
}

#[test]
fn deploy_manifests_validate_and_keep_least_privilege() {
    if !python_ready() {
        return;
    }
    let root = repo_root();
    let output = Command::new("python3")
        .arg(root.join("crates/kube/tests/manifests.py"))
        .arg(root.join("deploy"))
        .output()
        .expect("run manifests.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "manifests.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("DaemonSet/nfscope"), "{stdout}");
    assert!(stdout.contains("0 failures"), "{stdout}");
}

#[test]
fn dockerfile_runs_non_root_with_file_capabilities() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile");
    let last_user = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .next_back()
        .expect("Dockerfile sets USER");
    assert!(
        !matches!(last_user.trim(), "root" | "0" | "0:0"),
        "final USER is {last_user}"
    );
    assert!(
        text.contains("setcap cap_net_admin,cap_net_raw+ep"),
        "the nfscope binary needs file capabilities (see README, Deploying to Kubernetes)"
    );
    assert!(text.contains("FROM debian:bookworm-slim"), "runtime image");
}
