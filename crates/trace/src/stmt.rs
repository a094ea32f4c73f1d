//! Typed statements applied to a walk: NAT and mark sets, one function each for native nftables
//! rules (`nft_walk`) and iptables targets lowered to the same statements (`xt_target`).
//!
//! Owns what a [`Nat`] statement does to the packet (dnat/snat/masquerade/redirect with the first
//! address and port of a range, iptables' NETMAP mapping the network bits by the hook it runs at,
//! REDIRECT to the incoming interface's primary address) and what a mark statement
//! ([`MarkValue`], `meta mark set` / `ct mark set`, CONNMARK's masked copies) computes. Where
//! x_tables behaves differently from nft for the same statement, [`Lang::Xt`] says so: a
//! CONNMARK without a connection (the raw table, untracked packets) does nothing, and
//! `--restore-mark` of an unknown connection mark assumes 0 (stated as an assumption). It does not
//! decide matches (`typed_eval`), verdicts or which statements a rule has (`nft_walk`,
//! `xt_target`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nfscope_ruleset::nft::render_key;
use nfscope_ruleset::typed::{CtKey, Key, MarkTarget, MarkValue, Nat, NatAddr, NatKind, Value};

use crate::engine::{Flow, Stage, Tracer, Walk, endpoint};
use crate::packet::CtState;
use crate::result::{Effect, Verdict};
use crate::state::{Hook, PktState};
use crate::typed_eval::{PktVal, Read, read_key};

/// Which language a statement came from, where the kernel's behaviour differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// A native nftables rule.
    Nft,
    /// An iptables target lowered to the typed model.
    Xt,
}

/// The first address of a NAT target value (an address, prefix, range, or `addr . port`).
fn nat_addr(v: &Value) -> Option<IpAddr> {
    match v {
        Value::Addr(a) | Value::Prefix(a, _) => Some(*a),
        Value::Range(a, _) => nat_addr(a),
        Value::Concat(parts) => parts.first().and_then(nat_addr),
        _ => None,
    }
}

/// The first port of a NAT port value (a port or range).
pub(crate) fn nat_port(v: &Value) -> Option<u16> {
    match v {
        Value::Int(p) => u16::try_from(*p).ok(),
        Value::Range(a, _) => nat_port(a),
        _ => None,
    }
}

/// A NAT target value that picks among several addresses or ports (the kernel chooses one).
fn is_pool(v: &Value) -> bool {
    match v {
        Value::Prefix(_, len) => !matches!(len, 32 | 128),
        Value::Range(..) => true,
        Value::Concat(parts) => parts.iter().any(is_pool),
        _ => false,
    }
}

/// NETMAP: the network bits of `old` (the first `len`) become `net`'s, the host bits stay.
pub(crate) fn netmap_addr(old: IpAddr, net: IpAddr, len: u8) -> IpAddr {
    match (old, net) {
        (IpAddr::V4(o), IpAddr::V4(n)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from((u32::from(o) & !m) | (u32::from(n) & m)))
        }
        (IpAddr::V6(o), IpAddr::V6(n)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from((u128::from(o) & !m) | (u128::from(n) & m)))
        }
        _ => old,
    }
}

/// Does reading `key` read the connection mark?
fn reads_ct_mark(key: &Key) -> bool {
    match key {
        Key::Ct {
            key: CtKey::Mark, ..
        } => true,
        Key::Masked { key, .. } => reads_ct_mark(key),
        _ => false,
    }
}

impl<'a> Tracer<'a> {
    /// A NAT statement (with `data` from its map, if any): `None` when it does not apply to
    /// this packet (an `ip` NAT in an inet table for an IPv6 packet breaks the rule). Ends the
    /// base chain ([`Flow::EndTable`]).
    pub(crate) fn apply_nat(
        &self,
        nat: &Nat,
        data: Option<&Value>,
        walk: &mut Walk,
    ) -> Option<(Effect, Flow)> {
        if let Some(v6) = nat.family
            && v6 != walk.pkt.dst.is_ipv6()
        {
            return None;
        }
        let addr_value = data.or(match &nat.addr {
            Some(NatAddr::Value(v)) => Some(v),
            _ => None,
        });
        let addr = addr_value.and_then(nat_addr);
        let port = match (addr_value, &nat.port) {
            (_, Some(p)) => nat_port(p),
            (Some(Value::Concat(parts)), None) => parts.get(1).and_then(nat_port),
            _ => None,
        };
        if nat.kind != NatKind::Netmap
            && (addr_value.is_some_and(is_pool) || nat.port.as_ref().is_some_and(is_pool))
        {
            walk.notes.push(format!(
                "{} picks one address/port of a range; the first is shown",
                nat.kind.as_str()
            ));
        }
        let pkt = &mut walk.pkt;
        let effect = match nat.kind {
            NatKind::Dnat => {
                pkt.dst = addr.unwrap_or(pkt.dst);
                pkt.dport = port.or(pkt.dport);
                pkt.dnat_done = true;
                Effect::Dnat(endpoint(pkt.dst, pkt.dport))
            }
            NatKind::Snat => {
                pkt.src = addr.unwrap_or(pkt.src);
                pkt.sport = port.or(pkt.sport);
                pkt.snat_done = true;
                walk.snat_label = Some(endpoint(pkt.src, port));
                Effect::Snat(endpoint(pkt.src, port))
            }
            NatKind::Masquerade => self.masquerade(pkt, &mut walk.snat_label, port),
            NatKind::Redirect => self.redirect(walk, port),
            NatKind::Netmap => netmap(addr_value, walk),
            NatKind::Tproxy => {
                return Some((
                    Effect::UnknownTarget("tproxy (native) is not modelled".into()),
                    Flow::Final(Verdict::Undetermined, None),
                ));
            }
        };
        Some((effect, Flow::EndTable))
    }

    /// REDIRECT / `redirect`: to the primary address of the incoming interface (loopback for
    /// locally generated packets), port `port` when given; a placeholder when the routes do not
    /// say the address.
    fn redirect(&self, walk: &mut Walk, port: Option<u16>) -> Effect {
        let hook = walk.hook;
        let pkt = &mut walk.pkt;
        pkt.dport = port.or(pkt.dport);
        pkt.dnat_done = true;
        if let Some(ip) = self.redirect_address(pkt, hook) {
            pkt.dst = ip;
            pkt.dst_unknown = None;
            return Effect::Dnat(endpoint(pkt.dst, pkt.dport));
        }
        let dev = pkt.in_iface.clone().unwrap_or_default();
        let placeholder = format!("REDIRECT({dev})");
        pkt.dst_unknown = Some(placeholder.clone());
        let label = pkt
            .dport
            .map_or(placeholder.clone(), |p| format!("{placeholder}:{p}"));
        walk.notes.push(format!(
            "REDIRECT sends the packet to the primary address of {dev}, which the routes do not tell (offline, give --routes with `ip route show table all`; --local-ip does not say which interface an address is on); rules on the destination address after it are undetermined"
        ));
        Effect::Dnat(label)
    }

    /// Where REDIRECT sends the packet: loopback for locally generated packets, else the
    /// primary address of the incoming interface (as `nf_nat_redirect` does); `None` when that
    /// address is not known (offline without routes).
    pub(crate) fn redirect_address(&self, pkt: &PktState, hook: Hook) -> Option<IpAddr> {
        let dev = pkt.in_iface.as_deref().unwrap_or("");
        // Looped back from this node: lo's primary address is loopback.
        if hook == Hook::Output || dev == "lo" {
            return Some(if pkt.dst.is_ipv4() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            });
        }
        self.primary_address(dev, pkt.dst)
    }

    /// MASQUERADE / `masquerade`: the source becomes the outgoing interface's address for the
    /// packet's family when the routes say which (else the label names the interface), with the
    /// port when one was given.
    pub(crate) fn masquerade(
        &self,
        pkt: &mut PktState,
        snat_label: &mut Option<String>,
        port: Option<u16>,
    ) -> Effect {
        let dev = pkt.out_iface.clone().unwrap_or_default();
        let src = self
            .input
            .routes
            .as_ref()
            .and_then(|r| r.source_for_dev(&dev, pkt.src));
        let label = match src {
            Some(ip) => {
                pkt.src = ip;
                endpoint(ip, port)
            }
            None => format!("MASQUERADE({})", if dev.is_empty() { "?" } else { &dev }),
        };
        pkt.snat_done = true;
        *snat_label = Some(label.clone());
        Effect::Snat(label)
    }

    /// A mark statement (`meta mark set …`, `ct mark set …`, a lowered MARK/CONNMARK target).
    pub(crate) fn apply_mark(
        &self,
        target: MarkTarget,
        value: &MarkValue,
        walk: &mut Walk,
        stage: Stage,
        lang: Lang,
    ) -> Effect {
        let no_conn = !stage.ct_attached || walk.pkt.ct_state == CtState::Untracked;
        let from_ct = match value {
            MarkValue::From { key } | MarkValue::Copy { key, .. } => reads_ct_mark(key),
            _ => false,
        };
        if no_conn && (target == MarkTarget::Ct || (lang == Lang::Xt && from_ct)) {
            let what = if lang == Lang::Xt {
                "CONNMARK"
            } else {
                "ct mark set"
            };
            return Effect::Continue(format!("{what} (no connection yet: no effect)"));
        }
        match target {
            MarkTarget::Meta => {
                let old = walk.pkt.mark;
                match self.mark_after(value, Some(old), walk, stage, lang) {
                    Some(new) => {
                        walk.pkt.mark = new;
                        if lang == Lang::Xt && from_ct {
                            Effect::RestoreMark { new }
                        } else {
                            Effect::Mark { old, new }
                        }
                    }
                    None => Effect::Continue("mark set to a value nfscope cannot compute".into()),
                }
            }
            MarkTarget::Ct => {
                let old = walk.pkt.ct_mark;
                walk.pkt.ct_mark = self.mark_after(value, old, walk, stage, lang);
                Effect::ConnMark {
                    old,
                    new: walk.pkt.ct_mark,
                }
            }
        }
    }

    /// The mark `value` makes of `old` (`None`: unknown), reading other keys from the packet.
    pub(crate) fn mark_after(
        &self,
        value: &MarkValue,
        old: Option<u32>,
        walk: &mut Walk,
        stage: Stage,
        lang: Lang,
    ) -> Option<u32> {
        match value {
            MarkValue::Set(v) => Some(*v as u32),
            MarkValue::Or(v) => old.map(|o| o | *v as u32),
            MarkValue::And(v) => old.map(|o| o & *v as u32),
            MarkValue::Xor(v) => old.map(|o| o ^ *v as u32),
            MarkValue::From { key } => self.mark_source(key, walk, stage, lang),
            MarkValue::Copy { key, mask, clear } => {
                let kept = if *clear as u32 == u32::MAX {
                    Some(0)
                } else {
                    old.map(|o| o & !(*clear as u32))
                };
                let copied = if *mask == 0 {
                    Some(0)
                } else {
                    self.mark_source(key, walk, stage, lang)
                        .map(|v| v & *mask as u32)
                };
                Some(kept? ^ copied?)
            }
            MarkValue::Other(text) => {
                walk.assumptions.push(format!(
                    "mark set to `{text}`, which nfscope does not compute"
                ));
                None
            }
        }
    }

    /// The value a mark is copied from. An unknown connection mark: iptables' `--restore-mark`
    /// assumes 0 (said in the assumptions); CONNMARK arithmetic on it leaves the mark unknown.
    fn mark_source(&self, key: &Key, walk: &mut Walk, stage: Stage, lang: Lang) -> Option<u32> {
        let read = if stage.native {
            self.with_env(walk, stage, |env| read_key(key, &walk.pkt, env))
        } else {
            self.with_xt_env(walk, stage, |env| read_key(key, &walk.pkt, env))
        };
        match read {
            Read::Val(PktVal::Int(v)) => Some(v as u32),
            Read::Val(_) | Read::Absent => None,
            Read::Unknown(_) if lang == Lang::Xt && reads_ct_mark(key) => {
                if matches!(key, Key::Ct { .. }) {
                    walk.assumptions
                        .push("connection mark unknown: 0 assumed for --restore-mark".into());
                    return Some(0);
                }
                None
            }
            Read::Unknown(why) => {
                walk.assumptions
                    .push(format!("mark copied from {}: {why}", render_key(key)));
                None
            }
        }
    }
}

/// NETMAP at the walk's hook: the destination's network bits in prerouting/output, the source's
/// in input/postrouting.
fn netmap(to: Option<&Value>, walk: &mut Walk) -> Effect {
    let (net, len) = match to {
        Some(Value::Prefix(a, l)) => (*a, *l),
        Some(Value::Addr(a)) => (*a, if a.is_ipv4() { 32 } else { 128 }),
        _ => return Effect::UnknownTarget("NETMAP without a prefix".into()),
    };
    let pkt = &mut walk.pkt;
    if matches!(walk.hook, Hook::Prerouting | Hook::Output) {
        pkt.dst = netmap_addr(pkt.dst, net, len);
        pkt.dnat_done = true;
        Effect::Dnat(endpoint(pkt.dst, pkt.dport))
    } else {
        pkt.src = netmap_addr(pkt.src, net, len);
        pkt.snat_done = true;
        walk.snat_label = Some(pkt.src.to_string());
        Effect::Snat(pkt.src.to_string())
    }
}
