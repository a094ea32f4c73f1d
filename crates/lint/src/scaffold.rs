//! What stock firewalls and node agents leave empty or unhooked on purpose: one table,
//! [`SCAFFOLDS`], of the chains ufw, firewalld, OpenWrt's fw3, Shorewall, libvirt, Docker,
//! kube-proxy, kubelet, the CNI portmap plugin, Calico, Cilium, Weave, Istio, flannel and
//! kube-router create, and which chain findings are *expected by design* on each (with why).
//!
//! The chain checks ([`crate::checks::structure`]) ask [`Known::expects`] before reporting an
//! `empty-chain` or `unreferenced-chain` finding and stay silent when the tool's scaffold explains
//! it, so a clean stock ruleset lints without warnings. Everything outside the table, and every
//! finding a table entry does not name, is still reported: e.g. Docker's `DOCKER-USER` with rules
//! that nothing jumps to (the admin's rules never run), or Istio's `ISTIO_OUTPUT` unhooked
//! (outbound capture is off). Per-object Kubernetes chains (`KUBE-SVC-…`) are not here: they are
//! judged by [`crate::checks::kube`].
//!
//! This module only holds data and matches names; it neither reads rules nor reports.

use nfscope_ruleset::Ruleset;

/// A chain finding a tool's scaffold produces by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expected {
    /// Jumped to, but without rules (`empty-chain`, info): a hook the tool fills only when a
    /// feature, rule or object needs it.
    Empty,
    /// Nothing jumps to it and it has no rules (`unreferenced-chain`, info).
    UnhookedEmpty,
    /// Nothing jumps to it although it has rules (`unreferenced-chain`, warning): the tool keeps
    /// the chain ready and jumps to it only when a feature or object needs it.
    UnhookedWithRules,
}

use Expected::{Empty, UnhookedEmpty, UnhookedWithRules};

/// One row of the table: a tool's chains (by name pattern) and what is normal for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scaffold {
    /// The tool that creates the chains, as the README names it (`ufw`, `kube-proxy`, …).
    pub tool: &'static str,
    /// Chain-name patterns: exact names, or with `*` standing for any run of characters.
    pub chains: &'static [&'static str],
    /// The row holds only when the ruleset also has a chain matching this pattern (the tool is
    /// running there, not just a chain of the same name left over).
    pub only_with: Option<&'static str>,
    /// The findings that are normal for these chains. Empty: the tool is known, and an empty or
    /// unhooked chain of it is a real problem (still reported).
    pub expected: &'static [Expected],
    /// Why those findings are normal, in plain words.
    pub why: &'static str,
}

/// firewalld's nftables zone and policy sub-chains: `<table>_<IN|FWD|FWDI|FWDO|PRE|POST|OUT>_<zone
/// or policy_NAME>_<pre|log|deny|allow|post>` (firewalld's `core/nftables.py`).
const FIREWALLD_NFT_ZONE_PARTS: &[&str] = &[
    "*_IN_*_pre",
    "*_IN_*_log",
    "*_IN_*_deny",
    "*_IN_*_allow",
    "*_IN_*_post",
    "*_FWD_*_pre",
    "*_FWD_*_log",
    "*_FWD_*_deny",
    "*_FWD_*_allow",
    "*_FWD_*_post",
    "*_FWDI_*_pre",
    "*_FWDI_*_log",
    "*_FWDI_*_deny",
    "*_FWDI_*_allow",
    "*_FWDI_*_post",
    "*_FWDO_*_pre",
    "*_FWDO_*_log",
    "*_FWDO_*_deny",
    "*_FWDO_*_allow",
    "*_FWDO_*_post",
    "*_PRE_*_pre",
    "*_PRE_*_log",
    "*_PRE_*_deny",
    "*_PRE_*_allow",
    "*_PRE_*_post",
    "*_POST_*_pre",
    "*_POST_*_log",
    "*_POST_*_deny",
    "*_POST_*_allow",
    "*_POST_*_post",
    "*_OUT_*_pre",
    "*_OUT_*_log",
    "*_OUT_*_deny",
    "*_OUT_*_allow",
    "*_OUT_*_post",
];

/// The known scaffolds. Order does not matter: a finding is expected when any row that holds
/// names it for the chain.
pub const SCAFFOLDS: &[Scaffold] = &[
    Scaffold {
        tool: "ufw",
        chains: &["ufw-*", "ufw6-*"],
        only_with: None,
        expected: &[Empty, UnhookedEmpty],
        why: "ufw creates its whole chain set on every start (before/after/user/logging/reject/track \
              hooks for each direction); they stay empty until a rule, a logging level or a reject \
              policy fills them",
    },
    Scaffold {
        tool: "ufw",
        chains: &[
            "ufw-logging-allow",
            "ufw-logging-deny",
            "ufw6-logging-allow",
            "ufw6-logging-deny",
            "ufw-skip-to-policy-*",
            "ufw6-skip-to-policy-*",
            "ufw-user-limit",
            "ufw-user-limit-accept",
            "ufw6-user-limit",
            "ufw6-user-limit-accept",
        ],
        only_with: None,
        expected: &[Empty, UnhookedEmpty, UnhookedWithRules],
        why: "ufw fills these with its stock LOG/ACCEPT/REJECT rules but jumps to them only from rules \
              that need them: `log`/`log-all` rules and logging levels (logging-*), before/after rules \
              that defer to the default policy (skip-to-policy-*), `ufw limit` rules (user-limit*)",
    },
    Scaffold {
        tool: "firewalld",
        chains: &[
            "INPUT_direct",
            "OUTPUT_direct",
            "FORWARD_direct",
            "PREROUTING_direct",
            "POSTROUTING_direct",
            "*_ZONES_SOURCE",
        ],
        only_with: None,
        expected: &[Empty],
        why: "firewalld (iptables backend) hooks a `<hook>_direct` chain for `firewall-cmd --direct` \
              rules and a `<hook>_ZONES_SOURCE` chain for zones bound to source addresses; both stay \
              empty unless such rules or bindings are configured",
    },
    Scaffold {
        tool: "firewalld",
        chains: &[
            "IN_*_allow",
            "IN_*_deny",
            "IN_*_log",
            "IN_*_pre",
            "IN_*_post",
            "FWDI_*_allow",
            "FWDI_*_deny",
            "FWDI_*_log",
            "FWDI_*_pre",
            "FWDI_*_post",
            "FWDO_*_allow",
            "FWDO_*_deny",
            "FWDO_*_log",
            "FWDO_*_pre",
            "FWDO_*_post",
            "PRE_*_allow",
            "PRE_*_deny",
            "PRE_*_log",
            "PRE_*_pre",
            "PRE_*_post",
            "POST_*_allow",
            "POST_*_deny",
            "POST_*_log",
            "POST_*_pre",
            "POST_*_post",
            "OUT_*_allow",
            "OUT_*_deny",
            "OUT_*_log",
            "OUT_*_pre",
            "OUT_*_post",
        ],
        only_with: Some("*_ZONES"),
        expected: &[Empty],
        why: "firewalld creates allow/deny/log (and pre/post) sub-chains for every active zone and \
              jumps to them from the zone's chain; they hold rules only for the zone's services, \
              ports, forward ports and rich rules",
    },
    Scaffold {
        tool: "firewalld",
        chains: FIREWALLD_NFT_ZONE_PARTS,
        only_with: Some("*_ZONES"),
        expected: &[Empty],
        why: "firewalld's nftables backend (table `firewalld`) creates `<table>_<hook>_<zone or policy>` \
              chains with pre/log/deny/allow/post sub-chains for every active zone and policy and jumps \
              to all of them; they hold rules only for the zone's services, ports, forward ports and \
              rich rules",
    },
    Scaffold {
        tool: "firewalld",
        chains: FIREWALLD_NFT_ZONE_PARTS,
        only_with: Some("*_dispatch"),
        expected: &[Empty],
        why: "firewalld 1.x (nftables backend, with policies) dispatches from `<table>_<hook>_dispatch` \
              chains to the same `<table>_<hook>_<zone or policy>` chains and their pre/log/deny/allow/post \
              sub-chains, empty unless the zone or policy has rules",
    },
    Scaffold {
        tool: "openwrt-fw3",
        chains: &[
            "input_rule",
            "forwarding_rule",
            "output_rule",
            "prerouting_rule",
            "postrouting_rule",
            "input_*",
            "forwarding_*",
            "output_*",
            "prerouting_*",
            "postrouting_*",
        ],
        only_with: Some("zone_*_forward"),
        expected: &[Empty],
        why: "OpenWrt's fw3 hooks a `*_rule` chain per direction and one per zone (`input_lan`, \
              `forwarding_wan`, …) for the admin's custom rules (/etc/firewall.user); empty by default",
    },
    Scaffold {
        tool: "openwrt-fw3",
        chains: &["zone_*_ACCEPT", "zone_*_DROP", "zone_*_REJECT"],
        only_with: Some("zone_*_forward"),
        expected: &[Empty, UnhookedEmpty],
        why: "fw3 creates each zone's verdict chains and fills them with one rule per network device \
              of the zone that is up; with the device down they are empty, and unused verdicts unhooked",
    },
    Scaffold {
        tool: "shorewall",
        chains: &["tcpre", "tcin", "tcfor", "tcout", "tcpost", "dynamic"],
        only_with: Some("shorewall"),
        expected: &[Empty],
        why: "Shorewall hooks its traffic-shaping mark chains (tc*, filled only from the mangle/tcrules \
              file) and the dynamic blacklist chain (filled by `shorewall drop/reject/blacklist` at \
              runtime) whether or not they are used",
    },
    Scaffold {
        tool: "shorewall",
        chains: &["shorewall", "logdrop", "logreject", "logaccept"],
        only_with: Some("shorewall"),
        expected: &[UnhookedWithRules],
        why: "Shorewall's `shorewall` chain only records the start time (`-m recent --set`) and is \
              never jumped to; logdrop/logreject/logaccept are the targets `shorewall logdrop ADDR` \
              and friends put into the dynamic chain, unused until an address is blacklisted",
    },
    Scaffold {
        tool: "libvirt",
        chains: &["LIBVIRT_*"],
        only_with: None,
        expected: &[Empty, UnhookedEmpty],
        why: "libvirtd creates and hooks LIBVIRT_INP/OUT/FWI/FWO/FWX/PRT at start; they hold rules \
              only while a virtual network is running",
    },
    Scaffold {
        tool: "docker",
        chains: &[
            "DOCKER",
            "DOCKER-FORWARD",
            "DOCKER-BRIDGE",
            "DOCKER-CT",
            "DOCKER-INTERNAL",
            "DOCKER-INGRESS",
            "DOCKER-ISOLATION",
            "DOCKER-ISOLATION-STAGE-*",
        ],
        only_with: None,
        expected: &[Empty, UnhookedEmpty],
        why: "dockerd creates these at start and fills them per network, published port and internal \
              network; with no such network they are empty, and filter DOCKER is hooked only per \
              bridge (from DOCKER-BRIDGE since Docker 28)",
    },
    Scaffold {
        tool: "docker",
        chains: &["DOCKER-USER"],
        only_with: None,
        expected: &[Empty, UnhookedEmpty],
        why: "DOCKER-USER is the admin's hook in front of Docker's forwarding rules: empty until rules \
              are added (rules in it that nothing jumps to are still reported: they never run)",
    },
    Scaffold {
        tool: "kube-proxy",
        chains: &[
            "KUBE-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-PROXY-FIREWALL",
            "KUBE-SOURCE-RANGES-FIREWALL",
            "KUBE-IPVS-OUT-FILTER",
        ],
        only_with: None,
        expected: &[Empty, UnhookedEmpty],
        why: "kube-proxy hooks these at start; the filter-table ones hold rules only for services \
              without endpoints, health-check NodePorts and load-balancer source ranges, so they are \
              empty on a healthy node, and nat KUBE-NODEPORTS is empty (in IPVS mode also unhooked) \
              without NodePort services",
    },
    Scaffold {
        tool: "kube-proxy",
        chains: &[
            "KUBE-MARK-DROP",
            "KUBE-MARK-MASQ",
            "KUBE-FIREWALL",
            "KUBE-LOAD-BALANCER",
            "KUBE-NODE-PORT",
        ],
        only_with: None,
        expected: &[Empty, UnhookedEmpty, UnhookedWithRules],
        why: "marking helpers jumped to only from per-service rules, and IPVS mode's chains that are \
              wired only while their ipset (KUBE-LOAD-BALANCER, KUBE-NODE-PORT-*) has members",
    },
    Scaffold {
        tool: "kube-proxy",
        chains: &[
            "KUBE-NODEPORT-HOST",
            "KUBE-NODEPORT-CONTAINER",
            "KUBE-PORTALS-HOST",
            "KUBE-PORTALS-CONTAINER",
        ],
        only_with: None,
        expected: &[Empty],
        why: "the userspace proxier's portal chains, empty without services of that kind",
    },
    Scaffold {
        tool: "kubelet",
        chains: &[
            "KUBE-KUBELET-CANARY",
            "KUBE-PROXY-CANARY",
            "KUBE-IPTABLES-HINT",
        ],
        only_with: None,
        expected: &[Empty, UnhookedEmpty, UnhookedWithRules],
        why: "canaries and the backend hint: created empty and never jumped to, so kubelet and \
              kube-proxy notice when the table is flushed and iptables wrappers pick the backend",
    },
    Scaffold {
        tool: "cni-portmap",
        chains: &["CNI-HOSTPORT-SETMARK"],
        only_with: None,
        expected: &[Empty, UnhookedEmpty, UnhookedWithRules],
        why: "the portmap plugin's marking helper, jumped to only from per-container hostPort rules",
    },
    Scaffold {
        tool: "cni-portmap",
        chains: &["CNI-HOSTPORT-DNAT"],
        only_with: None,
        expected: &[Empty, UnhookedEmpty],
        why: "hooked by the portmap plugin at the first hostPort; empty while no pod uses one",
    },
    Scaffold {
        tool: "calico",
        chains: &["cali-*"],
        only_with: None,
        expected: &[Empty],
        why: "felix creates and hooks its dispatch chains (host endpoints, floating IPs, NAT-outgoing, \
              rpf-skip, CIDR block…) whether or not those features are in use; felix deletes chains \
              nothing jumps to, so an unhooked cali- chain is still reported",
    },
    Scaffold {
        tool: "cilium",
        chains: &["CILIUM_*_nat", "CILIUM_*_mangle", "CILIUM_*_raw"],
        only_with: None,
        expected: &[Empty],
        why: "the cilium agent hooks its nat/mangle/raw chains at start and fills them only for \
              features done in iptables (masquerading without BPF, proxy redirection, no-track)",
    },
    Scaffold {
        tool: "weave",
        chains: &[
            "WEAVE-NPC-EGRESS-CUSTOM",
            "WEAVE-NPC-INGRESS",
            "WEAVE-NPC-EGRESS-DEFAULT",
        ],
        only_with: None,
        expected: &[Empty],
        why: "weave-npc's user hook and its per-policy dispatch, empty while no NetworkPolicy applies",
    },
    Scaffold {
        tool: "istio",
        chains: &[
            "ISTIO_INBOUND",
            "ISTIO_REDIRECT",
            "ISTIO_IN_REDIRECT",
            "ISTIO_DIVERT",
            "ISTIO_TPROXY",
        ],
        only_with: None,
        expected: &[Empty, UnhookedEmpty, UnhookedWithRules],
        why: "istio-iptables always creates the capture chains; ISTIO_INBOUND is hooked only when \
              inbound ports are captured, ISTIO_REDIRECT only when outbound ranges are, \
              ISTIO_DIVERT/ISTIO_TPROXY only in TPROXY mode (ISTIO_OUTPUT must be hooked: unhooked, \
              it is reported)",
    },
    Scaffold {
        tool: "flannel",
        chains: &["FLANNEL-*"],
        only_with: None,
        expected: &[],
        why: "flanneld always fills FLANNEL-FWD and FLANNEL-POSTRTG: an empty or unhooked one means \
              pod traffic is not forwarded or masqueraded, so it is reported",
    },
    Scaffold {
        tool: "kube-router",
        chains: &["KUBE-NWPLCY-DEFAULT"],
        only_with: Some("KUBE-ROUTER-*"),
        expected: &[UnhookedWithRules],
        why: "kube-router jumps to its default policy chain only from pod firewall chains \
              (KUBE-POD-FW-*), which exist only for pods a NetworkPolicy selects; without a running \
              kube-router (no KUBE-ROUTER-* chains) it is a leftover and still reported",
    },
];

/// The rows of [`SCAFFOLDS`] that hold for one ruleset (their `only_with` chain is there).
#[derive(Debug, Clone)]
pub struct Known {
    rows: Vec<&'static Scaffold>,
}

impl Known {
    /// The rows that hold for `ruleset`: one pass over its chain names per conditional row.
    pub fn for_ruleset(ruleset: &Ruleset) -> Self {
        Self::for_chain_names(|| {
            ruleset
                .tables
                .iter()
                .flat_map(|t| &t.chains)
                .map(|c| c.name.as_str())
        })
    }

    /// The rows that hold for a set of chain names (a native nftables table's, say), given as a
    /// function that lists them afresh for each conditional row.
    pub fn for_chain_names<'a, I>(names: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = &'a str>,
    {
        let present = |pattern: &str| names().any(|name| matches(pattern, name));
        let rows = SCAFFOLDS
            .iter()
            .filter(|s| s.only_with.is_none_or(present))
            .collect();
        Self { rows }
    }

    /// The row that makes `finding` normal on chain `name`, if any.
    pub fn expects(&self, name: &str, finding: Expected) -> Option<&'static Scaffold> {
        self.rows
            .iter()
            .copied()
            .find(|s| s.expected.contains(&finding) && s.chains.iter().any(|p| matches(p, name)))
    }
}

/// Does `name` match `pattern` (`*` stands for any run of characters, possibly empty)?
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        assert!(matches("DOCKER", "DOCKER"));
        assert!(!matches("DOCKER", "DOCKER-USER"));
        assert!(matches("ufw-*", "ufw-user-input"));
        assert!(!matches("ufw-*", "ufw6-user-input"));
        assert!(matches("IN_*_allow", "IN_public_allow"));
        assert!(!matches("IN_*_allow", "IN_public"));
        assert!(
            !matches("IN_*_allow", "IN_allow"),
            "the star sits between two parts"
        );
        assert!(matches("*_ZONES_SOURCE", "INPUT_ZONES_SOURCE"));
        assert!(!matches("*_ZONES", "INPUT_ZONES_SOURCE"));
        assert!(matches("CILIUM_*_nat", "CILIUM_POST_nat"));
        assert!(!matches("CILIUM_*_nat", "CILIUM_FORWARD"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("a*b*c", "a-c"));
    }

    #[test]
    fn every_row_is_complete_and_names_its_chains_once() {
        for s in SCAFFOLDS {
            assert!(!s.tool.is_empty() && !s.chains.is_empty(), "{s:?}");
            assert!(s.why.len() > 40, "{}: say why", s.tool);
            for p in s.chains {
                assert_eq!(
                    s.chains.iter().filter(|q| *q == p).count(),
                    1,
                    "{}: {p} twice",
                    s.tool
                );
            }
        }
    }

    #[test]
    fn the_readme_lists_every_tool_of_the_table() {
        let readme = include_str!("../../../README.md").to_lowercase();
        let section = readme
            .split("**stock scaffolds are not findings.**")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has the scaffold section");
        for s in SCAFFOLDS {
            let name = s.tool.replace('-', " ");
            let name = if s.tool == "kube-router" || s.tool == "kube-proxy" {
                s.tool.to_owned()
            } else {
                name
            };
            assert!(
                section.contains(&format!("| {name}")) || section.contains(&format!(", {name}")),
                "README's scaffold table lacks {}",
                s.tool
            );
        }
    }

    #[test]
    fn a_conditional_row_needs_its_tool() {
        let rules = |extra: &str| {
            let text = format!(
                "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-NWPLCY-DEFAULT - [0:0]\n{extra}COMMIT\n"
            );
            nfscope_ruleset::parse_ruleset(&text, &Default::default()).unwrap()
        };
        let without = Known::for_ruleset(&rules(""));
        assert!(
            without
                .expects("KUBE-NWPLCY-DEFAULT", UnhookedWithRules)
                .is_none()
        );
        let with = Known::for_ruleset(&rules(":KUBE-ROUTER-FORWARD - [0:0]\n"));
        assert_eq!(
            with.expects("KUBE-NWPLCY-DEFAULT", UnhookedWithRules)
                .map(|s| s.tool),
            Some("kube-router")
        );
        assert!(with.expects("KUBE-NWPLCY-DEFAULT", Empty).is_none());
    }
}
