//! The DDL classifier and rewrite on one QUERY event statement.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        ferry::fuzzing::mysql_ddl(sql);
    }
});
