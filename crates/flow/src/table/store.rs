//! Where live connections are kept: a slab of [`Conn`]s plus one hash index from every
//! directional tuple a connection can be seen with to its slot.
//!
//! The index stores no tuples: an entry is a 4-byte code (slot and which of the connection's four
//! tuples), and lookups compare against the tuple in the slab. So a connection with NAT costs its
//! slab entry plus four codes (about 5 bytes each with the table's control bytes), instead of a
//! cloned 38-byte key per tuple and a second map keyed by id. The price is one rule: a
//! connection's tuples (`orig`, `translated`) change only through [`ConnStore::set_tuples`], so the
//! index never holds a code whose tuple moved.
//!
//! This module owns memory layout only; what the tuples mean and when connections end belong to
//! the table.

use std::hash::BuildHasher as _;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::{Conn, Side};
use crate::event::Tuple;

/// A connection's place in the slab.
pub(super) type Slot = u32;

/// Slots above this cannot be encoded with the three tuple bits.
const MAX_SLOTS: usize = 1 << 29;

/// The slab and its tuple index.
#[derive(Debug)]
pub(super) struct ConnStore {
    slots: Vec<Option<Conn>>,
    free: Vec<Slot>,
    len: usize,
    /// `slot << 3 | k`, `k` as in [`nth_tuple`].
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

/// The `k`-th tuple of a connection: 0 original, 1 its reverse, 2 translated, 3 its reverse,
/// 4 the one seen between the two (`via`), 5 its reverse.
fn nth_tuple(conn: &Conn, k: u32) -> Option<Tuple> {
    match k {
        0 => Some(conn.orig),
        1 => Some(conn.orig.reversed()),
        2 => conn.translated,
        3 => conn.translated.map(Tuple::reversed),
        4 => conn.via,
        _ => conn.via.map(Tuple::reversed),
    }
}

/// Tuples a connection can have.
const TUPLES: u32 = 6;

/// The tuple an index code stands for.
fn tuple_of(slots: &[Option<Conn>], code: u32) -> Option<Tuple> {
    let conn = slots.get((code >> 3) as usize)?.as_ref()?;
    nth_tuple(conn, code & 7)
}

impl ConnStore {
    /// Empty, with room for `capacity` connections in the index before it grows.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            index: HashTable::with_capacity(capacity.min(MAX_SLOTS).saturating_mul(4)),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Live connections.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The connection in `slot`.
    pub(super) fn get(&self, slot: Slot) -> Option<&Conn> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The connection in `slot`, to change anything but its tuples (see [`Self::set_tuples`]).
    pub(super) fn get_mut(&mut self, slot: Slot) -> Option<&mut Conn> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// All live connections with their slots.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Slot, &Conn)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, conn)| Some((slot as Slot, conn.as_ref()?)))
    }

    /// The connection seen with `tuple`, and which side sent it.
    pub(super) fn find(&self, tuple: &Tuple) -> Option<(Slot, Side)> {
        let slots = &self.slots;
        let code = *self.index.find(self.hasher.hash_one(tuple), |&c| {
            tuple_of(slots, c).as_ref() == Some(tuple)
        })?;
        let side = if code & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        Some((code >> 3, side))
    }

    /// Stores `conn` and indexes its tuples (taking them over from any other connection), unless
    /// it is marked hidden (then see [`Self::reveal`]).
    /// `None` when the slab is full (over 2^30 connections).
    pub(super) fn insert(&mut self, conn: Conn) -> Option<Slot> {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(conn);
                slot
            }
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(Some(conn));
                (self.slots.len() - 1) as Slot
            }
            None => return None,
        };
        self.len += 1;
        self.index_slot(slot);
        Some(slot)
    }

    /// Takes the connection out of `slot` and out of the index.
    pub(super) fn remove(&mut self, slot: Slot) -> Option<Conn> {
        self.get(slot)?;
        self.unindex_slot(slot);
        let conn = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        self.len -= 1;
        Some(conn)
    }

    /// Sets a connection's tuples and re-indexes it.
    pub(super) fn set_tuples(&mut self, slot: Slot, orig: Tuple, translated: Option<Tuple>) {
        if self.get(slot).is_none() {
            return;
        }
        self.unindex_slot(slot);
        if let Some(conn) = self.get_mut(slot) {
            conn.orig = orig;
            conn.translated = translated;
        }
        self.index_slot(slot);
    }

    /// Sets the tuple a connection was also seen with between its original and translated
    /// ones (e.g. after DNAT, before SNAT) and re-indexes it.
    pub(super) fn set_via(&mut self, slot: Slot, via: Option<Tuple>) {
        if self.get(slot).is_none() {
            return;
        }
        self.unindex_slot(slot);
        if let Some(conn) = self.get_mut(slot) {
            conn.via = via;
        }
        self.index_slot(slot);
    }

    /// Puts a connection stored hidden (kept out of the index) into the index.
    pub(super) fn reveal(&mut self, slot: Slot) {
        if let Some(conn) = self.get_mut(slot) {
            conn.hidden = false;
        }
        self.index_slot(slot);
    }

    fn index_slot(&mut self, slot: Slot) {
        if self.get(slot).is_none_or(|c| c.hidden) {
            return;
        }
        for k in 0..TUPLES {
            let Some(tuple) = self.get(slot).and_then(|c| nth_tuple(c, k)) else {
                continue;
            };
            let hash = self.hasher.hash_one(tuple);
            let slots = &self.slots;
            if let Ok(taken) = self
                .index
                .find_entry(hash, |&c| tuple_of(slots, c) == Some(tuple))
            {
                taken.remove();
            }
            let hasher = &self.hasher;
            self.index.insert_unique(hash, slot << 3 | k, |&c| {
                tuple_of(slots, c).map_or(0, |t| hasher.hash_one(t))
            });
        }
    }

    fn unindex_slot(&mut self, slot: Slot) {
        for k in 0..TUPLES {
            let Some(tuple) = self.get(slot).and_then(|c| nth_tuple(c, k)) else {
                continue;
            };
            let slots = &self.slots;
            let found = self.index.find_entry(self.hasher.hash_one(tuple), |&c| {
                c >> 3 == slot && tuple_of(slots, c) == Some(tuple)
            });
            if let Ok(entry) = found {
                entry.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            sport,
            dport,
        }
    }

    #[test]
    fn tuples_follow_set_tuples_and_vanish_on_remove() {
        let mut store = ConnStore::with_capacity(4);
        let orig = tuple([10, 0, 0, 1], [10, 96, 0, 1], 40000, 80);
        let pod = tuple([10, 0, 0, 1], [10, 244, 0, 7], 40000, 8080);
        let slot = store
            .insert(Conn::new(1, orig, Duration::ZERO))
            .expect("room");
        assert_eq!(store.find(&orig), Some((slot, Side::Client)));
        assert_eq!(store.find(&orig.reversed()), Some((slot, Side::Server)));
        assert_eq!(store.find(&pod), None);
        assert_eq!(store.index.len(), 2);

        store.set_tuples(slot, orig, Some(pod));
        assert_eq!(store.find(&pod.reversed()), Some((slot, Side::Server)));
        assert_eq!(store.index.len(), 4);

        let conn = store.remove(slot).expect("was live");
        assert_eq!(conn.id, 1);
        assert_eq!((store.len(), store.index.len()), (0, 0));
        assert_eq!(store.find(&orig), None);

        let other = tuple([10, 0, 0, 2], [10, 96, 0, 1], 40001, 80);
        let reused = store
            .insert(Conn::new(2, other, Duration::ZERO))
            .expect("room");
        assert_eq!(reused, slot, "the freed slot is reused");
        assert_eq!(
            store.find(&pod),
            None,
            "no stale tuple points at the reused slot"
        );
        assert_eq!(store.find(&other), Some((slot, Side::Client)));
    }

    #[test]
    fn a_tuple_taken_over_by_another_connection_stays_with_it() {
        let mut store = ConnStore::with_capacity(4);
        let shared = tuple([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80);
        let first = store
            .insert(Conn::new(1, shared, Duration::ZERO))
            .expect("room");
        let second = store
            .insert(Conn::new(2, shared, Duration::ZERO))
            .expect("room");
        assert_eq!(store.find(&shared), Some((second, Side::Client)));
        store.remove(first);
        assert_eq!(
            store.find(&shared),
            Some((second, Side::Client)),
            "removing the first connection keeps the second's entry"
        );
        assert_eq!(store.index.len(), 2);
    }
}
