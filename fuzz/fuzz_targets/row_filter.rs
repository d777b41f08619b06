//! Row filter parsing (MySQL and PostgreSQL dialects) and evaluation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::fuzzing::row_filter(data);
});
