//! The reported GPU-vs-CPU reproducers (`tests/repro/gpu-cpu/`, kept as they were filed:
//! their comments describe the behaviour at the time) run on the CPU evaluator and on the
//! fused kernel with every row placement. Each gives its expected value, worked out by hand
//! or in f64 here, on both back ends; none is refused or falls back to the CPU.

use std::path::PathBuf;

use lossc::diagnostics::Source;
use lossc::gpu::RowPlacement;
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Data, read_data};
use lossc::runtime::run::{Backend, RunOptions, run};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/repro/gpu-cpu")
}

fn load(name: &str) -> (Program, Data) {
    let text = std::fs::read_to_string(dir().join(format!("{name}.loss"))).unwrap();
    let sources = [Source::new(format!("{name}.loss"), text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    let data = read_data(&dir().join(format!("{name}.json"))).unwrap();
    (checked.program, data)
}

/// The loss `loss` of reproducer `name` on the CPU and on the GPU under each placement:
/// (how, value).
fn everywhere(name: &str, loss: &str) -> Vec<(String, f32)> {
    let (program, data) = load(name);
    let terms = [FactoryTerm::plain(loss)];
    let ways = [
        ("cpu", Backend::Cpu, RowPlacement::Auto),
        ("gpu --rows auto", Backend::Gpu, RowPlacement::Auto),
        ("gpu --rows shared", Backend::Gpu, RowPlacement::Shared),
        (
            "gpu --rows per-thread",
            Backend::Gpu,
            RowPlacement::PerThread,
        ),
    ];
    ways.into_iter()
        .map(|(how, backend, rows)| {
            let opts = RunOptions {
                backend,
                rows,
                ..Default::default()
            };
            let result = run(&program, loss, &terms, &data, &vec![], &opts)
                .unwrap_or_else(|e| panic!("{name} `{loss}` on {how}: {e}"));
            if backend == Backend::Gpu {
                assert_eq!(result.dispatches, 1, "{name} `{loss}` on {how}");
            }
            (how.to_string(), result.losses[0].1.loss)
        })
        .collect()
}

/// Every way gives `expect` (NaN for NaN, the same infinity, else within `rel`).
fn gives(name: &str, loss: &str, expect: f64, rel: f64) {
    for (how, got) in everywhere(name, loss) {
        let got = got as f64;
        let ok = (expect.is_nan() && got.is_nan())
            || got == expect
            || (expect.is_finite() && (got - expect).abs() <= rel * expect.abs());
        assert!(ok, "{name} `{loss}` on {how}: {got}, expected {expect}");
    }
}

#[test]
fn a_let_compared_with_itself_in_shared_rows() {
    // Four rows of distinct means: l[j] == l[k] only for j = k, once per row.
    gives("gpu_shared_row_self_compare", "self_equal", 4.0, 0.0);
}

#[test]
fn a_select_on_an_enum_param_with_a_reduction_inside_a_reduction() {
    // Two values of k, each adding sum(w) = 3.
    gives("enum_select_hoist", "r", 6.0, 0.0);
}

#[test]
fn pow_of_zero_to_a_negative_power() {
    // 0 ^ -0.5 = +inf (C99 F.9.4.4), plus 4 ^ -0.5.
    gives("gpu_pow_zero_negative", "inv_sqrt", f64::INFINITY, 0.0);
}

#[test]
fn the_unbiased_variance_of_one_sample() {
    // 0 / (N - 1) with N = 1: 0 / 0.
    gives("gpu_div_by_specialised_zero", "unbiased_var", f64::NAN, 0.0);
}

#[test]
fn zero_times_and_minus_itself_of_nan_and_inf() {
    // 0 * NaN and 0 * inf are NaN; NaN - NaN and inf - inf are NaN.
    gives("gpu_nan_folded_away", "times_zero", f64::NAN, 0.0);
    gives("gpu_nan_folded_away", "minus_self", f64::NAN, 0.0);
}

#[test]
fn the_median_of_an_infinity() {
    gives("gpu_median_inf", "median_inf", f64::INFINITY, 0.0);
}

#[test]
fn log_and_square_root_of_a_subnormal() {
    // The f32 nearest 1e-40 is the subnormal 71362 · 2^-149.
    let x = 71362.0 * 2f64.powi(-149);
    gives("gpu_subnormal", "log_sub", x.ln(), 1e-6);
    gives("gpu_subnormal", "pow_half_sub", x.sqrt(), 1e-5);
}

#[test]
fn a_cross_entropy_whose_ignored_target_is_out_of_range() {
    // Row 0: target 2, weight 2, nll = log(e + e^2 + e^3) - 3; row 1 ignored.
    // (2 · nll) / 2.
    let nll = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0;
    gives("select_gather_untaken", "ce_weighted", nll, 1e-6);
}

#[test]
fn a_soft_target_cross_entropy_over_256_classes_runs_on_the_gpu() {
    // In f64 from the data: mean over rows of sum_c p[n, c] · (lse[n] - logits[n, c]).
    let text = std::fs::read_to_string(dir().join("gpu_logsumexp_not_hoisted.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = |k: &str| -> Vec<Vec<f64>> {
        json[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    let (logits, probs) = (rows("logits"), rows("probs"));
    let mut total = 0.0;
    for (l, p) in logits.iter().zip(&probs) {
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += l.iter().zip(p).map(|(l, p)| p * (lse - l)).sum::<f64>();
    }
    let expect = total / logits.len() as f64;
    gives("gpu_logsumexp_not_hoisted", "ce_soft", expect, 1e-5);
}

#[test]
fn one_mistake_in_a_let_body_is_one_error() {
    // As filed, `x[m * N]` was the mistake; it is now a reshaped subscript (an index
    // times a size), which checks. `x[m * m]`, a product of indices, is still a mistake:
    // the let is used twice, the error is reported once.
    let filed = std::fs::read_to_string(dir().join("duplicate_diagnostic.loss")).unwrap();
    let sources = [Source::new("duplicate_diagnostic.loss", filed.clone())];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    let text = filed.replace("x[m * N]", "x[m * m]");
    assert_ne!(text, filed);
    let sources = [Source::new("duplicate_diagnostic.loss", text)];
    let checked = lossc::sema::check(&sources);
    let rendered = checked.render(&sources);
    assert_eq!(
        rendered.matches("error").count() - rendered.matches("errors found").count(),
        1,
        "{rendered}"
    );
}
