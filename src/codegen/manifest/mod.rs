//! The manifest written beside each kernel: with it alone, any WebGPU host can bind the
//! data, fill the parameter block, dispatch, and read the results. Its format is
//! versioned ([`host::MANIFEST_VERSION`]) and described by `docs/manifest.schema.json`;
//! what a host computes is data ([`host`]), what it may choose is named.

pub mod host;

use serde::Serialize;
use serde_json::{Value, json};

use super::Kernel;
use super::bindings::{BACKWARD_BINDINGS, BINDINGS, GROUP};
use super::emit::{TIMEOUT_CODE, WORKGROUP};
use crate::ir::{IndexId, LossIr, Program};

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
    let idx = |vs: &[IndexId]| vs.iter().map(|v| v.index()).collect::<Vec<_>>();
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

/// The kernel's checked reads (see `error_word`): the code the error word holds for
/// each, and where it is.
fn sites(k: &Kernel) -> Vec<Value> {
    k.sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "code": i + 1,
                "loss": s.loss,
                "tensor": s.tensor_name,
                "axis": s.axis,
                "subscripts": s.subscript,
                "source": s.at,
                "text": s.to_string(),
            })
        })
        .collect()
}

/// The parameter block: each slot's meaning and the expression of its value.
fn parameter_block(k: &Kernel, irs: &[&LossIr]) -> Vec<Value> {
    k.layout
        .slots
        .iter()
        .zip(host::slot_values(k, irs))
        .enumerate()
        .map(|(i, (slot, value))| {
            let mut v = serde_json::to_value(slot).expect("a slot serialises");
            v["slot"] = json!(i);
            v["value"] = value;
            v
        })
        .collect()
}

/// What the host chooses or supplies, which the expressions name.
fn host_inputs() -> Value {
    json!({
        "offset": "{\"offset\": {\"loss\": i, \"tensor\": name}}: where the host placed the tensor in the arena, in f32s; any placement of every tensor that has an offset slot works, and losses may share one array for inputs of the same name (lossc's runtime places each input once per name, in loss order, an absent optional input with a default once per loss, then each loss's params in order)",
        "arena_floats": "{\"arena_floats\": null}: the arena's size in f32s as the host laid it out",
        "row_per_thread": "{\"row_per_thread\": i}: the rows of one work item of loss i when each thread takes a whole row, or 0 when the workgroup shares each row; 0 is always correct, and any R in 1..=64 is correct when the loss's rows exceed 1 (lossc's runtime takes R = clamp(8 × ceil(ceil(rows / 16) / 8), 8, 64) for short rows: see docs/backend.md §2)",
        "anneal_bits": "{\"anneal_bits\": i}: loss i's anneal factor (1.0 when not annealed) as the bits of an f32, read as i32",
    })
}

/// The manifest as JSON.
pub fn manifest(program: &Program, k: &Kernel) -> Value {
    let bindings = entries(&BINDINGS, k);
    let irs: Vec<&LossIr> = k
        .terms
        .iter()
        .filter_map(|t| program.loss(&t.loss))
        .collect();
    let losses: Vec<Value> = k
        .terms
        .iter()
        .zip(&k.schedules)
        .filter_map(|(t, s)| {
            let ir = program.loss(&t.loss)?;
            let logs: Vec<String> =
                ["{stage}_NAME_loss", "NAME_weight", "{stage}_NAME_loss_weighted"].iter().map(|l| l.replace("NAME", &ir.name)).collect();
            let mut loss = json!({
                "name": ir.name,
                "doc": ir.doc,
                "source": ir.origin.locate(ir.span),
                "annealed": t.annealed,
                "settings": t.settings.iter().map(|(n, v)| json!({"param": n, "value": host::value(v)})).collect::<Vec<_>>(),
                "schedule": schedule(ir, s),
                "logs": logs,
            });
            merge(&mut loss, host::loss_data(ir));
            Some(loss)
        })
        .collect();
    json!({
        "manifest_version": host::MANIFEST_VERSION,
        "kernel": k.name,
        "entry_point": "main",
        "workgroup_size": [WORKGROUP, 1, 1],
        "bindings": bindings,
        "losses": losses,
        "data": host::data_keys(&irs),
        "host_inputs": host_inputs(),
        "parameter_block": parameter_block(k, &irs),
        "work": host::work_data(k),
        "buffers": host::forward_buffers(k),
        "dispatch": {"workgroups": [{"work": "workgroups"}, 1, 1]},
        "before_each_dispatch": "write 0 to lc_sync[1] (the error word) and to the site words lc_sync[2 + 2 × total_items ..]; the kernel itself restores the counter lc_sync[0] and every partial slot",
        "error_word": {
            "0": "success",
            "k in 1..": "a read through a gather left its axis where its value was needed: the site whose `code` is k is the first such read in the factory's order (sites are listed from the last read to the first), and lc_sync[1 + 2 × total_items + k] XOR 0x80000000, as i32, the largest index it took",
            "timeout": format!("{TIMEOUT_CODE:#x}: a partial result never arrived"),
        },
        "sites": sites(k),
        "determinism": "bit-identical run to run on one adapter: every reduction (per thread, workgroup tree, and the last workgroup's combination of per-item partials) runs in a fixed order; partials pass between workgroups through atomics",
        "limits": {"max_storage_buffers_per_stage": 5, "max_workgroup_invocations": WORKGROUP, "workgroup_storage_bytes": 2 * 4 * WORKGROUP + 4},
    })
}

/// Adds `extra`'s fields to the object `into`.
fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        a.extend(b);
    }
}

/// The manifest's `backward` section: how a host binds and runs a factory's backward
/// kernel (`losses[i]`: backward loss `i`'s IR, the position of its forward loss in the
/// factory, and the input its gradient is of).
pub fn backward(k: &Kernel, losses: &[(&LossIr, usize, &str)], wrt: &[(usize, &str)]) -> Value {
    let bindings = entries(&BACKWARD_BINDINGS, k);
    let irs: Vec<&LossIr> = losses.iter().map(|(ir, _, _)| *ir).collect();
    let saved = k.backward.clone().unwrap_or_default();
    let entries: Vec<Value> = losses
        .iter()
        .zip(&k.schedules)
        .enumerate()
        .map(|(i, ((ir, term, input), s))| {
            let idx = |vs: &[IndexId]| vs.iter().map(|v| v.index()).collect::<Vec<_>>();
            let mut loss = json!({
                "name": ir.name,
                "term": term,
                "input": input,
                "gradient_axes": idx(&ir.domain),
                "reads_weight_at": saved.get(i).map(|r| r.weight_at),
                "reads_count_at": saved.get(i).and_then(|r| r.count_at),
                "schedule": schedule(ir, s),
            });
            merge(&mut loss, host::loss_data(ir));
            loss
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
        "wrt": wrt.iter().map(|(t, i)| json!({"term": t, "input": i})).collect::<Vec<_>>(),
        "parameter_block": parameter_block(k, &irs),
        "work": host::work_data(k),
        "buffers": host::backward_buffers(k, &irs),
        "dispatch": {"workgroups": [{"work": "workgroups"}, 1, 1]},
        "notes": "each loss's data (dims, inputs, params, indices) is its forward loss's, with the gradient's axes as further indices; lc_sync is neither read back nor reset",
        "gradient_of_total": "each loss's slice of lc_grad is its term of the total's gradient: the kernel stores anneal_t × weight_t × d loss_t / d input, where t is its term, weight_t the forward's lc_out[3t + 1] (`reads_weight_at`) and anneal_t the `anneal` slot of this kernel's parameter block (fill it as the forward's: the term's anneal factor as f32 bits, 1.0 when not annealed); d total / d input = the sum, over the losses of that input in order, of their slices",
        "sites": sites(k),
        "determinism": "every gradient element is written once, by one thread, from values read in a fixed order: bit-identical run to run on one adapter",
    })
}
