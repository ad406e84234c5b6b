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

/// `pipeline`: a `remove_nans` stage reading an absent optional input inside a reduction
/// is skipped on the GPU, but the CPU evaluator materialised every reduction of the loss,
/// the skipped stage's too: "internal compiler error in loss `f1`: input `m` is absent
/// but read".
#[test]
fn an_absent_optional_input_read_in_a_reduction_of_a_skipped_mask_is_not_read() {
    let text = "loss f1 {\n    input x : [N]\n    input m : [N] optional\n    compute x[i]\n    \
                remove_nans drop where x[i] > 0 && all(c in 0..2: x[i] != m[i])\n    reduce sum\n}\n";
    let sources = [Source::new("f1.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    let data = lossc::runtime::data::parse_json_data(r#"{"x": [1, -2, 3]}"#).unwrap();
    let terms = [FactoryTerm::plain("f1")];
    let opts = lossc::runtime::RunOptions::default();
    let cpu = lossc::runtime::run::run_cpu(&checked.program, &terms, &data, &vec![], &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    // The stage is skipped: 1 - 2 + 3.
    assert_eq!(cpu.total, 2.0);
    // With `m` given, the stage runs: it drops 3 (positive, and unlike m there), not 1
    // (equal to m there) nor -2.
    let data =
        lossc::runtime::data::parse_json_data(r#"{"x": [1, -2, 3], "m": [1, 0, 0]}"#).unwrap();
    let cpu =
        lossc::runtime::run::run_cpu(&checked.program, &terms, &data, &vec![], &opts).unwrap();
    assert_eq!(cpu.total, 1.0 - 2.0);
}
