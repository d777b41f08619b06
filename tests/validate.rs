//! `validate()` rejects bad specs and names every field at fault.

use std::collections::BTreeMap;

use ferry::api::compare::{CompareMode, CompareModeKind};
use ferry::api::validate::{FieldError, Validate, check_cron};
use ferry::api::*;
use ferry::engine::pairs;

fn paths(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

/// Asserts that `spec` is rejected with an error at `path` whose message contains `says`.
#[track_caller]
fn rejects(spec: &SyncJobSpec, path: &str, says: &str) {
    let errors = spec.validate();
    assert!(
        errors.iter().any(|e| e.path == path && e.message.contains(says)),
        "expected {path}: …{says}…, got {errors:#?}"
    );
}

fn table(name: &str) -> TableSelection {
    TableSelection { name: name.into(), ..Default::default() }
}

#[test]
fn the_test_spec_is_valid() {
    assert_eq!(SyncJobSpec::test().validate(), vec![]);
}

#[test]
fn a_row_filter_under_a_database_selected_with_all_is_rejected() {
    let mut s = SyncJobSpec::test();
    s.objects.databases[0].all = true;
    s.objects.databases[0].schemas[0].tables[0].filter = Some("id > 10".into());
    rejects(&s, "spec.objects.databases[0].schemas[0].tables[0].filter", "all: true");
}

#[test]
fn two_tables_mapped_onto_the_same_target_name_are_rejected() {
    let mut s = SyncJobSpec::test();
    let tables = &mut s.objects.databases[0].schemas[0].tables;
    tables.push(TableSelection {
        name: "orders_archive".into(),
        mapped_name: Some("orders".into()),
        ..Default::default()
    });
    rejects(
        &s,
        "spec.objects.databases[0].schemas[0].tables[1].mappedName",
        "already mapped onto target table \"shop.public.orders\"",
    );
}

#[test]
fn two_schemas_mapped_onto_the_same_target_schema_are_rejected() {
    let mut s = SyncJobSpec::test();
    let mut other = s.objects.databases[0].schemas[0].clone();
    other.name = "sales".into();
    other.mapped_name = Some("public".into());
    s.objects.databases[0].schemas.push(other);
    rejects(&s, "spec.objects.databases[0].schemas[1].mappedName", "already mapped onto target schema");
}

#[test]
fn a_port_of_zero_is_rejected() {
    let mut s = SyncJobSpec::test();
    s.source.port = 0;
    rejects(&s, "spec.source.port", "between 1 and 65535");
}

#[test]
fn a_slot_retention_outside_a_minute_to_100_days_is_rejected() {
    let minutes = |m| SyncJobSpec::test().slot_retention_minutes(m);
    rejects(&minutes(0), "spec.slotRetentionMinutes", "between 1 and 144000 minutes (100 days), got 0");
    rejects(&minutes(144_001), "spec.slotRetentionMinutes", "between 1 and 144000");
    assert!(minutes(1).validate().is_empty());
    assert!(minutes(144_000).validate().is_empty());
    let defaulted: SyncJobSpec = serde_json::from_value(serde_json::json!({
        "source": {"engine": "postgresql", "host": "a", "port": 5432, "database": "shop", "user": "u"},
        "target": {"engine": "postgresql", "host": "b", "port": 5432, "database": "shop", "user": "u"},
        "objects": {"scope": "all"}
    }))
    .unwrap();
    assert_eq!(defaulted.slot_retention_minutes, 1440, "a day unless said otherwise");
}

#[test]
fn expired_days_outside_14_to_100_are_rejected() {
    rejects(&SyncJobSpec::test().expires_after_days(13), "spec.expiredDays", "between 14 and 100");
    rejects(&SyncJobSpec::test().expires_after_days(101), "spec.expiredDays", "between 14 and 100");
    assert!(SyncJobSpec::test().expires_after_days(100).validate().is_empty());
}

#[test]
fn speed_windows_must_be_on_the_hour_within_range_at_most_three_and_not_overlap() {
    let w = |b: &str, e: &str, mb| SpeedLimit { begin: b.into(), end: e.into(), mb_per_second: mb };
    let mut s = SyncJobSpec::test();
    s.speed_limits = vec![w("08:30", "09:59", 10)];
    rejects(&s, "spec.speedLimits[0].begin", "hh:00");
    s.speed_limits = vec![w("08:00", "09:00", 10)];
    rejects(&s, "spec.speedLimits[0].end", "hh:59");
    s.speed_limits = vec![w("08:00", "09:59", 0)];
    rejects(&s, "spec.speedLimits[0].mbPerSecond", "1 and 9999");
    s.speed_limits = vec![w("08:00", "09:59", 10000)];
    rejects(&s, "spec.speedLimits[0].mbPerSecond", "1 and 9999");
    s.speed_limits = vec![w("22:00", "01:59", 10), w("01:00", "02:59", 5)];
    rejects(&s, "spec.speedLimits[1]", "overlaps spec.speedLimits[0]");
    s.speed_limits =
        vec![w("00:00", "00:59", 1), w("01:00", "01:59", 1), w("02:00", "02:59", 1), w("03:00", "03:59", 1)];
    rejects(&s, "spec.speedLimits", "at most 3");
    s.speed_limits = vec![w("16:00", "15:59", 10)];
    assert!(s.validate().is_empty(), "a whole-day window wrapping midnight is fine");
}

#[test]
fn an_empty_secret_reference_or_host_is_rejected() {
    let mut s = SyncJobSpec::test();
    s.source.password_secret_ref = Some(SecretKeyRef { name: "".into(), key: "k".into() });
    s.target.host = " ".into();
    let errors = s.validate();
    assert!(paths(&errors).contains(&"spec.source.passwordSecretRef.name"), "{errors:#?}");
    assert!(paths(&errors).contains(&"spec.target.host"), "{errors:#?}");
}

#[test]
fn postgres_needs_a_database_and_every_sql_engine_a_user() {
    let mut s = SyncJobSpec::test();
    s.source.database = None;
    s.target.user = None;
    rejects(&s, "spec.source.database", "PostgreSQL needs the database");
    rejects(&s, "spec.target.user", "needs a user");
}

#[test]
fn tls_settings_that_would_mislead_are_rejected_with_the_field() {
    let secret = || SecretKeyRef { name: "db-ca".into(), key: "ca.crt".into() };
    let mut s = SyncJobSpec::test();
    // verify-full without a CA trusts the public roots: valid.
    s.target.tls = Some(TlsConfig { mode: TlsMode::VerifyFull, ..Default::default() });
    assert!(s.validate().is_empty(), "{:#?}", s.validate());
    // A CA that the mode never checks against.
    s.target.tls = Some(TlsConfig { mode: TlsMode::Require, ca_secret_ref: Some(secret()), ..Default::default() });
    rejects(&s, "spec.target.tls.mode", "never checks the server certificate");
    // Two CA sources.
    s.target.tls = Some(TlsConfig {
        mode: TlsMode::VerifyCa,
        ca_secret_ref: Some(secret()),
        ca_config_map_ref: Some(ConfigMapKeyRef { name: "db-ca".into(), key: "ca.crt".into() }),
        ..Default::default()
    });
    rejects(&s, "spec.target.tls.caConfigMapRef", "not both");
    // A client certificate without TLS, and with the same key twice.
    s.source.tls = Some(TlsConfig {
        mode: TlsMode::Disable,
        client_cert_secret_ref: Some(ClientCertSecretRef {
            name: "client".into(),
            cert_key: "tls.crt".into(),
            key_key: "tls.crt".into(),
        }),
        ..Default::default()
    });
    rejects(&s, "spec.source.tls.mode", "client certificate needs TLS");
    rejects(&s, "spec.source.tls.clientCertSecretRef", "different keys");
}

#[test]
fn client_certificate_keys_default_to_a_kubernetes_tls_secret() {
    let tls: TlsConfig =
        serde_json::from_str(r#"{"mode":"verify-full","clientCertSecretRef":{"name":"client"}}"#).unwrap();
    let c = tls.client_cert_secret_ref.unwrap();
    assert_eq!((c.cert_key.as_str(), c.key_key.as_str()), ("tls.crt", "tls.key"));
}

#[test]
fn an_engine_pair_that_does_not_exist_is_refused_at_the_target_engine_with_the_pairs_that_do() {
    let mut s = SyncJobSpec::test();
    s.target.engine = Engine::Mysql;
    rejects(
        &s,
        "spec.target.engine",
        &format!("postgresql → mysql transfers do not exist; Ferry transfers {}", pairs::describe()),
    );
}

#[test]
fn validation_refuses_exactly_the_transfers_the_pair_table_lacks() {
    let engines = [Engine::Postgresql, Engine::Mysql, Engine::Mariadb];
    for source in engines {
        for target in engines {
            for task in [TaskType::FullTrans, TaskType::FullIncrTrans, TaskType::IncrTrans] {
                let mut s = SyncJobSpec::test().task(task);
                (s.source.engine, s.target.engine) = (source, target);
                let refused: Vec<FieldError> = s
                    .validate()
                    .into_iter()
                    .filter(|e| {
                        ["spec.source.engine", "spec.target.engine", "spec.taskType"].contains(&e.path.as_str())
                    })
                    .collect();
                let want: Vec<FieldError> = pairs::supported(source, target, task)
                    .err()
                    .map(|e| FieldError { path: e.field.path().into(), message: e.reason })
                    .into_iter()
                    .collect();
                assert_eq!(refused, want, "{source} → {target} {task:?}");
            }
        }
    }
}

#[test]
fn redis_is_not_an_engine_a_spec_can_name() {
    let mut v = serde_json::to_value(SyncJobSpec::test()).unwrap();
    v["target"]["engine"] = serde_json::json!("redis");
    let e = serde_json::from_value::<SyncJobSpec>(v).unwrap_err().to_string();
    assert!(e.contains("unknown variant `redis`, expected one of `mysql`, `mariadb`, `postgresql`"), "{e}");
}

#[test]
fn the_same_database_as_source_and_target_is_rejected() {
    let mut s = SyncJobSpec::test();
    s.target = s.source.clone();
    rejects(&s, "spec.target", "same database");
}

#[test]
fn include_and_exclude_together_and_clashing_renames_are_rejected() {
    let mut s = SyncJobSpec::test();
    s.objects.databases[0].schemas[0].tables[0].columns = Some(ColumnSelection {
        include: vec!["id".into(), "a".into(), "b".into()],
        exclude: vec!["c".into()],
        rename: BTreeMap::from([("a".into(), "x".into()), ("b".into(), "x".into())]),
        ..Default::default()
    });
    let base = "spec.objects.databases[0].schemas[0].tables[0].columns";
    rejects(&s, base, "either include or exclude");
    rejects(&s, &format!("{base}.rename.b"), "both renamed to \"x\"");
}

#[test]
fn mysql_databases_have_no_schemas_and_scope_rules_hold() {
    let mut s = SyncJobSpec::test();
    s.source.engine = Engine::Mariadb;
    s.target.engine = Engine::Mariadb;
    rejects(&s, "spec.objects.databases[0].schemas", "mariadb has no schemas");
    let mut s = SyncJobSpec::test();
    s.objects.scope = ObjectScope::Database;
    rejects(&s, "spec.objects.databases[0]", "scope database takes whole databases");
    let mut s = SyncJobSpec::test();
    s.objects.scope = ObjectScope::All;
    rejects(&s, "spec.objects.databases", "scope all");
    let mut s = SyncJobSpec::test();
    s.objects.databases.clear();
    rejects(&s, "spec.objects.databases", "at least one database");
}

#[test]
fn a_table_listed_twice_and_an_empty_filter_are_rejected() {
    let mut s = SyncJobSpec::test();
    let tables = &mut s.objects.databases[0].schemas[0].tables;
    tables.push(table("orders"));
    tables[0].filter = Some("  ".into());
    rejects(&s, "spec.objects.databases[0].schemas[0].tables[1].name", "listed twice");
    rejects(&s, "spec.objects.databases[0].schemas[0].tables[0].filter", "must not be empty");
}

#[test]
fn a_filter_with_a_second_statement_is_rejected() {
    let mut s = SyncJobSpec::test();
    s.objects.databases[0].schemas[0].tables[0].filter = Some("1=1; DROP TABLE orders".into());
    rejects(&s, "spec.objects.databases[0].schemas[0].tables[0].filter", "statement separator `;`");
}

/// Filters that try to read or call beyond the table, and what the refusal names.
const ATTACKS: &[(&str, &str)] = &[
    ("1) UNION ALL SELECT user, authentication_string FROM mysql.user WHERE (1", "found `)`"),
    ("id IN (SELECT id FROM other)", "subquery is not supported"),
    ("EXISTS (SELECT 1 FROM other)", "subquery is not supported"),
    ("pg_read_file('/etc/passwd') IS NOT NULL", "function call `pg_read_file(...)` is not supported"),
    ("other_table.col = 1", "qualified name `other_table.col` is not supported"),
    ("id = @@version", "variable"),
];

#[test]
fn filters_reaching_beyond_the_table_are_rejected_in_the_source_engines_dialect() {
    for (filter, says) in ATTACKS {
        let mut pg = SyncJobSpec::test();
        pg.objects.databases[0].schemas[0].tables[0].filter = Some((*filter).into());
        if !filter.contains('@') {
            rejects(&pg, "spec.objects.databases[0].schemas[0].tables[0].filter", says);
        }
        let mut my = SyncJobSpec::test();
        my.source.engine = Engine::Mariadb;
        my.target.engine = Engine::Mariadb;
        my.source.database = None;
        my.target.database = None;
        let db = &mut my.objects.databases[0];
        db.tables = std::mem::take(&mut db.schemas[0].tables);
        db.schemas.clear();
        db.tables[0].filter = Some((*filter).into());
        rejects(&my, "spec.objects.databases[0].tables[0].filter", says);
    }
}

#[test]
fn a_filter_is_read_in_its_source_engines_dialect() {
    let mut s = SyncJobSpec::test();
    // PostgreSQL: "x" is a column, `x` is not a name at all.
    s.objects.databases[0].schemas[0].tables[0].filter = Some("\"Region\" = 'eu' AND id > 1".into());
    assert_eq!(s.validate(), vec![]);
    s.objects.databases[0].schemas[0].tables[0].filter = Some("`region` = 'eu'".into());
    rejects(&s, "spec.objects.databases[0].schemas[0].tables[0].filter", "for postgresql");
}

#[test]
fn a_description_over_256_characters_is_rejected() {
    let mut s = SyncJobSpec::test();
    s.description = Some("é".repeat(257));
    rejects(&s, "spec.description", "256");
}

#[test]
fn every_violation_is_reported_at_once() {
    let mut s = SyncJobSpec::test().expires_after_days(1);
    s.source.port = 0;
    s.target.user = None;
    s.policy.dml_types.clear();
    let errors = s.validate();
    assert_eq!(paths(&errors), ["spec.source.port", "spec.target.user", "spec.expiredDays", "spec.policy.dmlTypes"]);
}

fn compare() -> CompareTaskSpec {
    CompareTaskSpec {
        sync_job_ref: Some(LocalObjectRef { name: "orders-pg".into() }),
        source: None,
        target: None,
        objects: None,
        compare_type: CompareType::Content,
        mode: None,
        throttle: None,
        schedule: None,
        timeout_seconds: None,
        cancel: false,
        debug: None,
    }
}

#[test]
fn a_compare_task_needs_a_job_or_both_endpoints_and_a_sane_mode_and_schedule() {
    assert!(compare().validate().is_empty());
    let mut c = compare();
    c.sync_job_ref = None;
    c.source = Some(Endpoint::test_postgres(5432));
    assert_eq!(paths(&c.validate()), ["spec.syncJobRef"]);
    let mut c = compare();
    c.mode = Some(CompareMode { kind: CompareModeKind::Sample, percent: None });
    c.schedule = Some("61 * * * *".into());
    assert_eq!(paths(&c.validate()), ["spec.mode.percent", "spec.schedule"]);
    // A target type is a SyncJob's: a CompareTask's own selection refuses it.
    let mut c = compare();
    c.sync_job_ref = None;
    c.source = Some(Endpoint::test_postgres(5432));
    c.target = Some(Endpoint::test_postgres(5433));
    let mut objects = SyncJobSpec::test().objects;
    objects.databases[0].schemas[0].tables[0].columns = Some(ColumnSelection {
        target_types: BTreeMap::from([("flag".to_owned(), "boolean".to_owned())]),
        ..Default::default()
    });
    c.objects = Some(objects);
    let errors = c.validate();
    assert_eq!(paths(&errors), ["spec.objects.databases[0].schemas[0].tables[0].columns.targetTypes"]);
    assert!(errors[0].to_string().contains("a SyncJob field"), "{errors:?}");
    assert!(check_cron("*/15 2-4 * * 1,3").is_ok());
    assert!(check_cron("* * *").is_err());
}

#[test]
fn a_batch_reports_invalid_items_under_their_index_and_bad_names() {
    let template = serde_json::to_value(SyncJobSpec::test()).unwrap();
    let batch = BatchJobSpec {
        template,
        jobs: vec![
            BatchItem { name: "good".into(), overrides: None },
            BatchItem { name: "bad-port".into(), overrides: Some(serde_json::json!({"source": {"port": 0}})) },
            BatchItem { name: "Bad_Name".into(), overrides: None },
            BatchItem { name: "good".into(), overrides: None },
        ],
        max_concurrent: Some(0),
        paused: false,
    };
    let errors = batch.validate_named("tenants");
    let p = paths(&errors);
    assert!(p.contains(&"spec.maxConcurrent"), "{errors:#?}");
    assert!(errors.iter().any(|e| e.path == "spec.jobs[1]" && e.message.contains("spec.source.port")), "{errors:#?}");
    assert!(p.contains(&"spec.jobs[2].name"), "{errors:#?}");
    assert!(errors.iter().any(|e| e.path == "spec.jobs[3].name" && e.message.contains("twice")), "{errors:#?}");
    assert!(!p.contains(&"spec.jobs[0]"), "{errors:#?}");
}

#[test]
fn merge_patch_follows_rfc_7386() {
    let mut doc = serde_json::json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"});
    batch::merge_patch(&mut doc, &serde_json::json!({"a": {"b": null, "d": 4}, "l": [3], "n": {"x": 1}}));
    assert_eq!(doc, serde_json::json!({"a": {"c": 2, "d": 4}, "l": [3], "k": "v", "n": {"x": 1}}));
}

#[test]
fn a_start_position_is_only_for_incremental_mysql_jobs_and_must_parse() {
    let mut s = SyncJobSpec::test();
    s.start_position = Some("0-1-42".into());
    rejects(&s, "spec.startPosition", "INCR_TRANS");
    s.task_type = TaskType::IncrTrans;
    rejects(&s, "spec.startPosition", "MySQL and MariaDB");
    s.source.engine = Engine::Mariadb;
    s.target.engine = Engine::Mariadb;
    s.objects.databases[0].schemas.clear();
    s.objects.databases[0].tables = vec![table("orders")];
    assert!(!paths(&s.validate()).contains(&"spec.startPosition"), "{:?}", s.validate());
    for good in ["0-1-42,1-2-7", "mariadb-bin.000003:1234"] {
        s.start_position = Some(good.into());
        assert!(!paths(&s.validate()).contains(&"spec.startPosition"), "{good}");
    }
    for bad in ["", "0-1", "abc", "mariadb-bin:12", "mariadb-bin.000003:x"] {
        s.start_position = Some(bad.into());
        rejects(&s, "spec.startPosition", "");
    }
}
