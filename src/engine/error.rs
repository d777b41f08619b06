//! Errors of the data path, classified so the lifecycle and the metrics can tell them apart.

use std::fmt;

use crate::engine::tls::TlsFailure;

/// Which database an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The database data is read from.
    Source,
    /// The database data is written to.
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// What went wrong on the data path. Messages never carry passwords or row contents.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database could not be reached or refused the login.
    #[error("cannot connect to the {side} database: {message}")]
    Connect { side: Side, message: String },
    /// The TLS handshake failed, for a reason [`TlsFailure`] names.
    #[error("cannot connect to the {side} database over TLS: {}; fix: {}", failure.reason(host, *port), failure.fix(*side))]
    Tls { side: Side, host: String, port: u16, failure: TlsFailure },
    /// A statement failed.
    #[error("{side} database: {context}: {message}")]
    Query { side: Side, context: String, message: String },
    /// A selected table is not on the source.
    #[error("table {0} does not exist on the source")]
    MissingTable(String),
    /// The source cannot serve the job as configured (wal_level, privileges, …).
    #[error("the source cannot serve this job: {0}")]
    SourceUnfit(String),
    /// A change met a row that is missing or already present, and `policy.conflict` is `stop`.
    #[error("conflict on {table}: {message} (policy.conflict is stop)")]
    Conflict { table: String, message: String },
    /// The change stream failed.
    #[error("change stream: {0}")]
    Stream(String),
    /// The source no longer has what the job needs to continue from its checkpoint (a purged
    /// binary log, an invalidated slot): retrying cannot help; the message says what to do.
    #[error("{message}")]
    Unrecoverable { code: &'static str, message: String },
    /// The job was asked to stop.
    #[error("stopped at a checkpoint")]
    Stopped,
    /// The spec asks for something this engine cannot do.
    #[error("{0}")]
    Unsupported(String),
}

impl EngineError {
    /// A stable, SCREAMING_SNAKE code for `status.lastError.code` and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Connect { side: Side::Source, .. } => "SOURCE_CONNECT",
            EngineError::Connect { side: Side::Target, .. } => "TARGET_CONNECT",
            EngineError::Tls { side: Side::Source, .. } => "SOURCE_TLS",
            EngineError::Tls { side: Side::Target, .. } => "TARGET_TLS",
            EngineError::Query { side: Side::Source, .. } => "SOURCE_QUERY",
            EngineError::Query { side: Side::Target, .. } => "TARGET_WRITE",
            EngineError::MissingTable(_) => "MISSING_TABLE",
            EngineError::SourceUnfit(_) => "SOURCE_UNFIT",
            EngineError::Conflict { .. } => "CONFLICT",
            EngineError::Stream(_) => "CHANGE_STREAM",
            EngineError::Unrecoverable { code, .. } => code,
            EngineError::Stopped => "STOPPED",
            EngineError::Unsupported(_) => "UNSUPPORTED",
        }
    }

    /// A query error on `side` with what was being done.
    pub fn query(side: Side, context: impl Into<String>, err: impl fmt::Display) -> EngineError {
        EngineError::Query { side, context: context.into(), message: err.to_string() }
    }
}

/// What a database's "no space left" error means for a job, and what to do: appended to the
/// server's own message.
pub const OUT_OF_SPACE: &str = "the database server is out of disk space: make room (free space or grow its volume), \
     and a retry resumes from the last committed chunk or checkpoint";

/// Error codes no retry can help: the job fails at once instead of retrying `spec.retry.limit`
/// times.
pub const UNRECOVERABLE: [&str; 2] = ["BINLOG_PURGED", "SLOT_LOST"];

/// Whether a failure with `code` is one retries cannot help.
pub fn is_unrecoverable(code: &str) -> bool {
    UNRECOVERABLE.contains(&code)
}

/// Shorthand for results of the data path.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// How a database client's error reads in a message: in the server's own words where it gave
/// any. (tokio-postgres's `Display` says only "db error" for everything the server reports.)
pub trait Describe {
    /// The error's message, never holding a password.
    fn describe(&self) -> String;
}

/// Adds context to database errors.
pub trait Context<T> {
    /// Maps the error to [`EngineError::Query`] on `side`, saying what was being done.
    fn ctx(self, side: Side, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Describe> Context<T> for std::result::Result<T, E> {
    fn ctx(self, side: Side, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| EngineError::query(side, context(), e.describe()))
    }
}
