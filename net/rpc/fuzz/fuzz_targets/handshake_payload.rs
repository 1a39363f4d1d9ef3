//! Handshake identity payload decoder: never panics; whatever decodes re-encodes exactly.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_rpc::fuzzing::handshake_payload_decoder(data);
});
