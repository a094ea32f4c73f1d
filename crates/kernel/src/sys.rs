//! The raw system calls that std does not wrap, each behind a safe function.
//!
//! `setns(2)` moves the calling thread into another network namespace; `kill(2)` with a negative
//! pid stops a whole process group (a hung save tool and anything it forked); netlink sockets
//! (`socket`, `bind`, `sendto`, `recv`, `recvmmsg`) and their options (receive buffer and
//! timeout, BPF filters) carry the nfnetlink dumps and the conntrack events; raw IP sockets and
//! `getsockopt` read iptables-legacy tables; the allocator and stack-limit knobs. Each call works on
//! byte slices or plain-old-data values. The only other `unsafe` code is in `flow/` (the
//! `AF_PACKET` ring mapping and `getifaddrs`).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

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

/// An `AF_NETLINK` / `NETLINK_NETFILTER` socket bound with a kernel-assigned port id and joined
/// to the multicast `groups` (a bit mask; 0 for request/dump sockets).
pub(crate) fn netfilter_socket(groups: u32) -> io::Result<OwnedFd> {
    let fd = netfilter_socket_unbound()?;
    bind_netlink(fd.as_fd(), groups)?;
    Ok(fd)
}

/// An unbound `NETLINK_NETFILTER` socket, for options that must be set before binding.
pub(crate) fn netfilter_socket_unbound() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a fresh descriptor we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    owned(fd)
}

/// Binds a netlink socket (port id assigned by the kernel) and joins `groups`.
pub(crate) fn bind_netlink(fd: BorrowedFd<'_>, groups: u32) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (pid 0 = kernel assigns).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes that outlives the call.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A raw IP socket of `domain` (`AF_INET` / `AF_INET6`), the handle x_tables' get-sockopts need.
pub(crate) fn raw_ip_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
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

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// Sets a socket option whose value is the plain-old-data `value` (an `int`, a `timeval`, a
/// `tpacket_req3`, …).
pub(crate) fn set_option<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points to a live `T` of exactly `len` bytes for the duration of the call.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_RCVTIMEO`: a blocking receive returns `EAGAIN` after `timeout`.
pub(crate) fn set_receive_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    set_option(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
}

/// `SO_ATTACH_FILTER`: runs the classic-BPF `program` on every packet before it is queued.
pub(crate) fn attach_filter(
    fd: BorrowedFd<'_>,
    program: &mut [libc::sock_filter],
) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?,
        filter: program.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `program` outlives it.
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Most datagrams [`recv_batch`] takes per call (its headers live on the stack).
pub(crate) const BATCH_MAX: usize = 64;

/// Receives up to `lengths.len()` (at most [`BATCH_MAX`]) datagrams with one `recvmmsg`,
/// datagram `i` into `buf[i * slot..(i + 1) * slot]`; `lengths[i]` becomes its length, or `None`
/// when it did not fit its slot. Returns how many were received. `EINTR` is returned as an error.
pub(crate) fn recv_batch(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    slot: usize,
    flags: libc::c_int,
    lengths: &mut [Option<usize>],
) -> io::Result<usize> {
    let count = lengths.len().min(buf.len() / slot.max(1)).min(BATCH_MAX);
    let base: *mut u8 = buf.as_mut_ptr();
    let mut iovecs: [libc::iovec; BATCH_MAX] = std::array::from_fn(|i| libc::iovec {
        // In bounds for i < count <= buf.len() / slot; the others are never handed over.
        iov_base: base.wrapping_add(i * slot).cast(),
        iov_len: slot,
    });
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut headers: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
    for (header, iov) in headers.iter_mut().zip(iovecs.iter_mut()) {
        header.msg_hdr.msg_iov = iov;
        header.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers each point at one live iovec covering a distinct
    // `slot`-byte part of `buf` (exclusively borrowed); all outlive the call.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            flags,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let received = usize::try_from(n).unwrap_or(0).min(count);
    for (length, header) in lengths.iter_mut().zip(&headers[..received]) {
        *length = (header.msg_hdr.msg_flags & libc::MSG_TRUNC == 0)
            .then(|| (header.msg_len as usize).min(slot));
    }
    Ok(received)
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
