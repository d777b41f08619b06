//! pgoutput messages through pg_walstream's decoder and Ferry's transaction assembly and change decoding.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::fuzzing::pgoutput(data);
});
