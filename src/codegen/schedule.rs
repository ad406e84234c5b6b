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
//! becomes the rows, and the workgroup shares the long sum. So is a reduction inside
//! another that depends on domain indices alone (a log-sum-exp inside a sum over
//! classes): it is invariant in the enclosing loop, and inline it would be recomputed
//! for every value of it. Other reductions over constant ranges (a norm over
//! `c in 0..2`) and other nested ones are evaluated inline, by the thread that owns the
//! element.

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
    /// An earlier hoisted reduction that computes the same table up to a renaming of
    /// its indices (a `let` used in two scopes, as `pca_singleview`'s `center`): this
    /// one is not built, its reads read that table, and `table_vars` are in the order
    /// of that table's.
    pub same_as: Option<usize>,
    /// Whether it depends on no row index: then its table is the same for every row of
    /// the loss, and a workgroup builds it once, before its first item of the loss,
    /// instead of once per row.
    pub per_workgroup: bool,
    /// Whether computing it may make a checked read (a read through a gather): then a
    /// failed read is not raised while the table is built but kept with the entry (its
    /// table holds four values per entry: the value, the site's code, and the index's
    /// high and low 16 bits), and raised where the entry is read.
    pub checks: bool,
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
    for r in ir.element_roots() {
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
    // Each reduction to hoist, with whether only its length hoists it (rule 2 below).
    let mut candidates: Vec<(NodeIndex, bool)> = Vec::new();
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
        // Inside another reduction, a reduction that depends on domain indices alone is
        // invariant in every enclosing loop: inline, it would be recomputed for each
        // value of the enclosing indices (a log-sum-exp inside a sum over classes: O(C²)).
        let invariant = nested.contains(&n) && free.is_subset(&domain);
        let partial = !domain.iter().all(|d| free.contains(d));
        let long_top = long && !nested.contains(&n);
        if partial || long_top || invariant {
            candidates.push((n, !partial && !invariant));
        }
    }
    // A long reduction that depends on every domain index is hoisted so that a row of one
    // element shares it among the workgroup (heatmap_kl's sum over the pixels); but it
    // makes every domain index a row index, and then a table that depends on fewer of
    // them is rebuilt for every element. Where such tables exist, it runs inline: each
    // element's thread loops over it, and the tables are built once per row of the
    // indices they depend on. (A gradient's loss: a sum over the keypoints that gathered
    // an element, beside per-frame tables.)
    let any_partial = candidates
        .iter()
        .any(|(n, long_only)| !long_only && !domain.iter().all(|d| ir.graph[*n].free.contains(d)));
    let mut hoisted_nodes = Vec::new();
    let mut row: HashSet<IndexId> = HashSet::new();
    for (n, long_only) in candidates {
        if long_only && any_partial {
            continue;
        }
        row.extend(ir.graph[n].free.iter().filter(|v| domain.contains(v)));
        hoisted_nodes.push(n);
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
    let mut hoisted: Vec<Hoisted> = Vec::new();
    let mut shapes: Vec<(String, Vec<IndexId>)> = Vec::new();
    for n in hoisted_nodes {
        let (shape, vars) = shape_of(ir, n, &row);
        let table_vars: Vec<IndexId> = ir.graph[n]
            .free
            .iter()
            .copied()
            .filter(|v| !row.contains(v))
            .collect();
        let checks = ir.checks_at_run_time(n);
        let per_workgroup = !ir.graph[n].free.iter().any(|v| row.contains(v));
        let earlier = shapes
            .iter()
            .position(|(s, _)| *s == shape)
            .filter(|k| hoisted[*k].same_as.is_none());
        let h = match earlier {
            Some(k) => {
                // The renaming maps the earlier table's indices, in its order, to ours.
                let rename = |v: &IndexId| {
                    let at = shapes[k].1.iter().position(|w| w == v);
                    at.map(|i| vars[i])
                };
                let mapped: Option<Vec<IndexId>> =
                    hoisted[k].table_vars.iter().map(rename).collect();
                match mapped {
                    Some(table_vars) => Hoisted {
                        node: n,
                        table_vars,
                        same_as: Some(k),
                        checks,
                        per_workgroup,
                    },
                    None => Hoisted {
                        node: n,
                        table_vars,
                        same_as: None,
                        checks,
                        per_workgroup,
                    },
                }
            }
            None => Hoisted {
                node: n,
                table_vars,
                same_as: None,
                checks,
                per_workgroup,
            },
        };
        hoisted.push(h);
        shapes.push((shape, vars));
    }
    LossSchedule {
        row_vars,
        elem_vars,
        hoisted,
    }
}

/// The expression under `n` with every index other than the row indices renamed by
/// order of first appearance (each with its range), as text, and those indices in that
/// order: two reductions with the same text compute the same table up to that renaming.
/// Each node is written once, operands by number, so a shared node costs one line.
fn shape_of(ir: &LossIr, n: NodeIndex, row: &HashSet<IndexId>) -> (String, Vec<IndexId>) {
    use std::collections::HashMap;
    use std::fmt::Write;

    use crate::ir::{IndexExpr, IndexTerm};
    struct Shape<'a> {
        ir: &'a LossIr,
        row: &'a HashSet<IndexId>,
        vars: Vec<IndexId>,
        numbers: HashMap<NodeIndex, usize>,
        text: String,
    }
    impl Shape<'_> {
        fn var(&mut self, v: IndexId) -> String {
            if self.row.contains(&v) {
                return format!("r{v}");
            }
            match self.vars.iter().position(|w| *w == v) {
                Some(i) => format!("v{i}"),
                None => {
                    self.vars.push(v);
                    format!("v{}{:?}", self.vars.len() - 1, self.ir.indices[v].range)
                }
            }
        }
        fn index(&mut self, e: &IndexExpr) -> String {
            let mut out = format!("{:?}", e.offset);
            for (c, t) in &e.terms {
                let term = match t {
                    IndexTerm::Var(v) => self.var(*v),
                    IndexTerm::Gather(p, idx) => {
                        let args: Vec<String> = idx.iter().map(|e| self.index(e)).collect();
                        format!("g{p:?}[{}]", args.join(","))
                    }
                };
                let _ = write!(out, "+{c:?}*{term}");
            }
            out
        }
        fn node(&mut self, n: NodeIndex) -> usize {
            if let Some(k) = self.numbers.get(&n) {
                return *k;
            }
            let args: Vec<usize> = crate::ir::operands(&self.ir.graph, n)
                .into_iter()
                .map(|a| self.node(a))
                .collect();
            let node = &self.ir.graph[n];
            let op = match &node.op {
                Op::Read(t, idx) => {
                    let idx: Vec<String> = idx.iter().map(|e| self.index(e)).collect();
                    format!("read {t:?}[{}]", idx.join(","))
                }
                Op::IndexValue(e) => format!("index {}", self.index(e)),
                Op::Reduce(kind, bound) => {
                    let bound: Vec<String> = bound.iter().map(|v| self.var(*v)).collect();
                    format!("{kind:?}({})", bound.join(","))
                }
                other => format!("{other:?}"),
            };
            let k = self.numbers.len();
            let _ = writeln!(self.text, "{k}: {op} {:?} {args:?}", node.ty);
            self.numbers.insert(n, k);
            k
        }
    }
    let mut shape = Shape {
        ir,
        row,
        vars: Vec::new(),
        numbers: HashMap::new(),
        text: String::new(),
    };
    shape.node(n);
    (shape.text, shape.vars)
}

/// The nodes of two reductions with the same text under [`shape_of`] (a table and one
/// that reads it, [`Hoisted::same_as`]), paired: each node under `a` with the one at the
/// same place under `b`. A read that fails in the built table failed at its pair too.
pub fn corresponding_nodes(ir: &LossIr, a: NodeIndex, b: NodeIndex) -> Vec<(NodeIndex, NodeIndex)> {
    fn walk(
        ir: &LossIr,
        a: NodeIndex,
        b: NodeIndex,
        seen: &mut HashSet<NodeIndex>,
        out: &mut Vec<(NodeIndex, NodeIndex)>,
    ) {
        if !seen.insert(a) {
            return;
        }
        let (xs, ys) = (
            crate::ir::operands(&ir.graph, a),
            crate::ir::operands(&ir.graph, b),
        );
        for (x, y) in xs.into_iter().zip(ys) {
            walk(ir, x, y, seen, out);
        }
        out.push((a, b));
    }
    let mut out = Vec::new();
    walk(ir, a, b, &mut HashSet::new(), &mut out);
    out
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
    for (k, h) in s.hoisted.iter().enumerate() {
        let node = &ir.graph[h.node];
        let table = if h.table_vars.is_empty() {
            String::new()
        } else {
            format!(", a table over ({})", names(&h.table_vars))
        };
        let how = match h.same_as {
            Some(j) => format!(
                "the same table as hoisted #{} up to renaming its indices, not built again",
                j + 1
            ),
            None if h.per_workgroup => {
                format!("once per workgroup (it depends on no row index){table}")
            }
            None => format!("once per row (per 4096-element chunk of longer rows){table}"),
        };
        out.push_str(&format!(
            "  hoisted  #{} {} at {}: {how}\n",
            k + 1,
            crate::ir::dot::op_label(ir, &node.op),
            ir.origin.locate(node.span),
        ));
    }
    if s.hoisted.is_empty() {
        out.push_str(
            "  hoisted  nothing: every reduction depends on every domain index and runs inline\n",
        );
    }
    out
}
