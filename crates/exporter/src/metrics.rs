//! The metric schema: which families exist, their labels and HELP text, and how a [`Snapshot`]
//! fills them.
//!
//! Owns every metric name nfscope exposes. Duplicate label sets are impossible by construction:
//! rule series are keyed by a per-ruleset-unique `rule_id`, and every other family goes through
//! [`Summed`], which adds up samples with identical labels. It does not own escaping (see
//! [`crate::expo`]) or Kubernetes aggregation rules (see [`crate::kube`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash};
use std::ops::Add;

use nfscope_annotate::Annotations;
use nfscope_ruleset::{Backend, Family, FxHasher, RulesetCounters, Snapshot};

use crate::expo::{
    ChunkSink, Exposition, Kind, SinkClosed, Value, push_escaped_label_value, sanitize_name,
};
use crate::kube::{KubeConntrack, KubePlan};
use crate::labels::RuleLabels;
use crate::{ExportOptions, RuleLabel, RuleSeries, SelfMetrics, kube, source_labels};

/// The result of an encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The exposition text (serve with [`crate::CONTENT_TYPE`]).
    pub body: String,
    /// Rules that had counters but got no series in *this* encoding because of
    /// `max_rule_series`; add it to [`SelfMetrics::rule_series_dropped_total`].
    pub rule_series_dropped: u64,
    /// Rules that did get series (one packets and one bytes series each).
    pub rule_series: u64,
}

/// The result of a streaming encoding ([`encode_metrics_streaming`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    /// The last families, not sent to the sink: Kubernetes series, ipsets, conntrack and
    /// nfscope's own. Whatever the caller appends comes after them; send it last.
    pub tail: String,
    /// As [`Encoded::rule_series_dropped`].
    pub rule_series_dropped: u64,
    /// As [`Encoded::rule_series`].
    pub rule_series: u64,
    /// The `endpoint` label values of the `nfscope_kube_endpoint_new_connections_total` series
    /// written, in order, without duplicates (what `nfscope_kube_endpoint_info` may describe).
    pub kube_endpoints: Vec<String>,
}

/// One ruleset as a server keeps it between rule changes: its counters and the labels (with the
/// Kubernetes plan, [`RuleLabels::attach_kube_plan`]) built from the rules they count.
#[derive(Debug, Clone, Copy)]
pub struct CountedRules<'a> {
    /// Names, positions and counters.
    pub counters: &'a RulesetCounters,
    /// Built from the rules `counters` belong to; a ruleset whose labels do not have the
    /// counters' shape is left out rather than mislabelled.
    pub labels: &'a RuleLabels,
}

/// Encodes a snapshot as Prometheus text exposition 0.0.4.
///
/// `annotations` is parallel to `snapshot.rulesets` (missing entries mean "no Kubernetes
/// meaning"). Renders and hashes every rule; servers that scrape often should keep
/// [`RuleLabels`] and call [`encode_counters_streaming`].
pub fn encode_metrics(
    snapshot: &Snapshot,
    annotations: &[Annotations],
    self_metrics: &SelfMetrics,
    opts: &ExportOptions,
) -> String {
    encode_metrics_with_labels(snapshot, annotations, &[], self_metrics, opts).body
}

/// Like [`encode_metrics`], with precomputed [`RuleLabels`] parallel to `snapshot.rulesets`.
///
/// Each entry must have been built from a ruleset with the same rule specs; an entry that is
/// missing or whose table/chain/rule counts differ is recomputed here, so a stale cache can
/// mislabel a rule but never panic or drop it.
pub fn encode_metrics_with_labels(
    snapshot: &Snapshot,
    annotations: &[Annotations],
    labels: &[RuleLabels],
    self_metrics: &SelfMetrics,
    opts: &ExportOptions,
) -> Encoded {
    let input = Input::new(snapshot, annotations, labels);
    let prepared = input.prepared();
    let mut head = Exposition::with_capacity(estimate_bytes(&prepared, opts));
    let parts = encode_parts(
        &mut head,
        &prepared,
        snapshot,
        self_metrics,
        opts,
        &KubeConntrack::default(),
    );
    let mut body = head.into_string();
    body.push_str(&parts.tail);
    Encoded {
        body,
        rule_series_dropped: parts.rule_series_dropped,
        rule_series: parts.rule_series,
    }
}

/// The same exposition as [`encode_metrics_with_labels`], sent to `sink` in chunks of about
/// `chunk_bytes` (whole lines) as it is written, so the rule series (tens of MiB at kube-proxy
/// scale) never exist as one string. The last, small families come back as
/// [`Streamed::tail`] instead; chunks followed by the tail are byte for byte the body
/// [`encode_metrics_with_labels`] returns.
///
/// Stops as soon as the sink refuses a chunk (the reader went away) and returns that error.
pub fn encode_metrics_streaming(
    snapshot: &Snapshot,
    annotations: &[Annotations],
    labels: &[RuleLabels],
    self_metrics: &SelfMetrics,
    opts: &ExportOptions,
    chunk_bytes: usize,
    sink: &mut dyn ChunkSink,
) -> Result<Streamed, SinkClosed> {
    let input = Input::new(snapshot, annotations, labels);
    let prepared = input.prepared();
    stream(
        &prepared,
        snapshot,
        self_metrics,
        opts,
        chunk_bytes,
        sink,
        &KubeConntrack::default(),
    )
}

/// The server's encoding: [`encode_metrics_streaming`] from counters and cached labels instead
/// of parsed rulesets. `rest` gives the sources, ipsets and conntrack (its `rulesets` are not
/// read). Rulesets of a (family, backend) already seen are skipped, as in a snapshot.
pub fn encode_counters_streaming(
    rules: &[CountedRules<'_>],
    rest: &Snapshot,
    self_metrics: &SelfMetrics,
    opts: &ExportOptions,
    chunk_bytes: usize,
    sink: &mut dyn ChunkSink,
) -> Result<Streamed, SinkClosed> {
    encode_counters_streaming_with(
        rules,
        rest,
        self_metrics,
        opts,
        chunk_bytes,
        sink,
        &KubeConntrack::default(),
    )
}

/// [`encode_counters_streaming`] with the Kubernetes series counted from conntrack (and the
/// no-endpoint Service ports of kube-proxy's nftables table) merged into their families.
pub fn encode_counters_streaming_with(
    rules: &[CountedRules<'_>],
    rest: &Snapshot,
    self_metrics: &SelfMetrics,
    opts: &ExportOptions,
    chunk_bytes: usize,
    sink: &mut dyn ChunkSink,
    conntrack: &KubeConntrack,
) -> Result<Streamed, SinkClosed> {
    let mut seen: HashSet<(Family, Backend)> = HashSet::new();
    let prepared: Vec<Prepared<'_>> = rules
        .iter()
        .filter(|r| seen.insert((r.counters.family, r.counters.backend)))
        .filter(|r| r.labels.same_shape(r.counters))
        .map(|r| Prepared {
            counters: r.counters,
            labels: r.labels,
            plan: r.labels.kube_plan(),
        })
        .collect();
    stream(
        &prepared,
        rest,
        self_metrics,
        opts,
        chunk_bytes,
        sink,
        conntrack,
    )
}

fn stream(
    prepared: &[Prepared<'_>],
    rest: &Snapshot,
    self_metrics: &SelfMetrics,
    opts: &ExportOptions,
    chunk_bytes: usize,
    sink: &mut dyn ChunkSink,
    conntrack: &KubeConntrack,
) -> Result<Streamed, SinkClosed> {
    let mut head = Exposition::streaming(sink, chunk_bytes);
    let parts = encode_parts(&mut head, prepared, rest, self_metrics, opts, conntrack);
    head.flush();
    if head.is_closed() {
        return Err(SinkClosed);
    }
    Ok(parts)
}

/// The one encoding path: the big families into `head`, the rest returned as
/// [`Streamed::tail`] (empty when `head`'s sink closed).
fn encode_parts(
    head: &mut Exposition<'_>,
    prepared: &[Prepared<'_>],
    snapshot: &Snapshot,
    self_metrics: &SelfMetrics,
    opts: &ExportOptions,
    conntrack: &KubeConntrack,
) -> Streamed {
    let (rule_series, dropped) = write_rule_counters(head, prepared, opts);
    let mut parts = Streamed {
        tail: String::new(),
        rule_series_dropped: dropped,
        rule_series,
        kube_endpoints: Vec::new(),
    };
    if head.is_closed() {
        return parts;
    }
    write_chain_series(head, prepared, opts);
    write_sources(head, snapshot);
    let mut tail = Exposition::default();
    parts.kube_endpoints = kube::write_kube_series(&mut tail, prepared, conntrack);
    write_ipsets(&mut tail, snapshot);
    write_conntrack(&mut tail, snapshot);
    write_self(&mut tail, self_metrics, dropped);
    parts.tail = tail.into_string();
    parts
}

/// The inputs of a snapshot's encoding with what had to be computed on the spot: counters,
/// rule labels and Kubernetes plans.
struct Input<'a> {
    cached: Vec<Option<&'a RuleLabels>>,
    counters: Vec<RulesetCounters>,
    fresh: Vec<Option<RuleLabels>>,
    plans: Vec<Option<KubePlan>>,
}

impl<'a> Input<'a> {
    fn new(
        snapshot: &'a Snapshot,
        annotations: &'a [Annotations],
        cached: &'a [RuleLabels],
    ) -> Self {
        let rulesets = unique_rulesets(snapshot);
        let mut input = Self {
            cached: Vec::new(),
            counters: Vec::new(),
            fresh: Vec::new(),
            plans: Vec::new(),
        };
        for i in rulesets {
            let ruleset = &snapshot.rulesets[i];
            let counters = RulesetCounters::of(ruleset);
            let labels = cached.get(i).filter(|l| l.same_shape(&counters));
            let fresh = labels.is_none().then(|| RuleLabels::new(ruleset));
            let has_plan = labels.or(fresh.as_ref()).and_then(RuleLabels::kube_plan);
            let plan = match (has_plan, annotations.get(i)) {
                (None, Some(annotations)) => Some(KubePlan::new(ruleset, annotations)),
                _ => None,
            };
            input.cached.push(labels);
            input.counters.push(counters);
            input.fresh.push(fresh);
            input.plans.push(plan);
        }
        input
    }

    fn prepared(&self) -> Vec<Prepared<'_>> {
        (0..self.counters.len())
            .filter_map(|i| {
                let labels = self.fresh[i].as_ref().or(self.cached[i])?;
                Some(Prepared {
                    counters: &self.counters[i],
                    labels,
                    plan: labels.kube_plan().or(self.plans[i].as_ref()),
                })
            })
            .collect()
    }
}

/// One ruleset with everything needed to encode it.
pub(crate) struct Prepared<'a> {
    pub(crate) counters: &'a RulesetCounters,
    pub(crate) labels: &'a RuleLabels,
    pub(crate) plan: Option<&'a KubePlan>,
}

impl Prepared<'_> {
    pub(crate) fn family(&self) -> &'static str {
        self.counters.family.as_str()
    }

    pub(crate) fn backend(&self) -> &'static str {
        self.counters.backend.as_str()
    }
}

/// Indices of rulesets to encode: the first of each (family, backend). Two rulesets of the same
/// family and backend cannot come from one collection; if they ever did, the later one is
/// skipped rather than emitting duplicate series.
fn unique_rulesets(snapshot: &Snapshot) -> Vec<usize> {
    let rulesets = &snapshot.rulesets;
    let mut seen: HashSet<(Family, Backend)> = HashSet::new();
    (0..rulesets.len())
        .filter(|&i| seen.insert((rulesets[i].family, rulesets[i].backend)))
        .collect()
}

/// Roughly the size of the rule series (they dominate), so the buffer is allocated once.
fn estimate_bytes(prepared: &[Prepared<'_>], opts: &ExportOptions) -> usize {
    let mut bytes = 64 * 1024;
    for p in prepared {
        let (texts, comments) = p.labels.text_bytes();
        let rules = p.counters.rule_count().min(opts.max_rule_series);
        let texts = if opts.rule_label == RuleLabel::Full {
            texts
        } else {
            0
        };
        // Both families; fixed label names, ids, table/chain names and value ≈ 200 bytes.
        bytes += 2 * (texts + comments + rules * 200);
    }
    bytes
}

const RULE_PACKETS_HELP: &str = "Packets matched by an iptables/ip6tables rule (from iptables-save -c). \
rule is the canonical rule text after -A CHAIN, rule_id a stable hash of family, backend, table, chain and that text \
(-k appended for the k-th exact duplicate), comment the rule's decoded comments joined with '; '.";
const RULE_BYTES_HELP: &str = "Bytes matched by an iptables/ip6tables rule (from iptables-save -c); \
labels as for iptables_rule_packets_total.";

/// Writes both rule counter families, then `nfscope_rule_series_summarised`; returns (rules
/// exported, rules dropped by the limit).
fn write_rule_counters(
    out: &mut Exposition<'_>,
    prepared: &[Prepared<'_>],
    opts: &ExportOptions,
) -> (u64, u64) {
    let mut written = Written::default();
    for (name, help, packets) in [
        ("iptables_rule_packets_total", RULE_PACKETS_HELP, true),
        ("iptables_rule_bytes_total", RULE_BYTES_HELP, false),
    ] {
        out.family(name, Kind::Counter, help);
        written = write_rule_family(out, name, prepared, opts, packets);
        out.end_family();
    }
    out.family(
        "nfscope_rule_series_summarised",
        Kind::Gauge,
        "Rules with counters that got no iptables_rule_* series in this scrape because --rule-series=not-summarised \
leaves out rules whose Kubernetes families (Service endpoints, no-endpoint rejects, kube-router pods, Calico policies) carry their traffic.",
    );
    out.sample("nfscope_rule_series_summarised", &[], written.summarised);
    out.end_family();
    let with_counters: u64 = prepared
        .iter()
        .map(|p| rules_with_counters(p.counters))
        .sum();
    (
        written.exported,
        with_counters - written.exported - written.summarised,
    )
}

/// What one rule family wrote and left out.
#[derive(Debug, Clone, Copy, Default)]
struct Written {
    /// Rules with a series.
    exported: u64,
    /// Rules left out because a Kubernetes family summarises them.
    summarised: u64,
}

/// Does `opts` leave out the rule at flat position `flat` of `p`?
fn summarised_rule(p: &Prepared<'_>, opts: &ExportOptions, flat: usize) -> bool {
    opts.rule_series == RuleSeries::NotSummarised
        && p.plan.is_some_and(|plan| plan.rule_summarised(flat))
}

fn rules_with_counters(counters: &RulesetCounters) -> u64 {
    let counted = counters
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules);
    counted.filter(|r| r.is_some()).count() as u64
}

fn write_rule_family(
    out: &mut Exposition<'_>,
    name: &str,
    prepared: &[Prepared<'_>],
    opts: &ExportOptions,
    packets: bool,
) -> Written {
    let mut budget = opts.max_rule_series as u64;
    let mut written = Written::default();
    let mut prefix = String::new();
    for p in prepared {
        for (t, table) in p.counters.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                if out.is_closed() {
                    return written;
                }
                let Some((first, _)) = p.labels.chain_span(t, c) else {
                    continue;
                };
                series_prefix(
                    &mut prefix,
                    name,
                    p,
                    &table.name,
                    &chain.name,
                    opts.rule_label,
                );
                for (r0, rule) in chain.rules.iter().enumerate() {
                    let Some(counters) = *rule else {
                        continue;
                    };
                    if summarised_rule(p, opts, first + r0) {
                        written.summarised += 1;
                        continue;
                    }
                    if budget == 0 {
                        return written;
                    }
                    budget -= 1;
                    written.exported += 1;
                    let value = if packets {
                        counters.packets
                    } else {
                        counters.bytes
                    };
                    let (id, text, comment) = p.labels.escaped(first + r0);
                    match opts.rule_label {
                        RuleLabel::Full => out.raw_sample(
                            &[
                                &prefix,
                                text,
                                "\",rule_id=\"",
                                id,
                                "\",comment=\"",
                                comment,
                                "\"} ",
                            ],
                            value,
                        ),
                        RuleLabel::None => {
                            out.raw_sample(&[&prefix, id, "\",comment=\"", comment, "\"} "], value)
                        }
                    }
                }
            }
        }
    }
    written
}

/// `name{family="…",backend="…",table="…",chain="…",rule="` (or `…,rule_id="` without the
/// rule label) into `out`: everything of a rule series before its first per-rule value.
fn series_prefix(
    out: &mut String,
    name: &str,
    p: &Prepared<'_>,
    table: &str,
    chain: &str,
    rule_label: RuleLabel,
) {
    out.clear();
    out.push_str(name);
    for (i, (key, value)) in [
        ("family", p.family()),
        ("backend", p.backend()),
        ("table", table),
        ("chain", chain),
    ]
    .into_iter()
    .enumerate()
    {
        out.push_str(if i == 0 { "{" } else { "\"," });
        out.push_str(key);
        out.push_str("=\"");
        push_escaped_label_value(out, value);
    }
    out.push_str(match rule_label {
        RuleLabel::Full => "\",rule=\"",
        RuleLabel::None => "\",rule_id=\"",
    });
}

/// Samples with identical label values are added up; first-seen order is kept.
///
/// Adding only appends; the merge happens once, when the rows are read, with a hash table sized
/// for all of them (tens of thousands of rows at kube-proxy scale: no rehashing, one hash each).
pub(crate) struct Summed<S, const N: usize, V> {
    rows: Vec<([S; N], V)>,
}

impl<S, const N: usize, V> Summed<S, N, V>
where
    S: AsRef<str> + Hash + Eq,
    V: Copy + Add<Output = V> + Into<Value>,
{
    pub(crate) fn new() -> Self {
        Self { rows: Vec::new() }
    }

    pub(crate) fn add(&mut self, key: [S; N], value: V) {
        self.rows.push((key, value));
    }

    /// One row per distinct label set, values added up, in first-seen order.
    pub(crate) fn merged(&self) -> Vec<(&[S; N], V)> {
        let mut index: HashMap<&[S; N], usize, BuildHasherDefault<FxHasher>> =
            HashMap::with_capacity_and_hasher(self.rows.len(), BuildHasherDefault::default());
        let mut merged: Vec<(&[S; N], V)> = Vec::with_capacity(self.rows.len());
        for (key, value) in &self.rows {
            match index.entry(key) {
                Entry::Occupied(at) => {
                    let row = &mut merged[*at.get()];
                    row.1 = row.1 + *value;
                }
                Entry::Vacant(at) => {
                    at.insert(merged.len());
                    merged.push((key, *value));
                }
            }
        }
        merged
    }

    /// Writes one family: header, one sample per distinct label set, end.
    pub(crate) fn write(
        &self,
        out: &mut Exposition<'_>,
        name: &str,
        kind: Kind,
        help: &str,
        names: [&str; N],
    ) {
        out.family(name, kind, help);
        for (key, value) in self.merged() {
            let labels: [(&str, &str); N] = std::array::from_fn(|i| (names[i], key[i].as_ref()));
            out.sample(name, &labels, value);
        }
        out.end_family();
    }
}

/// A u64 counter that wraps instead of panicking on overflow in debug builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count(pub(crate) u64);

impl Add for Count {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self(self.0.wrapping_add(other.0))
    }
}

impl From<Count> for Value {
    fn from(c: Count) -> Self {
        Self::Int(c.0)
    }
}

fn write_chain_series(out: &mut Exposition<'_>, prepared: &[Prepared<'_>], opts: &ExportOptions) {
    let mut default_packets = Summed::<&str, 5, Count>::new();
    let mut default_bytes = Summed::<&str, 5, Count>::new();
    let mut rules = Summed::<&str, 4, Count>::new();
    let mut chains = Summed::<&str, 3, Count>::new();
    let leave_out = |p: &Prepared<'_>, flat_chain: usize| {
        opts.rule_series == RuleSeries::NotSummarised
            && p.plan.is_some_and(|plan| plan.chain_summarised(flat_chain))
    };
    for p in prepared {
        let mut flat_chain = 0;
        for table in &p.counters.tables {
            chains.add(
                [p.family(), p.backend(), &table.name],
                Count(table.chains.len() as u64),
            );
            for chain in &table.chains {
                flat_chain += 1;
                if !leave_out(p, flat_chain - 1) {
                    rules.add(
                        [p.family(), p.backend(), &table.name, &chain.name],
                        Count(chain.rules.len() as u64),
                    );
                }
                if let (Some(policy), Some(counters)) = (chain.policy, chain.counters) {
                    let key = [
                        p.family(),
                        p.backend(),
                        table.name.as_str(),
                        chain.name.as_str(),
                        policy.as_str(),
                    ];
                    default_packets.add(key, Count(counters.packets));
                    default_bytes.add(key, Count(counters.bytes));
                }
            }
        }
    }
    let default_names = ["family", "backend", "table", "chain", "policy"];
    default_packets.write(
        out,
        "iptables_default_packets_total",
        Kind::Counter,
        "Packets that reached the end of a built-in chain and got its policy (policy label: ACCEPT, DROP or RETURN as declared).",
        default_names,
    );
    default_bytes.write(
        out,
        "iptables_default_bytes_total",
        Kind::Counter,
        "Bytes of packets that reached the end of a built-in chain and got its policy.",
        default_names,
    );
    rules.write(
        out,
        "iptables_rules",
        Kind::Gauge,
        "Rules in a chain.",
        ["family", "backend", "table", "chain"],
    );
    chains.write(
        out,
        "iptables_chains",
        Kind::Gauge,
        "Chains in a table (built-in and user-defined).",
        ["family", "backend", "table"],
    );
}

fn write_sources(out: &mut Exposition<'_>, snapshot: &Snapshot) {
    let mut up = HashMap::new();
    let mut order = Vec::new();
    let mut duration = Summed::<&str, 3, f64>::new();
    for report in &snapshot.sources {
        let key = source_labels(&report.kind);
        let key = [key.0, key.1, key.2];
        let ok = report.error.is_none();
        up.entry(key)
            .and_modify(|u: &mut bool| *u &= ok)
            .or_insert_with(|| {
                order.push(key);
                ok
            });
        duration.add(key, report.duration_seconds);
    }
    let mut success = Summed::<&str, 2, f64>::new();
    let mut scrape_duration = Summed::<&str, 2, f64>::new();
    let mut source_up = Summed::<&str, 3, f64>::new();
    for key in &order {
        let ok = if up[key] { 1.0 } else { 0.0 };
        source_up.add(*key, ok);
        if key[0] == "rules" {
            success.add([key[1], key[2]], ok);
        }
    }
    for (key, secs) in duration.merged() {
        if key[0] == "rules" {
            scrape_duration.add([key[1], key[2]], secs);
        }
    }
    success.write(
        out,
        "iptables_scrape_success",
        Kind::Gauge,
        "1 when the last read of this family/backend's ruleset worked, 0 when it failed.",
        ["family", "backend"],
    );
    scrape_duration.write(
        out,
        "iptables_scrape_duration_seconds",
        Kind::Gauge,
        "Seconds the last read of this family/backend's ruleset took.",
        ["family", "backend"],
    );
    source_up.write(
        out,
        "nfscope_source_up",
        Kind::Gauge,
        "1 when the last collection from this source worked, 0 when it failed (source: rules, ipsets, conntrack).",
        ["source", "family", "backend"],
    );
    duration.write(
        out,
        "nfscope_source_duration_seconds",
        Kind::Gauge,
        "Seconds the last collection from this source took.",
        ["source", "family", "backend"],
    );
}

fn write_ipsets(out: &mut Exposition<'_>, snapshot: &Snapshot) {
    let mut seen = HashSet::new();
    let sets: Vec<_> = snapshot
        .ipsets
        .iter()
        .filter(|s| seen.insert(s.name.as_str()))
        .collect();
    out.family("ipset_entries", Kind::Gauge, "Entries in an ipset.");
    for set in &sets {
        out.sample(
            "ipset_entries",
            &[("set", &set.name), ("type", &set.set_type)],
            set.entries,
        );
    }
    out.end_family();
    out.family(
        "ipset_memory_bytes",
        Kind::Gauge,
        "Kernel memory used by an ipset, in bytes.",
    );
    for set in &sets {
        if let Some(bytes) = set.memory_bytes {
            out.sample("ipset_memory_bytes", &[("set", &set.name)], bytes);
        }
    }
    out.end_family();
    out.family(
        "ipset_references",
        Kind::Gauge,
        "References to an ipset (iptables rules and list:set sets using it).",
    );
    for set in &sets {
        if let Some(refs) = set.references {
            out.sample("ipset_references", &[("set", &set.name)], refs);
        }
    }
    out.end_family();
}

fn write_conntrack(out: &mut Exposition<'_>, snapshot: &Snapshot) {
    let Some(ct) = &snapshot.conntrack else {
        return;
    };
    out.family(
        "conntrack_entries",
        Kind::Gauge,
        "Entries in the conntrack table (nf_conntrack_count).",
    );
    out.sample("conntrack_entries", &[], ct.entries);
    out.end_family();
    out.family(
        "conntrack_entries_limit",
        Kind::Gauge,
        "Size limit of the conntrack table (nf_conntrack_max).",
    );
    out.sample("conntrack_entries_limit", &[], ct.limit);
    out.end_family();
    for (name, value) in conntrack_stats(&ct.stats) {
        let metric = format!("conntrack_stat_{name}_total");
        let help = format!(
            "Conntrack statistic '{name}' from /proc/net/stat/nf_conntrack, summed over CPUs."
        );
        out.family(&metric, Kind::Counter, &help);
        out.sample(&metric, &[], value);
        out.end_family();
    }
}

/// Sanitized statistic names with values summed by name. The `entries` column is a gauge (the
/// table size, repeated per CPU), already exported as `conntrack_entries`, so it is left out.
fn conntrack_stats(stats: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut merged: Vec<(String, u64)> = Vec::new();
    for (name, value) in stats {
        let name = sanitize_name(name);
        if name.is_empty() || name == "entries" {
            continue;
        }
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = v.wrapping_add(*value),
            None => merged.push((name, *value)),
        }
    }
    merged
}

fn write_self(out: &mut Exposition<'_>, m: &SelfMetrics, dropped_now: u64) {
    out.family(
        "nfscope_build_info",
        Kind::Gauge,
        "Always 1; the version label says which nfscope is running.",
    );
    out.sample("nfscope_build_info", &[("version", &m.version)], 1u64);
    out.end_family();
    out.family(
        "nfscope_scrapes_total",
        Kind::Counter,
        "Metrics scrapes served.",
    );
    out.sample("nfscope_scrapes_total", &[], m.scrapes_total);
    out.end_family();
    out.family(
        "nfscope_rule_series_dropped_total",
        Kind::Counter,
        "Rules with counters that got no iptables_rule_* series because max_rule_series was reached (summed over scrapes).",
    );
    out.sample(
        "nfscope_rule_series_dropped_total",
        &[],
        m.rule_series_dropped_total.saturating_add(dropped_now),
    );
    out.end_family();
    let mut errors = Summed::<&str, 3, Count>::new();
    for (kind, count) in &m.collection_errors_total {
        let (source, family, backend) = source_labels(kind);
        errors.add([source, family, backend], Count(*count));
    }
    errors.write(
        out,
        "nfscope_collection_errors_total",
        Kind::Counter,
        "Failed collections per source since nfscope started.",
        ["source", "family", "backend"],
    );
}
