//! Running code inside a named network namespace without moving the whole process.
//!
//! [`run_in_netns`] opens `/run/netns/<name>` (what `ip netns add` creates), starts a thread,
//! moves only that thread into the namespace with `setns(2)`, runs the closure there and joins.
//! Threads the closure spawns and processes it forks inherit the namespace; the rest of the
//! process never leaves its own. Entering a namespace needs CAP_SYS_ADMIN.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::thread;

use crate::sys;

/// Where `ip netns` keeps its named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Runs `f` on a thread inside network namespace `netns`, or directly when `netns` is `None`.
///
/// `netns` is a name under `/run/netns`, or a path when it contains a `/` (e.g.
/// `/proc/1234/ns/net`). Fails when the namespace cannot be opened or entered; a panic in `f` is
/// passed on to the caller.
pub fn run_in_netns<T: Send>(netns: Option<&str>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let Some(name) = netns else {
        return Ok(f());
    };
    let file = File::open(netns_path(name)?)?;
    let joined = thread::scope(|scope| {
        scope
            .spawn(move || {
                sys::setns_net(file.as_fd())?;
                drop(file);
                Ok(f())
            })
            .join()
    });
    joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The file behind a namespace name: `/run/netns/<name>`, or the name itself when it is a path.
fn netns_path(name: &str) -> io::Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    if name.is_empty() || name == "." || name == ".." {
        let msg = format!("invalid network namespace name {name:?}");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    }
    Ok(PathBuf::from(NETNS_RUN_DIR).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_under_run_netns_and_paths_stay_paths() {
        assert_eq!(
            netns_path("blue").unwrap(),
            PathBuf::from("/run/netns/blue")
        );
        assert_eq!(
            netns_path("/proc/1/ns/net").unwrap(),
            PathBuf::from("/proc/1/ns/net")
        );
        assert_eq!(
            netns_path("..").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn no_namespace_runs_in_place_and_a_missing_one_is_an_error() {
        assert_eq!(run_in_netns(None, || 7).unwrap(), 7);
        let err = run_in_netns(Some("nfscope-no-such-netns"), || 7).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
