//! Reading fixed C structs out of an extension payload, and the number formats the save
//! functions print (`xtables_ipaddr_to_numeric`, `xtables_ipmask_to_numeric`, `inet_ntop`).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// `XT_ALIGN`: the kernel pads every payload to 8 bytes.
pub(crate) fn xt_align(size: usize) -> usize {
    (size + 7) & !7
}

/// A payload checked to hold one C struct of `size` bytes (padded at most to [`xt_align`]).
#[derive(Clone, Copy)]
pub(crate) struct Payload<'a> {
    data: &'a [u8],
}

impl<'a> Payload<'a> {
    /// `None` when `data` cannot be the struct: shorter than it, or longer than its padding.
    pub(crate) fn new(data: &'a [u8], size: usize) -> Option<Self> {
        (data.len() >= size && data.len() <= xt_align(size)).then_some(Self { data })
    }

    pub(crate) fn u8(&self, at: usize) -> u8 {
        self.data[at]
    }

    pub(crate) fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.data[at], self.data[at + 1]])
    }

    /// A `__be16`.
    pub(crate) fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.data[at], self.data[at + 1]])
    }

    pub(crate) fn u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.data[at..at + 4].try_into().expect("4 bytes"))
    }

    pub(crate) fn u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.data[at..at + 8].try_into().expect("8 bytes"))
    }

    pub(crate) fn i32(&self, at: usize) -> i32 {
        i32::from_ne_bytes(self.data[at..at + 4].try_into().expect("4 bytes"))
    }

    pub(crate) fn bytes(&self, at: usize, len: usize) -> &'a [u8] {
        &self.data[at..at + len]
    }

    /// A `char[len]` up to its first NUL; `None` when not UTF-8.
    pub(crate) fn str(&self, at: usize, len: usize) -> Option<&'a str> {
        let field = self.bytes(at, len);
        let end = field.iter().position(|&b| b == 0).unwrap_or(len);
        std::str::from_utf8(&field[..end]).ok()
    }

    /// An IPv4 address stored in network order.
    pub(crate) fn ipv4(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.data[at],
            self.data[at + 1],
            self.data[at + 2],
            self.data[at + 3],
        )
    }

    /// 16 address bytes in network order.
    pub(crate) fn ipv6(&self, at: usize) -> [u8; 16] {
        self.bytes(at, 16).try_into().expect("16 bytes")
    }
}

/// `xtables_ipmask_to_numeric`: `""` for /32, `/N` for a prefix, `/a.b.c.d` otherwise.
pub(crate) fn ipv4_mask(mask: Ipv4Addr, out: &mut String) {
    match prefix_len(&mask.octets()) {
        Some(32) => {}
        Some(n) => {
            let _ = write!(out, "/{n}");
        }
        None => {
            let _ = write!(out, "/{mask}");
        }
    }
}

/// `xtables_ip6mask_to_numeric`: `""` for /128, `/N` for a prefix, `/addr` otherwise.
pub(crate) fn ipv6_mask(mask: &[u8; 16], out: &mut String) {
    match prefix_len(mask) {
        Some(128) => {}
        Some(n) => {
            let _ = write!(out, "/{n}");
        }
        None => {
            out.push('/');
            ipv6(mask, out);
        }
    }
}

/// The prefix length of a contiguous mask.
pub(crate) fn prefix_len(mask: &[u8]) -> Option<u32> {
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let mut want = ones;
    for &b in mask {
        let expect = match want {
            0 => 0u8,
            n if n >= 8 => 0xff,
            n => !(0xffu8 >> n),
        };
        if b != expect {
            return None;
        }
        want = want.saturating_sub(8);
    }
    Some(ones)
}

/// glibc's `inet_ntop(AF_INET6, …)`: the longest run (≥ 2) of zero words as `::`, and an
/// embedded IPv4 tail for `::a.b.c.d` and `::ffff:a.b.c.d`.
pub(crate) fn ipv6(addr: &[u8; 16], out: &mut String) {
    let words: Vec<u16> = addr
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    // (start, length) of the first longest run of zero words.
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < 8 {
        let len = words[i..].iter().take_while(|&&w| w == 0).count();
        if len > 0 && best.is_none_or(|b| len > b.1) {
            best = Some((i, len));
        }
        i += len.max(1);
    }
    let best = best.filter(|b| b.1 >= 2);
    let mut i = 0;
    while i < 8 {
        if let Some((base, len)) = best.filter(|&(base, len)| i >= base && i < base + len) {
            if i == base {
                out.push(':');
            }
            i = base + len;
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        let embedded = i == 6
            && best.is_some_and(|(base, len)| {
                base == 0 && (len == 6 || (len == 5 && words[5] == 0xffff))
            });
        if embedded {
            let _ = write!(
                out,
                "{}",
                Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15])
            );
            return;
        }
        let _ = write!(out, "{:x}", words[i]);
        i += 1;
    }
    if best.is_some_and(|(base, len)| base + len == 8) {
        out.push(':');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> String {
        let addr: std::net::Ipv6Addr = s.parse().unwrap();
        let mut out = String::new();
        ipv6(&addr.octets(), &mut out);
        out
    }

    #[test]
    fn ipv6_prints_like_glibc_inet_ntop() {
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("fe80::1:0:0:1"), "fe80::1:0:0:1");
        assert_eq!(v6("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(v6("::ffff:10.0.0.1"), "::ffff:10.0.0.1");
        assert_eq!(v6("::10.0.0.1"), "::10.0.0.1");
        assert_eq!(v6("fd00::"), "fd00::");
        assert_eq!(v6("1:2:3:4:5:6:7:8"), "1:2:3:4:5:6:7:8");
        assert_eq!(v6("1:0:3:4:5:6:7:8"), "1:0:3:4:5:6:7:8");
    }

    #[test]
    fn masks_print_as_prefixes_when_contiguous() {
        let mut out = String::new();
        ipv4_mask(Ipv4Addr::new(255, 255, 255, 0), &mut out);
        ipv4_mask(Ipv4Addr::new(255, 255, 255, 255), &mut out);
        ipv4_mask(Ipv4Addr::new(255, 0, 255, 0), &mut out);
        ipv4_mask(Ipv4Addr::new(0, 0, 0, 0), &mut out);
        assert_eq!(out, "/24/255.0.255.0/0");
        assert!(Payload::new(&[0; 12], 12).is_some());
        assert!(Payload::new(&[0; 16], 12).is_some());
        assert!(Payload::new(&[0; 24], 12).is_none());
        assert!(Payload::new(&[0; 8], 12).is_none());
    }
}
