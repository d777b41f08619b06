//! The pure lifecycle: phases, their allowed transitions and the SyncJob state machine.
//!
//! This module decides and nothing else: it touches neither a Kubernetes client nor a
//! database, and takes the clock as an argument. Controllers and `ferry run` observe the world,
//! call [`plan`], and carry out the returned actions.

pub mod batch;
pub mod compare;
pub mod conditions;
pub mod syncjob;
mod transitions;

pub use syncjob::{
    Action, Observed, Plan, PrecheckState, ReleaseState, SLOT_RETENTION_EXPIRED, WorkerState, blocking_items,
    holds_slot, mark_skipped, plan, precheck_status, slot_retention,
};

#[cfg(test)]
mod tests;
