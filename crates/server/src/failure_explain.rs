//! Explaining failed connection attempts against the live rules, for `serve --flows`.
//!
//! Owns when the node's rules are read for that ([`FailureExplainer`]): one worker thread
//! reads them (the same `TraceInput` `/api/trace` answers from, handed in as a function by the
//! binary) when a failure comes, indexes them once for tracing, explains every failure that
//! comes within the refresh window from that read, and then drops it, so an idle server holds
//! no model of the rules and a busy one reads and indexes at most once per window. The read's
//! fingerprint (`nfscope_trace::failure::input_generation`) is the cache's generation, so traces
//! survive a re-read of unchanged rules. It owns the one [`TraceCache`] (bounded, with a budget
//! of traces per second) and publishes its counters as the `nfscope_failure_trace_cache_*`
//! families. A failed read is said (cause `not-traced`), never guessed, and not retried before
//! the window ends.
//!
//! It does not own what an explanation says (`nfscope_trace::failure`), how the rules are read
//! (the binary's `trace_cmd`), nor the failure table (`nfscope-flow`).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
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
    /// How long one read of the rules explains failures before it is dropped (the next failure
    /// reads them again).
    pub refresh: Duration,
    /// How long [`FailureExplainer::explain`] waits for its answer (a read of the rules
    /// included) before it gives up with `None`; the worker goes on.
    pub wait: Duration,
    /// The cache's size, client prefixes and budget of traces.
    pub limits: CacheLimits,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            wait: Duration::from_secs(30),
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

/// Counters published on `/metrics` (kept apart from the worker so a scrape never waits for
/// a read of the rules).
#[derive(Debug, Default, Clone, Copy)]
struct Published {
    cache: CacheStats,
    reads: u64,
    read_errors: u64,
    /// 1 while a read of the rules is held, else 0.
    kept: u64,
}

struct Request {
    attempt: Attempt,
    reply: SyncSender<Option<FailureExplained>>,
}

/// Explains failed attempts against the live rules (see the module documentation). Its
/// [`MetricFamilies`] are the `nfscope_failure_trace_cache_*` families. Dropping it ends its
/// worker.
pub struct FailureExplainer {
    requests: Mutex<Sender<Request>>,
    config: ExplainConfig,
    published: Arc<Mutex<Published>>,
}

impl FailureExplainer {
    /// An explainer that reads the rules with `read`, on a worker thread of its own.
    pub fn new(
        read: impl Fn() -> Result<TraceInput, String> + Send + Sync + 'static,
        config: ExplainConfig,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let published = Arc::new(Mutex::new(Published::default()));
        let worker = Worker {
            read: Box::new(read),
            config,
            started: Instant::now(),
            cache: TraceCache::new(config.limits),
            published: Arc::clone(&published),
        };
        std::thread::Builder::new()
            .name("nfscope-explain".to_owned())
            .spawn(move || worker.run(&rx))?;
        Ok(Self {
            requests: Mutex::new(tx),
            config,
            published,
        })
    }

    /// Explains `attempt`: from the cache, else by tracing its first packet through the rules
    /// (read when no read of the last refresh window is held). `None` when the budget of
    /// traces is spent (a later attempt of the same kind may be explained) or the answer took
    /// longer than the configured wait. Blocks until answered (a read of the rules may take
    /// seconds); attempts are explained one at a time: call it off the packet-capture path.
    pub fn explain(&self, attempt: &Attempt) -> Option<FailureExplained> {
        let (reply, answer) = mpsc::sync_channel(1);
        lock(&self.requests)
            .send(Request {
                attempt: attempt.clone(),
                reply,
            })
            .ok()?;
        answer.recv_timeout(self.config.wait).ok().flatten()
    }
}

/// The rules one read brought, with their meanings and fingerprint.
struct Model {
    input: TraceInput,
    annotations: Vec<Annotations>,
    native: Vec<NativeAnnotations>,
    generation: u64,
}

struct Worker {
    read: Box<ReadInput>,
    config: ExplainConfig,
    started: Instant,
    cache: TraceCache,
    published: Arc<Mutex<Published>>,
}

impl Worker {
    /// Waits for a request, reads the rules, answers every request of the refresh window from
    /// that read, drops it, and waits again; ends when the explainer is dropped.
    fn run(mut self, requests: &Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let read_at = Instant::now();
            let model = (self.read)().map(|input| {
                let annotations = input.rulesets.iter().map(annotate).collect();
                let native = input.native.iter().map(annotate_native).collect();
                let generation = input_generation(&input);
                Model {
                    input,
                    annotations,
                    native,
                    generation,
                }
            });
            if let Ok(m) = &model {
                // Traces of other rules can never hit again.
                self.cache.retain_generation(m.generation);
            }
            {
                let mut p = lock(&self.published);
                p.reads += 1;
                p.read_errors += u64::from(model.is_err());
                p.kept = u64::from(model.is_ok());
            }
            let explainer = model
                .as_ref()
                .map(|m| (m, Explainer::new(&m.input, &m.annotations, &m.native)));
            let mut next = Some(first);
            while let Some(request) = next.take() {
                let answer = match &explainer {
                    Ok((model, explainer)) => {
                        self.answer(model.generation, explainer, &request.attempt)
                    }
                    Err(reason) => Some(FailureExplained {
                        trace_json: Arc::from("null"),
                        explanation: format!(
                            "not traced: the node's rules could not be read: {reason}"
                        ),
                        cause: Cause::NotTraced,
                    }),
                };
                lock(&self.published).cache = self.cache.stats();
                // The asker may have given up waiting: nothing to do then.
                let _ = request.reply.send(answer);
                let left = self.config.refresh.saturating_sub(read_at.elapsed());
                if left.is_zero() {
                    break;
                }
                match requests.recv_timeout(left) {
                    Ok(r) => next = Some(r),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            // The window has passed: the read and its index are dropped.
            drop(explainer);
            drop(model);
            lock(&self.published).kept = 0;
        }
    }

    fn answer(
        &mut self,
        generation: u64,
        explainer: &Explainer<'_>,
        attempt: &Attempt,
    ) -> Option<FailureExplained> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match self
            .cache
            .get_or_trace(attempt, generation, now_ms, || explainer.trace(attempt))
        {
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
                "nfscope_failure_trace_cache_rules_kept",
                Kind::Gauge,
                "1 while a read of the node's rules is held to explain failed attempts, 0 once its window passed and it was dropped.",
                p.kept,
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
        )
        .unwrap();
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
        )
        .unwrap();
        let a = attempt("10.0.0.7:1000", 22);
        assert_eq!(explainer.explain(&a).unwrap().cause, Cause::RuleDrop);
        assert_eq!(explainer.explain(&a).unwrap().cause, Cause::EndpointSilent);
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_hits_total"),
            0
        );
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "read again after the window"
        );
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_entries"),
            1,
            "the traces of the old rules are gone"
        );
    }

    #[test]
    fn it_can_be_shared_between_threads_and_published() {
        fn shared<T: Send + Sync + MetricFamilies>() {}
        shared::<FailureExplainer>();
    }

    #[test]
    fn the_read_is_dropped_once_its_window_passed() {
        let explainer = FailureExplainer::new(
            || Ok(input(DROP_22)),
            ExplainConfig {
                refresh: Duration::from_millis(20),
                ..ExplainConfig::default()
            },
        )
        .unwrap();
        explainer.explain(&attempt("10.0.0.7:1000", 22)).unwrap();
        // Dropped 20 ms after the read, by the worker; wait for it without assuming how soon.
        for _ in 0..500 {
            if metric(&explainer, "nfscope_failure_trace_cache_rules_kept") == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_rules_kept"),
            0
        );
        // The traces stay (bounded by the cache's capacity) for a read of the same rules.
        explainer.explain(&attempt("10.0.0.7:1000", 22)).unwrap();
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_hits_total"),
            1
        );
        assert_eq!(
            metric(&explainer, "nfscope_failure_trace_cache_rule_reads_total"),
            2
        );
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
        )
        .unwrap();
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
