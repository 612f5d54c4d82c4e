//! Deterministic synthetic event generators. Event `i` of a generator depends only
//! on its seed and `i`, so any range of positions can be (re)generated on its own:
//! a writer that stores "next position" in its table resumes exactly.

pub mod activity;
pub mod clickstream;
pub mod retail;
pub mod shape;

/// `YYYY-MM-DD HH:MM:SS` (UTC, no zone) of a microsecond timestamp, the seeds' format.
pub fn format_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// SplitMix64: a tiny, fast, well-mixed PRNG whose sequence never changes with a
/// dependency upgrade (test data stays reproducible).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator for event `position` of stream `seed`.
    pub fn at(seed: u64, position: u64) -> Self {
        Self(seed ^ position.wrapping_mul(0xA24B_AED4_963E_E407))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}
