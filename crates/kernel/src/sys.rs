//! The crate's only `unsafe` code: the raw system calls that std does not wrap.
//!
//! `setns(2)` moves the calling thread into another network namespace; `kill(2)` with a negative
//! pid stops a whole process group (a hung save tool and anything it forked); netlink sockets
//! (`socket`, `bind`, `sendto`, `recv`) carry the nfnetlink dumps; raw IP sockets and
//! `getsockopt` read iptables-legacy tables. Each call works on byte slices; everything else in the
//! crate is safe Rust on top of these.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Moves the calling thread (only this thread) into the network namespace `ns_fd` refers to.
pub(crate) fn setns_net(ns_fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `ns_fd` is a valid open descriptor for the duration of the call (the borrow
    // guarantees it); setns reads no memory of ours and only changes this thread's namespace.
    let rc = unsafe { libc::setns(ns_fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends SIGKILL to every process in process group `pgid`.
///
/// The caller must own the group: it started the leader with `process_group(0)` and has not yet
/// reaped it, so the id cannot have been reused by an unrelated group.
pub(crate) fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "process group id out of range")
    })?;
    // SAFETY: kill(2) has no memory-safety preconditions; the negative id addresses the group
    // described above.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An `AF_NETLINK` / `NETLINK_NETFILTER` socket, bound with a kernel-assigned port id.
pub(crate) fn netfilter_socket() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a fresh descriptor we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    let fd = owned(fd)?;
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (pid 0 = kernel assigns).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes that outlives the call.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A raw IP socket of `domain` (`AF_INET` / `AF_INET6`), the handle x_tables' get-sockopts need.
pub(crate) fn raw_ip_socket(domain: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a fresh descriptor we own.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    owned(fd)
}

fn owned(fd: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Sends one datagram to the kernel (netlink port 0).
pub(crate) fn send_to_kernel(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain old data; all-zero addresses the kernel.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `bytes` is valid for reads of its length and `addr` of `len` bytes, for the call.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&raw const addr).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram into `buf`; returns its full length (larger than `buf` when truncated).
pub(crate) fn recv_truncating(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length for the duration of the call.
        let rc = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sets an `int`-valued socket option (best effort sizing such as `SO_RCVBUF`).
pub(crate) fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a valid c_int of `len` bytes that outlives the call.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(level, name)` with `buf` as both input (the kernel reads the request from it, as
/// x_tables' `*_SO_GET_INFO` / `*_SO_GET_ENTRIES` do) and output; returns the length written.
pub(crate) fn get_option_in_out(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option buffer too large"))?;
    // SAFETY: `buf` is valid for reads and writes of `len` bytes and `len` for a write of a
    // socklen_t, both for the duration of the call; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// Limits glibc malloc to two arenas and returns freed memory to the kernel sooner.
///
/// A server that collects on tokio's blocking pool touches the big per-scrape allocations from
/// a different thread each time; with glibc's default of 8 arenas per core, every thread keeps
/// its own arena of freed-but-cached pages, so RSS grows to several times the live heap. Two
/// arenas keep contention low on the two threads that matter (collector, encoder). Calls made
/// before any other thread starts take effect everywhere; failures are ignored (a different
/// libc simply keeps its defaults).
pub(crate) fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it reads and writes no memory of ours.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// Returns the free memory at the top and inside glibc's heaps to the kernel (`malloc_trim(0)`).
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only releases pages the allocator holds free; no memory of ours is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Raises this process's soft stack limit to `bytes` (never above the hard limit, never
/// lowering it), so tools started afterwards inherit it. `iptables-nft-save` 1.8.9 recurses
/// deeply enough on ~290k-rule rulesets to die of SIGSEGV with the usual 8 MiB stack (measured:
/// the same save succeeds with a larger one). Failures are ignored: the tools then run as before.
pub(crate) fn raise_stack_soft_limit(bytes: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct we pass; setrlimit only reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_STACK, &mut limit) != 0 {
            return;
        }
        let wanted = bytes.min(limit.rlim_max);
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            libc::setrlimit(libc::RLIMIT_STACK, &limit);
        }
    }
}
