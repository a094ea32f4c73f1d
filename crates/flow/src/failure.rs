//! Failed connection attempts: what the connection table detects ([`FailedAttempt`]: TCP refused,
//! reset during the handshake, timed out; UDP unreachable), the seam through which the caller
//! explains them ([`ExplainFailure`], [`FailureExplanation`]), and the bounded failure table
//! ([`FailureTable`]) behind `/api/failures`, `nfscope failures` and
//! `nfscope_connection_failures_total`.
//!
//! Detection lives in [`crate::FlowTable`] (a failed attempt is a connection that ended a certain
//! way, so it is one record there too, never an open twin); this module owns the values and the
//! grouping. Groups are keyed by (client address, dialled address and port, protocol, reason):
//! first and last time, count, the latest server, incoming interface and explanation. At most
//! `max_groups` groups are kept (the least recently failing is evicted and counted); the metric's
//! series are bounded by `max_series` (beyond, attempts count under `other → other` with cause
//! `other`, and the overflow is counted). It explains nothing itself: tracing an attempt through
//! the live ruleset is the caller's job, through [`ExplainFailure`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::Serialize;

use crate::Time;
use crate::aggregate::PairKey;
use crate::api::FlowFilter;
use crate::names::{Name, Names};

/// The transport of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The JSON value and metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// TCP: the SYN was answered with a RST, or with an ICMP/ICMPv6 destination unreachable.
    Refused,
    /// TCP: reset after the SYN/ACK, before the handshake completed.
    Reset,
    /// TCP: the SYN went unanswered for the SYN timeout (`--syn-timeout`).
    Timeout,
    /// UDP: a datagram was answered with an ICMP/ICMPv6 destination unreachable.
    Unreachable,
}

impl FailureReason {
    /// Every variant, in label order.
    pub const ALL: [Self; 4] = [Self::Refused, Self::Reset, Self::Timeout, Self::Unreachable];

    /// The JSON value and metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
        }
    }
}

/// One failed attempt, as the table detected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    /// When it failed (the answer, or the SYN timeout).
    pub at: Time,
    /// TCP or UDP.
    pub proto: Proto,
    /// How it failed.
    pub reason: FailureReason,
    /// The client as it sent the first packet.
    pub client: SocketAddr,
    /// What the client dialled (its original destination, e.g. a Service VIP).
    pub dialled: SocketAddr,
    /// The destination after DNAT, when known.
    pub server: Option<SocketAddr>,
    /// The interface the first packet arrived on, when known.
    pub in_interface: Option<String>,
    /// The packet mark, when known.
    pub mark: Option<u32>,
}

/// Why the rules (or the endpoint) made an attempt fail, as the caller's explainer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureExplanation {
    /// The `/api/trace` object of the attempt's first packet, raw JSON.
    pub trace_json: Arc<str>,
    /// One line for people.
    pub explanation: String,
    /// A bounded identifier (policy, Service, rule kind), the metric's `cause` label.
    pub cause: String,
}

/// Explains failed attempts (e.g. by tracing their first packet through the live ruleset).
pub trait ExplainFailure {
    /// The explanation of `attempt`, or `None` when there is none.
    fn explain(&self, attempt: &FailedAttempt) -> Option<FailureExplanation>;
}

/// Explains nothing: every failure is published with `"trace": null, "explanation": null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoExplanation;

impl ExplainFailure for NoExplanation {
    fn explain(&self, _: &FailedAttempt) -> Option<FailureExplanation> {
        None
    }
}

/// The metric's cause when nothing explained a failure.
pub const UNEXPLAINED: &str = "unexplained";

/// Longest `cause` label kept (longer ones are cut: a label is an identifier, not text).
pub const MAX_CAUSE_LEN: usize = 64;

/// What a group is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailureKey {
    /// The client's address (not its port: every attempt has another).
    pub client: IpAddr,
    /// What it dialled.
    pub dialled: SocketAddr,
    /// TCP or UDP.
    pub proto: Proto,
    /// How it failed.
    pub reason: FailureReason,
}

/// Attempts that failed the same way from one client to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    /// The key.
    pub key: FailureKey,
    /// The first attempt's time.
    pub first: Time,
    /// The latest attempt's time.
    pub last: Time,
    /// Attempts.
    pub count: u64,
    /// The latest attempt's server (after DNAT), when known.
    pub server: Option<SocketAddr>,
    /// The latest attempt's incoming interface, when known.
    pub in_interface: Option<String>,
    /// The latest attempt's explanation.
    pub explanation: Option<FailureExplanation>,
}

/// One series of `nfscope_connection_failures_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// How it failed.
    pub reason: FailureReason,
    /// Client workload → server (or dialled, when the server is unknown) workload.
    pub pair: PairKey,
    /// The explanation's cause, or [`UNEXPLAINED`].
    pub cause: String,
}

/// The failure table's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FailureStats {
    /// Failed attempts recorded.
    pub recorded: u64,
    /// Groups held now.
    pub groups: u64,
    /// Groups evicted because the table was full (`--max-failures`).
    pub evictions: u64,
    /// Attempts counted under `other → other` because the series limit was reached.
    pub series_overflow: u64,
    /// Attempts the connection table dropped before they were recorded (its queue was full).
    pub dropped: u64,
}

/// The failure table: groups for `/api/failures`, series for the metric.
#[derive(Debug, Clone)]
pub struct FailureTable {
    max_groups: usize,
    max_series: usize,
    groups: HashMap<FailureKey, FailureGroup>,
    /// (time, key) of every record, oldest first, lazily cleaned: the group whose `last` is the
    /// front's time is the least recently failing.
    order: VecDeque<(Time, FailureKey)>,
    series: BTreeMap<SeriesKey, u64>,
    stats: FailureStats,
}

impl FailureTable {
    /// Empty, keeping at most `max_groups` groups and `max_series` metric series.
    pub fn new(max_groups: usize, max_series: usize) -> Self {
        Self {
            max_groups: max_groups.max(1),
            max_series,
            groups: HashMap::new(),
            order: VecDeque::new(),
            series: BTreeMap::new(),
            stats: FailureStats::default(),
        }
    }

    /// Records one attempt with its explanation; `names` name the metric's workloads.
    pub fn record(
        &mut self,
        attempt: FailedAttempt,
        explanation: Option<FailureExplanation>,
        names: &Names,
    ) {
        self.stats.recorded += 1;
        let cause = explanation
            .as_ref()
            .map_or(UNEXPLAINED, |e| e.cause.as_str());
        let cause: String = cause.chars().take(MAX_CAUSE_LEN).collect();
        let pair = PairKey {
            src: names.name_or_ip(attempt.client.ip()),
            dst: names.name_or_ip(attempt.server.unwrap_or(attempt.dialled).ip()),
        };
        let series = SeriesKey {
            reason: attempt.reason,
            pair,
            cause,
        };
        if !self.series.contains_key(&series) && self.series.len() >= self.max_series {
            self.stats.series_overflow += 1;
            let other = Name {
                namespace: None,
                name: "other".to_owned(),
            };
            let series = SeriesKey {
                reason: attempt.reason,
                pair: PairKey {
                    src: other.clone(),
                    dst: other,
                },
                cause: "other".to_owned(),
            };
            *self.series.entry(series).or_default() += 1;
        } else {
            *self.series.entry(series).or_default() += 1;
        }

        let key = FailureKey {
            client: attempt.client.ip(),
            dialled: attempt.dialled,
            proto: attempt.proto,
            reason: attempt.reason,
        };
        if !self.groups.contains_key(&key) {
            while self.groups.len() >= self.max_groups && self.evict_least_recent() {}
        }
        let group = self.groups.entry(key).or_insert_with(|| FailureGroup {
            key,
            first: attempt.at,
            last: attempt.at,
            count: 0,
            server: None,
            in_interface: None,
            explanation: None,
        });
        group.count += 1;
        group.first = group.first.min(attempt.at);
        if attempt.at >= group.last || group.count == 1 {
            group.last = attempt.at;
            group.server = attempt.server.or(group.server);
            group.in_interface = attempt.in_interface.or(group.in_interface.take());
            group.explanation = explanation.or(group.explanation.take());
        }
        let last = group.last;
        self.order.push_back((last, key));
        if self.order.len() > 4 * self.max_groups.max(16) {
            let groups = &self.groups;
            self.order
                .retain(|(at, key)| groups.get(key).is_some_and(|g| g.last == *at));
        }
    }

    fn evict_least_recent(&mut self) -> bool {
        while let Some((at, key)) = self.order.pop_front() {
            if self.groups.get(&key).is_some_and(|g| g.last == at) {
                self.groups.remove(&key);
                self.stats.evictions += 1;
                return true;
            }
        }
        false
    }

    /// Counts attempts dropped before they reached the table.
    pub fn add_dropped(&mut self, n: u64) {
        self.stats.dropped += n;
    }

    /// The groups, newest (latest failure) first.
    pub fn groups_newest_first(&self) -> Vec<&FailureGroup> {
        let mut groups: Vec<&FailureGroup> = self.groups.values().collect();
        groups.sort_by(|a, b| b.last.cmp(&a.last).then(a.key.cmp(&b.key)));
        groups
    }

    /// The metric's series.
    pub fn series(&self) -> impl Iterator<Item = (&SeriesKey, u64)> {
        self.series.iter().map(|(k, &n)| (k, n))
    }

    /// Failed attempts per workload pair (summed over reasons and causes).
    pub fn per_pair(&self) -> BTreeMap<&PairKey, u64> {
        let mut out: BTreeMap<&PairKey, u64> = BTreeMap::new();
        for (key, n) in &self.series {
            *out.entry(&key.pair).or_default() += n;
        }
        out
    }

    /// Counters.
    pub fn stats(&self) -> FailureStats {
        FailureStats {
            groups: self.groups.len() as u64,
            ..self.stats
        }
    }

    /// Groups kept at most.
    pub fn capacity(&self) -> usize {
        self.max_groups
    }
}

/// The client of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientJson {
    /// Address.
    pub ip: IpAddr,
    /// Name (`namespace/name`), or the address.
    pub name: String,
    /// Namespace, when named with one.
    pub namespace: Option<String>,
}

/// One group in `/api/failures`.
#[derive(Debug, Clone, Serialize)]
pub struct FailureJson {
    /// The first attempt, milliseconds since the Unix epoch.
    pub first_unix_ms: u64,
    /// The latest attempt.
    pub last_unix_ms: u64,
    /// Attempts.
    pub count: u64,
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// `refused`, `reset`, `timeout` or `unreachable`.
    pub reason: FailureReason,
    /// Who tried.
    pub client: ClientJson,
    /// What it dialled.
    pub dialled: crate::api::EndpointJson,
    /// Who the attempt reached after DNAT, when known.
    pub server: Option<crate::api::EndpointJson>,
    /// The interface the first packet came in on, when known.
    pub in_interface: Option<String>,
    /// The `/api/trace` object of the first packet, when explained.
    pub trace: Option<Box<serde_json::value::RawValue>>,
    /// One line, when explained.
    pub explanation: Option<String>,
    /// The metric's cause label.
    pub cause: String,
}

/// The whole `/api/failures` document.
#[derive(Debug, Clone, Serialize)]
pub struct FailuresJson {
    /// When it was taken, milliseconds since the Unix epoch.
    pub now_unix_ms: u64,
    /// Groups, newest first.
    pub failures: Vec<FailureJson>,
    /// Counters.
    pub stats: FailureStats,
}

fn millis(t: Time) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

/// One group as JSON. A trace that is not valid JSON is left out (`null`), never sent broken.
pub fn failure_json(group: &FailureGroup, names: &Names) -> FailureJson {
    let key = group.key;
    let Name { namespace, name } = names.name_or_ip(key.client);
    let name = match &namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    };
    let explanation = group.explanation.as_ref();
    FailureJson {
        first_unix_ms: millis(group.first),
        last_unix_ms: millis(group.last),
        count: group.count,
        proto: key.proto,
        reason: key.reason,
        client: ClientJson {
            ip: key.client,
            name,
            namespace,
        },
        dialled: crate::api::endpoint(key.dialled.ip(), key.dialled.port(), names),
        server: group
            .server
            .map(|s| crate::api::endpoint(s.ip(), s.port(), names)),
        in_interface: group.in_interface.clone(),
        trace: explanation
            .and_then(|e| serde_json::value::RawValue::from_string(e.trace_json.to_string()).ok()),
        explanation: explanation.map(|e| e.explanation.clone()),
        cause: explanation.map_or_else(
            || UNEXPLAINED.to_owned(),
            |e| e.cause.chars().take(MAX_CAUSE_LEN).collect(),
        ),
    }
}

/// The `/api/failures` document, newest first, filtered as `/api/flows` is.
pub fn failures_json(
    table: &FailureTable,
    names: &Names,
    filter: &FlowFilter,
    now: Time,
) -> FailuresJson {
    let failures = table
        .groups_newest_first()
        .into_iter()
        .map(|g| failure_json(g, names))
        .filter(|f| {
            let mut ends = vec![
                (
                    f.client.ip,
                    f.client.name.as_str(),
                    f.client.namespace.as_deref(),
                ),
                (
                    f.dialled.ip,
                    f.dialled.name.as_str(),
                    f.dialled.namespace.as_deref(),
                ),
            ];
            if let Some(s) = &f.server {
                ends.push((s.ip, s.name.as_str(), s.namespace.as_deref()));
            }
            filter.keeps_ends(&ends)
        })
        .collect();
    FailuresJson {
        now_unix_ms: millis(now),
        failures,
        stats: table.stats(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn attempt(client: &str, port: u16, reason: FailureReason, at_ms: u64) -> FailedAttempt {
        FailedAttempt {
            at: Duration::from_millis(at_ms),
            proto: Proto::Tcp,
            reason,
            client: SocketAddr::new(client.parse().unwrap(), 40_000 + port),
            dialled: "10.96.0.10:80".parse().unwrap(),
            server: Some("10.0.2.7:8080".parse().unwrap()),
            in_interface: Some("eth0".to_owned()),
            mark: None,
        }
    }

    struct Fixed;
    impl ExplainFailure for Fixed {
        fn explain(&self, a: &FailedAttempt) -> Option<FailureExplanation> {
            Some(FailureExplanation {
                trace_json: Arc::from(r#"{"verdict":"REJECT"}"#),
                explanation: format!("rejected {}", a.dialled),
                cause: "x".repeat(100),
            })
        }
    }

    #[test]
    fn attempts_group_by_client_address_dialled_proto_and_reason() {
        let names = Names::parse("10.0.1.0/24 shop/client\n10.0.2.7 shop/web\n").unwrap();
        let mut table = FailureTable::new(10, 10);
        for i in 0..5 {
            let a = attempt("10.0.1.2", i, FailureReason::Refused, u64::from(i));
            let e = Fixed.explain(&a);
            table.record(a, e, &names);
        }
        table.record(
            attempt("10.0.1.2", 9, FailureReason::Timeout, 10),
            None,
            &names,
        );
        let groups = table.groups_newest_first();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].key.reason, FailureReason::Timeout, "newest first");
        assert_eq!(
            (groups[1].count, groups[1].first, groups[1].last),
            (5, Duration::ZERO, Duration::from_millis(4))
        );
        let series: Vec<_> = table.series().collect();
        assert_eq!(series.len(), 2);
        let refused = series
            .iter()
            .find(|(k, _)| k.reason == FailureReason::Refused)
            .unwrap();
        assert_eq!(refused.1, 5);
        assert_eq!(refused.0.cause.len(), MAX_CAUSE_LEN, "a cause label is cut");
        assert_eq!(refused.0.pair.dst.name, "web", "the server, not the VIP");
        let doc = failures_json(
            &table,
            &names,
            &FlowFilter::default(),
            Duration::from_secs(1),
        );
        let text = serde_json::to_string(&doc).unwrap();
        assert!(text.contains(r#""trace":{"verdict":"REJECT"}"#), "{text}");
        assert!(
            text.contains(r#""trace":null"#) && text.contains(r#""explanation":null"#),
            "{text}"
        );
        let only = FlowFilter {
            ip: Some("10.0.9.9".parse().unwrap()),
            ..FlowFilter::default()
        };
        assert!(
            failures_json(&table, &names, &only, Duration::ZERO)
                .failures
                .is_empty()
        );
        let web = FlowFilter {
            name: Some("web".to_owned()),
            ..FlowFilter::default()
        };
        assert_eq!(
            failures_json(&table, &names, &web, Duration::ZERO)
                .failures
                .len(),
            2
        );
    }

    #[test]
    fn a_trace_that_is_not_json_is_left_out_not_sent_broken() {
        let names = Names::default();
        let mut table = FailureTable::new(10, 10);
        let explanation = FailureExplanation {
            trace_json: Arc::from("{not json"),
            explanation: "rejected".to_owned(),
            cause: "rule".to_owned(),
        };
        table.record(
            attempt("10.0.1.2", 0, FailureReason::Refused, 0),
            Some(explanation),
            &names,
        );
        let doc = failures_json(&table, &names, &FlowFilter::default(), Duration::ZERO);
        let value: serde_json::Value = serde_json::to_value(&doc).unwrap();
        let group = &value["failures"][0];
        assert!(group["trace"].is_null(), "{group:#}");
        assert_eq!(
            (group["explanation"].as_str(), group["cause"].as_str()),
            (Some("rejected"), Some("rule"))
        );
    }

    #[test]
    fn groups_and_series_are_bounded_and_what_is_dropped_is_counted() {
        let names = Names::default();
        let mut table = FailureTable::new(3, 2);
        for i in 0..10u16 {
            let client = format!("10.0.1.{i}");
            table.record(
                attempt(&client, i, FailureReason::Refused, u64::from(i)),
                None,
                &names,
            );
        }
        let stats = table.stats();
        assert_eq!((stats.recorded, stats.groups, stats.evictions), (10, 3, 7));
        let clients: Vec<String> = table
            .groups_newest_first()
            .iter()
            .map(|g| g.key.client.to_string())
            .collect();
        assert_eq!(
            clients,
            ["10.0.1.9", "10.0.1.8", "10.0.1.7"],
            "the most recent stay"
        );
        // Two series fit; the other eight attempts count under other → other.
        assert_eq!(stats.series_overflow, 8);
        let total: u64 = table.series().map(|(_, n)| n).sum();
        assert_eq!(total, 10, "every attempt is counted once");
        // A group failing again is the most recent: it survives the next eviction.
        table.record(
            attempt("10.0.1.7", 0, FailureReason::Refused, 20),
            None,
            &names,
        );
        table.record(
            attempt("10.0.1.50", 0, FailureReason::Refused, 21),
            None,
            &names,
        );
        let clients: Vec<String> = table
            .groups_newest_first()
            .iter()
            .map(|g| g.key.client.to_string())
            .collect();
        assert_eq!(clients, ["10.0.1.50", "10.0.1.7", "10.0.1.9"]);
    }
}
