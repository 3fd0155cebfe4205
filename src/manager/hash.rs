//! The hash of the server's dicts and sets: a keyed multiply-fold hash,
//! several times faster than std's SipHash on the small keys a dict
//! mostly holds (one 64×64→128-bit multiply per 8 bytes of key).
//!
//! std's `HashMap` spends ~20 ns hashing a `u64` with SipHash-1-3: half of
//! a 10,000-item `update` here. SipHash's guarantee against chosen keys
//! matters less in a manager, whose every client has passed its authkey;
//! the key is still random per process and per map, so the order of a
//! bucket cannot be predicted from outside.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Two odd constants with well-spread bits (the fractional parts of the
/// golden ratio and of π).
const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0x243f_6a88_85a3_08d3;

/// The high and low halves of the 128-bit product, folded: every bit of
/// either input reaches both ends of the result.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A `BuildHasher` with a random key (Python's dicts are also salted per
/// process, for str keys).
#[derive(Clone, Debug)]
pub(crate) struct RandomState {
    key: u64,
}

impl Default for RandomState {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            let mut b = [0u8; 8];
            // Without randomness the key is still distinct per map.
            let _ = crate::sys::random_bytes(&mut b);
            u64::from_le_bytes(b) ^ u64::from(std::process::id())
        });
        RandomState { key: fold_mul(seed ^ NEXT.fetch_add(1, Ordering::Relaxed), K0) | 1 }
    }
}

impl BuildHasher for RandomState {
    type Hasher = FoldHasher;

    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher { state: self.key }
    }
}

/// The hasher: each word is folded into the state with one multiply.
pub(crate) struct FoldHasher {
    state: u64,
}

impl Hasher for FoldHasher {
    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.state = fold_mul(self.state ^ word, K0);
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.write_u64(u64::from_le_bytes(w.try_into().expect("chunks of 8")));
        }
        let tail = words.remainder();
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        // The length goes in too, so that "a\0" and "a" differ.
        self.write_u64(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.state, K1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::Hash;

    fn hash<T: Hash>(s: &RandomState, v: T) -> u64 {
        s.hash_one(v)
    }

    #[test]
    fn equal_keys_hash_equal_and_maps_are_keyed_apart() {
        let (a, b) = (RandomState::default(), RandomState::default());
        assert_eq!(hash(&a, "key"), hash(&a, String::from("key")));
        assert_ne!(hash(&a, 1u64), hash(&b, 1u64));
        assert_ne!(hash(&a, "a"), hash(&a, "a\0"));
        assert_ne!(hash(&a, (1u8, 2u8)), hash(&a, (2u8, 1u8)));
    }

    #[test]
    fn sequential_keys_spread_over_both_ends_of_the_hash() {
        // hashbrown picks the bucket from the low bits and the tag from
        // the top seven: both must vary with consecutive integers.
        let s = RandomState::default();
        let low: HashSet<u64> = (0..4096u64).map(|i| hash(&s, i) & 0xfff).collect();
        let top: HashSet<u64> = (0..4096u64).map(|i| hash(&s, i) >> 57).collect();
        assert!(low.len() > 2400, "{} of 4096 low values", low.len());
        assert_eq!(top.len(), 128);
    }
}
