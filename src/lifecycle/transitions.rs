//! The allowed phase graphs. [`super::plan`] only ever moves along these edges; the tests prove
//! it by walking every phase against every kind of observation.

use crate::api::{BatchPhase, ComparePhase, SyncJobPhase};

impl SyncJobPhase {
    /// Phases this one may move to (staying put is always allowed).
    pub fn allowed_next(self) -> &'static [SyncJobPhase] {
        use SyncJobPhase::*;
        match self {
            Creating => &[CreateFailed, Configuration, ReleaseResourceComplete],
            CreateFailed => &[Configuration, ReleaseResourceComplete],
            Configuration => &[CreateFailed, WaitingForStart, StartJobing, Pausing, ReleaseResourceComplete],
            WaitingForStart => &[CreateFailed, Configuration, StartJobing, Pausing, ReleaseResourceComplete],
            StartJobing => &[
                StartJobFailed,
                FullTransferStarted,
                FullTransferComplete,
                IncreTransferStarted,
                Pausing,
                ChangeJobStarted,
                ChangeJobFailed,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            StartJobFailed => &[
                StartJobing,
                ChangeJobStarted,
                ChangeJobFailed,
                Pausing,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            FullTransferStarted => &[
                FullTransferFailed,
                FullTransferComplete,
                IncreTransferStarted,
                Pausing,
                ChangeJobStarted,
                ChangeJobFailed,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            FullTransferFailed => &[
                StartJobing,
                ChangeJobStarted,
                ChangeJobFailed,
                Pausing,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            FullTransferComplete => &[
                IncreTransferStarted,
                IncreTransferFailed,
                Pausing,
                ChangeJobStarted,
                ChangeJobFailed,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            IncreTransferStarted => &[
                IncreTransferFailed,
                Pausing,
                ChangeJobStarted,
                ChangeJobFailed,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            IncreTransferFailed => &[
                StartJobing,
                ChangeJobStarted,
                ChangeJobFailed,
                Pausing,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            Pausing => &[
                StartJobing,
                WaitingForStart,
                Configuration,
                CreateFailed,
                ChangeJobFailed,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            ChangeJobStarted => &[
                ChangeJobFailed,
                FullTransferStarted,
                FullTransferComplete,
                IncreTransferStarted,
                Pausing,
                ReleaseResourceStarted,
                ReleaseResourceComplete,
            ],
            ChangeJobFailed => {
                &[ChangeJobStarted, StartJobing, Pausing, ReleaseResourceStarted, ReleaseResourceComplete]
            }
            ReleaseResourceStarted => &[ReleaseResourceComplete, ReleaseResourceFailed],
            ReleaseResourceFailed => &[ReleaseResourceStarted, ReleaseResourceComplete],
            ReleaseResourceComplete => &[],
        }
    }

    /// Whether moving from `self` to `next` is allowed.
    pub fn can_transition_to(self, next: SyncJobPhase) -> bool {
        self == next || self.allowed_next().contains(&next)
    }

    /// Phases the job never leaves by itself.
    pub fn is_terminal(self) -> bool {
        matches!(self, SyncJobPhase::ReleaseResourceComplete)
    }

    /// Phases in which a worker pod should be running.
    pub fn is_running(self) -> bool {
        use SyncJobPhase::*;
        matches!(
            self,
            StartJobing | FullTransferStarted | FullTransferComplete | IncreTransferStarted | ChangeJobStarted
        )
    }

    /// Phases that report a failed worker or spec change.
    pub fn is_failed(self) -> bool {
        use SyncJobPhase::*;
        matches!(self, StartJobFailed | FullTransferFailed | IncreTransferFailed | ChangeJobFailed)
    }

    /// The failed phase a worker failure in this phase leads to, if a worker runs in it.
    pub fn failure(self) -> Option<SyncJobPhase> {
        use SyncJobPhase::*;
        match self {
            StartJobing => Some(StartJobFailed),
            FullTransferStarted => Some(FullTransferFailed),
            FullTransferComplete | IncreTransferStarted => Some(IncreTransferFailed),
            ChangeJobStarted => Some(ChangeJobFailed),
            _ => None,
        }
    }
}

impl ComparePhase {
    /// Whether moving from `self` to `next` is allowed. A waiting run may end any way (a pod can
    /// finish before it is seen running, or never start and time out); a
    /// finished run may start again (a new scheduled run, or a spec change) or fail on an invalid
    /// spec.
    pub fn can_transition_to(self, next: ComparePhase) -> bool {
        use ComparePhase::*;
        self == next
            || match self {
                WaitingForRunning => !matches!(next, WaitingForRunning),
                // Back to waiting when the run's pod vanished and is created again.
                Running => matches!(next, WaitingForRunning | Successful | Failed | Cancelled | TimeoutInterrupt),
                Successful | Failed | Cancelled | TimeoutInterrupt => matches!(next, WaitingForRunning | Failed),
            }
    }

    /// Whether a run has finished.
    pub fn is_finished(self) -> bool {
        !matches!(self, ComparePhase::WaitingForRunning | ComparePhase::Running)
    }
}

impl BatchPhase {
    /// Whether moving from `self` to `next` is allowed. The batch phase is an aggregate of its
    /// children, so every aggregate may follow every other except a return to `CREATING`.
    pub fn can_transition_to(self, next: BatchPhase) -> bool {
        self == next || next != BatchPhase::Creating
    }
}
