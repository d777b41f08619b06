//! TLS on every connection a job makes, against throwaway servers started with TLS on and
//! certificates made by the test: each mode connects where it should, each failure (TLS off on
//! the server, a CA that did not sign the certificate, a host name the certificate does not
//! carry, a missing or foreign client certificate) is told apart on the SQL connection and on
//! the replication connection, and the precheck says which with its fix. Then a full +
//! incremental job and a compare run with `verify-full` against servers that refuse plain
//! text, one of them also demanding a client certificate, for both engines.

mod my_support;
mod support;

use std::time::{Duration, Instant};

use ferry::api::{Endpoint, PrecheckResult, TaskType, TlsConfig, TlsMode};
use ferry::compare::{self, Options};
use ferry::engine::postgres::{connect as pg_connect, stream};
use ferry::engine::tls::TlsMaterial;
use ferry::engine::{Credentials, EngineError, Side};
use ferry::testkit::{MariaDbOptions, MariaDbServer, PostgresOptions, PostgresServer, ServerTls, TLS_HOST, TestPki};
use mysql_async::prelude::Queryable;

fn pki() -> TestPki {
    TestPki::new("ferry").expect("test certificates")
}

fn with_tls(mut endpoint: Endpoint, host: &str, mode: TlsMode) -> Endpoint {
    endpoint.host = host.into();
    endpoint.tls = Some(TlsConfig { mode, ..Default::default() });
    endpoint
}

fn pg_server(tls: Option<ServerTls>) -> PostgresServer {
    pg_version(tls, None)
}

fn pg_version(tls: Option<ServerTls>, version: Option<u32>) -> PostgresServer {
    let server =
        PostgresServer::start_with(PostgresOptions { tls, version, ..Default::default() }).expect("PostgreSQL");
    server.create_database("shop").expect("database");
    server
}

fn maria_server(tls: Option<ServerTls>) -> MariaDbServer {
    MariaDbServer::start_with(MariaDbOptions { tls, ..Default::default() }).expect("MariaDB")
}

/// `ok`, or the kind of TLS failure, or the error itself.
fn outcome<T>(r: Result<T, EngineError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(EngineError::Tls { failure, .. }) => failure.kind().into(),
        Err(e) => format!("other: {e}"),
    }
}

/// What the SQL connection and the replication connection to `endpoint` end in.
async fn pg_outcomes(endpoint: &Endpoint, password: &str, tls: &TlsMaterial) -> (String, String) {
    let login = ferry::engine::Login { password: Some(password), tls };
    let sql = outcome(pg_connect::connect(endpoint, login, Side::Source).await);
    let replication = outcome(stream::check_connection(endpoint, login).await);
    (sql, replication)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_modes_connect_or_fail_each_with_its_own_reason_on_both_connections() {
    let pki = pki();
    let tls = pg_server(Some(pki.server()));
    let plain = pg_server(None);
    let base = support::endpoint(&tls);
    let none = TlsMaterial::default();
    let trust = pki.trust();
    let other = TlsMaterial { ca_pem: Some(pki.other_ca_pem.clone().into_bytes()), ..Default::default() };
    let cases: [(&str, TlsMode, &TlsMaterial, &str); 6] = [
        (TLS_HOST, TlsMode::Require, &none, "ok"),
        (TLS_HOST, TlsMode::VerifyFull, &trust, "ok"),
        // verify-ca does not check the name: 127.0.0.1 is not in the certificate.
        ("127.0.0.1", TlsMode::VerifyCa, &trust, "ok"),
        ("127.0.0.1", TlsMode::VerifyFull, &trust, "name-mismatch"),
        (TLS_HOST, TlsMode::VerifyFull, &other, "untrusted-certificate"),
        // No CA given: the public roots, which never signed a test certificate.
        (TLS_HOST, TlsMode::VerifyCa, &none, "untrusted-certificate"),
    ];
    for (host, mode, material, expected) in cases {
        let endpoint = with_tls(base.clone(), host, mode);
        let (sql, replication) = pg_outcomes(&endpoint, tls.password(), material).await;
        assert_eq!((sql.as_str(), replication.as_str()), (expected, expected), "{host} {mode}");
    }
    let endpoint = with_tls(support::endpoint(&plain), "127.0.0.1", TlsMode::Require);
    let (sql, replication) = pg_outcomes(&endpoint, plain.password(), &none).await;
    assert_eq!((sql.as_str(), replication.as_str()), ("not-offered", "not-offered"));

    // The precheck names the side, the connection, the reason and the fix.
    let pair = support::Pair { source: tls, target: plain };
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    spec.source = with_tls(spec.source.clone(), "127.0.0.1", TlsMode::VerifyFull);
    let creds = Credentials { source_tls: pki.trust(), ..pair.credentials() };
    let items = ferry::engine::precheck(&spec, &creds).await;
    let item = items.iter().find(|i| i.item == "source.tls").expect("source.tls item");
    assert_eq!(item.result, PrecheckResult::Failed, "{item:?}");
    let reason = item.reason.as_deref().unwrap();
    assert!(reason.contains("SQL connection") && reason.contains("is for localhost, not 127.0.0.1"), "{reason}");
    assert!(item.fix.as_deref().unwrap().contains("verify-ca"), "{item:?}");
    assert_eq!(items.iter().filter(|i| i.item == "source.tls").count(), 1, "{items:#?}");

    spec.source.host = TLS_HOST.into();
    let items = ferry::engine::precheck(&spec, &creds).await;
    for name in ["source.connection", "source.replicationConnection", "source.tls"] {
        let item = items.iter().find(|i| i.item == name).unwrap_or_else(|| panic!("{name} in {items:#?}"));
        assert_eq!(item.result, PrecheckResult::Passed, "{item:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mutual_tls_needs_the_client_certificate_on_both_connections() {
    let pki = pki();
    let server = pg_server(Some(pki.server_requiring_client_certs()));
    let endpoint = with_tls(support::endpoint(&server), TLS_HOST, TlsMode::VerifyFull);
    let foreign = TlsMaterial {
        client_cert_pem: Some(pki.foreign_client_cert_pem.clone().into_bytes()),
        client_key_pem: Some(pki.foreign_client_key_pem.clone().into_bytes()),
        ..pki.trust()
    };
    for (material, expected) in [
        (pki.trust(), "client-certificate-refused"),
        (foreign, "client-certificate-refused"),
        (pki.trust_with_client_cert(), "ok"),
    ] {
        let (sql, replication) = pg_outcomes(&endpoint, server.password(), &material).await;
        assert_eq!((sql.as_str(), replication.as_str()), (expected, expected), "{material:?}");
    }
}

/// Waits until `table` holds the same rows on both sides.
async fn pg_wait_equal(src: &tokio_postgres::Client, tgt: &tokio_postgres::Client, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = support::rows(src, table).await;
        let t = support::try_rows(tgt, table).await.unwrap_or_default();
        if s == t {
            return;
        }
        assert!(Instant::now() < deadline, "{table}: source {} rows, target {} rows", s.len(), t.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_job_and_a_compare_run_over_verify_full_to_servers_that_refuse_plain_text() {
    job_over_verify_full(None, 1).await;
}

/// PostgreSQL 13 has its changes read over SQL sessions: they are TLS sessions too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_13_source_streams_over_verify_full_with_a_client_certificate() {
    job_over_verify_full(Some(13), 0).await;
}

/// A FULL_INCR_TRANS job and a compare between servers that refuse plain text, the source (of
/// `version`) also demanding a client certificate; `walsenders` replication connections are
/// expected on the source while it streams.
async fn job_over_verify_full(version: Option<u32>, walsenders: i64) {
    let pki = pki();
    // The source also wants a client certificate: the replication stream presents it too.
    let pair = support::Pair {
        source: pg_version(Some(pki.server_requiring_client_certs()), version),
        target: pg_server(Some(ServerTls { require_tls: true, ..pki.server() })),
    };
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    spec.source = with_tls(spec.source.clone(), TLS_HOST, TlsMode::VerifyFull);
    spec.target = with_tls(spec.target.clone(), TLS_HOST, TlsMode::VerifyFull);
    let creds = Credentials { source_tls: pki.trust_with_client_cert(), target_tls: pki.trust(), ..pair.credentials() };
    let src = pg_connect::connect(&spec.source, creds.login(Side::Source), Side::Source).await.unwrap();
    let tgt = pg_connect::connect(&spec.target, creds.login(Side::Target), Side::Target).await.unwrap();
    let ssl: bool =
        src.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl);
    src.batch_execute(
        "CREATE TABLE public.orders (id int PRIMARY KEY, note text); \
         INSERT INTO public.orders SELECT g, 'n' || g FROM generate_series(1, 5000) g;",
    )
    .await
    .unwrap();
    let items = ferry::engine::precheck(&spec, &creds).await;
    let failed: Vec<_> = items.iter().filter(|i| i.result != PrecheckResult::Passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (run_spec, run_creds) = (spec.clone(), creds.clone());
    let job = tokio::spawn(async move {
        let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
        ferry::engine::run(ferry::engine::Job {
            id: "test/tls",
            spec: &run_spec,
            credentials: &run_creds,
            tracker,
            stop,
        })
        .await
    });
    for i in 0..20 {
        src.batch_execute(&format!(
            "INSERT INTO public.orders VALUES ({}, 'live'); UPDATE public.orders SET note = 'u{i}' WHERE id = {}; \
             DELETE FROM public.orders WHERE id = {};",
            10_000 + i,
            i + 1,
            100 + i
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg_wait_equal(&src, &tgt, "public.orders").await;
    // The replication stream is one of the source's TLS sessions.
    let streaming: i64 = src
        .query_one(
            "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl AND s.client_dn <> ''",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(streaming, walsenders, "the replication connection runs over TLS with the client certificate");
    let plain: i64 = src
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.usename = current_user AND NOT s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0, "no session of the job runs in plain text");

    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, Options::content(100)).await.unwrap();
    assert_eq!(report.result(), ferry::api::CompareResult::Consistent, "{report:#?}");
    let _ = stop_tx.send(true);
    let _ = job.await.unwrap();
}

async fn my_outcome(endpoint: &Endpoint, password: &str, tls: &TlsMaterial) -> String {
    let login = ferry::engine::Login { password: Some(password), tls };
    outcome(ferry::engine::mysql::connect::connect(endpoint, login, Side::Source).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_tls_modes_connect_or_fail_each_with_its_own_reason() {
    let pki = pki();
    let tls = maria_server(Some(pki.server()));
    let plain = maria_server(None);
    let base = my_support::endpoint(&tls);
    let none = TlsMaterial::default();
    let trust = pki.trust();
    let other = TlsMaterial { ca_pem: Some(pki.other_ca_pem.clone().into_bytes()), ..Default::default() };
    let cases: [(&str, TlsMode, &TlsMaterial, &str); 6] = [
        (TLS_HOST, TlsMode::Require, &none, "ok"),
        (TLS_HOST, TlsMode::VerifyFull, &trust, "ok"),
        ("127.0.0.1", TlsMode::VerifyCa, &trust, "ok"),
        ("127.0.0.1", TlsMode::VerifyFull, &trust, "name-mismatch"),
        (TLS_HOST, TlsMode::VerifyFull, &other, "untrusted-certificate"),
        ("127.0.0.1", TlsMode::VerifyCa, &other, "untrusted-certificate"),
    ];
    for (host, mode, material, expected) in cases {
        let endpoint = with_tls(base.clone(), host, mode);
        assert_eq!(my_outcome(&endpoint, tls.password(), material).await, expected, "{host} {mode}");
    }
    let endpoint = with_tls(my_support::endpoint(&plain), "127.0.0.1", TlsMode::Require);
    assert_eq!(my_outcome(&endpoint, plain.password(), &none).await, "not-offered");
    let endpoint = with_tls(my_support::endpoint(&plain), "127.0.0.1", TlsMode::VerifyCa);
    assert_eq!(my_outcome(&endpoint, plain.password(), &trust).await, "not-offered");

    let pair = my_support::MyPair { source: plain, target: tls };
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    spec.target = with_tls(spec.target.clone(), TLS_HOST, TlsMode::VerifyFull);
    let creds = Credentials { target_tls: other, ..pair.credentials() };
    let items = ferry::engine::precheck(&spec, &creds).await;
    let item = items.iter().find(|i| i.item == "target.tls").expect("target.tls item");
    assert_eq!(item.result, PrecheckResult::Failed, "{item:?}");
    assert!(item.reason.as_deref().unwrap().contains("not signed by a trusted CA"), "{item:?}");
    assert!(item.fix.as_deref().unwrap().contains("spec.target.tls.caSecretRef"), "{item:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_mutual_tls_needs_the_client_certificate() {
    let pki = pki();
    let server = maria_server(Some(pki.server_requiring_client_certs()));
    let endpoint = with_tls(my_support::endpoint(&server), TLS_HOST, TlsMode::VerifyFull);
    let foreign = TlsMaterial {
        client_cert_pem: Some(pki.foreign_client_cert_pem.clone().into_bytes()),
        client_key_pem: Some(pki.foreign_client_key_pem.clone().into_bytes()),
        ..pki.trust()
    };
    // MariaDB answers a missing certificate as it answers a wrong password; the error says
    // that the user may require one.
    let missing = my_outcome(&endpoint, server.password(), &pki.trust()).await;
    assert!(missing.contains("Access denied") && missing.contains("clientCertSecretRef"), "{missing}");
    assert_eq!(my_outcome(&endpoint, server.password(), &foreign).await, "client-certificate-refused");
    assert_eq!(my_outcome(&endpoint, server.password(), &pki.trust_with_client_cert()).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_job_and_a_compare_run_over_verify_full_to_servers_that_refuse_plain_text() {
    let pki = pki();
    let pair = my_support::MyPair {
        source: maria_server(Some(pki.server_requiring_client_certs())),
        target: maria_server(Some(ServerTls { require_tls: true, ..pki.server() })),
    };
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    spec.source = with_tls(spec.source.clone(), TLS_HOST, TlsMode::VerifyFull);
    spec.target = with_tls(spec.target.clone(), TLS_HOST, TlsMode::VerifyFull);
    let creds = Credentials { source_tls: pki.trust_with_client_cert(), target_tls: pki.trust(), ..pair.credentials() };
    let connect = |side| {
        let ep = if side == Side::Source { spec.source.clone() } else { spec.target.clone() };
        let creds = creds.clone();
        async move { ferry::engine::mysql::connect::connect(&ep, creds.login(side), side).await.unwrap() }
    };
    let mut src = connect(Side::Source).await;
    let mut tgt = connect(Side::Target).await;
    my_support::exec_each(
        &mut src,
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note varchar(40)); \
         INSERT INTO shop.orders SELECT seq, CONCAT('n', seq) FROM shop.seq_1_to_5000",
    )
    .await;
    let items = ferry::engine::precheck(&spec, &creds).await;
    let failed: Vec<_> = items.iter().filter(|i| i.result == PrecheckResult::Failed).collect();
    assert!(failed.is_empty(), "{failed:#?}");

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (run_spec, run_creds) = (spec.clone(), creds.clone());
    let mut job = tokio::spawn(async move {
        let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
        ferry::engine::run(ferry::engine::Job {
            id: "test/tls",
            spec: &run_spec,
            credentials: &run_creds,
            tracker,
            stop,
        })
        .await
    });
    my_support::wait_streaming(&mut tgt, &mut job).await;
    my_support::exec_each(
        &mut src,
        "INSERT INTO shop.orders SELECT seq, 'live' FROM shop.seq_6001_to_6100; \
         UPDATE shop.orders SET note = 'u' WHERE id <= 10; DELETE FROM shop.orders WHERE id BETWEEN 100 AND 120",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = my_support::rows(&mut src, "shop.orders").await;
        let t = my_support::try_rows(&mut tgt, "shop.orders").await.unwrap_or_default();
        if s == t {
            break;
        }
        assert!(Instant::now() < deadline, "source {} rows, target {} rows", s.len(), t.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every session of the job on the source (the binlog dump among them) is encrypted.
    let (dumps,): (i64,) = src
        .query_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST p \
             WHERE p.USER = 'ferry' AND p.ID <> CONNECTION_ID() AND p.COMMAND = 'Binlog Dump'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dumps, 1, "the binlog stream is open (over TLS: the user requires X509)");

    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, Options::content(100)).await.unwrap();
    assert_eq!(report.result(), ferry::api::CompareResult::Consistent, "{report:#?}");
    let _ = stop_tx.send(true);
    let _ = job.await.unwrap();
}
