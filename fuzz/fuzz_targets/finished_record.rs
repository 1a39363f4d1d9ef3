//! Fuzz target: the harness lives in `net_mesh_staging::finished::fuzz_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_staging::finished::fuzz_decode(data);
});
