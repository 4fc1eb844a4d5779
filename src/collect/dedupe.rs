//! The double-submit memory: the posts accepted lately, each by its key (a blake3 hash of the
//! form, its fields and the client) with the sequence number of its record, for as long as
//! `collect.double_submit_window_secs` and at most [`DEDUPE_CAP`] of them.
//!
//! A ring of what was accepted, oldest first, and an index of the ring by key that holds only
//! positions (4 bytes each). Under load the memory is full within seconds; as a map of keys,
//! sequence numbers and times it was ~15 MB, and each post paid cache misses in it (a lookup,
//! an insert, the removal of the oldest). The index is ~2.6 MB (room for twice the cap), and
//! the ring is touched only at its two ends, but for the key compared on a match.
//!
//! Both are sized for the cap at start-up and never grow: a spike fills the memory within its
//! first seconds, and each doubling then stopped the writer for a copy of the ring and a
//! rehash of the index (one cache miss an entry), while every post waited for its batch.
//! Only what is used is touched: the ring's pages come as it fills.

use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant};

pub const DEDUPE_CAP: usize = 200_000;

/// A post's double-submit key: a blake3 hash of the form, its fields and the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeKey(pub [u8; 32]);

impl DedupeKey {
    /// Already uniform: eight of its bytes are as good a hash as any, and hashing all 32 again
    /// (SipHash, by default) costs more than the lookup.
    fn hash64(&self) -> u64 {
        let mut head = [0; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }
}

impl Hash for DedupeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

/// The hasher of maps keyed by [`DedupeKey`]s, which hash themselves.
pub type Prehashed = BuildHasherDefault<PrehashedKey>;

#[derive(Default)]
pub struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only a DedupeKey is hashed with this, and it writes one u64; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

struct Remembered {
    key: DedupeKey,
    seq: u64,
    at: Instant,
}

pub struct Recent {
    ring: VecDeque<Remembered>,
    /// The position of `ring[0]` since start-up; `ring[i]`'s is `first + i`.
    first: u64,
    /// The position of each key's latest entry, its low 32 bits: the ring never holds 2^32
    /// entries, so the wrapping difference from `first` is the entry's place in the ring.
    index: HashTable<u32>,
    window: Duration,
    cap: usize,
}

impl Recent {
    pub fn new(window: Duration, cap: usize) -> Recent {
        Recent {
            ring: VecDeque::with_capacity(cap),
            first: 0,
            // Room for twice the cap: keys come and go all the time, and a table over half
            // full fills with the markers removals leave until it doubles (bench/README.md).
            index: HashTable::with_capacity(2 * cap),
            window,
            cap,
        }
    }

    /// The sequence number `key` was accepted as, if that was within the window before `now`.
    pub fn get(&self, key: &DedupeKey, now: Instant) -> Option<u64> {
        let place = placer(self.first);
        let pos = self.index.find(key.hash64(), |&p| self.ring[place(p)].key == *key)?;
        let r = &self.ring[place(*pos)];
        (now.duration_since(r.at) < self.window).then_some(r.seq)
    }

    /// Remembers `key` as accepted at `at` as `seq`, in place of what it was before; at the
    /// cap, the oldest is forgotten first.
    pub fn insert(&mut self, key: DedupeKey, seq: u64, at: Instant) {
        if self.ring.len() >= self.cap {
            self.forget_oldest();
        }
        let pos = (self.first + self.ring.len() as u64) as u32;
        let (ring, place) = (&self.ring, placer(self.first));
        match self.index.find_mut(key.hash64(), |&p| ring[place(p)].key == key) {
            Some(p) => *p = pos,
            None => {
                self.index.insert_unique(key.hash64(), pos, |&p| ring[place(p)].key.hash64());
            }
        }
        self.ring.push_back(Remembered { key, seq, at });
    }

    /// Forgets what was accepted longer than the window before `now`.
    pub fn forget_old(&mut self, now: Instant) {
        while self.ring.front().is_some_and(|oldest| now.duration_since(oldest.at) >= self.window) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some(oldest) = self.ring.pop_front() else { return };
        // Its key may have been accepted again since: then the index names the later entry.
        let pos = self.first as u32;
        if let Ok(entry) = self.index.find_entry(oldest.key.hash64(), |&p| p == pos) {
            entry.remove();
        }
        self.first += 1;
    }

    /// How many keys it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }
}

/// Where in the ring the entry at position `p` is, the ring's first being at `first`.
fn placer(first: u64) -> impl Fn(u32) -> usize {
    move |p| p.wrapping_sub(first as u32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> DedupeKey {
        DedupeKey(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn remembers_within_the_window_only() {
        let t0 = Instant::now();
        let mut r = Recent::new(Duration::from_secs(10), 100);
        r.insert(key(1), 7, t0);
        assert_eq!(r.get(&key(1), t0 + Duration::from_secs(9)), Some(7));
        assert_eq!(r.get(&key(2), t0), None);
        assert_eq!(r.get(&key(1), t0 + Duration::from_secs(10)), None, "the window is over");
        r.forget_old(t0 + Duration::from_secs(10));
        assert_eq!(r.len(), 0);
        assert_eq!(r.get(&key(1), t0), None, "forgotten");
    }

    #[test]
    fn a_key_accepted_again_is_not_forgotten_with_its_first_entry() {
        let t0 = Instant::now();
        let mut r = Recent::new(Duration::from_secs(10), 100);
        r.insert(key(1), 1, t0);
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(r.get(&key(1), t1), None);
        r.insert(key(1), 2, t1);
        r.forget_old(t1);
        assert_eq!(r.get(&key(1), t1 + Duration::from_secs(1)), Some(2));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_oldest_go_beyond_the_cap_and_the_rest_stay_found() {
        let t0 = Instant::now();
        let mut r = Recent::new(Duration::from_secs(600), 1_000);
        let (ring_room, index_room) = (r.ring.capacity(), r.index.allocation_size());
        // Many times the cap, so positions move far past the first ring's and the index holds
        // positions from all over the ring.
        for n in 0..200_000u64 {
            r.insert(key(n), n, t0);
            if n % 100 == 99 {
                r.forget_old(t0);
            }
        }
        r.forget_old(t0);
        assert_eq!(r.len(), 1_000);
        assert_eq!((r.ring.len(), r.ring.capacity()), (1_000, ring_room), "the ring never grew");
        assert_eq!(r.index.allocation_size(), index_room, "nor did the index");
        for n in 0..199_000u64 {
            assert_eq!(r.get(&key(n), t0), None, "{n} is beyond the cap");
        }
        for n in 199_000..200_000u64 {
            assert_eq!(r.get(&key(n), t0), Some(n));
        }
    }

    #[test]
    fn positions_wrap_past_32_bits() {
        let t0 = Instant::now();
        let mut r = Recent::new(Duration::from_secs(600), 10);
        // As if 2^32 - 5 posts had been accepted and forgotten already.
        r.first = u64::from(u32::MAX) - 4;
        for n in 0..30u64 {
            r.insert(key(n), n, t0);
            r.forget_old(t0);
        }
        assert_eq!(r.len(), 10);
        for n in 20..30u64 {
            assert_eq!(r.get(&key(n), t0), Some(n));
        }
        assert_eq!(r.get(&key(19), t0), None);
    }
}
