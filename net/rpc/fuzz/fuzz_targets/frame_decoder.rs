//! nRPC frame decoder: never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_rpc::fuzzing::frame_decoder(data);
});
