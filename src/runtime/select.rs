//! What a command runs: the terms of a kernel from `--losses`, `--factory` or the files
//! alone, and how a dispatch of a kernel is laid out on data (`lossc explain --data`).

use super::RunError;
use super::data::Data;
use super::run::{Overrides, prepare};
use crate::codegen::Kernel;
use crate::gpu::{Adapter, RowPlacement};
use crate::ir::{FactoryTerm, Program};

/// The factory called `name`: its name and terms.
fn factory(program: &Program, name: &str) -> Result<(String, Vec<FactoryTerm>), RunError> {
    let f = program
        .factories
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = program.factories.iter().map(|f| f.name.as_str()).collect();
            RunError::NoSuchFactory {
                name: name.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })?;
    Ok((f.name.clone(), f.terms.clone()))
}

/// The one kernel `lossc run` evaluates: `--losses` (those in `annealed` annealed), else
/// `--factory`, else the files' only factory, else their only loss.
pub fn run_terms(
    program: &Program,
    losses: &[String],
    annealed: &[String],
    factory_name: Option<&str>,
) -> Result<(String, Vec<FactoryTerm>), RunError> {
    if let Some(a) = annealed.iter().find(|a| !losses.contains(a)) {
        return Err(RunError::Usage(format!(
            "--annealed names `{a}`, which is not in --losses"
        )));
    }
    if !losses.is_empty() {
        let terms = losses
            .iter()
            .map(|l| FactoryTerm {
                annealed: annealed.contains(l),
                ..FactoryTerm::plain(l)
            })
            .collect();
        return Ok((losses.join("+"), terms));
    }
    if let Some(name) = factory_name {
        return factory(program, name);
    }
    match (&program.factories[..], &program.losses[..]) {
        ([f], _) => Ok((f.name.clone(), f.terms.clone())),
        ([], [l]) => Ok((l.name.clone(), vec![FactoryTerm::plain(&l.name)])),
        _ => Err(RunError::Usage(
            "several losses are defined: choose with --losses NAME[,NAME...] or --factory NAME"
                .into(),
        )),
    }
}

/// The kernels `lossc compile` and `lossc explain` write: one for `--losses`, one for
/// `--factory`, else one per factory and one per loss.
pub fn kernel_terms(
    program: &Program,
    losses: &[String],
    factory_name: Option<&str>,
) -> Result<Vec<(String, Vec<FactoryTerm>)>, RunError> {
    if !losses.is_empty() {
        return Ok(vec![(
            losses.join("+"),
            losses.iter().map(FactoryTerm::plain).collect(),
        )]);
    }
    if let Some(name) = factory_name {
        return Ok(vec![factory(program, name)?]);
    }
    let mut out: Vec<_> = program
        .factories
        .iter()
        .map(|f| (f.name.clone(), f.terms.clone()))
        .collect();
    out.extend(
        program
            .losses
            .iter()
            .map(|l| (l.name.clone(), vec![FactoryTerm::plain(&l.name)])),
    );
    Ok(out)
}

/// How a dispatch of `kernel` on `data` is laid out on `adapter`, in words.
pub fn describe_layout(
    program: &Program,
    kernel: &Kernel,
    data: &Data,
    overrides: &Overrides,
    adapter: &Adapter,
    rows: RowPlacement,
) -> Result<String, RunError> {
    let (prepared, _) = prepare(program, &kernel.terms, data, overrides)?;
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let plan = crate::gpu::plan::plan(adapter, kernel, &bound, rows)
        .map_err(crate::gpu::GpuError::from)?;
    Ok(crate::gpu::plan::describe(&plan, kernel, &bound))
}
