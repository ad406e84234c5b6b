//! Analyses of a scheduled loss that the emitter, `lossc explain` and the host's plan
//! share: which configuration choices a kernel knows, the indices in scope where each node
//! runs, and so how often each input is read.

use std::collections::{BTreeSet, HashMap};

use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;

use super::schedule::LossSchedule;
use crate::ir::{
    IndexId, InputId, LossIr, Op, ParamId, ParamKind, Tensor, TiSlice, TiVec, UnaryFn, operands,
};

/// The indices in scope where each node runs, from the per-element stages down: the
/// domain's, an enclosing reduction's, or, under a hoisted table, the table's own free
/// indices and its reduction's. A node under a table that is not built has none, and so
/// has one only under the untaken branch of a `select` on enum params whose variants
/// `enums` gives (per param; empty when unknown), as in a kernel specialised to them.
fn scopes(
    ir: &LossIr,
    s: &LossSchedule,
    enums: &TiSlice<ParamId, Option<String>>,
) -> HashMap<NodeIndex, BTreeSet<IndexId>> {
    let variant = |p: ParamId| {
        let chosen = enums.get(p)?.as_ref()?;
        let ParamKind::Enum(variants) = &ir.params[p].kind else {
            return None;
        };
        variants.iter().position(|v| v == chosen).map(|k| k as i64)
    };
    let mut scope: HashMap<NodeIndex, BTreeSet<IndexId>> = HashMap::new();
    for r in ir.element_roots() {
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
        if matches!(ir.graph[n].op, Op::Select)
            && let Some(taken) = known_truth(ir, args[0], &variant)
        {
            args = vec![args[0], if taken { args[1] } else { args[2] }];
        }
        let inner: BTreeSet<IndexId> = match &ir.graph[n].op {
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

/// The truth of a test of enum params (`param == "variant"`, negated or not), when the
/// params' values are known: `variant(p)` is the number of param `p`'s variant (its
/// position in the declaration, as the parameter block holds it), `None` when unknown.
pub fn known_truth(
    ir: &LossIr,
    n: NodeIndex,
    variant: &dyn Fn(ParamId) -> Option<i64>,
) -> Option<bool> {
    match &ir.graph[n].op {
        Op::EnumIs(p, v) => {
            let ParamKind::Enum(variants) = &ir.params[*p].kind else {
                return None;
            };
            let k = variants.iter().position(|x| x == v)? as i64;
            variant(*p).map(|x| x == k)
        }
        Op::Unary(UnaryFn::Not) => known_truth(ir, operands(&ir.graph, n)[0], variant).map(|b| !b),
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
    ranges: &TiSlice<IndexId, (i64, i64)>,
    enums: &TiSlice<ParamId, Option<String>>,
) -> TiVec<InputId, u64> {
    let scope = scopes(ir, s, enums);
    let mut loads: TiVec<InputId, u64> = ir.inputs.iter().map(|_| 0).collect();
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
pub(super) fn reads(ir: &LossIr, s: &LossSchedule) -> String {
    let scope = scopes(ir, s, TiSlice::from_ref(&[]));
    let mut out = String::new();
    for (i, input) in ir.inputs.iter_enumerated() {
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
