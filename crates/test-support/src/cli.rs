//! Running a command-line program under test and reading its JSON.
//!
//! Owns the one way the binary's tests run `nfscope` (standard input closed, output captured)
//! and parse a `--format json` answer, failing with the arguments and stderr when the run did
//! not succeed. The binary's path is the caller's (`env!("CARGO_BIN_EXE_nfscope")` exists only
//! in that crate's tests); what the JSON must contain is the test's business.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Runs `program ARGS…` with standard input closed and returns what it did.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Runs `program ARGS…`, which must succeed, and parses its standard output as JSON.
pub fn run_json(program: &str, args: &[&str]) -> Value {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}
