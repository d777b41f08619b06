//! Reading manifests as a user would `kubectl apply` them: a multi-document YAML stream of
//! Secrets and Ferry resources.
//!
//! Reading is strict, as `kubectl apply --validate=strict` is: a field the kind does not have is
//! refused with its path and a suggestion ([`super::strict`]), never dropped in silence. A
//! resource's `status` is checked the same way and is otherwise the reader's to ignore (`ferry
//! run` starts from its own), so `kubectl get -o yaml` output reads as it is.

use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use super::strict::{self, Kind};
use super::validate::{FieldError, describe};
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
    /// Documents name fields their kind does not have: every such field of every document.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    UnknownFields(Vec<UnknownFields>),
}

/// The fields of one document that its kind does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFields {
    /// The document's position in the stream, from 1.
    pub index: usize,
    /// Its kind.
    pub kind: &'static str,
    /// Each unknown field, with its path and a suggestion.
    pub fields: Vec<FieldError>,
}

impl fmt::Display for UnknownFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}: {} {}", self.index, self.kind, describe(&self.fields))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Parses every non-empty document of `text`. Documents are numbered from 1 in errors. Unknown
/// fields are collected over the whole stream and reported together.
pub fn parse(text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| ManifestError::Invalid { index, message: e.to_string() })?;
        if value.is_null() {
            continue;
        }
        let meta: TypeMeta = serde_yaml::from_value(value.clone())
            .map_err(|e| ManifestError::Invalid { index, message: e.to_string() })?;
        let kind = match (meta.api_version.as_str(), meta.kind.as_str()) {
            ("v1", "Secret") => Kind::Secret,
            ("v1", "ConfigMap") => Kind::ConfigMap,
            ("ferry.dev/v1alpha1", "SyncJob") => Kind::SyncJob,
            ("ferry.dev/v1alpha1", "CompareTask") => Kind::CompareTask,
            ("ferry.dev/v1alpha1", "BatchJob") => Kind::BatchJob,
            _ => return Err(ManifestError::UnknownKind { index, api_version: meta.api_version, kind: meta.kind }),
        };
        let invalid = |e: &dyn fmt::Display| ManifestError::Invalid { index, message: format!("{}: {e}", kind.name()) };
        let json = serde_json::to_value(&value).map_err(|e| invalid(&e))?;
        let fields = strict::check_document(kind, &json);
        if !fields.is_empty() {
            unknown.push(UnknownFields { index, kind: kind.name(), fields });
            continue;
        }
        let manifest = match kind {
            Kind::Secret => Manifest::Secret(Box::new(serde_yaml::from_value(value).map_err(|e| invalid(&e))?)),
            Kind::ConfigMap => Manifest::ConfigMap(Box::new(serde_yaml::from_value(value).map_err(|e| invalid(&e))?)),
            Kind::SyncJob => Manifest::SyncJob(Box::new(serde_yaml::from_value(value).map_err(|e| invalid(&e))?)),
            Kind::CompareTask => {
                Manifest::CompareTask(Box::new(serde_yaml::from_value(value).map_err(|e| invalid(&e))?))
            }
            Kind::BatchJob => Manifest::BatchJob(Box::new(serde_yaml::from_value(value).map_err(|e| invalid(&e))?)),
        };
        out.push(manifest);
    }
    if !unknown.is_empty() {
        return Err(ManifestError::UnknownFields(unknown));
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
