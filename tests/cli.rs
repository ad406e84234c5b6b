//! The command line as a user drives it: `lossc check` and `lossc run` on small files
//! written to a temporary folder.
//!
//! Bad data must give one clear `error: ...` on stderr and exit status 1, never a panic.
//! Semantics are checked against numbers worked out by hand from the math (written in
//! the comments), on the CPU reference evaluator (`--backend cpu`) and on the default
//! back end (the GPU when an adapter exists, else the CPU).
//!
//! Mesa's software Vulkan driver prints `error: XDG_RUNTIME_DIR is invalid or not set`
//! on headless machines (scripts/test.sh sets NODEVICE_SELECT=1 to silence it); those
//! lines are removed from stderr before it is checked.

mod common;

use std::path::PathBuf;

use serde_json::Value;

use common::lossc;

/// A temporary folder, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("lossc-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    /// Writes a file; returns its path.
    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An example loss, relative to the repository root (where `lossc` runs).
fn ex(name: &str) -> String {
    format!("examples/lightning_pose/{name}.loss")
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `lossc`; stderr without the driver's XDG_RUNTIME_DIR lines.
fn run(args: &[&str]) -> Out {
    let out = lossc(args);
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .map(|l| format!("{l}\n"))
        .collect();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// The back ends to try: the CPU reference, and the default.
const BACKENDS: [Option<&str>; 2] = [Some("cpu"), None];

fn with_backend(args: &[&str], backend: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(b) = backend {
        v.push("--backend".into());
        v.push(b.into());
    }
    v
}

/// `lossc run ARGS` fails on every back end with exit status 1 and one `error: ` line that
/// contains every one of `needles`; no panic.
fn expect_error(args: &[&str], needles: &[&str]) {
    for backend in BACKENDS {
        let argv = with_backend(args, backend);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = run(&argv);
        let what = format!("lossc {}", argv.join(" "));
        assert!(
            !out.stderr.contains("panicked"),
            "{what}: panic\n{}",
            out.stderr
        );
        assert_eq!(
            out.code,
            Some(1),
            "{what}: exit status\nstdout: {}\nstderr: {}",
            out.stdout,
            out.stderr
        );
        assert!(out.stderr.starts_with("error: "), "{what}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{what}: printed {}", out.stdout);
        for n in needles {
            assert!(
                out.stderr.contains(n),
                "{what}: stderr lacks {n:?}:\n{}",
                out.stderr
            );
        }
        if backend == Some("cpu") {
            assert_eq!(
                out.stderr.lines().count(),
                1,
                "{what}: one line expected:\n{}",
                out.stderr
            );
        }
    }
}

/// `lossc run ARGS --json` on every back end; the parsed results.
fn run_json(args: &[&str]) -> Vec<Value> {
    BACKENDS
        .iter()
        .map(|backend| {
            let mut argv = with_backend(args, *backend);
            argv.push("--json".into());
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = run(&argv);
            assert_eq!(
                out.code,
                Some(0),
                "lossc {}:\n{}",
                argv.join(" "),
                out.stderr
            );
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
        })
        .collect()
}

/// `got` is the number `want` (relative 1e-6), or both are NaN (`null`).
fn assert_num(got: &Value, want: f64, what: &str) {
    if want.is_nan() {
        assert!(got.is_null(), "{what}: expected NaN (null), got {got}");
        return;
    }
    let g = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: expected {want}, got {got}"));
    let ok = if want == 0.0 {
        g == 0.0
    } else {
        (g - want).abs() <= 1e-6 * want.abs()
    };
    assert!(ok, "{what}: expected {want}, got {g}");
}

fn log(v: &Value, name: &str) -> Value {
    v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l[0] == name)
        .map(|l| l[1].clone())
        .unwrap_or_else(|| panic!("no log {name} in {}", v["logs"]))
}

fn log_names(v: &Value) -> Vec<String> {
    v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[0].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------- lossc check

#[test]
fn check_exits_0_on_clean_files() {
    let mut args = vec!["check".to_string()];
    args.extend(
        common::example_files()
            .iter()
            .map(|p| p.display().to_string()),
    );
    args.push("examples/factories.loss".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&argv);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.starts_with("ok: 12 loss(es)"), "{}", out.stderr);
}

#[test]
fn check_exits_1_with_located_diagnostics_on_stderr() {
    let out = run(&["check", &ex("temporal"), "tests/bad/unknown_function.loss"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("error: unknown function `sqr`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("┌─ tests/bad/unknown_function.loss:3:13"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains('^'), "{}", out.stderr);
    assert!(
        out.stderr.trim_end().ends_with("error: 1 error found"),
        "{}",
        out.stderr
    );

    let out = run(&["check", "tests/bad/two_blocks_two_errors.loss"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.trim_end().ends_with("error: 2 errors found"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_of_a_missing_file_is_an_error() {
    let out = run(&["check", "no/such/file.loss"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .starts_with("error: cannot read no/such/file.loss"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_without_files_is_a_usage_error() {
    let out = run(&["check"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("Usage"), "{}", out.stderr);
}

#[test]
fn a_non_utf8_loss_file_is_a_located_error() {
    let tmp = Tmp::new("utf8");
    let f = tmp.file("bad.loss", b"loss l {\n    input x : [B]\xff\xfe\n}\n");
    let data = tmp.file("d.json", "{}");
    for args in [
        vec!["check", f.as_str()],
        vec!["run", f.as_str(), "--data", data.as_str()],
    ] {
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr.starts_with("error: the file is not valid UTF-8"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("┌─ {f}:2:18")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains('^'), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

// ---------------------------------------------------------------- lossc run: bad data

/// A temporal run's data: 3 frames, 2 keypoints.
const KP: &str = "[[0, 0, 0, 0], [3, 4, 0, 1], [3, 4, 6, 9]]";

#[test]
fn missing_input() {
    let tmp = Tmp::new("missing-input");
    let data = tmp.file("d.json", "{}");
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["missing input `keypoints_pred`", "[B, 2*K]"],
    );
}

#[test]
fn missing_param_without_default() {
    let tmp = Tmp::new("missing-param");
    let data = tmp.file(
        "d.json",
        r#"{"heatmaps_targ": {"shape": [1, 1, 2, 2], "data": [0, 1, 0, 0]}, "keypoints_pred_2d_reprojected": [[[1, 1]]], "original_image_width": 8}"#,
    );
    expect_error(
        &[
            "run",
            &ex("supervised_reprojection_heatmap_mse"),
            "--data",
            &data,
        ],
        &["missing param `original_image_height`", "no default"],
    );
}

/// Sizes that only an empty array claims: `sum(z: x[a, b, c, z])` on shape
/// `[2^21, 2^21, 2^21, 0]` (the CPU evaluator panicked on capacity overflow), and a range
/// default over a dimension of 2^31 - 1 (16 GiB of values): one error each, no panic, no
/// allocation.
#[test]
fn sizes_that_only_an_empty_array_claims_are_errors() {
    let tmp = Tmp::new("empty-sizes");
    let domain = tmp.file(
        "domain.loss",
        "loss l {\n    input x : [A, B, C, Z]\n    compute sum(z: x[a, b, c, z])\n    reduce sum\n}\n",
    );
    let data = tmp.file(
        "d.json",
        r#"{"x": {"shape": [2097152, 2097152, 2097152, 0], "data": []}}"#,
    );
    expect_error(&["run", &domain, "--data", &data], &[]);
    let cpu = run(&["run", &domain, "--data", &data, "--backend", "cpu"]);
    assert!(
        cpu.stderr
            .contains("the domain would hold 9223372036854775808 values"),
        "{}",
        cpu.stderr
    );
    let range = tmp.file(
        "range.loss",
        "loss l {\n    input x : [B, K]\n    param p : index[K] = 0..K\n    compute x[b, p[k]]\n    reduce sum\n}\n",
    );
    let data = tmp.file("e.json", r#"{"x": {"shape": [0, 2147483647], "data": []}}"#);
    expect_error(
        &["run", &range, "--data", &data],
        &["param `p`", "2147483647 values", "at most 268435456"],
    );
}

#[test]
fn an_array_of_the_wrong_rank() {
    let tmp = Tmp::new("rank");
    let data = tmp.file("d.json", r#"{"keypoints_pred": [0, 0, 1, 1]}"#);
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`keypoints_pred`", "2 dimensions", "[4]"],
    );
}

#[test]
fn an_array_whose_shape_contradicts_a_literal_dimension() {
    let tmp = Tmp::new("literal");
    // keypoints_pred_2d_reprojected is [B, K, 2]: a last axis of 3 cannot be.
    let data = tmp.file(
        "d.json",
        r#"{"heatmaps_targ": {"shape": [1, 1, 2, 2], "data": [0, 1, 0, 0]}, "keypoints_pred_2d_reprojected": [[[1, 1, 1]]], "original_image_width": 8, "original_image_height": 8}"#,
    );
    expect_error(
        &[
            "run",
            &ex("supervised_reprojection_heatmap_mse"),
            "--data",
            &data,
        ],
        &["`keypoints_pred_2d_reprojected`", "3"],
    );
}

#[test]
fn two_inputs_disagreeing_on_a_dimension_are_both_named() {
    let tmp = Tmp::new("disagree");
    let data = tmp.file(
        "d.json",
        format!(r#"{{"keypoints_pred": {KP}, "confidences": [[1, 1, 1], [1, 1, 1], [1, 1, 1]]}}"#),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`confidences`", "`keypoints_pred`", "K"],
    );
}

#[test]
fn an_odd_width_for_a_2k_dimension() {
    let tmp = Tmp::new("odd");
    let data = tmp.file(
        "d.json",
        r#"{"keypoints_pred": [[0, 0, 1, 1, 2], [1, 1, 2, 2, 2]]}"#,
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`keypoints_pred`", "5", "2*K"],
    );
}

#[test]
fn a_string_for_a_float_input() {
    let tmp = Tmp::new("string-input");
    let data = tmp.file("d.json", r#"{"keypoints_pred": "hello"}"#);
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`keypoints_pred`", "string"],
    );
    // A string inside an array, too.
    let data = tmp.file("e.json", r#"{"keypoints_pred": [[0, "a"], [1, 2]]}"#);
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`keypoints_pred`", "\"a\" is not a number"],
    );
}

#[test]
fn a_string_for_a_float_param() {
    let tmp = Tmp::new("string-param");
    let data = tmp.file(
        "d.json",
        format!(r#"{{"keypoints_pred": {KP}, "prob_threshold": "high"}}"#),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`prob_threshold`", "\"high\""],
    );
}

/// The PCA params of a 2-keypoint `pca_singleview` run (S = 2, C = 1).
const PCA: &str = r#""mean": [0, 0, 0, 0], "kept_eigenvectors": [[1, 0, 0, 0]]"#;

#[test]
fn an_enum_value_not_allowed() {
    let tmp = Tmp::new("enum");
    let data = tmp.file(
        "d.json",
        format!(r#"{{"keypoints_pred": {KP}, {PCA}, "centering_method": "max"}}"#),
    );
    expect_error(
        &["run", &ex("pca_singleview"), "--data", &data],
        &[
            "`centering_method`",
            "\"max\"",
            "\"none\", \"mean\", \"median\"",
        ],
    );
    // And a number for an enum param.
    let data = tmp.file(
        "e.json",
        format!(r#"{{"keypoints_pred": {KP}, {PCA}, "centering_method": 1}}"#),
    );
    expect_error(
        &["run", &ex("pca_singleview"), "--data", &data],
        &["`centering_method`", "\"none\", \"mean\", \"median\""],
    );
}

#[test]
fn an_unknown_data_key() {
    let tmp = Tmp::new("unknown-key");
    // A key no loss of the run declares may belong to other losses: a warning.
    let data = tmp.file(
        "d.json",
        format!(r#"{{"keypoints_pred": {KP}, "bogus": 1}}"#),
    );
    let out = run(&["run", &ex("temporal"), "--data", &data, "--backend", "cpu"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("warning: `bogus`") && out.stderr.contains("ignored"),
        "{}",
        out.stderr
    );
    // A near miss gets a hint.
    let data = tmp.file(
        "e.json",
        format!(r#"{{"keypoints_pred": {KP}, "epsilom": 1}}"#),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`epsilom`", "did you mean `epsilon`?"],
    );
    // A `loss.param` key naming a loss not in the run.
    let data = tmp.file(
        "f.json",
        format!(r#"{{"keypoints_pred": {KP}, "regression.epsilon": 1}}"#),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`regression.epsilon`", "not in this run"],
    );
}

#[test]
fn an_ambiguous_plain_param_key() {
    let tmp = Tmp::new("ambiguous");
    let data = tmp.file(
        "d.json",
        format!(r#"{{"keypoints_pred": {KP}, "keypoints_targ": {KP}, "log_weight": 1}}"#),
    );
    expect_error(
        &[
            "run",
            &ex("temporal"),
            &ex("regression"),
            "--losses",
            "temporal,regression",
            "--data",
            &data,
        ],
        &[
            "`log_weight`",
            "temporal.log_weight",
            "regression.log_weight",
        ],
    );
}

#[test]
fn a_wrong_length_epsilon_list() {
    let tmp = Tmp::new("epsilon");
    let data = tmp.file(
        "d.json",
        format!(r#"{{"keypoints_pred": {KP}, "epsilon": [1, 2, 3]}}"#),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["`epsilon`", "3", "K = 2"],
    );
}

#[test]
fn an_out_of_range_gather_index() {
    let tmp = Tmp::new("gather");
    for cols in ["[0, 5]", "[0, 2]", "[-1, 0]"] {
        let data = tmp.file(
            "d.json",
            format!(r#"{{"keypoints_pred": {KP}, {PCA}, "columns_for_singleview_pca": {cols}}}"#),
        );
        expect_error(
            &["run", &ex("pca_singleview"), "--data", &data],
            &["out of range", "keypoints_pred"],
        );
    }
    // Not a whole number.
    let data = tmp.file(
        "e.json",
        format!(r#"{{"keypoints_pred": {KP}, {PCA}, "columns_for_singleview_pca": [0, 0.5]}}"#),
    );
    expect_error(
        &["run", &ex("pca_singleview"), "--data", &data],
        &["`columns_for_singleview_pca`", "0.5"],
    );
}

/// A gathered index far out of range (`columns_for_singleview_pca = [0, 1e30]`) is an
/// out-of-range error on every back end, not an overflow in the index arithmetic.
#[test]
fn a_huge_gather_index_is_out_of_range_on_the_cpu() {
    let tmp = Tmp::new("gather-huge");
    let data = tmp.file(
        "d.json",
        format!(r#"{{"keypoints_pred": {KP}, {PCA}, "columns_for_singleview_pca": [0, 1e30]}}"#),
    );
    expect_error(
        &["run", &ex("pca_singleview"), "--data", &data],
        &["out of range"],
    );
}

/// A JSON tensor whose shape's product overflows (`{"shape": [4294967296, 4294967296,
/// 2], "data": []}`) is an error naming the input, not a panic or a wrapped size.
#[test]
fn a_json_shape_too_large_is_an_error() {
    let tmp = Tmp::new("shape-overflow");
    let data = tmp.file(
        "d.json",
        r#"{"keypoints_pred": {"shape": [4294967296, 4294967296, 2], "data": []}}"#,
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["keypoints_pred"],
    );
}

/// A 60-byte data file declaring an empty `[0, 10^12]` array makes K = 5·10^11; the
/// scalar default of `epsilon : [K]` must not be broadcast to 5·10^11 values (4 TB).
/// Run under a 4 GB address-space limit, lossc answers (a result or an error), with no
/// allocation abort.
#[test]
fn a_huge_empty_array_is_not_an_abort() {
    let tmp = Tmp::new("huge-empty");
    let data = tmp.file(
        "d.json",
        r#"{"keypoints_pred": {"shape": [0, 1000000000000], "data": []}}"#,
    );
    for backend in ["cpu", "auto"] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 4000000; exec {} run {} --data {data} --backend {backend} --json",
                env!("CARGO_BIN_EXE_lossc"),
                ex("temporal")
            ))
            .current_dir(common::root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{backend}: {:?}\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("memory allocation"), "{backend}: {stderr}");
    }
}

#[test]
fn a_missing_data_file() {
    expect_error(
        &["run", &ex("temporal"), "--data", "no/such/data.json"],
        &["cannot read no/such/data.json"],
    );
    expect_error(
        &["run", &ex("temporal"), "--data", "no/such/data.npz"],
        &["no/such/data.npz"],
    );
}

#[test]
fn malformed_json() {
    let tmp = Tmp::new("malformed");
    let data = tmp.file("d.json", r#"{"keypoints_pred": [[0, 0, 1, 1],"#);
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["invalid JSON"],
    );
    let data = tmp.file("e.json", "[1, 2]");
    expect_error(&["run", &ex("temporal"), "--data", &data], &["JSON object"]);
    let data = tmp.file("f.json", r#"{"keypoints_pred": [[0, 0], [1]]}"#);
    expect_error(&["run", &ex("temporal"), "--data", &data], &["ragged"]);
    let data = tmp.file(
        "g.json",
        r#"{"keypoints_pred": {"shape": [2, 2], "data": [1, 2, 3]}}"#,
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data],
        &["holds 4 values", "3"],
    );
    let data = tmp.file("h.json", b"\xff\xfe{}");
    expect_error(&["run", &ex("temporal"), "--data", &data], &["h.json"]);
}

#[test]
fn unknown_losses_factories_and_annealed_names() {
    let tmp = Tmp::new("names");
    let data = tmp.file("d.json", format!(r#"{{"keypoints_pred": {KP}}}"#));
    expect_error(
        &[
            "run",
            &ex("temporal"),
            "--losses",
            "temporl",
            "--data",
            &data,
        ],
        &["no loss named `temporl`"],
    );
    expect_error(
        &["run", &ex("temporal"), "--factory", "nope", "--data", &data],
        &["`nope`"],
    );
    expect_error(
        &[
            "run",
            &ex("temporal"),
            "--losses",
            "temporal",
            "--annealed",
            "regression",
            "--data",
            &data,
        ],
        &["`regression`", "--losses"],
    );
    expect_error(
        &["run", &ex("temporal"), &ex("regression"), "--data", &data],
        &["several losses"],
    );
}

/// An unknown `--losses` name gets a "did you mean" hint on every back end (the default
/// one included, which takes the GPU path when an adapter exists).
#[test]
fn an_unknown_loss_name_gets_a_hint_on_every_backend() {
    let tmp = Tmp::new("names-hint");
    let data = tmp.file("d.json", format!(r#"{{"keypoints_pred": {KP}}}"#));
    expect_error(
        &[
            "run",
            &ex("temporal"),
            "--losses",
            "temporl",
            "--data",
            &data,
        ],
        &["did you mean `temporal`?"],
    );
}

#[test]
fn a_bad_set_value() {
    let tmp = Tmp::new("set");
    let data = tmp.file("d.json", format!(r#"{{"keypoints_pred": {KP}}}"#));
    expect_error(
        &["run", &ex("temporal"), "--data", &data, "--set", "epsilon"],
        &["name=value"],
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &data, "--set", "nope=1"],
        &["`nope`"],
    );
    expect_error(
        &[
            "run",
            &ex("temporal"),
            "--data",
            &data,
            "--set",
            "epsilon=[1, 2, 3]",
        ],
        &["`epsilon`", "K = 2"],
    );
}

// ---------------------------------------------------------------- lossc run: semantics

/// Four losses over `x[i]` with a mask `m[i] > 0`: drop, zero, drop with `(empty: 0)`,
/// and drop with `reduce sum`. Weights are the default, 1.
const MASKS: &str = "
loss dropped {
    input x : [N]
    input m : [N]
    compute     x[i]
    remove_nans drop where m[i] > 0
    reduce      mean
}
loss zeroed {
    input x : [N]
    input m : [N]
    compute     x[i]
    remove_nans zero where m[i] > 0
    reduce      mean
}
loss dropped_or_zero {
    input x : [N]
    input m : [N]
    compute     x[i]
    remove_nans drop where m[i] > 0
    reduce      mean (empty: 0)
}
loss summed {
    input x : [N]
    input m : [N]
    compute     x[i]
    remove_nans drop where m[i] > 0
    reduce      sum
}
";

const ALL_MASKS: &str = "dropped,zeroed,dropped_or_zero,summed";

#[test]
fn drop_leaves_the_mean_zero_stays_in_it() {
    let tmp = Tmp::new("drop-zero");
    let f = tmp.file("m.loss", MASKS);
    let data = tmp.file("d.json", r#"{"x": [1, 2, 3, 4], "m": [0, 1, 0, 0]}"#);
    for v in run_json(&["run", &f, "--losses", ALL_MASKS, "--data", &data]) {
        // drop: (1 + 3 + 4) / 3; zero: (1 + 0 + 3 + 4) / 4; sum: 1 + 3 + 4.
        assert_num(&v["losses"]["dropped"]["loss"], 8.0 / 3.0, "drop");
        assert_num(&v["losses"]["zeroed"]["loss"], 2.0, "zero");
        assert_num(
            &v["losses"]["dropped_or_zero"]["loss"],
            8.0 / 3.0,
            "drop (empty: 0)",
        );
        assert_num(&v["losses"]["summed"]["loss"], 8.0, "sum");
        assert_num(&v["total"], 8.0 / 3.0 + 2.0 + 8.0 / 3.0 + 8.0, "total");
        assert_num(&v["losses"]["zeroed"]["weight"], 1.0, "default weight");
    }
}

#[test]
fn a_nan_covered_by_a_mask_never_reaches_the_result() {
    let tmp = Tmp::new("nan-mask");
    let f = tmp.file("m.loss", MASKS);
    let data = tmp.file("d.json", r#"{"x": [1, null, 3, 4], "m": [0, 1, 0, 0]}"#);
    for v in run_json(&["run", &f, "--losses", ALL_MASKS, "--data", &data]) {
        assert_num(&v["losses"]["dropped"]["loss"], 8.0 / 3.0, "drop");
        assert_num(&v["losses"]["zeroed"]["loss"], 2.0, "zero");
        assert_num(&v["losses"]["summed"]["loss"], 8.0, "sum");
    }
    // Unmasked, the NaN propagates.
    let data = tmp.file("e.json", r#"{"x": [1, null, 3, 4], "m": [0, 0, 0, 0]}"#);
    for v in run_json(&["run", &f, "--losses", ALL_MASKS, "--data", &data]) {
        assert_num(&v["losses"]["dropped"]["loss"], f64::NAN, "unmasked NaN");
        assert_num(&v["total"], f64::NAN, "total");
    }
    // A NaN inside a row whose sub-reduction feeds a masked element, and a NaN
    // `compute` that `isnan` itself masks.
    let rows = tmp.file(
        "r.loss",
        "loss rows {\n    input x : [N, M]\n    input m : [N]\n    compute sum(j: x[i, j]) * 2\n    \
         remove_nans zero where m[i] > 0\n    reduce mean\n}\n\
         loss self_masked {\n    input x : [N, M]\n    compute log(x[i, j])\n    remove_nans drop where isnan(log(x[i, j]))\n    \
         reduce sum\n}\n",
    );
    let data = tmp.file(
        "r.json",
        r#"{"x": [[1, 2], [null, 5], [-1, 0.5]], "m": [0, 1, 0]}"#,
    );
    for v in run_json(&[
        "run",
        &rows,
        "--losses",
        "rows,self_masked",
        "--data",
        &data,
    ]) {
        // rows: (2·3 + 0 + 2·(−0.5)) / 3 = 5/3.
        assert_num(&v["losses"]["rows"]["loss"], 5.0 / 3.0, "rows");
        // self_masked: log 1 + log 2 + log 5 + log 0.5 = log 5 (NaN and log(−1) dropped).
        assert_num(
            &v["losses"]["self_masked"]["loss"],
            5f64.ln(),
            "self_masked",
        );
    }
}

#[test]
fn an_empty_mean_is_nan_unless_the_loss_says_otherwise() {
    let tmp = Tmp::new("empty");
    let f = tmp.file("m.loss", MASKS);
    // Every element dropped.
    let data = tmp.file("d.json", r#"{"x": [1, 2, 3, 4], "m": [1, 1, 1, 1]}"#);
    for v in run_json(&["run", &f, "--losses", ALL_MASKS, "--data", &data]) {
        assert_num(&v["losses"]["dropped"]["loss"], f64::NAN, "empty mean");
        assert_num(
            &v["losses"]["dropped"]["weighted"],
            f64::NAN,
            "its weighted value",
        );
        assert_num(&log(&v, "train_dropped_loss"), f64::NAN, "its log");
        assert_num(
            &v["losses"]["zeroed"]["loss"],
            0.0,
            "zero: (0 + 0 + 0 + 0) / 4",
        );
        assert_num(&v["losses"]["dropped_or_zero"]["loss"], 0.0, "(empty: 0)");
        assert_num(&v["losses"]["summed"]["loss"], 0.0, "empty sum");
        assert_num(&v["total"], f64::NAN, "total");
    }
    // An empty domain (N = 0).
    let data = tmp.file("e.json", r#"{"x": [], "m": []}"#);
    for v in run_json(&["run", &f, "--losses", ALL_MASKS, "--data", &data]) {
        assert_num(&v["losses"]["dropped"]["loss"], f64::NAN, "empty mean");
        assert_num(&v["losses"]["zeroed"]["loss"], f64::NAN, "empty mean");
        assert_num(&v["losses"]["dropped_or_zero"]["loss"], 0.0, "(empty: 0)");
        assert_num(&v["losses"]["summed"]["loss"], 0.0, "empty sum");
    }
    // temporal on one frame: no difference exists.
    let data = tmp.file("t.json", r#"{"keypoints_pred": [[0, 0, 1, 1]]}"#);
    for v in run_json(&["run", &ex("temporal"), "--data", &data]) {
        assert_num(
            &v["losses"]["temporal"]["loss"],
            f64::NAN,
            "temporal, B = 1",
        );
    }
}

/// keypoints (x, y) per frame: k0 = (0,0), (3,4), (3,4); k1 = (0,0), (0,1), (6,9).
/// Differences: t0: k0 5, k1 1; t1: k0 0, k1 10. Targets are the predictions + 1.
fn temporal_data(tmp: &Tmp) -> String {
    tmp.file(
        "t.json",
        format!(r#"{{"keypoints_pred": {KP}, "keypoints_targ": [[1, 1, 1, 1], [4, 5, 1, 2], [4, 5, 7, 10]], "temporal.epsilon": [1, 2]}}"#),
    )
}

#[test]
fn rectify_with_a_per_keypoint_epsilon() {
    let tmp = Tmp::new("rectify");
    let data = tmp.file(
        "t.json",
        format!(r#"{{"keypoints_pred": {KP}, "epsilon": [1, 2]}}"#),
    );
    for v in run_json(&["run", &ex("temporal"), "--data", &data]) {
        // relu(5 − 1) + relu(1 − 2) + relu(0 − 1) + relu(10 − 2) = 12, over 4.
        assert_num(&v["losses"]["temporal"]["loss"], 3.0, "loss");
        assert_num(
            &v["losses"]["temporal"]["weight"],
            0.5,
            "weight 1 / (2 e^0)",
        );
        assert_num(&v["losses"]["temporal"]["weighted"], 1.5, "weighted");
    }
    // A scalar epsilon broadcasts: relu(5 − 2) + 0 + 0 + relu(10 − 2) = 11, over 4.
    let data = tmp.file(
        "s.json",
        format!(r#"{{"keypoints_pred": {KP}, "epsilon": 2}}"#),
    );
    for v in run_json(&["run", &ex("temporal"), "--data", &data]) {
        assert_num(&v["losses"]["temporal"]["loss"], 2.75, "scalar epsilon");
    }
}

#[test]
fn anneal_applies_to_annealed_terms_only() {
    let tmp = Tmp::new("anneal");
    let data = temporal_data(&tmp);
    let args = [
        "run",
        &ex("temporal"),
        &ex("regression"),
        "--losses",
        "temporal,regression",
        "--data",
        &data,
        "--annealed",
        "temporal",
        "--anneal",
        "0.25",
    ];
    for v in run_json(&args) {
        // temporal: 3 · 0.5 = 1.5, annealed by 0.25; regression: every difference is 1,
        // loss 1, weighted 0.5, not annealed. total = 0.375 + 0.5.
        assert_num(&v["total"], 0.875, "total");
        assert_num(&v["losses"]["regression"]["loss"], 1.0, "regression");
        // The weighted log is not annealed.
        assert_num(
            &log(&v, "train_temporal_loss_weighted"),
            1.5,
            "weighted log",
        );
    }
    // Without --annealed, --anneal changes nothing.
    let args = [
        "run",
        &ex("temporal"),
        &ex("regression"),
        "--losses",
        "temporal,regression",
        "--data",
        &data,
        "--anneal",
        "0.25",
    ];
    for v in run_json(&args) {
        assert_num(&v["total"], 2.0, "total");
    }
}

#[test]
fn stage_names_the_logs() {
    let tmp = Tmp::new("stage");
    let data = temporal_data(&tmp);
    let args = [
        "run",
        &ex("temporal"),
        &ex("regression"),
        "--losses",
        "temporal,regression",
        "--data",
        &data,
        "--stage",
        "val",
    ];
    for v in run_json(&args) {
        assert_eq!(
            log_names(&v),
            [
                "val_temporal_loss",
                "temporal_weight",
                "val_temporal_loss_weighted",
                "val_regression_loss",
                "regression_weight",
                "val_regression_loss_weighted"
            ]
        );
        assert_num(&log(&v, "val_temporal_loss"), 3.0, "log");
        assert_num(&log(&v, "temporal_weight"), 0.5, "log");
    }
    // The default stage is `train`.
    let args = [
        "run",
        &ex("temporal"),
        &ex("regression"),
        "--losses",
        "temporal,regression",
        "--data",
        &data,
    ];
    for v in run_json(&args) {
        assert_eq!(log_names(&v)[0], "train_temporal_loss");
    }
}

#[test]
fn set_overrides_the_data_file() {
    let tmp = Tmp::new("set-override");
    let data = temporal_data(&tmp);
    let args = [
        "run",
        &ex("temporal"),
        &ex("regression"),
        "--losses",
        "temporal,regression",
        "--data",
        &data,
        "--set",
        "temporal.epsilon=[0, 0]",
        "--set",
        "regression.log_weight=1",
    ];
    for v in run_json(&args) {
        // No rectification: (5 + 1 + 0 + 10) / 4 = 4.
        assert_num(&v["losses"]["temporal"]["loss"], 4.0, "temporal");
        // weight 1 / (2 e).
        assert_num(
            &v["losses"]["regression"]["weight"],
            1.0 / (2.0 * 1f64.exp()),
            "regression weight",
        );
        assert_num(&v["total"], 4.0 * 0.5 + 1.0 / (2.0 * 1f64.exp()), "total");
    }
    // A plain name when only one loss has it; a factory setting is overridden too.
    let f = tmp.file(
        "f.loss",
        format!(
            "{}\nfactory f {{\n    temporal {{ log_weight = 3.0 }}\n}}\n",
            std::fs::read_to_string(common::root().join(ex("temporal"))).unwrap()
        ),
    );
    let data = tmp.file("k.json", format!(r#"{{"keypoints_pred": {KP}}}"#));
    for v in run_json(&["run", &f, "--data", &data, "--set", "log_weight=0"]) {
        assert_num(
            &v["losses"]["temporal"]["weight"],
            0.5,
            "--set beats the factory",
        );
    }
    for v in run_json(&["run", &f, "--data", &data]) {
        assert_num(
            &v["losses"]["temporal"]["weight"],
            1.0 / (2.0 * 3f64.exp()),
            "the factory's setting",
        );
    }
}

/// `reduce sum` adds pairwise in f32 (docs/language.md, section 9): on
/// `[2^24, 1, 1, 1, 1, 1, 1, 1, 1]` the halves give 2^24 (each 1 lost to rounding) and 4
/// or 5, and 2^24 + 4 = 16777220 (2^24 + 5 rounds to even, 16777220 too).
#[test]
fn sums_are_pairwise_in_f32_on_the_cpu() {
    let tmp = Tmp::new("pairwise");
    let f = tmp.file(
        "s.loss",
        "loss s {\n    input x : [N]\n    compute x[i]\n    reduce sum\n}\n",
    );
    let data = tmp.file("d.json", r#"{"x": [16777216, 1, 1, 1, 1, 1, 1, 1, 1]}"#);
    let out = run(&["run", &f, "--data", &data, "--json", "--backend", "cpu"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["total"].as_f64(), Some(16777220.0), "{}", out.stdout);
    // Every back end is within f32 rounding of the exact sum, 16777224: eight additions,
    // each off by at most half an ulp of a partial sum near 2^24 (an ulp there is 2).
    for v in run_json(&["run", &f, "--data", &data]) {
        let t = v["total"].as_f64().unwrap();
        assert!((t - 16777224.0).abs() <= 8.0, "{t}");
    }
}

#[test]
fn runs_are_deterministic() {
    let tmp = Tmp::new("determinism");
    let data = temporal_data(&tmp);
    // The README's main command.
    let demo = common::demo_run_args();
    let demo: Vec<&str> = demo.iter().map(String::as_str).collect();
    let small = [
        "run",
        &ex("temporal"),
        &ex("regression"),
        "--losses",
        "temporal,regression",
        "--data",
        &data,
    ];
    for args in [&demo[..], &small[..]] {
        for backend in BACKENDS {
            for json in [false, true] {
                let mut argv = with_backend(args, backend);
                if json {
                    argv.push("--json".into());
                }
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let (a, b) = (run(&argv), run(&argv));
                assert_eq!(a.code, Some(0), "{}", a.stderr);
                assert_eq!(a.stdout, b.stdout, "lossc {}", argv.join(" "));
            }
        }
    }
}

/// The text output carries the same numbers as the JSON.
#[test]
fn text_output_lists_total_losses_and_logs() {
    let tmp = Tmp::new("text");
    let data = tmp.file(
        "t.json",
        format!(r#"{{"keypoints_pred": {KP}, "epsilon": [1, 2]}}"#),
    );
    let out = run(&["run", &ex("temporal"), "--data", &data, "--backend", "cpu"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("total 1.5\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("train_temporal_loss = 3\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("temporal_weight = 0.5\n"),
        "{}",
        out.stdout
    );
    // NaN is printed as NaN.
    let data = tmp.file("n.json", r#"{"keypoints_pred": [[0, 0, 1, 1]]}"#);
    let out = run(&["run", &ex("temporal"), "--data", &data, "--backend", "cpu"]);
    assert!(out.stdout.starts_with("total NaN\n"), "{}", out.stdout);
}

// ---------------------------------------------------------------- .npz input

const KP_FLAT: [f32; 12] = [0., 0., 0., 0., 3., 4., 0., 1., 3., 4., 6., 9.];

#[test]
fn npz_input_gives_the_same_numbers_as_json() {
    use common::npz::{self, Arr};
    let tmp = Tmp::new("npz");
    let data = tmp.file(
        "d.npz",
        npz::write(&[
            ("keypoints_pred", Arr::F32(&[3, 4], &KP_FLAT)),
            ("epsilon", Arr::F64(&[2], &[1.0, 2.0])),
        ]),
    );
    for v in run_json(&["run", &ex("temporal"), "--data", &data]) {
        assert_num(&v["losses"]["temporal"]["loss"], 3.0, "npz temporal");
    }
    // An int64 index param and float64 PCA params: columns [1, 0] swap the keypoints.
    // mean 0, one component e = (1, 0, 0, 0): x − (x·e) e keeps all but the first
    // coordinate. Per frame and column s the error is ‖(x_s, y_s) − proj‖:
    // frame 0: 0, 0; frame 1 (cols k1, k0): (0, 1) → 1, (3, 4) → 5; frame 2: (6, 9) → 9,
    // (3, 4) → 5. Mean over 6: 20 / 6.
    let data = tmp.file(
        "p.npz",
        npz::write(&[
            ("keypoints_pred", Arr::F32(&[3, 4], &KP_FLAT)),
            ("columns_for_singleview_pca", Arr::I64(&[2], &[1, 0])),
            ("mean", Arr::F64(&[4], &[0.0; 4])),
            (
                "kept_eigenvectors",
                Arr::F64(&[1, 4], &[1.0, 0.0, 0.0, 0.0]),
            ),
        ]),
    );
    for v in run_json(&["run", &ex("pca_singleview"), "--data", &data]) {
        assert_num(
            &v["losses"]["pca_singleview"]["loss"],
            20.0 / 6.0,
            "npz pca",
        );
    }
}

#[test]
fn bad_npz_files_are_clear_errors() {
    use common::npz::{self, Arr};
    let tmp = Tmp::new("npz-bad");
    let garbage = tmp.file("g.npz", b"PK\x03\x04 this is not a zip file");
    expect_error(&["run", &ex("temporal"), "--data", &garbage], &["g.npz"]);
    let complex = tmp.file(
        "c.npz",
        npz::write(&[("keypoints_pred", Arr::Raw("<c8", &[1, 2], &[0u8; 16]))]),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &complex],
        &["keypoints_pred", "dtype"],
    );
    let half = tmp.file(
        "h.npz",
        npz::write(&[("keypoints_pred", Arr::Raw("<f2", &[1, 2], &[0u8; 4]))]),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &half],
        &["keypoints_pred", "dtype"],
    );
    // A shape that contradicts the declaration, from an npz.
    let rank = tmp.file(
        "r.npz",
        npz::write(&[("keypoints_pred", Arr::F32(&[12], &KP_FLAT))]),
    );
    expect_error(
        &["run", &ex("temporal"), "--data", &rank],
        &["`keypoints_pred`", "2 dimensions"],
    );
    // A truncated npy inside a valid zip.
    let short = tmp.file(
        "s.npz",
        npz::write(&[("keypoints_pred", Arr::Raw("<f4", &[3, 4], &[0u8; 8]))]),
    );
    expect_error(&["run", &ex("temporal"), "--data", &short], &["s.npz"]);
}

/// `--rows` changes how the GPU kernel places rows on threads, not the numbers: the demo
/// gives Lightning Pose's total (6.134348, from its conformance vector
/// `loss_factory/heatmap_mse+temporal+pca_singleview`) in one dispatch with each.
#[test]
fn every_row_placement_gives_the_demo_total_in_one_dispatch() {
    let mut args = common::demo_run_args();
    args.extend(["--backend", "gpu", "--json", "--rows"].map(String::from));
    for rows in ["auto", "shared", "per-thread"] {
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.push(rows);
        let out = run(&argv);
        assert_eq!(out.code, Some(0), "--rows {rows}: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_num(&v["total"], 6.134348, &format!("--rows {rows}: total"));
        assert_eq!(v["dispatches"], 1, "--rows {rows}");
    }
    // A usage error, as clap reports them: status 2, the valid values listed.
    let out = run(&["run", &ex("temporal"), "--rows", "diagonal"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid value 'diagonal' for '--rows")
            && out.stderr.contains("per-thread"),
        "{}",
        out.stderr
    );
}

/// `lossc explain --data` lays the dispatch out on the data: rows and elements per loss,
/// work items, and the bytes each input has and the read sites load, here checked against
/// hand counts on the demo (B = 6, K = 10, 12 × 12 heatmaps, 5 PCA components,
/// `centering_method` "none", so no centring tables).
#[test]
fn explain_with_data_lays_the_demo_out() {
    let mut args = common::demo_run_args();
    args[0] = "explain".into();
    args.push("--rows".into());
    // heatmap_mse's work items, and all of them: shared, 60 rows, then temporal's one
    // and pca_singleview's 6; one row per thread, 8 rows per item, then 1 and 1.
    for (rows, first, all) in [("shared", "0..60", "67"), ("per-thread", "0..8", "10")] {
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.push(rows);
        let out = run(&argv);
        assert_eq!(out.code, Some(0), "--rows {rows}: {}", out.stderr);
        let text = &out.stdout;
        let expect = [
            // 6 · 10 rows of 12 · 12 elements.
            "loss heatmap_mse     60 row(s) x 144 element(s)".to_string(),
            format!("work items {first}"),
            format!("{all} work item(s)"),
            // 6 · 10 · 12 · 12 floats, read by the mask and by compute.
            "input heatmaps_targ   [6, 10, 12, 12]: 34560 bytes, loaded 69120 bytes (2.00x)".into(),
            "input heatmaps_pred   [6, 10, 12, 12]: 34560 bytes, loaded 34560 bytes (1.00x)".into(),
            // temporal: 2 sites × 5 pairs of frames × 10 keypoints × 2 coordinates = 200;
            // pca_singleview: the projection z, 6 frames × 5 components × 10 keypoints
            // × 2 coordinates = 600, and compute 6 × 10 × 2 = 120: 920 loads.
            "input keypoints_pred  [6, 20]: 480 bytes, loaded 3680 bytes (7.67x)".into(),
            // temporal's two masks, 5 × 10 each.
            "input confidences     [6, 10]: 240 bytes, loaded 400 bytes (1.67x)".into(),
        ];
        for e in expect {
            assert!(text.contains(&e), "--rows {rows}: no `{e}` in\n{text}");
        }
    }
}
