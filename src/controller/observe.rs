//! Observing a SyncJob's world for the lifecycle: its spec's validity, deletion, the precheck
//! results the precheck pod wrote, and the state of its pods. Pure: the controller lists the
//! pods, this turns them into an [`Observed`].

use k8s_openapi::api::core::v1::Pod;

use super::pods::{LABEL_ATTEMPT, LABEL_COMPONENT, Role};
use crate::api::SyncJob;
use crate::api::validate::Validate;
use crate::lifecycle::{self, Observed, PrecheckState, ReleaseState, WorkerState};

/// Annotation that lets deletion finish without releasing the source resources (the source is
/// gone for good): `ferry.dev/skip-release: "true"`.
pub const SKIP_RELEASE_ANNOTATION: &str = "ferry.dev/skip-release";

/// How a pod stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Not yet running.
    Pending,
    /// Running.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero (or could not run), with the `CODE: message` it left.
    Failed { code: String, message: String },
}

/// The state of a pod from its status.
pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    match phase {
        "Running" => PodState::Running,
        "Succeeded" => PodState::Succeeded,
        "Failed" => {
            let terminated = status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.as_ref());
            let text = terminated
                .and_then(|t| t.message.clone())
                .or_else(|| status.and_then(|s| s.message.clone()))
                .unwrap_or_default();
            let (code, message) = parse_termination(&text, terminated.and_then(|t| t.reason.as_deref()));
            PodState::Failed { code, message }
        }
        _ => PodState::Pending,
    }
}

/// `CODE: message` as a worker writes it; anything else (a log tail, an OOM kill) becomes
/// `WORKER_FAILED` with the text, or the kubelet's reason.
pub fn parse_termination(text: &str, reason: Option<&str>) -> (String, String) {
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if let Some((code, message)) = last.split_once(": ")
        && !code.is_empty()
        && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
    {
        return (code.to_owned(), message.to_owned());
    }
    match reason {
        Some("OOMKilled") => {
            ("WORKER_OOM".into(), "the worker ran out of memory: raise nodeType or worker.resources".into())
        }
        Some(r) if last.is_empty() => ("WORKER_FAILED".into(), format!("the worker pod failed ({r})")),
        _ if last.is_empty() => ("WORKER_FAILED".into(), "the worker pod failed without a message".into()),
        _ => ("WORKER_FAILED".into(), last.to_owned()),
    }
}

/// The job's pod of `role` for `n` (generation or attempt), if it exists and is not being
/// deleted.
pub fn find(pods: &[Pod], role: Role, n: i64) -> Option<&Pod> {
    pods.iter().find(|p| {
        let labels = p.metadata.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        p.metadata.deletion_timestamp.is_none()
            && label(LABEL_COMPONENT).and_then(Role::from_label) == Some(role)
            && label(LABEL_ATTEMPT) == Some(n.to_string().as_str())
    })
}

/// Everything the lifecycle needs to decide, from the job and its pods.
pub fn observe(job: &SyncJob, pods: &[Pod]) -> Observed {
    let generation = job.metadata.generation.unwrap_or(0);
    let status = job.status.clone().unwrap_or_default();
    let mut o = Observed::new(generation);
    o.spec_errors = job.spec.validate();
    o.deleting = job.metadata.deletion_timestamp.is_some();
    o.skip_release = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_RELEASE_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));

    let results = status.precheck.as_ref().filter(|p| p.observed_generation == Some(generation) && !p.items.is_empty());
    o.precheck = match (results, find(pods, Role::Precheck, generation).map(pod_state)) {
        (Some(p), _) => {
            let blocking = lifecycle::blocking_items(&p.items, job.spec.precheck.as_ref());
            if blocking.is_empty() { PrecheckState::Passed } else { PrecheckState::Failed { items: blocking } }
        }
        (None, None) => PrecheckState::NotStarted,
        (None, Some(PodState::Failed { code, message })) => {
            PrecheckState::Failed { items: vec![format!("precheck pod: {code}: {message}")] }
        }
        (None, Some(_)) => PrecheckState::Running,
    };

    let attempt = i64::from(status.worker.as_ref().map_or(0, |w| w.attempt));
    let stage = status.progress.as_ref().and_then(|p| p.stage);
    o.worker = match find(pods, Role::Worker, attempt).map(pod_state) {
        None => WorkerState::Absent,
        Some(PodState::Pending) => WorkerState::Pending,
        Some(PodState::Running) => WorkerState::Running { stage },
        Some(PodState::Succeeded) => WorkerState::Succeeded { stage },
        Some(PodState::Failed { code, message }) => WorkerState::Failed { code, message },
    };
    // Release pods count their own attempts, in `retries` while the job releases.
    o.release = match find(pods, Role::Release, i64::from(status.retries)).map(pod_state) {
        None => ReleaseState::NotStarted,
        Some(PodState::Pending | PodState::Running) => ReleaseState::Running,
        Some(PodState::Succeeded) => ReleaseState::Succeeded,
        Some(PodState::Failed { code, message }) => ReleaseState::Failed { code, message },
    };
    o
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus};

    use super::*;
    use crate::api::{
        PrecheckItem, PrecheckResult, PrecheckStatus, SyncJobSpec, SyncJobStatus, TransferStage, WorkerStatus,
    };
    use crate::controller::pods;

    fn job() -> SyncJob {
        let mut j = SyncJob::new("orders", SyncJobSpec::test());
        j.metadata.namespace = Some("shop".into());
        j.metadata.uid = Some("uid-1".into());
        j.metadata.generation = Some(2);
        j
    }

    fn pod(role: Role, n: i64, phase: &str) -> Pod {
        let mut p = pods::build(&job(), role, n, "ferry").unwrap();
        p.status = Some(PodStatus { phase: Some(phase.into()), ..Default::default() });
        p
    }

    fn failed(role: Role, n: i64, message: &str) -> Pod {
        let mut p = pod(role, n, "Failed");
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 2,
                    message: Some(message.into()),
                    reason: Some("Error".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        p
    }

    #[test]
    fn nothing_running_yet_is_a_precheck_to_start() {
        let o = observe(&job(), &[]);
        assert_eq!(o.generation, 2);
        assert_eq!(o.precheck, PrecheckState::NotStarted);
        assert_eq!(o.worker, WorkerState::Absent);
    }

    #[test]
    fn precheck_results_of_this_generation_decide_and_skips_count() {
        let mut j = job();
        let item = PrecheckItem {
            item: "source.walLevel".into(),
            result: PrecheckResult::Failed,
            reason: None,
            fix: None,
            skippable: true,
            skipped: false,
        };
        j.status = Some(SyncJobStatus {
            precheck: Some(PrecheckStatus { observed_generation: Some(2), items: vec![item], ..Default::default() }),
            ..Default::default()
        });
        assert_eq!(observe(&j, &[]).precheck, PrecheckState::Failed { items: vec!["source.walLevel".into()] });
        j.spec.precheck = Some(crate::api::PrecheckSpec { skip: false, skip_items: vec!["source.walLevel".into()] });
        assert_eq!(observe(&j, &[]).precheck, PrecheckState::Passed);
        // Results of an older generation do not count; a pod of this one is running.
        j.metadata.generation = Some(3);
        assert_eq!(observe(&j, &[]).precheck, PrecheckState::NotStarted);
    }

    #[test]
    fn the_precheck_pod_of_this_generation_is_running_or_failed() {
        assert_eq!(observe(&job(), &[pod(Role::Precheck, 2, "Running")]).precheck, PrecheckState::Running);
        assert_eq!(observe(&job(), &[pod(Role::Precheck, 1, "Running")]).precheck, PrecheckState::NotStarted);
        let o = observe(&job(), &[failed(Role::Precheck, 2, "SOURCE_CONNECT: refused")]);
        assert_eq!(o.precheck, PrecheckState::Failed { items: vec!["precheck pod: SOURCE_CONNECT: refused".into()] });
    }

    #[test]
    fn the_worker_of_the_current_attempt_reports_its_stage_and_failure() {
        let mut j = job();
        j.status = Some(SyncJobStatus {
            worker: Some(WorkerStatus { attempt: 3, ..Default::default() }),
            progress: Some(crate::api::Progress { stage: Some(TransferStage::Incremental), ..Default::default() }),
            ..Default::default()
        });
        assert_eq!(
            observe(&j, &[pod(Role::Worker, 3, "Running")]).worker,
            WorkerState::Running { stage: Some(TransferStage::Incremental) }
        );
        assert_eq!(observe(&j, &[pod(Role::Worker, 2, "Running")]).worker, WorkerState::Absent);
        let o = observe(&j, &[failed(Role::Worker, 3, "log line\nSOURCE_CONNECT: cannot connect")]);
        assert_eq!(o.worker, WorkerState::Failed { code: "SOURCE_CONNECT".into(), message: "cannot connect".into() });
        assert_eq!(observe(&j, &[pod(Role::Release, 0, "Succeeded")]).release, ReleaseState::Succeeded);
        assert_eq!(observe(&j, &[pod(Role::Release, 3, "Succeeded")]).release, ReleaseState::NotStarted);
    }

    #[test]
    fn termination_messages_without_a_code_still_say_what_happened() {
        assert_eq!(parse_termination("", Some("OOMKilled")).0, "WORKER_OOM");
        assert_eq!(
            parse_termination("panicked somewhere", None),
            ("WORKER_FAILED".into(), "panicked somewhere".into())
        );
        assert_eq!(parse_termination("", Some("Error")).1, "the worker pod failed (Error)");
    }

    #[test]
    fn the_skip_release_annotation_and_deletion_are_seen() {
        let mut j = job();
        j.metadata.annotations = Some([(SKIP_RELEASE_ANNOTATION.to_owned(), "true".to_owned())].into());
        j.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
        let o = observe(&j, &[]);
        assert!(o.skip_release && o.deleting);
    }
}
