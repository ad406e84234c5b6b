//! Gradients (`lossc run --grad`), checked against sources that share no code with the
//! adjoint IR (`src/ad`):
//! * the derivative conventions of docs/gradients.md, op by op, on values worked out by
//!   hand (PyTorch autograd's answers at kinks, ties and specials);
//! * central finite differences in f64, on random programs, with an f64 evaluator of the
//!   IR written here (it shares the checked IR and the bound ranges, not the evaluator);
//! * every example loss's adjoint IR passes the IR verifier.
//!
//! The conformance vectors' autograd gradients are checked in tests/conformance.rs.

mod common;

use std::collections::HashMap;

use common::{Rng, example_files};
use lossc::ad::adjoint;
use lossc::bind::{Bound, rebind};
use lossc::diagnostics::Source;
use lossc::ir::verify::{Stage, verify};
use lossc::ir::{
    BinaryFn, FactoryTerm, IndexExpr, IndexId, IndexTerm, InputId, LossIr, MaskMode, Op, Program,
    ReduceFn, ReduceMode, Tensor, TiSlice, UnaryFn, operands,
};
use lossc::runtime::data::parse_json_data;
use lossc::runtime::grad::{Wrt, gradients_unfused, resolve};
use lossc::runtime::run::{Backend, RunOptions, prepare, run};

fn check(text: &str) -> Program {
    let sources = [Source::new("test.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program
}

/// `d total / d input` of the one loss in `text` on `data` (JSON), on the CPU.
fn grad(text: &str, data: &str, input: &str) -> (f32, Vec<f32>) {
    let program = check(text);
    let name = program.losses[0].name.clone();
    let data = parse_json_data(data).unwrap();
    let opts = RunOptions {
        backend: Backend::Cpu,
        wrt: Wrt::Inputs(vec![input.to_string()]),
        ..Default::default()
    };
    let r = run(
        &program,
        &name,
        &[FactoryTerm::plain(&name)],
        &data,
        &vec![],
        &opts,
    )
    .unwrap();
    (r.total, r.grads[0].1.data.clone())
}

/// Bitwise equality, so that NaN equals NaN and 0 is told from -0 only where it matters
/// (it does not here: 0 and -0 are both accepted as 0).
fn same(got: &[f32], want: &[f32]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (g.is_nan() && w.is_nan()) || g == w)
}

macro_rules! assert_grad {
    ($text:expr, $data:expr, $input:expr, $want:expr) => {{
        let (_, g) = grad($text, $data, $input);
        let want: Vec<f32> = $want.to_vec();
        assert!(same(&g, &want), "gradient {g:?}, want {want:?}\n{}", $text);
    }};
}

#[test]
fn abs_relu_and_sqrt_at_their_kinks_follow_pytorch() {
    // abs'(0) = 0; relu'(0) = 0 (the result is not positive); sqrt'(0) = +inf.
    let body = |e: &str| format!("loss f {{\n input x : [N]\n compute {e}\n reduce sum\n}}");
    assert_grad!(
        &body("abs(x[i])"),
        r#"{"x": [0, 2, -3]}"#,
        "x",
        [0.0, 1.0, -1.0]
    );
    assert_grad!(
        &body("relu(x[i])"),
        r#"{"x": [0, 2, -3]}"#,
        "x",
        [0.0, 1.0, 0.0]
    );
    assert_grad!(
        &body("sqrt(x[i])"),
        r#"{"x": [0, 4]}"#,
        "x",
        [f32::INFINITY, 0.25]
    );
    // RMSE at zero distance: sqrt'(0) · 0 is NaN, as in Lightning Pose.
    assert_grad!(
        &body("sqrt(x[i] * x[i])"),
        r#"{"x": [0, 3]}"#,
        "x",
        [f32::NAN, 1.0]
    );
}

#[test]
fn norm_at_zero_has_gradient_zero() {
    let text = "loss f {\n input x : [N, C]\n compute norm(c: x[n, c])\n reduce sum\n}";
    // Row 0 is at the origin; row 1 is (3, 4): gradient x / |x|.
    assert_grad!(
        text,
        r#"{"x": [[0, 0], [3, 4]]}"#,
        "x",
        [0.0, 0.0, 0.6, 0.8]
    );
}

#[test]
fn max_and_min_split_the_gradient_among_ties() {
    // Reductions: evenly among the tied elements (torch.amax / amin).
    let text = "loss f {\n input x : [N]\n compute max(i: x[i]) + min(i: x[i])\n reduce sum\n}";
    assert_grad!(
        text,
        r#"{"x": [1, 3, 3, 1, 2]}"#,
        "x",
        [0.5, 0.5, 0.5, 0.5, 0.0]
    );
    // Two operands: half each on a tie (torch.maximum), none to the one that lost.
    let text = "loss f {\n input x : [N]\n input y : [N]\n compute max(x[i], y[i])\n reduce sum\n}";
    assert_grad!(
        text,
        r#"{"x": [1, 2, 3], "y": [1, 1, 4]}"#,
        "x",
        [0.5, 1.0, 0.0]
    );
    assert_grad!(
        text,
        r#"{"x": [1, 2, 3], "y": [1, 1, 4]}"#,
        "y",
        [0.5, 0.0, 1.0]
    );
}

#[test]
fn clamp_passes_the_gradient_where_the_value_is_within_its_bounds() {
    let text = "loss f {\n input x : [N]\n compute clamp(x[i], 0, 1)\n reduce sum\n}";
    assert_grad!(
        text,
        r#"{"x": [-1, 0, 0.5, 1, 2]}"#,
        "x",
        [0.0, 1.0, 1.0, 1.0, 0.0]
    );
}

#[test]
fn the_median_sends_its_gradient_to_the_middle_elements_of_a_stable_sort() {
    let text = "loss f {\n input x : [N]\n compute median(i: x[i])\n reduce sum\n}";
    // Even count: half to each of the two middle values (2 at index 3, 3 at index 2).
    assert_grad!(text, r#"{"x": [4, 1, 3, 2]}"#, "x", [0.0, 0.0, 0.5, 0.5]);
    // Odd count: all of it to the middle one.
    assert_grad!(text, r#"{"x": [3, 1, 2]}"#, "x", [0.0, 0.0, 1.0]);
    // Ties in index order: the sorted order is indices 0, 1, 2, 3; the middle ones 1, 2.
    assert_grad!(text, r#"{"x": [5, 5, 5, 5]}"#, "x", [0.0, 0.5, 0.5, 0.0]);
    // A NaN makes the median NaN, and its gradient NaN throughout.
    assert_grad!(
        text,
        r#"{"x": [1, "NaN", 2]}"#,
        "x",
        [f32::NAN, f32::NAN, f32::NAN]
    );
}

#[test]
fn an_untaken_select_branch_and_a_masked_element_contribute_exactly_zero() {
    // sqrt'(0) = inf in the branch not taken at x = 0: 0, not 0 · inf = NaN.
    let text = "loss f {\n input x : [N]\n compute select(x[i] > 0, sqrt(x[i]), 0)\n reduce sum\n}";
    assert_grad!(text, r#"{"x": [0, 4]}"#, "x", [0.0, 0.25]);
    // A dropped NaN element: 0, and out of the mean's count (2 elements left).
    let text = "loss f {\n input x : [N]\n compute x[i] * x[i]\n remove_nans drop where isnan(x[i])\n reduce mean\n}";
    assert_grad!(text, r#"{"x": [1, "NaN", 3]}"#, "x", [1.0, 0.0, 3.0]);
    // A zeroed one: 0, and still counted (3 elements).
    let text = "loss f {\n input x : [N]\n input m : [N]\n compute 3 * x[i] * x[i]\n remove_nans zero where m[i] > 0\n reduce mean\n}";
    assert_grad!(
        text,
        r#"{"x": [1, "NaN", 3], "m": [0, 1, 0]}"#,
        "x",
        [2.0, 0.0, 6.0]
    );
    // A mean of nothing is NaN, and its gradient all zeros.
    let (total, g) = grad(
        "loss f {\n input x : [N]\n compute x[i]\n remove_nans drop where x[i] > -1\n reduce mean\n}",
        r#"{"x": [1, 2]}"#,
        "x",
    );
    assert!(total.is_nan());
    assert!(same(&g, &[0.0, 0.0]));
}

/// Lightning Pose's quirk Q6, which lossc deliberately does not reproduce
/// (docs/conformance.md): a NaN prediction in a frame whose confidence is below the
/// threshold gives Lightning Pose NaN gradients in that frame and its neighbours (0 · NaN
/// through the zeroed norm); lossc gives exactly 0 there.
#[test]
fn a_nan_prediction_in_a_masked_frame_leaves_the_gradient_finite() {
    let text =
        std::fs::read_to_string(common::root().join("examples/lightning_pose/temporal.loss"))
            .unwrap();
    // Keypoint 0: (0, 0), (NaN, 0), (0, 0), (3, 4) over four frames; keypoint 1 stays at
    // the origin. Frame 1's keypoint 0 is below the threshold, so the differences (0, 1)
    // and (1, 2) of keypoint 0 are zeroed; (2, 3) has norm 5. Six differences in the mean,
    // weight 1/2: total 5/12, and d total / d kp[3, 0..2] = (1/2)(1/6)(3/5, 4/5).
    let data = r#"{
        "keypoints_pred": [[0, 0, 0, 0], ["NaN", 0, 0, 0], [0, 0, 0, 0], [3, 4, 0, 0]],
        "confidences": [[1, 1], [0.1, 1], [1, 1], [1, 1]],
        "prob_threshold": 0.5
    }"#;
    let (total, g) = grad(&text, data, "keypoints_pred");
    assert!((total - 5.0 / 12.0).abs() < 1e-6, "{total}");
    let (a, b) = (0.5 / 6.0 * 0.6, 0.5 / 6.0 * 0.8);
    let want = [
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -a, -b, 0.0, 0.0, a, b, 0.0, 0.0,
    ];
    for (k, (got, want)) in g.iter().zip(want).enumerate() {
        assert!((got - want).abs() < 1e-7, "[{k}]: {got} vs {want}: {g:?}");
    }
}

#[test]
fn a_zero_from_the_math_stays_an_ordinary_zero() {
    // relu' = 0 at a negative value is a zero of the math, not of a mask: PyTorch
    // multiplies it by the next derivative, 0 · inf = NaN, and so does lossc.
    let text = "loss f {\n input x : [N]\n compute relu(-1 - sqrt(x[i]))\n reduce sum\n}";
    assert_grad!(text, r#"{"x": [0, 4]}"#, "x", [f32::NAN, 0.0]);
}

#[test]
fn shifted_subscripts_gathers_and_strided_layouts_transpose() {
    // x[t + 1] - x[t]: the first element gets -1, the last +1, the middle ones both.
    let text = "loss f {\n input x : [T]\n compute x[t + 1] - 2 * x[t]\n reduce sum\n}";
    assert_grad!(text, r#"{"x": [1, 2, 3, 4]}"#, "x", [-2.0, -1.0, -1.0, 1.0]);
    // A gather through an index param: x[2] is read twice, x[1] never.
    let text = "loss f {\n input x : [N]\n param g : index[S]\n compute x[g[s]]\n reduce sum\n}";
    assert_grad!(
        text,
        r#"{"x": [1, 2, 3], "g": [2, 2, 0]}"#,
        "x",
        [1.0, 0.0, 2.0]
    );
    // (x, y) pairs in one row, as Lightning Pose lays keypoints out.
    let text = "loss f {\n input x : [B, 2 * K]\n compute norm(c in 0..2: x[b, 2 * k + c])\n reduce sum\n}";
    assert_grad!(text, r#"{"x": [[3, 4, 0, 2]]}"#, "x", [0.6, 0.8, 0.0, 1.0]);
}

#[test]
fn powers_and_quotients_follow_pytorch() {
    let text = "loss f {\n input x : [N]\n compute x[i] ^ 3 + 2 ^ x[i]\n reduce sum\n}";
    // 3x² + 2^x · ln 2.
    let (_, g) = grad(text, r#"{"x": [-1, 2]}"#, "x");
    let want = [3.0 + 0.5 * 2f32.ln(), 12.0 + 4.0 * 2f32.ln()];
    assert!(
        (g[0] - want[0]).abs() < 1e-6 && (g[1] - want[1]).abs() < 1e-5,
        "{g:?}"
    );
    // x ^ 0 has gradient 0 even at x = 0 (PyTorch masks the exponent 0).
    let text = "loss f {\n input x : [N]\n input y : [N]\n compute x[i] ^ y[i]\n reduce sum\n}";
    assert_grad!(text, r#"{"x": [0, 0], "y": [0, 2]}"#, "x", [0.0, 0.0]);
    // d(0^y)/dy is 0 for y >= 0.
    assert_grad!(text, r#"{"x": [0, 0], "y": [0, 2]}"#, "y", [0.0, 0.0]);
    let text = "loss f {\n input x : [N]\n input y : [N]\n compute x[i] / y[i]\n reduce sum\n}";
    assert_grad!(text, r#"{"x": [3], "y": [2]}"#, "y", [-0.75]);
}

#[test]
fn the_factory_gradient_is_the_annealed_weighted_sum_of_the_losses() {
    let text = "loss a {\n input x : [N]\n compute x[i] * x[i]\n reduce sum\n weight 0.5\n}\n\
                loss b {\n input x : [N]\n compute 3 * x[i]\n reduce sum\n weight 2\n}";
    let program = check(text);
    let data = parse_json_data(r#"{"x": [1, -2]}"#).unwrap();
    let terms = [
        FactoryTerm::plain("a"),
        FactoryTerm {
            annealed: true,
            ..FactoryTerm::plain("b")
        },
    ];
    let opts = RunOptions {
        backend: Backend::Cpu,
        anneal: 0.25,
        wrt: Wrt::EveryInput,
        ..Default::default()
    };
    // 0.5 · 2x + 0.25 · 2 · 3, on both back ends (the GPU scales each loss's term in
    // its backward kernel).
    for backend in [Backend::Cpu, Backend::Gpu] {
        let opts = RunOptions {
            backend,
            ..opts.clone()
        };
        let r = run(&program, "ab", &terms, &data, &vec![], &opts).unwrap();
        assert_eq!(r.grads[0].0, "x");
        assert!(
            same(&r.grads[0].1.data, &[2.5, -0.5]),
            "{backend:?}: {:?}",
            r.grads
        );
    }
}

/// A training loop's use of the fused plan: inputs and gradients stay in GPU buffers,
/// and the anneal factor changes between steps without a new plan.
#[test]
fn the_fused_plan_writes_gradient_terms_into_a_gpu_buffer_and_takes_a_new_anneal_factor() {
    use lossc::gpu::DispatchOptions;
    use lossc::runtime::grad::FusedGradientPlan;
    use wgpu::util::DeviceExt;
    let text = "loss a {\n input x : [N]\n compute x[i] * x[i]\n reduce sum\n weight 0.5\n}\n\
                loss b {\n input x : [N]\n input y : [N]\n compute 3 * x[i] + y[i] * y[i]\n reduce mean\n weight 2\n}";
    let program = check(text);
    let terms = [
        FactoryTerm::plain("a"),
        FactoryTerm {
            annealed: true,
            ..FactoryTerm::plain("b")
        },
    ];
    let gpu = lossc::gpu::gpu().unwrap();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let storage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let input = |name, v: &[f32]| {
        gpu.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: &bytes(v),
                usage: storage,
            })
    };
    let (x, y) = (input("x", &[1.0, -2.0]), input("y", &[4.0, 0.5]));
    // The data says the shapes only; the elements are in the buffers.
    let data = parse_json_data(r#"{"x": [0, 0], "y": [0, 0]}"#).unwrap();
    let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
    let names = resolve(&prepared, &Wrt::EveryInput).unwrap();
    let kernel = lossc::codegen::compile(&program, "ab", &terms).unwrap();
    let inputs = [("x", &x), ("y", &y)];
    let options = DispatchOptions {
        device_inputs: &inputs,
        ..Default::default()
    };
    let mut plan = FusedGradientPlan::new(gpu, &kernel, &prepared, &names, 0.25, &options).unwrap();
    let terms_of: Vec<(String, usize, usize, usize)> = plan
        .gradient_terms()
        .into_iter()
        .map(|t| (t.input, t.term, t.offset, t.len))
        .collect();
    assert_eq!(
        terms_of,
        [
            ("x".to_string(), 0, 0, 2),
            ("x".to_string(), 1, 2, 2),
            ("y".to_string(), 1, 4, 2)
        ]
    );
    assert_eq!(plan.gradient_len(), 6);
    let grads = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("grads"),
        size: 4 * 6,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let read = |buf: &wgpu::Buffer| -> Vec<f32> {
        let slice = buf.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        let v = slice
            .get_mapped_range()
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        buf.unmap();
        v
    };
    // By hand: a = Σ x² (weight 0.5); b = mean(3x + y²) (weight 2, annealed).
    // d total/dx = 0.5 · 2x + anneal · 2 · 3/2; d total/dy = anneal · 2 · 2y/2.
    for anneal in [0.25f32, 1.0] {
        plan.set_anneal(gpu, anneal);
        let run = plan.run_into(gpu, &grads, 0).unwrap();
        assert!(run.grads.is_empty());
        assert_eq!(run.dispatches, 2);
        // a = 5, b = (3 - 6 + 16 + 0.25) / 2 = 6.625.
        assert_eq!(run.total, 0.5 * 5.0 + anneal * 2.0 * 6.625);
        let g = read(&grads);
        assert_eq!(&g[0..2], &[1.0, -2.0], "anneal {anneal}");
        assert_eq!(&g[2..4], &[anneal * 3.0, anneal * 3.0], "anneal {anneal}");
        assert_eq!(&g[4..6], &[anneal * 8.0, anneal], "anneal {anneal}");
        // The host path of the same plan sums the terms of each input.
        let host = plan.run(gpu).unwrap();
        assert_eq!(
            host.grads[0].1.data,
            [1.0 + anneal * 3.0, -2.0 + anneal * 3.0]
        );
        assert_eq!(host.grads[1].1.data, [anneal * 8.0, anneal]);
    }
    // A framework hands a new buffer every step, the input at an offset in it; the
    // gradients go to an offset of a larger buffer.
    let x2 = input("x2", &[7.0, 7.0, 2.0, 3.0]);
    plan.set_device_input("x", &x2, 8).unwrap();
    let wide = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wide"),
        size: 4 * 8,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    plan.run_into(gpu, &wide, 4).unwrap();
    assert_eq!(&read(&wide)[1..3], &[2.0, 3.0]); // the x term of Σ x² / 2 is x
    let e = plan
        .set_device_input("x", &x2, 12)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("holds 4 bytes") && e.contains("needs 8"), "{e}");
    let e = plan
        .set_device_input("z", &x2, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`z` was not planned"), "{e}");
    // A buffer too small, or one the copy cannot write, is refused with a message.
    let small = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("small"),
        size: 4 * 5,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let e = plan.run_into(gpu, &small, 0).err().unwrap().to_string();
    assert!(e.contains("holds 20 bytes; they need 24"), "{e}");
    let unusable = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("unusable"),
        size: 4 * 6,
        usage: wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let e = plan.run_into(gpu, &unusable, 0).err().unwrap().to_string();
    assert!(e.contains("needs the usage"), "{e}");
}

#[test]
fn every_example_losss_adjoint_ir_verifies() {
    let sources: Vec<Source> = example_files()
        .iter()
        .map(|p| Source::new(p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors());
    for loss in &checked.program.losses {
        let wrt: Vec<InputId> = (0..loss.inputs.len()).map(InputId::new).collect();
        for masks_on in [true, false] {
            let active: Vec<bool> = loss.masks.iter().map(|_| masks_on).collect();
            let adj = adjoint(loss, &wrt, TiSlice::from_ref(&active)).unwrap();
            if let Err(e) = verify(&adj.ir, Stage::Ranged) {
                panic!("loss `{}`: {e:?}", loss.name);
            }
            assert_eq!(adj.grads.len(), wrt.len());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Finite differences.

/// An f64 evaluator of a bound loss's IR, independent of `lossc::eval` and of the
/// adjoint: reductions are computed where they are used, by direct recursion.
struct F64<'a> {
    b: &'a Bound<'a>,
    ir: &'a LossIr,
    inputs: HashMap<InputId, Vec<f64>>,
}

impl F64<'_> {
    fn index(&self, e: &IndexExpr, env: &HashMap<IndexId, i64>) -> i64 {
        let dims: Vec<Option<i64>> = self.b.dims.iter().copied().map(Some).collect();
        let mut v = e.offset.eval(&dims).unwrap();
        for (c, t) in &e.terms {
            v += c.eval(&dims).unwrap()
                * match t {
                    IndexTerm::Var(x) => env[x],
                    IndexTerm::Gather(t, idx) => self.read(*t, idx, env) as i64,
                };
        }
        v
    }

    fn read(&self, t: Tensor, idx: &[IndexExpr], env: &HashMap<IndexId, i64>) -> f64 {
        let (shape, data): (&[usize], Vec<f64>) = match t {
            Tensor::Input(i) => (
                &self.b.inputs[i].as_ref().unwrap().shape,
                self.inputs[&i].clone(),
            ),
            Tensor::Param(p) => (
                &self.b.params[p].shape,
                self.b.params[p]
                    .data
                    .iter()
                    .map(|x| f64::from(*x))
                    .collect(),
            ),
        };
        let mut at = 0usize;
        for (e, n) in idx.iter().zip(shape) {
            let i = self.index(e, env);
            assert!(i >= 0 && (i as usize) < *n, "read out of range");
            at = at * n + i as usize;
        }
        data[at]
    }

    fn points(&self, vars: &[IndexId]) -> Vec<Vec<i64>> {
        let mut out = vec![vec![]];
        for v in vars {
            let (lo, hi) = self.b.ranges[*v];
            out = out
                .into_iter()
                .flat_map(|p| {
                    (lo..=hi).map(move |x| {
                        let mut q = p.clone();
                        q.push(x);
                        q
                    })
                })
                .collect();
        }
        out
    }

    fn eval(&self, n: petgraph::stable_graph::NodeIndex, env: &mut HashMap<IndexId, i64>) -> f64 {
        let args = operands(&self.ir.graph, n);
        let truth = |b: bool| if b { 1.0 } else { 0.0 };
        match &self.ir.graph[n].op {
            Op::Const(bits) => f64::from(f32::from_bits(*bits)),
            Op::BoolConst(b) => truth(*b),
            Op::Read(t, idx) => self.read(*t, idx, env),
            Op::IndexValue(e) => self.index(e, env) as f64,
            Op::EnumIs(p, v) => truth(self.b.enums[*p].as_deref() == Some(v.as_str())),
            Op::Unary(f) => {
                let x = self.eval(args[0], env);
                match f {
                    UnaryFn::Neg => -x,
                    UnaryFn::Not => truth(x == 0.0),
                    UnaryFn::Exp => x.exp(),
                    UnaryFn::Log => x.ln(),
                    UnaryFn::Sqrt => x.sqrt(),
                    UnaryFn::Abs => x.abs(),
                    UnaryFn::Relu => x.max(0.0),
                    UnaryFn::IsNan => truth(x.is_nan()),
                    UnaryFn::Sign => x.signum() * truth(x != 0.0),
                    f => lossc::ir::scalar::transcendental(*f, x),
                }
            }
            Op::Binary(f) => {
                let a = self.eval(args[0], env);
                let b = self.eval(args[1], env);
                match f {
                    BinaryFn::Add => a + b,
                    BinaryFn::Sub => a - b,
                    BinaryFn::Mul => a * b,
                    BinaryFn::Div => a / b,
                    BinaryFn::Pow => a.powf(b),
                    BinaryFn::Min => a.min(b),
                    BinaryFn::Max => a.max(b),
                    BinaryFn::Eq => truth(a == b),
                    BinaryFn::Ne => truth(a != b),
                    BinaryFn::Lt => truth(a < b),
                    BinaryFn::Le => truth(a <= b),
                    BinaryFn::Gt => truth(a > b),
                    BinaryFn::Ge => truth(a >= b),
                    BinaryFn::And => truth(a != 0.0 && b != 0.0),
                    BinaryFn::Or => truth(a != 0.0 || b != 0.0),
                    BinaryFn::Atan2 => a.atan2(b),
                    BinaryFn::Xlogy => lossc::ir::scalar::xlogy_f64(a, b),
                }
            }
            Op::Select => {
                if self.eval(args[0], env) != 0.0 {
                    self.eval(args[1], env)
                } else {
                    self.eval(args[2], env)
                }
            }
            Op::Clamp => {
                let x = self.eval(args[0], env);
                x.max(self.eval(args[1], env)).min(self.eval(args[2], env))
            }
            Op::Reduce(f, bound) => {
                // A reduction may sit inside another's body over the same variables
                // (`sum_top`'s lowering shares them): they are restored after the loop.
                let saved: Vec<Option<i64>> = bound.iter().map(|v| env.get(v).copied()).collect();
                let mut items = Vec::new();
                for p in self.points(bound) {
                    for (v, x) in bound.iter().zip(&p) {
                        env.insert(*v, *x);
                    }
                    items.push(self.eval(args[0], env));
                }
                for (v, old) in bound.iter().zip(saved) {
                    match old {
                        Some(x) => env.insert(*v, x),
                        None => env.remove(v),
                    };
                }
                let n = items.len() as f64;
                match f {
                    ReduceFn::Sum => items.iter().sum(),
                    ReduceFn::Mean => items.iter().sum::<f64>() / n,
                    ReduceFn::Norm => items.iter().map(|x| x * x).sum::<f64>().sqrt(),
                    ReduceFn::Max => items.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    ReduceFn::Min => items.iter().copied().fold(f64::INFINITY, f64::min),
                    ReduceFn::All => truth(items.iter().all(|x| *x != 0.0)),
                    ReduceFn::Any => truth(items.iter().any(|x| *x != 0.0)),
                    ReduceFn::Prod => items.iter().product(),
                    ReduceFn::Median => {
                        items.sort_by(f64::total_cmp);
                        let k = items.len();
                        (items[(k - 1) / 2] + items[k / 2]) / 2.0
                    }
                    // The k-th largest, by a sort (the values here are finite).
                    ReduceFn::NthLargest => {
                        items.sort_by(|a, b| b.total_cmp(a));
                        let count = self.eval(args[1], env);
                        let k = (count.min(n).max(1.0) as usize).max(1);
                        items.get(k - 1).copied().unwrap_or(f64::NEG_INFINITY)
                    }
                }
            }
            Op::At(_) => unreachable!("a forward IR has no `at`"),
        }
    }

    /// The loss times its weight.
    fn total(&self) -> f64 {
        let ir = self.ir;
        let mut env = HashMap::new();
        let mut values = Vec::new();
        'points: for p in self.points(&ir.domain) {
            for (v, x) in ir.domain.iter().zip(&p) {
                env.insert(*v, *x);
            }
            let mut zero = false;
            for (m, on) in ir.masks.iter().zip(&self.b.active_masks) {
                if *on && self.eval(m.cond, &mut env) != 0.0 {
                    match m.mode {
                        MaskMode::Drop => continue 'points,
                        MaskMode::Zero => zero = true,
                    }
                }
            }
            let mut v = if zero {
                0.0
            } else {
                self.eval(ir.compute, &mut env)
            };
            if let Some(eps) = ir.rectify {
                v = (v - self.eval(eps, &mut env)).max(0.0);
            }
            values.push(v);
        }
        let loss = match ir.reduce {
            ReduceMode::Sum => values.iter().sum(),
            ReduceMode::Mean => values.iter().sum::<f64>() / values.len() as f64,
        };
        loss * self.eval(ir.weight, &mut env)
    }
}

/// The reductions the random programs draw from.
const REDUCTIONS: &[&str] = &[
    "sum",
    "mean",
    "norm",
    "max",
    "min",
    "median",
    "prod",
    "logsumexp",
    "sum_top",
    "mean_top",
];

/// The reduction `kind` of [`REDUCTIONS`] over `j` of `body` (the top-k ones with a count).
fn reduction_over_j(kind: &str, body: &str) -> String {
    match kind {
        "sum_top" => format!("sum_top(2, j: {body})"),
        "mean_top" => format!("mean_top(M - 1, j: {body})"),
        _ => format!("{kind}(j: {body})"),
    }
}

/// A random expression over row `n` (and column `j` when `col`), always positive.
fn positive(r: &mut Rng, depth: u32, col: bool) -> String {
    let leaf = |r: &mut Rng| -> String {
        let mut xs = vec!["y[n]", "y[n + 1]", "w[n]"];
        if col {
            xs.extend([
                "x[n, j]",
                "x[n + 1, j]",
                "v[j]",
                "x[g[n], j]",
                "xf[n * M + j]",
                "xf[(n + 1) * M + j]",
            ]);
        }
        r.pick(&xs).to_string()
    };
    if depth == 0 {
        return leaf(r);
    }
    let a = positive(r, depth - 1, col);
    let b = positive(r, depth - 1, col);
    // A reduction over `j` of a column expression (which reads `v[j]`, so that `j` has a
    // range); column expressions hold no reduction, so `j` is never bound twice.
    let red = |r: &mut Rng| {
        let body = positive(r, depth - 1, true);
        let kind = r.pick(REDUCTIONS);
        reduction_over_j(kind, &format!("{body} * v[j]"))
    };
    match r.below(if col { 14 } else { 16 }) {
        0 => format!("({a} + {b})"),
        1 => format!("({a} * {b})"),
        2 => format!("({a} / (1 + {b}))"),
        3 => format!("exp(0.25 * {a})"),
        4 => format!("sqrt({a})"),
        5 => format!("log(1 + {a})"),
        6 => format!("max({a}, {b})"),
        7 => format!("min({a}, {b})"),
        8 => format!("{a} ^ 1.5"),
        9 => format!("select({a} > 1.1, {a}, 2 * {b})"),
        10 => format!("clamp({a}, 0.6, 1.4)"),
        11 => format!("(abs({a} - 1) + relu({b} - 1) + {a} - {a} * 0.5)"),
        // The special functions, on positive values of moderate size: each stays
        // positive, and away from a pole.
        12 => {
            let f = r.pick(&[
                "tanh(A)",
                "atan(A)",
                "erf(A)",
                "sigmoid(A)",
                "softplus(A)",
                "log1p(A)",
                "1.5 + sin(A)",
                "1.5 + cos(A)",
                "expm1(A)",
                "1 + logsigmoid(A)",
                "1 + lgamma(1 + A)",
                "2 + digamma(1 + A)",
            ]);
            f.replace('A', &a)
        }
        13 => {
            let f = r.pick(&["atan2(A, B)", "xlogy(A, 1 + B)"]);
            f.replace('A', &a).replace('B', &b)
        }
        14 => format!("({a} * {})", red(r)),
        _ => red(r),
    }
}

/// A random program over `x : [N, M]`, `xf : [N * M]` (read as `[N, M]`), `y : [N]`,
/// `w : [N]`, `v : [M]`, with the gather `g : index[N]`.
fn random_program(r: &mut Rng) -> String {
    let body = positive(r, 3, false);
    let compute = if r.below(2) == 0 {
        body
    } else {
        let kind = r.pick(REDUCTIONS);
        let inner = positive(r, 2, true);
        format!(
            "{body} * {}",
            reduction_over_j(kind, &format!("{inner} + v[j]"))
        )
    };
    let mask = match r.below(3) {
        0 => "    remove_nans drop where w[n] > 1.3\n",
        1 => "    remove_nans zero where y[n] < 0.72\n",
        _ => "",
    };
    let rectify = if r.below(3) == 0 {
        "    rectify 0.1 * w[n]\n"
    } else {
        ""
    };
    let reduce = r.pick(&["mean", "sum"]);
    format!(
        "loss f {{\n    input x : [N, M]\n    input xf : [N * M]\n    input y : [N]\n    input w : [N]\n    input v : [M]\n    param g : index[N]\n    compute {compute}\n{mask}{rectify}    reduce {reduce}\n    weight 0.75\n}}\n"
    )
}

/// Distinct values in [0.5, 1.5): no two within a finite difference's step of each other,
/// so that no max, min, median or comparison changes its choice under the step.
fn distinct(r: &mut Rng, n: usize) -> Vec<f64> {
    let mut slots: Vec<usize> = (0..16).collect();
    (0..n)
        .map(|_| {
            let k = slots.remove(r.below(slots.len()));
            0.5 + k as f64 / 16.0 + (r.below(1000) as f64) / 64_000.0
        })
        .collect()
}

/// A random program ([`random_program`]) and data for it, with N = 4 and M = 3.
fn random_case(r: &mut Rng) -> (String, Program, lossc::runtime::data::Data) {
    let (n, m) = (4usize, 3usize);
    let text = random_program(r);
    let program = check(&text);
    let data = serde_json::json!({
        "x": {"shape": [n, m], "data": distinct(r, n * m)},
        "xf": distinct(r, n * m),
        "y": distinct(r, n),
        "w": distinct(r, n),
        "v": distinct(r, m),
        "g": [2, 0, 3, 2],
    });
    (text, program, parse_json_data(&data.to_string()).unwrap())
}

#[test]
fn gradients_of_random_programs_match_central_finite_differences_in_f64() {
    let mut r = Rng(0x5eed_9a0d_1ff5_u64);
    let mut checked_programs = 0;
    for case in 0..60 {
        let (text, program, data) = random_case(&mut r);
        let terms = [FactoryTerm::plain("f")];
        let opts = RunOptions {
            backend: Backend::Cpu,
            wrt: Wrt::EveryInput,
            ..Default::default()
        };
        let result = run(&program, "f", &terms, &data, &vec![], &opts).unwrap();
        let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
        let b = &prepared[0].bound;
        let ir = b.ir;
        let mut f = F64 {
            b,
            ir,
            inputs: ir
                .inputs
                .iter_enumerated()
                .map(|(i, _)| {
                    let d = b.inputs[i].as_ref().unwrap();
                    (i, d.data.iter().map(|v| f64::from(*v)).collect())
                })
                .collect(),
        };
        let total = f.total();
        if !total.is_finite() {
            continue;
        }
        assert!(
            (total - f64::from(result.total)).abs() <= 1e-4 * total.abs().max(1e-3),
            "case {case}: f64 total {total} vs {}\n{text}",
            result.total
        );
        for (name, g) in &result.grads {
            let i = InputId::new(ir.inputs.iter().position(|x| &x.name == name).unwrap());
            let mut fd = Vec::new();
            for k in 0..g.data.len() {
                let x0 = f.inputs[&i][k];
                let h = 1e-4;
                f.inputs.get_mut(&i).unwrap()[k] = x0 + h;
                let up = f.total();
                f.inputs.get_mut(&i).unwrap()[k] = x0 - h;
                let down = f.total();
                f.inputs.get_mut(&i).unwrap()[k] = x0;
                fd.push((up - down) / (2.0 * h));
            }
            let scale = fd.iter().fold(1e-3f64, |s, v| s.max(v.abs()));
            for (k, (got, want)) in g.data.iter().zip(&fd).enumerate() {
                assert!(
                    (f64::from(*got) - want).abs() <= 2e-3 * scale,
                    "case {case}: d/d{name}[{k}] = {got}, finite differences {want}\n{text}"
                );
            }
        }
        // The adjoint IR of each program verifies too.
        let wrt: Vec<InputId> = (0..ir.inputs.len()).map(InputId::new).collect();
        let adj = adjoint(ir, &wrt, &b.active_masks).unwrap();
        verify(&adj.ir, Stage::Ranged).unwrap();
        let _ = rebind(b, &adj.ir).unwrap();
        checked_programs += 1;
    }
    assert!(
        checked_programs >= 50,
        "only {checked_programs} programs checked"
    );
}

/// `lossc run` of the README's demo with `extra` arguments.
fn demo(extra: &[&str]) -> std::process::Output {
    let mut args = common::demo_run_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    common::lossc(&argv)
}

#[test]
fn the_command_line_prints_gradients_on_both_back_ends_and_refuses_unknown_inputs() {
    let out = demo(&["--wrt", "keypoints_pred", "--json", "--backend", "cpu"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = &v["grads"]["keypoints_pred"];
    assert_eq!(g["shape"], serde_json::json!([6, 20]));
    assert_eq!(g["data"].as_array().unwrap().len(), 120);
    assert_eq!(v["grads"].as_object().unwrap().len(), 1);
    // A near miss of an input's name.
    let out = demo(&["--wrt", "keypoint_pred"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.starts_with("error: --wrt: `keypoint_pred` is not an input of")
            && err.contains("did you mean `keypoints_pred`?"),
        "{err}"
    );
    // On the GPU: the forward kernel and the backward kernel, two dispatches.
    let out = demo(&["--wrt", "keypoints_pred", "--json", "--backend", "gpu"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(w["backend"].as_str().unwrap().starts_with("gpu: "), "{w}");
    assert_eq!(w["dispatches"], serde_json::json!(2));
    let (a, b) = (
        &v["grads"]["keypoints_pred"]["data"],
        &w["grads"]["keypoints_pred"]["data"],
    );
    for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((x - y).abs() <= 1e-6, "cpu {x}, gpu {y}");
    }
}

/// The GPU's gradients (the forward and the backward kernel, two dispatches) against the
/// CPU evaluator's, on random programs: the same up to f32 rounding, NaN where NaN. The
/// first few also run unfused (the benchmark's baseline, one dispatch per adjoint node),
/// which must agree too.
#[test]
fn gpu_gradients_of_random_programs_match_the_cpu() {
    let mut r = Rng(0x00dd_ba11_5eed_u64);
    // `LOSSC_GRAD_PROGRAMS=N` runs N programs instead (a long run, by hand).
    let programs: usize = std::env::var("LOSSC_GRAD_PROGRAMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    for case in 0..programs {
        let (text, program, data) = random_case(&mut r);
        let terms = [FactoryTerm::plain("f")];
        let on = |backend| {
            let opts = RunOptions {
                backend,
                wrt: Wrt::EveryInput,
                ..Default::default()
            };
            run(&program, "f", &terms, &data, &vec![], &opts).unwrap()
        };
        let (cpu, gpu) = (on(Backend::Cpu), on(Backend::Gpu));
        assert!(gpu.backend.starts_with("gpu") && (1..=2).contains(&gpu.dispatches));
        let mut runs = vec![("fused", gpu.grads)];
        if case < 4 {
            let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
            let names = resolve(&prepared, &Wrt::EveryInput).unwrap();
            let device = lossc::gpu::gpu().unwrap();
            let unfused = gradients_unfused(device, &prepared, &names, 1.0).unwrap();
            assert!(unfused.dispatches > 2);
            runs.push(("unfused", unfused.grads));
        }
        for (how, grads) in runs {
            assert_eq!(grads.len(), cpu.grads.len());
            for ((name, c), (_, g)) in cpu.grads.iter().zip(&grads) {
                let scale = c.data.iter().fold(1e-6f32, |s, v| s.max(v.abs()));
                for (k, (a, b)) in c.data.iter().zip(&g.data).enumerate() {
                    assert!(
                        (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 * scale,
                        "case {case}, {how}: d/d{name}[{k}]: cpu {a}, gpu {b}\n{text}"
                    );
                }
            }
        }
    }
}

/// The same run gives the same gradient bits, run after run, on both back ends.
#[test]
fn gradients_are_bit_identical_across_runs() {
    let text =
        std::fs::read_to_string(common::root().join("examples/lightning_pose/pca_singleview.loss"))
            .unwrap()
            + &std::fs::read_to_string(
                common::root().join("examples/lightning_pose/temporal.loss"),
            )
            .unwrap();
    let program = check(&text);
    let demo = std::fs::read_to_string(common::root().join("examples/demo.json")).unwrap();
    let data = parse_json_data(&demo).unwrap();
    let terms = [
        FactoryTerm::plain("pca_singleview"),
        FactoryTerm::plain("temporal"),
    ];
    for (backend, runs) in [(Backend::Cpu, 20), (Backend::Gpu, 20)] {
        let opts = RunOptions {
            backend,
            wrt: Wrt::Inputs(vec!["keypoints_pred".into()]),
            ..Default::default()
        };
        let bits = || -> Vec<u32> {
            let r = run(&program, "t", &terms, &data, &vec![], &opts).unwrap();
            r.grads[0].1.data.iter().map(|x| x.to_bits()).collect()
        };
        let first = bits();
        assert!(first.iter().any(|b| *b != 0));
        for _ in 1..runs {
            assert_eq!(bits(), first, "{backend:?}");
        }
    }
}

/// `lossc graph --wrt` prints the adjoint IR: for the temporal loss, the read
/// `keypoints_pred[t + 1, 2 * k + c]` inverted (`t` and `c` set from the gradient's
/// indices, `k` summed over).
#[test]
fn the_adjoint_ir_prints_as_a_graph() {
    let out = common::lossc(&[
        "graph",
        "examples/lightning_pose/temporal.loss",
        "--wrt",
        "keypoints_pred",
    ]);
    assert!(out.status.success());
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph lossc {"));
    assert!(
        dot.contains("at t := keypoints_pred#0 - 1, c := keypoints_pred#1 - 2*k"),
        "{dot}"
    );
    let out = common::lossc(&[
        "graph",
        "examples/lightning_pose/temporal.loss",
        "--wrt",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// A weight that reads a requested input is refused with its place (its gradient would
/// need the loss's value); the same loss differentiates with respect to another input.
#[test]
fn a_weight_that_reads_the_input_is_refused_with_its_place() {
    let text = "loss f {\n input x : [N]\n input y : [N]\n compute x[i] * y[i]\n reduce sum\n weight mean(i: x[i])\n}";
    let program = check(text);
    let data = parse_json_data(r#"{"x": [1, 2], "y": [3, 4]}"#).unwrap();
    let on = |input: &str| {
        let opts = RunOptions {
            backend: Backend::Cpu,
            wrt: Wrt::Inputs(vec![input.to_string()]),
            ..Default::default()
        };
        run(
            &program,
            "f",
            &[FactoryTerm::plain("f")],
            &data,
            &vec![],
            &opts,
        )
    };
    let err = on("x").unwrap_err().to_string();
    assert_eq!(
        err,
        "loss `f`: its weight reads input `x`, and lossc does not differentiate through a weight yet (at test.loss:6:9)"
    );
    // d(w · Σ x y)/dy = w · x with w = mean(x) = 1.5.
    assert!(same(&on("y").unwrap().grads[0].1.data, &[1.5, 3.0]));
}

/// `lossc explain --wrt` says how each read of the input is transposed.
#[test]
fn explain_says_how_each_gradient_is_gathered() {
    let out = common::lossc(&[
        "explain",
        "examples/lightning_pose/temporal.loss",
        "--wrt",
        "keypoints_pred",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "  read keypoints_pred[t + 1, 2*k + c] at examples/lightning_pose/temporal.loss:12:33: its adjoint at t := keypoints_pred#0 - 1, c := keypoints_pred#1 - 2*k, summed over k in 0..=K - 1\n"
        ),
        "{text}"
    );
}

/// The losses a backward kernel runs ([`lossc::ad::kernel`]: every `at` replaced by its
/// operand rebuilt at the set indices, the mean's count read from a param) give the
/// adjoint's gradients bit for bit on the CPU evaluator: the rewrite changes where values
/// are read, not what is computed. A read the rewrite moves outside its axis gives NaN
/// here, so a guard that failed to discard one would show. On random programs (shifted reads `y[n + 1]`, gathers
/// `x[g[n], j]`, masks, rectify) and on every example loss with the demo data.
#[test]
fn the_backward_kernels_losses_evaluate_to_the_adjoints_gradients() {
    use lossc::ad::kernel::gradient_losses;
    use lossc::runtime::grad::backward_bound;
    let mut cases: Vec<(String, Program, lossc::runtime::data::Data)> = Vec::new();
    let mut r = Rng(0x0bac_4a2d_u64);
    for _ in 0..60 {
        cases.push(random_case(&mut r));
    }
    let demo = std::fs::read_to_string(common::root().join("examples/demo.json")).unwrap();
    for f in example_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        cases.push((text.clone(), check(&text), parse_json_data(&demo).unwrap()));
    }
    let mut compared = 0;
    for (text, program, data) in &cases {
        let terms = [FactoryTerm::plain(program.losses[0].name.clone())];
        let Ok((prepared, _)) = prepare(program, &terms, data, &vec![]) else {
            continue;
        };
        let b = &prepared[0].bound;
        let wrt: Vec<InputId> = b
            .inputs
            .iter_enumerated()
            .filter(|(_, d)| d.is_some())
            .map(|(i, _)| i)
            .collect();
        let Ok(adj) = adjoint(b.ir, &wrt, &b.active_masks) else {
            continue;
        };
        let adj_bound = rebind(b, &adj.ir).unwrap();
        let roots: Vec<_> = adj.grads.iter().map(|g| (g.axes.clone(), g.node)).collect();
        let want = lossc::eval::gradients(&adj_bound, &roots).unwrap();
        let count = match adj.count {
            Some(n) => lossc::eval::gradients(&adj_bound, &[(vec![], Some(n))]).unwrap()[0][0],
            None => 0.0,
        };
        for gl in gradient_losses(&adj).unwrap() {
            verify(&gl.ir, Stage::Ranged).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(
                !gl.ir
                    .graph
                    .node_weights()
                    .any(|n| matches!(n.op, Op::At(_))),
                "an `at` is left\n{text}"
            );
            let bound = backward_bound(b, &gl.ir, count, true).unwrap();
            let got = lossc::eval::backward_gradients(
                &bound,
                &[(gl.ir.domain.clone(), Some(gl.ir.compute))],
            )
            .unwrap();
            let want: Vec<u32> = want[gl.grad].iter().map(|x| x.to_bits()).collect();
            let got: Vec<u32> = got[0].iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, want, "d/d{}\n{text}", b.ir.inputs[gl.input].name);
            compared += 1;
        }
    }
    assert!(compared >= 100, "only {compared} gradients compared");
}

/// `lossc compile --grad` writes the backward kernel beside the forward one, and the
/// manifest says how to bind and order it; `--wrt` restricts it, an unknown name is an
/// error with a suggestion; `lossc explain --grad` prints the backward schedules (one
/// for `temporal`: its `confidences` only decide which elements count).
#[test]
fn compile_and_explain_write_the_backward_kernel() {
    let dir = std::env::temp_dir().join(format!("lossc-compile-grad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.display().to_string();
    let out = common::lossc(&[
        "compile",
        "examples/lightning_pose/temporal.loss",
        "examples/lightning_pose/pca_singleview.loss",
        "--losses",
        "temporal,pca_singleview",
        "-o",
        &d,
        "--wrt",
        "keypoints_pred",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = "temporal+pca_singleview";
    let wgsl = std::fs::read_to_string(dir.join(format!("{name}.backward.wgsl"))).unwrap();
    assert!(wgsl.contains("lc_grad[") && wgsl.contains("lc_saved["));
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.manifest.json"))).unwrap(),
    )
    .unwrap();
    let losses = m["backward"]["losses"].as_array().unwrap();
    let described: Vec<(String, u64, String)> = losses
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["term"].as_u64().unwrap(),
                l["input"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (
                "temporal.d_keypoints_pred".to_string(),
                0,
                "keypoints_pred".to_string()
            ),
            (
                "pca_singleview.d_keypoints_pred".to_string(),
                1,
                "keypoints_pred".to_string()
            ),
        ]
    );
    // Both are means: each reads its forward loss's count at 3n + 1 + term (n = 2).
    assert_eq!(losses[0]["reads_count_at"], serde_json::json!(7));
    assert_eq!(losses[1]["reads_count_at"], serde_json::json!(8));
    // And its weight at 3 · term + 1, to store its term of the total's gradient.
    assert_eq!(losses[0]["reads_weight_at"], serde_json::json!(1));
    assert_eq!(losses[1]["reads_weight_at"], serde_json::json!(4));
    let names: Vec<&str> = m["backward"]["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"lc_grad") && names.contains(&"lc_saved"));
    let _ = std::fs::remove_dir_all(&dir);

    let out = common::lossc(&[
        "compile",
        "examples/lightning_pose/temporal.loss",
        "-o",
        &d,
        "--wrt",
        "keypoint_pred",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `keypoints_pred`?"));
    let _ = std::fs::remove_dir_all(&dir);

    let out = common::lossc(&["explain", "examples/lightning_pose/temporal.loss", "--grad"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backward kernel temporal.backward: 1 gradient(s)")
            && text.contains("loss temporal.d_keypoints_pred"),
        "{text}"
    );
}

/// The unfused baseline shares a reduction over more than 4096 values among a workgroup
/// (one thread looping over 90 000 values would run past llvmpipe's loop budget, which ends
/// the loop silently), and
/// agrees with the CPU on values and gradients; a median over as many values, whose ranks
/// take every pair, is refused on llvmpipe with the loop budget error instead.
#[test]
fn the_unfused_baseline_shares_long_reductions_and_refuses_what_it_cannot_run() {
    use lossc::gpu::unfused::UnfusedPlan;
    use lossc::runtime::grad::UnfusedGradientPlan;
    let text = "loss f {\n    input x : [N, M]\n    input y : [B]\n    \
                compute (y[b] - mean(n, m: x[n, m])) * max(n, m: x[n, m]) + norm(n, m: x[n, m]) - min(n, m: x[n, m]) + sum(n, m: x[n, m] * y[b])\n    \
                remove_nans drop where all(n, m: x[n, m] > 2)\n    reduce mean\n}\n";
    let program = check(text);
    let mut r = Rng(0x1009_u64);
    let data = serde_json::json!({
        "x": {"shape": [300, 300], "data": (0..90_000).map(|_| r.below(1000) as f64 / 1000.0).collect::<Vec<_>>()},
        "y": [0.25, 0.5, 1.5],
    });
    let data = parse_json_data(&data.to_string()).unwrap();
    let terms = [FactoryTerm::plain("f")];
    let opts = RunOptions {
        backend: Backend::Cpu,
        wrt: Wrt::EveryInput,
        ..Default::default()
    };
    let cpu = run(&program, "f", &terms, &data, &vec![], &opts).unwrap();
    let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
    let dev = lossc::gpu::gpu().unwrap();
    let bound: Vec<&Bound> = prepared.iter().map(|p| &p.bound).collect();
    let out = UnfusedPlan::new(dev, &bound, &[1.0])
        .unwrap()
        .run(dev)
        .unwrap();
    assert!(
        (out[3] - cpu.total).abs() <= 1e-5 * cpu.total.abs(),
        "{} vs {}",
        out[3],
        cpu.total
    );
    let names = resolve(&prepared, &Wrt::EveryInput).unwrap();
    let g = UnfusedGradientPlan::new(dev, &prepared, &names, 1.0)
        .unwrap()
        .run(dev)
        .unwrap();
    for ((name, c), (_, u)) in cpu.grads.iter().zip(&g.grads) {
        let scale = c.data.iter().fold(1e-30f32, |m, x| m.max(x.abs()));
        for (a, b) in c.data.iter().zip(&u.data) {
            assert!(
                (a - b).abs() <= 1e-4 * scale,
                "d/d{name}: unfused {b} vs cpu {a}"
            );
        }
    }
    let median = check(
        "loss f {\n    input x : [N, M]\n    input y : [B]\n    compute y[b] - median(n, m: x[n, m])\n    reduce mean\n}\n",
    );
    let (prepared, _) = prepare(&median, &terms, &data, &vec![]).unwrap();
    let bound: Vec<&Bound> = prepared.iter().map(|p| &p.bound).collect();
    if dev.is_llvmpipe() {
        let e = UnfusedPlan::new(dev, &bound, &[1.0])
            .err()
            .expect("refused");
        assert!(
            matches!(
                e,
                lossc::gpu::GpuError::Plan(lossc::gpu::PlanError::LoopBudget { .. })
            ),
            "{e}"
        );
    }
}
