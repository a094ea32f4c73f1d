//! nf_tables over netlink: the generation id, and rule, chain, named-counter and set dumps,
//! decoded in place.
//!
//! Owns the nf_tables message and attribute numbers and turning each dump message into a small
//! borrowed view ([`RuleView`], [`ChainView`]) handed to a callback, so a 300,000-rule dump never
//! materialises an expression tree. It does not decide which rules belong to iptables-nft or how
//! counters are attributed (the [`super::Reader`]'s `Placer` does), and it has no socket code of
//! its own (requests go through `super::socket`, the crate's one netlink stack).

use std::collections::HashMap;
use std::io;

use super::socket::{Message, NLM_F_DUMP, NfSocket, attrs, be_u32, be_u64, c_str, put_str};

const SUBSYS_NFTABLES: u16 = 10 << 8;
const MSG_GETTABLE: u16 = SUBSYS_NFTABLES | 1;
const MSG_GETCHAIN: u16 = SUBSYS_NFTABLES | 4;
const MSG_GETRULE: u16 = SUBSYS_NFTABLES | 7;
const MSG_GETSET: u16 = SUBSYS_NFTABLES | 10;
const MSG_GETSETELEM: u16 = SUBSYS_NFTABLES | 13;
const MSG_GETGEN: u16 = SUBSYS_NFTABLES | 16;
const MSG_GETOBJ: u16 = SUBSYS_NFTABLES | 19;

/// `NFPROTO_UNSPEC`: every family in one dump.
pub(crate) const FAMILY_ALL: u8 = 0;
/// `NFPROTO_IPV4`.
pub(crate) const FAMILY_IP: u8 = 2;
/// `NFPROTO_IPV6`.
pub(crate) const FAMILY_IP6: u8 = 10;

/// nft's name of an `NFPROTO_*` family (`ip`, `ip6`, `inet`, …).
pub(crate) fn family_name(family: u8) -> &'static str {
    match family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

/// A packet and byte count pair as the kernel reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// One rule of a `NFT_MSG_GETRULE` dump, borrowed from the receive buffer.
#[derive(Debug, Default)]
pub(crate) struct RuleView<'a> {
    pub family: u8,
    pub table: &'a str,
    pub chain: &'a str,
    pub handle: u64,
    /// The first `counter` expression's values, if the rule has one.
    pub counter: Option<Count>,
    /// The comment: userdata `NFTNL_UDATA_RULE_COMMENT`, or an `xt` `comment` match's text.
    pub comment: Option<&'a str>,
    /// `NFTA_RULE_EXPRESSIONS` as received, for [`crate::xt::nft_line`].
    pub exprs: &'a [u8],
    /// `NFTA_RULE_USERDATA` as received (empty when absent).
    pub udata: &'a [u8],
}

/// One chain of a `NFT_MSG_GETCHAIN` dump.
#[derive(Debug, Default)]
pub(crate) struct ChainView<'a> {
    pub family: u8,
    pub table: &'a str,
    pub name: &'a str,
    /// Base-chain policy counters (`NFTA_CHAIN_COUNTERS`).
    pub counters: Option<Count>,
    /// A base chain's hook number and priority (`NFTA_CHAIN_HOOK`).
    pub hook: Option<(u32, i32)>,
    /// `NFTA_CHAIN_POLICY` (`NF_DROP` 0, `NF_ACCEPT` 1).
    pub policy: Option<u32>,
    /// `NFTA_CHAIN_TYPE` (`filter`, `nat`, `route`).
    pub kind: &'a str,
}

/// The ruleset generation: every committed transaction increments it.
pub(crate) fn generation(sock: &mut NfSocket) -> io::Result<u32> {
    let mut generation = None;
    sock.request(MSG_GETGEN, 0, FAMILY_ALL, &[], |msg| {
        generation = decode_generation(msg);
        Ok(())
    })?;
    generation.ok_or_else(|| io::Error::other("NFT_MSG_GETGEN reply without a generation id"))
}

/// `NFTA_GEN_ID` of a `NFT_MSG_NEWGEN` reply.
pub(crate) fn decode_generation(msg: &Message<'_>) -> Option<u32> {
    attrs(msg.attrs)
        .find(|&(kind, _)| kind == 1)
        .and_then(|(_, p)| be_u32(p))
}

/// Dumps the rules of one chain and calls `each` per rule. Returns whether the kernel flagged
/// the dump as interrupted by a ruleset change.
///
/// One dump per chain on purpose: the kernel resumes a whole-ruleset dump by walking every rule
/// before the resume point again for each 32 KiB message, which is quadratic (measured: 38% of
/// a 15k-rule scrape in `__nf_tables_dump_rules`); a dump naming table and chain finds the chain
/// by hash and walks only its rules.
pub(crate) fn dump_chain_rules(
    sock: &mut NfSocket,
    family: u8,
    table: &str,
    chain: &str,
    mut each: impl FnMut(&RuleView<'_>) -> io::Result<()>,
) -> io::Result<bool> {
    let mut request = Vec::with_capacity(table.len() + chain.len() + 16);
    put_str(&mut request, 1, table); // NFTA_RULE_TABLE
    put_str(&mut request, 2, chain); // NFTA_RULE_CHAIN
    let end = sock.request(MSG_GETRULE, NLM_F_DUMP, family, &request, |msg| {
        each(&decode_rule(msg))
    })?;
    Ok(end.interrupted)
}

/// Dumps every rule of `family` in one request (no table or chain named) and calls `each` per
/// rule. Returns whether the dump was interrupted by a ruleset change. (The captures use it;
/// the reader dumps per chain, see [`dump_chain_rules`].)
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn dump_rules(
    sock: &mut NfSocket,
    family: u8,
    mut each: impl FnMut(&RuleView<'_>) -> io::Result<()>,
) -> io::Result<bool> {
    let end = sock.request(MSG_GETRULE, NLM_F_DUMP, family, &[], |msg| {
        each(&decode_rule(msg))
    })?;
    Ok(end.interrupted)
}

pub(crate) fn decode_rule<'a>(msg: &Message<'a>) -> RuleView<'a> {
    let mut view = RuleView {
        family: msg.family,
        ..RuleView::default()
    };
    for (kind, payload) in attrs(msg.attrs) {
        match kind {
            1 => view.table = c_str(payload),
            2 => view.chain = c_str(payload),
            3 => view.handle = be_u64(payload).unwrap_or(0),
            4 => {
                view.exprs = payload;
                decode_expressions(payload, &mut view);
            }
            7 => {
                view.udata = payload;
                if let Some(comment) = userdata_comment(payload) {
                    view.comment = Some(comment);
                }
            }
            _ => {}
        }
    }
    view
}

/// Walks `NFTA_RULE_EXPRESSIONS`, keeping the first counter and an `xt` comment match.
fn decode_expressions<'a>(list: &'a [u8], view: &mut RuleView<'a>) {
    for (_, elem) in attrs(list) {
        let mut name = "";
        let mut data: &[u8] = &[];
        for (kind, payload) in attrs(elem) {
            match kind {
                1 => name = c_str(payload),
                2 => data = payload,
                _ => {}
            }
        }
        match name {
            "counter" if view.counter.is_none() => view.counter = Some(counter(data)),
            "match" if view.comment.is_none() => view.comment = xt_comment(data),
            _ => {}
        }
    }
}

/// `NFTA_COUNTER_BYTES` (1) and `NFTA_COUNTER_PACKETS` (2).
fn counter(data: &[u8]) -> Count {
    let mut count = Count::default();
    for (kind, payload) in attrs(data) {
        match kind {
            1 => count.bytes = be_u64(payload).unwrap_or(0),
            2 => count.packets = be_u64(payload).unwrap_or(0),
            _ => {}
        }
    }
    count
}

/// The text of an `xt` match expression when it is the `comment` match (`xt_comment_info`).
fn xt_comment(data: &[u8]) -> Option<&str> {
    let mut is_comment = false;
    let mut info: &[u8] = &[];
    for (kind, payload) in attrs(data) {
        match kind {
            1 => is_comment = c_str(payload) == "comment",
            3 => info = payload,
            _ => {}
        }
    }
    is_comment.then(|| c_str(info))
}

/// The comment TLV (type 0) in rule userdata: `u8 type, u8 len, value` records.
pub(crate) fn userdata_comment(mut udata: &[u8]) -> Option<&str> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if kind == 0 {
            return Some(c_str(value));
        }
        udata = &udata[2 + len..];
    }
    None
}

/// Dumps every chain of `family` (or all families).
pub(crate) fn dump_chains(
    sock: &mut NfSocket,
    family: u8,
    mut each: impl FnMut(&ChainView<'_>),
) -> io::Result<bool> {
    let end = sock.request(MSG_GETCHAIN, NLM_F_DUMP, family, &[], |msg| {
        each(&decode_chain(msg));
        Ok(())
    })?;
    Ok(end.interrupted)
}

pub(crate) fn decode_chain<'a>(msg: &Message<'a>) -> ChainView<'a> {
    let mut view = ChainView {
        family: msg.family,
        ..ChainView::default()
    };
    for (kind, payload) in attrs(msg.attrs) {
        match kind {
            1 => view.table = c_str(payload),
            3 => view.name = c_str(payload),
            4 => {
                let mut hook = (u32::MAX, 0i32);
                for (kind, p) in attrs(payload) {
                    match kind {
                        1 => hook.0 = be_u32(p).unwrap_or(u32::MAX), // NFTA_HOOK_HOOKNUM
                        2 => hook.1 = be_u32(p).map_or(0, |v| v as i32), // NFTA_HOOK_PRIORITY
                        _ => {}
                    }
                }
                view.hook = Some(hook);
            }
            5 => view.policy = be_u32(payload),
            7 => view.kind = c_str(payload),
            8 => view.counters = Some(counter(payload)),
            _ => {}
        }
    }
    view
}

/// Dumps the table names of `family` (`NFT_MSG_GETTABLE`).
pub(crate) fn dump_tables(sock: &mut NfSocket, family: u8) -> io::Result<(Vec<String>, bool)> {
    let mut names = Vec::new();
    let end = sock.request(MSG_GETTABLE, NLM_F_DUMP, family, &[], |msg| {
        if msg.family == family
            && let Some((_, name)) = attrs(msg.attrs).find(|&(kind, _)| kind == 1)
        {
            names.push(c_str(name).to_owned());
        }
        Ok(())
    })?;
    Ok((names, end.interrupted))
}

/// What reading one family's iptables-nft tables as text gave.
pub(crate) enum IptablesText {
    /// The text `ip[6]tables-nft-save` prints (without `#` lines and counters on rules).
    Text(String),
    /// A rule or chain the decoder cannot render exactly: read it with the save tool.
    Unsupported(crate::xt::ext::Unsupported),
    /// A dump was interrupted by a ruleset change: read again.
    Interrupted,
}

/// Builds the `ip[6]tables-nft-save` text of `family` (IPv4 or IPv6) from the table, chain
/// and per-chain rule dumps: no fork.
///
/// With `partial` (comparison tests only), a rule the decoder cannot render becomes the line
/// `-A CHAIN <unsupported: why>` instead of failing the whole text.
pub(crate) fn iptables_text(
    sock: &mut NfSocket,
    family: nfscope_ruleset::Family,
    partial: bool,
    mut record: Option<&mut DumpedRules>,
) -> io::Result<IptablesText> {
    use crate::xt::nft_line::Assembler;
    let proto = match family {
        nfscope_ruleset::Family::Ipv4 => FAMILY_IP,
        nfscope_ruleset::Family::Ipv6 => FAMILY_IP6,
    };
    let (names, mut interrupted) = dump_tables(sock, proto)?;
    let mut text = Assembler::new(family, &names, partial);
    if text.is_empty() {
        return Ok(if interrupted {
            IptablesText::Interrupted
        } else {
            IptablesText::Text(String::new())
        });
    }
    interrupted |= dump_chains(sock, proto, |chain| text.add_chain(chain))?;
    for (table, chain) in text.chains() {
        let first = record.as_ref().map_or(0, |r| r.rules.len());
        interrupted |= dump_chain_rules(sock, proto, &table, &chain, |rule| {
            text.add_rule(rule);
            if let Some(record) = record.as_deref_mut() {
                record.rules.push(DumpedRule::of(rule));
            }
            Ok(())
        })?;
        if let Some(record) = record.as_deref_mut() {
            let end = record.rules.len();
            record.chains.insert((table, chain), (first, end));
        }
        if interrupted || text.failed() {
            break;
        }
    }
    if interrupted {
        return Ok(IptablesText::Interrupted);
    }
    Ok(match text.finish() {
        Ok(text) => IptablesText::Text(text),
        Err(why) => IptablesText::Unsupported(why),
    })
}

/// What placing counters needs of one dumped rule: its comment's hash and its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DumpedRule {
    /// `FxHasher::of` the rule's comment, if it has one.
    pub comment: Option<u64>,
    /// The first `counter` expression's values.
    pub counter: Option<Count>,
}

impl DumpedRule {
    pub(crate) fn of(rule: &RuleView<'_>) -> Self {
        Self {
            comment: rule.comment.map(nfscope_ruleset::FxHasher::of),
            counter: rule.counter,
        }
    }
}

/// The rules of one family's iptables-nft chains as the text dump saw them, so the counters of
/// the same dump can be placed without dumping every rule a second time (a first collection
/// then costs one kernel dump, not two).
#[derive(Debug, Default)]
pub(crate) struct DumpedRules {
    /// (table, chain) → range of `rules`, in dump order.
    pub chains: HashMap<(String, String), (usize, usize)>,
    pub rules: Vec<DumpedRule>,
}

impl DumpedRules {
    /// One chain's rules in dump order; `None` when that chain was not dumped.
    pub(crate) fn chain(&self, table: &str, chain: &str) -> Option<&[DumpedRule]> {
        let &(first, end) = self.chains.get(&(table.to_owned(), chain.to_owned()))?;
        self.rules.get(first..end)
    }
}

/// A named counter object (`nft add counter …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedCounter {
    pub family: u8,
    pub table: String,
    pub name: String,
    pub count: Count,
}

/// Dumps the named counter objects of every family.
pub(crate) fn dump_named_counters(sock: &mut NfSocket) -> io::Result<Vec<NamedCounter>> {
    let mut out = Vec::new();
    sock.request(MSG_GETOBJ, NLM_F_DUMP, FAMILY_ALL, &[], |msg| {
        out.extend(decode_named_counter(msg));
        Ok(())
    })?;
    Ok(out)
}

/// A `NFT_MSG_NEWOBJ` message when it is a counter object.
pub(crate) fn decode_named_counter(msg: &Message<'_>) -> Option<NamedCounter> {
    const NFT_OBJECT_COUNTER: u32 = 1;
    let (mut table, mut name, mut kind, mut count) = ("", "", 0, Count::default());
    for (attr, payload) in attrs(msg.attrs) {
        match attr {
            1 => table = c_str(payload),
            2 => name = c_str(payload),
            3 => kind = be_u32(payload).unwrap_or(0),
            4 => count = counter(payload),
            _ => {}
        }
    }
    (kind == NFT_OBJECT_COUNTER).then(|| NamedCounter {
        family: msg.family,
        table: table.to_owned(),
        name: name.to_owned(),
        count,
    })
}

/// A set or map and how many elements the kernel holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetSize {
    pub family: u8,
    pub table: String,
    pub name: String,
    /// Elements as `nft list` shows them (interval end markers not counted).
    pub elements: u64,
}

/// Lists every set of every family with its element count (one element dump per set).
pub(crate) fn dump_set_sizes(sock: &mut NfSocket) -> io::Result<Vec<SetSize>> {
    let mut sets = Vec::new();
    sock.request(MSG_GETSET, NLM_F_DUMP, FAMILY_ALL, &[], |msg| {
        sets.extend(decode_named_set(msg));
        Ok(())
    })?;
    for set in &mut sets {
        set.elements = count_elements(sock, set)?;
    }
    Ok(sets)
}

/// A `NFT_MSG_NEWSET` message when it is a named set (elements not yet counted).
pub(crate) fn decode_named_set(msg: &Message<'_>) -> Option<SetSize> {
    let (mut table, mut name) = ("", "");
    for (kind, payload) in attrs(msg.attrs) {
        match kind {
            1 => table = c_str(payload),
            2 => name = c_str(payload),
            _ => {}
        }
    }
    // Anonymous sets (`__set%d`) belong to single rules; they are not named state.
    (!name.starts_with("__")).then(|| SetSize {
        family: msg.family,
        table: table.to_owned(),
        name: name.to_owned(),
        elements: 0,
    })
}

/// Elements in one `NFT_MSG_NEWSETELEM` message as `nft list` shows them: an interval set
/// stores each range as a start and an end element (`NFT_SET_ELEM_INTERVAL_END`, plus a leading
/// end marker); only the starts are elements to a reader, so the ends are not counted.
pub(crate) fn count_elements_in(msg: &Message<'_>) -> u64 {
    const ELEM_FLAGS: u16 = 3; // NFTA_SET_ELEM_FLAGS
    const INTERVAL_END: u32 = 1; // NFT_SET_ELEM_INTERVAL_END
    attrs(msg.attrs)
        .filter(|&(kind, _)| kind == 3) // NFTA_SET_ELEM_LIST_ELEMENTS
        .flat_map(|(_, list)| attrs(list))
        .filter(|&(_, elem)| {
            !attrs(elem).any(|(kind, payload)| {
                kind == ELEM_FLAGS && be_u32(payload).is_some_and(|f| f & INTERVAL_END != 0)
            })
        })
        .count() as u64
}

fn count_elements(sock: &mut NfSocket, set: &SetSize) -> io::Result<u64> {
    let mut request = Vec::new();
    put_str(&mut request, 1, &set.table); // NFTA_SET_ELEM_LIST_TABLE
    put_str(&mut request, 2, &set.name); // NFTA_SET_ELEM_LIST_SET
    let mut elements = 0u64;
    sock.request(MSG_GETSETELEM, NLM_F_DUMP, set.family, &request, |msg| {
        elements += count_elements_in(msg);
        Ok(())
    })?;
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::super::socket::put_attr;
    use super::*;

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        put_attr(&mut out, 0x8000 | kind, &parts.concat());
        out
    }

    fn expr(name: &str, data: Vec<u8>) -> Vec<u8> {
        let mut inner = Vec::new();
        put_str(&mut inner, 1, name);
        put_attr(&mut inner, 0x8000 | 2, &data);
        let mut out = Vec::new();
        put_attr(&mut out, 0x8000 | 1, &inner);
        out
    }

    #[test]
    fn a_rule_message_yields_table_chain_handle_counter_and_xt_comment() {
        let mut counter_data = Vec::new();
        put_attr(&mut counter_data, 1, &600u64.to_be_bytes());
        put_attr(&mut counter_data, 2, &7u64.to_be_bytes());
        let mut comment = Vec::new();
        put_str(&mut comment, 1, "comment");
        let mut info = b"ns/svc:http".to_vec();
        info.resize(256, 0);
        put_attr(&mut comment, 3, &info);
        let mut body = Vec::new();
        put_str(&mut body, 1, "nat");
        put_str(&mut body, 2, "KUBE-SERVICES");
        put_attr(&mut body, 3, &42u64.to_be_bytes());
        body.extend(nested(
            4,
            &[expr("match", comment), expr("counter", counter_data)],
        ));
        let msg = Message {
            family: FAMILY_IP,
            attrs: &body,
        };
        let rule = decode_rule(&msg);
        assert_eq!(
            (rule.table, rule.chain, rule.handle),
            ("nat", "KUBE-SERVICES", 42)
        );
        assert_eq!(
            rule.counter,
            Some(Count {
                packets: 7,
                bytes: 600
            })
        );
        assert_eq!(rule.comment, Some("ns/svc:http"));
    }

    #[test]
    fn interval_end_markers_are_not_counted_as_elements() {
        // `{ 192.0.2.0/24 }` in an interval set: a leading end marker, the start, the end.
        let elem = |key: [u8; 4], flags: Option<u32>| {
            let mut key_attr = Vec::new();
            put_attr(&mut key_attr, 1, &key); // NFTA_DATA_VALUE
            let mut parts = vec![nested(1, &[key_attr])]; // NFTA_SET_ELEM_KEY
            if let Some(f) = flags {
                let mut flag_attr = Vec::new();
                put_attr(&mut flag_attr, 3, &f.to_be_bytes()); // NFTA_SET_ELEM_FLAGS
                parts.push(flag_attr);
            }
            nested(1, &parts) // NFTA_LIST_ELEM
        };
        let mut body = Vec::new();
        put_str(&mut body, 1, "t");
        put_str(&mut body, 2, "s");
        body.extend(nested(
            3,
            &[
                elem([0, 0, 0, 0], Some(1)),
                elem([192, 0, 2, 0], None),
                elem([192, 0, 3, 0], Some(1)),
                elem([198, 51, 100, 7], Some(0)),
            ],
        ));
        let msg = Message {
            family: FAMILY_IP,
            attrs: &body,
        };
        assert_eq!(count_elements_in(&msg), 2, "the prefix and the address");
    }

    #[test]
    fn userdata_comments_are_found_among_other_records_and_bad_lengths_stop_the_walk() {
        let udata = [1, 2, 0xaa, 0xbb, 0, 4, b'h', b'i', b'!', 0];
        assert_eq!(userdata_comment(&udata), Some("hi!"));
        assert_eq!(userdata_comment(&[0, 9, b'x']), None);
        assert_eq!(family_name(FAMILY_IP6), "ip6");
    }
}
