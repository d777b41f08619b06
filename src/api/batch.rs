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
    /// At most this many children rolling out at once: a child counts from its creation until
    /// its full transfer is complete or its incremental transfer has started (or it is
    /// released); a failed child keeps counting. Items beyond the limit wait and are created in
    /// list order. Unset: no limit.
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
    /// Children in a phase with a running worker.
    #[serde(default)]
    pub running: u32,
    /// Items invalid, and children failed or stalled.
    #[serde(default)]
    pub failed: u32,
    /// Children per phase, plus `WAITING` (items without a child yet) and `INVALID` (items whose
    /// merged spec is invalid or whose child name is taken).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u32>,
    /// One row per item, in list order.
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

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: changed keys with their new
/// value, removed keys as `null`, objects diffed key by key. `to` must hold no `null` (a merge
/// patch cannot set one); serialized specs skip unset fields, so they hold none.
pub fn merge_diff(from: &serde_json::Value, to: &serde_json::Value) -> serde_json::Value {
    match (from, to) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            let mut out = serde_json::Map::new();
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                out.insert(key.clone(), serde_json::Value::Null);
            }
            for (key, new) in b {
                match a.get(key) {
                    Some(old) if old == new => {}
                    Some(old) if old.is_object() && new.is_object() => {
                        out.insert(key.clone(), merge_diff(old, new));
                    }
                    _ => {
                        out.insert(key.clone(), new.clone());
                    }
                }
            }
            serde_json::Value::Object(out)
        }
        _ => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_diff_is_the_patch_that_merge_patch_applies() {
        let from = json!({"a": {"b": 1, "c": [1, 2]}, "gone": {"x": 1}, "same": 3, "k": {"n": 1}});
        let to = json!({"a": {"b": 2, "c": [1, 2]}, "same": 3, "k": "scalar", "new": {"y": 2}});
        let diff = merge_diff(&from, &to);
        assert_eq!(diff, json!({"a": {"b": 2}, "gone": null, "k": "scalar", "new": {"y": 2}}));
        let mut applied = from.clone();
        merge_patch(&mut applied, &diff);
        assert_eq!(applied, to);
        assert_eq!(merge_diff(&to, &to), json!({}));
    }
}
