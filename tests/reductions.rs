//! The reductions `logsumexp` and `prod` at their edges and with their gradients, on
//! both back ends, against values worked out by hand from torch.logsumexp's and
//! torch.prod's definitions.

use lossc::diagnostics::Source;
use lossc::ir::FactoryTerm;
use lossc::runtime::grad::Wrt;
use lossc::runtime::run::{Backend, RunOptions, run};

/// The total of the one loss `t` in `text` on `data` (JSON), on `backend`, and the
/// gradient with respect to `x`.
fn run_t(text: &str, data: &str, backend: Backend) -> (f32, Vec<f32>) {
    let sources = [Source::new("t.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    let data = lossc::runtime::data::parse_json_data(data).unwrap();
    let opts = RunOptions {
        backend,
        wrt: Wrt::Inputs(vec!["x".into()]),
        ..Default::default()
    };
    let terms = [FactoryTerm::plain("t")];
    let r = run(&checked.program, "t", &terms, &data, &vec![], &opts).unwrap();
    (r.total, r.grads[0].1.data.clone())
}

fn total(text: &str, data: &str, backend: Backend) -> f32 {
    run_t(text, data, backend).0
}

fn same(got: f32, want: f32) -> bool {
    (got.is_nan() && want.is_nan()) || got == want || (got - want).abs() <= 1e-6 * want.abs()
}

/// `logsumexp` at its edges, worked out by hand from torch.logsumexp's definition
/// (`log(sum(exp(x - m))) + m`, m the maximum, taken as 0 when infinite): NaN
/// propagates, nothing and -inf only give -inf, a +inf element gives +inf, and a
/// large shift loses nothing (log(e^1000 + e^1000) = 1000 + log 2).
#[test]
fn logsumexp_edges_on_both_back_ends() {
    let text = "loss t {\n  input x : [N]\n  compute logsumexp(i: x[i])\n  reduce sum\n}\n";
    let cases: [(&str, f32); 7] = [
        (r#"{"x": [0, 0, 0, 0]}"#, 4f32.ln()),
        (r#"{"x": [1000, 1000, -1e30, -1e30]}"#, 1000.0 + 2f32.ln()),
        (r#"{"x": [1, null, 2, 3]}"#, f32::NAN),
        (r#"{"x": {"shape": [0], "data": []}}"#, f32::NEG_INFINITY),
        (
            r#"{"x": ["-inf", "-inf", "-inf", "-inf"]}"#,
            f32::NEG_INFINITY,
        ),
        (r#"{"x": [1, "inf", 2, "-inf"]}"#, f32::INFINITY),
        (r#"{"x": [-1]}"#, -1.0),
    ];
    for backend in [Backend::Cpu, Backend::Gpu] {
        for (data, want) in cases {
            let got = total(text, data, backend);
            assert!(
                same(got, want),
                "{backend:?}: logsumexp of {data} = {got}, want {want}"
            );
        }
    }
}

/// The gradient of `logsumexp` is the softmax: for `0, log 3`, the weights 1/4 and 3/4.
#[test]
fn logsumexp_gradient_is_the_softmax() {
    let text = "loss t {\n  input x : [N]\n  compute logsumexp(i: x[i])\n  reduce sum\n}\n";
    let data = format!(r#"{{"x": [0, {}]}}"#, 3f32.ln());
    for backend in [Backend::Cpu, Backend::Gpu] {
        let (v, g) = run_t(text, &data, backend);
        assert!(same(v, 4f32.ln()), "{backend:?}: {v}");
        assert!(same(g[0], 0.25) && same(g[1], 0.75), "{backend:?}: {g:?}");
    }
}

/// `prod(i: x[i])`: its value (1 over nothing, NaN with a NaN) and torch.prod's
/// gradient, the product of the other elements: with no zero, `prod / x`; with one zero,
/// that element gets the product of the others and the rest 0; with two zeros, all 0.
#[test]
fn prod_values_and_gradients_on_both_back_ends() {
    let text = "loss t {\n  input x : [N]\n  compute prod(i: x[i])\n  reduce sum\n}\n";
    let cases: [(&str, f32, &[f32]); 6] = [
        (r#"{"x": [2, 3, 4]}"#, 24.0, &[12.0, 8.0, 6.0]),
        (r#"{"x": [2, 0, 4]}"#, 0.0, &[0.0, 8.0, 0.0]),
        (r#"{"x": [0, 3, 0]}"#, 0.0, &[0.0, 0.0, 0.0]),
        (r#"{"x": [-1.5, 2]}"#, -3.0, &[2.0, -1.5]),
        (r#"{"x": {"shape": [0], "data": []}}"#, 1.0, &[]),
        (r#"{"x": [2, null]}"#, f32::NAN, &[f32::NAN, f32::NAN]),
    ];
    for backend in [Backend::Cpu, Backend::Gpu] {
        for (data, want, grad) in cases {
            let (v, g) = run_t(text, data, backend);
            assert!(
                same(v, want),
                "{backend:?}: prod of {data} = {v}, want {want}"
            );
            assert_eq!(g.len(), grad.len());
            for (a, b) in g.iter().zip(grad) {
                assert!(
                    same(*a, *b),
                    "{backend:?}: d prod / dx of {data} = {g:?}, want {grad:?}"
                );
            }
        }
    }
}

/// A product over more elements than a workgroup has lanes (which the GPU folds lane by
/// lane, then lanes together): 200 factors alternating 1 + 2^-8 and 1 - 2^-8, whose
/// product is (1 - 2^-16)^100, to the rounding of 200 products.
#[test]
fn a_long_product_folds_through_the_workgroup_tree() {
    let text = "loss t {\n  input x : [B, N]\n  compute prod(i: x[b, i])\n  reduce sum\n}\n";
    let row: Vec<String> = (0..200)
        .map(|k| {
            if k % 2 == 0 {
                "1.00390625"
            } else {
                "0.99609375"
            }
            .to_string()
        })
        .collect();
    let data = format!(
        r#"{{"x": {{"shape": [1, 200], "data": [{}]}}}}"#,
        row.join(", ")
    );
    let want = (1.0f64 - 2f64.powi(-16)).powi(100) as f32;
    for backend in [Backend::Cpu, Backend::Gpu] {
        let v = total(text, &data, backend);
        // 200 roundings of at most half an ulp each, in whatever order.
        let bound = 200.0 * f32::EPSILON / 2.0 * want;
        assert!((v - want).abs() <= bound, "{backend:?}: {v}, want {want}");
    }
}
