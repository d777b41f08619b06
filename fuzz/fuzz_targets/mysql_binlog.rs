//! MariaDB/MySQL binary log packets through mysql_common and Ferry's event decoding (GTID, rotate, query/DDL, rows).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::fuzzing::mysql_binlog(data);
});
