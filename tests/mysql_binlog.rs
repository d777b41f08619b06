//! MariaDB's binary log as Ferry reads it: GTID and GTID_LIST events decoded by our own decoder
//! agree with the server's `@@gtid_binlog_pos`, and a stream resumed from a GTID position starts
//! right after it.

use ferry::engine::mysql::gtid::{self, GtidPos};
use ferry::testkit::MariaDbServer;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn};

/// The GTIDs of every transaction in the log after `connect_state` (all when empty), and the
/// GTID_LIST positions met on the way.
async fn read_gtids(server: &MariaDbServer, connect_state: &str) -> (Vec<gtid::Gtid>, Vec<GtidPos>) {
    let mut conn = Conn::new(server.opts(None)).await.unwrap();
    conn.query_drop("SET @mariadb_slave_capability = 4").await.unwrap();
    conn.exec_drop("SET @slave_connect_state = ?", (connect_state,)).await.unwrap();
    // A replica id that cannot clash with the server's own.
    let request =
        BinlogStreamRequest::new(server.server_id().wrapping_add(1000)).with_filename(b"").with_non_blocking();
    let mut stream = conn.get_binlog_stream(request).await.unwrap();
    let (mut gtids, mut lists) = (Vec::new(), Vec::new());
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let header = event.header();
        match header.event_type_raw() {
            gtid::GTID_EVENT => gtids.push(gtid::decode_gtid(event.data(), header.server_id()).unwrap().gtid),
            gtid::GTID_LIST_EVENT => lists.push(gtid::decode_gtid_list(event.data()).unwrap()),
            _ => {}
        }
    }
    (gtids, lists)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_events_decode_to_the_servers_own_position_and_resume_after_it() {
    let server = MariaDbServer::start().unwrap();
    let mut conn = Conn::new(server.opts(None)).await.unwrap();
    conn.query_drop("CREATE DATABASE shop; CREATE TABLE shop.t (id int PRIMARY KEY)").await.unwrap();
    for i in 0..5 {
        conn.exec_drop("INSERT INTO shop.t VALUES (?)", (i,)).await.unwrap();
    }
    let server_pos: String = conn.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap();

    let (gtids, lists) = read_gtids(&server, "").await;
    assert!(!lists.is_empty(), "every binary log starts with a GTID_LIST event");
    let last = *gtids.last().expect("GTID events");
    assert_eq!(last.server, server.server_id());
    assert_eq!(last.to_string(), server_pos, "the last decoded GTID is the server's position");
    assert!(gtids.windows(2).all(|w| w[0].seq + 1 == w[1].seq), "sequence numbers follow each other: {gtids:?}");

    // Resume from the third-last transaction: exactly the last two come again.
    let from = gtids[gtids.len() - 3];
    let (again, _) = read_gtids(&server, &from.to_string()).await;
    assert_eq!(again, gtids[gtids.len() - 2..].to_vec());
    let pos: GtidPos = server_pos.parse().unwrap();
    assert!(pos.contains(&from) && pos.contains(&last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_snapshot_sees_exactly_the_transactions_before_its_gtid_position() {
    use ferry::engine::mysql::snapshot;
    let server = MariaDbServer::start().unwrap();
    let mut writer = Conn::new(server.opts(None)).await.unwrap();
    writer.query_drop("CREATE DATABASE shop; CREATE TABLE shop.t (id int PRIMARY KEY)").await.unwrap();
    for i in 0..10 {
        writer.exec_drop("INSERT INTO shop.t VALUES (?)", (i,)).await.unwrap();
    }
    let mut reader = Conn::new(server.opts(None)).await.unwrap();
    let snap = snapshot::start(&mut reader, true).await.unwrap();
    // Commits after the snapshot: invisible to it, and after its position in the log.
    for i in 10..15 {
        writer.exec_drop("INSERT INTO shop.t VALUES (?)", (i,)).await.unwrap();
    }
    let seen: u64 = reader.query_first("SELECT count(*) FROM shop.t").await.unwrap().unwrap();
    assert_eq!(seen, 10);
    reader.query_drop("COMMIT").await.unwrap();
    // The stream from the snapshot's GTID position carries exactly the 5 later inserts.
    let (after, _) = read_gtids(&server, &snap.gtid.to_string()).await;
    assert_eq!(after.len(), 5, "{after:?} after {}", snap.gtid);
    assert!(!snap.file.is_empty() && snap.position > 0);
}
