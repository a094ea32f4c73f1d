//! The JSON API's shared reads of the rules: `/api/rules`' body and `/api/trace`'s model.
//!
//! Owns when such a read is made, shared, reused and let go: concurrent requests share one read
//! (a [`SingleFlight`] that keeps nothing itself), later requests reuse it for a window
//! (`--api-reuse-seconds`), and when the window has passed the read is dropped whether or not
//! another request comes, so an idle server holds no model of the rules: at most one read per
//! kind exists at a time, plus what requests still sending it hold. Reads, reads kept and reads
//! dropped are the `nfscope_api_reads_*` families. It does not own what a read contains
//! (the binary's `rules_cmd` and `trace_cmd`) nor the requests' limits (the binary's `http`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nfscope_expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};

use crate::single_flight::{SingleFlight, TimedOut};

/// What happened to one kind of read, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReadStats {
    reads: AtomicU64,
    kept: AtomicU64,
    dropped: AtomicU64,
}

impl ReadStats {
    /// Reads made so far (each shared by the requests that asked meanwhile).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// 1 while a read is kept for reuse, else 0.
    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// Reads dropped once their reuse window had passed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The `nfscope_api_reads_*` families of every kind of read, labelled `model`.
#[derive(Debug, Default)]
pub struct ApiReadFamilies {
    models: Vec<(&'static str, Arc<ReadStats>)>,
}

impl ApiReadFamilies {
    /// The stats of a new kind of read named `model` (`rules`, `trace`).
    pub fn add(&mut self, model: &'static str) -> Arc<ReadStats> {
        let stats = Arc::new(ReadStats::default());
        self.models.push((model, Arc::clone(&stats)));
        stats
    }
}

impl MetricFamilies for ApiReadFamilies {
    fn encode(&self, _: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        for (name, kind, help, value) in [
            (
                "nfscope_api_reads_total",
                Kind::Counter,
                "Reads of the full rules made for /api/rules and /api/trace (one read serves every request that asked meanwhile).",
                ReadStats::reads as fn(&ReadStats) -> u64,
            ),
            (
                "nfscope_api_reads_kept",
                Kind::Gauge,
                "1 while a read of the rules is kept for reuse by later API requests, 0 once it was dropped.",
                ReadStats::kept,
            ),
            (
                "nfscope_api_reads_dropped_total",
                Kind::Counter,
                "Reads of the rules dropped (their memory freed) once their reuse window had passed.",
                ReadStats::dropped,
            ),
        ] {
            out.family(name, kind, help);
            for (model, stats) in &self.models {
                out.sample(name, &[("model", model)], value(stats));
            }
        }
    }
}

/// Why a request got no read.
#[derive(Debug)]
pub enum ReadFailed {
    /// The read ended with this error.
    Failed(String),
    /// The read did not finish in time; it keeps running.
    TimedOut(TimedOut),
}

/// The read kept for reuse, with when it finished.
struct Kept<T> {
    value: Option<(Arc<T>, Instant)>,
    /// Counts the reads stored, so a drop scheduled for one read never drops the next.
    generation: u64,
}

/// One kind of shared read (see the module documentation).
pub struct SharedRead<T> {
    flight: SingleFlight<Result<Arc<T>, String>>,
    reuse: Duration,
    kept: Arc<Mutex<Kept<T>>>,
    stats: Arc<ReadStats>,
}

impl<T: Send + Sync + 'static> SharedRead<T> {
    /// Reads with `job`, reusing a read for `reuse` (zero: no reuse; concurrent requests still
    /// share one read), counting into `stats`.
    pub fn new(
        job: impl Fn() -> Result<T, String> + Send + Sync + 'static,
        reuse: Duration,
        stats: Arc<ReadStats>,
    ) -> Self {
        let counted = Arc::clone(&stats);
        let flight = SingleFlight::new(
            move || {
                counted.reads.fetch_add(1, Ordering::Relaxed);
                job().map(Arc::new)
            },
            // The flight keeps nothing: reuse and dropping are done here.
            Duration::ZERO,
        );
        Self {
            flight,
            reuse,
            kept: Arc::new(Mutex::new(Kept {
                value: None,
                generation: 0,
            })),
            stats,
        }
    }

    /// The kept read while its window lasts, else the read in flight or a new one; waits at
    /// most `deadline`. Must be called within a tokio runtime.
    pub async fn get(&self, deadline: Duration) -> Result<Arc<T>, ReadFailed> {
        if let Some(value) = self.fresh(Instant::now()) {
            return Ok(value);
        }
        let done = self
            .flight
            .get(deadline)
            .await
            .map_err(ReadFailed::TimedOut)?;
        let value = match &done.value {
            Ok(Ok(value)) => Arc::clone(value),
            Ok(Err(reason)) | Err(reason) => return Err(ReadFailed::Failed(reason.clone())),
        };
        if let Some(generation) = self.keep(&value, done.finished) {
            let kept = Arc::clone(&self.kept);
            let stats = Arc::clone(&self.stats);
            let reuse = self.reuse;
            tokio::spawn(async move {
                tokio::time::sleep(reuse).await;
                if let Some(expired) =
                    take_expired(&kept, &stats, reuse, Instant::now(), Some(generation))
                {
                    // A large model takes a while to free: not on an async worker. Requests
                    // still sending it keep their own reference until they are done.
                    tokio::task::spawn_blocking(move || {
                        drop(expired);
                        nfscope_kernel::release_free_memory();
                    });
                }
            });
        }
        Ok(value)
    }

    /// The kept read if it finished less than the reuse window before `now`.
    fn fresh(&self, now: Instant) -> Option<Arc<T>> {
        let kept = lock(&self.kept);
        let (value, finished) = kept.value.as_ref()?;
        (now.saturating_duration_since(*finished) < self.reuse).then(|| Arc::clone(value))
    }

    /// Keeps `value` (finished at `finished`) for reuse unless a newer read is kept already;
    /// the generation to drop later, `None` when nothing was kept.
    fn keep(&self, value: &Arc<T>, finished: Instant) -> Option<u64> {
        if self.reuse.is_zero() {
            return None;
        }
        let mut kept = lock(&self.kept);
        if let Some((current, at)) = &kept.value
            && (Arc::ptr_eq(current, value) || *at >= finished)
        {
            return None;
        }
        kept.generation += 1;
        let replaced = kept.value.replace((Arc::clone(value), finished));
        if replaced.is_some() {
            // Past its window, its timer not yet run: dropped all the same.
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.kept.store(1, Ordering::Relaxed);
        Some(kept.generation)
    }

    /// Drops the kept read if its window has passed at `now`; true when one was dropped (the
    /// server does this from a timer per read; tests call it with the time they choose).
    #[cfg(test)]
    fn expire(&self, now: Instant) -> bool {
        take_expired(&self.kept, &self.stats, self.reuse, now, None).is_some()
    }
}

/// Takes the kept read (only generation `only`, if given) when `reuse` has passed since it
/// finished, and counts it as dropped; the caller frees it.
fn take_expired<T>(
    kept: &Mutex<Kept<T>>,
    stats: &ReadStats,
    reuse: Duration,
    now: Instant,
    only: Option<u64>,
) -> Option<Arc<T>> {
    let mut kept = lock(kept);
    let due = kept.value.as_ref().is_some_and(|(_, finished)| {
        now.saturating_duration_since(*finished) >= reuse
            && only.is_none_or(|g| g == kept.generation)
    });
    if !due {
        return None;
    }
    stats.kept.store(0, Ordering::Relaxed);
    stats.dropped.fetch_add(1, Ordering::Relaxed);
    kept.value.take().map(|(value, _)| value)
}

fn lock<T>(kept: &Mutex<Kept<T>>) -> std::sync::MutexGuard<'_, Kept<T>> {
    kept.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read whose values count up from 1, and how often it ran.
    fn counting(reuse: Duration) -> (SharedRead<u64>, Arc<ReadStats>) {
        let stats = Arc::new(ReadStats::default());
        let runs = Arc::new(AtomicU64::new(0));
        let read = SharedRead::new(
            move || Ok(runs.fetch_add(1, Ordering::SeqCst) + 1),
            reuse,
            Arc::clone(&stats),
        );
        (read, stats)
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_read_is_shared_within_its_window_and_dropped_after_it() {
        let reuse = Duration::from_secs(600);
        let (read, stats) = counting(reuse);
        let first = read.get(WAIT).await.expect("read");
        let again = read.get(WAIT).await.expect("reused");
        assert!(Arc::ptr_eq(&first, &again), "the same read, not a copy");
        assert_eq!((stats.reads(), stats.kept()), (1, 1));
        let kept_at = Instant::now();

        assert!(!read.expire(kept_at + reuse / 2), "still inside its window");
        assert_eq!(Arc::strong_count(&first), 3, "kept, and held twice here");
        assert!(read.expire(kept_at + reuse + Duration::from_secs(1)));
        assert_eq!(
            Arc::strong_count(&first),
            2,
            "the server let go of it: only the two requests here hold it"
        );
        assert_eq!((stats.kept(), stats.dropped()), (0, 1));
        assert!(!read.expire(kept_at + reuse * 2), "nothing left to drop");

        let next = read.get(WAIT).await.expect("read again");
        assert_eq!(*next, 2, "a new read after the drop");
        assert_eq!(stats.reads(), 2);
    }

    #[tokio::test]
    async fn without_a_window_nothing_is_kept() {
        let (read, stats) = counting(Duration::ZERO);
        let first = read.get(WAIT).await.expect("read");
        assert_eq!(Arc::strong_count(&first), 1, "only the request holds it");
        assert_eq!(*read.get(WAIT).await.expect("read"), 2);
        assert_eq!((stats.reads(), stats.kept(), stats.dropped()), (2, 0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scheduled_drop_frees_the_read_once_its_window_passed() {
        let (read, stats) = counting(Duration::from_millis(20));
        let value = read.get(WAIT).await.expect("read");
        // The drop is due 20 ms after the read (freed on the blocking pool); wait for it
        // without assuming how soon it runs.
        for _ in 0..500 {
            if Arc::strong_count(&value) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.dropped(), 1, "dropped without another request");
        assert_eq!(Arc::strong_count(&value), 1, "only this request holds it");
    }

    #[tokio::test]
    async fn a_failed_read_is_reported_and_not_kept() {
        let stats = Arc::new(ReadStats::default());
        let read: SharedRead<u64> = SharedRead::new(
            || Err("no rules".to_owned()),
            Duration::from_secs(60),
            Arc::clone(&stats),
        );
        match read.get(WAIT).await {
            Err(ReadFailed::Failed(reason)) => assert_eq!(reason, "no rules"),
            other => panic!("{other:?}"),
        }
        assert_eq!((stats.reads(), stats.kept()), (1, 0));
    }

    #[test]
    fn the_families_name_each_model() {
        let mut families = ApiReadFamilies::default();
        let rules = families.add("rules");
        families.add("trace");
        rules.reads.store(3, Ordering::Relaxed);
        let mut out = Exposition::default();
        families.encode(&ScrapeFacts::default(), &mut out);
        let text = out.into_string();
        assert!(
            text.contains("nfscope_api_reads_total{model=\"rules\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("nfscope_api_reads_kept{model=\"trace\"} 0\n"));
        assert!(text.contains("# TYPE nfscope_api_reads_dropped_total counter\n"));
    }
}
