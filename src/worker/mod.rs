//! `ferry worker precheck|sync|release --job NAMESPACE/NAME`: the entrypoints of the pods the
//! SyncJob controller runs. A worker reads its SyncJob from the API, takes the passwords from
//! the environment (wired by the operator from the job's Secrets), runs the engine, and writes
//! its part of the status — precheck results, progress, checkpoint — with server-side apply
//! under its own field manager, at most every few seconds. On failure it leaves `CODE: message`
//! as the pod's termination message and exits non-zero.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use crate::api::strict::{self, Kind};
use crate::api::validate::describe;
use crate::api::{Checkpoint, DebugOptions, Progress, SequencesStatus, SlotStatus, SyncJob, TransferStage};
use crate::controller::pods::{ENV_SOURCE_PASSWORD, ENV_TARGET_PASSWORD, ENV_TLS_DIR, TLS_DIR};
use crate::engine::tls::TlsMaterial;
use crate::engine::{self, Credentials, EngineError, Job, Outcome, ProgressSink, Tracker};
use crate::lifecycle;

pub mod compare;

/// The sync worker's field manager for server-side apply (`status.progress`, `status.checkpoint`).
pub const FIELD_MANAGER: &str = "ferry-worker";
/// The precheck worker's field manager (`status.precheck`). Separate from [`FIELD_MANAGER`]:
/// server-side apply removes the fields a manager stops sending, so one manager for both would
/// let the sync worker's progress erase the precheck results.
pub const PRECHECK_FIELD_MANAGER: &str = "ferry-worker-precheck";
/// Most frequent status write while nothing but counters change.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(3);
/// Where Kubernetes reads a container's termination message.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// What a worker pod does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Check both databases and write `status.precheck`.
    Precheck,
    /// Run the transfer.
    Sync,
    /// Release the source resources.
    Release,
    /// Run a CompareTask (`--job` names the CompareTask).
    Compare,
}

/// Why a worker ended badly: a stable code and a message without secrets.
#[derive(Debug)]
pub struct WorkerError {
    /// `SOURCE_CONNECT`, `JOB_NOT_FOUND`, …
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl WorkerError {
    fn new(code: &str, message: impl Into<String>) -> WorkerError {
        WorkerError { code: code.to_owned(), message: message.into() }
    }

    /// `CODE: message`, as the termination message and the last line of the log.
    pub fn line(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

impl From<EngineError> for WorkerError {
    /// Without the row values a database quoted (see [`WorkerError::engine`]).
    fn from(e: EngineError) -> WorkerError {
        WorkerError::engine(&e, false)
    }
}

impl WorkerError {
    /// An engine error, with the row values a database quoted only when `row_values` (the
    /// resource's `spec.debug.rowValuesInErrors`): this message becomes the termination message,
    /// and from there `status.lastError`, the conditions and the Events.
    pub fn engine(e: &EngineError, row_values: bool) -> WorkerError {
        WorkerError::new(e.code(), e.text(row_values))
    }
}

fn api_error(what: &str) -> impl FnOnce(kube::Error) -> WorkerError + '_ {
    move |e| WorkerError::new("KUBE_API", format!("{what}: {e}"))
}

/// Reads the resource `namespace/name` of `kind` and refuses it when its `spec` holds a field this
/// build does not know (`SPEC_UNKNOWN_FIELD`, every such field named); a resource that is not
/// there is `None`.
///
/// In a cluster the API server prunes the fields its CRD does not declare, so a user's typo never
/// gets this far: an unknown field here means version skew — the installed CRD is newer than this
/// worker's image, and deserializing would drop what the newer version asks for in silence.
pub(crate) async fn get_strict<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    kind: Kind,
) -> Result<Option<K>, WorkerError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()));
    let what = format!("{} {namespace}/{name}", kind.name());
    let object = match api.get(name).await {
        Ok(o) => o,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(WorkerError::new("KUBE_API", format!("reading {what}: {e}"))),
    };
    if let Some(spec) = object.data.get("spec") {
        let unknown = strict::check_spec(kind, spec);
        if !unknown.is_empty() {
            return Err(WorkerError::new(
                "SPEC_UNKNOWN_FIELD",
                format!(
                    "{what} {}: this worker (Ferry {}) does not know these fields; run the operator and worker image that match the installed CRDs",
                    describe(&unknown),
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
    }
    object.try_parse().map(Some).map_err(|e| WorkerError::new("KUBE_API", format!("reading {what}: {e}")))
}

/// Writes the termination message (best effort: outside a pod the file may not exist).
pub fn write_termination(line: &str) {
    let path = std::env::var("FERRY_TERMINATION_LOG").unwrap_or_else(|_| TERMINATION_LOG.to_owned());
    let _ = std::fs::write(path, line);
}

/// Passwords from the environment the operator wired from the job's Secrets, and the TLS files
/// it mounted from the job's Secrets and ConfigMaps.
pub fn credentials_from_env() -> Credentials {
    let dir = std::path::PathBuf::from(std::env::var(ENV_TLS_DIR).unwrap_or_else(|_| TLS_DIR.to_owned()));
    Credentials {
        source_password: std::env::var(ENV_SOURCE_PASSWORD).ok(),
        target_password: std::env::var(ENV_TARGET_PASSWORD).ok(),
        source_tls: tls_files(&dir.join("source")),
        target_tls: tls_files(&dir.join("target")),
    }
}

/// The TLS files of one side, those that are there (the pod mounts only what the spec names).
fn tls_files(dir: &std::path::Path) -> TlsMaterial {
    let read = |name: &str| std::fs::read(dir.join(name)).ok();
    TlsMaterial { ca_pem: read("ca.crt"), client_cert_pem: read("tls.crt"), client_key_pem: read("tls.key") }
}

/// Applies `status` fields of the job with field manager `manager`.
async fn apply_status(
    api: &Api<SyncJob>,
    name: &str,
    manager: &str,
    status: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch = json!({"apiVersion": SyncJob::api_version(&()), "kind": SyncJob::kind(&()), "status": status});
    api.patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch)).await.map(|_| ())
}

/// What the worker writes to the job's status: progress and checkpoint (none before the engine's
/// first report), the replication slot's last measurement, and the sequences' values.
#[derive(Clone, Debug, Default)]
struct Report {
    progress: Option<(Progress, Option<Checkpoint>)>,
    slot: Option<SlotStatus>,
    sequences: Option<SequencesStatus>,
}

/// Progress from the engine, handed to the task that writes it; reconnects as Events on the job.
struct Latest {
    tx: watch::Sender<Report>,
    recorder: kube::runtime::events::Recorder,
    job: k8s_openapi::api::core::v1::ObjectReference,
}

impl ProgressSink for Latest {
    fn report(&self, progress: &Progress, checkpoint: Option<&Checkpoint>) {
        self.tx.send_modify(|r| r.progress = Some((progress.clone(), checkpoint.cloned())));
    }

    fn slot(&self, slot: Option<&SlotStatus>) {
        self.tx.send_modify(|r| r.slot = slot.map(SlotStatus::worker_part));
    }

    fn sequences(&self, sequences: &SequencesStatus) {
        self.tx.send_modify(|r| r.sequences = Some(sequences.clone()));
    }

    fn reconnecting(&self, reconnects: u32, code: &str, message: &str) {
        let (recorder, job) = (self.recorder.clone(), self.job.clone());
        let note =
            format!("{code}: {message}; starting again from the checkpoint (reconnect {reconnects} of this worker)");
        tokio::spawn(async move {
            crate::controller::publish_event(&recorder, &job, true, "Reconnecting", &note).await;
        });
    }
}

/// Writes progress to the job's status: at once when the stage changes, otherwise at most every
/// [`STATUS_INTERVAL`]. Returns when the sender is gone, after writing the last value.
async fn publish(api: Api<SyncJob>, name: String, mut rx: watch::Receiver<Report>) {
    let mut last_stage: Option<TransferStage> = None;
    loop {
        let closed = rx.changed().await.is_err();
        let latest = rx.borrow_and_update().clone();
        if let Some((progress, checkpoint)) = latest.progress {
            let stage_changed = progress.stage != last_stage;
            last_stage = progress.stage;
            let mut status = json!({"progress": progress, "checkpoint": checkpoint});
            // Left out once the job dropped its slot: server-side apply then removes what this
            // manager wrote of it, and leaves the operator's fields of `slot` alone.
            if let Some(slot) = latest.slot {
                status["slot"] = json!(slot);
            }
            if let Some(sequences) = latest.sequences {
                status["sequences"] = json!(sequences);
            }
            if let Err(e) = apply_status(&api, &name, FIELD_MANAGER, status).await {
                tracing::warn!(error = %e, "could not write progress to the job's status");
            }
            if !stage_changed && !closed {
                tokio::time::sleep(STATUS_INTERVAL).await;
            }
        }
        if closed {
            return;
        }
    }
}

/// Runs `task` for the job `namespace/name` with `client` and the job's passwords; a sync stops
/// at a checkpoint when `stop` turns true.
pub async fn run(
    client: Client,
    task: Task,
    job: &str,
    credentials: Credentials,
    stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let (namespace, name) = job
        .split_once('/')
        .ok_or_else(|| WorkerError::new("USAGE", format!("--job {job:?}: expected NAMESPACE/NAME")))?;
    if task == Task::Compare {
        return compare::run(client, namespace, name, credentials).await;
    }
    let api: Api<SyncJob> = Api::namespaced(client.clone(), namespace);
    let sj: SyncJob = get_strict(&client, namespace, name, Kind::SyncJob)
        .await?
        .ok_or_else(|| WorkerError::new("JOB_NOT_FOUND", format!("SyncJob {job} not found")))?;
    let row_values = DebugOptions::row_values(sj.spec.debug.as_ref());
    match task {
        Task::Precheck => {
            let items = engine::precheck(&sj.spec, &credentials).await;
            let generation = sj.metadata.generation.unwrap_or(0);
            let status = lifecycle::precheck_status(items, sj.spec.precheck.as_ref(), generation);
            let failed: Vec<&str> = status
                .items
                .iter()
                .filter(|i| i.result == crate::api::PrecheckResult::Failed)
                .map(|i| i.item.as_str())
                .collect();
            tracing::info!(passed = ?status.passed, failed = ?failed, "precheck done");
            apply_status(&api, name, PRECHECK_FIELD_MANAGER, json!({"precheck": status}))
                .await
                .map_err(api_error("writing the precheck"))
        }
        Task::Compare => Ok(()),
        Task::Release => {
            engine::release(job, &sj.spec, &credentials).await.map_err(|e| WorkerError::engine(&e, row_values))?;
            tracing::info!("source resources released");
            Ok(())
        }
        Task::Sync => {
            // The previous attempt's measurement stands until this one measures: the slot is the
            // same, and a worker that fails before measuring must not erase it.
            let previous = sj
                .status
                .as_ref()
                .and_then(|s| s.slot.as_ref())
                .filter(|s| s.name.is_some())
                .map(SlotStatus::worker_part);
            // Likewise the sequences' values, until this attempt sets them.
            let sequences = sj.status.as_ref().and_then(|s| s.sequences.clone());
            let (tx, rx) = watch::channel(Report { progress: None, slot: previous, sequences });
            let publisher = tokio::spawn(publish(api.clone(), name.to_owned(), rx));
            let reporter = kube::runtime::events::Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("HOSTNAME").ok(),
            };
            let recorder = kube::runtime::events::Recorder::new(client, reporter);
            let tracker = Tracker::new(Arc::new(Latest { tx, recorder, job: sj.object_ref(&()) }));
            let outcome =
                engine::run(Job { id: job, spec: &sj.spec, credentials: &credentials, tracker: tracker.clone(), stop })
                    .await;
            let result = match outcome {
                Ok(Outcome::Completed) => {
                    tracker.stage(TransferStage::FullComplete);
                    Ok(())
                }
                Ok(Outcome::Stopped) | Err(EngineError::Stopped) => {
                    tracker.stage(TransferStage::Stopped);
                    Ok(())
                }
                Err(e) => Err(WorkerError::engine(&e, row_values)),
            };
            tracker.flush();
            // Dropping the tracker closes the channel: the publisher writes the last value and ends.
            drop(tracker);
            let _ = tokio::time::timeout(Duration::from_secs(10), publisher).await;
            result
        }
    }
}

/// Serves the engine's metrics (`/metrics`) and `/healthz` on `addr` for the rest of the
/// process; returns the bound address. A port that cannot be bound is reported and skipped:
/// metrics are not worth failing a job for.
pub async fn serve_metrics(addr: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    use crate::operator::http::{Health, serve};
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve metrics");
            return None;
        }
    };
    let bound = listener.local_addr().ok();
    let registry = crate::engine::metrics::registry();
    let health = Health {
        metrics: Box::new(move || crate::engine::metrics::encode(&registry)),
        ready: std::sync::atomic::AtomicBool::new(true),
    };
    tokio::spawn(serve(listener, std::sync::Arc::new(health)));
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_error_prints_as_the_termination_message_the_operator_parses() {
        let e = WorkerError::from(EngineError::Connect { side: engine::Side::Source, message: "refused".into() });
        let line = e.line();
        assert_eq!(line, "SOURCE_CONNECT: cannot connect to the source database: refused");
        let (code, message) = crate::controller::observe::parse_termination(&line, None);
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("SOURCE_CONNECT", "cannot connect to the source database: refused")
        );
    }

    #[test]
    fn a_termination_message_carries_row_values_only_for_a_job_that_opts_in() {
        let conflict = || EngineError::Conflict {
            table: "shop.users".into(),
            message: engine::redact::mysql_short(1062, "Duplicate entry 'ann@example.com' for key 'email'"),
        };
        let e = conflict();
        let hidden = WorkerError::engine(&e, false).line();
        assert!(
            hidden.starts_with("CONFLICT: conflict on shop.users: Duplicate entry '<redacted>' for key 'email'"),
            "{hidden}"
        );
        assert!(hidden.contains("ER_DUP_ENTRY") && !hidden.contains("ann@"), "{hidden}");
        assert_eq!(WorkerError::from(conflict()).line(), hidden);
        let shown = WorkerError::engine(&e, true).line();
        assert!(shown.contains("Duplicate entry 'ann@example.com' for key 'email'"), "{shown}");
    }
}
