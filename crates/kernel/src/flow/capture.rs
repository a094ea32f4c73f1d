//! TCP control packets from one `AF_PACKET` socket: `SOCK_DGRAM` (so Ethernet, tunnel and
//! WireGuard interfaces all deliver the IP header first), bound to ifindex 0 (every interface,
//! including ones created later; interfaces that are down or vanish are simply silent), a
//! classic-BPF filter keeping only IPv4/IPv6 TCP packets with SYN, FIN or RST and ICMP/ICMPv6
//! destination unreachable errors (snapped to 160 bytes), and a `TPACKET_V3` ring of 8 blocks of 1 MiB retired every 100 ms.
//!
//! Needs CAP_NET_RAW. Drops are read from `PACKET_STATISTICS`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use crate::sys;

const BLOCK_SIZE: u32 = 1 << 20;
const BLOCK_COUNT: u32 = 8;
const FRAME_SIZE: u32 = 2048;
const RETIRE_MS: u32 = 100;
const SNAP_LEN: u32 = 160;
const ETH_P_ALL: u16 = 0x0003;
/// `enum tpacket_versions`: TPACKET_V3.
const TPACKET_V3: libc::c_int = 2;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` of a packet starts.
const SOCKADDR_LL_OFFSET: usize = 48;

/// The classic-BPF program: IPv4 (not a later fragment) or IPv6 (no extension header) carrying
/// TCP with SYN, FIN or RST, or an ICMP destination unreachable (ICMPv6 type 1), which is how a
/// REJECTed SYN is answered; offsets are from the network header (`SOCK_DGRAM`).
fn filter_program() -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_B_IND: u16 = 0x50;
    const LDX_B_MSH: u16 = 0xb1;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const AD_PROTOCOL: u32 = 0xffff_f000; // SKF_AD_OFF + SKF_AD_PROTOCOL
    const CONTROL_FLAGS: u32 = 0x07; // FIN | SYN | RST
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        op(LD_H_ABS, 0, 0, AD_PROTOCOL),   // 0: A = skb->protocol
        op(JEQ_K, 0, 13, 0x0800),          // 1: IPv4? else 15
        op(LD_B_ABS, 0, 0, 9),             // 2: A = ip->protocol
        op(JEQ_K, 0, 5, 6),                // 3: TCP? else 9
        op(LD_H_ABS, 0, 0, 6),             // 4: A = fragment offset field
        op(JSET_K, 18, 0, 0x1fff),         // 5: later fragment → drop
        op(LDX_B_MSH, 0, 0, 0),            // 6: X = IP header length
        op(LD_B_IND, 0, 0, 13),            // 7: A = TCP flags
        op(JSET_K, 14, 15, CONTROL_FLAGS), // 8: → accept / drop
        op(JEQ_K, 0, 14, 1),               // 9: ICMP? else drop
        op(LD_H_ABS, 0, 0, 6),             // 10: A = fragment offset field
        op(JSET_K, 12, 0, 0x1fff),         // 11: later fragment → drop
        op(LDX_B_MSH, 0, 0, 0),            // 12: X = IP header length
        op(LD_B_IND, 0, 0, 0),             // 13: A = ICMP type
        op(JEQ_K, 8, 9, 3),                // 14: destination unreachable → accept / drop
        op(JEQ_K, 0, 8, 0x86dd),           // 15: IPv6? else drop
        op(LD_B_ABS, 0, 0, 6),             // 16: A = next header
        op(JEQ_K, 0, 2, 6),                // 17: TCP? else 20
        op(LD_B_ABS, 0, 0, 40 + 13),       // 18: A = TCP flags
        op(JSET_K, 3, 4, CONTROL_FLAGS),   // 19: → accept / drop
        op(JEQ_K, 0, 3, 58),               // 20: ICMPv6? else drop
        op(LD_B_ABS, 0, 0, 40),            // 21: A = ICMPv6 type
        op(JEQ_K, 0, 1, 1),                // 22: destination unreachable → accept / drop
        op(RET_K, 0, 0, SNAP_LEN),         // 23: accept
        op(RET_K, 0, 0, 0),                // 24: drop
    ]
}

/// What `PACKET_STATISTICS` reported since the previous read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets that passed the filter.
    pub packets: u64,
    /// Of those, packets dropped because the ring was full.
    pub drops: u64,
}

/// The capture socket and its mapped ring.
#[derive(Debug)]
pub struct PacketCapture {
    fd: OwnedFd,
    ring: NonNull<u8>,
    next_block: u32,
}

// SAFETY: the ring mapping is owned by this value alone (no aliases are handed out beyond a
// `poll` call), so moving it to another thread is sound.
unsafe impl Send for PacketCapture {}

impl PacketCapture {
    /// Opens the socket in the current network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own exclusively.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        sys::attach_filter(fd.as_fd(), &mut filter_program())?;
        sys::set_option(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &TPACKET_V3,
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCK_COUNT,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: BLOCK_SIZE / FRAME_SIZE * BLOCK_COUNT,
            tp_retire_blk_tov: RETIRE_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::set_option(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let len = (BLOCK_SIZE * BLOCK_COUNT) as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                fd.as_raw_fd(),
                0,
            )
        };
        let ptr = if ptr == libc::MAP_FAILED {
            // MAP_LOCKED needs RLIMIT_MEMLOCK headroom; retry without it.
            // SAFETY: as above.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            }
        } else {
            ptr
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        let capture = Self {
            fd,
            ring,
            next_block: 0,
        };
        capture.bind_all_interfaces()?;
        Ok(capture)
    }

    fn bind_all_interfaces(&self) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = 0;
        // SAFETY: `addr` is a valid sockaddr_ll and the length matches.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn block_status(&self, block: u32) -> *mut u32 {
        let offset = (block * BLOCK_SIZE) as usize + 8;
        // SAFETY: `offset` is inside the mapping (block < BLOCK_COUNT); status is 4-byte aligned.
        unsafe { self.ring.as_ptr().add(offset).cast::<u32>() }
    }

    /// Waits up to `timeout` for a retired block, then hands every packet of every ready block to
    /// `each(seconds, nanoseconds, ifindex, bytes from the IP header)`. Returns the packet count.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(u32, u32, u32, &[u8]),
    ) -> io::Result<usize> {
        let mut count = 0;
        if !self.block_ready(self.next_block) {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
            if rc < 0 {
                let err = io::Error::last_os_error();
                return if err.raw_os_error() == Some(libc::EINTR) {
                    Ok(0)
                } else {
                    Err(err)
                };
            }
        }
        while self.block_ready(self.next_block) {
            count += self.walk_block(self.next_block, &mut each);
            fence(Ordering::Release);
            // SAFETY: the block belongs to us until this store hands it back to the kernel.
            unsafe {
                self.block_status(self.next_block)
                    .write_volatile(libc::TP_STATUS_KERNEL)
            };
            self.next_block = (self.next_block + 1) % BLOCK_COUNT;
        }
        Ok(count)
    }

    /// Test captures: waits up to `timeout` for the next retired block and returns its bytes
    /// (the block descriptor's `blk_len` of them), handing the block back to the kernel.
    #[cfg(test)]
    pub(crate) fn take_block(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        while !self.block_ready(self.next_block) {
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as in `walk_block`: the block is ours until its status is handed back.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.ring
                    .as_ptr()
                    .add((self.next_block * BLOCK_SIZE) as usize),
                BLOCK_SIZE as usize,
            )
        };
        let used = u32_at(bytes, 20).map_or(0, |n| n as usize).min(bytes.len());
        let copy = bytes[..used].to_vec();
        fence(Ordering::Release);
        // SAFETY: hands the block back, as `poll` does.
        unsafe {
            self.block_status(self.next_block)
                .write_volatile(libc::TP_STATUS_KERNEL)
        };
        self.next_block = (self.next_block + 1) % BLOCK_COUNT;
        Some(copy)
    }

    fn block_ready(&self, block: u32) -> bool {
        // SAFETY: aligned pointer into the mapping; volatile because the kernel writes it.
        let status = unsafe { self.block_status(block).read_volatile() };
        fence(Ordering::Acquire);
        status & libc::TP_STATUS_USER != 0
    }

    fn walk_block(&self, block: u32, each: &mut impl FnMut(u32, u32, u32, &[u8])) -> usize {
        // SAFETY: the block is ours (TP_STATUS_USER) and the kernel does not write it until we
        // hand it back, so a shared slice over it is sound for the duration of this call.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.ring.as_ptr().add((block * BLOCK_SIZE) as usize),
                BLOCK_SIZE as usize,
            )
        };
        walk_block_bytes(bytes, each)
    }

    /// Packets and drops since the previous call (the kernel resets its counters on read).
    pub fn statistics(&self) -> io::Result<CaptureStats> {
        let mut stats = [0u32; 3]; // struct tpacket_stats_v3
        let mut len = size_of_val(&stats) as libc::socklen_t;
        // SAFETY: the buffer and its length match; the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                stats.as_mut_ptr().cast(),
                &raw mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(CaptureStats {
            packets: u64::from(stats[0]),
            drops: u64::from(stats[1]),
        })
    }
}

impl Drop for PacketCapture {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `open`; nothing borrows it any more.
        unsafe {
            libc::munmap(
                self.ring.as_ptr().cast(),
                (BLOCK_SIZE * BLOCK_COUNT) as usize,
            );
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Walks one retired block (`tpacket_block_desc` + `tpacket3_hdr`s); bounds-checked throughout.
pub(crate) fn walk_block_bytes(block: &[u8], each: &mut impl FnMut(u32, u32, u32, &[u8])) -> usize {
    let num_pkts = u32_at(block, 12).unwrap_or(0);
    let mut at = u32_at(block, 16).unwrap_or(0) as usize;
    let mut count = 0;
    for _ in 0..num_pkts {
        let Some(next) = u32_at(block, at) else { break };
        let sec = u32_at(block, at + 4).unwrap_or(0);
        let nsec = u32_at(block, at + 8).unwrap_or(0);
        let snaplen = u32_at(block, at + 12).unwrap_or(0) as usize;
        let net = usize::from(u16_at(block, at + 26).unwrap_or(0));
        let ifindex = u32_at(block, at + SOCKADDR_LL_OFFSET + 4).unwrap_or(0);
        if let Some(data) = block.get(at + net..at + net + snaplen) {
            each(sec, nsec, ifindex, data);
            count += 1;
        }
        if next == 0 {
            break;
        }
        at += next as usize;
    }
    count
}
