//! Lowering one factory to one fused WGSL compute kernel.
//!
//! Work is split into *items*: each loss has `rows × chunks` of them (see
//! [`super::schedule`]), and the factory's items are numbered loss after loss. Each
//! workgroup takes items `wid, wid + nwg, ...`: per item it computes the row's hoisted
//! tables into its scratch slice, streams one chunk of the row's elements, and publishes
//! the chunk's (sum, count) in its partial-result slots, atomically. The last workgroup to
//! finish (found with an atomic counter) waits for every slot, combines them per loss in a
//! fixed order, applies means, `empty:` values, weights and anneal factors, writes the
//! results, and resets the slots for the next dispatch. Every reduction order is fixed, so
//! results are bit-identical run to run.
//!
//! The emitter is one `LossEmitter` per loss, its methods spread by job: `scope` (blocks,
//! names, index bindings, what a specialised kernel knows), `address` (subscripts and
//! reads, contiguous and four-wide), `expr` (a node's value), `loops` (loops over indices
//! and their counters), `reduce` (reductions inline, cooperative and tabled), and `kernel`
//! (a loss's function, its per-element stages and its final combination). [`generate`]
//! assembles the module.

mod address;
mod expr;
mod kernel;
mod loops;
mod reduce;
mod scope;

use std::collections::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::Site;
use super::analysis::ReadRecord;
use super::bindings::{BACKWARD_BINDINGS, BINDINGS, META_STRUCT};
use super::layout::{Layout, Slot, SlotId};
use super::schedule::LossSchedule;
use super::wgsl::{PRELUDE, REDUCE, meta_ref, meta_value, set_zero_bits};
use super::writer::Writer;
use crate::ice::InternalError;
use crate::ir::sites::CheckedRead;
use crate::ir::{IndexId, LossIr};

/// Threads per workgroup. 64 fills a warp or wavefront or two on real GPUs, and keeps
/// barriers cheap on software rasterisers (llvmpipe runs a workgroup's SIMD groups as
/// coroutines, and a barrier switches through all of them).
pub const WORKGROUP: usize = 64;
/// Elements of a row one work item streams (64 per thread).
pub const CHUNK: usize = WORKGROUP * 64;
/// The most workgroups a dispatch uses in one dimension (WebGPU's portable limit); the
/// work items go round them.
pub const MAX_WORKGROUPS: i64 = 65535;
/// The error word's value when a partial result never arrived.
pub const TIMEOUT_CODE: u32 = 0xffff_fff0;

/// The deepest block nesting a kernel may have. WGSL asks compilers to accept 127 nested
/// braces and naga stops there, counting the function's own: a kernel whose lines sit
/// inside 125 blocks passes naga 30, one at 126 does not. Nested reductions and branches
/// each open a block or two, so past this the kernel is refused as a user's program too
/// deep for a GPU, with its place, instead of failing naga as an internal error.
pub const MAX_BLOCK_DEPTH: usize = 125;

/// Where a kernel first nests blocks deeper than [`MAX_BLOCK_DEPTH`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooDeep {
    /// The loss being written.
    pub loss: String,
    /// `file:line:col` of the expression being written there, where known.
    pub at: Option<String>,
}

/// Everything one loss's code needs while it is written.
struct LossEmitter<'a> {
    ir: &'a LossIr,
    li: usize,
    sched: &'a LossSchedule,
    layout: &'a mut Layout,
    /// This loss's checked reads ([`LossIr::checked_reads`]), and the error code of each.
    checked: Vec<CheckedRead>,
    codes: Vec<u32>,
    /// Whether `layout` is a generic kernel's, to be kept ([`Shared::frozen`]).
    frozen: bool,
    /// Whether a failed checked read is noted for the entry being built (`lc_chkq`, in a
    /// hoisted table that reads through a gather) rather than raised (`lc_chk`).
    quiet: bool,
    /// Every read of an input the kernel makes, as written ([`ReadRecord`]).
    reads: &'a mut Vec<ReadRecord>,
    /// The code being written: a mode's (`Some(true)`: one row per thread, `Some(false)`:
    /// shared rows) or the final combination's (`None`).
    placement: Option<bool>,
    /// Whether the per-element stages are being written.
    in_elements: bool,
    /// How many four-wide loops enclose the code being written.
    four_wide_depth: u32,
    w: &'a mut Writer,
    /// Per open block: node → the WGSL name holding its value.
    cache: Vec<HashMap<NodeIndex, String>>,
    /// Per index variable: a stack of (block depth, WGSL name) bindings.
    binds: HashMap<IndexId, Vec<(usize, String)>>,
    fresh: &'a mut usize,
    /// Set when the emitter meets a state that is a compiler bug.
    bug: Option<InternalError>,
    /// Set when the code opens a block deeper than WGSL compilers accept.
    too_deep: Option<TooDeep>,
    /// The WGSL name of the scratch offset hoisted tables are read at.
    slice: &'static str,
    /// The parameter block's values, when the kernel is specialised to them.
    values: Option<&'a [i32]>,
    /// The node whose value is being written, for the location of an internal error.
    at: Option<NodeIndex>,
    /// The loop being emitted: its indices (row-major) and the WGSL name of its linear
    /// index, for contiguous reads.
    linear: Option<(Vec<IndexId>, String)>,
    /// In a four-wide loop: its base index's name and which of the four elements.
    lane: Option<(String, usize)>,
    /// In a four-wide loop: the block depth of its body, and the vec4 loads its four
    /// elements share, declared at the top of the body once the elements are written.
    shared_loads: Option<(usize, Vec<SharedLoad>)>,
    /// In a backward kernel: this loss's gradient is stored element by element, not
    /// reduced ([`Backward`]).
    store: Option<StoreTo>,
    /// The number of losses in the kernel.
    n_losses: usize,
    /// Whether the tables built once per workgroup are being written.
    per_workgroup_tables: bool,
}

/// What a backward loss reads from the forward kernel's results.
type StoreTo = super::SavedReads;

/// A vec4 load the four values of a four-wide loop's iteration share.
struct SharedLoad {
    /// The load expression.
    load: String,
    /// The `let` holding it.
    name: String,
    /// The source location of the first read through it, as a comment.
    comment: String,
}

impl<'a> LossEmitter<'a> {
    /// An emitter for loss `li`, writing to `w`, sharing the kernel's slots, read sites
    /// and name counter with the other losses.
    fn new(
        ir: &'a LossIr,
        li: usize,
        sched: &'a LossSchedule,
        shared: &'a mut Shared<'_>,
        w: &'a mut Writer,
        values: Option<&'a [i32]>,
    ) -> LossEmitter<'a> {
        LossEmitter {
            ir,
            li,
            sched,
            layout: &mut shared.layout,
            checked: ir.checked_reads(),
            codes: shared.codes[li].clone(),
            frozen: shared.frozen,
            quiet: false,
            reads: &mut shared.reads,
            placement: None,
            in_elements: false,
            four_wide_depth: 0,
            w,
            cache: vec![HashMap::new()],
            binds: HashMap::new(),
            fresh: &mut shared.fresh,
            bug: None,
            too_deep: None,
            slice: "slice",
            values,
            at: None,
            linear: None,
            lane: None,
            shared_loads: None,
            store: shared.store.as_ref().and_then(|s| s.get(li).copied()),
            n_losses: 0,
            per_workgroup_tables: false,
        }
    }
}

/// What the losses of one kernel share while it is written.
#[derive(Default)]
struct Shared<'v> {
    /// The parameter block's values, when the kernel is specialised to them.
    values: Option<&'v [i32]>,
    /// The parameter block's slots, in the order they are first used; when specialising,
    /// the generic kernel's, complete from the start ([`Shared::frozen`]).
    layout: Layout,
    /// The checked reads, by error code (1-based).
    sites: Vec<Site>,
    /// Per loss, the error code of each of its checked reads, in their order.
    codes: Vec<Vec<u32>>,
    /// Every read of an input the kernel makes, as written.
    reads: Vec<ReadRecord>,
    /// Whether `layout` is the generic kernel's: a specialised kernel is written against
    /// it, so that its slot numbers are the generic one's whatever order it meets them in
    /// (it drops branches, and walks some muted), and a slot the generic kernel lacks is
    /// a bug.
    frozen: bool,
    /// The counter fresh WGSL names are numbered by.
    fresh: usize,
    /// The first state met that is a compiler bug.
    bug: Option<InternalError>,
    /// The first block opened deeper than WGSL compilers accept.
    too_deep: Option<TooDeep>,
    /// In a backward kernel, each loss's store.
    store: Option<Vec<StoreTo>>,
}

impl Shared<'_> {
    /// A slot of `main` (no loss's): the generic kernel has every one of them.
    fn slot(&mut self, s: Slot) -> SlotId {
        if self.frozen && self.layout.get(&s).is_none() && self.bug.is_none() {
            self.bug = Some(InternalError::new(format!(
                "the specialised kernel uses the slot {s:?}, which the generic kernel does not have"
            )));
        }
        self.layout.slot(s)
    }

    /// Writes each loss's part to `w` in turn, with `write`.
    fn each_loss(
        &mut self,
        losses: &[(&LossIr, &LossSchedule)],
        values: Option<&[i32]>,
        w: &mut Writer,
        write: impl Fn(&mut LossEmitter),
    ) {
        for (li, (ir, sched)) in losses.iter().enumerate() {
            let mut e = LossEmitter::new(ir, li, sched, self, w, values);
            e.n_losses = losses.len();
            write(&mut e);
            let (bug, too_deep) = (e.bug.take(), e.too_deep.take());
            self.bug = self.bug.take().or(bug);
            self.too_deep = self.too_deep.take().or(too_deep);
        }
    }
}

/// The fused kernel of a factory.
pub struct Generated {
    /// The WGSL module.
    pub wgsl: String,
    /// Its parameter slots.
    pub layout: Layout,
    /// The checked reads, by error code (1-based).
    pub sites: Vec<Site>,
    /// Every read of an input the kernel makes, as written (muted code left out).
    pub reads: Vec<ReadRecord>,
    /// Where the kernel nests blocks deeper than WGSL compilers accept, if it does.
    pub too_deep: Option<TooDeep>,
}

/// The generic kernel a specialised one is written against: its parameter block's
/// values, and its slots, which the specialised kernel keeps.
pub struct Specialising<'a> {
    /// The value of each slot of `layout`.
    pub values: &'a [i32],
    /// The generic kernel's slots.
    pub layout: &'a Layout,
}

/// The checked reads of the losses, numbered: loss after loss and, within a loss, in
/// [`LossIr::checked_reads`]' order, the first read gets the highest error code, so that
/// the error word (the highest code raised) names the first failed read. Returns the
/// sites by code and, per loss, the code of each of its reads.
fn number_sites(losses: &[(&LossIr, &LossSchedule)]) -> (Vec<Site>, Vec<Vec<u32>>) {
    let mut all = Vec::new();
    for (li, (ir, _)) in losses.iter().enumerate() {
        for r in ir.checked_reads() {
            let tensor_name = ir.tensor_name(r.tensor).to_string();
            all.push(Site {
                loss: li,
                loss_name: ir.name.clone(),
                tensor: r.tensor,
                tensor_name,
                axis: r.axis,
                subscript: ir.show_subscripts(&r.subscripts),
                at: ir.origin.position(ir.graph[r.node].span),
            });
        }
    }
    let n = all.len() as u32;
    let mut codes: Vec<Vec<u32>> = vec![Vec::new(); losses.len()];
    for (g, site) in all.iter().enumerate() {
        codes[site.loss].push(n - g as u32);
    }
    all.reverse();
    (all, codes)
}

/// Writes the fused kernel for the given (already scheduled) losses: generic (sizes read
/// from the parameter block), or specialised to a generic kernel's parameter block.
pub fn generate(
    name: &str,
    losses: &[(&LossIr, &LossSchedule)],
    specialising: Option<Specialising>,
) -> Result<Generated, InternalError> {
    let (mut shared, body, mut main, nwg, total) =
        losses_and_item_loop(losses, specialising, None, &[]);
    let values = shared.values;
    // main, after the item loop: the last workgroup's combination.
    main.open("if (lid == 0u)");
    main.line("let done = atomicAdd(&lc_sync[0], 1u);");
    main.line(format!("lc_last = select(0u, 1u, done == u32({nwg} - 1));"));
    main.close();
    main.line("let last = workgroupUniformLoad(&lc_last);");
    main.open("if (last == 1u)");
    shared.each_loss(losses, values, &mut main, |e| e.finish());
    main.line("// the factory's total, in factory order");
    main.open("if (lid == 0u)");
    main.line("var total: f32 = 0.0f;");
    for li in 0..losses.len() {
        // Never a literal: a host changes the anneal factor between runs (a training
        // schedule) by writing the parameter block, without a new pipeline.
        let a = meta_ref(shared.slot(Slot::Anneal { loss: li }));
        main.line(format!(
            "total = total + lc_bits(bitcast<u32>({a})) * lc_out[{}];",
            3 * li + 2
        ));
    }
    main.line(format!("lc_out[{}] = total;", 3 * losses.len()));
    main.line("atomicStore(&lc_sync[0], 0u);");
    main.close();
    main.line("// ready for the next dispatch");
    main.open(format!(
        "for (var k: i32 = 2 + i32(lid); k < 2 + 2 * {total}; k += {WORKGROUP})"
    ));
    main.line("atomicStore(&lc_sync[k], LC_EMPTY);");
    main.close();
    main.close();
    main.close();
    let title = format!(
        "// lossc fused kernel `{name}`: {} loss(es) in one dispatch.",
        losses.len()
    );
    module(&title, &BINDINGS, shared, body, main, &total)
}

/// Writes the backward kernel of a factory: `losses` are its gradients as losses
/// ([`crate::ir::COUNT_PARAM`]), each stored element by element into `lc_grad` instead of
/// reduced, times its forward loss's weight and anneal factor; `saved[i]` is where loss
/// `i` finds its forward loss's weight and count in the forward kernel's results
/// (`lc_saved`).
pub fn generate_backward(
    name: &str,
    losses: &[(&LossIr, &LossSchedule)],
    saved: &[super::SavedReads],
    specialising: Option<Specialising>,
) -> Result<Generated, InternalError> {
    let store = saved.to_vec();
    let (shared, body, mut main, _, total) =
        losses_and_item_loop(losses, specialising, Some(store), &["lc_saved"]);
    main.close();
    let title = format!(
        "// lossc backward kernel `{name}`: {} gradient(s) in one dispatch, after the forward kernel.",
        losses.len()
    );
    module(&title, &BACKWARD_BINDINGS, shared, body, main, &total)
}

/// The losses' functions, and `main` up to the end of its item loop (left open for what
/// follows it): each workgroup takes items `wid, wid + nwg, ...` and calls the function
/// of the loss each belongs to. `store` makes the losses backward losses; `uses` are
/// bindings `main` touches statically (besides `lc_arena4`), so that a host building
/// its pipeline with `layout: auto` gets every binding the manifest lists. Returns the
/// shared state, the functions, `main`, and the WGSL of the workgroup count and of the
/// total item count.
fn losses_and_item_loop<'v>(
    losses: &[(&LossIr, &LossSchedule)],
    specialising: Option<Specialising<'v>>,
    store: Option<Vec<StoreTo>>,
    uses: &[&str],
) -> (Shared<'v>, Writer, Writer, String, String) {
    let mut shared = Shared {
        values: specialising.as_ref().map(|s| s.values),
        ..Shared::default()
    };
    if let Some(s) = &specialising {
        shared.layout = s.layout.clone();
        shared.frozen = true;
    }
    shared.store = store;
    (shared.sites, shared.codes) = number_sites(losses);
    let values = shared.values;
    let mut body = Writer::default();
    shared.each_loss(losses, values, &mut body, |e| e.loss_fn());
    let mut main = Writer::default();
    main.line(format!("@compute @workgroup_size({WORKGROUP})"));
    main.open(
        "fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>)",
    );
    let nwg = meta_value(shared.slot(Slot::Workgroups), values);
    let total = meta_value(shared.slot(Slot::TotalItems), values);
    let slice_size = meta_value(shared.slot(Slot::SliceSize), values);
    // A static use, so that a host building its pipeline with `layout: auto` gets the
    // binding the manifest lists even when no read is aligned.
    main.line("_ = lc_arena4[0];");
    for u in uses {
        main.line(format!("_ = {u}[0];"));
    }
    main.line(set_zero_bits("lc_arena"));
    main.line("let wid = i32(wg.x);");
    main.line(format!("let slice = wid * {slice_size};"));
    main.open(format!(
        "for (var item: i32 = wid; item < {total}; item += {nwg})"
    ));
    for li in 0..losses.len() {
        let base = meta_value(shared.slot(Slot::Base { loss: li }), values);
        let items = meta_value(shared.slot(Slot::Items { loss: li }), values);
        main.open(format!("if (item >= {base} && item < {base} + {items})"));
        main.line(format!("loss_{li}(item - {base}, item, lid, slice);"));
        main.close();
    }
    main.close();
    (shared, body, main, nwg, total)
}

/// The module around the losses' functions (`body`) and `main`: the prelude, the
/// bindings, the checked reads' helpers.
fn module(
    title: &str,
    bindings: &[super::bindings::Binding],
    shared: Shared<'_>,
    body: Writer,
    main: Writer,
    total: &str,
) -> Result<Generated, InternalError> {
    if let Some(b) = shared.bug {
        return Err(b);
    }
    let mut w = Writer::default();
    w.line(title);
    w.line("// Generated by lossc; each statement names the .loss line it comes from.");
    w.blank();
    w.splice(PRELUDE);
    w.blank();
    w.splice(REDUCE);
    w.blank();
    for b in bindings.iter().filter(|b| b.is_uniform()) {
        w.open(format!("struct {META_STRUCT}"));
        w.line(format!(
            "m: array<{}, {}>,",
            b.element,
            shared.layout.vec4s()
        ));
        w.close();
    }
    for b in bindings {
        if let Some(note) = b.note {
            w.line(format!("// {note}"));
        }
        w.line(b.declaration());
    }
    w.blank();
    checks(&mut w, total);
    w.blank();
    w.line("// A partial result published by another workgroup: atomics are the only memory WGSL");
    w.line("// orders between workgroups, so wait until the slot holds a value.");
    w.open("fn lc_wait(slot: i32) -> u32");
    w.open("for (var spin: u32 = 0u; spin < 100000000u; spin++)");
    w.line("let v = atomicLoad(&lc_sync[slot]);");
    w.line("if (v != LC_EMPTY) { return v; }");
    w.close();
    w.line(format!("atomicMax(&lc_sync[1], {TIMEOUT_CODE:#x}u);"));
    w.line("return 0u;");
    w.close();
    w.blank();
    w.splice(&body.finish());
    w.splice(&main.finish());
    Ok(Generated {
        wgsl: super::wgsl::link(w.finish()),
        layout: shared.layout,
        sites: shared.sites,
        reads: shared.reads,
        too_deep: shared.too_deep,
    })
}

/// The checked reads' helpers. A read through a gather whose index leaves its axis reads
/// index 0 instead and, where its value is needed, *raises* its site's code in the error
/// word `lc_sync[1]` (the highest code wins: the first failed read) and the index in the
/// site's word after the partial slots (the largest wins); `total` is the number of work
/// items. While a hoisted table that reads through a gather is built, a failure is only
/// *noted* for the entry (`lc_fault`, `lc_fault_at`: the highest code, then the largest
/// index), stored beside the entry, and raised where the entry is read.
fn checks(w: &mut Writer, total: &str) {
    let word = format!("lc_sync[1 + 2 * {total} + i32(site)]");
    w.line("// The failure noted for the table entry being built: a site's code, and its index");
    w.line("// as u32 with the sign bit flipped (so that unsigned order is signed order).");
    w.line("var<private> lc_fault: u32;");
    w.line("var<private> lc_fault_at: u32;");
    w.blank();
    w.line("// Raises a failed read: its code in the error word, its index in the site's word.");
    w.open("fn lc_raise(site: u32, at: u32)");
    w.open("if (site != 0u)");
    w.line("atomicMax(&lc_sync[1], site);");
    w.line(format!("atomicMax(&{word}, at);"));
    w.close();
    w.close();
    w.blank();
    w.line("// Notes a failed read for the entry being built.");
    w.open("fn lc_note(site: u32, at: u32)");
    w.open("if (site > lc_fault || (site == lc_fault && at > lc_fault_at))");
    w.line("lc_fault = site;");
    w.line("lc_fault_at = at;");
    w.close();
    w.close();
    w.blank();
    w.line("// A gathered value as a subscript: whole, saturated at i32's bounds (NaN is 0).");
    w.open("fn lc_idx(g: f32) -> i32");
    w.line("if (lc_isnan(g)) { return 0; }");
    w.line("if (g >= 2147483648.0) { return 2147483647; }");
    w.line("if (g <= -2147483648.0) { return -2147483647 - 1; }");
    w.line("return i32(g);");
    w.close();
    w.blank();
    w.line("// A subscript through a gather `i`, computed in i32, and `f`, the same in f32: where");
    w.line("// they differ by more than f32 rounding can, `i` wrapped, and the bound is returned.");
    w.open("fn lc_exact(i: i32, f: f32) -> i32");
    w.open("if (abs(f - f32(i)) > 1048576.0)");
    w.line("return select(-2147483647 - 1, 2147483647, f > 0.0);");
    w.close();
    w.line("return i;");
    w.close();
    w.blank();
    w.line("// A checked subscript: out of range, it raises `site` and reads index 0.");
    w.open("fn lc_chk(i: i32, n: i32, site: u32) -> i32");
    w.open("if (i < 0 || i >= n)");
    w.line("lc_raise(site, bitcast<u32>(i) ^ 0x80000000u);");
    w.line("return 0;");
    w.close();
    w.line("return i;");
    w.close();
    w.blank();
    w.line("// The same in a hoisted table's entry: out of range, it notes `site` and reads 0.");
    w.open("fn lc_chkq(i: i32, n: i32, site: u32) -> i32");
    w.open("if (i < 0 || i >= n)");
    w.line("lc_note(site, bitcast<u32>(i) ^ 0x80000000u);");
    w.line("return 0;");
    w.close();
    w.line("return i;");
    w.close();
}
