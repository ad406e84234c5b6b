//! The CPU reference evaluator: evaluates a bound loss's IR directly. It is the oracle
//! that every other back end is checked against, so it is written for clarity and
//! determinism first: element-wise nodes are evaluated per element, each reduction node
//! is materialised once as a dense table over its free indices (inner reductions first),
//! and every sum is a pairwise sum in f32 in row-major order of its indices.
//!
//! A read happens only where its value is needed: a `select` evaluates the branch it
//! takes, a dropped or zeroed element is not computed, and a reduction's entry is read
//! only where something needed reads it. So a read through a gather that leaves its axis
//! is an error only there: it is noted (the read goes on at index 0, as on the GPU), an
//! entry keeps the failures made while computing it until it is read, and the loss fails
//! at the end with the first failed read in [`LossIr::checked_reads`]' order (and the
//! largest index that read took), the one the GPU reports too.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;

use crate::bind::sizes::{shape_values, show_values};
use crate::bind::{Bound, LossValue, OutOfRange};
use crate::ice::InternalError;
use crate::ir::{
    IndexExpr, IndexId, IndexTerm, LossIr, MaskMode, Op, ReduceFn, ReduceMode, Tensor, TiSlice,
    TiVec, operands, scalar, sites::CheckedRead,
};

/// An error while evaluating.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A read through a gather (an `index` param's value) leaves its axis.
    #[error(transparent)]
    OutOfRange(Box<OutOfRange>),
    /// An input bound by shape alone (its data in a GPU buffer) was read on the CPU.
    #[error(
        "loss `{loss}`: an input bound by shape alone (its data on a GPU) cannot be read on the CPU"
    )]
    NoHostData { loss: String },
    /// A reduction's table, or the values of the domain, would hold more values than the
    /// arrays given call for ([`crate::bind::sizes::value_limit`]).
    #[error(
        "loss `{loss}`: {what} would hold {values} values (sizes {sizes:?}), more than the CPU evaluator allocates for the arrays given (at most {limit}: the larger of 2^28 and the number of values they hold) (at {at})",
        values = show_values(.sizes)
    )]
    TooManyValues {
        loss: String,
        /// `"the reduction"`, `"the domain"` or `"the gradient"`.
        what: &'static str,
        /// The extent of each index it runs over.
        sizes: Vec<usize>,
        limit: usize,
        /// `file:line:col` of the reduction, or of the `compute` stage.
        at: String,
    },
    /// A broken invariant of the IR.
    #[error(transparent)]
    Internal(#[from] InternalError),
}

impl From<OutOfRange> for EvalError {
    fn from(e: OutOfRange) -> EvalError {
        EvalError::OutOfRange(Box::new(e))
    }
}

/// An error on its way up the evaluator's recursion, boxed: an [`EvalError`] is over 100
/// bytes, and in a debug build each `?` keeps copies of it in the frame. Unboxed, a level
/// of IR took 4.5 KiB of stack (2.3 MiB for a graph 500 deep, more than a test thread's
/// 2 MiB); boxed, 0.8 KiB.
type Failed = Box<EvalError>;

impl From<Failed> for EvalError {
    fn from(e: Failed) -> EvalError {
        *e
    }
}

/// A reduction's result over all values of its free indices.
struct Table {
    vars: Vec<IndexId>,
    strides: Vec<usize>,
    data: Vec<f32>,
    /// The failed reads made while computing an entry, by entry: noted when it is read.
    faults: HashMap<usize, Fault>,
}

/// A failed checked read: its position in [`LossIr::checked_reads`] and the index it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fault {
    site: usize,
    index: i64,
}

impl Fault {
    /// The one of two failures that is reported: the earlier site, then the larger index.
    fn first(a: Option<Fault>, b: Fault) -> Fault {
        match a {
            Some(a)
                if (a.site, std::cmp::Reverse(a.index)) <= (b.site, std::cmp::Reverse(b.index)) =>
            {
                a
            }
            _ => b,
        }
    }
}

struct Evaluator<'a, 'b> {
    b: &'b Bound<'a>,
    ir: &'a LossIr,
    /// Operands of every node, looked up once.
    args: HashMap<NodeIndex, Vec<NodeIndex>>,
    tables: HashMap<NodeIndex, Table>,
    /// The dimension sizes, in the form polynomials evaluate against (built once, not
    /// per subscript).
    dims: Vec<Option<i64>>,
    /// The reads checked as they are made, in the order failures are reported in.
    sites: Vec<CheckedRead>,
    /// The failure to report, of the reads made so far (of the entry being computed,
    /// while a reduction is materialised).
    fault: Cell<Option<Fault>>,
    /// Whether a read outside its axis gives NaN and is not reported (the losses of a
    /// backward kernel, [`backward_gradients`]), instead of being an error.
    lenient: bool,
}

impl<'a, 'b> Evaluator<'a, 'b> {
    fn new(b: &'b Bound<'a>) -> Result<(Evaluator<'a, 'b>, Vec<NodeIndex>), EvalError> {
        let ir = b.ir;
        let order = toposort(&ir.graph, None)
            .map_err(|_| InternalError::in_loss(&ir.name, None, "the IR has a cycle"))?;
        let args = order
            .iter()
            .map(|n| (*n, operands(&ir.graph, *n)))
            .collect();
        let ev = Evaluator {
            b,
            ir,
            args,
            tables: HashMap::new(),
            dims: b.dims.iter().copied().map(Some).collect(),
            sites: ir.checked_reads(),
            fault: Cell::new(None),
            lenient: false,
        };
        Ok((ev, order))
    }

    /// Materialises the reductions `roots` depend on, inner ones first.
    fn materialise_for(
        &mut self,
        order: &[NodeIndex],
        roots: &[NodeIndex],
        env: &mut TiSlice<IndexId, i64>,
    ) -> Result<(), EvalError> {
        let live = depended_on(self.ir, roots);
        for n in order {
            if let Op::Reduce(..) = self.ir.graph[*n].op
                && live.contains(n)
                && !self.tables.contains_key(n)
            {
                let t = self.materialise(*n, env)?;
                self.tables.insert(*n, t);
            }
        }
        Ok(())
    }
}

/// Evaluates the gradients of an adjoint IR (`crate::ad`) bound to data: for each
/// `(axes, node)`, the node's value at every point of its axes, row-major (all zeros for
/// no node). The loss's own value is not evaluated: [`evaluate`] does that.
pub fn gradients(
    b: &Bound,
    grads: &[(Vec<IndexId>, Option<NodeIndex>)],
) -> Result<Vec<Vec<f32>>, EvalError> {
    gradients_with(b, grads, false)
}

/// [`gradients`] of the losses a backward kernel runs (`crate::ad::kernel`), whose
/// reads at indices rebuilt from a gradient's may leave their axes where the adjoint's
/// guards discard the value: such a read gives NaN, so that a guard that failed to
/// discard it shows, and a checked read failing there is not reported (the forward
/// pass made every read the gradient uses).
pub fn backward_gradients(
    b: &Bound,
    grads: &[(Vec<IndexId>, Option<NodeIndex>)],
) -> Result<Vec<Vec<f32>>, EvalError> {
    gradients_with(b, grads, true)
}

fn gradients_with(
    b: &Bound,
    grads: &[(Vec<IndexId>, Option<NodeIndex>)],
    lenient: bool,
) -> Result<Vec<Vec<f32>>, EvalError> {
    let (mut ev, order) = Evaluator::new(b)?;
    ev.lenient = lenient;
    let mut env: TiVec<IndexId, i64> = b.ir.indices.iter().map(|_| 0).collect();
    let roots: Vec<NodeIndex> = grads.iter().filter_map(|(_, n)| *n).collect();
    ev.materialise_for(&order, &roots, &mut env)?;
    let mut out = Vec::with_capacity(grads.len());
    for (axes, node) in grads {
        let (_, total) = ev.count(axes, "the gradient", node.unwrap_or(b.ir.compute))?;
        let Some(node) = *node else {
            out.push(vec![0.0; total]);
            continue;
        };
        let mut values = Vec::with_capacity(total);
        let mut err = None;
        for_each(axes, &b.ranges, &mut env, &mut |env| {
            if err.is_none() {
                match ev.eval(node, env) {
                    Ok(v) => values.push(v),
                    Err(e) => err = Some(*e),
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        out.push(values);
    }
    if let Some(f) = ev.fault.get() {
        return Err(ev.out_of_range(f).into());
    }
    Ok(out)
}

/// Evaluates a bound loss.
pub fn evaluate(b: &Bound) -> Result<LossValue, EvalError> {
    let ir = b.ir;
    let (mut ev, order) = Evaluator::new(b)?;
    let mut env: TiVec<IndexId, i64> = ir.indices.iter().map(|_| 0).collect();
    // One value per element of the domain is kept for the final sum.
    ev.count(&ir.domain, "the domain", ir.compute)?;
    let masks: Vec<(MaskMode, NodeIndex)> = ir
        .masks
        .iter()
        .zip(&b.active_masks)
        .filter(|(_, on)| **on)
        .map(|(m, _)| (m.mode, m.cond))
        .collect();
    // The reductions of the stages that run: a mask skipped for an absent optional input
    // may read that input inside a reduction, which then must not be materialised.
    let mut roots = vec![ir.compute, ir.weight];
    roots.extend(masks.iter().map(|(_, cond)| *cond));
    roots.extend(ir.rectify);
    roots.extend(ir.empty);
    ev.materialise_for(&order, &roots, &mut env)?;
    let mut values = Vec::new();
    let mut err = None;
    for_each(&ir.domain, &b.ranges, &mut env, &mut |env| {
        if err.is_some() {
            return;
        }
        let r = (|| -> Result<Option<f32>, EvalError> {
            let mut zero = false;
            for (mode, cond) in &masks {
                if ev.eval(*cond, env)? != 0.0 {
                    match mode {
                        MaskMode::Drop => return Ok(None),
                        MaskMode::Zero => zero = true,
                    }
                }
            }
            // A zeroed element is replaced, not multiplied: a NaN under the mask never
            // reaches the result.
            let mut v = if zero { 0.0 } else { ev.eval(ir.compute, env)? };
            if let Some(eps) = ir.rectify {
                v = scalar::unary(crate::ir::UnaryFn::Relu, v - ev.eval(eps, env)?);
            }
            Ok(Some(v))
        })();
        match r {
            Ok(Some(v)) => values.push(v),
            Ok(None) => {}
            Err(e) => err = Some(e),
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let loss = if values.is_empty() {
        match (ir.empty, ir.reduce) {
            (Some(e), _) => ev.eval(e, &mut env)?,
            (None, ReduceMode::Mean) => f32::NAN,
            (None, ReduceMode::Sum) => 0.0,
        }
    } else {
        let s = pairwise_sum(&values);
        match ir.reduce {
            ReduceMode::Mean => s / values.len() as f32,
            ReduceMode::Sum => s,
        }
    };
    let weight = ev.eval(ir.weight, &mut env)?;
    if let Some(f) = ev.fault.get() {
        return Err(ev.out_of_range(f).into());
    }
    Ok(LossValue { loss, weight })
}

/// The nodes `roots` depend on, themselves included.
fn depended_on(ir: &LossIr, roots: &[NodeIndex]) -> HashSet<NodeIndex> {
    let mut seen = HashSet::new();
    let mut stack = roots.to_vec();
    while let Some(n) = stack.pop() {
        if seen.insert(n) {
            stack.extend(operands(&ir.graph, n));
        }
    }
    seen
}

/// Calls `f` for every assignment of `vars` within `ranges`, last variable fastest.
fn for_each(
    vars: &[IndexId],
    ranges: &TiSlice<IndexId, (i64, i64)>,
    env: &mut TiSlice<IndexId, i64>,
    f: &mut dyn FnMut(&mut TiSlice<IndexId, i64>),
) {
    if vars.iter().any(|v| ranges[*v].1 < ranges[*v].0) {
        return;
    }
    for v in vars {
        env[*v] = ranges[*v].0;
    }
    loop {
        f(env);
        let mut i = vars.len();
        loop {
            if i == 0 {
                return;
            }
            i -= 1;
            let v = vars[i];
            if env[v] < ranges[v].1 {
                env[v] += 1;
                break;
            }
            env[v] = ranges[v].0;
        }
    }
}

/// Pairwise (cascade) summation: error grows with log n, and the order is fixed.
pub fn pairwise_sum(v: &[f32]) -> f32 {
    if v.len() <= 8 {
        return v.iter().fold(0.0, |a, b| a + b);
    }
    let mid = v.len() / 2;
    pairwise_sum(&v[..mid]) + pairwise_sum(&v[mid..])
}

impl Evaluator<'_, '_> {
    /// The extents of `vars` and the number of values a table over them holds, refused
    /// past the bound loss's value limit (the node `at` locates the error).
    fn count(
        &self,
        vars: &[IndexId],
        what: &'static str,
        at: NodeIndex,
    ) -> Result<(Vec<usize>, usize), EvalError> {
        let extents: Vec<usize> = vars
            .iter()
            .map(|v| usize::try_from(crate::ir::extent(self.b.ranges[*v])).unwrap_or(usize::MAX))
            .collect();
        match shape_values(&extents).filter(|n| *n <= self.b.value_limit) {
            Some(total) => Ok((extents, total)),
            None => Err(EvalError::TooManyValues {
                loss: self.ir.name.clone(),
                what,
                sizes: extents,
                limit: self.b.value_limit,
                at: self.ir.origin.locate(self.ir.graph[at].span),
            }),
        }
    }

    fn materialise(
        &self,
        n: NodeIndex,
        env: &mut TiSlice<IndexId, i64>,
    ) -> Result<Table, EvalError> {
        let node = &self.ir.graph[n];
        let Op::Reduce(kind, bound) = &node.op else {
            unreachable!("called on reductions only")
        };
        let vars = node.free.clone();
        let (extents, total) = self.count(&vars, "the reduction", n)?;
        // Each stride is at most `total`, which fits.
        let mut strides = vec![1usize; vars.len()];
        for i in (0..vars.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * extents[i + 1];
        }
        let mut data = Vec::with_capacity(total);
        let mut faults = HashMap::new();
        let body = self.args[&n][0];
        // An `NthLargest`'s count is closed: one value for every entry.
        let count = match kind {
            ReduceFn::NthLargest => self.eval(self.args[&n][1], env).map_err(|e| *e)?,
            _ => 0.0,
        };
        let mut err = None;
        let mut items = Vec::new();
        let outer = self.fault.take();
        for_each(&vars, &self.b.ranges, env, &mut |env| {
            if err.is_some() {
                data.push(f32::NAN);
                return;
            }
            items.clear();
            for_each(
                bound,
                &self.b.ranges,
                &mut env.to_vec(),
                &mut |inner| match self.eval(body, inner) {
                    Ok(v) => items.push(v),
                    Err(e) => err = Some(*e),
                },
            );
            // The entry's failed reads wait until something needed reads the entry.
            if let Some(f) = self.fault.take() {
                faults.insert(data.len(), f);
            }
            data.push(reduce(*kind, &mut items, count));
        });
        self.fault.set(outer);
        if let Some(e) = err {
            return Err(e);
        }
        // An empty free set still has one (scalar) entry.
        if vars.is_empty() && data.is_empty() {
            data.push(reduce(*kind, &mut Vec::new(), count));
        }
        Ok(Table {
            vars,
            strides,
            data,
            faults,
        })
    }

    fn eval(&self, n: NodeIndex, env: &mut TiSlice<IndexId, i64>) -> Result<f32, Failed> {
        let node = &self.ir.graph[n];
        let args = &self.args[&n];
        Ok(match &node.op {
            Op::Const(bits) => f32::from_bits(*bits),
            Op::BoolConst(b) => scalar::from_bool(*b),
            Op::Read(t, idx) => self.read(*t, idx, env, n)?,
            Op::IndexValue(e) => self.index(e, env, n)? as f32,
            Op::EnumIs(p, v) => scalar::from_bool(self.b.enums[*p].as_deref() == Some(v.as_str())),
            Op::Unary(f) => scalar::unary(*f, self.eval(args[0], env)?),
            Op::Binary(f) => {
                let a = self.eval(args[0], env)?;
                scalar::binary(*f, a, self.eval(args[1], env)?)
            }
            // Only the branch taken is evaluated: the other reads nothing.
            Op::Select => {
                let c = self.eval(args[0], env)?;
                self.eval(if c != 0.0 { args[1] } else { args[2] }, env)?
            }
            Op::Clamp => {
                let x = self.eval(args[0], env)?;
                scalar::clamp(x, self.eval(args[1], env)?, self.eval(args[2], env)?)
            }
            // The operand with some indices set: computed first, all of them, from the
            // indices as they are, then restored.
            Op::At(map) => {
                let mut set = Vec::with_capacity(map.len());
                for (v, e) in map {
                    set.push((*v, self.index(e, env, n)?));
                }
                let saved: Vec<i64> = set.iter().map(|(v, _)| env[*v]).collect();
                for (v, x) in &set {
                    env[*v] = *x;
                }
                let value = self.eval(args[0], env);
                for ((v, _), x) in set.iter().zip(saved) {
                    env[*v] = x;
                }
                value?
            }
            Op::Reduce(..) => {
                let t = &self.tables[&n];
                let mut at = 0;
                for (v, s) in t.vars.iter().zip(&t.strides) {
                    at += (env[*v] - self.b.ranges[*v].0) as usize * s;
                }
                if let Some(f) = t.faults.get(&at) {
                    self.note(*f);
                }
                t.data[at]
            }
        })
    }

    /// Notes a failed read.
    fn note(&self, f: Fault) {
        self.fault.set(Some(Fault::first(self.fault.get(), f)));
    }

    /// The error for a failed read.
    fn out_of_range(&self, f: Fault) -> OutOfRange {
        let site = &self.sites[f.site];
        let (name, shape) = match site.tensor {
            Tensor::Input(i) => (
                &self.ir.inputs[i].name,
                self.b.inputs[i].as_ref().map(|d| d.shape.clone()),
            ),
            Tensor::Param(p) => (
                &self.ir.params[p].name,
                Some(self.b.params[p].shape.clone()),
            ),
        };
        OutOfRange {
            loss: self.ir.name.clone(),
            index: f.index,
            axis: site.axis,
            tensor: name.clone(),
            size: shape.and_then(|s| s.get(site.axis).copied()).unwrap_or(0),
            subscript: self.ir.show_subscripts(&site.subscripts),
            at: Some(self.ir.origin.locate(self.ir.graph[site.node].span)),
        }
    }

    /// The value of a subscript; `node` is the node being evaluated (the read whose
    /// subscript it is), which names the gathers' checked reads.
    fn index(
        &self,
        e: &IndexExpr,
        env: &TiSlice<IndexId, i64>,
        node: NodeIndex,
    ) -> Result<i64, Failed> {
        // Saturating: a gathered value like 1e30 must end as an out-of-range error, not
        // as an overflow.
        let mut v = e.offset.eval_saturating(&self.dims).unwrap_or(0);
        let i32s = |x: i64| x.clamp(i32::MIN.into(), i32::MAX.into());
        let mut through_gather = false;
        for (c, t) in &e.terms {
            let x = match t {
                IndexTerm::Var(x) => env[*x],
                // A gathered value is whole; saturated at i32's bounds, as on the GPU.
                IndexTerm::Gather(p, idx) => {
                    through_gather = true;
                    i32s(self.read(*p, idx, env, node)? as i64)
                }
            };
            let c = c.eval_saturating(&self.dims).unwrap_or(0);
            v = v.saturating_add(c.saturating_mul(x));
        }
        // A subscript through a gather saturates at i32's bounds, as the GPU computes it
        // (the binder checks the others over their whole ranges, so they are in range).
        Ok(if through_gather { i32s(v) } else { v })
    }

    fn read(
        &self,
        t: Tensor,
        idx: &[IndexExpr],
        env: &TiSlice<IndexId, i64>,
        node: NodeIndex,
    ) -> Result<f32, Failed> {
        let data = match t {
            Tensor::Input(i) => self.b.inputs[i].as_ref().ok_or_else(|| {
                // The stage reading it is skipped when an optional input is absent.
                EvalError::from(InternalError::in_loss(
                    &self.ir.name,
                    None,
                    format!("input `{}` is absent but read", self.ir.inputs[i].name),
                ))
            })?,
            Tensor::Param(p) => &self.b.params[p],
        };
        if data.data.is_empty() && data.shape.iter().product::<usize>() > 0 {
            return Err(EvalError::NoHostData {
                loss: self.ir.name.clone(),
            }
            .into());
        }
        let mut at = 0usize;
        for (axis, (e, n)) in idx.iter().zip(&data.shape).enumerate() {
            let mut i = self.index(e, env, node)?;
            if i < 0 || i >= *n as i64 {
                if self.lenient {
                    return Ok(f32::NAN);
                }
                // Only a gathered subscript can leave its axis here (the binder checks
                // the others over their whole ranges); the read goes on at index 0.
                let Some(site) = LossIr::site_of(&self.sites, node, t, idx, axis) else {
                    return Err(EvalError::from(InternalError::in_loss(
                        &self.ir.name,
                        Some(self.ir.origin.locate(self.ir.graph[node].span)),
                        format!(
                            "`{}` leaves axis {axis} unchecked",
                            self.ir.show_subscripts(idx)
                        ),
                    ))
                    .into());
                };
                self.note(Fault { site, index: i });
                i = 0;
            }
            at = at * n + i as usize;
        }
        // An axis of size 0 has no index 0.
        Ok(data.data.get(at).copied().unwrap_or(0.0))
    }
}

/// Reduces the items of one reduction (`count`: an `NthLargest`'s).
fn reduce(kind: ReduceFn, items: &mut [f32], count: f32) -> f32 {
    match kind {
        ReduceFn::Sum => pairwise_sum(items),
        ReduceFn::Mean => pairwise_sum(items) / items.len() as f32,
        ReduceFn::Norm => {
            let sq: Vec<f32> = items.iter().map(|x| x * x).collect();
            pairwise_sum(&sq).sqrt()
        }
        ReduceFn::Max => items
            .iter()
            .fold(f32::NEG_INFINITY, |a, b| scalar::nan_max(a, *b)),
        ReduceFn::Min => items
            .iter()
            .fold(f32::INFINITY, |a, b| scalar::nan_min(a, *b)),
        ReduceFn::All => scalar::from_bool(items.iter().all(|x| *x != 0.0)),
        ReduceFn::Any => scalar::from_bool(items.iter().any(|x| *x != 0.0)),
        ReduceFn::Median => median(items),
        // In index order, as the GPU's lanes fold their own values (the tree then
        // combines lanes, so the two may differ in the last bits, as sums do).
        ReduceFn::Prod => items.iter().product(),
        ReduceFn::NthLargest => scalar::nth_largest(items, count),
    }
}

/// The median (docs/language.md): NaN for no values or any NaN, else the two middle
/// values of the sorted values (the same one twice for an odd count) combined by
/// [`scalar::median_of`].
fn median(items: &mut [f32]) -> f32 {
    if items.is_empty() || items.iter().any(|x| x.is_nan()) {
        return f32::NAN;
    }
    items.sort_by(|a, b| a.total_cmp(b));
    let n = items.len();
    scalar::median_of(items[(n - 1) / 2], items[n / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_the_middle_or_the_midpoint_of_the_two_middle_values() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut [1.0, f32::NAN]).is_nan());
        assert_eq!(median(&mut [f32::INFINITY, f32::INFINITY]), f32::INFINITY);
        assert_eq!(median(&mut [1.0, f32::INFINITY]), f32::INFINITY);
        assert!(median(&mut [f32::NEG_INFINITY, f32::INFINITY]).is_nan());
        assert_eq!(median(&mut [-0.0]).to_bits(), 0);
    }

    #[test]
    fn pairwise_sum_is_exact_on_small_integers() {
        let v: Vec<f32> = (1..=100).map(|x| x as f32).collect();
        assert_eq!(pairwise_sum(&v), 5050.0);
    }
}
