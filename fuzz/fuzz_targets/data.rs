//! The data reader on arbitrary bytes, as JSON and as `.npz`: data or an error, never a
//! panic (see `lossc_fuzz::read_data_bytes`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| lossc_fuzz::read_data_bytes(bytes));
