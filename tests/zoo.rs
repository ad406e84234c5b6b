//! The loss zoo (`examples/zoo/*.loss`): common losses from PyTorch, torchvision, MMPose,
//! DeepLabCut, Keras and BasicSR, each checked against the values and autograd gradients
//! PyTorch gives in f32 on random data, `examples/zoo/reference.json`, written by
//! `scripts/reference/zoo.py` and checked in, so that this test needs no PyTorch.
//!
//! Each loss runs alone, on the CPU evaluator and on the GPU (fused forward and backward
//! kernels), with the gradients of the inputs the reference differentiates. The value
//! must be within a relative 1e-5 of torch's, and each gradient element within 1e-4 of
//! the largest finite |g| of that input's reference gradient (NaN where torch gives
//! NaN). The forward and backward WGSL of every zoo loss are insta snapshots.

mod common;

use std::path::PathBuf;

use lossc::codegen;
use lossc::diagnostics::Source;
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::parse_json_data;
use lossc::runtime::grad::{Wrt, compile_backward};
use lossc::runtime::run::{Backend, RunOptions, run};
use serde_json::Value;

/// Every `.loss` file of the zoo, sorted.
fn zoo_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::root().join("examples/zoo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "loss"))
        .collect();
    v.sort();
    v
}

/// A source named by its path relative to the repository root (so that snapshots and
/// messages do not depend on where the checkout lives).
fn source(path: &PathBuf) -> Source {
    let name = path
        .strip_prefix(common::root())
        .unwrap()
        .display()
        .to_string();
    Source::new(name, std::fs::read_to_string(path).unwrap())
}

fn check(sources: &[Source]) -> Program {
    let checked = lossc::sema::check(sources);
    assert!(!checked.has_errors(), "{}", checked.render(sources));
    checked.program
}

/// Every zoo file, checked together as one program.
fn program() -> Program {
    let sources: Vec<Source> = zoo_files().iter().map(source).collect();
    check(&sources)
}

fn reference() -> Value {
    common::read_json(&common::root().join("examples/zoo/reference.json"))
}

use common::json_number as number;

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(number).collect()
}

fn shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// Runs every reference loss on `backend` and returns the disagreements, one line each.
fn failures(backend: Backend) -> Vec<String> {
    let program = program();
    let reference = reference();
    let mut bad = Vec::new();
    for (name, entry) in reference["losses"].as_object().unwrap() {
        let data = parse_json_data(&entry["data"].to_string()).unwrap();
        let grads = entry["grads"].as_object().unwrap();
        let opts = RunOptions {
            backend,
            wrt: Wrt::Inputs(grads.keys().cloned().collect()),
            ..Default::default()
        };
        let terms = [FactoryTerm::plain(name.clone())];
        let r = match run(&program, name, &terms, &data, &vec![], &opts) {
            Ok(r) => r,
            Err(e) => {
                bad.push(format!("{name}: run failed: {e}"));
                continue;
            }
        };
        if backend == Backend::Gpu {
            assert!(r.backend.starts_with("gpu"), "{}", r.backend);
        }
        let want = number(&entry["value"]);
        let got = r.total as f64;
        if !((got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-5 * want.abs()) {
            bad.push(format!("{name}: value {got:e}, torch {want:e}"));
        }
        for (input, g) in grads {
            let Some((_, got)) = r.grads.iter().find(|(n, _)| n == input) else {
                bad.push(format!("{name}: no gradient for `{input}`"));
                continue;
            };
            let want = numbers(&g["data"]);
            if got.shape != shape(&g["shape"]) || got.data.len() != want.len() {
                bad.push(format!(
                    "{name}: d/d{input} has shape {:?}, torch {}",
                    got.shape, g["shape"]
                ));
                continue;
            }
            let scale = want
                .iter()
                .filter(|w| w.is_finite())
                .fold(0.0f64, |m, w| m.max(w.abs()));
            let mut wrong = 0;
            let mut first = String::new();
            for (i, (&a, &w)) in got.data.iter().zip(&want).enumerate() {
                let a = a as f64;
                let ok = if w.is_nan() {
                    a.is_nan()
                } else if w.is_infinite() {
                    a == w
                } else {
                    (a - w).abs() <= 1e-4 * scale
                };
                if !ok {
                    if wrong == 0 {
                        first = format!("[{i}] = {a:e}, torch {w:e}");
                    }
                    wrong += 1;
                }
            }
            if wrong > 0 {
                bad.push(format!(
                    "{name}: d/d{input}: {wrong} of {} elements differ (largest |g| {scale:e}), first {first}",
                    want.len()
                ));
            }
        }
    }
    bad
}

#[test]
fn cpu_agrees_with_pytorch() {
    common::assert_no_disagreements("cpu", &failures(Backend::Cpu));
}

#[test]
fn gpu_agrees_with_pytorch() {
    common::assert_no_disagreements("gpu", &failures(Backend::Gpu));
}

/// Each file checks on its own too, holds one loss named after the file, and has a
/// reference entry; every reference entry names an existing zoo file: no zoo loss goes
/// untested.
#[test]
fn every_zoo_loss_has_a_reference() {
    let reference = reference();
    let losses = reference["losses"].as_object().unwrap();
    let files = zoo_files();
    assert!(files.len() >= 16, "{} zoo files", files.len());
    for path in &files {
        let program = check(&[source(path)]);
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let names: Vec<&str> = program.losses.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, [stem], "{}", path.display());
        let entry = losses
            .get(stem)
            .unwrap_or_else(|| panic!("{}: no entry in reference.json", path.display()));
        assert_eq!(entry["file"], format!("{stem}.loss"));
        assert!(
            !entry["grads"].as_object().unwrap().is_empty(),
            "{stem}: no gradients"
        );
    }
    for (name, entry) in losses {
        let file = entry["file"].as_str().unwrap();
        assert!(
            files.iter().any(|p| p.file_name().unwrap() == file),
            "reference.json: `{name}` names {file}, which is not in examples/zoo"
        );
    }
    assert_eq!(program().losses.len(), files.len());
}

#[test]
fn wgsl_of_every_zoo_loss() {
    let program = program();
    for l in &program.losses {
        let terms = [FactoryTerm::plain(l.name.clone())];
        let k = codegen::compile(&program, &l.name, &terms).unwrap();
        insta::assert_snapshot!(format!("{}.wgsl", l.name), k.wgsl);
    }
}

/// The backward kernel of every zoo loss with respect to every input it reads.
#[test]
fn backward_wgsl_of_every_zoo_loss() {
    let program = program();
    for l in &program.losses {
        let terms = [FactoryTerm::plain(l.name.clone())];
        let compiled = compile_backward(&program, &l.name, &terms, &Wrt::EveryInput).unwrap();
        let mut text = String::new();
        for d in &compiled.terms {
            text.push_str(&format!(
                "// loss {}: d {} / d {}\n",
                d.term, d.loss, d.input
            ));
        }
        text.push_str(&compiled.kernel.wgsl);
        insta::assert_snapshot!(format!("{}.backward.wgsl", l.name), text);
    }
}
