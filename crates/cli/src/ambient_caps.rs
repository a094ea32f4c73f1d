//! Passing NET_ADMIN and NET_RAW on to the tools nfscope forks (`iptables-save`, `ipset`, …).
//!
//! In the DaemonSet nfscope runs as uid 65534 and gets the two capabilities from file
//! capabilities on its binary (`setcap cap_net_admin,cap_net_raw+ep`, see the Dockerfile). A
//! non-root process loses its capabilities across `execve` of a binary without file capabilities,
//! so the save tools it forks would run powerless. Raising the capabilities into the inheritable
//! and ambient sets makes them survive the `execve`. Only capabilities already permitted are
//! raised, so this never gains anything; as root, or without the capabilities, it does nothing.

use caps::{CapSet, Capability};

const PASSED_ON: [Capability; 2] = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];

/// Raises NET_ADMIN and NET_RAW into the ambient set when they are permitted and nfscope is not
/// root. Failures are logged, never fatal (the netlink sources do not fork).
pub fn pass_on_to_children() {
    if is_root() {
        return;
    }
    let permitted = match caps::read(None, CapSet::Permitted) {
        Ok(set) => set,
        Err(error) => {
            tracing::debug!(%error, "cannot read capabilities");
            return;
        }
    };
    for cap in PASSED_ON.into_iter().filter(|c| permitted.contains(c)) {
        let raised = caps::raise(None, CapSet::Inheritable, cap)
            .and_then(|()| caps::raise(None, CapSet::Ambient, cap));
        match raised {
            Ok(()) => tracing::debug!(%cap, "raised into the ambient set for forked tools"),
            Err(error) => {
                tracing::warn!(%cap, %error, "cannot pass the capability on to forked tools")
            }
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uid = s.lines().find(|l| l.starts_with("Uid:"))?;
            uid.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}
