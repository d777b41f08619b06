//! Specs as JSON (strict field check, deserialization, validate()) and manifest files.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::fuzzing::spec(data);
});
