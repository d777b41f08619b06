//! Corners of the PostgreSQL change stream: a TRUNCATE of a table whose name holds a dot, and
//! an update the target cannot apply (the row is missing and the update does not carry all of
//! it) counted in the job's progress instead of passing unseen.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry::api::{Checkpoint, Progress, TaskType};
use ferry::engine::{self, Job, ProgressSink, Tracker};
use support::{Pair, wait_equal};
use tokio::sync::watch;

/// Keeps the last progress the job reported.
#[derive(Default)]
struct Last(Mutex<Progress>);

impl ProgressSink for Last {
    fn report(&self, progress: &Progress, _: Option<&Checkpoint>) {
        *self.0.lock().unwrap() = progress.clone();
    }
}

async fn wait_streaming(pair: &Pair) {
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tgt.query_opt("SELECT 1 FROM _ferry.jobs WHERE full_done", &[]).await.ok().flatten().is_none() {
        assert!(std::time::Instant::now() < deadline, "the job did not start streaming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_of_a_table_with_a_dot_in_its_name_reaches_the_target() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        r#"CREATE TABLE "odd.name" (id int PRIMARY KEY, v text);
           INSERT INTO "odd.name" SELECT g, 'v' || g FROM generate_series(1, 50) g;"#,
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["odd.name"]);
    let (stop_tx, stop) = watch::channel(false);
    let creds = pair.credentials();
    let job = tokio::spawn(async move {
        let tracker = Tracker::new(Arc::new(Last::default()));
        engine::run(Job { id: "test/dot", spec: &spec, credentials: &creds, tracker, stop }).await
    });
    wait_streaming(&pair).await;
    src.batch_execute(r#"TRUNCATE "odd.name"; INSERT INTO "odd.name" VALUES (7, 'after')"#).await.unwrap();
    wait_equal(&pair, r#""odd.name""#, r#""odd.name""#, Duration::from_secs(30)).await;
    stop_tx.send(true).unwrap();
    job.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_cannot_be_applied_is_counted_in_progress() {
    let pair = Pair::start();
    let src = pair.source().await;
    // `big` is stored out of line (TOASTed): an update that leaves it alone does not send it.
    src.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, n int, big text);
         ALTER TABLE docs ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO docs SELECT g, g, repeat(md5(g::text), 200) FROM generate_series(1, 10) g;",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["docs"]);
    let (stop_tx, stop) = watch::channel(false);
    let creds = pair.credentials();
    let last = Arc::new(Last::default());
    let sink = Arc::clone(&last);
    let job = tokio::spawn(async move {
        let tracker = Tracker::new(sink);
        engine::run(Job { id: "test/missed", spec: &spec, credentials: &creds, tracker, stop }).await
    });
    wait_streaming(&pair).await;
    let tgt = pair.target().await;
    tgt.batch_execute("DELETE FROM docs WHERE id = 3").await.unwrap();
    src.batch_execute("UPDATE docs SET n = 30 WHERE id = 3; UPDATE docs SET n = 40 WHERE id = 4").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n: i32 = tgt.query_one("SELECT n FROM docs WHERE id = 4", &[]).await.unwrap().get(0);
        if n == 40 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the update of row 4 did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted once the batch has committed.
    while last.0.lock().unwrap().skipped_updates == 0 {
        assert!(std::time::Instant::now() < deadline, "the update of the missing row 3 was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.0.lock().unwrap().skipped_updates, 1, "the update of the missing row 3 is counted once");
    stop_tx.send(true).unwrap();
    job.await.unwrap().unwrap();
}
