//! The Argo CD health checks in `deploy/argocd/ferry.dev/<Kind>/health.lua`, run with `lua5.4` against
//! the statuses the lifecycle planners write (and hand-made ones with fields missing), and the
//! ConfigMap and Helm values that embed them.
//!
//! Each object is turned into a Lua table literal and bound to the global `obj`, as Argo CD does;
//! the script runs as a function body in a strict environment (reading an undefined global or
//! assigning one fails), and its `hs.status` and `hs.message` are compared.

use std::io::{ErrorKind, Write};
use std::process::{Command, Output, Stdio};

use ferry::api::batch::BatchJobStatus;
use ferry::api::compare::TableCompareStatus;
use ferry::api::validate::FieldError;
use ferry::api::{
    BatchJob, BatchJobSpec, CompareResult, CompareTask, CompareTaskSpec, CompareTaskStatus, LocalObjectRef,
    ObjectCompareResult, Progress, SyncJob, SyncJobSpec, SyncJobStatus, TaskType, TransferStage,
};
use ferry::lifecycle::batch::{self, BatchObserved, Child, desired_spec, mark_name_taken};
use ferry::lifecycle::compare::{self, CompareObserved, RunState};
use ferry::lifecycle::{Observed, PrecheckState, ReleaseState, WorkerState, plan};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

const KINDS: [&str; 3] = ["SyncJob", "CompareTask", "BatchJob"];

fn script(kind: &str) -> String {
    let path = format!("{}/deploy/argocd/ferry.dev/{kind}/health.lua", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A Lua string literal holding exactly the bytes of `s`.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Three digits always, so a digit that follows is not read as part of the escape.
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Lua expression for a JSON value: objects as tables with `["key"]=` entries, arrays as
/// 1-based sequences, `null` as `nil`.
fn lua_literal(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format!("{f:?}"),
            (None, None) => n.to_string(),
        },
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> =
                map.iter().map(|(k, v)| format!("[{}]={}", lua_string(k), lua_literal(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// Runs a Lua program given on stdin with `lua5.4`, or with the interpreter `FERRY_LUA` names
/// (`FERRY_LUA=lua5.1` checks the scripts against the Lua version Argo CD's gopher-lua follows).
fn run_lua(program: &str) -> Output {
    let lua = std::env::var("FERRY_LUA").unwrap_or_else(|_| "lua5.4".into());
    let mut child = match Command::new(&lua).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound && lua == "lua5.4" => {
            panic!("lua5.4 is not installed (the Argo CD health checks run on it): run scripts/install-deps.sh")
        }
        Err(e) => panic!("starting {lua}: {e}"),
    };
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[derive(Debug)]
struct Health {
    status: String,
    message: String,
}

/// Runs the health check of `kind` on `obj` as Argo CD does: `obj` a global, the script a function
/// body returning `hs`.
fn health(kind: &str, obj: &Value) -> Health {
    let program = format!(
        "obj = {}\n\
         utf8 = nil\n\
         setmetatable(_G, {{\n  \
           __index = function(_, k) error(\"read of undefined global \" .. tostring(k), 2) end,\n  \
           __newindex = function(_, k) error(\"assignment to global \" .. tostring(k), 2) end,\n\
         }})\n\
         local function check()\n{}\nend\n\
         local hs = check()\n\
         assert(type(hs) == \"table\", \"the script returned no table\")\n\
         assert(type(hs.message) == \"string\", \"hs.message is not a string\")\n\
         io.write(tostring(hs.status), \"\\n\", hs.message)\n",
        lua_literal(obj),
        script(kind)
    );
    let out = run_lua(&program);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "the {kind} health check failed on\n{obj:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, message) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    assert!(
        ["Healthy", "Progressing", "Degraded", "Suspended", "Missing"].contains(&status),
        "{kind}: {status:?} is no Argo CD health status"
    );
    Health { status: status.to_owned(), message: message.to_owned() }
}

#[track_caller]
fn assert_health(h: &Health, status: &str, message: &str) {
    assert_eq!(h.status, status, "{h:?}");
    assert_eq!(h.message, message, "{h:?}");
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn later(secs: i64) -> Timestamp {
    now().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// SyncJob

fn syncjob_object(spec: SyncJobSpec, status: Option<SyncJobStatus>, generation: i64) -> Value {
    let mut job = SyncJob::new("orders", spec);
    job.metadata.namespace = Some("shop".into());
    job.metadata.generation = Some(generation);
    job.status = status;
    serde_json::to_value(job).unwrap()
}

fn syncjob_health(spec: SyncJobSpec, status: SyncJobStatus) -> Health {
    let generation = status.observed_generation.unwrap_or(1);
    health("SyncJob", &syncjob_object(spec, Some(status), generation))
}

fn observed(precheck: PrecheckState, worker: WorkerState) -> Observed {
    Observed { precheck, worker, ..Observed::new(1) }
}

fn running(stage: TransferStage) -> WorkerState {
    WorkerState::Running { stage: Some(stage) }
}

/// The status the operator writes after these observations, one second apart, from a new job.
fn walk(spec: &SyncJobSpec, from: SyncJobStatus, steps: &[Observed]) -> SyncJobStatus {
    steps.iter().enumerate().fold(from, |st, (i, o)| plan(spec, &st, o, later(i as i64)).status)
}

/// A job whose worker reported `stage` after a passed precheck.
fn reached(spec: &SyncJobSpec, stage: TransferStage) -> SyncJobStatus {
    walk(
        spec,
        SyncJobStatus::default(),
        &[
            observed(PrecheckState::NotStarted, WorkerState::Absent),
            observed(PrecheckState::Passed, WorkerState::Absent),
            observed(PrecheckState::Passed, running(stage)),
        ],
    )
}

fn failing(code: &str, message: &str) -> WorkerState {
    WorkerState::Failed { code: code.into(), message: message.into() }
}

#[test]
fn a_streaming_syncjob_is_healthy_with_its_lag() {
    let spec = SyncJobSpec::test();
    let mut st = reached(&spec, TransferStage::Incremental);
    assert_eq!(st.phase.map(|p| p.as_str()), Some("INCRE_TRANSFER_STARTED"));
    assert_health(&syncjob_health(spec.clone(), st.clone()), "Healthy", "INCRE_TRANSFER_STARTED");
    st.progress = Some(Progress { lag_seconds: Some(3), percent_text: Some("100%".into()), ..Default::default() });
    assert_health(&syncjob_health(spec, st), "Healthy", "INCRE_TRANSFER_STARTED, lag 3s");
}

#[test]
fn a_syncjob_lagging_over_its_alarm_stays_healthy_and_says_so() {
    let spec = SyncJobSpec::test().lag_alarm(60);
    let mut st = reached(&spec, TransferStage::Incremental);
    st.progress = Some(Progress { lag_seconds: Some(400), ..Default::default() });
    let worker = observed(PrecheckState::Passed, running(TransferStage::Incremental));
    st = plan(&spec, &st, &worker, later(10)).status;
    st = plan(&spec, &st, &worker, later(400)).status;
    assert_health(
        &syncjob_health(spec, st),
        "Healthy",
        "INCRE_TRANSFER_STARTED, lag 400s (over spec.alarm.delaySeconds)",
    );
}

#[test]
fn a_completed_full_trans_syncjob_is_healthy() {
    let spec = SyncJobSpec::test().task(TaskType::FullTrans);
    let st = reached(&spec, TransferStage::Full);
    let st = walk(
        &spec,
        st,
        &[observed(PrecheckState::Passed, WorkerState::Succeeded { stage: Some(TransferStage::FullComplete) })],
    );
    assert_health(&syncjob_health(spec, st), "Healthy", "FULL_TRANSFER_COMPLETE");
}

#[test]
fn a_full_incr_syncjob_past_its_full_transfer_is_still_progressing() {
    let spec = SyncJobSpec::test();
    let mut st = reached(&spec, TransferStage::FullComplete);
    st.progress = Some(Progress { percent_text: Some("100%".into()), ..Default::default() });
    assert_health(&syncjob_health(spec, st), "Progressing", "FULL_TRANSFER_COMPLETE, 100%");
}

#[test]
fn a_released_syncjob_is_healthy() {
    let spec = SyncJobSpec::test();
    let streaming = reached(&spec, TransferStage::Incremental);
    let stopped = spec.clone().stopped();
    let st = walk(
        &stopped,
        streaming,
        &[
            observed(PrecheckState::Passed, running(TransferStage::Incremental)),
            Observed { release: ReleaseState::Succeeded, ..observed(PrecheckState::Passed, WorkerState::Absent) },
        ],
    );
    assert_health(&syncjob_health(stopped, st), "Healthy", "RELEASE_RESOURCE_COMPLETE");
}

#[test]
fn a_copying_syncjob_is_progressing_with_its_percentage() {
    let spec = SyncJobSpec::test();
    let mut st = reached(&spec, TransferStage::Full);
    assert_health(&syncjob_health(spec.clone(), st.clone()), "Progressing", "FULL_TRANSFER_STARTED");
    st.progress = Some(Progress { percent: Some(42.0), percent_text: Some("42%".into()), ..Default::default() });
    assert_health(&syncjob_health(spec, st), "Progressing", "FULL_TRANSFER_STARTED, 42%");
}

#[test]
fn a_syncjob_without_status_or_with_an_older_observed_generation_is_progressing() {
    let spec = SyncJobSpec::test();
    assert_health(
        &health("SyncJob", &syncjob_object(spec.clone(), None, 1)),
        "Progressing",
        "waiting for the operator to observe generation 1",
    );
    let st = reached(&spec, TransferStage::Incremental);
    assert_eq!(st.observed_generation, Some(1));
    assert_health(
        &health("SyncJob", &syncjob_object(spec, Some(st), 2)),
        "Progressing",
        "waiting for the operator to observe generation 2",
    );
}

#[test]
fn a_syncjob_in_precheck_is_progressing() {
    let spec = SyncJobSpec::test();
    let st = walk(&spec, SyncJobStatus::default(), &[observed(PrecheckState::Running, WorkerState::Absent)]);
    assert_health(&syncjob_health(spec, st), "Progressing", "CONFIGURATION");
}

#[test]
fn a_syncjob_with_an_invalid_spec_is_degraded_with_the_condition_message() {
    let spec = SyncJobSpec::test();
    let invalid = Observed {
        spec_errors: vec![FieldError { path: "spec.source.port".into(), message: "must be 1–65535".into() }],
        ..Observed::new(1)
    };
    let st = walk(&spec, SyncJobStatus::default(), &[invalid]);
    assert_eq!(st.phase.map(|p| p.as_str()), Some("CREATE_FAILED"));
    let h = syncjob_health(spec, st);
    assert_eq!(h.status, "Degraded");
    assert!(h.message.starts_with("SPEC_INVALID: ") && h.message.contains("spec.source.port"), "{h:?}");
}

#[test]
fn a_syncjob_whose_precheck_failed_is_degraded_naming_the_items() {
    let spec = SyncJobSpec::test();
    let st = walk(
        &spec,
        SyncJobStatus::default(),
        &[
            observed(PrecheckState::NotStarted, WorkerState::Absent),
            observed(PrecheckState::Failed { items: vec!["source.walLevel".into()] }, WorkerState::Absent),
        ],
    );
    let h = syncjob_health(spec, st);
    assert_eq!(h.status, "Degraded");
    assert!(h.message.starts_with("precheck failed: failed items: source.walLevel"), "{h:?}");
}

#[test]
fn a_stalled_syncjob_is_degraded_with_the_condition_message() {
    let spec = SyncJobSpec::test();
    let mut st = reached(&spec, TransferStage::Incremental);
    st.progress = Some(Progress { updated_at: Some(Time(later(5))), lag_seconds: Some(1), ..Default::default() });
    let st = plan(&spec, &st, &observed(PrecheckState::Passed, running(TransferStage::Incremental)), later(700)).status;
    assert_eq!(st.phase.map(|p| p.as_str()), Some("INCRE_TRANSFER_STARTED"));
    assert_health(&syncjob_health(spec, st), "Degraded", "the worker has not reported for over 600 s");
}

#[test]
fn a_failed_syncjob_with_retries_left_is_degraded_with_its_last_error() {
    let spec = SyncJobSpec::test();
    let st = reached(&spec, TransferStage::Full);
    let st = walk(&spec, st, &[observed(PrecheckState::Passed, failing("TARGET_WRITE", "disk full"))]);
    assert_health(&syncjob_health(spec, st), "Degraded", "FULL_TRANSFER_FAILED: TARGET_WRITE: disk full (retrying)");
}

#[test]
fn a_syncjob_failing_to_start_is_degraded() {
    let spec = SyncJobSpec::test();
    let st = walk(
        &spec,
        SyncJobStatus::default(),
        &[
            observed(PrecheckState::NotStarted, WorkerState::Absent),
            observed(PrecheckState::Passed, WorkerState::Absent),
            observed(PrecheckState::Passed, failing("SOURCE_CONNECT", "connection refused")),
        ],
    );
    assert_health(
        &syncjob_health(spec, st),
        "Degraded",
        "START_JOB_FAILED: SOURCE_CONNECT: connection refused (retrying)",
    );
}

#[test]
fn a_failed_syncjob_out_of_retries_is_stalled_and_degraded() {
    let spec = SyncJobSpec::test().retries(0);
    let st = reached(&spec, TransferStage::Incremental);
    let st = walk(&spec, st, &[observed(PrecheckState::Passed, failing("SOURCE_READ", "slot dropped"))]);
    assert_eq!(st.phase.map(|p| p.as_str()), Some("INCRE_TRANSFER_FAILED"));
    assert_health(&syncjob_health(spec, st), "Degraded", "SOURCE_READ: slot dropped");
}

#[test]
fn a_running_syncjob_edited_into_an_invalid_spec_is_degraded_without_a_retry() {
    let spec = SyncJobSpec::test();
    let st = reached(&spec, TransferStage::Incremental);
    let edit = Observed {
        generation: 2,
        spec_errors: vec![FieldError { path: "spec.source.port".into(), message: "must be 1–65535".into() }],
        ..observed(PrecheckState::Passed, running(TransferStage::Incremental))
    };
    let st = plan(&spec, &st, &edit, later(10)).status;
    let h = health("SyncJob", &syncjob_object(spec, Some(st), 2));
    assert_eq!(h.status, "Degraded");
    // Stalled: its message names the field.
    assert!(h.message.starts_with("SPEC_INVALID: spec.source.port"), "{h:?}");
    assert!(!h.message.contains("retrying"), "{h:?}");
}

#[test]
fn a_syncjob_whose_release_failed_is_degraded() {
    let spec = SyncJobSpec::test();
    let streaming = reached(&spec, TransferStage::Incremental);
    let stopped = spec.stopped();
    let st = walk(
        &stopped,
        streaming,
        &[
            observed(PrecheckState::Passed, running(TransferStage::Incremental)),
            Observed {
                release: ReleaseState::Failed { code: "SOURCE_CONNECT".into(), message: "timeout".into() },
                ..observed(PrecheckState::Passed, WorkerState::Absent)
            },
        ],
    );
    assert_eq!(st.phase.map(|p| p.as_str()), Some("RELEASE_RESOURCE_FAILED"));
    assert_health(&syncjob_health(stopped, st), "Degraded", "SOURCE_CONNECT: timeout");
}

#[test]
fn a_paused_syncjob_is_suspended() {
    let spec = SyncJobSpec::test();
    let st = reached(&spec, TransferStage::Incremental);
    let paused = spec.paused();
    let st = walk(&paused, st, &[observed(PrecheckState::Passed, running(TransferStage::Incremental))]);
    assert_health(&syncjob_health(paused, st), "Suspended", "PAUSING: stopped at a checkpoint (spec.paused)");
}

#[test]
fn a_syncjob_status_with_fields_missing_or_malformed_does_not_break_the_check() {
    let job = |status: Value| {
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob",
        "metadata": {"name": "orders", "generation": 3}, "status": status})
    };
    let cases = [
        (json!({}), "Progressing", "waiting for the operator to observe generation 3"),
        (json!({"phase": "INCRE_TRANSFER_STARTED"}), "Progressing", "waiting for the operator to observe generation 3"),
        (json!({"observedGeneration": 3}), "Progressing", "waiting for a phase"),
        (json!({"observedGeneration": 3, "phase": "INCRE_TRANSFER_STARTED"}), "Healthy", "INCRE_TRANSFER_STARTED"),
        (
            json!({"observedGeneration": 3, "phase": "FULL_TRANSFER_STARTED", "progress": {}}),
            "Progressing",
            "FULL_TRANSFER_STARTED",
        ),
        (json!({"observedGeneration": 3, "phase": "FULL_TRANSFER_FAILED"}), "Degraded", "FULL_TRANSFER_FAILED"),
        (
            json!({"observedGeneration": 3, "phase": "CHANGE_JOB_FAILED", "lastError": {"message": "gone"}}),
            "Degraded",
            "CHANGE_JOB_FAILED: gone",
        ),
        (
            json!({"observedGeneration": 3, "phase": "PAUSING", "conditions": null}),
            "Suspended",
            "PAUSING: stopped at a checkpoint (spec.paused)",
        ),
        (
            json!({"observedGeneration": 3, "phase": "STARTJOBING",
                "conditions": "Ready", "lastError": 7, "progress": 1}),
            "Progressing",
            "STARTJOBING",
        ),
        (
            json!({"observedGeneration": 3, "conditions": [null, 5, {"type": "Stalled", "status": "True"}]}),
            "Degraded",
            "stalled in phase unknown",
        ),
        (
            json!({"observedGeneration": 3, "phase": "INCRE_TRANSFER_STARTED",
                "conditions": [{"type": "Ready", "status": "False"}]}),
            "Progressing",
            "INCRE_TRANSFER_STARTED",
        ),
    ];
    for (status, expected, message) in cases {
        let h = health("SyncJob", &job(status.clone()));
        assert_eq!((h.status.as_str(), h.message.as_str()), (expected, message), "status {status}");
    }
    let bare = health("SyncJob", &json!({"kind": "SyncJob"}));
    assert_health(&bare, "Progressing", "waiting for the operator to observe the SyncJob");
    let full_trans = json!({"metadata": {"generation": 1}, "spec": {"taskType": "FULL_TRANS"},
        "status": {"observedGeneration": 1, "phase": "FULL_TRANSFER_COMPLETE"}});
    assert_health(&health("SyncJob", &full_trans), "Healthy", "FULL_TRANSFER_COMPLETE");
}

// ---------------------------------------------------------------------------------------------
// CompareTask

fn compare_spec() -> CompareTaskSpec {
    CompareTaskSpec {
        sync_job_ref: Some(LocalObjectRef { name: "orders".into() }),
        source: None,
        target: None,
        objects: None,
        compare_type: Default::default(),
        mode: None,
        throttle: None,
        schedule: None,
        timeout_seconds: None,
        cancel: false,
        debug: None,
    }
}

fn compare_health(status: Option<CompareTaskStatus>, generation: i64) -> Health {
    let mut task = CompareTask::new("orders-check", compare_spec());
    task.metadata.namespace = Some("shop".into());
    task.metadata.generation = Some(generation);
    task.status = status;
    health("CompareTask", &serde_json::to_value(task).unwrap())
}

fn run_obs(run: RunState) -> CompareObserved {
    CompareObserved { generation: 1, spec_errors: Vec::new(), run }
}

/// The status after these runs states, one second apart, from a new task.
fn compare_walk(spec: &CompareTaskSpec, runs: &[RunState]) -> CompareTaskStatus {
    runs.iter().enumerate().fold(CompareTaskStatus::default(), |st, (i, r)| {
        compare::plan(spec, &st, &run_obs(r.clone()), later(i as i64)).status
    })
}

fn table(name: &str, content: ObjectCompareResult) -> TableCompareStatus {
    TableCompareStatus {
        source: name.into(),
        target: name.into(),
        source_rows: Some(10),
        target_rows: Some(10),
        different_rows: Some(u64::from(content == ObjectCompareResult::Inconsistent)),
        object_result: None,
        rows_result: Some(ObjectCompareResult::Consistent),
        content_result: Some(content),
        message: None,
    }
}

/// A finished run whose worker wrote `result` and `tables`.
fn compared(result: CompareResult, tables: Vec<TableCompareStatus>) -> CompareTaskStatus {
    let mut st = compare_walk(&compare_spec(), &[RunState::Absent, RunState::Running, RunState::Succeeded]);
    assert_eq!(st.phase.map(|p| p.as_str()), Some("SUCCESSFUL"));
    st.result = Some(result);
    st.tables = tables;
    st
}

#[test]
fn a_consistent_comparetask_is_healthy() {
    let st = compared(
        CompareResult::Consistent,
        vec![
            table("public.orders", ObjectCompareResult::Consistent),
            table("public.logs", ObjectCompareResult::CanNotCompare),
        ],
    );
    assert_health(&compare_health(Some(st), 1), "Healthy", "CONSISTENT: 2 tables compared");
}

#[test]
fn an_inconsistent_comparetask_is_degraded_naming_the_tables() {
    let st = compared(
        CompareResult::Inconsistent,
        vec![
            table("public.orders", ObjectCompareResult::Inconsistent),
            table("public.items", ObjectCompareResult::Consistent),
            table("public.logs", ObjectCompareResult::CanNotCompare),
            table("public.gone", ObjectCompareResult::TargetDbNotExist),
        ],
    );
    assert_health(
        &compare_health(Some(st), 1),
        "Degraded",
        "INCONSISTENT: 2 of 4 tables differ: public.orders, public.gone",
    );
    let many = compared(
        CompareResult::Inconsistent,
        ["a", "b", "c", "d", "e"].iter().map(|n| table(n, ObjectCompareResult::Inconsistent)).collect(),
    );
    assert_health(&compare_health(Some(many), 1), "Degraded", "INCONSISTENT: 5 of 5 tables differ: a, b, c and 2 more");
}

#[test]
fn a_running_or_waiting_comparetask_is_progressing() {
    let waiting = compare_walk(&compare_spec(), &[RunState::Absent]);
    assert_health(&compare_health(Some(waiting), 1), "Progressing", "WAITING_FOR_RUNNING (run 1)");
    let running = compare_walk(&compare_spec(), &[RunState::Absent, RunState::Running]);
    assert_health(&compare_health(Some(running), 1), "Progressing", "RUNNING (run 1)");
}

#[test]
fn a_comparetask_without_status_or_with_an_older_observed_generation_is_progressing() {
    assert_health(&compare_health(None, 1), "Progressing", "waiting for the operator to observe generation 1");
    let st = compared(CompareResult::Consistent, vec![]);
    assert_health(&compare_health(Some(st), 2), "Progressing", "waiting for the operator to observe generation 2");
}

#[test]
fn a_failed_comparetask_is_degraded_with_its_message() {
    let st = compare_walk(
        &compare_spec(),
        &[RunState::Absent, RunState::Failed { code: "SOURCE_CONNECT".into(), message: "refused".into() }],
    );
    assert_health(&compare_health(Some(st), 1), "Degraded", "SOURCE_CONNECT: refused");
}

#[test]
fn a_timed_out_comparetask_is_degraded() {
    let spec = CompareTaskSpec { timeout_seconds: Some(60), ..compare_spec() };
    let st = compare_walk(&spec, &[RunState::Absent, RunState::Running]);
    let st = compare::plan(&spec, &st, &run_obs(RunState::Running), later(120)).status;
    assert_health(&compare_health(Some(st), 1), "Degraded", "stopped after spec.timeoutSeconds (60 s)");
}

#[test]
fn a_comparetask_with_an_invalid_spec_is_stalled_and_degraded() {
    let invalid = CompareObserved {
        generation: 1,
        spec_errors: vec![FieldError { path: "spec.syncJobRef".into(), message: "or source and target".into() }],
        run: RunState::Absent,
    };
    let st = compare::plan(&compare_spec(), &CompareTaskStatus::default(), &invalid, now()).status;
    let h = compare_health(Some(st), 1);
    assert_eq!(h.status, "Degraded");
    assert!(h.message.contains("spec.syncJobRef") && !h.message.starts_with("FAILED"), "{h:?}");
}

#[test]
fn a_cancelled_comparetask_is_suspended() {
    let running = compare_walk(&compare_spec(), &[RunState::Absent, RunState::Running]);
    let cancel = CompareTaskSpec { cancel: true, ..compare_spec() };
    let st = compare::plan(&cancel, &running, &run_obs(RunState::Running), later(5)).status;
    assert_health(&compare_health(Some(st), 1), "Suspended", "CANCELLED (spec.cancel)");
}

#[test]
fn a_comparetask_status_with_fields_missing_or_malformed_does_not_break_the_check() {
    let task = |status: Value| json!({"metadata": {"generation": 1}, "status": status});
    let cases = [
        (json!({"phase": "RUNNING"}), "Progressing", "waiting for the operator to observe generation 1"),
        (json!({"observedGeneration": 1}), "Progressing", "waiting for a phase"),
        (json!({"observedGeneration": 1, "phase": "RUNNING"}), "Progressing", "RUNNING"),
        (json!({"observedGeneration": 1, "phase": "SUCCESSFUL"}), "Healthy", "SUCCESSFUL"),
        (
            json!({"observedGeneration": 1, "phase": "SUCCESSFUL", "result": "CONSISTENT", "tables": "x"}),
            "Healthy",
            "CONSISTENT: 0 tables compared",
        ),
        (
            json!({"observedGeneration": 1, "phase": "SUCCESSFUL", "result": "INCONSISTENT"}),
            "Degraded",
            "INCONSISTENT: the target differs from the source",
        ),
        (
            json!({"observedGeneration": 1, "phase": "SUCCESSFUL", "result": "INCONSISTENT",
                "tables": [null, {"rowsResult": "INCONSISTENT"}, {"source": "t", "objectResult": "CONSISTENT"}]}),
            "Degraded",
            "INCONSISTENT: 1 of 2 tables differ: ?",
        ),
        (json!({"observedGeneration": 1, "phase": "FAILED", "conditions": {}}), "Degraded", "FAILED"),
        (
            json!({"observedGeneration": 1, "phase": "TIMEOUT_INTERRUPT", "message": ""}),
            "Degraded",
            "TIMEOUT_INTERRUPT",
        ),
        (json!({"observedGeneration": 1, "phase": "CANCELLED"}), "Suspended", "CANCELLED (spec.cancel)"),
    ];
    for (status, expected, message) in cases {
        let h = health("CompareTask", &task(status.clone()));
        assert_eq!((h.status.as_str(), h.message.as_str()), (expected, message), "status {status}");
    }
    let bare = health("CompareTask", &json!({}));
    assert_health(&bare, "Progressing", "waiting for the operator to observe the CompareTask");
}

// ---------------------------------------------------------------------------------------------
// BatchJob

fn batch_spec(items: &[&str], max: Option<u32>) -> BatchJobSpec {
    BatchJobSpec::test(items, max)
}

/// The child of `item`, with the status its own planner writes after these worker states.
fn child(spec: &BatchJobSpec, item: &str, status: Option<SyncJobStatus>) -> Child {
    let it = spec.jobs.iter().find(|i| i.name == item).unwrap();
    Child { item: item.into(), spec: desired_spec(spec, it).unwrap(), status, deleting: false }
}

fn batch_status(spec: &BatchJobSpec, children: Vec<Child>) -> BatchJobStatus {
    let obs = BatchObserved { name: "tenants".into(), generation: 1, deleting: false, children };
    batch::plan(spec, &BatchJobStatus::default(), &obs, now()).status
}

fn batch_health(spec: BatchJobSpec, status: Option<BatchJobStatus>, generation: i64) -> Health {
    let mut b = BatchJob::new("tenants", spec);
    b.metadata.namespace = Some("shop".into());
    b.metadata.generation = Some(generation);
    b.status = status;
    health("BatchJob", &serde_json::to_value(b).unwrap())
}

fn streaming_child(spec: &BatchJobSpec, item: &str) -> Child {
    let c = child(spec, item, None);
    let st = reached(&c.spec, TransferStage::Incremental);
    Child { status: Some(st), ..c }
}

#[test]
fn a_batchjob_whose_children_all_stream_is_healthy() {
    let spec = batch_spec(&["a", "b"], None);
    let st = batch_status(&spec, vec![streaming_child(&spec, "a"), streaming_child(&spec, "b")]);
    assert_health(&batch_health(spec, Some(st), 1), "Healthy", "RUNNING: 2 jobs ready");
}

#[test]
fn a_complete_batchjob_is_healthy() {
    let mut spec = batch_spec(&["a"], None);
    spec.template["taskType"] = json!("FULL_TRANS");
    let c = child(&spec, "a", None);
    let done = walk(
        &c.spec,
        reached(&c.spec, TransferStage::Full),
        &[observed(PrecheckState::Passed, WorkerState::Succeeded { stage: Some(TransferStage::FullComplete) })],
    );
    let st = batch_status(&spec, vec![Child { status: Some(done), ..c }]);
    assert_health(&batch_health(spec, Some(st), 1), "Healthy", "COMPLETE: 1 jobs ready");
}

#[test]
fn a_rolling_out_batchjob_is_progressing_with_its_counts() {
    let spec = batch_spec(&["a", "b", "c"], Some(2));
    let a = child(&spec, "a", None);
    let copying = Child { status: Some(reached(&a.spec, TransferStage::Full)), ..a };
    let st = batch_status(&spec, vec![copying, child(&spec, "b", None)]);
    assert_health(
        &batch_health(spec, Some(st), 1),
        "Progressing",
        "ROLLING_OUT: 3 jobs, 1 running, 0 failed, 1 waiting; 0 of 3 children ready",
    );
}

#[test]
fn a_batchjob_creating_its_children_is_progressing() {
    let spec = batch_spec(&["a", "b"], None);
    let st = batch_status(&spec, vec![]);
    assert_health(
        &batch_health(spec, Some(st), 1),
        "Progressing",
        "CREATING: 2 jobs, 0 running, 0 failed; 0 of 2 children ready",
    );
}

#[test]
fn a_batchjob_without_status_or_with_an_older_observed_generation_is_progressing() {
    let spec = batch_spec(&["a"], None);
    assert_health(
        &batch_health(spec.clone(), None, 1),
        "Progressing",
        "waiting for the operator to observe generation 1",
    );
    let st = batch_status(&spec, vec![streaming_child(&spec, "a")]);
    assert_health(&batch_health(spec, Some(st), 4), "Progressing", "waiting for the operator to observe generation 4");
}

#[test]
fn a_batchjob_with_a_failed_child_is_degraded_with_the_stalled_message() {
    let spec = batch_spec(&["a", "b"], None);
    let a = child(&spec, "a", None);
    let failed = walk(
        &a.spec,
        reached(&a.spec, TransferStage::Full),
        &[observed(PrecheckState::Passed, failing("TARGET_WRITE", "disk full"))],
    );
    let st = batch_status(&spec, vec![Child { status: Some(failed), ..a }, streaming_child(&spec, "b")]);
    assert_health(
        &batch_health(spec, Some(st), 1),
        "Degraded",
        "failed or invalid: a; fix them in spec.jobs (their rows say why) or remove them",
    );
}

#[test]
fn a_batchjob_with_an_invalid_item_or_spec_is_degraded() {
    let mut spec = batch_spec(&["a", "b"], None);
    spec.jobs[0].overrides = Some(json!({"source": {"port": 0}}));
    let st = batch_status(&spec, vec![]);
    let h = batch_health(spec.clone(), Some(st), 1);
    assert_eq!(h.status, "Degraded");
    assert!(h.message.starts_with("failed or invalid: a"), "{h:?}");

    spec.template = json!("not an object");
    let st = batch_status(&spec, vec![]);
    let h = batch_health(spec, Some(st), 1);
    assert_eq!(h.status, "Degraded");
    assert!(h.message.starts_with("the batch spec is invalid: "), "{h:?}");
}

#[test]
fn a_batchjob_whose_child_name_is_taken_is_degraded_with_the_stalled_message() {
    let spec = batch_spec(&["a"], None);
    let mut st = batch_status(&spec, vec![]);
    mark_name_taken(&mut st, "a", "tenants-a", jiff::Timestamp::now());
    assert_health(
        &batch_health(spec, Some(st), 1),
        "Degraded",
        "item \"a\": the name tenants-a is taken by a SyncJob outside this batch",
    );
}

#[test]
fn a_paused_batchjob_is_suspended() {
    let mut spec = batch_spec(&["a", "b"], None);
    spec.paused = true;
    let st = batch_status(&spec, vec![streaming_child(&spec, "a")]);
    assert_health(&batch_health(spec, Some(st), 1), "Suspended", "PAUSED: 2 jobs paused (spec.paused)");
}

#[test]
fn a_batchjob_status_with_fields_missing_or_malformed_does_not_break_the_check() {
    let b = |status: Value| json!({"metadata": {"generation": 2}, "status": status});
    let cases = [
        (json!({"phase": "COMPLETE"}), "Progressing", "waiting for the operator to observe generation 2"),
        (json!({"observedGeneration": 2}), "Progressing", "waiting for a phase: 0 jobs, 0 running, 0 failed"),
        (json!({"observedGeneration": 2, "phase": "COMPLETE", "total": 3}), "Healthy", "COMPLETE: 3 jobs ready"),
        (
            json!({"observedGeneration": 2, "phase": "RUNNING", "total": 3, "running": 3, "counts": {"WAITING": "x"}}),
            "Progressing",
            "RUNNING: 3 jobs, 3 running, 0 failed",
        ),
        (
            json!({"observedGeneration": 2, "phase": "FAILED", "failed": 1}),
            "Degraded",
            "FAILED: 1 of 0 jobs failed or invalid (see status.jobs)",
        ),
        (
            json!({"observedGeneration": 2, "phase": "RUNNING", "conditions": [{"type": "Stalled", "status": "True"}]}),
            "Degraded",
            "FAILED: 0 of 0 jobs failed or invalid (see status.jobs)",
        ),
        (
            json!({"observedGeneration": 2, "phase": "PAUSED", "conditions": 3}),
            "Suspended",
            "PAUSED: 0 jobs paused (spec.paused)",
        ),
    ];
    for (status, expected, message) in cases {
        let h = health("BatchJob", &b(status.clone()));
        assert_eq!((h.status.as_str(), h.message.as_str()), (expected, message), "status {status}");
    }
    let bare = health("BatchJob", &json!({"status": null}));
    assert_health(&bare, "Progressing", "waiting for the operator to observe the BatchJob");
}

// ---------------------------------------------------------------------------------------------
// The scripts themselves, and where they are installed from

#[test]
fn the_lua_converter_keeps_strings_and_structure_intact() {
    let v = json!({"s": "quote \" backslash \\ newline \n nul \u{0} digit after escape \u{1}7 é ✓",
        "n": [1, -2, 2.5, 1e300, 18446744073709551615u64], "b": [true, false], "z": null, "e": {}});
    let program = format!(
        "local v = {}\n\
         io.write(v.s, \"|\", #v.n, \"|\", v.n[3], \"|\", tostring(v.b[2]), \"|\", tostring(v.z), \"|\", type(v.e))",
        lua_literal(&v)
    );
    let out = run_lua(&program);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("{}|5|2.5|false|nil|table", v["s"].as_str().unwrap());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

#[test]
fn the_scripts_stay_within_what_argo_cds_lua_5_1_accepts() {
    for kind in KINDS {
        let text = script(kind);
        for (n, line) in text.lines().enumerate() {
            let forbidden = [
                "goto",
                "//",
                "utf8",
                "<<",
                ">>",
                "&",
                "|",
                "math.type",
                "math.tointeger",
                "table.unpack",
                "table.move",
                "string.pack",
            ];
            for f in forbidden {
                assert!(!line.contains(f), "{kind} line {}: {f:?} is not Lua 5.1: {line}", n + 1);
            }
            let bitwise_not = line.char_indices().any(|(i, c)| c == '~' && !line[i + 1..].starts_with('='));
            assert!(!bitwise_not, "{kind} line {}: bitwise ~ is not Lua 5.1: {line}", n + 1);
            assert!(!line.contains('\t') && line.trim_end() == line, "{kind} line {}: tab or trailing space", n + 1);
        }
        assert!(text.ends_with("return hs\n"), "{kind}: the script ends by returning hs");
    }
}

fn embedded(path: &str, keys: &[&str]) -> serde_yaml::Mapping {
    let full = format!("{}/deploy/argocd/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut v = &doc;
    for k in keys {
        v = v.get(*k).unwrap_or_else(|| panic!("{path}: no {k}"));
    }
    v.as_mapping().unwrap_or_else(|| panic!("{path}: {} is no mapping", keys.join("."))).clone()
}

fn assert_embeds_every_script(path: &str, map: &serde_yaml::Mapping) {
    assert_eq!(map.len(), KINDS.len(), "{path}: one key per kind");
    for kind in KINDS {
        let key = format!("resource.customizations.health.ferry.dev_{kind}");
        let value = map.get(key.as_str()).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("{path}: no {key}"));
        assert!(
            value == script(kind),
            "{path}: {key} differs from deploy/argocd/ferry.dev/{kind}/health.lua; copy the script in again"
        );
    }
}

#[test]
fn argocd_cm_embeds_each_script_verbatim() {
    let path = "argocd-cm.yaml";
    let full = format!("{}/deploy/argocd/{path}", env!("CARGO_MANIFEST_DIR"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(full).unwrap()).unwrap();
    assert_eq!(doc["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(doc["metadata"]["name"].as_str(), Some("argocd-cm"));
    assert_eq!(doc["metadata"]["namespace"].as_str(), Some("argocd"));
    assert_eq!(doc["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str(), Some("argocd"));
    assert_embeds_every_script(path, &embedded(path, &["data"]));
}

#[test]
fn the_argo_cd_chart_values_embed_each_script_verbatim() {
    let path = "argo-cd-values.yaml";
    assert_embeds_every_script(path, &embedded(path, &["configs", "cm"]));
}
