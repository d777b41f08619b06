//! The custom resources (group `ferry.dev`, version `v1alpha1`) and their shared parts.
//!
//! Plain types: what a manifest may say and what status reports. Deciding (lifecycle),
//! acting (controllers) and moving data (engine) live elsewhere.

pub mod batch;
pub mod common;
pub mod compare;
pub mod crd;
#[cfg(any(test, feature = "testkit"))]
pub mod fixtures;
pub mod manifest;
pub mod phase;
pub mod schedule;
pub mod schema;
pub mod strict;
pub mod syncjob;
pub mod validate;

pub use batch::{BatchItem, BatchJob, BatchJobSpec, BatchJobStatus};
pub use common::*;
pub use compare::{CompareTask, CompareTaskSpec, CompareTaskStatus, CompareType};
pub use phase::{BatchPhase, ComparePhase, CompareResult, ObjectCompareResult, SyncJobPhase};
pub use syncjob::*;
pub use validate::{FieldError, Validate};

/// API group of every Ferry resource.
pub const GROUP: &str = "ferry.dev";
/// API version of every Ferry resource.
pub const VERSION: &str = "v1alpha1";
