//! The crate's only `unsafe` code: two raw system calls that std does not wrap.
//!
//! `setns(2)` moves the calling thread into another network namespace; `kill(2)` with a negative
//! pid stops a whole process group (a hung save tool and anything it forked). Everything else in
//! the crate is safe Rust on top of these.
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
