//! Regression tests for what the `cargo fuzz` targets found (`docs/fuzzing.md`), one per
//! finding, named after it.

mod common;

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

/// `data`: an `.npy` header whose shape's product overflows 64 bits, `(2^32, 2^32, 2)`,
/// made npyz panic ("attempt to multiply with overflow") in a debug build as it read the
/// header, and wrap to a small count in a release one. It is a located data error, in
/// the order the shape is written and with a zero dimension too (npyz's strides multiply
/// the dimensions after the zero); a large shape whose product fits is still read, as
/// a short file.
#[test]
fn an_npy_shape_whose_product_overflows_is_a_data_error() {
    use common::npz::{self, Arr};
    let big = 1usize << 32;
    for shape in [
        vec![big, big, 2],
        vec![2, big, big],
        vec![0, big, big],
        vec![big, big, 0],
    ] {
        let bytes = npz::write(&[("x", Arr::Raw("<f4", &shape, &[]))]);
        let e = lossc::runtime::data::parse_npz_data(&bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "npz data: array `x`: shape {shape:?} is too large: the product of its \
                 nonzero dimensions overflows 64 bits"
            ),
        );
    }
    let bytes = npz::write(&[("x", Arr::Raw("<f4", &[big, big - 1], &[0; 8]))]);
    let e = lossc::runtime::data::parse_npz_data(&bytes).unwrap_err();
    assert!(e.to_string().starts_with("npz data: "), "{e}");
    let bytes = npz::write(&[("x", Arr::F32(&[2, 1], &[1.5, -2.0]))]);
    let data = lossc::runtime::data::parse_npz_data(&bytes).unwrap();
    let lossc::runtime::data::DataValue::Array(x) = &data["x"] else {
        panic!("{data:?}")
    };
    assert_eq!(
        (x.shape.as_slice(), x.data.as_slice()),
        (&[2, 1][..], &[1.5, -2.0][..])
    );
}

/// `data`: an `.npy` header whose `shape` opens brackets and never closes them,
/// `'shape': [[[[…`, made npyz's general Python-literal parser backtrack exponentially
/// (about 1.7 times longer per bracket: 2.6 s for 14, more than 100 s for 20, in the fuzz
/// build); the fuzzer's input hid it behind other arrays, read first or not depending on
/// a hash map's order. lossc reads the header itself, as the dict NumPy writes, and
/// refuses it at once; the arrays of an archive are read in name order.
#[test]
fn an_npy_header_of_open_brackets_is_refused_at_once() {
    use common::npz::{self, Arr};
    let header = format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape':{}}}",
        "[".repeat(40)
    );
    let bytes = npz::write(&[
        ("b", Arr::Header(&header, &[0; 4])),
        ("a", Arr::Raw("<f4", &[1], &[0; 2])),
    ]);
    let start = std::time::Instant::now();
    let e = lossc::runtime::data::parse_npz_data(&bytes).unwrap_err();
    assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
    // `a`, short of data, is read first whatever the archive's order.
    assert!(e.to_string().starts_with("npz data: array `a`: "), "{e}");
    let bytes = npz::write(&[("b", Arr::Header(&header, &[0; 4]))]);
    let e = lossc::runtime::data::parse_npz_data(&bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "npz data: array `b`: invalid .npy header: expected a dimension of `shape` (an \
         integer, 0 or more) at byte 50"
    );
    // The same dict in NumPy's spelling reads.
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2,), }";
    let data: Vec<u8> = [1.0f64, 2.0, 3.0, 4.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bytes = npz::write(&[("c", Arr::Header(header, &data))]);
    let d = lossc::runtime::data::parse_npz_data(&bytes).unwrap();
    let lossc::runtime::data::DataValue::Array(c) = &d["c"] else {
        panic!("{d:?}")
    };
    assert_eq!(
        (c.shape.as_slice(), c.data.as_slice()),
        (&[2, 2][..], &[1.0, 2.0, 3.0, 4.5][..])
    );
}

/// `pipeline`: a truth value combined with itself, `isnan(x[i]) && isnan(x[i])` (one node
/// twice once CSE has merged the two), had its second operand hidden from the shader
/// compiler like a number's, `(v && lc_opaque(v))`; `lc_opaque` takes an f32, so naga
/// rejected the kernel: "internal compiler error ... Argument 0 value doesn't match the
/// type". `c && c` and `c || c` are `c` for every truth value: nothing to hide.
#[test]
fn a_truth_value_combined_with_itself_compiles() {
    use lossc::runtime::run::{Backend, RunOptions, run};
    let text = "loss r {\n    input x : [N]\n    compute x[i]\n    \
                remove_nans drop where (isnan(x[i]) && isnan(x[i])) || (x[i] < 0 || x[i] < 0)\n    \
                reduce sum\n}\n";
    let sources = [Source::new("r.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    let terms = [FactoryTerm::plain("r")];
    lossc::codegen::compile(&checked.program, "r", &terms).unwrap_or_else(|e| panic!("{e}"));
    // NaN and -2 are dropped: 1 + 3.
    let data = lossc::runtime::data::parse_json_data(r#"{"x": [1, null, -2, 3]}"#).unwrap();
    for backend in [Backend::Cpu, Backend::Gpu] {
        let opts = RunOptions {
            backend,
            ..RunOptions::default()
        };
        let r = run(&checked.program, "r", &terms, &data, &vec![], &opts)
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        assert_eq!(r.total, 4.0, "{backend:?}");
    }
}

/// `pipeline` (the generator's long mode, seed 1 932): a weight `select(isnan(0.1),
/// exp(a), 0 * 1)` was written `lc_opaque(select(lc_opaque(0.0), v, false))`. The driver
/// took the select's known branch, and `lc_opaque` was an xor with an unknown zero, so
/// the two cancelled: the weight became a known 0 and `0 · inf` (an infinite loss) gave
/// 0 instead of NaN. `lc_opaque` is now an or with the unknown zero, which a second one
/// does not undo.
#[test]
fn a_constant_hidden_twice_stays_hidden() {
    use lossc::runtime::run::{Backend, RunOptions, run};
    let text = "loss f {\n    input x : [N]\n    param a = 0.5\n    compute x[i]\n    \
                reduce sum\n    weight select(isnan(0.1), exp(a), 0)\n}\n";
    let sources = [Source::new("f.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    let terms = [FactoryTerm::plain("f")];
    let data = lossc::runtime::data::parse_json_data(r#"{"x": ["Infinity", 1]}"#).unwrap();
    for backend in [Backend::Cpu, Backend::Gpu] {
        let opts = RunOptions {
            backend,
            ..RunOptions::default()
        };
        let r = run(&checked.program, "f", &terms, &data, &vec![], &opts)
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        // The loss is inf and the weight 0: weighted and total are 0 · inf = NaN.
        assert_eq!(r.losses[0].1.loss, f32::INFINITY, "{backend:?}");
        assert_eq!(r.losses[0].1.weight, 0.0, "{backend:?}");
        assert!(
            r.losses[0].1.weighted.is_nan(),
            "{backend:?}: {:?}",
            r.losses
        );
        assert!(r.total.is_nan(), "{backend:?}");
    }
}

/// `pipeline`'s generator (seed 120 of `CASES=300`): **a wrong number.** A `sum_top` in a
/// loss's weight is reduced by one thread; its lowering puts the k-th largest value (a
/// bisection with loops over `i`) inside the body of a sum over the same `i`. The
/// specialised kernel read `z[i]` in the inner loops at the enclosing loop's linear index
/// instead of the inner loop's own `i`, so every pass counted one value: the weight
/// `sum_top(2, i: z[i])` of `[-6, -3.5, 4, -0, 0, 1.5]` was 3 on the GPU, 5.5 on the CPU.
#[test]
fn a_reduction_inside_a_loop_over_its_own_indices_reads_its_own_elements() {
    let text = "loss f1 {\n    input z : [N]\n    input x : [Q, M]\n    compute x[q, j]\n    \
                reduce mean\n    weight sum_top(2, i: z[i]) + mean_top(6, i: z[i])\n}\n";
    let sources = [Source::new("f1.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    let data = lossc::runtime::data::parse_json_data(
        r#"{"x": [[1, 2], [3, 4]], "z": [-6, -3.5, 4, -0.0, 0, 1.5]}"#,
    )
    .unwrap();
    let terms = [FactoryTerm::plain("f1")];
    for backend in [
        lossc::runtime::run::Backend::Cpu,
        lossc::runtime::run::Backend::Gpu,
    ] {
        let opts = lossc::runtime::RunOptions {
            backend,
            ..Default::default()
        };
        let r = lossc::runtime::run::run(&checked.program, "f", &terms, &data, &vec![], &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        // 4 + 1.5, plus the mean of all six, -4 / 6.
        assert_eq!(r.losses[0].1.weight, 5.5 + -4.0 / 6.0, "{backend:?}");
    }
}
