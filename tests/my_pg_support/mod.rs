//! Shared pieces of the MySQL/MariaDB → PostgreSQL tests: a throwaway MariaDB source and
//! PostgreSQL target, job specs and `ferry run` manifests over them, and waits on the target's
//! state. A test file using it declares `mod runner;` too.

#![allow(dead_code)]

use ferry::api::{
    DatabaseSelection, Endpoint, Engine, ObjectScope, ObjectSelection, SecretKeyRef, SyncJobSpec, TableSelection,
    TaskType,
};
use ferry::engine::{self, Credentials, EngineError, Job, Outcome, Tracker, progress::NoProgress};
use ferry::testkit::{MariaDbServer, PostgresServer};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio_postgres::{Client, NoTls};

use crate::runner::Runner;

/// A job running in the background: the sender that stops it, and its result.
pub type Running = (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<Result<Outcome, EngineError>>);

/// A MariaDB source and a PostgreSQL target (with a database `shop`).
pub struct Servers {
    pub source: MariaDbServer,
    pub target: PostgresServer,
}

impl Servers {
    pub fn start() -> Servers {
        let (source, target) = std::thread::scope(|scope| {
            let target = scope.spawn(|| {
                let pg = PostgresServer::start().expect("target PostgreSQL");
                pg.create_database("shop").expect("target database");
                pg
            });
            (MariaDbServer::start().expect("source MariaDB"), target.join().expect("starting PostgreSQL"))
        });
        Servers { source, target }
    }

    pub async fn source(&self) -> Conn {
        Conn::new(self.source.opts(None)).await.unwrap()
    }

    pub async fn target(&self) -> Client {
        let (client, conn) = self.target.config("shop").connect(NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
        client
    }

    pub fn credentials(&self) -> Credentials {
        Credentials {
            source_password: Some(self.source.password().to_owned()),
            target_password: Some(self.target.password().to_owned()),
            ..Default::default()
        }
    }

    /// A FULL_TRANS job over `tables` of MariaDB database `shop`, into schema `shop` of
    /// PostgreSQL database `shop`.
    pub fn spec(&self, tables: &[&str]) -> SyncJobSpec {
        let mut spec = SyncJobSpec::test().task(TaskType::FullTrans);
        spec.source = Endpoint {
            engine: Engine::Mariadb,
            host: self.source.host().into(),
            port: self.source.port(),
            database: None,
            user: Some(self.source.user().into()),
            password_secret_ref: Some(SecretKeyRef {
                name: "creds".into(),
                key: format!("password-{}", self.source.port()),
            }),
            tls: None,
        };
        spec.target = Endpoint {
            host: self.target.host().into(),
            user: Some(self.target.user().into()),
            ..Endpoint::test_postgres(self.target.port())
        };
        spec.objects = ObjectSelection {
            scope: ObjectScope::Table,
            target_database: None,
            databases: vec![DatabaseSelection {
                name: "shop".into(),
                tables: tables.iter().map(|t| TableSelection { name: (*t).into(), ..Default::default() }).collect(),
                ..Default::default()
            }],
        };
        spec
    }

    /// Runs a job in this process to its end.
    pub async fn run(&self, id: &str, spec: &SyncJobSpec) -> Result<Outcome, EngineError> {
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let credentials = self.credentials();
        let tracker = Tracker::new(std::sync::Arc::new(NoProgress));
        engine::run(Job { id, spec, credentials: &credentials, tracker, stop }).await
    }

    /// Runs a job of `spec` in the background: the sender that stops it, and its result.
    pub fn spawn(&self, id: &'static str, spec: &SyncJobSpec) -> Running {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (spec, credentials) = (spec.clone(), self.credentials());
        let job = tokio::spawn(async move {
            let tracker = Tracker::new(std::sync::Arc::new(NoProgress));
            engine::run(Job { id, spec: &spec, credentials: &credentials, tracker, stop }).await
        });
        (stop_tx, job)
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

pub async fn exec(conn: &mut Conn, sql: &str) {
    conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Waits until `sql` returns true on the target, while `runner` (a `ferry run` process) keeps
/// running; fails with its log if it exits or 90 seconds pass first.
pub async fn until(runner: &mut Runner, pg: &Client, sql: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        runner.assert_running();
        if let Ok(row) = pg.query_one(sql, &[]).await
            && row.get::<_, Option<bool>>(0) == Some(true)
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {sql}:\n{}", runner.log());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until `sql` returns true on the target; fails with the job's error if it ends first.
pub async fn wait_for(pg: &Client, sql: &str, job: &mut tokio::task::JoinHandle<Result<Outcome, EngineError>>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        if job.is_finished() {
            panic!("the job ended while waiting for {sql}: {:?}", job.await.unwrap());
        }
        if let Ok(row) = pg.query_one(sql, &[]).await
            && row.get::<_, Option<bool>>(0) == Some(true)
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {sql}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Each column of a target table with its type as PostgreSQL writes it, in column order.
pub async fn column_types(pg: &Client, table: &str) -> Vec<(String, String)> {
    pg.query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}
