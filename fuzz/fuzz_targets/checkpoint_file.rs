//! The checkpoint file loader: a torn or hostile file is an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = reader_core::FileCheckpointStore::parse(std::path::Path::new("fuzz.json"), data);
});
