//! Shared pieces of the MySQL-family engine tests: a pair of throwaway MariaDB servers, job
//! specs over them, running a job in the background, and comparing tables exactly.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ferry::api::{
    DatabaseSelection, Endpoint, Engine, ObjectScope, ObjectSelection, SecretKeyRef, SyncJobSpec, TableSelection,
    TaskType,
};
use ferry::engine::{self, Credentials, EngineError, Job, Tracker, progress::NoProgress};
use ferry::testkit::MariaDbServer;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use tokio::sync::watch;

/// A source and a target server.
pub struct MyPair {
    pub source: MariaDbServer,
    pub target: MariaDbServer,
}

/// The test endpoint for `server` (its Secret key is `password-<port>`).
pub fn endpoint(server: &MariaDbServer) -> Endpoint {
    Endpoint {
        engine: Engine::Mariadb,
        host: server.host().into(),
        port: server.port(),
        database: None,
        user: Some(server.user().into()),
        password_secret_ref: Some(SecretKeyRef { name: "creds".into(), key: format!("password-{}", server.port()) }),
        tls: None,
    }
}

/// The passwords of a source and a target.
pub fn credentials(source: &MariaDbServer, target: &MariaDbServer) -> Credentials {
    Credentials {
        source_password: Some(source.password().to_owned()),
        target_password: Some(target.password().to_owned()),
        ..Default::default()
    }
}

/// A job from `source` to `target` over `tables` of database `shop`.
pub fn job_spec(source: &MariaDbServer, target: &MariaDbServer, task: TaskType, tables: &[&str]) -> SyncJobSpec {
    let mut spec = SyncJobSpec::test().task(task);
    spec.source = endpoint(source);
    spec.target = endpoint(target);
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

impl MyPair {
    pub fn start() -> MyPair {
        MyPair { source: MariaDbServer::start().unwrap(), target: MariaDbServer::start().unwrap() }
    }

    pub async fn source(&self) -> Conn {
        Conn::new(self.source.opts(None)).await.unwrap()
    }

    pub async fn target(&self) -> Conn {
        Conn::new(self.target.opts(None)).await.unwrap()
    }

    pub fn credentials(&self) -> Credentials {
        credentials(&self.source, &self.target)
    }

    /// A job over `tables` of database `shop`.
    pub fn spec(&self, task: TaskType, tables: &[&str]) -> SyncJobSpec {
        job_spec(&self.source, &self.target, task, tables)
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

    /// Runs a job in the background until the returned sender says stop.
    pub fn spawn(
        &self,
        id: &str,
        spec: SyncJobSpec,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<Result<engine::Outcome, EngineError>>) {
        let (stop_tx, stop) = watch::channel(false);
        let credentials = self.credentials();
        let id = id.to_owned();
        let handle = tokio::spawn(async move {
            let tracker = Tracker::new(std::sync::Arc::new(NoProgress));
            engine::run(Job { id: &id, spec: &spec, credentials: &credentials, tracker, stop }).await
        });
        (stop_tx, handle)
    }

    /// Runs a job to its end.
    pub async fn run(&self, id: &str, spec: SyncJobSpec) -> Result<engine::Outcome, EngineError> {
        let (_stop, handle) = self.spawn(id, spec);
        handle.await.unwrap()
    }
}

/// Runs `sql` (several statements allowed).
pub async fn exec(conn: &mut Conn, sql: &str) {
    conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs the `;`-separated statements of `sql` one by one, on a session opened by Ferry's own
/// `connect` (which turns multi-statements off); no statement may hold a `;` of its own.
pub async fn exec_each(conn: &mut Conn, sql: &str) {
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        exec(conn, statement).await;
    }
}

/// Every row of `table`, ordered by all its columns, read through the binary protocol so
/// values keep their exact types (FLOAT as f32, dates as dates).
pub async fn try_rows(conn: &mut Conn, table: &str) -> Result<Vec<Vec<Value>>, String> {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT count(*) FROM information_schema.COLUMNS WHERE concat(TABLE_SCHEMA, '.', TABLE_NAME) = ?",
            (table,),
        )
        .await
        .map_err(|e| e.to_string())?;
    let n = n.unwrap_or(0);
    if n == 0 {
        return Err(format!("{table} does not exist"));
    }
    let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let sql = format!("SELECT * FROM {table} ORDER BY {}", order.join(", "));
    let rows: Vec<Row> = conn.exec(sql, ()).await.map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(Row::unwrap).collect())
}

pub async fn rows(conn: &mut Conn, table: &str) -> Vec<Vec<Value>> {
    try_rows(conn, table).await.unwrap()
}

/// Waits until `target_table` on the target holds exactly the rows of `source_table`.
pub async fn try_wait_equal(
    pair: &MyPair,
    source_table: &str,
    target_table: &str,
    within: Duration,
) -> Result<(), String> {
    let mut src = pair.source().await;
    let mut tgt = pair.target().await;
    let deadline = Instant::now() + within;
    loop {
        let want = rows(&mut src, source_table).await;
        match try_rows(&mut tgt, target_table).await {
            Ok(have) if have == want => return Ok(()),
            Ok(have) if Instant::now() > deadline => {
                let missing: Vec<_> = want.iter().filter(|r| !have.contains(r)).take(5).collect();
                let extra: Vec<_> = have.iter().filter(|r| !want.contains(r)).take(5).collect();
                // Rows with the same first column: which columns differ.
                let diffs: Vec<String> = missing
                    .iter()
                    .filter_map(|m| {
                        let e = extra.iter().find(|e| e.first() == m.first())?;
                        let cols: Vec<String> = m
                            .iter()
                            .zip(e.iter())
                            .enumerate()
                            .filter(|(_, (a, b))| a != b)
                            .map(|(i, (a, b))| {
                                format!("column {}: {:?} vs {:?}", i + 1, a.as_sql(false), b.as_sql(false))
                            })
                            .collect();
                        Some(format!("row {:?}: {}", m.first(), cols.join("; ")))
                    })
                    .collect();
                return Err(format!(
                    "{target_table} differs: {diffs:?}; {} rows vs {} on the source; missing {missing:?}; extra {extra:?}",
                    have.len(),
                    want.len()
                ));
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn wait_equal(pair: &MyPair, source_table: &str, target_table: &str, within: Duration) {
    if let Err(e) = try_wait_equal(pair, source_table, target_table, within).await {
        panic!("{e}");
    }
}

/// Waits until `sql` on the target returns a true first column.
pub async fn wait_for(conn: &mut Conn, sql: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(true)) = conn.query_first::<bool, _>(sql).await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the full transfer is done (every later source change reaches the target through
/// the stream); fails with the job's error if
/// it ends first.
pub async fn wait_streaming(conn: &mut Conn, job: &mut tokio::task::JoinHandle<Result<engine::Outcome, EngineError>>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if job.is_finished() {
            panic!("the job ended before streaming: {:?}", job.await.unwrap());
        }
        let sql = "SELECT full_done FROM _ferry.jobs";
        if let Ok(Some(true)) = conn.query_first::<bool, _>(sql).await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for the job to stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
