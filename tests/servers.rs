//! Smoke tests for `ferry::testkit`: each throwaway server starts on a private port, takes a
//! password login from the real client crate, has the settings migrations rely on, and is gone
//! once dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use ferry::testkit::{MariaDbOptions, MariaDbServer, PostgresOptions, PostgresServer, RedisServer};
use mysql_async::prelude::Queryable;

/// The machine's own services; test servers must never use these.
const SYSTEM_PORTS: [u16; 3] = [3306, 5432, 6379];

async fn postgres_client(server: &PostgresServer, database: &str) -> tokio_postgres::Client {
    let (client, connection) = server.config(database).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn show(client: &tokio_postgres::Client, setting: &str) -> String {
    client.query_one(&format!("SHOW {setting}"), &[]).await.unwrap().get(0)
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(1)).is_ok()
}

fn assert_gone(dir: &Path, port: u16) {
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(!accepts_connections(port), "port {port} still accepts connections");
}

#[tokio::test]
async fn postgres_starts_with_logical_wal_and_a_replication_user() {
    let server = PostgresServer::start().unwrap();
    assert_eq!(server.host(), "127.0.0.1");
    assert!(!SYSTEM_PORTS.contains(&server.port()));
    assert_eq!((server.user(), server.database()), ("ferry", "ferry"));
    assert!(!server.version().is_empty());

    let client = postgres_client(&server, server.database()).await;
    assert_eq!(show(&client, "wal_level").await, "logical");
    assert_eq!(show(&client, "max_replication_slots").await, "10");
    let role = client
        .query_one(
            "SELECT rolsuper, rolreplication, current_database()::text FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert!(role.get::<_, bool>(0), "the user is a superuser");
    assert!(role.get::<_, bool>(1), "the user has REPLICATION");
    assert_eq!(role.get::<_, String>(2), "ferry");
    client.execute("SELECT pg_create_logical_replication_slot('ferry_smoke', 'pgoutput')", &[]).await.unwrap();
}

#[tokio::test]
async fn postgres_wal_level_option_is_applied() {
    let opts = PostgresOptions { wal_level: "replica".to_owned(), ..PostgresOptions::default() };
    let server = PostgresServer::start_with(opts).unwrap();
    let client = postgres_client(&server, server.database()).await;
    assert_eq!(show(&client, "wal_level").await, "replica");
}

#[tokio::test]
async fn postgres_create_database_gives_the_user_a_database_it_can_use() {
    let server = PostgresServer::start().unwrap();
    server.create_database("shop-eu").unwrap();
    let client = postgres_client(&server, "shop-eu").await;
    client.batch_execute("CREATE TABLE orders (id int PRIMARY KEY)").await.unwrap();
    let database: String = client.query_one("SELECT current_database()::text", &[]).await.unwrap().get(0);
    assert_eq!(database, "shop-eu");
}

#[tokio::test]
async fn two_postgres_servers_run_at_once_on_different_ports() {
    let (first, second) = (PostgresServer::start().unwrap(), PostgresServer::start().unwrap());
    assert_ne!(first.port(), second.port());
    assert_ne!(first.dir(), second.dir());
    assert_ne!(first.password(), second.password());

    let first_client = postgres_client(&first, first.database()).await;
    let second_client = postgres_client(&second, second.database()).await;
    first_client.batch_execute("CREATE TABLE only_in_first (id int)").await.unwrap();
    let tables: i64 = second_client
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_first'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn mariadb_starts_with_a_full_row_binlog_and_a_user_with_all_privileges() {
    let server = MariaDbServer::start().unwrap();
    assert_eq!(server.host(), "127.0.0.1");
    assert!(!SYSTEM_PORTS.contains(&server.port()));
    assert_eq!(server.user(), "ferry");

    let mut conn = mysql_async::Conn::new(server.opts(None)).await.unwrap();
    let (log_bin, format, image, server_id): (u8, String, String, u32) =
        conn.query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id").await.unwrap().unwrap();
    assert_eq!((log_bin, format.as_str(), image.as_str()), (1, "ROW", "FULL"));
    assert_eq!(server_id, server.server_id());
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap();
    assert!(
        grants
            .iter()
            .any(|grant| grant.contains("GRANT ALL PRIVILEGES ON *.*") && grant.ends_with("WITH GRANT OPTION")),
        "{grants:?}"
    );
    conn.query_drop("CREATE DATABASE shop").await.unwrap();
    conn.disconnect().await.unwrap();

    let root = mysql_async::OptsBuilder::from_opts(server.opts(None)).user(Some("root")).pass(None::<String>);
    assert!(mysql_async::Conn::new(root).await.is_err(), "root has no login over TCP");

    let mut conn = mysql_async::Conn::new(server.opts(Some("shop"))).await.unwrap();
    let database: Option<String> = conn.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(database.as_deref(), Some("shop"));
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn two_mariadb_servers_get_different_server_ids() {
    let (first, second) = (MariaDbServer::start().unwrap(), MariaDbServer::start().unwrap());
    assert_ne!(first.port(), second.port());
    assert_ne!(first.server_id(), second.server_id());
    for server in [&first, &second] {
        let mut conn = mysql_async::Conn::new(server.opts(None)).await.unwrap();
        let server_id: Option<u32> = conn.query_first("SELECT @@server_id").await.unwrap();
        assert_eq!(server_id, Some(server.server_id()));
        conn.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn mariadb_options_can_turn_the_binlog_off() {
    let server = MariaDbServer::start_with(MariaDbOptions { log_bin: false, ..MariaDbOptions::default() }).unwrap();
    let mut conn = mysql_async::Conn::new(server.opts(None)).await.unwrap();
    let log_bin: Option<u8> = conn.query_first("SELECT @@log_bin").await.unwrap();
    assert_eq!(log_bin, Some(0));
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn redis_answers_ping_set_and_get_with_its_password_only() {
    let server = RedisServer::start().unwrap();
    assert!(!SYSTEM_PORTS.contains(&server.port()));
    assert_eq!(server.url(), format!("redis://:{}@127.0.0.1:{}/", server.password(), server.port()));

    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    redis::cmd("SET").arg("greeting").arg("hello").query_async::<()>(&mut conn).await.unwrap();
    let greeting: String = redis::cmd("GET").arg("greeting").query_async(&mut conn).await.unwrap();
    assert_eq!(greeting, "hello");

    let anonymous = redis::Client::open(format!("redis://{}:{}/", server.host(), server.port())).unwrap();
    let refused = async {
        let mut conn = anonymous.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    assert!(refused.await.is_err(), "a client without the password is refused");
}

#[test]
fn dropping_a_server_stops_it_and_removes_its_directory() {
    let postgres = PostgresServer::start().unwrap();
    let (dir, port) = (postgres.dir().to_owned(), postgres.port());
    assert!(dir.exists() && accepts_connections(port));
    drop(postgres);
    assert_gone(&dir, port);

    let mariadb = MariaDbServer::start().unwrap();
    let (dir, port) = (mariadb.dir().to_owned(), mariadb.port());
    drop(mariadb);
    assert_gone(&dir, port);

    let redis = RedisServer::start().unwrap();
    let (dir, port) = (redis.dir().to_owned(), redis.port());
    drop(redis);
    assert_gone(&dir, port);
}

#[test]
fn a_panicking_test_still_stops_its_server() {
    let mut started = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = PostgresServer::start().unwrap();
        started = Some((server.dir().to_owned(), server.port()));
        panic!("the test fails while the server runs");
    }));
    assert!(outcome.is_err());
    let (dir, port) = started.unwrap();
    assert_gone(&dir, port);
}

#[test]
fn a_server_outlives_the_thread_that_started_it() {
    let server = std::thread::spawn(|| RedisServer::start().unwrap()).join().unwrap();
    // Give a death signal tied to the finished thread time to arrive.
    std::thread::sleep(Duration::from_millis(200));
    assert!(accepts_connections(server.port()));
}
