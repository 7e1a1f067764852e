//! Fuzz target: bytes through the txn request path (etcdshim::server::fuzz_input).
#![no_main]

use etcdshim::server::fuzz_input::Target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| etcdshim_fuzz::run(Target::Txn, data));
