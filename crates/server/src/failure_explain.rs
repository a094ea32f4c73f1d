//! Explaining failed connection attempts against the live rules, for `serve --flows`.
//!
//! Owns when the node's rules are read for that ([`FailureExplainer`]): a read (the same
//! `TraceInput` `/api/trace` answers from, handed in as a function by the binary) is kept for a
//! refresh window and then made again when the next failure comes; its fingerprint
//! (`nfscope_trace::failure::input_generation`) is the cache's generation, so traces survive a
//! re-read of unchanged rules and entries of changed rules are dropped. It owns the one
//! [`TraceCache`] (bounded, with a budget of traces per second) and publishes its counters as the
//! `nfscope_failure_trace_cache_*` families. A failed read is retried only after the window, so
//! a broken tool is not run for every failure.
//!
//! It does not own what an explanation says (`nfscope_trace::failure`), how the rules are read
//! (the binary's `trace_cmd`), nor the failure table (`nfscope-flow`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nfscope_annotate::{Annotations, NativeAnnotations, annotate, annotate_native};
use nfscope_expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};
use nfscope_trace::TraceInput;
use nfscope_trace::failure::{
    Attempt, CacheLimits, CacheStats, Cause, Explainer, Lookup, TraceCache, input_generation,
};

/// How a [`FailureExplainer`] reads and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExplainConfig {
    /// How long one read of the rules is used before the next failure reads them again.
    pub refresh: Duration,
    /// The cache's size, client prefixes and budget of traces.
    pub limits: CacheLimits,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            limits: CacheLimits::default(),
        }
    }
}

/// One failed attempt explained, as the failure table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureExplained {
    /// The `/api/trace` object of the attempt's first packet, as JSON (`null` when it could
    /// not be traced).
    pub trace_json: Arc<str>,
    /// One line saying why.
    pub explanation: String,
    /// The bounded cause (`Cause::as_str` is the metric label value).
    pub cause: Cause,
}

/// Reads the node's rules for tracing (the binary's live `TraceInput`).
pub type ReadInput = dyn Fn() -> Result<TraceInput, String> + Send + Sync;

/// The rules one read brought, with their meanings and fingerprint.
struct Model {
    input: TraceInput,
    annotations: Vec<Annotations>,
    native: Vec<NativeAnnotations>,
    generation: u64,
}

struct State {
    /// The current read (or why it failed) and when it was made.
    model: Option<(Result<Arc<Model>, String>, Instant)>,
    cache: TraceCache,
}

/// Counters published on `/metrics` (kept apart from [`State`] so a scrape never waits for
/// a read of the rules).
#[derive(Debug, Default, Clone, Copy)]
struct Published {
    cache: CacheStats,
    reads: u64,
    read_errors: u64,
}

/// Explains failed attempts against the live rules (see the module documentation). Its
/// [`MetricFamilies`] are the `nfscope_failure_trace_cache_*` families.
pub struct FailureExplainer {
    read: Box<ReadInput>,
    config: ExplainConfig,
    started: Instant,
    state: Mutex<State>,
    published: Mutex<Published>,
}

impl FailureExplainer {
    /// An explainer that reads the rules with `read`.
    pub fn new(
        read: impl Fn() -> Result<TraceInput, String> + Send + Sync + 'static,
        config: ExplainConfig,
    ) -> Self {
        Self {
            read: Box::new(read),
            config,
            started: Instant::now(),
            state: Mutex::new(State {
                model: None,
                cache: TraceCache::new(config.limits),
            }),
            published: Mutex::new(Published::default()),
        }
    }

    /// Explains `attempt`: from the cache, else by tracing its first packet through the rules
    /// (read again when the last read is older than the refresh window). `None` when the budget
    /// of traces is spent (a later attempt of the same kind may be explained). Blocks while the
    /// rules are read (up to the read's own time limit), and attempts are explained one at a
    /// time: call it off the packet-capture path.
    pub fn explain(&self, attempt: &Attempt) -> Option<FailureExplained> {
        let mut state = lock(&self.state);
        let (model, reads, read_errors) = self.model(&mut state);
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let answer = match model {
            Err(reason) => Some(FailureExplained {
                trace_json: Arc::from("null"),
                explanation: format!("not traced: the node's rules could not be read: {reason}"),
                cause: Cause::NotTraced,
            }),
            Ok(model) => {
                let lookup = state
                    .cache
                    .get_or_trace(attempt, model.generation, now_ms, || {
                        Explainer::new(&model.input, &model.annotations, &model.native)
                            .trace(attempt)
                    });
                match lookup {
                    Lookup::Explained(e) => Some(FailureExplained {
                        trace_json: e.trace_json,
                        explanation: e.explanation,
                        cause: e.cause,
                    }),
                    Lookup::Failed(reason) => Some(FailureExplained {
                        trace_json: Arc::from("null"),
                        explanation: format!("not traced: {reason}"),
                        cause: Cause::NotTraced,
                    }),
                    Lookup::OverBudget => None,
                }
            }
        };
        let stats = state.cache.stats();
        drop(state);
        let mut published = lock(&self.published);
        published.cache = stats;
        published.reads += reads;
        published.read_errors += read_errors;
        answer
    }

    /// Drops the kept read of the rules (and the traces of it) once its refresh window has
    /// passed, so an idle server holds no model of the rules; the server may call this from a
    /// timer. True when something was dropped.
    pub fn release_if_stale(&self) -> bool {
        let mut state = lock(&self.state);
        let stale = state
            .model
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= self.config.refresh);
        if stale {
            state.model = None;
            state.cache.clear();
            let stats = state.cache.stats();
            drop(state);
            lock(&self.published).cache = stats;
        }
        stale
    }

    /// The current read, made again when older than the refresh window; with the reads and
    /// failed reads made now.
    fn model(&self, state: &mut State) -> (Result<Arc<Model>, String>, u64, u64) {
        if let Some((model, at)) = &state.model
            && at.elapsed() < self.config.refresh
        {
            return (model.clone(), 0, 0);
        }
        let read = (self.read)().map(|input| {
            let annotations = input.rulesets.iter().map(annotate).collect();
            let native = input.native.iter().map(annotate_native).collect();
            let generation = input_generation(&input);
            Arc::new(Model {
                input,
                annotations,
                native,
                generation,
            })
        });
        if let Ok(model) = &read {
            // Traces of other rules can never hit again: free them now.
            state.cache.retain_generation(model.generation);
        }
        let failed = u64::from(read.is_err());
        state.model = Some((read.clone(), Instant::now()));
        (read, 1, failed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MetricFamilies for FailureExplainer {
    fn encode(&self, _: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        let p = *lock(&self.published);
        let capacity = self.config.limits.capacity as u64;
        for (name, kind, help, value) in [
            (
                "nfscope_failure_trace_cache_hits_total",
                Kind::Counter,
                "Failed connection attempts explained from a cached trace.",
                p.cache.hits,
            ),
            (
                "nfscope_failure_trace_cache_misses_total",
                Kind::Counter,
                "Failed connection attempts whose trace was not cached (traced, or over budget).",
                p.cache.misses,
            ),
            (
                "nfscope_failure_trace_cache_evictions_total",
                Kind::Counter,
                "Traces evicted from the cache to stay within its capacity.",
                p.cache.evictions,
            ),
            (
                "nfscope_failure_trace_cache_over_budget_total",
                Kind::Counter,
                "Failed connection attempts left unexplained because the budget of traces per second was spent.",
                p.cache.over_budget,
            ),
            (
                "nfscope_failure_trace_cache_errors_total",
                Kind::Counter,
                "Traces of failed attempts that could not be made (the attempt names something the node does not have).",
                p.cache.errors,
            ),
            (
                "nfscope_failure_trace_cache_entries",
                Kind::Gauge,
                "Traces in the cache.",
                p.cache.entries,
            ),
            (
                "nfscope_failure_trace_cache_capacity",
                Kind::Gauge,
                "Traces the cache holds at most.",
                capacity,
            ),
            (
                "nfscope_failure_trace_cache_rule_reads_total",
                Kind::Counter,
                "Reads of the node's rules made to explain failed attempts.",
                p.reads,
            ),
            (
                "nfscope_failure_trace_cache_rule_read_errors_total",
                Kind::Counter,
                "Reads of the node's rules for explaining failed attempts that failed.",
                p.read_errors,
            ),
        ] {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};

    use nfscope_ruleset::{Backend, Family, ParseOptions, parse_ruleset};
    use nfscope_trace::failure::AttemptFailure;
    use nfscope_trace::{Proto, parse_routes};

    use super::*;

    fn input(rules: &str) -> TraceInput {
        let rs = parse_ruleset(
            rules,
            &ParseOptions {
                family: Some(Family::Ipv4),
                backend: Some(Backend::Legacy),
                lenient: false,
                ..Default::default()
            },
        )
        .unwrap();
        let mut input = TraceInput::new(vec![rs]);
        input.local_addrs = vec!["10.0.0.1".parse().unwrap()];
        input.routes = Some(
            parse_routes("10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n").unwrap(),
        );
        input
    }

    const DROP_22: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j DROP\nCOMMIT\n";

    fn attempt(client: &str, port: u16) -> Attempt {
        Attempt {
            client: client.parse::<SocketAddr>().unwrap(),
            dialled: SocketAddr::from(([10, 0, 0, 1], port)),
            proto: Proto::Tcp,
            in_iface: Some("eth0".into()),
            mark: None,
            failure: AttemptFailure::Timeout,
            server: None,
        }
    }

    fn metric(explainer: &FailureExplainer, name: &str) -> u64 {
        let mut out = Exposition::default();
        explainer.encode(&ScrapeFacts::default(), &mut out);
        let text = out.into_string();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn explains_from_one_read_and_counts_the_cache() {
        let reads = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&reads);
        let explainer = FailureExplainer::new(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(input(DROP_22))
            },
            ExplainConfig {
                refresh: Duration::from_secs(600),
                ..ExplainConfig::default()
            },
        );
        let e = explainer.explain(&attempt("10.0.0.7:1000", 22)).unwrap();
        assert_eq!(e.cause, Cause::RuleDrop);
        let json: serde_json::Value = serde_json::from_str(&e.trace_json).unwrap();
        assert_eq!(json["decided_by"]["rule_index"], 1);
        let again = explainer.explain(&attempt("10.0.0.8:1001", 22)).unwrap();
        assert!(Arc::ptr_eq(&e.trace_json, &again.trace_json), "shared");
        let other = explainer.explain(&attempt("10.0.0.7:1000", 80)).unwrap();
        assert_eq!(other.cause, Cause::EndpointSilent);
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for all three");
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_hits_total"),
            1
        );
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_misses_total"),
            2
        );
        assert_eq!(metric(&explainer, "nfscope_failure_trace_cache_entries"), 2);
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_rule_reads_total"),
            1
        );
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_capacity"),
            4096
        );
    }

    #[test]
    fn a_new_read_of_changed_rules_drops_the_old_traces() {
        let reads = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&reads);
        let explainer = FailureExplainer::new(
            move || {
                // The second read has the rule gone.
                let n = counted.fetch_add(1, Ordering::SeqCst);
                Ok(input(if n == 0 {
                    DROP_22
                } else {
                    "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
                }))
            },
            ExplainConfig {
                refresh: Duration::ZERO,
                ..ExplainConfig::default()
            },
        );
        let a = attempt("10.0.0.7:1000", 22);
        assert_eq!(explainer.explain(&a).unwrap().cause, Cause::RuleDrop);
        assert_eq!(explainer.explain(&a).unwrap().cause, Cause::EndpointSilent);
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_hits_total"),
            0
        );
        assert_eq!(metric(&explainer, "nfscope_failure_trace_cache_entries"), 1);
        assert!(explainer.release_if_stale());
        assert_eq!(metric(&explainer, "nfscope_failure_trace_cache_entries"), 0);
    }

    #[test]
    fn unreadable_rules_are_said_not_guessed_and_not_read_again_at_once() {
        let reads = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&reads);
        let explainer = FailureExplainer::new(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Err("iptables-save timed out".to_owned())
            },
            ExplainConfig {
                refresh: Duration::from_secs(600),
                ..ExplainConfig::default()
            },
        );
        for _ in 0..3 {
            let e = explainer.explain(&attempt("10.0.0.7:1000", 22)).unwrap();
            assert_eq!(e.cause, Cause::NotTraced);
            assert_eq!(&*e.trace_json, "null");
            assert!(
                e.explanation.contains("iptables-save timed out"),
                "{}",
                e.explanation
            );
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(
            metric(
                &explainer,
                "nfscope_failure_trace_cache_rule_read_errors_total"
            ),
            1
        );
    }
}
