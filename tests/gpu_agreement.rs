//! Programs that once made the fused GPU kernel disagree with the CPU evaluator (a wrong
//! number, an internal error, an error where the CPU has none), each run on the GPU under
//! every row placement (`auto`, `shared`, `per-thread`) and as the generic kernel, and
//! checked against the CPU evaluator and against a value computed by hand.

mod common;

use lossc::diagnostics::Source;
use lossc::gpu::{Dispatch, DispatchOptions, GpuError, KernelForm, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Data, parse_json_data};
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

fn check(name: &str, text: &str) -> Program {
    let sources = [Source::new(name, text)];
    let c = lossc::sema::check(&sources);
    assert!(!c.has_errors(), "{}", c.render(&sources));
    c.program
}

/// Each way the GPU can run a kernel: the row placements of the specialised kernel, and
/// the generic kernel (sizes read from the parameter block).
fn ways() -> Vec<(&'static str, DispatchOptions<'static>)> {
    let placed = |placement| DispatchOptions {
        placement,
        ..Default::default()
    };
    vec![
        ("--rows auto", placed(RowPlacement::Auto)),
        ("--rows shared", placed(RowPlacement::Shared)),
        ("--rows per-thread", placed(RowPlacement::PerThread)),
        (
            "generic kernel",
            DispatchOptions {
                form: KernelForm::Generic,
                ..Default::default()
            },
        ),
    ]
}

/// The GPU's value of the one loss of `program` on `data` in each way, or its error.
fn on_the_gpu(
    program: &Program,
    loss: &str,
    data: &Data,
) -> Vec<(&'static str, Result<f32, GpuError>)> {
    let terms = [FactoryTerm::plain(loss)];
    let kernel = lossc::codegen::compile(program, loss, &terms).unwrap();
    let (prepared, _) = prepare(program, &terms, data, &vec![]).unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let dev = lossc::gpu::gpu().unwrap();
    ways()
        .into_iter()
        .map(|(how, options)| {
            let run = Dispatch::new(dev, &kernel, &bound, &[1.0], &options)
                .and_then(|d| d.run(dev))
                .map(|(out, _)| out[0]);
            (how, run)
        })
        .collect()
}

/// The loss `loss` of `text` on the JSON `data` is `want` (hand-computed) on the CPU and,
/// bit for bit the same as the CPU or within `rel`, on the GPU in every way.
fn agrees(text: &str, loss: &str, data: &str, want: f32, rel: f32) {
    let program = check(&format!("{loss}.loss"), text);
    let data = parse_json_data(data).unwrap();
    let terms = [FactoryTerm::plain(loss)];
    let cpu = run_cpu(&program, &terms, &data, &vec![], &RunOptions::default())
        .unwrap()
        .losses[0]
        .1
        .loss;
    let near = |x: f32| x == want || (x - want).abs() <= rel * want.abs();
    assert!(near(cpu), "{loss}: the CPU gives {cpu}, by hand {want}");
    for (how, run) in on_the_gpu(&program, loss, &data) {
        match run {
            Ok(gpu) => assert!(
                near(gpu),
                "{loss}, {how}: the GPU gives {gpu}, the CPU {cpu}, by hand {want}"
            ),
            Err(e) => panic!("{loss}, {how}: {e}"),
        }
    }
}

/// A `select` on an enum param, with a reduction in its taken branch, inside another
/// reduction: the kernel specialised to the enum's value walks the untaken branch muted,
/// and once met the slots in another order than the generic kernel (an internal error).
#[test]
fn a_select_on_an_enum_with_a_reduction_inside_a_reduction() {
    let text = "loss r {\n    input w : [K]\n    param m : \"no\" | \"yes\" = \"yes\"\n    compute sum(k: select(m == \"yes\", sum(j: w[j]), w[k]))\n    reduce sum\n}\n";
    // "yes": each of the K = 2 terms is w[0] + w[1] = 3; "no": w[0] + w[1].
    agrees(text, "r", r#"{"w": [1, 2]}"#, 6.0, 0.0);
    agrees(text, "r", r#"{"w": [1, 2], "m": "no"}"#, 3.0, 0.0);
    // The other way round, and over rows long enough for four-wide loops: the taken
    // branch second, the reduction in the untaken one.
    let text = "loss r {\n    input w : [B, K]\n    param m : \"no\" | \"yes\" = \"no\"\n    compute sum(k: select(m == \"yes\", w[b, k], sum(j: w[b, j] * k)))\n    reduce sum\n}\n";
    let w: Vec<String> = (0..2 * 8).map(|i| format!("{}", i % 8)).collect();
    let data = format!(r#"{{"w": {{"shape": [2, 8], "data": [{}]}}}}"#, w.join(","));
    // Per row: sum(j) w = 28, times k summed over 0..8 = 28 · 28 = 784; two rows.
    agrees(text, "r", &data, 1568.0, 0.0);
    let yes = data.replace("]}}", r#"]}, "m": "yes"}"#);
    agrees(text, "r", &yes, 56.0, 0.0);
}

/// K = 6 heatmaps of 32 × 24 pixels, x[k, h, w] = k / 100 + ((15485863 · i) mod 1000) /
/// 1000 at flat position i: row sums that f32 rounds differently in different orders.
fn heatmaps() -> String {
    let (k, h, w) = (6u64, 32u64, 24u64);
    let x: Vec<String> = (0..k * h * w)
        .map(|i| {
            let v = (i / (h * w)) as f64 / 100.0 + ((15_485_863 * i) % 1000) as f64 / 1000.0;
            format!("{v}")
        })
        .collect();
    format!(r#"{{"x": {{"shape": [{k}, {h}, {w}], "data": [{}]}}}}"#, x.join(","))
}

/// A `let` holding a reduction, used at the same indices in two places, is one value: the
/// table of heatmap means `l[j]` (a workgroup's shared reduction when rows are shared)
/// and `l[k]` (one thread's loop, inside the sum over j) once differed in the last bit,
/// so that `l[j] == l[k]` was false for j = k, and a top-k written by counting ranks
/// took a third heatmap.
#[test]
fn a_let_has_one_value_wherever_it_is_computed() {
    let data = heatmaps();
    let text = "loss self_equal {\n    input x : [K, H, W]\n    let l[k] = mean(h, w: x[k, h, w])\n    compute sum(j: select(l[j] == l[k], 1, 0))\n    reduce sum\n}\n";
    // The six means differ, so each equals itself only: 6.
    agrees(text, "self_equal", &data, 6.0, 0.0);
    let text = "loss top2 {\n    input x : [K, H, W]\n    let l[k] = mean(h, w: x[k, h, w])\n    compute select(sum(j: select(l[j] >= l[k], 1, 0)) <= 2, l[k], 0)\n    reduce sum\n}\n";
    // The means, in f64: 0.5008646, 0.5110104, 0.5185521, 0.5273958, 0.5401458,
    // 0.5515937; the two largest add to 1.0917396.
    agrees(text, "top2", &data, 1.091_739_6, 1e-6);
}
