//! Every case of the conformance vectors (tests/conformance/, produced by Lightning Pose's
//! own PyTorch code) runs through `lossc run ... --json`, the invocation a user types, and
//! must match: losses, weights and totals to relative 1e-5, logs by exact name, NaN where
//! the reference is NaN. Cases where Lightning Pose raises must give a clear error or the
//! result documented in docs/conformance.md, never a crash.
//!
//! `LOSSC_CONFORMANCE_DIR=DIR` runs the vectors of another folder the same way.

mod common;

use std::path::PathBuf;

use serde_json::{Value, json};

use common::conformance::{Invocation, conformance_files, declared_params, invocation};
use common::{close, example_files, lossc, read_json};

const REL: f64 = 1e-5;

/// Runs `lossc run` on a case as a user would: the example files, the case's data
/// written to a file in `tmp`, its arguments and `extra`. Returns the arguments and the
/// output.
fn run_case(
    files: &[String],
    tmp: &std::path::Path,
    id: &str,
    inv: &Invocation,
    extra: &[String],
) -> (Vec<String>, std::process::Output) {
    let data_path = tmp.join(format!("{}.json", id.replace('/', "_")));
    std::fs::write(&data_path, serde_json::to_string(&inv.data).unwrap()).unwrap();
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(files.iter().cloned());
    args.push("--data".into());
    args.push(data_path.display().to_string());
    args.extend(inv.args.iter().cloned());
    args.extend(extra.iter().cloned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lossc(&argv);
    (args, out)
}

/// Counts a case as matched, or records why it failed with its command line.
fn tally(
    id: &str,
    bad: &[String],
    args: &[String],
    matched: &mut usize,
    failures: &mut Vec<String>,
) {
    if bad.is_empty() {
        *matched += 1;
    } else {
        failures.push(format!(
            "{id}: {}\n  lossc {}",
            bad.join("; "),
            args.join(" ")
        ));
    }
}

#[test]
fn every_conformance_case_matches_lightning_pose_on_the_cpu_evaluator() {
    run_suite("cpu");
}

#[test]
fn every_conformance_case_matches_lightning_pose_on_the_gpu_in_one_dispatch() {
    run_suite("gpu");
}

/// What a suite needs: the example losses' params, their files' paths, and an empty
/// folder for the data files, named after `tag` and the process.
fn setup(
    tag: &str,
) -> (
    std::collections::HashMap<String, Vec<String>>,
    Vec<String>,
    PathBuf,
) {
    let files = example_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let tmp = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    (declared_params(), files, tmp)
}

fn run_suite(backend: &str) {
    let (declared, files, tmp) = setup(&format!("lossc-conformance-{backend}"));
    let mut failures = Vec::new();
    let (mut matched, mut errors_handled) = (0, 0);
    for file in conformance_files() {
        let suite = read_json(&file);
        for case in suite["cases"].as_array().unwrap() {
            let id = case["id"].as_str().unwrap();
            if case["loss"] == "generate_heatmaps" {
                continue; // not a loss: covered by tests/generate_heatmaps.rs
            }
            let Some(inv) = invocation(case, &declared) else {
                // A loss Lightning Pose rejects at construction (an unknown loss_name).
                assert!(
                    case.get("error").is_some(),
                    "{id}: no lossc loss for this case"
                );
                errors_handled += 1;
                continue;
            };
            let (args, out) = run_case(&files, &tmp, id, &inv, &[format!("--backend={backend}")]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let code = out.status.code();
            if let Some(err) = case.get("error") {
                // Lightning Pose raises here: lossc must give a clear error or a
                // documented value, never a crash.
                let clear = code == Some(1) && stderr.starts_with("error: ");
                let valued = code == Some(0) && serde_json::from_str::<Value>(&stdout).is_ok();
                if !(clear || valued) {
                    failures.push(format!(
                        "{id}: Lightning Pose raises {err}; lossc exited {code:?}\n{stderr}"
                    ));
                }
                errors_handled += 1;
                continue;
            }
            if code != Some(0) {
                failures.push(format!(
                    "{id}: lossc failed ({code:?}): {stderr}\n  lossc {}",
                    args.join(" ")
                ));
                continue;
            }
            let got: Value = serde_json::from_str(&stdout).unwrap();
            let exp = &case["expected"];
            let mut bad = Vec::new();
            let want_dispatches = if backend == "gpu" { 1 } else { 0 };
            if got["dispatches"] != json!(want_dispatches)
                || !got["backend"].as_str().unwrap_or("").starts_with(backend)
            {
                bad.push(format!(
                    "ran on {} with {} dispatches",
                    got["backend"], got["dispatches"]
                ));
            }
            if case["loss"] == "LossFactory" {
                if !close(&got["total"], &exp["total"], REL) {
                    bad.push(format!("total {} vs {}", got["total"], exp["total"]));
                }
            } else {
                let name = &inv.losses[0];
                for key in ["loss", "weight", "weighted"] {
                    if !close(&got["losses"][name][key], &exp[key], REL) {
                        bad.push(format!(
                            "{key} {} vs {}",
                            got["losses"][name][key], exp[key]
                        ));
                    }
                }
            }
            let logs: Vec<(String, Value)> = got["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l[0].as_str().unwrap().to_string(), l[1].clone()))
                .collect();
            for l in exp["logs"].as_array().unwrap() {
                let name = l[0].as_str().unwrap();
                match logs.iter().find(|(n, _)| n == name) {
                    Some((_, v)) if close(v, &l[1], REL) => {}
                    Some((_, v)) => bad.push(format!("log {name} {v} vs {}", l[1])),
                    None => bad.push(format!("log {name} missing")),
                }
            }
            tally(id, &bad, &args, &mut matched, &mut failures);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "conformance ({backend}): {matched} cases matched, {errors_handled} error cases handled"
    );
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(matched > 0, "no conformance case ran");
}

/// Relative tolerance of a gradient element (f32 sums in another order), against the
/// largest element of the reference: an element near 0 is the difference of larger terms.
const GRAD_REL: f64 = 1e-4;

#[test]
fn every_conformance_gradient_matches_lightning_pose_autograd_on_the_cpu_evaluator() {
    gradient_suite("cpu", usize::MAX);
}

/// On the GPU: the forward kernel and the backward kernel, at most two dispatches.
#[test]
fn every_conformance_gradient_matches_lightning_pose_on_the_gpu_in_two_dispatches() {
    gradient_suite("gpu", usize::MAX);
}

/// Runs the cases with gradients, at most `per_file` of each file, on `backend`.
fn gradient_suite(backend: &str, per_file: usize) {
    let (declared, files, tmp) = setup(&format!("lossc-conformance-grad-{backend}"));
    let (mut failures, mut matched) = (Vec::new(), 0);
    for file in conformance_files() {
        let suite = read_json(&file);
        let mut taken = 0;
        for case in suite["cases"].as_array().unwrap() {
            if taken == per_file {
                break;
            }
            let id = case["id"].as_str().unwrap();
            let Some(grads) = case.get("grads").and_then(Value::as_object) else {
                continue;
            };
            if case["loss"] == "generate_heatmaps" || case.get("error").is_some() {
                continue;
            }
            taken += 1;
            let inv = invocation(case, &declared).unwrap();
            let wrt: Vec<&String> = grads.keys().filter(|k| inv.data.contains_key(*k)).collect();
            let wrt_arg = format!(
                "--wrt={}",
                wrt.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
            );
            let (args, out) = run_case(
                &files,
                &tmp,
                id,
                &inv,
                &[format!("--backend={backend}"), wrt_arg],
            );
            if out.status.code() != Some(0) {
                failures.push(format!(
                    "{id}: lossc failed: {}\n  lossc {}",
                    String::from_utf8_lossy(&out.stderr),
                    args.join(" ")
                ));
                continue;
            }
            let got: Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut bad = Vec::new();
            if !got["backend"].as_str().unwrap_or("").starts_with(backend) {
                bad.push(format!("ran on {}", got["backend"]));
            }
            let most = if backend == "gpu" { 2 } else { 0 };
            if got["dispatches"].as_u64().is_none_or(|d| d > most) {
                bad.push(format!("{} dispatches", got["dispatches"]));
            }
            for name in &wrt {
                let want = &grads[name.as_str()];
                let have = &got["grads"][name.as_str()];
                if have["shape"] != want["shape"] {
                    bad.push(format!(
                        "{name}: shape {} vs {}",
                        have["shape"], want["shape"]
                    ));
                    continue;
                }
                let have = have["data"].as_array().unwrap();
                // No autograd path (a mean over nothing): lossc's gradient is all zeros.
                let Some(want) = want["data"].as_array() else {
                    if let Some(x) = have.iter().find(|x| x.as_f64() != Some(0.0)) {
                        bad.push(format!("{name}: {x} where there is no gradient path"));
                    }
                    continue;
                };
                // A single loss's vectors hold d loss / d input; lossc gives the
                // gradient of the total, weight · loss.
                let scale = if case["loss"] == "LossFactory" {
                    1.0
                } else {
                    case["expected"]["weight"].as_f64().unwrap()
                };
                let want: Vec<Value> = want
                    .iter()
                    .map(|w| w.as_f64().map_or(Value::Null, |w| json!(w * scale)))
                    .collect();
                // A loss of exactly 0 is a minimum of a loss that is never negative: its
                // gradient is 0, which lossc may give exactly where PyTorch gives
                // rounding noise (JS divergence of identical heatmaps: ~5e-8).
                let at_minimum = case["expected"]["loss"].as_f64() == Some(0.0);
                let largest = want
                    .iter()
                    .filter_map(Value::as_f64)
                    .fold(0.0f64, |m, x| m.max(x.abs()));
                for (k, (h, w)) in have.iter().zip(&want).enumerate() {
                    let ok = match (h.as_f64(), w.as_f64()) {
                        (None, None) => h.is_null() && w.is_null(),
                        (Some(h), Some(0.0)) => h == 0.0,
                        (Some(0.0), Some(_)) if at_minimum => true,
                        (Some(h), Some(w)) => (h - w).abs() <= GRAD_REL * largest.max(w.abs()),
                        _ => false,
                    };
                    if !ok {
                        bad.push(format!("{name}[{k}]: {h} vs {w}"));
                        if bad.len() > 6 {
                            break;
                        }
                    }
                }
            }
            tally(id, &bad, &args, &mut matched, &mut failures);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("conformance gradients ({backend}): {matched} cases matched");
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        matched >= 40.min(8usize.saturating_mul(per_file)),
        "only {matched} gradient cases ran"
    );
}

#[test]
fn the_harness_maps_pca_params_from_the_fit() {
    // The PCA losses take the fitted mean, components and epsilon_used from `params.pca`.
    let declared = declared_params();
    let case = json!({
        "loss": "PCALoss", "stage": "train",
        "params": {"loss_name": "pca_singleview", "epsilon": null, "log_weight": 1.0,
                   "pca": {"mean": [1.0], "kept_eigenvectors": [[1.0]], "epsilon_used": 2.5}},
        "inputs": {"keypoints_pred": {"shape": [1, 2], "data": [0, 0]}}
    });
    let inv = invocation(&case, &declared).unwrap();
    assert_eq!(inv.data["pca_singleview.epsilon"], json!(2.5));
    assert_eq!(inv.data["pca_singleview.log_weight"], json!(1.0));
    assert!(inv.data.contains_key("pca_singleview.kept_eigenvectors"));
}
