//! The SyncJob state machine: from the spec, the current status, what the controller observed
//! and the clock, decide the next phase, the operator-owned status fields and the actions to
//! take. No client, no database, no clock of its own: every transition is a unit test.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Status, types};
use crate::api::validate::{FieldError, describe};
use crate::api::{
    Engine, LastError, PrecheckItem, PrecheckResult, PrecheckSpec, PrecheckStatus, SyncJobPhase, SyncJobSpec,
    SyncJobStatus, TransferStage, WorkerStatus,
};

/// A phase that has been healthy this long clears the retry count and `failedSince`.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(600);
/// How long the lag stays above `alarm.delaySeconds` before `LagOverThreshold` turns true.
pub const LAG_ALARM_AFTER: Duration = Duration::from_secs(360);
/// Default of `alarm.stallSeconds`.
pub const STALL_AFTER: Duration = Duration::from_secs(600);

/// Longest delay between two automatic retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// `lastError.code` of a job whose replication slot is released because the job held it for
/// longer than `spec.slotRetentionMinutes` without streaming.
pub const SLOT_RETENTION_EXPIRED: &str = "SLOT_RETENTION_EXPIRED";

/// Whether the job holds a replication slot on its source, as far as its status tells: a
/// worker reported the slot, it has not been released, and the job is not a `FULL_TRANS` job
/// whose worker dropped it on completion.
pub fn holds_slot(spec: &SyncJobSpec, status: &SyncJobStatus) -> bool {
    let phase = status.phase.unwrap_or(SyncJobPhase::Creating);
    spec.source.engine == Engine::Postgresql
        && status.slot.as_ref().is_some_and(|s| s.name.is_some())
        && phase != SyncJobPhase::ReleaseResourceComplete
        // A FULL_TRANS job's worker drops the slot when it completes.
        && (phase != SyncJobPhase::FullTransferComplete || spec.task_type.has_incremental())
}

/// `spec.slotRetentionMinutes` as a duration.
pub fn slot_retention(spec: &SyncJobSpec) -> Duration {
    Duration::from_secs(u64::from(spec.slot_retention_minutes.max(1)) * 60)
}

/// What `lastError` and the conditions say of a slot released for `spec.slotRetentionMinutes`.
fn slot_expired_message(spec: &SyncJobSpec, status: &SyncJobStatus) -> String {
    let slot = status.slot.as_ref().and_then(|s| s.name.as_deref()).unwrap_or("of the job");
    format!(
        "the job held its replication slot {slot} for longer than spec.slotRetentionMinutes ({} minutes) without \
         streaming, so the slot is released before it fills the source's disk: the changes since the checkpoint \
         can no longer be read. Delete the SyncJob and apply it again to start over with a new full transfer; \
         a larger spec.slotRetentionMinutes gives a paused or failing job more time",
        spec.slot_retention_minutes
    )
}

/// Where the precheck for the current spec generation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrecheckState {
    /// No precheck has run for this generation.
    NotStarted,
    /// The precheck pod is running.
    Running,
    /// Every item passed, raised an alarm, or failed and was skipped.
    Passed,
    /// These items failed and are not skipped.
    Failed { items: Vec<String> },
}

/// What the worker pod of the current attempt is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// No worker pod exists for the current attempt.
    Absent,
    /// The pod exists but has not started running.
    Pending,
    /// The worker runs and reported this stage (none yet when `None`).
    Running { stage: Option<TransferStage> },
    /// The worker exited 0 after reporting this stage.
    Succeeded { stage: Option<TransferStage> },
    /// The worker exited non-zero with this termination message.
    Failed { code: String, message: String },
}

/// Where the release of source resources (replication slot, publication) stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseState {
    /// No release pod exists for the current attempt.
    NotStarted,
    /// The release pod is running.
    Running,
    /// The source resources are gone.
    Succeeded,
    /// The release failed with this message.
    Failed { code: String, message: String },
}

/// What the controller (or `ferry run`) observed of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `metadata.generation` of the SyncJob.
    pub generation: i64,
    /// Violations found by `validate()` in the current spec.
    pub spec_errors: Vec<FieldError>,
    /// Deletion was requested (`deletionTimestamp` is set).
    pub deleting: bool,
    /// The user asked to drop the finalizer without releasing (the source is gone for good).
    pub skip_release: bool,
    /// Precheck of the current generation.
    pub precheck: PrecheckState,
    /// Worker pod of the current attempt.
    pub worker: WorkerState,
    /// Release pod of the current attempt.
    pub release: ReleaseState,
}

impl Observed {
    /// A valid spec at `generation` with nothing running yet.
    pub fn new(generation: i64) -> Observed {
        Observed {
            generation,
            spec_errors: Vec::new(),
            deleting: false,
            skip_release: false,
            precheck: PrecheckState::NotStarted,
            worker: WorkerState::Absent,
            release: ReleaseState::NotStarted,
        }
    }
}

/// Something the controller must do to carry out a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make sure the precheck pod of this generation exists.
    RunPrecheck { generation: i64 },
    /// Make sure the worker pod of this attempt exists; pods of other attempts are removed.
    StartWorker { attempt: u32 },
    /// Ask the worker to stop at its next checkpoint.
    StopWorker,
    /// Make sure the release pod of this attempt exists.
    RunRelease { attempt: u32 },
    /// Remove the finalizer so deletion can complete.
    RemoveFinalizer,
    /// Record a Kubernetes Event on the job.
    Event { warning: bool, reason: &'static str, message: String },
}

/// The outcome of [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status with the operator-owned fields updated (phase, conditions, errors, retries,
    /// step times, worker attempt); worker-owned fields are left as they were.
    pub status: SyncJobStatus,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// When to look again even if nothing changes (a scheduled start, a retry, an expiry).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// The phase the plan moves to.
    pub fn phase(&self) -> SyncJobPhase {
        self.status.phase.unwrap_or(SyncJobPhase::Creating)
    }

    /// Whether the plan contains an action equal to `action`.
    pub fn has(&self, action: &Action) -> bool {
        self.actions.contains(action)
    }

    /// Reasons of the Events the plan records.
    pub fn event_reasons(&self) -> Vec<&'static str> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

/// Which precheck items block the start, given the skips in the spec: failed items that are not
/// skipped (a non-skippable item cannot be skipped).
pub fn blocking_items(items: &[PrecheckItem], skips: Option<&PrecheckSpec>) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.result == PrecheckResult::Failed)
        .filter(|i| !(i.skippable && skips.is_some_and(|s| s.skip || s.skip_items.contains(&i.item))))
        .map(|i| i.item.clone())
        .collect()
}

/// Marks items skipped through the spec, so status shows which ones were.
pub fn mark_skipped(items: &mut [PrecheckItem], skips: Option<&PrecheckSpec>) {
    for i in items {
        i.skipped = i.result == PrecheckResult::Failed
            && i.skippable
            && skips.is_some_and(|s| s.skip || s.skip_items.contains(&i.item));
    }
}

/// The precheck's results as status shows them: items marked skipped where the spec skips them,
/// whether the job may start, the share of passed items, for spec `generation`.
pub fn precheck_status(mut items: Vec<PrecheckItem>, skips: Option<&PrecheckSpec>, generation: i64) -> PrecheckStatus {
    mark_skipped(&mut items, skips);
    let blocking = blocking_items(&items, skips);
    let passed = items.iter().filter(|i| i.result == PrecheckResult::Passed).count();
    PrecheckStatus {
        passed: Some(blocking.is_empty()),
        observed_generation: Some(generation),
        progress: Some(100),
        passed_rate: Some(if items.is_empty() { 100.0 } else { (passed * 100 / items.len()) as f64 }),
        items,
    }
}

/// Delay before retry number `retries + 1`: `backoffSeconds × 2^retries`, at most an hour.
pub fn backoff(spec: &SyncJobSpec, retries: u32) -> Duration {
    let base = u64::from(spec.retry.backoff_seconds.max(1));
    let factor = 1u64.checked_shl(retries.min(20)).unwrap_or(u64::MAX);
    Duration::from_secs(base.saturating_mul(factor)).min(MAX_BACKOFF)
}

/// Decides the next step of a SyncJob.
pub fn plan(spec: &SyncJobSpec, status: &SyncJobStatus, observed: &Observed, now: Timestamp) -> Plan {
    let mut p =
        Planner { spec, old: status, obs: observed, now, st: status.clone(), actions: Vec::new(), requeue: None };
    let current = status.phase.unwrap_or(SyncJobPhase::Creating);
    let next = p.decide(current);
    p.finish(current, next)
}

struct Planner<'a> {
    spec: &'a SyncJobSpec,
    old: &'a SyncJobStatus,
    obs: &'a Observed,
    now: Timestamp,
    st: SyncJobStatus,
    actions: Vec<Action>,
    requeue: Option<Duration>,
}

fn since(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

impl Planner<'_> {
    fn attempt(&self) -> u32 {
        self.st.worker.as_ref().map_or(0, |w| w.attempt)
    }

    /// Whether a worker ever ran, and so may hold source resources.
    fn may_hold_resources(&self) -> bool {
        self.attempt() > 0
    }

    fn spec_changed(&self) -> bool {
        self.old.observed_generation.is_some_and(|g| g != self.obs.generation)
    }

    fn event(&mut self, warning: bool, reason: &'static str, message: impl Into<String>) {
        self.actions.push(Action::Event { warning, reason, message: message.into() });
    }

    fn requeue_at(&mut self, at: Timestamp) {
        let wait = at.duration_since(self.now);
        let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO).max(Duration::from_secs(1));
        self.requeue = Some(self.requeue.map_or(wait, |r| r.min(wait)));
    }

    fn error(&mut self, code: &str, message: String) {
        self.st.last_error = Some(LastError { code: code.to_owned(), message, time: Some(Time(self.now)) });
    }

    fn start_worker(&mut self) -> SyncJobPhase {
        let attempt = self.attempt() + 1;
        let w = self.st.worker.get_or_insert_with(WorkerStatus::default);
        w.attempt = attempt;
        w.pod = None;
        w.restarts = 0;
        self.actions.push(Action::StartWorker { attempt });
        SyncJobPhase::StartJobing
    }

    fn start_release(&mut self, why: &str) -> SyncJobPhase {
        self.actions.push(Action::StopWorker);
        self.st.retries = 0;
        self.actions.push(Action::RunRelease { attempt: 0 });
        self.event(false, "ReleaseStarted", format!("releasing source resources: {why}"));
        SyncJobPhase::ReleaseResourceStarted
    }

    /// Whether a worker pod of the job runs (copying or streaming).
    fn worker_runs(&self) -> bool {
        matches!(self.obs.worker, WorkerState::Running { .. })
    }

    /// Since when the job has held its replication slot without a running worker, as of this
    /// observation and the status being planned; `None` while a worker runs or no slot is held.
    fn slot_idle_since(&self) -> Option<Timestamp> {
        if self.worker_runs() || !holds_slot(self.spec, &self.st) {
            return None;
        }
        Some(self.old.slot.as_ref().and_then(|s| since(&s.inactive_since)).unwrap_or(self.now))
    }

    /// The job held its slot for `spec.slotRetentionMinutes` without streaming: release it, and
    /// say that the job needs a new full transfer.
    fn release_expired_slot(&mut self) -> SyncJobPhase {
        let message = slot_expired_message(self.spec, &self.st);
        self.error(SLOT_RETENTION_EXPIRED, message.clone());
        self.event(true, "SlotRetentionExpired", message);
        self.st.slot.get_or_insert_default().expired_at = Some(Time(self.now));
        let minutes = self.spec.slot_retention_minutes;
        self.start_release(&format!(
            "the replication slot was held for over {minutes} minutes without streaming (spec.slotRetentionMinutes)"
        ))
    }

    /// Records since when the slot has been held without a running worker (cleared while one
    /// runs or once the slot is gone), and looks again when the retention would pass.
    fn track_slot(&mut self, phase: SyncJobPhase) {
        let idle = self.slot_idle_since();
        if let Some(slot) = self.st.slot.as_mut() {
            slot.inactive_since = idle.map(Time);
        }
        let releasing = matches!(phase, SyncJobPhase::ReleaseResourceStarted | SyncJobPhase::ReleaseResourceFailed);
        if let Some(idle) = idle
            && !releasing
            && self.may_hold_resources()
        {
            self.requeue_at(add(idle, slot_retention(self.spec)));
        }
    }

    /// Whether the job is being (or was) released because it held its slot too long.
    fn slot_expired(&self) -> bool {
        use SyncJobPhase::*;
        let releasing =
            matches!(self.st.phase, Some(ReleaseResourceStarted | ReleaseResourceComplete | ReleaseResourceFailed));
        releasing && self.st.slot.as_ref().is_some_and(|s| s.expired_at.is_some())
    }

    fn released(&mut self) -> SyncJobPhase {
        if self.obs.deleting {
            self.actions.push(Action::RemoveFinalizer);
        }
        SyncJobPhase::ReleaseResourceComplete
    }

    fn decide(&mut self, current: SyncJobPhase) -> SyncJobPhase {
        use SyncJobPhase::*;
        if current == ReleaseResourceComplete {
            return self.released();
        }
        if self.obs.deleting && self.obs.skip_release {
            if !matches!(self.obs.worker, WorkerState::Absent) {
                self.actions.push(Action::StopWorker);
            }
            self.event(true, "ReleaseSkipped", "finalizer removed without releasing source resources, as annotated");
            return self.released();
        }
        if matches!(current, ReleaseResourceStarted | ReleaseResourceFailed) {
            return self.release(current);
        }
        if self.obs.deleting || self.spec.stopped {
            let why = if self.obs.deleting { "the job is being deleted" } else { "spec.stopped is true" };
            return if self.may_hold_resources() { self.start_release(why) } else { self.released() };
        }
        if self.may_hold_resources()
            && let Some(idle) = self.slot_idle_since()
            && add(idle, slot_retention(self.spec)) <= self.now
        {
            return self.release_expired_slot();
        }
        if !self.obs.spec_errors.is_empty() {
            return self.invalid(current);
        }
        match current {
            Creating | CreateFailed => {
                self.actions.push(Action::RunPrecheck { generation: self.obs.generation });
                Configuration
            }
            Configuration | WaitingForStart => self.pre_start(),
            Pausing => self.pausing(),
            StartJobing | FullTransferStarted | FullTransferComplete | IncreTransferStarted | ChangeJobStarted => {
                self.running(current)
            }
            StartJobFailed | FullTransferFailed | IncreTransferFailed | ChangeJobFailed => self.failed(current),
            ReleaseResourceStarted | ReleaseResourceFailed | ReleaseResourceComplete => current,
        }
    }

    fn invalid(&mut self, current: SyncJobPhase) -> SyncJobPhase {
        let message = describe(&self.obs.spec_errors);
        let unchanged = self.old.last_error.as_ref().is_some_and(|e| e.code == "SPEC_INVALID" && e.message == message);
        if !unchanged {
            self.error("SPEC_INVALID", message.clone());
            self.event(true, "SpecInvalid", message);
        }
        use SyncJobPhase::*;
        let started = match current {
            Creating | CreateFailed | Configuration | WaitingForStart => false,
            Pausing => self.may_hold_resources(),
            _ => true,
        };
        if !started {
            return CreateFailed;
        }
        if !matches!(self.obs.worker, WorkerState::Absent) {
            self.actions.push(Action::StopWorker);
        }
        ChangeJobFailed
    }

    fn pre_start(&mut self) -> SyncJobPhase {
        use SyncJobPhase::*;
        match &self.obs.precheck {
            PrecheckState::NotStarted => {
                self.actions.push(Action::RunPrecheck { generation: self.obs.generation });
                Configuration
            }
            PrecheckState::Running | PrecheckState::Failed { .. } => Configuration,
            PrecheckState::Passed => {
                if self.spec.paused {
                    return Pausing;
                }
                if let Some(start) = since(&self.spec.start_time)
                    && start > self.now
                {
                    self.requeue_at(start);
                    return WaitingForStart;
                }
                self.st.retries = 0;
                self.start_worker()
            }
        }
    }

    fn pausing(&mut self) -> SyncJobPhase {
        if self.spec.paused {
            if matches!(self.obs.worker, WorkerState::Running { .. } | WorkerState::Pending) {
                self.actions.push(Action::StopWorker);
            }
            return SyncJobPhase::Pausing;
        }
        self.event(false, "Resumed", "spec.paused is false: resuming from the checkpoint");
        if self.may_hold_resources() { self.start_worker() } else { self.pre_start() }
    }

    fn running(&mut self, current: SyncJobPhase) -> SyncJobPhase {
        use SyncJobPhase::*;
        if self.spec.paused {
            self.actions.push(Action::StopWorker);
            self.event(false, "Paused", "spec.paused is true: stopping at a checkpoint");
            return Pausing;
        }
        if self.spec_changed() {
            self.actions.push(Action::StopWorker);
            self.start_worker();
            self.event(false, "SpecChanged", "the spec changed: restarting the worker with it");
            return ChangeJobStarted;
        }
        match self.obs.worker.clone() {
            WorkerState::Absent => {
                // The pod vanished (evicted, deleted by hand): create it again under the same attempt.
                self.actions.push(Action::StartWorker { attempt: self.attempt().max(1) });
                current
            }
            WorkerState::Pending => current,
            WorkerState::Running { stage } => {
                let next = stage.map_or(current, |s| self.stage_phase(current, s));
                self.clear_retries_when_healthy(current, next);
                next
            }
            WorkerState::Succeeded { stage } => {
                let done = stage == Some(TransferStage::FullComplete) || current == FullTransferComplete;
                if !self.spec.task_type.has_incremental() && done {
                    let next = self.stage_phase(current, TransferStage::FullComplete);
                    self.st.failed_since = None;
                    next
                } else {
                    self.event(true, "WorkerExited", "the worker exited without being asked to: starting it again");
                    self.start_worker();
                    current
                }
            }
            WorkerState::Failed { code, message } => self.fail(current, &code, message),
        }
    }

    /// The phase a worker's reported stage maps to. The phase never moves backwards: a stage
    /// older than the phase is ignored, and a FULL_TRANS job never enters the incremental phase.
    fn stage_phase(&mut self, current: SyncJobPhase, stage: TransferStage) -> SyncJobPhase {
        use SyncJobPhase::*;
        let task = self.spec.task_type;
        match stage {
            TransferStage::Starting | TransferStage::Stopped => current,
            TransferStage::Full => {
                if !task.has_full()
                    || self.st.full_complete_time.is_some()
                    || matches!(current, FullTransferComplete | IncreTransferStarted)
                {
                    return current;
                }
                self.st.full_start_time.get_or_insert(Time(self.now));
                FullTransferStarted
            }
            TransferStage::FullComplete => {
                if !task.has_full() || current == IncreTransferStarted {
                    return current;
                }
                self.st.full_start_time.get_or_insert(Time(self.now));
                self.st.full_complete_time.get_or_insert(Time(self.now));
                FullTransferComplete
            }
            TransferStage::Incremental => {
                if !task.has_incremental() {
                    return current;
                }
                if task.has_full() {
                    self.st.full_start_time.get_or_insert(Time(self.now));
                    self.st.full_complete_time.get_or_insert(Time(self.now));
                }
                self.st.incr_start_time.get_or_insert(Time(self.now));
                IncreTransferStarted
            }
        }
    }

    fn clear_retries_when_healthy(&mut self, current: SyncJobPhase, next: SyncJobPhase) {
        use SyncJobPhase::*;
        let healthy =
            matches!(next, FullTransferStarted | FullTransferComplete | IncreTransferStarted) && current == next;
        let since_phase = since(&self.old.phase_since);
        if healthy
            && (self.st.retries > 0 || self.st.failed_since.is_some())
            && since_phase.is_some_and(|t| add(t, HEALTHY_AFTER) <= self.now)
        {
            self.st.retries = 0;
            self.st.failed_since = None;
        }
    }

    fn fail(&mut self, current: SyncJobPhase, code: &str, message: String) -> SyncJobPhase {
        let next = current.failure().unwrap_or(SyncJobPhase::StartJobFailed);
        self.event(true, "WorkerFailed", format!("{code}: {message}"));
        self.error(code, message);
        self.st.failed_since.get_or_insert(Time(self.now));
        if self.st.retries < self.spec.retry.limit && !crate::engine::error::is_unrecoverable(code) {
            self.requeue_at(add(self.now, backoff(self.spec, self.st.retries)));
        }
        next
    }

    fn failed(&mut self, current: SyncJobPhase) -> SyncJobPhase {
        use SyncJobPhase::*;
        if self.spec.paused {
            return Pausing;
        }
        let failed_since = since(&self.st.failed_since).unwrap_or(self.now);
        let expires = add(failed_since, Duration::from_secs(u64::from(self.spec.expired_days) * 86_400));
        if expires <= self.now {
            let days = self.spec.expired_days;
            return self.start_release(&format!("failed for {days} days (spec.expiredDays)"));
        }
        if self.spec_changed() {
            self.st.retries = 0;
            self.start_worker();
            self.event(false, "SpecChanged", "the spec changed: restarting the worker with it");
            return ChangeJobStarted;
        }
        let unrecoverable =
            self.st.last_error.as_ref().is_some_and(|e| crate::engine::error::is_unrecoverable(&e.code));
        if self.st.retries < self.spec.retry.limit && !unrecoverable {
            let failed_at = self.st.last_error.as_ref().and_then(|e| since(&e.time)).unwrap_or(self.now);
            let due = add(failed_at, backoff(self.spec, self.st.retries));
            if due <= self.now {
                self.st.retries += 1;
                let n = self.st.retries;
                let limit = self.spec.retry.limit;
                self.event(
                    false,
                    "Retrying",
                    format!("restarting the worker from its checkpoint (retry {n} of {limit})"),
                );
                return self.start_worker();
            }
            self.requeue_at(due);
        } else {
            self.requeue_at(expires);
        }
        current
    }

    fn release(&mut self, current: SyncJobPhase) -> SyncJobPhase {
        use SyncJobPhase::*;
        if self.obs.skip_release {
            self.event(true, "ReleaseSkipped", "release skipped as annotated; source resources may remain");
            return self.released();
        }
        match (current, self.obs.release.clone()) {
            (_, ReleaseState::Succeeded) => {
                self.event(false, "Released", "replication slot and publication released");
                let expired = self.st.slot.as_ref().is_some_and(|s| s.expired_at.is_some());
                if expired && self.st.last_error.as_ref().is_none_or(|e| e.code != SLOT_RETENTION_EXPIRED) {
                    // A failed release attempt replaced the reason: the job still needs a new start.
                    let message = slot_expired_message(self.spec, &self.st);
                    self.error(SLOT_RETENTION_EXPIRED, message);
                }
                self.released()
            }
            (ReleaseResourceStarted, ReleaseState::NotStarted) => {
                self.actions.push(Action::RunRelease { attempt: self.st.retries });
                current
            }
            (ReleaseResourceStarted, ReleaseState::Running) => current,
            (ReleaseResourceStarted, ReleaseState::Failed { code, message }) => {
                self.event(true, "ReleaseFailed", format!("{code}: {message}"));
                self.error(&code, message);
                self.requeue_at(add(self.now, backoff(self.spec, self.st.retries)));
                ReleaseResourceFailed
            }
            (_, _) => {
                let failed_at = self.st.last_error.as_ref().and_then(|e| since(&e.time)).unwrap_or(self.now);
                let due = add(failed_at, backoff(self.spec, self.st.retries));
                if due <= self.now {
                    self.st.retries = self.st.retries.saturating_add(1);
                    self.actions.push(Action::RunRelease { attempt: self.st.retries });
                    return ReleaseResourceStarted;
                }
                self.requeue_at(due);
                current
            }
        }
    }

    fn finish(mut self, current: SyncJobPhase, next: SyncJobPhase) -> Plan {
        if next != current || self.old.phase.is_none() {
            self.st.phase_since = Some(Time(self.now));
            self.actions.push(Action::Event {
                warning: next.is_failed()
                    || next == SyncJobPhase::CreateFailed
                    || next == SyncJobPhase::ReleaseResourceFailed,
                reason: "PhaseChanged",
                message: format!("{current} → {next}"),
            });
        }
        self.st.phase = Some(next);
        self.st.observed_generation = Some(self.obs.generation);
        self.track_slot(next);
        self.set_conditions(next);
        Plan { status: self.st, actions: self.actions, requeue_after: self.requeue }
    }

    fn set_conditions(&mut self, phase: SyncJobPhase) {
        use SyncJobPhase::*;
        let (g, now) = (self.obs.generation, self.now);
        let precheck_failed = matches!(self.obs.precheck, PrecheckState::Failed { .. });
        let unrecoverable =
            self.st.last_error.as_ref().is_some_and(|e| crate::engine::error::is_unrecoverable(&e.code));
        let exhausted = phase.is_failed() && (self.st.retries >= self.spec.retry.limit || unrecoverable);
        let stuck = if phase == IncreTransferStarted { self.stuck() } else { None };
        let slot_expired = self.slot_expired() && phase != ReleaseResourceFailed;
        let stalled = match phase {
            CreateFailed | ReleaseResourceFailed => true,
            // The job cannot continue: it needs a new full transfer.
            ReleaseResourceComplete => slot_expired,
            // An edit made the spec invalid: nothing is retried until the spec is fixed.
            ChangeJobFailed if !self.obs.spec_errors.is_empty() => true,
            Configuration => precheck_failed,
            IncreTransferStarted => stuck.is_some(),
            _ => exhausted,
        };
        let ready = match phase {
            IncreTransferStarted => stuck.is_none(),
            Pausing => true,
            ReleaseResourceComplete => !slot_expired,
            FullTransferComplete => !self.spec.task_type.has_incremental(),
            _ => false,
        };
        let reason = if stuck.is_some() {
            "CheckpointStalled"
        } else if slot_expired {
            "SlotRetentionExpired"
        } else {
            phase_reason(phase)
        };
        let message = match (&self.st.last_error, stalled || phase.is_failed()) {
            _ if stuck.is_some() => stuck.clone().unwrap_or_default(),
            _ if slot_expired => format!("{SLOT_RETENTION_EXPIRED}: {}", slot_expired_message(self.spec, &self.st)),
            (Some(e), true) => format!("{}: {}", e.code, e.message),
            _ => format!("phase {phase}"),
        };
        let idle = self.st.slot.as_ref().and_then(|s| since(&s.inactive_since));
        let message = match idle {
            Some(idle)
                if self.may_hold_resources()
                    && !matches!(phase, ReleaseResourceStarted | ReleaseResourceComplete | ReleaseResourceFailed) =>
            {
                format!(
                    "{message}; the replication slot is held without a running worker since {idle} and is released at {} \
                 (spec.slotRetentionMinutes) unless a worker streams again",
                    add(idle, slot_retention(self.spec))
                )
            }
            _ => message,
        };
        if let Some(m) = &stuck
            && !conditions::is_true(&self.old.conditions, types::STALLED)
        {
            self.actions.push(Action::Event { warning: true, reason: "CheckpointStalled", message: m.clone() });
        }
        let conds = &mut self.st.conditions;
        conditions::set(conds, types::READY, Status::from_bool(ready), reason, message.clone(), g, now);
        conditions::set(conds, types::STALLED, Status::from_bool(stalled), reason, message.clone(), g, now);
        conditions::set(conds, types::RECONCILING, Status::from_bool(!ready && !stalled), reason, message, g, now);

        if matches!(phase, Creating | CreateFailed | Configuration | WaitingForStart) {
            let (status, reason, message) = match &self.obs.precheck {
                PrecheckState::Passed => {
                    (Status::True, "Passed", "every precheck item passed or was skipped".to_owned())
                }
                PrecheckState::Failed { items } => (
                    Status::False,
                    "Failed",
                    format!("failed items: {} (fix them, or skip them in spec.precheck)", items.join(", ")),
                ),
                PrecheckState::Running => (Status::Unknown, "Running", "the precheck is running".to_owned()),
                PrecheckState::NotStarted => {
                    (Status::Unknown, "NotStarted", "the precheck has not run for this spec".to_owned())
                }
            };
            conditions::set(conds, types::PRECHECK_PASSED, status, reason, message, g, now);
        }
        if self.spec.task_type.has_full() {
            let done = self.st.full_complete_time.is_some();
            let (reason, message) = if done {
                ("Complete", "every selected table is copied")
            } else {
                ("NotComplete", "the full transfer has not completed")
            };
            conditions::set(conds, types::FULL_TRANSFER_COMPLETE, Status::from_bool(done), reason, message, g, now);
        }
        if let Some(threshold) = self.spec.alarm.as_ref().and_then(|a| a.delay_seconds) {
            let lag = self.st.progress.as_ref().and_then(|p| p.lag_seconds);
            let high = phase == IncreTransferStarted && lag.is_some_and(|l| l > u64::from(threshold));
            // Like the managed services' delay alarm: only a lag that stays high for a while.
            let since = if high { since(&self.old.lag_over_since).unwrap_or(now) } else { now };
            self.st.lag_over_since = high.then_some(Time(since));
            let over = high && add(since, LAG_ALARM_AFTER) <= now;
            if high && !over {
                let wait = Duration::try_from(add(since, LAG_ALARM_AFTER).duration_since(now)).unwrap_or_default();
                self.requeue = Some(self.requeue.map_or(wait, |r| r.min(wait)).max(Duration::from_secs(1)));
            }
            let was_over = conditions::is_true(&self.old.conditions, types::LAG_OVER_THRESHOLD);
            let message = match lag {
                Some(l) => format!("lag {l}s, threshold {threshold}s"),
                None => format!("lag unknown, threshold {threshold}s"),
            };
            conditions::set(
                conds,
                types::LAG_OVER_THRESHOLD,
                Status::from_bool(over),
                if over { "LagHigh" } else { "LagOk" },
                message.clone(),
                g,
                now,
            );
            if over && !was_over {
                self.actions.push(Action::Event { warning: true, reason: "LagOverThreshold", message });
            }
        }
    }
}

impl Planner<'_> {
    /// Why a streaming job is stuck, if it is: the worker stopped reporting, or it has received
    /// changes its checkpoint has not reached for `alarm.stallSeconds`. Requeues for the moment
    /// it would become stuck.
    fn stuck(&mut self) -> Option<String> {
        if !matches!(self.obs.worker, WorkerState::Running { .. }) {
            return None;
        }
        let after = self
            .spec
            .alarm
            .as_ref()
            .and_then(|a| a.stall_seconds)
            .map_or(STALL_AFTER, |s| Duration::from_secs(u64::from(s)));
        let progress = self.st.progress.clone();
        let checkpoint = self.st.checkpoint.clone();
        let (progress, checkpoint) = (progress.as_ref(), checkpoint.as_ref());
        let secs = after.as_secs();
        if let Some(reported) = since(&progress.and_then(|p| p.updated_at.clone())) {
            if add(reported, after) <= self.now {
                return Some(format!("the worker has not reported for over {secs} s"));
            }
            self.requeue_at(add(reported, after));
        }
        let received = since(&progress.and_then(|p| p.received_source_time.clone()));
        let applied = since(&checkpoint.and_then(|c| c.source_time.clone()));
        let advanced = since(&checkpoint.and_then(|c| c.updated_at.clone()));
        if let (Some(received), Some(advanced)) = (received, advanced)
            && Some(received) > applied
        {
            if add(advanced, after) <= self.now {
                return Some(format!(
                    "the checkpoint has not advanced for over {secs} s while source changes wait to be applied"
                ));
            }
            self.requeue_at(add(advanced, after));
        }
        None
    }
}

/// A CamelCase condition reason for a phase.
fn phase_reason(phase: SyncJobPhase) -> &'static str {
    use SyncJobPhase::*;
    match phase {
        Creating => "Creating",
        CreateFailed => "SpecInvalid",
        Configuration => "Configuration",
        WaitingForStart => "WaitingForStart",
        StartJobing => "StartingJob",
        StartJobFailed => "StartJobFailed",
        FullTransferStarted => "FullTransferStarted",
        FullTransferFailed => "FullTransferFailed",
        FullTransferComplete => "FullTransferComplete",
        IncreTransferStarted => "IncrementalTransferStarted",
        IncreTransferFailed => "IncrementalTransferFailed",
        Pausing => "Paused",
        ChangeJobStarted => "ChangeJobStarted",
        ChangeJobFailed => "ChangeJobFailed",
        ReleaseResourceStarted => "ReleaseStarted",
        ReleaseResourceComplete => "Released",
        ReleaseResourceFailed => "ReleaseFailed",
    }
}
