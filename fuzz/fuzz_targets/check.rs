//! The parser and checker on arbitrary bytes: `lossc::sema::check` returns, its
//! diagnostics render, and a clean file compiles (see `lossc_fuzz::check_bytes`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| lossc_fuzz::check_bytes(bytes));
