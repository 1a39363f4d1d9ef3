//! Frame reassembly: an arbitrary frame stream, cut into Noise messages and read in pieces at
//! fuzzer-chosen sizes, reassembles (stored or read past) exactly as a plain parse says.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_rpc::fuzzing::frame_reassembly(data);
});
