//! The TCP flow monitor's logic: who talks to whom, how much, how fast, and how it ended.
//!
//! This crate owns the connection table ([`FlowTable`]), a pure state machine fed with
//! conntrack events ([`CtEvent`]) and TCP control packets ([`PacketMeta`]), with time always
//! passed in (`now`, a [`Time`] since the Unix epoch); naming endpoints from a static names file
//! ([`Names`]); aggregation by workload with bounded cardinality ([`Aggregates`]); and the
//! documents the outputs serve: the `/api/flows` JSON ([`api`]), the Grafana Node Graph API
//! ([`graph`]) and the Prometheus text of the flow metrics ([`metrics`]). Failed attempts
//! (refused, reset, timed out, unreachable) are detected by the table and grouped in the
//! [`failure`] table; explaining them is the caller's, through [`ExplainFailure`].
//!
//! It does no I/O and reads no clock: opening sockets, parsing netlink messages and reading the
//! packet ring belong to `nfscope-kernel`; threads, HTTP and the terminal to the binary. That is
//! what lets the unit tests drive a connection's whole life with synthetic times.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregate;
pub mod api;
pub mod event;
pub mod failure;
pub mod graph;
pub mod metrics;
pub mod names;
pub mod packet;
pub mod table;

pub use aggregate::{Aggregates, PairKey, PairStats};
pub use event::{CtCounters, CtEvent, CtKind, TcpState, Tuple};
pub use failure::{
    ExplainFailure, FailedAttempt, FailureExplanation, FailureReason, FailureTable, NoExplanation,
    Proto,
};
pub use names::{Name, NameError, Names};
pub use packet::{PacketMeta, TcpFlags, UdpUnreachable, parse_icmp_udp_error, parse_ip_tcp};
pub use table::{Conn, End, FlowConfig, FlowStats, FlowTable, Side, TableSnapshot};

/// A point in time: the duration since the Unix epoch (the caller's clock or the kernel's packet
/// timestamp). Never read here, always passed in.
pub type Time = std::time::Duration;
