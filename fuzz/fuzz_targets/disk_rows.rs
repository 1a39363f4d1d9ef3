//! Fuzz target: the harness lives in `net_mesh_engine::codec::fuzzing::disk_row`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_engine::codec::fuzzing::disk_row(data);
});
