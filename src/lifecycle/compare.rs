//! The CompareTask state machine: from the spec, the status, the state of the current run's pod
//! and the clock, decide the phase, the operator-owned status fields and the actions. Pure, like
//! the SyncJob's: every transition is a unit test.
//!
//! A run goes `WAITING_FOR_RUNNING` (pod created, not yet running) → `RUNNING` → `SUCCESSFUL`
//! (the worker wrote the result), `FAILED`, `CANCELLED` (`spec.cancel`) or `TIMEOUT_INTERRUPT`
//! (`spec.timeoutSeconds`). A finished task runs again on its `schedule` (cron, UTC), or once
//! more when its spec changes.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Status, types};
use crate::api::ComparePhase;
use crate::api::compare::{CompareTaskSpec, CompareTaskStatus};
use crate::api::validate::{FieldError, describe};

/// What the current run's pod is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No pod for the current run.
    Absent,
    /// Created, not running yet.
    Pending,
    /// Comparing.
    Running,
    /// Exited 0: the result is in status.
    Succeeded,
    /// Exited non-zero with this `CODE: message`.
    Failed { code: String, message: String },
}

/// What the controller observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareObserved {
    /// `metadata.generation`.
    pub generation: i64,
    /// Violations of the spec.
    pub spec_errors: Vec<FieldError>,
    /// The current run's pod.
    pub run: RunState,
}

/// Something to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareAction {
    /// Make sure the pod of run `run` exists.
    StartRun { run: u32 },
    /// Stop and remove the current run's pod.
    StopRun,
    /// Record an Event.
    Event { warning: bool, reason: &'static str, message: String },
}

/// The outcome of [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct ComparePlan {
    /// The status with the operator's fields updated.
    pub status: CompareTaskStatus,
    /// What to do, in order.
    pub actions: Vec<CompareAction>,
    /// When to look again (a timeout, the next scheduled run).
    pub requeue_after: Option<Duration>,
}

/// The first minute after `after` that `expr` (five cron fields, UTC) matches; none for an
/// invalid expression (validation reports it) or one that never fires again.
pub fn next_run(expr: &str, after: Timestamp) -> Option<Timestamp> {
    crate::api::schedule::Schedule::parse(expr).ok()?.next_after(after)
}

fn since(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn wait(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO).max(Duration::from_secs(1))
}

/// Decides the next step of a CompareTask.
pub fn plan(spec: &CompareTaskSpec, status: &CompareTaskStatus, o: &CompareObserved, now: Timestamp) -> ComparePlan {
    use ComparePhase::*;
    let mut st = status.clone();
    let mut actions = Vec::new();
    let mut requeue = None;
    let current = status.phase;
    let start_run = |st: &mut CompareTaskStatus, actions: &mut Vec<CompareAction>| {
        st.runs += 1;
        st.start_time = Some(Time(now));
        st.completion_time = None;
        st.message = None;
        actions.push(CompareAction::StartRun { run: st.runs });
        WaitingForRunning
    };
    let finish = |st: &mut CompareTaskStatus| st.completion_time = Some(Time(now));

    let next = if !o.spec_errors.is_empty() {
        if matches!(o.run, RunState::Pending | RunState::Running) {
            actions.push(CompareAction::StopRun);
        }
        st.message = Some(describe(&o.spec_errors));
        Failed
    } else if spec.cancel {
        if matches!(o.run, RunState::Pending | RunState::Running) {
            actions.push(CompareAction::StopRun);
        }
        if current.is_some_and(|p| !p.is_finished()) || current.is_none() {
            finish(&mut st);
            Cancelled
        } else {
            current.unwrap_or(Cancelled)
        }
    } else {
        match current {
            None => start_run(&mut st, &mut actions),
            Some(WaitingForRunning) | Some(Running) => {
                let timed_out = spec
                    .timeout_seconds
                    .zip(since(&st.start_time))
                    .map(|(secs, start)| (start, start + jiff::SignedDuration::from_secs(secs as i64)));
                match (&o.run, timed_out) {
                    (RunState::Pending | RunState::Running, Some((_, end))) if end <= now => {
                        actions.push(CompareAction::StopRun);
                        st.message = Some(format!(
                            "stopped after spec.timeoutSeconds ({} s)",
                            spec.timeout_seconds.unwrap_or(0)
                        ));
                        finish(&mut st);
                        TimeoutInterrupt
                    }
                    (run, t) => {
                        if let Some((_, end)) = t {
                            requeue = Some(wait(now, end));
                        }
                        match run {
                            RunState::Absent => {
                                // The pod vanished: create it again for the same run.
                                actions.push(CompareAction::StartRun { run: st.runs.max(1) });
                                WaitingForRunning
                            }
                            RunState::Pending => WaitingForRunning,
                            RunState::Running => Running,
                            RunState::Succeeded => {
                                finish(&mut st);
                                Successful
                            }
                            RunState::Failed { code, message } => {
                                st.message = Some(format!("{code}: {message}"));
                                finish(&mut st);
                                Failed
                            }
                        }
                    }
                }
            }
            Some(done) => {
                let changed = status.observed_generation.is_some_and(|g| g != o.generation);
                let due = spec.schedule.as_deref().and_then(|cron| {
                    let last = since(&st.last_schedule_time).or(since(&st.start_time)).unwrap_or(now);
                    next_run(cron, last)
                });
                if changed {
                    start_run(&mut st, &mut actions)
                } else if let Some(due) = due {
                    if due <= now {
                        st.last_schedule_time = Some(Time(now));
                        start_run(&mut st, &mut actions)
                    } else {
                        requeue = Some(wait(now, due));
                        done
                    }
                } else {
                    done
                }
            }
        }
    };
    if current != Some(next) {
        let warning = matches!(next, Failed | TimeoutInterrupt);
        let message = match (&st.message, st.result) {
            (Some(m), _) if warning => m.clone(),
            (_, Some(r)) if next == Successful => format!("comparison finished: {}", r.as_str()),
            _ => format!("phase {}", next.as_str()),
        };
        actions.push(CompareAction::Event { warning, reason: "PhaseChanged", message });
    }
    st.phase = Some(next);
    st.observed_generation = Some(o.generation);
    let g = o.generation;
    let finished = next.is_finished();
    // A finished run that found differences, failed or timed out needs a person; one that found
    // none is what the task asks for.
    let inconsistent = next == Successful && st.result == Some(crate::api::CompareResult::Inconsistent);
    let stalled = matches!(next, Failed | TimeoutInterrupt) || inconsistent;
    let ready = next == Successful && !inconsistent;
    let message = st.message.clone().unwrap_or_else(|| format!("phase {}", next.as_str()));
    let reason = match next {
        WaitingForRunning => "WaitingForRunning",
        Running => "Running",
        Successful => "Successful",
        Failed => "Failed",
        Cancelled => "Cancelled",
        TimeoutInterrupt => "TimeoutInterrupt",
    };
    let c = &mut st.conditions;
    conditions::set(c, types::READY, Status::from_bool(ready), reason, message.clone(), g, now);
    conditions::set(c, types::STALLED, Status::from_bool(stalled), reason, message.clone(), g, now);
    conditions::set(c, types::RECONCILING, Status::from_bool(!finished), reason, message, g, now);
    ComparePlan { status: st, actions, requeue_after: requeue }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LocalObjectRef;
    use crate::api::compare::CompareTaskSpec;

    fn spec() -> CompareTaskSpec {
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

    fn obs(run: RunState) -> CompareObserved {
        CompareObserved { generation: 1, spec_errors: Vec::new(), run }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_new_task_starts_its_first_run_and_follows_the_pod_to_success() {
        let p = plan(&spec(), &CompareTaskStatus::default(), &obs(RunState::Absent), at(0));
        assert_eq!(p.status.phase, Some(ComparePhase::WaitingForRunning));
        assert_eq!(p.actions[0], CompareAction::StartRun { run: 1 });
        let p = plan(&spec(), &p.status, &obs(RunState::Running), at(5));
        assert_eq!(p.status.phase, Some(ComparePhase::Running));
        let p = plan(&spec(), &p.status, &obs(RunState::Succeeded), at(9));
        assert_eq!(p.status.phase, Some(ComparePhase::Successful));
        assert_eq!(p.status.completion_time, Some(Time(at(9))));
        assert!(conditions::is_true(&p.status.conditions, types::READY));
        let again = plan(&spec(), &p.status, &obs(RunState::Succeeded), at(20));
        assert!(again.actions.is_empty(), "a finished unscheduled task stays finished");
    }

    #[test]
    fn a_failed_pod_fails_the_run_with_its_message() {
        let st = CompareTaskStatus { phase: Some(ComparePhase::Running), runs: 1, ..Default::default() };
        let p = plan(
            &spec(),
            &st,
            &obs(RunState::Failed { code: "SOURCE_CONNECT".into(), message: "refused".into() }),
            at(1),
        );
        assert_eq!(p.status.phase, Some(ComparePhase::Failed));
        assert_eq!(p.status.message.as_deref(), Some("SOURCE_CONNECT: refused"));
    }

    #[test]
    fn cancel_stops_the_pod_and_timeout_interrupts_it() {
        let st = CompareTaskStatus {
            phase: Some(ComparePhase::Running),
            runs: 1,
            start_time: Some(Time(at(0))),
            ..Default::default()
        };
        let mut s = spec();
        s.cancel = true;
        let p = plan(&s, &st, &obs(RunState::Running), at(1));
        assert_eq!(p.status.phase, Some(ComparePhase::Cancelled));
        assert!(p.actions.contains(&CompareAction::StopRun));
        let mut s = spec();
        s.timeout_seconds = Some(60);
        let early = plan(&s, &st, &obs(RunState::Running), at(30));
        assert_eq!(early.status.phase, Some(ComparePhase::Running));
        assert_eq!(early.requeue_after, Some(Duration::from_secs(30)));
        let late = plan(&s, &st, &obs(RunState::Running), at(61));
        assert_eq!(late.status.phase, Some(ComparePhase::TimeoutInterrupt));
        assert!(late.actions.contains(&CompareAction::StopRun));
    }

    #[test]
    fn a_schedule_starts_the_next_run_when_due_and_a_spec_change_reruns() {
        let mut s = spec();
        s.schedule = Some("*/10 * * * *".into());
        let done = CompareTaskStatus {
            phase: Some(ComparePhase::Successful),
            runs: 1,
            observed_generation: Some(1),
            start_time: Some(Time(at(0))),
            ..Default::default()
        };
        let next = next_run("*/10 * * * *", at(0)).unwrap();
        let wait_plan = plan(&s, &done, &obs(RunState::Succeeded), at(1));
        assert_eq!(wait_plan.status.phase, Some(ComparePhase::Successful));
        assert_eq!(wait_plan.requeue_after, Some(wait(at(1), next)));
        let due = plan(&s, &done, &obs(RunState::Succeeded), next);
        assert_eq!(due.status.phase, Some(ComparePhase::WaitingForRunning));
        assert_eq!(due.actions[0], CompareAction::StartRun { run: 2 });
        let changed = plan(&spec(), &done, &CompareObserved { generation: 2, ..obs(RunState::Succeeded) }, at(5));
        assert_eq!(changed.actions[0], CompareAction::StartRun { run: 2 });
    }

    #[test]
    fn cron_expressions_find_their_next_minute() {
        let t = Timestamp::from_second(1_800_000_000).unwrap(); // 2027-01-15 08:00:00 UTC
        let zoned = |ts: Timestamp| ts.to_zoned(jiff::tz::TimeZone::UTC);
        let n = zoned(next_run("30 2 * * *", t).unwrap());
        assert_eq!((n.hour(), n.minute()), (2, 30));
        assert!(next_run("* * * * *", t).unwrap() > t);
        assert_eq!(next_run("bad", t), None);
        let n = zoned(next_run("0 0 * * 0", t).unwrap());
        assert_eq!(n.weekday(), jiff::civil::Weekday::Sunday);
        // Day of month OR day of week, as cron has it: the 20th (a Wednesday) or any Monday,
        // whichever comes first — Monday the 18th.
        let n = zoned(next_run("0 0 20 * 1", t).unwrap());
        assert_eq!((n.day(), n.weekday()), (18, jiff::civil::Weekday::Monday));
        // What validation accepts is exactly what fires: a descending range is refused by both.
        assert!(crate::api::validate::check_cron("30-10 * * * *").is_err());
        assert_eq!(next_run("30-10 * * * *", t), None);
        // February 30th never comes: refused at validation instead of scanning a year each time.
        assert!(crate::api::validate::check_cron("0 0 30 2 *").is_err());
    }

    #[test]
    fn no_plan_takes_a_forbidden_transition() {
        use ComparePhase::*;
        let phases = [
            None,
            Some(WaitingForRunning),
            Some(Running),
            Some(Successful),
            Some(Failed),
            Some(Cancelled),
            Some(TimeoutInterrupt),
        ];
        let runs = [
            RunState::Absent,
            RunState::Pending,
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed { code: "X".into(), message: "y".into() },
        ];
        for phase in phases {
            for run in &runs {
                for (cancel, timeout, schedule, generation, invalid) in
                    (0..32).map(|b| (b & 1 != 0, b & 2 != 0, b & 4 != 0, 1 + (b >> 3 & 1), b & 16 != 0))
                {
                    let mut s = spec();
                    s.cancel = cancel;
                    s.timeout_seconds = timeout.then_some(10);
                    s.schedule = schedule.then(|| "* * * * *".to_owned());
                    let st = CompareTaskStatus {
                        phase,
                        runs: 1,
                        observed_generation: Some(1),
                        start_time: Some(Time(at(0))),
                        ..Default::default()
                    };
                    let mut o = CompareObserved { generation, ..obs(run.clone()) };
                    if invalid {
                        o.spec_errors = vec![FieldError { path: "spec".into(), message: "bad".into() }];
                    }
                    let p = plan(&s, &st, &o, at(120));
                    let next = p.status.phase.unwrap();
                    if let Some(from) = phase {
                        assert!(
                            from.can_transition_to(next),
                            "{from:?} → {next:?} with {run:?}, cancel {cancel}, invalid {invalid}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_invalid_spec_fails_and_is_stalled() {
        let o = CompareObserved {
            spec_errors: vec![FieldError { path: "spec.syncJobRef".into(), message: "give one".into() }],
            ..obs(RunState::Absent)
        };
        let p = plan(&spec(), &CompareTaskStatus::default(), &o, at(0));
        assert_eq!(p.status.phase, Some(ComparePhase::Failed));
        assert!(conditions::is_true(&p.status.conditions, types::STALLED));
        assert!(p.actions.iter().all(|a| !matches!(a, CompareAction::StartRun { .. })));
    }
}
