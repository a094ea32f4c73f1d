//! Single-flight execution of a blocking job: concurrent callers share one run.
//!
//! A caller either reuses a result young enough for the cache window, joins the run already in
//! flight, or starts a new one. The job runs on tokio's blocking pool in a task of its own, so a
//! caller that gives up (deadline, dropped connection) never cancels it, and a stuck job never
//! causes a pile-up: later callers join it rather than starting another. It knows nothing about
//! netfilter or HTTP.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// One finished run of the job.
#[derive(Debug)]
pub struct Finished<T> {
    /// The job's value, or the panic message if it panicked.
    pub value: Result<T, String>,
    /// When the run started.
    pub started: Instant,
    /// When it finished.
    pub finished: Instant,
    /// 1 for the first run, then counting up.
    pub run: u64,
}

/// Why a caller got no result.
#[derive(Debug)]
pub struct TimedOut {
    /// How long the caller waited.
    pub waited: Duration,
    /// When the last run that did finish ended, if any.
    pub previous_finished: Option<Instant>,
}

type Slot<T> = Option<Arc<Finished<T>>>;

struct State<T> {
    /// The last finished run; kept only while a cache window can serve it (`max_age` > 0), so
    /// without a cache a result lives no longer than the requests that use it.
    latest: Slot<T>,
    /// When the last run finished (kept in any case, for the timeout message).
    last_finished: Option<Instant>,
    in_flight: Option<watch::Receiver<Slot<T>>>,
    runs_started: u64,
}

/// Runs `job` at most once at a time and hands its result to everyone who asked meanwhile.
pub struct SingleFlight<T> {
    job: Arc<dyn Fn() -> T + Send + Sync>,
    max_age: Duration,
    state: Arc<Mutex<State<T>>>,
}

impl<T: Send + Sync + 'static> SingleFlight<T> {
    /// `max_age` zero: every call that finds nothing in flight starts a run.
    pub fn new(job: impl Fn() -> T + Send + Sync + 'static, max_age: Duration) -> Self {
        let state = State {
            latest: None,
            last_finished: None,
            in_flight: None,
            runs_started: 0,
        };
        Self {
            job: Arc::new(job),
            max_age,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// When the last run finished, without waiting or starting anything.
    pub fn last_finished(&self) -> Option<Instant> {
        self.lock().last_finished
    }

    /// How many runs were started so far.
    #[cfg(test)]
    pub fn runs_started(&self) -> u64 {
        self.lock().runs_started
    }

    /// A result at most `max_age` old, or the one of the run in flight, or of a new run;
    /// waits at most `deadline` for it. Must be called within a tokio runtime.
    pub async fn get(&self, deadline: Duration) -> Result<Arc<Finished<T>>, TimedOut> {
        let arrived = Instant::now();
        let mut receiver = match self.cached_or_join(arrived) {
            Ok(fresh) => return Ok(fresh),
            Err(receiver) => receiver,
        };
        let wait = async {
            loop {
                if let Some(done) = receiver.borrow_and_update().clone() {
                    return Some(done);
                }
                if receiver.changed().await.is_err() {
                    return None; // runtime shutting down: the run was dropped
                }
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(Some(done)) => Ok(done),
            Ok(None) | Err(_) => Err(TimedOut {
                waited: arrived.elapsed(),
                previous_finished: self.last_finished(),
            }),
        }
    }

    fn cached_or_join(
        &self,
        arrived: Instant,
    ) -> Result<Arc<Finished<T>>, watch::Receiver<Slot<T>>> {
        let mut state = self.lock();
        if let Some(latest) = &state.latest
            && !self.max_age.is_zero()
            && arrived.saturating_duration_since(latest.finished) <= self.max_age
        {
            return Ok(Arc::clone(latest));
        }
        if let Some(receiver) = &state.in_flight {
            return Err(receiver.clone());
        }
        Err(self.start(&mut state))
    }

    fn start(&self, state: &mut State<T>) -> watch::Receiver<Slot<T>> {
        state.runs_started += 1;
        // An expired result is of no use any more; let it go before the new run needs its memory.
        state.latest = None;
        let run = state.runs_started;
        let (sender, receiver) = watch::channel(None);
        state.in_flight = Some(receiver.clone());
        let job = Arc::clone(&self.job);
        let shared = Arc::clone(&self.state);
        let keep = !self.max_age.is_zero();
        tokio::spawn(async move {
            let started = Instant::now();
            let value = tokio::task::spawn_blocking(move || job())
                .await
                .map_err(|e| panic_message(&e));
            let done = Arc::new(Finished {
                value,
                started,
                finished: Instant::now(),
                run,
            });
            {
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                state.latest = keep.then(|| Arc::clone(&done));
                state.last_finished = Some(done.finished);
                state.in_flight = None;
            }
            let _ = sender.send(Some(done)); // nobody waiting is fine
        });
        receiver
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn panic_message(error: &tokio::task::JoinError) -> String {
    if error.is_cancelled() {
        return "collection was cancelled".to_owned();
    }
    format!("collection panicked: {error}")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn counting_job(sleep: Duration) -> (Arc<AtomicU64>, impl Fn() -> u64 + Send + Sync + 'static) {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let job = move || {
            std::thread::sleep(sleep);
            counter.fetch_add(1, Ordering::SeqCst) + 1
        };
        (calls, job)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_run() {
        let (calls, job) = counting_job(Duration::from_millis(200));
        let flight = Arc::new(SingleFlight::new(job, Duration::ZERO));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let flight = Arc::clone(&flight);
            tasks.push(tokio::spawn(async move {
                flight.get(Duration::from_secs(5)).await.unwrap().run
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn sequential_callers_without_cache_each_collect() {
        let (calls, job) = counting_job(Duration::ZERO);
        let flight = SingleFlight::new(job, Duration::ZERO);
        let first = flight.get(Duration::from_secs(5)).await.unwrap();
        let second = flight.get(Duration::from_secs(5)).await.unwrap();
        assert_eq!((first.run, second.run), (1, 2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn cache_window_reuses_a_finished_run() {
        let (calls, job) = counting_job(Duration::ZERO);
        let flight = SingleFlight::new(job, Duration::from_secs(60));
        flight.get(Duration::from_secs(5)).await.unwrap();
        let again = flight.get(Duration::from_secs(5)).await.unwrap();
        assert_eq!(again.run, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_run_times_out_callers_without_piling_up() {
        let (calls, job) = counting_job(Duration::from_millis(600));
        let flight = SingleFlight::new(job, Duration::ZERO);
        let first = flight.get(Duration::from_millis(50)).await.unwrap_err();
        assert!(first.previous_finished.is_none());
        let second = flight.get(Duration::from_millis(50)).await.unwrap_err();
        assert!(second.waited >= Duration::from_millis(50));
        assert_eq!(
            flight.runs_started(),
            1,
            "the second caller joined the stuck run"
        );
        let done = flight.get(Duration::from_secs(5)).await.unwrap();
        assert_eq!(done.run, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_a_cache_window_a_result_lives_only_as_long_as_its_callers() {
        let (_, job) = counting_job(Duration::ZERO);
        let flight = SingleFlight::new(job, Duration::ZERO);
        let done = flight.get(Duration::from_secs(5)).await.unwrap();
        assert_eq!(Arc::strong_count(&done), 1, "the flight kept a reference");
        assert!(flight.last_finished().is_some_and(|t| t == done.finished));

        let cached = SingleFlight::new(counting_job(Duration::ZERO).1, Duration::from_secs(60));
        let done = cached.get(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            Arc::strong_count(&done),
            2,
            "a cache window keeps the result"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_reports_instead_of_hanging() {
        // A generous bound, not a timing assertion: the panic hook prints (and, with
        // backtraces on, as in the CI log, symbolises) a backtrace before the job's thread ends, which
        // took over 5 s on a loaded CI machine.
        let bound = Duration::from_secs(120);
        let flight: SingleFlight<u64> = SingleFlight::new(|| panic!("boom"), Duration::ZERO);
        let done = flight.get(bound).await.unwrap();
        assert!(done.value.as_ref().unwrap_err().contains("panicked"));
        let next = flight.get(bound).await.unwrap();
        assert_eq!(next.run, 2, "a panic does not wedge the flight");
    }
}
