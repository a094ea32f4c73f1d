//! The flow monitor's kernel sources (and the NEW-only conntrack subscription `serve` counts
//! Service connections from, [`open_new_connections`]): conntrack events over netlink ([`ConntrackEvents`]) and
//! TCP control packets from one `AF_PACKET` ring ([`PacketCapture`]); plus the facts the monitor
//! reports about the node: whether conntrack accounting is on and the local addresses.
//!
//! Neither source changes the host: no sysctl is written (`nf_conntrack_acct` is only read), no
//! qdisc or BPF map is created. Together they need CAP_NET_ADMIN and CAP_NET_RAW. Decoding the
//! connection state is not done here: events and packets go to `nfscope-flow`'s table.

pub(crate) mod capture;
mod conntrack_events;

use std::io;
use std::net::IpAddr;
use std::time::Duration;

pub use capture::{CaptureStats, PacketCapture};
pub use conntrack_events::{ConntrackEvents, DATAGRAMS_PER_CALL, parse_messages};

/// A NEW-only conntrack event subscription ([`ConntrackEvents::open_new_only`]) opened inside
/// `netns` (`None` = here); the socket stays bound to that namespace.
pub fn open_new_connections(
    netns: Option<&str>,
    receive_timeout: Duration,
) -> io::Result<ConntrackEvents> {
    run_in_netns(netns, || ConntrackEvents::open_new_only(receive_timeout))?
}

use crate::run_in_netns;

/// Both sources, opened in one network namespace; each may have failed on its own.
#[derive(Debug)]
pub struct FlowSources {
    /// Conntrack event subscription.
    pub conntrack: io::Result<ConntrackEvents>,
    /// Packet capture.
    pub capture: io::Result<PacketCapture>,
    /// `net.netfilter.nf_conntrack_acct` there: `None` when unreadable (conntrack not loaded).
    pub accounting: Option<bool>,
    /// Addresses of the namespace's interfaces, with the interface name.
    pub local_addresses: Vec<(IpAddr, String)>,
}

/// Opens both sources inside `netns` (an `ip netns` name or a path; `None` = here). The sockets
/// stay bound to that namespace wherever they are later read from.
pub fn open_sources(netns: Option<&str>, receive_timeout: Duration) -> io::Result<FlowSources> {
    run_in_netns(netns, || FlowSources {
        conntrack: ConntrackEvents::open(receive_timeout),
        capture: PacketCapture::open(),
        accounting: conntrack_accounting_here(),
        local_addresses: local_addresses_here(),
    })
}

/// Whether conntrack accounting is on in `netns` (read only; never switched on).
pub fn conntrack_accounting(netns: Option<&str>) -> Option<bool> {
    run_in_netns(netns, conntrack_accounting_here)
        .ok()
        .flatten()
}

fn conntrack_accounting_here() -> Option<bool> {
    let text = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_acct").ok()?;
    Some(text.trim() != "0")
}

/// The addresses configured on the current namespace's interfaces, with interface names.
fn local_addresses_here() -> Vec<(IpAddr, String)> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    #[allow(unsafe_code)]
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return out;
    }
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, alive until freeifaddrs.
        #[allow(unsafe_code)]
        let entry = unsafe { &*cursor };
        if let Some(ip) = sockaddr_ip(entry.ifa_addr) {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            #[allow(unsafe_code)]
            let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
            out.push((ip, name.to_string_lossy().into_owned()));
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: frees the list exactly once; no references into it survive.
    #[allow(unsafe_code)]
    unsafe {
        libc::freeifaddrs(list)
    };
    out
}

#[allow(unsafe_code)]
fn sockaddr_ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: getifaddrs gives a valid sockaddr whose family says how large it is.
    unsafe {
        match i32::from((*addr).sa_family) {
            libc::AF_INET => {
                let v4 = &*addr.cast::<libc::sockaddr_in>();
                Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let v6 = &*addr.cast::<libc::sockaddr_in6>();
                Some(IpAddr::from(v6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

/// The interfaces of `netns` (an `ip netns` name or a path; `None` = here) as (index, name):
/// failed attempts name the interface their first packet came in on.
pub fn interface_names(netns: Option<&str>) -> io::Result<Vec<(u32, String)>> {
    run_in_netns(netns, interface_names_here)
}

fn interface_names_here() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns an array ended by a zero entry, or null on failure.
    #[allow(unsafe_code)]
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return out;
    }
    let mut cursor = list;
    loop {
        // SAFETY: `cursor` stays within the array: we stop at its zero entry.
        #[allow(unsafe_code)]
        let entry = unsafe { &*cursor };
        if entry.if_index == 0 || entry.if_name.is_null() {
            break;
        }
        // SAFETY: if_name is a NUL-terminated string owned by the array.
        #[allow(unsafe_code)]
        let name = unsafe { std::ffi::CStr::from_ptr(entry.if_name) };
        out.push((entry.if_index, name.to_string_lossy().into_owned()));
        // SAFETY: the zero entry has not been reached, so the next one exists.
        #[allow(unsafe_code)]
        {
            cursor = unsafe { cursor.add(1) };
        }
    }
    // SAFETY: frees the array exactly once; no references into it survive.
    #[allow(unsafe_code)]
    unsafe {
        libc::if_freenameindex(list)
    };
    out
}

#[cfg(test)]
mod interface_tests {
    #[test]
    fn the_loopback_interface_is_named() {
        let names = super::interface_names(None).expect("this namespace");
        assert!(names.iter().any(|(i, n)| *i > 0 && n == "lo"), "{names:?}");
    }
}
