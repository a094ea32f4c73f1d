//! The fast read path: rule counters straight from the kernel, rule text only when it changed.
//!
//! Owns [`Reader`], the stateful reader a server keeps across scrapes. Per scrape it reads
//! counters over nf_tables netlink (nft backend, native nftables) and `getsockopt` (legacy
//! backend) — no fork. Rule *text* (`ip[6]tables-*-save`, parsed by `nfscope-ruleset`) is re-read
//! only when the ruleset changed: for nf_tables when the generation id (`NFT_MSG_GETGEN`) moved,
//! for legacy when a table's fingerprint (its entries without counters) did. Counters are attributed
//! to parsed rules by (family, table, chain, position) and checked against each rule's comment
//! (and, for legacy, its verdict or jump); the generation (or fingerprint) is checked again after
//! the counter read. Any mismatch means the ruleset moved underneath: the read starts over and the
//! retry is counted ([`nfscope_ruleset::Snapshot::retries`]), so a counter can never land on the
//! wrong rule. The checks use hashes taken when the text was parsed, so a ruleset lent out and
//! given back without its specs (`Ruleset::drop_rule_specs`) is checked just the same; each parsed
//! text has an id ([`nfscope_ruleset::Snapshot::rule_text_ids`]) that tells consumers "same rules".
//! It does not read ipsets or conntrack (they stay on `ipset` / `/proc`).

pub(crate) mod legacy;
pub(crate) mod nft;
pub(crate) mod socket;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nfscope_ruleset::{
    Backend, Counters, Family, NftNamedCounter, NftRule, NftSet, NftablesState, Ruleset, Snapshot,
};

use crate::CollectOptions;
use crate::error::KernelError;
use crate::rules::{legacy_holds_nothing, parse_tolerant, run_save};
use legacy::{STANDARD_TABLES, WordHash, XtSocket, XtTable};
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
    /// `None` while lent out (see [`Reader::lending`]) or when the text held no tables.
    ruleset: Option<Ruleset>,
    /// The ruleset was moved into a snapshot and has not come back yet ([`Reader::give_back`]).
    lent: bool,
    /// Strict-parse problem when a lenient parse was kept.
    problem: Option<String>,
    /// table → chain → (table index, chain index).
    index: HashMap<String, HashMap<String, (usize, usize)>>,
    /// This text's identity ([`Snapshot::rule_text_ids`]): new for every parse.
    id: u64,
    /// What placing counters checks per rule, so a ruleset that comes back without its specs
    /// ([`Ruleset::drop_rule_specs`]) can still be checked.
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
                        .extend(rule.spec.comments().map(WordHash::of));
                    let count = checks.comments.len() as u32 - first;
                    let target = WordHash::of(rule.spec.target_name().unwrap_or(""));
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
        let Some((first, count, _)) = self.rule(t, c, r0) else {
            return false;
        };
        let wanted = WordHash::of(comment);
        let range = first as usize..(first + count) as usize;
        self.comments
            .get(range)
            .is_some_and(|h| h.contains(&wanted))
    }

    /// Is rule `r0`'s target (`""` for none) named `target`?
    fn has_target(&self, t: usize, c: usize, r0: usize, target: &str) -> bool {
        self.rule(t, c, r0)
            .is_some_and(|(_, _, hash)| hash == WordHash::of(target))
    }
}

/// The next [`CachedText::id`]; ids start at 1 because 0 means "unknown" in
/// [`Snapshot::rule_text_ids`].
static NEXT_TEXT_ID: AtomicU64 = AtomicU64::new(1);

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
            ruleset,
            lent: false,
            problem: problem.map(|p| format!("{p} (kept a lenient parse)")),
            index,
            id: NEXT_TEXT_ID.fetch_add(1, Ordering::Relaxed),
            checks,
        }
    }

    /// True when the cached text can place counters (it is not lent out).
    fn usable(&self) -> bool {
        !self.lent
    }

    /// The ruleset for a snapshot: moved out when lending (the cache keeps only its index until
    /// it is given back), copied otherwise.
    fn hand_out(&mut self, lend: bool) -> Option<Ruleset> {
        if lend && self.ruleset.is_some() {
            self.lent = true;
            self.ruleset.take()
        } else {
            self.ruleset.clone()
        }
    }

    /// Takes a lent ruleset back if it has the tables and chains, at the places, that the index
    /// was built from (rule counts, comments and verdicts are checked again when counters are
    /// placed, so a ruleset edited meanwhile causes a re-read, never a misplaced counter).
    ///
    /// `text_id` is the id the snapshot carried for it: when it is this text's, only the table
    /// and chain counts are compared (the full name check hashes every chain name, a visible
    /// share of a 25k-chain scrape).
    fn take_back(&mut self, ruleset: Ruleset, text_id: Option<u64>) {
        let fits = if text_id == Some(self.id) {
            self.same_counts(&ruleset)
        } else {
            self.indexes(&ruleset)
        };
        if !self.lent || !fits {
            return;
        }
        self.ruleset = Some(ruleset);
        self.lent = false;
    }

    fn same_counts(&self, ruleset: &Ruleset) -> bool {
        let chains: usize = self.index.values().map(HashMap::len).sum();
        let their_chains: usize = ruleset.tables.iter().map(|t| t.chains.len()).sum();
        chains == their_chains && self.index.len() == ruleset.tables.len()
    }

    fn indexes(&self, ruleset: &Ruleset) -> bool {
        self.same_counts(ruleset)
            && ruleset.tables.iter().enumerate().all(|(t, table)| {
                table
                    .chains
                    .iter()
                    .enumerate()
                    .all(|(c, chain)| self.chain(&table.name, &chain.name) == Some((t, c)))
            })
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
    /// `None`: no tables.
    pub ruleset: Option<Ruleset>,
    /// A problem worth reporting although the read worked.
    pub problem: Option<String>,
    /// The identity of the parsed text ([`Snapshot::rule_text_ids`]); 0 when there is none.
    pub text_id: u64,
}

impl TextRead {
    fn handed_out(text: &mut CachedText, lend: bool) -> Self {
        Self {
            ruleset: text.hand_out(lend),
            problem: text.problem.clone(),
            text_id: text.id,
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

/// A reader that remembers parsed rule text between scrapes (see the module docs).
#[derive(Default)]
pub struct Reader {
    nft: HashMap<Family, (u32, CachedText)>,
    legacy: HashMap<Family, (Vec<u64>, CachedText)>,
    /// Move cached rulesets into snapshots instead of copying them ([`Reader::lending`]).
    lend: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("nft_families", &self.nft.len())
            .field("legacy_families", &self.legacy.len())
            .finish()
    }
}

/// What one netlink read produced besides the per-source results.
#[derive(Default)]
pub(crate) struct Extras {
    pub nftables: NftablesState,
    pub retries: u64,
}

impl Reader {
    /// A reader with nothing cached: its first scrape reads the rule text.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader that *moves* its cached parsed rulesets into the snapshots it returns instead of
    /// copying them (at 70k rules the copy is ~80 MiB and a fifth of a scrape's CPU). Hand each
    /// snapshot back with [`Reader::give_back`] once it is no longer needed; a ruleset that has
    /// not come back by the next collection is read and parsed again from the save tool's text,
    /// which is correct but costs what a cache miss costs.
    pub fn lending() -> Self {
        Self {
            lend: true,
            ..Self::default()
        }
    }

    /// Returns a snapshot's rulesets to the cache they were lent from (see [`Reader::lending`]).
    /// Rulesets the reader did not lend, or whose rule text was re-read since, are dropped.
    pub fn give_back(&mut self, snapshot: Snapshot) {
        let ids = snapshot.rule_text_ids;
        for (i, ruleset) in snapshot.rulesets.into_iter().enumerate() {
            let cached = match ruleset.backend {
                Backend::Nft => self.nft.get_mut(&ruleset.family).map(|(_, text)| text),
                Backend::Legacy => self.legacy.get_mut(&ruleset.family).map(|(_, text)| text),
                Backend::Unknown => None,
            };
            if let Some(text) = cached {
                text.take_back(ruleset, ids.get(i).copied());
            }
        }
    }

    /// True while some cached ruleset is lent out and has not been given back.
    pub fn has_lent_rulesets(&self) -> bool {
        let texts = self.nft.values().map(|(_, t)| t);
        texts
            .chain(self.legacy.values().map(|(_, t)| t))
            .any(|t| t.lent)
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
                Backend::Legacy => self.read_legacy(opts, family, &mut extras.retries),
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
        for &family in families {
            if self
                .nft
                .get(&family)
                .is_some_and(|(g, text)| *g == generation && text.usable())
            {
                continue;
            }
            self.nft.remove(&family); // stale: let it go before the new text is parsed
            let text = read_text(opts, family, Backend::Nft, &[])?;
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
        let mut interrupted = nft::dump_chains(sock, dump_family, |chain| {
            if placer.place_chain(chain) || opts.native_nftables {
                chains.push((chain.family, chain.table.to_owned(), chain.name.to_owned()));
            }
        })?;
        lap(times, None);
        for (family, table, chain) in &chains {
            interrupted |= nft::dump_chain_rules(sock, *family, table, chain, |rule| {
                if !placer.place_rule(rule) && opts.native_nftables {
                    native_rule(rule, &mut native);
                }
                Ok(())
            })?;
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
            extras.nftables = native;
            lap(times, Some(ReadTimes::NATIVE));
        }
        let lend = self.lend;
        let done = families
            .iter()
            .map(|f| {
                let (_, text) = self.nft.get_mut(f).expect("read above");
                (*f, TextRead::handed_out(text, lend))
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
        retries: &mut u64,
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
        for _ in 0..MAX_ATTEMPTS {
            match self.try_read_legacy(&sock, opts, family) {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(problem)) => {
                    *retries += 1;
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

    #[allow(clippy::type_complexity)]
    fn try_read_legacy(
        &mut self,
        sock: &XtSocket,
        opts: &CollectOptions,
        family: Family,
    ) -> Result<Result<TextRead, String>, KernelError> {
        let io_error = |source: io::Error| KernelError::Io {
            what: method(family, Backend::Legacy),
            source,
        };
        let names = legacy_table_names(sock, family, opts.probe_legacy_tables).map_err(io_error)?;
        let Some(tables) = read_tables(sock, &names)
            .map_err(|e| needs(e, "CAP_NET_ADMIN for the x_tables get-sockopts"))
            .map_err(io_error)?
        else {
            return Ok(Err("a table was replaced while it was read".to_owned()));
        };
        if tables.is_empty() {
            self.legacy.remove(&family);
            return Ok(Ok(TextRead::default()));
        }
        let prints: Vec<u64> = tables.iter().map(XtTable::fingerprint).collect();
        let cached = self.legacy.get(&family);
        let tables = if cached.is_some_and(|(p, text)| *p == prints && text.usable()) {
            tables
        } else {
            drop(tables); // read again below; no need to hold both copies meanwhile
            self.legacy.remove(&family); // stale: let it go before the new text is parsed
            let args: Vec<Vec<&str>> = names.iter().map(|n| vec!["-t", n.as_str()]).collect();
            let text = read_text_multi(opts, family, Backend::Legacy, &args)?;
            let Some(again) = read_tables(sock, &names).map_err(io_error)? else {
                return Ok(Err("a table was replaced while it was read".to_owned()));
            };
            if again.iter().map(XtTable::fingerprint).collect::<Vec<_>>() != prints {
                return Ok(Err("a table changed while its text was read".to_owned()));
            }
            self.legacy.insert(family, (prints, text));
            again
        };
        let (_, text) = self.legacy.get_mut(&family).expect("inserted above");
        let placed = place_legacy(text, &tables);
        // The kernel's entries (tens of MiB at 70k rules) go before the ruleset is copied out.
        drop(tables);
        if let Err(why) = placed {
            self.legacy.remove(&family);
            return Ok(Err(why));
        }
        Ok(Ok(TextRead::handed_out(text, self.lend)))
    }
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

/// Runs the save tool once per argument list and parses the concatenated output.
fn read_text_multi(
    opts: &CollectOptions,
    family: Family,
    backend: Backend,
    runs: &[Vec<&str>],
) -> Result<CachedText, KernelError> {
    let mut joined: Option<(&'static str, crate::exec::ToolOutput)> = None;
    for args in runs {
        let (tool, output) = run_save(
            family,
            backend,
            args,
            opts.text_timeout.max(opts.timeout),
            opts.tool_dir.as_deref(),
        )?;
        match &mut joined {
            Some((_, all)) => {
                all.stdout.push_str(&output.stdout);
                all.stderr.push_str(&output.stderr);
            }
            None => joined = Some((tool, output)),
        }
    }
    let Some((tool, output)) = joined else {
        return Ok(CachedText::new(None, None));
    };
    let (ruleset, problem) = parse_tolerant(tool, &output, family, backend)?;
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

/// Reads every named table; `None` when one changed between its header and entries reads.
/// A table that vanished since the names were listed is left out.
fn read_tables(sock: &XtSocket, names: &[String]) -> io::Result<Option<Vec<XtTable>>> {
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        match sock.read_table(name) {
            Ok(Some(table)) => tables.push(table),
            Ok(None) if sock.info(name)?.is_none() => {}
            Ok(None) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(tables))
}

/// Puts each legacy table's counters on the parsed rules, checking comments and verdicts.
fn place_legacy(text: &mut CachedText, tables: &[XtTable]) -> Result<(), String> {
    let mut placed_chains = 0usize;
    for table in tables {
        let chains = table.chains().map_err(|e| e.to_string())?;
        for chain in chains {
            let (t, c) = text
                .chain(&table.name, chain.name)
                .ok_or_else(|| format!("{}/{}: chain not in the text", table.name, chain.name))?;
            let ruleset = text.ruleset.as_mut().ok_or("no text")?;
            let parsed = &mut ruleset.tables[t].chains[c];
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
                parsed.counters = Some(counters(policy));
            }
            let checks = &text.checks;
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
                rule.counters = Some(counters(kernel.count));
            }
            placed_chains += 1;
        }
    }
    let text_chains: usize = text.index.values().map(HashMap::len).sum();
    if placed_chains != text_chains {
        return Err(format!(
            "{placed_chains} chains in the kernel, {text_chains} in the text"
        ));
    }
    Ok(())
}

fn counters(count: Count) -> Counters {
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

    fn text_for(&mut self, family: u8, table: &str) -> Option<usize> {
        self.texts
            .iter()
            .position(|(f, text)| *f == family && text.has_table(table))
    }

    /// Places one rule; false when it does not belong to an iptables-nft table we read.
    fn place_rule(&mut self, rule: &nft::RuleView<'_>) -> bool {
        let Some(i) = self.text_for(rule.family, rule.table) else {
            return false;
        };
        if self.mismatch.is_some() {
            return true;
        }
        let text = &mut self.texts[i].1;
        let Some((t, c)) = text.chain(rule.table, rule.chain) else {
            self.mismatch = Some(format!(
                "{}/{}: chain not in the text",
                rule.table, rule.chain
            ));
            return true;
        };
        let position = self.next[i].entry((t, c)).or_insert(0);
        let ruleset = text
            .ruleset
            .as_mut()
            .expect("indexed tables come from a ruleset");
        let Some(parsed) = ruleset.tables[t].chains[c].rules.get_mut(*position) else {
            self.mismatch = Some(format!(
                "{}/{}: more rules in the kernel",
                rule.table, rule.chain
            ));
            return true;
        };
        let r0 = *position;
        *position += 1;
        if let Some(comment) = rule.comment
            && !text.checks.has_comment(t, c, r0, comment)
        {
            self.mismatch = Some(format!(
                "{}/{} rule {}: kernel comment {comment:?} is not the text's",
                rule.table, rule.chain, position
            ));
        }
        parsed.counters = rule.counter.map(counters);
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
            && let Some(ruleset) = text.ruleset.as_mut()
        {
            ruleset.tables[t].chains[c].counters = Some(counters(count));
        }
        true
    }

    /// The first mismatch, including chains whose rule count differs from the text's.
    fn finish(self) -> Option<String> {
        if self.mismatch.is_some() {
            return self.mismatch;
        }
        for ((_, text), next) in self.texts.iter().zip(&self.next) {
            let Some(ruleset) = &text.ruleset else {
                continue;
            };
            for (t, table) in ruleset.tables.iter().enumerate() {
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

fn native_rule(rule: &nft::RuleView<'_>, native: &mut NftablesState) {
    let Some(count) = rule.counter else { return };
    native.rules.push(NftRule {
        family: nft::family_name(rule.family).to_owned(),
        table: rule.table.to_owned(),
        chain: rule.chain.to_owned(),
        handle: rule.handle,
        comment: rule.comment.map(str::to_owned),
        counters: counters(count),
    });
}

fn named_counters(sock: &mut NfSocket) -> io::Result<Vec<NftNamedCounter>> {
    Ok(nft::dump_named_counters(sock)?
        .into_iter()
        .map(|c| NftNamedCounter {
            family: nft::family_name(c.family).to_owned(),
            table: c.table,
            name: c.name,
            counters: counters(c.count),
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
    fn a_lent_ruleset_leaves_the_cache_until_the_same_shape_comes_back() {
        let mut text = CachedText::new(Some(parsed(DUMP)), None);
        let copied = text.hand_out(false).expect("a ruleset");
        assert!(
            text.usable() && text.ruleset.is_some(),
            "copying keeps the cache"
        );

        let lent = text.hand_out(true).expect("a ruleset");
        assert_eq!(lent, copied);
        assert!(
            !text.usable() && text.ruleset.is_none(),
            "lending moves it out"
        );

        let renamed = parsed(&DUMP.replace("KUBE-A", "KUBE-B"));
        let other_id = text.id + 1;
        text.take_back(renamed, Some(other_id));
        assert!(
            !text.usable(),
            "a ruleset with other chains is not taken back"
        );

        text.take_back(lent, None);
        assert!(text.usable());
        assert_eq!(text.ruleset.as_ref(), Some(&copied));
        text.take_back(copied, None);
        assert!(
            text.usable(),
            "a second give-back of a ruleset not lent is ignored"
        );
    }

    #[test]
    fn rule_checks_answer_from_the_text_even_after_its_specs_are_dropped() {
        let dump = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-A - [0:0]\n\
            -A INPUT -m comment --comment one -m comment --comment two -j KUBE-A\n\
            -A KUBE-A -p tcp\n-A KUBE-A -j RETURN\nCOMMIT\n";
        let mut text = CachedText::new(Some(parsed(dump)), None);
        let mut lent = text.hand_out(true).expect("a ruleset");
        lent.drop_rule_specs();
        text.take_back(lent, Some(text.id));
        assert!(text.usable(), "a skeleton of the same text comes back");
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
    fn a_ruleset_carrying_the_texts_id_comes_back_on_counts_alone() {
        let mut text = CachedText::new(Some(parsed(DUMP)), None);
        let other = CachedText::new(Some(parsed(DUMP)), None);
        assert_ne!(text.id, other.id, "every parsed text gets its own id");
        let lent = text.hand_out(true).expect("a ruleset");
        let mut extra_chain = lent.clone();
        let copy = extra_chain.tables[0].chains[1].clone();
        extra_chain.tables[0].chains.push(copy);
        let id = text.id;
        text.take_back(extra_chain, Some(id));
        assert!(
            !text.usable(),
            "other chain counts are refused even with the id"
        );
        text.take_back(lent, Some(id));
        assert!(text.usable());
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

    #[test]
    fn give_back_returns_rulesets_to_their_family_and_backend() {
        let mut reader = Reader::lending();
        let mut text = CachedText::new(Some(parsed(DUMP)), None);
        let mut ruleset = text.hand_out(true).expect("a ruleset");
        reader.legacy.insert(Family::Ipv4, (vec![1], text));
        assert!(reader.has_lent_rulesets());

        ruleset.backend = Backend::Nft;
        let wrong_backend = Snapshot {
            rulesets: vec![ruleset.clone()],
            ..Snapshot::default()
        };
        reader.give_back(wrong_backend);
        assert!(
            reader.has_lent_rulesets(),
            "an nft ruleset is not the legacy one"
        );

        ruleset.backend = Backend::Legacy;
        reader.give_back(Snapshot {
            rulesets: vec![ruleset],
            ..Snapshot::default()
        });
        assert!(!reader.has_lent_rulesets());
    }
}
