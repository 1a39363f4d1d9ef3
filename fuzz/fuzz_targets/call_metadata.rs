//! Fuzz target: the harness lives in `net_mesh_node::call_token::fuzz_decode_metadata`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_node::call_token::fuzz_decode_metadata(data);
});
