//! `ferry convert drs`: the seed's batch-create request and its MySQL and PostgreSQL variants.
//! Supported engines give manifests `validate()` accepts; every field without a counterpart is
//! reported; passwords never come through; an unsupported engine is an error naming it.

use std::process::Command;

use ferry::api::SyncJobSpec;
use ferry::api::batch::BatchJob;
use ferry::api::validate::Validate;
use serde_json::{Value, json};

fn seed() -> Value {
    serde_json::from_str(include_str!("fixtures/drs-batch-create.json")).unwrap()
}

/// The seed's job turned into `engine` → `engine` with reachable addresses.
fn variant(engine: &str, port: u64) -> Value {
    let mut v = seed();
    let job = &mut v["jobs"][0];
    job["base_info"]["engine_type"] = json!(engine);
    job["source_endpoint"][0]["db_type"] = json!(engine);
    job["source_endpoint"][0]["endpoint"]["db_port"] = json!(port.to_string());
    job["target_endpoint"][0]["db_type"] = json!(engine);
    job["target_endpoint"][0]["endpoint"]["ip"] = json!("10.0.0.9");
    job["target_endpoint"][0]["endpoint"]["db_port"] = json!(port.to_string());
    let mut second = job.clone();
    second["base_info"]["name"] = json!("DRS-5678");
    second["source_endpoint"][0]["endpoint"]["ip"] = json!("10.154.217.240");
    v["jobs"].as_array_mut().unwrap().push(second);
    v
}

fn child_spec(batch: &BatchJob, i: usize) -> SyncJobSpec {
    batch.spec.child_spec(&batch.spec.jobs[i]).unwrap()
}

#[test]
fn the_seed_request_names_its_unsupported_engine() {
    let err = ferry::convert::drs(&seed().to_string(), "seed", None).unwrap_err().to_string();
    assert!(err.contains("oracle-to-gaussdbv5") && err.contains("DRS-1234"), "{err}");
}

#[test]
fn a_mysql_batch_converts_into_a_valid_batch_job_with_every_dropped_field_reported() {
    let c = ferry::convert::drs(&variant("mysql", 3306).to_string(), "Orders Batch", Some("shop")).unwrap();
    assert_eq!(c.batch.metadata.name.as_deref(), Some("orders-batch"));
    assert_eq!(c.batch.spec.validate_named("orders-batch"), vec![]);
    let names: Vec<&str> = c.batch.spec.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["drs-1234", "drs-5678"]);
    let spec = child_spec(&c.batch, 0);
    assert_eq!(spec.validate(), vec![]);
    assert_eq!(spec.source.host, "10.154.217.239");
    assert_eq!(spec.source.port, 3306);
    assert_eq!(spec.expired_days, 14);
    assert_eq!(spec.node_type, ferry::api::NodeType::Medium);
    assert_eq!(spec.alarm.as_ref().and_then(|a| a.delay_seconds), Some(60));
    assert_eq!(spec.speed_limits[0].mb_per_second, 10);
    assert_eq!(spec.objects.target_database.as_deref(), Some("target_db_name"));
    assert_eq!(spec.objects.databases[0].tables.len(), 2);
    assert_eq!(spec.source.password_secret_ref.as_ref().unwrap().key, "drs-1234-source-password");
    // What both items share sits in the template; endpoints (own addresses, own Secret keys) do not.
    assert_eq!(c.batch.spec.template["taskType"], "FULL_INCR_TRANS");
    assert_eq!(c.batch.spec.template["nodeType"], "medium");
    assert!(c.batch.spec.template.get("source").is_none());
    for field in [
        "base_info.net_type",
        "base_info.charging_mode",
        "base_info.enterprise_project_id",
        "base_info.tags",
        "base_info.job_direction",
        "source_endpoint[0].endpoint_type",
        "source_endpoint[0].endpoint.db_password",
        "target_endpoint[0].cloud",
        "target_endpoint[0].vpc",
        "alarm_notify.topic_urn",
        "alarm_notify.alarm_to_user",
        "target_root_db.db_encoding",
    ] {
        assert!(c.dropped.iter().any(|d| d.contains(field)), "{field} not reported in {:#?}", c.dropped);
    }
    let yaml = c.to_yaml().unwrap();
    assert!(!yaml.contains("******"), "a password from the request never reaches the manifests");
    let secret = &c.secret["stringData"];
    assert_eq!(secret.as_object().unwrap().len(), 4);
}

#[test]
fn a_postgresql_batch_puts_tables_under_the_public_schema() {
    let c = ferry::convert::drs(&variant("postgresql", 5432).to_string(), "pg", None).unwrap();
    let spec = child_spec(&c.batch, 1);
    assert_eq!(spec.validate(), vec![]);
    assert_eq!(spec.source.engine, ferry::api::Engine::Postgresql);
    assert_eq!(spec.objects.databases[0].schemas[0].name, "public");
    assert_eq!(spec.source.host, "10.154.217.240");
}

#[test]
fn the_command_prints_manifests_and_lists_dropped_fields_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.json");
    std::fs::write(&path, variant("mysql", 3306).to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["convert", "drs"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let docs = ferry::api::manifest::parse(&stdout).unwrap();
    assert_eq!(docs.len(), 2, "a Secret and a BatchJob");
    assert!(String::from_utf8_lossy(&out.stderr).contains("dropped: jobs[0].base_info.charging_mode"));
    std::fs::write(&path, seed().to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["convert", "drs"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_field_the_request_cannot_have_is_refused_with_its_path() {
    let mut v = variant("mysql", 3306);
    v["jobs"][0]["policy_config"]["ddl_tran"] = json!(true);
    v["jobs"][1]["db_object"]["object_info"]["source_db1"]["tables"]["source_tb1"]["filter_condition"] =
        json!(["id > 1"]);
    v["jobs"][0]["qos"] = json!({});
    let err = ferry::convert::drs(&v.to_string(), "x", None).unwrap_err().to_string();
    for part in [
        "DRS request ",
        "jobs[0].policy_config.ddl_tran: unknown field; did you mean ddl_trans?",
        "jobs[1].db_object.object_info.source_db1.tables.source_tb1.filter_condition: unknown field; did you mean filter_conditions?",
        "jobs[0].qos: unknown field; known fields here: alarm_notify, base_info, db_object, ",
    ] {
        assert!(err.contains(part), "{part} not in {err}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["convert", "drs"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no manifests for a refused request");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CONVERT: DRS request jobs[0].policy_config.ddl_tran: unknown field; did you mean ddl_trans?"),
        "{stderr}"
    );
}

#[test]
fn an_engine_pair_ferry_does_not_transfer_is_refused_with_the_pairs_it_does() {
    use ferry::api::{Engine, TaskType};
    use ferry::engine::pairs;
    let mut v = variant("postgresql", 5432);
    v["jobs"][0]["base_info"]["engine_type"] = json!("postgresql-to-mysql");
    let err = ferry::convert::drs(&v.to_string(), "x", None).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "jobs[0] (DRS-1234): engine_type \"postgresql-to-mysql\": spec.target.engine: postgresql → mysql \
             transfers do not exist; Ferry transfers {}",
            pairs::describe()
        )
    );
    // A single engine name with the endpoints' db_type naming the sides.
    let mut v = variant("postgresql", 5432);
    v["jobs"][0]["target_endpoint"][0]["db_type"] = json!("mariadb");
    let err = ferry::convert::drs(&v.to_string(), "x", None).unwrap_err().to_string();
    assert!(err.contains("postgresql → mariadb transfers do not exist"), "{err}");
    // No Redis engine.
    let err = ferry::convert::drs(&variant("redis", 6379).to_string(), "x", None).unwrap_err().to_string();
    assert!(err.contains(&format!("Ferry has no \"redis\" engine; Ferry transfers {}", pairs::describe())), "{err}");
    // Across the MySQL family, and MySQL → PostgreSQL exactly when the pair table has it.
    let mut v = variant("mysql", 3306);
    v["jobs"][1]["base_info"]["engine_type"] = json!("mysql-to-mariadb");
    let c = ferry::convert::drs(&v.to_string(), "x", None).unwrap();
    assert_eq!(child_spec(&c.batch, 1).target.engine, Engine::Mariadb);
    let mut v = variant("mysql", 3306);
    v["jobs"][0]["base_info"]["engine_type"] = json!("mysql-to-postgresql");
    let converted = ferry::convert::drs(&v.to_string(), "x", None);
    let supported = pairs::supported(Engine::Mysql, Engine::Postgresql, TaskType::FullIncrTrans);
    assert_eq!(converted.is_ok(), supported.is_ok(), "{:?}", converted.err());
}
