//! The fast read path: rule counters and rule text straight from the kernel, text only when it changed.
//!
//! Owns [`Reader`], the stateful reader a server keeps across scrapes. Per scrape it reads
//! counters over nf_tables netlink (nft backend, native nftables) and `getsockopt` (legacy
//! backend) — no fork. Rule *text* (`iptables-save` syntax, parsed by `nfscope-ruleset`) is
//! re-read only when the ruleset changed: for nf_tables when the generation id (`NFT_MSG_GETGEN`)
//! moved, for legacy when a table's fingerprint (its entries without counters) did — and it is
//! decoded from the kernel's own bytes (`crate::xt`), no fork either: legacy text from the table
//! just read, one table held at a time; iptables-nft text from the rule dump. Only what the
//! decoder cannot render exactly (a table for legacy, a family for nft) runs the save tool, and
//! that is counted ([`nfscope_ruleset::Snapshot::text_fallbacks`]). Counters are attributed
//! to parsed rules by (family, table, chain, position) and checked against each rule's comment
//! (and, for legacy, its verdict or jump); the generation (or fingerprint) is checked again after
//! the counter read; a read that has just rendered a family's nft text places the counters that
//! same rule dump carried (recorded as comment hash and counter per rule) rather than dumping
//! every rule a second time. Any mismatch means the ruleset moved underneath: the read starts
//! over and the retry is counted ([`nfscope_ruleset::Snapshot::retries`]), so a counter can
//! never land on the wrong rule. Counters are placed on a [`RulesetCounters`] (names,
//! positions, counters) and checked against hashes taken when the text was parsed, so a reader
//! that handed its parsed rules out ([`Reader::counters_only`]) checks just the same; each
//! parsed text carries its
//! [`Ruleset::rules_id`], which tells consumers "same rules". Native nftables tables (chains no
//! iptables-nft text claims) get their typed rules from `nft -j list ruleset` under the same rule:
//! read once per generation, and not at all while no native chain exists.
//! It does not read ipsets or conntrack (they stay on `ipset` / `/proc`).

pub(crate) mod legacy;
pub(crate) mod nft;
pub(crate) mod socket;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use nfscope_ruleset::typed::{NftFamily, NftRuleset};
use nfscope_ruleset::{
    Backend, Counters, Family, FxHasher, NftNamedCounter, NftRule, NftSet, NftablesState, Ruleset,
    RulesetCounters, TextFallback,
};

use crate::CollectOptions;
use crate::error::KernelError;
use crate::native::{self, RuleTexts};
use crate::rules::{legacy_holds_nothing, parse_tolerant, run_save};
use legacy::{STANDARD_TABLES, TableRead, XtSocket, XtTable};
use nft::Count;
use socket::NfSocket;

/// Attempts per scrape before giving up on a ruleset that keeps changing.
const MAX_ATTEMPTS: u32 = 25;

/// How a source is read by the netlink path, for `SourceReport::method`.
pub(crate) fn method(family: Family, backend: Backend) -> String {
    match (family, backend) {
        (_, Backend::Nft) => "netlink nf_tables".to_owned(),
        (Family::Ipv4, Backend::Legacy) => "getsockopt IPT_SO_GET_ENTRIES".to_owned(),
        (Family::Ipv6, Backend::Legacy) => "getsockopt IP6T_SO_GET_ENTRIES".to_owned(),
        (_, Backend::Unknown) => "none".to_owned(),
    }
}

/// Parsed rule text kept between scrapes, with the index that places counters.
struct CachedText {
    /// The parsed rules: kept by a reader that keeps text ([`Reader::new`]); handed out once,
    /// with the read that parsed them, by a [`Reader::counters_only`]. `None` then, or when the
    /// text held no tables.
    ruleset: Option<Ruleset>,
    /// Where counters are placed; shared with the readings handed out (copied on write when a
    /// reading still holds the previous counters). `None` when the text held no tables.
    counters: Option<Arc<RulesetCounters>>,
    /// Strict-parse problem when a lenient parse was kept.
    problem: Option<String>,
    /// table → chain → (table index, chain index).
    index: HashMap<String, HashMap<String, (usize, usize)>>,
    /// [`Ruleset::rules_id`] of the parsed text.
    id: u64,
    /// What placing counters checks per rule, from the text (the reader may not keep its specs).
    checks: RuleChecks,
}

/// Per parsed rule, what the kernel's view must agree with: hashes of its comments and of its
/// target's name, addressed by (table index, chain index, position).
#[derive(Default)]
struct RuleChecks {
    /// `chain_start[t][c]`: index into `rules` of that chain's first rule.
    chain_start: Vec<Vec<usize>>,
    /// (first index into `comments`, number of comments, target-name hash).
    rules: Vec<(u32, u32, u64)>,
    comments: Vec<u64>,
}

impl RuleChecks {
    fn of(ruleset: Option<&Ruleset>) -> Self {
        let mut checks = Self::default();
        for table in ruleset.iter().flat_map(|r| &r.tables) {
            let mut starts = Vec::with_capacity(table.chains.len());
            for chain in &table.chains {
                starts.push(checks.rules.len());
                for rule in &chain.rules {
                    let first = checks.comments.len() as u32;
                    checks
                        .comments
                        .extend(rule.spec.comments().map(FxHasher::of));
                    let count = checks.comments.len() as u32 - first;
                    let target = FxHasher::of(rule.spec.target_name().unwrap_or(""));
                    checks.rules.push((first, count, target));
                }
            }
            checks.chain_start.push(starts);
        }
        checks
    }

    fn rule(&self, t: usize, c: usize, r0: usize) -> Option<(u32, u32, u64)> {
        let start = *self.chain_start.get(t)?.get(c)?;
        self.rules.get(start + r0).copied()
    }

    /// Does rule `r0` of chain (t, c) carry this comment among its comments?
    fn has_comment(&self, t: usize, c: usize, r0: usize, comment: &str) -> bool {
        self.has_comment_hash(t, c, r0, FxHasher::of(comment))
    }

    /// [`RuleChecks::has_comment`] given the comment's `FxHasher::of`.
    fn has_comment_hash(&self, t: usize, c: usize, r0: usize, wanted: u64) -> bool {
        let Some((first, count, _)) = self.rule(t, c, r0) else {
            return false;
        };
        let range = first as usize..(first + count) as usize;
        self.comments
            .get(range)
            .is_some_and(|h| h.contains(&wanted))
    }

    /// Is rule `r0`'s target (`""` for none) named `target`?
    fn has_target(&self, t: usize, c: usize, r0: usize, target: &str) -> bool {
        self.rule(t, c, r0)
            .is_some_and(|(_, _, hash)| hash == FxHasher::of(target))
    }
}

impl CachedText {
    fn new(ruleset: Option<Ruleset>, problem: Option<KernelError>) -> Self {
        let checks = RuleChecks::of(ruleset.as_ref());
        let mut index: HashMap<String, HashMap<String, (usize, usize)>> = HashMap::new();
        for (t, table) in ruleset.iter().flat_map(|r| r.tables.iter().enumerate()) {
            let chains = index.entry(table.name.clone()).or_default();
            for (c, chain) in table.chains.iter().enumerate() {
                chains.insert(chain.name.clone(), (t, c));
            }
        }
        Self {
            counters: ruleset.as_ref().map(|r| Arc::new(RulesetCounters::of(r))),
            id: ruleset.as_ref().map_or(0, Ruleset::rules_id),
            ruleset,
            problem: problem.map(|p| format!("{p} (kept a lenient parse)")),
            index,
            checks,
        }
    }

    /// Moves the parts kept between scrapes (chain index, counters' names and lists) into
    /// fresh allocations; the copies are unchanged. Built while the parsed rules were live,
    /// their many small allocations sit scattered among the freed rules and keep those pages
    /// resident; made again once the rules are gone they come out of contiguous free memory.
    /// Counters still shared with a reading stay where they are.
    fn compact_memory(&mut self) {
        self.index = self.index.clone();
        if let Some(counters) = &mut self.counters
            && Arc::strong_count(counters) == 1
        {
            *counters = Arc::new(RulesetCounters::clone(counters));
        }
        self.checks.chain_start = self.checks.chain_start.clone();
    }

    /// The counters to place on, unshared first if a reading still holds them.
    fn counters_mut(&mut self) -> Option<&mut RulesetCounters> {
        self.counters.as_mut().map(Arc::make_mut)
    }

    /// The parsed rules for a reading: moved out by a counters-only reader (only the read that
    /// parsed them hands them out), copied with the current counters otherwise.
    fn hand_out(&mut self, keep_text: bool) -> Option<Ruleset> {
        if !keep_text {
            return self.ruleset.take();
        }
        let mut ruleset = self.ruleset.clone()?;
        if let Some(counters) = &self.counters {
            counters.apply_to(&mut ruleset);
        }
        Some(ruleset)
    }

    fn has_table(&self, table: &str) -> bool {
        self.index.contains_key(table)
    }

    fn chain(&self, table: &str, chain: &str) -> Option<(usize, usize)> {
        self.index.get(table)?.get(chain).copied()
    }
}

/// What reading one (family, backend) produced.
#[derive(Default)]
pub(crate) struct TextRead {
    /// The parsed rules with their counters (see [`CachedText::hand_out`]).
    pub ruleset: Option<Ruleset>,
    /// The counters; `None`: no tables.
    pub counters: Option<Arc<RulesetCounters>>,
    /// A problem worth reporting although the read worked.
    pub problem: Option<String>,
    /// [`Ruleset::rules_id`] of the text the counters belong to; 0 when there is none.
    pub rules_id: u64,
}

impl TextRead {
    fn handed_out(text: &mut CachedText, keep_text: bool) -> Self {
        Self {
            ruleset: text.hand_out(keep_text),
            counters: text.counters.clone(),
            problem: text.problem.clone(),
            rules_id: text.id,
        }
    }
}

/// The result of reading one (family, backend).
pub(crate) type RulesRead = Result<TextRead, KernelError>;

/// Where the time of one nf_tables read went, so each ruleset reports its own: the save tool's
/// text and the rule dumps of a family's chains count for that family; the generation checks
/// and the chain list are read once for all families and shared out evenly between them; native
/// nftables (inet and other families' chains, named counters, sets) count for no ruleset.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ReadTimes {
    /// Seconds per [`ReadTimes::slot`]: IPv4, IPv6, native nftables.
    own: [f64; 3],
    /// Seconds of the parts read once for every family.
    shared: f64,
}

impl ReadTimes {
    const NATIVE: usize = 2;

    fn slot(family: Family) -> usize {
        match family {
            Family::Ipv4 => 0,
            Family::Ipv6 => 1,
        }
    }

    /// Adds `seconds` to a slot, or to the shared part (`None`).
    fn add(&mut self, slot: Option<usize>, seconds: f64) {
        match slot {
            Some(slot) => self.own[slot] += seconds,
            None => self.shared += seconds,
        }
    }

    /// Seconds per family slot (IPv4, IPv6): its own time plus its share of the shared part
    /// among the `families` read together.
    fn per_family(&self, families: &[Family]) -> [f64; 2] {
        let share = self.shared / families.len().max(1) as f64;
        let mut out = [self.own[0], self.own[1]];
        for &family in families {
            out[Self::slot(family)] += share;
        }
        out
    }
}

/// The typed native tables of one nf_tables generation (`nft -j list ruleset`, iptables-nft's
/// tables left out), with the rule texts the netlink dump's counted rules are labelled with.
struct NativeText {
    generation: u32,
    ruleset: Arc<NftRuleset>,
    texts: RuleTexts,
}

/// A reader that remembers parsed rule text between scrapes (see the module docs).
pub struct Reader {
    nft: HashMap<Family, (u32, CachedText)>,
    legacy: HashMap<Family, (Vec<u64>, CachedText)>,
    /// Native tables' typed rules, re-read only when the generation moved.
    native: Option<NativeText>,
    /// Times `nft -j list ruleset` ran for this reader.
    native_reads: u64,
    /// Keep the parsed rules and copy them into every reading ([`Reader::new`]), or hand them
    /// out once ([`Reader::counters_only`]).
    keep_text: bool,
    /// Times the iptables-nft text could not be built from the dump and the save tool ran.
    text_fallbacks: u64,
    /// The most recent of those.
    last_fallback: Option<TextFallback>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("nft_families", &self.nft.len())
            .field("legacy_families", &self.legacy.len())
            .finish()
    }
}

impl Default for Reader {
    /// [`Reader::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// What one netlink read produced besides the per-source results.
#[derive(Default)]
pub(crate) struct Extras {
    pub nftables: NftablesState,
    pub retries: u64,
    /// Rule-text reads that fell back to a save tool.
    pub text_fallbacks: Vec<TextFallback>,
    /// How reading the native tables' rules went, when asked for: `Err` says why it failed.
    pub native: Option<Result<(), String>>,
}

impl Reader {
    /// A reader with nothing cached: its first scrape reads the rule text. It keeps the parsed
    /// rules and copies them, with current counters, into every reading.
    pub fn new() -> Self {
        Self {
            keep_text: true,
            ..Self::counters_only()
        }
    }

    /// A reader that keeps only names, positions and counters between scrapes: the parsed rules
    /// are *moved* into the reading whose read parsed them ([`crate::RulesetRead::parsed`]) and
    /// never copied (at 70k rules a copy is ~80 MiB and a fifth of a scrape's CPU). Readings of
    /// unchanged rules carry counters only. For a server that keeps what it derives from the
    /// rules per [`Ruleset::rules_id`].
    pub fn counters_only() -> Self {
        Self {
            nft: HashMap::new(),
            legacy: HashMap::new(),
            native: None,
            native_reads: 0,
            keep_text: false,
            text_fallbacks: 0,
            last_fallback: None,
        }
    }

    /// Does this reader keep the parsed rules ([`Reader::new`])?
    pub fn keeps_text(&self) -> bool {
        self.keep_text
    }

    /// Forgets every cached text: the next read runs the save tools and parses again (and so
    /// hands the parsed rules out again).
    pub fn forget_texts(&mut self) {
        self.nft.clear();
        self.legacy.clear();
        self.native = None;
    }

    /// Moves the cached texts' long-lived parts into fresh, contiguous allocations (see
    /// `CachedText::compact_memory`): worth it once after the rules parsed at a change have been
    /// freed, not per scrape.
    pub fn compact_memory(&mut self) {
        for (_, text) in self.nft.values_mut() {
            text.compact_memory();
        }
        for (_, text) in self.legacy.values_mut() {
            text.compact_memory();
        }
    }

    /// Times an iptables-nft text read fell back to `ip[6]tables-nft-save` because the netlink
    /// decoder met something it cannot render exactly.
    pub fn text_fallbacks(&self) -> u64 {
        self.text_fallbacks
    }

    /// The most recent such fallback, with its reason.
    pub fn last_text_fallback(&self) -> Option<&TextFallback> {
        self.last_fallback.as_ref()
    }

    /// Times this reader ran `nft -j list ruleset` to read the native tables' rules: once per
    /// nf_tables generation that has native chains (and again after a failed read).
    pub fn native_text_reads(&self) -> u64 {
        self.native_reads
    }

    /// Reads every requested (family, backend) in the calling thread's namespace; each result
    /// comes with the seconds spent on that ruleset alone (see [`ReadTimes`]).
    pub(crate) fn read_rules(
        &mut self,
        opts: &CollectOptions,
        sources: &[(Family, Backend)],
    ) -> (Vec<(RulesRead, f64)>, Extras) {
        let mut extras = Extras::default();
        let nft_families: Vec<Family> = sources
            .iter()
            .filter(|(_, b)| *b == Backend::Nft)
            .map(|(f, _)| *f)
            .collect();
        let mut times = ReadTimes::default();
        let mut nft = (!nft_families.is_empty() || opts.native_nftables)
            .then(|| self.read_nft(opts, &nft_families, &mut extras, &mut times));
        let nft_seconds = times.per_family(&nft_families);
        let mut results = Vec::new();
        for &(family, backend) in sources {
            let started = Instant::now();
            let result = match backend {
                Backend::Nft => match nft.as_mut().expect("read when nft is requested") {
                    // Moved out, not cloned: each family appears once in `sources`.
                    Ok(reads) => Ok(reads
                        .iter_mut()
                        .find(|(f, _)| *f == family)
                        .map(|(_, read)| std::mem::take(read))
                        .unwrap_or_default()),
                    Err(e) => Err(KernelError::Io {
                        what: "nf_tables netlink".to_owned(),
                        source: needs(
                            io::Error::new(e.kind(), e.to_string()),
                            "CAP_NET_ADMIN: nfnetlink has no read-only capability",
                        ),
                    }),
                },
                Backend::Legacy => self.read_legacy(opts, family, &mut extras),
                Backend::Unknown => Err(KernelError::UnknownBackend(backend)),
            };
            let seconds = match backend {
                Backend::Nft => nft_seconds[ReadTimes::slot(family)],
                _ => started.elapsed().as_secs_f64(),
            };
            results.push((result, seconds));
        }
        (results, extras)
    }

    /// Reads the nft backend's families and native nftables state; retries until the generation
    /// is the same before the text, after the text, before and after the counter dump.
    #[allow(clippy::type_complexity)]
    fn read_nft(
        &mut self,
        opts: &CollectOptions,
        families: &[Family],
        extras: &mut Extras,
        times: &mut ReadTimes,
    ) -> io::Result<Vec<(Family, TextRead)>> {
        let started = Instant::now();
        let mut sock = NfSocket::open()?;
        times.shared += started.elapsed().as_secs_f64();
        let mut last_problem = String::new();
        for _ in 0..MAX_ATTEMPTS {
            match self.try_read_nft(&mut sock, opts, families, extras, times)? {
                Ok(done) => return Ok(done),
                Err(problem) => {
                    extras.retries += 1;
                    last_problem = problem;
                }
            }
        }
        Err(io::Error::other(format!(
            "the ruleset kept changing during {MAX_ATTEMPTS} reads: {last_problem}"
        )))
    }

    /// One attempt; `Ok(Err(why))` means "the ruleset moved, try again".
    #[allow(clippy::type_complexity)]
    fn try_read_nft(
        &mut self,
        sock: &mut NfSocket,
        opts: &CollectOptions,
        families: &[Family],
        extras: &mut Extras,
        times: &mut ReadTimes,
    ) -> io::Result<Result<Vec<(Family, TextRead)>, String>> {
        let mut clock = Instant::now();
        // Seconds since the previous lap, added to `slot`.
        let mut lap = |times: &mut ReadTimes, slot: Option<usize>| {
            let now = Instant::now();
            times.add(slot, (now - clock).as_secs_f64());
            clock = now;
        };
        let generation = nft::generation(sock)?;
        lap(times, None);
        // The rules (comment hash, counter) of the text dumps made in this attempt: their
        // counters are placed from that same dump instead of dumping the rules again.
        let mut dumped: Vec<(u8, nft::DumpedRules)> = Vec::new();
        for &family in families {
            if self.nft.get(&family).is_some_and(|(g, _)| *g == generation) {
                continue;
            }
            self.nft.remove(&family); // stale: let it go before the new text is parsed
            let mut rules = nft::DumpedRules::default();
            let text = match nft::iptables_text(sock, family, false, Some(&mut rules))? {
                nft::IptablesText::Text(text) => {
                    dumped.push((nfproto(family), rules));
                    parse_text(text, family)?
                }
                nft::IptablesText::Interrupted => {
                    return Ok(Err("generation moved while dumping rule text".to_owned()));
                }
                nft::IptablesText::Unsupported(why) => {
                    let fallback = TextFallback {
                        backend: Backend::Nft,
                        family,
                        reason: why.label(),
                        detail: why.to_string(),
                    };
                    self.text_fallbacks += 1;
                    self.last_fallback = Some(fallback.clone());
                    extras.text_fallbacks.push(fallback);
                    read_text(opts, family, Backend::Nft, &[])?
                }
            };
            lap(times, Some(ReadTimes::slot(family)));
            if nft::generation(sock)? != generation {
                return Ok(Err("generation moved while reading rule text".to_owned()));
            }
            self.nft.insert(family, (generation, text));
            lap(times, None);
        }
        let mut placer = Placer::new(families, &mut self.nft);
        let mut native = NftablesState::default();
        let dump_family = match families {
            [Family::Ipv4] if !opts.native_nftables => nft::FAMILY_IP,
            [Family::Ipv6] if !opts.native_nftables => nft::FAMILY_IP6,
            _ => nft::FAMILY_ALL,
        };
        let mut chains: Vec<(u8, String, String)> = Vec::new();
        let mut native_chains = false;
        let mut interrupted = nft::dump_chains(sock, dump_family, |chain| {
            let placed = placer.place_chain(chain);
            native_chains |= !placed;
            if placed || opts.native_nftables {
                chains.push((chain.family, chain.table.to_owned(), chain.name.to_owned()));
            }
        })?;
        lap(times, None);
        let mut native_texts = None;
        if opts.native_nftables {
            let known: Vec<(u8, Vec<String>)> = placer.known_tables();
            match read_native_text(
                &mut self.native,
                &mut self.native_reads,
                opts,
                generation,
                native_chains,
                &known,
            ) {
                Ok(()) => {
                    if nft::generation(sock)? != generation {
                        self.native = None;
                        return Ok(Err("generation moved while reading native rules".to_owned()));
                    }
                    extras.native = Some(Ok(()));
                }
                Err(e) => extras.native = Some(Err(e.to_string())),
            }
            native_texts = self.native.as_ref().filter(|n| n.generation == generation);
            lap(times, Some(ReadTimes::NATIVE));
        }
        for (family, table, chain) in &chains {
            let same_dump = dumped
                .iter()
                .find(|(f, _)| f == family)
                .and_then(|(_, rules)| rules.chain(table, chain));
            if let Some(rules) = same_dump {
                // Same generation as the text's dump (checked below): the same rules.
                for rule in rules {
                    placer.place(*family, table, chain, rule, None);
                }
            } else {
                interrupted |= nft::dump_chain_rules(sock, *family, table, chain, |rule| {
                    if !placer.place_rule(rule) && opts.native_nftables {
                        native_rule(rule, native_texts.map(|n| &n.texts), &mut native);
                    }
                    Ok(())
                })?;
            }
            // ip and ip6 chains of a family read here count for it (iptables-nft's, or native
            // ones read with them); inet, arp, bridge and netdev chains, and ip/ip6 chains of a
            // family not asked for, are native nftables only.
            let family = match *family {
                nft::FAMILY_IP => Some(Family::Ipv4),
                nft::FAMILY_IP6 => Some(Family::Ipv6),
                _ => None,
            };
            let slot = family
                .filter(|f| families.contains(f))
                .map_or(ReadTimes::NATIVE, ReadTimes::slot);
            lap(times, Some(slot));
        }
        let mismatch = placer.finish();
        let moved = nft::generation(sock)? != generation;
        lap(times, None);
        if moved || interrupted {
            return Ok(Err("generation moved during the counter dump".to_owned()));
        }
        if let Some(why) = mismatch {
            // The text no longer describes the kernel's rules: read it again.
            self.nft.clear();
            return Ok(Err(why));
        }
        if opts.native_nftables {
            native.counters = named_counters(sock)?;
            native.sets = set_sizes(sock)?;
            native.ruleset = native_texts.map(|n| Arc::clone(&n.ruleset));
            native.text_reads = self.native_reads;
            extras.nftables = native;
            lap(times, Some(ReadTimes::NATIVE));
        }
        let keep_text = self.keep_text;
        let done = families
            .iter()
            .map(|f| {
                let (_, text) = self.nft.get_mut(f).expect("read above");
                (*f, TextRead::handed_out(text, keep_text))
            })
            .collect();
        Ok(Ok(done))
    }

    /// Reads one family's legacy tables; retries until the tables' fingerprints are the same
    /// when the text is read and when the counters are.
    fn read_legacy(
        &mut self,
        opts: &CollectOptions,
        family: Family,
        extras: &mut Extras,
    ) -> RulesRead {
        if legacy_holds_nothing(family) {
            return Ok(TextRead::default());
        }
        let io_error = |source: io::Error| KernelError::Io {
            what: method(family, Backend::Legacy),
            source,
        };
        let sock = XtSocket::open(family)
            .map_err(|e| needs(e, "CAP_NET_RAW to open a raw socket"))
            .map_err(io_error)?;
        let mut last_problem = String::new();
        // One entries buffer for every table and attempt of this read.
        let mut buf = Vec::new();
        for _ in 0..MAX_ATTEMPTS {
            match self.try_read_legacy(&sock, opts, family, &mut buf, extras) {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(problem)) => {
                    extras.retries += 1;
                    last_problem = problem;
                }
                Err(e) => return Err(e),
            }
        }
        Err(KernelError::Format {
            what: method(family, Backend::Legacy),
            detail: format!("the tables kept changing during {MAX_ATTEMPTS} reads: {last_problem}"),
        })
    }

    /// One attempt, a table at a time (one table's entries held at once): with unchanged
    /// fingerprints the counters go on the cached text; otherwise the text is decoded from the
    /// same bytes (`crate::xt`), the save tool reading only a table the decoder cannot render.
    /// `Ok(Err(why))` means "the tables moved, try again".
    #[allow(clippy::type_complexity)]
    fn try_read_legacy(
        &mut self,
        sock: &XtSocket,
        opts: &CollectOptions,
        family: Family,
        buf: &mut Vec<u8>,
        extras: &mut Extras,
    ) -> Result<Result<TextRead, String>, KernelError> {
        let io_error = |source: io::Error| KernelError::Io {
            what: method(family, Backend::Legacy),
            source,
        };
        let names = legacy_table_names(sock, family, opts.probe_legacy_tables).map_err(io_error)?;
        if let Some((prints, text)) = self.legacy.get_mut(&family) {
            match place_cached(sock, &names, prints, text, buf)
                .map_err(|e| needs(e, "CAP_NET_ADMIN for the x_tables get-sockopts"))
                .map_err(io_error)?
            {
                Placed::Done => return Ok(Ok(TextRead::handed_out(text, self.keep_text))),
                Placed::Changed => {}
                Placed::Moved(why) => {
                    self.legacy.remove(&family);
                    return Ok(Err(why));
                }
            }
        }
        self.legacy.remove(&family); // stale: let it go before the new text is built
        let started = Instant::now();
        let mut text = String::new();
        let mut prints = Vec::with_capacity(names.len());
        for name in &names {
            let table = match read_one(sock, name, buf)
                .map_err(|e| needs(e, "CAP_NET_ADMIN for the x_tables get-sockopts"))
                .map_err(io_error)?
            {
                One::Table(table) => table,
                One::Gone => continue,
                One::Replaced => return Ok(Err("a table was replaced while it was read".into())),
            };
            prints.push(table.fingerprint());
            let decoded = crate::xt::legacy_line::table_text(&table, family, false, &mut text);
            *buf = table.into_buffer();
            let Err(undecoded) = decoded else {
                continue;
            };
            // The save tool reads this table; the fingerprints checked when the counters are
            // placed below say its text is of the same rules.
            let first = &undecoded[0];
            let fallback = TextFallback {
                backend: Backend::Legacy,
                family,
                reason: first.reason.clone(),
                detail: first.to_string(),
            };
            self.text_fallbacks += 1;
            self.last_fallback = Some(fallback.clone());
            extras.text_fallbacks.push(fallback);
            let (_, output) = run_save(
                family,
                Backend::Legacy,
                &["-t", name],
                opts.text_timeout.max(opts.timeout),
                opts.tool_dir.as_deref(),
            )?;
            text.push_str(&output.stdout);
        }
        if prints.is_empty() {
            return Ok(Ok(TextRead::default()));
        }
        // The entries buffer is not held while the text is parsed (the peak of a change).
        *buf = Vec::new();
        let parsed = parse_legacy_text(text, family)?;
        // libiptc commits in two calls: it replaces the table (new counters all zero), then
        // puts the counters back. A read just after a change can fall between the two, so the
        // counters come from a read at least `COMMIT_GAP` after the one that saw the change
        // (forking the save tool used to give that gap by accident).
        std::thread::sleep(COMMIT_GAP.saturating_sub(started.elapsed()));
        let (prints, text) = self.legacy.entry(family).or_insert((prints, parsed));
        match place_cached(sock, &names, prints, text, buf).map_err(io_error)? {
            Placed::Done => Ok(Ok(TextRead::handed_out(text, self.keep_text))),
            Placed::Changed => {
                self.legacy.remove(&family);
                Ok(Err("a table changed while its text was read".into()))
            }
            Placed::Moved(why) => {
                self.legacy.remove(&family);
                Ok(Err(why))
            }
        }
    }
}

/// The iptables-nft rule text of `family` in the calling thread's namespace as the netlink
/// decoder builds it (what `ip[6]tables-nft-save` prints, without `#` lines): `Ok(Err(why))`
/// when it would fall back to the save tool. With `partial`, a rule it cannot render is the
/// line `-A CHAIN <unsupported: why>` instead. For comparing the decoder with the save tools.
pub fn iptables_nft_text(family: Family, partial: bool) -> io::Result<Result<String, String>> {
    let mut sock = NfSocket::open()?;
    for _ in 0..MAX_ATTEMPTS {
        match nft::iptables_text(&mut sock, family, partial, None)? {
            nft::IptablesText::Text(text) => return Ok(Ok(text)),
            nft::IptablesText::Unsupported(why) => return Ok(Err(why.to_string())),
            nft::IptablesText::Interrupted => {}
        }
    }
    Err(io::Error::other("the ruleset kept changing"))
}

/// Parses rule text built from the nf_tables dump like the save tool's output, with the
/// warning the save tool would print on stderr when legacy tables are present.
fn parse_text(text: String, family: Family) -> io::Result<CachedText> {
    let to_io = |e: KernelError| io::Error::other(e.to_string());
    let legacy = crate::rules::legacy_table_names(family).is_ok_and(|n| !n.is_empty());
    let prefix = match family {
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ip6",
    };
    let stderr = if legacy {
        format!(
            "# Warning: {prefix}tables-legacy tables present, use {prefix}tables-legacy-save to see them\n"
        )
    } else {
        String::new()
    };
    let tool = match family {
        Family::Ipv4 => "iptables-nft-save",
        Family::Ipv6 => "ip6tables-nft-save",
    };
    let output = crate::exec::ToolOutput {
        stdout: text,
        stderr,
    };
    let (ruleset, problem) = parse_tolerant(tool, &output, family, Backend::Nft).map_err(to_io)?;
    Ok(CachedText::new(ruleset, problem))
}

/// The least time between the read that saw a legacy table change and the read whose
/// counters are placed (see `Reader::try_read_legacy`).
const COMMIT_GAP: std::time::Duration = std::time::Duration::from_millis(20);

/// How placing counters on a cached legacy text went.
enum Placed {
    /// Every table's counters placed.
    Done,
    /// A fingerprint differs: the text must be read again.
    Changed,
    /// The tables moved underneath (retry).
    Moved(String),
}

/// Reads the tables one at a time and, while their fingerprints are those of the cached
/// text, places their counters on it.
fn place_cached(
    sock: &XtSocket,
    names: &[String],
    prints: &[u64],
    text: &mut CachedText,
    buf: &mut Vec<u8>,
) -> io::Result<Placed> {
    let mut read = 0;
    let mut placed_chains = 0;
    for name in names {
        let table = match read_one(sock, name, buf)? {
            One::Table(table) => table,
            One::Gone => continue,
            One::Replaced => {
                return Ok(Placed::Moved(
                    "a table was replaced while it was read".into(),
                ));
            }
        };
        if prints.get(read) != Some(&table.fingerprint()) {
            *buf = table.into_buffer();
            return Ok(Placed::Changed);
        }
        read += 1;
        let placed = place_legacy(text, &table);
        *buf = table.into_buffer();
        match placed {
            Ok(chains) => placed_chains += chains,
            Err(why) => return Ok(Placed::Moved(why)),
        }
    }
    if read != prints.len() {
        return Ok(Placed::Changed);
    }
    let text_chains: usize = text.index.values().map(HashMap::len).sum();
    if placed_chains != text_chains {
        return Ok(Placed::Moved(format!(
            "{placed_chains} chains in the kernel, {text_chains} in the text"
        )));
    }
    Ok(Placed::Done)
}

/// One table read into the shared buffer.
enum One {
    Table(XtTable),
    /// Vanished since the names were listed.
    Gone,
    /// Changed between its header and entries reads.
    Replaced,
}

fn read_one(sock: &XtSocket, name: &str, buf: &mut Vec<u8>) -> io::Result<One> {
    Ok(match sock.read_table_into(name, std::mem::take(buf))? {
        TableRead::Read(table) => One::Table(table),
        TableRead::Missing(b) => {
            *buf = b;
            One::Gone
        }
        TableRead::Replaced(b) => {
            *buf = b;
            if sock.info(name)?.is_none() {
                One::Gone
            } else {
                One::Replaced
            }
        }
    })
}

/// Parses legacy rule text (decoded, or the save tool's for a table it had to read) like the
/// save tool's output.
fn parse_legacy_text(text: String, family: Family) -> Result<CachedText, KernelError> {
    let tool = crate::rules::save_tool(family, Backend::Legacy).unwrap_or("iptables-legacy-save");
    let output = crate::exec::ToolOutput {
        stdout: text,
        stderr: String::new(),
    };
    let (ruleset, problem) = parse_tolerant(tool, &output, family, Backend::Legacy)?;
    Ok(CachedText::new(ruleset, problem))
}

fn read_text(
    opts: &CollectOptions,
    family: Family,
    backend: Backend,
    args: &[&str],
) -> io::Result<CachedText> {
    let to_io = |e: KernelError| io::Error::other(e.to_string());
    let (tool, output) = run_save(
        family,
        backend,
        args,
        opts.text_timeout.max(opts.timeout),
        opts.tool_dir.as_deref(),
    )
    .map_err(to_io)?;
    let (ruleset, problem) = parse_tolerant(tool, &output, family, backend).map_err(to_io)?;
    Ok(CachedText::new(ruleset, problem))
}

/// The family's legacy table names ([`crate::rules::legacy_table_names`]); when that file
/// cannot be read and `probe` is set, the standard names that answer `*_SO_GET_INFO` instead.
///
/// Probing has a side effect, which is why it is opt-in: the kernel *creates* a table it is
/// asked about when the table's code is built in or its module loaded (measured on 6.18: probing
/// an empty namespace instantiated all five tables; `tests/capabilities.rs` keeps measuring it),
/// i.e. empty tables whose built-in chains accept. That changes no verdict, but it adds hooks
/// and makes iptables-nft warn about legacy tables.
fn legacy_table_names(sock: &XtSocket, family: Family, probe: bool) -> io::Result<Vec<String>> {
    match crate::rules::legacy_table_names(family) {
        Err(e) if probe && e.kind() == io::ErrorKind::PermissionDenied => probe_table_names(sock),
        read => read,
    }
}

/// `e`, saying which capability is missing when the kernel refused with `EPERM`.
fn needs(e: io::Error, what: &str) -> io::Error {
    if e.kind() == io::ErrorKind::PermissionDenied {
        io::Error::new(e.kind(), format!("{e} (needs {what})"))
    } else {
        e
    }
}

fn probe_table_names(sock: &XtSocket) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for name in STANDARD_TABLES {
        if sock.info(name)?.is_some() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Puts one legacy table's counters on the parsed rules, checking comments and verdicts;
/// returns the number of chains placed.
fn place_legacy(text: &mut CachedText, table: &XtTable) -> Result<usize, String> {
    let mut placed_chains = 0usize;
    {
        let chains = table.chains().map_err(|e| e.to_string())?;
        for chain in chains {
            let (t, c) = text
                .chain(&table.name, chain.name)
                .ok_or_else(|| format!("{}/{}: chain not in the text", table.name, chain.name))?;
            let checks = &text.checks;
            let counters = text.counters.as_mut().map(Arc::make_mut).ok_or("no text")?;
            let parsed = &mut counters.tables[t].chains[c];
            if parsed.rules.len() != chain.rules.len() {
                return Err(format!(
                    "{}/{}: {} rules in the kernel, {} in the text",
                    table.name,
                    chain.name,
                    chain.rules.len(),
                    parsed.rules.len()
                ));
            }
            if let Some(policy) = chain.policy {
                parsed.counters = Some(to_counters(policy));
            }
            for (i, (kernel, rule)) in chain.rules.iter().zip(&mut parsed.rules).enumerate() {
                let comment_ok = kernel
                    .comment
                    .is_none_or(|k| checks.has_comment(t, c, i, k));
                let target_ok = kernel
                    .standard_target
                    .is_none_or(|k| checks.has_target(t, c, i, k));
                if !comment_ok || !target_ok {
                    return Err(format!(
                        "{}/{} rule {}: kernel rule ({:?}, {:?}) differs from the text",
                        table.name,
                        chain.name,
                        i + 1,
                        kernel.comment,
                        kernel.standard_target
                    ));
                }
                *rule = Some(to_counters(kernel.count));
            }
            placed_chains += 1;
        }
    }
    Ok(placed_chains)
}

fn to_counters(count: Count) -> Counters {
    Counters {
        packets: count.packets,
        bytes: count.bytes,
    }
}

/// Places nf_tables dump rows on the cached parsed rules of the nft backend.
struct Placer<'a> {
    texts: Vec<(u8, &'a mut CachedText)>,
    /// Per text: rules placed so far per (table index, chain index).
    next: Vec<HashMap<(usize, usize), usize>>,
    mismatch: Option<String>,
}

impl<'a> Placer<'a> {
    fn new(families: &[Family], cache: &'a mut HashMap<Family, (u32, CachedText)>) -> Self {
        let texts: Vec<(u8, &mut CachedText)> = cache
            .iter_mut()
            .filter(|(f, _)| families.contains(f))
            .map(|(f, (_, text))| (nfproto(*f), text))
            .collect();
        let next = texts.iter().map(|_| HashMap::new()).collect();
        Self {
            texts,
            next,
            mismatch: None,
        }
    }

    /// Per nfproto of the iptables-nft texts read, the names of their tables.
    fn known_tables(&self) -> Vec<(u8, Vec<String>)> {
        self.texts
            .iter()
            .map(|(f, text)| (*f, text.index.keys().cloned().collect()))
            .collect()
    }

    fn text_for(&mut self, family: u8, table: &str) -> Option<usize> {
        self.texts
            .iter()
            .position(|(f, text)| *f == family && text.has_table(table))
    }

    /// Places one rule; false when it does not belong to an iptables-nft table we read.
    fn place_rule(&mut self, rule: &nft::RuleView<'_>) -> bool {
        self.place(
            rule.family,
            rule.table,
            rule.chain,
            &nft::DumpedRule::of(rule),
            rule.comment,
        )
    }

    /// Places one rule given its comment's hash and counter (`comment` is only for the
    /// mismatch message); false when it does not belong to an iptables-nft table we read.
    fn place(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
        rule: &nft::DumpedRule,
        comment: Option<&str>,
    ) -> bool {
        let Some(i) = self.text_for(family, table) else {
            return false;
        };
        if self.mismatch.is_some() {
            return true;
        }
        let text = &mut self.texts[i].1;
        let Some((t, c)) = text.chain(table, chain) else {
            self.mismatch = Some(format!("{table}/{chain}: chain not in the text"));
            return true;
        };
        let position = self.next[i].entry((t, c)).or_insert(0);
        let checks = &text.checks;
        let counters = text
            .counters
            .as_mut()
            .map(Arc::make_mut)
            .expect("indexed tables come from a ruleset");
        let Some(parsed) = counters.tables[t].chains[c].rules.get_mut(*position) else {
            self.mismatch = Some(format!("{table}/{chain}: more rules in the kernel"));
            return true;
        };
        let r0 = *position;
        *position += 1;
        if let Some(hash) = rule.comment
            && !checks.has_comment_hash(t, c, r0, hash)
        {
            let comment = comment.unwrap_or("(as dumped with the text)");
            self.mismatch = Some(format!(
                "{table}/{chain} rule {position}: kernel comment {comment:?} is not the text's"
            ));
        }
        *parsed = rule.counter.map(to_counters);
        true
    }

    /// Places a base chain's policy counters; false when the chain is not in an iptables-nft
    /// table we read.
    fn place_chain(&mut self, chain: &nft::ChainView<'_>) -> bool {
        let Some(i) = self.text_for(chain.family, chain.table) else {
            return false;
        };
        let text = &mut self.texts[i].1;
        if let (Some((t, c)), Some(count)) = (text.chain(chain.table, chain.name), chain.counters)
            && let Some(counters) = text.counters_mut()
        {
            counters.tables[t].chains[c].counters = Some(to_counters(count));
        }
        true
    }

    /// The first mismatch, including chains whose rule count differs from the text's.
    fn finish(self) -> Option<String> {
        if self.mismatch.is_some() {
            return self.mismatch;
        }
        for ((_, text), next) in self.texts.iter().zip(&self.next) {
            let Some(counters) = &text.counters else {
                continue;
            };
            for (t, table) in counters.tables.iter().enumerate() {
                for (c, chain) in table.chains.iter().enumerate() {
                    let placed = next.get(&(t, c)).copied().unwrap_or(0);
                    if placed != chain.rules.len() {
                        return Some(format!(
                            "{}/{}: {placed} rules in the kernel, {} in the text",
                            table.name,
                            chain.name,
                            chain.rules.len()
                        ));
                    }
                }
            }
        }
        None
    }
}

fn nfproto(family: Family) -> u8 {
    match family {
        Family::Ipv4 => nft::FAMILY_IP,
        Family::Ipv6 => nft::FAMILY_IP6,
    }
}

fn native_rule(rule: &nft::RuleView<'_>, texts: Option<&RuleTexts>, native: &mut NftablesState) {
    let Some(count) = rule.counter else { return };
    let family = nft::family_name(rule.family);
    native.rules.push(NftRule {
        family: family.to_owned(),
        table: rule.table.to_owned(),
        chain: rule.chain.to_owned(),
        handle: rule.handle,
        comment: rule.comment.map(str::to_owned),
        rule: texts
            .and_then(|t| t.get(family, rule.table, rule.handle))
            .map(str::to_owned),
        counters: to_counters(count),
    });
}

/// Makes `cache` hold the native tables' typed rules of `generation`: unchanged when it already
/// does; an empty ruleset, without running anything, when the kernel has no chain outside
/// iptables-nft's tables (`native_chains` false); else `nft -j list ruleset`, parsed, with the
/// tables iptables-nft manages left out — those of `known` (per nfproto, the tables of the
/// iptables-nft text just read), and for families without such a text those that look like
/// iptables-nft's. A failed read leaves the cache empty, so the next scrape tries again.
fn read_native_text(
    cache: &mut Option<NativeText>,
    reads: &mut u64,
    opts: &CollectOptions,
    generation: u32,
    native_chains: bool,
    known: &[(u8, Vec<String>)],
) -> Result<(), KernelError> {
    if cache.as_ref().is_some_and(|n| n.generation == generation) {
        return Ok(());
    }
    *cache = None; // stale: let it go before the new text is parsed
    let ruleset = if native_chains {
        *reads += 1;
        let (all, _bytes) = native::read_all(
            opts.text_timeout.max(opts.timeout),
            opts.tool_dir.as_deref(),
        )?;
        native::native_only(all, |table| {
            let proto = match table.family {
                NftFamily::Ip => nft::FAMILY_IP,
                NftFamily::Ip6 => nft::FAMILY_IP6,
                _ => return false,
            };
            match known.iter().find(|(f, _)| *f == proto) {
                Some((_, tables)) => tables.contains(&table.name),
                None => native::looks_like_iptables_nft(table),
            }
        })
    } else {
        NftRuleset::default()
    };
    *cache = Some(NativeText {
        generation,
        texts: RuleTexts::of(&ruleset),
        ruleset: Arc::new(ruleset),
    });
    Ok(())
}

fn named_counters(sock: &mut NfSocket) -> io::Result<Vec<NftNamedCounter>> {
    Ok(nft::dump_named_counters(sock)?
        .into_iter()
        .map(|c| NftNamedCounter {
            family: nft::family_name(c.family).to_owned(),
            table: c.table,
            name: c.name,
            counters: to_counters(c.count),
        })
        .collect())
}

fn set_sizes(sock: &mut NfSocket) -> io::Result<Vec<NftSet>> {
    Ok(nft::dump_set_sizes(sock)?
        .into_iter()
        .map(|s| NftSet {
            family: nft::family_name(s.family).to_owned(),
            table: s.table,
            name: s.name,
            elements: s.elements,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use nfscope_ruleset::{ParseOptions, parse_ruleset};

    use super::*;

    const DUMP: &str = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-A - [0:0]\n\
        [1:60] -A INPUT -j KUBE-A\n[2:120] -A KUBE-A -p tcp -j ACCEPT\nCOMMIT\n";

    fn parsed(dump: &str) -> Ruleset {
        parse_ruleset(dump, &ParseOptions::default()).expect("test dump parses")
    }

    #[test]
    fn a_counters_only_text_hands_its_rules_out_once_and_keeps_the_counters() {
        let mut text = CachedText::new(Some(parsed(DUMP)), None);
        assert_eq!(text.id, parsed(DUMP).rules_id());
        let copied = text.hand_out(true).expect("a ruleset");
        assert_eq!(copied, parsed(DUMP), "a text-keeping reader copies");
        let moved = text.hand_out(false).expect("a ruleset");
        assert_eq!(moved, copied);
        assert_eq!(text.hand_out(false), None, "handed out once");
        assert_eq!(text.hand_out(true), None);
        let counters = text.counters.clone().expect("counters stay");
        assert!(counters.same_shape(&moved));
    }

    #[test]
    fn placing_counters_while_a_reading_holds_them_copies_instead_of_changing_that_reading() {
        let mut text = CachedText::new(Some(parsed(DUMP)), None);
        let held = text.counters.clone().expect("counters");
        text.counters_mut().expect("counters").tables[0].chains[1].rules[0] = Some(Counters {
            packets: 9,
            bytes: 540,
        });
        assert_eq!(
            held.tables[0].chains[1].rules[0],
            Some(Counters {
                packets: 2,
                bytes: 120
            })
        );
        let now = text.counters.as_ref().expect("counters");
        assert_eq!(now.tables[0].chains[1].rules[0].map(|c| c.packets), Some(9));
        let copy = text.hand_out(true).expect("a ruleset");
        assert_eq!(
            copy.tables[0].chains[1].rules[0]
                .counters
                .map(|c| c.packets),
            Some(9),
            "a text-keeping reader hands out the current counters"
        );
    }

    #[test]
    fn rule_checks_answer_from_the_text_even_after_it_was_handed_out() {
        let dump = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-A - [0:0]\n\
            -A INPUT -m comment --comment one -m comment --comment two -j KUBE-A\n\
            -A KUBE-A -p tcp\n-A KUBE-A -j RETURN\nCOMMIT\n";
        let mut text = CachedText::new(Some(parsed(dump)), None);
        drop(text.hand_out(false));
        let checks = &text.checks;
        assert!(checks.has_comment(0, 0, 0, "one") && checks.has_comment(0, 0, 0, "two"));
        assert!(!checks.has_comment(0, 0, 0, "three"));
        assert!(checks.has_target(0, 0, 0, "KUBE-A") && !checks.has_target(0, 0, 0, "ACCEPT"));
        assert!(checks.has_target(0, 1, 0, ""), "a rule without a target");
        assert!(checks.has_target(0, 1, 1, "RETURN"));
        assert!(
            !checks.has_comment(0, 1, 2, ""),
            "out of range is never a match"
        );
        assert!(!checks.has_target(0, 2, 0, ""), "no such chain");
    }

    #[test]
    fn compacting_moves_unshared_counters_and_keeps_every_value() {
        let mut text = CachedText::new(Some(parsed(DUMP)), None);
        drop(text.hand_out(false));
        let (index, before) = (text.index.clone(), text.counters.clone().expect("counters"));
        text.compact_memory();
        let now = text.counters.clone().expect("counters");
        assert!(
            Arc::ptr_eq(&now, &before),
            "counters a reading holds stay put"
        );
        drop((before, now));
        let old = Arc::as_ptr(text.counters.as_ref().expect("counters"));
        let values = RulesetCounters::clone(text.counters.as_ref().expect("counters"));
        text.compact_memory();
        let moved = text.counters.as_ref().expect("counters");
        assert!(!std::ptr::eq(Arc::as_ptr(moved), old), "a fresh copy");
        assert_eq!(**moved, values);
        assert_eq!(text.index, index);
        assert_eq!(text.chain("filter", "KUBE-A"), Some((0, 1)));
        assert!(text.checks.has_target(0, 0, 0, "KUBE-A"));
    }

    #[test]
    fn forgetting_texts_makes_the_next_read_parse_again() {
        let mut reader = Reader::counters_only();
        assert!(!reader.keeps_text() && Reader::new().keeps_text());
        reader.legacy.insert(
            Family::Ipv4,
            (vec![1], CachedText::new(Some(parsed(DUMP)), None)),
        );
        reader.forget_texts();
        assert!(reader.legacy.is_empty() && reader.nft.is_empty());
    }

    #[test]
    fn each_family_gets_its_own_time_and_a_share_of_the_common_reads() {
        let mut times = ReadTimes::default();
        times.add(Some(ReadTimes::slot(Family::Ipv4)), 3.0); // its text and rule dumps
        times.add(Some(ReadTimes::slot(Family::Ipv6)), 0.5);
        times.add(Some(ReadTimes::NATIVE), 7.0); // inet chains, sets: nobody's ruleset
        times.add(None, 1.0); // generation checks and the chain list
        assert_eq!(times.per_family(&[Family::Ipv4, Family::Ipv6]), [3.5, 1.0]);
        // One family read alone carries the whole common part; the other reports its own
        // (here nothing: it was not read).
        assert_eq!(times.per_family(&[Family::Ipv6]), [3.0, 1.5]);
        let both = times.per_family(&[Family::Ipv4, Family::Ipv6]);
        assert!(
            both.iter().sum::<f64>() <= 3.0 + 0.5 + 7.0 + 1.0,
            "never more than was spent"
        );
    }
}
