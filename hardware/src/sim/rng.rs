//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA
//! 2014): a few instructions per number and the same sequence on every platform and version, so a
//! scenario replays exactly from its seed (a general-purpose RNG crate does not promise stable
//! sequences across releases).

#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        // The top 24 bits are exact in f32.
        #[allow(clippy::cast_precision_loss, reason = "24-bit integer, exact")]
        let bits = (self.next_u64() >> 40) as f32;
        bits / 16_777_216.0
    }

    /// Uniform in [low, high).
    pub(crate) fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.unit()
    }

    /// Zero-mean noise within ±`amplitude`, triangular (the sum of two uniforms): cheap and
    /// bounded, unlike a Gaussian, so a noisy reading never leaves a sensor's range.
    pub(crate) fn noise(&mut self, amplitude: f32) -> f32 {
        (self.unit() + self.unit() - 1.0) * amplitude
    }

    /// Exponentially distributed with mean `mean`: the wait until the next event of a Poisson process.
    pub(crate) fn exponential(&mut self, mean: f32) -> f32 {
        -mean * libm::logf(1.0 - self.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn known_first_output_for_seed_zero() {
        // Reference value of SplitMix64 from the published algorithm.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn noise_stays_within_its_amplitude_and_averages_to_zero() {
        let mut rng = SplitMix64::new(7);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let n = rng.noise(0.5);
            assert!((-0.5..=0.5).contains(&n));
            sum += n;
        }
        assert!((sum / 10_000.0).abs() < 0.02);
    }
}
