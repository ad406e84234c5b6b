//! The fused GPU kernels against the CPU evaluator: determinism (20 runs, bit for bit),
//! random programs and shapes (sizes 1, 3, 50, 783 and others that are not multiples
//! of the workgroup size; divisions, powers and medians of data holding −0, ±inf, NaN and
//! subnormals), and run-time errors.

mod common;

use common::Rng;

use lossc::diagnostics::Source;
use lossc::gpu::{GpuError, PlanError, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::RunError;
use lossc::runtime::data::{Data, parse_json_data};
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

fn check(files: &[(&str, String)]) -> Program {
    let sources: Vec<Source> = files
        .iter()
        .map(|(n, t)| Source::new(*n, t.clone()))
        .collect();
    let c = lossc::sema::check(&sources);
    assert!(!c.has_errors(), "{}", c.render(&sources));
    c.program
}

fn examples() -> Program {
    let mut files: Vec<(String, String)> = common::example_files()
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let f = common::root().join("examples/factories.loss");
    files.push((
        f.display().to_string(),
        std::fs::read_to_string(&f).unwrap(),
    ));
    let refs: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    check(&refs)
}

/// The README's demo: its factory and its data.
fn demo(program: &Program) -> (&lossc::ir::Factory, Data) {
    let f = program
        .factories
        .iter()
        .find(|f| f.name == "heatmap_semisupervised")
        .unwrap();
    let text = std::fs::read_to_string(common::root().join("examples/demo.json")).unwrap();
    (f, parse_json_data(&text).unwrap())
}

#[test]
fn twenty_runs_of_a_factory_are_bit_identical() {
    let program = examples();
    let (f, data) = demo(&program);
    let opts = RunOptions {
        stage: "train".into(),
        anneal: 0.3,
        ..RunOptions::default()
    };
    let kernel = lossc::codegen::compile(&program, &f.name, &f.terms).unwrap();
    let (prepared, _) = prepare(&program, &f.terms, &data, &vec![]).unwrap();
    let first =
        serde_json::to_string(&lossc::runtime::run::run_gpu(&kernel, &prepared, &opts).unwrap())
            .unwrap();
    for _ in 1..20 {
        let again = serde_json::to_string(
            &lossc::runtime::run::run_gpu(&kernel, &prepared, &opts).unwrap(),
        )
        .unwrap();
        assert_eq!(first, again);
    }
    // One set of buffers dispatched 20 times: the kernel must restore its own
    // synchronisation state after each dispatch.
    let gpu = lossc::gpu::gpu().unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let anneal: Vec<f32> = prepared
        .iter()
        .map(|p| if p.annealed { 0.3 } else { 1.0 })
        .collect();
    let d = lossc::gpu::Dispatch::new(gpu, &kernel, &bound, &anneal, &Default::default()).unwrap();
    let (out0, n) = d.run(gpu).unwrap();
    assert_eq!(n, 1);
    for _ in 1..20 {
        let (out, _) = d.run(gpu).unwrap();
        assert_eq!(
            out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            out0.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }
    // And the CLI prints the same JSON twice.
    let mut args: Vec<String> = common::example_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    args.insert(0, "run".into());
    for a in [
        "examples/factories.loss",
        "--factory",
        "heatmap_semisupervised",
        "--data",
        "examples/demo.json",
        "--json",
        "--backend",
        "gpu",
    ] {
        args.push(a.into());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = common::lossc(&argv);
    let b = common::lossc(&argv);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
}

/// One dispatch of `kernel` on `bound` (anneal 1) with rows placed as `placement` says.
fn run_placed(
    dev: &lossc::gpu::Gpu,
    kernel: &lossc::codegen::Kernel,
    bound: &[&lossc::bind::Bound],
    placement: RowPlacement,
) -> Result<(Vec<f32>, u32), GpuError> {
    let options = lossc::gpu::DispatchOptions {
        placement,
        ..Default::default()
    };
    lossc::gpu::Dispatch::new(dev, kernel, bound, &[1.0], &options)?.run(dev)
}

/// A random element-wise expression over the domain (i, j).
fn expr(r: &mut Rng, depth: usize) -> String {
    let leaves = ["x[i, j]", "y[i, j]", "z[i]", "0.5", "2", "a"];
    if depth == 0 || r.below(4) == 0 {
        return r.pick(&leaves).to_string();
    }
    let a = expr(r, depth - 1);
    let b = expr(r, depth - 1);
    // Data read as it is, so that its special values (zeros of either sign, infinities,
    // NaN, subnormals) reach a division or a power unchanged: C's pow and IEEE division
    // are then exercised exactly, with no rounding of a computed operand in between.
    let data = ["x[i, j]", "y[i, j]", "z[i]"];
    match r.below(21) {
        0 => format!("({a} + {b})"),
        1 => format!("({a} - {b})"),
        2 => format!("({a} * {b})"),
        3 => format!("({a} / (abs({b}) + 1))"),
        4 => format!("({a}) ^ 2"),
        5 => format!("exp(-abs({a}))"),
        6 => format!("log(abs({a}) + 1)"),
        7 => format!("sqrt(abs({a}))"),
        8 => format!("max({a}, {b} - 0.25)"),
        9 => format!("min({a}, {b} + 0.25)"),
        10 => format!("clamp({a}, -0.5, 0.75)"),
        11 => format!("select({a} < {b}, {a}, relu({b}))"),
        // Reductions over the row (hoisted) and over a constant range (inline).
        12 => format!(
            "({a} - {}(q: x[i, q]))",
            r.pick(&["sum", "mean", "max", "min", "norm", "median"])
        ),
        13 => format!("({a} * mean(q: y[i, q] * z[i]))"),
        14 => format!("sum(c in 0..3: {a} * c)"),
        15 => format!("({a} + i * 0.01 - j * 0.001)"),
        16 => format!("({a} / {})", r.pick(&data)),
        17 => format!(
            "({} ^ {})",
            r.pick(&data),
            r.pick(&["0.5", "-0.5", "3", "-1", "-2.5", "0", "1"])
        ),
        18 => format!("({} ^ {})", r.pick(&data), r.pick(&data)),
        19 => format!("(abs({a}) ^ {})", r.pick(&["0.5", "1.5", "3"])),
        _ => format!(
            "({a} * median(q: {}))",
            r.pick(&["y[i, q]", "x[i, q] / y[i, q]", "y[i, q] ^ x[i, q]"])
        ),
    }
}

/// A random loss; with `nans`, its data holds NaNs in `y`, which a mask covers.
fn random_program(r: &mut Rng, nans: bool) -> String {
    let body = expr(r, 3);
    // Every program reads x[i, j], so that the domain is (i, j).
    let compute = if r.below(2) == 0 {
        format!("abs({body} + x[i, j])")
    } else {
        format!("({body} - y[i, j]) ^ 2")
    };
    let mut stages = format!("    compute {compute}\n");
    match if nans { 1 } else { r.below(5) } {
        0 => stages += "    remove_nans drop where x[i, j] > 0.7\n",
        1 => stages += "    remove_nans zero where isnan(y[i, j]) || z[i] < 0.1\n",
        2 => stages += "    remove_nans drop where all(q: x[i, q] == 0)\n",
        3 => stages += "    remove_nans zero where any(q: isnan(x[i, q]))\n",
        _ => {}
    }
    if r.below(3) == 0 {
        stages += "    rectify 0.05\n";
    }
    stages += if r.below(3) == 0 {
        "    reduce sum\n"
    } else {
        "    reduce mean (empty: 0)\n"
    };
    format!(
        "loss random {{\n    input x : [N, M]\n    input y : [N, M]\n    input z : [N]\n    param a = 0.25\n{stages}    weight 1 / (2 * exp(a))\n}}\n"
    )
}

fn random_data(r: &mut Rng, n: usize, m: usize, nans: bool) -> Data {
    random_data_with(r, n, m, nans, false)
}

/// Values in [-1, 1] with some zeros; NaNs in `y` with `nans`; and with `specials`, about
/// three values per array replaced by −0, ±inf, NaN or a subnormal. (No large finite
/// values: sums of them in different orders differ by more than rounding.)
fn random_data_with(r: &mut Rng, n: usize, m: usize, nans: bool, specials: bool) -> Data {
    let special = |r: &mut Rng| -> serde_json::Value {
        match r.below(7) {
            0 => serde_json::json!(-0.0),
            1 => serde_json::json!("Infinity"),
            2 => serde_json::json!("-Infinity"),
            3 => serde_json::Value::Null, // NaN
            4 => serde_json::json!(1e-40),
            5 => serde_json::json!(-3e-39),
            _ => serde_json::json!(f32::from_bits(1)), // the smallest subnormal
        }
    };
    let val = |r: &mut Rng, nan_ok: bool, len: usize| -> serde_json::Value {
        if specials && r.below(len.div_ceil(3)) == 0 {
            return special(r);
        }
        match r.below(40) {
            0 if nan_ok => serde_json::Value::Null, // NaN
            1 | 2 => serde_json::json!(0.0),
            _ => serde_json::json!(r.unit_f32() * 2.0 - 1.0),
        }
    };
    let x: Vec<_> = (0..n * m).map(|_| val(r, false, n * m)).collect();
    let y: Vec<_> = (0..n * m).map(|_| val(r, nans, n * m)).collect();
    let z: Vec<_> = (0..n)
        .map(|_| {
            if specials && r.below(n.div_ceil(3)) == 0 {
                special(r)
            } else {
                serde_json::json!(r.unit_f32())
            }
        })
        .collect();
    let json = serde_json::json!({
        "x": {"shape": [n, m], "data": x},
        "y": {"shape": [n, m], "data": y},
        "z": {"shape": [n], "data": z},
    });
    parse_json_data(&json.to_string()).unwrap()
}

fn close(gpu: f32, cpu: f32) -> bool {
    (gpu.is_nan() && cpu.is_nan()) || gpu == cpu || (gpu - cpu).abs() <= 1e-4 * cpu.abs().max(1e-3)
}

/// The data with every subnormal replaced by a zero of its sign: what a GPU that flushes
/// subnormals reads (docs/backend.md, section 9).
fn flush_subnormals(data: &Data) -> Data {
    let mut flushed = data.clone();
    for v in flushed.values_mut() {
        if let lossc::runtime::data::DataValue::Array(a) = v {
            for x in &mut a.data {
                if (*x as f32).is_subnormal() {
                    *x = if *x < 0.0 { -0.0 } else { 0.0 };
                }
            }
        }
    }
    flushed
}

/// The rule a GPU value is held to (docs/backend.md, section 9): it is `close` to the CPU
/// evaluator's value on the data as given, or, when the data holds subnormals, to its
/// value on the data with them flushed to zero (`cpu_flushed`), as WGSL allows a GPU to
/// read them. On lavapipe the first always holds.
fn close_to_cpu(gpu: f32, cpu: f32, cpu_flushed: Option<f32>) -> bool {
    close(gpu, cpu) || cpu_flushed.is_some_and(|c| close(gpu, c))
}

const CASES: usize = 60;

#[test]
fn random_programs_and_shapes_agree_with_the_cpu_evaluator() {
    let shapes = [
        (1, 1),
        (3, 3),
        (50, 3),
        (3, 50),
        (1, 783),
        (783, 1),
        (7, 783),
        (50, 50),
        (257, 17),
        (2, 4097),
        (4, 64), // multiples of 4: the four-wide loops of specialised kernels
        (3, 4100),
    ];
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let mut failures = Vec::new();
    let mut refused = 0;
    for case in 0..CASES {
        let nans = case % 4 == 3;
        // Half the cases with special values in the data.
        let specials = case % 2 == 0;
        let text = random_program(&mut r, nans);
        let (n, m) = shapes[case % shapes.len()];
        let data = random_data_with(&mut r, n, m, nans, specials);
        let program = check(&[("random.loss", text.clone())]);
        let terms = [FactoryTerm::plain("random")];
        let opts = RunOptions::default();
        let cpu = run_cpu(&program, &terms, &data, &vec![], &opts).unwrap();
        let kernel = lossc::codegen::compile(&program, "random", &terms).unwrap();
        let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
        let gpu = match lossc::runtime::run::run_gpu(&kernel, &prepared, &opts) {
            Ok(g) => g,
            // The one refusal allowed: a median over thousands of values would exceed
            // llvmpipe's per-thread loop budget (see lossc::gpu::LLVMPIPE_LOOP_LIMIT).
            Err(RunError::Gpu(GpuError::Plan(PlanError::LoopBudget { .. })))
                if text.contains("median") =>
            {
                refused += 1;
                continue;
            }
            Err(e) => panic!("case {case}: {e}\n{text}"),
        };
        // The CPU evaluator on the data with its subnormals flushed to zero, for the rule
        // of `close_to_cpu`.
        let flushed = specials
            .then(|| run_cpu(&program, &terms, &flush_subnormals(&data), &vec![], &opts).unwrap());
        let flushed_loss = flushed.as_ref().map(|f| f.losses[0].1.loss);
        let flushed_total = flushed.as_ref().map(|f| f.total);
        let (c, g) = (&cpu.losses[0].1, &gpu.losses[0].1);
        if !(close_to_cpu(g.loss, c.loss, flushed_loss)
            && close(g.weight, c.weight)
            && close_to_cpu(gpu.total, cpu.total, flushed_total))
        {
            failures.push(format!(
                "case {case} ({n}x{m}, specials {specials}): gpu {} vs cpu {}\n{text}",
                g.loss, c.loss
            ));
        }
        let dev = lossc::gpu::gpu().unwrap();
        let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
        let mut compare = |what: &str, run: Result<(Vec<f32>, u32), GpuError>| match run {
            Ok((out, _)) if close_to_cpu(out[0], c.loss, flushed_loss) => {}
            Ok((out, _)) => failures.push(format!(
                "case {case} ({n}x{m}): {what} {} vs cpu {}\n{text}",
                out[0], c.loss
            )),
            Err(GpuError::Plan(PlanError::LoopBudget { .. })) => {}
            Err(e) => failures.push(format!("case {case}: {what}: {e}")),
        };
        // Both row placements, whichever the adapter would choose: each has its own code
        // (cooperative tables and a strided element stream, or serial per-thread loops).
        for placement in [RowPlacement::Shared, RowPlacement::PerThread] {
            let run = run_placed(dev, &kernel, &bound, placement);
            compare(&format!("{placement:?}"), run);
        }
        // The generic kernel (as `lossc compile` writes it, sizes read from the
        // parameter block) must compute the same numbers as the specialised one.
        if case % 2 == 1 {
            let run = lossc::gpu::Dispatch::new(
                dev,
                &kernel,
                &bound,
                &[1.0],
                &lossc::gpu::DispatchOptions {
                    form: lossc::gpu::KernelForm::Generic,
                    ..Default::default()
                },
            )
            .and_then(|d| d.run(dev));
            compare("generic kernel", run);
        }
        // The unfused baseline of the benchmark must compute the same numbers. (Its
        // one-thread median of hundreds of values would exceed llvmpipe's loop budget.)
        if case % 3 == 0 && !text.contains("median") {
            let out = lossc::gpu::unfused::UnfusedPlan::new(dev, &bound, &[1.0])
                .unwrap()
                .run(dev)
                .unwrap();
            if !close_to_cpu(out[0], c.loss, flushed_loss) {
                failures.push(format!(
                    "case {case} ({n}x{m}): unfused {} vs cpu {}\n{text}",
                    out[0], c.loss
                ));
            }
        }
    }
    assert!(refused <= 3, "{refused} cases refused");
    assert!(
        failures.is_empty(),
        "{} of {CASES} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `lossc run LOSS --data DATA` fails with status 1 on the CPU and on the GPU, saying
/// "out of range" and naming the read (`read`).
fn out_of_range_on_both_back_ends(loss: &str, data: &std::path::Path, read: &str) {
    for backend in ["cpu", "gpu"] {
        let out = common::lossc(&[
            "run",
            loss,
            "--data",
            data.to_str().unwrap(),
            "--backend",
            backend,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{backend}: {err}");
        assert!(
            err.contains("out of range") && err.contains(read),
            "{backend}: {err}"
        );
    }
}

#[test]
fn an_out_of_range_gather_is_an_error_on_both_back_ends() {
    let text = "loss g {\n    input x : [N]\n    param pick : index[S]\n    compute x[pick[s]]\n    reduce sum\n}\n";
    let dir = std::env::temp_dir().join(format!("lossc-gather-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("g.loss"), text).unwrap();
    std::fs::write(dir.join("d.json"), r#"{"x": [1, 2, 3], "pick": [0, 7]}"#).unwrap();
    out_of_range_on_both_back_ends(
        dir.join("g.loss").to_str().unwrap(),
        &dir.join("d.json"),
        "x[pick[s]]",
    );
    std::fs::write(dir.join("ok.json"), r#"{"x": [1, 2, 3], "pick": [2, 0]}"#).unwrap();
    let out = common::lossc(&[
        "run",
        dir.join("g.loss").to_str().unwrap(),
        "--data",
        dir.join("ok.json").to_str().unwrap(),
        "--backend",
        "gpu",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["losses"]["g"]["loss"], serde_json::json!(4.0)); // x[2] + x[0] = 3 + 1
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_that_does_not_fit_the_declarations_is_refused_before_the_gpu() {
    let path = std::env::temp_dir().join(format!("lossc-odd-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"keypoints_pred": {"shape": [4, 7], "data": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}"#).unwrap();
    let out = common::lossc(&[
        "run",
        "examples/lightning_pose/temporal.loss",
        "--backend",
        "gpu",
        "--data",
        path.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not 2*K for any whole K"), "{err}");
}

#[test]
fn inputs_already_on_the_gpu_are_used_without_a_host_copy() {
    use wgpu::util::DeviceExt;
    let program = examples();
    let (f, data) = demo(&program);
    let kernel = lossc::codegen::compile(&program, &f.name, &f.terms).unwrap();
    let gpu = lossc::gpu::gpu().unwrap();
    // The reference: everything from the host.
    let (prepared, _) = prepare(&program, &f.terms, &data, &vec![]).unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let ones = vec![1.0f32; bound.len()];
    let (host, _) = lossc::gpu::Dispatch::new(gpu, &kernel, &bound, &ones, &Default::default())
        .unwrap()
        .run(gpu)
        .unwrap();
    // The caller's buffers, and shapes alone on the host side.
    let inputs = [
        "heatmaps_targ",
        "heatmaps_pred",
        "keypoints_pred",
        "confidences",
    ];
    let mut shape_only = data.clone();
    let mut buffers = Vec::new();
    for name in inputs {
        let lossc::runtime::data::DataValue::Array(a) = &data[name] else {
            panic!()
        };
        let bytes: Vec<u8> = a
            .data
            .iter()
            .flat_map(|x| (*x as f32).to_le_bytes())
            .collect();
        buffers.push(
            gpu.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: &bytes,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                }),
        );
        shape_only.insert(
            name.into(),
            lossc::runtime::data::DataValue::Array(lossc::runtime::data::Array {
                data: vec![],
                ..a.clone()
            }),
        );
    }
    let (prepared, _) = prepare(&program, &f.terms, &shape_only, &vec![]).unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let device_inputs: Vec<(&str, &wgpu::Buffer)> =
        inputs.iter().copied().zip(buffers.iter()).collect();
    let d = lossc::gpu::Dispatch::new(
        gpu,
        &kernel,
        &bound,
        &ones,
        &lossc::gpu::DispatchOptions {
            device_inputs: &device_inputs,
            ..Default::default()
        },
    )
    .unwrap();
    let (dev, n) = d.run(gpu).unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        dev.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        host.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    // The caller updates a buffer between steps: the next run sees it.
    let zeros = vec![0u8; buffers[2].size() as usize];
    gpu.queue.write_buffer(&buffers[2], 0, &zeros); // keypoints_pred = 0: no temporal motion
    let (after, _) = d.run(gpu).unwrap();
    assert_eq!(
        after[3], 0.0,
        "temporal loss with still keypoints: {after:?}"
    );
    assert_eq!(
        after[0].to_bits(),
        host[0].to_bits(),
        "heatmap_mse unchanged"
    );
    // The CPU evaluator refuses shape-only inputs instead of reading nothing.
    let err = run_cpu(
        &program,
        &f.terms,
        &shape_only,
        &vec![],
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot be read on the CPU"),
        "{err}"
    );
}

#[test]
fn an_out_of_range_gather_in_a_four_wide_loop_names_its_read() {
    // One frame, K = 8 (a row of 8 keypoints: the four-wide loops of specialised kernels).
    let dir = std::env::temp_dir().join(format!("lossc-gather4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kp: Vec<String> = (0..16).map(|i| format!("{}", i as f32 * 1.5)).collect();
    let mean: Vec<&str> = vec!["0"; 16];
    let ev: Vec<&str> = vec!["0.25"; 32];
    let data = format!(
        r#"{{"keypoints_pred": {{"shape": [1, 16], "data": [{}]}}, "mean": [{}], "kept_eigenvectors": {{"shape": [2, 16], "data": [{}]}}, "columns_for_singleview_pca": [0, 1, 2, 3, 4, 5, 6, 9]}}"#,
        kp.join(", "),
        mean.join(", "),
        ev.join(", ")
    );
    std::fs::write(dir.join("d.json"), data).unwrap();
    out_of_range_on_both_back_ends(
        "examples/lightning_pose/pca_singleview.loss",
        &dir.join("d.json"),
        "keypoints_pred[",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `let` holding a reduction, used in two scopes, is one table built once (the second
/// use reads the first's table under renamed indices); over other ranges it is two.
/// Either way, under both row placements, the GPU gives the CPU evaluator's numbers.
#[test]
fn a_table_equal_up_to_renaming_is_built_once_and_read_correctly() {
    let text = |name: &str, hi: u32| {
        format!(
            "loss {name} {{\n    input x : [R, C]\n    let center[r, j] = mean(m: x[r, m] * (j + 1))\n    compute sum(j in 0..2: x[r, c] - center[r, j]) + norm(i in 0..{hi}: center[r, i])\n    reduce mean\n}}\n"
        )
    };
    // Two table indices, used in the other order: the renaming must keep the layout.
    let swapped = "loss swapped {\n    input x : [R, C]\n    let t[r, a, b] = mean(m: x[r, m] * (a + 3 * b + 1))\n    compute x[r, c] * sum(i in 0..2, j in 0..3: t[r, i, j] * (i + 1)) - sum(p in 0..3, q in 0..2: t[r, q, p] * p)\n    reduce mean\n}\n";
    let program = check(&[
        ("shared.loss", text("shared", 2)),
        ("different.loss", text("different", 3)),
        ("swapped.loss", swapped.to_string()),
    ]);
    let dev = lossc::gpu::gpu().unwrap();
    for (name, shared) in [("shared", true), ("different", false), ("swapped", true)] {
        let terms = [FactoryTerm::plain(name)];
        let kernel = lossc::codegen::compile(&program, name, &terms).unwrap();
        let same: Vec<Option<usize>> = kernel.schedules[0]
            .hoisted
            .iter()
            .map(|h| h.same_as)
            .collect();
        assert_eq!(same.iter().any(Option::is_some), shared, "{name}: {same:?}");
        for (n, m) in [(3, 50), (100, 8)] {
            let data = random_data(&mut Rng(7), n, m, false);
            let cpu = run_cpu(&program, &terms, &data, &vec![], &RunOptions::default()).unwrap();
            let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
            let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
            for placement in [RowPlacement::Shared, RowPlacement::PerThread] {
                let (out, _) = run_placed(dev, &kernel, &bound, placement).unwrap();
                let want = cpu.losses[0].1.loss;
                assert!(
                    close(out[0], want),
                    "{name} {n}x{m} {placement:?}: {} vs {want}",
                    out[0]
                );
            }
        }
    }
}

/// An input larger than the device binds in one buffer is refused before anything is
/// dispatched, with the sizes in the message: a device opened with a 1 MiB binding limit
/// gets a 2.4 MB input.
#[test]
fn an_input_over_the_binding_size_is_a_clear_error() {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    }))
    .unwrap();
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 1 << 20,
        ..adapter.limits()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("small bindings"),
        required_features: wgpu::Features::empty(),
        required_limits: limits,
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .unwrap();
    let small = lossc::gpu::Gpu::from_device(device, queue, adapter.get_info());
    let program = check(&[(
        "big.loss",
        "loss big {\n    input x : [N]\n    compute x[n] ^ 2\n    reduce mean\n}\n".to_string(),
    )]);
    let terms = [FactoryTerm::plain("big")];
    let mut data = Data::new();
    data.insert(
        "x".into(),
        lossc::runtime::data::DataValue::Array(lossc::runtime::data::Array {
            shape: vec![600_000],
            data: vec![0.5; 600_000],
            typed_float: true,
        }),
    );
    let kernel = lossc::codegen::compile(&program, "big", &terms).unwrap();
    let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let err = match lossc::gpu::Dispatch::new(&small, &kernel, &bound, &[1.0], &Default::default())
    {
        Ok(_) => panic!("a 2.4 MB input was accepted by a device that binds 1 MiB"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, GpuError::ArenaTooLarge { largest: Some((name, _, 2_400_000)), .. } if name == "x"),
        "{err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("take 2400000 bytes")
            && err.contains("`x` of shape [600000]")
            && err.contains("(1048576 bytes)")
            && err.contains("split the batch"),
        "{err}"
    );
    // The same data on the shared device (which binds far more) runs.
    let dev = lossc::gpu::gpu().unwrap();
    let (out, _) = lossc::gpu::Dispatch::new(dev, &kernel, &bound, &[1.0], &Default::default())
        .and_then(|d| d.run(dev))
        .unwrap();
    assert_eq!(out[0], 0.25);
}

/// On llvmpipe, a row per thread by request that would exceed the loop budget (a median
/// of 300 values ranks each against all: 300 · 301 iterations per row) is refused with a
/// hint to share the rows, and shared rows compute the CPU evaluator's number.
#[test]
fn rows_per_thread_over_the_llvmpipe_budget_suggest_shared_rows() {
    let program = check(&[(
        "med.loss",
        "loss med {\n    input x : [R, C]\n    compute (x[r, c] - median(d: x[r, d])) ^ 2\n    reduce mean\n}\n"
            .to_string(),
    )]);
    let terms = [FactoryTerm::plain("med")];
    let data = random_data(&mut Rng(11), 10, 300, false);
    let cpu = run_cpu(&program, &terms, &data, &vec![], &RunOptions::default()).unwrap();
    let kernel = lossc::codegen::compile(&program, "med", &terms).unwrap();
    let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let dev = lossc::gpu::gpu().unwrap();
    let per_thread = lossc::gpu::Dispatch::new(
        dev,
        &kernel,
        &bound,
        &[1.0],
        &lossc::gpu::DispatchOptions {
            placement: RowPlacement::PerThread,
            ..Default::default()
        },
    );
    if dev.is_llvmpipe() {
        let err = per_thread.err().expect("refused on llvmpipe");
        assert!(
            matches!(
                err,
                GpuError::Plan(PlanError::LoopBudget {
                    shared_would_fit: true,
                    ..
                })
            ),
            "{err}"
        );
        let err = err.to_string();
        assert!(
            err.contains("loop iterations")
                && err.contains("--rows shared")
                && err.contains("(the costliest loop: the median of loss `med` at med.loss:3:"),
            "{err}"
        );
    }
    for placement in [RowPlacement::Shared, RowPlacement::Auto] {
        let (out, _) = run_placed(dev, &kernel, &bound, placement).unwrap();
        assert!(
            close(out[0], cpu.losses[0].1.loss),
            "{placement:?}: {} vs {}",
            out[0],
            cpu.losses[0].1.loss
        );
    }
}

/// A factory run again and again through one `RunCache` (as the Python module does):
/// new data of the same shapes builds no plan and gives what a fresh run gives, values
/// and gradients; new shapes, a param value or values-only build one each.
#[test]
fn a_cached_factory_reuses_its_plan_and_reads_new_data() {
    use lossc::runtime::grad::Wrt;
    use lossc::runtime::run::{Backend, run, run_cached};
    let program = check(&[(
        "c.loss",
        "loss a { input x : [N] input y : [N] param s = 1.0 compute s * (x[i] - y[i])^2 reduce mean }\n\
         loss b { input x : [N] compute exp(x[i]) reduce sum }\n"
            .to_string(),
    )]);
    let terms = vec![
        FactoryTerm::plain("a"),
        FactoryTerm {
            annealed: true,
            ..FactoryTerm::plain("b")
        },
    ];
    let cache = lossc::runtime::RunCache::default();
    let mut rng = Rng(7);
    let mut data_of = |n: usize, s: f64| {
        let x: Vec<String> = (0..n).map(|_| format!("{}", rng.unit() - 0.5)).collect();
        let y: Vec<String> = (0..n).map(|_| format!("{}", rng.unit() - 0.5)).collect();
        parse_json_data(&format!(
            "{{\"x\": [{}], \"y\": [{}], \"s\": {s}}}",
            x.join(","),
            y.join(",")
        ))
        .unwrap()
    };
    let mut opts = RunOptions {
        backend: Backend::Gpu,
        wrt: Wrt::EveryInput,
        ..RunOptions::default()
    };
    let mut runs = vec![];
    for (n, s, anneal, wrt) in [
        (50, 1.0, 1.0, true),
        (50, 1.0, 0.5, true),
        (50, 1.0, 0.25, true),
        (7, 1.0, 1.0, true),
        (7, 2.0, 1.0, true),
        (7, 2.0, 1.0, false),
        (50, 1.0, 1.0, true),
    ] {
        let data = data_of(n, s);
        opts.anneal = anneal;
        opts.wrt = if wrt { Wrt::EveryInput } else { Wrt::Nothing };
        let cached = run_cached(&program, "ab", &terms, &data, &vec![], &opts, &cache).unwrap();
        let fresh = run(&program, "ab", &terms, &data, &vec![], &opts).unwrap();
        assert_eq!(cached.total.to_bits(), fresh.total.to_bits(), "n {n}");
        assert_eq!(cached.grads, fresh.grads, "n {n}");
        assert_eq!(cached.grads.len(), if wrt { 2 } else { 0 });
        runs.push(cached.total);
        runs.push(cached.grads.first().map_or(0.0, |g| g.1.data[0]));
    }
    // (50), (7), (7, s = 2), (7, s = 2, values only); the last run reuses the first plan.
    assert_eq!(cache.built(), 4);
    assert_eq!(cache.plans(), 4);
    // Every run read its own data: no two totals or first gradients alike.
    let mut distinct = runs.clone();
    distinct.sort_by(f32::total_cmp);
    distinct.dedup();
    assert_eq!(distinct.len(), runs.len());
}
