//! The one fast in-process hash of nfscope: rustc's multiply-rotate `FxHasher`, word at a time,
//! no allocation. Used for hash tables keyed by label values, for the kernel reader's checks and
//! for [`crate::Ruleset::rules_id`]. Values are never persisted nor compared across processes,
//! so a non-cryptographic hash is enough (stable rule ids use SHA-256, see `nfscope-exporter`).

use std::hash::Hasher;

/// The multiply-rotate hasher of rustc (`FxHasher`).
#[derive(Debug, Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    /// Mixes in one word.
    pub fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }

    /// The hash of one string.
    pub fn of(text: &str) -> u64 {
        let mut hasher = Self::default();
        hasher.write(text.as_bytes());
        hasher.finish()
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        // The length goes into the last word, so "a" and "a\0" differ.
        self.add(u64::from_le_bytes(word) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_and_lengths_are_told_apart() {
        assert_ne!(FxHasher::of("a"), FxHasher::of("a\0"));
        assert_ne!(FxHasher::of(""), FxHasher::of("\0"));
        assert_ne!(FxHasher::of("abcdefgh"), FxHasher::of("abcdefgh\0"));
        assert_eq!(FxHasher::of("KUBE-SVC"), FxHasher::of("KUBE-SVC"));
    }
}
