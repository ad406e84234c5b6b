//! An adjoint IR as the losses a backward kernel runs: one loss per gradient, whose
//! domain is the gradient's axes and whose `compute` is the gradient, in the plain IR
//! every back end already evaluates.
//!
//! Two rewrites make it plain:
//! * **No [`Op::At`].** An adjoint read at other indices (`e` at `t := g − 1`) becomes
//!   `e` rebuilt with `t` replaced by `g − 1` in every subscript and index value below it
//!   (nodes that do not have `t` free are shared, and a reduction that binds a variable
//!   hides it from the replacement). Subscripts stay affine, so every back end's reads
//!   and schedules apply unchanged. Where the replacement leaves a read outside its
//!   axis, the adjoint's guards (the range of `t`, as conditions) discard the value: a
//!   kernel may load anything there, never use it.
//! * **The mean's count is read, not recomputed.** Counting the loss's counted elements
//!   is a reduction over the whole forward domain; per gradient element it would cost as
//!   much as the forward pass. The count node becomes a read of the scalar param
//!   [`COUNT_PARAM`], which the backward kernel takes from the forward kernel's results
//!   (the CPU evaluator, from a bound value).

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::Adjoint;
use crate::ice::InternalError;
use crate::ir::passes::dce::remove_dead_nodes;
use crate::ir::{
    BinaryFn, IndexExpr, IndexId, InputId, LossIr, Node, Op, ParamInfo, ParamKind, ParamValue,
    ReduceMode, Tensor, Ty, add_node, detach_operands, free_indices, operands,
};

pub use crate::ir::COUNT_PARAM;

/// One gradient of a loss as a loss of its own.
#[derive(Clone, Debug)]
pub struct GradLoss {
    /// The input the gradient is of.
    pub input: InputId,
    /// Its position in [`Adjoint::grads`].
    pub grad: usize,
    /// The loss: domain the gradient's axes (row-major, as the input is stored),
    /// `compute` the gradient, summed with no mask and a weight of 1.
    pub ir: LossIr,
    /// Whether it reads [`COUNT_PARAM`] (its forward loss is a mean).
    pub reads_count: bool,
}

/// The losses of a backward kernel for `adj`: one per gradient that depends on its input
/// (a gradient that does not is all zeros, and has no loss).
pub fn gradient_losses(adj: &Adjoint) -> Result<Vec<GradLoss>, InternalError> {
    let mut ir = adj.ir.clone();
    let mut reads_count = false;
    if let Some(n) = adj.count {
        let p = ir.params.push_and_get_key(ParamInfo {
            name: COUNT_PARAM.to_string(),
            kind: ParamKind::Scalar,
            default: Some(ParamValue::Scalar(0.0)),
            span: ir.span,
        });
        detach_operands(&mut ir.graph, n);
        let node = &mut ir.graph[n];
        node.op = Op::Read(Tensor::Param(p), vec![]);
        node.free = vec![];
        node.ty = Ty::Num;
        reads_count = true;
    }
    let replaced = eliminate_at(&mut ir)?;
    let mut out = Vec::new();
    for (k, g) in adj.grads.iter().enumerate() {
        let Some(node) = g.node else { continue };
        let node = replaced.get(&node).copied().unwrap_or(node);
        let mut loss = ir.clone();
        let node = broadcast(&mut loss, node, &g.axes);
        loss.name = format!("{}.d_{}", ir.name, ir.inputs[g.input].name);
        loss.domain = g.axes.clone();
        loss.compute = node;
        loss.masks = Default::default();
        loss.rectify = None;
        loss.empty = None;
        loss.reduce = ReduceMode::Sum;
        let span = loss.span;
        loss.weight = add_node(
            &mut loss.graph,
            Node {
                op: Op::constant(1.0),
                ty: Ty::Num,
                free: vec![],
                span,
            },
            &[],
        );
        remove_dead_nodes(&mut loss);
        let reads = reads_count
            && loss.graph.node_weights().any(|n| {
                matches!(&n.op, Op::Read(Tensor::Param(p), _) if loss.params[*p].name == COUNT_PARAM)
            });
        out.push(GradLoss {
            input: g.input,
            grad: k,
            ir: loss,
            reads_count: reads,
        });
    }
    Ok(out)
}

/// `n` made to depend on every one of `axes` it is constant along (a gradient broadcast
/// over an axis), as `select(Σ missing ≥ 0, n, n)`: the same value, bit for bit, but a
/// loss's domain is its `compute`'s free indices, which schedules rely on and the
/// verifier checks.
fn broadcast(ir: &mut LossIr, n: NodeIndex, axes: &[IndexId]) -> NodeIndex {
    let missing: Vec<IndexId> = axes
        .iter()
        .copied()
        .filter(|v| !ir.graph[n].free.contains(v))
        .collect();
    if missing.is_empty() {
        return n;
    }
    let span = ir.graph[n].span;
    let add = |ir: &mut LossIr, op: Op, ty: Ty, args: &[NodeIndex]| {
        let free = free_indices(&ir.graph, &op, args);
        add_node(&mut ir.graph, Node { op, ty, free, span }, args)
    };
    let mut sum = IndexExpr::default();
    for v in &missing {
        sum = sum.add_scaled(&IndexExpr::var(*v), 1);
    }
    let at = add(ir, Op::IndexValue(sum), Ty::Num, &[]);
    let zero = add(ir, Op::constant(0.0), Ty::Num, &[]);
    let cond = add(ir, Op::Binary(BinaryFn::Ge), Ty::Bool, &[at, zero]);
    add(ir, Op::Select, ir.graph[n].ty, &[cond, n, n])
}

/// Replaces every [`Op::At`] by its operand rebuilt at the indices it sets, operands
/// first (so no `at` is left below one being replaced). Returns each replaced node's
/// replacement.
fn eliminate_at(ir: &mut LossIr) -> Result<HashMap<NodeIndex, NodeIndex>, InternalError> {
    let order = toposort(&ir.graph, None)
        .map_err(|_| InternalError::in_loss(&ir.name, None, "the adjoint IR has a cycle"))?;
    let mut replaced = HashMap::new();
    for n in order {
        let Op::At(map) = ir.graph[n].op.clone() else {
            continue;
        };
        let args = operands(&ir.graph, n);
        let [operand] = args[..] else {
            return Err(InternalError::in_loss(
                &ir.name,
                None,
                "an `at` node without exactly one operand",
            ));
        };
        let mut memo = HashMap::new();
        let r = substitute(ir, operand, &map, &mut memo)?;
        let users: Vec<(NodeIndex, u8)> = ir
            .graph
            .edges_directed(n, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        for (u, slot) in users {
            ir.graph.add_edge(r, u, slot);
        }
        ir.graph.remove_node(n);
        ir.remap_roots(&|x| if x == n { r } else { x });
        for v in replaced.values_mut() {
            if *v == n {
                *v = r;
            }
        }
        replaced.insert(n, r);
    }
    Ok(replaced)
}

/// Node `n` with the variables of `map` replaced by their expressions: `n` itself where
/// none of them is free in it. `memo` is for this `map` only.
fn substitute(
    ir: &mut LossIr,
    n: NodeIndex,
    map: &[(IndexId, IndexExpr)],
    memo: &mut HashMap<(NodeIndex, Vec<IndexId>), NodeIndex>,
) -> Result<NodeIndex, InternalError> {
    let active: Vec<IndexId> = map
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| ir.graph[n].free.contains(v))
        .collect();
    if active.is_empty() {
        return Ok(n);
    }
    if let Some(r) = memo.get(&(n, active.clone())) {
        return Ok(*r);
    }
    let node = ir.graph[n].clone();
    let map_here: Vec<(IndexId, IndexExpr)> = map
        .iter()
        .filter(|(v, _)| active.contains(v))
        .cloned()
        .collect();
    let inner: Vec<(IndexId, IndexExpr)> = match &node.op {
        Op::Reduce(_, bound) => map_here
            .iter()
            .filter(|(v, _)| !bound.contains(v))
            .cloned()
            .collect(),
        Op::At(_) => {
            return Err(InternalError::in_loss(
                &ir.name,
                Some(ir.origin.locate(node.span)),
                "an `at` node below another one after they were replaced",
            ));
        }
        _ => map_here.clone(),
    };
    let args = operands(&ir.graph, n);
    let mut new_args = Vec::with_capacity(args.len());
    for a in args {
        new_args.push(substitute(ir, a, &inner, memo)?);
    }
    let op = match &node.op {
        Op::Read(t, idx) => Op::Read(*t, idx.iter().map(|e| e.substitute(&map_here)).collect()),
        Op::IndexValue(e) => Op::IndexValue(e.substitute(&map_here)),
        other => other.clone(),
    };
    let free = free_indices(&ir.graph, &op, &new_args);
    let r = add_node(
        &mut ir.graph,
        Node {
            op,
            ty: node.ty,
            free,
            span: node.span,
        },
        &new_args,
    );
    memo.insert((n, active), r);
    Ok(r)
}
