//! The manifest's host data: everything a host computes to run a kernel, as JSON data
//! rather than prose (manifest version 2, `docs/manifest.schema.json`). Polynomials of
//! dimensions are lists of monomials; every other quantity (each slot of the parameter
//! block, each buffer's size, the work of each loss, the dispatch) is an expression tree
//! over them, the bound data's shapes and the host's few choices. A host evaluates these
//! and needs neither the `.loss` syntax nor lossc's rules.

use serde_json::{Value, json};

use crate::codegen::Kernel;
use crate::codegen::emit::{CHUNK, MAX_WORKGROUPS, WORKGROUP};
use crate::codegen::layout::Slot;
use crate::ir::passes::ranges::shape_of;
use crate::ir::{IndexId, LossIr, ParamKind, ParamValue, Poly};

/// The version of the manifest's format; `docs/manifest.schema.json` describes it.
pub const MANIFEST_VERSION: u32 = 2;

/// A polynomial as `[[coefficient, [dimension ids]], ...]` (ids repeat for powers; the
/// empty list is the constant term; no monomial means 0).
pub fn poly(p: &Poly) -> Value {
    Value::Array(p.terms.iter().map(|(m, c)| json!([c, m])).collect())
}

fn op(name: &str, args: Vec<Value>) -> Value {
    json!({"op": name, "args": args})
}

/// The sum of `parts` (0 when none).
fn sum(mut parts: Vec<Value>) -> Value {
    match parts.len() {
        0 => json!(0),
        1 => parts.remove(0),
        _ => op("add", parts),
    }
}

/// The product of `parts` (1 when none).
fn product(mut parts: Vec<Value>) -> Value {
    match parts.len() {
        0 => json!(1),
        1 => parts.remove(0),
        _ => op("mul", parts),
    }
}

fn work(name: &str, loss: usize) -> Value {
    json!({"work": name, "loss": loss})
}

fn extents(loss: usize, vars: &[IndexId]) -> Value {
    product(
        vars.iter()
            .map(|v| json!({"extent": {"loss": loss, "index": v.index()}}))
            .collect(),
    )
}

/// A shape in source form, for people reading the manifest (hosts read the polynomials).
fn shape_text(shape: &[Poly], names: &[String]) -> Vec<String> {
    shape.iter().map(|p| p.display(names).to_string()).collect()
}

/// A loss's structured description: dimension equations, indices with their ranges,
/// masks with what they depend on, enum variants with their numbers, shapes and
/// defaults as polynomials and values.
pub fn loss_data(ir: &LossIr) -> Value {
    let names = ir.dim_names();
    let mut equations = Vec::new();
    for i in &ir.inputs {
        for (axis, p) in i.shape.iter().enumerate() {
            equations.push(json!({"poly": poly(p), "size": {"input": i.name, "axis": axis}}));
        }
    }
    for p in &ir.params {
        if let ParamKind::Tensor(s) | ParamKind::Index(s) = &p.kind {
            for (axis, d) in s.iter().enumerate() {
                equations.push(json!({"poly": poly(d), "size": {"param": p.name, "axis": axis}}));
            }
        }
    }
    let indices: Vec<Value> = ir
        .indices
        .iter_enumerated()
        .map(|(v, x)| {
            let (lo, hi) = x
                .range
                .clone()
                .unwrap_or((Poly::constant(0), Poly::constant(-1)));
            let text = format!("{}..={}", lo.display(&names), hi.display(&names));
            json!({"id": v.index(), "name": x.name, "lo": poly(&lo), "hi": poly(&hi), "text": text})
        })
        .collect();
    let masks: Vec<Value> = ir
        .masks
        .iter_enumerated()
        .map(|(m, x)| {
            json!({
                "id": m.index(),
                "mode": x.mode,
                "source": ir.origin.position(x.span),
                "needs": x.needs.iter().map(|i| ir.inputs[*i].name.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let inputs: Vec<Value> = ir
        .inputs
        .iter()
        .map(|i| {
            json!({
                "name": i.name,
                "shape": i.shape.iter().map(poly).collect::<Vec<_>>(),
                "shape_text": shape_text(&i.shape, &names),
                "element_type": "f32",
                "optional": i.optional,
                "int": i.int,
                "default": i.default,
            })
        })
        .collect();
    let params: Vec<Value> = ir
        .params
        .iter()
        .map(|p| {
            let no_axes: &[Poly] = &[];
            let (kind, shape, variants) = match &p.kind {
                ParamKind::Scalar => ("scalar", no_axes, None),
                ParamKind::Tensor(s) => ("tensor", &s[..], None),
                ParamKind::Index(s) => ("index", &s[..], None),
                ParamKind::Enum(vs) => (
                    "enum",
                    no_axes,
                    Some(
                        vs.iter()
                            .enumerate()
                            .map(|(k, v)| json!({"name": v, "number": k}))
                            .collect::<Vec<_>>(),
                    ),
                ),
            };
            json!({
                "name": p.name,
                "kind": kind,
                "shape": shape.iter().map(poly).collect::<Vec<_>>(),
                "shape_text": shape_text(shape, &names),
                "variants": variants,
                "default": p.default.as_ref().map(value),
            })
        })
        .collect();
    json!({
        "dims": ir.dim_names(),
        "dim_equations": equations,
        "inputs": inputs,
        "params": params,
        "indices": indices,
        "masks": masks,
    })
}

/// A param's value from the source: a number, a list, a range, or an enum variant.
pub fn value(v: &ParamValue) -> Value {
    match v {
        ParamValue::Scalar(x) => json!({"scalar": x}),
        ParamValue::List(xs) => json!({"list": xs}),
        ParamValue::Range(lo, hi) => json!({"range": [poly(lo), poly(hi)]}),
        ParamValue::Str(s) => json!({"variant": s}),
    }
}

/// Which key of a data object feeds which input or param (`lossc run`'s rules, as data):
/// an input's name feeds that input of every loss that has it; `loss.param` feeds that
/// loss's param; a param's plain name feeds it only when it names no input and one loss
/// alone has such a param (else it is `ambiguous`, an error).
pub fn data_keys(irs: &[&LossIr]) -> Value {
    let mut keys: Vec<(String, Vec<Value>)> = Vec::new();
    let mut add = |key: String, feed: Value| match keys.iter_mut().find(|(k, _)| *k == key) {
        Some((_, feeds)) => feeds.push(feed),
        None => keys.push((key, vec![feed])),
    };
    let is_input = |name: &str| {
        irs.iter()
            .any(|ir| ir.inputs.iter().any(|i| i.name == name))
    };
    for (l, ir) in irs.iter().enumerate() {
        for i in &ir.inputs {
            add(i.name.clone(), json!({"loss": l, "input": i.name}));
        }
    }
    let mut ambiguous = Vec::new();
    for (l, ir) in irs.iter().enumerate() {
        for p in &ir.params {
            add(
                format!("{}.{}", ir.name, p.name),
                json!({"loss": l, "param": p.name}),
            );
            let owners = irs
                .iter()
                .filter(|x| x.params.iter().any(|q| q.name == p.name))
                .count();
            if is_input(&p.name) {
                continue;
            }
            if owners == 1 {
                add(p.name.clone(), json!({"loss": l, "param": p.name}));
            } else if !ambiguous.contains(&p.name) {
                ambiguous.push(p.name.clone());
            }
        }
    }
    json!({
        "keys": keys.into_iter().map(|(k, f)| json!({"key": k, "feeds": f})).collect::<Vec<_>>(),
        "ambiguous": ambiguous,
        "precedence": "a param takes the data's value, else its loss's factory setting (`settings`), else its default; an input absent from the data is absent (an error unless optional); a scalar given for a tensor param fills its shape",
    })
}

/// The work of a kernel's losses, as expressions: per loss its rows, elements, chunks
/// per row, items, first item and table offsets; then the totals and the dispatch.
pub fn work_data(k: &Kernel) -> Value {
    let mut losses = Vec::new();
    for (li, s) in k.schedules.iter().enumerate() {
        let mut tables = Vec::new();
        let mut built: Vec<Value> = Vec::new();
        for h in &s.hoisted {
            if h.same_as.is_some() {
                tables.push(Value::Null);
                continue;
            }
            tables.push(sum(built.clone()));
            let per_entry = if h.checks { 4 } else { 1 };
            let size = extents(li, &h.table_vars);
            built.push(if per_entry == 1 {
                size
            } else {
                product(vec![json!(per_entry), size])
            });
        }
        let r = json!({"row_per_thread": li});
        losses.push(json!({
            "rows": extents(li, &s.row_vars),
            "elements": extents(li, &s.elem_vars),
            "chunks_per_row": op("div_ceil", vec![work("elements", li), json!(CHUNK)]),
            "items": {
                "if_positive": r,
                "then": op("div_ceil", vec![work("rows", li), r.clone()]),
                "else": product(vec![work("rows", li), work("chunks_per_row", li)]),
            },
            "base": sum((0..li).map(|j| work("items", j)).collect()),
            "tables": tables,
            "table_total": sum(built),
        }));
    }
    let n = k.schedules.len();
    let total = sum((0..n).map(|j| work("items", j)).collect());
    let most_tables = op(
        "max",
        std::iter::once(json!(0))
            .chain((0..n).map(|j| work("table_total", j)))
            .collect(),
    );
    json!({
        "losses": losses,
        "total_items": total,
        "workgroups": op("max", vec![json!(1), op("min", vec![json!({"work": "total_items"}), json!(MAX_WORKGROUPS)])]),
        "slice_size": product(vec![json!(WORKGROUP), most_tables]),
    })
}

/// The value of each slot of the parameter block, as an expression; `irs` are the
/// kernel's losses in order.
pub fn slot_values(k: &Kernel, irs: &[&LossIr]) -> Vec<Value> {
    k.layout
        .slots
        .iter()
        .map(|slot| match slot {
            Slot::Dim { loss, dim } => {
                let d = irs[*loss].dims.iter().position(|x| &x.name == dim);
                match d {
                    Some(d) => json!({"poly": poly(&Poly::sym(d)), "loss": loss}),
                    None => json!(0),
                }
            }
            Slot::Lo { loss, index } => {
                let lo = irs[*loss].indices[*index]
                    .range
                    .clone()
                    .map(|r| r.0)
                    .unwrap_or_default();
                json!({"poly": poly(&lo), "loss": loss})
            }
            Slot::Extent { loss, index } => {
                json!({"extent": {"loss": loss, "index": index.index()}})
            }
            Slot::Offset { loss, tensor } => when_bound(
                irs[*loss],
                *loss,
                tensor,
                json!({"offset": {"loss": loss, "tensor": tensor}}),
            ),
            Slot::Shape { loss, tensor, axis } => {
                let ir = irs[*loss];
                let declared = ir.tensor_named(tensor).map(|t| shape_of(ir, t));
                let size = match declared.and_then(|s| s.get(*axis)) {
                    Some(p) => json!({"poly": poly(p), "loss": loss}),
                    None => json!(0),
                };
                when_bound(ir, *loss, tensor, size)
            }
            Slot::Enum { loss, param } => json!({"enum": {"loss": loss, "param": param}}),
            Slot::MaskOn { loss, mask } => {
                let ir = irs[*loss];
                let needs: Vec<&str> = ir.masks[*mask]
                    .needs
                    .iter()
                    .map(|i| ir.inputs[*i].name.as_str())
                    .collect();
                json!({"present": {"loss": loss, "inputs": needs}})
            }
            Slot::Rows { loss } => work("rows", *loss),
            Slot::RowPerThread { loss } => json!({"row_per_thread": loss}),
            Slot::Elems { loss } => work("elements", *loss),
            Slot::ChunksPerRow { loss } => op("max", vec![json!(1), work("chunks_per_row", *loss)]),
            Slot::Base { loss } => work("base", *loss),
            Slot::Items { loss } => work("items", *loss),
            Slot::Table { loss, table } => json!({"work": "table", "loss": loss, "table": table}),
            Slot::Anneal { loss } => json!({"anneal_bits": loss}),
            Slot::GradOffset { loss } => domain_elements(&irs[..*loss]),
            Slot::TotalItems => json!({"work": "total_items"}),
            Slot::SliceSize => json!({"work": "slice_size"}),
            Slot::Workgroups => json!({"work": "workgroups"}),
        })
        .collect()
}

/// `value` for a slot of `tensor` of loss `loss`; 0 while `tensor` is an optional input
/// without a default that the data leaves out (it has no array then).
fn when_bound(ir: &LossIr, loss: usize, tensor: &str, value: Value) -> Value {
    let may_be_absent = ir
        .inputs
        .iter()
        .any(|i| i.name == tensor && i.optional && i.default.is_none());
    if !may_be_absent {
        return value;
    }
    json!({
        "if_positive": {"present": {"loss": loss, "inputs": [tensor]}},
        "then": value,
        "else": 0,
    })
}

/// The summed domain sizes of `irs` (a backward kernel's losses: their gradients'
/// elements), the first loss's at position 0.
fn domain_elements(irs: &[&LossIr]) -> Value {
    sum(irs
        .iter()
        .enumerate()
        .map(|(j, ir)| extents(j, &ir.domain))
        .collect())
}

/// The bytes of a buffer of `slice_size` f32s per workgroup (at least one f32).
fn scratch_bytes() -> Value {
    product(vec![
        json!(4),
        op(
            "max",
            vec![
                json!(1),
                product(vec![
                    json!({"work": "slice_size"}),
                    json!({"work": "workgroups"}),
                ]),
            ],
        ),
    ])
}

/// `lc_sync`: the counter and the error word, two words per work item, one per site;
/// initialised to 0, 0, then 0xffffffff per item slot (empty), then 0 per site.
fn sync_buffer(k: &Kernel) -> Value {
    let item_words = product(vec![json!(2), json!({"work": "total_items"})]);
    json!({
        "holds": "sync",
        "bindings": ["lc_sync"],
        "bytes": product(vec![json!(4), sum(vec![json!(2 + k.sites.len()), item_words.clone()])]),
        "init": {"runs": [
            {"count": 2, "u32": 0},
            {"count": item_words, "u32": 0xffff_ffffu32},
            {"count": k.sites.len(), "u32": 0},
        ]},
    })
}

/// The size in bytes of each buffer a forward kernel binds, as expressions, and what it
/// starts as (`init`: the parameter block, the arena, zeros, or runs of u32 words);
/// never 0 bytes (WebGPU cannot bind an empty buffer).
pub fn forward_buffers(k: &Kernel) -> Value {
    let n = k.schedules.len();
    json!([
        {"holds": "parameter block", "bindings": ["lc_meta"], "bytes": 16 * k.layout.vec4s(), "init": "parameter_block"},
        {"holds": "arena", "bindings": ["lc_arena", "lc_arena4"],
         "bytes": product(vec![json!(16), op("max", vec![json!(1), op("div_ceil", vec![json!({"arena_floats": null}), json!(4)])])]),
         "init": "arena"},
        {"holds": "scratch", "bindings": ["lc_scratch"], "bytes": scratch_bytes(), "init": "zero"},
        sync_buffer(k),
        {"holds": "results", "bindings": ["lc_out"], "bytes": 4 * (4 * n + 1), "init": "zero"},
    ])
}

/// [`forward_buffers`] for a backward kernel: its gradients instead of its results
/// (which it reads from the forward kernel's `lc_out`, bound as `lc_saved`, and its
/// arena from the forward's).
pub fn backward_buffers(k: &Kernel, irs: &[&LossIr]) -> Value {
    let grads = domain_elements(irs);
    json!([
        {"holds": "parameter block", "bindings": ["lc_meta"], "bytes": 16 * k.layout.vec4s(), "init": "parameter_block"},
        {"holds": "scratch", "bindings": ["lc_scratch"], "bytes": scratch_bytes(), "init": "zero"},
        sync_buffer(k),
        {"holds": "gradients", "bindings": ["lc_grad"], "bytes": product(vec![json!(4), op("max", vec![json!(1), grads])]), "init": "zero"},
    ])
}
