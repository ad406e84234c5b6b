//! Laying out a dispatch's work: per loss, its rows and elements, where its rows go (a
//! workgroup's shared rows, or one row per thread), its hoisted tables' scratch, its
//! work items and their workgroups; and the loop budget of llvmpipe. It needs only the
//! kernel, the bound sizes and a few facts about the adapter, so `lossc explain --data`
//! shows the same layout a dispatch uses.

use std::collections::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::{Gpu, PlanError};
use crate::bind::Bound;
use crate::codegen::Kernel;
use crate::codegen::emit::{CHUNK, MAX_WORKGROUPS, WORKGROUP};
use crate::codegen::schedule::{Hoisted, LossSchedule};
use crate::ir::{IndexId, LossIr, Op, ReduceFn, TiSlice, extent, operands};

/// What the layout needs to know about an adapter.
#[derive(Clone, Copy, Debug)]
pub struct Adapter {
    /// A CPU adapter (llvmpipe, SwiftShader, WARP): barriers are expensive.
    pub cpu: bool,
    /// Mesa's llvmpipe, which bounds the loop iterations of a shader invocation.
    pub llvmpipe: bool,
    /// The most workgroups of one dispatch dimension (at most 65 535).
    pub max_workgroups: i64,
}

impl Adapter {
    /// The facts of `gpu`'s adapter.
    pub fn of(gpu: &Gpu) -> Adapter {
        Adapter {
            cpu: gpu.info.device_type == wgpu::DeviceType::Cpu,
            llvmpipe: gpu.is_llvmpipe(),
            max_workgroups: gpu
                .limits
                .max_compute_workgroups_per_dimension
                .min(MAX_WORKGROUPS as u32) as i64,
        }
    }

    /// A discrete GPU with WebGPU's default limits (for a layout without an adapter).
    pub fn a_gpu() -> Adapter {
        Adapter {
            cpu: false,
            llvmpipe: false,
            max_workgroups: MAX_WORKGROUPS,
        }
    }
}

/// The layout of one dispatch.
pub struct Plan {
    /// Per loss: its rows.
    pub rows: Vec<i64>,
    /// Per loss: the elements of a row.
    pub elems: Vec<i64>,
    /// Per loss: the chunks of `CHUNK` elements a shared row splits into.
    pub chunks_per_row: Vec<i64>,
    /// Per loss: the scratch offset of each hoisted table, then the tables' total size.
    pub tables: Vec<Vec<i64>>,
    /// The largest total table size of a loss (a row's tables).
    pub slice: i64,
    /// Per loss: the loop iterations of one whole row done by one thread.
    pub row_cost: Vec<u64>,
    /// The work items and workgroups.
    pub work: WorkPlan,
}

/// Lays out the work of `kernel` on the bound sizes for `adapter`, with rows placed as
/// `placement` says; refuses a layout llvmpipe would cut short.
pub fn plan(
    adapter: &Adapter,
    kernel: &Kernel,
    bound: &[&Bound],
    placement: RowPlacement,
) -> Result<Plan, PlanError> {
    // Work counts per loss.
    let mut rows = Vec::new();
    let mut elems = Vec::new();
    let mut tables: Vec<Vec<i64>> = Vec::new();
    for (b, s) in bound.iter().zip(&kernel.schedules) {
        rows.push(product(s.row_vars.iter().map(|v| extent(b.ranges[*v])))?);
        elems.push(product(s.elem_vars.iter().map(|v| extent(b.ranges[*v])))?);
        let mut offs = Vec::new();
        let mut at = 0i64;
        for h in &s.hoisted {
            offs.push(at);
            if h.same_as.is_none() {
                // A table that reads through a gather keeps each entry's failed read too.
                let per_entry = if h.checks { 4 } else { 1 };
                at += per_entry * product(h.table_vars.iter().map(|v| extent(b.ranges[*v])))?;
            }
        }
        offs.push(at);
        tables.push(offs);
    }
    let cpr: Vec<i64> = elems
        .iter()
        .map(|e| (e + CHUNK as i64 - 1) / CHUNK as i64)
        .collect();
    let row_cost: Vec<u64> = bound
        .iter()
        .zip(&kernel.schedules)
        .map(|(b, s)| serial_row_cost(b, s))
        .collect();
    let slice = tables
        .iter()
        .map(|t| *t.last().unwrap_or(&0))
        .max()
        .unwrap_or(0);
    let max_wg = adapter.max_workgroups;
    // Rows one per thread: no barrier per table, none per chunk (see RowPlacement).
    let per_thread: Vec<bool> = (0..bound.len())
        .map(|i| placement.per_thread(adapter, rows[i], elems[i], row_cost[i]))
        .collect();
    let mut work = WorkPlan::new(per_thread, &rows, &cpr, max_wg)?;
    if adapter.llvmpipe {
        let needed = |w: &WorkPlan| {
            iterations_per_invocation(
                kernel,
                bound,
                &w.items,
                &w.per_thread,
                &row_cost,
                w.workgroups,
            )
        };
        let mut worst = needed(&work);
        if worst > LLVMPIPE_LOOP_LIMIT && placement == RowPlacement::Auto {
            // Long rows one per thread (the CPU rule) may exceed the budget where
            // shared rows fit: keep only short rows per thread.
            let short: Vec<bool> = (0..bound.len())
                .map(|i| work.per_thread[i] && short_rows(elems[i], row_cost[i]))
                .collect();
            let retry = WorkPlan::new(short, &rows, &cpr, max_wg)?;
            let again = needed(&retry);
            if again < worst {
                (work, worst) = (retry, again);
            }
        }
        if worst > LLVMPIPE_LOOP_LIMIT {
            return Err(PlanError::LoopBudget {
                needed: worst,
                limit: LLVMPIPE_LOOP_LIMIT,
                costliest: costliest_loop(kernel, bound),
                // With rows one per thread by request, shared rows may still fit.
                shared_would_fit: placement == RowPlacement::PerThread,
            });
        }
    }
    Ok(Plan {
        rows,
        elems,
        chunks_per_row: cpr,
        tables,
        slice,
        row_cost,
        work,
    })
}

/// Mesa's llvmpipe (lavapipe) silently stops every shader invocation after this many
/// loop iterations in total (measured: a 70 000-term sum comes back as its first 65 535
/// terms), so a dispatch that needs more would return wrong numbers there.
pub const LLVMPIPE_LOOP_LIMIT: u64 = 65_535;

/// Loop iterations of the inline reductions evaluated for one evaluation of `n`.
fn inline_iterations(
    ir: &LossIr,
    sched: &LossSchedule,
    ranges: &TiSlice<IndexId, (i64, i64)>,
    n: NodeIndex,
    memo: &mut HashMap<NodeIndex, u64>,
) -> u64 {
    if let Some(v) = memo.get(&n) {
        return *v;
    }
    let args = operands(&ir.graph, n);
    let v = match &ir.graph[n].op {
        Op::Reduce(kind, bound) if sched.hoisted_index(n).is_none() => {
            let body = 1u64.saturating_add(inline_iterations(ir, sched, ranges, args[0], memo));
            reduction_iterations(*kind, values_of(bound, ranges), body)
        }
        Op::Reduce(..) => 0,
        _ => args
            .iter()
            .map(|a| inline_iterations(ir, sched, ranges, *a, memo))
            .fold(0u64, u64::saturating_add),
    };
    memo.insert(n, v);
    v
}

/// The reduction of the kernel that costs the most loop iterations per row of its loss,
/// in words (`the median of loss `med` at med.loss:3:29, 90300 iterations per row`): a
/// hoisted table costs its entries times one reduction, an inline reduction its
/// iterations per evaluation times the row's elements (an upper bound: it may sit in a
/// stage evaluated once).
fn costliest_loop(kernel: &Kernel, bound: &[&Bound]) -> Option<String> {
    let mut best: Option<(u64, String)> = None;
    for (b, s) in bound.iter().zip(&kernel.schedules) {
        let ir = b.ir;
        let mut memo = HashMap::new();
        let elems = values_of(&s.elem_vars, &b.ranges);
        for n in ir.graph.node_indices() {
            let Op::Reduce(kind, _) = &ir.graph[n].op else {
                continue;
            };
            let cost = match s.hoisted_index(n) {
                Some(k) => match table_sizes(b, s, &s.hoisted[k], &mut memo) {
                    Some((entries, values, body, kind)) => {
                        entries.saturating_mul(reduction_iterations(kind, values, body))
                    }
                    None => continue,
                },
                None => inline_iterations(ir, s, &b.ranges, n, &mut memo).saturating_mul(elems),
            };
            if best.as_ref().is_none_or(|(c, _)| cost > *c) {
                let what = format!(
                    "the {} of loss `{}` at {}, {cost} iterations per row",
                    kind.name(),
                    ir.name,
                    ir.origin.locate(ir.graph[n].span)
                );
                best = Some((cost, what));
            }
        }
    }
    best.map(|(_, what)| what)
}

/// Loop iterations of one reduction over `count` values whose body costs `body`
/// iterations each, done by one thread: one pass, for a median a second pass per value
/// (the rank count), for the k-th largest 32 passes (the bisection's).
fn reduction_iterations(kind: ReduceFn, count: u64, body: u64) -> u64 {
    let once = count.saturating_mul(body);
    match kind {
        ReduceFn::Median => once.saturating_add(count.saturating_mul(once)),
        ReduceFn::NthLargest => once.saturating_mul(32),
        _ => once,
    }
}

/// Loop iterations of one element of a loss: 1, plus the inline reductions of its
/// per-element roots (`compute`, each mask's condition, `rectify`).
fn element_iterations(
    ir: &LossIr,
    sched: &LossSchedule,
    ranges: &TiSlice<IndexId, (i64, i64)>,
    memo: &mut HashMap<NodeIndex, u64>,
) -> u64 {
    ir.element_roots().iter().fold(1u64, |acc, r| {
        acc.saturating_add(inline_iterations(ir, sched, ranges, *r, memo))
    })
}

/// At most this many elements per row for one thread to take a whole row on a GPU.
const ROW_PER_THREAD_ELEMS: i64 = 64;
/// At most this many loop iterations for one thread to take a whole row on a GPU.
const ROW_PER_THREAD_WORK: u64 = 2048;
/// On a CPU adapter, at most this many loop iterations for one thread to take a whole
/// row: half of llvmpipe's per-thread budget, whatever the row's element count.
const CPU_ROW_PER_THREAD_WORK: u64 = LLVMPIPE_LOOP_LIMIT / 2;
/// On a CPU adapter, at least this many rows for one thread to take a long row: one
/// SIMD group of eight lanes (`cargo bench --bench fusion` with
/// `LOSSC_BENCH_PLACEMENT=1` measures both placements over row counts).
const CPU_ROW_PER_THREAD_ROWS: i64 = 8;

/// How the rows of a loss are placed on threads (see `docs/backend.md` §2). Both
/// placements compute the same numbers; they differ in speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RowPlacement {
    /// Per loss, from its sizes and the adapter. A thread takes a whole row when there is
    /// more than one row and rows are short (at most 64 elements and 2048 loop
    /// iterations): on a GPU a workgroup barrier is cheap and sharing long rows keeps
    /// thousands of threads busy. On a CPU adapter (llvmpipe, SwiftShader, WARP) a
    /// barrier switches coroutines, so there a thread also takes a long row when there
    /// are at least 8 rows and one row costs at most 32 767 loop iterations.
    #[default]
    Auto,
    /// Every row shared by the threads of a workgroup.
    Shared,
    /// One row per thread for every loss with more than one row.
    PerThread,
}

impl RowPlacement {
    /// Its name on the command line (`--rows`).
    pub fn name(self) -> &'static str {
        match self {
            RowPlacement::Auto => "auto",
            RowPlacement::Shared => "shared",
            RowPlacement::PerThread => "per-thread",
        }
    }

    /// Whether a loss with these sizes takes a row per thread on `adapter`.
    fn per_thread(self, adapter: &Adapter, rows: i64, elems: i64, row_cost: u64) -> bool {
        match self {
            RowPlacement::Shared => false,
            RowPlacement::PerThread => rows > 1,
            RowPlacement::Auto => {
                let short = short_rows(elems, row_cost);
                let cpu = adapter.cpu;
                rows > 1
                    && (short
                        || cpu
                            && rows >= CPU_ROW_PER_THREAD_ROWS
                            && row_cost <= CPU_ROW_PER_THREAD_WORK)
            }
        }
    }
}

/// Whether a row is short enough for one thread on any adapter.
fn short_rows(elems: i64, row_cost: u64) -> bool {
    elems <= ROW_PER_THREAD_ELEMS && row_cost <= ROW_PER_THREAD_WORK
}

/// How a dispatch's work items are laid out, per loss and in all.
pub struct WorkPlan {
    /// Per loss: whether each thread takes a whole row.
    pub per_thread: Vec<bool>,
    /// Per loss: rows per work item when `per_thread`, else 0.
    pub rows_per_item: Vec<i64>,
    /// Per loss: its work items.
    pub items: Vec<i64>,
    /// Per loss: the number of the items before its own, then the total.
    pub base: Vec<i64>,
    /// The work items of all losses.
    pub total_items: i64,
    /// The workgroups dispatched.
    pub workgroups: i64,
}

impl WorkPlan {
    fn new(
        per_thread: Vec<bool>,
        rows: &[i64],
        chunks_per_row: &[i64],
        max_workgroups: i64,
    ) -> Result<WorkPlan, PlanError> {
        let wg = WORKGROUP as i64;
        // Rows per item in that mode: whole SIMD groups of 8 (on CPUs), at most a
        // workgroup, and otherwise enough items (16) to spread over many cores.
        let rows_per_item: Vec<i64> = (0..rows.len())
            .map(|i| {
                if per_thread[i] {
                    (((rows[i] + 15) / 16 + 7) / 8 * 8).clamp(8, wg)
                } else {
                    0
                }
            })
            .collect();
        let items: Vec<i64> = (0..rows.len())
            .map(|i| {
                if per_thread[i] {
                    (rows[i] + rows_per_item[i] - 1) / rows_per_item[i]
                } else {
                    rows[i] * chunks_per_row[i]
                }
            })
            .collect();
        let mut base = vec![0i64];
        for i in &items {
            base.push(base.last().copied().unwrap_or(0) + i);
        }
        let total_items = *base.last().unwrap_or(&0);
        if total_items > (i32::MAX as i64 - 4) / 2 {
            return Err(PlanError::TooManyItems);
        }
        Ok(WorkPlan {
            per_thread,
            rows_per_item,
            items,
            base,
            total_items,
            workgroups: total_items.clamp(1, max_workgroups),
        })
    }
}

/// The loop iterations of one row done by one thread: its hoisted tables serially, then
/// its elements.
fn serial_row_cost(b: &Bound, s: &LossSchedule) -> u64 {
    let mut memo = HashMap::new();
    let mut cost = 0u64;
    for h in s.hoisted.iter().filter(|h| !h.per_workgroup) {
        // The table's reduction runs inline here; the tables it reads are already built.
        let Some((t, x, body, kind)) = table_sizes(b, s, h, &mut memo) else {
            continue;
        };
        cost = cost.saturating_add(t.saturating_mul(reduction_iterations(kind, x, body)));
    }
    let elems: u64 = values_of(&s.elem_vars, &b.ranges);
    let per_elem = element_iterations(b.ir, s, &b.ranges, &mut memo);
    cost.saturating_add(elems.saturating_mul(per_elem))
}

/// An upper bound of the loop iterations one invocation of the kernel runs.
fn iterations_per_invocation(
    kernel: &Kernel,
    bound: &[&Bound],
    items: &[i64],
    per_thread_rows: &[bool],
    row_cost: &[u64],
    workgroups: i64,
) -> u64 {
    const TREE: u64 = 16; // the loops of one workgroup reduction (two levels of 8)
    let wg = WORKGROUP as u64;
    let per_thread = |n: u64| n.div_ceil(wg);
    let mut worst_item = 0u64;
    let mut finish = 0u64;
    // The tables a workgroup builds once per loss, cooperatively (see `table_cost`).
    let mut once = 0u64;
    let total_items: u64 = items.iter().map(|i| *i as u64).sum();
    for (li, ((b, s), n_items)) in bound.iter().zip(&kernel.schedules).zip(items).enumerate() {
        let ir = b.ir;
        let mut memo = HashMap::new();
        let mut item = 0u64;
        for h in s.hoisted.iter().filter(|h| h.per_workgroup) {
            if let Some(sizes) = table_sizes(b, s, h, &mut memo) {
                once = once.saturating_add(table_cost(sizes, per_thread));
            }
        }
        if per_thread_rows[li] {
            worst_item = worst_item.max(row_cost[li].saturating_add(2 * TREE));
            finish = finish
                .saturating_add(per_thread(*n_items as u64).saturating_mul(2))
                .saturating_add(2 * TREE);
            continue;
        }
        for h in s.hoisted.iter().filter(|h| !h.per_workgroup) {
            if let Some(sizes) = table_sizes(b, s, h, &mut memo) {
                item = item.saturating_add(table_cost(sizes, per_thread));
            }
        }
        let elems: u64 = values_of(&s.elem_vars, &b.ranges);
        let per_elem = element_iterations(ir, s, &b.ranges, &mut memo);
        item = item
            .saturating_add(per_thread(elems.min(CHUNK as u64)).saturating_mul(per_elem))
            .saturating_add(2 * TREE);
        worst_item = worst_item.max(item);
        let mut closing = inline_iterations(ir, s, &b.ranges, ir.weight, &mut memo);
        if let Some(e) = ir.empty {
            closing = closing.saturating_add(inline_iterations(ir, s, &b.ranges, e, &mut memo));
        }
        finish = finish
            .saturating_add(per_thread(*n_items as u64).saturating_mul(2))
            .saturating_add(2 * TREE)
            .saturating_add(closing);
    }
    let items_per_workgroup = total_items.div_ceil(workgroups.max(1) as u64).max(1);
    items_per_workgroup
        .saturating_mul(worst_item.saturating_add(1))
        .saturating_add(once)
        .saturating_add(finish)
        .saturating_add(per_thread(2 * total_items))
}

/// The loop iterations one thread runs while its workgroup builds a hoisted table of
/// `(entries, values, body, kind)` ([`table_sizes`]) together: each entry's values
/// shared among the threads (`per_thread`), then a tree.
fn table_cost(
    (t, x, body, kind): (u64, u64, u64, ReduceFn),
    per_thread: impl Fn(u64) -> u64,
) -> u64 {
    const TREE: u64 = 16;
    let per = match kind {
        ReduceFn::Median => per_thread(x)
            .saturating_mul(body.saturating_add(x.saturating_mul(body)))
            .saturating_add(2 * TREE),
        ReduceFn::NthLargest => per_thread(x)
            .saturating_mul(body)
            .saturating_add(TREE)
            .saturating_mul(32),
        _ => per_thread(x).saturating_mul(body).saturating_add(TREE),
    };
    t.saturating_mul(per.saturating_add(1))
}

/// A hoisted table's entries, its reduction's values, the loop iterations of one value
/// (1 plus its body's inline loops), and the reduction's kind; `None` for a table that
/// is not built (one that reads an earlier, equal table).
fn table_sizes(
    b: &Bound,
    s: &LossSchedule,
    h: &Hoisted,
    memo: &mut HashMap<NodeIndex, u64>,
) -> Option<(u64, u64, u64, ReduceFn)> {
    let Op::Reduce(kind, over) = &b.ir.graph[h.node].op else {
        return None;
    };
    if h.same_as.is_some() {
        return None;
    }
    let body = operands(&b.ir.graph, h.node)[0];
    let once = 1u64.saturating_add(inline_iterations(b.ir, s, &b.ranges, body, memo));
    Some((
        values_of(&h.table_vars, &b.ranges),
        values_of(over, &b.ranges),
        once,
        *kind,
    ))
}

/// The number of assignments of `vars` (saturating).
fn values_of(vars: &[IndexId], ranges: &TiSlice<IndexId, (i64, i64)>) -> u64 {
    vars.iter()
        .map(|v| extent(ranges[*v]) as u64)
        .fold(1u64, u64::saturating_mul)
}

/// A product of sizes, refused past what the kernel's 32-bit indices hold.
pub fn product(vals: impl IntoIterator<Item = i64>) -> Result<i64, PlanError> {
    vals.into_iter()
        .try_fold(1i64, |a, b| a.checked_mul(b))
        .filter(|v| *v <= i32::MAX as i64)
        .ok_or(PlanError::TooManyElements)
}

/// The layout in words (`lossc explain --data`): per loss its rows, elements, placement
/// and work items; the workgroups; per input its bytes and the bytes the dispatch loads
/// of it (the rule is once: more means some site reads it again).
pub fn describe(plan: &Plan, kernel: &Kernel, bound: &[&Bound]) -> String {
    let mut out = String::new();
    let width = bound.iter().map(|b| b.ir.name.len()).max().unwrap_or(0);
    let w = &plan.work;
    for (i, b) in bound.iter().enumerate() {
        let (rows, elems) = (plan.rows[i], plan.elems[i]);
        let placement = if w.per_thread[i] {
            format!(
                "one row per thread, {} rows per work item",
                w.rows_per_item[i]
            )
        } else if plan.chunks_per_row[i] > 1 {
            format!(
                "shared by a workgroup, {} chunks of up to {CHUNK} elements per row",
                plan.chunks_per_row[i]
            )
        } else {
            "shared by a workgroup".to_string()
        };
        out.push_str(&format!(
            "  loss {:<width$}  {rows} row(s) x {elems} element(s): {placement}; work items {}..{}\n",
            b.ir.name,
            w.base[i],
            w.base[i] + w.items[i],
        ));
    }
    out.push_str(&format!(
        "  {} work item(s) on {} workgroup(s) of {WORKGROUP} threads\n",
        w.total_items, w.workgroups
    ));
    // The reads of the code this dispatch runs: the kernel specialised to these sizes
    // and enum values (without the branches and tables they rule out).
    let losses: Vec<&LossIr> = bound.iter().map(|b| b.ir).collect();
    let ones = vec![1.0; bound.len()];
    let reads = super::pack::pack_arena(bound, &[])
        .and_then(|arena| super::pack::fill_parameter_block(kernel, bound, &ones, &arena, plan))
        .ok()
        .and_then(|values| kernel.reads_specialised(&losses, &values).ok())
        .unwrap_or_else(|| kernel.reads.clone());
    // Inputs by name, once each (losses of a factory share them), in first-use order.
    let mut inputs: Vec<(String, Vec<usize>, u64)> = Vec::new();
    for (li, b) in bound.iter().enumerate() {
        let loads = crate::codegen::input_loads(
            &reads,
            li,
            b.ir.inputs.len(),
            w.per_thread[li],
            plan.chunks_per_row[li] as u64,
            w.items[li].min(w.workgroups).max(0) as u64,
            &b.ranges,
        );
        for ((info, data), n) in b.ir.inputs.iter().zip(&b.inputs).zip(loads) {
            let Some(data) = data else { continue };
            match inputs.iter_mut().find(|(name, _, _)| *name == info.name) {
                Some(entry) => entry.2 = entry.2.saturating_add(n),
                None => inputs.push((info.name.clone(), data.shape.clone(), n)),
            }
        }
    }
    let width = inputs.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    for (name, shape, loads) in inputs {
        let bytes = 4 * shape.iter().product::<usize>() as u64;
        let loaded = loads.saturating_mul(4);
        let ratio = if bytes == 0 {
            String::new()
        } else {
            format!(" ({:.2}x)", loaded as f64 / bytes as f64)
        };
        out.push_str(&format!(
            "  input {name:<width$}  {shape:?}: {bytes} bytes, loaded {loaded} bytes{ratio}\n"
        ));
    }
    out
}
