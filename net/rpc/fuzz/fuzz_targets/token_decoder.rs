//! Permission tokens: the binary decoder, the chain decoder and the text parser never panic;
//! whatever decodes re-encodes exactly; verification never accepts a bad signature.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_rpc::fuzzing::token_decoder(data);
});
