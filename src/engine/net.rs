//! How long a connection may stay silent (`tuning.networkTimeoutSeconds`), and the TCP settings
//! and watchdogs that follow from it.
//!
//! A worker process runs one job, so the setting is process-wide: [`set_timeout`] is called when
//! a job starts, and every connection opened afterwards takes its keepalive from it. A network
//! that cuts out without closing the connection is noticed by TCP keepalive (probes from a third
//! of the timeout on) and `TCP_USER_TIMEOUT` (data unacknowledged for the timeout); a server or
//! a middlebox that keeps the connection open but stops answering is noticed by the watchdogs:
//! a connection attempt, a chunk or a batch that makes no progress for the timeout, and a change
//! stream that delivers nothing, not even its heartbeat, for the timeout.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::{EngineError, Result, Side};
use super::progress::Tracker;

/// Default of `tuning.networkTimeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static TIMEOUT_MS: AtomicU64 = AtomicU64::new(60_000);

/// Sets the timeout of the process's connections from a job's spec.
pub fn set_timeout(spec: &crate::api::SyncJobSpec) {
    let t = timeout_of(spec);
    TIMEOUT_MS.store(u64::try_from(t.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// A job's `tuning.networkTimeoutSeconds`, or the default.
pub fn timeout_of(spec: &crate::api::SyncJobSpec) -> Duration {
    spec.tuning
        .as_ref()
        .and_then(|t| t.network_timeout_seconds)
        .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(u64::from(s.max(1))))
}

/// The process's connection timeout.
pub fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed))
}

/// Idle time before the first TCP keepalive probe: a third of the timeout.
pub fn keepalive_idle() -> Duration {
    (timeout() / 3).max(Duration::from_secs(1))
}

/// Time between keepalive probes; [`KEEPALIVE_PROBES`] unanswered ones end the connection, so
/// a dead peer is noticed within about two thirds of the timeout.
pub fn keepalive_interval() -> Duration {
    (timeout() / 9).max(Duration::from_secs(1))
}

/// How often a quiet MySQL/MariaDB binary log stream sends a heartbeat: a quarter of the
/// timeout, at most 30 s.
pub fn heartbeat_period() -> Duration {
    (timeout() / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Unanswered keepalive probes that end a connection.
pub const KEEPALIVE_PROBES: u32 = 3;

/// Sets keepalive and `TCP_USER_TIMEOUT` on a socket Ferry opens itself.
pub fn tune_socket(socket: &tokio::net::TcpStream) {
    let sock = socket2::SockRef::from(socket);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(keepalive_idle())
        .with_interval(keepalive_interval())
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not set TCP keepalive");
    }
    if let Err(e) = sock.set_tcp_user_timeout(Some(timeout())) {
        tracing::debug!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
}

/// Runs `work`, failing it with [`EngineError::Silent`] when `tracker` records no progress for
/// `limit` (the clock starts now).
pub async fn watched<T>(
    tracker: &Tracker,
    limit: Duration,
    side: Side,
    what: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    tracker.beat();
    let watchdog = async {
        loop {
            tokio::time::sleep((limit / 4).max(Duration::from_millis(100))).await;
            if tracker.silent_for() >= limit {
                return EngineError::Silent { side, seconds: limit.as_secs(), what: what.to_owned() };
            }
        }
    };
    tokio::select! {
        out = work => out,
        e = watchdog => Err(e),
    }
}

/// Runs a connection attempt, failing it when it takes longer than the timeout (a server that
/// accepts the TCP connection but never greets would hold it forever).
pub async fn connecting<T>(side: Side, work: impl Future<Output = Result<T>>) -> Result<T> {
    let limit = timeout();
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(EngineError::Silent { side, seconds: limit.as_secs(), what: "connecting".to_owned() }))
}

/// When a stream last heard from its server: stamped by the task that reads it, read by the
/// apply loop's watchdog. Clones share the stamp.
#[derive(Clone)]
pub struct Heard {
    epoch: tokio::time::Instant,
    last_ms: std::sync::Arc<AtomicU64>,
}

impl Default for Heard {
    fn default() -> Self {
        Heard { epoch: tokio::time::Instant::now(), last_ms: std::sync::Arc::new(AtomicU64::new(0)) }
    }
}

impl Heard {
    /// Records that the server sent something now.
    pub fn now(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long since the server last sent something (or since the stamp was made).
    pub fn silent_for(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Backoff before the `attempt`th start from the checkpoint: 1 s doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_half_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_makes_no_progress_is_abandoned_and_work_that_does_is_not() {
        let tracker = Tracker::new(std::sync::Arc::new(crate::engine::progress::NoProgress));
        let limit = Duration::from_secs(10);
        let hung =
            watched(&tracker, limit, Side::Target, "writing a chunk", std::future::pending::<Result<()>>()).await;
        assert!(matches!(hung, Err(EngineError::Silent { side: Side::Target, seconds: 10, .. })), "{hung:?}");
        let busy = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                tracker.beat();
            }
            Ok(7)
        };
        assert_eq!(watched(&tracker, limit, Side::Target, "writing a chunk", busy).await.unwrap(), 7);
    }
}
