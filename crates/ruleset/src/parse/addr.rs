//! Address arguments of `-s` / `-d`: `a.b.c.d`, `a.b.c.d/len`, `a.b.c.d/m.a.s.k`, IPv6 alike.
//!
//! Owns turning one argument into a masked [`AddrMatch`] (a bare address is a host route, `/32` or
//! `/128`). It does not resolve host names and rejects comma lists, which iptables expands into
//! several rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::AddrMatch;

/// Parses an address argument; the error message says what was expected.
pub(crate) fn parse_addr(text: &str) -> Result<AddrMatch, String> {
    if text.contains(',') {
        return Err(format!(
            "address lists are not supported in `{text}`: iptables expands them into one rule per address"
        ));
    }
    let (addr_text, mask_text) = match text.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| format!("expected an IPv4 or IPv6 address, got `{addr_text}`"))?;
    let mask = match mask_text {
        None => full_mask(addr),
        Some(m) => parse_mask(addr, m)?,
    };
    Ok(AddrMatch {
        addr: apply_mask(addr, mask),
        mask,
    })
}

fn full_mask(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    }
}

fn parse_mask(addr: IpAddr, text: &str) -> Result<IpAddr, String> {
    let width: u32 = if addr.is_ipv4() { 32 } else { 128 };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let len: u32 = text
            .parse()
            .ok()
            .filter(|l| *l <= width)
            .ok_or_else(|| format!("prefix length `{text}` is larger than {width}"))?;
        return Ok(prefix_mask(addr, len));
    }
    match (addr, text.parse::<IpAddr>()) {
        (IpAddr::V4(_), Ok(m @ IpAddr::V4(_))) | (IpAddr::V6(_), Ok(m @ IpAddr::V6(_))) => Ok(m),
        _ => Err(format!(
            "expected a prefix length or a netmask of the same family, got `{text}`"
        )),
    }
}

fn prefix_mask(addr: IpAddr, len: u32) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::MAX.checked_shl(32 - len).unwrap_or(0))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(
            u128::MAX.checked_shl(128 - len).unwrap_or(0),
        )),
    }
}

fn apply_mask(addr: IpAddr, mask: IpAddr) -> IpAddr {
    match (addr, mask) {
        (IpAddr::V4(a), IpAddr::V4(m)) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m))),
        (IpAddr::V6(a), IpAddr::V6(m)) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & u128::from(m))),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_address_is_host_route() {
        assert_eq!(parse_addr("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_addr("fd00::1").unwrap().to_string(), "fd00::1/128");
    }

    #[test]
    fn prefix_and_dotted_masks_are_applied() {
        assert_eq!(parse_addr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_addr("10.1.2.3/255.255.0.0").unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(
            parse_addr("10.1.2.3/255.0.255.0").unwrap().to_string(),
            "10.0.2.0/255.0.255.0"
        );
        assert_eq!(parse_addr("0.0.0.0/0").unwrap().prefix_len(), Some(0));
        assert_eq!(parse_addr("fe80::1/64").unwrap().to_string(), "fe80::/64");
    }

    #[test]
    fn bad_addresses_are_errors() {
        assert!(
            parse_addr("10.0.0.1,10.0.0.2")
                .unwrap_err()
                .contains("address lists")
        );
        assert!(parse_addr("10.0.0.1/33").is_err());
        assert!(parse_addr("10.0.0.1/ffff::").is_err());
        assert!(parse_addr("example.com").is_err());
        assert!(parse_addr("::1/129").is_err());
    }
}
