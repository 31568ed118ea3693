#![no_main]
// Body in src/fuzzing.rs, shared with the stable replay in tests/it/fuzz_corpora.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| xsync::fuzzing::delta_apply(data));
