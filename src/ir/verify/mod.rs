//! The IR verifier: checks a loss's graph against the invariants every later stage
//! relies on (operand counts and slots, types, free indices, acyclicity, roots, ids,
//! ranks and, once inferred, index ranges), so that a bug in lowering or in a pass is
//! reported as an internal compiler error instead of becoming a wrong kernel.
//!
//! It assumes the graph's depth is bounded ([`crate::ir::passes::depth`] runs first): the
//! only recursion here is into gathers' subscripts, which that bound covers.

use std::fmt;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;

use crate::diagnostics::{Diagnostic, Span};
use crate::ice::{InternalError, PLEASE_REPORT};
use crate::ir::{
    BinaryFn, IndexExpr, IndexId, IndexTerm, LossIr, Node, Op, ParamId, ParamKind, ReduceFn,
    Tensor, Ty, UnaryFn, operands,
};

/// How far the IR has come, which decides what must already hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Lowered, and perhaps rewritten by passes: index ranges may still be unknown.
    Lowered,
    /// Range inference has run without errors: every index a node mentions has a range.
    Ranged,
}

/// A broken invariant: where, and which.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyError {
    /// The loss's name.
    pub loss: String,
    /// The span of the node at fault (the loss's span for a missing root).
    pub span: Span,
    /// `file:line:col` of that span.
    pub at: String,
    /// What is wrong.
    pub what: Violation,
}

/// One kind of broken invariant.
#[derive(Clone, Debug, PartialEq)]
pub enum Violation {
    /// A stage names a node that is not in the graph.
    MissingRoot(&'static str),
    /// The node lies on a cycle.
    Cycle,
    /// The operands' slots, sorted, are not `0, 1, ..., n - 1`.
    Slots(Vec<u8>),
    /// The op takes `want` operands.
    Arity { op: String, want: usize, got: usize },
    /// The operand in `slot` has the wrong type.
    OperandType {
        op: String,
        slot: usize,
        want: Ty,
        got: Ty,
    },
    /// The node's own type is not the one its op gives.
    ResultType { op: String, want: Ty, got: Ty },
    /// The node's free indices are not the sorted union of its operands' and its own
    /// subscripts' (less a reduction's bound indices).
    Free {
        want: Vec<IndexId>,
        got: Vec<IndexId>,
    },
    /// An id that names nothing (an input, param or index variable past the end), or a
    /// param of the wrong kind.
    BadId(String),
    /// A read or gather with as many subscripts as the tensor has dimensions.
    Rank {
        tensor: String,
        rank: usize,
        subscripts: usize,
    },
    /// A stage's root with the wrong type or free indices.
    Root(String),
    /// An index a node uses has no range after range inference.
    RangeUnknown(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::MissingRoot(stage) => write!(f, "the `{stage}` root is not in the graph"),
            Violation::Cycle => f.write_str("the graph has a cycle through this node"),
            Violation::Slots(slots) => write!(f, "operand slots {slots:?} are not 0..n"),
            Violation::Arity { op, want, got } => {
                write!(f, "`{op}` has {got} operands, not {want}")
            }
            Violation::OperandType {
                op,
                slot,
                want,
                got,
            } => write!(f, "operand {slot} of `{op}` is a {got}, not a {want}"),
            Violation::ResultType { op, want, got } => {
                write!(f, "`{op}` gives a {want}, but its node says {got}")
            }
            Violation::Free { want, got } => {
                write!(
                    f,
                    "free indices are {:?}, but its operands give {:?}",
                    positions(got),
                    positions(want)
                )
            }
            Violation::BadId(what) => f.write_str(what),
            Violation::Rank {
                tensor,
                rank,
                subscripts,
            } => write!(
                f,
                "`{tensor}` has {rank} dimensions but is read with {subscripts} subscripts"
            ),
            Violation::Root(what) => f.write_str(what),
            Violation::RangeUnknown(name) => {
                write!(f, "index `{name}` has no range after range inference")
            }
        }
    }
}

/// Ids as the plain numbers messages print.
fn positions(ids: &[IndexId]) -> Vec<usize> {
    ids.iter().map(|v| v.index()).collect()
}

/// In the wording of every internal compiler error ([`InternalError`]).
impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        InternalError::from(self.clone()).fmt(f)
    }
}

impl std::error::Error for VerifyError {}

impl From<VerifyError> for InternalError {
    fn from(e: VerifyError) -> InternalError {
        InternalError::in_loss(e.loss, Some(e.at), e.what.to_string())
    }
}

impl VerifyError {
    /// The error as a diagnostic at the node's span, worded as the front end's other
    /// internal errors are.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let message = format!(
            "internal compiler error in loss `{}` at {}: {}",
            self.loss, self.at, self.what
        );
        Diagnostic::error(message, self.span, "lossc built this wrongly").with_note(PLEASE_REPORT)
    }
}

/// Checks every invariant of `ir` that holds at `stage`; the first violation found.
pub fn verify(ir: &LossIr, stage: Stage) -> Result<(), VerifyError> {
    let fail = |span: Span, what: Violation| VerifyError {
        loss: ir.name.clone(),
        span,
        at: ir.origin.locate(span),
        what,
    };
    let mut roots = vec![("compute", ir.compute), ("weight", ir.weight)];
    roots.extend(ir.masks.iter().map(|m| ("remove_nans", m.cond)));
    roots.extend(ir.rectify.map(|r| ("rectify", r)));
    roots.extend(ir.empty.map(|e| ("empty", e)));
    for n in ir.roots() {
        if !ir.graph.contains_node(n) {
            let stage = roots
                .iter()
                .find(|(_, r)| *r == n)
                .map_or("stage", |(s, _)| s);
            return Err(fail(ir.span, Violation::MissingRoot(stage)));
        }
    }
    if let Err(cycle) = toposort(&ir.graph, None) {
        let n = cycle.node_id();
        return Err(fail(ir.graph[n].span, Violation::Cycle));
    }
    for n in ir.graph.node_indices() {
        node(ir, n, stage).map_err(|what| fail(ir.graph[n].span, what))?;
    }
    stage_roots(ir, &roots).map_err(|(n, what)| fail(ir.graph[n].span, what))
}

/// The operand types an op takes and the type it gives. A `select`'s branches take
/// either type: they take the node's own.
fn signature(op: &Op, ty: Ty) -> (Vec<Ty>, Ty) {
    use Ty::{Bool, Num};
    match op {
        Op::Const(_) | Op::Read(..) | Op::IndexValue(_) => (vec![], Num),
        Op::BoolConst(_) | Op::EnumIs(..) => (vec![], Bool),
        Op::Unary(UnaryFn::Not) => (vec![Bool], Bool),
        Op::Unary(UnaryFn::IsNan) => (vec![Num], Bool),
        Op::Unary(_) => (vec![Num], Num),
        Op::Binary(f) if f.gives_number() => (vec![Num, Num], Num),
        Op::Binary(BinaryFn::And | BinaryFn::Or) => (vec![Bool, Bool], Bool),
        // The comparisons.
        Op::Binary(_) => (vec![Num, Num], Bool),
        Op::Select => (vec![Bool, ty, ty], ty),
        Op::Clamp => (vec![Num, Num, Num], Num),
        Op::At(_) => (vec![ty], ty),
        Op::Reduce(ReduceFn::All | ReduceFn::Any, _) => (vec![Bool], Bool),
        // The body and the count.
        Op::Reduce(ReduceFn::NthLargest, _) => (vec![Num, Num], Num),
        Op::Reduce(..) => (vec![Num], Num),
    }
}

/// A short name of an op, for messages.
fn op_name(op: &Op) -> String {
    match op {
        Op::Const(_) => "const".into(),
        Op::BoolConst(_) => "bool const".into(),
        Op::Read(..) => "read".into(),
        Op::IndexValue(_) => "index value".into(),
        Op::EnumIs(..) => "enum test".into(),
        Op::Unary(f) => format!("{f:?}").to_lowercase(),
        Op::Binary(f) => format!("{f:?}").to_lowercase(),
        Op::Select => "select".into(),
        Op::Clamp => "clamp".into(),
        Op::Reduce(f, _) => format!("{f:?}").to_lowercase(),
        Op::At(_) => "at".into(),
    }
}

/// One node's own invariants (its operands are checked as nodes of their own).
fn node(ir: &LossIr, n: NodeIndex, stage: Stage) -> Result<(), Violation> {
    let node = &ir.graph[n];
    let mut slots: Vec<u8> = ir
        .graph
        .edges_directed(n, Direction::Incoming)
        .map(|e| *e.weight())
        .collect();
    slots.sort_unstable();
    if slots.iter().enumerate().any(|(i, s)| usize::from(*s) != i) {
        return Err(Violation::Slots(slots));
    }
    let args = operands(&ir.graph, n);
    let (want_args, want_ty) = signature(&node.op, node.ty);
    if args.len() != want_args.len() {
        return Err(Violation::Arity {
            op: op_name(&node.op),
            want: want_args.len(),
            got: args.len(),
        });
    }
    for (slot, (a, want)) in args.iter().zip(&want_args).enumerate() {
        let got = ir.graph[*a].ty;
        if got != *want {
            return Err(Violation::OperandType {
                op: op_name(&node.op),
                slot,
                want: *want,
                got,
            });
        }
    }
    if node.ty != want_ty {
        return Err(Violation::ResultType {
            op: op_name(&node.op),
            want: want_ty,
            got: node.ty,
        });
    }
    let own = own_indices(ir, node)?;
    // A reduction's bound indices leave its operand's free set; an `at`'s set ones do,
    // and the variables of the expressions they are set to join it.
    let mut want: Vec<IndexId> = args
        .iter()
        .flat_map(|a| ir.graph[*a].free.iter().copied())
        .filter(|v| !own.bound.contains(v))
        .chain(own.subscripts.iter().copied())
        .filter(|v| matches!(node.op, Op::At(_)) || !own.bound.contains(v))
        .collect();
    want.sort_unstable();
    want.dedup();
    if node.free != want {
        return Err(Violation::Free {
            want,
            got: node.free.clone(),
        });
    }
    if stage == Stage::Ranged {
        for v in own.subscripts.iter().chain(&own.bound).chain(&node.free) {
            if ir.indices[*v].range.is_none() {
                return Err(Violation::RangeUnknown(ir.indices[*v].name.clone()));
            }
        }
    }
    Ok(())
}

/// The index variables a node names itself: in its subscripts (gathers' included) and,
/// for a reduction, the ones it binds. Every id is checked to name something.
struct OwnIndices {
    subscripts: Vec<IndexId>,
    bound: Vec<IndexId>,
}

fn own_indices(ir: &LossIr, node: &Node) -> Result<OwnIndices, Violation> {
    let mut own = OwnIndices {
        subscripts: vec![],
        bound: vec![],
    };
    match &node.op {
        Op::Read(t, idx) => {
            let (name, rank) = match *t {
                Tensor::Input(i) => {
                    let input = ir
                        .inputs
                        .get(i)
                        .ok_or_else(|| Violation::BadId(format!("input {i} does not exist")))?;
                    (&input.name, input.shape.len())
                }
                Tensor::Param(p) => {
                    let param = param(ir, p)?;
                    let rank = match &param.kind {
                        ParamKind::Scalar => 0,
                        ParamKind::Tensor(s) | ParamKind::Index(s) => s.len(),
                        ParamKind::Enum(_) => {
                            return Err(Violation::BadId(format!(
                                "enum param `{}` is read as a number",
                                param.name
                            )));
                        }
                    };
                    (&param.name, rank)
                }
            };
            subscripts(ir, name, rank, idx, &mut own.subscripts)?;
        }
        Op::IndexValue(e) => index_expr(ir, e, &mut own.subscripts)?,
        Op::EnumIs(p, value) => {
            let param = param(ir, *p)?;
            let ParamKind::Enum(values) = &param.kind else {
                return Err(Violation::BadId(format!(
                    "param `{}` is tested as an enum but is not one",
                    param.name
                )));
            };
            if !values.contains(value) {
                return Err(Violation::BadId(format!(
                    "\"{value}\" is not a value of `{}`",
                    param.name
                )));
            }
        }
        Op::Reduce(_, bound) => {
            for (i, v) in bound.iter().enumerate() {
                index_var(ir, *v)?;
                if bound[..i].contains(v) {
                    return Err(Violation::BadId(format!(
                        "index `{}` is bound twice",
                        ir.indices[*v].name
                    )));
                }
            }
            own.bound.clone_from(bound);
        }
        Op::At(map) => {
            for (i, (v, e)) in map.iter().enumerate() {
                index_var(ir, *v)?;
                if map[..i].iter().any(|(w, _)| w == v) {
                    return Err(Violation::BadId(format!(
                        "index `{}` is set twice",
                        ir.indices[*v].name
                    )));
                }
                if e.terms
                    .iter()
                    .any(|(_, t)| matches!(t, IndexTerm::Gather(..)))
                {
                    return Err(Violation::BadId(format!(
                        "index `{}` is set to a gathered value",
                        ir.indices[*v].name
                    )));
                }
                index_expr(ir, e, &mut own.subscripts)?;
            }
            own.bound = map.iter().map(|(v, _)| *v).collect();
        }
        _ => {}
    }
    for v in &node.free {
        index_var(ir, *v)?;
    }
    Ok(own)
}

fn param(ir: &LossIr, p: ParamId) -> Result<&crate::ir::ParamInfo, Violation> {
    ir.params
        .get(p)
        .ok_or_else(|| Violation::BadId(format!("param {p} does not exist")))
}

fn index_var(ir: &LossIr, v: IndexId) -> Result<(), Violation> {
    if ir.indices.get(v).is_some() {
        Ok(())
    } else {
        Err(Violation::BadId(format!(
            "index variable {v} does not exist"
        )))
    }
}

/// Checks a tensor's subscripts against its rank and collects their variables.
fn subscripts(
    ir: &LossIr,
    tensor: &str,
    rank: usize,
    idx: &[IndexExpr],
    out: &mut Vec<IndexId>,
) -> Result<(), Violation> {
    if idx.len() != rank {
        return Err(Violation::Rank {
            tensor: tensor.to_string(),
            rank,
            subscripts: idx.len(),
        });
    }
    idx.iter().try_for_each(|e| index_expr(ir, e, out))
}

/// Checks one index expression's ids (a gather goes through an `index` param or an
/// `int` input of the right rank) and collects its variables.
fn index_expr(ir: &LossIr, e: &IndexExpr, out: &mut Vec<IndexId>) -> Result<(), Violation> {
    for (_, term) in &e.terms {
        match term {
            IndexTerm::Var(v) => {
                index_var(ir, *v)?;
                out.push(*v);
            }
            IndexTerm::Gather(Tensor::Param(p), idx) => {
                let param = param(ir, *p)?;
                let ParamKind::Index(shape) = &param.kind else {
                    return Err(Violation::BadId(format!(
                        "param `{}` is gathered from but is not an `index` param",
                        param.name
                    )));
                };
                subscripts(ir, &param.name, shape.len(), idx, out)?;
            }
            IndexTerm::Gather(Tensor::Input(i), idx) => {
                let input = ir
                    .inputs
                    .get(*i)
                    .ok_or_else(|| Violation::BadId(format!("input {i} does not exist")))?;
                if !input.int {
                    return Err(Violation::BadId(format!(
                        "input `{}` is gathered from but is not an `int` input",
                        input.name
                    )));
                }
                subscripts(ir, &input.name, input.shape.len(), idx, out)?;
            }
        }
    }
    Ok(())
}

/// The stages' roots: `compute`'s free indices are the domain, conditions are truth
/// values over the domain's indices, `rectify` a number over them, `weight` and
/// `empty:` closed numbers.
fn stage_roots(ir: &LossIr, roots: &[(&str, NodeIndex)]) -> Result<(), (NodeIndex, Violation)> {
    let mut domain = ir.domain.clone();
    domain.sort_unstable();
    let compute = &ir.graph[ir.compute];
    if compute.free != domain || domain.windows(2).any(|w| w[0] == w[1]) {
        return Err((
            ir.compute,
            Violation::Root(format!(
                "the domain {:?} is not `compute`'s free indices {:?}",
                positions(&ir.domain),
                positions(&compute.free)
            )),
        ));
    }
    for (stage, n) in roots {
        let node = &ir.graph[*n];
        let (want_ty, closed) = match *stage {
            "compute" => (Ty::Num, false),
            "remove_nans" => (Ty::Bool, false),
            "rectify" => (Ty::Num, false),
            _ => (Ty::Num, true),
        };
        if node.ty != want_ty {
            return Err((
                *n,
                Violation::Root(format!(
                    "the `{stage}` root is a {}, not a {want_ty}",
                    node.ty
                )),
            ));
        }
        let outside = |v: &IndexId| closed || !domain.contains(v);
        if let Some(v) = node.free.iter().find(|v| outside(v)) {
            return Err((
                *n,
                Violation::Root(format!(
                    "the `{stage}` root has index `{}` free, outside the domain",
                    ir.indices[*v].name
                )),
            ));
        }
    }
    for m in &ir.masks {
        if let Some(i) = m
            .needs
            .iter()
            .find(|i| ir.inputs.get(**i).is_none_or(|x| !x.optional))
        {
            return Err((
                m.cond,
                Violation::BadId(format!("a mask needs input {i}, which is not optional")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
