//! The SyncJob resource: one migration or replication job from a source to a target database.

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::common::{DebugOptions, Endpoint, ObjectSelection};
use super::phase::SyncJobPhase;

/// What the job is for. `migration`: move a database once (typically `FULL_INCR_TRANS` until
/// cut-over). `sync`: keep a target continuously in step with a source. `disasterRecovery`: keep a
/// standby copy ready to take over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobType {
    #[default]
    Migration,
    Sync,
    DisasterRecovery,
}

/// What the job transfers. `FULL_TRANS`: the existing data once, then the job is complete.
/// `INCR_TRANS`: only changes made from the job's start on. `FULL_INCR_TRANS`: the existing data,
/// then every change, continuously.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaskType {
    #[serde(rename = "FULL_TRANS")]
    FullTrans,
    #[serde(rename = "INCR_TRANS")]
    IncrTrans,
    #[default]
    #[serde(rename = "FULL_INCR_TRANS")]
    FullIncrTrans,
}

impl TaskType {
    /// The task type as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::FullTrans => "FULL_TRANS",
            TaskType::IncrTrans => "INCR_TRANS",
            TaskType::FullIncrTrans => "FULL_INCR_TRANS",
        }
    }

    /// Whether the job copies existing data.
    pub fn has_full(self) -> bool {
        matches!(self, TaskType::FullTrans | TaskType::FullIncrTrans)
    }

    /// Whether the job streams changes.
    pub fn has_incremental(self) -> bool {
        matches!(self, TaskType::IncrTrans | TaskType::FullIncrTrans)
    }
}

/// Size of the transfer worker pod. `micro`: 0.25 CPU / 256Mi; `small`: 0.5 CPU / 512Mi;
/// `medium`: 1 CPU / 1Gi; `high`: 2 CPU / 4Gi (requests; limits are twice the memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    Micro,
    #[default]
    Small,
    Medium,
    High,
}

/// What a row that is missing or already present on the target does in the incremental phase.
/// `ignore`: skip the change and keep the target row. `overwrite`: make the target row equal to
/// the source row (insert becomes upsert, update of a missing row inserts it). `stop`: fail the
/// job with the conflicting key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    Ignore,
    #[default]
    Overwrite,
    Stop,
}

/// What a PostgreSQL → PostgreSQL job does with the source's foreign keys between the tables it
/// copies. `create` (default): each is added once the target holds a consistent copy — right
/// after the load when every table was read in one snapshot, otherwise once the change stream
/// has passed the newest snapshot a chunk was read in — as `NOT VALID`, then validated. `skip`:
/// none is created. Either way the foreign keys the target does not get are listed in
/// `status.progress.skippedObjects` with the reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForeignKeyPolicy {
    #[default]
    Create,
    Skip,
}

/// A kind of DDL statement replayed in the incremental phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DdlKind {
    CreateTable,
    AlterTable,
    DropTable,
    RenameTable,
    TruncateTable,
    CreateIndex,
    DropIndex,
}

/// A kind of row change replayed in the incremental phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmlType {
    Insert,
    Update,
    Delete,
}

/// DDL replay in the incremental phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DdlPolicy {
    /// Replay DDL on selected tables on the target. When false, DDL is ignored; a DDL that makes
    /// the job unable to continue stops it with a clear error.
    #[serde(default)]
    pub enabled: bool,
    /// DDL kinds that are replayed. Empty means every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<DdlKind>,
    /// Never replay DROP DATABASE (or DROP SCHEMA), even with DDL replay on. Default true.
    #[serde(default = "default_true")]
    pub skip_drop_database: bool,
}

impl Default for DdlPolicy {
    fn default() -> Self {
        DdlPolicy { enabled: false, kinds: Vec::new(), skip_drop_database: true }
    }
}

fn default_true() -> bool {
    true
}

fn default_dml_types() -> Vec<DmlType> {
    vec![DmlType::Insert, DmlType::Update, DmlType::Delete]
}

/// How the job treats conflicts, DDL, row changes and indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Conflict policy in the incremental phase: `ignore`, `overwrite` (default) or `stop`.
    #[serde(default)]
    pub conflict: ConflictPolicy,
    /// DDL replay in the incremental phase. Default: off.
    #[serde(default)]
    pub ddl: DdlPolicy,
    /// Row change kinds replayed in the incremental phase. Default: insert, update, delete.
    #[serde(default = "default_dml_types")]
    #[schemars(length(min = 1, max = 3))]
    pub dml_types: Vec<DmlType>,
    /// Create the source's secondary indexes on the target (after the full transfer has loaded
    /// the data). Default true.
    #[serde(default = "default_true")]
    pub indexes: bool,
    /// PostgreSQL → PostgreSQL: `create` (default) adds the source's foreign keys between
    /// selected tables on the target once its copy is consistent; `skip` leaves them out.
    /// Foreign keys to tables the job does not copy are never created.
    #[serde(default)]
    pub foreign_keys: ForeignKeyPolicy,
    /// PostgreSQL → PostgreSQL: how the sequences of the selected tables (serial and identity
    /// columns, sequences their defaults call) are carried to the target.
    #[serde(default)]
    pub sequences: SequencePolicy,
    /// MySQL/MariaDB → PostgreSQL only (any other pair refuses the field when the job is
    /// created): what becomes of a zero date — `'0000-00-00'`, `'0000-00-00 00:00:00'`, or a
    /// date with a zero month or day such as `'2024-00-15'` — in a `DATE`, `DATETIME` or
    /// `TIMESTAMP` column, for which PostgreSQL has no value. `null` (the default): `NULL` where
    /// the target column is nullable; in a `NOT NULL` column the job stops, naming the table,
    /// the column and the row's key columns. `sentinel`: `-infinity` in every column, nullable
    /// or not (PostgreSQL's `date` and `timestamp` take it; it sorts before every date and
    /// cannot be mistaken for one). `stop`: the job stops at the first zero date, naming the
    /// table, the column and the row's key columns. The same in the full transfer and the
    /// change stream; a zero-date column default becomes `DEFAULT '-infinity'` with `sentinel`
    /// and is left out (reported) otherwise. A CompareTask with `syncJobRef` compares zero dates
    /// as the job's policy writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_dates: Option<ZeroDatePolicy>,
}

/// What a MySQL/MariaDB zero date becomes on PostgreSQL. `null`: `NULL` in a nullable column,
/// the job stops on one in a `NOT NULL` column. `sentinel`: `-infinity` in every column.
/// `stop`: the job stops at the first one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZeroDatePolicy {
    #[default]
    Null,
    Sentinel,
    Stop,
}

impl ZeroDatePolicy {
    /// The policy as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ZeroDatePolicy::Null => "null",
            ZeroDatePolicy::Sentinel => "sentinel",
            ZeroDatePolicy::Stop => "stop",
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            conflict: ConflictPolicy::default(),
            ddl: DdlPolicy::default(),
            dml_types: default_dml_types(),
            indexes: true,
            foreign_keys: ForeignKeyPolicy::default(),
            sequences: SequencePolicy::default(),
            zero_dates: None,
        }
    }
}

/// PostgreSQL → PostgreSQL sequences. Their values follow the source while the job runs (never
/// backwards), and every stop at a checkpoint (`paused`, `stopped`, the end of a `FULL_TRANS`
/// job, a worker told to stop) sets each one to the source's value plus `margin`: the cut-over
/// step, after which inserts on the target draw fresh numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequencePolicy {
    /// Added to each sequence's source value at the cut-over step (moved down for a descending
    /// sequence, within its bounds), so that numbers the source still hands out between the
    /// job's last look and the switch of the applications cannot collide with numbers the
    /// target hands out after it. Default 0: the target continues exactly where the source is.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub margin: u64,
}

/// A daily window, in UTC, during which the full transfer reads at most `mbPerSecond`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpeedLimit {
    /// Start of the window, UTC, on the hour: `hh:00` (e.g. `16:00`).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):00$"))]
    pub begin: String,
    /// End of the window, UTC, inclusive: `hh:59` (e.g. `15:59`). An end before the begin wraps
    /// past midnight; `16:00`–`15:59` covers the whole day.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):59$"))]
    pub end: String,
    /// Read rate cap inside the window, in MB/s, 1–9999.
    #[schemars(range(min = 1, max = 9999))]
    pub mb_per_second: u32,
}

/// Lag and recovery thresholds that raise conditions, Events and alerts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// Incremental lag, in seconds, above which the `LagOverThreshold` condition turns true and a
    /// warning Event is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub delay_seconds: Option<u32>,
    /// Recovery point objective, in seconds: the data loss the job may risk. Feeds alert rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub rpo_seconds: Option<u32>,
    /// Recovery time objective, in seconds. Feeds alert rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub rto_seconds: Option<u32>,
    /// Seconds after which a job in the incremental phase is `Stalled` when its worker has
    /// received source changes but its checkpoint has not advanced, or the worker has stopped
    /// reporting. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 86400))]
    pub stall_seconds: Option<u32>,
}

/// Overrides for the worker pods of this job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerOverrides {
    /// CPU and memory of the worker container; replaces what `nodeType` gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the worker pods must run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the worker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Container image of the worker pods. Default: the operator's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Parallelism and batching of the transfer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tuning {
    /// Chunks read from the source at once during the full transfer. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub read_parallelism: Option<u32>,
    /// PostgreSQL targets: target sessions that build the primary keys, constraints and
    /// secondary indexes after the full transfer's load, and validate the foreign keys, at
    /// once — different tables in parallel, and a table's indexes in parallel with each other.
    /// Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub write_parallelism: Option<u32>,
    /// Rows per chunk in the full transfer. Default 50000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 10000000))]
    pub batch_rows: Option<u32>,
    /// Source transactions grouped into one target transaction in the incremental phase.
    /// Default 100, doubling batch after batch up to 800 while the stream is behind (each batch
    /// finds more waiting than it takes); a value set here holds as set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub apply_batch_transactions: Option<u32>,
    /// Seconds a database connection may stay silent before Ferry gives it up and starts again
    /// from the checkpoint: TCP keepalive probes start after a third of it, a connection attempt
    /// or a chunk that makes no progress for this long is abandoned, and a change stream that
    /// delivers nothing, not even its heartbeat, for this long is reopened. 5–3600, default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 3600))]
    pub network_timeout_seconds: Option<u32>,
}

/// Precheck behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrecheckSpec {
    /// Skip every skippable failed precheck item and start anyway.
    #[serde(default)]
    pub skip: bool,
    /// Names of failed precheck items to skip (the `item` of `status.precheck.items`). Only
    /// skippable items can be skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_items: Vec<String>,
}

/// Automatic retries of a failed worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// How many times a failed worker is restarted from its checkpoint before the job stays
    /// failed. Default 5; 0 disables retries.
    #[serde(default = "default_retry_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub limit: u32,
    /// Delay before the first retry, in seconds; each further retry doubles it, up to one hour.
    /// Default 10.
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 1, max = 3600))]
    pub backoff_seconds: u32,
}

fn default_retry_limit() -> u32 {
    5
}

fn default_backoff() -> u32 {
    10
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { limit: default_retry_limit(), backoff_seconds: default_backoff() }
    }
}

fn default_expired_days() -> u32 {
    14
}

/// Default of `spec.slotRetentionMinutes`: a day.
pub const DEFAULT_SLOT_RETENTION_MINUTES: u32 = 1440;
/// Largest `spec.slotRetentionMinutes`: 100 days, as the longest `expiredDays`.
pub const MAX_SLOT_RETENTION_MINUTES: u32 = 144_000;

fn default_slot_retention_minutes() -> u32 {
    DEFAULT_SLOT_RETENTION_MINUTES
}

/// A database migration or replication job: Ferry prechecks both databases, copies the existing
/// data (full transfer), then streams every change (incremental transfer), and reports each step
/// in `status`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ferry.dev",
    doc = "A database migration or replication job.",
    version = "v1alpha1",
    kind = "SyncJob",
    plural = "syncjobs",
    singular = "syncjob",
    shortname = "sj",
    category = "ferry",
    namespaced,
    status = "SyncJobStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.taskType"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.source.engine"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.engine"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.percentText"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.progress.lagSeconds","description":"Incremental lag in seconds"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SyncJobSpec {
    /// Job type: `migration` (default), `sync` or `disasterRecovery`.
    #[serde(default)]
    pub job_type: JobType,
    /// What is transferred: `FULL_TRANS`, `INCR_TRANS` or `FULL_INCR_TRANS` (default). Cannot be
    /// changed after creation.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("taskType is immutable"))]
    pub task_type: TaskType,
    /// Free-text description, at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// The database data is read from.
    pub source: Endpoint,
    /// The database data is written to.
    pub target: Endpoint,
    /// The databases, schemas, tables and columns transferred, with their target names and row
    /// filters.
    pub objects: ObjectSelection,
    /// Conflict, DDL, row-change and index policy.
    #[serde(default)]
    pub policy: Policy,
    /// Read-rate caps for the full transfer: at most 3 non-overlapping daily UTC windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("size(self) <= 3").message("at most 3 speed limit windows"))]
    pub speed_limits: Vec<SpeedLimit>,
    /// Lag thresholds that raise conditions, Events and alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<Alarm>,
    /// Days a job may stay failed before it is stopped and its source resources (replication
    /// slot, publication) are released: 14–100, default 14.
    #[serde(default = "default_expired_days")]
    #[schemars(range(min = 14, max = 100))]
    pub expired_days: u32,
    /// PostgreSQL sources only: minutes the job may keep its replication slot while it is not
    /// streaming — failed, waiting for a retry, paused, or with its worker pod not running. Such a
    /// slot keeps all the WAL the source writes meanwhile, and can fill the source's disk. Once
    /// this long has passed, the operator releases the slot and the publication (phase
    /// `RELEASE_RESOURCE_COMPLETE`, `lastError.code` `SLOT_RETENTION_EXPIRED`): the changes since
    /// the checkpoint are gone, and the job must start over with a new full transfer (delete it
    /// and apply it again). A job whose worker runs never loses its slot this way.
    /// `status.slot.inactiveSince` says since when the clock runs. 1–144000 (100 days), default
    /// 1440 (a day). MySQL and MariaDB sources hold no slot: their binary logs are kept by the
    /// server's own retention.
    #[serde(default = "default_slot_retention_minutes")]
    #[schemars(range(min = 1, max = 144000))]
    pub slot_retention_minutes: u32,
    /// Worker pod size: `micro`, `small` (default), `medium` or `high`.
    #[serde(default)]
    pub node_type: NodeType,
    /// Worker pod overrides: resources, node selector, tolerations, image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerOverrides>,
    /// Parallelism and batch sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    /// Automatic retries of a failed worker.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Pause the job: the worker stops at a checkpoint and the phase becomes `PAUSING`. Setting
    /// it back to false resumes from that checkpoint.
    #[serde(default)]
    pub paused: bool,
    /// End the job without deleting it: the worker stops and the source resources (replication
    /// slot, publication) are released. Cannot be undone.
    #[serde(default)]
    #[x_kube(validation = Rule::new("oldSelf == false || self == true").message("a stopped job cannot be restarted; create a new one"))]
    pub stopped: bool,
    /// Scheduled start (RFC 3339). Until then the job waits in `WAITING_FOR_START`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// `INCR_TRANS` from a MySQL-family source only: where the change stream starts, for a
    /// target already loaded by other means up to that point — a MariaDB GTID position
    /// (`0-1-42`, one `domain-server-sequence` per domain, comma-separated) or a binary log file
    /// and offset (`mariadb-bin.000003:1234`). Default: the source's position when the job first
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_position: Option<String>,
    /// Precheck skips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precheck: Option<PrecheckSpec>,
    /// Diagnostics: `rowValuesInErrors` shows the row values a database quotes in its errors
    /// (off by default: errors name the class, table and constraint, not the values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<DebugOptions>,
}

/// Outcome of one precheck item: `PASSED`, `ALARM` (a warning; the job may start) or `FAILED`
/// (the job cannot start unless the item is skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrecheckResult {
    Passed,
    Alarm,
    Failed,
}

/// One check made before the job starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrecheckItem {
    /// Name of the check, e.g. `source.walLevel`; the name `precheck.skipItems` refers to.
    pub item: String,
    /// `PASSED`, `ALARM` or `FAILED`.
    pub result: PrecheckResult,
    /// Why the check did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What to do to make it pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Whether the job may start with this item skipped.
    #[serde(default)]
    pub skippable: bool,
    /// Whether the item was skipped through `spec.precheck`.
    #[serde(default)]
    pub skipped: bool,
}

/// Results of the precheck.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrecheckStatus {
    /// Whether every item passed, raised an alarm or was skipped. Unset while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// The spec generation these results were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Percent of the checks done, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u32>,
    /// Percent of the items that passed, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_rate: Option<f64>,
    /// Every check with its result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<PrecheckItem>,
}

/// The stage a worker reports it is in.
///
/// `starting`: connecting and preparing. `full`: copying existing data. `fullComplete`: existing
/// data copied. `incremental`: streaming changes. `stopped`: stopped cleanly at a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TransferStage {
    Starting,
    Full,
    FullComplete,
    Incremental,
    Stopped,
}

/// Transfer state of one table.
///
/// `pending`: not started. `copying`: full transfer running. `copied`: full transfer done.
/// `indexing`: creating secondary indexes. `streaming`: changes are being applied. `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TableState {
    Pending,
    Copying,
    Copied,
    Indexing,
    Streaming,
    Failed,
}

/// Progress of one table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableProgress {
    /// Source table, qualified (`database.table` or `schema.table`).
    pub name: String,
    /// Transfer state of the table.
    pub state: TableState,
    /// Rows written to the target in the full transfer.
    #[serde(default)]
    pub rows: u64,
    /// Rows the source statistics estimate for the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
}

/// A source object the target did not get, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedObject {
    /// What it is on the source, e.g. `foreign key orders_customer_fk of public.orders`.
    pub object: String,
    /// Why the target does not have it, and what to do.
    pub reason: String,
}

/// Progress reported by the worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Stage the worker is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<TransferStage>,
    /// Full transfer progress, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// `percent` formatted for `kubectl get` (e.g. `42%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_text: Option<String>,
    /// Incremental lag: seconds between a change's commit on the source and its commit on the
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    /// Estimated seconds until the full transfer completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_seconds: Option<u64>,
    /// Rows written to the target (full transfer plus applied changes).
    #[serde(default)]
    pub rows_transferred: u64,
    /// Bytes read from the source.
    #[serde(default)]
    pub bytes_transferred: u64,
    /// Rows per second over the last reporting interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<f64>,
    /// Per-table progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableProgress>,
    /// Source commit time of the newest change the worker has received (applied or not): ahead
    /// of `checkpoint.sourceTime` while changes wait to be applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_source_time: Option<Time>,
    /// When the worker last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
    /// Times this worker lost a connection, or heard nothing for `tuning.networkTimeoutSeconds`,
    /// and started again from its checkpoint on its own (each one is also a `Reconnecting`
    /// Event).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reconnects: u32,
    /// Source objects (column defaults, generated columns, constraints, foreign keys, indexes,
    /// comments) the job did not create on the target, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_objects: Vec<SkippedObject>,
    /// Updates the stream could not apply under `policy.conflict: overwrite`: the row was
    /// missing on the target, and the update did not carry the whole row to write it anew
    /// (PostgreSQL does not send a TOASTed value an update left unchanged; a table without a
    /// key cannot be upserted). Each one leaves the target without that row; a comparison
    /// (CompareTask) lists them, and a new full transfer puts them right.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub skipped_updates: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The source position up to which changes are committed on the target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Engine-specific position: a PostgreSQL LSN (`0/16B3748`), a MariaDB GTID list
    /// (`0-1-42`), a MySQL GTID set, or `binlog.000003:1234`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Source commit time of the last change covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_time: Option<Time>,
    /// When the checkpoint last advanced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

/// The worker pod currently serving the job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// Name of the worker pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Worker attempt number; it grows with each restart (retry, resume, spec change).
    #[serde(default)]
    pub attempt: u32,
    /// Container restarts of the current pod.
    #[serde(default)]
    pub restarts: u32,
}

/// The PostgreSQL replication slot the job holds on its source: what the worker last measured
/// (every 15 s while it runs) and, while no worker streams, since when the slot has been held
/// without one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotStatus {
    /// Name of the replication slot on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// WAL the slot retains on the source, in bytes, when last measured: the source's current
    /// WAL position minus the slot's `restart_lsn`. While no worker runs it is not measured, and
    /// grows with every write on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_wal_bytes: Option<u64>,
    /// When the worker last measured `retainedWalBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<Time>,
    /// Since when the job has held the slot without a worker running (failed, waiting for a
    /// retry, paused); unset while a worker runs. `spec.slotRetentionMinutes` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_since: Option<Time>,
    /// When the job had held the slot without streaming for `spec.slotRetentionMinutes`, and the
    /// operator began to release it: the job needs a new full transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<Time>,
}

impl SlotStatus {
    /// Fields the worker writes (`name`, `retainedWalBytes`, `measuredAt`), as JSON keys.
    pub const WORKER_FIELDS: [&'static str; 3] = ["name", "retainedWalBytes", "measuredAt"];

    /// What the worker reports of a measurement: the slot's name, the WAL it retains, when.
    pub fn measured(name: &str, retained_wal_bytes: u64, at: Time) -> SlotStatus {
        SlotStatus {
            name: Some(name.to_owned()),
            retained_wal_bytes: Some(retained_wal_bytes),
            measured_at: Some(at),
            ..SlotStatus::default()
        }
    }

    /// Only the worker's fields of `self`.
    pub fn worker_part(&self) -> SlotStatus {
        SlotStatus {
            name: self.name.clone(),
            retained_wal_bytes: self.retained_wal_bytes,
            measured_at: self.measured_at.clone(),
            ..SlotStatus::default()
        }
    }
}

/// What last set the values of `status.sequences`.
///
/// `sync`: the job, while it runs, moved target sequences forward to the source's values.
/// `cutOver`: the job stopped at a checkpoint and set every sequence to the source's value plus
/// `spec.policy.sequences.margin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SequenceStep {
    Sync,
    CutOver,
}

/// One sequence on the target with the value the job set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequenceValue {
    /// The sequence on the target, `schema.name`.
    pub name: String,
    /// Its value on the target (its `last_value`: the number it handed out last, or for a
    /// sequence not used yet, the first it will hand out).
    pub value: i64,
}

/// PostgreSQL → PostgreSQL: the sequences the job carries to the target, as its worker last set
/// them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequencesStatus {
    /// How many sequences the job carries.
    pub count: u32,
    /// What last set the values: `sync` (while running, forward only) or `cutOver` (at a stop:
    /// the source's values plus the margin).
    pub step: SequenceStep,
    /// When the values were last set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_at: Option<Time>,
    /// The values on the target, by name; at most the first 100 names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<SequenceValue>,
}

impl SequencesStatus {
    /// Most sequences listed in `items`: the status must stay small.
    pub const MAX_ITEMS: usize = 100;
}

/// The last error that failed the job or one of its steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// Stable error code, e.g. `SOURCE_CONNECT` or `SPEC_INVALID`.
    pub code: String,
    /// What went wrong, without secrets.
    pub message: String,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// Observed state of a SyncJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncJobStatus {
    /// Lifecycle phase, with the spellings of the reference services (`CREATING`,
    /// `CONFIGURATION`, `FULL_TRANSFER_STARTED`, `INCRE_TRANSFER_STARTED`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SyncJobPhase>,
    /// The spec generation the phase and conditions reflect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, `PrecheckPassed`, `FullTransferComplete` and
    /// `LagOverThreshold`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Precheck results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precheck: Option<PrecheckStatus>,
    /// Transfer progress reported by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Position up to which changes are on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// The worker pod serving the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerStatus>,
    /// When the full transfer started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_start_time: Option<Time>,
    /// When the full transfer completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_complete_time: Option<Time>,
    /// When the incremental transfer started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incr_start_time: Option<Time>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// When the job first failed without recovering since; `expiredDays` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_since: Option<Time>,
    /// Automatic retries made since the job last ran healthily.
    #[serde(default)]
    pub retries: u32,
    /// Since when the incremental lag has been above `alarm.delaySeconds`; `LagOverThreshold`
    /// turns true once it has been for 6 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_over_since: Option<Time>,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,
    /// PostgreSQL sources: the replication slot the job holds, as its worker last measured it.
    /// After the slot is released (phase `RELEASE_RESOURCE_COMPLETE`) the last measurement stays,
    /// for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotStatus>,
    /// PostgreSQL → PostgreSQL: the sequences the job carries, with the values its worker last
    /// set on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequences: Option<SequencesStatus>,
}
