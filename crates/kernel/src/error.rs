//! The one error type of this crate: why a single source could not be read.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nfscope_ruleset::ParseError;

/// Why reading one source (a save tool, `ipset`, a `/proc` file) failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The tool is neither on `PATH` nor in the standard sbin folders (or the configured tool folder).
    #[error("{tool} not found in {searched}")]
    ToolNotFound {
        /// Tool name, e.g. `iptables-nft-save`.
        tool: String,
        /// The folders that were searched, `:`-separated.
        searched: String,
    },
    /// The tool was found but could not be started.
    #[error("cannot run {tool}: {source}")]
    Spawn {
        /// Tool name.
        tool: String,
        /// What `fork`/`exec` said.
        source: io::Error,
    },
    /// The tool did not finish in time and was killed (with its whole process group).
    #[error("{tool} timed out after {after:?}")]
    Timeout {
        /// Tool name.
        tool: String,
        /// The time limit that passed.
        after: Duration,
    },
    /// The tool exited unsuccessfully.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        /// Tool name.
        tool: String,
        /// Its exit status.
        status: ExitStatus,
        /// The first non-empty line of its stderr.
        stderr: String,
    },
    /// The tool's output could not be parsed.
    #[error("{tool} output: {error}")]
    Parse {
        /// Tool name.
        tool: String,
        /// Where and why, as `LINE:COL: message`.
        error: ParseError,
    },
    /// A kernel file could not be read.
    #[error("{what}: {source}")]
    Io {
        /// What was being read (usually a path).
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// A kernel file did not have the expected shape.
    #[error("{what}: {detail}")]
    Format {
        /// What was being read (usually a path).
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The kernel feature behind a source is not there (module not loaded, built without it).
    #[error("{0} is not available in this kernel or network namespace")]
    Unavailable(String),
    /// Reading or parsing panicked (a bug); the collection went on without this source.
    #[error("panicked: {0}")]
    Panicked(String),
    /// A netlink/getsockopt read problem, as text (kept with a usable result).
    #[error("{0}")]
    Netlink(String),
    /// There is no save tool for this backend (`Backend::Unknown`).
    #[error("no save tool for backend {0}")]
    UnknownBackend(nfscope_ruleset::Backend),
}
