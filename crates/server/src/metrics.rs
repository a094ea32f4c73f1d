//! The `/metrics` body of a scrape and the server's own counters.
//!
//! Owns the order of the body: the exporter's families (rule series streamed in chunks, from
//! counters and cached labels), then the server's own families, native nftables, lint, and the
//! sources of families handed in at construction, in their order. Every family is written
//! through `nfscope-expo` ([`MetricFamilies`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nfscope_expo::{ChunkSink, Exposition, Kind, MetricFamilies, ScrapeFacts, SinkClosed};
use nfscope_exporter::{CountedRules, ExportOptions, NftablesFamilies, SelfMetrics};
use nfscope_ruleset::{Snapshot, SourceKind};

use crate::cache::Scrape;
use crate::kube_conn::KubeConnections;

/// A source of families shared with the server (the flow monitor, the Kubernetes directory).
pub type SharedFamilies = Arc<dyn MetricFamilies + Send + Sync>;

/// The server's running totals, updated by every collection.
#[derive(Debug, Default)]
pub struct Counters {
    /// Collections run (each may serve many requests).
    pub collections: AtomicU64,
    /// Failed collections per source.
    pub errors_by_source: Mutex<Vec<(SourceKind, u64)>>,
    /// `/metrics` requests answered with a body.
    pub scrapes: AtomicU64,
    /// Rules left without series by the cardinality budget, summed over scrapes.
    pub rule_series_dropped: AtomicU64,
    /// Collections that started over because the ruleset changed while it was read.
    pub retries: AtomicU64,
    /// Rule-text reads that fell back to a save tool, per (backend, family, reason); at most
    /// `MAX_FALLBACK_LABELS` label sets, the rest counted under reason `other`.
    pub text_fallbacks: Mutex<Vec<(FallbackLabels, u64)>>,
}

/// (backend, family, reason) of `nfscope_rule_text_fallbacks_total`.
pub type FallbackLabels = (String, String, String);

/// The most (backend, family, reason) label sets `nfscope_rule_text_fallbacks_total` keeps.
pub const MAX_FALLBACK_LABELS: usize = 64;

impl Counters {
    /// Counts one collection that read `snapshot` and logs its failed sources.
    pub(crate) fn record(&self, snapshot: &Snapshot) {
        self.collections.fetch_add(1, Ordering::Relaxed);
        self.retries.fetch_add(snapshot.retries, Ordering::Relaxed);
        if !snapshot.text_fallbacks.is_empty() {
            let mut counts = self
                .text_fallbacks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for fallback in &snapshot.text_fallbacks {
                tracing::warn!(backend = %fallback.backend, family = %fallback.family,
                    detail = %fallback.detail, "rule text read with the save tool");
                let (backend, family) = (fallback.backend.to_string(), fallback.family.to_string());
                let mut key = (backend, family, fallback.reason.clone());
                if counts.len() >= MAX_FALLBACK_LABELS && !counts.iter().any(|(k, _)| *k == key) {
                    key.2 = "other".to_owned();
                }
                match counts.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, count)) => *count += 1,
                    None => counts.push((key, 1)),
                }
            }
        }
        let mut by_source = self
            .errors_by_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for report in snapshot.sources.iter().filter(|r| r.error.is_some()) {
            let error = report.error.as_deref().unwrap_or_default();
            tracing::warn!(method = %report.method, %error, "collection source failed");
            match by_source.iter_mut().find(|(kind, _)| *kind == report.kind) {
                Some((_, count)) => *count += 1,
                None => by_source.push((report.kind, 1)),
            }
        }
    }
}

/// Facts about the serving side that go into the exposition besides the scrape.
#[derive(Debug, Clone, Copy)]
pub struct SelfStats {
    /// Collections run so far.
    pub collections: u64,
    /// Requests that gave up waiting for a collection.
    pub deadline_exceeded: u64,
    /// Wall time of the collection being served.
    pub duration: Duration,
}

/// Writes `/metrics` bodies: export options, the server's counters and the sources of families
/// it was handed.
pub struct MetricsEncoder {
    export: ExportOptions,
    counters: Arc<Counters>,
    families: Vec<SharedFamilies>,
    kube_connections: Option<Arc<KubeConnections>>,
}

impl std::fmt::Debug for MetricsEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEncoder")
            .field("export", &self.export)
            .field("families", &self.families.len())
            .finish_non_exhaustive()
    }
}

impl MetricsEncoder {
    /// An encoder with these options, counting into `counters`, appending `families` (in this
    /// order) after its own.
    pub fn new(
        export: ExportOptions,
        counters: Arc<Counters>,
        families: Vec<SharedFamilies>,
    ) -> Self {
        Self {
            export,
            counters,
            families,
            kube_connections: None,
        }
    }

    /// Merges the Service connections `counter` counts from conntrack into the Kubernetes
    /// endpoint series, and writes its own families after native nftables.
    pub fn with_kube_connections(mut self, counter: Arc<KubeConnections>) -> Self {
        self.kube_connections = Some(counter);
        self
    }

    /// The server's running totals.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The `/metrics` body of `scrape`, streamed: the big rule families go to `sink` in chunks
    /// of about `chunk_bytes` as they are encoded; the returned string holds the rest (send it
    /// last). Stops with [`SinkClosed`] as soon as the sink refuses a chunk.
    pub fn stream(
        &self,
        scrape: &Scrape,
        stats: &SelfStats,
        chunk_bytes: usize,
        sink: &mut dyn ChunkSink,
    ) -> Result<String, SinkClosed> {
        let counters = &self.counters;
        let self_metrics = SelfMetrics {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            scrapes_total: counters.scrapes.fetch_add(1, Ordering::Relaxed) + 1,
            rule_series_dropped_total: counters.rule_series_dropped.load(Ordering::Relaxed),
            collection_errors_total: counters
                .errors_by_source
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        let rules: Vec<CountedRules<'_>> = scrape
            .rulesets
            .iter()
            .map(|r| CountedRules {
                counters: &r.counters,
                labels: &r.prepared.labels,
            })
            .collect();
        let conntrack = self
            .kube_connections
            .as_ref()
            .map(|k| k.series(&scrape.snapshot.nftables))
            .unwrap_or_default();
        let streamed = nfscope_exporter::encode_counters_streaming_with(
            &rules,
            &scrape.snapshot,
            &self_metrics,
            &self.export,
            chunk_bytes,
            sink,
            &conntrack,
        )?;
        counters
            .rule_series_dropped
            .fetch_add(streamed.rule_series_dropped, Ordering::Relaxed);
        let facts = ScrapeFacts {
            kube_endpoints: &streamed.kube_endpoints,
        };
        let mut tail = Exposition::appending_to(streamed.tail);
        let own = ServerFamilies {
            stats,
            rule_source: &scrape.snapshot.rule_source,
            retries: counters.retries.load(Ordering::Relaxed),
            text_fallbacks: counters
                .text_fallbacks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        own.encode(&facts, &mut tail);
        NftablesFamilies::new(&scrape.snapshot.nftables, &self.export).encode(&facts, &mut tail);
        if let Some(k) = &self.kube_connections {
            k.encode(&facts, &mut tail);
        }
        if let Some(lint) = scrape.lint_counts() {
            lint.encode(&facts, &mut tail);
        }
        for families in &self.families {
            families.encode(&facts, &mut tail);
        }
        Ok(tail.into_string())
    }
}

/// The server's own families beyond the exporter's `SelfMetrics`.
struct ServerFamilies<'a> {
    stats: &'a SelfStats,
    rule_source: &'a str,
    retries: u64,
    text_fallbacks: Vec<(FallbackLabels, u64)>,
}

impl MetricFamilies for ServerFamilies<'_> {
    fn encode(&self, _: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        let stats = self.stats;
        let name = "nfscope_collections_total";
        out.family(
            name,
            Kind::Counter,
            "Collections run since start; concurrent scrapes share one.",
        );
        out.sample(name, &[], stats.collections);
        let name = "nfscope_collection_deadline_exceeded_total";
        out.family(
            name,
            Kind::Counter,
            "Requests answered 503 because a collection outlived the deadline.",
        );
        out.sample(name, &[], stats.deadline_exceeded);
        let name = "nfscope_collection_duration_seconds";
        out.family(
            name,
            Kind::Gauge,
            "Wall time of the collection behind this response.",
        );
        out.sample(name, &[], stats.duration.as_secs_f64());
        let name = "nfscope_scrape_source";
        out.family(
            name,
            Kind::Gauge,
            "How the rules behind this response were read (netlink or exec).",
        );
        out.sample(name, &[("source", self.rule_source)], 1u64);
        let name = "nfscope_collection_retries_total";
        out.family(
            name,
            Kind::Counter,
            "Collections that started over because the ruleset changed while it was read.",
        );
        out.sample(name, &[], self.retries);
        let name = "nfscope_rule_text_fallbacks_total";
        out.family(
            name,
            Kind::Counter,
            "Rule-text reads that ran the save tool because the kernel decoder could not render a rule exactly.",
        );
        for ((backend, family, reason), count) in &self.text_fallbacks {
            out.sample(
                name,
                &[("backend", backend), ("family", family), ("reason", reason)],
                *count,
            );
        }
    }
}
