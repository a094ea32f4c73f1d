//! How a command fails: the exit code and the one line printed to stderr.
//!
//! `Input` means the user handed us something unusable (exit 2); `Other` is everything else
//! (exit 1). A closed stdout (`nfscope rules | head`) is not a failure at all (see `crate::output`).

use std::process::ExitCode;

/// A command's failure, classified for the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Unusable input: unreadable file, parse error, bad option value. Exit code 2.
    Input(String),
    /// Anything else (collection failed, port in use, …). Exit code 1.
    Other(anyhow::Error),
}

impl Failure {
    /// Prints `error: …` on one line to stderr and returns the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Self::Input(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
            Self::Other(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(1)
            }
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::Other(error)
    }
}

/// Fails with exit code 2 when `--netns NAME` names a namespace that cannot be entered, so the
/// user gets one clear line instead of one error per source.
pub fn check_netns(netns: Option<&str>) -> Result<(), Failure> {
    match netns {
        Some(name) => nfscope_kernel::run_in_netns(Some(name), || ())
            .map_err(|e| Failure::Input(format!("network namespace {name}: {e}"))),
        None => Ok(()),
    }
}
