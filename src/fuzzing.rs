//! Entry points of the fuzz targets (`fuzz/`, `make fuzz`) and of the property tests: each takes
//! arbitrary bytes or text and runs it through one decoder, parser or validation the way Ferry
//! meets input from a source server or from a spec author, with no database and no cluster.
//!
//! They return nothing and must never panic, loop without end or allocate without bound: an
//! error is the answer to malformed input. Where an input cannot be told apart from a bug
//! without a second reading (a statement rewritten and read again, a position printed and
//! parsed back), the entry point asserts that the two agree.
//!
//! Built only for tests and with the `fuzzing` feature; nothing here is part of the operator.

use std::collections::HashMap;

use mysql_async::binlog::events::{Event, EventData, FormatDescriptionEvent, RotateEvent, TableMapEvent};
use mysql_async::binlog::{BinlogVersion, EventType};

use crate::api::{BatchJobSpec, CompareTaskSpec, DmlType, SyncJobSpec, Validate};
use crate::engine::filter::{RowFilter, Value};
use crate::engine::model::{ColumnDef, TableDef};
use crate::engine::mysql::catalog::{ColumnKind, MyColumn, MyTable};
use crate::engine::mysql::ddl;
use crate::engine::mysql::gtid::{self, GtidPos};
use crate::engine::mysql::stream::{BinlogNames, file_name, is_rows_event, row_changes};

/// Bytes of a binary log event header.
const EVENT_HEADER: usize = 19;

/// Splits `data` into packets as the network frames them: a two-byte little-endian length,
/// then that many bytes (the last packet takes what is left).
fn packets(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let len = match data {
            [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
            _ => data.len(),
        };
        let rest = data.get(2..).unwrap_or_default();
        let (packet, tail) = rest.split_at(len.min(rest.len()));
        data = tail;
        Some(packet)
    })
}

/// Whether `mysql_common`'s event reader can take `packet` without panicking: it reads the
/// event size from the header and unwraps the read of that many bytes, and cuts the checksum
/// off without a length check. In the stream these panics happen inside `mysql_async`, where
/// Ferry cannot check first; the stream task turns them into an error (see
/// `engine::mysql::stream`). Here they are stepped around, so the fuzzer goes on to what
/// follows them.
fn event_fits(packet: &[u8]) -> bool {
    let Some(size) = packet.get(9..13) else { return false };
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    (EVENT_HEADER + 5..=packet.len()).contains(&size)
}

/// Every column kind the MySQL engine knows.
const KINDS: [ColumnKind; 17] = [
    ColumnKind::Integer { bits: 8, unsigned: false },
    ColumnKind::Integer { bits: 8, unsigned: true },
    ColumnKind::Integer { bits: 16, unsigned: true },
    ColumnKind::Integer { bits: 24, unsigned: false },
    ColumnKind::Integer { bits: 24, unsigned: true },
    ColumnKind::Integer { bits: 32, unsigned: true },
    ColumnKind::Integer { bits: 64, unsigned: true },
    ColumnKind::Float,
    ColumnKind::Double,
    ColumnKind::Bit,
    ColumnKind::Enum,
    ColumnKind::Set,
    ColumnKind::Year,
    ColumnKind::Timestamp,
    ColumnKind::Date,
    ColumnKind::Text,
    ColumnKind::Other,
];

/// A job table for a table map event: its columns `c0`, `c1`, … with kinds picked by `seed`
/// (the catalog and the log may disagree after an unreplayed DDL, so any kind meets any value).
fn my_table(tme: &TableMapEvent<'_>, seed: u8) -> MyTable {
    let n = tme.columns_count() as usize;
    let columns: Vec<ColumnDef> = (0..n)
        .map(|i| ColumnDef {
            name: format!("c{i}"),
            target_name: format!("c{i}"),
            type_sql: "text".into(),
            nullable: true,
            selected: true,
        })
        .collect();
    let kinds = (0..n).map(|i| KINDS[(usize::from(seed) + i * 7) % KINDS.len()]);
    MyTable {
        def: TableDef {
            schema: tme.database_name().into_owned(),
            name: tme.table_name().into_owned(),
            target_schema: "target".into(),
            target_name: "t".into(),
            columns,
            key: if n > 0 { vec![0] } else { Vec::new() },
            filter: None,
            estimated_rows: 0,
        },
        columns: kinds
            .map(|kind| MyColumn {
                kind,
                data_type: String::new(),
                charset: None,
                collation: None,
                default: None,
                default_style: Default::default(),
                extra: String::new(),
                generation: None,
                comment: String::new(),
            })
            .collect(),
        engine: None,
        collation: None,
        indexes: Vec::new(),
        checks: Vec::new(),
    }
}

/// A MariaDB/MySQL binary log as the replica connection receives it, one event per packet
/// (see [`packets`]), through `mysql_common`'s event reader (the format description and table
/// maps kept as its stream reader keeps them) and then Ferry's decoding of each event: GTID
/// and GTID_LIST events, rotations, statements (BEGIN/COMMIT and the DDL classifier and
/// rewrite), and row events into cells for a table of the map's columns, through a row filter.
/// The first byte picks the column kinds and, with bit 7 set, makes the rest a GTID event, a
/// GTID_LIST event and a GTID position text instead.
pub fn mysql_binlog(data: &[u8]) -> usize {
    let Some((&seed, data)) = data.split_first() else { return 0 };
    if seed & 0x80 != 0 {
        mysql_gtid(data);
        return 0;
    }
    let mut changes = 0;
    let names = BinlogNames { base: "mariadb-bin".into(), width: 6 };
    let mut fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let mut maps: HashMap<u64, TableMapEvent<'static>> = HashMap::new();
    let mut file = String::from("mariadb-bin.000001");
    let filter = RowFilter::parse("c0 > 5 OR c1 IS NULL OR c2 LIKE 'a%'").ok();
    let dml = [DmlType::Insert, DmlType::Update, DmlType::Delete];
    for packet in packets(data) {
        if !event_fits(packet) {
            continue;
        }
        let Ok(event) = Event::read(&fde, packet) else { continue };
        let header = event.header();
        let raw = header.event_type_raw();
        // The stream reader's own bookkeeping.
        if raw == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            if let Ok(f) = event.read_event::<FormatDescriptionEvent<'_>>() {
                fde = f.into_owned().with_footer(event.footer());
            }
            continue;
        }
        if raw == EventType::TABLE_MAP_EVENT as u8 {
            if let Ok(tme) = event.read_event::<TableMapEvent<'_>>() {
                maps.insert(tme.table_id(), tme.into_owned());
            }
            continue;
        }
        if raw == EventType::ROTATE_EVENT as u8
            && let Ok(r) = event.read_event::<RotateEvent<'_>>()
            && !r.is_fake()
        {
            maps.clear();
        }
        // Ferry's decoding, as `stream::Decoder::event` does it.
        match raw {
            gtid::GTID_EVENT => {
                let _ = gtid::decode_gtid(event.data(), header.server_id());
            }
            gtid::GTID_LIST_EVENT => {
                let _ = gtid::decode_gtid_list(event.data());
            }
            // Other events (a compressed MySQL 8 transaction, PREVIOUS_GTIDS, …) are not read:
            // neither does the stream.
            r if r == EventType::ROTATE_EVENT as u8
                || r == EventType::XID_EVENT as u8
                || r == EventType::QUERY_EVENT as u8
                || is_rows_event(r) =>
            {
                match event.read_data() {
                    Ok(Some(EventData::RotateEvent(r))) => file = file_name(r.name_raw(), &names),
                    Ok(Some(EventData::XidEvent(_))) => {
                        let _ = names.encode(&file, u64::from(header.log_pos()));
                    }
                    Ok(Some(EventData::QueryEvent(q))) => mysql_statement(&q.schema(), &q.query()),
                    Ok(Some(EventData::RowsEvent(rows))) => {
                        if let Some(tme) = maps.get(&rows.table_id()) {
                            let table = my_table(tme, seed);
                            changes += row_changes(&table, 0, filter.as_ref(), &dml, tme, &rows).map_or(0, |c| c.len());
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    changes
}

/// MariaDB GTID decoding: `data` as a GTID event's body, as a GTID_LIST event's body, and as a
/// position text (`0-1-42,1-2-7`). A decoded or parsed position must print as text that parses
/// back to itself.
pub fn mysql_gtid(data: &[u8]) {
    let server = data.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let _ = gtid::decode_gtid(data, server);
    if let Ok(pos) = gtid::decode_gtid_list(data) {
        roundtrip(&pos);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(pos) = text.parse::<GtidPos>()
    {
        roundtrip(&pos);
    }
}

fn roundtrip(pos: &GtidPos) {
    let text = pos.to_string();
    let back = text.parse::<GtidPos>();
    assert_eq!(back.as_ref(), Ok(pos), "GTID position {text:?} does not parse back");
}

/// The DDL classifier on one statement of a QUERY event: [`ddl::parse`], then [`ddl::rewrite`]
/// with every table mapped to another database. The rewritten statement must be of the same
/// kind and name the same tables, at the new place.
pub fn mysql_ddl(sql: &str) {
    mysql_statement("shop", sql);
}

fn mysql_statement(schema: &str, sql: &str) {
    let stmt = ddl::parse(sql);
    for t in &stmt.tables {
        assert!(sql.get(t.span.clone()).is_some(), "span {:?} of {:?} is not in the text", t.span, t.name);
    }
    for &(from, to) in &stmt.renames {
        assert!(from < stmt.tables.len() && to < stmt.tables.len(), "rename {from}->{to} out of the table list");
    }
    let default_db = Some(schema).filter(|s| !s.is_empty());
    let rewritten = ddl::rewrite(sql, &stmt, default_db, |d, n| Some((format!("{d}_target"), n.to_owned())));
    // Whatever the text, the rewrite's output is read again without trouble, and a rewrite
    // that maps nothing keeps the text byte for byte. (That a rewritten statement names the
    // same tables holds for statements a server accepted, not for any text: the property
    // tests check it on generated statements.)
    let _ = ddl::parse(&rewritten);
    assert_eq!(ddl::rewrite(sql, &stmt, default_db, |_, _| None), sql, "a rewrite without a mapping changed {sql:?}");
}

/// The checks of [`mysql_ddl`] that hold for statements a server accepted: the rewritten
/// statement is of the same kind and names the same tables, and rewriting to the same names
/// again changes nothing.
#[cfg(test)]
fn ddl_rewrite_keeps_the_statement(sql: &str) {
    let stmt = ddl::parse(sql);
    let rewritten = ddl::rewrite(sql, &stmt, Some("shop"), |d, n| Some((format!("{d}_target"), n.to_owned())));
    let again = ddl::parse(&rewritten);
    assert_eq!(again.kind, stmt.kind, "rewriting {sql:?} into {rewritten:?} changed its kind");
    let names = |s: &ddl::Statement| s.tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&again), names(&stmt), "rewriting {sql:?} into {rewritten:?} changed its tables");
    let same = |d: &str, n: &str| Some((d.to_owned(), n.to_owned()));
    let once = ddl::rewrite(sql, &stmt, Some("shop"), same);
    let twice = ddl::rewrite(&once, &ddl::parse(&once), Some("shop"), same);
    assert_eq!(twice, once, "rewriting {sql:?} to the same names is not idempotent");
}

/// Column names and types of the table the PostgreSQL filter and pgoutput targets work on.
const PG_COLUMNS: [(&str, &str); 8] = [
    ("a", "integer"),
    ("b", "text"),
    ("c", "numeric(10,2)"),
    ("d", "boolean"),
    ("e", "timestamp with time zone"),
    ("f", "date"),
    ("g", "bigint"),
    ("h", "double precision"),
];

/// Type OIDs of [`PG_COLUMNS`].
const PG_OIDS: [u32; 8] = [23, 25, 1700, 16, 1184, 1082, 20, 701];

/// A row filter: the text up to the first newline is the filter, the lines after it the values
/// of the columns (`\N` for NULL), in the order the filter names them for the MySQL dialect and
/// in [`PG_COLUMNS`] order for PostgreSQL. Parsed and evaluated in both dialects.
pub fn row_filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (sql, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let values: Vec<Value<'_>> =
        rest.split('\n').map(|v| if v == "\\N" { Value::Null } else { Value::Text(v) }).collect();
    let value = |i: usize| values.get(i).copied();
    if let Ok(f) = RowFilter::parse(sql) {
        let columns = f.columns();
        let _ = f.eval(|name| columns.iter().position(|c| c == name).and_then(value));
    }
    if let Ok(f) = RowFilter::parse_postgres(sql, &PG_COLUMNS) {
        let _ = f.eval_postgres(|name| PG_COLUMNS.iter().position(|(c, _)| *c == name).and_then(value));
    }
}

/// A pgoutput stream as a slot sends it (one message per packet, see [`packets`]), through
/// `pg_walstream`'s decoder (as the polled stream of sources before 14 calls it) and Ferry's
/// transaction assembly and change decoding for a job table `public.t` with the columns of
/// [`PG_COLUMNS`], key `a` and a row filter. A Relation message of the table also goes through
/// the change-of-columns logic, with a catalog that lists the message's columns. Returns the
/// number of changes handed out.
pub fn pgoutput(data: &[u8]) -> usize {
    use crate::engine::postgres::stream::{Assembler, Decoder, reshape_listed};
    let table = pg_table();
    let Ok(mut decoder) = Decoder::new(std::slice::from_ref(&table)).filtering(std::slice::from_ref(&table)) else {
        return 0;
    };
    let mut changes = 0;
    let mut assembler = Assembler::new(0);
    let mut messages = pg_walstream::PgOutputDecoder::with_protocol_version(1);
    for (i, packet) in packets(data).enumerate() {
        let Ok(Some(event)) =
            messages.decode_message(bytes::Bytes::copy_from_slice(packet), pg_walstream::Lsn(i as u64))
        else {
            continue;
        };
        if let pg_walstream::EventType::Relation { columns, .. } = &event.event_type {
            let _ = reshape_listed(&table, columns);
        }
        // Without a catalog session nothing in the decoder awaits anything but itself.
        match futures::executor::block_on(assembler.push(&mut decoder, &event.event_type)) {
            Ok(Some(t)) => changes += t.changes.len(),
            Ok(None) => {}
            Err(_) => break,
        }
    }
    changes
}

/// Frames `packets` as [`mysql_binlog`] and [`pgoutput`] read them.
pub fn frame<P: AsRef<[u8]>>(packets: &[P]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        let p = p.as_ref();
        let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
        out.extend(len.to_le_bytes());
        out.extend(&p[..usize::from(len)]);
    }
    out
}

/// A pgoutput transaction on the table of [`pgoutput`] as a source sends it: Begin, the
/// Relation, an insert, an update with the old key, a delete, a truncate, Commit, then a
/// heartbeat message. The seed of the fuzz target and the base of its property test.
pub fn pgoutput_sample() -> Vec<pg_walstream::LogicalReplicationMessage> {
    use pg_walstream::{ColumnData, ColumnInfo, LogicalReplicationMessage as M, TupleData};
    let columns = PG_COLUMNS
        .iter()
        .zip(PG_OIDS)
        .enumerate()
        .map(|(i, ((name, _), oid))| ColumnInfo::new(u8::from(i == 0), (*name).into(), oid, -1))
        .collect();
    let row = |a: &str, b: Option<&str>| {
        TupleData::new(vec![
            ColumnData::text(a.as_bytes().to_vec()),
            b.map_or(ColumnData::null(), |b| ColumnData::text(b.as_bytes().to_vec())),
            ColumnData::text(b"1.50".to_vec()),
            ColumnData::text(b"t".to_vec()),
            ColumnData::text(b"2024-01-05 10:00:00+00".to_vec()),
            ColumnData::text(b"2024-01-05".to_vec()),
            ColumnData::text(b"9007199254740993".to_vec()),
            ColumnData::text(b"1e300".to_vec()),
        ])
    };
    vec![
        M::Begin { final_lsn: 0x200, timestamp: 1_000_000, xid: 700 },
        M::Relation {
            relation_id: 16384,
            namespace: "public".into(),
            relation_name: "t".into(),
            replica_identity: b'd',
            columns,
        },
        M::Insert { relation_id: 16384, tuple: row("7", Some("x")) },
        M::Update {
            relation_id: 16384,
            old_tuple: Some(row("7", Some("x"))),
            new_tuple: row("8", None),
            key_type: Some('K'),
        },
        M::Delete { relation_id: 16384, old_tuple: row("8", None), key_type: 'K' },
        M::Truncate { relation_ids: vec![16384], flags: 0 },
        M::Commit { flags: 0, commit_lsn: 0x200, end_lsn: 0x300, timestamp: 1_000_001 },
        M::Message {
            flags: 0,
            lsn: 0x400,
            prefix: crate::engine::postgres::stream::HEARTBEAT_PREFIX.into(),
            content: bytes::Bytes::from_static(b"1"),
        },
    ]
}

/// Messages in pgoutput's wire format (protocol version 1).
pub fn pgoutput_encode(messages: &[pg_walstream::LogicalReplicationMessage]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .map(|m| {
            let mut buf = bytes::BytesMut::new();
            pg_walstream::encode_message(m, 1, &mut buf);
            buf.to_vec()
        })
        .collect()
}

fn pg_table() -> crate::engine::postgres::catalog::PgTable {
    use crate::engine::postgres::catalog::{PgColumn, PgTable};
    let columns = PG_COLUMNS
        .iter()
        .map(|(name, ty)| ColumnDef {
            name: (*name).into(),
            target_name: (*name).into(),
            type_sql: (*ty).into(),
            nullable: *name != "a",
            selected: *name != "h",
        })
        .collect();
    PgTable {
        def: TableDef {
            schema: "public".into(),
            name: "t".into(),
            target_schema: "public".into(),
            target_name: "t".into(),
            columns,
            key: vec![0],
            filter: Some("a > 5 OR b IS NULL OR c BETWEEN 1 AND 2.5".into()),
            estimated_rows: 0,
        },
        binary: true,
        indexes: Vec::new(),
        replica_identity_full: false,
        partitioned: false,
        extras: Default::default(),
        oid: 16384,
        pg_columns: PG_OIDS
            .iter()
            .enumerate()
            .map(|(i, &type_oid)| PgColumn { attnum: i as i16 + 1, type_oid, typmod: -1 })
            .collect(),
        column_selection: None,
    }
}

/// A resource spec as JSON, its kind picked by the first byte: the strict field check of the
/// spec and of a whole document, deserialization into the spec type and [`Validate`]. A BatchJob
/// also validates the merged spec of each item. A first byte of 5 (mod 6) makes the rest a
/// manifest file instead (see [`manifest`]).
pub fn spec(data: &[u8]) {
    use crate::api::strict::{self, Kind};
    let Some((&which, json)) = data.split_first() else { return };
    if which % 6 == 5 {
        return manifest(&String::from_utf8_lossy(json));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else { return };
    let kind =
        [Kind::SyncJob, Kind::CompareTask, Kind::BatchJob, Kind::Secret, Kind::ConfigMap][usize::from(which % 6)];
    let _ = strict::check_spec(kind, &value);
    let _ = strict::check_document(kind, &value);
    match kind {
        Kind::SyncJob => {
            if let Ok(spec) = serde_json::from_value::<SyncJobSpec>(value) {
                let _ = spec.validate();
            }
        }
        Kind::CompareTask => {
            if let Ok(spec) = serde_json::from_value::<CompareTaskSpec>(value) {
                let _ = spec.validate();
            }
        }
        Kind::BatchJob => {
            if let Ok(spec) = serde_json::from_value::<BatchJobSpec>(value) {
                let _ = spec.validate_named("batch");
            }
        }
        Kind::Secret | Kind::ConfigMap => {}
    }
}

/// A manifest file as `ferry run` and `ferry convert` read it: YAML documents, the strict field
/// check, then each resource's validation.
pub fn manifest(text: &str) {
    use crate::api::manifest::{self, Manifest};
    let Ok(docs) = manifest::parse(text) else { return };
    for doc in docs {
        match doc {
            Manifest::SyncJob(job) => {
                let _ = job.spec.validate();
            }
            Manifest::CompareTask(task) => {
                let _ = task.spec.validate();
            }
            Manifest::BatchJob(batch) => {
                let _ = batch.spec.validate_named("batch");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::engine::mysql::gtid::Gtid;

    /// A MariaDB binary log (`mysql_common` wrote the file; see fuzz/seeds).
    const BINLOG: &[u8] = include_bytes!("../fuzz/seeds/mysql_binlog/whole_log");

    #[test]
    fn the_pgoutput_sample_reaches_the_decoder_and_comes_out_as_changes() {
        // Insert, update, delete and truncate of the filtered table.
        assert_eq!(pgoutput(&frame(&pgoutput_encode(&pgoutput_sample()))), 4);
        assert_eq!(pgoutput(include_bytes!("../fuzz/seeds/pgoutput/transaction")), 4);
    }

    #[test]
    fn the_binlog_seed_reaches_the_row_decoder() {
        assert!(mysql_binlog(BINLOG) > 0);
    }

    #[test]
    fn inputs_the_fuzzers_found_are_decoded_without_a_panic_or_an_abort() {
        // A DECIMAL column whose table map gives a scale above its precision: mysql_common would
        // size its buffer from the wrapped difference and abort the process on the allocation.
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/decimal_scale_above_precision"));
        // A DATETIME2 value at the packed minimum: mysql_common negates it (wrapping).
        // A BLOB column whose table map carries no metadata: mysql_common indexes it.
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/datetime_at_the_packed_minimum"));
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/blob_without_metadata"));
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/var_string_column"));
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/typed_array_column"));
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/transaction_payload_short"));
        // PREVIOUS_GTIDS events with counts far beyond their size: mysql_common sizes a vector
        // by them (capacity overflow, or an allocation that aborts).
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/previous_gtids_capacity_overflow"));
        mysql_binlog(include_bytes!("../fuzz/regressions/mysql_binlog/previous_gtids_huge_allocation"));
        mysql_ddl(&String::from_utf8_lossy(include_bytes!(
            "../fuzz/regressions/mysql_ddl/garbage_with_executable_comment"
        )));
    }

    /// Bounded: the whole set runs in seconds as part of `make test`.
    fn config() -> ProptestConfig {
        ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
    }

    /// `base` with some bytes replaced, inserted or removed.
    fn mutated(base: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8).prop_map(move |edits| {
            let mut out = base.to_vec();
            for (at, byte, how) in edits {
                if out.is_empty() {
                    out.push(byte);
                    continue;
                }
                let i = at.index(out.len());
                match how {
                    0 => out[i] = byte,
                    1 => out.insert(i, byte),
                    _ => {
                        out.remove(i);
                    }
                }
            }
            out
        })
    }

    fn gtid() -> impl Strategy<Value = Gtid> {
        (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(domain, server, seq)| Gtid { domain, server, seq })
    }

    /// Table names as the binary log may carry them: plain, keywords, with quotes and dots.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_][a-z0-9_]{0,8}",
            Just("select".to_owned()),
            Just("t`x".to_owned()),
            Just("a.b".to_owned()),
            Just("é".to_owned()),
            "[ -~]{1,6}",
        ]
    }

    fn quoted(name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    /// A JSON value shaped like a spec: keys that Ferry's specs use, values of every JSON type.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        const KEYS: &[&str] = &[
            "source",
            "target",
            "engine",
            "host",
            "port",
            "database",
            "user",
            "passwordSecret",
            "name",
            "key",
            "objects",
            "databases",
            "tables",
            "filter",
            "columns",
            "include",
            "exclude",
            "rename",
            "type",
            "taskType",
            "policy",
            "ddl",
            "enabled",
            "kinds",
            "dml",
            "tls",
            "mode",
            "caSecret",
            "schedule",
            "speedLimits",
            "begin",
            "end",
            "rowsPerSecond",
            "template",
            "jobs",
            "overrides",
            "maxConcurrent",
            "startPosition",
            "worker",
            "image",
            "tuning",
            "compare",
            "scope",
            "schemas",
            "all",
            "apiVersion",
            "kind",
            "metadata",
            "spec",
            "data",
            "stringData",
        ];
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(J::Null, J::Number)),
            prop_oneof![
                Just("postgresql".to_owned()),
                Just("mariadb".to_owned()),
                Just("FULL_INCR_TRANS".to_owned()),
                Just("0 * * * *".to_owned()),
                Just("a > 1; DROP TABLE x".to_owned()),
                ".{0,12}",
            ]
            .prop_map(J::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(J::Array),
                vec((prop::sample::select(KEYS), inner), 0..6)
                    .prop_map(|kv| J::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    /// Example specs of every kind, as `spec` reads them (kind byte, JSON).
    fn example_specs() -> Vec<(u8, serde_json::Value)> {
        let mut out = Vec::new();
        for text in [
            include_str!("../deploy/examples/postgres-sync.yaml"),
            include_str!("../deploy/examples/mariadb-sync.yaml"),
            include_str!("../deploy/examples/compare.yaml"),
            include_str!("../deploy/examples/batch.yaml"),
        ] {
            for doc in serde_yaml::Deserializer::from_str(text) {
                let Ok(v) = <serde_json::Value as serde::Deserialize>::deserialize(doc) else { continue };
                let kind = match v["kind"].as_str() {
                    Some("SyncJob") => 0,
                    Some("CompareTask") => 1,
                    Some("BatchJob") => 2,
                    _ => continue,
                };
                out.push((kind, v["spec"].clone()));
            }
        }
        out
    }

    /// Replaces the value at a path of `v` picked by `at` (depth-first) with `with`.
    fn replace_somewhere(v: &mut serde_json::Value, at: &mut usize, with: &serde_json::Value) -> bool {
        if *at == 0 {
            *v = with.clone();
            return true;
        }
        *at -= 1;
        match v {
            serde_json::Value::Object(m) => m.values_mut().any(|c| replace_somewhere(c, at, with)),
            serde_json::Value::Array(a) => a.iter_mut().any(|c| replace_somewhere(c, at, with)),
            _ => false,
        }
    }

    fn pg_message() -> impl Strategy<Value = pg_walstream::LogicalReplicationMessage> {
        use pg_walstream::{ColumnData, ColumnInfo, LogicalReplicationMessage as M, TupleData};
        let column = prop_oneof![
            Just(ColumnData::null()),
            Just(ColumnData::unchanged()),
            "[ -~]{0,12}".prop_map(|s| ColumnData::text(s.into_bytes())),
            vec(any::<u8>(), 0..8).prop_map(ColumnData::text),
        ];
        let tuple = vec(column, 0..10).prop_map(TupleData::new);
        let relation = prop_oneof![Just(16384u32), any::<u32>()];
        let col_name = prop_oneof![
            prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g", "h"]).prop_map(str::to_owned),
            "[a-z]{1,3}",
        ];
        let columns = vec(
            (
                any::<u8>(),
                col_name,
                prop::sample::select(vec![23u32, 25, 1700, 16, 1184, 1082, 20, 701, 0]),
                any::<i32>(),
            )
                .prop_map(|(flags, name, oid, typmod)| ColumnInfo::new(flags & 1, name, oid, typmod)),
            0..10,
        );
        prop_oneof![
            (any::<u64>(), any::<u32>()).prop_map(|(lsn, xid)| M::Begin { final_lsn: lsn, timestamp: 0, xid }),
            (any::<u64>(), any::<u64>()).prop_map(|(c, e)| M::Commit {
                flags: 0,
                commit_lsn: c,
                end_lsn: e,
                timestamp: 0
            }),
            (relation.clone(), prop_oneof![Just("t".to_owned()), "[a-z]{1,2}"], columns).prop_map(
                |(relation_id, relation_name, columns)| M::Relation {
                    relation_id,
                    namespace: "public".into(),
                    relation_name: relation_name.into(),
                    replica_identity: b'd',
                    columns,
                }
            ),
            (relation.clone(), tuple.clone()).prop_map(|(relation_id, tuple)| M::Insert { relation_id, tuple }),
            (relation.clone(), prop::option::of(tuple.clone()), tuple.clone()).prop_map(
                |(relation_id, old_tuple, new_tuple)| {
                    let key_type = old_tuple.as_ref().map(|_| 'O');
                    M::Update { relation_id, old_tuple, new_tuple, key_type }
                }
            ),
            (relation.clone(), tuple).prop_map(|(relation_id, old_tuple)| M::Delete {
                relation_id,
                old_tuple,
                key_type: 'O'
            }),
            vec(relation, 0..3).prop_map(|relation_ids| M::Truncate { relation_ids, flags: 0 }),
            (
                any::<u64>(),
                prop_oneof![Just(crate::engine::postgres::stream::HEARTBEAT_PREFIX.to_owned()), "[a-z]{0,4}"]
            )
                .prop_map(|(lsn, prefix)| M::Message {
                    flags: 0,
                    lsn,
                    prefix,
                    content: bytes::Bytes::new()
                }),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn binlog_decoding_survives_arbitrary_packets(data in vec(any::<u8>(), 0..512)) {
            mysql_binlog(&data);
        }

        #[test]
        fn binlog_decoding_survives_a_damaged_log(data in mutated(BINLOG), seed in any::<u8>()) {
            let mut data = data;
            if let Some(first) = data.first_mut() {
                *first = seed & 0x7f;
            }
            mysql_binlog(&data);
        }

        #[test]
        fn gtid_decoding_survives_arbitrary_bytes(data in vec(any::<u8>(), 0..64)) {
            mysql_gtid(&data);
            let text = String::from_utf8_lossy(&data);
            mysql_gtid(text.as_bytes());
        }

        #[test]
        fn a_gtid_event_decodes_to_what_was_encoded(g in gtid(), flags in any::<u8>(), commit in any::<u64>()) {
            let mut data = g.seq.to_le_bytes().to_vec();
            data.extend(g.domain.to_le_bytes());
            data.push(flags);
            data.extend(commit.to_le_bytes());
            let e = gtid::decode_gtid(&data, g.server).unwrap();
            prop_assert_eq!(e.gtid, g);
            prop_assert_eq!(e.flags, flags);
            prop_assert_eq!(e.commit_id, (flags & 2 != 0).then_some(commit));
        }

        #[test]
        fn a_gtid_list_and_a_position_text_round_trip(gtids in vec(gtid(), 0..6)) {
            let mut data = (gtids.len() as u32).to_le_bytes().to_vec();
            let mut pos = GtidPos::default();
            for g in &gtids {
                data.extend(g.domain.to_le_bytes());
                data.extend(g.server.to_le_bytes());
                data.extend(g.seq.to_le_bytes());
                pos.advance(*g);
            }
            let decoded = gtid::decode_gtid_list(&data).unwrap();
            prop_assert_eq!(&decoded, &pos);
            prop_assert_eq!(decoded.to_string().parse::<GtidPos>().unwrap(), pos);
            // A list cut short is an error, never a panic or a partial position.
            if !gtids.is_empty() {
                prop_assert!(gtid::decode_gtid_list(&data[..data.len() - 1]).is_err());
            }
        }

        #[test]
        fn the_ddl_classifier_survives_arbitrary_text(sql in ".{0,80}") {
            mysql_ddl(&sql);
        }

        #[test]
        fn the_ddl_classifier_survives_damaged_statements(
            data in mutated(b"ALTER TABLE `shop`.`t` ADD COLUMN `c` INT DEFAULT 'x''y', RENAME TO shop.u /* c */"),
        ) {
            mysql_ddl(&String::from_utf8_lossy(&data));
        }

        #[test]
        fn the_ddl_classifier_finds_the_tables_it_is_given(
            a in name(), b in name(), db in name(), quote in any::<bool>(),
            form in 0usize..5,
        ) {
            // Plain names only where they read as one identifier.
            let q = |n: &str| {
                let plain = !quote && n.bytes().all(|c| c.is_ascii_lowercase() || c == b'_') && n != "select";
                if plain { n.to_owned() } else { quoted(n) }
            };
            let (sql, kind, want) = match form {
                0 => (format!("DROP TABLE {}, {}.{}", q(&a), q(&db), q(&b)), crate::api::DdlKind::DropTable, vec![a.clone(), b.clone()]),
                1 => (format!("RENAME TABLE {} TO {}.{}", q(&a), q(&db), q(&b)), crate::api::DdlKind::RenameTable, vec![a.clone(), b.clone()]),
                2 => (format!("ALTER TABLE {}.{} ADD COLUMN x INT", q(&db), q(&a)), crate::api::DdlKind::AlterTable, vec![a.clone()]),
                3 => (format!("CREATE TABLE {} LIKE {}", q(&a), q(&b)), crate::api::DdlKind::CreateTable, vec![a.clone(), b.clone()]),
                _ => (format!("TRUNCATE TABLE {}", q(&a)), crate::api::DdlKind::TruncateTable, vec![a.clone()]),
            };
            let stmt = ddl::parse(&sql);
            prop_assert_eq!(stmt.kind, ddl::StatementKind::Ddl(kind), "{}", sql);
            let names: Vec<String> = stmt.tables.iter().map(|t| t.name.clone()).collect();
            prop_assert_eq!(names, want, "{}", sql);
            mysql_ddl(&sql);
            ddl_rewrite_keeps_the_statement(&sql);
        }

        #[test]
        fn row_filters_survive_arbitrary_text(data in vec(any::<u8>(), 0..96)) {
            row_filter(&data);
        }

        #[test]
        fn row_filters_survive_damaged_filters(
            data in mutated(b"a > 5 AND (b LIKE 'x\\_%' ESCAPE '!' OR c IN (1, 2.5, 'z')) XOR NOT d IS NULL /* c */\n7\nab\n\\N"),
        ) {
            row_filter(&data);
        }

        #[test]
        fn pgoutput_decoding_survives_arbitrary_packets(data in vec(any::<u8>(), 0..512)) {
            pgoutput(&data);
        }

        #[test]
        fn pgoutput_decoding_survives_arbitrary_message_sequences(messages in vec(pg_message(), 0..12)) {
            let mut all = pgoutput_sample();
            all.truncate(2);
            all.extend(messages);
            pgoutput(&frame(&pgoutput_encode(&all)));
        }

        #[test]
        fn pgoutput_decoding_survives_damaged_messages(data in mutated(include_bytes!("../fuzz/seeds/pgoutput/transaction"))) {
            pgoutput(&data);
        }

        #[test]
        fn validation_survives_arbitrary_json_specs(kind in 0u8..5, value in json()) {
            let mut data = vec![kind];
            data.extend(serde_json::to_vec(&value).unwrap());
            spec(&data);
        }

        #[test]
        fn validation_survives_examples_with_one_field_replaced(
            which in any::<prop::sample::Index>(), at in 0usize..64, value in json(),
        ) {
            let examples = example_specs();
            let (kind, mut v) = examples[which.index(examples.len())].clone();
            let mut at = at;
            replace_somewhere(&mut v, &mut at, &value);
            let mut data = vec![kind];
            data.extend(serde_json::to_vec(&v).unwrap());
            spec(&data);
        }

        #[test]
        fn manifests_survive_damaged_yaml(data in mutated(include_bytes!("../deploy/examples/batch.yaml"))) {
            manifest(&String::from_utf8_lossy(&data));
        }
    }
}
