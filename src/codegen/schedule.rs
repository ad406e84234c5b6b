//! Scheduling one loss for the fused kernel.
//!
//! A loss's domain splits into *row* indices and *element* indices. A reduction that
//! does not depend on every domain index (a heatmap's validity mask over `(b, k)`, a PCA
//! projection over `b`) is *hoisted*: computed once per work item (a row, or a 4096-element
//! chunk of a longer row), by the workgroup together or by the thread that owns the row,
//! into a table (in scratch memory, or a register for a single value); then the row's
//! elements are streamed. The row indices are the domain indices the hoisted reductions
//! depend on. A reduction over
//! a dimension-sized range that depends on every domain index (a heatmap's KL sum per
//! keypoint) is hoisted too, unless it sits inside another reduction: the domain itself
//! becomes the rows, and the workgroup shares the long sum. Reductions over constant
//! ranges (a norm over `c in 0..2`) and nested ones are evaluated inline, by the thread
//! that owns the element.

use std::collections::HashSet;

use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::{Dfs, Reversed, Walker};

use crate::ir::{IndexId, LossIr, Op};

/// A reduction computed once per work item (row or chunk of a row) into a table.
#[derive(Clone, Debug)]
pub struct Hoisted {
    /// The reduction node.
    pub node: NodeIndex,
    /// Its free indices that are not row indices (bound by enclosing reductions): the
    /// table has one entry per assignment of them.
    pub table_vars: Vec<IndexId>,
}

/// How one loss is laid out in the kernel.
#[derive(Clone, Debug)]
pub struct LossSchedule {
    /// Domain indices that select a row (a workgroup's unit of work).
    pub row_vars: Vec<IndexId>,
    /// Domain indices streamed within a row.
    pub elem_vars: Vec<IndexId>,
    /// Hoisted reductions, inner ones first.
    pub hoisted: Vec<Hoisted>,
}

impl LossSchedule {
    /// Whether `n` is a hoisted reduction, and its position.
    pub fn hoisted_index(&self, n: NodeIndex) -> Option<usize> {
        self.hoisted.iter().position(|h| h.node == n)
    }
}

/// Schedules a loss.
pub fn schedule(ir: &LossIr) -> LossSchedule {
    // Only what the per-element stages reach is computed per row; `weight` and `empty:`
    // are evaluated once, in the final combination.
    let mut reached = HashSet::new();
    let rev = Reversed(&ir.graph);
    let mut roots = vec![ir.compute];
    roots.extend(ir.masks.iter().map(|m| m.cond));
    roots.extend(ir.rectify);
    for r in roots {
        reached.extend(Dfs::new(rev, r).iter(rev));
    }
    // Nodes inside some reduction's body.
    let mut nested = HashSet::new();
    for n in ir.graph.node_indices() {
        if matches!(ir.graph[n].op, Op::Reduce(..)) {
            for body in crate::ir::operands(&ir.graph, n) {
                nested.extend(Dfs::new(rev, body).iter(rev));
            }
        }
    }
    let order = toposort(&ir.graph, None).unwrap_or_default();
    let domain: HashSet<IndexId> = ir.domain.iter().copied().collect();
    let mut hoisted_nodes = Vec::new();
    let mut row: HashSet<IndexId> = HashSet::new();
    for n in order {
        if !reached.contains(&n) || !matches!(ir.graph[n].op, Op::Reduce(..)) {
            continue;
        }
        let free: HashSet<IndexId> = ir.graph[n].free.iter().copied().collect();
        let Op::Reduce(_, bound) = &ir.graph[n].op else {
            continue;
        };
        let long = bound.iter().any(|v| {
            ir.indices[*v]
                .range
                .as_ref()
                .is_none_or(|(lo, hi)| hi.sub(lo).as_constant().is_none())
        });
        if !domain.iter().all(|d| free.contains(d)) || (long && !nested.contains(&n)) {
            row.extend(free.intersection(&domain));
            hoisted_nodes.push(n);
        }
    }
    let row_vars: Vec<IndexId> = ir
        .domain
        .iter()
        .copied()
        .filter(|v| row.contains(v))
        .collect();
    let elem_vars: Vec<IndexId> = ir
        .domain
        .iter()
        .copied()
        .filter(|v| !row.contains(v))
        .collect();
    let hoisted = hoisted_nodes
        .into_iter()
        .map(|n| Hoisted {
            node: n,
            table_vars: ir.graph[n]
                .free
                .iter()
                .copied()
                .filter(|v| !row.contains(v))
                .collect(),
        })
        .collect();
    LossSchedule {
        row_vars,
        elem_vars,
        hoisted,
    }
}

/// A human-readable account of the schedule (`lossc explain`).
pub fn explain(ir: &LossIr, s: &LossSchedule) -> String {
    let names = |vs: &[IndexId]| {
        vs.iter()
            .map(|v| ir.indices[*v].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    out.push_str(&format!("loss {}\n", ir.name));
    out.push_str(&format!("  domain   ({})\n", names(&ir.domain)));
    out.push_str(&format!(
        "  rows     ({})   shared by a workgroup, or one per thread when rows are small (decided at run time)\n",
        names(&s.row_vars)
    ));
    out.push_str(&format!(
        "  elements ({})   streamed by the workgroup's threads\n",
        names(&s.elem_vars)
    ));
    for h in &s.hoisted {
        let node = &ir.graph[h.node];
        out.push_str(&format!(
            "  hoisted  {} at {}: once per row (per 4096-element chunk of longer rows){}\n",
            crate::ir::dot::op_label(ir, &node.op),
            ir.origin.locate(node.span),
            if h.table_vars.is_empty() {
                String::new()
            } else {
                format!(", a table over ({})", names(&h.table_vars))
            }
        ));
    }
    if s.hoisted.is_empty() {
        out.push_str(
            "  hoisted  nothing: every reduction depends on every domain index and runs inline\n",
        );
    }
    out
}
