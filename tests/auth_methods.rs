//! The authentication methods real servers use, on every connection a job makes (SQL sessions,
//! the replication or binlog stream, the precheck): PostgreSQL `md5` beside the default
//! `scram-sha-256`, and a MariaDB user of the `ed25519` plugin (which made the client panic
//! before its feature was enabled). Jobs run full + incremental with writes going on, and every
//! row is compared.

mod my_support;
mod support;

use std::time::Duration;

use ferry::api::TaskType;
use ferry::engine::Credentials;
use ferry::testkit::{MariaDbServer, PostgresOptions, PostgresServer};
use my_support::{MyPair, exec, wait_streaming};
use support::Pair;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_job_logs_in_with_md5_on_the_source_and_scram_on_the_target() {
    let md5 = PostgresOptions { password_auth: "md5".into(), ..Default::default() };
    let pair = Pair { source: PostgresServer::start_with(md5).unwrap(), target: PostgresServer::start().unwrap() };
    pair.source.create_database("shop").unwrap();
    pair.target.create_database("shop").unwrap();
    let src = pair.source().await;
    let stored: String = src
        .query_one("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "md5", "the source stores and checks md5 passwords");
    src.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text); \
         INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 3000) g;",
    )
    .await
    .unwrap();

    let spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    let items = ferry::engine::precheck(&spec, &pair.credentials()).await;
    let failed: Vec<_> = items.iter().filter(|i| i.result == ferry::api::PrecheckResult::Failed).collect();
    assert!(failed.is_empty(), "{failed:?}");

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let creds = pair.credentials();
    let job = tokio::spawn(async move {
        let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
        ferry::engine::run(ferry::engine::Job { id: "test/md5", spec: &spec, credentials: &creds, tracker, stop }).await
    });
    // Writes while the job copies and then streams: they reach the target over the replication
    // connection, which logs in with md5 too.
    for i in 0..20 {
        src.batch_execute(&format!(
            "INSERT INTO orders VALUES ({}, 'live'); UPDATE orders SET note = 'u{i}' WHERE id = {};",
            10_000 + i,
            i + 1
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::wait_equal(&pair, "orders", "orders", Duration::from_secs(60)).await;
    let _ = stop_tx.send(true);
    let _ = job.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_job_logs_in_as_an_ed25519_user_on_both_sides() {
    let pair = MyPair { source: MariaDbServer::start().unwrap(), target: MariaDbServer::start().unwrap() };
    let password = "ed25519-only";
    for server in [&pair.source, &pair.target] {
        let mut conn = mysql_async::Conn::new(server.opts(None)).await.unwrap();
        exec(
            &mut conn,
            &format!(
                "INSTALL SONAME 'auth_ed25519'; \
                 CREATE USER 'ed'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('{password}'); \
                 GRANT ALL ON *.* TO 'ed'@'127.0.0.1'"
            ),
        )
        .await;
    }
    let mut src = pair.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note varchar(40)); \
         INSERT INTO shop.orders SELECT seq, CONCAT('n', seq) FROM shop.seq_1_to_3000",
    )
    .await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    spec.source.user = Some("ed".into());
    spec.target.user = Some("ed".into());
    let credentials = Credentials {
        source_password: Some(password.into()),
        target_password: Some(password.into()),
        ..Default::default()
    };
    let items = ferry::engine::precheck(&spec, &credentials).await;
    let failed: Vec<_> = items.iter().filter(|i| i.result == ferry::api::PrecheckResult::Failed).collect();
    assert!(failed.is_empty(), "{failed:?}");

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let run_spec = spec.clone();
    let mut job = tokio::spawn(async move {
        let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
        ferry::engine::run(ferry::engine::Job {
            id: "test/ed25519",
            spec: &run_spec,
            credentials: &credentials,
            tracker,
            stop,
        })
        .await
    });
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    exec(&mut src, "INSERT INTO shop.orders SELECT seq, 'live' FROM shop.seq_5001_to_5100; UPDATE shop.orders SET note = 'u' WHERE id <= 10").await;
    my_support::wait_equal(&pair, "shop.orders", "shop.orders", Duration::from_secs(60)).await;
    let _ = stop_tx.send(true);
    let _ = job.await.unwrap();
}

/// The client drops a trailing zero byte from an authentication switch's nonce, so one
/// `ed25519` login in 256 signed the wrong message and was refused; 1,000 logins in a row (which
/// met that case 98 times in 100) all succeed now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_one_of_a_thousand_ed25519_logins_succeeds() {
    let server = MariaDbServer::start().unwrap();
    let password = "ed25519-only";
    let mut conn = mysql_async::Conn::new(server.opts(None)).await.unwrap();
    exec(
        &mut conn,
        &format!(
            "INSTALL SONAME 'auth_ed25519'; \
             CREATE USER 'ed'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('{password}')"
        ),
    )
    .await;
    let endpoint = ferry::api::Endpoint {
        engine: ferry::api::Engine::Mariadb,
        host: "127.0.0.1".into(),
        port: server.port(),
        database: None,
        user: Some("ed".into()),
        password_secret_ref: None,
        tls: None,
    };
    let tls = ferry::engine::tls::TlsMaterial::default();
    let login = ferry::engine::Login { password: Some(password), tls: &tls };
    for i in 0..1000 {
        let conn = ferry::engine::mysql::connect::connect(&endpoint, login, ferry::engine::error::Side::Source)
            .await
            .unwrap_or_else(|e| panic!("login {i}: {e}"));
        drop(conn);
    }
}

/// A user of a plugin the client does not speak (the pre-4.1 `mysql_old_password`, which a
/// server started without secure_auth still accepts) gets the precheck item
/// `<side>.authentication` naming the plugin and how to switch the user, not a generic
/// connection failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_of_an_unsupported_plugin_is_a_precheck_item_naming_it() {
    let old_auth = ferry::testkit::MariaDbOptions { extra_args: vec!["--secure-auth=0".into()], ..Default::default() };
    let pair = MyPair { source: MariaDbServer::start_with(old_auth).unwrap(), target: MariaDbServer::start().unwrap() };
    let mut conn = mysql_async::Conn::new(pair.source.opts(None)).await.unwrap();
    let (hash,): (String,) =
        mysql_async::prelude::Queryable::query_first(&mut conn, "SELECT OLD_PASSWORD('secret-old')")
            .await
            .unwrap()
            .unwrap();
    exec(
        &mut conn,
        &format!(
            "CREATE USER 'old'@'127.0.0.1' IDENTIFIED VIA mysql_old_password USING '{hash}'; \
             GRANT ALL ON *.* TO 'old'@'127.0.0.1'"
        ),
    )
    .await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    spec.source.user = Some("old".into());
    let credentials = Credentials { source_password: Some("secret-old".into()), ..pair.credentials() };
    let items = ferry::engine::precheck(&spec, &credentials).await;
    let item = items
        .iter()
        .find(|i| i.item == "source.authentication")
        .unwrap_or_else(|| panic!("source.authentication in {items:#?}"));
    assert_eq!(item.result, ferry::api::PrecheckResult::Failed, "{item:?}");
    let reason = item.reason.as_deref().unwrap();
    assert!(reason.contains("\"mysql_old_password\""), "the plugin is named: {reason}");
    assert!(!reason.contains("secret-old"), "{reason}");
    assert!(item.fix.as_deref().unwrap().contains("spec.source.user"), "{item:?}");
}
