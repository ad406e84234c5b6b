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

use super::bindings::{BINDINGS, META_STRUCT};
use super::layout::{Layout, Slot, SlotId};
use super::schedule::LossSchedule;
use super::wgsl::{PRELUDE, REDUCE, meta_value};
use super::writer::Writer;
use crate::ice::InternalError;
use crate::ir::{IndexId, LossIr};

/// Threads per workgroup. 64 fills a warp or wavefront or two on real GPUs, and keeps
/// barriers cheap on software rasterisers (llvmpipe runs a workgroup's SIMD groups as
/// coroutines, and a barrier switches through all of them).
pub const WORKGROUP: usize = 64;
/// Elements of a row one work item streams (64 per thread).
pub const CHUNK: usize = WORKGROUP * 64;
/// The error word's value when a partial result never arrived.
pub const TIMEOUT_CODE: u32 = 0xffff_fff0;

/// Everything one loss's code needs while it is written.
struct LossEmitter<'a> {
    ir: &'a LossIr,
    li: usize,
    sched: &'a LossSchedule,
    layout: &'a mut Layout,
    sites: &'a mut Vec<String>,
    /// Whether `layout` and `sites` are a generic kernel's, to be kept ([`Shared::frozen`]).
    frozen: bool,
    w: &'a mut Writer,
    /// Per open block: node → the WGSL name holding its value.
    cache: Vec<HashMap<NodeIndex, String>>,
    /// Per index variable: a stack of (block depth, WGSL name) bindings.
    binds: HashMap<IndexId, Vec<(usize, String)>>,
    fresh: &'a mut usize,
    /// Set when the emitter meets a state that is a compiler bug.
    bug: Option<InternalError>,
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
}

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
        shared: &'a mut Shared,
        w: &'a mut Writer,
        values: Option<&'a [i32]>,
    ) -> LossEmitter<'a> {
        LossEmitter {
            ir,
            li,
            sched,
            layout: &mut shared.layout,
            sites: &mut shared.sites,
            frozen: shared.frozen,
            w,
            cache: vec![HashMap::new()],
            binds: HashMap::new(),
            fresh: &mut shared.fresh,
            bug: None,
            slice: "slice",
            values,
            at: None,
            linear: None,
            lane: None,
            shared_loads: None,
        }
    }
}

/// What the losses of one kernel share while it is written.
#[derive(Default)]
struct Shared {
    /// The parameter block's slots, in the order they are first used; when specialising,
    /// the generic kernel's, complete from the start ([`Shared::frozen`]).
    layout: Layout,
    /// The bounds-checked read sites, by number (1-based); when specialising, the
    /// generic kernel's.
    sites: Vec<String>,
    /// Whether `layout` and `sites` are the generic kernel's: a specialised kernel is
    /// written against them, so that its slot and site numbers are the generic one's
    /// whatever order it meets them in (it drops branches, and walks some muted), and a
    /// slot or site the generic kernel lacks is a bug.
    frozen: bool,
    /// The counter fresh WGSL names are numbered by.
    fresh: usize,
    /// The first state met that is a compiler bug.
    bug: Option<InternalError>,
}

impl Shared {
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
            write(&mut e);
            let bug = e.bug.take();
            self.bug = self.bug.take().or(bug);
        }
    }
}

/// The fused kernel of a factory.
pub struct Generated {
    /// The WGSL module.
    pub wgsl: String,
    /// Its parameter slots.
    pub layout: Layout,
    /// Descriptions of the bounds-checked reads, by site number (1-based).
    pub sites: Vec<String>,
}

/// The generic kernel a specialised one is written against: its parameter block's
/// values, and its slots and read sites, which the specialised kernel keeps.
pub struct Specialising<'a> {
    /// The value of each slot of `layout`.
    pub values: &'a [i32],
    /// The generic kernel's slots.
    pub layout: &'a Layout,
    /// The generic kernel's read sites.
    pub sites: &'a [String],
}

/// Writes the fused kernel for the given (already scheduled) losses: generic (sizes read
/// from the parameter block), or specialised to a generic kernel's parameter block.
pub fn generate(
    name: &str,
    losses: &[(&LossIr, &LossSchedule)],
    specialising: Option<Specialising>,
) -> Result<Generated, InternalError> {
    let mut shared = Shared::default();
    let values = specialising.as_ref().map(|s| s.values);
    if let Some(s) = &specialising {
        shared.layout = s.layout.clone();
        shared.sites = s.sites.to_vec();
        shared.frozen = true;
    }
    let mut body = Writer::default();
    shared.each_loss(losses, values, &mut body, |e| e.loss_fn());
    // main: the item loop, then the last workgroup's combination.
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
        let a = meta_value(shared.slot(Slot::Anneal { loss: li }), values);
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
    if let Some(b) = shared.bug {
        return Err(b);
    }

    let mut w = Writer::default();
    w.line(format!(
        "// lossc fused kernel `{name}`: {} loss(es) in one dispatch.",
        losses.len()
    ));
    w.line("// Generated by lossc; each statement names the .loss line it comes from.");
    w.blank();
    w.splice(PRELUDE);
    w.blank();
    w.splice(REDUCE);
    w.blank();
    for b in BINDINGS.iter().filter(|b| b.is_uniform()) {
        w.open(format!("struct {META_STRUCT}"));
        w.line(format!(
            "m: array<{}, {}>,",
            b.element,
            shared.layout.vec4s()
        ));
        w.close();
    }
    for b in &BINDINGS {
        if let Some(note) = b.note {
            w.line(format!("// {note}"));
        }
        w.line(b.declaration());
    }
    w.blank();
    w.line(
        "// A bounds-checked subscript: out of range raises `site` in the error word and reads 0.",
    );
    w.open("fn lc_chk(i: i32, n: i32, site: u32) -> i32");
    w.open("if (i < 0 || i >= n)");
    w.line("atomicMax(&lc_sync[1], site);");
    w.line("return 0;");
    w.close();
    w.line("return i;");
    w.close();
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
        wgsl: w.finish(),
        layout: shared.layout,
        sites: shared.sites,
    })
}
