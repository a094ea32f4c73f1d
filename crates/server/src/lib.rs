//! The scrape pipeline of `nfscope serve`, as a library: everything between the kernel reader and
//! the bytes of a `/metrics` body, without HTTP.
//!
//! It owns:
//! - the **scrape cache** ([`ScrapeCache`], its pure part [`Preparer`]): it owns the kernel
//!   reader (`nfscope_kernel::Reader::counters_only`), which hands each parsed ruleset out once
//!   and then reads only counters, and keeps one [`PreparedRuleset`] per (family, backend):
//!   rule labels, Kubernetes plan, rules id and lint counts, built when the rules change
//!   (`Ruleset::rules_id`, the one change test) and shared by every scrape until they change
//!   again. A scrape ([`Scrape`]) is counters ([`nfscope_ruleset::RulesetCounters`]) plus those
//!   entries: nothing that reads rule specs can be handed counters, by type.
//! - **lint off the scrape path**: a background worker lints the rules a collection brought
//!   and fills the entry's counts; until it is done the previous counts (or none) are served.
//! - **single flight** ([`SingleFlight`]): concurrent requests share one collection.
//! - the **`/metrics` encoding** ([`MetricsEncoder`]): the exporter's families from counters and
//!   cached labels, streamed in chunks, then the server's own counters, native nftables, lint,
//!   and the sources of families handed in at construction (flow monitor, Kubernetes
//!   directory), all through `nfscope-expo`'s one interface ([`MetricFamilies`]).
//! - the **Service connection counter** ([`kube_conn`]) its conntrack reader feeds, joined with
//!   kube-proxy's native table into `nfscope_kube_endpoint_new_connections_total` per encoding.
//! - the one-shot views the `rules` command and `/api/rules` use ([`oneshot`]), and the JSON API's
//!   **shared reads** ([`api_reads`]): one read per kind shared by concurrent requests, reused for a
//!   window and then dropped, counted in `nfscope_api_reads_*`.
//! - the rule every JSON endpoint applies to its query string ([`query`]).
//! - explaining failed connection attempts against the live rules ([`failure_explain`]): when
//!   the rules are read for that, the bounded cache of traces and its `nfscope_failure_trace_cache_*`
//!   families.
//!
//! It does not own HTTP (routes, status codes, deadlines: the binary), how the kernel is read
//! (`nfscope-kernel`), the metric schema (`nfscope-exporter`) or what lint finds
//! (`nfscope-lint`). It keeps no process globals: whatever it serves is handed to it.

#![forbid(unsafe_code)]

pub mod api_reads;
mod cache;
pub mod failure_explain;
pub mod http_stats;
pub mod kube_conn;
mod lint;
mod metrics;
pub mod oneshot;
pub mod query;
mod single_flight;

pub use cache::{
    NativeLint, PreparedRuleset, Preparer, Scrape, ScrapeCache, ScrapedRuleset, collector,
};
pub use metrics::{Counters, MetricsEncoder, SelfStats, SharedFamilies};
pub use nfscope_expo::{ChunkSink, Exposition, Kind, MetricFamilies, ScrapeFacts, SinkClosed};
pub use single_flight::{Finished, SingleFlight, TimedOut};
