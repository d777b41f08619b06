//! The BatchJob resource: many SyncJobs created and steered from one manifest.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::phase::{BatchPhase, SyncJobPhase};

/// One child job of a batch: a name and what differs from the template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    /// Item name; the child SyncJob is named `<batch>-<name>`. Lowercase letters, digits and
    /// `-`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Fields of a SyncJob spec merged onto `template` for this item, with JSON merge patch
    /// semantics (RFC 7386): objects merge key by key, lists and scalars replace, `null`
    /// removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub overrides: Option<serde_json::Value>,
}

/// SyncJobs created from one template.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    doc = "SyncJobs created from one template.",
    version = "v1alpha1",
    kind = "BatchJob",
    plural = "batchjobs",
    singular = "batchjob",
    shortname = "bj",
    category = "ferry",
    namespaced,
    status = "BatchJobStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Jobs","type":"integer","jsonPath":".status.total"}"#,
    printcolumn = r#"{"name":"Running","type":"integer","jsonPath":".status.running"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BatchJobSpec {
    /// A SyncJob spec, possibly partial, shared by every child; each item's `overrides` complete
    /// it.
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub template: serde_json::Value,
    /// The children, one SyncJob each.
    #[schemars(length(min = 1, max = 500))]
    pub jobs: Vec<BatchItem>,
    /// At most this many children past `CONFIGURATION` at once; the others wait, in list
    /// order. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent: Option<u32>,
    /// Pause (true) or resume (false) every child.
    #[serde(default)]
    pub paused: bool,
}

/// One child of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchChildStatus {
    /// Item name.
    pub name: String,
    /// Name of the child SyncJob, if created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_job: Option<String>,
    /// Phase of the child SyncJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SyncJobPhase>,
    /// Why the child is waiting, invalid or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `lastError.code` of the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// Observed state of a BatchJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchJobStatus {
    /// Aggregated phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BatchPhase>,
    /// The spec generation the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of items.
    #[serde(default)]
    pub total: u32,
    /// Children in a running phase.
    #[serde(default)]
    pub running: u32,
    /// Children failed or invalid.
    #[serde(default)]
    pub failed: u32,
    /// Children per phase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u32>,
    /// One row per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<BatchChildStatus>,
}

/// Applies a JSON merge patch (RFC 7386) to `target`: objects merge key by key, `null` removes a
/// key, anything else replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(serde_json::Value::Null), value);
            }
        }
    }
}
