//! The WGSL back end: one fused compute kernel per factory ([`emit`]), scheduled per loss
//! ([`schedule`]), written through a structured writer ([`writer`]) in the spellings of
//! [`wgsl`], with its parameter block ([`layout`]) and its bindings ([`bindings`]); every
//! module is validated by naga ([`validate`]) before it is written or run, and described
//! by a manifest ([`manifest`]).

pub mod bindings;
pub mod emit;
pub mod layout;
pub mod schedule;
pub mod validate;
pub mod wgsl;
pub mod writer;

use crate::ir::{FactoryTerm, LossIr, Program};
use layout::Layout;
use schedule::LossSchedule;

/// A compiled, validated kernel for a factory (or a single loss).
pub struct Kernel {
    /// Its name (the factory's, or the loss's).
    pub name: String,
    /// The WGSL text.
    pub wgsl: String,
    /// Its parameter slots.
    pub layout: Layout,
    /// Bounds-checked read sites, by number (1-based), for error messages.
    pub sites: Vec<String>,
    /// The losses, in factory order, with whether each is annealed.
    pub terms: Vec<FactoryTerm>,
    /// Each loss's schedule.
    pub schedules: Vec<LossSchedule>,
    /// naga's validated module (for the other targets).
    pub validated: validate::Validated,
}

impl Kernel {
    /// The kernel's WGSL specialised to one problem: every slot of the parameter block
    /// (sizes, offsets, work counts) written as a literal, so that the shader compiler
    /// folds the index arithmetic. Same layout, same bindings; validated by naga.
    pub fn specialise(&self, losses: &[&LossIr], values: &[i32]) -> Result<String, String> {
        let pairs: Vec<(&LossIr, &LossSchedule)> =
            losses.iter().copied().zip(self.schedules.iter()).collect();
        let generated = emit::generate(&self.name, &pairs, Some(values))?;
        if generated.layout.slots != self.layout.slots {
            return Err("internal compiler error: the specialised kernel's slots differ from the generic one's".into());
        }
        validate::validate(&generated.wgsl)?;
        Ok(generated.wgsl)
    }
}

/// Schedules, generates and validates the fused kernel of the given terms.
pub fn compile(program: &Program, name: &str, terms: &[FactoryTerm]) -> Result<Kernel, String> {
    let losses: Vec<&LossIr> = terms
        .iter()
        .map(|t| {
            program
                .loss(&t.loss)
                .ok_or_else(|| format!("no loss named `{}`", t.loss))
        })
        .collect::<Result<_, _>>()?;
    let schedules: Vec<LossSchedule> = losses.iter().map(|l| schedule::schedule(l)).collect();
    let pairs: Vec<(&LossIr, &LossSchedule)> =
        losses.iter().copied().zip(schedules.iter()).collect();
    let generated = emit::generate(name, &pairs, None)?;
    let validated = validate::validate(&generated.wgsl)?;
    Ok(Kernel {
        name: name.to_string(),
        wgsl: generated.wgsl,
        layout: generated.layout,
        sites: generated.sites,
        terms: terms.to_vec(),
        schedules,
        validated,
    })
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::Source;
    use crate::ir::FactoryTerm;

    fn examples() -> crate::ir::Program {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lightning_pose");
        let mut sources: Vec<Source> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                Source::new(
                    p.file_name().unwrap().to_string_lossy(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        let checked = crate::sema::check(&sources);
        assert!(!checked.has_errors());
        checked.program
    }

    #[test]
    fn every_example_compiles_to_valid_wgsl() {
        let program = examples();
        for l in &program.losses {
            let term = FactoryTerm::plain(l.name.clone());
            if let Err(e) = super::compile(&program, &l.name, &[term]) {
                panic!("{}: {}", l.name, &e[..e.len().min(4000)]);
            }
        }
    }
}

pub mod manifest;

/// `lossc explain`: how each loss of a kernel is scheduled, and how often each input is
/// read (the rule is once per dispatch).
pub fn explain(program: &Program, k: &Kernel) -> String {
    let mut out = format!(
        "kernel {}: {} loss(es), one dispatch\n",
        k.name,
        k.terms.len()
    );
    for (t, s) in k.terms.iter().zip(&k.schedules) {
        if let Some(ir) = program.loss(&t.loss) {
            out.push_str(&schedule::explain(ir, s));
            out.push_str(&reads(ir, s));
        }
    }
    out
}

/// The indices in scope where each node runs, from the per-element stages down: the
/// domain's, an enclosing reduction's, or, under a hoisted table, the table's own free
/// indices and its reduction's. A node under a table that is not built has none, and so
/// has one only under the untaken branch of a `select` on enum params whose variants
/// `enums` gives (per param; empty when unknown), as in a kernel specialised to them.
fn scopes(
    ir: &LossIr,
    s: &LossSchedule,
    enums: &[Option<String>],
) -> std::collections::HashMap<petgraph::stable_graph::NodeIndex, std::collections::BTreeSet<usize>>
{
    use std::collections::{BTreeSet, HashMap};

    use petgraph::algo::toposort;
    use petgraph::stable_graph::NodeIndex;

    use crate::ir::{Op, operands};
    let mut scope: HashMap<NodeIndex, BTreeSet<usize>> = HashMap::new();
    let mut roots = vec![ir.compute];
    roots.extend(ir.masks.iter().map(|m| m.cond));
    roots.extend(ir.rectify);
    for r in roots {
        scope
            .entry(r)
            .or_default()
            .extend(ir.domain.iter().copied());
    }
    let mut order = toposort(&ir.graph, None).unwrap_or_default();
    order.reverse(); // users before operands
    for n in order {
        let Some(here) = scope.get(&n).cloned() else {
            continue;
        };
        let mut args = operands(&ir.graph, n);
        if matches!(ir.graph[n].op, Op::Select) {
            if let Some(taken) = known_truth(ir, args[0], enums) {
                args = vec![args[0], if taken { args[1] } else { args[2] }];
            }
        }
        let inner: BTreeSet<usize> = match &ir.graph[n].op {
            // A table equal to an earlier one is not built: nothing under it is read.
            Op::Reduce(..)
                if s.hoisted_index(n)
                    .is_some_and(|k| s.hoisted[k].same_as.is_some()) =>
            {
                continue;
            }
            // A hoisted table is computed once per value of its own free indices.
            Op::Reduce(_, bound) if s.hoisted_index(n).is_some() => {
                ir.graph[n].free.iter().chain(bound).copied().collect()
            }
            Op::Reduce(_, bound) => here.iter().chain(bound).copied().collect(),
            _ => here,
        };
        for o in args {
            scope.entry(o).or_default().extend(inner.iter().copied());
        }
    }
    scope
}

/// The truth of a test of enum params (`param == "variant"`, negated or not), when
/// `enums` gives their variants.
fn known_truth(
    ir: &LossIr,
    n: petgraph::stable_graph::NodeIndex,
    enums: &[Option<String>],
) -> Option<bool> {
    use crate::ir::{Op, UnaryFn, operands};
    match &ir.graph[n].op {
        Op::EnumIs(p, v) => enums.get(*p)?.as_ref().map(|x| x == v),
        Op::Unary(UnaryFn::Not) => known_truth(ir, operands(&ir.graph, n)[0], enums).map(|b| !b),
        _ => None,
    }
}

/// Per input of the loss, in declaration order: how many f32 loads one dispatch makes
/// of it on the bound index ranges (`ranges`, inclusive) and enum variants (`enums`, per
/// param). Each read site loads once per value of the indices in scope where it runs;
/// sites add up. Not counted: the ranking loop of a median (each value is compared with
/// every other), and the tables a shared row longer than one chunk rebuilds per chunk.
pub fn input_loads(
    ir: &LossIr,
    s: &LossSchedule,
    ranges: &[(i64, i64)],
    enums: &[Option<String>],
) -> Vec<u64> {
    use crate::ir::{Op, Tensor};
    let scope = scopes(ir, s, enums);
    let mut loads = vec![0u64; ir.inputs.len()];
    for n in ir.graph.node_indices() {
        let (Op::Read(Tensor::Input(i), _), Some(sc)) = (&ir.graph[n].op, scope.get(&n)) else {
            continue;
        };
        let times = sc
            .iter()
            .map(|v| ranges.get(*v).map_or(0, |r| crate::ir::extent(*r) as u64))
            .fold(1u64, u64::saturating_mul);
        loads[*i] = loads[*i].saturating_add(times);
    }
    loads
}

/// How many times each input's elements are read. Each read site reads its elements
/// once per value of the indices in scope where it runs that its subscripts do not use
/// (an enclosing reduction's, or a domain index); sites add up.
fn reads(ir: &LossIr, s: &LossSchedule) -> String {
    use crate::ir::{Op, Tensor};
    let scope = scopes(ir, s, &[]);
    let mut out = String::new();
    for (i, input) in ir.inputs.iter().enumerate() {
        let mut sites = Vec::new();
        for n in ir.graph.node_indices() {
            if !matches!(&ir.graph[n].op, Op::Read(Tensor::Input(j), _) if *j == i)
                || !scope.contains_key(&n)
            {
                continue;
            }
            let extra: Vec<&str> = scope
                .get(&n)
                .map(|sc| {
                    sc.iter()
                        .filter(|v| !ir.graph[n].free.contains(v))
                        .map(|v| ir.indices[*v].name.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let place = ir.origin.locate(ir.graph[n].span);
            sites.push(if extra.is_empty() {
                format!("once at {place}")
            } else {
                format!("once per value of ({}) at {place}", extra.join(", "))
            });
        }
        let total = if sites.len() == 1 && !sites[0].contains("per value") {
            "read once"
        } else {
            "read more than once"
        };
        out.push_str(&format!(
            "  reads    {}: {total}: {}\n",
            input.name,
            sites.join("; ")
        ));
    }
    out
}
