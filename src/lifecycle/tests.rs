//! The SyncJob state machine as a specification: one test per behaviour, then an exhaustive
//! walk proving no plan ever takes an edge outside the allowed graph.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, types};
use super::syncjob::backoff;
use super::*;
use crate::api::validate::FieldError;
use crate::api::{
    LastError, Progress, SlotStatus, SyncJobPhase, SyncJobSpec, SyncJobStatus, TaskType, TransferStage, WorkerStatus,
};
use SyncJobPhase::*;

fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

fn later(secs: i64) -> Timestamp {
    now().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

/// A status in `phase` at generation 1, with `attempt` workers started so far.
fn status(phase: SyncJobPhase, attempt: u32) -> SyncJobStatus {
    SyncJobStatus {
        phase: Some(phase),
        observed_generation: Some(1),
        worker: (attempt > 0).then(|| WorkerStatus { attempt, ..Default::default() }),
        phase_since: Some(Time(now())),
        ..Default::default()
    }
}

fn failed_status(phase: SyncJobPhase, retries: u32, failed_at: Timestamp) -> SyncJobStatus {
    SyncJobStatus {
        retries,
        failed_since: Some(Time(failed_at)),
        last_error: Some(LastError {
            code: "SOURCE_CONNECT".into(),
            message: "refused".into(),
            time: Some(Time(failed_at)),
        }),
        ..status(phase, 1)
    }
}

fn obs() -> Observed {
    Observed::new(1)
}

fn with_precheck(p: PrecheckState) -> Observed {
    Observed { precheck: p, ..obs() }
}

fn with_worker(w: WorkerState) -> Observed {
    Observed { worker: w, ..obs() }
}

fn running(stage: TransferStage) -> WorkerState {
    WorkerState::Running { stage: Some(stage) }
}

fn invalid() -> Observed {
    Observed {
        spec_errors: vec![FieldError {
            path: "spec.source.port".into(),
            message: "must be between 1 and 65535".into(),
        }],
        ..obs()
    }
}

#[test]
fn a_new_valid_job_enters_configuration_and_runs_the_precheck() {
    let p = plan(&SyncJobSpec::test(), &SyncJobStatus::default(), &obs(), now());
    assert_eq!(p.phase(), Configuration);
    assert!(p.has(&Action::RunPrecheck { generation: 1 }));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::StartWorker { .. })));
}

#[test]
fn an_invalid_spec_fails_creation_with_the_field_in_the_condition_and_starts_nothing() {
    let p = plan(&SyncJobSpec::test(), &SyncJobStatus::default(), &invalid(), now());
    assert_eq!(p.phase(), CreateFailed);
    let stalled = conditions::get(&p.status.conditions, types::STALLED).unwrap();
    assert_eq!(stalled.status, "True");
    assert!(stalled.message.contains("spec.source.port"), "{}", stalled.message);
    assert_eq!(p.status.last_error.as_ref().unwrap().code, "SPEC_INVALID");
    assert!(p.actions.iter().all(|a| matches!(a, Action::Event { .. })));
}

#[test]
fn a_fixed_spec_leaves_create_failed_for_configuration() {
    let p = plan(&SyncJobSpec::test(), &status(CreateFailed, 0), &Observed::new(2), now());
    assert_eq!(p.phase(), Configuration);
    assert!(p.has(&Action::RunPrecheck { generation: 2 }));
}

#[test]
fn a_spec_broken_in_configuration_fails_creation() {
    let p = plan(&SyncJobSpec::test(), &status(Configuration, 0), &invalid(), now());
    assert_eq!(p.phase(), CreateFailed);
}

#[test]
fn a_failed_precheck_keeps_the_job_in_configuration_with_precheck_passed_false() {
    let o = with_precheck(PrecheckState::Failed { items: vec!["source.walLevel".into()] });
    let p = plan(&SyncJobSpec::test(), &status(Configuration, 0), &o, now());
    assert_eq!(p.phase(), Configuration);
    let c = conditions::get(&p.status.conditions, types::PRECHECK_PASSED).unwrap();
    assert_eq!(c.status, "False");
    assert!(c.message.contains("source.walLevel"));
    assert!(conditions::is_true(&p.status.conditions, types::STALLED));
}

#[test]
fn a_running_precheck_waits() {
    let p = plan(&SyncJobSpec::test(), &status(Configuration, 0), &with_precheck(PrecheckState::Running), now());
    assert_eq!(p.phase(), Configuration);
    assert!(conditions::is_true(&p.status.conditions, types::RECONCILING));
}

#[test]
fn a_passed_precheck_starts_the_first_worker() {
    let p = plan(&SyncJobSpec::test(), &status(Configuration, 0), &with_precheck(PrecheckState::Passed), now());
    assert_eq!(p.phase(), StartJobing);
    assert!(p.has(&Action::StartWorker { attempt: 1 }));
    assert_eq!(p.status.worker.unwrap().attempt, 1);
}

#[test]
fn a_start_time_ahead_waits_and_requeues_for_it() {
    let spec = SyncJobSpec::test().starting_at(later(3600));
    let p = plan(&spec, &status(Configuration, 0), &with_precheck(PrecheckState::Passed), now());
    assert_eq!(p.phase(), WaitingForStart);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(3600)));
    let p = plan(&spec, &status(WaitingForStart, 0), &with_precheck(PrecheckState::Passed), later(3600));
    assert_eq!(p.phase(), StartJobing);
}

#[test]
fn a_spec_change_while_waiting_reruns_the_precheck() {
    let spec = SyncJobSpec::test().starting_at(later(3600));
    let p = plan(&spec, &status(WaitingForStart, 0), &Observed::new(2), now());
    assert_eq!(p.phase(), Configuration);
    assert!(p.has(&Action::RunPrecheck { generation: 2 }));
}

#[test]
fn worker_stages_drive_a_full_incr_job_to_the_incremental_phase_recording_step_times() {
    let spec = SyncJobSpec::test();
    let p = plan(&spec, &status(StartJobing, 1), &with_worker(running(TransferStage::Full)), now());
    assert_eq!(p.phase(), FullTransferStarted);
    assert!(p.status.full_start_time.is_some());
    let p = plan(&spec, &p.status, &with_worker(running(TransferStage::FullComplete)), later(10));
    assert_eq!(p.phase(), FullTransferComplete);
    assert!(conditions::is_true(&p.status.conditions, types::FULL_TRANSFER_COMPLETE));
    assert!(!conditions::is_true(&p.status.conditions, types::READY));
    let p = plan(&spec, &p.status, &with_worker(running(TransferStage::Incremental)), later(20));
    assert_eq!(p.phase(), IncreTransferStarted);
    assert_eq!(p.status.incr_start_time, Some(Time(later(20))));
    assert!(conditions::is_true(&p.status.conditions, types::READY));
}

#[test]
fn an_incr_trans_job_goes_straight_to_the_incremental_phase() {
    let spec = SyncJobSpec::test().task(TaskType::IncrTrans);
    let p = plan(&spec, &status(StartJobing, 1), &with_worker(running(TransferStage::Incremental)), now());
    assert_eq!(p.phase(), IncreTransferStarted);
    assert!(p.status.full_start_time.is_none());
    assert!(conditions::get(&p.status.conditions, types::FULL_TRANSFER_COMPLETE).is_none());
}

#[test]
fn a_full_trans_job_completes_and_never_reaches_the_incremental_phase() {
    let spec = SyncJobSpec::test().task(TaskType::FullTrans);
    let p = plan(&spec, &status(FullTransferStarted, 1), &with_worker(running(TransferStage::Incremental)), now());
    assert_eq!(p.phase(), FullTransferStarted);
    let p = plan(
        &spec,
        &status(FullTransferStarted, 1),
        &with_worker(WorkerState::Succeeded { stage: Some(TransferStage::FullComplete) }),
        now(),
    );
    assert_eq!(p.phase(), FullTransferComplete);
    assert!(conditions::is_true(&p.status.conditions, types::READY));
    let p = plan(
        &spec,
        &p.status,
        &with_worker(WorkerState::Succeeded { stage: Some(TransferStage::FullComplete) }),
        later(60),
    );
    assert_eq!(p.phase(), FullTransferComplete);
    assert!(p.actions.iter().all(|a| !matches!(a, Action::StartWorker { .. })));
}

#[test]
fn full_transfer_complete_never_goes_back_to_full_transfer_started() {
    let mut st = status(FullTransferComplete, 1);
    st.full_complete_time = Some(Time(now()));
    let p = plan(&SyncJobSpec::test(), &st, &with_worker(running(TransferStage::Full)), now());
    assert_eq!(p.phase(), FullTransferComplete);
}

#[test]
fn a_vanished_worker_pod_is_recreated_under_the_same_attempt() {
    let p = plan(&SyncJobSpec::test(), &status(IncreTransferStarted, 3), &with_worker(WorkerState::Absent), now());
    assert_eq!(p.phase(), IncreTransferStarted);
    assert!(p.has(&Action::StartWorker { attempt: 3 }));
}

#[test]
fn a_worker_failure_enters_the_failed_phase_of_its_step_with_last_error() {
    for (from, to) in [
        (StartJobing, StartJobFailed),
        (FullTransferStarted, FullTransferFailed),
        (FullTransferComplete, IncreTransferFailed),
        (IncreTransferStarted, IncreTransferFailed),
        (ChangeJobStarted, ChangeJobFailed),
    ] {
        let o = with_worker(WorkerState::Failed { code: "TARGET_WRITE".into(), message: "disk full".into() });
        let p = plan(&SyncJobSpec::test(), &status(from, 1), &o, now());
        assert_eq!(p.phase(), to, "from {from}");
        let e = p.status.last_error.as_ref().unwrap();
        assert_eq!((e.code.as_str(), e.message.as_str()), ("TARGET_WRITE", "disk full"));
        assert_eq!(p.status.failed_since, Some(Time(now())));
        assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));
    }
}

#[test]
fn a_failed_job_retries_after_an_exponential_backoff() {
    let spec = SyncJobSpec::test();
    assert_eq!(backoff(&spec, 0), Duration::from_secs(10));
    assert_eq!(backoff(&spec, 3), Duration::from_secs(80));
    assert_eq!(backoff(&spec, 30), Duration::from_secs(3600));
    let st = failed_status(FullTransferFailed, 2, now());
    let p = plan(&spec, &st, &obs(), later(39));
    assert_eq!(p.phase(), FullTransferFailed);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    let p = plan(&spec, &st, &obs(), later(40));
    assert_eq!(p.phase(), StartJobing);
    assert!(p.has(&Action::StartWorker { attempt: 2 }));
    assert_eq!(p.status.retries, 3);
    assert_eq!(p.status.failed_since, Some(Time(now())), "failedSince is kept across retries");
}

#[test]
fn retries_stop_at_the_limit_and_the_job_is_stalled() {
    let spec = SyncJobSpec::test().retries(2);
    let p = plan(&spec, &failed_status(IncreTransferFailed, 2, now()), &obs(), later(86_400));
    assert_eq!(p.phase(), IncreTransferFailed);
    assert!(conditions::is_true(&p.status.conditions, types::STALLED));
    assert!(p.actions.iter().all(|a| !matches!(a, Action::StartWorker { .. })));
}

#[test]
fn a_failure_no_retry_can_help_stalls_the_job_at_once() {
    for code in ["BINLOG_PURGED", "SLOT_LOST", "TARGET_TABLE_MISSING", "TARGET_TABLE_CHANGED"] {
        let o = with_worker(WorkerState::Failed { code: code.into(), message: "start over".into() });
        let p = plan(&SyncJobSpec::test(), &status(IncreTransferStarted, 1), &o, now());
        assert_eq!(p.phase(), IncreTransferFailed);
        assert!(conditions::is_true(&p.status.conditions, types::STALLED), "{code}");
        let mut st = p.status.clone();
        st.last_error.as_mut().unwrap().time = Some(Time(now()));
        let later = plan(&SyncJobSpec::test(), &st, &obs(), later(3600));
        assert_eq!(later.phase(), IncreTransferFailed, "{code}: never retried");
        assert!(later.actions.iter().all(|a| !matches!(a, Action::StartWorker { .. })));
    }
}

#[test]
fn a_job_failed_for_expired_days_is_released() {
    let spec = SyncJobSpec::test().retries(0).expires_after_days(14);
    let st = failed_status(IncreTransferFailed, 0, now());
    let p = plan(&spec, &st, &obs(), later(14 * 86_400 - 1));
    assert_eq!(p.phase(), IncreTransferFailed);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    let p = plan(&spec, &st, &obs(), later(14 * 86_400));
    assert_eq!(p.phase(), ReleaseResourceStarted);
    assert!(p.has(&Action::RunRelease { attempt: 0 }));
}

#[test]
fn a_healthy_phase_clears_retries_after_ten_minutes() {
    let mut st = status(IncreTransferStarted, 2);
    st.retries = 3;
    st.failed_since = Some(Time(now()));
    let o = with_worker(running(TransferStage::Incremental));
    let p = plan(&SyncJobSpec::test(), &st, &o, later(599));
    assert_eq!(p.status.retries, 3);
    let p = plan(&SyncJobSpec::test(), &st, &o, later(600));
    assert_eq!((p.status.retries, p.status.failed_since), (0, None));
}

#[test]
fn pausing_stops_the_worker_and_resuming_starts_a_new_attempt() {
    let p = plan(
        &SyncJobSpec::test().paused(),
        &status(IncreTransferStarted, 1),
        &Observed { worker: running(TransferStage::Incremental), ..Observed::new(2) },
        now(),
    );
    assert_eq!(p.phase(), Pausing);
    assert!(p.has(&Action::StopWorker));
    assert!(conditions::is_true(&p.status.conditions, types::READY));
    let p = plan(&SyncJobSpec::test(), &p.status, &Observed::new(3), later(60));
    assert_eq!(p.phase(), StartJobing);
    assert!(p.has(&Action::StartWorker { attempt: 2 }));
}

#[test]
fn a_job_paused_before_it_started_resumes_through_the_precheck_path() {
    let p =
        plan(&SyncJobSpec::test().paused(), &status(Configuration, 0), &with_precheck(PrecheckState::Passed), now());
    assert_eq!(p.phase(), Pausing);
    assert!(p.actions.iter().all(|a| !matches!(a, Action::StartWorker { .. })));
    let p =
        plan(&SyncJobSpec::test(), &p.status, &Observed { precheck: PrecheckState::Passed, ..Observed::new(2) }, now());
    assert_eq!(p.phase(), StartJobing);
}

#[test]
fn a_spec_edit_while_running_restarts_the_worker_in_change_job_started() {
    let o = Observed { worker: running(TransferStage::Incremental), ..Observed::new(2) };
    let p = plan(&SyncJobSpec::test(), &status(IncreTransferStarted, 1), &o, now());
    assert_eq!(p.phase(), ChangeJobStarted);
    assert!(p.has(&Action::StopWorker));
    assert!(p.has(&Action::StartWorker { attempt: 2 }));
    let o = Observed { worker: running(TransferStage::Incremental), ..Observed::new(2) };
    let p = plan(&SyncJobSpec::test(), &p.status, &o, later(5));
    assert_eq!(p.phase(), IncreTransferStarted);
}

#[test]
fn an_invalid_edit_while_running_fails_the_change_and_stops_the_worker() {
    let o = Observed { worker: running(TransferStage::Incremental), ..invalid() };
    let p = plan(&SyncJobSpec::test(), &status(IncreTransferStarted, 1), &o, now());
    assert_eq!(p.phase(), ChangeJobFailed);
    assert!(p.has(&Action::StopWorker));
    let p = plan(&SyncJobSpec::test(), &p.status, &Observed::new(2), later(5));
    assert_eq!(p.phase(), ChangeJobStarted);
}

#[test]
fn stopping_a_running_job_releases_its_source_resources() {
    let p = plan(&SyncJobSpec::test().stopped(), &status(IncreTransferStarted, 1), &obs(), now());
    assert_eq!(p.phase(), ReleaseResourceStarted);
    assert!(p.has(&Action::StopWorker) && p.has(&Action::RunRelease { attempt: 0 }));
    let o = Observed { release: ReleaseState::Succeeded, ..obs() };
    let p = plan(&SyncJobSpec::test().stopped(), &p.status, &o, now());
    assert_eq!(p.phase(), ReleaseResourceComplete);
    assert!(!p.has(&Action::RemoveFinalizer), "a stopped job keeps its finalizer until deleted");
}

#[test]
fn deleting_a_job_releases_then_removes_the_finalizer() {
    let o = Observed { deleting: true, ..obs() };
    let p = plan(&SyncJobSpec::test(), &status(FullTransferStarted, 1), &o, now());
    assert_eq!(p.phase(), ReleaseResourceStarted);
    assert!(!p.has(&Action::RemoveFinalizer));
    let o = Observed { deleting: true, release: ReleaseState::Succeeded, ..obs() };
    let p = plan(&SyncJobSpec::test(), &p.status, &o, now());
    assert_eq!(p.phase(), ReleaseResourceComplete);
    assert!(p.has(&Action::RemoveFinalizer));
}

#[test]
fn deleting_a_job_that_never_started_a_worker_needs_no_release() {
    let o = Observed { deleting: true, ..obs() };
    let p = plan(&SyncJobSpec::test(), &status(Configuration, 0), &o, now());
    assert_eq!(p.phase(), ReleaseResourceComplete);
    assert!(p.has(&Action::RemoveFinalizer));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::RunRelease { .. })));
}

#[test]
fn a_failed_release_is_retried_and_can_be_overridden_by_annotation() {
    let o = Observed {
        deleting: true,
        release: ReleaseState::Failed { code: "SOURCE_CONNECT".into(), message: "no route".into() },
        ..obs()
    };
    let p = plan(&SyncJobSpec::test(), &status(ReleaseResourceStarted, 1), &o, now());
    assert_eq!(p.phase(), ReleaseResourceFailed);
    assert!(conditions::is_true(&p.status.conditions, types::STALLED));
    let o2 = Observed { deleting: true, ..obs() };
    let retry = plan(&SyncJobSpec::test(), &p.status, &o2, later(10));
    assert_eq!(retry.phase(), ReleaseResourceStarted);
    assert!(retry.has(&Action::RunRelease { attempt: 1 }));
    let o3 = Observed { deleting: true, skip_release: true, ..obs() };
    let skip = plan(&SyncJobSpec::test(), &p.status, &o3, now());
    assert_eq!(skip.phase(), ReleaseResourceComplete);
    assert!(skip.has(&Action::RemoveFinalizer));
}

#[test]
fn lag_over_the_alarm_threshold_for_six_minutes_sets_the_condition_and_records_one_event() {
    let spec = SyncJobSpec::test().lag_alarm(30);
    let mut st = status(IncreTransferStarted, 1);
    st.progress = Some(Progress { lag_seconds: Some(45), ..Default::default() });
    let o = with_worker(running(TransferStage::Incremental));
    let p = plan(&spec, &st, &o, now());
    assert!(!conditions::is_true(&p.status.conditions, types::LAG_OVER_THRESHOLD), "not after a moment");
    assert_eq!(p.status.lag_over_since, Some(Time(now())));
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(360)), "looks again when it would turn");
    let p = plan(&spec, &p.status, &o, later(360));
    assert!(conditions::is_true(&p.status.conditions, types::LAG_OVER_THRESHOLD));
    assert_eq!(p.event_reasons(), vec!["LagOverThreshold"]);
    let again = plan(&spec, &p.status, &o, later(400));
    assert!(again.event_reasons().is_empty(), "no second event while the lag stays high");
    let mut st = again.status.clone();
    st.progress = Some(Progress { lag_seconds: Some(2), ..Default::default() });
    let p = plan(&spec, &st, &o, later(410));
    assert!(!conditions::is_true(&p.status.conditions, types::LAG_OVER_THRESHOLD));
    assert_eq!(p.status.lag_over_since, None, "a dip resets the six minutes");
}

#[test]
fn a_streaming_job_whose_checkpoint_stops_while_changes_wait_is_stalled_not_ready() {
    let spec = SyncJobSpec::test();
    let mut st = status(IncreTransferStarted, 1);
    st.checkpoint = Some(crate::api::Checkpoint {
        position: Some("0/1".into()),
        source_time: Some(Time(now())),
        updated_at: Some(Time(now())),
    });
    st.progress = Some(Progress {
        received_source_time: Some(Time(later(1))),
        updated_at: Some(Time(later(700))),
        ..Default::default()
    });
    let o = with_worker(running(TransferStage::Incremental));
    let early = plan(&spec, &st, &o, later(300));
    assert!(conditions::is_true(&early.status.conditions, types::READY));
    assert_eq!(early.requeue_after, Some(std::time::Duration::from_secs(300)));
    let p = plan(&spec, &st, &o, later(700));
    assert_eq!(p.phase(), IncreTransferStarted, "the phase stays; the conditions tell");
    assert!(conditions::is_true(&p.status.conditions, types::STALLED));
    assert!(!conditions::is_true(&p.status.conditions, types::READY));
    assert_eq!(p.event_reasons(), vec!["CheckpointStalled"]);
    // Caught up (nothing waiting): an old checkpoint on an idle source is fine.
    st.progress.as_mut().unwrap().received_source_time = Some(Time(now()));
    let idle = plan(&spec, &st, &o, later(700));
    assert!(conditions::is_true(&idle.status.conditions, types::READY));
}

#[test]
fn a_worker_that_stops_reporting_is_stalled() {
    let mut spec = SyncJobSpec::test();
    spec.alarm = Some(ferry_alarm(60));
    let mut st = status(IncreTransferStarted, 1);
    st.progress = Some(Progress { updated_at: Some(Time(now())), ..Default::default() });
    let o = with_worker(running(TransferStage::Incremental));
    assert!(conditions::is_true(&plan(&spec, &st, &o, later(30)).status.conditions, types::READY));
    let p = plan(&spec, &st, &o, later(61));
    assert!(conditions::is_true(&p.status.conditions, types::STALLED));
    let stalled = p.status.conditions.iter().find(|c| c.type_ == types::STALLED).unwrap();
    assert!(stalled.message.contains("not reported"), "{stalled:?}");
}

fn ferry_alarm(stall: u32) -> crate::api::Alarm {
    crate::api::Alarm { stall_seconds: Some(stall), ..Default::default() }
}

#[test]
fn conditions_keep_their_transition_time_while_their_status_holds() {
    let o = with_precheck(PrecheckState::Running);
    let p1 = plan(&SyncJobSpec::test(), &status(Configuration, 0), &o, now());
    let p2 = plan(&SyncJobSpec::test(), &p1.status, &o, later(30));
    let t = |p: &Plan| conditions::get(&p.status.conditions, types::RECONCILING).unwrap().last_transition_time.clone();
    assert_eq!(t(&p1), t(&p2));
    assert!(p2.event_reasons().is_empty(), "no event when nothing changes");
}

#[test]
fn skipped_precheck_items_do_not_block_but_unskippable_ones_do() {
    use crate::api::{PrecheckItem, PrecheckResult, PrecheckSpec};
    let item = |name: &str, skippable| PrecheckItem {
        item: name.into(),
        result: PrecheckResult::Failed,
        reason: None,
        fix: None,
        skippable,
        skipped: false,
    };
    let mut items = vec![item("target.empty", true), item("source.auth", false)];
    let skips = PrecheckSpec { skip: false, skip_items: vec!["target.empty".into(), "source.auth".into()] };
    assert_eq!(blocking_items(&items, Some(&skips)), vec!["source.auth".to_string()]);
    assert_eq!(blocking_items(&items, None).len(), 2);
    mark_skipped(&mut items, Some(&skips));
    assert!(items[0].skipped && !items[1].skipped);
}

/// `status` with the slot a worker reported, held without a running worker since `idle` (if
/// set).
fn holding_slot(mut st: SyncJobStatus, idle: Option<Timestamp>) -> SyncJobStatus {
    st.slot = Some(SlotStatus {
        inactive_since: idle.map(Time),
        ..SlotStatus::measured("ferry_shop_orders_1", 1 << 30, Time(later(-7200)))
    });
    st
}

fn idle_since(p: &Plan) -> Option<Timestamp> {
    p.status.slot.as_ref().and_then(|s| s.inactive_since.as_ref()).map(|t| t.0)
}

const DAY: i64 = 86_400;

#[test]
fn a_paused_job_counts_its_slot_from_when_its_worker_stopped_and_looks_again_when_the_retention_passes() {
    let spec = SyncJobSpec::test().paused();
    // The worker is still stopping: nothing counts yet.
    let o = Observed { worker: running(TransferStage::Incremental), ..obs() };
    let p = plan(&spec, &holding_slot(status(Pausing, 1), None), &o, now());
    assert_eq!(idle_since(&p), None);
    // It is gone: the clock starts and the job is looked at again when the day has passed.
    let p = plan(&spec, &p.status, &obs(), later(30));
    assert_eq!(p.phase(), Pausing);
    assert_eq!(idle_since(&p), Some(later(30)));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(DAY as u64)));
    let ready = conditions::get(&p.status.conditions, types::READY).unwrap();
    assert!(ready.message.contains("released at 2026-11-23T12:00:30Z"), "{ready:?}");
    // Later reconciles keep the first moment.
    let p = plan(&spec, &p.status, &obs(), later(3600));
    assert_eq!(idle_since(&p), Some(later(30)));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(DAY as u64 + 30 - 3600)));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::RunRelease { .. })));
}

#[test]
fn a_paused_job_that_held_its_slot_past_the_retention_releases_it_and_says_it_needs_a_new_full_transfer() {
    let spec = SyncJobSpec::test().paused().slot_retention_minutes(60);
    let st = holding_slot(status(Pausing, 1), Some(now()));
    let p = plan(&spec, &st, &obs(), later(3599));
    assert_eq!(p.phase(), Pausing);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    let p = plan(&spec, &st, &obs(), later(3600));
    assert_eq!(p.phase(), ReleaseResourceStarted);
    assert!(p.has(&Action::RunRelease { attempt: 0 }));
    let e = p.status.last_error.clone().unwrap();
    assert_eq!(e.code, SLOT_RETENTION_EXPIRED);
    for words in
        ["ferry_shop_orders_1", "spec.slotRetentionMinutes (60 minutes)", "new full transfer", "apply it again"]
    {
        assert!(e.message.contains(words), "{words}: {}", e.message);
    }
    assert!(p.event_reasons().contains(&"SlotRetentionExpired"));
    assert_eq!(p.status.slot.as_ref().unwrap().expired_at, Some(Time(later(3600))));
    assert_eq!(idle_since(&p), Some(now()), "the slot is held until the release is done");
    let reconciling = conditions::get(&p.status.conditions, types::RECONCILING).unwrap();
    assert_eq!((reconciling.status.as_str(), reconciling.reason.as_str()), ("True", "SlotRetentionExpired"));

    // Released: the job is done for and says so; its finalizer stays until it is deleted.
    let o = Observed { release: ReleaseState::Succeeded, ..obs() };
    let done = plan(&spec, &p.status, &o, later(3660));
    assert_eq!(done.phase(), ReleaseResourceComplete);
    assert!(!done.has(&Action::RemoveFinalizer));
    assert_eq!(idle_since(&done), None);
    assert_eq!(done.status.last_error.as_ref().unwrap().code, SLOT_RETENTION_EXPIRED);
    let stalled = conditions::get(&done.status.conditions, types::STALLED).unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "SlotRetentionExpired"));
    assert!(stalled.message.contains("new full transfer"), "{stalled:?}");
    assert!(!conditions::is_true(&done.status.conditions, types::READY));
    // Resuming changes nothing.
    let resumed = plan(&SyncJobSpec::test().slot_retention_minutes(60), &done.status, &obs(), later(7200));
    assert_eq!(resumed.phase(), ReleaseResourceComplete);
    assert!(resumed.actions.iter().all(|a| matches!(a, Action::Event { .. })));
}

#[test]
fn a_failed_release_of_an_expired_slot_is_retried_and_the_job_still_says_why_it_ended() {
    let spec = SyncJobSpec::test().paused().slot_retention_minutes(60);
    let p = plan(&spec, &holding_slot(status(Pausing, 1), Some(now())), &obs(), later(3600));
    let o = Observed {
        release: ReleaseState::Failed { code: "SOURCE_CONNECT".into(), message: "no route".into() },
        ..obs()
    };
    let failed = plan(&spec, &p.status, &o, later(3610));
    assert_eq!(failed.phase(), ReleaseResourceFailed);
    assert_eq!(failed.status.last_error.as_ref().unwrap().code, "SOURCE_CONNECT");
    let retry = plan(&spec, &failed.status, &obs(), later(3700));
    assert_eq!(retry.phase(), ReleaseResourceStarted);
    let o = Observed { release: ReleaseState::Succeeded, ..obs() };
    let done = plan(&spec, &retry.status, &o, later(3710));
    assert_eq!(done.phase(), ReleaseResourceComplete);
    assert_eq!(done.status.last_error.as_ref().unwrap().code, SLOT_RETENTION_EXPIRED);
    assert!(conditions::is_true(&done.status.conditions, types::STALLED));
}

#[test]
fn a_failed_job_waiting_for_a_retry_counts_toward_the_retention_until_a_worker_runs_again() {
    let spec = SyncJobSpec::test().slot_retention_minutes(60);
    let mut st = holding_slot(failed_status(IncreTransferFailed, 0, now()), None);
    st.retries = 0;
    // Failed: the clock starts.
    let p = plan(&spec, &st, &obs(), later(1));
    assert_eq!(p.phase(), IncreTransferFailed);
    assert_eq!(idle_since(&p), Some(later(1)));
    // The retry's pod is created, then waits to be scheduled: still no worker, the clock runs on.
    let p = plan(&spec, &p.status, &obs(), later(10));
    assert_eq!(p.phase(), StartJobing);
    let p = plan(&spec, &p.status, &with_worker(WorkerState::Pending), later(20));
    assert_eq!(idle_since(&p), Some(later(1)));
    // A pod that never runs: the slot goes when the hour is up.
    let p2 = plan(&spec, &p.status, &with_worker(WorkerState::Pending), later(3601));
    assert_eq!(p2.phase(), ReleaseResourceStarted);
    assert!(p2.has(&Action::StopWorker), "the pending worker is removed");
    // A worker that runs stops the clock.
    let p = plan(&spec, &p.status, &with_worker(running(TransferStage::Starting)), later(30));
    assert_eq!(idle_since(&p), None);
    let p = plan(&spec, &p.status, &with_worker(running(TransferStage::Incremental)), later(2 * 3600));
    assert_eq!(p.phase(), IncreTransferStarted);
}

#[test]
fn a_job_whose_worker_runs_never_loses_its_slot_however_long_ago_it_was_idle() {
    let spec = SyncJobSpec::test().slot_retention_minutes(1);
    for (phase, stage) in [
        (IncreTransferStarted, TransferStage::Incremental),
        (FullTransferStarted, TransferStage::Full),
        (StartJobing, TransferStage::Starting),
    ] {
        let st = holding_slot(status(phase, 1), Some(later(-30 * DAY)));
        let p = plan(&spec, &st, &with_worker(running(stage)), now());
        assert!(!matches!(p.phase(), ReleaseResourceStarted), "{phase}");
        assert!(!p.actions.iter().any(|a| matches!(a, Action::RunRelease { .. })), "{phase}");
        assert_eq!(idle_since(&p), None, "{phase}");
    }
}

#[test]
fn without_a_reported_slot_a_mysql_source_or_a_completed_full_trans_job_nothing_is_released_for_retention() {
    let long_ago = Some(later(-30 * DAY));
    // No worker reported a slot (it failed before creating one): only expiredDays applies.
    let p = plan(&SyncJobSpec::test(), &failed_status(IncreTransferFailed, 5, later(-2 * DAY)), &obs(), now());
    assert_eq!(p.phase(), IncreTransferFailed);
    assert!(p.status.slot.is_none());
    // A MySQL-family source holds no slot.
    let mut mysql = SyncJobSpec::test().paused();
    mysql.source.engine = crate::api::Engine::Mariadb;
    mysql.target.engine = crate::api::Engine::Mariadb;
    let p = plan(&mysql, &holding_slot(status(Pausing, 1), long_ago), &obs(), now());
    assert_eq!(p.phase(), Pausing);
    assert_eq!(idle_since(&p), None);
    // A FULL_TRANS job's worker dropped its slot when it completed.
    let spec = SyncJobSpec::test().task(TaskType::FullTrans);
    let mut st = holding_slot(status(FullTransferComplete, 1), long_ago);
    st.full_complete_time = Some(Time(later(-31 * DAY)));
    let p = plan(&spec, &st, &with_worker(WorkerState::Succeeded { stage: Some(TransferStage::FullComplete) }), now());
    assert_eq!(p.phase(), FullTransferComplete);
    assert_eq!(idle_since(&p), None);
    assert!(!crate::lifecycle::holds_slot(&spec, &p.status));
}

/// Every phase against every kind of observation, spec and status: the plan only takes allowed
/// edges, never enters the incremental phase for FULL_TRANS, never moves from
/// FULL_TRANSFER_COMPLETE back to FULL_TRANSFER_STARTED, and a finalizer is only removed once
/// nothing is held or the user said so.
#[test]
fn no_plan_takes_a_forbidden_transition() {
    let workers = [
        WorkerState::Absent,
        WorkerState::Pending,
        WorkerState::Running { stage: None },
        running(TransferStage::Starting),
        running(TransferStage::Full),
        running(TransferStage::FullComplete),
        running(TransferStage::Incremental),
        running(TransferStage::Stopped),
        WorkerState::Succeeded { stage: Some(TransferStage::FullComplete) },
        WorkerState::Succeeded { stage: Some(TransferStage::Stopped) },
        WorkerState::Failed { code: "X".into(), message: "y".into() },
    ];
    let prechecks = [
        PrecheckState::NotStarted,
        PrecheckState::Running,
        PrecheckState::Passed,
        PrecheckState::Failed { items: vec!["a".into()] },
    ];
    let releases = [
        ReleaseState::NotStarted,
        ReleaseState::Running,
        ReleaseState::Succeeded,
        ReleaseState::Failed { code: "X".into(), message: "y".into() },
    ];
    let mut specs = Vec::new();
    for task in [TaskType::FullTrans, TaskType::IncrTrans, TaskType::FullIncrTrans] {
        let base = SyncJobSpec::test().task(task);
        specs.push(base.clone());
        specs.push(base.clone().paused());
        specs.push(base.clone().stopped());
        specs.push(base.clone().starting_at(later(600)));
        specs.push(base.retries(0));
    }
    // Each phase is walked on its own thread; the walk is long in a debug build.
    let walk = |from: SyncJobPhase| {
        let mut checked = 0;
        let mut taken = std::collections::BTreeSet::new();
        {
            for attempt in [0, 2] {
                // Only reachable statuses: a worker has started exactly from STARTJOBING on.
                let started = !matches!(from, Creating | CreateFailed | Configuration | WaitingForStart);
                if started != (attempt > 0) && from != Pausing {
                    continue;
                }
                for full_done in [false, true] {
                    // The last one holds a slot idle for two days: past its retention, not expiredDays.
                    for (retries, failed_at) in
                        [(0, now()), (5, now()), (0, later(-60)), (0, later(-30 * 86_400)), (0, later(-2 * 86_400))]
                    {
                        let mut st = failed_status(from, retries, failed_at);
                        if failed_at == later(-2 * 86_400) {
                            st = holding_slot(st, Some(failed_at));
                        }
                        st.worker = (attempt > 0).then(|| WorkerStatus { attempt, ..Default::default() });
                        st.full_complete_time = full_done.then(|| Time(now()));
                        for spec in &specs {
                            for generation in [1, 2] {
                                for (deleting, skip_release) in [(false, false), (true, false), (true, true)] {
                                    for spec_ok in [true, false] {
                                        for w in &workers {
                                            for pc in &prechecks {
                                                for r in &releases {
                                                    let o = Observed {
                                                        generation,
                                                        deleting,
                                                        worker: w.clone(),
                                                        precheck: pc.clone(),
                                                        release: r.clone(),
                                                        spec_errors: if spec_ok {
                                                            vec![]
                                                        } else {
                                                            invalid().spec_errors
                                                        },
                                                        skip_release,
                                                    };
                                                    let p = plan(spec, &st, &o, now());
                                                    let to = p.phase();
                                                    taken.insert((from.as_str(), to.as_str()));
                                                    let ctx = || format!("{from} → {to} with {spec:?} {o:?} {st:?}");
                                                    assert!(from.can_transition_to(to), "forbidden: {}", ctx());
                                                    if spec.task_type == TaskType::FullTrans
                                                        && from != IncreTransferStarted
                                                    {
                                                        assert_ne!(to, IncreTransferStarted, "{}", ctx());
                                                    }
                                                    if from == FullTransferComplete {
                                                        assert_ne!(to, FullTransferStarted, "{}", ctx());
                                                    }
                                                    if p.has(&Action::RemoveFinalizer) {
                                                        assert!(deleting && to == ReleaseResourceComplete, "{}", ctx());
                                                        assert!(
                                                            attempt == 0
                                                                || skip_release
                                                                || matches!(from, ReleaseResourceComplete)
                                                                || (from == ReleaseResourceStarted
                                                                    && o.release == ReleaseState::Succeeded)
                                                                || (from == ReleaseResourceFailed
                                                                    && o.release == ReleaseState::Succeeded),
                                                            "finalizer removed while resources may be held: {}",
                                                            ctx()
                                                        );
                                                    }
                                                    checked += 1;
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (checked, taken)
    };
    let (checked, taken) = std::thread::scope(|scope| {
        let handles: Vec<_> = SyncJobPhase::ALL.iter().map(|&from| scope.spawn(move || walk(from))).collect();
        handles.into_iter().fold((0, std::collections::BTreeSet::new()), |(n, mut all), h| {
            let (c, t) = h.join().expect("a walk thread panicked");
            all.extend(t);
            (n + c, all)
        })
    });
    assert!(checked > 100_000, "walked {checked} cases");
    // And every allowed edge is taken by some observation: the graph holds no dead edge.
    let untaken: Vec<String> = SyncJobPhase::ALL
        .iter()
        .flat_map(|&from| from.allowed_next().iter().map(move |&to| (from.as_str(), to.as_str())))
        .filter(|edge| !taken.contains(edge))
        .map(|(a, b)| format!("{a} → {b}"))
        .collect();
    assert!(untaken.is_empty(), "allowed but never taken: {untaken:#?}");
}

#[test]
fn every_phase_spelling_is_the_reference_one() {
    let spellings: Vec<&str> = SyncJobPhase::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        spellings,
        [
            "CREATING",
            "CREATE_FAILED",
            "CONFIGURATION",
            "WAITING_FOR_START",
            "STARTJOBING",
            "START_JOB_FAILED",
            "FULL_TRANSFER_STARTED",
            "FULL_TRANSFER_FAILED",
            "FULL_TRANSFER_COMPLETE",
            "INCRE_TRANSFER_STARTED",
            "INCRE_TRANSFER_FAILED",
            "PAUSING",
            "CHANGE_JOB_STARTED",
            "CHANGE_JOB_FAILED",
            "RELEASE_RESOURCE_STARTED",
            "RELEASE_RESOURCE_COMPLETE",
            "RELEASE_RESOURCE_FAILED",
        ]
    );
    for p in SyncJobPhase::ALL {
        assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(p.as_str()));
    }
}

#[test]
fn compare_runs_finish_from_a_run_and_restart_by_waiting() {
    use crate::api::ComparePhase::*;
    assert!(WaitingForRunning.can_transition_to(Running));
    assert!(Running.can_transition_to(Successful));
    assert!(Running.can_transition_to(TimeoutInterrupt));
    assert!(WaitingForRunning.can_transition_to(Successful), "a quick run can finish before it is seen running");
    assert!(!Successful.can_transition_to(Running));
    assert!(!Successful.can_transition_to(Cancelled));
    assert!(Successful.can_transition_to(WaitingForRunning));
    assert!(Cancelled.is_finished() && !Running.is_finished());
}

#[test]
fn a_batch_never_returns_to_creating() {
    use crate::api::BatchPhase::*;
    assert!(Creating.can_transition_to(RollingOut));
    assert!(Running.can_transition_to(Paused));
    assert!(!Running.can_transition_to(Creating));
}
