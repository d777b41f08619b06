//! Phase enums of the three resources, spelled exactly as the reference services spell them.
//!
//! Transitions live in [`crate::lifecycle`]; these are plain values.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! spelled_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written in status.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled_enum! {
    /// Lifecycle phase of a SyncJob.
    ///
    /// `CREATING`: just created. `CREATE_FAILED`: the spec is invalid (see the conditions).
    /// `CONFIGURATION`: precheck running or failed. `WAITING_FOR_START`: `startTime` is ahead.
    /// `STARTJOBING`: worker starting. `START_JOB_FAILED`. `FULL_TRANSFER_STARTED`: copying
    /// existing data. `FULL_TRANSFER_FAILED`. `FULL_TRANSFER_COMPLETE`: existing data copied (final
    /// for `FULL_TRANS`). `INCRE_TRANSFER_STARTED`: streaming changes. `INCRE_TRANSFER_FAILED`.
    /// `PAUSING`: paused at a checkpoint. `CHANGE_JOB_STARTED` / `CHANGE_JOB_FAILED`: the spec was
    /// edited while running. `RELEASE_RESOURCE_STARTED` / `RELEASE_RESOURCE_COMPLETE` /
    /// `RELEASE_RESOURCE_FAILED`: the job was stopped or deleted and its source resources are
    /// being released.
    SyncJobPhase {
        Creating => "CREATING",
        CreateFailed => "CREATE_FAILED",
        Configuration => "CONFIGURATION",
        WaitingForStart => "WAITING_FOR_START",
        StartJobing => "STARTJOBING",
        StartJobFailed => "START_JOB_FAILED",
        FullTransferStarted => "FULL_TRANSFER_STARTED",
        FullTransferFailed => "FULL_TRANSFER_FAILED",
        FullTransferComplete => "FULL_TRANSFER_COMPLETE",
        IncreTransferStarted => "INCRE_TRANSFER_STARTED",
        IncreTransferFailed => "INCRE_TRANSFER_FAILED",
        Pausing => "PAUSING",
        ChangeJobStarted => "CHANGE_JOB_STARTED",
        ChangeJobFailed => "CHANGE_JOB_FAILED",
        ReleaseResourceStarted => "RELEASE_RESOURCE_STARTED",
        ReleaseResourceComplete => "RELEASE_RESOURCE_COMPLETE",
        ReleaseResourceFailed => "RELEASE_RESOURCE_FAILED",
    }
}

spelled_enum! {
    /// Phase of a CompareTask run.
    ///
    /// `WAITING_FOR_RUNNING`: queued or waiting for its schedule. `RUNNING`. `SUCCESSFUL`: the
    /// comparison finished (see `result`). `FAILED`: it could not finish. `CANCELLED`.
    /// `TIMEOUT_INTERRUPT`: stopped after `timeoutSeconds`.
    ComparePhase {
        WaitingForRunning => "WAITING_FOR_RUNNING",
        Running => "RUNNING",
        Successful => "SUCCESSFUL",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
        TimeoutInterrupt => "TIMEOUT_INTERRUPT",
    }
}

spelled_enum! {
    /// Phase of a BatchJob, aggregated from its children.
    ///
    /// `CREATING`: children being created. `ROLLING_OUT`: some children wait for a slot under
    /// `maxConcurrent`. `RUNNING`: every child started. `PAUSED`: paused through `spec.paused`.
    /// `COMPLETE`: every child finished or released. `FAILED`: at least one child failed or has
    /// an invalid spec.
    BatchPhase {
        Creating => "CREATING",
        RollingOut => "ROLLING_OUT",
        Running => "RUNNING",
        Paused => "PAUSED",
        Complete => "COMPLETE",
        Failed => "FAILED",
    }
}

spelled_enum! {
    /// Overall result of a comparison. `CONSISTENT` or `INCONSISTENT`.
    CompareResult {
        Consistent => "CONSISTENT",
        Inconsistent => "INCONSISTENT",
    }
}

spelled_enum! {
    /// Result for one compared object.
    ///
    /// `CONSISTENT`, `INCONSISTENT`, `COMPARING`, `WAITING_FOR_COMPARISON`, `FAILED_TO_COMPARE`,
    /// `TARGET_DB_NOT_EXIST` (the object is missing on the target) or `CAN_NOT_COMPARE` (e.g.
    /// row-level detail on a table without a primary key).
    ObjectCompareResult {
        Consistent => "CONSISTENT",
        Inconsistent => "INCONSISTENT",
        Comparing => "COMPARING",
        WaitingForComparison => "WAITING_FOR_COMPARISON",
        FailedToCompare => "FAILED_TO_COMPARE",
        TargetDbNotExist => "TARGET_DB_NOT_EXIST",
        CanNotCompare => "CAN_NOT_COMPARE",
    }
}
