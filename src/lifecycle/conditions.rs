//! Kubernetes-style conditions: set one, keeping its `lastTransitionTime` unless its status
//! flips.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types Ferry sets.
pub mod types {
    /// The resource reached what its spec asks for (kstatus).
    pub const READY: &str = "Ready";
    /// Ferry is working toward what the spec asks for (kstatus).
    pub const RECONCILING: &str = "Reconciling";
    /// Ferry cannot make progress without a change from the user (kstatus).
    pub const STALLED: &str = "Stalled";
    /// Every precheck item passed, raised an alarm or was skipped.
    pub const PRECHECK_PASSED: &str = "PrecheckPassed";
    /// The full transfer has copied every selected table.
    pub const FULL_TRANSFER_COMPLETE: &str = "FullTransferComplete";
    /// Incremental lag is above `spec.alarm.delaySeconds`.
    pub const LAG_OVER_THRESHOLD: &str = "LagOverThreshold";
}

/// Condition status values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    /// `True` when `b`, else `False`.
    pub fn from_bool(b: bool) -> Status {
        if b { Status::True } else { Status::False }
    }
}

/// Sets a condition in `conditions`, replacing one of the same type. `lastTransitionTime`
/// keeps its old value when the status does not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    generation: i64,
    now: Timestamp,
) {
    let status = status.as_str().to_owned();
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let cond = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: Some(generation),
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
}

/// The condition of a type, if set.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition of this type is set to `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}
