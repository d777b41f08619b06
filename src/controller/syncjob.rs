//! The SyncJob controller: observe the job and its pods, let [`lifecycle::plan`] decide, carry
//! out the plan's actions through the API, and apply the operator-owned status fields.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::identity::{Grant, owned_by};
use super::pods::{self, LABEL_JOB, LABEL_MANAGED_BY, MANAGER, Role};
use super::{Context, Error, api_err, observe, start_pod};
use crate::api::{SlotStatus, SyncJob, SyncJobStatus};
use crate::lifecycle::{self, Action};

/// Finalizer that holds deletion until the source resources are released.
pub const FINALIZER: &str = "ferry.dev/release";
/// The garbage collector's finalizer on an object whose dependents it is deleting first.
const FOREGROUND_DELETION: &str = "foregroundDeletion";

/// Status fields the worker owns (written with its own field manager); the operator never
/// applies them.
const WORKER_FIELDS: [&str; 4] = ["precheck", "progress", "checkpoint", "sequences"];

/// The operator's part of a status, as JSON for server-side apply: without the worker's fields,
/// and of `slot` only what the operator tracks (`inactiveSince`, `expiredAt`), so the worker's
/// measurement stays the worker's.
fn operator_fields(status: &SyncJobStatus) -> serde_json::Value {
    let mut v = super::without_fields(status, &WORKER_FIELDS);
    if let Some(map) = v.as_object_mut() {
        let keep = map.get_mut("slot").and_then(|s| s.as_object_mut()).is_some_and(|slot| {
            for f in SlotStatus::WORKER_FIELDS {
                slot.remove(f);
            }
            !slot.is_empty()
        });
        if !keep {
            map.remove("slot");
        }
    }
    v
}

/// Deletes the job's pods of `role` except the one of attempt `keep`; `deleted` remembers what
/// this reconcile already deleted.
async fn delete_pods(
    pods: &Api<Pod>,
    existing: &[Pod],
    role: Role,
    keep: Option<i64>,
    deleted: &mut std::collections::HashSet<String>,
) -> Result<(), Error> {
    for p in existing {
        if deleted.contains(&p.name_any()) {
            continue;
        }
        let labels = p.labels();
        let is_role = labels.get(pods::LABEL_COMPONENT).and_then(|c| Role::from_label(c)) == Some(role);
        let attempt = labels.get(pods::LABEL_ATTEMPT).and_then(|a| a.parse::<i64>().ok());
        if !is_role || attempt == keep || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        // SIGTERM: a worker stops at its next checkpoint within the grace period.
        deleted.insert(p.name_any());
        match pods.delete(&p.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Api { what: format!("deleting pod {}", p.name_any()), source: e }),
        }
    }
    Ok(())
}

/// One reconcile of a SyncJob.
pub async fn reconcile(job: Arc<SyncJob>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let name = job.metadata.name.clone().ok_or(Error::Malformed("metadata.name"))?;
    let ns = job.metadata.namespace.clone().ok_or(Error::Malformed("metadata.namespace"))?;
    let jobs: Api<SyncJob> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    let deleting = job.metadata.deletion_timestamp.is_some();
    if !deleting && !job.finalizers().iter().any(|f| f == FINALIZER) {
        super::add_finalizer(&jobs, &*job, FINALIZER).await?;
    }

    let selector = format!("{LABEL_JOB}={},{LABEL_MANAGED_BY}={MANAGER}", pods::label_value(&name));
    let uid = job.metadata.uid.clone().unwrap_or_default();
    // Only the job's own pods: labels alone can be put on any pod, and one the job does not own
    // must neither count as its worker nor be deleted with it.
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_err("listing pods"))?
        .items
        .into_iter()
        .filter(|p| owned_by(p, &uid))
        .collect();
    let mut observed = observe::observe(&job, &pods);
    observed.spec_errors.extend(ctx.policy.check(job.spec.worker.as_ref(), "spec.worker"));
    let status = job.status.clone().unwrap_or_default();
    let plan = lifecycle::plan(&job.spec, &status, &observed, jiff::Timestamp::now());
    let old_attempt = i64::from(status.worker.as_ref().map_or(0, |w| w.attempt));

    let reference = job.object_ref(&());
    let grant = Grant::SyncJob { job: name.clone() };
    let image = &ctx.policy.default_image;
    let mut deleted = std::collections::HashSet::new();
    let mut rejected = None;
    let mut waiting_for_gc = false;
    // Whether this reconcile made sure of the worker identity already (every pod start does).
    let mut identity_ensured = false;
    let collecting = job.finalizers().iter().any(|f| f == FOREGROUND_DELETION);
    for action in &plan.actions {
        match action {
            Action::RunPrecheck { generation } => {
                let pod = pods::build(&job, Role::Precheck, *generation, image).ok_or(Error::Malformed("uid"))?;
                identity_ensured = true;
                rejected = rejected.or(start_pod(&ctx, &grant, pod).await?.refusal());
            }
            Action::StartWorker { attempt } => {
                let attempt = i64::from(*attempt);
                delete_pods(&pods_api, &pods, Role::Worker, Some(attempt), &mut deleted).await?;
                let pod = pods::build(&job, Role::Worker, attempt, image).ok_or(Error::Malformed("uid"))?;
                identity_ensured = true;
                rejected = rejected.or(start_pod(&ctx, &grant, pod).await?.refusal());
            }
            Action::StopWorker => {
                let keep = plan
                    .actions
                    .iter()
                    .find_map(
                        |a| if let Action::StartWorker { attempt } = a { Some(i64::from(*attempt)) } else { None },
                    )
                    .filter(|a| *a != old_attempt);
                delete_pods(&pods_api, &pods, Role::Worker, keep, &mut deleted).await?;
            }
            // While the garbage collector deletes the job's dependents (foreground deletion, as
            // when its BatchJob is deleted so), a release pod or its ServiceAccount and Role
            // created now could be deleted under it: wait until that is done, then create them
            // again as needed.
            Action::RunRelease { .. } if collecting => {
                waiting_for_gc = true;
            }
            Action::RunRelease { attempt } => {
                let pod =
                    pods::build(&job, Role::Release, i64::from(*attempt), image).ok_or(Error::Malformed("uid"))?;
                identity_ensured = true;
                rejected = rejected.or(start_pod(&ctx, &grant, pod).await?.refusal());
            }
            Action::RemoveFinalizer => {
                super::remove_finalizer(&jobs, &*job, FINALIZER).await?;
                // The object is about to go: its status no longer matters.
                return Ok(Requeue::await_change());
            }
            Action::Event { warning, reason, message } => {
                super::publish_event(&ctx.recorder, &reference, *warning, reason, message).await;
            }
        }
    }

    // A pod created around the moment the garbage collector deleted the job's dependents (its
    // BatchJob deleted in the foreground, the job deleted meanwhile) can outlive its
    // ServiceAccount, Role and RoleBinding, and never start without them; the plan sees only a
    // pod that has not started yet. So while one of the job's pods waits to start, its identity
    // is made sure of again — once the collector is done, since it would delete it again. The
    // collector's removal of its finalizer wakes this reconcile.
    let waiting = pods.iter().any(|p| !deleted.contains(&p.name_any()) && super::waits_to_start(p));
    if waiting && !identity_ensured && !collecting {
        let owner = job.controller_owner_ref(&()).ok_or(Error::Malformed("metadata.uid"))?;
        rejected = rejected.or(super::restore_identity(&ctx, &grant, &owner, &ns).await?);
    }
    waiting_for_gc |= waiting && collecting;

    let mut plan = plan;
    if let Some(attempt) =
        plan.actions.iter().find_map(|a| if let Action::StartWorker { attempt } = a { Some(*attempt) } else { None })
        && let Some(w) = plan.status.worker.as_mut()
    {
        w.pod = Some(pods::pod_name(&name, Role::Worker, i64::from(attempt)));
    }
    if let Some((reason, message)) = &rejected {
        let generation = job.metadata.generation.unwrap_or(0);
        super::report_rejection(&ctx, &reference, &mut plan.status.conditions, generation, (reason, message)).await;
    }
    let new = operator_fields(&plan.status);
    if new != operator_fields(&status) {
        let patch = json!({"apiVersion": SyncJob::api_version(&()), "kind": SyncJob::kind(&()), "status": new});
        jobs.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(api_err("applying the status"))?;
    }
    Ok(match plan.requeue_after {
        _ if rejected.is_some() => Requeue::requeue(super::POD_REJECTED_RETRY),
        _ if waiting_for_gc => Requeue::requeue(Duration::from_secs(2)),
        Some(d) => Requeue::requeue(d),
        // Pod changes wake the job through `owns`; look again now and then regardless.
        None => Requeue::requeue(Duration::from_secs(300)),
    })
}
