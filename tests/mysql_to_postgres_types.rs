//! MariaDB → PostgreSQL against real servers: what the job's spec decides of types and values
//! beyond the fixed mapping. `policy.zeroDates` (`null`, `sentinel`, `stop`) in nullable and
//! NOT NULL columns, through the full transfer and the change stream alike, and a content
//! comparison that follows the policy.

mod my_pg_support;

use std::time::Duration;

use ferry::api::{CompareResult, SyncJobSpec, TaskType, ZeroDatePolicy};
use ferry::compare::{self, Options};
use ferry::engine::{self, EngineError, Job, Outcome, Tracker, progress::NoProgress};
use my_pg_support::{Servers, exec, wait_for};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// `shop.dates`: zero dates of each kind (`0000-00-00`, a zero month, a zero datetime, a zero
/// TIMESTAMP) in nullable columns, and with `not_null_zero` in the NOT NULL ones too.
fn dates_table(not_null_zero: bool) -> String {
    let (dn, dtn) = if not_null_zero {
        ("'2024-00-01'", "'0000-00-00 00:00:00'")
    } else {
        ("'2024-01-01'", "'2024-01-01 10:00:00'")
    };
    format!(
        "SET SESSION sql_mode = '', time_zone = '+00:00'; CREATE DATABASE shop; USE shop;
         CREATE TABLE dates (id int PRIMARY KEY, d date NULL, dn date NOT NULL, dt datetime(3) NULL,
             dtn datetime NOT NULL, ts timestamp NULL);
         INSERT INTO dates VALUES
             (1, '2024-02-29', '2024-02-29', '2024-02-29 12:00:00.5', '2024-02-29 12:00:00', '2024-02-29 12:00:00'),
             (2, '0000-00-00', {dn}, '0000-00-00 00:00:00', {dtn}, '0000-00-00 00:00:00'),
             (3, '2024-00-01', '2024-01-01', '2024-02-00 10:00:00', '2024-01-01 10:00:00', NULL);"
    )
}

/// The columns of `shop.dates` on the target as text, ordered by id.
async fn dates(pg: &Client) -> Vec<Vec<Option<String>>> {
    pg.query("SELECT d::text, dn::text, dt::text, dtn::text, ts::text FROM shop.dates ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..5).map(|i| r.get(i)).collect())
        .collect()
}

fn spec(servers: &Servers, task: TaskType, policy: Option<ZeroDatePolicy>) -> SyncJobSpec {
    let mut spec = servers.spec(&["dates"]);
    spec.task_type = task;
    spec.policy.zero_dates = policy;
    spec
}

/// Starts `spec` as job `id` in the background.
fn start(servers: &Servers, id: &'static str, spec: &SyncJobSpec) -> JoinHandle<Result<Outcome, EngineError>> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let credentials = servers.credentials();
    let spec = spec.clone();
    tokio::spawn(async move {
        // Held for the job's life: dropping it would tell the job to stop.
        let _stop_tx = stop_tx;
        let tracker = Tracker::new(std::sync::Arc::new(NoProgress));
        engine::run(Job { id, spec: &spec, credentials: &credentials, tracker, stop }).await
    })
}

/// The error the job ended with.
async fn failure(job: JoinHandle<Result<Outcome, EngineError>>) -> String {
    match tokio::time::timeout(Duration::from_secs(60), job).await.expect("the job did not stop").unwrap() {
        Ok(outcome) => panic!("the job ended with {outcome:?}, not an error"),
        Err(e) => e.to_string(),
    }
}

/// A content comparison of the job's tables, with zero dates read as `policy` writes them.
async fn compared(servers: &Servers, spec: &SyncJobSpec, policy: ZeroDatePolicy) -> compare::Report {
    let opts = Options { zero_dates: policy, ..Options::content(100) };
    compare::run(&spec.source, &spec.target, &spec.objects, &servers.credentials(), opts).await.unwrap()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_dates_become_null_where_nullable_and_stop_the_job_in_a_not_null_column() {
    let servers = Servers::start();
    exec(&mut servers.source().await, &dates_table(false)).await;
    // No policy given is the policy null.
    let spec = spec(&servers, TaskType::FullIncrTrans, None);
    let mut job = start(&servers, "null", &spec);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    exec(
        &mut servers.source().await,
        "SET SESSION sql_mode = '', time_zone = '+00:00';
         INSERT INTO shop.dates VALUES (4, '0000-00-00', '2024-01-01', '2024-00-01 00:00:00', '2024-01-01 00:00:00',
             '0000-00-00 00:00:00');",
    )
    .await;
    wait_for(&pg, "SELECT EXISTS (SELECT FROM shop.dates WHERE id = 4)", &mut job).await;
    let n = None;
    assert_eq!(
        dates(&pg).await,
        vec![
            vec![
                s("2024-02-29"),
                s("2024-02-29"),
                s("2024-02-29 12:00:00.5"),
                s("2024-02-29 12:00:00"),
                s("2024-02-29 12:00:00+00")
            ],
            vec![n.clone(), s("2024-01-01"), n.clone(), s("2024-01-01 10:00:00"), n.clone()],
            vec![n.clone(), s("2024-01-01"), n.clone(), s("2024-01-01 10:00:00"), n.clone()],
            vec![n.clone(), s("2024-01-01"), n.clone(), s("2024-01-01 00:00:00"), n.clone()],
        ]
    );
    let report = compared(&servers, &spec, ZeroDatePolicy::Null).await;
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    // A zero date in a NOT NULL column stops the stream, naming the table, column and key column.
    exec(
        &mut servers.source().await,
        "SET SESSION sql_mode = ''; INSERT INTO shop.dates (id, dn, dtn) VALUES (5, '2024-01-01', '0000-00-00');",
    )
    .await;
    let e = failure(job).await;
    assert!(e.contains("column dtn of shop.dates holds the zero date '0000-00-00 00:00:00"), "{e}");
    assert!(e.contains("is NOT NULL") && e.contains("key (id)"), "{e}");
    // And the full transfer of such a row.
    let spec = self::spec(&servers, TaskType::FullTrans, Some(ZeroDatePolicy::Null));
    pg.batch_execute("DROP SCHEMA shop CASCADE; DROP SCHEMA _ferry CASCADE").await.unwrap();
    let e = servers.run("null-full", &spec).await.unwrap_err().to_string();
    assert!(e.contains("column dtn of shop.dates holds the zero date '0000-00-00 00:00:00'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_policy_writes_minus_infinity_in_every_column_and_compares_equal() {
    let servers = Servers::start();
    exec(&mut servers.source().await, &dates_table(true)).await;
    exec(
        &mut servers.source().await,
        "USE shop; CREATE TABLE defaults (id int PRIMARY KEY, d date NOT NULL DEFAULT '0000-00-00');",
    )
    .await;
    let mut spec = spec(&servers, TaskType::FullIncrTrans, Some(ZeroDatePolicy::Sentinel));
    spec.objects.databases[0].tables.push(ferry::api::TableSelection { name: "defaults".into(), ..Default::default() });
    let mut job = start(&servers, "sentinel", &spec);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    exec(
        &mut servers.source().await,
        "SET SESSION sql_mode = '', time_zone = '+00:00';
         INSERT INTO shop.dates VALUES (4, '0000-00-00', '2024-00-00', '2024-00-01 00:00:00', '0000-00-00 00:00:00',
             '0000-00-00 00:00:00');",
    )
    .await;
    wait_for(&pg, "SELECT EXISTS (SELECT FROM shop.dates WHERE id = 4)", &mut job).await;
    let inf = s("-infinity");
    assert_eq!(
        dates(&pg).await,
        vec![
            vec![
                s("2024-02-29"),
                s("2024-02-29"),
                s("2024-02-29 12:00:00.5"),
                s("2024-02-29 12:00:00"),
                s("2024-02-29 12:00:00+00")
            ],
            vec![inf.clone(), inf.clone(), inf.clone(), inf.clone(), inf.clone()],
            vec![inf.clone(), s("2024-01-01"), inf.clone(), s("2024-01-01 10:00:00"), None],
            vec![inf.clone(), inf.clone(), inf.clone(), inf.clone(), inf.clone()],
        ]
    );
    // The zero-date default became the sentinel.
    let row = pg.query_one("INSERT INTO shop.defaults (id) VALUES (1) RETURNING d::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "-infinity");
    pg.batch_execute("DELETE FROM shop.defaults").await.unwrap();
    // Compared as the policy writes them: equal; read as the policy null would, they differ.
    let report = compared(&servers, &spec, ZeroDatePolicy::Sentinel).await;
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    let report = compared(&servers, &spec, ZeroDatePolicy::Null).await;
    assert_eq!(report.tables[0].different_rows, Some(3), "{report:#?}");
    job.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_policy_stops_at_the_first_zero_date_even_in_a_nullable_column() {
    let servers = Servers::start();
    exec(&mut servers.source().await, &dates_table(false)).await;
    let pg = servers.target().await;
    let spec = spec(&servers, TaskType::FullTrans, Some(ZeroDatePolicy::Stop));
    let e = servers.run("stop-full", &spec).await.unwrap_err().to_string();
    assert!(e.contains("column d of shop.dates holds the zero date '0000-00-00'"), "{e}");
    assert!(e.contains("spec.policy.zeroDates is stop") && e.contains("the row with key (id)"), "{e}");
    assert!(!e.contains("= (2)"), "a key value in an error the job does not let row values into: {e}");
    let rows: i64 = pg.query_one("SELECT count(*) FROM shop.dates", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "the failed chunk left rows behind");

    // The stream: a clean copy, then a zero date in a nullable column.
    pg.batch_execute("DROP SCHEMA shop CASCADE; DROP SCHEMA _ferry CASCADE").await.unwrap();
    exec(&mut servers.source().await, "DELETE FROM shop.dates WHERE id > 1").await;
    let spec = self::spec(&servers, TaskType::FullIncrTrans, Some(ZeroDatePolicy::Stop));
    let mut job = start(&servers, "stop-stream", &spec);
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    let report = compared(&servers, &spec, ZeroDatePolicy::Stop).await;
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    exec(
        &mut servers.source().await,
        "SET SESSION sql_mode = '';
         INSERT INTO shop.dates VALUES (2, '2024-01-01', '2024-01-01', '2024-05-00 00:00:00', '2024-01-01', NULL);",
    )
    .await;
    let e = failure(job).await;
    assert!(e.contains("column dt of shop.dates holds the zero date '2024-05-00 00:00:00"), "{e}");
    assert!(e.contains("spec.policy.zeroDates is stop") && e.contains("key (id)"), "{e}");
    let rows: i64 = pg.query_one("SELECT count(*) FROM shop.dates", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1, "the row with the zero date was applied");
}

#[test]
fn the_zero_date_policy_is_refused_on_other_pairs() {
    use ferry::api::{Engine, Validate};
    let mut spec = SyncJobSpec::test();
    spec.policy.zero_dates = Some(ZeroDatePolicy::Sentinel);
    let errors = spec.validate();
    assert!(
        errors.iter().any(|e| e.path == "spec.policy.zeroDates" && e.message.contains("MySQL/MariaDB → PostgreSQL")),
        "{errors:?}"
    );
    spec.source.engine = Engine::Mariadb;
    spec.target.engine = Engine::Mariadb;
    assert!(spec.validate().iter().any(|e| e.path == "spec.policy.zeroDates"), "{:?}", spec.validate());
}
