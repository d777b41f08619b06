//! The CompareTask controller: observe the task, its run's pod and the SyncJob it names; let
//! [`lifecycle::compare::plan`] decide; create or stop the compare pod; apply the operator's
//! status fields. The pod (`ferry worker compare`) writes the result, the per-table rows, a
//! sample of differing rows and the full report ConfigMap.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::identity::{self, Grant, owned_by};
use super::observe::{PodState, find, pod_state};
use super::pods::{self, LABEL_JOB, LABEL_MANAGED_BY, MANAGER, PodParams, Role};
use super::{Context, Error};
use super::{api_err, start_pod};
use crate::api::compare::{CompareTask, CompareTaskStatus};
use crate::api::validate::{FieldError, Validate};
use crate::api::{NodeType, SyncJob};
use crate::lifecycle::compare::{self as plan, CompareAction, CompareObserved, RunState};

/// Status fields the compare worker owns.
const WORKER_FIELDS: [&str; 4] = ["result", "tables", "differences", "reportRef"];

/// The name of a task's report ConfigMap.
pub fn report_name(task: &str) -> String {
    format!("{task}-report")
}

/// Creates the report ConfigMap `report`, empty until the worker fills it in, owned by the task:
/// `Some(message)` when one of that name belongs to someone else.
async fn create_report(
    ctx: &Context,
    ns: &str,
    report: &str,
    task: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<Option<String>, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let desired = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(report.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(report_labels(task)),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        ..Default::default()
    };
    identity::create_owned(&maps, &desired, owner).await
}

/// The labels of a task's report ConfigMap.
pub fn report_labels(task: &str) -> std::collections::BTreeMap<String, String> {
    [
        (pods::LABEL_NAME.to_owned(), "ferry".to_owned()),
        (pods::LABEL_COMPONENT.to_owned(), "compare-report".to_owned()),
        (LABEL_JOB.to_owned(), pods::label_value(task)),
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
    ]
    .into()
}

fn operator_fields(status: &CompareTaskStatus) -> serde_json::Value {
    super::without_fields(status, &WORKER_FIELDS)
}

/// The worker identity of `task`'s compare pods.
fn grant_of(task: &CompareTask, report: &str) -> Grant {
    Grant::Compare {
        task: task.name_any(),
        job: task.spec.sync_job_ref.as_ref().map(|r| r.name.clone()),
        report: report.to_owned(),
    }
}

/// One reconcile of a CompareTask.
pub async fn reconcile(task: Arc<CompareTask>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let name = task.metadata.name.clone().ok_or(Error::Malformed("metadata.name"))?;
    let ns = task.metadata.namespace.clone().ok_or(Error::Malformed("metadata.namespace"))?;
    let tasks: Api<CompareTask> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    let mut spec_errors = task.spec.validate();
    let job = match &task.spec.sync_job_ref {
        Some(r) if spec_errors.is_empty() => {
            let jobs: Api<SyncJob> = Api::namespaced(ctx.client.clone(), &ns);
            let job = jobs.get_opt(&r.name).await.map_err(api_err(format!("reading SyncJob {}", r.name)))?;
            if job.is_none() {
                spec_errors.push(FieldError {
                    path: "spec.syncJobRef.name".into(),
                    message: format!("SyncJob {:?} does not exist in namespace {ns}", r.name),
                });
            }
            job
        }
        _ => None,
    };
    // The compare pod runs with the named job's worker overrides.
    if let Some(j) = &job {
        let at = format!("spec.syncJobRef (SyncJob {}: spec.worker)", j.name_any());
        spec_errors.extend(ctx.policy.check(j.spec.worker.as_ref(), &at));
    }
    // The report ConfigMap `<task>-report` is the task's: one of that name that the task does not
    // own (a user's) is never taken over, and no run starts until the name is free.
    let report = report_name(&name);
    let mut report_exists = false;
    if spec_errors.is_empty() {
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        let existing = maps.get_opt(&report).await.map_err(api_err(format!("reading ConfigMap {report}")))?;
        let uid = task.metadata.uid.as_deref().unwrap_or_default();
        report_exists = existing.is_some();
        if let Some(cm) = existing
            && !owned_by(&cm, uid)
        {
            spec_errors.push(FieldError {
                path: "metadata.name".into(),
                message: format!(
                    "the report ConfigMap {report} exists and does not belong to this CompareTask; Ferry does not \
                     take over objects it did not create: delete or rename that ConfigMap, or rename the task"
                ),
            });
        }
    }
    let selector = format!(
        "{LABEL_JOB}={},{LABEL_MANAGED_BY}={MANAGER},{}=compare",
        pods::label_value(&name),
        pods::LABEL_COMPONENT
    );
    let uid = task.metadata.uid.clone().unwrap_or_default();
    // Only the task's own pods count, and only they are ever stopped.
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_err("listing pods"))?
        .items
        .into_iter()
        .filter(|p| owned_by(p, &uid))
        .collect();
    let status = task.status.clone().unwrap_or_default();
    let run = match find(&pods, Role::Compare, i64::from(status.runs)).map(pod_state) {
        None => RunState::Absent,
        Some(PodState::Pending) => RunState::Pending,
        Some(PodState::Running) => RunState::Running,
        Some(PodState::Succeeded) => RunState::Succeeded,
        Some(PodState::Failed { code, message }) => RunState::Failed { code, message },
    };
    let observed = CompareObserved { generation: task.metadata.generation.unwrap_or(0), spec_errors, run };
    let decided = plan::plan(&task.spec, &status, &observed, jiff::Timestamp::now());

    let reference = task.object_ref(&());
    let mut rejected = None;
    let mut identity_ensured = false;
    for action in &decided.actions {
        match action {
            CompareAction::StartRun { run } => {
                // The endpoints the compare worker will use: the job's, or the task's own.
                let (source_ep, target_ep) = match &job {
                    Some(j) => (Some(j.spec.source.clone()), Some(j.spec.target.clone())),
                    None => (task.spec.source.clone(), task.spec.target.clone()),
                };
                let source = source_ep.as_ref().and_then(|e| e.password_secret_ref.clone());
                let target = target_ep.as_ref().and_then(|e| e.password_secret_ref.clone());
                let source_tls = source_ep.and_then(|e| e.tls);
                let target_tls = target_ep.and_then(|e| e.tls);
                let owner = task.controller_owner_ref(&()).ok_or(Error::Malformed("metadata.uid"))?;
                let grant = grant_of(&task, &report);
                // The operator creates the report ConfigMap, owned by the task; the worker may
                // only update that one.
                let created =
                    if report_exists { None } else { create_report(&ctx, &ns, &report, &name, &owner).await? };
                if let Some(taken) = created {
                    rejected = Some((super::REASON_NAME_TAKEN, taken));
                    continue;
                }
                let pod = pods::build_for(PodParams {
                    owner,
                    name: &name,
                    namespace: &ns,
                    role: Role::Compare,
                    n: i64::from(*run),
                    args: vec!["worker".into(), "compare".into(), "--job".into(), format!("{ns}/{name}")],
                    source: source.as_ref(),
                    target: target.as_ref(),
                    source_tls: source_tls.as_ref(),
                    target_tls: target_tls.as_ref(),
                    node_type: job.as_ref().map_or(NodeType::Small, |j| j.spec.node_type),
                    overrides: job.as_ref().and_then(|j| j.spec.worker.clone()).unwrap_or_default(),
                    default_image: &ctx.policy.default_image,
                    service_account: grant.account(),
                });
                identity_ensured = true;
                rejected = rejected.or(start_pod(&ctx, &grant, pod).await?.refusal());
            }
            CompareAction::StopRun => {
                for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                    match pods_api.delete(&p.name_any(), &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(Error::Api { what: format!("deleting pod {}", p.name_any()), source: e }),
                    }
                }
            }
            CompareAction::Event { warning, reason, message } => {
                super::publish_event(&ctx.recorder, &reference, *warning, reason, message).await;
            }
        }
    }
    // A compare pod that waits to start needs its identity: one deleted meanwhile (by hand) is
    // created again, as for a SyncJob's pods. A task being deleted leaves its pods to the
    // garbage collector.
    let stopping = decided.actions.contains(&CompareAction::StopRun);
    let waiting = pods.iter().any(super::waits_to_start);
    if waiting && !identity_ensured && !stopping && task.metadata.deletion_timestamp.is_none() {
        let owner = task.controller_owner_ref(&()).ok_or(Error::Malformed("metadata.uid"))?;
        let grant = grant_of(&task, &report);
        rejected = rejected.or(super::restore_identity(&ctx, &grant, &owner, &ns).await?);
    }
    let mut decided = decided;
    if let Some((reason, message)) = &rejected {
        let generation = task.metadata.generation.unwrap_or(0);
        super::report_rejection(&ctx, &reference, &mut decided.status.conditions, generation, (reason, message)).await;
    }
    let new = operator_fields(&decided.status);
    if new != operator_fields(&status) {
        let patch = json!({"apiVersion": CompareTask::api_version(&()), "kind": CompareTask::kind(&()), "status": new});
        tasks
            .patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(api_err("applying the status"))?;
    }
    Ok(match decided.requeue_after {
        _ if rejected.is_some() => Requeue::requeue(super::POD_REJECTED_RETRY),
        Some(d) => Requeue::requeue(d),
        None => Requeue::requeue(Duration::from_secs(300)),
    })
}
