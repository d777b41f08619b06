//! The generated CRDs: `ferry crd` matches `crds/`, every field is documented for
//! `kubectl explain`, and the names, enums and printer columns are the ones users rely on.

use std::path::Path;
use std::process::Command;

use ferry::api::crd;
use serde_json::Value;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

#[test]
fn ferry_crd_prints_exactly_what_crds_holds() {
    let out = ferry().arg("crd").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let mut stored = String::new();
    for (file, _) in crd::all() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds").join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo run -- crd --out-dir crds`", path.display()));
        stored.push_str("---\n");
        stored.push_str(&text);
    }
    assert!(printed == stored, "crds/ is stale: run `cargo run -- crd --out-dir crds` and commit the result");
}

#[test]
fn ferry_crd_out_dir_writes_one_file_per_crd() {
    let dir = tempfile::tempdir().unwrap();
    let status = ferry().args(["crd", "--out-dir"]).arg(dir.path()).status().unwrap();
    assert!(status.success());
    for (file, def) in crd::all() {
        let written = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert_eq!(written, crd::to_yaml(&def).unwrap());
    }
}

/// Walks a schema and collects the paths of properties without a description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let p = format!("{path}.{name}");
            if prop.get("description").and_then(Value::as_str).is_none_or(|d| d.trim().is_empty()) {
                out.push(p.clone());
            }
            undocumented(prop, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(extra, &format!("{path}{{}}"), out);
    }
}

fn schema_of(def: &impl serde::Serialize) -> Value {
    let v = serde_json::to_value(def).unwrap();
    v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn every_property_of_every_crd_has_a_description() {
    for (file, def) in crd::all() {
        let schema = schema_of(&def);
        let mut missing = Vec::new();
        // apiVersion, kind and metadata are the API server's own; spec and status are ours.
        for top in ["spec", "status"] {
            let s = &schema["properties"][top];
            assert!(s.get("description").is_some(), "{file}: {top} has no description");
            undocumented(s, top, &mut missing);
        }
        assert!(missing.is_empty(), "{file}: properties without a description: {missing:#?}");
    }
}

#[test]
fn the_syncjob_status_phase_is_an_enum_of_exactly_the_reference_spellings() {
    let schema = schema_of(&crd::all()[0].1);
    let phases: Vec<&str> = schema["properties"]["status"]["properties"]["phase"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        phases,
        [
            "CREATING",
            "CREATE_FAILED",
            "CONFIGURATION",
            "WAITING_FOR_START",
            "STARTJOBING",
            "START_JOB_FAILED",
            "FULL_TRANSFER_STARTED",
            "FULL_TRANSFER_FAILED",
            "FULL_TRANSFER_COMPLETE",
            "INCRE_TRANSFER_STARTED",
            "INCRE_TRANSFER_FAILED",
            "PAUSING",
            "CHANGE_JOB_STARTED",
            "CHANGE_JOB_FAILED",
            "RELEASE_RESOURCE_STARTED",
            "RELEASE_RESOURCE_COMPLETE",
            "RELEASE_RESOURCE_FAILED",
        ]
    );
}

#[test]
fn enums_are_real_enums_in_the_schema() {
    let sj = schema_of(&crd::all()[0].1);
    let spec = &sj["properties"]["spec"]["properties"];
    let enum_of = |v: &Value| -> Vec<String> {
        // `null` is listed where the field is optional (`nullable: true`); the values are the rest.
        v["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {v}"))
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(enum_of(&spec["source"]["properties"]["engine"]), ["mysql", "mariadb", "postgresql"]);
    assert_eq!(enum_of(&spec["taskType"]), ["FULL_TRANS", "INCR_TRANS", "FULL_INCR_TRANS"]);
    assert_eq!(enum_of(&spec["jobType"]), ["migration", "sync", "disasterRecovery"]);
    assert_eq!(enum_of(&spec["policy"]["properties"]["conflict"]), ["ignore", "overwrite", "stop"]);
    assert_eq!(enum_of(&spec["nodeType"]), ["micro", "small", "medium", "high"]);
    let ct = schema_of(&crd::all()[1].1);
    assert_eq!(enum_of(&ct["properties"]["spec"]["properties"]["type"]), ["object", "rows", "content"]);
    assert_eq!(
        enum_of(&ct["properties"]["status"]["properties"]["phase"]),
        ["WAITING_FOR_RUNNING", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED", "TIMEOUT_INTERRUPT"]
    );
}

/// `text` with every run of white space (line breaks of the doc comments included) as one space.
fn words(text: &Value) -> String {
    text.as_str().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn kubectl_explain_names_the_engine_pairs_the_pair_table_holds() {
    let pairs = ferry::engine::pairs::describe();
    for (kind, def) in crd::all().iter().take(2) {
        let spec = &schema_of(def)["properties"]["spec"]["properties"];
        for side in ["source", "target"] {
            let doc = words(&spec[side]["properties"]["engine"]["description"]);
            assert!(doc.contains(&format!("A SyncJob transfers {pairs} ")), "{kind} {side}.engine: {doc}");
            assert!(!doc.to_lowercase().contains("redis"), "{kind} {side}.engine: {doc}");
        }
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let readme = words(&Value::String(readme));
    assert!(readme.contains(&format!("Engine pairs: {pairs}")), "README.md does not list the pairs as {pairs}");
}

#[test]
fn the_batch_rows_default_the_crd_states_is_the_one_the_engines_use() {
    let sj = schema_of(&crd::all()[0].1);
    let doc = words(&sj["properties"]["spec"]["properties"]["tuning"]["properties"]["batchRows"]["description"]);
    assert!(doc.contains(&format!("Default {}.", ferry::engine::snapshot::DEFAULT_BATCH_ROWS)), "{doc}");
}

#[test]
fn the_api_server_enforces_immutable_engines_and_at_most_three_speed_windows() {
    let sj = schema_of(&crd::all()[0].1);
    let spec = &sj["properties"]["spec"]["properties"];
    for side in ["source", "target"] {
        let rules = &spec[side]["properties"]["engine"]["x-kubernetes-validations"];
        assert_eq!(rules[0]["rule"], "self == oldSelf", "{side}.engine");
    }
    assert_eq!(spec["speedLimits"]["x-kubernetes-validations"][0]["rule"], "size(self) <= 3");
    assert_eq!(spec["taskType"]["x-kubernetes-validations"][0]["rule"], "self == oldSelf");
    assert_eq!(spec["expiredDays"]["minimum"], 14.0);
    assert_eq!(spec["expiredDays"]["maximum"], 100.0);
    assert_eq!(spec["expiredDays"]["default"], 14);
    assert_eq!(spec["slotRetentionMinutes"]["minimum"], 1.0);
    assert_eq!(spec["slotRetentionMinutes"]["maximum"], 144000.0);
    assert_eq!(spec["slotRetentionMinutes"]["default"], 1440);
    assert_eq!(spec["source"]["properties"]["port"]["minimum"], 1.0);
    assert_eq!(spec["source"]["properties"]["port"]["maximum"], 65535.0);
}

#[test]
fn printer_columns_short_names_and_category_are_set() {
    let expect = [
        ("SyncJob", "sj", vec!["Phase", "Type", "Source", "Target", "Progress", "Lag", "Age"]),
        ("CompareTask", "ct", vec!["Phase", "Result", "Type", "Age"]),
        ("BatchJob", "bj", vec!["Phase", "Jobs", "Running", "Failed", "Age"]),
    ];
    for ((_, def), (kind, short, columns)) in crd::all().into_iter().zip(expect) {
        assert_eq!(def.spec.names.kind, kind);
        assert_eq!(def.spec.names.short_names.as_deref(), Some(&[short.to_owned()][..]));
        assert_eq!(def.spec.names.categories.as_deref(), Some(&["ferry".to_owned()][..]));
        assert_eq!(def.spec.group, "ferry.dev");
        assert_eq!(def.spec.scope, "Namespaced");
        let v = &def.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{kind} has a status subresource");
        let names: Vec<&str> = v.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, columns, "{kind}");
    }
}
