//! The scrape cache: the kernel reader and one [`PreparedRuleset`] per (family, backend).
//!
//! A node whose rules did not change costs a counter read and an encoding: the reader
//! (`Reader::counters_only`) places counters on its [`RulesetCounters`] and hands the parsed
//! rules out only from the read that parsed them; the cache builds labels and the Kubernetes
//! plan from those parsed rules once per `rules_id` (the one "did the rules change?" test),
//! queues them for the background lint, and lets them go. [`Preparer`] is the pure part (no I/O,
//! readings in, scrapes out); [`ScrapeCache`] adds the reader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use nfscope_annotate::Annotations;
use nfscope_exporter::RuleLabels;
use nfscope_kernel::{CollectOptions, Reader, Reading};
use nfscope_lint::{FindingCounts, IpsetRefs, RulesetFacts};
use nfscope_ruleset::typed::NftRuleset;
use nfscope_ruleset::{Backend, Family, IpSet, Ruleset, RulesetCounters, Snapshot, SourceKind};

use crate::lint::{LintJob, LintSlot, Linter};
use crate::metrics::Counters;

/// Everything the server derives from one ruleset's rules, built once per change of them and
/// shared by every scrape until they change again.
#[derive(Debug, Clone)]
pub struct PreparedRuleset {
    /// The ruleset's family.
    pub family: Family,
    /// The ruleset's backend.
    pub backend: Backend,
    /// `Ruleset::rules_id` of the rules this was built from.
    pub rules_id: u64,
    /// Rule ids, escaped texts and comments, with the Kubernetes plan attached (which rules
    /// feed which Kubernetes series).
    pub labels: RuleLabels,
    /// What the cross-ruleset lint checks need.
    pub facts: RulesetFacts,
    /// The ipsets the rules match: `missing-ipset` is counted from these against each
    /// collection's ipsets, so a change of the node's ipsets needs no new lint.
    pub ipset_refs: IpsetRefs,
    /// Lint counts of these rules alone (without `missing-ipset`), once the background lint is
    /// done; until then those of the rules before them (or none).
    lint: Arc<LintSlot>,
}

impl PreparedRuleset {
    /// Labels, plan and facts of `ruleset`, planned from its `annotations`; lint counts come
    /// later, into `lint` ([`Self::lint`]).
    fn new(
        ruleset: &Ruleset,
        annotations: &Annotations,
        rules_id: u64,
        lint: Arc<LintSlot>,
    ) -> Self {
        let mut labels = RuleLabels::new(ruleset);
        labels.attach_kube_plan(ruleset, annotations);
        Self {
            family: ruleset.family,
            backend: ruleset.backend,
            rules_id,
            labels,
            facts: RulesetFacts::of(ruleset),
            ipset_refs: IpsetRefs::of(ruleset),
            lint,
        }
    }

    /// The lint counts served for this ruleset: its own once linted, before that those of the
    /// rules it replaced, `None` when there are none yet.
    pub fn lint(&self) -> Option<Arc<FindingCounts>> {
        self.lint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One ruleset of a [`Scrape`]: the counters just read and what was prepared from its rules.
#[derive(Debug, Clone)]
pub struct ScrapedRuleset {
    /// Names, positions and counters.
    pub counters: Arc<RulesetCounters>,
    /// Labels, Kubernetes plan, rules id and lint counts of the rules the counters belong to.
    pub prepared: Arc<PreparedRuleset>,
}

/// What one collection gives `/metrics`.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Sources, ipsets, conntrack, native nftables state, retries and rule source (its
    /// `rulesets` are empty: the rulesets are [`Scrape::rulesets`]).
    pub snapshot: Snapshot,
    /// One entry per (family, backend) read, in the reader's order.
    pub rulesets: Vec<ScrapedRuleset>,
    /// Lint counts of the native nftables tables of this collection, when it read them.
    pub native_lint: Option<NativeLint>,
}

/// The lint counts of one native nftables ruleset: filled by the background linter; until then
/// the counts of the native tables the previous collection had (if any) stand in.
#[derive(Debug, Clone)]
pub struct NativeLint {
    counts: Arc<OnceLock<FindingCounts>>,
    previous: Option<FindingCounts>,
}

impl NativeLint {
    /// The counts, or the previous tables' while these are being linted; `None` before the
    /// first lint of native tables is done.
    pub fn counts(&self) -> Option<&FindingCounts> {
        self.counts.get().or(self.previous.as_ref())
    }
}

impl Scrape {
    /// The `nfscope_lint_findings` counts: each ruleset's, its `missing-ipset` findings
    /// against this collection's ipsets (when they were read) and the cross-ruleset checks;
    /// `None` while some ruleset has no counts yet (its first lint still runs), so a partial
    /// count is never served as the node's.
    pub fn lint_counts(&self) -> Option<FindingCounts> {
        let facts: Vec<RulesetFacts> = self.rulesets.iter().map(|r| r.prepared.facts).collect();
        let mut total = FindingCounts::of(&nfscope_lint::lint_across(&facts));
        let ipsets = read_ipsets(&self.snapshot);
        for ruleset in &self.rulesets {
            total.add(ruleset.prepared.lint()?.as_ref());
            total.add(&ruleset.prepared.ipset_refs.missing(ipsets));
        }
        if let Some(native) = &self.native_lint {
            total.add(native.counts()?);
        }
        Some(total)
    }
}

type Key = (Family, Backend);

/// The pure part of the scrape cache: turns readings into scrapes, keeping one
/// [`PreparedRuleset`] per (family, backend) while its `rules_id` stays, and queues lint jobs.
#[derive(Default)]
pub struct Preparer {
    entries: HashMap<Key, Arc<PreparedRuleset>>,
    /// A reading had counters for rules the cache has no entry for and no parsed rules.
    missing_rules: bool,
    linter: Linter,
    /// The native tables last linted (by identity: the reader hands out the same `Arc` until
    /// the ruleset changes) and their counts.
    native: Option<(Arc<NftRuleset>, NativeLint)>,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Preparer {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The scrape for `reading`: cached entries for rules whose `rules_id` is unchanged, new
    /// ones (and a lint job) for parsed rules that are new. Rulesets the reading does not have
    /// leave the cache.
    pub fn prepare(&mut self, reading: Reading) -> Scrape {
        self.missing_rules = false;
        let mut entries = HashMap::with_capacity(reading.rulesets.len());
        let mut rulesets = Vec::with_capacity(reading.rulesets.len());
        for read in reading.rulesets {
            let key = (read.counters.family, read.counters.backend);
            if entries.contains_key(&key) {
                continue; // one collection never has two; never serve duplicate series
            }
            let cached = self
                .entries
                .get(&key)
                .filter(|e| e.rules_id == read.rules_id)
                .cloned();
            let entry = match (cached, read.parsed) {
                // The same rules: the parsed copy (if this read parsed them again) just goes.
                (Some(entry), _) => entry,
                (None, Some(parsed)) => {
                    // The lint starts first (on its own thread), so it runs while the labels
                    // are built and the answer is sent instead of during the next scrapes.
                    let previous = self.entries.get(&key).and_then(|e| e.lint());
                    let slot = Arc::new(Mutex::new(previous));
                    let parsed = Arc::new(parsed);
                    let annotations = Arc::new(nfscope_annotate::annotate(&parsed));
                    self.linter.submit(LintJob::Rules {
                        slot: Arc::clone(&slot),
                        family: key.0,
                        backend: key.1,
                        ruleset: Arc::clone(&parsed),
                        annotations: Arc::clone(&annotations),
                    });
                    Arc::new(PreparedRuleset::new(
                        &parsed,
                        &annotations,
                        read.rules_id,
                        slot,
                    ))
                }
                (None, None) => {
                    tracing::warn!(
                        family = %key.0,
                        backend = %key.1,
                        "counters for rules the cache has not seen: reading the rule text again"
                    );
                    self.missing_rules = true;
                    continue;
                }
            };
            entries.insert(key, Arc::clone(&entry));
            rulesets.push(ScrapedRuleset {
                counters: read.counters,
                prepared: entry,
            });
        }
        self.entries = entries;
        let native_lint = self.native_lint(reading.snapshot.nftables.ruleset.as_ref());
        Scrape {
            snapshot: reading.snapshot,
            rulesets,
            native_lint,
        }
    }

    /// Is the background lint done with every job (so the parsed rules it held are freed)?
    pub fn lint_idle(&self) -> bool {
        self.linter.is_idle()
    }

    /// Moves each cached entry no scrape holds any more into fresh allocations (an unchanged
    /// copy; the lint slot stays shared). The labels and plan are built while the parsed rules
    /// are live, so their small allocations end up scattered among the rules and keep those
    /// freed pages resident; copied once the rules are gone, they come out of contiguous memory.
    pub fn compact_memory(&mut self) {
        for entry in self.entries.values_mut() {
            if Arc::strong_count(entry) == 1 {
                *entry = Arc::new(PreparedRuleset::clone(entry));
            }
        }
    }

    /// The native tables' lint counts, submitting a background lint when the tables are new.
    fn native_lint(&mut self, ruleset: Option<&Arc<NftRuleset>>) -> Option<NativeLint> {
        let Some(ruleset) = ruleset else {
            self.native = None;
            return None;
        };
        if let Some((known, lint)) = &self.native
            && Arc::ptr_eq(known, ruleset)
        {
            return Some(lint.clone());
        }
        let previous = self
            .native
            .as_ref()
            .and_then(|(_, lint)| lint.counts().cloned());
        let lint = NativeLint {
            counts: Arc::new(OnceLock::new()),
            previous,
        };
        self.linter.submit(LintJob::Native {
            counts: Arc::clone(&lint.counts),
            ruleset: Arc::clone(ruleset),
        });
        self.native = Some((Arc::clone(ruleset), lint.clone()));
        Some(lint)
    }

    /// Does the next reading need the parsed rules of every ruleset (a reader that keeps no
    /// text must read it again)? After a reading with counters of rules the cache has not seen.
    pub fn needs_rules(&self) -> bool {
        self.missing_rules
    }

    /// Blocks until the background lint has nothing left to do (tests, benchmarks).
    pub fn wait_for_lint(&self) {
        self.linter.wait_idle();
    }

    /// Lints run so far.
    pub fn lint_runs(&self) -> u64 {
        self.linter.runs()
    }
}

/// The node's ipsets, when they were read without error.
fn read_ipsets(snapshot: &Snapshot) -> Option<&[IpSet]> {
    let read = snapshot
        .sources
        .iter()
        .any(|s| s.kind == SourceKind::Ipsets && s.error.is_none());
    read.then_some(snapshot.ipsets.as_slice())
}

/// The scrape cache: a counters-only kernel reader and a [`Preparer`], and the server's running
/// totals they update.
#[derive(Debug)]
pub struct ScrapeCache {
    reader: Reader,
    options: CollectOptions,
    preparer: Preparer,
    counters: Arc<Counters>,
    /// Rules were parsed since the last [`Reader::compact_memory`].
    compact_due: bool,
}

impl ScrapeCache {
    /// A cache reading with `options`, counting into `counters`.
    pub fn new(options: CollectOptions, counters: Arc<Counters>) -> Self {
        Self {
            reader: Reader::counters_only(),
            options,
            preparer: Preparer::new(),
            counters,
            compact_due: false,
        }
    }

    /// Reads the node and prepares the scrape. When a reading has counters of rules the cache
    /// has not seen (see [`Preparer::needs_rules`]; the reader hands parsed rules out once, so
    /// only a lost reading could cause it), the rule text is read again at once.
    pub fn collect(&mut self) -> Scrape {
        let started = Instant::now();
        if self.compact_due && self.preparer.lint_idle() {
            // The rules parsed at the last change are freed now (the previous scrape and the
            // lint are done with them): move what stays into contiguous memory, so the trim
            // below can give their pages back (measured at 72.5k rules: ~10 MiB).
            self.compact_due = false;
            self.reader.compact_memory();
            self.preparer.compact_memory();
        }
        let mut scrape = self.read_and_prepare();
        if self.preparer.needs_rules() {
            self.reader.forget_texts();
            scrape = self.read_and_prepare();
        }
        // The dump text, kernel tables, parsed specs and parse temporaries are gone now: give
        // their pages back.
        nfscope_kernel::release_free_memory();
        tracing::debug!(elapsed = ?started.elapsed(), "collection done");
        scrape
    }

    /// The pure part (tests, benchmarks).
    pub fn preparer(&self) -> &Preparer {
        &self.preparer
    }

    fn read_and_prepare(&mut self) -> Scrape {
        let reading = self.reader.read(&self.options);
        self.compact_due |= reading.rulesets.iter().any(|r| r.parsed.is_some());
        self.counters.record(&reading.snapshot);
        self.preparer.prepare(reading)
    }
}

/// The blocking job a server runs per collection: [`ScrapeCache::collect`] behind a lock.
pub fn collector(
    options: CollectOptions,
    counters: Arc<Counters>,
) -> impl Fn() -> Scrape + Send + Sync + 'static {
    let cache = Mutex::new(ScrapeCache::new(options, counters));
    move || {
        cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .collect()
    }
}

#[cfg(test)]
mod tests;
