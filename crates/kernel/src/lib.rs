//! Reading the live node's netfilter state: the only nfscope crate that does system I/O.
//!
//! This crate owns *getting* rules, counters and statistics out of the kernel. By default
//! ([`RuleSource::Netlink`]) rule counters come over nf_tables netlink (nft backend and native
//! nftables) and x_tables `getsockopt` (legacy backend) with no fork, and the rule *text* is
//! decoded from the same kernel bytes (`xt`: x_tables extension payloads and iptables-nft's
//! native expressions, rendered as `ip[6]tables-save` prints them) only when the ruleset changed
//! ([`Reader`] keeps it between collections); only a rule the decoder cannot render exactly makes
//! it run the save tool (counted). [`RuleSource::Exec`] forks the save tools on every collection
//! instead. Native
//! nftables tables (those iptables-nft does not manage) are read into the typed model of
//! `nfscope-ruleset` from `nft -j list ruleset` (`native`), by the netlink reader only when the
//! generation moved, by the exec source every time. It also
//! reads ipset headers (`ipset list -t`), the conntrack statistics in `/proc`, conntrack events
//! and TCP control packets for the flow monitor ([`flow`]), node facts for the doctor ([`node`],
//! [`host`]), and enters a named network namespace to do any of that there. [`collect`] reads
//! ipsets and conntrack on their own threads beside the rules (the netlink reader reads the rule
//! sources one after the other on the calling thread; the exec source forks the four save tools
//! concurrently) and returns a [`Snapshot`] with one [`SourceReport`] per source, each with its
//! own read time; it never fails as a whole. It does not parse rule text (it calls
//! `nfscope-ruleset`), and it never modifies the firewall or, where it can tell, loads kernel
//! modules.
//!
//! All netlink traffic — the nf_tables dumps and the conntrack event subscription — goes through
//! one stack (`netlink::socket`: sockets, message framing, attribute walking); the raw system
//! calls and socket options are in `sys`.
//!
//! # Capabilities
//!
//! Measured with `setpriv --reuid 65534 --regid 65534 … --inh-caps … --ambient-caps …` inside a
//! network namespace (`tests/capabilities.rs`). Forked tools only get capabilities that are in the
//! *ambient* set.
//!
//! | read | needs |
//! |---|---|
//! | nft backend and native nftables (netlink, or `ip[6]tables-nft-save`) | CAP_NET_ADMIN |
//! | legacy backend (`getsockopt`, or `ip[6]tables-legacy-save`) | CAP_NET_ADMIN + CAP_NET_RAW, and for a non-root uid *listing* the tables: `/proc/net/ip*_tables_names` is 0440 root:root, so supplementary group 0 or CAP_DAC_READ_SEARCH |
//! | `ipset list -t`, conntrack events | CAP_NET_ADMIN |
//! | packet capture | CAP_NET_RAW |
//! | conntrack statistics (`/proc`) | nothing |
//! | entering another namespace ([`CollectOptions::netns`]) | CAP_SYS_ADMIN |
//!
//! There is no read-only way around the table list: asking the kernel for a standard table name
//! (`IPT_SO_GET_INFO`) creates that table when it is not there, so that is only done when asked
//! for ([`CollectOptions::probe_legacy_tables`]). Without the list the legacy sources fail with an
//! error saying what is missing; nothing is left out silently.
//!
//! `unsafe` code lives in `sys` (the system calls std does not wrap, behind safe functions) and
//! in `flow` (the `AF_PACKET` ring mapping and `getifaddrs`), each block with a `SAFETY` note.
#![warn(missing_docs)]

#[cfg(test)]
mod captured;
mod conntrack;
mod error;
mod exec;
pub mod flow;
pub mod host;
mod ipsets;
mod native;
mod netlink;
mod netns;
pub mod node;
mod rules;
mod sys;
mod xt;
/// The workspace's test helpers, under the path this crate's unit tests use.
#[cfg(test)]
mod testns {
    pub use nfscope_test_support::{TestNetns, root_or_skip};
}

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, ScopedJoinHandle};
use std::time::{Duration, Instant};

use nfscope_ruleset::{
    Backend, Family, Ruleset, RulesetCounters, Snapshot, SourceKind, SourceReport,
};

pub use conntrack::{parse_stat_table, read_conntrack_stats};
pub use error::KernelError;
pub use exec::find_tool;
pub use ipsets::read_ipsets;
use ipsets::read_ipsets_from;
pub use netlink::{Reader, iptables_nft_text};
pub use netns::run_in_netns;
pub use rules::{read_ruleset, save_tool};
pub use xt::{DecodedTable, Undecoded, decode_legacy_tables};

/// Tunes the process's allocator for a long-running server that builds and drops large
/// rulesets on many threads: at most two glibc malloc arenas, and freed memory returned to the
/// kernel above 8 MiB of free heap top. Call it once at start-up, before spawning threads.
pub fn tune_allocator() {
    sys::tune_allocator();
}

/// Hands the allocator's free pages back to the kernel (`malloc_trim`); worth calling after a
/// collection or an encoding dropped tens of MiB, so the idle server's RSS shrinks.
pub fn release_free_memory() {
    sys::release_free_memory();
}

/// What [`collect`] reads and where.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectOptions {
    /// Network namespace to read (a name under `/run/netns`, or a path); `None` = our own.
    pub netns: Option<String>,
    /// Time limit for each forked tool; a tool still running then is killed.
    pub timeout: Duration,
    /// With [`RuleSource::Netlink`]: time limit for the save tools when the rule *text* is
    /// re-read by them (only after the ruleset changed and the kernel decoder could not render a
    /// rule; never shorter than `timeout`, so the default
    /// zero means "same as `timeout`"). Servers set more: large nf_tables
    /// rulesets need minutes: `iptables-nft-save` 1.8.9 took 11 s at 72k rules and 192 s at
    /// 290k on a 2-core machine, while the counter reads that follow take a second or two.
    pub text_timeout: Duration,
    /// Families whose rules are read.
    pub families: Vec<Family>,
    /// Backends whose rules are read (`Backend::Unknown` is ignored).
    pub backends: Vec<Backend>,
    /// Read ipset headers.
    pub ipsets: bool,
    /// Read conntrack statistics.
    pub conntrack: bool,
    /// Look up tools only in this folder instead of `PATH` + sbin (tests, pinned installs).
    pub tool_dir: Option<PathBuf>,
    /// How rule counters are read: netlink/getsockopt (default) or by forking the save tools.
    pub source: RuleSource,
    /// Also read native nftables tables (those iptables-nft does not manage): their typed rules
    /// (`nft -j list ruleset`; with [`RuleSource::Netlink`] only when the nf_tables generation
    /// moved and native chains exist) and, per collection, their rule counters, named counters
    /// and set sizes (netlink; from the same JSON with [`RuleSource::Exec`]).
    pub native_nftables: bool,
    /// With [`RuleSource::Netlink`], when `/proc/net/ip*_tables_names` cannot be read (neither
    /// group 0 nor CAP_DAC_READ_SEARCH): find legacy tables by asking for each standard name. Off
    /// by default because the kernel creates a table it is asked about (an empty, all-accepting
    /// one; measured on Linux 6.18, and kept measured by `tests/capabilities.rs`).
    pub probe_legacy_tables: bool,
}

/// How rules and their counters are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RuleSource {
    /// Counters over nf_tables netlink and x_tables `getsockopt`, rule text decoded from the
    /// same bytes when the ruleset changed; the save tools run only for what the decoder cannot
    /// render (see [`Reader`]).
    #[default]
    Netlink,
    /// Fork `ip[6]tables-{nft,legacy}-save -c` on every collection.
    Exec,
}

impl RuleSource {
    /// `netlink` or `exec`, as the command line and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Netlink => "netlink",
            Self::Exec => "exec",
        }
    }
}

impl Default for CollectOptions {
    /// Both families, both backends, ipsets and conntrack, 10 s per tool, our own namespace,
    /// netlink source with native nftables.
    fn default() -> Self {
        Self {
            netns: None,
            timeout: Duration::from_secs(10),
            text_timeout: Duration::ZERO,
            families: vec![Family::Ipv4, Family::Ipv6],
            backends: vec![Backend::Nft, Backend::Legacy],
            ipsets: true,
            conntrack: true,
            tool_dir: None,
            source: RuleSource::Netlink,
            native_nftables: true,
            probe_legacy_tables: false,
        }
    }
}

/// Reads everything `opts` asks for. Never fails as a whole: a source that could not be read has
/// an error in its [`SourceReport`], and the rest of the snapshot is still filled.
///
/// `rulesets` holds one entry per (family, backend) that has tables, in the order of
/// `opts.families` × `opts.backends`; `sources` has one report per source tried, in the same
/// order, then native nftables rules ([`SourceKind::NativeRules`], when
/// [`CollectOptions::native_nftables`]), then ipsets, then conntrack.
///
/// With [`RuleSource::Netlink`] this reads the rule text every time (a fresh [`Reader`]); keep a
/// [`Reader`] and call [`Reader::read`] or [`Reader::collect`] to re-read text only when the
/// ruleset changed.
pub fn collect(opts: &CollectOptions) -> Snapshot {
    Reader::new().collect(opts)
}

/// One (family, backend) ruleset of a [`Reading`].
#[derive(Debug, Clone)]
pub struct RulesetRead {
    /// Tables, chains, rule positions and the counters just read.
    pub counters: Arc<RulesetCounters>,
    /// The parsed rules, when this read parsed their text (always with [`RuleSource::Exec`] and
    /// a text-keeping [`Reader::new`]; with a [`Reader::counters_only`], only when the rules
    /// changed since the previous read). Their counters are those of the text, not `counters`.
    pub parsed: Option<Ruleset>,
    /// [`Ruleset::rules_id`] of the rules `counters` belong to: equal ids, equal rules.
    pub rules_id: u64,
}

/// What [`Reader::read`] returns: the rulesets as counters (and parsed rules where the text was
/// read), and everything else of a [`Snapshot`].
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Sources, ipsets, conntrack, native nftables state, retries and rule source; its
    /// `rulesets` are empty (they are in [`Reading::rulesets`]).
    pub snapshot: Snapshot,
    /// One entry per (family, backend) that has tables, in the order [`collect`] gives.
    pub rulesets: Vec<RulesetRead>,
}

impl Reading {
    /// The snapshot with the parsed rulesets (carrying the counters just read). Only whole when
    /// every ruleset came with its parsed rules, as from a text-keeping reader.
    fn into_snapshot(self) -> Snapshot {
        let mut snapshot = self.snapshot;
        for read in self.rulesets {
            if let Some(mut ruleset) = read.parsed {
                read.counters.apply_to(&mut ruleset);
                snapshot.rulesets.push(ruleset);
            }
        }
        snapshot
    }
}

impl Reader {
    /// [`collect`] with this reader's cached rule text: the text is decoded again only when the
    /// ruleset changed since the previous call (a [`Reader::counters_only`], which keeps no
    /// text, reads it every time). With [`RuleSource::Exec`] the cache is unused.
    pub fn collect(&mut self, opts: &CollectOptions) -> Snapshot {
        if !self.keeps_text() {
            self.forget_texts();
        }
        self.read(opts).into_snapshot()
    }

    /// Reads everything `opts` asks for, as [`collect`] does, giving rulesets as counters plus
    /// the parsed rules of those whose text was read ([`RulesetRead::parsed`]).
    pub fn read(&mut self, opts: &CollectOptions) -> Reading {
        match opts.source {
            RuleSource::Exec => collect_in_netns(opts, None),
            RuleSource::Netlink => collect_in_netns(opts, Some(self)),
        }
    }
}

fn collect_in_netns(opts: &CollectOptions, reader: Option<&mut Reader>) -> Reading {
    let Some(name) = opts.netns.as_deref() else {
        return collect_here(opts, reader);
    };
    run_in_netns(Some(name), || collect_here(opts, reader))
        .unwrap_or_else(|e| unreachable_namespace(opts, &format!("network namespace {name}: {e}")))
}

/// One source's result, with how long it took and, for a result that is usable but not clean,
/// what went wrong.
struct Timed<T> {
    result: Result<T, KernelError>,
    problem: Option<KernelError>,
    seconds: f64,
}

fn timed<T>(read: impl FnOnce() -> Result<T, KernelError>) -> Timed<T> {
    timed_with_problem(|| read().map(|value| (value, None)))
}

fn timed_with_problem<T>(
    read: impl FnOnce() -> Result<(T, Option<KernelError>), KernelError>,
) -> Timed<T> {
    let started = Instant::now();
    let (result, problem) = match read() {
        Ok((value, problem)) => (Ok(value), problem),
        Err(e) => (Err(e), None),
    };
    Timed {
        result,
        problem,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The source's result; a panic while reading becomes that source's error, so one bad source
/// cannot take the whole collection down.
fn joined<T>(handle: ScopedJoinHandle<'_, Timed<T>>) -> Timed<T> {
    handle.join().unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Timed {
            result: Err(KernelError::Panicked(message)),
            problem: None,
            seconds: 0.0,
        }
    })
}

fn collect_here(opts: &CollectOptions, reader: Option<&mut Reader>) -> Reading {
    let mut snapshot = Snapshot::default();
    let mut rulesets = Vec::new();
    let rule_sources = rule_sources(opts);
    let netlink = reader.is_some();
    let mut native_report = None;
    let (rule_results, ipsets, conntrack, native) = thread::scope(|scope| {
        let ipsets = opts.ipsets.then(|| {
            scope.spawn(|| timed(|| read_ipsets_from(opts.timeout, opts.tool_dir.as_deref())))
        });
        // `--source exec`: the native tables come from the JSON dump on every collection.
        let native = (!netlink && opts.native_nftables).then(|| {
            scope.spawn(|| {
                timed(|| native::read_all(opts.timeout, opts.tool_dir.as_deref()).map(|r| r.0))
            })
        });
        let conntrack = opts
            .conntrack
            .then(|| scope.spawn(|| timed(read_conntrack_stats)));
        let rules: Vec<_> = match reader {
            Some(reader) => {
                // On this thread: the reader is borrowed mutably and the sources share a socket.
                let started = Instant::now();
                let (timed, extras) = read_netlink(reader, opts, &rule_sources);
                snapshot.nftables = extras.nftables;
                snapshot.retries = extras.retries;
                snapshot.text_fallbacks = extras.text_fallbacks;
                native_report = extras.native.map(|result| SourceReport {
                    kind: SourceKind::NativeRules,
                    method: native::METHOD.to_owned(),
                    error: result.err(),
                    duration_seconds: started.elapsed().as_secs_f64(),
                });
                timed
            }
            None => {
                let spawned: Vec<_> = rule_sources
                    .iter()
                    .map(|&(family, backend)| {
                        scope.spawn(move || {
                            timed_with_problem(|| {
                                let (ruleset, problem) = read_rules(opts, family, backend)?;
                                Ok((ruleset.map(parsed_read), problem))
                            })
                        })
                    })
                    .collect();
                spawned.into_iter().map(joined).collect()
            }
        };
        (
            rules,
            ipsets.map(joined),
            conntrack.map(joined),
            native.map(joined),
        )
    });
    snapshot.rule_source = if netlink { "netlink" } else { "exec" }.to_owned();
    for (&(family, backend), timed) in rule_sources.iter().zip(rule_results) {
        let kind = SourceKind::Rules { family, backend };
        let method = if netlink {
            netlink::method(family, backend)
        } else {
            rules::method(family, backend)
        };
        if let Some(read) = record(&mut snapshot, kind, method, timed).flatten() {
            rulesets.push(read);
        }
    }
    snapshot.sources.extend(native_report);
    if let Some(timed) = native {
        let known: Vec<(Family, Vec<String>)> = rulesets
            .iter()
            .filter_map(|r| r.parsed.as_ref())
            .filter(|r| r.backend == Backend::Nft)
            .map(|r| (r.family, r.tables.iter().map(|t| t.name.clone()).collect()))
            .collect();
        if let Some(all) = record(
            &mut snapshot,
            SourceKind::NativeRules,
            native::METHOD.to_owned(),
            timed,
        ) {
            snapshot.nftables = native::exec_state(all, &known);
        }
    }
    if let Some(timed) = ipsets {
        snapshot.ipsets = record(
            &mut snapshot,
            SourceKind::Ipsets,
            ipsets::METHOD.to_owned(),
            timed,
        )
        .unwrap_or_default();
    }
    if let Some(timed) = conntrack {
        snapshot.conntrack = record(
            &mut snapshot,
            SourceKind::Conntrack,
            "procfs".to_owned(),
            timed,
        );
    }
    Reading { snapshot, rulesets }
}

/// A ruleset just parsed with its counters, as a [`RulesetRead`].
fn parsed_read(ruleset: Ruleset) -> RulesetRead {
    RulesetRead {
        counters: Arc::new(RulesetCounters::of(&ruleset)),
        rules_id: ruleset.rules_id(),
        parsed: Some(ruleset),
    }
}

/// Reads every rule source through the netlink reader; each source reports the time spent on
/// its own ruleset (the nf_tables families' common reads are shared out between them).
fn read_netlink(
    reader: &mut Reader,
    opts: &CollectOptions,
    sources: &[(Family, Backend)],
) -> (Vec<Timed<Option<RulesetRead>>>, netlink::Extras) {
    let (results, extras) = reader.read_rules(opts, sources);
    let timed = results
        .into_iter()
        .map(|(result, seconds)| {
            let (result, problem) = match result {
                Ok(read) => (
                    Ok(read.counters.map(|counters| RulesetRead {
                        counters,
                        parsed: read.ruleset,
                        rules_id: read.rules_id,
                    })),
                    read.problem.map(KernelError::Netlink),
                ),
                Err(e) => (Err(e), None),
            };
            Timed {
                result,
                problem,
                seconds,
            }
        })
        .collect();
    (timed, extras)
}

/// The (family, backend) pairs to read, without duplicates or `Backend::Unknown`.
fn rule_sources(opts: &CollectOptions) -> Vec<(Family, Backend)> {
    let mut pairs: Vec<(Family, Backend)> = Vec::new();
    for &family in &opts.families {
        for &backend in opts.backends.iter().filter(|&&b| b != Backend::Unknown) {
            if !pairs.contains(&(family, backend)) {
                pairs.push((family, backend));
            }
        }
    }
    pairs
}

/// Reads one ruleset; when the strict parse fails, the lenient parse is kept (its notices say
/// what was skipped) and the strict error is still reported.
fn read_rules(
    opts: &CollectOptions,
    family: Family,
    backend: Backend,
) -> Result<(Option<Ruleset>, Option<KernelError>), KernelError> {
    rules::read_ruleset_tolerant(family, backend, opts.timeout, opts.tool_dir.as_deref())
}

/// Adds the report for one source and returns its value, if any.
fn record<T>(
    snapshot: &mut Snapshot,
    kind: SourceKind,
    method: String,
    timed: Timed<T>,
) -> Option<T> {
    let (value, error) = match timed.result {
        Ok(value) => (
            Some(value),
            timed.problem.map(|p| format!("{p} (kept a lenient parse)")),
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    snapshot.sources.push(SourceReport {
        kind,
        method,
        error,
        duration_seconds: timed.seconds,
    });
    value
}

/// The snapshot when the namespace could not be entered: every requested source fails with `error`.
fn unreachable_namespace(opts: &CollectOptions, error: &str) -> Reading {
    let mut sources: Vec<(SourceKind, String)> = rule_sources(opts)
        .into_iter()
        .map(|(family, backend)| {
            (
                SourceKind::Rules { family, backend },
                rules::method(family, backend),
            )
        })
        .collect();
    if opts.ipsets {
        sources.push((SourceKind::Ipsets, ipsets::METHOD.to_owned()));
    }
    if opts.native_nftables {
        sources.push((SourceKind::NativeRules, native::METHOD.to_owned()));
    }
    if opts.conntrack {
        sources.push((SourceKind::Conntrack, "procfs".to_owned()));
    }
    let reports = sources.into_iter().map(|(kind, method)| SourceReport {
        kind,
        method,
        error: Some(error.to_owned()),
        duration_seconds: 0.0,
    });
    Reading {
        snapshot: Snapshot {
            sources: reports.collect(),
            ..Snapshot::default()
        },
        rulesets: Vec::new(),
    }
}
