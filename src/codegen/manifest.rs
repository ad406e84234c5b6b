//! The manifest written beside each kernel: with it alone, any WebGPU host can bind the
//! data, fill the parameter block, dispatch, and read the results.

use serde::Serialize;
use serde_json::{Value, json};

use super::Kernel;
use super::bindings::{BACKWARD_BINDINGS, BINDINGS, GROUP};
use super::emit::{CHUNK, TIMEOUT_CODE, WORKGROUP};
use crate::ir::{IndexId, LossIr, ParamKind, Program};

/// One binding of the kernel, as the manifest lists it.
#[derive(Serialize)]
pub struct BindingEntry {
    /// Bind group.
    pub group: u32,
    /// Binding number.
    pub binding: u32,
    /// The WGSL variable.
    pub name: &'static str,
    /// What it holds.
    pub role: &'static str,
    /// Its WGSL type.
    pub ty: String,
}

/// A loss's schedule as the manifest lists it.
fn schedule(ir: &LossIr, s: &super::schedule::LossSchedule) -> Value {
    let idx = |vs: &[IndexId]| {
        vs.iter()
            .map(|v| ir.indices[*v].name.clone())
            .collect::<Vec<_>>()
    };
    json!({
        "rows": idx(&s.row_vars),
        "elements": idx(&s.elem_vars),
        "hoisted": s.hoisted.iter().map(|h| json!({
            "reduction": crate::ir::dot::op_label(ir, &ir.graph[h.node].op),
            "table_over": idx(&h.table_vars),
            "same_as": h.same_as,
            "checks": h.checks,
            "per_workgroup": h.per_workgroup,
        })).collect::<Vec<_>>(),
    })
}

/// A kernel's bindings as the manifest lists them.
fn entries(bindings: &[super::bindings::Binding], k: &Kernel) -> Vec<BindingEntry> {
    bindings
        .iter()
        .map(|b| BindingEntry {
            group: GROUP,
            binding: b.number,
            name: b.name,
            role: b.role,
            ty: b.manifest_type(k.layout.vec4s()),
        })
        .collect()
}

/// The manifest as JSON.
pub fn manifest(program: &Program, k: &Kernel) -> Value {
    let bindings = entries(&BINDINGS, k);
    let losses: Vec<Value> = k
        .terms
        .iter()
        .zip(&k.schedules)
        .filter_map(|(t, s)| {
            let ir = program.loss(&t.loss)?;
            let names = ir.dim_names();
            let logs: Vec<String> =
                ["{stage}_NAME_loss", "NAME_weight", "{stage}_NAME_loss_weighted"].iter().map(|l| l.replace("NAME", &ir.name)).collect();
            Some(json!({
                "name": ir.name,
                "doc": ir.doc,
                "source": ir.origin.locate(ir.span),
                "annealed": t.annealed,
                "settings": t.settings.iter().map(|(n, v)| json!([n, crate::ir::dot::show_value(ir, v)])).collect::<Vec<_>>(),
                "dims": names,
                "inputs": ir.inputs.iter().map(|i| {
                    let mut input = json!({
                        "name": i.name,
                        "shape": i.shape.iter().map(|p| p.display(&names).to_string()).collect::<Vec<_>>(),
                        "optional": i.optional,
                        "element_type": "f32",
                        // An `int` input's whole numbers are stored as f32 too (exactly:
                        // each is within ±2^24).
                        "int": i.int,
                    });
                    // An absent input with a default is bound as its shape filled with it.
                    if let Some(v) = i.default {
                        input["default"] = json!(v);
                    }
                    input
                }).collect::<Vec<_>>(),
                "params": ir.params.iter().map(|p| {
                    let (kind, shape) = match &p.kind {
                        ParamKind::Scalar => ("scalar", vec![]),
                        ParamKind::Tensor(s) => ("tensor (a scalar broadcasts)", s.iter().map(|d| d.display(&names).to_string()).collect()),
                        ParamKind::Index(s) => ("index (whole numbers, stored as f32)", s.iter().map(|d| d.display(&names).to_string()).collect()),
                        ParamKind::Enum(_) => ("enum (its variant number is a slot)", vec![]),
                    };
                    json!({"name": p.name, "kind": kind, "shape": shape,
                           "default": p.default.as_ref().map(|v| crate::ir::dot::show_value(ir, v))})
                }).collect::<Vec<_>>(),
                "index_ranges": crate::ir::dot::ranges(ir),
                "schedule": schedule(ir, s),
                "logs": logs,
            }))
        })
        .collect();
    json!({
        "kernel": k.name,
        "entry_point": "main",
        "workgroup_size": [WORKGROUP, 1, 1],
        "bindings": bindings,
        "losses": losses,
        "parameter_block": k.layout.slots,
        "work": {
            "chunk": CHUNK,
            "rows_and_elements": "per loss, rows and elements are the products of the extents of the schedule's row and element indices",
            "row_per_thread": "per loss (slot `row_per_thread`), the rows of one work item when each thread takes a whole row, else 0 (rows shared by the workgroup). Any R in 1..=64 is correct when rows > 1; lossc's host writes R = clamp(8 × ceil(ceil(rows / 16) / 8), 8, 64) when rows > 1 and either elements <= 64 and one row's serial loop iterations are at most 2048, or (on a CPU adapter) rows >= 8 and one row's serial loop iterations are at most 32767 (per hoisted table not built once per workgroup: entries × values × (1 + the body's inline iterations), × (values + 1) for a median; plus elements × (1 + the inline iterations of compute, masks and rectify))",
            "items_per_loss": "row_per_thread = R > 0: ceil(rows / R); row_per_thread = 0: rows × ceil(elements / chunk)",
            "base": "the items of the losses, numbered loss after loss",
            "workgroups": "min(total_items, 65535), at least 1; dispatch (workgroups, 1, 1)",
            "tables": "per loss, slot `table` k: the summed sizes of its hoisted tables before k that are built (a table whose `per_workgroup` is true is built once by each workgroup, before its first item of the loss, and read at the workgroup's slice by every row); a table whose `same_as` is a number is not built (it is that earlier table up to renaming its indices, with `table_over` in that table's order) and has no slot; a table whose `checks` is true takes 4 f32 per entry (the values, then the code of the entry's first failed read, then the high and the low 16 bits of its index, each table-sized)",
            "slice_size": "64 × the largest, over the losses, of the summed sizes of its built hoisted tables (products of the extents of each table's indices, × 4 for a table whose `checks` is true): each of a workgroup's 64 threads may hold one row's tables",
            "scratch": "slice_size × workgroups f32",
            "before_each_dispatch": "write 0 to lc_sync[1] (the error word) and to the site words lc_sync[2 + 2 × total_items ..]; the kernel itself restores the counter lc_sync[0] and every partial slot",
        },
        "error_word": {
            "0": "success",
            "k in 1..": "a read through a gather left its axis where its value was needed: `sites`[k - 1] is the first such read in the factory's order (sites are listed from the last read to the first), and lc_sync[1 + 2 × total_items + k] XOR 0x80000000, as i32, the largest index it took",
            "timeout": format!("{TIMEOUT_CODE:#x}: a partial result never arrived"),
        },
        "sites": k.sites.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "determinism": "bit-identical run to run on one adapter: every reduction (per thread, workgroup tree, and the last workgroup's combination of per-item partials) runs in a fixed order; partials pass between workgroups through atomics",
        "limits": {"max_storage_buffers_per_stage": 5, "max_workgroup_invocations": WORKGROUP, "workgroup_storage_bytes": 2 * 4 * WORKGROUP + 4},
    })
}

/// The manifest's `backward` section: how a host binds and runs a factory's backward
/// kernel (`losses[i]`: backward loss `i`'s IR, the position of its forward loss in the
/// factory, and the input its gradient is of).
pub fn backward(k: &Kernel, losses: &[(&LossIr, usize, &str)]) -> Value {
    let bindings = entries(&BACKWARD_BINDINGS, k);
    let saved = k.backward.clone().unwrap_or_default();
    let entries: Vec<Value> = losses
        .iter()
        .zip(&k.schedules)
        .enumerate()
        .map(|(i, ((ir, term, input), s))| {
            let idx = |vs: &[IndexId]| {
                vs.iter()
                    .map(|v| ir.indices[*v].name.clone())
                    .collect::<Vec<_>>()
            };
            json!({
                "name": ir.name,
                "term": term,
                "input": input,
                "gradient_axes": idx(&ir.domain),
                "reads_weight_at": saved.get(i).map(|r| r.weight_at),
                "reads_count_at": saved.get(i).and_then(|r| r.count_at),
                "schedule": schedule(ir, s),
            })
        })
        .collect();
    json!({
        "kernel": k.name,
        "entry_point": "main",
        "workgroup_size": [WORKGROUP, 1, 1],
        "order": "dispatch the forward kernel, then this one, with no write to the forward's lc_out in between (lossc records both in one command buffer); the forward's lc_out is bound here read-only as lc_saved, and its arena is bound here too: a backward loss reads its forward loss's inputs and params at the forward's offsets",
        "assumes": "every remove_nans stage runs (every optional input given); lossc's runtime builds the kernel for the stages that run",
        "bindings": bindings,
        "losses": entries,
        "parameter_block": k.layout.slots,
        "work": "as the forward kernel's (`work`), for these losses; slot `grad_offset` of loss i: the summed gradient sizes (products of the input's shape) of losses 0..i; lc_grad holds all of them (at least one f32); lc_sync needs 2 + 2 × total_items + sites words and is neither read back nor reset",
        "gradient_of_total": "each loss's slice of lc_grad is its term of the total's gradient: the kernel stores anneal_t × weight_t × d loss_t / d input, where t is its term, weight_t the forward's lc_out[3t + 1] (`reads_weight_at`) and anneal_t the `anneal` slot of this kernel's parameter block (fill it as the forward's: the term's anneal factor as f32 bits, 1.0 when not annealed); d total / d input = the sum, over the losses of that input in order, of their slices",
        "sites": k.sites.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "determinism": "every gradient element is written once, by one thread, from values read in a fixed order: bit-identical run to run on one adapter",
    })
}
