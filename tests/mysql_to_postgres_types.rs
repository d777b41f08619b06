//! MariaDB → PostgreSQL against real servers: what the job's spec decides of types and values
//! beyond the fixed mapping. `policy.zeroDates` (`null`, `sentinel`, `stop`) in nullable and
//! NOT NULL columns, through the full transfer and the change stream alike, and a content
//! comparison that follows the policy; `columns.targetTypes` validated, prechecked, in the copy,
//! the stream and the comparison; and `target.caseSensitiveKeys`, the precheck of keys that
//! ignore case on the source.

mod my_pg_support;
mod runner;

use std::time::Duration;

use ferry::api::{CompareResult, SyncJobSpec, TaskType, ZeroDatePolicy};
use ferry::compare::{self, Options};
use ferry::engine::{self, EngineError, Job, Outcome, Tracker, progress::NoProgress};
use my_pg_support::{Servers, column_types, exec, wait_for};
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

/// `shop.items` with a column for each common override, two rows.
const ITEMS: &str = r#"
    SET SESSION time_zone = '+00:00'; CREATE DATABASE shop; USE shop;
    CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, flag tinyint(1) NOT NULL DEFAULT 0, payload json,
        price int, name varchar(20), at datetime, st enum('a','b'), n bigint);
    INSERT INTO items VALUES (1, 1, '{"b": 1, "a": [1, 2]}', 1250, 'Alice', '2024-01-02 03:04:05', 'a', 7),
        (2, 0, NULL, NULL, 'bob', NULL, 'b', NULL);
"#;

/// The overrides of `shop.items`.
fn overrides(spec: &mut SyncJobSpec, types: &[(&str, &str)]) {
    spec.objects.databases[0].tables[0].columns = Some(ferry::api::ColumnSelection {
        target_types: types.iter().map(|(c, t)| ((*c).to_owned(), (*t).to_owned())).collect(),
        ..Default::default()
    });
}

const ITEM_TYPES: [(&str, &str); 6] = [
    ("flag", "boolean"),
    ("payload", "text"),
    ("price", "numeric(12,2)"),
    ("name", "public.citext"),
    ("at", "timestamptz"),
    ("n", "numeric"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_types_replace_the_mapping_in_the_copy_and_the_stream_and_compare_equal() {
    let servers = Servers::start();
    exec(&mut servers.source().await, ITEMS).await;
    let mut spec = servers.spec(&["items"]);
    spec.task_type = TaskType::FullIncrTrans;
    overrides(&mut spec, &ITEM_TYPES);
    assert_eq!(ferry::api::Validate::validate(&spec), vec![]);
    let pg = servers.target().await;
    // Without the extension the target does not know citext: the precheck says so.
    let items = engine::precheck(&spec, &servers.credentials()).await;
    let types = items.iter().find(|i| i.item == "target.types").unwrap();
    assert_eq!(types.result, ferry::api::PrecheckResult::Failed, "{types:?}");
    let reason = types.reason.as_deref().unwrap();
    assert!(
        reason.contains("column name of shop.items: the target server does not know the type \"public.citext\""),
        "{reason}"
    );
    assert!(!reason.contains("boolean"), "{reason}");
    assert!(types.fix.as_deref().unwrap().contains("CREATE EXTENSION citext"), "{types:?}");
    pg.batch_execute("CREATE EXTENSION citext").await.unwrap();
    let items = engine::precheck(&spec, &servers.credentials()).await;
    assert!(items.iter().all(|i| i.result != ferry::api::PrecheckResult::Failed), "{items:?}");

    let mut job = start(&servers, "types", &spec);
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    exec(
        &mut servers.source().await,
        "SET SESSION time_zone = '+00:00';
         INSERT INTO shop.items VALUES (3, 1, '[1]', 99, 'Carol', '2030-01-01 00:00:00', 'b', 5);
         UPDATE shop.items SET flag = 1, price = 7 WHERE id = 2;",
    )
    .await;
    wait_for(&pg, "SELECT count(*) = 3 AND bool_and(flag) FROM shop.items", &mut job).await;
    let types = column_types(&pg, "shop.items").await;
    let want: Vec<(String, String)> = [
        ("id", "integer"),
        ("flag", "boolean"),
        ("payload", "text"),
        ("price", "numeric(12,2)"),
        ("name", "citext"),
        ("at", "timestamp with time zone"),
        ("st", "text"),
        ("n", "numeric"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(types, want);
    let rows: Vec<String> = pg
        .query("SELECT concat_ws('|', id, flag, payload, price, name, at, st, n) FROM shop.items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [
            r#"1|t|{"b": 1, "a": [1, 2]}|1250.00|Alice|2024-01-02 03:04:05+00|a|7"#,
            "2|t|7.00|bob|b",
            "3|t|[1]|99.00|Carol|2030-01-01 00:00:00+00|b|5",
        ]
    );
    // citext compares case-insensitively; the ENUM's CHECK stays on its text override.
    let alice: i64 = pg.query_one("SELECT count(*) FROM shop.items WHERE name = 'ALICE'", &[]).await.unwrap().get(0);
    assert_eq!(alice, 1);
    assert!(pg.execute("UPDATE shop.items SET st = 'c' WHERE id = 1", &[]).await.is_err());
    let report = compared(&servers, &spec, ZeroDatePolicy::Null).await;
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    // A real difference in an overridden column is still seen.
    pg.batch_execute("UPDATE shop.items SET price = 99.01 WHERE id = 3").await.unwrap();
    let report = compared(&servers, &spec, ZeroDatePolicy::Null).await;
    assert_eq!(report.tables[0].different_rows, Some(1), "{report:#?}");
    pg.batch_execute("UPDATE shop.items SET price = 99 WHERE id = 3").await.unwrap();

    // A value the overriding type cannot take stops the stream, naming the table and column.
    exec(&mut servers.source().await, "UPDATE shop.items SET flag = 5 WHERE id = 1").await;
    let e = failure(job).await;
    assert!(e.contains("shop.items") && e.contains("boolean"), "{e}");
    assert!(!e.contains("\"5\""), "a row value in an error the job does not let row values into: {e}");
}

#[tokio::test]
async fn a_value_the_target_type_cannot_take_stops_the_copy_and_unknown_columns_stop_the_precheck() {
    let servers = Servers::start();
    exec(&mut servers.source().await, ITEMS).await;
    exec(&mut servers.source().await, "UPDATE shop.items SET flag = 7 WHERE id = 2").await;
    let pg = servers.target().await;
    let mut spec = servers.spec(&["items"]);
    overrides(&mut spec, &[("flag", "boolean"), ("nope", "text"), ("price", "no_such_type")]);
    let items = engine::precheck(&spec, &servers.credentials()).await;
    let types = items.iter().find(|i| i.item == "target.types").unwrap();
    assert_eq!(types.result, ferry::api::PrecheckResult::Failed, "{types:?}");
    let reason = types.reason.as_deref().unwrap();
    assert!(reason.contains("columns.targetTypes of shop.items names column nope"), "{reason}");
    assert!(
        reason.contains("column price of shop.items: the target server does not know the type \"no_such_type\""),
        "{reason}"
    );
    let e = servers.run("unknown", &spec).await.unwrap_err().to_string();
    assert!(e.contains("columns.targetTypes of shop.items names column nope"), "{e}");
    let created: i64 =
        pg.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'shop'", &[]).await.unwrap().get(0);
    assert_eq!(created, 0, "a table was created before the job stopped");

    overrides(&mut spec, &[("flag", "boolean")]);
    let e = servers.run("bad-value", &spec).await.unwrap_err().to_string();
    assert!(e.contains("shop.items") && e.contains("column flag") && e.contains("boolean"), "{e}");
    assert!(!e.contains("\"7\""), "a row value in an error the job does not let row values into: {e}");
    let rows: i64 = pg.query_one("SELECT count(*) FROM shop.items", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "the failed chunk left rows behind");
}

#[test]
fn target_types_are_validated_as_plain_type_names_on_their_pair_only() {
    use ferry::api::{Engine, Validate};
    let mut spec = SyncJobSpec::test();
    spec.source.engine = Engine::Mariadb;
    spec.objects.databases[0].tables = spec.objects.databases[0].schemas[0].tables.clone();
    spec.objects.databases[0].schemas.clear();
    let path = "spec.objects.databases[0].tables[0].columns.targetTypes";
    for hostile in ["text; DROP TABLE x", "int) --", "text DEFAULT 1", "\"text\"", "numeric(1,2,3)", "text /* */", ""] {
        let mut s = spec.clone();
        s.objects.databases[0].tables[0].columns = Some(ferry::api::ColumnSelection {
            target_types: [("flag".to_owned(), hostile.to_owned())].into(),
            ..Default::default()
        });
        let errors = s.validate();
        assert!(
            errors.iter().any(|e| e.path == format!("{path}.flag") && !e.message.is_empty()),
            "{hostile:?} was taken: {errors:?}"
        );
    }
    let mut s = spec.clone();
    s.objects.databases[0].tables[0].columns = Some(ferry::api::ColumnSelection {
        exclude: vec!["flag".into()],
        target_types: [("flag".to_owned(), "boolean".to_owned())].into(),
        ..Default::default()
    });
    assert!(s.validate().iter().any(|e| e.path == format!("{path}.flag") && e.message.contains("excluded")));
    s.objects.databases[0].tables[0].columns.as_mut().unwrap().exclude.clear();
    assert_eq!(s.validate(), vec![]);
    s.source.engine = Engine::Postgresql;
    s.objects = SyncJobSpec::test().objects;
    s.objects.databases[0].schemas[0].tables[0].columns = Some(ferry::api::ColumnSelection {
        target_types: [("flag".to_owned(), "boolean".to_owned())].into(),
        ..Default::default()
    });
    let errors = s.validate();
    assert!(
        errors.iter().any(|e| e.path == "spec.objects.databases[0].schemas[0].tables[0].columns.targetTypes"
            && e.message.contains("MySQL/MariaDB → PostgreSQL jobs only")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn keys_that_ignore_case_on_the_source_raise_an_alarm_and_citext_keys_are_checked_on_the_data() {
    use ferry::api::PrecheckResult;
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE users (id int PRIMARY KEY, email varchar(40) COLLATE utf8mb4_general_ci NOT NULL,
             code varchar(10) COLLATE utf8mb4_bin NOT NULL, n int, UNIQUE KEY by_email (email),
             UNIQUE KEY by_code (code), UNIQUE KEY by_n (n)) DEFAULT CHARSET = utf8mb4;
         INSERT INTO users VALUES (1, 'ann@x', 'secret-a', 1), (2, 'Bob@x', 'SECRET-A', 2), (3, 'cy@x', 'c', 3);",
    )
    .await;
    servers.target().await.batch_execute("CREATE EXTENSION citext").await.unwrap();
    let keys = |items: Vec<ferry::api::PrecheckItem>| {
        items.into_iter().find(|i| i.item == "target.caseSensitiveKeys").expect("the item")
    };
    // No override: the _ci key is an alarm, the _bin one and the integer ones are not.
    let spec = servers.spec(&["users"]);
    let item = keys(engine::precheck(&spec, &servers.credentials()).await);
    assert_eq!(item.result, PrecheckResult::Alarm, "{item:?}");
    let reason = item.reason.unwrap();
    assert!(reason.contains("unique key by_email (email) of shop.users: email (utf8mb4_general_ci)"), "{reason}");
    assert!(!reason.contains("by_code") && !reason.contains("by_n") && !reason.contains("primary"), "{reason}");
    assert!(item.fix.unwrap().contains("citext"));
    // The _ci column made citext: the data has no collision, the alarm is answered.
    let mut spec = servers.spec(&["users"]);
    overrides(&mut spec, &[("email", "public.citext")]);
    let item = keys(engine::precheck(&spec, &servers.credentials()).await);
    assert_eq!(item.result, PrecheckResult::Passed, "{item:?}");
    // The _bin column made citext: two values differ only in case, so the key cannot hold.
    overrides(&mut spec, &[("email", "public.citext"), ("code", "public.citext")]);
    let item = keys(engine::precheck(&spec, &servers.credentials()).await);
    assert_eq!(item.result, PrecheckResult::Failed, "{item:?}");
    let reason = item.reason.unwrap();
    assert!(reason.contains("unique key by_code (code) of shop.users: 1 value(s)"), "{reason}");
    assert!(!reason.to_lowercase().contains("secret"), "values in the reason: {reason}");
}
