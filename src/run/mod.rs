//! `ferry run`: a SyncJob run in one local process with no cluster — the worker minus the API.
//!
//! It reads the manifests a user would `kubectl apply` (Secrets and one SyncJob), and drives the
//! same lifecycle state machine the operator uses, carrying out its actions in-process: the
//! precheck runs inline, the "worker" is the engine on a task, the release drops what the job holds (PostgreSQL: the slot).
//! Phases and progress go to the terminal; `--status-file` gets the status as JSON.

pub mod compare;
mod display;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::api::manifest::{self, Manifest};
use crate::api::validate::{Validate, describe};
use crate::api::{
    Checkpoint, DebugOptions, Progress, SecretKeyRef, SequenceStep, SequencesStatus, SlotStatus, SyncJob, SyncJobPhase,
    SyncJobSpec, SyncJobStatus, TransferStage,
};
use crate::engine::tls::TlsMaterial;
use crate::engine::{self, Credentials, EngineError, Outcome, ProgressSink, Tracker};
use crate::lifecycle::{self, Action, Observed, PrecheckState, ReleaseState, WorkerState};
use display::Display;

/// Options of `ferry run`.
#[derive(Clone, Debug)]
pub struct Options {
    /// The manifest file: Secrets and one SyncJob.
    pub file: PathBuf,
    /// Rewrite the status as JSON here at least once a second and at every phase change.
    pub status_file: Option<PathBuf>,
    /// Release the job's source resources after a clean stop.
    pub release: bool,
}

/// Why `ferry run` ended with a failure: the last line it prints is `CODE: message`.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RunError {
    /// Stable error code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl RunError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> RunError {
        RunError { code: code.to_owned(), message: message.into() }
    }
}

/// How `ferry run` ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// The SyncJob completed its full transfer, or stopped cleanly at a checkpoint.
    Synced,
    /// The CompareTask ran, with this result.
    Compared(crate::api::CompareResult),
}

/// Runs what the manifest file holds: a CompareTask when it holds one (with the SyncJob it names),
/// the SyncJob otherwise. The file is read and parsed once.
pub async fn run(opts: Options) -> Result<Finished, RunError> {
    let text = std::fs::read_to_string(&opts.file)
        .map_err(|e| RunError::new("MANIFEST_INVALID", format!("reading {}: {e}", opts.file.display())))?;
    let docs = manifest::parse(&text).map_err(|e| RunError::new("MANIFEST_INVALID", e.to_string()))?;
    if compare::holds_compare_task(&docs) {
        return compare::run(docs).await.map(Finished::Compared);
    }
    let (job, credentials) = load(docs)?;
    sync(job, credentials, opts).await.map(|()| Finished::Synced)
}

/// The one SyncJob of the manifests and the passwords its Secret references name.
pub fn load(docs: Vec<Manifest>) -> Result<(SyncJob, Credentials), RunError> {
    let mut refs = Referenced::default();
    let mut jobs = Vec::new();
    for doc in docs {
        match doc {
            Manifest::Secret(s) => refs.add_secret(*s),
            Manifest::ConfigMap(m) => refs.add_config_map(*m),
            Manifest::SyncJob(j) => jobs.push(*j),
            Manifest::CompareTask(_) | Manifest::BatchJob(_) => {
                return Err(RunError::new(
                    "MANIFEST_INVALID",
                    "ferry run takes Secrets, ConfigMaps and one SyncJob, or those, a CompareTask and the SyncJob it names",
                ));
            }
        }
    }
    let job = match jobs.len() {
        1 => jobs.remove(0),
        n => return Err(RunError::new("MANIFEST_INVALID", format!("expected one SyncJob, found {n}"))),
    };
    let credentials = credentials_for(&refs, &job.spec.source, &job.spec.target)?;
    Ok((job, credentials))
}

/// The Secrets and ConfigMaps of a manifest file, by name.
#[derive(Default)]
pub(crate) struct Referenced {
    secrets: BTreeMap<String, k8s_openapi::api::core::v1::Secret>,
    config_maps: BTreeMap<String, k8s_openapi::api::core::v1::ConfigMap>,
}

impl Referenced {
    /// Adds a Secret of the file.
    pub(crate) fn add_secret(&mut self, s: k8s_openapi::api::core::v1::Secret) {
        self.secrets.insert(s.metadata.name.clone().unwrap_or_default(), s);
    }

    /// Adds a ConfigMap of the file.
    pub(crate) fn add_config_map(&mut self, m: k8s_openapi::api::core::v1::ConfigMap) {
        self.config_maps.insert(m.metadata.name.clone().unwrap_or_default(), m);
    }

    fn secret(&self, field: &str, name: &str, key: &str) -> Result<Vec<u8>, RunError> {
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| RunError::new("SECRET_MISSING", format!("{field}: Secret {name:?} is not in the file")))?;
        manifest::secret_bytes(secret, key)
            .ok_or_else(|| RunError::new("SECRET_MISSING", format!("{field}: Secret {name:?} has no key {key:?}")))
    }

    fn config_map(&self, field: &str, name: &str, key: &str) -> Result<Vec<u8>, RunError> {
        let map = self.config_maps.get(name).ok_or_else(|| {
            RunError::new("CONFIGMAP_MISSING", format!("{field}: ConfigMap {name:?} is not in the file"))
        })?;
        manifest::config_map_bytes(map, key).ok_or_else(|| {
            RunError::new("CONFIGMAP_MISSING", format!("{field}: ConfigMap {name:?} has no key {key:?}"))
        })
    }

    /// The CA bundle and client certificate an endpoint's `tls` names.
    fn tls(&self, path: &str, endpoint: &crate::api::Endpoint) -> Result<TlsMaterial, RunError> {
        let Some(tls) = &endpoint.tls else { return Ok(TlsMaterial::default()) };
        let mut m = TlsMaterial::default();
        if let Some(r) = &tls.ca_secret_ref {
            m.ca_pem = Some(self.secret(&format!("{path}.tls.caSecretRef"), &r.name, &r.key)?);
        }
        if let Some(r) = &tls.ca_config_map_ref {
            m.ca_pem = Some(self.config_map(&format!("{path}.tls.caConfigMapRef"), &r.name, &r.key)?);
        }
        if let Some(r) = &tls.client_cert_secret_ref {
            let field = format!("{path}.tls.clientCertSecretRef");
            m.client_cert_pem = Some(self.secret(&field, &r.name, &r.cert_key)?);
            m.client_key_pem = Some(self.secret(&field, &r.name, &r.key_key)?);
        }
        Ok(m)
    }
}

/// The passwords, CA bundles and client certificates the endpoints' references name, from the
/// Secrets and ConfigMaps of the file.
pub(crate) fn credentials_for(
    refs: &Referenced,
    source: &crate::api::Endpoint,
    target: &crate::api::Endpoint,
) -> Result<Credentials, RunError> {
    let password = |field: &str, r: &Option<SecretKeyRef>| -> Result<Option<String>, RunError> {
        let Some(r) = r else { return Ok(None) };
        let bytes = refs.secret(field, &r.name, &r.key)?;
        String::from_utf8(bytes).map(Some).map_err(|_| {
            RunError::new("SECRET_INVALID", format!("{field}: Secret {:?} key {:?} is not UTF-8 text", r.name, r.key))
        })
    };
    Ok(Credentials {
        source_password: password("spec.source.passwordSecretRef", &source.password_secret_ref)?,
        target_password: password("spec.target.passwordSecretRef", &target.password_secret_ref)?,
        source_tls: refs.tls("spec.source", source)?,
        target_tls: refs.tls("spec.target", target)?,
    })
}

/// What the engine task tells the driver.
enum WorkerEvent {
    Stage(TransferStage),
    Reconnecting(String),
    /// The cut-over step set the sequences on the target.
    CutOver(SequencesStatus),
    Done(Result<Outcome, EngineError>),
}

/// Progress reports from the engine: kept for the display and the status file; stage changes
/// forwarded to the driver.
struct Sink {
    latest: Mutex<(Progress, Option<Checkpoint>)>,
    slot: Mutex<Option<SlotStatus>>,
    sequences: Mutex<Option<SequencesStatus>>,
    events: mpsc::UnboundedSender<WorkerEvent>,
    last_stage: Mutex<Option<TransferStage>>,
}

impl ProgressSink for Sink {
    fn report(&self, progress: &Progress, checkpoint: Option<&Checkpoint>) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = (progress.clone(), checkpoint.cloned());
        let mut last = self.last_stage.lock().unwrap_or_else(|p| p.into_inner());
        if progress.stage != *last {
            *last = progress.stage;
            if let Some(s) = progress.stage {
                let _ = self.events.send(WorkerEvent::Stage(s));
            }
        }
    }

    fn reconnecting(&self, reconnects: u32, code: &str, message: &str) {
        let note = format!("{code}: {message}; starting again from the checkpoint (reconnect {reconnects})");
        let _ = self.events.send(WorkerEvent::Reconnecting(note));
    }

    fn slot(&self, slot: Option<&SlotStatus>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = slot.cloned();
    }

    fn sequences(&self, sequences: &SequencesStatus) {
        *self.sequences.lock().unwrap_or_else(|p| p.into_inner()) = Some(sequences.clone());
        if sequences.step == SequenceStep::CutOver {
            let _ = self.events.send(WorkerEvent::CutOver(sequences.clone()));
        }
    }
}

/// Runs the job. `Ok` when a FULL_TRANS job completed or a stop was clean.
async fn sync(job: SyncJob, credentials: Credentials, opts: Options) -> Result<(), RunError> {
    let name = job.metadata.name.clone().unwrap_or_else(|| "job".into());
    let id = format!("{}/{}", job.metadata.namespace.as_deref().unwrap_or("default"), name);
    let mut spec = job.spec.clone();
    // Locally a failure ends the run: no automatic retries.
    spec.retry.limit = 0;
    let row_values = DebugOptions::row_values(spec.debug.as_ref());
    let display = Display::new(&name, opts.status_file.clone());

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let sink = Arc::new(Sink {
        latest: Mutex::new(Default::default()),
        slot: Mutex::new(None),
        sequences: Mutex::new(None),
        events: events_tx.clone(),
        last_stage: Mutex::new(None),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut signals = crate::signals::Signals::new()
        .map_err(|e| RunError::new("SIGNALS", format!("installing signal handlers: {e}")))?;

    let mut status = SyncJobStatus::default();
    let mut observed = Observed::new(1);
    observed.spec_errors = spec.validate();
    let mut stop_requested = false;
    let mut worker: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let worker_done = worker.is_none() && !matches!(observed.worker, WorkerState::Failed { .. });
        if stop_requested && worker_done && !spec.stopped {
            if !opts.release {
                display.done("stopped at a checkpoint; run again to resume");
                return Ok(());
            }
            spec.stopped = true;
        }
        let plan = lifecycle::plan(&spec, &status, &observed, Timestamp::now());
        let before = status.phase;
        status = plan.status;
        let (progress, checkpoint) = sink.latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        status.progress = Some(progress);
        status.checkpoint = checkpoint;
        // The engine's last measurement of the slot, with what the lifecycle tracks of it.
        let tracked = status.slot.take().unwrap_or_default();
        let measured = sink.slot.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
        let slot = SlotStatus { inactive_since: tracked.inactive_since, expired_at: tracked.expired_at, ..measured };
        status.slot = (slot != SlotStatus::default()).then_some(slot);
        status.sequences = sink.sequences.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if status.phase != before {
            display.phase(&status);
        }
        for action in plan.actions {
            match action {
                Action::RunPrecheck { .. } => {
                    display.note("precheck: checking source and target");
                    let items = engine::precheck(&spec, &credentials).await;
                    let result = lifecycle::precheck_status(items, spec.precheck.as_ref(), 1);
                    display.precheck(&result.items);
                    let blocking = lifecycle::blocking_items(&result.items, spec.precheck.as_ref());
                    status.precheck = Some(result);
                    observed.precheck = if blocking.is_empty() {
                        PrecheckState::Passed
                    } else {
                        PrecheckState::Failed { items: blocking }
                    };
                }
                Action::StartWorker { .. } => {
                    if worker.is_none() {
                        observed.worker = WorkerState::Running { stage: None };
                        worker = Some(spawn_engine(
                            &id,
                            &spec,
                            &credentials,
                            Arc::clone(&sink),
                            stop_rx.clone(),
                            events_tx.clone(),
                        ));
                    }
                }
                Action::StopWorker => {
                    let _ = stop_tx.send(true);
                }
                Action::RunRelease { .. } => {
                    display.note(if spec.source.engine == crate::api::Engine::Postgresql {
                        "releasing the replication slot and publication"
                    } else {
                        "releasing the job's bookkeeping on the target"
                    });
                    observed.release = match engine::release(&id, &spec, &credentials).await {
                        Ok(()) => ReleaseState::Succeeded,
                        Err(e) => ReleaseState::Failed { code: e.code().into(), message: e.text(row_values) },
                    };
                }
                Action::RemoveFinalizer | Action::Event { .. } => {}
            }
        }
        display.status(&status);

        // Ends of the run.
        let phase = status.phase.unwrap_or(SyncJobPhase::Creating);
        match phase {
            SyncJobPhase::CreateFailed => {
                return Err(RunError::new("SPEC_INVALID", describe(&observed.spec_errors)));
            }
            SyncJobPhase::Configuration => {
                if let PrecheckState::Failed { items } = &observed.precheck {
                    return Err(RunError::new("PRECHECK_FAILED", format!("failed items: {}", items.join(", "))));
                }
            }
            p if p.is_failed() || p == SyncJobPhase::ReleaseResourceFailed => {
                let e = status.last_error.clone();
                return Err(e.map_or_else(
                    || RunError::new("FAILED", format!("phase {p}")),
                    |e| RunError::new(&e.code, e.message),
                ));
            }
            SyncJobPhase::FullTransferComplete if matches!(observed.worker, WorkerState::Succeeded { .. }) => {
                display.done(if spec.source.engine == crate::api::Engine::Postgresql {
                    "full transfer complete; slot and publication released"
                } else {
                    "full transfer complete"
                });
                return Ok(());
            }
            SyncJobPhase::ReleaseResourceComplete => {
                display.done("released");
                return Ok(());
            }
            _ => {}
        }
        // Wait for something to happen.
        let tick = tokio::time::sleep(plan.requeue_after.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1)));
        tokio::select! {
            ev = events.recv() => match ev {
                Some(WorkerEvent::Stage(s)) => observed.worker = WorkerState::Running { stage: Some(s) },
                Some(WorkerEvent::Reconnecting(note)) => display.note(&note),
                Some(WorkerEvent::CutOver(sequences)) => display.note(&display::cut_over_line(&sequences)),
                Some(WorkerEvent::Done(r)) => {
                    worker = None;
                    observed.worker = match r {
                        Ok(Outcome::Completed) => WorkerState::Succeeded { stage: Some(TransferStage::FullComplete) },
                        Ok(Outcome::Stopped) => WorkerState::Succeeded { stage: Some(TransferStage::Stopped) },
                        Err(EngineError::Stopped) => WorkerState::Succeeded { stage: Some(TransferStage::Stopped) },
                        Err(e) => WorkerState::Failed { code: e.code().into(), message: e.text(row_values) },
                    };
                }
                None => {}
            },
            _ = signals.recv() => {
                if stop_requested {
                    return Err(RunError::new("ABORTED", "interrupted twice; the next run resumes from the last checkpoint"));
                }
                stop_requested = true;
                display.note("stopping at the next checkpoint (press Ctrl-C again to abort)");
                let _ = stop_tx.send(true);
            }
            _ = tick => {}
        }
    }
}

fn spawn_engine(
    id: &str,
    spec: &SyncJobSpec,
    credentials: &Credentials,
    sink: Arc<Sink>,
    stop: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<WorkerEvent>,
) -> tokio::task::JoinHandle<()> {
    let (id, spec, credentials) = (id.to_owned(), spec.clone(), credentials.clone());
    tokio::spawn(async move {
        let tracker = Tracker::new(sink);
        let job = engine::Job { id: &id, spec: &spec, credentials: &credentials, tracker: tracker.clone(), stop };
        let result = engine::run(job).await;
        tracker.flush();
        let _ = events.send(WorkerEvent::Done(result));
    })
}
