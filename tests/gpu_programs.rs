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
use common::programs::{random_data, random_program};
use lossc::diagnostics::Source;
use lossc::gpu::{Dispatch, DispatchOptions, GpuError, KernelForm, PlanError, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

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
