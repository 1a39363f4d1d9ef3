//! Fuzz target: the harness lives in `net_mesh_node::proto::fuzz_decode_messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_node::proto::fuzz_decode_messages(data);
});
