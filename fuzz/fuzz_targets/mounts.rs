//! libFuzzer target `mounts`; the invariants live in `harness.rs`, shared with the corpus replay test.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::mounts(data));
