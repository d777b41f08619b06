//! `ferry worker compare --job NAMESPACE/NAME`: runs a CompareTask in its pod. Reads the task
//! (and the SyncJob it names), compares — online, with re-checks, while that job streams — and
//! writes the result, per-table rows and a sample of differing rows to the task's status, and
//! the full report to the ConfigMap `<task>-report` the task owns.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;

use super::{FIELD_MANAGER, WorkerError};
use crate::api::compare::{CompareModeKind, CompareTask, CompareType};
use crate::api::strict::Kind;
use crate::api::{DebugOptions, LocalObjectRef, SyncJob, SyncJobPhase};
use crate::compare::{self, CatchUp, Options};
use crate::engine::Credentials;

/// Differing rows kept in status; the report ConfigMap holds the rest.
pub const STATUS_DIFFERENCES: usize = 20;
/// Differing rows kept in the report (a ConfigMap holds at most 1 MiB).
pub const REPORT_DIFFERENCES: usize = 2000;

/// Waits for the SyncJob's checkpoint to cover source changes past a moment.
struct JobCheckpoint {
    jobs: Api<SyncJob>,
    name: String,
}

impl CatchUp for JobCheckpoint {
    async fn wait_past(&self, read_at: jiff::Timestamp) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Ok(job) = self.jobs.get(&self.name).await {
                let status = job.status.unwrap_or_default();
                if status.phase != Some(SyncJobPhase::IncreTransferStarted) {
                    return false;
                }
                let covered = status.checkpoint.and_then(|c| c.source_time).is_some_and(|t| t.0 > read_at);
                // Nothing newer received than applied: the target holds all there is.
                let idle = status.progress.as_ref().and_then(|p| p.lag_seconds) == Some(0);
                if covered || idle {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        false
    }
}

fn api_error(what: &str) -> impl FnOnce(kube::Error) -> WorkerError + '_ {
    move |e| WorkerError::new("KUBE_API", format!("{what}: {e}"))
}

/// The report ConfigMap must exist and be the task's.
fn check_report(cm: Option<&ConfigMap>, report: &str, task: &str, uid: &str) -> Result<(), WorkerError> {
    match cm {
        None => Err(WorkerError::new(
            "REPORT_MISSING",
            format!("ConfigMap {report} does not exist: the operator creates it before starting the comparison"),
        )),
        Some(cm) if !crate::controller::identity::owned_by(cm, uid) => Err(WorkerError::new(
            "REPORT_NAME_TAKEN",
            format!("ConfigMap {report} exists and does not belong to CompareTask {task}: delete or rename it"),
        )),
        Some(_) => Ok(()),
    }
}

/// Runs the CompareTask `namespace/name`.
pub async fn run(client: Client, namespace: &str, name: &str, credentials: Credentials) -> Result<(), WorkerError> {
    let tasks: Api<CompareTask> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), namespace);
    let task: CompareTask = super::get_strict(&client, namespace, name, Kind::CompareTask)
        .await?
        .ok_or_else(|| WorkerError::new("TASK_NOT_FOUND", format!("CompareTask {namespace}/{name} not found")))?;
    // The operator created the report ConfigMap, owned by the task, before starting this pod:
    // one of that name the task does not own is never written to (nor could this worker create
    // one: its Role lets it get and update that one name only).
    let report_name = crate::controller::compare::report_name(name);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let uid = task.metadata.uid.clone().unwrap_or_default();
    check_report(
        maps.get_opt(&report_name).await.map_err(api_error("reading the report ConfigMap"))?.as_ref(),
        &report_name,
        name,
        &uid,
    )?;
    let spec = &task.spec;
    let (source, target, objects, streaming, zero_dates) = match &spec.sync_job_ref {
        Some(r) => {
            let job: SyncJob =
                super::get_strict(&client, namespace, &r.name, Kind::SyncJob).await?.ok_or_else(|| {
                    WorkerError::new(
                        "KUBE_API",
                        format!("reading the SyncJob: SyncJob {namespace}/{} not found", r.name),
                    )
                })?;
            let streaming = job.status.as_ref().and_then(|s| s.phase) == Some(SyncJobPhase::IncreTransferStarted);
            let objects = spec.objects.clone().unwrap_or_else(|| job.spec.objects.clone());
            let zero_dates = job.spec.policy.zero_dates.unwrap_or_default();
            (job.spec.source, job.spec.target, objects, streaming.then(|| r.name.clone()), zero_dates)
        }
        None => match (&spec.source, &spec.target, &spec.objects) {
            (Some(s), Some(t), Some(o)) => (s.clone(), t.clone(), o.clone(), None, Default::default()),
            _ => return Err(WorkerError::new("SPEC_INVALID", "either syncJobRef, or source, target and objects")),
        },
    };
    let opts = Options {
        objects: spec.compare_type == CompareType::Object,
        content: spec.compare_type == CompareType::Content,
        max_differences: REPORT_DIFFERENCES,
        sample_percent: spec
            .mode
            .as_ref()
            .filter(|m| m.kind == CompareModeKind::Sample)
            .map(|m| m.percent.unwrap_or(10)),
        rows_per_second: spec.throttle.as_ref().and_then(|t| t.rows_per_second),
        rechecks: if streaming.is_some() { 3 } else { 0 },
        canonical: false,
        zero_dates,
    };
    let row_values = DebugOptions::row_values(spec.debug.as_ref());
    let failed = |e: crate::engine::EngineError| WorkerError::engine(&e, row_values);
    let report = match streaming {
        Some(job) => {
            let catch_up = JobCheckpoint { jobs: jobs.clone(), name: job };
            compare::run_online(&source, &target, &objects, &credentials, opts, &catch_up).await.map_err(failed)?
        }
        None => compare::run(&source, &target, &objects, &credentials, opts).await.map_err(failed)?,
    };
    let result = report.result();
    tracing::info!(result = result.as_str(), differences = report.differences.len(), "comparison done");

    // The full report, into the ConfigMap as read above: the update names its resourceVersion,
    // so a ConfigMap replaced meanwhile is a conflict, never overwritten.
    let current = maps.get(&report_name).await.map_err(api_error("reading the report ConfigMap"))?;
    check_report(Some(&current), &report_name, name, &uid)?;
    let body = json!({"result": result, "tables": report.tables, "differences": report.differences});
    let mut config_map = current;
    config_map.data =
        Some([("report.json".to_owned(), serde_json::to_string_pretty(&body).unwrap_or_default())].into());
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    maps.replace(&report_name, &params, &config_map).await.map_err(api_error("writing the report ConfigMap"))?;
    let status = json!({
        "result": result,
        "tables": report.tables,
        "differences": report.differences.iter().take(STATUS_DIFFERENCES).collect::<Vec<_>>(),
        "reportRef": LocalObjectRef { name: report_name },
    });
    let patch = json!({"apiVersion": CompareTask::api_version(&()), "kind": CompareTask::kind(&()), "status": status});
    tasks
        .patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(api_error("writing the result"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_written_only_into_the_tasks_own_config_map() {
        let mut cm = ConfigMap::default();
        let err = check_report(Some(&cm), "check-report", "check", "uid-1").unwrap_err();
        assert_eq!(err.code, "REPORT_NAME_TAKEN");
        assert!(err.message.contains("does not belong to CompareTask check"), "{}", err.message);
        assert_eq!(check_report(None, "check-report", "check", "uid-1").unwrap_err().code, "REPORT_MISSING");
        cm.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            uid: "uid-1".into(),
            ..Default::default()
        }]);
        assert!(check_report(Some(&cm), "check-report", "check", "uid-1").is_ok());
    }
}
