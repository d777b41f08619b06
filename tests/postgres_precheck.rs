//! Bad input gets a clear answer: precheck items with the reason and the fix, `ferry run`
//! exiting 2 with `CODE: message`, and never a password in the output.

mod support;

use std::process::Command;

use ferry::api::{PrecheckResult, TaskType};
use ferry::engine::{self, Credentials};
use ferry::testkit::{PostgresOptions, PostgresServer};
use support::Pair;

/// Runs `ferry run` on `spec` with its Secret; returns the exit code and stdout, and checks no
/// password appears in either output stream.
fn ferry_run(pair: &Pair, name: &str, spec: &ferry::api::SyncJobSpec) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, pair.manifest(name, spec)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["run", "-f"]).arg(&manifest).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr));
    for secret in [pair.source.password(), pair.target.password()] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "a password was printed");
    }
    (out.status.code(), stdout)
}

fn failed<'a>(items: &'a [ferry::api::PrecheckItem], name: &str) -> &'a ferry::api::PrecheckItem {
    items
        .iter()
        .find(|i| i.item == name && i.result == PrecheckResult::Failed)
        .unwrap_or_else(|| panic!("no failed item {name} in {items:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_the_connection_item_and_is_never_echoed() {
    let pair = Pair::start();
    pair.source().await.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await.unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    let creds = Credentials { source_password: Some("Wr0ng-Pa55".into()), ..pair.credentials() };
    let items = engine::precheck(&spec, &creds).await;
    let item = failed(&items, "source.connection");
    let reason = item.reason.as_deref().unwrap();
    assert!(reason.contains("password authentication failed"), "{reason}");
    assert!(item.fix.as_deref().unwrap().contains("passwordSecretRef"));
    assert!(!format!("{items:?}").contains("Wr0ng-Pa55"), "the password must not appear");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_replica_fails_with_the_setting_to_change() {
    let source =
        PostgresServer::start_with(PostgresOptions { wal_level: "replica".into(), ..Default::default() }).unwrap();
    source.create_database("shop").unwrap();
    let pair = Pair { source, target: PostgresServer::start().unwrap() };
    pair.target.create_database("shop").unwrap();
    pair.source().await.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await.unwrap();
    let items = engine::precheck(&pair.spec(TaskType::FullIncrTrans, &["t"]), &pair.credentials()).await;
    let item = failed(&items, "source.walLevel");
    assert!(item.reason.as_deref().unwrap().contains("\"replica\""));
    assert!(item.fix.as_deref().unwrap().contains("wal_level = logical"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_fails_naming_it_and_ferry_run_exits_2() {
    let pair = Pair::start();
    let spec = pair.spec(TaskType::FullIncrTrans, &["nope"]);
    let items = engine::precheck(&spec, &pair.credentials()).await;
    let item = failed(&items, "source.tablesExist");
    assert!(item.reason.as_deref().unwrap().contains("public.nope"), "{item:?}");

    let (code, stdout) = ferry_run(&pair, "missing", &spec);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("precheck FAILED source.tablesExist"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("PRECHECK_FAILED: ") && last.contains("source.tablesExist"), "{last}");
}

#[test]
fn an_invalid_spec_exits_2_naming_the_field() {
    let pair = Pair::start();
    let mut spec = pair.spec(TaskType::FullTrans, &["t"]);
    spec.expired_days = 3;
    let (code, stdout) = ferry_run(&pair, "bad", &spec);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("CREATE_FAILED"), "{stdout}");
    assert_eq!(
        stdout.lines().last().unwrap(),
        "SPEC_INVALID: spec.expiredDays: must be between 14 and 100 days, got 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_primary_key_raises_an_alarm_naming_it_and_the_fix() {
    let pair = Pair::start();
    pair.source().await.batch_execute("CREATE TABLE audit (at timestamptz, line text)").await.unwrap();
    let items = engine::precheck(&pair.spec(TaskType::FullIncrTrans, &["audit"]), &pair.credentials()).await;
    let item = items.iter().find(|i| i.item == "source.primaryKeys").expect("a primaryKeys item");
    assert_eq!(item.result, PrecheckResult::Alarm, "{item:?}");
    assert!(item.reason.as_deref().unwrap().contains("public.audit"), "{item:?}");
    assert!(item.fix.as_deref().unwrap().contains("REPLICA IDENTITY FULL"), "{item:?}");
    assert!(item.skippable);
    // A FULL_TRANS job needs no change stream, so no alarm.
    let items = engine::precheck(&pair.spec(TaskType::FullTrans, &["audit"]), &pair.credentials()).await;
    assert!(items.iter().all(|i| i.item != "source.primaryKeys"), "{items:#?}");
}
