//! Optional inputs with a default (`input w : [B, K] optional = 1`): absent, every
//! element is the default, and the input may be read anywhere; given, the data is used.
//! Values worked out by hand, on both back ends, with gradients.

use lossc::diagnostics::Source;
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::parse_json_data;
use lossc::runtime::grad::Wrt;
use lossc::runtime::run::{Backend, RunOptions, run};

fn check(text: &str) -> Program {
    let sources = [Source::new("t.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program
}

/// The total and the gradient with respect to `x` of `losses` of `text` on `data`.
fn run_on(
    text: &str,
    losses: &[&str],
    data: &str,
    backend: Backend,
) -> Result<(f32, Vec<f32>), String> {
    let program = check(text);
    let data = parse_json_data(data).unwrap();
    let opts = RunOptions {
        backend,
        wrt: Wrt::Inputs(vec!["x".into()]),
        ..Default::default()
    };
    let terms: Vec<FactoryTerm> = losses.iter().map(|l| FactoryTerm::plain(*l)).collect();
    run(&program, "f", &terms, &data, &vec![], &opts)
        .map(|r| (r.total, r.grads[0].1.data.clone()))
        .map_err(|e| e.to_string())
}

const WEIGHTED: &str = "loss t {
    input x : [B, K]
    input w : [B, K] optional = 1
    compute w[b, k] * x[b, k] ^ 2
    remove_nans drop where w[b, k] == 0
    reduce mean
}
";

#[test]
fn an_absent_input_is_its_default_everywhere() {
    for backend in [Backend::Cpu, Backend::Gpu] {
        // (1 + 4 + 9 + 16) / 4, and d/dx = 2x / 4.
        for data in [
            r#"{"x": [[1, 2], [3, 4]]}"#,
            r#"{"x": [[1, 2], [3, 4]], "w": null}"#,
        ] {
            let (t, g) = run_on(WEIGHTED, &["t"], data, backend).unwrap();
            assert_eq!(t, 7.5, "{backend:?} {data}");
            assert_eq!(g, [0.5, 1.0, 1.5, 2.0], "{backend:?} {data}");
        }
        // Given: the zero weight drops its element, (0.5 + 18 + 16) / 3.
        let data = r#"{"x": [[1, 2], [3, 4]], "w": [[0.5, 0], [2, 1]]}"#;
        let (t, g) = run_on(WEIGHTED, &["t"], data, backend).unwrap();
        assert_eq!(t, 11.5, "{backend:?}");
        assert_eq!(g, [1.0 / 3.0, 0.0, 4.0, 8.0 / 3.0], "{backend:?}");
    }
}

/// Two losses that give an absent input of one name different shapes and defaults each
/// read their own.
#[test]
fn each_loss_fills_its_own_default() {
    let text = "loss a {
    input x : [N]
    input w : [N] optional = 2
    compute w[i] * x[i]
    reduce sum
}
loss b {
    input x : [N]
    input w : [N, M] optional = -1
    input y : [M]
    compute sum(j: w[i, j] * y[j]) * x[i]
    reduce sum
}
";
    let data = r#"{"x": [1, 2, 3], "y": [1, 1, 1, 1]}"#;
    for backend in [Backend::Cpu, Backend::Gpu] {
        // a: 2 · 6 = 12; b: -4 · 6 = -24; d/dx = 2 - 4.
        let (t, g) = run_on(text, &["a", "b"], data, backend).unwrap();
        assert_eq!(t, -12.0, "{backend:?}");
        assert_eq!(g, [-2.0, -2.0, -2.0], "{backend:?}");
    }
}

#[test]
fn a_default_needs_its_dimensions_from_elsewhere() {
    let text = "loss t {
    input x : [N]
    input w : [N, J] optional = 1
    compute sum(j: w[i, j]) * x[i]
    reduce sum
}
";
    let err = run_on(text, &["t"], r#"{"x": [1, 2]}"#, Backend::Cpu).unwrap_err();
    assert!(err.contains("cannot tell the size of `J`"), "{err}");
    // Too large to fill: 10^5 · 10^5 values from a small data file.
    let text = "loss t {
    input x : [N]
    input w : [N, N] optional = 1
    compute w[i, i] * x[i]
    reduce sum
}
";
    let data = format!(
        r#"{{"x": {{"shape": [100000], "data": [{}]}}}}"#,
        vec!["1"; 100000].join(",")
    );
    let err = run_on(text, &["t"], &data, Backend::Cpu).unwrap_err();
    assert!(
        err.contains("input `w` is absent, and filling its shape"),
        "{err}"
    );
}

/// The manifest tells a host the default an absent input is filled with.
#[test]
fn the_manifest_gives_the_default() {
    let program = check(WEIGHTED);
    let k = lossc::codegen::compile(&program, "t", &[FactoryTerm::plain("t")]).unwrap();
    let m = lossc::codegen::manifest::manifest(&program, &k);
    let inputs = &m["losses"][0]["inputs"];
    assert_eq!(inputs[0]["name"], "x");
    // Every input says its default, null when it has none.
    assert!(inputs[0]["default"].is_null());
    assert_eq!(inputs[1]["name"], "w");
    assert_eq!(inputs[1]["optional"], true);
    assert_eq!(inputs[1]["default"], 1.0);
}
