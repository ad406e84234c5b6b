//! Trains a small keypoint model in Burn with Lightning Pose's losses compiled by lossc:
//! `heatmap_mse` on labelled frames, `temporal` and `pca_singleview` (annealed) on a clip
//! of unlabelled frames, all from `examples/lightning_pose/*.loss`, as one factory run as
//! one Burn op (lossc's forward and backward kernels, two dispatches per step).
//!
//! The data is generated: K bright blobs (blob k in channel k mod 3) that move together
//! along a smooth path, so that consecutive frames differ little (what `temporal` asks)
//! and every pose is the template pose plus a translation (so a PCA with the two
//! translations as its components holds every true pose: what `pca_singleview` asks).
//! The model is three 3×3 convolutions producing K heatmaps; keypoints are their
//! soft-argmax.
//!
//! ```text
//! cargo run --release --example train_burn --features burn -- --steps 60
//! ```
//!
//! Prints one JSON line per logged step, `{"step", "total", "losses": {...}}`, and a last
//! line `{"first_total", "last_total", "steps", "seconds"}`.

use std::time::Instant;

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use clap::Parser;
use lossc::diagnostics::Source;
use lossc::integrations::burn::{BurnFactory, BurnGpu, Input};
use lossc::ir::FactoryTerm;
use lossc::runtime::data::{Array, Data, DataValue};

#[derive(Parser, Debug)]
struct Args {
    /// Optimiser steps.
    #[arg(long, default_value_t = 60)]
    steps: usize,
    /// Keypoints (blobs).
    #[arg(long, default_value_t = 3)]
    keypoints: usize,
    /// Image height and width, in pixels.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Labelled frames per step.
    #[arg(long, default_value_t = 8)]
    labelled: usize,
    /// Unlabelled frames per step (one clip of consecutive frames).
    #[arg(long, default_value_t = 16)]
    unlabelled: usize,
    /// Hidden channels of the model.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Log every this many steps (and the last).
    #[arg(long, default_value_t = 5)]
    log_every: usize,
}

#[derive(Module, Debug)]
struct Net {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
}

impl Net {
    fn new(k: usize, hidden: usize, device: &Device) -> Net {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        Net {
            conv1: conv(3, hidden),
            conv2: conv(hidden, hidden),
            conv3: conv(hidden, k),
        }
    }

    /// Heatmaps `[B, K, H, W]` of images `[B, 3, H, W]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.conv1.forward(x));
        let x = relu(self.conv2.forward(x));
        self.conv3.forward(x)
    }
}

/// Keypoints `[B, 2K]` (x0, y0, x1, y1, … in pixels) as the heatmaps' soft-argmax.
fn soft_argmax(heatmaps: Tensor<4>, device: &Device) -> Tensor<2> {
    let [b, k, h, w] = heatmaps.dims();
    let p = softmax(heatmaps.reshape([b, k, h * w]) * 20.0, 2);
    let xs: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
    let ys: Vec<f32> = (0..h * w).map(|i| (i / w) as f32).collect();
    let xs = Tensor::<3>::from_data(TensorData::new(xs, [1, 1, h * w]), device);
    let ys = Tensor::<3>::from_data(TensorData::new(ys, [1, 1, h * w]), device);
    let x = (p.clone() * xs).sum_dim(2); // [b, k, 1]
    let y = (p * ys).sum_dim(2);
    Tensor::cat(vec![x, y], 2).reshape([b, 2 * k])
}

/// The generated world: a template pose and a smooth path of translations.
struct World {
    k: usize,
    size: usize,
    template: Vec<(f32, f32)>,
}

impl World {
    fn new(k: usize, size: usize) -> World {
        let c = size as f32 / 2.0;
        let r = size as f32 / 5.0;
        let template = (0..k)
            .map(|i| {
                let a = std::f32::consts::TAU * i as f32 / k as f32;
                (c + r * a.cos(), c + r * a.sin())
            })
            .collect();
        World { k, size, template }
    }

    /// The translation at time `t` (frames): a slow loop, under 0.5 px per frame.
    fn shift(&self, t: usize) -> (f32, f32) {
        let a = self.size as f32 / 8.0;
        let u = t as f32 * 0.07;
        (a * u.sin(), a * (1.3 * u).cos())
    }

    /// Keypoint positions at time `t`.
    fn pose(&self, t: usize) -> Vec<(f32, f32)> {
        let (dx, dy) = self.shift(t);
        self.template
            .iter()
            .map(|(x, y)| (x + dx, y + dy))
            .collect()
    }

    /// A Gaussian blob image of each keypoint, `[K, H, W]`, peak 1.
    fn blobs(&self, pose: &[(f32, f32)]) -> Vec<f32> {
        let n = self.size;
        let mut out = vec![0.0; self.k * n * n];
        for (k, (px, py)) in pose.iter().enumerate() {
            for y in 0..n {
                for x in 0..n {
                    let d2 = (x as f32 - px).powi(2) + (y as f32 - py).powi(2);
                    out[(k * n + y) * n + x] = (-d2 / (2.0 * 1.5 * 1.5)).exp();
                }
            }
        }
        out
    }

    /// Frames at times `ts`: images `[B, 3, H, W]` (blob k in channel k mod 3) and
    /// target heatmaps `[B, K, H, W]`.
    fn frames(&self, ts: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let n = self.size;
        let mut images = vec![0.0; ts.len() * 3 * n * n];
        let mut heatmaps = Vec::with_capacity(ts.len() * self.k * n * n);
        for (b, t) in ts.iter().enumerate() {
            let blobs = self.blobs(&self.pose(*t));
            for k in 0..self.k {
                let c = k % 3;
                for i in 0..n * n {
                    images[(b * 3 + c) * n * n + i] += blobs[k * n * n + i];
                }
            }
            heatmaps.extend_from_slice(&blobs);
        }
        (images, heatmaps)
    }

    /// The PCA of the true poses: mean the template shifted by the mean translation
    /// (taken as zero: the path loops around it), components the two translations.
    fn pca(&self) -> Data {
        let k = self.k;
        let norm = 1.0 / (k as f64).sqrt();
        let mut e = vec![0.0; 2 * 2 * k];
        for i in 0..k {
            e[2 * i] = norm;
            e[2 * k + 2 * i + 1] = norm;
        }
        let mean: Vec<f64> = self
            .template
            .iter()
            .flat_map(|(x, y)| [f64::from(*x), f64::from(*y)])
            .collect();
        let mut d = Data::new();
        d.insert(
            "kept_eigenvectors".into(),
            DataValue::Array(Array {
                shape: vec![2, 2 * k],
                data: e,
                typed_float: true,
            }),
        );
        d.insert(
            "mean".into(),
            DataValue::Array(Array {
                shape: vec![2 * k],
                data: mean,
                typed_float: true,
            }),
        );
        // A pose may move 0.5 px between frames before `temporal` counts it.
        d.insert(
            "temporal.epsilon".into(),
            DataValue::Array(Array::scalar(1.0)),
        );
        d
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let start = Instant::now();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lightning_pose");
    let sources: Vec<Source> = ["heatmap_mse", "temporal", "pca_singleview"]
        .iter()
        .map(|name| {
            let path = root.join(format!("{name}.loss"));
            Ok(Source::new(
                path.to_string_lossy().as_ref(),
                &std::fs::read_to_string(&path)?,
            ))
        })
        .collect::<Result<_, std::io::Error>>()?;
    let checked = lossc::sema::check(&sources);
    if !checked.diagnostics.is_empty() {
        return Err(format!("{:?}", checked.diagnostics).into());
    }
    let terms = [
        FactoryTerm::plain("heatmap_mse"),
        FactoryTerm::plain("temporal"),
        FactoryTerm {
            annealed: true,
            ..FactoryTerm::plain("pca_singleview")
        },
    ];
    let world = World::new(args.keypoints, args.size);
    let mut factory = BurnFactory::new(&checked.program, "train", &terms, world.pca())?;

    let burn = BurnGpu::get()?;
    let device = burn.device();
    device.seed(7);
    let mut model = Net::new(args.keypoints, args.channels, &device);
    let mut optim = AdamConfig::new().init();
    let (n, k) = (args.size, args.keypoints);
    let mut first_total = None;
    let mut last_total = f32::NAN;
    for step in 0..args.steps {
        // Labelled frames spread over the path; an unlabelled clip of consecutive ones.
        let labelled: Vec<usize> = (0..args.labelled)
            .map(|i| (step * 37 + i * 53) % 400)
            .collect();
        let clip0 = (step * 11) % 400;
        let clip: Vec<usize> = (clip0..clip0 + args.unlabelled).collect();
        let (images_l, targets) = world.frames(&labelled);
        let (images_u, _) = world.frames(&clip);
        let images_l =
            Tensor::<4>::from_data(TensorData::new(images_l, [args.labelled, 3, n, n]), &device);
        let images_u = Tensor::<4>::from_data(
            TensorData::new(images_u, [args.unlabelled, 3, n, n]),
            &device,
        );
        let targets =
            Tensor::<4>::from_data(TensorData::new(targets, [args.labelled, k, n, n]), &device);
        let heatmaps = model.forward(images_l);
        let keypoints = soft_argmax(model.forward(images_u), &device);
        let anneal = ((step + 1) as f32 / (args.steps as f32 / 2.0)).min(1.0);
        let out = factory.forward(
            burn,
            vec![
                Input::new("heatmaps_targ", targets)?,
                Input::new("heatmaps_pred", heatmaps)?,
                Input::new("keypoints_pred", keypoints)?,
            ],
            anneal,
        )?;
        first_total.get_or_insert(out.value);
        last_total = out.value;
        if step % args.log_every == 0 || step + 1 == args.steps {
            let losses: serde_json::Map<String, serde_json::Value> = out
                .losses
                .iter()
                .map(|l| (l.name.clone(), serde_json::json!(l.loss)))
                .collect();
            println!(
                "{}",
                serde_json::json!({"step": step, "total": out.value, "anneal": anneal, "losses": losses})
            );
        }
        let grads = GradientsParams::from_grads(out.total.backward(), &model);
        model = optim.step(args.lr, model, grads);
    }
    println!(
        "{}",
        serde_json::json!({
            "first_total": first_total.unwrap_or(f32::NAN),
            "last_total": last_total,
            "steps": args.steps,
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
