//! A compiled factory as a Burn autodiff op (feature `burn`): its values and input
//! gradients equal lossc's CPU evaluator on the same arrays, and one optimiser step
//! through it equals a step computed by hand from the CPU evaluator's gradients.
#![cfg(feature = "burn")]

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Tensor, TensorData};
use common::Rng;
use lossc::diagnostics::Source;
use lossc::integrations::burn::{BurnFactory, BurnGpu, Input};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Array, Data, DataValue};
use lossc::runtime::grad::Wrt;
use lossc::runtime::run::{Backend, RunOptions, run};

fn program() -> Program {
    let sources: Vec<Source> = ["heatmap_mse", "temporal", "pca_singleview"]
        .iter()
        .map(|name| {
            let path = common::root().join(format!("examples/lightning_pose/{name}.loss"));
            Source::new(
                path.to_string_lossy().as_ref(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    let checked = lossc::sema::check(&sources);
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    checked.program
}

const K: usize = 4;

/// The PCA's params: the kept components are the pose's two translations (unit rows),
/// its mean a fixed pose.
fn pca_params() -> Data {
    let mut e = vec![0.0; 2 * 2 * K];
    for k in 0..K {
        e[2 * k] = 0.5;
        e[2 * K + 2 * k + 1] = 0.5;
    }
    let mean: Vec<f64> = (0..2 * K).map(|i| 3.0 + i as f64).collect();
    let mut d = Data::new();
    d.insert(
        "kept_eigenvectors".into(),
        DataValue::Array(Array {
            shape: vec![2, 2 * K],
            data: e,
            typed_float: true,
        }),
    );
    d.insert(
        "mean".into(),
        DataValue::Array(Array {
            shape: vec![2 * K],
            data: mean,
            typed_float: true,
        }),
    );
    d
}

fn terms() -> Vec<FactoryTerm> {
    vec![
        FactoryTerm::plain("heatmap_mse"),
        FactoryTerm::plain("temporal"),
        FactoryTerm {
            annealed: true,
            ..FactoryTerm::plain("pca_singleview")
        },
    ]
}

fn array(shape: &[usize], data: &[f32]) -> DataValue {
    DataValue::Array(Array {
        shape: shape.to_vec(),
        data: data.iter().map(|v| f64::from(*v)).collect(),
        typed_float: true,
    })
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-4 * scale.max(a.abs()).max(1e-6)
}

#[test]
fn the_burn_op_gives_the_cpu_evaluators_values_and_gradients() {
    let program = program();
    let burn = BurnGpu::get().unwrap();
    let device = burn.device();
    let mut r = Rng(0x6275_726e);
    let (bl, bu, h, w) = (3, 5, 8, 6);
    let hm_shape = [bl, K, h, w];
    let n_hm = bl * K * h * w;
    let mut target: Vec<f32> = (0..n_hm).map(|_| r.unit() as f32).collect();
    // An unlabelled keypoint: its target heatmap all zeros, dropped from the mean.
    for v in &mut target[h * w..2 * h * w] {
        *v = 0.0;
    }
    let pred: Vec<f32> = (0..n_hm).map(|_| r.unit() as f32).collect();
    let kp: Vec<f32> = (0..bu * 2 * K).map(|_| 10.0 * r.unit() as f32).collect();
    let anneal = 0.3;

    let mut factory = BurnFactory::new(&program, "f", &terms(), pca_params()).unwrap();
    let targ_t = Tensor::<4>::from_data(TensorData::new(target.clone(), hm_shape), &device);
    let pred_t =
        Tensor::<4>::from_data(TensorData::new(pred.clone(), hm_shape), &device).require_grad();
    let kp_t =
        Tensor::<2>::from_data(TensorData::new(kp.clone(), [bu, 2 * K]), &device).require_grad();
    let out = factory
        .forward(
            burn,
            vec![
                Input::new("heatmaps_targ", targ_t).unwrap(),
                Input::new("heatmaps_pred", pred_t.clone()).unwrap(),
                Input::new("keypoints_pred", kp_t.clone()).unwrap(),
            ],
            anneal,
        )
        .unwrap();
    assert_eq!(out.dispatches, 2);
    // Mistakes are errors that name the input, not panics.
    let again = |name: &str| Input::new(name, Tensor::<2>::zeros([bu, 2 * K], &device)).unwrap();
    let e = factory
        .forward(
            burn,
            vec![again("keypoints_pred"), again("keypoints_pred")],
            1.0,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`keypoints_pred` is given twice"), "{e}");
    let e = factory
        .forward(burn, vec![again("keypoint_pred")], 1.0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("keypoint_pred"), "{e}");
    // An upstream gradient other than 1, as a larger graph gives.
    let grads = (out.total.clone() * 2.0).backward();
    let g_pred = pred_t
        .grad(&grads)
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let g_kp = kp_t
        .grad(&grads)
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();

    let mut data = pca_params();
    data.insert("heatmaps_targ".into(), array(&hm_shape, &target));
    data.insert("heatmaps_pred".into(), array(&hm_shape, &pred));
    data.insert("keypoints_pred".into(), array(&[bu, 2 * K], &kp));
    let opts = RunOptions {
        backend: Backend::Cpu,
        anneal,
        wrt: Wrt::Inputs(vec!["heatmaps_pred".into(), "keypoints_pred".into()]),
        ..Default::default()
    };
    let cpu = run(&program, "f", &terms(), &data, &vec![], &opts).unwrap();
    assert!(
        close(out.value, cpu.total, 0.0),
        "{} vs {}",
        out.value,
        cpu.total
    );
    let total = out.total.into_data().to_vec::<f32>().unwrap();
    assert_eq!(total, [out.value]);
    for (b, (name, c)) in out.losses.iter().zip(&cpu.losses) {
        assert_eq!(&b.name, name);
        assert!(
            close(b.loss, c.loss, 0.0),
            "{name}: {} vs {}",
            b.loss,
            c.loss
        );
        assert!(close(b.weight, c.weight, 0.0), "{name}");
    }
    for ((name, c), got) in cpu.grads.iter().zip([&g_pred, &g_kp]) {
        assert_eq!(got.len(), c.data.len(), "{name}");
        let scale = c.max_abs();
        assert!(scale > 0.0, "{name}: a gradient of zeros proves nothing");
        for (k, (a, b)) in c.data.iter().zip(got.iter()).enumerate() {
            assert!(
                close(2.0 * a, *b, 2.0 * scale),
                "d/d{name}[{k}]: cpu 2 × {a}, burn {b}"
            );
        }
    }
}

#[test]
fn one_sgd_step_through_the_op_is_the_step_the_cpu_gradients_give() {
    let program = program();
    let burn = BurnGpu::get().unwrap();
    let device = burn.device();
    let (b, f) = (6, 3);
    let terms = [FactoryTerm::plain("temporal")];
    let mut factory = BurnFactory::new(&program, "t", &terms, Data::new()).unwrap();
    let mut r = Rng(0x0005_7e90);
    let x: Vec<f32> = (0..b * f).map(|_| r.unit() as f32 * 4.0 - 2.0).collect();
    let model: Linear = LinearConfig::new(f, 2 * K).init(&device);
    let weight = model.weight.val().into_data().to_vec::<f32>().unwrap(); // [f, 2K]
    let bias = model
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [b, f]), &device);
    let y = model.forward(xt);
    let y_host = y.clone().into_data().to_vec::<f32>().unwrap();
    let out = factory
        .forward(burn, vec![Input::new("keypoints_pred", y).unwrap()], 1.0)
        .unwrap();
    let lr = 0.5;
    let mut optim = SgdConfig::new().init();
    let grads = GradientsParams::from_grads(out.total.backward(), &model);
    let model = optim.step(lr, model, grads);
    let w_new = model.weight.val().into_data().to_vec::<f32>().unwrap();
    let b_new = model
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();

    // The same step by hand: g = d loss / d y from the CPU evaluator, dW = xᵀ g, db = Σ g.
    let mut data = Data::new();
    data.insert("keypoints_pred".into(), array(&[b, 2 * K], &y_host));
    let opts = RunOptions {
        backend: Backend::Cpu,
        wrt: Wrt::EveryInput,
        ..Default::default()
    };
    let cpu = run(&program, "t", &terms, &data, &vec![], &opts).unwrap();
    let g = &cpu.grads[0].1.data;
    let n = 2 * K;
    for i in 0..f {
        for j in 0..n {
            let dw: f64 = (0..b)
                .map(|r| f64::from(x[r * f + i]) * f64::from(g[r * n + j]))
                .sum();
            let want = f64::from(weight[i * n + j]) - f64::from(lr as f32) * dw;
            let got = f64::from(w_new[i * n + j]);
            assert!(
                (want - got).abs() <= 1e-4 * want.abs().max(1e-3),
                "W[{i},{j}]: {want} vs {got}"
            );
        }
    }
    for j in 0..n {
        let db: f64 = (0..b).map(|r| f64::from(g[r * n + j])).sum();
        let want = f64::from(bias[j]) - lr * db;
        let got = f64::from(b_new[j]);
        assert!(
            (want - got).abs() <= 1e-4 * want.abs().max(1e-3),
            "b[{j}]: {want} vs {got}"
        );
    }
    // The step moved the weights: the test would see a wrong gradient.
    assert!(w_new.iter().zip(&weight).any(|(a, b)| a != b));
}

/// The training example (`examples/train_burn.rs`, built beside the tests by `cargo test`)
/// trains: its total falls by more than half over a short run, and it prints the lines
/// its documentation promises.
#[test]
fn the_training_example_trains() {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = dir.join(format!("train_burn{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --features burn`, which builds the examples",
        bin.display()
    );
    let out = std::process::Command::new(&bin)
        .args(["--steps", "30", "--log-every", "10"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Steps 0, 10, 20 and 29, then the summary.
    assert_eq!(lines.len(), 5, "{text}");
    for (line, step) in lines.iter().zip([0, 10, 20, 29]) {
        assert_eq!(line["step"], step);
        let losses = line["losses"].as_object().unwrap();
        let names: Vec<&str> = losses.keys().map(String::as_str).collect();
        assert_eq!(names, ["heatmap_mse", "temporal", "pca_singleview"]);
    }
    let last = &lines[4];
    let (first, end) = (
        last["first_total"].as_f64().unwrap(),
        last["last_total"].as_f64().unwrap(),
    );
    assert_eq!(last["steps"], 30);
    assert!(end < 0.5 * first, "the total went from {first} to {end}");
}
