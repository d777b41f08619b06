//! No row data in what more people read than the tables: a database error that quotes a row's
//! values (a unique violation on the target) reaches the job's error — and from there
//! `status.lastError`, the conditions, the Events and the termination message — with its class,
//! table and constraint but without the value, unless the job sets
//! `spec.debug.rowValuesInErrors`; a comparison report names differing rows by primary key only.

mod my_support;
mod support;

use std::time::Duration;

use ferry::api::{ConflictPolicy, DebugOptions, TaskType};
use ferry::compare::{self, Options};
use ferry::engine::{self, EngineError};
use ferry::worker::WorkerError;
use mysql_async::prelude::Queryable;

/// What a user would otherwise read in the job's status.
const SECRET: &str = "ann@example.com";

/// The termination message a worker leaves for `e`, for a job with `debug`.
fn termination(e: &EngineError, debug: Option<&DebugOptions>) -> String {
    WorkerError::engine(e, DebugOptions::row_values(debug)).line()
}

fn opted_in() -> Option<DebugOptions> {
    Some(DebugOptions { row_values_in_errors: true })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_unique_violation_names_class_table_and_constraint_but_not_the_value() {
    let pair = support::Pair::start();
    let src = pair.source().await;
    src.batch_execute("CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@x')")
        .await
        .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["users"]);
    spec.policy.conflict = ConflictPolicy::Stop;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (job, creds) = (spec.clone(), pair.credentials());
    let runner = tokio::spawn(async move {
        let tracker = engine::Tracker::new(std::sync::Arc::new(engine::progress::NoProgress));
        engine::run(engine::Job { id: "t/redact", spec: &job, credentials: &creds, tracker, stop }).await
    });
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tgt.query_opt("SELECT 1 FROM _ferry.jobs WHERE full_done", &[]).await.ok().flatten().is_none() {
        assert!(std::time::Instant::now() < deadline, "the job did not start streaming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A unique index the source does not have, and a row on the target that a source row meets.
    tgt.batch_execute(&format!(
        "CREATE UNIQUE INDEX users_email_key ON users (email); INSERT INTO users VALUES (100, '{SECRET}')"
    ))
    .await
    .unwrap();
    src.batch_execute(&format!("INSERT INTO users VALUES (2, '{SECRET}')")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), runner).await.expect("the job stops").unwrap().unwrap_err();
    drop(stop_tx);

    assert_eq!(err.code(), "CONFLICT", "{err}");
    let shown = termination(&err, spec.debug.as_ref());
    for part in ["CONFLICT: ", "public.users", "SQLSTATE 23505 unique_violation", "users_email_key", "key (email)"] {
        assert!(shown.contains(part), "{part:?} missing from {shown}");
    }
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("spec.debug.rowValuesInErrors"), "says how to see the value: {shown}");
    // What the worker logs and every other `Display` of the error shows the same.
    assert!(!err.to_string().contains(SECRET), "{err}");

    let full = termination(&err, opted_in().as_ref());
    assert!(full.contains(&format!("Key (email)=({SECRET}) already exists.")), "{full}");
    assert!(full.contains("SQLSTATE 23505"), "{full}");
    engine::release("t/redact", &spec, &pair.credentials()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_duplicate_entry_names_error_table_and_key_but_not_the_value() {
    let pair = my_support::MyPair::start();
    let mut src = pair.source().await;
    my_support::exec(
        &mut src,
        "CREATE DATABASE shop; CREATE TABLE shop.users (id int PRIMARY KEY, email varchar(100));
         INSERT INTO shop.users VALUES (1, 'a@x');",
    )
    .await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["users"]);
    spec.policy.conflict = ConflictPolicy::Stop;
    let (stop, mut job) = pair.spawn("t/redact", spec.clone());
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    my_support::exec(
        &mut tgt,
        &format!(
            "CREATE UNIQUE INDEX users_email_key ON shop.users (email); INSERT INTO shop.users VALUES (100, '{SECRET}')"
        ),
    )
    .await;
    src.query_drop(format!("INSERT INTO shop.users VALUES (2, '{SECRET}')")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), job).await.expect("the job stops").unwrap().unwrap_err();
    drop(stop);

    assert_eq!(err.code(), "CONFLICT", "{err}");
    let shown = termination(&err, spec.debug.as_ref());
    for part in
        ["CONFLICT: ", "`shop`.`users`", "ERROR 1062 ER_DUP_ENTRY", "users_email_key", "Duplicate entry '<redacted>'"]
    {
        assert!(shown.contains(part), "{part:?} missing from {shown}");
    }
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!err.to_string().contains(SECRET), "{err}");

    let full = termination(&err, opted_in().as_ref());
    assert!(full.contains(&format!("Duplicate entry '{SECRET}' for key")), "{full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comparison_report_names_differing_rows_by_primary_key_only() {
    let pair = support::Pair::start();
    pair.source()
        .await
        .batch_execute(&format!(
            "CREATE TABLE users (id int PRIMARY KEY, email text, note text);
             INSERT INTO users VALUES (1, '{SECRET}', 'source note'), (2, 'bob@example.com', 'kept'), (3, 'cy@example.com', 'gone');"
        ))
        .await
        .unwrap();
    let spec = pair.spec(TaskType::FullTrans, &["users"]);
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let tracker = engine::Tracker::new(std::sync::Arc::new(engine::progress::NoProgress));
    let creds = pair.credentials();
    engine::run(engine::Job { id: "t/cmp", spec: &spec, credentials: &creds, tracker, stop }).await.unwrap();
    pair.target()
        .await
        .batch_execute(
            "UPDATE users SET email = 'changed@example.com', note = 'target note' WHERE id = 1;
             DELETE FROM users WHERE id = 3;
             INSERT INTO users VALUES (4, 'dan@example.com', 'only on the target');",
        )
        .await
        .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, Options::content(100)).await.unwrap();
    assert_eq!(report.differences.len(), 3, "{report:#?}");
    // What the worker writes to the status and the report ConfigMap.
    let written = serde_json::json!({"tables": report.tables, "differences": report.differences}).to_string();
    for value in [SECRET, "changed@example.com", "source note", "target note", "cy@example.com", "dan@example.com"] {
        assert!(!written.contains(value), "{value:?} in the report: {written}");
    }
    for d in &report.differences {
        let key = d.source_key_value.clone().or(d.target_key_value.clone()).unwrap();
        assert!(["1", "3", "4"].contains(&key.as_str()), "{d:?}");
        assert!(d.source_select_sql.as_deref().is_some_and(|s| s.contains(&key)), "{d:?}");
    }
}
