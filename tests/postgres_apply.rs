//! The PostgreSQL applier's set-based path and the reader under a held-back applier: a batch
//! reduced to each row's final state gives exactly the source's rows, tables it must not reduce
//! keep their order, and a reader waiting for the applier keeps its replication connection.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry::api::{ConflictPolicy, TaskType, Tuning};
use ferry::engine::{self, Job, Outcome, Tracker, progress::NoProgress};
use support::{Pair, wait_equal};
use tokio::sync::watch;

type Running = (watch::Sender<bool>, tokio::task::JoinHandle<Result<Outcome, engine::EngineError>>);

fn spawn_job(pair: &Pair, spec: &ferry::api::SyncJobSpec, id: &'static str) -> Running {
    let (stop_tx, stop) = watch::channel(false);
    let (spec, creds) = (spec.clone(), pair.credentials());
    let runner = tokio::spawn(async move {
        let tracker = Tracker::new(Arc::new(NoProgress));
        engine::run(Job { id, spec: &spec, credentials: &creds, tracker, stop }).await
    });
    (stop_tx, runner)
}

async fn wait_streaming(pair: &Pair) {
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tgt.query_opt("SELECT 1 FROM _ferry.jobs WHERE full_done", &[]).await.ok().flatten().is_none() {
        assert!(std::time::Instant::now() < deadline, "the job did not start streaming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TABLES: &str = "
    CREATE TABLE items (id bigint PRIMARY KEY, n integer, note text, doc text);
    ALTER TABLE items ALTER COLUMN doc SET STORAGE EXTERNAL;
    CREATE TABLE ident (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
    CREATE TABLE pairs (a integer, b integer, v text, tags text[], PRIMARY KEY (a, b));
    CREATE TABLE codes (id integer PRIMARY KEY, code text NOT NULL UNIQUE);
    CREATE TABLE plain (n integer, v text);
    ALTER TABLE plain REPLICA IDENTITY FULL;
    INSERT INTO items SELECT g, g, 'old ' || g, CASE WHEN g % 2 = 0 THEN repeat(md5(g::text), 400) END
      FROM generate_series(1, 50) g;
    INSERT INTO ident (v) SELECT 'v' || g FROM generate_series(1, 5) g;
    INSERT INTO pairs SELECT g, g, 'p' || g, ARRAY['x', 'y' || g] FROM generate_series(1, 10) g;
    INSERT INTO codes SELECT g, 'c' || g FROM generate_series(1, 5) g;
    INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 5) g;";

/// One source transaction (so one target batch) mixing every kind of change on every table.
const MIXED: &str = "BEGIN;
    -- inserted, updated, TOASTed value left unchanged, deleted, inserted again
    INSERT INTO items VALUES (100, 1, NULL, repeat(md5('a'), 400)), (101, 1, 'x', NULL);
    UPDATE items SET n = n + 1 WHERE id IN (100, 101, 2, 3, 4);
    UPDATE items SET note = NULL WHERE id = 100;
    DELETE FROM items WHERE id IN (101, 5, 6);
    INSERT INTO items VALUES (101, 7, 'again', NULL);
    -- key changes: onto a key deleted in the same batch, and a swap through a free key
    UPDATE items SET id = 6 WHERE id = 8;
    UPDATE items SET id = 1000 WHERE id = 10;
    UPDATE items SET id = 10 WHERE id = 12;
    UPDATE items SET id = 12 WHERE id = 1000;
    -- a TOASTed row whose only earlier image is on the target: goes as its own UPDATE
    UPDATE items SET n = -n WHERE id = 14;
    UPDATE items SET id = 140 WHERE id = 16;
    INSERT INTO ident (v) VALUES ('new'), (NULL);
    UPDATE ident SET v = 'changed' WHERE id = 2;
    DELETE FROM ident WHERE id = 3;
    INSERT INTO pairs VALUES (1, 2, NULL, ARRAY['n', NULL]), (3, 4, 'x', '{}');
    UPDATE pairs SET b = 20 WHERE (a, b) = (2, 2);
    UPDATE pairs SET a = 2, b = 2 WHERE (a, b) = (3, 3);
    DELETE FROM pairs WHERE a = 4;
    UPDATE pairs SET tags = ARRAY['with \"quote\"', 'and,comma'] WHERE a = 5;
    -- unique values passed around: only the order of the changes keeps each step valid
    UPDATE codes SET code = 'tmp' WHERE id = 1;
    UPDATE codes SET code = 'c1' WHERE id = 2;
    UPDATE codes SET code = 'c2' WHERE id = 1;
    DELETE FROM codes WHERE id = 3;
    INSERT INTO codes VALUES (30, 'c3');
    UPDATE plain SET v = 'changed' WHERE n = 1;
    DELETE FROM plain WHERE n = 2;
    INSERT INTO plain VALUES (2, 'v2'), (NULL, NULL);
    COMMIT;";

async fn mixed_batch_gives_the_source_rows(conflict: ConflictPolicy, id: &'static str) {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(TABLES).await.unwrap();
    let names = ["items", "ident", "pairs", "codes", "plain"];
    let mut spec = pair.spec(TaskType::FullIncrTrans, &names);
    spec.policy.conflict = conflict;
    let (stop, runner) = spawn_job(&pair, &spec, id);
    wait_streaming(&pair).await;
    src.batch_execute(MIXED).await.unwrap();
    // The same again in several transactions, which the applier groups into one batch.
    src.batch_execute(
        "UPDATE items SET n = 0 WHERE id = 100; UPDATE items SET id = 200 WHERE id = 100;
         DELETE FROM items WHERE id = 200; INSERT INTO items VALUES (200, 2, 'back', NULL);
         UPDATE items SET note = 'toast kept' WHERE id = 18;",
    )
    .await
    .unwrap();
    for t in names {
        wait_equal(&pair, t, t, Duration::from_secs(60)).await;
    }
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    engine::release(id, &spec, &pair.credentials()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_under_overwrite_gives_exactly_the_source_rows() {
    mixed_batch_gives_the_source_rows(ConflictPolicy::Overwrite, "test/apply-overwrite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_under_stop_gives_exactly_the_source_rows() {
    mixed_batch_gives_the_source_rows(ConflictPolicy::Stop, "test/apply-stop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_under_ignore_gives_exactly_the_source_rows() {
    mixed_batch_gives_the_source_rows(ConflictPolicy::Ignore, "test/apply-ignore").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_index_made_on_the_target_keeps_its_table_change_by_change() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE t (id integer PRIMARY KEY, code text NOT NULL); INSERT INTO t VALUES (1, 'a'), (2, 'b')",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    let (stop, runner) = spawn_job(&pair, &spec, "test/apply-unique");
    wait_streaming(&pair).await;
    // Stop the job, add the index by hand on the target, and resume: the applier reads it.
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    pair.target().await.batch_execute("CREATE UNIQUE INDEX t_code ON t (code)").await.unwrap();
    let (stop, runner) = spawn_job(&pair, &spec, "test/apply-unique");
    src.batch_execute(
        "BEGIN; UPDATE t SET code = 'tmp' WHERE id = 1; UPDATE t SET code = 'a' WHERE id = 2;
         UPDATE t SET code = 'b' WHERE id = 1; COMMIT;",
    )
    .await
    .unwrap();
    wait_equal(&pair, "t", "t", Duration::from_secs(60)).await;
    assert!(!runner.is_finished(), "the job goes on");
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    engine::release("test/apply-unique", &spec, &pair.credentials()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_a_foreign_key_on_the_target_are_written_in_an_order_it_accepts() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE parents (id integer PRIMARY KEY, v text);
         CREATE TABLE children (id integer PRIMARY KEY, parent_id integer NOT NULL REFERENCES parents (id), v text);
         INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 5) g;
         INSERT INTO children SELECT g, g, 'c' || g FROM generate_series(1, 5) g;",
    )
    .await
    .unwrap();
    // The referencing table first: set statements in the job's table order would write it first.
    let spec = pair.spec(TaskType::FullIncrTrans, &["children", "parents"]);
    let (stop, runner) = spawn_job(&pair, &spec, "test/apply-fk");
    wait_streaming(&pair).await;
    let tgt = pair.target().await;
    let fk = "SELECT 1 FROM pg_constraint WHERE contype = 'f' AND conrelid = 'children'::regclass AND convalidated";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tgt.query_opt(fk, &[]).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the foreign key was not created on the target");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new parent and its child; a child moved to another parent and its old parent deleted;
    // a parent's key changed after its children moved away.
    src.batch_execute(
        "BEGIN;
         INSERT INTO parents VALUES (10, 'new');
         INSERT INTO children VALUES (10, 10, 'new');
         UPDATE children SET parent_id = 10 WHERE id = 1;
         DELETE FROM parents WHERE id = 1;
         UPDATE children SET parent_id = 3 WHERE id = 2;
         UPDATE parents SET id = 20 WHERE id = 2;
         UPDATE children SET parent_id = 20 WHERE id = 3;
         COMMIT;",
    )
    .await
    .unwrap();
    for t in ["parents", "children"] {
        wait_equal(&pair, t, t, Duration::from_secs(60)).await;
    }
    assert!(!runner.is_finished(), "the job goes on");
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    engine::release("test/apply-fk", &spec, &pair.credentials()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_commits_in_the_transaction_of_the_changes_it_covers() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute("CREATE TABLE t (id integer PRIMARY KEY, v text)").await.unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    let (stop, runner) = spawn_job(&pair, &spec, "test/apply-checkpoint");
    wait_streaming(&pair).await;
    // On the target, each write to `t` and each checkpoint notes its transaction.
    let tgt = pair.target().await;
    tgt.batch_execute(
        "CREATE TABLE public.xids (what text, xid int8);
         CREATE FUNCTION public.note_xid() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN INSERT INTO public.xids VALUES (TG_ARGV[0], txid_current()); RETURN NULL; END$$;
         CREATE TRIGGER note_row AFTER INSERT OR UPDATE ON public.t FOR EACH ROW EXECUTE FUNCTION public.note_xid('row');
         CREATE TRIGGER note_checkpoint AFTER UPDATE ON _ferry.jobs FOR EACH ROW EXECUTE FUNCTION public.note_xid('checkpoint');",
    )
    .await
    .unwrap();
    for i in 0..20 {
        src.execute("INSERT INTO t VALUES ($1, 'v')", &[&i]).await.unwrap();
    }
    wait_equal(&pair, "t", "t", Duration::from_secs(60)).await;
    let alone: i64 = tgt
        .query_one(
            "SELECT count(*) FROM xids r WHERE r.what = 'row' \
             AND NOT EXISTS (SELECT 1 FROM xids c WHERE c.what = 'checkpoint' AND c.xid = r.xid)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(alone, 0, "rows written in a transaction without their checkpoint");
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    engine::release("test/apply-checkpoint", &spec, &pair.credentials()).await.unwrap();
}

/// The walsender's pid serving the job's slot.
async fn walsender(src: &tokio_postgres::Client) -> Option<i32> {
    src.query_opt("SELECT active_pid FROM pg_replication_slots WHERE active", &[]).await.unwrap().and_then(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_waiting_for_a_held_back_applier_keeps_its_replication_connection() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute("ALTER SYSTEM SET wal_sender_timeout = '2s'").await.unwrap();
    src.batch_execute("SELECT pg_reload_conf(); CREATE TABLE t (id integer PRIMARY KEY, v text)").await.unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    spec.tuning = Some(Tuning { apply_batch_transactions: Some(1), ..Default::default() });
    let (stop, runner) = spawn_job(&pair, &spec, "test/apply-held");
    wait_streaming(&pair).await;
    let mut before = walsender(&src).await;
    for _ in 0..300 {
        if before.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = walsender(&src).await;
    }
    let before = before.expect("the job's walsender");
    // Hold the applier with a lock on its table until the reader's queue is full.
    let mut holder = pair.target().await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE").await.unwrap();
    for i in 0..600 {
        src.execute("INSERT INTO t VALUES ($1, 'v')", &[&i]).await.unwrap();
    }
    // Longer than wal_sender_timeout several times over, with the reader waiting for room.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(walsender(&src).await, Some(before), "the walsender kept the connection");
    lock.rollback().await.unwrap();
    wait_equal(&pair, "t", "t", Duration::from_secs(60)).await;
    assert!(!runner.is_finished(), "the job goes on");
    assert_eq!(walsender(&src).await, Some(before));
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    engine::release("test/apply-held", &spec, &pair.credentials()).await.unwrap();
}
