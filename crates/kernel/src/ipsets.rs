//! ipset headers by forking `ipset list -t` (name, type, header, size in memory, references,
//! number of entries; no members), in the calling thread's network namespace.

use std::path::Path;
use std::time::Duration;

use nfscope_ruleset::IpSet;
use nfscope_ruleset::ipset::parse_ipsets;

use crate::error::KernelError;
use crate::exec::{find_tool, run_tool};

/// How ipsets are read, for [`nfscope_ruleset::SourceReport::method`].
pub(crate) const METHOD: &str = "exec ipset list -t";

/// Reads the headers of every ipset. Fails when `ipset` is missing, fails or times out.
pub fn read_ipsets(timeout: Duration) -> Result<Vec<IpSet>, KernelError> {
    read_ipsets_from(timeout, None)
}

/// [`read_ipsets`] with the tool looked up only in `tool_dir` when given.
///
/// When `/sys/module` is there but has no `ip_set`, the ipset module is not loaded: that is
/// reported as [`KernelError::Unavailable`] without running anything (listing would load the
/// module as a side effect).
pub(crate) fn read_ipsets_from(
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<Vec<IpSet>, KernelError> {
    if Path::new("/sys/module").is_dir() && !Path::new("/sys/module/ip_set").exists() {
        return Err(KernelError::Unavailable("ip_set".to_owned()));
    }
    let path = find_tool("ipset", tool_dir)?;
    let output = run_tool("ipset", &path, &["list", "-t"], timeout)?;
    parse_ipsets(&output.stdout).map_err(|error| KernelError::Parse {
        tool: "ipset".to_owned(),
        error,
    })
}
