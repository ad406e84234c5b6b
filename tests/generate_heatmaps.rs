//! lossc's Gaussian heatmap rendering (the `heatmap` let of
//! `examples/lightning_pose/supervised_reprojection_heatmap_mse.loss`, Lightning Pose's
//! `generate_heatmaps`) against the `generate_heatmaps` cases of
//! `tests/conformance/generate_heatmaps.json.gz`, and against heatmaps computed here in
//! f64 from the formula of `tests/conformance/README.md`.
//!
//! The lets are copied from the example file at test time into a test-only loss whose
//! `compute` compares them with an `expected` input:
//! `max(b, k, h, w: abs(expected[b, k, h, w] - heatmap))` (one number: the largest
//! absolute error) and a `reduce sum` of squared differences. Both run through
//! `lossc run --json`, on the CPU reference evaluator and on the default back end (the
//! GPU when an adapter exists).

mod common;

use serde_json::{Value, json};

use common::{lossc, read_json, root};

/// Absolute tolerance on each heatmap value.
const TOL: f64 = 1e-6;

/// The `let` lines of the example, verbatim.
fn example_lets() -> String {
    let text = std::fs::read_to_string(
        root().join("examples/lightning_pose/supervised_reprojection_heatmap_mse.loss"),
    )
    .unwrap();
    let lets: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("let "))
        .collect();
    let names: Vec<&str> = lets
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        ["x", "y", "invalid", "gauss", "heatmap"],
        "the example's lets changed"
    );
    lets.join("\n")
}

/// The test-only losses: the largest absolute error, the sum of squared errors, and
/// the number of (b, k) maps that are entirely NaN.
fn check_losses() -> String {
    let decls = "    input expected                      : [B, K, H, W]\n    \
                 input keypoints_pred_2d_reprojected : [B, K, 2]\n    \
                 param original_image_height\n    param original_image_width\n    param sigma = 1.25\n";
    let lets = example_lets();
    format!(
        "loss heatmap_max_error {{\n{decls}{lets}\n    compute max(b, k, h, w: abs(expected[b, k, h, w] - heatmap))\n    reduce sum\n}}\n\n\
         loss heatmap_squared_error {{\n{decls}{lets}\n    compute (expected[b, k, h, w] - heatmap) ^ 2\n    reduce sum\n}}\n\n\
         loss heatmap_all_nan {{\n{decls}{lets}\n    compute select(all(h in 0..H, w in 0..W: isnan(heatmap)), 1, 0) + 0 * expected[b, k, 0, 0]\n    reduce sum\n}}\n"
    )
}

const LOSSES: [&str; 3] = [
    "heatmap_max_error",
    "heatmap_squared_error",
    "heatmap_all_nan",
];

struct Tmp(std::path::PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let dir =
            std::env::temp_dir().join(format!("lossc-heatmaps-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The three numbers per back end: (backend, max abs error, sum of squared errors, all-NaN
/// maps), with NaN for `null`.
fn run(
    tmp: &Tmp,
    id: &str,
    expected: &Value,
    keypoints: &Value,
    height: f64,
    width: f64,
    sigma: f64,
) -> Vec<(String, f64, f64, f64)> {
    let loss = tmp.0.join("check.loss");
    std::fs::write(&loss, check_losses()).unwrap();
    let data = tmp.0.join(format!("{}.json", id.replace('/', "_")));
    let mut d = json!({"expected": expected, "keypoints_pred_2d_reprojected": keypoints});
    for loss in LOSSES {
        d[format!("{loss}.original_image_height")] = json!(height);
        d[format!("{loss}.original_image_width")] = json!(width);
        d[format!("{loss}.sigma")] = json!(sigma);
    }
    std::fs::write(&data, d.to_string()).unwrap();
    let (loss, data) = (loss.display().to_string(), data.display().to_string());
    let mut out = Vec::new();
    for backend in [Some("cpu"), None] {
        let losses = LOSSES.join(",");
        let mut args = vec!["run", &loss, "--losses", &losses, "--data", &data, "--json"];
        if let Some(b) = backend {
            args.extend(["--backend", b]);
        }
        let o = lossc(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{id}: lossc {}\n{stderr}",
            args.join(" ")
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let num = |name: &str| v["losses"][name]["loss"].as_f64().unwrap_or(f64::NAN);
        out.push((
            v["backend"].as_str().unwrap().to_string(),
            num("heatmap_max_error"),
            num("heatmap_squared_error"),
            num("heatmap_all_nan"),
        ));
    }
    out
}

#[test]
fn the_conformance_heatmaps_match_lightning_pose() {
    let suite = read_json(&root().join("tests/conformance/generate_heatmaps.json.gz"));
    let tmp = Tmp::new("conformance");
    let mut compared = 0;
    for case in suite["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        assert_eq!(case["loss"], "generate_heatmaps");
        let p = &case["params"];
        // `visibility` (0: zeros, 1: a uniform map, 2: the Gaussian) is an argument of
        // generate_heatmaps that no lossc loss models: skip those cases.
        if !p["visibility"].is_null() {
            continue;
        }
        let expected = &case["expected"]["heatmaps"];
        let shape: Vec<u64> = expected["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        let out_shape: Vec<u64> = p["output_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(&shape[2..], &out_shape[..], "{id}");
        let (h, w, s) = (
            p["height"].as_f64().unwrap(),
            p["width"].as_f64().unwrap(),
            p["sigma"].as_f64().unwrap(),
        );
        for (backend, max_err, sq_err, all_nan) in
            run(&tmp, id, expected, &case["inputs"]["keypoints"], h, w, s)
        {
            assert!(max_err <= TOL, "{id} on {backend}: largest error {max_err}");
            assert!(
                sq_err <= TOL * TOL * (shape.iter().product::<u64>() as f64),
                "{id} on {backend}: squared error {sq_err}"
            );
            assert_eq!(all_nan, 0.0, "{id} on {backend}");
        }
        compared += 1;
    }
    assert_eq!(compared, 2, "the cases without visibility");
}

/// generate_heatmaps in f64, from the formula: scale, mark invalid (only x is tested for
/// NaN), clamp, Gaussian, normalise; invalid maps are zeros.
fn reference(
    kps: &[(f64, f64)],
    height: f64,
    width: f64,
    oh: usize,
    ow: usize,
    sigma: f64,
) -> Vec<f64> {
    let mut out = Vec::new();
    for &(x, y) in kps {
        let x = x * (ow as f64 / width);
        let y = y * (oh as f64 / height);
        let (wf, hf) = (ow as f64, oh as f64);
        let invalid = x.is_nan() || x < -1.0 || x > wf + 1.0 || y < -1.0 || y > hf + 1.0;
        let (cx, cy) = (x.clamp(-1.0, wf + 1.0), y.clamp(-1.0, hf + 1.0));
        let mut g = Vec::new();
        for i in 0..oh {
            for j in 0..ow {
                let (dx, dy) = (j as f64 - cx, i as f64 - cy);
                g.push((-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp());
            }
        }
        let z: f64 = g.iter().sum();
        out.extend(g.iter().map(|v| if invalid { 0.0 } else { v / z }));
    }
    out
}

/// Keypoints chosen by hand on a 40×24 image rendered at 10×6 (scale 1/4): in bounds, on a
/// pixel centre, at the corners, outside the image but within the one-pixel margin,
/// beyond the margin on each side (zeros), and with a NaN x (zeros).
#[test]
fn hand_placed_keypoints_match_the_formula() {
    let (height, width, oh, ow) = (24.0, 40.0, 6, 10);
    let kps = [
        (13.0, 9.0),
        (8.0, 12.0),
        (0.0, 0.0),
        (39.9, 23.9),
        (-3.0, 10.0),
        (42.0, 25.0),
        (-4.5, 10.0),
        (45.0, 10.0),
        (20.0, -4.4),
        (f64::NAN, 10.0),
    ];
    let tmp = Tmp::new("hand");
    for sigma in [1.25, 2.0] {
        let expected = reference(&kps, height, width, oh, ow, sigma);
        // Two frames of five keypoints.
        let expected_t = json!({"shape": [2, 5, oh, ow], "data": expected});
        let kp_t = json!({"shape": [2, 5, 2], "data": kps.iter().flat_map(|(x, y)| [x, y]).map(|v| if v.is_nan() { Value::Null } else { json!(v) }).collect::<Vec<_>>()});
        for (backend, max_err, _, all_nan) in
            run(&tmp, "hand", &expected_t, &kp_t, height, width, sigma)
        {
            assert!(
                max_err <= TOL,
                "sigma {sigma} on {backend}: largest error {max_err}"
            );
            assert_eq!(all_nan, 0.0, "{backend}");
        }
        // The last four keypoints are invalid (x′ = −1.125, x′ = 11.25, y′ = −1.1, NaN):
        // their maps are all zeros; the first six are not.
        let n = oh * ow;
        assert!(
            expected[6 * n..].iter().all(|v| *v == 0.0)
                && expected[..6 * n].iter().all(|v| *v > 0.0)
        );
    }
}

/// A NaN y with a finite x is not marked invalid (only x is tested), so the whole map is
/// NaN, as upstream (README Q8).
#[test]
fn a_nan_y_alone_gives_an_all_nan_map() {
    let tmp = Tmp::new("nan-y");
    let expected = json!({"shape": [1, 2, 4, 4], "data": vec![0.0; 32]});
    let kps = json!({"shape": [1, 2, 2], "data": [8.0, null, 4.0, 4.0]});
    for (backend, max_err, _, all_nan) in run(&tmp, "nan_y", &expected, &kps, 16.0, 16.0, 1.25) {
        assert_eq!(all_nan, 1.0, "{backend}: one all-NaN map");
        assert!(
            max_err.is_nan(),
            "{backend}: the error is NaN, got {max_err}"
        );
    }
}
