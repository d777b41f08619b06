//! Progress of a running job: counters the engine updates as it goes, and a sink that receives
//! them as a `status.progress` value (the worker writes it to the API, `ferry run` prints it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::metrics::{Stage, metrics};
use crate::api::{
    Checkpoint, Progress, SequencesStatus, SkippedObject, SlotStatus, TableProgress, TableState, TransferStage,
};

/// Receives progress. Called from the engine's tasks; must not block for long.
pub trait ProgressSink: Send + Sync {
    /// The current progress and checkpoint. Sent at every stage change and at most about once a
    /// second otherwise.
    fn report(&self, progress: &Progress, checkpoint: Option<&Checkpoint>);

    /// The worker lost a connection or heard nothing for too long, and starts the job again
    /// from its checkpoint: `reconnects` so far, the error's code and message. The worker
    /// turns it into an Event; `ferry run` prints it.
    fn reconnecting(&self, _reconnects: u32, _code: &str, _message: &str) {}

    /// A measurement of the job's replication slot (PostgreSQL sources, every 15 s), or `None`
    /// once the job has dropped it. Ignored unless the sink cares.
    fn slot(&self, _slot: Option<&SlotStatus>) {}

    /// The sequences the job carries with the values it set on the target (PostgreSQL →
    /// PostgreSQL), when they change and at the cut-over step. Ignored unless the sink cares.
    fn sequences(&self, _sequences: &SequencesStatus) {}
}

/// A sink that drops everything.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: &Progress, _: Option<&Checkpoint>) {}
}

struct State {
    progress: Progress,
    checkpoint: Option<Checkpoint>,
    last_sent: Option<Instant>,
    rate_base: Option<(Instant, u64)>,
}

/// The engine's handle on progress: cheap to clone, shared by every task of a job.
#[derive(Clone)]
pub struct Tracker {
    state: Arc<Mutex<State>>,
    sink: Arc<dyn ProgressSink>,
    pulse: Arc<Pulse>,
}

/// When the job last made progress of any kind (bytes read, rows written, a checkpoint), for
/// the watchdogs that restart a job that has gone silent.
struct Pulse {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Pulse {
    fn beat(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// How often progress is sent to the sink at most, stage changes aside.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

impl Tracker {
    /// A tracker reporting to `sink`.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Tracker {
        let state = State { progress: Progress::default(), checkpoint: None, last_sent: None, rate_base: None };
        let pulse = Pulse { epoch: Instant::now(), last_ms: AtomicU64::new(0) };
        Tracker { state: Arc::new(Mutex::new(state)), sink, pulse: Arc::new(pulse) }
    }

    /// Records that the job made progress (every counter update does too).
    pub fn beat(&self) {
        self.pulse.beat();
    }

    /// How long since the job last made progress.
    pub fn silent_for(&self) -> Duration {
        self.pulse.silent_for()
    }

    /// Counts a restart of the job from its checkpoint after `code: message`; reported at once.
    pub fn reconnecting(&self, code: &str, message: &str) {
        let reconnects = self.with(true, |s| {
            s.progress.reconnects += 1;
            s.progress.reconnects
        });
        metrics().reconnected();
        self.sink.reconnecting(reconnects, code, message);
    }

    /// Counts updates the target could not apply (the row missing, the update not carrying all
    /// of it); reported at once.
    pub fn missed_updates(&self, n: u64) {
        self.with(true, |s| s.progress.skipped_updates += n);
    }

    fn with<R>(&self, force: bool, f: impl FnOnce(&mut State) -> R) -> R {
        let (out, send) = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut s);
            let now = Instant::now();
            let due = force || s.last_sent.is_none_or(|t| now.duration_since(t) >= REPORT_INTERVAL);
            let send = due.then(|| {
                update_rates(&mut s, now);
                s.last_sent = Some(now);
                s.progress.updated_at = Some(Time(Timestamp::now()));
                (s.progress.clone(), s.checkpoint.clone())
            });
            (out, send)
        };
        if let Some((p, c)) = send {
            self.sink.report(&p, c.as_ref());
        }
        out
    }

    /// Registers the tables of the job with their estimated sizes.
    pub fn tables(&self, tables: &[(String, u64)]) {
        self.with(false, |s| {
            s.progress.tables = tables
                .iter()
                .map(|(name, est)| TableProgress {
                    name: name.clone(),
                    state: TableState::Pending,
                    rows: 0,
                    estimated_rows: Some(*est),
                })
                .collect();
        });
    }

    /// Enters a stage; reported at once.
    pub fn stage(&self, stage: TransferStage) {
        self.with(true, |s| {
            s.progress.stage = Some(stage);
            if stage == TransferStage::FullComplete {
                s.progress.percent = Some(100.0);
                s.progress.percent_text = Some("100%".into());
                s.progress.remaining_seconds = Some(0);
            }
        });
    }

    /// Sets a table's state.
    pub fn table_state(&self, index: usize, state: TableState) {
        self.with(false, |s| {
            if let Some(t) = s.progress.tables.get_mut(index) {
                t.state = state;
            }
        });
    }

    /// Counts rows written and bytes read for a table (full transfer) or the stream (`None`).
    pub fn add(&self, table: Option<usize>, rows: u64, bytes: u64) {
        self.pulse.beat();
        self.with(false, |s| {
            let stage = match s.progress.stage {
                Some(TransferStage::Incremental) => Stage::Incremental,
                _ => Stage::Full,
            };
            metrics().written(stage, rows, bytes);
            s.progress.rows_transferred += rows;
            s.progress.bytes_transferred += bytes;
            if let Some(t) = table.and_then(|i| s.progress.tables.get_mut(i)) {
                t.rows += rows;
            }
        });
    }

    /// Records that changes up to this source commit time have been received. Sent at once when
    /// the job goes from caught up to having changes waiting, so a worker that then hangs still
    /// shows what it was given.
    pub fn received(&self, source_time_us: i64) {
        self.pulse.beat();
        let Ok(t) = Timestamp::from_microsecond(source_time_us) else { return };
        let waiting_already = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let applied = s.checkpoint.as_ref().and_then(|c| c.source_time.as_ref()).map(|t| t.0);
            s.progress.received_source_time.as_ref().map(|r| r.0) > applied
        };
        self.with(!waiting_already, |s| s.progress.received_source_time = Some(Time(t)));
    }

    /// Records the checkpoint the target has committed, with the source commit time it covers.
    pub fn checkpoint(&self, position: String, source_time_us: Option<i64>) {
        let now = Timestamp::now();
        let source_time = source_time_us.and_then(|us| Timestamp::from_microsecond(us).ok());
        self.pulse.beat();
        self.with(false, |s| {
            let lag = source_time.map(|t| now.duration_since(t).as_secs().max(0) as u64);
            if let Some(lag) = lag {
                s.progress.lag_seconds = Some(lag);
                metrics().lag(lag);
            }
            s.checkpoint = Some(Checkpoint {
                position: Some(position),
                source_time: source_time.map(Time),
                updated_at: Some(Time(now)),
            });
        });
    }

    /// Sets the incremental lag directly (e.g. zero when the stream is idle and caught up).
    pub fn lag(&self, seconds: u64) {
        metrics().lag(seconds);
        self.with(false, |s| s.progress.lag_seconds = Some(seconds));
    }

    /// Records a source object the target does not get, with the reason (once per object: a
    /// later reason replaces an earlier one); reported at once.
    pub fn skipped(&self, object: &str, reason: &str) {
        self.with(true, |s| {
            let list = &mut s.progress.skipped_objects;
            match list.iter_mut().find(|o| o.object == object) {
                Some(o) => o.reason = reason.to_owned(),
                None => list.push(SkippedObject { object: object.to_owned(), reason: reason.to_owned() }),
            }
        });
    }

    /// Reports a measurement of the job's replication slot, or (`None`) that the job dropped it.
    pub fn slot(&self, slot: Option<&SlotStatus>) {
        self.sink.slot(slot);
    }

    /// Reports the sequences the job carries with the values it set on the target.
    pub fn sequences(&self, sequences: &SequencesStatus) {
        self.sink.sequences(sequences);
    }

    /// Sends the current state now.
    pub fn flush(&self) {
        self.with(true, |_| ());
    }

    /// The current progress.
    pub fn snapshot(&self) -> (Progress, Option<Checkpoint>) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.progress.clone(), s.checkpoint.clone())
    }
}

fn update_rates(s: &mut State, now: Instant) {
    let rows = s.progress.rows_transferred;
    if let Some((t0, r0)) = s.rate_base {
        let secs = now.duration_since(t0).as_secs_f64();
        if secs >= 0.5 {
            s.progress.rows_per_second = Some(((rows.saturating_sub(r0)) as f64 / secs).round());
            s.rate_base = Some((now, rows));
        }
    } else {
        s.rate_base = Some((now, rows));
    }
    if s.progress.stage == Some(TransferStage::Full) {
        let done: u64 = s.progress.tables.iter().map(|t| t.rows).sum();
        let total: u64 = s.progress.tables.iter().map(|t| t.estimated_rows.unwrap_or(0).max(t.rows)).sum();
        if total > 0 {
            // Never claim 100% before the stage says so: estimates are estimates.
            let pct = (done as f64 * 100.0 / total as f64).min(99.0);
            s.progress.percent = Some((pct * 10.0).round() / 10.0);
            s.progress.percent_text = Some(format!("{}%", pct.floor() as u64));
            if let Some(rate) = s.progress.rows_per_second.filter(|r| *r > 0.0) {
                s.progress.remaining_seconds = Some(((total - done.min(total)) as f64 / rate).ceil() as u64);
            }
        }
    }
}
