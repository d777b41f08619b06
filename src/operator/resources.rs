//! Per-resource series (`ferry_syncjob_*`, `ferry_comparetask_*`, `ferry_batchjob_*`), computed
//! at scrape time from the objects the controllers cache: a deleted object's series go with it,
//! and nothing has to be kept in step with reconciles. docs/metrics.md lists them.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::api::compare::CompareTask;
use crate::api::{BatchJob, CompareResult, Engine, PrecheckResult, SyncJob, SyncJobPhase};
use crate::lifecycle::{
    self,
    conditions::{self, types},
};

/// The objects to describe, as of now.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// SyncJobs.
    pub jobs: Vec<Arc<SyncJob>>,
    /// CompareTasks.
    pub tasks: Vec<Arc<CompareTask>>,
    /// BatchJobs.
    pub batches: Vec<Arc<BatchJob>>,
}

type Source = Box<dyn Fn() -> Snapshot + Send + Sync>;

/// The collector; describes nothing until [`ResourceMetrics::watch`] gives it a source (the
/// leader's caches).
#[derive(Default)]
pub struct ResourceMetrics {
    source: OnceLock<Source>,
}

impl std::fmt::Debug for ResourceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceMetrics").field("watching", &self.source.get().is_some()).finish()
    }
}

impl ResourceMetrics {
    /// Describes what `source` returns from now on (the first call wins).
    pub fn watch(&self, source: impl Fn() -> Snapshot + Send + Sync + 'static) {
        let _ = self.source.set(Box::new(source));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Object {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectPhase {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseOnly {
    phase: String,
}

type Gauges<L> = Family<L, Gauge<f64, AtomicU64>>;

/// The families of one scrape, in the order they are written.
struct Families {
    list: Vec<(&'static str, &'static str, Box<dyn EncodeMetric>)>,
}

impl Families {
    fn add<L>(&mut self, name: &'static str, help: &'static str, family: Gauges<L>)
    where
        L: Clone + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + std::fmt::Debug + 'static,
    {
        self.list.push((name, help, Box::new(family)));
    }
}

fn object(meta: &kube::api::ObjectMeta) -> Object {
    Object { namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() }
}

fn set<L: Clone + std::hash::Hash + Eq>(family: &Gauges<L>, labels: &L, value: f64) {
    family.get_or_create(labels).set(value);
}

fn bool01(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Builds every family from `snap` at `now`.
fn families(snap: &Snapshot, now: Timestamp) -> Families {
    let mut out = Families { list: Vec::new() };
    let by_phase = Gauges::<PhaseOnly>::default();
    let phase = Gauges::<ObjectPhase>::default();
    let ready = Gauges::<Object>::default();
    let failed = Gauges::<Object>::default();
    let progress = Gauges::<Object>::default();
    let rows = Gauges::<Object>::default();
    let bytes = Gauges::<Object>::default();
    let lag = Gauges::<Object>::default();
    let lag_threshold = Gauges::<Object>::default();
    let checkpoint_age = Gauges::<Object>::default();
    let stalled = Gauges::<Object>::default();
    let precheck_failures = Gauges::<Object>::default();
    let retries = Gauges::<Object>::default();
    let slot_wal = Gauges::<Object>::default();
    let slot_inactive = Gauges::<Object>::default();
    let slot_retention = Gauges::<Object>::default();
    for job in &snap.jobs {
        let o = object(&job.metadata);
        if let Some(a) = job.spec.alarm.as_ref().and_then(|a| a.delay_seconds) {
            set(&lag_threshold, &o, f64::from(a));
        }
        if job.spec.source.engine == Engine::Postgresql {
            set(&slot_retention, &o, lifecycle::slot_retention(&job.spec).as_secs_f64());
        }
        let Some(st) = &job.status else { continue };
        // From the worker's last measurement: also while no worker runs to serve its own gauge.
        if let Some(slot) = st.slot.as_ref().filter(|_| lifecycle::holds_slot(&job.spec, st)) {
            if let Some(b) = slot.retained_wal_bytes {
                set(&slot_wal, &o, b as f64);
            }
            if let Some(t) = &slot.inactive_since {
                set(&slot_inactive, &o, now.duration_since(t.0).as_secs_f64().max(0.0));
            }
        }
        if let Some(p) = st.phase {
            by_phase.get_or_create(&PhaseOnly { phase: p.as_str().into() }).inc();
            set(
                &phase,
                &ObjectPhase { namespace: o.namespace.clone(), name: o.name.clone(), phase: p.as_str().into() },
                1.0,
            );
            set(&failed, &o, bool01(p.is_failed() || matches!(p, SyncJobPhase::CreateFailed)));
        }
        set(&ready, &o, bool01(conditions::is_true(&st.conditions, types::READY)));
        let stuck = conditions::get(&st.conditions, types::STALLED)
            .is_some_and(|c| c.status == "True" && c.reason == "CheckpointStalled");
        set(&stalled, &o, bool01(stuck));
        set(&retries, &o, f64::from(st.retries));
        if let Some(p) = &st.progress {
            if let Some(pct) = p.percent {
                set(&progress, &o, (pct / 100.0).clamp(0.0, 1.0));
            }
            set(&rows, &o, p.rows_transferred as f64);
            set(&bytes, &o, p.bytes_transferred as f64);
            if let Some(l) = p.lag_seconds {
                set(&lag, &o, l as f64);
            }
        }
        if let Some(at) = st.checkpoint.as_ref().and_then(|c| c.updated_at.as_ref()) {
            set(&checkpoint_age, &o, now.duration_since(at.0).as_secs_f64().max(0.0));
        }
        if let Some(pc) = &st.precheck {
            let n = pc.items.iter().filter(|i| i.result == PrecheckResult::Failed && !i.skipped).count();
            set(&precheck_failures, &o, n as f64);
        }
    }
    out.add("syncjobs", "SyncJobs per phase", by_phase);
    out.add("syncjob_phase", "1 for the job's current phase", phase);
    out.add("syncjob_ready", "1 when the job's Ready condition is true", ready);
    out.add("syncjob_failed", "1 when the job is in a failed phase", failed);
    out.add("syncjob_progress_ratio", "Full-transfer progress, 0 to 1", progress);
    out.add("syncjob_rows_transferred", "Rows written to the target by the current attempt", rows);
    out.add("syncjob_bytes_transferred", "Bytes written to the target by the current attempt", bytes);
    out.add("syncjob_lag_seconds", "Incremental lag behind the source", lag);
    out.add("syncjob_lag_threshold_seconds", "spec.alarm.delaySeconds of the job", lag_threshold);
    out.add("syncjob_checkpoint_age_seconds", "Seconds since the checkpoint last advanced", checkpoint_age);
    out.add("syncjob_checkpoint_stalled", "1 when the checkpoint has stalled while the source has changes", stalled);
    out.add("syncjob_precheck_failures", "Precheck items that failed for the current spec", precheck_failures);
    out.add("syncjob_retries", "Retries of the failed step so far", retries);
    out.add(
        "syncjob_slot_retained_wal_bytes",
        "PostgreSQL sources: WAL the job's replication slot retained when its worker last measured it",
        slot_wal,
    );
    out.add(
        "syncjob_slot_inactive_seconds",
        "Seconds the job has held its replication slot without a running worker",
        slot_inactive,
    );
    out.add(
        "syncjob_slot_retention_seconds",
        "spec.slotRetentionMinutes of a PostgreSQL job, in seconds: the slot is released when inactive that long",
        slot_retention,
    );

    let task_phase = Gauges::<ObjectPhase>::default();
    let consistent = Gauges::<Object>::default();
    let differing = Gauges::<Object>::default();
    for task in &snap.tasks {
        let o = object(&task.metadata);
        let Some(st) = &task.status else { continue };
        if let Some(p) = st.phase {
            let labels = ObjectPhase { namespace: o.namespace.clone(), name: o.name.clone(), phase: p.as_str().into() };
            set(&task_phase, &labels, 1.0);
        }
        if let Some(r) = st.result {
            set(&consistent, &o, bool01(r == CompareResult::Consistent));
            set(&differing, &o, st.tables.iter().filter_map(|t| t.different_rows).sum::<u64>() as f64);
        }
    }
    out.add("comparetask_phase", "1 for the task's current phase", task_phase);
    out.add("comparetask_consistent", "1 when the last run found the target consistent, 0 when not", consistent);
    out.add("comparetask_differing_rows", "Rows found different by the last run", differing);

    let children = Gauges::<ObjectPhase>::default();
    for batch in &snap.batches {
        let o = object(&batch.metadata);
        for (phase, n) in batch.status.iter().flat_map(|s| s.counts.iter()) {
            let labels = ObjectPhase { namespace: o.namespace.clone(), name: o.name.clone(), phase: phase.clone() };
            set(&children, &labels, f64::from(*n));
        }
    }
    out.add("batchjob_children", "Children of a BatchJob per phase", children);
    out
}

impl Collector for ResourceMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.source.get() else { return Ok(()) };
        for (name, help, family) in families(&source(), Timestamp::now()).list {
            let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
            family.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::compare::{CompareTaskSpec, CompareTaskStatus, TableCompareStatus};
    use crate::api::{ComparePhase, Progress, SyncJobSpec, SyncJobStatus};
    use crate::lifecycle::conditions::Status;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use prometheus_client::registry::Registry;

    #[test]
    fn jobs_and_tasks_become_labelled_series() {
        let now = Timestamp::now();
        let mut job = SyncJob::new("orders", SyncJobSpec::test());
        job.metadata.namespace = Some("shop".into());
        job.spec.alarm = Some(crate::api::Alarm { delay_seconds: Some(30), ..Default::default() });
        let mut st = SyncJobStatus {
            phase: Some(SyncJobPhase::IncreTransferStarted),
            progress: Some(Progress {
                percent: Some(100.0),
                rows_transferred: 1000,
                bytes_transferred: 5000,
                lag_seconds: Some(4),
                ..Default::default()
            }),
            checkpoint: Some(crate::api::Checkpoint {
                updated_at: Some(Time(now.checked_sub(jiff::SignedDuration::from_secs(12)).unwrap())),
                ..Default::default()
            }),
            ..Default::default()
        };
        conditions::set(&mut st.conditions, types::READY, Status::True, "Streaming", "ok", 1, now);
        job.status = Some(st);
        let mut task = CompareTask::new(
            "check",
            serde_json::from_value::<CompareTaskSpec>(serde_json::json!({
                "type": "content", "syncJobRef": {"name": "orders"}
            }))
            .unwrap(),
        );
        task.metadata.namespace = Some("shop".into());
        task.status = Some(CompareTaskStatus {
            phase: Some(ComparePhase::Successful),
            result: Some(CompareResult::Inconsistent),
            tables: vec![TableCompareStatus {
                source: "a".into(),
                target: "a".into(),
                source_rows: None,
                target_rows: None,
                different_rows: Some(3),
                object_result: None,
                rows_result: None,
                content_result: None,
                message: None,
            }],
            ..Default::default()
        });
        let metrics = ResourceMetrics::default();
        let mut registry = Registry::with_prefix("ferry");
        let snap = Snapshot { jobs: vec![Arc::new(job)], tasks: vec![Arc::new(task)], batches: vec![] };
        metrics.watch(move || snap.clone());
        let metrics = Arc::new(metrics);
        registry.register_collector(Box::new(Arc::clone(&metrics)));
        let text = crate::engine::metrics::encode(&registry);
        for line in [
            "ferry_syncjobs{phase=\"INCRE_TRANSFER_STARTED\"} 1",
            "ferry_syncjob_phase{namespace=\"shop\",name=\"orders\",phase=\"INCRE_TRANSFER_STARTED\"} 1",
            "ferry_syncjob_ready{namespace=\"shop\",name=\"orders\"} 1",
            "ferry_syncjob_failed{namespace=\"shop\",name=\"orders\"} 0",
            "ferry_syncjob_progress_ratio{namespace=\"shop\",name=\"orders\"} 1",
            "ferry_syncjob_rows_transferred{namespace=\"shop\",name=\"orders\"} 1000",
            "ferry_syncjob_lag_seconds{namespace=\"shop\",name=\"orders\"} 4",
            "ferry_syncjob_lag_threshold_seconds{namespace=\"shop\",name=\"orders\"} 30",
            "ferry_syncjob_checkpoint_stalled{namespace=\"shop\",name=\"orders\"} 0",
            "ferry_comparetask_consistent{namespace=\"shop\",name=\"check\"} 0",
            "ferry_comparetask_differing_rows{namespace=\"shop\",name=\"check\"} 3",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let age = text
            .lines()
            .find_map(|l| l.strip_prefix("ferry_syncjob_checkpoint_age_seconds{namespace=\"shop\",name=\"orders\"} "))
            .unwrap();
        let age: f64 = age.parse().unwrap();
        assert!((12.0..60.0).contains(&age), "{age}");
    }

    #[test]
    fn a_slot_is_described_while_held_and_no_longer_once_released() {
        let an_hour_ago = Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(3600)).unwrap();
        let job = |phase: SyncJobPhase| {
            let mut job = SyncJob::new("orders", SyncJobSpec::test());
            job.metadata.namespace = Some("shop".into());
            job.status = Some(SyncJobStatus {
                phase: Some(phase),
                slot: Some(crate::api::SlotStatus {
                    inactive_since: Some(Time(an_hour_ago)),
                    ..crate::api::SlotStatus::measured("ferry_orders", 2048, Time(an_hour_ago))
                }),
                ..Default::default()
            });
            job
        };
        let snap = |phase| Snapshot { jobs: vec![Arc::new(job(phase))], ..Default::default() };
        let text = |snap: &Snapshot| {
            let mut registry = Registry::with_prefix("ferry");
            let metrics = Arc::new(ResourceMetrics::default());
            let snap = snap.clone();
            metrics.watch(move || snap.clone());
            registry.register_collector(Box::new(metrics));
            crate::engine::metrics::encode(&registry)
        };
        let held = text(&snap(SyncJobPhase::Pausing));
        assert!(
            held.contains("ferry_syncjob_slot_retained_wal_bytes{namespace=\"shop\",name=\"orders\"} 2048"),
            "{held}"
        );
        assert!(held.contains("ferry_syncjob_slot_inactive_seconds{namespace=\"shop\",name=\"orders\"} 36"), "{held}");
        assert!(held.contains("ferry_syncjob_slot_retention_seconds{namespace=\"shop\",name=\"orders\"} 86400"));
        let released = text(&snap(SyncJobPhase::ReleaseResourceComplete));
        assert!(!released.contains("ferry_syncjob_slot_retained_wal_bytes{"), "{released}");
        assert!(!released.contains("ferry_syncjob_slot_inactive_seconds{"), "{released}");
    }

    #[test]
    fn nothing_is_described_before_the_caches_are_there() {
        let metrics = Arc::new(ResourceMetrics::default());
        let mut registry = Registry::with_prefix("ferry");
        registry.register_collector(Box::new(Arc::clone(&metrics)));
        assert!(!crate::engine::metrics::encode(&registry).contains("syncjob"));
    }
}
