//! ipset model and the parser for `ipset save` and `ipset list` output.

use serde::Serialize;

use crate::model::Family;

mod parser;

pub use parser::{parse_ipsets, parse_ipsets_with};

/// One ipset as `ipset save` or `ipset list` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpSet {
    /// Set name as the kernel knows it, including any `inet6:` prefix kube-router uses.
    pub name: String,
    /// Set type, e.g. `hash:ip`, `hash:net`, `hash:ip,port`, `list:set`.
    pub set_type: String,
    /// `family inet` → IPv4, `family inet6` → IPv6; `None` for types without a family (`list:set`).
    pub family: Option<Family>,
    /// Header options after the type, in order (`hashsize 1024`, `maxelem 65536`, `timeout 0`, …);
    /// flags without a value have an empty value.
    pub header: Vec<(String, String)>,
    /// Members as written (`10.0.0.1`, `10.0.0.0/8`, `10.96.0.1,tcp:443`), with their per-member
    /// options removed. Empty when the source listed headers only (`ipset list -t`).
    pub members: Vec<String>,
    /// Number of entries: `Number of entries:` from `ipset list`, else `members.len()`.
    pub entries: u64,
    /// `Size in memory:` in bytes, when the source says it (`ipset list`).
    pub memory_bytes: Option<u64>,
    /// `References:` (how many iptables rules or list sets use it), when the source says it.
    pub references: Option<u64>,
}
