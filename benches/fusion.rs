//! `cargo bench --bench fusion`: the fused kernel against the unfused execution of the
//! same IR (one dispatch per IR operation, intermediates materialised), side by side on
//! one adapter in one run; compile time per example kernel; `lossc check` time of all
//! examples; achieved read bandwidth against a plain copy kernel's. Medians throughout.

use std::time::{Duration, Instant};

use lossc::diagnostics::Source;
use lossc::gpu::unfused::UnfusedPlan;
use lossc::gpu::{Dispatch, gpu};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Array, Data, DataValue};
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

const RUNS: usize = 31;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

/// The median times of `runs`, after 3 warm-up runs each, over `RUNS` runs each,
/// interleaved (the first, the second, ..., the first again, ...) so that all see the
/// same machine load.
fn interleaved_all(runs: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    for _ in 0..3 {
        runs.iter_mut().for_each(|r| r());
    }
    let mut times: Vec<Vec<Duration>> = runs.iter().map(|_| Vec::new()).collect();
    for _ in 0..RUNS {
        for (r, t) in runs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            r();
            t.push(start.elapsed());
        }
    }
    times.into_iter().map(median).collect()
}

/// [`interleaved_all`] of two.
fn interleaved<A, B>(mut a: impl FnMut() -> A, mut b: impl FnMut() -> B) -> (Duration, Duration) {
    let t = interleaved_all(&mut [
        &mut || {
            std::hint::black_box(a());
        },
        &mut || {
            std::hint::black_box(b());
        },
    ]);
    (t[0], t[1])
}

/// [`interleaved_all`] of three.
fn interleaved3<A, B, C>(
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
    mut c: impl FnMut() -> C,
) -> (Duration, Duration, Duration) {
    let t = interleaved_all(&mut [
        &mut || {
            std::hint::black_box(a());
        },
        &mut || {
            std::hint::black_box(b());
        },
        &mut || {
            std::hint::black_box(c());
        },
    ]);
    (t[0], t[1], t[2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sources() -> Vec<Source> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lightning_pose");
    let mut v: Vec<Source> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "loss"))
        .map(|p| {
            Source::new(
                p.file_name().unwrap().to_string_lossy(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// A small deterministic generator.
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn array(shape: &[usize], r: &mut Rng, f: impl Fn(f64) -> f64) -> DataValue {
    let n = shape.iter().product();
    DataValue::Array(Array {
        shape: shape.to_vec(),
        data: (0..n).map(|_| f(r.unit())).collect(),
        typed_float: true,
    })
}

fn data(b: usize, k: usize, hw: Option<usize>, pca: bool, targets: bool) -> Data {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut d = Data::new();
    if let Some(hw) = hw {
        if targets {
            d.insert(
                "heatmaps_targ".into(),
                array(&[b, k, hw, hw], &mut r, |u| {
                    if u < 0.2 { 0.0 } else { u / 4096.0 }
                }),
            );
        }
        d.insert(
            "heatmaps_pred".into(),
            array(&[b, k, hw, hw], &mut r, |u| u / 4096.0),
        );
    }
    d.insert(
        "keypoints_pred".into(),
        array(&[b, 2 * k], &mut r, |u| u * 256.0),
    );
    d.insert("confidences".into(), array(&[b, k], &mut r, |u| u));
    if pca {
        d.insert(
            "pca_singleview.mean".into(),
            array(&[2 * k], &mut r, |u| u * 256.0),
        );
        d.insert(
            "pca_singleview.kept_eigenvectors".into(),
            array(&[5, 2 * k], &mut r, |u| u - 0.5),
        );
    }
    d
}

/// The CPU time this process has used, in nanoseconds: the sum over its threads of the
/// first field of `/proc/self/task/*/schedstat` (Linux). A thread that ends between the
/// listing and the read counts 0.
fn cpu_time_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("LOSSC_BENCH_CPUTIME needs /proc/self/task (Linux)")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn bench_case(program: &Program, title: &str, losses: &[&str], data: &Data) {
    // `LOSSC_BENCH_ONLY=(c)`: just the cases whose title starts so.
    if std::env::var("LOSSC_BENCH_ONLY").is_ok_and(|only| !title.starts_with(&only)) {
        return;
    }
    let dev = gpu().unwrap();
    let terms: Vec<FactoryTerm> = losses
        .iter()
        .map(|l| FactoryTerm {
            loss: l.to_string(),
            settings: vec![],
            annealed: l.starts_with("temporal") || l.starts_with("pca"),
        })
        .collect();
    let opts = RunOptions::default();
    let (prepared, _) = prepare(program, &terms, data, &vec![]).unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let anneal = vec![1.0f32; bound.len()];
    let kernel = lossc::codegen::compile(program, title, &terms).unwrap();
    let fused = Dispatch::new(dev, &kernel, &bound, &anneal, &Default::default()).unwrap();
    let unfused = UnfusedPlan::new(dev, &bound, &anneal).unwrap();
    // Both must agree with the CPU evaluator before they are timed.
    let cpu = run_cpu(program, &terms, data, &vec![], &opts).unwrap();
    let (f, _) = fused.run(dev).unwrap();
    let u = unfused.run(dev).unwrap();
    let n = losses.len();
    for (what, v) in [("fused", f[3 * n]), ("unfused", u[3 * n])] {
        assert!(
            (v - cpu.total).abs() <= 1e-4 * cpu.total.abs().max(1e-6),
            "{title}: {what} {v} vs cpu {}",
            cpu.total
        );
    }
    // `LOSSC_BENCH_CPUTIME=N`: instead, the process's CPU time per fused run (summed over
    // its threads, the adapter's workers included), the median of N runs: a software
    // adapter's work, less disturbed than wall-clock time by other load on the machine.
    if let Some(runs) = std::env::var("LOSSC_BENCH_CPUTIME")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        for _ in 0..3 {
            fused.run(dev).unwrap();
        }
        let mut per_run: Vec<u64> = (0..runs)
            .map(|_| {
                let before = cpu_time_ns();
                std::hint::black_box(fused.run(dev).unwrap());
                cpu_time_ns() - before
            })
            .collect();
        per_run.sort();
        println!(
            "{title:<48} fused CPU time {:>8.3} ms per run (median of {runs})",
            per_run[runs / 2] as f64 / 1e6
        );
        return;
    }
    let (tf, tu) = interleaved(|| fused.run(dev).unwrap(), || unfused.run(dev).unwrap());
    let bytes: usize = bound
        .iter()
        .flat_map(|b| b.inputs.iter().flatten().map(|t| t.data.len() * 4))
        .sum::<usize>();
    let size = if bytes >= 100_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    };
    println!(
        "{title:<48} fused {:>8.2} ms (1 dispatch)   unfused {:>8.2} ms ({} dispatches)   unfused/fused {:>6.1}x   fused reads {size} at {:.2} GB/s",
        ms(tf),
        ms(tu),
        unfused.dispatches(),
        tu.as_secs_f64() / tf.as_secs_f64(),
        bytes as f64 / tf.as_secs_f64() / 1e9
    );
}

/// Forward + backward: the fused forward and backward kernels (two dispatches) against
/// the unfused execution of the same adjoint IRs (one dispatch per node), and the fused
/// forward kernel alone, interleaved; the gradients with respect to `wrt` checked against
/// the CPU evaluator's first.
fn bench_gradients(program: &Program, title: &str, losses: &[&str], data: &Data, wrt: &[&str]) {
    use lossc::runtime::grad::{FusedGradientPlan, UnfusedGradientPlan, Wrt, resolve};
    if std::env::var("LOSSC_BENCH_ONLY").is_ok_and(|only| !title.starts_with(&only)) {
        return;
    }
    let dev = gpu().unwrap();
    let terms: Vec<FactoryTerm> = losses
        .iter()
        .map(|l| FactoryTerm {
            loss: l.to_string(),
            settings: vec![],
            annealed: l.starts_with("temporal") || l.starts_with("pca"),
        })
        .collect();
    // `LOSSC_BENCH_WRT=a,b`: differentiate with respect to these inputs instead.
    let wrt: Vec<String> = match std::env::var("LOSSC_BENCH_WRT") {
        Ok(w) => w.split(',').map(str::to_string).collect(),
        Err(_) => wrt.iter().map(|s| s.to_string()).collect(),
    };
    let opts = RunOptions {
        wrt: Wrt::Inputs(wrt),
        ..RunOptions::default()
    };
    let (prepared, _) = prepare(program, &terms, data, &vec![]).unwrap();
    let names = resolve(&prepared, &opts.wrt).unwrap();
    let kernel = lossc::codegen::compile(program, title, &terms).unwrap();
    let fused =
        FusedGradientPlan::new(dev, &kernel, &prepared, &names, 1.0, &Default::default()).unwrap();
    let cpu = run_cpu(program, &terms, data, &vec![], &opts).unwrap();
    let f = fused.run(dev).unwrap();
    let unfused = UnfusedGradientPlan::new(dev, &prepared, &names, 1.0);
    let mut runs = vec![("fused", f)];
    if let Ok(u) = &unfused {
        runs.push(("unfused", u.run(dev).unwrap()));
    }
    for (what, r) in &runs {
        for ((name, c), (_, g)) in cpu.grads.iter().zip(&r.grads) {
            let scale = c.data.iter().fold(1e-30f32, |m, x| m.max(x.abs()));
            for (a, b) in c.data.iter().zip(&g.data) {
                assert!(
                    (a - b).abs() <= 1e-4 * scale,
                    "{title}: {what} d/d{name}: {b} vs cpu {a}"
                );
            }
        }
    }
    let forward = fused.forward();
    let wrt_list = names.join(", ");
    match &unfused {
        Ok(u) => {
            let (tf, tu, t1) = interleaved3(
                || fused.run(dev).unwrap(),
                || u.run(dev).unwrap(),
                || forward.run(dev).unwrap(),
            );
            println!(
                "{title:<48} d/d({wrt_list}): fwd+bwd fused {:>8.2} ms (2 dispatches)   unfused {:>8.2} ms ({} dispatches)   unfused/fused {:>6.1}x   forward alone {:>8.2} ms   fwd+bwd/fwd {:>5.2}x",
                ms(tf),
                ms(tu),
                u.dispatches(),
                tu.as_secs_f64() / tf.as_secs_f64(),
                ms(t1),
                tf.as_secs_f64() / t1.as_secs_f64()
            );
        }
        Err(e) => {
            let (tf, t1) = interleaved(|| fused.run(dev).unwrap(), || forward.run(dev).unwrap());
            println!(
                "{title:<48} d/d({wrt_list}): fwd+bwd fused {:>8.2} ms (2 dispatches)   unfused: not run ({e})   forward alone {:>8.2} ms   fwd+bwd/fwd {:>5.2}x",
                ms(tf),
                ms(t1),
                tf.as_secs_f64() / t1.as_secs_f64()
            );
        }
    }
}

/// The four forward + backward cases of docs/gradients.md.
fn gradient_cases(program: &Program) {
    bench_gradients(
        program,
        "(a) heatmap_mse B=16 K=17 64x64",
        &["heatmap_mse"],
        &data(16, 17, Some(64), false, true),
        &["heatmaps_pred"],
    );
    bench_gradients(
        program,
        "(b) temporal + pca_singleview B=32 K=17",
        &["temporal", "pca_singleview"],
        &data(32, 17, None, true, false),
        &["keypoints_pred"],
    );
    bench_gradients(
        program,
        "(c) temporal_heatmap_mse + temporal B=32 K=17 64x64",
        &["temporal_heatmap_mse", "temporal"],
        &data(32, 17, Some(64), false, false),
        &["heatmaps_pred", "keypoints_pred"],
    );
    bench_gradients(
        program,
        "(d) heatmap_kl B=16 K=17 64x64",
        &["heatmap_kl"],
        &data(16, 17, Some(64), false, true),
        &["heatmaps_pred"],
    );
}

/// A soft-target cross-entropy over C classes (a max-shifted log-sum-exp inside the sum
/// over classes), fused, for C = 128 and C = 512 interleaved: the log-sum-exp is hoisted
/// once per row, so 4× the classes should cost about 4× the time, not 16×.
fn cross_entropy_scaling() {
    if std::env::var("LOSSC_BENCH_ONLY").is_ok_and(|only| !"(d)".starts_with(&only)) {
        return;
    }
    let text = "loss ce_soft {\n    input logits : [N, C]\n    input probs : [N, C]\n    \
                let m[n] = max(c: logits[n, c])\n    \
                let lse[n] = m[n] + log(sum(c: exp(logits[n, c] - m[n])))\n    \
                compute sum(c: probs[n, c] * (lse[n] - logits[n, c]))\n    reduce mean\n}\n";
    let sources = [Source::new("ce.loss", text)];
    let program = lossc::sema::check(&sources).program;
    let terms = [FactoryTerm::plain("ce_soft")];
    let kernel = lossc::codegen::compile(&program, "ce_soft", &terms).unwrap();
    let dev = gpu().unwrap();
    let n = 64;
    let dispatch_for = |c: usize| {
        let mut r = Rng(c as u64);
        let mut d = Data::new();
        d.insert("logits".into(), array(&[n, c], &mut r, |u| 8.0 * u - 4.0));
        d.insert("probs".into(), array(&[n, c], &mut r, |u| u / c as f64));
        let (prepared, _) = prepare(&program, &terms, &d, &vec![]).unwrap();
        let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
        let fused = Dispatch::new(dev, &kernel, &bound, &[1.0], &Default::default()).unwrap();
        let cpu = run_cpu(&program, &terms, &d, &vec![], &RunOptions::default()).unwrap();
        let (out, _) = fused.run(dev).unwrap();
        assert!(
            (out[3] - cpu.total).abs() <= 1e-4 * cpu.total.abs(),
            "C = {c}"
        );
        fused
    };
    let (small, large) = (dispatch_for(128), dispatch_for(512));
    let (t128, t512) = interleaved(|| small.run(dev).unwrap(), || large.run(dev).unwrap());
    println!(
        "(d) soft cross-entropy N={n}: C=128 fused {:.2} ms, C=512 fused {:.2} ms (1 dispatch each): 4x the classes cost {:.1}x",
        ms(t128),
        ms(t512),
        t512.as_secs_f64() / t128.as_secs_f64()
    );
}

/// `heatmap_mse` on 64 × 64 heatmaps for several row counts (B × K), its kernel run with
/// rows shared by a workgroup and with one row per thread, interleaved: where the
/// adapter's placement rule (`RowPlacement::Auto`) should switch.
fn placement_sweep(program: &Program) {
    use lossc::gpu::RowPlacement;
    let dev = gpu().unwrap();
    let terms = [FactoryTerm::plain("heatmap_mse")];
    let kernel = lossc::codegen::compile(program, "heatmap_mse", &terms).unwrap();
    println!("placement sweep, heatmap_mse 64x64 (rows = B x K; 4096 elements per row):");
    for (b, k) in [
        (1, 2),
        (1, 4),
        (1, 8),
        (1, 17),
        (2, 17),
        (4, 17),
        (8, 17),
        (16, 17),
    ] {
        let data = data(b, k, Some(64), false, true);
        let (prepared, _) = prepare(program, &terms, &data, &vec![]).unwrap();
        let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
        let make = |p| {
            Dispatch::new(
                dev,
                &kernel,
                &bound,
                &[1.0],
                &lossc::gpu::DispatchOptions {
                    placement: p,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let (shared, per_thread, auto) = (
            make(RowPlacement::Shared),
            make(RowPlacement::PerThread),
            make(RowPlacement::Auto),
        );
        let (ts, tp) = interleaved(|| shared.run(dev).unwrap(), || per_thread.run(dev).unwrap());
        // Auto made the same kernel as one of the two: compare their workgroup counts.
        let chosen = if auto.workgroups() == per_thread.workgroups()
            && auto.workgroups() != shared.workgroups()
        {
            "one row per thread"
        } else {
            "shared"
        };
        println!(
            "  rows {:>4}: shared {:>7.2} ms   one row per thread {:>7.2} ms   shared/per-thread {:>5.2}   auto: {chosen}",
            b * k,
            ms(ts),
            ms(tp),
            ts.as_secs_f64() / tp.as_secs_f64()
        );
    }
}

/// A plain copy kernel over `n` floats, the read bandwidth the issue asks to compare
/// with; it also writes as much as it reads.
const COPY: &str = "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;\n\
    @group(0) @binding(1) var<storage, read_write> b: array<vec4<f32>>;\n\
    @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {\n\
      let stride = nw.x * 256u;\n\
      for (var i = g.x; i < arrayLength(&a); i += stride) { b[i] = a[i]; }\n\
    }";

/// A read-only kernel over `n` floats: each thread sums its share and writes one vec4,
/// so nearly all the traffic is reads (a loss kernel's pattern).
const SUM: &str = "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;\n\
    @group(0) @binding(1) var<storage, read_write> b: array<vec4<f32>>;\n\
    @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {\n\
      let stride = nw.x * 256u;\n\
      var s = vec4<f32>(0.0);\n\
      for (var i = g.x; i < arrayLength(&a); i += stride) { s = s + a[i]; }\n\
      b[g.x] = s;\n\
    }";

/// The read bandwidth of `wgsl` (one of the kernels above) over `n` floats, in GB/s.
fn read_bandwidth(wgsl: &str, n: usize) -> f64 {
    let dev = gpu().unwrap();
    let d = &dev.device;
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(wgsl.into()),
    });
    let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let mk = |usage| {
        d.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (n * 4) as u64,
            usage,
            mapped_at_creation: false,
        })
    };
    let a = mk(wgpu::BufferUsages::STORAGE);
    let b = mk(wgpu::BufferUsages::STORAGE);
    let bg = d.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: a.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: b.as_entire_binding(),
            },
        ],
    });
    let run = || {
        let mut enc = d.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(1024, 1, 1);
        }
        dev.queue.submit([enc.finish()]);
        d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    };
    run();
    let t = time(7, run);
    (n * 4) as f64 / t.as_secs_f64() / 1e9
}

fn main() {
    let dev = match gpu() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no GPU adapter: {e}");
            std::process::exit(1);
        }
    };
    println!("adapter: {}", dev.describe());
    let sources = sources();
    let t_check = time(50, || lossc::sema::check(&sources));
    let program = lossc::sema::check(&sources).program;
    println!(
        "lossc check of all {} examples (parse, check, IR passes): median {:.2} ms",
        sources.len(),
        ms(t_check)
    );
    let mut compile = Vec::new();
    for s in &sources {
        let one = [s.clone()];
        let name = program
            .losses
            .iter()
            .find(|l| s.text.contains(&format!("loss {} ", l.name)))
            .map(|l| l.name.clone())
            .unwrap();
        let term = [FactoryTerm::plain(name.clone())];
        let t = time(20, || {
            let c = lossc::sema::check(&one);
            lossc::codegen::compile(&c.program, &name, &term).unwrap()
        });
        compile.push((name, t));
    }
    let worst = compile.iter().map(|(_, t)| *t).max().unwrap();
    println!(
        "compile (parse -> validated WGSL), median per example: {}",
        compile
            .iter()
            .map(|(n, t)| format!("{n} {:.2} ms", ms(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("slowest example compile: {:.2} ms", ms(worst));
    let bw = read_bandwidth(COPY, 16 << 20);
    let sum = read_bandwidth(SUM, 16 << 20);
    println!(
        "copy kernel (64 MiB): {bw:.2} GB/s read (and as much written); read-only sum kernel: {sum:.2} GB/s"
    );
    bench_case(
        &program,
        "(a) heatmap_mse B=16 K=17 64x64",
        &["heatmap_mse"],
        &data(16, 17, Some(64), false, true),
    );
    bench_case(
        &program,
        "(b) temporal + pca_singleview B=32 K=17",
        &["temporal", "pca_singleview"],
        &data(32, 17, None, true, false),
    );
    if let Ok(extra) = std::env::var("LOSSC_BENCH_EXTRA") {
        // Experiments: more .loss files, each loss run on the heatmap data of (a).
        let mut all = sources.clone();
        all.push(Source::new(
            extra.clone(),
            std::fs::read_to_string(&extra).unwrap(),
        ));
        let checked = lossc::sema::check(&all);
        assert!(!checked.has_errors(), "{}", checked.render(&all));
        let extra_program = checked.program;
        for l in extra_program.losses.iter().skip(program.losses.len()) {
            bench_case(
                &extra_program,
                &format!("(x) {}", l.name),
                &[l.name.as_str()],
                &data(16, 17, Some(64), false, true),
            );
        }
    }
    if std::env::var("LOSSC_BENCH_PLACEMENT").is_ok() {
        placement_sweep(&program);
    }
    if std::env::var("LOSSC_BENCH_PARTS").is_ok() {
        bench_case(
            &program,
            "(b1) temporal B=32 K=17",
            &["temporal"],
            &data(32, 17, None, false, false),
        );
        bench_case(
            &program,
            "(b2) pca_singleview B=32 K=17",
            &["pca_singleview"],
            &data(32, 17, None, true, false),
        );
        bench_case(&program, "(b3) regression", &["regression"], &{
            let mut d = data(32, 17, None, false, false);
            let kp = d["keypoints_pred"].clone();
            d.insert("keypoints_targ".into(), kp);
            d
        });
    }
    bench_case(
        &program,
        "(c) temporal_heatmap_mse + temporal B=32 K=17 64x64",
        &["temporal_heatmap_mse", "temporal"],
        &data(32, 17, Some(64), false, false),
    );
    cross_entropy_scaling();
    if std::env::var("LOSSC_BENCH_NO_GRAD").is_err() {
        println!("forward + backward (docs/gradients.md):");
        gradient_cases(&program);
    }
}
