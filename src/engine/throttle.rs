//! The full transfer's read-rate cap: `spec.speedLimits` windows, each a daily UTC hour range
//! with a MB/s limit, enforced as a token bucket shared by every chunk reader.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::SpeedLimit;

/// Shortest wait worth a sleep.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// A parsed window: hours `begin..=end` (wrapping past midnight), bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    begin: u32,
    end: u32,
    bytes_per_second: u64,
}

impl Window {
    fn covers(&self, hour: u32) -> bool {
        if self.begin <= self.end {
            (self.begin..=self.end).contains(&hour)
        } else {
            hour >= self.begin || hour <= self.end
        }
    }
}

/// Caps bytes read per second inside the configured windows.
#[derive(Debug)]
pub struct Throttle {
    windows: Vec<Window>,
    /// When the bucket is next empty: reads wait until then.
    next_free: Mutex<Option<Instant>>,
    waited_ms: AtomicU64,
}

impl Throttle {
    /// A throttle for these windows (already validated: `hh:00`, `hh:59`).
    pub fn new(limits: &[SpeedLimit]) -> Throttle {
        let hour = |s: &str| s.get(..2).and_then(|h| h.parse::<u32>().ok());
        let windows = limits
            .iter()
            .filter_map(|l| {
                Some(Window {
                    begin: hour(&l.begin)?,
                    end: hour(&l.end)?,
                    bytes_per_second: u64::from(l.mb_per_second) * 1_000_000,
                })
            })
            .collect();
        Throttle { windows, next_free: Mutex::new(None), waited_ms: AtomicU64::new(0) }
    }

    /// A throttle that never waits.
    pub fn unlimited() -> Throttle {
        Throttle::new(&[])
    }

    /// The cap in force at this UTC hour, in bytes per second.
    pub fn rate_at(&self, utc_hour: u32) -> Option<u64> {
        self.windows.iter().find(|w| w.covers(utc_hour)).map(|w| w.bytes_per_second)
    }

    /// How long a read of `bytes` must wait at `now` under `rate`, and books it.
    fn book(&self, now: Instant, bytes: u64, rate: u64) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let start = next.map_or(now, |n| n.max(now));
        *next = Some(start + cost);
        start - now
    }

    /// Accounts for `bytes` just read, sleeping as long as the current window requires.
    pub async fn take(&self, bytes: u64) {
        let hour = (jiff::Timestamp::now().as_second().rem_euclid(86_400) / 3600) as u32;
        let Some(rate) = self.rate_at(hour) else { return };
        let wait = self.book(Instant::now(), bytes, rate);
        // Timers are coarse: a wait shorter than this stays booked in the bucket, and a later
        // read waits for the sum.
        if wait >= MIN_SLEEP {
            self.waited_ms.fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
            super::metrics::metrics().throttled(wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// Total time readers spent waiting, for metrics.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(begin: &str, end: &str, mb: u32) -> SpeedLimit {
        SpeedLimit { begin: begin.into(), end: end.into(), mb_per_second: mb }
    }

    #[test]
    fn windows_apply_by_utc_hour_and_wrap_past_midnight() {
        let t = Throttle::new(&[limit("22:00", "01:59", 5), limit("08:00", "08:59", 10)]);
        assert_eq!(t.rate_at(23), Some(5_000_000));
        assert_eq!(t.rate_at(1), Some(5_000_000));
        assert_eq!(t.rate_at(2), None);
        assert_eq!(t.rate_at(8), Some(10_000_000));
        assert_eq!(t.rate_at(9), None);
        assert_eq!(Throttle::new(&[limit("16:00", "15:59", 1)]).rate_at(12), Some(1_000_000), "whole day");
    }

    #[test]
    fn the_bucket_spaces_reads_at_the_rate() {
        let t = Throttle::unlimited();
        let now = Instant::now();
        // 1 MB/s: the first 2 MB pass at once, the next read waits 2 s, the one after 3 s.
        assert_eq!(t.book(now, 2_000_000, 1_000_000), Duration::ZERO);
        assert_eq!(t.book(now, 1_000_000, 1_000_000), Duration::from_secs(2));
        assert_eq!(t.book(now, 1, 1_000_000), Duration::from_secs(3));
        // Idle time is not banked: after a long pause reads start from now.
        let later = now + Duration::from_secs(60);
        assert_eq!(t.book(later, 1_000, 1_000_000), Duration::ZERO);
    }
}
