//! `ferry operator`: the SyncJob, CompareTask and BatchJob controllers with leader election, `/metrics`, `/healthz` and
//! `/readyz`, and a graceful shutdown on SIGTERM (or on losing the lease).
//!
//! SyncJobs are watched through [`DeserializeGuard`], so one object that does not deserialize
//! is logged and skipped instead of stalling the watch; the pods the operator owns wake their
//! job on every change.

pub mod http;
pub mod leader;
pub mod metrics;
pub mod resources;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;

use self::http::Health;
use self::metrics::Metrics;
use crate::api::compare::CompareTask;
use crate::api::{BatchJob, SyncJob};
use crate::controller::pods::{LABEL_MANAGED_BY, MANAGER};
use crate::controller::{self, Context};
use crate::lifecycle::batch::LABEL_BATCH;

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
    /// Compete for the lease before reconciling.
    pub leader_election: bool,
    /// Namespace of the lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// What jobs may ask of their worker pods; its default image is that of worker pods when a
    /// job names none.
    pub policy: crate::controller::policy::WorkerPolicy,
}

/// Why the operator could not run.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No usable Kubernetes configuration, or the API refused us.
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// The leader lease cannot be used.
    #[error("leader election: {0}")]
    Lease(#[from] leader::LeaseError),
    /// The endpoints' port.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// The shared context of the three controllers.
type Shared = Arc<(Arc<Context>, Arc<Metrics>)>;

/// Runs `reconcile` on an object that deserialized, timed and counted under `kind`; an object
/// that did not is logged and skipped until it changes.
async fn guarded<K, F, Fut>(
    kind: &'static str,
    guard: &DeserializeGuard<K>,
    ctx: &Shared,
    reconcile: F,
) -> Result<Action, controller::Error>
where
    K: Clone,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, controller::Error>>,
{
    let (ctx, metrics) = (&ctx.0, &ctx.1);
    let _timer = metrics.reconcile(kind);
    match &guard.0 {
        Ok(object) => {
            let result = reconcile(Arc::new(object.clone()), Arc::clone(ctx)).await;
            if let Err(e) = &result {
                metrics.failed(kind, e.category());
            }
            result
        }
        Err(invalid) => {
            metrics.failed(kind, "malformed");
            tracing::warn!(kind, error = %invalid, "an object does not deserialize; skipped until it changes");
            Ok(Action::await_change())
        }
    }
}

async fn reconcile_syncjob(guard: Arc<DeserializeGuard<SyncJob>>, ctx: Shared) -> Result<Action, controller::Error> {
    guarded("syncjob", &guard, &ctx, controller::syncjob::reconcile).await
}

async fn reconcile_compare(
    guard: Arc<DeserializeGuard<CompareTask>>,
    ctx: Shared,
) -> Result<Action, controller::Error> {
    guarded("comparetask", &guard, &ctx, crate::controller::compare::reconcile).await
}

async fn reconcile_batch(guard: Arc<DeserializeGuard<BatchJob>>, ctx: Shared) -> Result<Action, controller::Error> {
    guarded("batchjob", &guard, &ctx, crate::controller::batch::reconcile).await
}

/// What a failed reconcile does: try again soon after a conflict, later after anything else.
fn error_policy<K>(_object: Arc<K>, error: &controller::Error, _ctx: Shared) -> Action {
    tracing::warn!(error = %error, category = error.category(), "reconcile failed");
    Action::requeue(if error.category() == "conflict" {
        std::time::Duration::from_secs(1)
    } else {
        std::time::Duration::from_secs(15)
    })
}

/// The cached objects that deserialized.
fn valid<K: Clone>(guards: Vec<Arc<DeserializeGuard<K>>>) -> Vec<Arc<K>> {
    guards.iter().filter_map(|g| g.0.as_ref().ok().map(|k| Arc::new(k.clone()))).collect()
}

/// Logs what a controller's stream yields that is not a successful reconcile.
async fn log<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "controller event");
    }
}

/// Runs the operator until SIGTERM or the loss of the lease.
pub async fn run(opts: Options) -> Result<(), OperatorError> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let exposed = Arc::clone(&metrics);
    let health = Arc::new(Health { metrics: Box::new(move || exposed.encode()), ready: AtomicBool::new(false) });
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| OperatorError::Listen { addr: opts.listen, source })?;
    tokio::spawn(http::serve(listener, Arc::clone(&health)));
    // A standby replica is ready too: it serves its endpoints and waits for the lease.
    health.ready.store(true, Ordering::SeqCst);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            crate::signals::first().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    }
    if opts.leader_election {
        let leases = Api::<Lease>::namespaced(client.clone(), &opts.namespace);
        let elector = leader::Elector::new(leases, &opts.namespace, MANAGER, &opts.identity);
        tracing::info!(identity = %opts.identity, "waiting for the lease");
        tokio::select! {
            held = elector.acquire() => held?,
            _ = stop_rx.wait_for(|s| *s) => return Ok(()),
        }
        tracing::info!(identity = %opts.identity, "leading");
        tokio::spawn(async move {
            elector.keep().await;
            let _ = stop_tx.send(true);
        });
    }

    let recorder =
        Recorder::new(client.clone(), Reporter { controller: MANAGER.into(), instance: Some(opts.identity.clone()) });
    let resources = Arc::clone(&metrics.resources);
    let ctx = Arc::new((Arc::new(Context { client: client.clone(), policy: opts.policy.clone(), recorder }), metrics));
    let jobs = Api::<DeserializeGuard<SyncJob>>::all(client.clone());
    let tasks = Api::<DeserializeGuard<CompareTask>>::all(client.clone());
    let batches = Api::<DeserializeGuard<BatchJob>>::all(client.clone());
    let pods = Api::<Pod>::all(client);
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let children = watcher::Config::default().labels(LABEL_BATCH);
    let stopped = |rx: watch::Receiver<bool>| async move {
        let mut rx = rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let sync_jobs =
        Controller::new(jobs.clone(), watcher::Config::default().any_semantic()).owns(pods.clone(), owned.clone());
    let compare_tasks = Controller::new(tasks, watcher::Config::default().any_semantic()).owns(pods, owned);
    let batch_jobs = Controller::new(batches, watcher::Config::default().any_semantic()).owns(jobs, children);
    // The per-resource series read the controllers' caches at scrape time.
    let (job_store, task_store, batch_store) = (sync_jobs.store(), compare_tasks.store(), batch_jobs.store());
    resources.watch(move || resources::Snapshot {
        jobs: valid(job_store.state()),
        tasks: valid(task_store.state()),
        batches: valid(batch_store.state()),
    });
    let sync_jobs = sync_jobs
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile_syncjob, error_policy, Arc::clone(&ctx))
        .for_each(log);
    let compare_tasks = compare_tasks
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile_compare, error_policy, Arc::clone(&ctx))
        .for_each(log);
    let batch_jobs =
        batch_jobs.graceful_shutdown_on(stopped(stop_rx)).run(reconcile_batch, error_policy, ctx).for_each(log);
    futures::join!(sync_jobs, compare_tasks, batch_jobs);
    Ok(())
}
