//! Fuzz target: the harness lives in `net_mesh_replication::fuzzing::fuzz_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_replication::fuzzing::fuzz_decode(data);
});
