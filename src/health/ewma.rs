//! Exponentially weighted moving averages of latencies, stored in atomics so the data path
//! can feed and read them without a lock: the *peak* EWMA behind the `latency` strategy, and
//! a plain one for the probe round-trip shown in SHOW REPLICAS.
//!
//! Peak EWMA (Finagle's and linkerd2-proxy's load estimate): a sample above the estimate
//! replaces it at once, so a member that turns slow loses traffic on its first slow answer;
//! samples below it pull it down with time constant [`DECAY`], weighted by the time since the
//! previous sample (`w = exp(-elapsed / DECAY)`, `estimate = estimate * w + sample * (1 - w)`),
//! so recovery is judged over seconds, not over one lucky fast answer. The time weighting
//! keeps the meaning independent of the sample rate (probes every `probe_interval_ms` and any
//! number of queries).
//!
//! Concurrency: the estimate (f64 bits) and the time of the last sample are two separate
//! atomics, updated by a plain load-compute-store. Two samples racing can lose one of them or
//! pair one's value with the other's time. That is accepted: the result is still a recent
//! sample's influence on a smoothed estimate, and a lock or CAS loop on every query would cost
//! more than the estimate is worth.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Time constant of the decay toward lower samples: 2 s.
///
/// linkerd and Finagle use 10 s, but they only see the traffic itself; every member here also
/// gets a probe sample every `probe_interval_ms` (250 ms by default, each then weighing about
/// 12%), so a short memory is still smooth. Short matters for recovery: a replica that got no
/// traffic while it was slow is judged by its probes alone, and after its extra delay goes
/// away (or one slow analytic query spiked it) its estimate falls by e every 2 s, so it wins
/// its traffic back within seconds (from 40 ms to about 1 ms in ~7 s).
pub const DECAY: Duration = Duration::from_secs(2);

/// A lock-free (peak) EWMA of durations, in seconds.
#[derive(Debug)]
pub struct Ewma {
    /// The estimate, `f64` seconds as bits. 0 until the first sample.
    bits: AtomicU64,
    /// Nanoseconds since `base` of the last sample; `NEVER` before the first.
    stamp: AtomicU64,
    base: Instant,
    decay_nanos: f64,
    peak: bool,
}

const NEVER: u64 = u64::MAX;

impl Ewma {
    /// A peak EWMA: higher samples replace the estimate at once.
    pub fn peak(base: Instant, decay: Duration) -> Ewma {
        Ewma::new(base, decay, true)
    }

    /// A plain EWMA: every sample is smoothed in.
    pub fn plain(base: Instant, decay: Duration) -> Ewma {
        Ewma::new(base, decay, false)
    }

    fn new(base: Instant, decay: Duration, peak: bool) -> Ewma {
        Ewma {
            bits: AtomicU64::new(0f64.to_bits()),
            stamp: AtomicU64::new(NEVER),
            base,
            decay_nanos: decay.as_nanos().max(1) as f64,
            peak,
        }
    }

    /// Feeds one sample taken at `now`. The first sample becomes the estimate.
    pub fn observe(&self, sample: Duration, now: Instant) {
        self.update(sample, now, self.peak);
    }

    /// Feeds one sample smoothed in even on a peak EWMA: probe round trips, whose occasional
    /// spikes say more about a busy proxy host than about the member, and must not flip its
    /// traffic the way a slow answer to a real query does.
    pub fn observe_smoothed(&self, sample: Duration, now: Instant) {
        self.update(sample, now, false);
    }

    /// One sample in: it replaces the estimate when it is the first, or when `peak` and it
    /// is higher; otherwise it is weighted by the time since the previous sample.
    fn update(&self, sample: Duration, now: Instant, peak: bool) {
        let sample = sample.as_secs_f64();
        let now_nanos = nanos_since(self.base, now);
        let prev = f64::from_bits(self.bits.load(Relaxed));
        let last = self.stamp.load(Relaxed);
        let next = if last == NEVER || (peak && sample > prev) {
            sample
        } else {
            // A sample stamped before the previous one (racing threads) counts as simultaneous.
            let elapsed = now_nanos.saturating_sub(last) as f64;
            let w = (-elapsed / self.decay_nanos).exp();
            prev * w + sample * (1.0 - w)
        };
        self.bits.store(next.to_bits(), Relaxed);
        self.stamp.store(now_nanos, Relaxed);
    }

    /// The estimate in seconds; 0 before any sample.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Relaxed))
    }

    /// Whether any sample was observed.
    pub fn has_samples(&self) -> bool {
        self.stamp.load(Relaxed) != NEVER
    }
}

/// Nanoseconds from `base` to `now` (0 if `now` is earlier), saturating far in the future.
fn nanos_since(base: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(base).as_nanos()).unwrap_or(NEVER - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn first_sample_is_the_estimate() {
        let t0 = Instant::now();
        for e in [Ewma::peak(t0, DECAY), Ewma::plain(t0, DECAY)] {
            assert!(!e.has_samples());
            assert_eq!(e.get(), 0.0);
            e.observe(ms(20), t0);
            assert!(e.has_samples());
            assert!(close(e.get(), 0.020));
        }
    }

    #[test]
    fn peak_jumps_up_at_once_and_decays_down_with_time() {
        let t0 = Instant::now();
        let e = Ewma::peak(t0, ms(1000));
        e.observe(ms(1), t0);
        e.observe(ms(40), t0 + ms(10));
        assert!(
            close(e.get(), 0.040),
            "a higher sample replaces the estimate"
        );
        // One time constant later, a 1 ms sample moves it 1 - 1/e of the way down.
        e.observe(ms(1), t0 + ms(1010));
        let want = 0.040 * (-1f64).exp() + 0.001 * (1.0 - (-1f64).exp());
        assert!(close(e.get(), want), "{} vs {want}", e.get());
        // Many time constants later it has forgotten the peak.
        e.observe(ms(1), t0 + ms(30_000));
        assert!((e.get() - 0.001).abs() < 1e-6);
    }

    #[test]
    fn decay_weight_depends_on_elapsed_time_not_sample_count() {
        let t0 = Instant::now();
        let fast = Ewma::peak(t0, ms(1000));
        let slow = Ewma::peak(t0, ms(1000));
        fast.observe(ms(100), t0);
        slow.observe(ms(100), t0);
        for i in 1..=10 {
            fast.observe(ms(0), t0 + ms(100 * i));
        }
        slow.observe(ms(0), t0 + ms(1000));
        assert!(
            close(fast.get(), slow.get()),
            "{} vs {}",
            fast.get(),
            slow.get()
        );
    }

    #[test]
    fn plain_smooths_higher_samples_too() {
        let t0 = Instant::now();
        let e = Ewma::plain(t0, ms(1000));
        e.observe(ms(10), t0);
        e.observe(ms(110), t0 + ms(1000));
        let want = 0.010 * (-1f64).exp() + 0.110 * (1.0 - (-1f64).exp());
        assert!(close(e.get(), want));
    }

    #[test]
    fn out_of_order_samples_do_not_panic_or_go_negative() {
        let t0 = Instant::now();
        let e = Ewma::peak(t0 + ms(50), ms(1000));
        e.observe(ms(5), t0 + ms(100));
        e.observe(ms(1), t0); // before both the base and the last sample
        assert!(close(e.get(), 0.005), "simultaneous sample: no decay yet");
        e.observe(Duration::ZERO, t0 + ms(100));
        assert!(e.get() >= 0.0);
    }
}
