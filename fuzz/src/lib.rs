//! The harnesses behind lossc's `cargo fuzz` targets: the front end on any text
//! ([`check_bytes`]), the data reader on any bytes ([`read_data_bytes`]), and the whole
//! pipeline on generated well-typed programs and data, the GPU kernel against the CPU
//! evaluator ([`pipeline`]). Each target in `fuzz_targets/` is one call into this crate,
//! so that a reproducer can also be run from a test or a debugger.

pub mod pipeline;

use lossc::codegen::CompileError;
use lossc::diagnostics::Source;
use lossc::ir::FactoryTerm;

/// Parses and checks `bytes` as one `.loss` file and renders its diagnostics. Every span
/// lies within the text, and no diagnostic is an internal compiler error. A file that
/// checks clean is compiled to a fused kernel per loss and per factory (validated by
/// naga): that must succeed too, since a program that checks is one lossc promises to
/// compile, but for the one limit of the GPU back end a check does not foresee
/// (`CompileError::TooDeep`: reductions nested deeper than a kernel's blocks may nest,
/// which the CPU evaluator still runs).
pub fn check_bytes(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let sources = [Source::new("fuzz.loss", text.as_ref())];
    let checked = lossc::sema::check(&sources);
    for (file, d) in &checked.diagnostics {
        assert_eq!(*file, 0);
        for (span, _) in std::iter::once(&d.primary).chain(&d.secondary) {
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "span {span:?} outside the text ({} bytes): {}",
                text.len(),
                d.message
            );
        }
        assert!(
            !d.message.starts_with("internal compiler error"),
            "{}",
            checked.render(&sources)
        );
    }
    let _ = checked.render(&sources);
    if checked.has_errors() {
        return;
    }
    let program = &checked.program;
    let kernels = program
        .losses
        .iter()
        .map(|l| (&l.name, vec![FactoryTerm::plain(l.name.clone())]))
        .chain(program.factories.iter().map(|f| (&f.name, f.terms.clone())));
    for (name, terms) in kernels {
        match lossc::codegen::compile(program, name, &terms) {
            Ok(_) | Err(CompileError::TooDeep { .. }) => {}
            Err(e) => panic!("`{name}` checks clean but does not compile: {e}"),
        }
    }
}

/// Reads `bytes` as a JSON data file and as an `.npz` archive: each gives data or an
/// error, and an error message is never empty.
pub fn read_data_bytes(bytes: &[u8]) {
    use lossc::runtime::data::{parse_json_data, parse_npz_data};
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Err(e) = parse_json_data(text) {
            assert!(!e.to_string().is_empty());
        }
    }
    if let Err(e) = parse_npz_data(bytes) {
        assert!(!e.to_string().is_empty());
    }
}
