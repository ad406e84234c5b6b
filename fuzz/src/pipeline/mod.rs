//! The differential target: a generated well-typed program ([`program`]) and matching
//! data ([`data`]) run through `lossc::runtime::run` on the CPU evaluator and on the GPU
//! kernel, which must agree: both the same error, or both numbers within the tolerance
//! the program's own rounding allows ([`mag`]), NaN equal to NaN.
//!
//! A [`Case`]'s `Debug` output is its reproducer: the `.loss` file, the JSON data and
//! the run's options (`cargo fuzz fmt pipeline ARTIFACT` prints it).

mod data;
mod expr;
pub mod mag;
mod program;

use std::fmt;

use arbitrary::{Arbitrary, Unstructured};

use lossc::codegen::CompileError;
use lossc::diagnostics::Source;
use lossc::gpu::{GpuError, PlanError, RowPlacement};
use lossc::ir::FactoryTerm;
use lossc::runtime::run::{Backend, RunOptions, RunResult};
use lossc::runtime::{RunError, run};

use mag::Mag;

/// One differential test: a program, its data, and how to run it.
pub struct Case {
    /// The `.loss` file.
    pub program: String,
    /// The JSON data file.
    pub data: String,
    /// The factory or loss to run.
    pub run: String,
    /// How the GPU kernel places rows.
    pub rows: RowPlacement,
    /// The anneal factor.
    pub anneal: f32,
    /// Per loss of the run, in order: the magnitudes of its loss and its weight.
    mags: Vec<(Mag, Mag)>,
}

impl<'a> Arbitrary<'a> for Case {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let generated = program::program(u);
        let names: Vec<String> = generated.losses.iter().map(|l| l.name.clone()).collect();
        let data = data::data(u, names.len());
        let rows = *u.choose(&[
            RowPlacement::Auto,
            RowPlacement::Shared,
            RowPlacement::PerThread,
        ])?;
        // An anneal factor of 0 is a literal of the specialised kernel (expr::open).
        let annealing: &[f32] = if expr::open::FOLDED_SPECIALS {
            &[1.0, 0.5, 0.25, 0.0]
        } else {
            &[1.0, 0.5, 0.25]
        };
        let anneal = *u.choose(annealing)?;
        let run = if generated.factory.is_some() {
            "fz".to_string()
        } else {
            names[0].clone()
        };
        Ok(Case {
            program: generated.text(),
            data,
            run,
            rows,
            anneal,
            mags: generated
                .losses
                .iter()
                .map(|l| (l.loss, l.weight))
                .collect(),
        })
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "// lossc run case.loss --data case.json {} {} --anneal {} --rows {}\n{}\n// case.json\n{}\n",
            if self.run == "fz" {
                "--factory"
            } else {
                "--losses"
            },
            self.run,
            self.anneal,
            match self.rows {
                RowPlacement::Auto => "auto",
                RowPlacement::Shared => "shared",
                RowPlacement::PerThread => "per-thread",
            },
            self.program,
            self.data
        )
    }
}

/// Runs the case on both back ends and panics, with the reproducer, where they differ.
pub fn check(case: &Case) {
    let sources = [Source::new("case.loss", case.program.as_str())];
    let checked = lossc::sema::check(&sources);
    assert!(
        !checked.has_errors(),
        "a generated program does not check:\n{}\n{case:?}",
        checked.render(&sources)
    );
    let program = &checked.program;
    let terms: Vec<FactoryTerm> = match program.factories.iter().find(|f| f.name == case.run) {
        Some(f) => f.terms.clone(),
        None => vec![FactoryTerm::plain(case.run.clone())],
    };
    let data = lossc::runtime::data::parse_json_data(&case.data)
        .unwrap_or_else(|e| panic!("generated data does not read: {e}\n{case:?}"));
    let on = |backend| {
        let opts = RunOptions {
            rows: case.rows,
            anneal: case.anneal,
            backend,
            ..RunOptions::default()
        };
        run(program, &case.run, &terms, &data, &vec![], &opts)
    };
    let cpu = on(Backend::Cpu);
    let gpu = on(Backend::Gpu);
    match (&cpu, &gpu) {
        (Ok(c), Ok(g)) => {
            if let Some(what) = differs(c, g, &case.mags, case.anneal, &terms) {
                panic!("the back ends differ: {what}\n{case:?}");
            }
        }
        // The same input is refused by both, with the same error: the same failed read,
        // in the same words.
        (Err(c), Err(g)) => {
            let (c, g) = (c.to_string(), g.to_string());
            if c != g {
                panic!("the back ends refuse differently:\ncpu: {c}\ngpu: {g}\n{case:?}");
            }
        }
        // llvmpipe's loop budget is a property of the adapter, WGSL's limit on nested
        // blocks one of the GPU back end: `--backend auto` runs these on the CPU.
        (Ok(_), Err(RunError::Gpu(GpuError::Plan(PlanError::LoopBudget { .. }))))
        | (Ok(_), Err(RunError::Compile(CompileError::TooDeep { .. }))) => {}
        _ => panic!(
            "one back end fails: cpu {}, gpu {}\n{case:?}",
            describe(&cpu),
            describe(&gpu)
        ),
    }
}

fn describe(r: &Result<RunResult, RunError>) -> String {
    match r {
        Ok(r) => format!("total {}", r.total),
        Err(e) => format!("error: {e}"),
    }
}

/// One ulp of `v`'s magnitude, the rounding of a product or a sum of results.
fn ulp(v: f32) -> f64 {
    let v = v.abs();
    if !v.is_finite() || v == 0.0 {
        return 0.0;
    }
    (f32::from_bits(v.to_bits() + 1) - v) as f64
}

/// Whether `gpu` is `cpu` within `tol` (NaN = NaN; infinities exactly).
fn close(cpu: f32, gpu: f32, tol: f64) -> bool {
    if cpu.is_nan() || gpu.is_nan() {
        return cpu.is_nan() && gpu.is_nan();
    }
    if cpu.is_infinite() || gpu.is_infinite() {
        return cpu == gpu;
    }
    (cpu as f64 - gpu as f64).abs() <= tol
}

/// The first number the GPU gives that the CPU does not, described.
fn differs(
    cpu: &RunResult,
    gpu: &RunResult,
    mags: &[(Mag, Mag)],
    anneal: f32,
    terms: &[FactoryTerm],
) -> Option<String> {
    let mut total_tol = 0.0;
    for (((name, c), (_, g)), ((loss, weight), term)) in cpu
        .losses
        .iter()
        .zip(&gpu.losses)
        .zip(mags.iter().zip(terms))
    {
        let (tl, tw) = (loss.tolerance(), weight.tolerance());
        // weighted = weight · loss, rounded once (the kernel may fuse the products).
        let tp =
            c.weight.abs() as f64 * tl + c.loss.abs() as f64 * tw + tl * tw + 2.0 * ulp(c.weighted);
        for (what, cv, gv, tol) in [
            ("loss", c.loss, g.loss, tl),
            ("weight", c.weight, g.weight, tw),
            ("weighted", c.weighted, g.weighted, tp),
        ] {
            if !close(cv, gv, tol) {
                return Some(format!(
                    "`{name}` {what}: cpu {cv:e}, gpu {gv:e} (tolerance {tol:e})"
                ));
            }
        }
        let a = if term.annealed { anneal as f64 } else { 1.0 };
        total_tol += a * tp + 2.0 * ulp(c.weighted);
    }
    total_tol += 2.0 * ulp(cpu.total);
    (!close(cpu.total, gpu.total, total_tol)).then(|| {
        format!(
            "total: cpu {:e}, gpu {:e} (tolerance {total_tol:e})",
            cpu.total, gpu.total
        )
    })
}
