//! Integer inputs (`input labels : int[N]`): whole numbers from JSON or from integer
//! `.npz` arrays, used in subscripts as gathers and in arithmetic as numbers, shared by
//! every loss under their plain name, never differentiated. Values worked out by hand,
//! on both back ends, with gradients.

mod common;

use common::npz::{self, Arr};
use lossc::ir::FactoryTerm;
use lossc::runtime::data::{parse_json_data, parse_npz_data};
use lossc::runtime::grad::Wrt;
use lossc::runtime::run::{Backend, RunOptions, RunResult, run};

fn run_data(
    text: &str,
    losses: &[&str],
    data: &lossc::runtime::data::Data,
    backend: Backend,
    wrt: Wrt,
) -> Result<RunResult, String> {
    let program = common::check_text(text);
    let opts = RunOptions {
        backend,
        wrt,
        ..Default::default()
    };
    let terms: Vec<FactoryTerm> = losses.iter().map(|l| FactoryTerm::plain(*l)).collect();
    run(&program, "f", &terms, data, &vec![], &opts).map_err(|e| e.to_string())
}

fn run_json(
    text: &str,
    losses: &[&str],
    data: &str,
    backend: Backend,
) -> Result<RunResult, String> {
    let data = parse_json_data(data).unwrap();
    run_data(text, losses, &data, backend, Wrt::EveryInput)
}

/// The negative log-likelihood of class ids, with torch's `ignore_index` -100.
const NLL: &str = "loss nll {
    input logp : [N, C]
    input target : int[N]
    compute -logp[n, target[n]]
    remove_nans drop where target[n] == -100
    reduce mean
}
";

const LOGP: &str = "[[-1, -2, -3], [-0.5, -1.5, -2.5], [-0.25, -0.75, -2]]";

#[test]
fn class_ids_gather_and_an_ignored_label_reads_nothing() {
    for backend in [Backend::Cpu, Backend::Gpu] {
        // Rows 0 and 2 count: (3 + 0.75) / 2; d/dlogp is -1/2 at each picked element.
        // `2.0` is a whole number in JSON.
        let data = format!(r#"{{"logp": {LOGP}, "target": [2, -100, 1.0]}}"#);
        let r = run_json(NLL, &["nll"], &data, backend).unwrap();
        assert_eq!(r.total, 1.875, "{backend:?}");
        // `--wrt` every input means every input that has a gradient: not `target`.
        assert_eq!(r.grads.len(), 1, "{backend:?}");
        assert_eq!(r.grads[0].0, "logp");
        let mut expected = [0.0f32; 9];
        expected[2] = -0.5;
        expected[7] = -0.5;
        assert_eq!(r.grads[0].1.data, expected, "{backend:?}");
    }
}

#[test]
fn an_integer_npz_array_of_any_width_is_read() {
    let logp = [-1.0f32, -2., -3., -0.5, -1.5, -2.5, -0.25, -0.75, -2.];
    let arrays: [(&str, Vec<u8>); 6] = [
        (
            "<i1",
            [2i8, -100, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "<i2",
            [2i16, -100, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "<i4",
            [2i32, -100, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "<i8",
            [2i64, -100, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        // (Unsigned: no ignored label.)
        ("|u1", [2u8, 0, 1].to_vec()),
        (
            "<u4",
            [2u32, 0, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    ];
    for (dtype, bytes) in &arrays {
        let file = npz::write(&[
            ("logp", Arr::F32(&[3, 3], &logp)),
            ("target", Arr::Raw(dtype, &[3], bytes)),
        ]);
        let data = parse_npz_data(&file).unwrap();
        for backend in [Backend::Cpu, Backend::Gpu] {
            let r = run_data(NLL, &["nll"], &data, backend, Wrt::Nothing).unwrap();
            // Unsigned: row 1 picks class 0, (3 + 0.5 + 0.75) / 3.
            let expected = if dtype.contains('u') {
                4.25 / 3.0
            } else {
                1.875
            };
            assert_eq!(r.total, expected, "{dtype} {backend:?}");
        }
    }
}

#[test]
fn a_float_array_or_a_fraction_is_refused_naming_the_input() {
    let logp = [-1.0f32; 9];
    let file = npz::write(&[
        ("logp", Arr::F32(&[3, 3], &logp)),
        ("target", Arr::F64(&[3], &[0.0, 1.0, 2.0])),
    ]);
    let data = parse_npz_data(&file).unwrap();
    for backend in [Backend::Cpu, Backend::Gpu] {
        let e = run_data(NLL, &["nll"], &data, backend, Wrt::Nothing).unwrap_err();
        assert!(
            e.contains("input `target` is declared `int`") && e.contains("floating-point"),
            "{e}"
        );
        for (bad, shown) in [
            ("0.5", "0.5"),
            ("1e30", "1000000000000000000000000000000"),
            ("16777217", "16777217"),
        ] {
            let data = format!(r#"{{"logp": {LOGP}, "target": [2, {bad}, 1]}}"#);
            let e = run_json(NLL, &["nll"], &data, backend).unwrap_err();
            assert!(
                e.contains("input `target`") && e.contains(&format!("element [1] is {shown}")),
                "{bad}: {e}"
            );
        }
    }
}

#[test]
fn an_integer_input_has_no_gradient() {
    let data = parse_json_data(&format!(r#"{{"logp": {LOGP}, "target": [2, 0, 1]}}"#)).unwrap();
    let e = run_data(
        NLL,
        &["nll"],
        &data,
        Backend::Cpu,
        Wrt::Inputs(vec!["target".into()]),
    )
    .unwrap_err();
    assert!(e.contains("`target` is declared `int`"), "{e}");
}

#[test]
fn an_out_of_range_class_id_is_a_located_error() {
    for backend in [Backend::Cpu, Backend::Gpu] {
        let data = format!(r#"{{"logp": {LOGP}, "target": [2, 3, 1]}}"#);
        let e = run_json(NLL, &["nll"], &data, backend).unwrap_err();
        assert!(
            e.contains("index 3 is out of range for axis 1 of `logp` (size 3)")
                && e.contains("t.loss:4:"),
            "{backend:?}: {e}"
        );
    }
}

/// In arithmetic an integer input is a number; two losses share it under its plain name;
/// a gather through it may sit inside a reduction and a comparison.
#[test]
fn integers_are_numbers_and_shared_by_name() {
    let text = "loss scaled {
    input x : [N]
    input k : int[N]
    compute k[n] * x[n]
    reduce sum
}
loss one_hot {
    input p : [N, C]
    input k : int[N]
    compute sum(c: select(c == k[n], p[n, c], 0)) + p[n, k[n] + 1]
    reduce sum
}
";
    for backend in [Backend::Cpu, Backend::Gpu] {
        let data = r#"{"x": [1, 2, 3], "k": [-1, 0, 1], "p": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}"#;
        let r = run_json(text, &["scaled", "one_hot"], data, backend).unwrap();
        // scaled: -1 + 0 + 3 = 2; one_hot: (0 + 4 + 8) + (1 + 5 + 9) = 27.
        assert_eq!(r.losses[0].1.loss, 2.0, "{backend:?}");
        assert_eq!(r.losses[1].1.loss, 27.0, "{backend:?}");
        let grad = |name: &str| &r.grads.iter().find(|(n, _)| n == name).unwrap().1.data;
        assert_eq!(grad("x"), &[-1.0, 0.0, 1.0], "{backend:?}");
        assert_eq!(
            grad("p"),
            &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
            "{backend:?}"
        );
    }
}

/// An optional integer input with a default is bound as its shape filled with it.
#[test]
fn an_optional_integer_input_takes_its_default() {
    let text = "loss pick {
    input p : [N, C]
    input k : int[N] optional = 1
    compute p[n, k[n]]
    reduce sum
}
";
    for backend in [Backend::Cpu, Backend::Gpu] {
        let r = run_json(text, &["pick"], r#"{"p": [[1, 2], [3, 4]]}"#, backend).unwrap();
        assert_eq!(r.total, 6.0, "{backend:?}");
        let r = run_json(
            text,
            &["pick"],
            r#"{"p": [[1, 2], [3, 4]], "k": [0, 0]}"#,
            backend,
        )
        .unwrap();
        assert_eq!(r.total, 4.0, "{backend:?}");
    }
}
