//! `reduce mean by W`: Σ w·x / Σ w over the kept elements. Values and gradients worked
//! out by hand, on both back ends; the misuses are located diagnostics.

mod common;

use lossc::runtime::run::{Backend, RunResult};

fn run_json(text: &str, data: &str, backend: Backend) -> RunResult {
    common::run_text(text, data, backend).unwrap()
}

fn grad<'a>(r: &'a RunResult, name: &str) -> &'a [f32] {
    common::grad_of(r, name)
}

fn assert_close(a: &[f32], b: &[f64], what: &str) {
    common::assert_close_to(a, b, 1e-6, what)
}

const MASKED: &str = "loss t {
    input x : [N]
    input w : [N]
    compute x[n] ^ 2
    remove_nans zero where x[n] == 2
    remove_nans drop where w[n] < 0
    reduce mean by w[n]
}
";

/// A dropped element counts in neither sum; a zeroed one adds its weight with value 0.
#[test]
fn kept_elements_are_weighted_and_zeroed_ones_keep_their_weight() {
    let data = r#"{"x": [1, 2, 3, 4, 5], "w": [1, 3, 2, -1, 0.5]}"#;
    // Kept: 0 (w 1, x² 1), 1 zeroed (w 3, 0), 2 (w 2, 9), 4 (w 0.5, 25); 3 dropped.
    let sw = 6.5;
    let l = 31.5 / sw;
    for backend in [Backend::Cpu, Backend::Gpu] {
        let r = run_json(MASKED, data, backend);
        assert_close(&[r.total], &[l], &format!("{backend:?} value"));
        // d/dx = w·2x / Σw where the value is x²; d/dw = (value − L) / Σw where kept.
        let dx = [2.0 / sw, 0.0, 12.0 / sw, 0.0, 5.0 / sw];
        assert_close(grad(&r, "x"), &dx, &format!("{backend:?} d/dx"));
        let dw = [
            (1.0 - l) / sw,
            -l / sw,
            (9.0 - l) / sw,
            0.0,
            (25.0 - l) / sw,
        ];
        assert_close(grad(&r, "w"), &dw, &format!("{backend:?} d/dw"));
    }
}

/// Σ w = 0, and a mean over no element, are 0 / 0 = NaN, as PyTorch's.
#[test]
fn no_weight_is_nan() {
    for backend in [Backend::Cpu, Backend::Gpu] {
        for data in [
            r#"{"x": [1, 3], "w": [0, 0]}"#,
            r#"{"x": [1, 3], "w": [-1, -2]}"#,
        ] {
            let r = run_json(MASKED, data, backend);
            assert!(r.total.is_nan(), "{backend:?} {data}: {}", r.total);
        }
    }
}

/// `rectify` applies to the value before it is weighed.
#[test]
fn rectify_comes_before_the_weight() {
    let text = "loss t {
    input x : [N]
    input w : [N]
    compute x[n]
    rectify 1
    reduce mean by w[n]
}
";
    for backend in [Backend::Cpu, Backend::Gpu] {
        let r = run_json(text, r#"{"x": [0.5, 3, 5], "w": [4, 1, 3]}"#, backend);
        // (4·0 + 1·2 + 3·4) / 8.
        assert_eq!(r.total, 1.75, "{backend:?}");
    }
}

#[test]
fn misuses_are_located_errors() {
    let sum = common::errors_of(
        "loss t {\n    input x : [N]\n    compute x[n]\n    reduce sum by x[n]\n}\n",
    );
    assert!(
        sum.contains("`by` weighs a mean") && sum.contains("t.loss:4:19"),
        "{sum}"
    );
    let empty = common::errors_of(
        "loss t {\n    input x : [N]\n    compute x[n]\n    reduce mean by x[n] (empty: 0)\n}\n",
    );
    assert!(
        empty.contains("takes no `(empty: ...)`") && empty.contains("t.loss:4:33"),
        "{empty}"
    );
    let outside = common::errors_of(
        "loss t {\n    input x : [N]\n    input w : [N, M]\n    compute x[n]\n    reduce mean by w[n, m]\n}\n",
    );
    assert!(
        outside.contains("unknown name `m`") && outside.contains("t.loss:5:25"),
        "{outside}"
    );
    let optional = common::errors_of(
        "loss t {\n    input x : [N]\n    input v : [N] optional\n    compute x[n]\n    remove_nans drop where isnan(v[n])\n    reduce mean by x[n]\n}\n",
    );
    assert!(
        optional.contains("optional input without a default"),
        "{optional}"
    );
    let truth = common::errors_of(
        "loss t {\n    input x : [N]\n    compute x[n]\n    reduce mean by x[n] > 0\n}\n",
    );
    assert!(truth.contains("expected a number"), "{truth}");
}
