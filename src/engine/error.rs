//! Errors of the data path, classified so the lifecycle and the metrics can tell them apart.

use std::fmt;

use crate::engine::redact::ServerMessage;
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

/// What went wrong on the data path. Messages never carry passwords, and show row contents a
/// server quoted only through [`EngineError::text`] for a job that opts in
/// (`spec.debug.rowValuesInErrors`): `Display` leaves them out.
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
    Query { side: Side, context: String, message: ServerMessage },
    /// A selected table is not on the source.
    #[error("table {0} does not exist on the source")]
    MissingTable(String),
    /// The source cannot serve the job as configured (wal_level, privileges, …).
    #[error("the source cannot serve this job: {0}")]
    SourceUnfit(String),
    /// A change met a row that is missing or already present, and `policy.conflict` is `stop`.
    #[error("conflict on {table}: {message} (policy.conflict is stop)")]
    Conflict { table: String, message: ServerMessage },
    /// The change stream failed.
    #[error("change stream: {0}")]
    Stream(String),
    /// The job cannot continue from its checkpoint until someone acts (a purged binary log, an
    /// invalidated slot, a target table dropped or altered by hand): retrying cannot help; the
    /// message says what to do.
    #[error("{message}")]
    Unrecoverable { code: &'static str, message: String },
    /// A connection made no progress for `tuning.networkTimeoutSeconds`: the server or the
    /// network in between stopped answering without closing the connection.
    #[error("the {side} database sent nothing for {seconds} s while {what} (tuning.networkTimeoutSeconds)")]
    Silent { side: Side, seconds: u64, what: String },
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
            EngineError::Silent { side: Side::Source, .. } => "SOURCE_SILENT",
            EngineError::Silent { side: Side::Target, .. } => "TARGET_SILENT",
            EngineError::Stopped => "STOPPED",
            EngineError::Unsupported(_) => "UNSUPPORTED",
        }
    }

    /// Whether starting again from the checkpoint, in the same worker, can help: the
    /// connection was lost, refused while the server restarts, or went silent. A wrong password,
    /// a missing table, a conflict or a full disk are not: they need someone to act, and go to
    /// the operator (retries, status) at once.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Silent { .. } => true,
            EngineError::Connect { message, .. } | EngineError::Stream(message) => is_transient_message(message),
            EngineError::Query { message, .. } => is_transient_message(message.with_values()),
            _ => false,
        }
    }

    /// A query error on `side` with what was being done: `err` is the server's message (a
    /// database client's error, described through [`Describe`]) or Ferry's own words.
    pub fn query(side: Side, context: impl Into<String>, err: impl Into<ServerMessage>) -> EngineError {
        EngineError::Query { side, context: context.into(), message: err.into() }
    }

    /// The message, with the row values a server quoted when `row_values` (the job's
    /// `spec.debug.rowValuesInErrors`), else as `Display` shows it, without them.
    pub fn text(&self, row_values: bool) -> String {
        match self {
            EngineError::Query { side, context, message } if row_values => {
                format!("{side} database: {context}: {}", message.with_values())
            }
            EngineError::Conflict { table, message } if row_values => {
                format!("conflict on {table}: {} (policy.conflict is stop)", message.with_values())
            }
            _ => self.to_string(),
        }
    }
}

/// What a database's "no space left" error means for a job, and what to do: appended to the
/// server's own message.
pub const OUT_OF_SPACE: &str = "the database server is out of disk space: make room (free space or grow its volume), \
     and a retry resumes from the last committed chunk or checkpoint";

/// Error codes no retry can help: the job fails at once instead of retrying `spec.retry.limit`
/// times. A purged binary log or a lost slot never comes back; a target table dropped or
/// altered by hand ([`super::drift`]) does not put itself right.
pub const UNRECOVERABLE: [&str; 6] = [
    "BINLOG_PURGED",
    "SLOT_LOST",
    super::drift::TARGET_TABLE_MISSING,
    super::drift::TARGET_TABLE_CHANGED,
    super::drift::SOURCE_SCHEMA_CHANGED,
    super::mysql::target::VALUE_NOT_STORED,
];

/// Whether a failure with `code` is one retries cannot help.
pub fn is_unrecoverable(code: &str) -> bool {
    UNRECOVERABLE.contains(&code)
}

/// What the clients and servers say when a connection is lost, refused while a server
/// restarts, or closed by a server shutting down, or when a lost connection still holds what the
/// job needs; lower case.
const TRANSIENT: [&str; 25] = [
    "connection closed",
    "connection reset",
    "connection refused",
    "connection aborted",
    "broken pipe",
    "timed out",
    "unexpected eof",
    "early eof",
    "unexpected end of file",
    "os error 104",
    "os error 111",
    "os error 32",
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "server closed the connection",
    "lost connection",
    "server has gone away",
    "server shutdown in progress",
    "connection was killed",
    "too many connections",
    "input/output error",
    "error communicating with the server",
    // A replication slot still held by the session of a worker that died: the server ends it
    // once it notices (the job's next start also ends it).
    "is active for pid",
];

/// Whether an error message says the connection was lost (see [`TRANSIENT`]).
pub fn is_transient_message(message: &str) -> bool {
    let lower = message.to_lowercase();
    TRANSIENT.iter().any(|t| lower.contains(t))
}

/// Shorthand for results of the data path.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// How a database client's error reads in a message: in the server's own words where it gave
/// any (tokio-postgres's `Display` says only "db error" for everything the server reports), with
/// the row values those words quote kept apart ([`super::redact`]).
pub trait Describe {
    /// The error's message, never holding a password; it displays without row values.
    fn describe(&self) -> ServerMessage;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_transient_and_refusals_that_need_a_person_are_not() {
        let connect = |m: &str| EngineError::Connect { side: Side::Source, message: m.into() };
        let query = |m: &str| EngineError::query(Side::Target, "applying", m);
        for transient in [
            connect("error connecting to server: Connection refused (os error 111)"),
            connect("db error: FATAL: the database system is starting up"),
            query("connection closed"),
            query("Input/output error: Connection reset by peer (os error 104)"),
            query("Server error: `ERROR 08S01 (1053): Server shutdown in progress'"),
            query("FATAL: terminating connection due to administrator command"),
            EngineError::Stream("reading the binary log: Input/output error: unexpected end of file".into()),
            EngineError::Silent { side: Side::Source, seconds: 60, what: "streaming".into() },
        ] {
            assert!(transient.is_transient(), "{transient}");
        }
        for lasting in [
            connect("Server error: `ERROR 28000 (1045): Access denied for user 'u'@'h' (using password: YES)'"),
            connect("password authentication failed for user \"u\""),
            query("could not extend file \"base/1/2\": No space left on device"),
            EngineError::MissingTable("public.t".into()),
            EngineError::Unrecoverable { code: "SLOT_LOST", message: "connection reset".into() },
        ] {
            assert!(!lasting.is_transient(), "{lasting}");
        }
    }

    #[test]
    fn row_values_show_only_when_the_job_opts_in() {
        let message = || ServerMessage::new("Duplicate entry '<redacted>'".into(), "Duplicate entry 'ann'".into());
        let conflict = EngineError::Conflict { table: "shop.users".into(), message: message() };
        assert_eq!(
            conflict.to_string(),
            "conflict on shop.users: Duplicate entry '<redacted>' (policy.conflict is stop)"
        );
        assert_eq!(conflict.text(false), conflict.to_string());
        assert_eq!(conflict.text(true), "conflict on shop.users: Duplicate entry 'ann' (policy.conflict is stop)");
        let query = EngineError::query(Side::Target, "applying changes to shop.users", message());
        assert_eq!(query.to_string(), "target database: applying changes to shop.users: Duplicate entry '<redacted>'");
        assert_eq!(query.text(true), "target database: applying changes to shop.users: Duplicate entry 'ann'");
    }
}
