//! Netfilter state model and parsers: the pure core of nfscope.
//!
//! This crate owns what an `iptables-save` / `ip6tables-save` dump (either backend, with or without
//! `-c`), kube-proxy's `iptables-restore` input, and `ipset save` / `ipset list` output *mean* as
//! data, how to turn that data back into canonical save syntax, and the [`Snapshot`] that carries a
//! node's collected state to the outputs. It does no I/O and reads no clock: callers hand it text
//! and get a [`Ruleset`] or a [`ParseError`] with line and column. It refuses what
//! `iptables-restore` and `ipset restore` refuse (malformed option values, unknown tables, jump
//! loops a hook reaches, …), bounds what one input may create ([`Limits`]), and escapes control
//! characters of the input in every message ([`escape_control`]).
//!
//! It does not know about Kubernetes (see `nfscope-annotate`), the kernel (`nfscope-kernel`) or
//! metrics (`nfscope-exporter`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod counters;
pub mod escape;
pub mod hash;
pub mod ipset;
pub mod lower;
pub mod model;
pub mod nft;
pub mod parse;
pub mod render;
pub mod snapshot;
pub mod symbol;
pub mod typed;

pub use counters::{ChainCounters, RulesetCounters, TableCounters};
pub use escape::escape_control;
pub use hash::FxHasher;
pub use ipset::IpSet;
pub use ipset::{parse_ipsets, parse_ipsets_with};
pub use lower::lower_rule;
pub use model::*;
pub use nft::{Format, NftLimits, detect_format, parse_nft_json, parse_nft_text, render_nft};
pub use parse::{Limits, ParseError, ParseOptions, parse_ruleset};
pub use render::{render_rule_spec, render_ruleset};
pub use snapshot::{
    ConntrackStats, NftNamedCounter, NftRule, NftSet, NftablesState, Snapshot, SourceKind,
    SourceReport, TextFallback,
};
