//! The WGSL function library (shaders/functions.wgsl) against the CPU evaluator: every
//! `lc_*` function runs on the GPU over edge values, dense sweeps and the known hard
//! cases (zeros of the result, poles, overflow thresholds), and each output must match
//! `lossc::ir::scalar`'s value: NaN for NaN, the same infinity, and a relative error of
//! at most 1e-5 for a finite normal result (an absolute 2 subnormal ulps for a subnormal
//! or zero one).

use lossc::codegen::wgsl::{PRELUDE, link, set_zero_bits};
use lossc::ir::scalar::{binary, unary};
use lossc::ir::{BinaryFn, UnaryFn};

const REL_TOL: f64 = 1e-5;
const MIN_NORMAL: f32 = f32::MIN_POSITIVE;
const SUBNORMAL_ULP: f64 = 1.401298464324817e-45;
/// Elements per dispatch batch.
const CHUNK: usize = 1 << 20;

/// The kernel computing `out[g] = call` for every element, `call` naming `x[g]` (and
/// `y[g]`), linked with the library and validated by naga.
fn kernel(call: &str, binary: bool) -> String {
    let mut s = String::from(PRELUDE);
    s.push_str("\n@group(0) @binding(0) var<storage, read> xs: array<f32>;\n");
    if binary {
        s.push_str("@group(0) @binding(1) var<storage, read> ys: array<f32>;\n");
    }
    s.push_str("@group(0) @binding(2) var<storage, read_write> out: array<f32>;\n\n");
    s.push_str("@compute @workgroup_size(64)\n");
    s.push_str("fn main(@builtin(global_invocation_id) gid: vec3<u32>, ");
    s.push_str("@builtin(num_workgroups) nw: vec3<u32>) {\n");
    s.push_str(&format!("    {}\n", set_zero_bits("xs")));
    s.push_str("    let g = gid.x + gid.y * nw.x * 64u;\n");
    s.push_str("    if (g >= arrayLength(&out)) {\n        return;\n    }\n");
    s.push_str("    let x = xs[g];\n");
    if binary {
        s.push_str("    let y = ys[g];\n");
    }
    s.push_str(&format!("    out[g] = {call};\n}}\n"));
    let text = link(s);
    if let Err(e) = lossc::codegen::validate::validate(&text) {
        panic!("the kernel for {call} does not validate: {e:?}");
    }
    text
}

/// Runs `call` over `xs` (and `ys`) on the GPU.
fn run(call: &str, xs: &[f32], ys: Option<&[f32]>) -> Vec<f32> {
    use wgpu::util::DeviceExt;
    let gpu = lossc::gpu::gpu().expect("a GPU adapter (lavapipe will do)");
    let d = &gpu.device;
    let text = kernel(call, ys.is_some());
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("function_library"),
        source: wgpu::ShaderSource::Wgsl(text.into()),
    });
    let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("function_library"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let layout = pipeline.get_bind_group_layout(0);
    let mut result = Vec::with_capacity(xs.len());
    for start in (0..xs.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(xs.len());
        let n = end - start;
        let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        let xbuf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("xs"),
            contents: &bytes(&xs[start..end]),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let ybuf = ys.map(|ys| {
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("ys"),
                contents: &bytes(&ys[start..end]),
                usage: wgpu::BufferUsages::STORAGE,
            })
        });
        let size = (n * 4) as u64;
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("out"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: xbuf.as_entire_binding(),
        }];
        if let Some(b) = &ybuf {
            entries.push(wgpu::BindGroupEntry {
                binding: 1,
                resource: b.as_entire_binding(),
            });
        }
        entries.push(wgpu::BindGroupEntry {
            binding: 2,
            resource: out.as_entire_binding(),
        });
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("function_library"),
            layout: &layout,
            entries: &entries,
        });
        let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(n.div_ceil(64) as u32, 1, 1);
        }
        enc.copy_buffer_to_buffer(&out, 0, &staging, 0, None);
        gpu.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        rx.recv().unwrap().unwrap();
        {
            let view = slice.get_mapped_range().unwrap();
            result.extend(
                view.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        staging.unmap();
    }
    result
}

/// The edge values every function sees: zeros, infinities, NaN, the extreme finite
/// magnitudes, ±1 and their neighbours.
fn edges() -> Vec<f32> {
    let mut v = vec![
        0.0,
        f32::INFINITY,
        f32::NAN,
        f32::from_bits(1),
        f32::from_bits(2),
        f32::from_bits(0x007f_ffff),
        MIN_NORMAL,
        f32::from_bits(MIN_NORMAL.to_bits() + 1),
        f32::MAX,
        f32::from_bits(f32::MAX.to_bits() - 1),
        1.0,
        2.0,
        0.5,
        1e-30,
        1e-20,
        1e-10,
        1e-5,
        1e-3,
        1e10,
        1e20,
        1e30,
        std::f32::consts::PI,
        std::f32::consts::FRAC_PI_2,
        std::f32::consts::FRAC_PI_4,
        20.0,
        88.72,
        100.0,
    ];
    for i in 0..v.len() {
        let x = v[i];
        if x.is_finite() && x != 0.0 {
            v.push(f32::from_bits(x.to_bits() + 1));
            v.push(f32::from_bits(x.to_bits() - 1));
        }
    }
    for i in 0..v.len() {
        v.push(-v[i]);
    }
    v
}

/// `n` magnitudes spread evenly on a log scale from 1e-38 to 3e38, both signs.
fn log_sweep(n: usize) -> Vec<f32> {
    let (lo, hi) = (1e-38f64.ln(), 3e38f64.ln());
    let mut v = Vec::with_capacity(2 * n);
    for i in 0..n {
        let x = (lo + (hi - lo) * i as f64 / (n - 1) as f64).exp() as f32;
        v.push(x);
        v.push(-x);
    }
    v
}

/// `n` points evenly over [a, b].
fn lin_sweep(a: f64, b: f64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (a + (b - a) * i as f64 / (n - 1) as f64) as f32)
        .collect()
}

/// The f32s within `k` ulps of `c`.
fn around(c: f32, k: i32) -> Vec<f32> {
    (-k..=k)
        .map(|i| {
            if c > 0.0 {
                f32::from_bits((c.to_bits() as i64 + i as i64) as u32)
            } else if c < 0.0 {
                -f32::from_bits(((-c).to_bits() as i64 + i as i64) as u32)
            } else {
                f32::from_bits(i.unsigned_abs())
            }
        })
        .collect()
}

/// The f32 nearest `t` and both neighbours, for every `t` in `ts`.
fn nearest_three(ts: impl Iterator<Item = f64>) -> Vec<f32> {
    let mut v = Vec::new();
    for t in ts {
        let f = t as f32;
        v.extend(around(f, 1));
    }
    v
}

/// Where the check failed, and the worst relative error seen among the finite normal
/// results.
struct Report {
    name: String,
    max_rel: f64,
    worst_at: String,
    failures: Vec<String>,
    n: usize,
    /// Inputs judged with an absolute allowance (left out of `max_rel`).
    allowed: usize,
    /// Results a GPU that flushes subnormals gives (the CPU's for the operands flushed
    /// to zero, or a subnormal result flushed), accepted.
    flushed: usize,
    /// Zero results whose sign differs from the CPU's (reported, not failed).
    zero_signs: usize,
    zero_sign_examples: Vec<String>,
}

/// Compares GPU outputs with the CPU's; `allowance(a)` is an absolute error accepted
/// besides the relative bound (0 but for digamma below -50).
fn compare(
    name: &str,
    inputs: &[(f32, f32)],
    gpu: &[f32],
    cpu: impl Fn(f32, f32) -> f32,
    binary: bool,
    allowance: impl Fn(f32) -> f64,
) -> Report {
    let mut r = Report {
        name: name.to_string(),
        max_rel: 0.0,
        worst_at: String::new(),
        failures: Vec::new(),
        n: inputs.len(),
        allowed: 0,
        flushed: 0,
        zero_signs: 0,
        zero_sign_examples: Vec::new(),
    };
    for (&(a, b), &g) in inputs.iter().zip(gpu) {
        let c = cpu(a, b);
        let at = || {
            if binary {
                format!("({a:e} [{:#x}], {b:e} [{:#x}])", a.to_bits(), b.to_bits())
            } else {
                format!("{a:e} [{:#x}]", a.to_bits())
            }
        };
        let fail = if c.is_nan() {
            (!g.is_nan()).then(|| format!("{name}{}: gpu {g:e}, cpu NaN", at()))
        } else if c.is_infinite() {
            (g != c).then(|| format!("{name}{}: gpu {g:e}, cpu {c:e}", at()))
        } else if c.abs() < MIN_NORMAL {
            let special = !a.is_finite() || a == 0.0 || binary && (!b.is_finite() || b == 0.0);
            let err = (g as f64 - c as f64).abs();
            if special && g != c || g.is_nan() || err > 2.0 * SUBNORMAL_ULP {
                Some(format!(
                    "{name}{}: gpu {g:e}, cpu {c:e} (subnormal or zero)",
                    at()
                ))
            } else {
                None
            }
        } else {
            let rel = ((g as f64 - c as f64) / c as f64).abs();
            let allowed = allowance(a);
            if allowed > 0.0 {
                r.allowed += 1;
            } else if rel.is_nan() || rel > r.max_rel {
                r.max_rel = if rel.is_nan() { f64::INFINITY } else { rel };
                r.worst_at = format!("{} (gpu {g:e}, cpu {c:e})", at());
            }
            let ok = rel <= REL_TOL || (g as f64 - c as f64).abs() <= allowed;
            (!ok).then(|| format!("{name}{}: gpu {g:e}, cpu {c:e}, rel {rel:.2e}", at()))
        };
        if fail.is_none() && g == 0.0 && c == 0.0 && g.is_sign_negative() != c.is_sign_negative() {
            r.zero_signs += 1;
            if r.zero_signs <= 3 {
                r.zero_sign_examples
                    .push(format!("{}: gpu {g:e}, cpu {c:e}", at()));
            }
        }
        // WGSL lets a GPU flush subnormal operands and results to zero (NVIDIA's
        // drivers do): a result that is the CPU's for the operands flushed, or a
        // subnormal result flushed, is that, not a failure.
        let flushed = fail.is_some() && {
            let c0 = cpu(flush(a), flush(b));
            let subnormal_in = is_subnormal(a) || binary && is_subnormal(b);
            (subnormal_in && close_to(g, c0)) || (is_subnormal(c) && g == 0.0)
        };
        if flushed {
            r.flushed += 1;
        } else if let Some(f) = fail {
            r.failures.push(f);
        }
    }
    r
}

fn is_subnormal(x: f32) -> bool {
    x != 0.0 && x.abs() < MIN_NORMAL
}

/// `x`, or a zero of its sign when it is subnormal.
fn flush(x: f32) -> f32 {
    if is_subnormal(x) {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// NaN for NaN, the same infinity, or within the relative tolerance (2 subnormal ulps
/// below the normal range).
fn close_to(g: f32, c: f32) -> bool {
    if c.is_nan() || c.is_infinite() {
        return (g.is_nan() && c.is_nan()) || g == c;
    }
    let err = (g as f64 - c as f64).abs();
    if c.abs() < MIN_NORMAL {
        err <= 2.0 * SUBNORMAL_ULP
    } else {
        err <= REL_TOL * (c as f64).abs()
    }
}

fn unary_case(name: &str, f: UnaryFn, xs: Vec<f32>) -> Report {
    unary_case_with(name, f, xs, |_| 0.0)
}

/// [`unary_case`] with an absolute error `allowance(x)` accepted besides the relative bound.
fn unary_case_with(name: &str, f: UnaryFn, xs: Vec<f32>, allowance: impl Fn(f32) -> f64) -> Report {
    let t = std::time::Instant::now();
    let gpu = run(&format!("{name}(x)"), &xs, None);
    let t_gpu = t.elapsed().as_secs_f64();
    let inputs: Vec<(f32, f32)> = xs.iter().map(|&x| (x, 0.0)).collect();
    let r = compare(name, &inputs, &gpu, |a, _| unary(f, a), false, allowance);
    eprintln!(
        "  ({name}: gpu {t_gpu:.1} s, total {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    r
}

fn binary_case(name: &str, f: BinaryFn, pairs: Vec<(f32, f32)>) -> Report {
    let xs: Vec<f32> = pairs.iter().map(|p| p.0).collect();
    let ys: Vec<f32> = pairs.iter().map(|p| p.1).collect();
    let gpu = run(&format!("{name}(x, y)"), &xs, Some(&ys));
    compare(name, &pairs, &gpu, |a, b| binary(f, a, b), true, |_| 0.0)
}

/// Edge values, a log sweep both signs, and a dense linear sweep over [-a, a].
fn common(a: f64) -> Vec<f32> {
    let mut v = edges();
    v.extend(log_sweep(60_000));
    v.extend(lin_sweep(-a, a, 100_001));
    v
}

fn gamma_family_inputs() -> Vec<f32> {
    let mut v = common(60.0);
    v.extend(lin_sweep(-50.0, 0.0, 200_001));
    v.extend(lin_sweep(0.0, 4.0, 40_001));
    for c in [1.0f32, 2.0, 1.461_632_2, 0.5, 3.0] {
        v.extend(around(c, 1000));
    }
    // The poles and their neighbourhoods, down to -60.
    for n in 0..=60 {
        let p = -(n as f32);
        v.extend(around(p, 30));
        v.push(p + 1e-3);
        v.push(p - 1e-3);
    }
    v
}

/// The roots of digamma between its negative poles, down to -50, in f64.
fn digamma_negative_roots() -> Vec<f64> {
    let psi = |x: f64| lossc::ir::special::digamma(x);
    let mut roots = Vec::new();
    for n in 0..50 {
        // ψ rises from -inf just right of -(n+1) to +inf just left of -n.
        let (mut lo, mut hi) = (-(n as f64) - 1.0 + 1e-12, -(n as f64) - 1e-12);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if psi(mid) < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        roots.push(0.5 * (lo + hi));
    }
    roots
}

#[test]
fn every_library_function_matches_the_cpu() {
    let t0 = std::time::Instant::now();
    if lossc::gpu::gpu().is_err() {
        eprintln!("no GPU adapter: skipped");
        return;
    }
    let mut reports = Vec::new();
    let only = std::env::var("LC_ONLY").ok();
    let want = |n: &str| only.as_deref().is_none_or(|o| o.split(',').any(|w| w == n));

    let simple = [
        ("lc_sign", UnaryFn::Sign, 100.0),
        ("lc_log1p", UnaryFn::Log1p, 4.0),
        ("lc_expm1", UnaryFn::Expm1, 100.0),
        ("lc_sigmoid", UnaryFn::Sigmoid, 120.0),
        ("lc_logsigmoid", UnaryFn::LogSigmoid, 120.0),
        ("lc_softplus", UnaryFn::Softplus, 120.0),
        ("lc_tanh", UnaryFn::Tanh, 12.0),
        ("lc_atan", UnaryFn::Atan, 10.0),
        ("lc_erf", UnaryFn::Erf, 6.0),
    ];
    for (name, f, a) in simple {
        if !want(name) {
            continue;
        }
        let mut xs = common(a);
        xs.extend(lin_sweep(-1.0, 1.0, 20_001));
        xs.extend(lin_sweep(-1e-3, 1e-3, 2001));
        if f == UnaryFn::Expm1 {
            xs.extend(around(88.722_83, 200));
        }
        if f == UnaryFn::Log1p {
            xs.extend(around(-1.0, 200));
            xs.extend(lin_sweep(-1.0, -0.9, 10_001));
        }
        reports.push(unary_case(name, f, xs));
    }

    if want("lc_atan2") || want("lc_xlogy") {
        let mut special = edges();
        special.extend([3.0, -7.5, 1e-40, 1e38, 0.7]);
        let mut pairs = Vec::new();
        for &a in &special {
            for &b in &special {
                pairs.push((a, b));
            }
        }
        let sweep = log_sweep(400);
        for &a in &sweep {
            for (k, &b) in sweep.iter().enumerate() {
                if k % 2 == 0 {
                    pairs.push((a, b));
                }
            }
        }
        // y near 1 for xlogy, x near y (angles near pi/4) for atan2.
        for (i, &y) in around(1.0, 2000).iter().enumerate() {
            pairs.push(((i as f32) * 0.37 - 300.0, y));
        }
        if want("lc_atan2") {
            reports.push(binary_case("lc_atan2", BinaryFn::Atan2, pairs.clone()));
        }
        if want("lc_xlogy") {
            reports.push(binary_case("lc_xlogy", BinaryFn::Xlogy, pairs));
        }
    }

    // sin and cos: the f32s nearest k*pi/2 and their neighbours, up to 1e5, all held to
    // the relative bound.
    let kmax = (1e5 / std::f64::consts::FRAC_PI_2) as i64;
    for (name, f) in [("lc_sin", UnaryFn::Sin), ("lc_cos", UnaryFn::Cos)] {
        if !want(name) {
            continue;
        }
        let mut xs = common(100.0);
        xs.extend(lin_sweep(-1e5, 1e5, 200_001));
        let mut hard = nearest_three((1..=kmax).map(|k| k as f64 * std::f64::consts::FRAC_PI_2));
        // Beyond 1e5 (where any value in [-1, 1] would do) the reduction is exact all the
        // same: a sample of the same hard cases up to 1e8.
        hard.extend(nearest_three(
            (kmax..64_000_000)
                .step_by(1013)
                .map(|k| k as f64 * std::f64::consts::FRAC_PI_2),
        ));
        xs.extend(hard.iter().flat_map(|&x| [x, -x]));
        reports.push(unary_case(name, f, xs));
    }

    for (name, f) in [
        ("lc_lgamma", UnaryFn::Lgamma),
        ("lc_digamma", UnaryFn::Digamma),
        ("lc_trigamma", UnaryFn::Trigamma),
    ] {
        if !want(name) {
            continue;
        }
        let mut xs = gamma_family_inputs();
        if f == UnaryFn::Digamma {
            for r in digamma_negative_roots() {
                xs.extend(around(r as f32, 1000));
            }
        }
        if f == UnaryFn::Lgamma {
            xs.extend(lin_sweep(1e30, 3e38, 1001));
            xs.extend(lin_sweep(-1e7, -1e30, 1001));
        }
        // Below -50, beyond lc_digamma's table of roots, digamma near a root is the
        // difference of psi(1 - x) and pi cot(pi x), each about log(1 - x) in size and
        // each rounded in f32: an absolute 1e-6 log(1 - x) is accepted there.
        let allowance = move |x: f32| {
            if f == UnaryFn::Digamma && x < -50.0 {
                1e-6 * (1.0 - x as f64).ln()
            } else {
                0.0
            }
        };
        reports.push(unary_case_with(name, f, xs, allowance));
    }

    let mut failed = false;
    for r in &reports {
        eprintln!(
            "{:14} {:8} inputs: max rel error {:.2e} at {}; {} failures{}",
            r.name,
            r.n,
            r.max_rel,
            r.worst_at,
            r.failures.len(),
            if r.allowed > 0 {
                format!(" ({} inputs judged with the absolute allowance)", r.allowed)
            } else {
                String::new()
            }
        );
        if r.flushed > 0 {
            eprintln!(
                "{:14} {} results as a GPU that flushes subnormals gives them",
                "", r.flushed
            );
        }
        for f in r.failures.iter().take(12) {
            eprintln!("    {f}");
        }
        if r.zero_signs > 0 {
            eprintln!(
                "    {} zero results with the other sign than the CPU's, e.g. {}",
                r.zero_signs,
                r.zero_sign_examples.join("; ")
            );
        }
        failed |= !r.failures.is_empty();
    }
    eprintln!("function_library: {:.1} s", t0.elapsed().as_secs_f64());
    assert!(!failed, "library functions disagree with the CPU evaluator");
}
