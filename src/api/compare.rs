//! The CompareTask resource: proves that a target holds the same data as its source.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DebugOptions, Endpoint, LocalObjectRef, ObjectSelection};
use super::phase::{ComparePhase, CompareResult, ObjectCompareResult};

/// What is compared. `object`: schemas, tables, columns, keys and indexes exist alike on both
/// sides. `rows`: row counts per table. `content`: every row's values, chunk by chunk, down to
/// the differing rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompareType {
    Object,
    Rows,
    #[default]
    Content,
}

/// Whether every chunk is compared or a sample. `full` or `sample`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompareModeKind {
    #[default]
    Full,
    Sample,
}

/// Full or sampled comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareMode {
    /// `full` (default) or `sample`.
    #[serde(default)]
    pub kind: CompareModeKind,
    /// With `sample`: the percent of chunks compared, 1–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<u32>,
}

/// Load the comparison may put on the databases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareThrottle {
    /// Rows read per second from each side, at most. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rows_per_second: Option<u64>,
    /// Chunks compared at once. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub parallelism: Option<u32>,
}

/// A comparison between a source and a target: of objects, row counts or contents.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    doc = "A comparison between a source and a target.",
    version = "v1alpha1",
    kind = "CompareTask",
    plural = "comparetasks",
    singular = "comparetask",
    shortname = "ct",
    category = "ferry",
    namespaced,
    status = "CompareTaskStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Result","type":"string","jsonPath":".status.result"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CompareTaskSpec {
    /// The SyncJob whose source, target and objects are compared. Either this or both `source`
    /// and `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_job_ref: Option<LocalObjectRef>,
    /// Source database, when no `syncJobRef` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Endpoint>,
    /// Target database, when no `syncJobRef` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Endpoint>,
    /// Objects compared. With `syncJobRef`: a subset of the job's objects (default: all of
    /// them); otherwise required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectSelection>,
    /// Comparison type: `object`, `rows` or `content` (default).
    #[serde(default, rename = "type")]
    pub compare_type: CompareType,
    /// Full or sampled comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CompareMode>,
    /// Read rate and parallelism limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<CompareThrottle>,
    /// Cron schedule (five fields, UTC) for periodic runs; unset runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// A run still going after this many seconds is stopped with `TIMEOUT_INTERRUPT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<u64>,
    /// Cancel the running comparison (phase `CANCELLED`) and suspend the schedule.
    #[serde(default)]
    pub cancel: bool,
    /// Diagnostics: `rowValuesInErrors` shows the row values a database quotes in the errors of
    /// this task (off by default). The report lists differing rows by primary key either way,
    /// never with their other columns' values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<DebugOptions>,
}

/// Result of comparing one table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableCompareStatus {
    /// Source table, qualified.
    pub source: String,
    /// Target table, qualified, after mapping.
    pub target: String,
    /// Rows on the source (after row filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<u64>,
    /// Rows on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rows: Option<u64>,
    /// Rows that differ: only in source, only in target or with different values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub different_rows: Option<u64>,
    /// Structure result (`type: object`): the columns with their types, the primary key and the
    /// secondary indexes alike on both sides, after mapping; `message` names each difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_result: Option<ObjectCompareResult>,
    /// Row count result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_result: Option<ObjectCompareResult>,
    /// Content result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_result: Option<ObjectCompareResult>,
    /// Details, e.g. why a table could not be compared row by row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How a row differs. `onlyInSource`, `onlyInTarget` or `valuesDiffer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DifferenceKind {
    OnlyInSource,
    OnlyInTarget,
    ValuesDiffer,
}

/// One differing row, with the statements that show it on each side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowDifference {
    /// Source table, qualified.
    pub table: String,
    /// How the row differs.
    pub kind: DifferenceKind,
    /// Primary key value on the source, e.g. `id=42`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_key_value: Option<String>,
    /// Primary key value on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_key_value: Option<String>,
    /// SELECT that shows the row on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_select_sql: Option<String>,
    /// SELECT that shows the row on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_select_sql: Option<String>,
}

/// Observed state of a CompareTask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareTaskStatus {
    /// Phase of the current or last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ComparePhase>,
    /// Overall result of the last finished run: `CONSISTENT` or `INCONSISTENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CompareResult>,
    /// The spec generation the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per-table results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCompareStatus>,
    /// A bounded sample of differing rows; the full list is in the report ConfigMap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<RowDifference>,
    /// The ConfigMap holding the full report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_ref: Option<LocalObjectRef>,
    /// When the current or last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the last run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// When the schedule last started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Why the last run failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Runs started so far; the current run's pod is `<task>-compare-<runs>`.
    #[serde(default)]
    pub runs: u32,
}
