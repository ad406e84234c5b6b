//! `sum_top(n, i: e)` and `mean_top(n, i: e)`: the sum and mean of the n largest values.
//! Values and gradients worked out by hand, and against a sort done here in f64 for long
//! rows (the GPU then reduces cooperatively), on both back ends.

mod common;

use lossc::ir::FactoryTerm;
use lossc::runtime::data::parse_json_data;
use lossc::runtime::grad::Wrt;
use lossc::runtime::run::{Backend, RunOptions, RunResult, run};

fn run_on(text: &str, data: &str, backend: Backend, wrt: Wrt) -> Result<RunResult, String> {
    let program = common::check_text(text);
    let data = parse_json_data(data).unwrap();
    let opts = RunOptions {
        backend,
        wrt,
        ..Default::default()
    };
    let terms: Vec<FactoryTerm> = program
        .losses
        .iter()
        .map(|l| FactoryTerm::plain(&l.name))
        .collect();
    run(&program, "f", &terms, &data, &vec![], &opts).map_err(|e| e.to_string())
}

/// One row's `sum_top` and `mean_top` of `xs` with count `n` (NaN and infinities
/// written as JSON strings), on both back ends.
fn top_of(xs: &str, n: f64) -> Vec<(f32, f32)> {
    let text = "loss s {
    input x : [K]
    param n = 0
    compute sum_top(n, k: x[k])
    reduce sum
}
loss m {
    input x : [K]
    param n = 0
    compute mean_top(n, k: x[k])
    reduce sum
}
";
    let data = format!(r#"{{"x": {xs}, "s.n": {n}, "m.n": {n}}}"#);
    [Backend::Cpu, Backend::Gpu]
        .iter()
        .map(|b| {
            let r = run_on(text, &data, *b, Wrt::Nothing).unwrap();
            (r.losses[0].1.loss, r.losses[1].1.loss)
        })
        .collect()
}

fn same(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn the_n_largest_by_hand() {
    let cases: [(&str, f64, f32, f32); 12] = [
        ("[5, 3, 3, 1]", 2.0, 8.0, 4.0),
        ("[5, 3, 3, 1]", 3.0, 11.0, 11.0 / 3.0),
        // More than there are: all of them, and the mean divides by the count.
        ("[5, 3, 3, 1]", 9.0, 12.0, 3.0),
        // None: 0, and the mean of nothing is NaN.
        ("[5, 3, 3, 1]", 0.0, 0.0, f32::NAN),
        // NaN is the largest value.
        (r#"[1, "NaN", 2]"#, 1.0, f32::NAN, f32::NAN),
        (r#"[1, "NaN", 2]"#, 0.0, 0.0, f32::NAN),
        (r#"[-1, -5, -3]"#, 2.0, -4.0, -2.0),
        (
            r#"["-Infinity", 2, "Infinity"]"#,
            2.0,
            f32::INFINITY,
            f32::INFINITY,
        ),
        (
            r#"["-Infinity", 2, "-Infinity"]"#,
            2.0,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ),
        // Ties at the boundary: each tied value is the same.
        ("[2, 2, 2, 2]", 3.0, 6.0, 2.0),
        ("[0, -0, 1]", 2.0, 1.0, 0.5),
        ("[7]", 1.0, 7.0, 7.0),
    ];
    for (xs, n, sum, mean) in cases {
        for (backend, (s, m)) in ["cpu", "gpu"].iter().zip(top_of(xs, n)) {
            assert!(
                same(s, sum),
                "{backend} sum_top({n}) of {xs}: {s}, want {sum}"
            );
            assert!(
                same(m, mean),
                "{backend} mean_top({n}) of {xs}: {m}, want {mean}"
            );
        }
    }
}

/// Long rows (the GPU reduces them with the whole workgroup) and many short ones (one
/// thread a row), with a count from the dimensions, against a sort in f64.
#[test]
fn long_rows_and_many_rows_match_a_sort() {
    let mut rng = common::Rng(0x2545_f491_4f6c_dd1d);
    for (b, p) in [(3, 2000), (40, 30)] {
        rows_match_a_sort(&mut rng, b, p);
    }
}

fn rows_match_a_sort(rng: &mut common::Rng, b: usize, p: usize) {
    let text = "loss ohkm {
    input x : [B, P]
    compute mean_top(P / 10, p: x[b, p] ^ 2)
    reduce mean
}
";
    let mut rows = Vec::new();
    for _ in 0..b {
        // Many ties: values from a small set, so that the boundary often falls in one.
        let row: Vec<f64> = (0..p)
            .map(|_| (rng.below(64) as f64 - 32.0) / 8.0)
            .collect();
        rows.push(row);
    }
    let want: f64 = rows
        .iter()
        .map(|r| {
            let mut sq: Vec<f64> = r.iter().map(|v| v * v).collect();
            sq.sort_by(|a, b| b.total_cmp(a));
            sq[..p / 10].iter().sum::<f64>() / (p / 10) as f64
        })
        .sum::<f64>()
        / b as f64;
    let data = serde_json::json!({ "x": rows }).to_string();
    for backend in [Backend::Cpu, Backend::Gpu] {
        let r = run_on(text, &data, backend, Wrt::EveryInput).unwrap();
        assert!(
            (f64::from(r.total) - want).abs() <= 1e-5 * want,
            "{backend:?}: {} vs {want}",
            r.total
        );
        // The gradient: 2x / (P/10) / B at the chosen values, the boundary's share
        // split among its ties; it sums, per row, to the mean of 2·|x| over the chosen.
        let g = &r.grads[0].1.data;
        for (row, gr) in rows.iter().zip(g.chunks(p)) {
            let mut sq: Vec<f64> = row.iter().map(|v| v * v).collect();
            sq.sort_by(|a, b| b.total_cmp(a));
            let t = sq[p / 10 - 1];
            let above = row.iter().filter(|v| *v * *v > t).count();
            let tied = row.iter().filter(|v| *v * *v == t).count();
            for (x, gx) in row.iter().zip(gr) {
                let share = if x * x > t {
                    1.0
                } else if x * x == t {
                    (p / 10 - above) as f64 / tied as f64
                } else {
                    0.0
                };
                let want = 2.0 * x * share / (p / 10) as f64 / b as f64;
                assert!(
                    (f64::from(*gx) - want).abs() <= 1e-6,
                    "{backend:?}: d/dx at {x}: {gx} vs {want}"
                );
            }
        }
    }
}

#[test]
fn a_count_that_is_not_whole_is_a_located_run_time_error() {
    let text = "loss t {
    input x : [K]
    param n = 1
    compute sum_top(n * 2 - 4, k: x[k])
    reduce sum
}
";
    for backend in [Backend::Cpu, Backend::Gpu] {
        for (n, shown) in [("1", "-2"), ("2.25", "0.5"), ("0.75", "-2.5")] {
            let data = format!(r#"{{"x": [1, 2], "n": {n}}}"#);
            let e = run_on(text, &data, backend, Wrt::Nothing).unwrap_err();
            assert!(
                e.contains(&format!("the count of `sum_top` or `mean_top` is {shown}"))
                    && e.contains("t.loss:4:21"),
                "{backend:?} n = {n}: {e}"
            );
        }
    }
}

#[test]
fn misuses_are_located_errors() {
    let no_count = common::errors_of(
        "loss t {\n    input x : [K]\n    compute sum_top(k: x[k])\n    reduce sum\n}\n",
    );
    assert!(
        no_count.contains("`sum_top` takes a count first") && no_count.contains("t.loss:3:13"),
        "{no_count}"
    );
    let data_count = common::errors_of(
        "loss t {\n    input x : [K]\n    input c : []\n    compute sum_top(c, k: x[k])\n    reduce sum\n}\n",
    );
    assert!(
        data_count.contains("built from numbers, scalar params and dimensions")
            && data_count.contains("t.loss:4:21"),
        "{data_count}"
    );
    let unknown = common::errors_of(
        "loss t {\n    input x : [K]\n    compute sum_tops(k: x[k])\n    reduce sum\n}\n",
    );
    assert!(unknown.contains("did you mean `sum_top`"), "{unknown}");
}
