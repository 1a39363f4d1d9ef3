//! Call dispatcher: arbitrary decrypted frame sequences fed to a session never panic it, never
//! exceed its budgets or handler limit, and leave nothing held once it is closed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net_mesh_rpc::fuzzing::dispatcher(data);
});
