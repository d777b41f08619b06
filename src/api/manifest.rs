//! Reading manifests as a user would `kubectl apply` them: a multi-document YAML stream of
//! Secrets and Ferry resources.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use super::{BatchJob, CompareTask, SyncJob};

/// One document of a manifest stream.
#[derive(Clone, Debug)]
pub enum Manifest {
    /// A Secret (passwords, client certificates the jobs refer to).
    Secret(Box<Secret>),
    /// A ConfigMap (CA bundles the jobs refer to).
    ConfigMap(Box<ConfigMap>),
    /// A SyncJob.
    SyncJob(Box<SyncJob>),
    /// A CompareTask.
    CompareTask(Box<CompareTask>),
    /// A BatchJob.
    BatchJob(Box<BatchJob>),
}

/// Why a manifest stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A document is not valid YAML or does not match its kind's schema.
    #[error("document {index}: {message}")]
    Invalid { index: usize, message: String },
    /// A document has a kind Ferry does not read.
    #[error("document {index}: {api_version}/{kind} is not a Secret, ConfigMap, SyncJob, CompareTask or BatchJob")]
    UnknownKind { index: usize, api_version: String, kind: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Parses every non-empty document of `text`. Documents are numbered from 1 in errors.
pub fn parse(text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| ManifestError::Invalid { index, message: e.to_string() })?;
        if value.is_null() {
            continue;
        }
        let meta: TypeMeta = serde_yaml::from_value(value.clone())
            .map_err(|e| ManifestError::Invalid { index, message: e.to_string() })?;
        let invalid = |e: serde_yaml::Error| ManifestError::Invalid { index, message: format!("{}: {e}", meta.kind) };
        let manifest = match (meta.api_version.as_str(), meta.kind.as_str()) {
            ("v1", "Secret") => Manifest::Secret(Box::new(serde_yaml::from_value(value).map_err(invalid)?)),
            ("v1", "ConfigMap") => Manifest::ConfigMap(Box::new(serde_yaml::from_value(value).map_err(invalid)?)),
            ("ferry.dev/v1alpha1", "SyncJob") => {
                Manifest::SyncJob(Box::new(serde_yaml::from_value(value).map_err(invalid)?))
            }
            ("ferry.dev/v1alpha1", "CompareTask") => {
                Manifest::CompareTask(Box::new(serde_yaml::from_value(value).map_err(invalid)?))
            }
            ("ferry.dev/v1alpha1", "BatchJob") => {
                Manifest::BatchJob(Box::new(serde_yaml::from_value(value).map_err(invalid)?))
            }
            _ => return Err(ManifestError::UnknownKind { index, api_version: meta.api_version, kind: meta.kind }),
        };
        out.push(manifest);
    }
    Ok(out)
}

/// The bytes of `key` in a Secret, from `data` or `stringData`, if present.
pub fn secret_bytes(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone().into_bytes());
    }
    secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
}

/// The bytes of `key` in a ConfigMap, from `data` or `binaryData`, if present.
pub fn config_map_bytes(map: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = map.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone().into_bytes());
    }
    map.binary_data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
}

/// The value of `key` in a Secret, from `data` or `stringData`, if present and UTF-8.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    secret.data.as_ref().and_then(|d| d.get(key)).and_then(|b| String::from_utf8(b.0.clone()).ok())
}
