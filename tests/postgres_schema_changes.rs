//! Changes of a PostgreSQL source table's columns while a job streams, read from the stream's
//! Relation messages: replayed on the target with `policy.ddl.enabled`, a clear stop without
//! it, and never a value lost on the way. Writes go on while the columns change.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use ferry::api::TaskType;
use ferry::engine::{self, Job, Outcome, Tracker, progress::NoProgress};
use support::{Pair, wait_equal};
use tokio::sync::watch;
use tokio_postgres::Client;

fn tracker() -> Tracker {
    Tracker::new(Arc::new(NoProgress))
}

type Running = (watch::Sender<bool>, tokio::task::JoinHandle<Result<Outcome, engine::EngineError>>);

fn spawn_job(pair: &Pair, spec: &ferry::api::SyncJobSpec, id: &'static str) -> Running {
    let (stop_tx, stop) = watch::channel(false);
    let (spec, creds) = (spec.clone(), pair.credentials());
    let runner = tokio::spawn(async move {
        engine::run(Job { id, spec: &spec, credentials: &creds, tracker: tracker(), stop }).await
    });
    (stop_tx, runner)
}

async fn wait_streaming(pair: &Pair, job: &str) {
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = tgt
            .query_opt("SELECT 1 FROM _ferry.jobs WHERE job = $1 AND full_done", &[&job])
            .await
            .ok()
            .flatten()
            .is_some();
        if done {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the job did not start streaming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The columns of `table` as `name type` in order.
async fn columns(client: &Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END \
             FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Inserts and updates rows of `table` (columns `id` and `r`) until `stop`, from `next` on.
fn writer(
    client: Client,
    table: &'static str,
    next: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut writes = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let insert = format!("INSERT INTO {table} (id, r) VALUES ($1, 1)");
            client.execute(&insert, &[&id]).await.unwrap();
            let update = format!("UPDATE {table} SET r = r + 1 WHERE id = $1");
            client.execute(&update, &[&(id / 2)]).await.unwrap();
            writes += 2;
        }
        writes
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_dropped_retyped_and_renamed_columns_are_replayed_while_writes_go_on() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, a text, r int, n numeric(8,2));
         INSERT INTO t SELECT g, 'a' || g, g, g / 3.0 FROM generate_series(1, 3000) g;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    spec.policy.ddl.enabled = true;
    let (stop_job, job) = spawn_job(&pair, &spec, "test/ddl-replay");
    wait_streaming(&pair, "test/ddl-replay").await;

    let next = Arc::new(AtomicI64::new(10_000));
    let stop = Arc::new(AtomicBool::new(false));
    let load = writer(pair.source().await, "t", Arc::clone(&next), Arc::clone(&stop));
    let pause = || tokio::time::sleep(Duration::from_millis(300));
    // Each change, with rows written in between that use it.
    src.batch_execute("ALTER TABLE t ADD COLUMN b int").await.unwrap();
    src.batch_execute("INSERT INTO t (id, a, r, b) VALUES (100000, 'new', 1, 42); UPDATE t SET b = 7 WHERE id = 1")
        .await
        .unwrap();
    pause().await;
    // A constant default: the rows the table holds take it without a write the stream carries.
    src.batch_execute("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 5").await.unwrap();
    src.batch_execute("UPDATE t SET c = 6 WHERE id = 2").await.unwrap();
    pause().await;
    src.batch_execute("ALTER TABLE t RENAME COLUMN a TO label").await.unwrap();
    src.batch_execute("UPDATE t SET label = 'renamed' WHERE id = 3").await.unwrap();
    pause().await;
    src.batch_execute("ALTER TABLE t ALTER COLUMN n TYPE numeric(12,4)").await.unwrap();
    src.batch_execute("UPDATE t SET n = 12345.6789 WHERE id = 4").await.unwrap();
    pause().await;
    src.batch_execute("ALTER TABLE t DROP COLUMN n").await.unwrap();
    src.batch_execute("UPDATE t SET b = 9 WHERE id = 5").await.unwrap();
    pause().await;
    // Two changes before the next row: the stream sends one Relation message for both.
    src.batch_execute("ALTER TABLE t ADD COLUMN d text; ALTER TABLE t RENAME COLUMN b TO beta").await.unwrap();
    src.batch_execute("UPDATE t SET d = 'dee', beta = 8 WHERE id = 6").await.unwrap();
    pause().await;
    stop.store(true, Ordering::Relaxed);
    let writes = load.await.unwrap();
    assert!(writes > 0);

    wait_equal(&pair, "t", "t", Duration::from_secs(60)).await;
    let tgt = pair.target().await;
    assert_eq!(columns(&src, "t").await, columns(&tgt, "t").await, "the target table has the source's columns");
    let b: i32 = tgt.query_one("SELECT beta FROM t WHERE id = 100000", &[]).await.unwrap().get(0);
    assert_eq!(b, 42, "the row inserted after the column was added carries its value");
    let c: i32 = tgt.query_one("SELECT c FROM t WHERE id = 10", &[]).await.unwrap().get(0);
    assert_eq!(c, 5, "rows that predate the column hold its default, as on the source");
    stop_job.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);

    // A restarted job reads the stream with the columns it has reached: no change is seen twice,
    // and a change made while it was stopped is replayed.
    src.batch_execute("ALTER TABLE t ADD COLUMN e boolean; UPDATE t SET e = true WHERE id < 20").await.unwrap();
    let (stop_job, job) = spawn_job(&pair, &spec, "test/ddl-replay");
    wait_equal(&pair, "t", "t", Duration::from_secs(60)).await;
    assert_eq!(columns(&src, "t").await, columns(&tgt, "t").await);
    stop_job.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

/// One change of columns under `policy.ddl.enabled: false`: the job stops before applying it,
/// naming the table and the change; once the change is made on the target by hand (`by_hand`),
/// or else once DDL replay is turned on, the job resumes from its checkpoint and nothing is lost.
async fn stops_then_resumes(
    pair: &Pair,
    table: &'static str,
    id: &'static str,
    change: &str,
    by_hand: Option<&str>,
    names: &str,
) {
    let src = pair.source().await;
    src.batch_execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, a text, r int);
         INSERT INTO {table} SELECT g, 'a' || g, g FROM generate_series(1, 500) g;"
    ))
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &[table]);
    assert!(!spec.policy.ddl.enabled);
    let (_stop_job, job) = spawn_job(pair, &spec, id);
    wait_streaming(pair, id).await;
    src.batch_execute(&format!("INSERT INTO {table} (id, r) VALUES (9001, 1)")).await.unwrap();
    src.batch_execute(&format!("ALTER TABLE {table} {change}")).await.unwrap();
    src.batch_execute(&format!("INSERT INTO {table} (id, r) VALUES (9002, 2); UPDATE {table} SET r = 0 WHERE id = 1"))
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), job)
        .await
        .expect("the job stops on the change")
        .unwrap()
        .expect_err("the job stops with an error");
    assert_eq!(err.code(), "SOURCE_SCHEMA_CHANGED", "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("public.{table}")) && text.contains(names), "{text}");
    assert!(text.contains("spec.policy.ddl.enabled"), "the message says how to go on: {text}");
    let tgt = pair.target().await;
    let before: i64 =
        tgt.query_one(&format!("SELECT count(*) FROM {table} WHERE id = 9002"), &[]).await.unwrap().get(0);
    assert_eq!(before, 0, "nothing after the change was applied");

    // A stop is a stop, again and again, until the target has the change.
    let (_stop_job, job) = spawn_job(pair, &spec, id);
    let again = tokio::time::timeout(Duration::from_secs(60), job).await.unwrap().unwrap().expect_err("stops again");
    assert_eq!(again.code(), "SOURCE_SCHEMA_CHANGED");
    match by_hand {
        Some(sql) => {
            let unquoted = text.replace('"', "");
            assert!(unquoted.contains(sql), "the message shows the statement to run on the target: {text}");
            tgt.batch_execute(&format!("ALTER TABLE {table} {sql}")).await.unwrap();
        }
        None => spec.policy.ddl.enabled = true,
    }
    let (stop_job, job) = spawn_job(pair, &spec, id);
    wait_equal(pair, table, table, Duration::from_secs(60)).await;
    stop_job.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ddl_replay_each_change_of_columns_stops_the_job_until_the_target_has_it() {
    let pair = Pair::start();
    let add = Some("ADD COLUMN b integer");
    stops_then_resumes(&pair, "added", "test/off-add", "ADD COLUMN b int", add, "column b integer added").await;
    stops_then_resumes(&pair, "dropped", "test/off-drop", "DROP COLUMN a", None, "column a dropped").await;
    stops_then_resumes(
        &pair,
        "retyped",
        "test/off-retype",
        "ALTER COLUMN r TYPE bigint",
        Some("ALTER COLUMN r TYPE bigint"),
        "column r changed from integer to bigint",
    )
    .await;
    stops_then_resumes(
        &pair,
        "renamed",
        "test/off-rename",
        "RENAME COLUMN a TO label",
        None,
        "column a renamed to label",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_with_values_the_stream_does_not_carry_stops_the_job_even_with_ddl_replay() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE v (id bigint PRIMARY KEY, a text);
         INSERT INTO v SELECT g, 'a' || g FROM generate_series(1, 200) g;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["v"]);
    spec.policy.ddl.enabled = true;
    let (_stop_job, job) = spawn_job(&pair, &spec, "test/volatile");
    wait_streaming(&pair, "test/volatile").await;
    // Every row the table holds gets its own random value, which no change carries.
    src.batch_execute("ALTER TABLE v ADD COLUMN noise float8 DEFAULT random(); INSERT INTO v (id) VALUES (9001)")
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), job).await.unwrap().unwrap().expect_err("stops");
    assert_eq!(err.code(), "SOURCE_SCHEMA_CHANGED", "{err}");
    assert!(err.to_string().contains("random()"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_column_keeps_its_target_name_and_an_excluded_one_stays_out() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE m (id bigint PRIMARY KEY, a text, secret text);
         INSERT INTO m SELECT g, 'a' || g, 's' || g FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["m"]);
    spec.policy.ddl.enabled = true;
    let table = &mut spec.objects.databases[0].schemas[0].tables[0];
    table.columns = Some(ferry::api::ColumnSelection {
        exclude: vec!["secret".into()],
        rename: [("a".to_owned(), "alpha".to_owned())].into(),
        ..Default::default()
    });
    let (stop_job, job) = spawn_job(&pair, &spec, "test/mapped");
    wait_streaming(&pair, "test/mapped").await;
    // A new column of a table with an exclude list is taken on; the mapped one keeps its name.
    src.batch_execute(
        "ALTER TABLE m ADD COLUMN b int; ALTER TABLE m RENAME COLUMN a TO aa;
         INSERT INTO m VALUES (500, 'x', 'hidden', 5); UPDATE m SET aa = 'y', b = 1 WHERE id = 1",
    )
    .await
    .unwrap();
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let row = tgt.query_opt("SELECT alpha, b FROM m WHERE id = 500", &[]).await;
        if let Ok(Some(r)) = row {
            assert_eq!((r.get::<_, String>(0), r.get::<_, i32>(1)), ("x".to_owned(), 5));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "row 500 did not arrive: {row:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = tgt.query_one("SELECT alpha, b FROM m WHERE id = 1", &[]).await.unwrap();
        if r.get::<_, Option<i32>>(1) == Some(1) {
            assert_eq!(r.get::<_, String>(0), "y");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the update did not arrive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(columns(&tgt, "m").await, ["id bigint not null", "alpha text", "b integer"]);
    stop_job.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_columns_sent_before_its_commit_is_visible_is_read_once_it_is() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE late (id bigint PRIMARY KEY, a text);
         INSERT INTO late SELECT g, 'a' || g FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["late"]);
    spec.policy.ddl.enabled = true;
    let (stop_job, job) = spawn_job(&pair, &spec, "test/late");
    wait_streaming(&pair, "test/late").await;
    // A synchronous standby that never answers holds each commit after its record is flushed
    // (so the walsender sends the transaction) and before other sessions can see it.
    src.batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'").await.unwrap();
    src.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let held = pair.source().await;
    let rename = tokio::spawn(async move {
        held.batch_execute("SET synchronous_commit = on").await?;
        held.batch_execute("ALTER TABLE late RENAME COLUMN a TO label; INSERT INTO late VALUES (500, 'x')").await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting: i64 =
        src.query_one("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'", &[]).await.unwrap().get(0);
    assert_eq!(waiting, 1, "the commit was not held");
    assert!(!job.is_finished(), "the job stopped while the commit was held: {:?}", job.await);
    src.batch_execute("ALTER SYSTEM RESET synchronous_standby_names").await.unwrap();
    src.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    rename.await.unwrap().unwrap();
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let row = tgt.query_opt("SELECT label FROM late WHERE id = 500", &[]).await;
        if let Ok(Some(r)) = row {
            assert_eq!(r.get::<_, String>(0), "x");
            break;
        }
        assert!(!job.is_finished(), "the job stopped: {:?}", job.await);
        assert!(std::time::Instant::now() < deadline, "row 500 did not arrive: {row:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_job.send(true).unwrap();
    job.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_dropped_before_the_key_leaves_updates_and_deletes_finding_their_rows() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE k (a text, z text, id bigint PRIMARY KEY, b int);
         INSERT INTO k SELECT 'a' || g, 'z' || g, g, g FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["k"]);
    spec.policy.ddl.enabled = true;
    let (stop_job, job) = spawn_job(&pair, &spec, "test/keyshift");
    wait_streaming(&pair, "test/keyshift").await;
    // The key moves from the third position to the second; changes after it find rows by it.
    src.batch_execute("ALTER TABLE k DROP COLUMN a").await.unwrap();
    src.batch_execute(
        "UPDATE k SET b = -b WHERE id % 3 = 0; DELETE FROM k WHERE id % 5 = 0;
         INSERT INTO k VALUES ('n', 900, 9); UPDATE k SET id = id + 1000 WHERE id = 7",
    )
    .await
    .unwrap();
    if let Err(e) = support::try_wait_equal(&pair, "k", "k", Duration::from_secs(30)).await {
        panic!("{e}; the job: {:?}", if job.is_finished() { Some(job.await) } else { None });
    }
    stop_job.send(true).unwrap();
    job.await.unwrap().unwrap();
    // Moved again while the job is stopped: the restarted job reads it from its checkpoint.
    src.batch_execute("UPDATE k SET b = b + 100 WHERE id = 11; ALTER TABLE k DROP COLUMN z").await.unwrap();
    src.batch_execute(
        "UPDATE k SET b = 0 WHERE id % 4 = 0; DELETE FROM k WHERE id = 13; INSERT INTO k VALUES (901, 1)",
    )
    .await
    .unwrap();
    let (stop_job, job) = spawn_job(&pair, &spec, "test/keyshift");
    if let Err(e) = support::try_wait_equal(&pair, "k", "k", Duration::from_secs(30)).await {
        panic!("{e}; the job: {:?}", if job.is_finished() { Some(job.await) } else { None });
    }
    stop_job.send(true).unwrap();
    job.await.unwrap().unwrap();
}
