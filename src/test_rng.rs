//! A tiny deterministic PRNG (xorshift64) for the "no panic on random input" unit tests next
//! to each parser: reproducible, and no dependency. Test-only.

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-enough in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One element of `from` (non-empty).
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }

    /// Up to `max - 1` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.below(max)).map(|_| self.next() as u8).collect()
    }

    /// Up to `max - 1` pieces from `from`, each replaced by one random byte with odds
    /// 1 in `raw_one_in`: text that looks like the input a parser expects, with noise.
    pub fn pieces(&mut self, from: &[&[u8]], max: usize, raw_one_in: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..self.below(max) {
            if self.below(raw_one_in) == 0 {
                v.push(self.next() as u8);
            } else {
                v.extend_from_slice(self.pick(from));
            }
        }
        v
    }
}
