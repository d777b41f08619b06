//! The data path's Prometheus metrics (prefix `ferry_worker_`), one set per process: a worker
//! pod runs one job, so the process is the job. The engine counts into them as it goes; a worker
//! (or `ferry run --metrics-listen`) serves them on `/metrics`. docs/metrics.md lists them.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which part of a job moved the rows.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Stage {
    /// The full transfer (chunks): `full`.
    Full,
    /// The incremental transfer (row changes): `incremental`.
    Incremental,
}

impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Stage::Full => "full",
            Stage::Incremental => "incremental",
        })
    }
}

/// Label set of the per-stage counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `full` or `incremental`.
    pub stage: Stage,
}

/// Label set of the chunk gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChunkLabels {
    /// `done` or `total`.
    pub state: String,
}

/// The engine's metrics. Clones share their values.
#[derive(Clone)]
pub struct EngineMetrics {
    rows_read: Family<StageLabels, Counter>,
    rows_written: Family<StageLabels, Counter>,
    bytes_written: Family<StageLabels, Counter>,
    chunks: Family<ChunkLabels, Gauge>,
    apply_batch: Histogram,
    lag: Gauge,
    throttle_waits: Counter,
    throttle_wait_seconds: Counter<f64, AtomicU64>,
    slot_retained_wal: Gauge,
    reconnects: Counter,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            rows_read: Family::default(),
            rows_written: Family::default(),
            bytes_written: Family::default(),
            chunks: Family::default(),
            apply_batch: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            lag: Gauge::default(),
            throttle_waits: Counter::default(),
            throttle_wait_seconds: Counter::default(),
            slot_retained_wal: Gauge::default(),
            reconnects: Counter::default(),
        }
    }
}

/// The process's engine metrics.
pub fn metrics() -> &'static EngineMetrics {
    static METRICS: OnceLock<EngineMetrics> = OnceLock::new();
    METRICS.get_or_init(EngineMetrics::default)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl EngineMetrics {
    /// Registers every series in `registry` (which should carry the `ferry` prefix).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("worker");
        r.register(
            "rows_read",
            "Rows read from the source (incremental: row changes received)",
            self.rows_read.clone(),
        );
        r.register(
            "rows_written",
            "Rows written to the target (incremental: row changes applied)",
            self.rows_written.clone(),
        );
        r.register("bytes_written", "Bytes of row data written to the target", self.bytes_written.clone());
        r.register(
            "chunks",
            "Full-transfer chunks of this run: planned (total) and committed (done)",
            self.chunks.clone(),
        );
        r.register(
            "apply_batch_seconds",
            "Time to apply one batch of source transactions with its checkpoint",
            self.apply_batch.clone(),
        );
        r.register("lag_seconds", "Incremental lag as the worker sees it", self.lag.clone());
        r.register("throttle_waits", "Times a speed limit made the worker wait", self.throttle_waits.clone());
        r.register("throttle_wait_seconds", "Time spent waiting for speed limits", self.throttle_wait_seconds.clone());
        r.register(
            "slot_retained_wal_bytes",
            "PostgreSQL sources: WAL the job's replication slot retains",
            self.slot_retained_wal.clone(),
        );
        r.register(
            "reconnects",
            "Times the worker lost a connection or heard nothing for too long and started again from its checkpoint",
            self.reconnects.clone(),
        );
    }

    /// Counts rows read from the source.
    pub fn read(&self, stage: Stage, rows: u64) {
        self.rows_read.get_or_create(&StageLabels { stage }).inc_by(rows);
    }

    /// Counts rows and bytes written to the target.
    pub fn written(&self, stage: Stage, rows: u64, bytes: u64) {
        let labels = StageLabels { stage };
        if rows > 0 {
            self.rows_written.get_or_create(&labels).inc_by(rows);
        }
        if bytes > 0 {
            self.bytes_written.get_or_create(&labels).inc_by(bytes);
        }
    }

    /// Sets the number of chunks this run copies.
    pub fn chunks_planned(&self, total: usize) {
        self.chunks.get_or_create(&ChunkLabels { state: "total".into() }).set(as_i64(total as u64));
        self.chunks.get_or_create(&ChunkLabels { state: "done".into() }).set(0);
    }

    /// Counts a committed chunk.
    pub fn chunk_done(&self) {
        self.chunks.get_or_create(&ChunkLabels { state: "done".into() }).inc();
    }

    /// Records how long a batch took to apply.
    pub fn batch_applied(&self, took: Duration) {
        self.apply_batch.observe(took.as_secs_f64());
    }

    /// Sets the incremental lag.
    pub fn lag(&self, seconds: u64) {
        self.lag.set(as_i64(seconds));
    }

    /// Counts a wait imposed by a speed limit.
    pub fn throttled(&self, waited: Duration) {
        self.throttle_waits.inc();
        self.throttle_wait_seconds.inc_by(waited.as_secs_f64());
    }

    /// Counts a restart from the checkpoint (the `Reconnecting` Event says why).
    pub fn reconnected(&self) {
        self.reconnects.inc();
    }

    /// Sets the WAL the replication slot retains.
    pub fn slot_retained_wal(&self, bytes: u64) {
        self.slot_retained_wal.set(as_i64(bytes));
    }
}

/// A registry with the `ferry` prefix holding the engine's metrics.
pub fn registry() -> Registry {
    let mut registry = Registry::with_prefix("ferry");
    metrics().register(&mut registry);
    registry
}

/// The registry in the Prometheus text exposition format (version 0.0.4).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_encoded_with_the_worker_prefix_and_stage_labels() {
        let m = EngineMetrics::default();
        let mut registry = Registry::with_prefix("ferry");
        m.register(&mut registry);
        m.read(Stage::Full, 10);
        m.written(Stage::Full, 10, 300);
        m.written(Stage::Incremental, 2, 0);
        m.chunks_planned(4);
        m.chunk_done();
        m.batch_applied(Duration::from_millis(3));
        m.throttled(Duration::from_millis(500));
        m.lag(7);
        m.reconnected();
        let text = encode(&registry);
        for line in [
            "ferry_worker_rows_read_total{stage=\"full\"} 10",
            "ferry_worker_rows_written_total{stage=\"full\"} 10",
            "ferry_worker_rows_written_total{stage=\"incremental\"} 2",
            "ferry_worker_bytes_written_total{stage=\"full\"} 300",
            "ferry_worker_chunks{state=\"total\"} 4",
            "ferry_worker_chunks{state=\"done\"} 1",
            "ferry_worker_apply_batch_seconds_count 1",
            "ferry_worker_lag_seconds 7",
            "ferry_worker_throttle_waits_total 1",
            "ferry_worker_throttle_wait_seconds_total 0.5",
            "ferry_worker_reconnects_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
