//! Analyses of a scheduled loss that the emitter, `lossc explain` and the host's plan
//! share: which configuration choices a kernel knows, and how often each input is read,
//! counted from the reads the emitter writes ([`ReadRecord`]).

use petgraph::stable_graph::NodeIndex;

use crate::ir::{
    IndexId, InputId, LossIr, Op, ParamId, ParamKind, TiSlice, TiVec, UnaryFn, operands,
};

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

/// One read of an input as the emitter writes it: where it is, and the loops around it.
/// A kernel's records ([`super::Kernel::reads`], or [`super::Kernel::reads_specialised`]
/// for the code one dispatch runs) count what the kernel loads, read by read: each runs
/// once per iteration of the loops around it, and nothing else is counted or assumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    /// The loss's position in the kernel.
    pub loss: usize,
    /// The input read.
    pub input: InputId,
    /// The IR node of the read (its subscripts name its free indices).
    pub node: NodeIndex,
    /// The code it is in: one row per thread (`Some(true)`), shared rows (`Some(false)`),
    /// or the final combination (`None`, once per dispatch).
    pub placement: Option<bool>,
    /// Whether it is in the per-element stages (which a shared row's chunks split),
    /// rather than in a row's tables (which each chunk of a shared row builds again).
    pub in_elements: bool,
    /// The index of each loop around it, once per loop: the row's indices, a table's
    /// entries, the element indices, a reduction's (twice in a median's ranking loop).
    /// Over a workgroup's threads together, a loop runs once per value of its indices.
    pub loops: Vec<IndexId>,
    /// How many four-wide loops enclose it: each writes the read four times, each copy
    /// running for a quarter of the values.
    pub four_wide: u32,
    /// Whether it is in a table built once per workgroup (`Hoisted::per_workgroup`): it
    /// runs once per workgroup that has items of the loss.
    pub per_workgroup: bool,
}

impl ReadRecord {
    /// How many times it runs on the bound ranges (`ranges`, inclusive), when shared rows
    /// are split into `chunks` chunks.
    pub fn runs(&self, ranges: &TiSlice<IndexId, (i64, i64)>, chunks: u64) -> u64 {
        let values = self
            .loops
            .iter()
            .map(|v| ranges.get(*v).map_or(0, |r| crate::ir::extent(*r) as u64))
            .fold(1u64, u64::saturating_mul)
            / 4u64.saturating_pow(self.four_wide).max(1);
        if self.placement == Some(false) && !self.in_elements {
            values.saturating_mul(chunks.max(1))
        } else {
            values
        }
    }
}

/// Per input of loss `loss`, in declaration order: how many f32 loads a dispatch makes
/// of it, from the `records` of the code it runs, with its rows one per thread or not
/// (`per_thread`), shared rows split into `chunks` chunks, `workgroups` workgroups having
/// items of the loss, on the bound `ranges`.
pub fn input_loads(
    records: &[ReadRecord],
    loss: usize,
    inputs: usize,
    per_thread: bool,
    chunks: u64,
    workgroups: u64,
    ranges: &TiSlice<IndexId, (i64, i64)>,
) -> TiVec<InputId, u64> {
    let mut loads: TiVec<InputId, u64> = (0..inputs).map(|_| 0).collect();
    for r in records.iter().filter(|r| r.loss == loss) {
        if r.placement.is_some_and(|p| p != per_thread) {
            continue;
        }
        let runs = if r.per_workgroup {
            r.runs(ranges, 1).saturating_mul(workgroups)
        } else {
            r.runs(ranges, chunks)
        };
        if let Some(l) = loads.get_mut(r.input) {
            *l = l.saturating_add(runs);
        }
    }
    loads
}

/// How many times each input's elements are read: every read the kernel writes for loss
/// `loss` (its shared-rows code and its final combination), with the indices of the
/// loops around it that its subscripts do not use: it reads each element it reads once
/// per value of those.
pub(super) fn reads(ir: &LossIr, records: &[ReadRecord], loss: usize) -> String {
    let mut out = String::new();
    for (i, input) in ir.inputs.iter_enumerated() {
        let mut sites = Vec::new();
        for r in records
            .iter()
            .filter(|r| r.loss == loss && r.input == i && r.placement != Some(true))
        {
            let mut extra = r.loops.clone();
            for v in &ir.graph[r.node].free {
                if let Some(k) = extra.iter().position(|w| w == v) {
                    extra.remove(k);
                }
            }
            let names: Vec<&str> = extra.iter().map(|v| ir.indices[*v].name.as_str()).collect();
            let place = ir.origin.locate(ir.graph[r.node].span);
            sites.push(if names.is_empty() {
                format!("once at {place}")
            } else {
                format!("once per value of ({}) at {place}", names.join(", "))
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
