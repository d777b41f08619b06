//! Hand-written schema fragments for fields whose Rust type says too little.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form object kept as written (`x-kubernetes-preserve-unknown-fields`).
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
