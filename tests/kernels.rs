//! The fused kernels: insta snapshots of the generated WGSL and manifest of every example
//! loss and of the example factories, and every snapshotted factory kernel also run on the
//! GPU and compared with the CPU evaluator and Lightning Pose's numbers.

mod common;

use lossc::codegen;
use lossc::diagnostics::Source;
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::parse_json_data;
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

/// The examples, named by their paths relative to the repository root (so snapshots do
/// not depend on where the checkout lives).
fn program() -> Program {
    let mut files: Vec<String> = common::example_files()
        .iter()
        .map(|p| {
            p.strip_prefix(common::root())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    files.push("examples/factories.loss".into());
    let sources: Vec<Source> = files
        .iter()
        .map(|f| {
            Source::new(
                f.clone(),
                std::fs::read_to_string(common::root().join(f)).unwrap(),
            )
        })
        .collect();
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program
}

#[test]
fn wgsl_and_manifest_of_every_example_loss() {
    let program = program();
    for l in &program.losses {
        let terms = [FactoryTerm::plain(l.name.clone())];
        let k = codegen::compile(&program, &l.name, &terms).unwrap();
        insta::assert_snapshot!(format!("{}.wgsl", l.name), k.wgsl);
        let manifest =
            serde_json::to_string_pretty(&codegen::manifest::manifest(&program, &k)).unwrap();
        insta::assert_snapshot!(format!("{}.manifest", l.name), manifest);
    }
}

#[test]
fn wgsl_and_manifest_of_the_example_factories() {
    let program = program();
    assert!(program.factories.len() >= 2);
    for f in &program.factories {
        let k = codegen::compile(&program, &f.name, &f.terms).unwrap();
        insta::assert_snapshot!(format!("{}.wgsl", f.name), k.wgsl);
        let manifest =
            serde_json::to_string_pretty(&codegen::manifest::manifest(&program, &k)).unwrap();
        insta::assert_snapshot!(format!("{}.manifest", f.name), manifest);
    }
}

/// The backward kernel of every example loss with respect to every input it reads, and
/// of the example factories: generated WGSL, reviewable as snapshots (validated by naga
/// as they are compiled; run against the CPU and Lightning Pose's gradients in
/// `tests/conformance.rs` and `tests/gradients.rs`).
#[test]
fn backward_wgsl_of_every_example_loss_and_factory() {
    use lossc::runtime::grad::{Wrt, compile_backward};
    let program = program();
    let mut kernels: Vec<(String, Vec<FactoryTerm>)> = program
        .losses
        .iter()
        .map(|l| (l.name.clone(), vec![FactoryTerm::plain(l.name.clone())]))
        .collect();
    kernels.extend(
        program
            .factories
            .iter()
            .map(|f| (f.name.clone(), f.terms.clone())),
    );
    for (name, terms) in kernels {
        let compiled = compile_backward(&program, &name, &terms, &Wrt::EveryInput).unwrap();
        let (k, described) = (&compiled.kernel, &compiled.terms);
        let mut text = String::new();
        for d in described {
            text.push_str(&format!(
                "// loss {}: d {} / d {}\n",
                d.term, d.loss, d.input
            ));
        }
        text.push_str(&k.wgsl);
        insta::assert_snapshot!(format!("{name}.backward.wgsl"), text);
    }
}

/// Runs a factory kernel on the GPU and on the CPU; both must match `expected_total`.
fn check_factory(program: &Program, name: &str, data_json: &str, expected_total: f32) {
    let f = program.factories.iter().find(|f| f.name == name).unwrap();
    let data = parse_json_data(data_json).unwrap();
    let opts = RunOptions::default();
    let cpu = run_cpu(program, &f.terms, &data, &vec![], &opts).unwrap();
    let k = codegen::compile(program, name, &f.terms).unwrap();
    let (prepared, _) = prepare(program, &f.terms, &data, &vec![]).unwrap();
    let gpu = lossc::runtime::run::run_gpu(&k, &prepared, &opts).unwrap();
    assert_eq!(gpu.dispatches, 1);
    // The snapshotted (generic) kernel itself, its parameter block filled as a host
    // following the manifest fills it.
    let dev = lossc::gpu::gpu().unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let anneal: Vec<f32> = prepared
        .iter()
        .map(|p| if p.annealed { opts.anneal } else { 1.0 })
        .collect();
    let (generic, _) = lossc::gpu::Dispatch::new(
        dev,
        &k,
        &bound,
        &anneal,
        &lossc::gpu::DispatchOptions {
            form: lossc::gpu::KernelForm::Generic,
            ..Default::default()
        },
    )
    .unwrap()
    .run(dev)
    .unwrap();
    let total = generic[3 * prepared.len()];
    assert!(
        (total - expected_total).abs() <= 1e-5 * expected_total.abs(),
        "{name} generic: {total} vs {expected_total}"
    );
    for (got, what) in [(cpu.total, "cpu"), (gpu.total, "gpu")] {
        assert!(
            (got - expected_total).abs() <= 1e-5 * expected_total.abs(),
            "{name} on {what}: {got} vs {expected_total}"
        );
    }
    for ((n, c), (_, g)) in cpu.losses.iter().zip(&gpu.losses) {
        assert!(
            (c.loss - g.loss).abs() <= 1e-5 * c.loss.abs(),
            "{name}/{n}: gpu {} vs cpu {}",
            g.loss,
            c.loss
        );
    }
}

#[test]
fn the_example_factories_run_on_the_gpu_as_on_the_cpu() {
    let program = program();
    // Lightning Pose's total on the demo data (loss_factory/heatmap_mse+temporal+pca_singleview).
    let demo = std::fs::read_to_string(common::root().join("examples/demo.json")).unwrap();
    check_factory(&program, "heatmap_semisupervised", &demo, 6.134348);
    // The same parameters as loss_factory/heatmap_kl+temporal_heatmap_mse: total 0.83003676.
    let suite = common::read_json(&common::root().join("tests/conformance/loss_factory.json.gz"));
    let case = suite["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "loss_factory/heatmap_kl+temporal_heatmap_mse/anneal_1.0")
        .unwrap();
    let data = serde_json::to_string(&case["inputs"]).unwrap();
    check_factory(&program, "heatmap_kl_temporal", &data, 0.83003676);
}
