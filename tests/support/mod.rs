//! Shared pieces of the PostgreSQL engine tests: a source and a target server, a job spec
//! pointing at them, and row-by-row comparison.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ferry::api::{
    DatabaseSelection, Endpoint, ObjectScope, ObjectSelection, SchemaSelection, SyncJobSpec, TableSelection, TaskType,
};
use ferry::engine::Credentials;
use ferry::testkit::{PostgresOptions, PostgresServer};
use tokio_postgres::{Client, NoTls};

/// A source and a target PostgreSQL, each with a database `shop`.
pub struct Pair {
    pub source: PostgresServer,
    pub target: PostgresServer,
}

impl Pair {
    pub fn start() -> Pair {
        let source = PostgresServer::start().expect("source PostgreSQL");
        let target = PostgresServer::start().expect("target PostgreSQL");
        source.create_database("shop").expect("source database");
        target.create_database("shop").expect("target database");
        Pair { source, target }
    }

    /// A source running PostgreSQL `source` and a target running `target` (major versions),
    /// started side by side.
    pub fn start_versions(source: u32, target: u32) -> Pair {
        let start = |major: u32| {
            let server = PostgresServer::start_with(PostgresOptions::version(major))
                .unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}"));
            server.create_database("shop").unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}"));
            server
        };
        let (source, target) = std::thread::scope(|scope| {
            let target = scope.spawn(|| start(target));
            let source = start(source);
            (source, target.join().expect("starting the target"))
        });
        Pair { source, target }
    }

    pub async fn source(&self) -> Client {
        connect(&self.source).await
    }

    pub async fn target(&self) -> Client {
        connect(&self.target).await
    }

    pub fn credentials(&self) -> Credentials {
        Credentials {
            source_password: Some(self.source.password().to_owned()),
            target_password: Some(self.target.password().to_owned()),
            ..Default::default()
        }
    }

    /// A job over `tables` of schema `public` in `shop`.
    pub fn spec(&self, task: TaskType, tables: &[&str]) -> SyncJobSpec {
        let mut spec = SyncJobSpec::test().task(task);
        spec.source = endpoint(&self.source);
        spec.target = endpoint(&self.target);
        spec.objects = ObjectSelection {
            scope: ObjectScope::Table,
            target_database: None,
            databases: vec![DatabaseSelection {
                name: "shop".into(),
                schemas: vec![SchemaSelection {
                    name: "public".into(),
                    tables: tables.iter().map(|t| TableSelection { name: (*t).into(), ..Default::default() }).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        spec
    }

    /// A job over `tables` of schema `public` in database `database` of both servers (which
    /// must exist; `start` creates only `shop`).
    pub fn spec_in(&self, database: &str, task: TaskType, tables: &[&str]) -> SyncJobSpec {
        let mut spec = self.spec(task, tables);
        spec.source.database = Some(database.into());
        spec.target.database = Some(database.into());
        for selected in &mut spec.objects.databases {
            selected.name = database.into();
        }
        spec
    }

    /// The manifest `ferry run` reads for `spec`, with its Secret.
    pub fn manifest(&self, name: &str, spec: &SyncJobSpec) -> String {
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "stringData": {
                format!("password-{}", self.source.port()): self.source.password(),
                format!("password-{}", self.target.port()): self.target.password(),
            }
        });
        let job = serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob", "metadata": {"name": name, "namespace": "test"},
            "spec": spec,
        });
        format!("{}---\n{}", serde_yaml::to_string(&secret).unwrap(), serde_yaml::to_string(&job).unwrap())
    }
}

/// The test endpoint for `server` (its Secret key is `password-<port>`).
pub fn endpoint(server: &PostgresServer) -> Endpoint {
    Endpoint { host: server.host().into(), user: Some(server.user().into()), ..Endpoint::test_postgres(server.port()) }
}

pub async fn connect(server: &PostgresServer) -> Client {
    let (client, conn) = server.config("shop").connect(NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Every row of `table` as its text form, ordered by the whole row: equal lists mean equal
/// tables, with duplicates counted.
pub async fn rows(client: &Client, table: &str) -> Vec<String> {
    try_rows(client, table).await.unwrap_or_else(|e| panic!("{e}"))
}

/// As [`rows`], with the error (e.g. the table does not exist yet).
pub async fn try_rows(client: &Client, table: &str) -> Result<Vec<String>, String> {
    // An alias no column is called, so it names the row.
    let sql = format!("SELECT ferry_row_::text FROM {table} AS ferry_row_ ORDER BY 1");
    let rows = client.query(&sql, &[]).await.map_err(|e| format!("{sql}: {e:?}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Waits until `source_table` on the source and `target_table` on the target hold the same rows.
pub async fn wait_equal(pair: &Pair, source_table: &str, target_table: &str, within: Duration) {
    if let Err(e) = try_wait_equal(pair, source_table, target_table, within).await {
        panic!("{e}");
    }
}

/// As [`wait_equal`], returning what differs instead of panicking.
pub async fn try_wait_equal(
    pair: &Pair,
    source_table: &str,
    target_table: &str,
    within: Duration,
) -> Result<(), String> {
    let (s, t) = (pair.source().await, pair.target().await);
    let deadline = Instant::now() + within;
    loop {
        let a = rows(&s, source_table).await;
        let b = try_rows(&t, target_table).await.unwrap_or_default();
        if a == b {
            return Ok(());
        }
        if Instant::now() > deadline {
            let only_source: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
            let only_target: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
            return Err(format!(
                "{source_table} and {target_table} still differ after {within:?}: {} vs {} rows; only in source {only_source:?}; only in target {only_target:?}",
                a.len(),
                b.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Replication slots left on the server.
pub async fn slots(client: &Client) -> Vec<String> {
    client.query("SELECT slot_name FROM pg_replication_slots", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// Publications left on the server.
pub async fn publications(client: &Client) -> Vec<String> {
    client.query("SELECT pubname FROM pg_publication", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// A table with a column of every common type (built-in, enum, arrays; `big` is TOASTed).
pub const TYPES: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE types (
        id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, num numeric, num_big numeric(40,20), f4 float4, f8 float8,
        b bool, t text, vc varchar(20), c char(5), by bytea, u uuid, j json, jb jsonb, d date, tm time, tmtz timetz,
        ts timestamp, tstz timestamptz, iv interval, ip inet, net cidr, mac macaddr, arr int[], tarr text[],
        m mood, marr mood[], big text);";

/// Three rows of [`TYPES`]: extremes and special values, empty values, NULLs.
pub const TYPE_ROWS: &str = "
    INSERT INTO types VALUES
    (1, -32768, -2147483648, -9223372036854775808, 'NaN', 12345678901234567890.12345678901234567890, 'Infinity',
     '-Infinity', true, 'tëxt ✓ 😀 \\ \" ''', 'vc', 'ab', '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{\"b\": 1, \"a\": [1, 2]}', '{\"b\": 1, \"a\": [1, 2]}', '2024-02-29', '23:59:59.999999', '12:00:00+05:30',
     '2024-01-01 12:34:56.789012', '2024-06-01 12:00:00+05:30', '1 year 2 mons 3 days 04:05:06.789',
     '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '{1,NULL,3}', '{\"a b\",\"c,d\",NULL}', 'happy',
     '{sad,ok}', repeat('toast ', 20000)),
    (2, 32767, 2147483647, 9223372036854775807, -0.000000000000000000001, -1.5, 'NaN', 0.1, false, '', '',
     '', '\\x', '00000000-0000-0000-0000-000000000000', 'null', '[]', '0001-01-01', '00:00', '00:00:00-12',
     '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', '-1 days', '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff',
     '{}', '{}', 'sad', '{}', ''),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);";
