//! The SyncJob controller: observe the job and its pods, let [`lifecycle::plan`] decide, carry
//! out the plan's actions through the API, and apply the operator-owned status fields.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::Recorder;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::pods::{self, LABEL_JOB, LABEL_MANAGED_BY, MANAGER, Role};
use super::{api_err, observe};
use crate::api::{SyncJob, SyncJobStatus};
use crate::lifecycle::{self, Action};

/// Finalizer that holds deletion until the source resources are released.
pub const FINALIZER: &str = "ferry.dev/release";

/// Status fields the worker owns (written with its own field manager); the operator never
/// applies them.
const WORKER_FIELDS: [&str; 3] = ["precheck", "progress", "checkpoint"];

/// What the controller shares between reconciles.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Image of worker pods when the job does not name one: the operator's own.
    pub image: String,
    /// Publishes Events.
    pub recorder: Recorder,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        source: kube::Error,
    },
    /// The object lacks a field every stored object has.
    #[error("the resource has no {0}")]
    Malformed(&'static str),
}

impl Error {
    /// A stable label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => "conflict",
            Error::Api { .. } => "api",
            Error::Malformed(_) => "malformed",
        }
    }
}

/// The operator's part of a status, as JSON for server-side apply.
fn operator_fields(status: &SyncJobStatus) -> serde_json::Value {
    super::without_fields(status, &WORKER_FIELDS)
}

/// Creates `pod` unless it exists (names are per job and attempt, so this is idempotent).
async fn ensure_pod(pods: &Api<Pod>, pod: Pod) -> Result<(), Error> {
    let name = pod.name_any();
    match pods.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::Api { what: format!("creating pod {name}"), source: e }),
    }
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
        let mut finalizers = job.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        let patch = json!({"metadata": {"finalizers": finalizers}});
        jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("adding the finalizer"))?;
    }

    let selector = format!("{LABEL_JOB}={name},{LABEL_MANAGED_BY}={MANAGER}");
    let pods = pods_api.list(&ListParams::default().labels(&selector)).await.map_err(api_err("listing pods"))?.items;
    let observed = observe::observe(&job, &pods);
    let status = job.status.clone().unwrap_or_default();
    let plan = lifecycle::plan(&job.spec, &status, &observed, jiff::Timestamp::now());
    let old_attempt = i64::from(status.worker.as_ref().map_or(0, |w| w.attempt));

    let reference = job.object_ref(&());
    let mut deleted = std::collections::HashSet::new();
    for action in &plan.actions {
        match action {
            Action::RunPrecheck { generation } => {
                let pod = pods::build(&job, Role::Precheck, *generation, &ctx.image).ok_or(Error::Malformed("uid"))?;
                ensure_pod(&pods_api, pod).await?;
            }
            Action::StartWorker { attempt } => {
                let attempt = i64::from(*attempt);
                delete_pods(&pods_api, &pods, Role::Worker, Some(attempt), &mut deleted).await?;
                let pod = pods::build(&job, Role::Worker, attempt, &ctx.image).ok_or(Error::Malformed("uid"))?;
                ensure_pod(&pods_api, pod).await?;
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
            Action::RunRelease { attempt } => {
                let pod =
                    pods::build(&job, Role::Release, i64::from(*attempt), &ctx.image).ok_or(Error::Malformed("uid"))?;
                ensure_pod(&pods_api, pod).await?;
            }
            Action::RemoveFinalizer => {
                let finalizers: Vec<String> = job.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
                let patch = json!({"metadata": {"finalizers": finalizers}});
                jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(api_err("removing the finalizer"))?;
                // The object is about to go: its status no longer matters.
                return Ok(Requeue::await_change());
            }
            Action::Event { warning, reason, message } => {
                super::publish_event(&ctx.recorder, &reference, *warning, reason, message).await;
            }
        }
    }

    let mut plan = plan;
    if let Some(attempt) =
        plan.actions.iter().find_map(|a| if let Action::StartWorker { attempt } = a { Some(*attempt) } else { None })
        && let Some(w) = plan.status.worker.as_mut()
    {
        w.pod = Some(pods::pod_name(&name, Role::Worker, i64::from(attempt)));
    }
    let new = operator_fields(&plan.status);
    if new != operator_fields(&status) {
        let patch = json!({"apiVersion": SyncJob::api_version(&()), "kind": SyncJob::kind(&()), "status": new});
        jobs.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(api_err("applying the status"))?;
    }
    Ok(match plan.requeue_after {
        Some(d) => Requeue::requeue(d),
        // Pod changes wake the job through `owns`; look again now and then regardless.
        None => Requeue::requeue(Duration::from_secs(300)),
    })
}
