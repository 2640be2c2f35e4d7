//! A generator for the handshake's ephemeral key on a board without a hardware RNG driver: SHA-256 in
//! counter mode over a 32-byte seed (the construction of NIST SP 800-90A's Hash_DRBG without its
//! reseeding). It is only as good as its seed: the board gathers that from what entropy it has
//! (QEMU: the host's /dev/urandom over semihosting; RP2040: the ring oscillator's random bit).

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// SHA-256(seed ‖ counter) blocks, each counter value used once.
#[derive(Debug, Clone)]
pub struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRng {
    pub fn new(seed: [u8; 32]) -> Self {
        SeededRng {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.block.len() {
                let mut hasher = Sha256::new();
                hasher.update(self.seed);
                hasher.update(self.counter.to_le_bytes());
                self.block.copy_from_slice(&hasher.finalize());
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.block.get(self.used).copied().unwrap_or_default();
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeededRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_seeds_give_different_streams_and_no_block_repeats() {
        let (mut a, mut b) = (SeededRng::new([1; 32]), SeededRng::new([2; 32]));
        let (mut x, mut y) = ([0u8; 96], [0u8; 96]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_ne!(x, y);
        assert_ne!(x[..32], x[32..64]);
        assert_eq!(
            SeededRng::new([1; 32]).next_u64(),
            u64::from_le_bytes(x[..8].try_into().unwrap())
        );
    }
}
