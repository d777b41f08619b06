//! The MySQL/MariaDB precheck against real MariaDB servers: what passes on a server set up for
//! replication, and the reason and fix for each thing that does not.

use ferry::api::{PrecheckItem, PrecheckResult, SyncJobSpec, TaskType};
use ferry::engine::{self, Credentials};
use ferry::testkit::{MariaDbOptions, MariaDbServer};
use mysql_async::prelude::Queryable;

mod my_support;

fn spec(source: &MariaDbServer, target: &MariaDbServer, tables: &[&str]) -> SyncJobSpec {
    my_support::job_spec(source, target, TaskType::FullIncrTrans, tables)
}

fn creds(source: &MariaDbServer, target: &MariaDbServer) -> Credentials {
    my_support::credentials(source, target)
}

async fn setup(server: &MariaDbServer, sql: &str) {
    let mut conn = mysql_async::Conn::new(server.opts(None)).await.unwrap();
    conn.query_drop(sql).await.unwrap();
    conn.disconnect().await.unwrap();
}

fn find<'a>(items: &'a [PrecheckItem], name: &str) -> &'a PrecheckItem {
    items.iter().find(|i| i.item == name).unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_set_up_for_replication_passes_and_a_keyless_table_raises_an_alarm() {
    let (source, target) = (MariaDbServer::start().unwrap(), MariaDbServer::start().unwrap());
    setup(&source, "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, v text); CREATE TABLE shop.audit (line text)").await;
    let items = engine::precheck(&spec(&source, &target, &["orders", "audit"]), &creds(&source, &target)).await;
    for name in [
        "source.connection",
        "target.connection",
        "source.logBin",
        "source.binlogFormat",
        "source.binlogRowImage",
        "source.serverId",
        "source.replicationPrivileges",
        "source.tablesExist",
        "target.writable",
        "target.empty",
        "versions",
    ] {
        assert_eq!(find(&items, name).result, PrecheckResult::Passed, "{:#?}", find(&items, name));
    }
    let keyless = find(&items, "source.primaryKeys");
    assert_eq!(keyless.result, PrecheckResult::Alarm);
    assert!(keyless.reason.as_deref().unwrap().contains("shop.audit"), "{keyless:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_off_and_a_missing_table_fail_with_their_fixes() {
    let source = MariaDbServer::start_with(MariaDbOptions {
        log_bin: false,
        binlog_format: "MIXED".into(),
        ..Default::default()
    })
    .unwrap();
    let target = MariaDbServer::start().unwrap();
    setup(&source, "CREATE DATABASE shop").await;
    let items = engine::precheck(&spec(&source, &target, &["nope"]), &creds(&source, &target)).await;
    let log_bin = find(&items, "source.logBin");
    assert_eq!(log_bin.result, PrecheckResult::Failed);
    assert!(log_bin.fix.as_deref().unwrap().contains("log_bin"), "{log_bin:?}");
    let format = find(&items, "source.binlogFormat");
    assert_eq!(format.result, PrecheckResult::Failed);
    assert!(format.reason.as_deref().unwrap().contains("MIXED"), "{format:?}");
    let missing = find(&items, "source.tablesExist");
    assert_eq!(missing.result, PrecheckResult::Failed);
    assert!(missing.reason.as_deref().unwrap().contains("shop.nope"), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_the_connection_and_is_never_echoed() {
    let (source, target) = (MariaDbServer::start().unwrap(), MariaDbServer::start().unwrap());
    let wrong = Credentials { source_password: Some("N0t-the-Pa55".into()), ..creds(&source, &target) };
    let items = engine::precheck(&spec(&source, &target, &["t"]), &wrong).await;
    let conn = find(&items, "source.connection");
    assert_eq!(conn.result, PrecheckResult::Failed);
    assert!(conn.reason.as_deref().unwrap().contains("Access denied"), "{conn:?}");
    assert!(!format!("{items:?}").contains("N0t-the-Pa55"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_the_stream_cannot_evaluate_and_a_target_without_local_infile_fail() {
    let source = MariaDbServer::start().unwrap();
    let target =
        MariaDbServer::start_with(MariaDbOptions { extra_args: vec!["--local-infile=0".into()], ..Default::default() })
            .unwrap();
    setup(&source, "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note text)").await;
    let mut spec = spec(&source, &target, &["orders"]);
    spec.objects.databases[0].tables[0].filter = Some("lower(note) = 'x'".into());
    let items = engine::precheck(&spec, &creds(&source, &target)).await;
    let filters = find(&items, "source.filters");
    assert_eq!(filters.result, PrecheckResult::Failed);
    assert!(
        filters.reason.as_deref().unwrap().contains("shop.orders")
            && filters.reason.as_deref().unwrap().contains("lower"),
        "{filters:?}"
    );
    let infile = find(&items, "target.localInfile");
    assert_eq!(infile.result, PrecheckResult::Failed);
    assert!(infile.fix.as_deref().unwrap().contains("local_infile"), "{infile:?}");
    // A filter within the subset passes.
    spec.objects.databases[0].tables[0].filter = Some("id > 10 AND note LIKE 'a%'".into());
    let items = engine::precheck(&spec, &creds(&source, &target)).await;
    assert_eq!(find(&items, "source.filters").result, PrecheckResult::Passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_format_mixed_fails_even_with_the_binary_log_on() {
    let source =
        MariaDbServer::start_with(MariaDbOptions { binlog_format: "MIXED".into(), ..Default::default() }).unwrap();
    let target = MariaDbServer::start().unwrap();
    setup(&source, "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY)").await;
    let items = engine::precheck(&spec(&source, &target, &["orders"]), &creds(&source, &target)).await;
    assert_eq!(find(&items, "source.logBin").result, PrecheckResult::Passed);
    let format = find(&items, "source.binlogFormat");
    assert_eq!(format.result, PrecheckResult::Failed);
    assert!(format.reason.as_deref().unwrap().contains("MIXED"), "{format:?}");
    assert!(format.fix.as_deref().unwrap().contains("ROW"), "{format:?}");
}

/// MariaDB's compressed binary log events cannot be decoded: a source with `log_bin_compress`
/// fails the precheck, and a job whose source turns it on while streaming stops at the first
/// compressed event with the reason and the fix, rather than pass over its changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_binary_log_events_fail_the_precheck_and_stop_the_stream() {
    let compressing = MariaDbServer::start_with(MariaDbOptions {
        extra_args: vec!["--log-bin-compress=ON".into()],
        ..Default::default()
    })
    .unwrap();
    let target = MariaDbServer::start().unwrap();
    setup(&compressing, "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note text)").await;
    let items = engine::precheck(&spec(&compressing, &target, &["orders"]), &creds(&compressing, &target)).await;
    let item = find(&items, "source.binlogCompression");
    assert_eq!(item.result, PrecheckResult::Failed, "{item:?}");
    assert!(item.fix.as_deref().unwrap().contains("log_bin_compress = OFF"), "{item:?}");
    drop(compressing);

    let pair = my_support::MyPair { source: MariaDbServer::start().unwrap(), target };
    setup(&pair.source, "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note text)").await;
    let items = engine::precheck(&spec(&pair.source, &pair.target, &["orders"]), &pair.credentials()).await;
    assert_eq!(find(&items, "source.binlogCompression").result, PrecheckResult::Passed);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (run_spec, run_creds) = (spec(&pair.source, &pair.target, &["orders"]), pair.credentials());
    let mut job = tokio::spawn(async move {
        let tracker = engine::Tracker::new(std::sync::Arc::new(engine::progress::NoProgress));
        engine::run(engine::Job { id: "test/compressed", spec: &run_spec, credentials: &run_creds, tracker, stop })
            .await
    });
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    let mut src = pair.source().await;
    // Events shorter than log_bin_compress_min_len (256 bytes by default) stay uncompressed.
    my_support::exec_each(
        &mut src,
        "SET GLOBAL log_bin_compress = ON; INSERT INTO shop.orders VALUES (1, REPEAT('x', 4000))",
    )
    .await;
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), job).await.expect("the job stops").unwrap();
    let _ = stop_tx.send(true);
    let err = outcome.expect_err("the job fails at the compressed event");
    assert_eq!(err.code(), "BINLOG_COMPRESSED", "{err}");
    assert!(err.to_string().contains("log_bin_compress = OFF"), "{err}");
}
