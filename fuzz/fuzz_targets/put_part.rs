//! Fuzz target: the harness lives in `net_mesh_node::service::fuzz_decode_put_part`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_node::service::fuzz_decode_put_part(data);
});
