//! The seam between the binary and the library crates: collecting, preparing and rendering.
//!
//! Owns the per-(family, backend) cache of rule labels (with their Kubernetes series plan) and
//! lint counts the server reuses while the rules are unchanged (only counters moved), and the
//! server's own counters. Every call into
//! `nfscope-kernel`, `nfscope-annotate` and `nfscope-exporter` goes through here, so the commands
//! and the HTTP layer never depend on those crates' exact shapes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use nfscope_annotate::Annotations;
use nfscope_exporter::{ChunkSink, ExportOptions, RuleLabel, RuleLabels, SelfMetrics, SinkClosed};
use nfscope_kernel::CollectOptions;
use nfscope_ruleset::{Backend, Family, ParseError, ParseOptions, Ruleset, Snapshot, SourceKind};

/// A snapshot with everything derived from it that outputs need: annotations and rule labels,
/// both parallel to `snapshot.rulesets`.
#[derive(Debug)]
pub struct Collected {
    /// What was read.
    pub snapshot: Snapshot,
    /// Kubernetes meaning per ruleset (one-shot [`prepare`] only: the server keeps the labels'
    /// Kubernetes series plan instead, see [`RuleLabels::attach_kube_plan`]).
    pub annotations: Arc<Vec<Annotations>>,
    /// Rule ids, canonical texts and comments per ruleset (the server's are shared with its
    /// cache while the rules are unchanged).
    pub labels: Arc<Vec<RuleLabels>>,
    /// The `nfscope_lint_findings` family for the snapshot's rules (server only: recomputed when
    /// the rules or the ipset names change; empty from the one-shot [`prepare`]). Only these
    /// counts are kept: at 70k rules the findings themselves are ~12 MiB.
    pub lint_metrics: Arc<String>,
    /// Where the snapshot goes when this is dropped: back to the server's kernel reader, which
    /// lent it its parsed rulesets (`nfscope_kernel::Reader::lending`) instead of copying them.
    give_back: Option<Sender<Snapshot>>,
}

impl Drop for Collected {
    fn drop(&mut self) {
        if let Some(reader) = self.give_back.take() {
            // The reader may be gone (server shutting down): then the snapshot just drops.
            let _ = reader.send(std::mem::take(&mut self.snapshot));
        }
    }
}

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
}

impl Counters {
    fn record_errors(&self, snapshot: &Snapshot) {
        let mut by_source = self
            .errors_by_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for report in snapshot.sources.iter().filter(|r| r.error.is_some()) {
            match by_source.iter_mut().find(|(kind, _)| *kind == report.kind) {
                Some((_, count)) => *count += 1,
                None => by_source.push((report.kind, 1)),
            }
        }
    }
}

/// Facts about the serving side that go into the exposition besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SelfStats {
    /// Collections run so far.
    pub collections: u64,
    /// Requests that gave up waiting for a collection.
    pub deadline_exceeded: u64,
    /// Wall time of the collection being served.
    pub duration: Duration,
}

/// Parses one dump (restore input or save output).
pub fn parse_ruleset(text: &str, options: &ParseOptions) -> Result<Ruleset, ParseError> {
    nfscope_ruleset::parse_ruleset(text, options)
}

/// Limits a live collection to one family and/or backend.
pub fn restrict(options: &mut CollectOptions, family: Option<Family>, backend: Option<Backend>) {
    if let Some(family) = family {
        options.families = vec![family];
    }
    if let Some(backend) = backend {
        options.backends = vec![backend];
    }
}

/// Export options from `--rule-label` and `--max-rule-series` (0 = no limit).
pub fn export_options(full_rule_label: bool, max_rule_series: usize) -> ExportOptions {
    ExportOptions {
        rule_label: if full_rule_label {
            RuleLabel::Full
        } else {
            RuleLabel::None
        },
        max_rule_series: if max_rule_series == 0 {
            usize::MAX
        } else {
            max_rule_series
        },
    }
}

/// Annotates and labels a snapshot from scratch (the one-shot `rules` command).
pub fn prepare(snapshot: Snapshot) -> Collected {
    let annotations = snapshot
        .rulesets
        .iter()
        .map(nfscope_annotate::annotate)
        .collect();
    let labels = snapshot.rulesets.iter().map(RuleLabels::new).collect();
    Collected {
        snapshot,
        annotations: Arc::new(annotations),
        labels: Arc::new(labels),
        lint_metrics: Arc::default(),
        give_back: None,
    }
}

/// The blocking job a server runs per collection: collect, then prepare with the cache.
pub fn collector(
    options: CollectOptions,
    counters: Arc<Counters>,
) -> impl Fn() -> Collected + Send + Sync + 'static {
    let cache = Mutex::new(PreparedCache::default());
    // Keeps the parsed rule text between collections: re-read only when the ruleset changed.
    // It lends its parsed rulesets to each snapshot; a dropped `Collected` sends them back.
    let reader = Mutex::new(nfscope_kernel::Reader::lending());
    let (give_back, returned) = mpsc::channel::<Snapshot>();
    let returned = Mutex::new(returned);
    move || {
        let started = Instant::now();
        let snapshot = {
            let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
            let returned = returned.lock().unwrap_or_else(PoisonError::into_inner);
            take_back_lent_rulesets(&mut reader, &returned);
            reader.collect(&options)
        };
        counters.collections.fetch_add(1, Ordering::Relaxed);
        counters
            .retries
            .fetch_add(snapshot.retries, Ordering::Relaxed);
        counters.record_errors(&snapshot);
        for report in snapshot.sources.iter().filter(|r| r.error.is_some()) {
            let error = report.error.as_deref().unwrap_or_default();
            tracing::warn!(method = %report.method, %error, "collection source failed");
        }
        let mut collected = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .prepare(snapshot);
        collected.give_back = Some(give_back.clone());
        // Labels, annotations and lint findings are computed: from here on only names, positions
        // and counters are needed, so the specs (most of a parsed ruleset's memory) can go. The
        // reader gets the skeleton back and places the next counters on it.
        for ruleset in &mut collected.snapshot.rulesets {
            if !ruleset.rule_specs_dropped {
                ruleset.drop_rule_specs();
            }
        }
        // The dump text, kernel tables, specs and parse temporaries are gone now: give their
        // pages back.
        nfscope_kernel::release_free_memory();
        tracing::debug!(elapsed = ?started.elapsed(), "collection done");
        collected
    }
}

/// How long a collection waits for the previous snapshot to come back (a request may still be
/// encoding it) before it re-reads the rule text instead.
const GIVE_BACK_WAIT: Duration = Duration::from_secs(2);

/// Hands every returned snapshot back to the reader; when rulesets are still out (a concurrent
/// request holds the previous collection), waits up to [`GIVE_BACK_WAIT`] for them.
fn take_back_lent_rulesets(reader: &mut nfscope_kernel::Reader, returned: &Receiver<Snapshot>) {
    while let Ok(snapshot) = returned.try_recv() {
        reader.give_back(snapshot);
    }
    let deadline = Instant::now() + GIVE_BACK_WAIT;
    while reader.has_lent_rulesets() {
        let left = deadline.saturating_duration_since(Instant::now());
        match returned.recv_timeout(left) {
            Ok(snapshot) => reader.give_back(snapshot),
            Err(_) => break,
        }
    }
}

/// Per (family, backend): the labels (with the Kubernetes series plan built from the
/// annotations, which are not kept) of the last rulesets seen, reused while
/// their rules are unchanged: the reader says so (`Snapshot::rule_text_ids` equal to those the
/// entries were built or last checked for), or else `RuleLabels::fits` does. They are shared (`Arc`) with every
/// [`Collected`] built from them, so a scrape whose rules did not change copies nothing.
#[derive(Default)]
struct PreparedCache {
    keys: Vec<(Family, Backend)>,
    /// The reader's rule text id per entry of `keys` (0 = unknown), from the last snapshot.
    text_ids: Vec<u64>,
    labels: Arc<Vec<RuleLabels>>,
    /// Bumped by every [`Self::rebuild`]: the rules changed.
    rebuilds: u64,
    /// What `lint_metrics` were linted for: the rebuild count and the ipset names (`None` when the
    /// ipsets could not be read). `None` before the first lint.
    linted_for: Option<(u64, Option<Vec<String>>)>,
    lint_metrics: Arc<String>,
}

impl PreparedCache {
    fn prepare(&mut self, snapshot: Snapshot) -> Collected {
        let keys: Vec<(Family, Backend)> = snapshot
            .rulesets
            .iter()
            .map(|r| (r.family, r.backend))
            .collect();
        let text_ids = text_ids(&snapshot);
        let unchanged = keys == self.keys
            && (0..keys.len()).all(|i| self.still_fits(i, text_ids[i], &snapshot.rulesets[i]));
        if !unchanged {
            self.rebuild(keys, &snapshot, &text_ids);
        }
        self.text_ids = text_ids;
        self.lint_if_changed(&snapshot);
        Collected {
            snapshot,
            annotations: Arc::default(),
            labels: Arc::clone(&self.labels),
            lint_metrics: Arc::clone(&self.lint_metrics),
            give_back: None,
        }
    }

    /// Do the cached entry `i`'s labels still describe `ruleset`, whose text id is `text_id`? A
    /// known id equal to the cached one says so without looking at a rule.
    fn still_fits(&self, i: usize, text_id: u64, ruleset: &Ruleset) -> bool {
        let same_text = text_id != 0 && self.text_ids.get(i) == Some(&text_id);
        // A ruleset without specs fits nothing but the text it came from.
        same_text || (!ruleset.rule_specs_dropped && self.labels[i].fits(ruleset))
    }

    /// Re-lints only when the rules changed (a rebuild) or the set of ipset names did, so the
    /// scrape path does not hash every rule a second time to find that out.
    fn lint_if_changed(&mut self, snapshot: &Snapshot) {
        let input = crate::lint_cmd::lint_input(snapshot);
        let ipset_names = input
            .ipsets
            .map(|sets| sets.iter().map(|s| s.name.clone()).collect());
        let key = (self.rebuilds, ipset_names);
        if self.linted_for.as_ref() != Some(&key) {
            let mut metrics = String::new();
            nfscope_lint::encode_finding_metrics(&nfscope_lint::lint(&input), &mut metrics);
            self.lint_metrics = Arc::new(metrics);
            self.linted_for = Some(key);
        }
    }

    /// New entries for `snapshot`, reusing (copying) those of rulesets whose rules still fit.
    fn rebuild(&mut self, keys: Vec<(Family, Backend)>, snapshot: &Snapshot, text_ids: &[u64]) {
        let mut labels = Vec::with_capacity(keys.len());
        for ((key, ruleset), &text_id) in keys.iter().zip(&snapshot.rulesets).zip(text_ids) {
            let old = self.keys.iter().position(|k| k == key);
            match old.filter(|&i| self.still_fits(i, text_id, ruleset)) {
                Some(i) => labels.push(self.labels[i].clone()),
                None => {
                    if ruleset.rule_specs_dropped {
                        // Cannot happen with the lending reader (a skeleton always comes back
                        // under the text id it left with); say so rather than mislabel quietly.
                        tracing::error!(
                            family = %ruleset.family.as_str(),
                            backend = %ruleset.backend.as_str(),
                            "rule labels rebuilt from a ruleset without specs: rule texts are empty until the rules change"
                        );
                    }
                    let mut new = RuleLabels::new(ruleset);
                    new.attach_kube_plan(ruleset, &nfscope_annotate::annotate(ruleset));
                    labels.push(new);
                }
            }
        }
        self.keys = keys;
        self.labels = Arc::new(labels);
        self.rebuilds += 1;
    }
}

/// The reader's rule text id per ruleset of `snapshot`, 0 where it gave none.
fn text_ids(snapshot: &Snapshot) -> Vec<u64> {
    (0..snapshot.rulesets.len())
        .map(|i| snapshot.rule_text_ids.get(i).copied().unwrap_or(0))
        .collect()
}

/// The `/metrics` body: the exporter's exposition plus the server's own collection counters,
/// streamed. The big rule families go to `sink` in chunks of about `chunk_bytes` as they are
/// encoded; the returned string holds the rest (send it last). Stops with [`SinkClosed`] as soon
/// as the sink refuses a chunk (the client went away).
pub fn stream_metrics(
    collected: &Collected,
    export: &ExportOptions,
    counters: &Counters,
    stats: &SelfStats,
    chunk_bytes: usize,
    sink: &mut dyn ChunkSink,
) -> Result<String, SinkClosed> {
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
    let streamed = nfscope_exporter::encode_metrics_streaming(
        &collected.snapshot,
        &collected.annotations,
        &collected.labels,
        &self_metrics,
        export,
        chunk_bytes,
        sink,
    )?;
    counters
        .rule_series_dropped
        .fetch_add(streamed.rule_series_dropped, Ordering::Relaxed);
    let mut tail = streamed.tail;
    append_server_metrics(&mut tail, stats);
    append_source_metrics(&mut tail, &collected.snapshot, counters);
    nfscope_exporter::append_nftables_metrics(&mut tail, &collected.snapshot);
    tail.push_str(&collected.lint_metrics);
    crate::flow_api::append_metrics(&mut tail);
    Ok(tail)
}

/// Server-side families the exporter's `SelfMetrics` does not carry (yet).
fn append_server_metrics(body: &mut String, stats: &SelfStats) {
    use std::fmt::Write;
    let _ = write!(
        body,
        "# HELP nfscope_collections_total Collections run since start; concurrent scrapes share one.\n\
         # TYPE nfscope_collections_total counter\n\
         nfscope_collections_total {}\n\
         # HELP nfscope_collection_deadline_exceeded_total Requests answered 503 because a collection outlived the deadline.\n\
         # TYPE nfscope_collection_deadline_exceeded_total counter\n\
         nfscope_collection_deadline_exceeded_total {}\n\
         # HELP nfscope_collection_duration_seconds Wall time of the collection behind this response.\n\
         # TYPE nfscope_collection_duration_seconds gauge\n\
         nfscope_collection_duration_seconds {}\n",
        stats.collections,
        stats.deadline_exceeded,
        stats.duration.as_secs_f64()
    );
}

/// Which source served this collection and how often collections had to start over.
fn append_source_metrics(body: &mut String, snapshot: &Snapshot, counters: &Counters) {
    use std::fmt::Write;
    let _ = writeln!(
        body,
        "# HELP nfscope_scrape_source How the rules behind this response were read (netlink or exec).\n\
         # TYPE nfscope_scrape_source gauge\n\
         nfscope_scrape_source{{source=\"{}\"}} 1\n\
         # HELP nfscope_collection_retries_total Collections that started over because the ruleset changed while it was read.\n\
         # TYPE nfscope_collection_retries_total counter\n\
         nfscope_collection_retries_total {}",
        snapshot.rule_source,
        counters.retries.load(Ordering::Relaxed)
    );
}

/// The JSON view (`/api/rules`, `rules --format json`).
pub fn rules_json(collected: &Collected) -> anyhow::Result<String> {
    let mut value = nfscope_exporter::rules_json(&collected.snapshot, &collected.annotations);
    if let Some(object) = value.as_object_mut()
        && !collected.snapshot.rule_source.is_empty()
    {
        object.insert(
            "source".to_owned(),
            collected.snapshot.rule_source.clone().into(),
        );
    }
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(text)
}

/// The terminal listing (`rules --format text`).
pub fn rules_text(collected: &Collected) -> String {
    nfscope_exporter::rules_text(&collected.snapshot, &collected.annotations)
}

#[cfg(test)]
mod tests {
    use nfscope_ruleset::{ParseOptions, parse_ruleset};

    use super::*;

    fn snapshot(dump: &str) -> Snapshot {
        let ruleset = parse_ruleset(dump, &ParseOptions::default()).expect("test dump parses");
        Snapshot {
            rulesets: vec![ruleset],
            ..Snapshot::default()
        }
    }

    const TWO_RULES: &str = "# Generated by iptables-nft-save v1.8.9 (nf_tables)\n*filter\n:INPUT ACCEPT [0:0]\n\
        [1:60] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n[2:120] -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";

    #[test]
    fn the_label_cache_follows_rule_changes_but_not_counter_changes() {
        let mut cache = PreparedCache::default();
        let first = cache.prepare(snapshot(TWO_RULES));
        let counters_moved = cache.prepare(snapshot(&TWO_RULES.replace("[1:60]", "[9:540]")));
        assert_eq!(first.labels, counters_moved.labels);
        assert!(
            Arc::ptr_eq(&first.labels, &counters_moved.labels),
            "unchanged rules share the cached labels instead of copying them"
        );
        assert_eq!(
            counters_moved.snapshot.rulesets[0].tables[0].chains[0].rules[0]
                .counters
                .unwrap()
                .packets,
            9
        );

        let removed = TWO_RULES.replace("[1:60] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n", "");
        let after_removal = cache.prepare(snapshot(&removed));
        assert_eq!(
            after_removal.labels[0].ids().len(),
            1,
            "labels rebuilt for the changed ruleset"
        );
        assert_eq!(
            after_removal.labels[0].rule_text(0, 0, 0),
            "-p tcp -m tcp --dport 80 -j ACCEPT"
        );
        let ruleset = &after_removal.snapshot.rulesets[0];
        let mut expected = RuleLabels::new(ruleset);
        expected.attach_kube_plan(ruleset, &nfscope_annotate::annotate(ruleset));
        assert_eq!(after_removal.labels[0], expected);
    }

    fn with_text_id(mut snapshot: Snapshot, id: u64) -> Snapshot {
        snapshot.rule_text_ids = vec![id];
        snapshot
    }

    #[test]
    fn a_known_unchanged_text_id_skips_the_rule_check_and_an_unknown_one_does_not() {
        let mut cache = PreparedCache::default();
        let first = cache.prepare(with_text_id(snapshot(TWO_RULES), 7));
        // Same id: the reader vouches for the text, so even different specs (which a real reader
        // never reports under one id) keep the cached labels; proof that no rule was compared.
        let edited = TWO_RULES.replace("--dport 80", "--dport 8080");
        let trusted = cache.prepare(with_text_id(snapshot(&edited), 7));
        assert!(Arc::ptr_eq(&first.labels, &trusted.labels));
        // A new id or no id at all: the rules are compared, and the edit is seen.
        let new_id = cache.prepare(with_text_id(snapshot(&edited), 8));
        assert!(!Arc::ptr_eq(&first.labels, &new_id.labels));
        assert_eq!(
            new_id.labels[0].rule_text(0, 0, 1),
            "-p tcp -m tcp --dport 8080 -j ACCEPT"
        );
        let unknown = cache.prepare(with_text_id(snapshot(TWO_RULES), 0));
        assert_eq!(
            unknown.labels[0].rule_text(0, 0, 1),
            "-p tcp -m tcp --dport 80 -j ACCEPT"
        );
        let no_ids = cache.prepare(snapshot(&edited));
        assert_eq!(
            no_ids.labels[0].rule_text(0, 0, 1),
            "-p tcp -m tcp --dport 8080 -j ACCEPT"
        );
        // A new id for the same text: labels kept (they still fit), and the id is remembered.
        let same_text = cache.prepare(with_text_id(snapshot(&edited), 9));
        assert!(Arc::ptr_eq(&no_ids.labels, &same_text.labels));
        assert_eq!(cache.text_ids, [9]);
    }

    #[test]
    fn lint_runs_again_only_when_rules_or_ipset_names_change() {
        const DANGLING: &str =
            "*filter\n:INPUT ACCEPT [0:0]\n:OLD - [0:0]\n[1:60] -A INPUT -j ACCEPT\nCOMMIT\n";
        let mut cache = PreparedCache::default();
        // The sum of the `nfscope_lint_findings` samples of one finding id.
        let count = |metrics: &str, id: &str| -> u64 {
            let label = format!("id=\"{id}\"");
            metrics
                .lines()
                .filter(|l| l.starts_with("nfscope_lint_findings{") && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        };
        let first = cache.prepare(snapshot(DANGLING));
        assert_eq!(
            count(&first.lint_metrics, "unreferenced-chain"),
            1,
            "{}",
            first.lint_metrics
        );
        let counters_moved = cache.prepare(snapshot(&DANGLING.replace("[1:60]", "[5:300]")));
        assert!(Arc::ptr_eq(
            &first.lint_metrics,
            &counters_moved.lint_metrics
        ));
        let fixed = cache.prepare(snapshot(&DANGLING.replace(":OLD - [0:0]\n", "")));
        assert_eq!(count(&fixed.lint_metrics, "unreferenced-chain"), 0);
        assert!(fixed.lint_metrics.contains("nfscope_lint_findings{"));
        let mut with_sets = snapshot(&DANGLING.replace(":OLD - [0:0]\n", ""));
        with_sets.sources.push(nfscope_ruleset::SourceReport {
            kind: SourceKind::Ipsets,
            method: "test".into(),
            error: None,
            duration_seconds: 0.0,
        });
        let relinted = cache.prepare(with_sets);
        assert!(!Arc::ptr_eq(&fixed.lint_metrics, &relinted.lint_metrics));
    }

    #[test]
    fn rulesets_that_disappear_leave_the_cache() {
        let mut cache = PreparedCache::default();
        cache.prepare(snapshot(TWO_RULES));
        assert_eq!(cache.keys.len(), 1);
        cache.prepare(Snapshot::default());
        assert!(cache.keys.is_empty() && cache.labels.is_empty());
    }

    #[test]
    fn zero_means_no_series_limit() {
        assert_eq!(export_options(false, 0).max_rule_series, usize::MAX);
        assert_eq!(export_options(true, 7).max_rule_series, 7);
        assert_eq!(export_options(true, 7).rule_label, RuleLabel::Full);
    }
}
