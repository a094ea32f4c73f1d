//! Kubernetes and CNI meaning of iptables chains and rules.
//!
//! [`annotate`] reads a parsed [`Ruleset`] and says, for every chain and rule, which component
//! created it ([`Owner`]: kube-proxy, kube-router, Calico, Cilium, Flannel, Weave, Docker, the CNI
//! portmap plugin, the kubelet, Istio, or other), what it means in Kubernetes terms ([`Meaning`]:
//! the service port, endpoint, pod, network policy, Calico workload, the services an IPVS-mode
//! ipset lists, Flannel's pod network, Istio's capture ports, …) and whether its counter
//! measures a network-policy decision ([`PolicyVerdict`]). It also computes kube-proxy's chain-name
//! hashes so stale or foreign `KUBE-SVC-`/`KUBE-SEP-` chains can be told apart ([`hash`]), and
//! writes kube-proxy's layout the other way round ([`kube_proxy_rules`]: restore input for a list
//! of service ports, the one generator the demo lab and the benchmarks share), so the layout the
//! annotator reads and the one the generator writes live side by side.
//!
//! Native nftables tables (kube-proxy's nftables mode, Calico's nftables dataplane, Docker's
//! nftables backend, Istio's nftables mode) get the same vocabulary from [`annotate_native`]
//! ([`native`]).
//!
//! It does not parse dumps (that is `nfscope-ruleset`), judge rulesets (the linter) or produce
//! metrics (`nfscope-exporter`). It does no I/O and never panics on odd input: unknown chains are
//! owned by [`Owner::Other`] and have no meaning. The work is linear in the number of rules.

#![forbid(unsafe_code)]
pub mod comments;
pub mod dataplane;
pub mod hash;
pub mod kube_proxy_rules;
pub mod native;
pub mod owner;
pub mod resolve;
pub mod types;
pub mod verdict;

use nfscope_ruleset::Ruleset;

pub use hash::{chain_hash_matches, kube_chain_hash, kube_endpoint_chain_hash};
pub use native::{NativeAnnotations, annotate_native};
pub use types::{Annotation, Direction, Meaning, Owner, PolicyVerdict, ServiceKind, ServicePort};

use resolve::TableAnnotations;

/// Returned for indices the ruleset does not have.
static UNKNOWN: Annotation = Annotation::owned_by(Owner::Other);

/// The annotations of every chain and rule of one [`Ruleset`], addressed by the same indices.
#[derive(Debug, Clone, Default)]
pub struct Annotations {
    tables: Vec<TableAnnotations>,
}

/// Annotates every chain and rule of `ruleset`.
pub fn annotate(ruleset: &Ruleset) -> Annotations {
    Annotations {
        tables: ruleset.tables.iter().map(resolve::annotate_table).collect(),
    }
}

impl Annotations {
    /// The annotation of `ruleset.tables[table_idx].chains[chain_idx]` (owner `Other`, no meaning,
    /// when the indices are out of range).
    pub fn chain(&self, table_idx: usize, chain_idx: usize) -> &Annotation {
        self.chain_entry(table_idx, chain_idx)
            .map_or(&UNKNOWN, |c| &c.annotation)
    }

    /// The annotation of rule `rule_idx0` (0-based) of that chain.
    pub fn rule(&self, table_idx: usize, chain_idx: usize, rule_idx0: usize) -> &Annotation {
        self.chain_entry(table_idx, chain_idx)
            .and_then(|c| c.rules.get(rule_idx0))
            .unwrap_or(&UNKNOWN)
    }

    /// The lower-case protocol (`tcp`, `udp`, …) of a chain's traffic when its rules or the rules
    /// jumping to it name one; the protocol input of kube-proxy's chain hash.
    pub fn chain_protocol(&self, table_idx: usize, chain_idx: usize) -> Option<&str> {
        self.chain_entry(table_idx, chain_idx)?.protocol.as_deref()
    }

    /// Whether a kube-proxy `KUBE-SVC/SVL/EXT/FW/XLB/SEP-` chain's name is the hash of the service
    /// port (and endpoint) its annotation names. `chain_name` is the chain's name in the ruleset.
    pub fn hash_check(&self, table_idx: usize, chain_idx: usize, chain_name: &str) -> HashCheck {
        let Some(protocol) = self.chain_protocol(table_idx, chain_idx) else {
            return HashCheck::Unknown;
        };
        let (service, endpoint) = match &self.chain(table_idx, chain_idx).meaning {
            Some(Meaning::KubeService { service, .. }) => (service, None),
            // Only a full `ip:port` is the hash input; an IP recovered from the hairpin rule is not.
            Some(Meaning::KubeEndpoint { service, endpoint })
                if endpoint.parse::<std::net::SocketAddr>().is_ok() =>
            {
                (service, Some(endpoint.as_str()))
            }
            _ => return HashCheck::Unknown,
        };
        let name = service.to_string();
        match chain_hash_matches(chain_name, &name, protocol, endpoint) {
            Some(true) => HashCheck::Matches,
            Some(false) => HashCheck::Mismatch {
                service_port: name,
                protocol: protocol.to_owned(),
            },
            None => HashCheck::Unknown,
        }
    }

    fn chain_entry(
        &self,
        table_idx: usize,
        chain_idx: usize,
    ) -> Option<&resolve::ChainAnnotations> {
        self.tables.get(table_idx)?.chains.get(chain_idx)
    }
}

/// Result of [`Annotations::hash_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashCheck {
    /// The chain name is kube-proxy's hash of the service port (and endpoint) it serves.
    Matches,
    /// The chain name is not the hash of what its comments say: stale, renamed or foreign.
    Mismatch {
        /// The service port name its comments say.
        service_port: String,
        /// The protocol used for the hash.
        protocol: String,
    },
    /// Not a hashed chain, or the service, endpoint or protocol is not known.
    Unknown,
}
