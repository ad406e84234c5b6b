//! The whole pipeline on generated well-typed programs and data: the GPU kernel gives
//! the CPU evaluator's numbers, or both give the same error (see `lossc_fuzz::pipeline`).
#![no_main]

libfuzzer_sys::fuzz_target!(|case: lossc_fuzz::pipeline::Case| lossc_fuzz::pipeline::check(&case));
