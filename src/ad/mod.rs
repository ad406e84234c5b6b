//! Reverse-mode differentiation as an IR → IR pass: from a loss's IR, the adjoint IR of
//! its reduced value with respect to chosen inputs (docs/gradients.md).
//!
//! The result is the forward IR with more nodes: for every requested input `X`, one node
//! over fresh index variables `g0, g1, ...` (one per axis of `X`) whose value is
//! `d loss / d X[g0, g1, ...]`. Every adjoint is in **gather form**: an element of a
//! gradient is one expression, read at its own indices, that sums the values depending on
//! it in a fixed order. Nothing is scattered, so any back end that evaluates the IR
//! deterministically evaluates the gradient deterministically.
//!
//! How the adjoints are built, walking the graph from the roots to the reads:
//! * A node's adjoint is the sum, over its users in node order, of each user's adjoint
//!   times the user's local derivative (PyTorch autograd's conventions, the table in
//!   docs/gradients.md), summed over the indices the user has and the node has not (a
//!   value broadcast over `k` receives the sum over `k`).
//! * **Guards.** An untaken `select` branch and an element removed by `remove_nans` get
//!   an adjoint of exactly 0, and so must everything below them, even where a local
//!   derivative is infinite or NaN (0 · inf would leak NaN). So every edge carries the
//!   condition under which its path is taken, each node the disjunction of its edges'
//!   conditions, and a product with a local derivative that may not be finite is taken
//!   only where that condition holds. A zero that comes from the math itself (`relu` at a
//!   negative value, a weight of 0) is an ordinary zero, as in PyTorch.
//! * **Reads.** An element `X[g]` receives the adjoint of every read of `X` at every
//!   point whose subscripts equal `g`. A subscript `±v + c` over a variable no other
//!   subscript uses is inverted (`v := ±(g − c)`, with the range of `v` as a guard); the
//!   other variables are summed over, with `subscript == g` as a guard (a gather through
//!   an `index` param, `2*k + c`, `k, k`). The adjoint is read at the inverted indices
//!   through [`Op::At`], so the tables of its reductions keep their own ranges.
//!
//! What the adjoint cannot express is refused with [`AdError`]: a `weight` or `empty:`
//! value that reads a requested input.

pub mod kernel;

use std::collections::HashMap;

use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;

use crate::diagnostics::Span;
use crate::ice::InternalError;
use crate::ir::{
    BinaryFn, IndexExpr, IndexId, IndexTerm, IndexVar, InputId, LossIr, MaskId, MaskMode, Node, Op,
    Poly, ReduceFn, ReduceMode, Tensor, TiSlice, Ty, UnaryFn, add_node, free_indices, operands,
};

/// A loss's IR with the nodes of its gradients.
#[derive(Clone, Debug)]
pub struct Adjoint {
    /// The forward IR, its roots unchanged, with the adjoint's nodes and index variables.
    pub ir: LossIr,
    /// One gradient per requested input, in the order requested.
    pub grads: Vec<Grad>,
    /// How each read of a requested input is transposed, in node order per input.
    pub reads: Vec<Transposed>,
    /// For a mean, the node counting the loss's counted elements (the seed divides by
    /// it): a kernel reads it from the forward pass instead of counting again.
    pub count: Option<NodeIndex>,
}

/// How one read of an input becomes a term of the input's gradient: its adjoint taken
/// at some of its indices set from the gradient's (`set`), summed over the others
/// (`summed`), where the set indices are in their ranges and the subscripts of
/// `matched` axes equal the gradient's indices.
#[derive(Clone, Debug)]
pub struct Transposed {
    /// The input.
    pub input: InputId,
    /// The read.
    pub read: NodeIndex,
    /// Indices of the read set from the gradient's axes.
    pub set: Vec<(IndexId, IndexExpr)>,
    /// Indices of the read summed over.
    pub summed: Vec<IndexId>,
    /// Axes whose subscript could not be inverted, matched by a condition instead.
    pub matched: Vec<usize>,
}

/// The gradient of a loss's reduced value with respect to one input.
#[derive(Clone, Debug)]
pub struct Grad {
    /// The input.
    pub input: InputId,
    /// One index variable per axis of the input, ranging over the whole axis.
    pub axes: Vec<IndexId>,
    /// `d loss / d input[axes]`; `None` when the loss's value does not depend on the
    /// input (read only in conditions, or not at all): every element is 0.
    pub node: Option<NodeIndex>,
}

/// A loss whose gradient the adjoint IR cannot express.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AdError {
    /// The `weight` or the `empty:` value reads the input: the gradient of such a
    /// loss would need its value, which the adjoint does not carry.
    #[error(
        "loss `{loss}`: its {stage} reads input `{input}`, and lossc does not differentiate through a {stage} yet (at {at})"
    )]
    ThroughStage {
        loss: String,
        input: String,
        /// `"weight"` or `"empty: value"`.
        stage: &'static str,
        /// `file:line:col` of the stage's expression.
        at: String,
    },
    /// A broken invariant of the IR.
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// Builds the adjoint IR of `forward`'s reduced value with respect to `wrt`, for a run in
/// which the `remove_nans` stages marked in `active_masks` run (a stage reading an absent
/// optional input is skipped, and so is its part of the gradient).
pub fn adjoint(
    forward: &LossIr,
    wrt: &[InputId],
    active_masks: &TiSlice<MaskId, bool>,
) -> Result<Adjoint, AdError> {
    let mut b = Builder {
        ir: forward.clone(),
        count: None,
    };
    let order = toposort(&forward.graph, None)
        .map_err(|_| InternalError::in_loss(&forward.name, None, "the IR has a cycle"))?;
    let active = active_nodes(forward, &order, wrt);
    for (stage, root) in [
        ("weight", Some(forward.weight)),
        ("empty: value", forward.empty),
    ] {
        if let Some(root) = root
            && let Some(input) = reads_requested(forward, root, &active)
        {
            return Err(AdError::ThroughStage {
                loss: forward.name.clone(),
                input: forward.inputs[input].name.clone(),
                stage,
                at: forward.origin.locate(forward.graph[root].span),
            });
        }
    }
    let mut adj = Adjoints::default();
    b.seed(forward, active_masks, &active, &mut adj);
    // Users before operands: every contribution to a node is in before it is summed.
    let mut read_adjoints: Vec<(NodeIndex, NodeIndex)> = Vec::new();
    for &u in order.iter().rev() {
        if !active.contains_key(&u) {
            continue;
        }
        let Some((a_u, g_u)) = adj.total(&mut b, u) else {
            continue;
        };
        if let Op::Read(Tensor::Input(_), _) = forward.graph[u].op {
            read_adjoints.push((u, a_u));
            continue;
        }
        b.propagate(forward, u, a_u, g_u, &active, &mut adj);
    }
    read_adjoints.sort_by_key(|(r, _)| r.index());
    let mut grads = Vec::new();
    let mut transposed = Vec::new();
    for &input in wrt {
        let axes = b.gradient_axes(input);
        let mut total: Option<NodeIndex> = None;
        for &(r, a_r) in &read_adjoints {
            let Op::Read(Tensor::Input(i), subs) = &forward.graph[r].op else {
                continue;
            };
            if *i != input {
                continue;
            }
            let (term, plan) = b.transpose(forward, r, subs, a_r, &axes);
            transposed.push(Transposed {
                input,
                read: r,
                ..plan
            });
            total = Some(match total {
                Some(t) => b.bin(BinaryFn::Add, t, term),
                None => term,
            });
        }
        grads.push(Grad {
            input,
            axes,
            node: total,
        });
    }
    Ok(Adjoint {
        ir: b.ir,
        grads,
        reads: transposed,
        count: b.count,
    })
}

/// The nodes whose adjoint is needed: numbers that depend on a requested input through
/// differentiable operands.
fn active_nodes(
    ir: &LossIr,
    order: &[NodeIndex],
    wrt: &[InputId],
) -> HashMap<NodeIndex, Vec<usize>> {
    let mut active: HashMap<NodeIndex, Vec<usize>> = HashMap::new();
    for &n in order {
        let node = &ir.graph[n];
        if node.ty != Ty::Num {
            continue;
        }
        if let Op::Read(Tensor::Input(i), _) = node.op {
            if wrt.contains(&i) {
                active.insert(n, vec![]);
            }
            continue;
        }
        let slots: Vec<usize> = operands(&ir.graph, n)
            .iter()
            .enumerate()
            .filter(|(slot, a)| differentiable(&node.op, *slot) && active.contains_key(*a))
            .map(|(slot, _)| slot)
            .collect();
        if !slots.is_empty() {
            active.insert(n, slots);
        }
    }
    active
}

/// Whether an op's value depends differentiably on its operand in `slot`.
fn differentiable(op: &Op, slot: usize) -> bool {
    match op {
        Op::Select => slot > 0,
        Op::Unary(UnaryFn::Not | UnaryFn::IsNan) => false,
        Op::Binary(f) => f.gives_number(),
        Op::Reduce(ReduceFn::All | ReduceFn::Any, _) => false,
        // Its count is closed, of params and dimensions.
        Op::Reduce(ReduceFn::NthLargest, _) => slot == 0,
        Op::Unary(_) | Op::Clamp | Op::Reduce(..) | Op::At(_) => true,
        Op::Const(_) | Op::BoolConst(_) | Op::Read(..) | Op::IndexValue(_) | Op::EnumIs(..) => {
            false
        }
    }
}

/// A requested input that `root` depends on differentiably, if any.
fn reads_requested(
    ir: &LossIr,
    root: NodeIndex,
    active: &HashMap<NodeIndex, Vec<usize>>,
) -> Option<InputId> {
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        let Some(slots) = active.get(&n) else {
            continue;
        };
        if let Op::Read(Tensor::Input(i), _) = ir.graph[n].op {
            return Some(i);
        }
        let args = operands(&ir.graph, n);
        stack.extend(slots.iter().map(|s| args[*s]));
    }
    None
}

/// The contributions to each node's adjoint: terms over the node's indices, each with the
/// condition under which its path is taken (`None`: always).
#[derive(Default)]
struct Adjoints {
    terms: HashMap<NodeIndex, Vec<(NodeIndex, Option<NodeIndex>)>>,
}

impl Adjoints {
    fn add(&mut self, n: NodeIndex, term: NodeIndex, guard: Option<NodeIndex>) {
        self.terms.entry(n).or_default().push((term, guard));
    }

    /// A node's adjoint, its terms summed in the order they came, and its guard.
    fn total(&mut self, b: &mut Builder, n: NodeIndex) -> Option<(NodeIndex, Option<NodeIndex>)> {
        let terms = self.terms.remove(&n)?;
        let mut sum = terms[0].0;
        for (t, _) in &terms[1..] {
            sum = b.bin(BinaryFn::Add, sum, *t);
        }
        // Always taken if one path always is; else taken where one of them is.
        let mut guard: Option<NodeIndex> = None;
        for (_, g) in &terms {
            let Some(g) = *g else {
                return Some((sum, None));
            };
            guard = Some(match guard {
                None => g,
                Some(h) if h == g => h,
                Some(h) => b.bin(BinaryFn::Or, h, g),
            });
        }
        Some((sum, guard))
    }
}

/// Adds nodes to the adjoint IR, each with its free indices worked out as sema does.
struct Builder {
    ir: LossIr,
    /// The mean's count of counted elements, once the seed has built it.
    count: Option<NodeIndex>,
}

impl Builder {
    fn add(&mut self, op: Op, ty: Ty, args: &[NodeIndex], span: Span) -> NodeIndex {
        let free = free_indices(&self.ir.graph, &op, args);
        add_node(&mut self.ir.graph, Node { op, ty, free, span }, args)
    }

    /// The span new nodes are given: the one of the node they differentiate.
    fn span_of(&self, n: NodeIndex) -> Span {
        self.ir.graph[n].span
    }

    fn num(&mut self, v: f32, span: Span) -> NodeIndex {
        self.add(Op::constant(v), Ty::Num, &[], span)
    }

    fn bin(&mut self, f: BinaryFn, a: NodeIndex, b: NodeIndex) -> NodeIndex {
        let ty = if f.gives_number() { Ty::Num } else { Ty::Bool };
        let span = self.span_of(a);
        self.add(Op::Binary(f), ty, &[a, b], span)
    }

    fn un(&mut self, f: UnaryFn, a: NodeIndex) -> NodeIndex {
        let ty = match f {
            UnaryFn::Not | UnaryFn::IsNan => Ty::Bool,
            _ => Ty::Num,
        };
        let span = self.span_of(a);
        self.add(Op::Unary(f), ty, &[a], span)
    }

    fn select(&mut self, c: NodeIndex, a: NodeIndex, b: NodeIndex) -> NodeIndex {
        let ty = self.ir.graph[a].ty;
        let span = self.span_of(a);
        self.add(Op::Select, ty, &[c, a, b], span)
    }

    /// `select(c, a, 0)`.
    fn only_if(&mut self, c: NodeIndex, a: NodeIndex) -> NodeIndex {
        let zero = self.num(0.0, self.span_of(a));
        self.select(c, a, zero)
    }

    /// `select(c, 1, 0)`.
    fn indicator(&mut self, c: NodeIndex) -> NodeIndex {
        let one = self.num(1.0, self.span_of(c));
        self.only_if(c, one)
    }

    fn reduce(&mut self, f: ReduceFn, over: &[IndexId], body: NodeIndex) -> NodeIndex {
        let ty = self.ir.graph[body].ty;
        let span = self.span_of(body);
        self.add(Op::Reduce(f, over.to_vec()), ty, &[body], span)
    }

    fn index_value(&mut self, e: IndexExpr, span: Span) -> NodeIndex {
        self.add(Op::IndexValue(e), Ty::Num, &[], span)
    }

    /// `e >= 0` for an index expression.
    fn non_negative(&mut self, e: IndexExpr, span: Span) -> NodeIndex {
        let v = self.index_value(e, span);
        let zero = self.num(0.0, span);
        self.bin(BinaryFn::Ge, v, zero)
    }

    fn and(&mut self, a: Option<NodeIndex>, b: NodeIndex) -> NodeIndex {
        match a {
            Some(a) => self.bin(BinaryFn::And, a, b),
            None => b,
        }
    }

    /// The number of points of `over` (1 for none): the product of their ranges' sizes,
    /// each `max(hi - lo + 1, 0)`, computed from the dimensions rather than counted (a
    /// kernel would loop over every point to count them).
    fn count(&mut self, over: &[IndexId], span: Span) -> NodeIndex {
        let ranges: Option<Vec<(Poly, Poly)>> = over
            .iter()
            .map(|v| self.ir.indices[*v].range.clone())
            .collect();
        let Some(ranges) = ranges else {
            let one = self.num(1.0, span);
            return self.reduce(ReduceFn::Sum, over, one);
        };
        let mut n = self.num(1.0, span);
        for (lo, hi) in ranges {
            let size = hi.sub(&lo).add(&Poly::constant(1));
            let size = self.index_value(IndexExpr::poly(size), span);
            let zero = self.num(0.0, span);
            let size = self.bin(BinaryFn::Max, size, zero);
            n = self.bin(BinaryFn::Mul, n, size);
        }
        n
    }

    /// The value of a constant node.
    fn constant(&self, n: NodeIndex) -> Option<f32> {
        match self.ir.graph[n].op {
            Op::Const(bits) => Some(f32::from_bits(bits)),
            _ => None,
        }
    }

    /// A fresh index variable with the range of `v`, named after it.
    fn copy_var(&mut self, v: IndexId, mark: &str) -> IndexId {
        let mut var = self.ir.indices[v].clone();
        var.name = format!("{}{mark}", var.name);
        self.ir.indices.push_and_get_key(var)
    }

    /// One fresh index variable per axis of `input`, over the whole axis.
    fn gradient_axes(&mut self, input: InputId) -> Vec<IndexId> {
        let info = self.ir.inputs[input].clone();
        info.shape
            .iter()
            .enumerate()
            .map(|(axis, dim)| {
                self.ir.indices.push_and_get_key(IndexVar {
                    name: format!("{}#{axis}", info.name),
                    span: info.span,
                    explicit: None,
                    range: Some((Poly::default(), dim.sub(&Poly::constant(1)))),
                })
            })
            .collect()
    }

    /// The adjoint of the loss's reduced value at each element of the domain, into
    /// `compute` and `rectify`.
    fn seed(
        &mut self,
        ir: &LossIr,
        active_masks: &TiSlice<MaskId, bool>,
        active: &HashMap<NodeIndex, Vec<usize>>,
        adj: &mut Adjoints,
    ) {
        let span = ir.graph[ir.compute].span;
        let mut dropped = None;
        let mut zeroed = None;
        for (m, on) in ir.masks.iter().zip(active_masks) {
            if !*on {
                continue;
            }
            let slot = match m.mode {
                MaskMode::Drop => &mut dropped,
                MaskMode::Zero => &mut zeroed,
            };
            *slot = Some(match *slot {
                Some(c) => self.bin(BinaryFn::Or, c, m.cond),
                None => m.cond,
            });
        }
        let counted = dropped.map(|d| self.un(UnaryFn::Not, d));
        let kept = zeroed.map(|z| self.un(UnaryFn::Not, z));
        let live = match (counted, kept) {
            (Some(c), k) => Some(self.and(k, c)),
            (None, k) => k,
        };
        // d loss / d value: 1 / (the number of counted elements) for a mean.
        let per_element = match ir.reduce {
            ReduceMode::Sum => self.num(1.0, span),
            ReduceMode::Mean => {
                let one = self.num(1.0, span);
                let counted_one = match counted {
                    Some(c) => self.only_if(c, one),
                    None => one,
                };
                let n = self.reduce(ReduceFn::Sum, &ir.domain, counted_one);
                self.count = Some(n);
                let one = self.num(1.0, span);
                self.bin(BinaryFn::Div, one, n)
            }
        };
        // `rectify`: value = relu(compute - epsilon); relu passes the adjoint where its
        // result is positive, or NaN (PyTorch's threshold_backward).
        let to_compute = match ir.rectify {
            Some(eps) => {
                let d = self.bin(BinaryFn::Sub, ir.compute, eps);
                let zero = self.num(0.0, span);
                let off = self.bin(BinaryFn::Le, d, zero);
                let zero = self.num(0.0, span);
                let passed = self.select(off, zero, per_element);
                if active.contains_key(&eps) {
                    let neg = self.un(UnaryFn::Neg, passed);
                    let term = self.guarded(live, neg);
                    adj.add(eps, term, live);
                }
                passed
            }
            None => per_element,
        };
        if active.contains_key(&ir.compute) {
            let term = self.guarded(live, to_compute);
            adj.add(ir.compute, term, live);
        }
    }

    /// `select(guard, term, 0)`, or `term` when there is no guard.
    fn guarded(&mut self, guard: Option<NodeIndex>, term: NodeIndex) -> NodeIndex {
        match guard {
            Some(g) => self.only_if(g, term),
            None => term,
        }
    }

    /// Adds user `u`'s contributions, from its adjoint `a_u` and guard `g_u`, to its
    /// active operands.
    fn propagate(
        &mut self,
        ir: &LossIr,
        u: NodeIndex,
        a_u: NodeIndex,
        g_u: Option<NodeIndex>,
        active: &HashMap<NodeIndex, Vec<usize>>,
        adj: &mut Adjoints,
    ) {
        let args = operands(&ir.graph, u);
        let op = ir.graph[u].op.clone();
        let span = ir.graph[u].span;
        for &slot in &active[&u] {
            let n = args[slot];
            // The local term (over u's indices, and a reduction's bound ones), whether it
            // multiplies the adjoint by something that may not be finite, and the extra
            // condition on this edge (a select's branch).
            let (term, multiplies, edge) = self.local(&op, u, &args, slot, a_u, span);
            let term = if multiplies {
                self.guarded(g_u, term)
            } else {
                term
            };
            let guard = match edge {
                Some(c) => Some(self.and(g_u, c)),
                None => g_u,
            };
            // Summed over the indices u (and a reduction's bound ones) has and n has not.
            let mut have = self.ir.graph[u].free.clone();
            if let Op::Reduce(_, bound) = &op {
                have.extend(bound.iter().copied());
            }
            let extra: Vec<IndexId> = have
                .into_iter()
                .filter(|v| !self.ir.graph[n].free.contains(v))
                .collect();
            let (term, guard) = if extra.is_empty() {
                (term, guard)
            } else {
                let t = self.reduce(ReduceFn::Sum, &extra, term);
                (t, guard.map(|g| self.reduce(ReduceFn::Any, &extra, g)))
            };
            adj.add(n, term, guard);
        }
    }

    /// The contribution of user `u` (adjoint `a`) to its operand in `slot`, before
    /// guards and sums (see [`Builder::propagate`]).
    fn local(
        &mut self,
        op: &Op,
        u: NodeIndex,
        args: &[NodeIndex],
        slot: usize,
        a: NodeIndex,
        span: Span,
    ) -> (NodeIndex, bool, Option<NodeIndex>) {
        let x = args[slot];
        match op {
            Op::Unary(f) => match f {
                UnaryFn::Neg => (self.un(UnaryFn::Neg, a), false, None),
                UnaryFn::Exp => (self.bin(BinaryFn::Mul, a, u), true, None),
                UnaryFn::Log => (self.bin(BinaryFn::Div, a, x), true, None),
                // grad / (2 · sqrt(x)): +inf at 0.
                UnaryFn::Sqrt => {
                    let two = self.num(2.0, span);
                    let d = self.bin(BinaryFn::Mul, two, u);
                    (self.bin(BinaryFn::Div, a, d), true, None)
                }
                // grad · sign(x), sign(0) = sign(NaN) = 0.
                UnaryFn::Abs => {
                    let zero = self.num(0.0, span);
                    let pos = self.bin(BinaryFn::Gt, x, zero);
                    let neg = self.bin(BinaryFn::Lt, x, zero);
                    let one = self.num(1.0, span);
                    let minus = self.num(-1.0, span);
                    let zero = self.num(0.0, span);
                    let s = self.select(neg, minus, zero);
                    let sign = self.select(pos, one, s);
                    (self.bin(BinaryFn::Mul, a, sign), true, None)
                }
                // PyTorch's threshold_backward on the result: 0 where relu(x) <= 0.
                UnaryFn::Relu => {
                    let zero = self.num(0.0, span);
                    let off = self.bin(BinaryFn::Le, u, zero);
                    let zero = self.num(0.0, span);
                    (self.select(off, zero, a), false, None)
                }
                // torch's derivatives (tools/autograd/derivatives.yaml), in its order of
                // operations where it matters to the last ulp.
                UnaryFn::Log1p => {
                    let one = self.num(1.0, span);
                    let d = self.bin(BinaryFn::Add, x, one);
                    (self.bin(BinaryFn::Div, a, d), true, None)
                }
                UnaryFn::Expm1 => {
                    let one = self.num(1.0, span);
                    let d = self.bin(BinaryFn::Add, u, one);
                    (self.bin(BinaryFn::Mul, a, d), true, None)
                }
                // softplus_backward: the gradient itself above the threshold, else
                // grad · sigmoid(x).
                UnaryFn::Softplus => {
                    let s = self.un(UnaryFn::Sigmoid, x);
                    let t = self.bin(BinaryFn::Mul, a, s);
                    let threshold = self.num(20.0, span);
                    let above = self.bin(BinaryFn::Gt, x, threshold);
                    (self.select(above, a, t), true, None)
                }
                // grad · (1 - y) · y
                UnaryFn::Sigmoid => {
                    let one = self.num(1.0, span);
                    let c = self.bin(BinaryFn::Sub, one, u);
                    let t = self.bin(BinaryFn::Mul, a, c);
                    (self.bin(BinaryFn::Mul, t, u), true, None)
                }
                // grad · sigmoid(-x)
                UnaryFn::LogSigmoid => {
                    let nx = self.un(UnaryFn::Neg, x);
                    let s = self.un(UnaryFn::Sigmoid, nx);
                    (self.bin(BinaryFn::Mul, a, s), true, None)
                }
                // grad · (1 - y²)
                UnaryFn::Tanh => {
                    let one = self.num(1.0, span);
                    let yy = self.bin(BinaryFn::Mul, u, u);
                    let c = self.bin(BinaryFn::Sub, one, yy);
                    (self.bin(BinaryFn::Mul, a, c), true, None)
                }
                UnaryFn::Sin => {
                    let c = self.un(UnaryFn::Cos, x);
                    (self.bin(BinaryFn::Mul, a, c), true, None)
                }
                UnaryFn::Cos => {
                    let sn = self.un(UnaryFn::Sin, x);
                    let ns = self.un(UnaryFn::Neg, sn);
                    (self.bin(BinaryFn::Mul, a, ns), true, None)
                }
                // grad / (x² + 1)
                UnaryFn::Atan => {
                    let xx = self.bin(BinaryFn::Mul, x, x);
                    let one = self.num(1.0, span);
                    let d = self.bin(BinaryFn::Add, xx, one);
                    (self.bin(BinaryFn::Div, a, d), true, None)
                }
                // 2/√π · exp(-x²) · grad
                UnaryFn::Erf => {
                    let xx = self.bin(BinaryFn::Mul, x, x);
                    let nxx = self.un(UnaryFn::Neg, xx);
                    let e = self.un(UnaryFn::Exp, nxx);
                    let c = self.num(std::f32::consts::FRAC_2_SQRT_PI, span);
                    let d = self.bin(BinaryFn::Mul, c, e);
                    (self.bin(BinaryFn::Mul, d, a), true, None)
                }
                UnaryFn::Lgamma => {
                    let d = self.un(UnaryFn::Digamma, x);
                    (self.bin(BinaryFn::Mul, a, d), true, None)
                }
                UnaryFn::Digamma => {
                    let d = self.un(UnaryFn::Trigamma, x);
                    (self.bin(BinaryFn::Mul, a, d), true, None)
                }
                // torch: zeros_like(grad).
                UnaryFn::Sign => (self.num(0.0, span), false, None),
                UnaryFn::Not | UnaryFn::IsNan | UnaryFn::Trigamma => {
                    unreachable!("not differentiable")
                }
            },
            Op::Binary(f) => {
                let (p, q) = (args[0], args[1]);
                match (f, slot) {
                    (BinaryFn::Add, _) | (BinaryFn::Sub, 0) => (a, false, None),
                    (BinaryFn::Sub, _) => (self.un(UnaryFn::Neg, a), false, None),
                    (BinaryFn::Mul, 0) => (self.bin(BinaryFn::Mul, a, q), true, None),
                    (BinaryFn::Mul, _) => (self.bin(BinaryFn::Mul, a, p), true, None),
                    (BinaryFn::Div, 0) => (self.bin(BinaryFn::Div, a, q), true, None),
                    // -grad · p / (q · q)
                    (BinaryFn::Div, _) => {
                        let na = self.un(UnaryFn::Neg, a);
                        let top = self.bin(BinaryFn::Mul, na, p);
                        let qq = self.bin(BinaryFn::Mul, q, q);
                        (self.bin(BinaryFn::Div, top, qq), true, None)
                    }
                    // A constant exponent `c` (`x ^ 2`): grad · c · p^(c - 1), the power
                    // written out where it is p or 1, exactly as `powf` gives them; 0
                    // for c == 0.
                    (BinaryFn::Pow, 0) if self.constant(q).is_some() => {
                        let c = self.constant(q).unwrap_or(0.0);
                        if c == 0.0 {
                            (self.num(0.0, span), true, None)
                        } else {
                            let d = match c - 1.0 {
                                0.0 => q,
                                1.0 => self.bin(BinaryFn::Mul, q, p),
                                e => {
                                    let e = self.num(e, span);
                                    let pw = self.bin(BinaryFn::Pow, p, e);
                                    self.bin(BinaryFn::Mul, q, pw)
                                }
                            };
                            (self.bin(BinaryFn::Mul, a, d), true, None)
                        }
                    }
                    // grad · q · p^(q - 1), and 0 where q == 0.
                    (BinaryFn::Pow, 0) => {
                        let one = self.num(1.0, span);
                        let qm1 = self.bin(BinaryFn::Sub, q, one);
                        let pw = self.bin(BinaryFn::Pow, p, qm1);
                        let d = self.bin(BinaryFn::Mul, q, pw);
                        let t = self.bin(BinaryFn::Mul, a, d);
                        let zero = self.num(0.0, span);
                        let q0 = self.bin(BinaryFn::Eq, q, zero);
                        let zero = self.num(0.0, span);
                        (self.select(q0, zero, t), true, None)
                    }
                    // grad · p^q · log(p), and 0 where p == 0 and q >= 0.
                    (BinaryFn::Pow, _) => {
                        let lg = self.un(UnaryFn::Log, p);
                        let d = self.bin(BinaryFn::Mul, u, lg);
                        let t = self.bin(BinaryFn::Mul, a, d);
                        let zero = self.num(0.0, span);
                        let p0 = self.bin(BinaryFn::Eq, p, zero);
                        let zero = self.num(0.0, span);
                        let q_nonneg = self.bin(BinaryFn::Ge, q, zero);
                        let c = self.bin(BinaryFn::And, p0, q_nonneg);
                        let zero = self.num(0.0, span);
                        (self.select(c, zero, t), true, None)
                    }
                    // torch.maximum / minimum: half each on a tie, none to the operand
                    // that lost.
                    (BinaryFn::Max | BinaryFn::Min, _) => {
                        let tie = self.bin(BinaryFn::Eq, p, q);
                        let lost = match (f, slot) {
                            (BinaryFn::Max, 0) | (BinaryFn::Min, 1) => self.bin(BinaryFn::Lt, p, q),
                            _ => self.bin(BinaryFn::Gt, p, q),
                        };
                        let half = self.num(0.5, span);
                        let h = self.bin(BinaryFn::Mul, a, half);
                        let zero = self.num(0.0, span);
                        let won = self.select(lost, zero, a);
                        (self.select(tie, h, won), false, None)
                    }
                    // grad · x / (x² + y²) and grad · -y / (x² + y²), for atan2(y, x);
                    // 0 where x² + y² is 0 in f32 (at the origin, or both tiny), as
                    // torch masks its infinite reciprocal.
                    (BinaryFn::Atan2, _) => {
                        let pp = self.bin(BinaryFn::Mul, p, p);
                        let qq = self.bin(BinaryFn::Mul, q, q);
                        let d = self.bin(BinaryFn::Add, pp, qq);
                        let top = if slot == 0 {
                            self.bin(BinaryFn::Mul, a, q)
                        } else {
                            let np = self.un(UnaryFn::Neg, p);
                            self.bin(BinaryFn::Mul, a, np)
                        };
                        let t = self.bin(BinaryFn::Div, top, d);
                        let zero = self.num(0.0, span);
                        let d0 = self.bin(BinaryFn::Eq, d, zero);
                        let zero = self.num(0.0, span);
                        (self.select(d0, zero, t), true, None)
                    }
                    // xlogy(grad, y), 0 where x = 0 and y <= 0.
                    (BinaryFn::Xlogy, 0) => {
                        let t = self.bin(BinaryFn::Xlogy, a, q);
                        let zero = self.num(0.0, span);
                        let p0 = self.bin(BinaryFn::Eq, p, zero);
                        let zero = self.num(0.0, span);
                        let q_le = self.bin(BinaryFn::Le, q, zero);
                        let c = self.bin(BinaryFn::And, p0, q_le);
                        let zero = self.num(0.0, span);
                        (self.select(c, zero, t), true, None)
                    }
                    // grad · x / y
                    (BinaryFn::Xlogy, _) => {
                        let t = self.bin(BinaryFn::Mul, a, p);
                        (self.bin(BinaryFn::Div, t, q), true, None)
                    }
                    _ => unreachable!("not differentiable"),
                }
            }
            Op::Select => {
                let c = args[0];
                let zero = self.num(0.0, span);
                if slot == 1 {
                    (self.select(c, a, zero), false, Some(c))
                } else {
                    let not_c = self.un(UnaryFn::Not, c);
                    (self.select(c, zero, a), false, Some(not_c))
                }
            }
            // PyTorch's clamp with tensor bounds.
            Op::Clamp => {
                let (v, lo, hi) = (args[0], args[1], args[2]);
                let c = match slot {
                    0 => {
                        let ge = self.bin(BinaryFn::Ge, v, lo);
                        let le = self.bin(BinaryFn::Le, v, hi);
                        self.bin(BinaryFn::And, ge, le)
                    }
                    1 => {
                        let below = self.bin(BinaryFn::Lt, v, lo);
                        let ordered = self.bin(BinaryFn::Lt, lo, hi);
                        self.bin(BinaryFn::And, below, ordered)
                    }
                    _ => {
                        let above = self.bin(BinaryFn::Gt, v, hi);
                        let crossed = self.bin(BinaryFn::Lt, hi, lo);
                        self.bin(BinaryFn::Or, above, crossed)
                    }
                };
                (self.only_if(c, a), false, None)
            }
            Op::Reduce(f, bound) => self.reduce_local(*f, bound, u, x, a, span),
            Op::At(_) | Op::Const(_) | Op::BoolConst(_) | Op::Read(..) | Op::IndexValue(_) => {
                unreachable!("no differentiable operand")
            }
            Op::EnumIs(..) => unreachable!("no operand"),
        }
    }

    /// The local term of a reduction `u` of `body` over `bound`.
    fn reduce_local(
        &mut self,
        f: ReduceFn,
        bound: &[IndexId],
        u: NodeIndex,
        body: NodeIndex,
        a: NodeIndex,
        span: Span,
    ) -> (NodeIndex, bool, Option<NodeIndex>) {
        match f {
            ReduceFn::Sum => (a, false, None),
            ReduceFn::Mean => {
                let n = self.count(bound, span);
                (self.bin(BinaryFn::Div, a, n), false, None)
            }
            // x · (grad / norm), and 0 where the norm is 0.
            ReduceFn::Norm => {
                let zero = self.num(0.0, span);
                let at0 = self.bin(BinaryFn::Eq, u, zero);
                let q = self.bin(BinaryFn::Div, a, u);
                let zero = self.num(0.0, span);
                let s = self.select(at0, zero, q);
                (self.bin(BinaryFn::Mul, body, s), true, None)
            }
            // torch.amax / amin: the adjoint split evenly among the elements equal to
            // the result (NaN for every element when the result is NaN). The k-th
            // largest is one of its values too, and takes the same rule.
            ReduceFn::Max | ReduceFn::Min | ReduceFn::NthLargest => {
                let hit = self.bin(BinaryFn::Eq, body, u);
                let one = self.indicator(hit);
                let ties = self.reduce(ReduceFn::Sum, bound, one);
                let t = self.bin(BinaryFn::Mul, a, one);
                (self.bin(BinaryFn::Div, t, ties), true, None)
            }
            ReduceFn::Median => (self.median_local(bound, u, body, a, span), true, None),
            // torch.prod's backward: the product of the other elements, as
            // grad · prod / x where no element is 0; where exactly one is, that element
            // gets grad · (the product of the others) and the rest 0; with two or more
            // zeros, every element gets 0.
            ReduceFn::Prod => {
                let zero = self.num(0.0, span);
                let is0 = self.bin(BinaryFn::Eq, body, zero);
                let one = self.indicator(is0);
                let zeros = self.reduce(ReduceFn::Sum, bound, one);
                let one = self.num(1.0, span);
                let nonzero = self.select(is0, one, body);
                let others = self.reduce(ReduceFn::Prod, bound, nonzero);
                let gp = self.bin(BinaryFn::Mul, a, u);
                let plain = self.bin(BinaryFn::Div, gp, body);
                let at_zero = self.bin(BinaryFn::Mul, a, others);
                let zero = self.num(0.0, span);
                let none = self.bin(BinaryFn::Eq, zeros, zero);
                let one = self.num(1.0, span);
                let single = self.bin(BinaryFn::Eq, zeros, one);
                let here = self.bin(BinaryFn::And, single, is0);
                let zero = self.num(0.0, span);
                let z = self.select(here, at_zero, zero);
                (self.select(none, plain, z), true, None)
            }
            ReduceFn::All | ReduceFn::Any => unreachable!("not differentiable"),
        }
    }

    /// The median's local term: the two middle elements of the values sorted by a
    /// stable sort (ties in index order) get half the adjoint each (the one middle
    /// element all of it); every element gets NaN when the median is NaN.
    fn median_local(
        &mut self,
        bound: &[IndexId],
        u: NodeIndex,
        body: NodeIndex,
        a: NodeIndex,
        span: Span,
    ) -> NodeIndex {
        // The element's rank: how many come before it in the stable order.
        let other: Vec<IndexId> = bound.iter().map(|v| self.copy_var(*v, "'")).collect();
        let map: Vec<(IndexId, IndexExpr)> = bound
            .iter()
            .zip(&other)
            .map(|(v, w)| (*v, IndexExpr::var(*w)))
            .collect();
        let y = self.add(Op::At(map), Ty::Num, &[body], span);
        let less = self.bin(BinaryFn::Lt, y, body);
        let equal = self.bin(BinaryFn::Eq, y, body);
        // (w1, w2, ...) < (v1, v2, ...) lexicographically, from the last variable out.
        let mut earlier: Option<NodeIndex> = None;
        for (v, w) in bound.iter().zip(&other).rev() {
            let diff = IndexExpr::var(*w).add_scaled(&IndexExpr::var(*v), -1);
            let dv = self.index_value(diff, span);
            let zero = self.num(0.0, span);
            let lt = self.bin(BinaryFn::Lt, dv, zero);
            earlier = Some(match earlier {
                None => lt,
                Some(rest) => {
                    let zero = self.num(0.0, span);
                    let eq = self.bin(BinaryFn::Eq, dv, zero);
                    let tied = self.bin(BinaryFn::And, eq, rest);
                    self.bin(BinaryFn::Or, lt, tied)
                }
            });
        }
        let before = match earlier {
            Some(e) => {
                let tied = self.bin(BinaryFn::And, equal, e);
                self.bin(BinaryFn::Or, less, tied)
            }
            None => less,
        };
        let one = self.indicator(before);
        let rank = self.reduce(ReduceFn::Sum, &other, one);
        // With n values, the middle ranks are floor((n - 1) / 2) and floor(n / 2):
        // 2·rank is n - 1 for the one middle element of an odd count, n - 2 or n for the
        // two of an even count.
        let n = self.count(bound, span);
        let two = self.num(2.0, span);
        let r2 = self.bin(BinaryFn::Mul, two, rank);
        let one = self.num(1.0, span);
        let nm1 = self.bin(BinaryFn::Sub, n, one);
        let two = self.num(2.0, span);
        let nm2 = self.bin(BinaryFn::Sub, n, two);
        let is_mid = self.bin(BinaryFn::Eq, r2, nm1);
        let is_lo = self.bin(BinaryFn::Eq, r2, nm2);
        let is_hi = self.bin(BinaryFn::Eq, r2, n);
        let is_half = self.bin(BinaryFn::Or, is_lo, is_hi);
        let one = self.num(1.0, span);
        let half = self.num(0.5, span);
        let zero = self.num(0.0, span);
        let w_half = self.select(is_half, half, zero);
        let w = self.select(is_mid, one, w_half);
        let nan = self.num(f32::NAN, span);
        let undefined = self.un(UnaryFn::IsNan, u);
        let w = self.select(undefined, nan, w);
        // Elements that are not chosen get exactly 0, as PyTorch's sort backward
        // scatters the adjoint only to the chosen ones.
        let t = self.bin(BinaryFn::Mul, a, w);
        let zero = self.num(0.0, span);
        let unchosen = self.bin(BinaryFn::Eq, w, zero);
        let zero = self.num(0.0, span);
        self.select(unchosen, zero, t)
    }

    /// The contribution of read `r` (subscripts `subs`, adjoint `a_r`) to the gradient
    /// element at `axes`: the sum of `a_r` over the points where the subscripts equal
    /// `axes`, inverting what can be inverted.
    fn transpose(
        &mut self,
        ir: &LossIr,
        r: NodeIndex,
        subs: &[IndexExpr],
        a_r: NodeIndex,
        axes: &[IndexId],
    ) -> (NodeIndex, Transposed) {
        let span = ir.graph[r].span;
        let mut in_axis: HashMap<IndexId, usize> = HashMap::new();
        let mut in_gather: Vec<IndexId> = Vec::new();
        for e in subs {
            for (_, t) in &e.terms {
                match t {
                    IndexTerm::Var(v) => *in_axis.entry(*v).or_default() += 1,
                    IndexTerm::Gather(_, idx) => idx.iter().for_each(|g| g.vars(&mut in_gather)),
                }
            }
        }
        let mut solved: Vec<(IndexId, IndexExpr)> = Vec::new();
        let mut guard: Option<NodeIndex> = None;
        let mut checks: Vec<usize> = Vec::new();
        for (axis, e) in subs.iter().enumerate() {
            let gathers = e
                .terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)));
            let pick = (!gathers)
                .then(|| {
                    e.terms.iter().find_map(|(c, t)| match t {
                        IndexTerm::Var(v)
                            if in_axis.get(v) == Some(&1) && !in_gather.contains(v) =>
                        {
                            c.as_constant().filter(|c| c.abs() == 1).map(|c| (c, *v))
                        }
                        _ => None,
                    })
                })
                .flatten();
            let Some((c, v)) = pick else {
                checks.push(axis);
                continue;
            };
            // c·v + rest = g  ⇒  v = c·(g − rest), as c·c = 1.
            let rest = e.add_scaled(&IndexExpr::var(v), -c);
            let value = IndexExpr::var(axes[axis]).add_scaled(&rest, -1).scale(c);
            let (lo, hi) = ir.indices[v].range.clone().unwrap_or_default();
            let whole_axis = rest.terms.is_empty()
                && rest.offset == Poly::default()
                && c == 1
                && lo == Poly::default()
                && Some(&hi) == self.ir.indices[axes[axis]].range.as_ref().map(|r| &r.1);
            if !whole_axis {
                let above = self.non_negative(value.add_scaled(&IndexExpr::poly(lo), -1), span);
                let below = self.non_negative(IndexExpr::poly(hi).add_scaled(&value, -1), span);
                let within = self.bin(BinaryFn::And, above, below);
                guard = Some(self.and(guard, within));
            }
            solved.push((v, value));
        }
        let unsolved: Vec<IndexId> = ir.graph[r]
            .free
            .iter()
            .copied()
            .filter(|v| solved.iter().all(|(w, _)| w != v))
            .collect();
        let plan = Transposed {
            input: InputId::new(0),
            read: r,
            set: solved.clone(),
            summed: unsolved.clone(),
            matched: checks.clone(),
        };
        for axis in checks {
            // The subscript, with the solved variables set, equals the gradient's index.
            let e = subs[axis]
                .substitute(&solved)
                .add_scaled(&IndexExpr::var(axes[axis]), -1);
            let v = self.index_value(e, span);
            let zero = self.num(0.0, span);
            let hit = self.bin(BinaryFn::Eq, v, zero);
            guard = Some(self.and(guard, hit));
        }
        let body = if solved.is_empty() {
            a_r
        } else {
            self.add(Op::At(solved), Ty::Num, &[a_r], span)
        };
        let term = self.guarded(guard, body);
        let term = if unsolved.is_empty() {
            term
        } else {
            self.reduce(ReduceFn::Sum, &unsolved, term)
        };
        (term, plan)
    }
}

/// How each read of each requested input is transposed, for `lossc explain --wrt`.
pub fn explain(forward: &LossIr, adj: &Adjoint) -> String {
    let mut out = String::new();
    for g in &adj.grads {
        let info = &forward.inputs[g.input];
        let axes: Vec<&str> = g
            .axes
            .iter()
            .map(|a| adj.ir.indices[*a].name.as_str())
            .collect();
        out.push_str(&format!(
            "loss `{}`: d loss / d {}[{}], each element gathered:\n",
            forward.name,
            info.name,
            axes.join(", ")
        ));
        let reads: Vec<&Transposed> = adj.reads.iter().filter(|t| t.input == g.input).collect();
        if reads.is_empty() {
            out.push_str("  no read of it is differentiable: every element is 0\n");
        }
        for t in reads {
            let Op::Read(_, subs) = &forward.graph[t.read].op else {
                continue;
            };
            let set: Vec<String> = t
                .set
                .iter()
                .map(|(v, e)| format!("{} := {}", adj.ir.indices[*v].name, adj.ir.show_index(e)))
                .collect();
            let summed: Vec<String> = t
                .summed
                .iter()
                .map(|v| {
                    let var = &adj.ir.indices[*v];
                    let range = var
                        .range
                        .as_ref()
                        .map(|(lo, hi)| {
                            let names = adj.ir.dim_names();
                            format!(" in {}..={}", lo.display(&names), hi.display(&names))
                        })
                        .unwrap_or_default();
                    format!("{}{range}", var.name)
                })
                .collect();
            out.push_str(&format!(
                "  read {}[{}] at {}: ",
                info.name,
                forward.show_subscripts(subs),
                forward.origin.locate(forward.graph[t.read].span)
            ));
            let mut parts = Vec::new();
            if !set.is_empty() {
                parts.push(format!("its adjoint at {}", set.join(", ")));
            } else {
                parts.push("its adjoint".to_string());
            }
            if !summed.is_empty() {
                parts.push(format!("summed over {}", summed.join(", ")));
            }
            if !t.matched.is_empty() {
                let axes: Vec<String> = t.matched.iter().map(|a| a.to_string()).collect();
                parts.push(format!(
                    "where the subscript of axis {} equals the element's",
                    axes.join(", ")
                ));
            }
            out.push_str(&parts.join(", "));
            out.push('\n');
        }
    }
    out
}
