//! Regression tests for what the `cargo fuzz` targets found (`docs/fuzzing.md`), one per
//! finding, named after it.

use lossc::diagnostics::Source;
use lossc::ir::FactoryTerm;

/// `check`: a doc comment holding a carriage return (or any other of WGSL's line breaks)
/// checked clean, but its text was copied into a WGSL line comment, where the break ended
/// the comment and the rest became code: "internal compiler error: naga cannot parse the
/// generated WGSL". A file name holding one did the same through the kernel's source
/// locations.
#[test]
fn a_line_break_in_a_doc_comment_or_a_file_name_stays_in_the_wgsl_comment() {
    for brk in ["\r", "\u{b}", "\u{c}", "\u{85}", "\u{2028}", "\u{2029}"] {
        let text = format!(
            "/// the sum{brk}of x, loss sum(\n/// {brk}\nloss r {{\n    input x : [N]\n    compute x[n]\n    reduce sum\n}}\n"
        );
        for file in ["r.loss".to_string(), format!("odd{brk}name.loss")] {
            let sources = [Source::new(file.as_str(), text.as_str())];
            let checked = lossc::sema::check(&sources);
            assert!(!checked.has_errors(), "{}", checked.render(&sources));
            let kernel = lossc::codegen::compile(&checked.program, "r", &[FactoryTerm::plain("r")])
                .unwrap_or_else(|e| panic!("{brk:?} in {file:?}: {e}"));
            assert!(
                kernel.wgsl.contains("/// the sum of x, loss sum("),
                "{brk:?}"
            );
        }
    }
}
