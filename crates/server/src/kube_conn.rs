//! The Service connection counter a server shares between its conntrack reader and `/metrics`.
//!
//! Owns the state between the two: the bounded counter ([`ServiceConnCounter`]) fed by the
//! reader thread the binary starts (NEW events only), and the [`ServiceIndex`] of the native
//! kube-proxy table, rebuilt only when a collection brings a new `Arc<NftRuleset>` (once per
//! nf_tables generation). Each encoding joins the two into the series the exporter merges into
//! `nfscope_kube_endpoint_new_connections_total` ([`KubeConntrack`]), and writes the counter's
//! own `nfscope_kube_conntrack_*` families. It does not read events (the binary's thread over
//! `nfscope-kernel`) nor decide the series (`nfscope-exporter`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nfscope_expo::{Exposition, MetricFamilies, ScrapeFacts};
use nfscope_exporter::KubeConntrack;
use nfscope_exporter::kube_conntrack::{
    NewConnection, ServiceConnCounter, ServiceIndex, write_conn_counter_stats,
};
use nfscope_ruleset::NftablesState;
use nfscope_ruleset::typed::NftRuleset;

/// The counter and the index of the last native ruleset seen.
#[derive(Debug)]
pub struct KubeConnections {
    state: Mutex<State>,
    up: AtomicBool,
}

#[derive(Debug)]
struct State {
    counter: ServiceConnCounter,
    /// The ruleset the index was built from (compared by pointer) and the index.
    index: Option<(Arc<NftRuleset>, Arc<ServiceIndex>)>,
}

impl KubeConnections {
    /// A counter of at most `max_keys` (destination, endpoint) pairs; not up until
    /// [`Self::set_up`].
    pub fn new(max_keys: usize) -> Self {
        Self {
            state: Mutex::new(State {
                counter: ServiceConnCounter::new(max_keys),
                index: None,
            }),
            up: AtomicBool::new(false),
        }
    }

    /// Whether the event subscription is open (`nfscope_kube_conntrack_up`).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Counts a batch of NEW events and the overruns the source reported with them (one lock).
    pub fn observe(&self, batch: impl IntoIterator<Item = NewConnection>, overruns: u64) {
        let mut state = self.lock();
        for c in batch {
            state.counter.observe(c);
        }
        state.counter.add_overruns(overruns);
    }

    /// The conntrack series for an encoding of a collection with this native state: empty when
    /// the native tables were not read (nothing is known about Services then, and nothing is
    /// pruned).
    pub fn series(&self, native: &NftablesState) -> KubeConntrack {
        let Some(ruleset) = &native.ruleset else {
            return KubeConntrack::default();
        };
        let mut state = self.lock();
        let index = match &state.index {
            Some((seen, index)) if Arc::ptr_eq(seen, ruleset) => Arc::clone(index),
            _ => {
                let index = Arc::new(ServiceIndex::from_native(ruleset));
                state.index = Some((Arc::clone(ruleset), Arc::clone(&index)));
                index
            }
        };
        KubeConntrack {
            connections: state.counter.series(&index),
            no_endpoints: index.no_endpoints().to_vec(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MetricFamilies for KubeConnections {
    fn encode(&self, _: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        let stats = self.lock().counter.stats();
        write_conn_counter_stats(out, &stats, self.up.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfscope_ruleset::{NftLimits, parse_nft_text};

    #[test]
    fn the_index_is_rebuilt_only_for_a_new_ruleset_and_unread_tables_count_nothing() {
        let text = "table ip kube-proxy {
 map service-ips {
  type ipv4_addr . inet_proto . inet_service : verdict
  elements = { 10.96.0.10 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
 }
 chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
  goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.0.2.7/8080
 }
 chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.0.2.7/8080 {
  meta l4proto tcp dnat to 10.0.2.7:8080
 }
}
";
        let ruleset = Arc::new(parse_nft_text(text, &NftLimits::default()).unwrap());
        let conns = KubeConnections::new(10);
        let c = NewConnection {
            proto: 6,
            dst: "10.96.0.10".parse().unwrap(),
            dport: 80,
            endpoint: "10.0.2.7".parse().unwrap(),
            endpoint_port: 8080,
        };
        conns.observe([c, c], 1);
        assert_eq!(
            conns.series(&NftablesState::default()),
            KubeConntrack::default()
        );
        let state = NftablesState {
            ruleset: Some(Arc::clone(&ruleset)),
            ..NftablesState::default()
        };
        let first = conns.series(&state);
        assert_eq!(first.connections.len(), 1);
        assert_eq!(first.connections[0].connections, 2);
        let built = Arc::clone(&conns.lock().index.as_ref().unwrap().1);
        conns.observe([c], 0);
        assert_eq!(conns.series(&state).connections[0].connections, 3);
        assert!(Arc::ptr_eq(&built, &conns.lock().index.as_ref().unwrap().1));
        let mut expo = Exposition::default();
        conns.encode(&ScrapeFacts::default(), &mut expo);
        let text = expo.into_string();
        assert!(
            text.contains("nfscope_kube_conntrack_events_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("nfscope_kube_conntrack_overruns_total 1\n"),
            "{text}"
        );
        assert!(text.contains("nfscope_kube_conntrack_up 0\n"), "{text}");
    }
}
