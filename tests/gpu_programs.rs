//! Random programs built from the patterns that once made the fused GPU kernel disagree
//! with the CPU evaluator, run on both: a `let` holding a reduction used in several
//! places and at several subscripts, comparisons of reduced values (ranks counted with
//! `sum(k: select(l[k] > l[i], 1, 0))`, a value compared with itself), `select`s with
//! reductions in their branches and inside other reductions, enum params choosing
//! branches, and gathers through an `index` param in branches that ignored targets do
//! not take (and, now and then, a target out of range that a taken branch reads, which
//! must fail alike). Every program runs under each row placement and as the generic
//! kernel. `LOSSC_PROGRAMS=N` runs N programs instead of the default (a long run: more
//! than the default runs each program one way and reports progress);
//! `LOSSC_SEED=S` starts the generator elsewhere. docs/fuzzing.md records the long runs.

mod common;

use common::Rng;
use lossc::diagnostics::Source;
use lossc::gpu::{Dispatch, DispatchOptions, GpuError, KernelForm, PlanError, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Data, parse_json_data};
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

/// The body of the `let l[r]`: a reduction over a row (a median only over short rows:
/// llvmpipe takes a minute over a median of 768 values shared by a workgroup).
fn row_reduction(r: &mut Rng, long: bool) -> String {
    let body = r.pick(&[
        "x[r, q]",
        "x[r, q] * y[r, q]",
        "x[r, q] + y[r, q]",
        "x[r, q] * z[r]",
        "exp(-x[r, q])",
    ]);
    let kind = r.pick(&["mean", "sum", "max", "min", "norm", "median", "mean", "sum"]);
    let kind = if long && kind == "median" {
        "mean"
    } else {
        kind
    };
    format!("{kind}(q: {body})")
}

/// The pieces that gather through `t`.
const GATHERS: [usize; 4] = [7, 8, 9, 10];

/// Piece `k` of `compute`, over the domain (i, j); `long` rows get no median.
fn piece(k: usize, long: bool) -> String {
    match k {
        // The let at the row's own index, and a value compared with itself.
        0 => "x[i, j] * l[i]".into(),
        1 => "sum(k: select(l[k] == l[i], 1, 0))".into(),
        // Ranks by counting, and a top-k written with them.
        2 => "sum(k: select(l[k] > l[i], 1, 0))".into(),
        3 => "select(sum(k: select(l[k] >= l[i], 1, 0)) <= 2, l[i], 0)".into(),
        // Enum params choosing branches that hold reductions, inside reductions too.
        4 => "select(mode == \"a\", sum(k: l[k] * z[k]), x[i, j])".into(),
        5 => "sum(k: select(mode == \"b\", mean(q: x[k, q]), z[k]))".into(),
        6 => "select(mode != \"a\", l[i], mean(q: y[i, q] * l[i]))".into(),
        // Gathers in branches that ignored targets (t = -1) do not take.
        7 => "select(t[i] < 0, 0, y[t[i], j])".into(),
        8 => "select(t[i] < 0, a, sum(q: x[t[i], q] * y[i, q]))".into(),
        9 => "select(t[i] >= 0, mean(q: y[t[i], q]) - l[i], 0)".into(),
        10 => "sum(k: select(t[k] < 0, 0, x[t[k], j] * z[k]))".into(),
        // Selects with reductions in both branches.
        11 => "select(x[i, j] > 0.3, max(q: y[i, q]), min(q: x[i, q] - l[i]))".into(),
        12 if !long => "(l[i] - median(q: x[i, q])) ^ 2".into(),
        12 => "(l[i] - mean(q: x[i, q])) ^ 2".into(),
        _ => "y[i, j] - z[i] * a".into(),
    }
}

/// A random loss over rows of `long` rows or not; with `gather`, one of its pieces reads
/// through the index param `t`.
fn random_program(r: &mut Rng, long: bool, gather: bool) -> String {
    let first = if gather {
        GATHERS[r.below(GATHERS.len())]
    } else {
        r.below(14)
    };
    let mut body = piece(first, long);
    for _ in 0..r.below(3) {
        let op = r.pick(&[" + ", " - ", " * "]);
        body = format!("({body}{op}{})", piece(r.below(14), long));
    }
    // Every program reads x[i, j], so that the domain is (i, j).
    let compute = if r.below(2) == 0 {
        format!("abs({body} + x[i, j])")
    } else {
        format!("({body} - y[i, j]) ^ 2")
    };
    let reduce = if r.below(3) == 0 { "sum" } else { "mean" };
    format!(
        "loss random {{\n    input x : [N, M]\n    input y : [N, M]\n    input z : [N]\n    param t : index[N]\n    param mode : \"a\" | \"b\" = \"a\"\n    param a = 0.25\n    let l[r] = {}\n    compute {compute}\n    reduce {reduce}\n}}\n",
        row_reduction(r, long)
    )
}

/// Data whose rows are far apart (row r near 0.1 r), so that reduced values of
/// different rows never tie within f32 rounding and comparisons of them mean the same on
/// both back ends; about a third of the targets ignored (-1), and with `bad` one target
/// out of range.
fn random_data(r: &mut Rng, n: usize, m: usize, bad: bool) -> Data {
    let noise = |r: &mut Rng| (r.unit() * 2.0 - 1.0) * 0.01;
    let x: Vec<f64> = (0..n * m)
        .map(|k| 0.1 * (k / m) as f64 + noise(r))
        .collect();
    let y: Vec<f64> = (0..n * m)
        .map(|k| 0.5 + 0.05 * (k / m) as f64 + noise(r))
        .collect();
    let z: Vec<f64> = (0..n).map(|_| 0.2 + r.unit() * 0.8).collect();
    let mut t: Vec<i64> = (0..n)
        .map(|_| {
            if r.below(3) == 0 {
                -1
            } else {
                r.below(n) as i64
            }
        })
        .collect();
    if bad {
        let k = r.below(n);
        t[k] = (n + 2) as i64;
    }
    let json = serde_json::json!({
        "x": {"shape": [n, m], "data": x},
        "y": {"shape": [n, m], "data": y},
        "z": z,
        "t": t,
        "mode": if r.below(2) == 0 { "a" } else { "b" },
    });
    parse_json_data(&json.to_string()).unwrap()
}

fn close(gpu: f32, cpu: f32) -> bool {
    (gpu.is_nan() && cpu.is_nan()) || gpu == cpu || (gpu - cpu).abs() <= 1e-4 * cpu.abs().max(1e-3)
}

fn check(text: &str) -> Program {
    let sources = [Source::new("random.loss", text)];
    let c = lossc::sema::check(&sources);
    assert!(!c.has_errors(), "{}\n{text}", c.render(&sources));
    c.program
}

/// Progress of a long run.
fn report(programs: usize, runs: usize, errors: usize, refused: usize, differ: usize) {
    eprintln!(
        "{programs} programs, {runs} GPU runs, {errors} failing alike on purpose, {refused} runs refused, {differ} differ"
    );
}

/// Programs a default test run checks, each under every way.
const DEFAULT_PROGRAMS: usize = 24;

/// The way (an index into the four below) a long run runs its program number `case` in:
/// one program in fifty as the generic kernel, the others under each row placement in
/// turn.
fn long_run_way(case: usize) -> usize {
    if case % 50 == 49 { 3 } else { case % 3 }
}

#[test]
fn random_programs_with_lets_ranks_enums_and_gathers_agree_with_the_cpu() {
    let cases: usize = std::env::var("LOSSC_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PROGRAMS);
    // A long run (more programs than the default) runs each program one way: pipeline
    // compilation, once per way, is most of the cost, and lavapipe compiles a generic
    // kernel in 1 to 5 s where a specialised one takes 0.05 to 0.5 s. So a long run gives
    // the generic kernel one program in fifty (the default run gives it every program).
    // docs/fuzzing.md records the runs and their times.
    let one_way = cases > DEFAULT_PROGRAMS;
    let seed: u64 = std::env::var("LOSSC_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    // Long rows shared by a workgroup (four-wide or not, one chunk or two), short rows
    // one per thread, one row, one column.
    let shapes = [
        (6, 768),
        (5, 783),
        (3, 4100),
        (12, 40),
        (40, 12),
        (1, 7),
        (9, 1),
        (16, 64),
    ];
    let mut r = Rng(seed);
    let dev = lossc::gpu::gpu().unwrap();
    let (mut failures, mut refused, mut errors, mut runs) = (Vec::new(), 0, 0, 0);
    for case in 0..cases {
        let started = std::time::Instant::now();
        let (n, m) = shapes[case % shapes.len()];
        // Every fourth program gathers, with one target out of range.
        let bad = case % 4 == 3;
        let text = random_program(&mut r, m > 100, bad);
        let data = random_data(&mut r, n, m, bad);
        let program = check(&text);
        let terms = [FactoryTerm::plain("random")];
        let cpu = run_cpu(&program, &terms, &data, &vec![], &RunOptions::default())
            .map(|v| v.losses[0].1.loss)
            .map_err(|e| e.to_string());
        errors += usize::from(cpu.is_err());
        let kernel = lossc::codegen::compile(&program, "random", &terms).unwrap();
        let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
        let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
        let placed = |placement| DispatchOptions {
            placement,
            ..Default::default()
        };
        let ways = [
            ("auto", placed(RowPlacement::Auto)),
            ("shared", placed(RowPlacement::Shared)),
            ("per-thread", placed(RowPlacement::PerThread)),
            (
                "generic",
                DispatchOptions {
                    form: KernelForm::Generic,
                    ..Default::default()
                },
            ),
        ];
        let cpu_time = started.elapsed();
        for (k, (how, options)) in ways.into_iter().enumerate() {
            if one_way && k != long_run_way(case) {
                continue;
            }
            let gpu = Dispatch::new(dev, &kernel, &bound, &[1.0], &options)
                .and_then(|d| d.run(dev))
                .map(|(out, _)| out[0]);
            let agree = match (&gpu, &cpu) {
                // A median or a rank over long rows, one thread per row, may exceed
                // llvmpipe's loop budget: refused before it runs, never a wrong number.
                (Err(GpuError::Plan(PlanError::LoopBudget { .. })), _) => {
                    refused += 1;
                    true
                }
                (Ok(g), Ok(c)) => close(*g, *c),
                (Err(g), Err(c)) => g.to_string() == *c,
                _ => false,
            };
            if std::env::var("LOSSC_TIMES").is_ok() {
                eprintln!(
                    "case {case} {n}x{m} {how}: cpu {cpu_time:?} total {:?}",
                    started.elapsed()
                );
            }
            runs += 1;
            if !agree {
                failures.push(format!(
                    "case {case} ({n}x{m}, {how}): gpu {gpu:?} vs cpu {cpu:?}\n{text}"
                ));
            }
        }
        if one_way && (case + 1) % 500 == 0 {
            report(case + 1, runs, errors, refused, failures.len());
        }
    }
    report(cases, runs, errors, refused, failures.len());
    assert!(refused * 2 <= runs, "{refused} of {runs} runs refused");
    assert!(
        failures.is_empty(),
        "{} of {runs} runs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
