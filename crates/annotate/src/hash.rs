//! kube-proxy's chain-name hashes, so a chain name can be checked against the service named in
//! its comments (a mismatch means a stale or foreign chain).
//!
//! kube-proxy (`pkg/proxy/iptables/proxier.go`) names the per-service chains `KUBE-SVC-`, `KUBE-SVL-`,
//! `KUBE-EXT-`, `KUBE-FW-` (and the older `KUBE-XLB-`) with `portProtoHash(servicePortName, protocol)`
//! = the first 16 characters of base32(sha256(servicePortName + protocol)), protocol in lower case.
//! `KUBE-SEP-` chains hash servicePortName + protocol + endpoint (`ip:port`, `[ip]:port` for IPv6).
//! This module does not find out which service a chain belongs to (see [`crate::resolve`]).

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

/// Prefixes whose hash input is `servicePortName + protocol`.
pub const SERVICE_CHAIN_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-XLB-",
];

/// Prefix of endpoint chains, whose hash input also includes the endpoint.
pub const ENDPOINT_CHAIN_PREFIX: &str = "KUBE-SEP-";

/// First 16 characters of base32(sha256(input)) (RFC 4648 alphabet, as Go's `base32.StdEncoding`):
/// the suffix of every hashed kube-proxy and kube-router chain and ipset name.
pub fn hash16(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut encoded = BASE32.encode(&digest);
    encoded.truncate(16);
    encoded
}

/// The chain name kube-proxy gives a service port's chain with this prefix (`KUBE-SVC-`,
/// `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-`, `KUBE-XLB-`; the trailing `-` may be left out), e.g.
/// `kube_chain_hash("KUBE-SVC-", "default/kubernetes:https", "tcp")` = `KUBE-SVC-NPX46M4PTMTKRN6Y`.
/// The protocol is lower-cased as kube-proxy does.
pub fn kube_chain_hash(prefix: &str, service_port_name: &str, protocol: &str) -> String {
    let prefix = prefix.trim_end_matches('-');
    format!(
        "{prefix}-{}",
        hash16(&format!(
            "{service_port_name}{}",
            protocol.to_ascii_lowercase()
        ))
    )
}

/// The `KUBE-SEP-` chain name of one endpoint (`ip:port`) of a service port.
pub fn kube_endpoint_chain_hash(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    let input = format!(
        "{service_port_name}{}{endpoint}",
        protocol.to_ascii_lowercase()
    );
    format!("{ENDPOINT_CHAIN_PREFIX}{}", hash16(&input))
}

/// Does `chain` carry the hash kube-proxy would compute for this service port (and, for
/// `KUBE-SEP-`, endpoint)? `None` when the chain is not a hashed kube-proxy chain, or is a
/// `KUBE-SEP-` chain and no endpoint was given.
pub fn chain_hash_matches(
    chain: &str,
    service_port_name: &str,
    protocol: &str,
    endpoint: Option<&str>,
) -> Option<bool> {
    if chain.starts_with(ENDPOINT_CHAIN_PREFIX) {
        return endpoint
            .map(|ep| kube_endpoint_chain_hash(service_port_name, protocol, ep) == chain);
    }
    let prefix = SERVICE_CHAIN_PREFIXES
        .iter()
        .find(|p| chain.starts_with(**p))?;
    Some(kube_chain_hash(prefix, service_port_name, protocol) == chain)
}

/// The hash part of a hashed kube-proxy service chain name (`KUBE-SVC-<h>` → `<h>`), shared by all
/// of a service port's SVC/SVL/EXT/FW/XLB chains.
pub fn service_chain_hash(chain: &str) -> Option<&str> {
    SERVICE_CHAIN_PREFIXES
        .iter()
        .find_map(|p| chain.strip_prefix(p))
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_https_hash_matches_netfilter_md() {
        assert_eq!(
            kube_chain_hash("KUBE-SVC-", "default/kubernetes:https", "tcp"),
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
        );
        assert_eq!(
            kube_chain_hash("KUBE-SVC", "default/kubernetes:https", "TCP"),
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
        );
    }

    #[test]
    fn all_service_prefixes_share_the_hash() {
        // From the kube-proxy test dump: ns2/svc2:p80 has KUBE-SVC- and KUBE-EXT-GNZBNJ2PO5MGZ6GT,
        // ns5/svc5:p80 has KUBE-FW-NUKIZ6OKUXPJNT4C.
        assert_eq!(
            kube_chain_hash("KUBE-EXT-", "ns2/svc2:p80", "tcp"),
            "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
        );
        assert_eq!(
            kube_chain_hash("KUBE-FW-", "ns5/svc5:p80", "tcp"),
            "KUBE-FW-NUKIZ6OKUXPJNT4C"
        );
        assert_eq!(
            chain_hash_matches("KUBE-SVC-XPGD46QRK7WJZT7O", "ns1/svc1:p80", "tcp", None),
            Some(true)
        );
        assert_eq!(
            chain_hash_matches("KUBE-SVC-XPGD46QRK7WJZT7O", "ns1/svc1:p81", "tcp", None),
            Some(false)
        );
        assert_eq!(
            chain_hash_matches("KUBE-SVC-XPGD46QRK7WJZT7O", "ns1/svc1:p80", "udp", None),
            Some(false)
        );
    }

    #[test]
    fn endpoint_chain_hash_includes_the_endpoint() {
        // ns1/svc1:p80 -> 10.180.0.1:80 is KUBE-SEP-SXIVWICOYRO3J4NJ in the kube-proxy test dump.
        assert_eq!(
            kube_endpoint_chain_hash("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert_eq!(
            chain_hash_matches(
                "KUBE-SEP-SXIVWICOYRO3J4NJ",
                "ns1/svc1:p80",
                "tcp",
                Some("10.180.0.1:80")
            ),
            Some(true)
        );
        assert_eq!(
            chain_hash_matches(
                "KUBE-SEP-SXIVWICOYRO3J4NJ",
                "ns1/svc1:p80",
                "tcp",
                Some("10.180.0.2:80")
            ),
            Some(false)
        );
        assert_eq!(
            chain_hash_matches("KUBE-SEP-SXIVWICOYRO3J4NJ", "ns1/svc1:p80", "tcp", None),
            None
        );
    }

    #[test]
    fn other_chains_are_not_hashed() {
        assert_eq!(
            chain_hash_matches("KUBE-SERVICES", "a/b", "tcp", None),
            None
        );
        assert_eq!(
            service_chain_hash("KUBE-FW-NUKIZ6OKUXPJNT4C"),
            Some("NUKIZ6OKUXPJNT4C")
        );
        assert_eq!(service_chain_hash("KUBE-SVC-"), None);
        assert_eq!(service_chain_hash("KUBE-SEP-SXIVWICOYRO3J4NJ"), None);
    }
}
