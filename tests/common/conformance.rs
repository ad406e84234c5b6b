//! The conformance vectors of `tests/conformance/` (Lightning Pose's own values) as lossc
//! data: shared by `tests/conformance.rs` and the host tests, which take one case per
//! example loss.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{example_files, root};

/// The lossc loss a Lightning Pose class (and its `loss_name`) corresponds to.
pub fn loss_name(class: &str, params: &Value) -> Option<String> {
    Some(match class {
        "HeatmapMSELoss" => "heatmap_mse".into(),
        "HeatmapKLLoss" => "heatmap_kl".into(),
        "HeatmapJSLoss" => "heatmap_js".into(),
        "RegressionMSELoss" => "regression".into(),
        "RegressionRMSELoss" => "rmse".into(),
        "TemporalLoss" => "temporal".into(),
        "PairwiseProjectionsLoss" => "supervised_pairwise_projections".into(),
        "ReprojectionHeatmapLoss" => "supervised_reprojection_heatmap_mse".into(),
        "TemporalHeatmapLoss" | "PCALoss" => params["loss_name"].as_str()?.to_string(),
        _ => return None,
    })
}

/// The params each example loss declares, read from the files themselves.
pub fn declared_params() -> std::collections::HashMap<String, Vec<String>> {
    super::check_files(&example_files())
        .losses
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                l.params.iter().map(|p| p.name.clone()).collect(),
            )
        })
        .collect()
}

/// A Lightning Pose case as lossc's data file and command-line arguments.
pub struct Invocation {
    pub losses: Vec<String>,
    pub data: Map<String, Value>,
    pub args: Vec<String>,
}

pub fn invocation(
    case: &Value,
    declared: &std::collections::HashMap<String, Vec<String>>,
) -> Option<Invocation> {
    let class = case["loss"].as_str()?;
    let params = &case["params"];
    // (loss name, Lightning Pose constructor params, fitted PCA params)
    let mut terms: Vec<(String, Value, Value)> = Vec::new();
    if class == "LossFactory" {
        for (name, p) in params["losses_params_dict"].as_object()? {
            terms.push((name.clone(), p.clone(), params["pca"][name].clone()));
        }
    } else {
        terms.push((
            loss_name(class, params)?,
            params.clone(),
            params["pca"].clone(),
        ));
    }
    let mut data = Map::new();
    for (k, v) in case["inputs"].as_object()? {
        if !v.is_null() {
            data.insert(k.clone(), v.clone());
        }
    }
    for (name, p, pca) in &terms {
        let Some(names) = declared.get(name) else {
            continue;
        };
        for param in names {
            let value = match (param.as_str(), pca.is_null()) {
                ("mean", false) => pca["mean"].clone(),
                ("kept_eigenvectors", false) => pca["kept_eigenvectors"].clone(),
                ("epsilon", false) => pca["epsilon_used"].clone(),
                _ => p.get(param).cloned().unwrap_or(Value::Null),
            };
            if !value.is_null() {
                data.insert(format!("{name}.{param}"), value);
            }
        }
    }
    let losses: Vec<String> = terms.iter().map(|t| t.0.clone()).collect();
    let stage = case["stage"].as_str().unwrap_or("None").to_string();
    let mut args = vec![
        "--losses".to_string(),
        losses.join(","),
        "--stage".into(),
        stage,
        "--json".into(),
    ];
    if class == "LossFactory" {
        // Lightning Pose anneals every loss but the heatmap ones; no anneal weight means 1.
        let annealed: Vec<&str> = losses
            .iter()
            .map(String::as_str)
            .filter(|n| !n.starts_with("heatmap_"))
            .collect();
        if !annealed.is_empty() {
            args.push(format!("--annealed={}", annealed.join(",")));
        }
        args.push(format!(
            "--anneal={}",
            params["anneal_weight"].as_f64().unwrap_or(1.0)
        ));
    }
    Some(Invocation { losses, data, args })
}

/// The conformance vector files, sorted.
pub fn conformance_files() -> Vec<PathBuf> {
    let dir = std::env::var_os("LOSSC_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/conformance"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy().ends_with(".json") || p.to_string_lossy().ends_with(".json.gz")
        })
        .collect();
    files.sort();
    files
}

/// Every single-loss conformance case as (loss, lossc data), in file order: Lightning
/// Pose's own inputs and params for every example loss, where `examples/demo.json` has
/// only some.
pub fn single_loss_cases() -> Vec<(String, Value)> {
    let declared = declared_params();
    let mut found = Vec::new();
    for file in conformance_files() {
        let vectors = super::read_json(&file);
        for case in vectors["cases"].as_array().into_iter().flatten() {
            if case["loss"] == "LossFactory" {
                continue;
            }
            let Some(inv) = invocation(case, &declared) else {
                continue;
            };
            if let [loss] = &inv.losses[..] {
                found.push((loss.clone(), Value::Object(inv.data)));
            }
        }
    }
    found
}
