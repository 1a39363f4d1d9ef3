//! nRPC frame decoder: never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh::fuzzing::frame_decoder(data);
});
