//! Lint off the scrape path: one worker thread lints the rules a collection brought and stores
//! the counts in their [`crate::PreparedRuleset`]; scrapes never wait for it. A job is queued as
//! soon as the collection has the parsed rules and their annotations, so the lint runs while the
//! collection builds labels and its answer is sent, rather than during the next scrapes.
//!
//! Bounded: at most one job runs and one waits per (family, backend), and one for the native
//! nftables tables; a newer job for the same ruleset replaces the waiting one (its rules are
//! newer), so rules that change faster than they can be linted never pile up parsed rulesets in
//! memory.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use nfscope_annotate::Annotations;
use nfscope_lint::FindingCounts;
use nfscope_ruleset::typed::NftRuleset;
use nfscope_ruleset::{Backend, Family, Ruleset};

/// Where a ruleset's lint counts go: `None` until there are any; filled with the counts of the
/// rules before it until its own lint is done.
pub(crate) type LintSlot = Mutex<Option<Arc<FindingCounts>>>;

/// One ruleset to lint, and where its counts go.
pub(crate) enum LintJob {
    /// An iptables ruleset of one (family, backend).
    Rules {
        /// Gets the counts (shared with the ruleset's [`crate::PreparedRuleset`]).
        slot: Arc<LintSlot>,
        /// For the log.
        family: Family,
        /// For the log.
        backend: Backend,
        /// The parsed rules: shared with the collection that is building their labels while
        /// the lint runs; whichever of the two finishes last lets them go.
        ruleset: Arc<Ruleset>,
        /// `annotate(ruleset)`, made for the Kubernetes plan: the lint reuses them rather than
        /// annotating the rules a second time.
        annotations: Arc<Annotations>,
    },
    /// The native nftables tables of one collection (shared with the reader, which keeps them).
    Native {
        /// Gets the counts.
        counts: Arc<OnceLock<FindingCounts>>,
        /// The typed tables.
        ruleset: Arc<NftRuleset>,
    },
}

impl LintJob {
    /// Which waiting job a new one replaces: the same (family, backend), or native (`None`).
    fn key(&self) -> Option<(Family, Backend)> {
        match self {
            Self::Rules {
                family, backend, ..
            } => Some((*family, *backend)),
            Self::Native { .. } => None,
        }
    }
}

#[derive(Default)]
struct State {
    pending: Vec<LintJob>,
    running: bool,
    stop: bool,
    runs: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The background linter (see the module docs). Its thread stops when this is dropped, after
/// the job it is running.
#[derive(Default)]
pub(crate) struct Linter {
    shared: Arc<Shared>,
    started: bool,
}

impl Linter {
    /// Queues `job`, replacing a waiting job for the same (family, backend), or for the native
    /// tables.
    pub fn submit(&mut self, job: LintJob) {
        let key = job.key();
        {
            let mut state = self.shared.lock();
            state.pending.retain(|j| j.key() != key);
            state.pending.push(job);
        }
        self.shared.changed.notify_all();
        if !self.started {
            self.started = true;
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("nfscope-lint".to_owned())
                .spawn(move || work(&shared));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start the lint thread: linting on the scrape path");
                self.started = false;
                run_pending(&self.shared);
            }
        }
    }

    /// Blocks until no job is waiting or running.
    pub fn wait_idle(&self) {
        let mut state = self.shared.lock();
        while !state.pending.is_empty() || state.running {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Is no job waiting or running (without waiting)?
    pub fn is_idle(&self) -> bool {
        let state = self.shared.lock();
        state.pending.is_empty() && !state.running
    }

    /// Lints run so far.
    pub fn runs(&self) -> u64 {
        self.shared.lock().runs
    }
}

impl Drop for Linter {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
    }
}

fn work(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.stop {
            return;
        }
        if state.pending.is_empty() {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let job = state.pending.remove(0);
        state.running = true;
        drop(state);
        run(job);
        state = shared.lock();
        state.running = false;
        state.runs += 1;
        shared.changed.notify_all();
    }
}

/// Runs every waiting job on this thread (when no worker could be started).
fn run_pending(shared: &Shared) {
    let jobs = std::mem::take(&mut shared.lock().pending);
    let ran = jobs.len() as u64;
    jobs.into_iter().for_each(run);
    shared.lock().runs += ran;
    shared.changed.notify_all();
}

fn run(job: LintJob) {
    let (slot, family, backend, ruleset, annotations) = match job {
        LintJob::Rules {
            slot,
            family,
            backend,
            ruleset,
            annotations,
        } => (slot, family, backend, ruleset, annotations),
        LintJob::Native { counts, ruleset } => {
            let findings = nfscope_lint::lint_nft(&ruleset);
            let _ = counts.set(FindingCounts::of(&findings));
            tracing::debug!(findings = findings.len(), "native nftables lint done");
            return;
        }
    };
    // Without ipsets: `missing-ipset` is counted per collection from the entry's `IpsetRefs`.
    let findings = nfscope_lint::lint_one_annotated(&ruleset, &annotations, None);
    *slot.lock().unwrap_or_else(PoisonError::into_inner) =
        Some(Arc::new(FindingCounts::of(&findings)));
    tracing::debug!(
        family = %family,
        backend = %backend,
        findings = findings.len(),
        "lint done"
    );
    drop(findings);
    drop((slot, ruleset, annotations));
    // The parsed rules (unless the collection still builds their labels) and the findings (tens
    // of MiB at kube-proxy scale) are gone now.
    nfscope_kernel::release_free_memory();
}
