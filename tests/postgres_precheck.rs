//! Bad input gets a clear answer: precheck items with the reason and the fix, `ferry run`
//! exiting 2 with `CODE: message`, and never a password in the output.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry::api::{PrecheckResult, SpeedLimit, TaskType};
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

fn find<'a>(items: &'a [ferry::api::PrecheckItem], name: &str) -> &'a ferry::api::PrecheckItem {
    items.iter().find(|i| i.item == name).unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
}

/// The slot keeps every byte of WAL the source writes while the full transfer runs: with
/// `max_slot_wal_keep_size` below what a busy source writes during the copy, an ALARM says how
/// much is needed and how to raise it; unlimited, or large enough, the item passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_wal_keep_size_below_what_the_full_transfer_needs_raises_an_alarm_with_the_size() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
         CREATE TABLE busy (id bigserial PRIMARY KEY, pad text);",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["big"]);
    // About 5 MB at 1 MB/s: the copy takes seconds, while the source writes megabytes a second.
    spec.speed_limits = vec![SpeedLimit { begin: "00:00".into(), end: "23:59".into(), mb_per_second: 1 }];
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let running = Arc::clone(&running);
        let busy = pair.source().await;
        tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                busy.batch_execute("INSERT INTO busy (pad) SELECT repeat('y', 200) FROM generate_series(1, 5000)")
                    .await
                    .unwrap();
            }
        })
    };
    let keep = |size: &'static str| {
        let src = &src;
        async move {
            src.batch_execute(&format!("ALTER SYSTEM SET max_slot_wal_keep_size = '{size}'")).await.unwrap();
            src.batch_execute("SELECT pg_reload_conf()").await.unwrap();
            // pg_reload_conf() signals; the next session reads the new value.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let now: String = src.query_one("SHOW max_slot_wal_keep_size", &[]).await.unwrap().get(0);
                if now == size {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "max_slot_wal_keep_size is still {now}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    keep("1MB").await;
    let items = engine::precheck(&spec, &pair.credentials()).await;
    let item = find(&items, "source.slotWalKeepSize");
    assert_eq!(item.result, PrecheckResult::Alarm, "{item:#?}");
    assert!(item.skippable);
    let reason = item.reason.as_deref().unwrap();
    assert!(
        reason.contains("max_slot_wal_keep_size is 1MB") && reason.contains("at 1 MB/s (the job's lowest speed limit)"),
        "{reason}"
    );
    let fix = item.fix.as_deref().unwrap();
    eprintln!("{reason}\nfix: {fix}");
    assert!(fix.contains("ALTER SYSTEM SET max_slot_wal_keep_size") && fix.contains("-1"), "{fix}");

    keep("100GB").await;
    let items = engine::precheck(&spec, &pair.credentials()).await;
    assert_eq!(find(&items, "source.slotWalKeepSize").result, PrecheckResult::Passed, "{items:#?}");
    keep("-1").await;
    let items = engine::precheck(&spec, &pair.credentials()).await;
    assert_eq!(find(&items, "source.slotWalKeepSize").result, PrecheckResult::Passed, "{items:#?}");
    running.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    // An incremental job copies nothing: no item.
    let items = engine::precheck(&pair.spec(TaskType::IncrTrans, &["big"]), &pair.credentials()).await;
    assert!(items.iter().all(|i| i.item != "source.slotWalKeepSize"), "{items:#?}");
}

/// A source user who may not call pg_logical_emit_message cannot write the heartbeats that keep
/// a quiet job's slot moving: an ALARM with the GRANT for this server's signature of the
/// function; once granted, the item passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_write_heartbeats_raises_an_alarm_with_the_grant() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE ROLE limited LOGIN REPLICATION PASSWORD 'Limited-Pa55';
         GRANT SELECT ON t TO limited;",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    let items = engine::precheck(&spec, &pair.credentials()).await;
    assert_eq!(find(&items, "source.heartbeatPrivilege").result, PrecheckResult::Passed, "a superuser may");

    // Every variant: PUBLIC may execute them by default.
    let revokes: Vec<String> = src
        .query(
            "SELECT format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', oid::regprocedure) FROM pg_proc \
             WHERE proname = 'pg_logical_emit_message'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    src.batch_execute(&revokes.join("; ")).await.unwrap();
    let mut limited = spec.clone();
    limited.source.user = Some("limited".into());
    let creds = Credentials { source_password: Some("Limited-Pa55".into()), ..pair.credentials() };
    let items = engine::precheck(&limited, &creds).await;
    let item = find(&items, "source.heartbeatPrivilege");
    assert_eq!(item.result, PrecheckResult::Alarm, "{item:#?}");
    assert!(item.skippable);
    assert!(item.reason.as_deref().unwrap().contains("\"limited\" may not execute"), "{item:#?}");
    let fix = item.fix.as_deref().unwrap();
    assert!(fix.starts_with("GRANT EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean,text,text"), "{fix}");
    assert!(fix.ends_with(" TO \"limited\""), "{fix}");

    src.batch_execute(fix).await.unwrap();
    let items = engine::precheck(&limited, &creds).await;
    assert_eq!(find(&items, "source.heartbeatPrivilege").result, PrecheckResult::Passed, "{items:#?}");
    // Without a change stream no heartbeat is written: no item.
    let items = engine::precheck(&pair.spec(TaskType::FullTrans, &["t"]), &creds).await;
    assert!(items.iter().all(|i| i.item != "source.heartbeatPrivilege"), "{items:#?}");
}
