//! Shared pieces of the PostgreSQL engine tests: a source and a target server, a job spec
//! pointing at them, and row-by-row comparison.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ferry::api::{
    DatabaseSelection, Endpoint, ObjectScope, ObjectSelection, SchemaSelection, SyncJobSpec, TableSelection, TaskType,
};
use ferry::engine::Credentials;
use ferry::testkit::PostgresServer;
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
