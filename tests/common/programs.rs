//! The random programs of `tests/gpu_programs.rs` (built from the patterns that once
//! made the fused GPU kernel disagree with the CPU evaluator) and their data, shared with
//! `tests/manifest_host.rs`.

use lossc::runtime::data::{Data, parse_json_data};

use super::Rng;

/// The body of the `let l[r]`: a reduction over a row (a median only over short rows:
/// llvmpipe takes a minute over a median of 768 values shared by a workgroup).
fn row_reduction(r: &mut Rng, long: bool) -> String {
    let body = r.pick(&[
        "x[r, q]",
        "x[r, q] * y[r, q]",
        "x[r, q] + y[r, q]",
        "x[r, q] * z[r]",
        "exp(-x[r, q])",
    ]);
    let kind = r.pick(&["mean", "sum", "max", "min", "norm", "median", "mean", "sum"]);
    let kind = if long && kind == "median" {
        "mean"
    } else {
        kind
    };
    format!("{kind}(q: {body})")
}

/// The pieces that gather through `t`.
const GATHERS: [usize; 4] = [7, 8, 9, 10];

/// Piece `k` of `compute`, over the domain (i, j); `long` rows get no median.
fn piece(k: usize, long: bool) -> String {
    match k {
        // The let at the row's own index, and a value compared with itself.
        0 => "x[i, j] * l[i]".into(),
        1 => "sum(k: select(l[k] == l[i], 1, 0))".into(),
        // Ranks by counting, and a top-k written with them.
        2 => "sum(k: select(l[k] > l[i], 1, 0))".into(),
        3 => "select(sum(k: select(l[k] >= l[i], 1, 0)) <= 2, l[i], 0)".into(),
        // Enum params choosing branches that hold reductions, inside reductions too.
        4 => "select(mode == \"a\", sum(k: l[k] * z[k]), x[i, j])".into(),
        5 => "sum(k: select(mode == \"b\", mean(q: x[k, q]), z[k]))".into(),
        6 => "select(mode != \"a\", l[i], mean(q: y[i, q] * l[i]))".into(),
        // Gathers in branches that ignored targets (t = -1) do not take.
        7 => "select(t[i] < 0, 0, y[t[i], j])".into(),
        8 => "select(t[i] < 0, a, sum(q: x[t[i], q] * y[i, q]))".into(),
        9 => "select(t[i] >= 0, mean(q: y[t[i], q]) - l[i], 0)".into(),
        10 => "sum(k: select(t[k] < 0, 0, x[t[k], j] * z[k]))".into(),
        // Selects with reductions in both branches.
        11 => "select(x[i, j] > 0.3, max(q: y[i, q]), min(q: x[i, q] - l[i]))".into(),
        12 if !long => "(l[i] - median(q: x[i, q])) ^ 2".into(),
        12 => "(l[i] - mean(q: x[i, q])) ^ 2".into(),
        _ => "y[i, j] - z[i] * a".into(),
    }
}

/// A random loss over rows of `long` rows or not; with `gather`, one of its pieces reads
/// through the index param `t`.
pub fn random_program(r: &mut Rng, long: bool, gather: bool) -> String {
    let first = if gather {
        GATHERS[r.below(GATHERS.len())]
    } else {
        r.below(14)
    };
    let mut body = piece(first, long);
    for _ in 0..r.below(3) {
        let op = r.pick(&[" + ", " - ", " * "]);
        body = format!("({body}{op}{})", piece(r.below(14), long));
    }
    // Every program reads x[i, j], so that the domain is (i, j).
    let compute = if r.below(2) == 0 {
        format!("abs({body} + x[i, j])")
    } else {
        format!("({body} - y[i, j]) ^ 2")
    };
    let reduce = if r.below(3) == 0 { "sum" } else { "mean" };
    format!(
        "loss random {{\n    input x : [N, M]\n    input y : [N, M]\n    input z : [N]\n    param t : index[N]\n    param mode : \"a\" | \"b\" = \"a\"\n    param a = 0.25\n    let l[r] = {}\n    compute {compute}\n    reduce {reduce}\n}}\n",
        row_reduction(r, long)
    )
}

/// Data whose rows are far apart (row r near 0.1 r), so that reduced values of
/// different rows never tie within f32 rounding and comparisons of them mean the same on
/// both back ends; about a third of the targets ignored (-1), and with `bad` one target
/// out of range.
pub fn random_data_json(r: &mut Rng, n: usize, m: usize, bad: bool) -> serde_json::Value {
    let noise = |r: &mut Rng| (r.unit() * 2.0 - 1.0) * 0.01;
    let x: Vec<f64> = (0..n * m)
        .map(|k| 0.1 * (k / m) as f64 + noise(r))
        .collect();
    let y: Vec<f64> = (0..n * m)
        .map(|k| 0.5 + 0.05 * (k / m) as f64 + noise(r))
        .collect();
    let z: Vec<f64> = (0..n).map(|_| 0.2 + r.unit() * 0.8).collect();
    let mut t: Vec<i64> = (0..n)
        .map(|_| {
            if r.below(3) == 0 {
                -1
            } else {
                r.below(n) as i64
            }
        })
        .collect();
    if bad {
        let k = r.below(n);
        t[k] = (n + 2) as i64;
    }
    let json = serde_json::json!({
        "x": {"shape": [n, m], "data": x},
        "y": {"shape": [n, m], "data": y},
        "z": z,
        "t": t,
        "mode": if r.below(2) == 0 { "a" } else { "b" },
    });
    json
}

/// [`random_data_json`], parsed.
pub fn random_data(r: &mut Rng, n: usize, m: usize, bad: bool) -> Data {
    parse_json_data(&random_data_json(r, n, m, bad).to_string()).unwrap()
}
