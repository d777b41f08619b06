//! Strict field checking: every key of a document must be a field its schema knows, as
//! kube-apiserver's strict field validation (`kubectl apply --validate=strict`) decides it.
//!
//! A typo such as `policy: {ddl: {replay: true}}` (the field is `enabled`) would otherwise be
//! dropped silently by deserialization, and the user would believe DDL replay is on. The check
//! walks a document alongside an OpenAPI v3 schema — for Ferry's resources the one the CRD
//! carries, generated from the Rust types — and reports every unknown field with its full path
//! and a suggestion. It checks field names only: types, enums and ranges are left to
//! deserialization and [`super::validate`].
//!
//! The rules are those of the API server's pruning of structural schemas:
//! - an object's keys must be in `properties`, unless the schema allows more
//!   (`additionalProperties`, `x-kubernetes-preserve-unknown-fields`); a schema that says nothing
//!   about an object's shape (no `type: object`, no `properties`) allows anything;
//! - `properties` of `allOf`/`anyOf`/`oneOf` branches are known too;
//! - array elements are checked against `items`;
//! - at the top of a document `apiVersion`, `kind` and `metadata` are known; `metadata` is checked
//!   loosely (its keys against ObjectMeta's fields, not deeper); `status` is checked like `spec`
//!   when the schema has one (what the reader does with it is the reader's business: `ferry run`
//!   ignores it).
//!
//! This module only reports; refusing is up to the callers (manifest parsing, the worker,
//! `ferry convert`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};

use super::validate::FieldError;
use super::{BatchJob, CompareTask, SyncJob};

/// The kinds of document Ferry reads and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `ferry.dev/v1alpha1` SyncJob.
    SyncJob,
    /// A `ferry.dev/v1alpha1` CompareTask.
    CompareTask,
    /// A `ferry.dev/v1alpha1` BatchJob.
    BatchJob,
    /// A `v1` Secret.
    Secret,
    /// A `v1` ConfigMap.
    ConfigMap,
}

impl Kind {
    /// The kind as a manifest spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SyncJob => "SyncJob",
            Kind::CompareTask => "CompareTask",
            Kind::BatchJob => "BatchJob",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }

    /// The schema of a whole document of this kind.
    fn schema(self) -> &'static Value {
        static SYNC_JOB: LazyLock<Value> = LazyLock::new(|| document_schema(crd_schema::<SyncJob>()));
        static COMPARE_TASK: LazyLock<Value> = LazyLock::new(|| document_schema(crd_schema::<CompareTask>()));
        static BATCH_JOB: LazyLock<Value> = LazyLock::new(|| document_schema(crd_schema::<BatchJob>()));
        static SECRET: LazyLock<Value> = LazyLock::new(|| document_schema(type_schema::<Secret>()));
        static CONFIG_MAP: LazyLock<Value> = LazyLock::new(|| document_schema(type_schema::<ConfigMap>()));
        match self {
            Kind::SyncJob => &SYNC_JOB,
            Kind::CompareTask => &COMPARE_TASK,
            Kind::BatchJob => &BATCH_JOB,
            Kind::Secret => &SECRET,
            Kind::ConfigMap => &CONFIG_MAP,
        }
    }
}

/// Every unknown field of a whole document of `kind` (apiVersion, kind, metadata, spec, …),
/// with paths from the document's top (`spec.policy.ddl.replay`).
pub fn check_document(kind: Kind, document: &Value) -> Vec<FieldError> {
    unknown_fields(document, kind.schema(), "")
}

/// Every unknown field of the `spec` of a resource of `kind`, with paths starting at `spec`.
pub fn check_spec(kind: Kind, spec: &Value) -> Vec<FieldError> {
    unknown_fields(spec, &kind.schema()["properties"]["spec"], "spec")
}

/// Every unknown field of `value` against the OpenAPI v3 `schema`; paths start at `path`
/// (empty for a document's top).
pub fn unknown_fields(value: &Value, schema: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk(value, schema, path, &mut out);
    out
}

/// The `openAPIV3Schema` of a CRD generated from the Rust type; `Null` (no check) if it has none.
fn crd_schema<K: CustomResourceExt>() -> Value {
    K::crd()
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

/// The schema k8s-openapi gives a built-in type.
fn type_schema<T: schemars::JsonSchema>() -> Value {
    schemars::SchemaGenerator::default().into_root_schema_for::<T>().to_value()
}

/// A resource's schema completed as the API server completes it: `apiVersion` and `kind` are
/// always known, and `metadata` is checked loosely against ObjectMeta's fields.
fn document_schema(mut schema: Value) -> Value {
    static METADATA: LazyLock<Value> = LazyLock::new(|| {
        let meta = type_schema::<ObjectMeta>();
        let fields: Map<String, Value> = meta["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, field)| {
                // Any value: only the keys of `metadata` itself are checked.
                let description = field.get("description").cloned().unwrap_or(Value::Null);
                (name.clone(), json!({"description": description}))
            })
            .collect();
        json!({"type": "object", "properties": fields})
    });
    let Some(root) = schema.as_object_mut() else { return schema };
    let properties = root.entry("properties").or_insert_with(|| json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert("apiVersion".into(), json!({"type": "string"}));
        properties.insert("kind".into(), json!({"type": "string"}));
        properties.insert("metadata".into(), METADATA.clone());
    }
    schema
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    // A schema that is `true`, missing or not an object says nothing: anything goes.
    let Some(schema) = schema.as_object() else { return };
    match value {
        Value::Object(map) => walk_object(map, schema, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// What an object schema allows besides its `properties`.
enum Additional<'a> {
    /// Nothing: other keys are unknown.
    Nothing,
    /// Anything, unchecked.
    Anything,
    /// Any key, each value checked against this schema (a map).
    Values(&'a Value),
}

/// The fields an object schema knows, its own and those of its `allOf`/`anyOf`/`oneOf` branches.
struct Fields<'a> {
    known: BTreeMap<&'a str, &'a Value>,
    additional: Additional<'a>,
}

impl<'a> Fields<'a> {
    fn of(schema: &'a Map<String, Value>) -> Fields<'a> {
        let mut known = BTreeMap::new();
        let mut additional = None;
        let mut shaped = false;
        collect(schema, &mut known, &mut additional, &mut shaped);
        if schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true)) {
            for name in ["apiVersion", "kind", "metadata"] {
                known.entry(name).or_insert(&ANYTHING);
            }
        }
        let is_object = match schema.get("type") {
            Some(Value::String(t)) => t == "object",
            Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
            _ => false,
        };
        let additional = match additional {
            Some(a) => a,
            None if is_object || shaped => Additional::Nothing,
            None => Additional::Anything,
        };
        Fields { known, additional }
    }
}

/// A field schema that allows any value.
static ANYTHING: Value = Value::Bool(true);

fn collect<'a>(
    schema: &'a Map<String, Value>,
    known: &mut BTreeMap<&'a str, &'a Value>,
    additional: &mut Option<Additional<'a>>,
    shaped: &mut bool,
) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        *shaped = true;
        for (name, field) in properties {
            known.entry(name.as_str()).or_insert(field);
        }
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        *additional = Some(Additional::Anything);
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(true)) => *additional = Some(Additional::Anything),
        Some(s @ Value::Object(_)) if !matches!(additional, Some(Additional::Anything)) => {
            *additional = Some(Additional::Values(s));
        }
        _ => {}
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for branch in schema.get(combinator).and_then(Value::as_array).into_iter().flatten() {
            if let Some(branch) = branch.as_object() {
                collect(branch, known, additional, shaped);
            }
        }
    }
}

fn walk_object(map: &Map<String, Value>, schema: &Map<String, Value>, path: &str, out: &mut Vec<FieldError>) {
    let fields = Fields::of(schema);
    for (key, value) in map {
        let at = child(path, key);
        if let Some(field) = fields.known.get(key.as_str()) {
            walk(value, field, &at, out);
            continue;
        }
        match fields.additional {
            Additional::Anything => {}
            Additional::Values(s) => walk(value, s, &at, out),
            Additional::Nothing => out.push(FieldError { path: at, message: unknown_message(key, value, &fields) }),
        }
    }
}

/// `unknown field; did you mean X?`, or the fields known where it stands.
fn unknown_message(key: &str, value: &Value, fields: &Fields<'_>) -> String {
    if let Some(s) = suggestion(key, value, &fields.known) {
        return format!("unknown field; did you mean {s}?");
    }
    if fields.known.is_empty() {
        return "unknown field; no fields are allowed here".into();
    }
    let names: Vec<&str> = fields.known.keys().copied().collect();
    format!("unknown field; known fields here: {}", names.join(", "))
}

/// The known field a user most likely meant by `key`: the closest by edit distance when it is
/// close (case, `_` and `-` ignored: `mapped_name` is `mappedName`), or else the one field whose
/// description begins with the word `key` and whose type takes `value` (a field is often named
/// after what it does: `replay` for `enabled`, documented "Replay DDL …").
pub fn suggestion<'a>(key: &str, value: &Value, known: &BTreeMap<&'a str, &'a Value>) -> Option<&'a str> {
    let wanted = normalize(key);
    let limit = (wanted.chars().count() / 3).max(1);
    let closest = known
        .keys()
        .map(|name| (edit_distance(&wanted, &normalize(name)), *name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    if let Some((_, name)) = closest {
        return Some(name);
    }
    if wanted.chars().count() < 4 {
        return None;
    }
    let mut described = known.iter().filter(|(_, field)| {
        let first = field
            .get("description")
            .and_then(Value::as_str)
            .and_then(|d| d.split(|c: char| !c.is_alphanumeric()).find(|w| !w.is_empty()))
            .map(str::to_lowercase);
        first.is_some_and(|w| w.starts_with(&wanted)) && takes(field, value)
    });
    match (described.next(), described.next()) {
        (Some((name, _)), None) => Some(name),
        _ => None,
    }
}

/// Whether a field of schema `field` could hold `value` (by JSON type only).
fn takes(field: &Value, value: &Value) -> bool {
    if field.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return matches!(value, Value::String(_) | Value::Number(_) | Value::Null);
    }
    let accepts = |t: &str| match value {
        Value::Null => true,
        Value::Bool(_) => t == "boolean",
        Value::Number(n) => t == "number" || (t == "integer" && (n.is_i64() || n.is_u64())),
        Value::String(_) => t == "string",
        Value::Array(_) => t == "array",
        Value::Object(_) => t == "object",
    };
    match field.get("type") {
        Some(Value::String(t)) => accepts(t),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).any(accepts),
        _ => true,
    }
}

fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Edit distance between two strings, by characters: insertions, deletions, substitutions and
/// swaps of two neighbours (`hots` → `host`) each count one (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows of the table: two back, one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::validate::describe;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    const JOB: &str = r#"
apiVersion: ferry.dev/v1alpha1
kind: SyncJob
metadata: {name: orders, namespace: shop, labels: {team: a}, annotations: {note: b}}
spec:
  taskType: FULL_INCR_TRANS
  source: {engine: postgresql, host: db, port: 5432, database: shop, user: ferry,
           passwordSecretRef: {name: pg, key: source}}
  target: {engine: postgresql, host: db2, port: 5432, database: shop, user: ferry,
           passwordSecretRef: {name: pg, key: target}}
  objects:
    scope: table
    databases:
      - name: shop
        schemas:
          - name: public
            tables:
              - {name: orders, filter: "id > 1"}
              - {name: items, columns: {exclude: [note], rename: {sku: code}}}
  policy: {conflict: overwrite, ddl: {enabled: true, kinds: [createTable]}}
  worker: {nodeSelector: {disk: ssd, "topology.kubernetes.io/zone": a}}
"#;

    #[test]
    fn a_document_with_only_known_fields_passes() {
        assert_eq!(check_document(Kind::SyncJob, &yaml(JOB)), vec![]);
    }

    #[test]
    fn a_misnamed_field_is_named_with_its_path_and_the_field_meant() {
        let mut doc = yaml(JOB);
        doc["spec"]["policy"]["ddl"] = json!({"replay": true});
        let errors = check_document(Kind::SyncJob, &doc);
        assert_eq!(describe(&errors), "spec.policy.ddl.replay: unknown field; did you mean enabled?");
    }

    #[test]
    fn fields_in_nested_arrays_are_checked_with_their_indexes() {
        let mut doc = yaml(JOB);
        doc["spec"]["objects"]["databases"][0]["tables"] =
            json!([{"name": "a"}, {"name": "b", "colums": {"exclude": ["x"]}}]);
        let errors = check_document(Kind::SyncJob, &doc);
        assert_eq!(
            describe(&errors),
            "spec.objects.databases[0].tables[1].colums: unknown field; did you mean columns?"
        );
        doc["spec"]["objects"]["databases"][0]["schemas"][0]["tables"][1]["columns"]["exlcude"] = json!(["y"]);
        let errors = check_document(Kind::SyncJob, &doc);
        assert!(
            paths(&errors).contains(&"spec.objects.databases[0].schemas[0].tables[1].columns.exlcude"),
            "{errors:?}"
        );
    }

    #[test]
    fn maps_take_any_key_but_their_values_are_still_checked() {
        let mut doc = yaml(JOB);
        doc["spec"]["worker"]["nodeSelector"]["anything.example.com/at-all"] = json!("yes");
        doc["spec"]["objects"]["databases"][0]["schemas"][0]["tables"][1]["columns"]["rename"]["whatever"] = json!("x");
        assert_eq!(check_document(Kind::SyncJob, &doc), vec![]);
        let schema = json!({"type": "object", "additionalProperties": {"type": "object", "properties": {"a": {}}}});
        let errors = unknown_fields(&json!({"k1": {"a": 1}, "k2": {"b": 2}}), &schema, "m");
        assert_eq!(paths(&errors), ["m.k2.b"]);
    }

    #[test]
    fn preserved_unknown_fields_are_not_checked() {
        let doc = yaml(
            "apiVersion: ferry.dev/v1alpha1\nkind: BatchJob\nmetadata: {name: b}\n\
             spec: {template: {anything: 1}, jobs: [{name: a, overrides: {whatever: {deep: true}}}]}\n",
        );
        assert_eq!(check_document(Kind::BatchJob, &doc), vec![]);
        let doc = yaml("apiVersion: ferry.dev/v1alpha1\nkind: BatchJob\nspec: {jobs: [{name: a, overides: {}}]}\n");
        assert_eq!(
            describe(&check_document(Kind::BatchJob, &doc)),
            "spec.jobs[0].overides: unknown field; did you mean overrides?"
        );
    }

    #[test]
    fn every_unknown_field_is_reported_not_only_the_first() {
        let mut doc = yaml(JOB);
        doc["spec"]["policy"]["ddl"]["replay"] = json!(true);
        doc["spec"]["sorce"] = json!({});
        doc["spec"]["source"]["hots"] = json!("db");
        doc["metadata"]["lables"] = json!({});
        doc["spec"]["zzz"] = json!(1);
        let errors = check_document(Kind::SyncJob, &doc);
        let mut got = paths(&errors);
        got.sort_unstable();
        assert_eq!(
            got,
            ["metadata.lables", "spec.policy.ddl.replay", "spec.sorce", "spec.source.hots", "spec.zzz"],
            "{errors:#?}"
        );
        let message = |p: &str| errors.iter().find(|e| e.path == p).unwrap().message.clone();
        assert_eq!(message("metadata.lables"), "unknown field; did you mean labels?");
        assert_eq!(message("spec.sorce"), "unknown field; did you mean source?");
        assert_eq!(message("spec.source.hots"), "unknown field; did you mean host?");
        let far = message("spec.zzz");
        assert!(far.starts_with("unknown field; known fields here: ") && far.contains("taskType"), "{far}");
    }

    #[test]
    fn top_level_fields_and_metadata_are_checked() {
        let doc = yaml("apiVersion: ferry.dev/v1alpha1\nkind: SyncJob\nmetdata: {name: x}\nspce: {}\n");
        let errors = check_document(Kind::SyncJob, &doc);
        assert_eq!(
            describe(&errors),
            "metdata: unknown field; did you mean metadata?; spce: unknown field; did you mean spec?"
        );
        // metadata is checked loosely: its own keys only.
        let doc = yaml(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, labels: {a: b}, ownerReferences: [{anything: 1}]}\n",
        );
        assert_eq!(check_document(Kind::Secret, &doc), vec![]);
    }

    #[test]
    fn status_is_checked_like_spec() {
        let doc = yaml(
            "apiVersion: ferry.dev/v1alpha1\nkind: SyncJob\nspec: {}\nstatus: {phase: CREATING, phaze: CREATING}\n",
        );
        assert_eq!(paths(&check_document(Kind::SyncJob, &doc)), ["status.phaze"]);
    }

    #[test]
    fn secrets_and_config_maps_know_their_top_level_fields() {
        let secret = yaml(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: Opaque\nimmutable: true\n\
             data: {a: YQ==}\nstringData: {any-key: v}\n",
        );
        assert_eq!(check_document(Kind::Secret, &secret), vec![]);
        let secret = yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringdata: {a: b}\nbinaryData: {}\n");
        let errors = check_document(Kind::Secret, &secret);
        assert_eq!(paths(&errors), ["binaryData", "stringdata"]);
        assert_eq!(errors[1].message, "unknown field; did you mean stringData?");
        let map = yaml(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata: {a: b}\nbinaryData: {c: YQ==}\nimmutable: false\n",
        );
        assert_eq!(check_document(Kind::ConfigMap, &map), vec![]);
        let map = yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\nstringData: {a: b}\n");
        assert_eq!(paths(&check_document(Kind::ConfigMap, &map)), ["stringData"]);
    }

    #[test]
    fn a_spec_alone_is_checked_with_paths_from_spec() {
        let errors = check_spec(Kind::CompareTask, &json!({"type": "rows", "syncJobRef": {"nme": "x"}}));
        assert_eq!(describe(&errors), "spec.syncJobRef.nme: unknown field; did you mean name?");
    }

    #[test]
    fn every_kind_has_a_schema_with_a_spec() {
        for kind in [Kind::SyncJob, Kind::CompareTask, Kind::BatchJob] {
            assert!(kind.schema()["properties"]["spec"]["properties"].is_object(), "{kind:?}");
        }
        for kind in [Kind::Secret, Kind::ConfigMap] {
            assert!(kind.schema()["properties"]["data"].is_object(), "{kind:?}");
        }
    }

    #[test]
    fn resources_as_ferry_writes_them_have_only_known_fields() {
        let mut job = SyncJob::new("orders", crate::api::SyncJobSpec::test().lag_alarm(60).retries(2));
        job.status =
            Some(crate::api::SyncJobStatus { phase: Some(crate::api::SyncJobPhase::Creating), ..Default::default() });
        assert_eq!(check_document(Kind::SyncJob, &serde_json::to_value(&job).unwrap()), vec![]);
        let batch = BatchJob::new("b", crate::api::BatchJobSpec::test(&["a", "b"], Some(1)));
        assert_eq!(check_document(Kind::BatchJob, &serde_json::to_value(&batch).unwrap()), vec![]);
    }

    #[test]
    fn combinators_contribute_their_fields() {
        let schema = json!({"type": "object", "properties": {"a": {}},
                            "oneOf": [{"properties": {"b": {"type": "object", "properties": {"c": {}}}}}]});
        assert_eq!(unknown_fields(&json!({"a": 1, "b": {"c": 1}}), &schema, ""), vec![]);
        assert_eq!(paths(&unknown_fields(&json!({"b": {"d": 1}}), &schema, "")), ["b.d"]);
    }

    #[test]
    fn a_schema_that_says_nothing_of_an_object_allows_anything() {
        assert_eq!(unknown_fields(&json!({"x": {"y": 1}}), &json!({"description": "free"}), ""), vec![]);
        let empty = json!({"type": "object"});
        assert_eq!(
            describe(&unknown_fields(&json!({"x": 1}), &empty, "e")),
            "e.x: unknown field; no fields are allowed here"
        );
    }

    #[test]
    fn suggestions_come_from_spelling_or_from_what_a_field_does() {
        let known: BTreeMap<&str, &Value> = BTreeMap::new();
        assert_eq!(suggestion("x", &json!(1), &known), None);
        let (a, b, c) = (
            json!({"type": "boolean", "description": "Replay DDL on the target."}),
            json!({"type": "boolean", "description": "Never replay DROP DATABASE."}),
            json!({"type": "string", "description": "Mapped name."}),
        );
        let known: BTreeMap<&str, &Value> = [("enabled", &a), ("skipDropDatabase", &b), ("mappedName", &c)].into();
        assert_eq!(suggestion("mapped_name", &json!("x"), &known), Some("mappedName"));
        assert_eq!(suggestion("MappedNme", &json!("x"), &known), Some("mappedName"));
        assert_eq!(suggestion("replay", &json!(true), &known), Some("enabled"));
        assert_eq!(suggestion("replay", &json!("yes"), &known), None, "a string does not go into a boolean");
        assert_eq!(suggestion("frobnicate", &json!(true), &known), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("colums", "columns"), 1);
        assert_eq!(edit_distance("lables", "labels"), 1);
        assert_eq!(edit_distance("hots", "host"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
