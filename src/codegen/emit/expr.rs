//! A node's value: the WGSL expression of its operation, bound to a `let` and cached in
//! the current block. Every constant and every computed f32 is hidden from the shader
//! compiler's algebra (`wgsl::opaque`), so that it cannot fold `0 * x` or `x - x` to 0, or
//! reassociate, as WGSL lets it when it assumes no NaN or infinity.

use std::collections::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::LossEmitter;
use crate::codegen::layout::Slot;
use crate::codegen::wgsl::{binary_wgsl, opaque, opaque_lit, unary_wgsl};
use crate::ice::InternalError;
use crate::ir::{BinaryFn, Op, ParamKind, Ty, operands};

impl LossEmitter<'_> {
    /// The WGSL name holding node `n`'s value, emitting what it needs.
    pub(super) fn val(&mut self, n: NodeIndex) -> String {
        let outer = self.at.replace(n);
        let v = self.value_of(n);
        self.at = outer;
        v
    }

    fn value_of(&mut self, n: NodeIndex) -> String {
        if let Some(x) = self.lookup(n) {
            return x;
        }
        let node = self.ir.graph[n].clone();
        let args = operands(&self.ir.graph, n);
        let expr = match &node.op {
            Op::Const(bits) => return opaque_lit(f32::from_bits(*bits)),
            Op::BoolConst(b) => return b.to_string(),
            // Differentiation's re-indexing is not compiled into fused kernels yet: the
            // adjoint IR runs on the CPU evaluator.
            Op::At(_) => {
                self.bug = Some(InternalError::in_loss(
                    &self.ir.name,
                    Some(self.ir.origin.locate(node.span)),
                    "a fused kernel cannot evaluate a node at other indices yet",
                ));
                return "0.0f".into();
            }
            Op::Read(t, idx) => self.read(*t, idx, Some(n)),
            Op::IndexValue(e) => format!("f32({})", self.index(e)),
            Op::EnumIs(p, v) => {
                let ParamKind::Enum(vs) = &self.ir.params[*p].kind else {
                    self.bug = Some(InternalError::in_loss(
                        &self.ir.name,
                        Some(self.ir.origin.locate(node.span)),
                        "an enum test on a non-enum param",
                    ));
                    return "false".into();
                };
                let k = vs.iter().position(|x| x == v).unwrap_or(0);
                let slot = self.m(Slot::Enum {
                    loss: self.li,
                    param: self.ir.params[*p].name.clone(),
                });
                format!("({slot} == {k})")
            }
            Op::Unary(f) => {
                let a = self.val(args[0]);
                unary_wgsl(*f, &a)
            }
            Op::Binary(f) => {
                let a = self.val(args[0]);
                match f {
                    BinaryFn::Pow if matches!(self.ir.graph[args[1]].op, Op::Const(c) if f32::from_bits(c) == 2.0) =>
                    {
                        format!("({a} * {a})")
                    }
                    // `x - x`, `x / x`, `x == x`: the same number twice would let the
                    // shader compiler fold the operation, so the second is hidden anew.
                    // (`c && c` and `c || c` are `c` for every truth value: nothing to
                    // hide, and `lc_opaque` takes an f32.)
                    _ if args[1] == args[0] && self.ir.graph[args[0]].ty == Ty::Num => {
                        binary_wgsl(*f, &a, &opaque(&a))
                    }
                    _ => {
                        let b = self.val(args[1]);
                        binary_wgsl(*f, &a, &b)
                    }
                }
            }
            Op::Select => {
                if let Some(taken) = self.known_truth(args[0]) {
                    // A configuration choice known in a specialised kernel: only the taken
                    // branch runs. The other is walked muted, in the generic kernel's
                    // order, so that the generic and the specialised kernel meet the
                    // same slots and sites (they are numbered by the generic kernel's).
                    self.w.open_muted(true);
                    self.cache.push(HashMap::new());
                    self.val(args[0]);
                    if taken {
                        self.close();
                        let v = self.val(args[1]);
                        self.w.open_muted(true);
                        self.cache.push(HashMap::new());
                        self.val(args[2]);
                        self.close();
                        return v;
                    }
                    self.val(args[1]);
                    self.close();
                    return self.val(args[2]);
                }
                let c = self.val(args[0]);
                if self.ir.checks_at_run_time(args[1]) || self.ir.checks_at_run_time(args[2]) {
                    // A branch that reads through a gather: only the branch taken runs,
                    // so that the other reads nothing (and fails no check).
                    let name = self.name("v");
                    let ty = match node.ty {
                        crate::ir::Ty::Bool => "bool",
                        crate::ir::Ty::Num => "f32",
                    };
                    let comment = self.comment(n);
                    self.w.line(format!("var {name}: {ty}; {comment}"));
                    self.open(format!("if ({c})"));
                    let a = self.val(args[1]);
                    self.w.line(format!("{name} = {a};"));
                    self.close();
                    self.open("else");
                    let b = self.val(args[2]);
                    self.w.line(format!("{name} = {b};"));
                    self.close();
                    let d = self.depth();
                    self.cache[d].insert(n, name.clone());
                    return name;
                }
                let a = self.val(args[1]);
                let b = self.val(args[2]);
                format!("select({b}, {a}, {c})")
            }
            Op::Clamp => {
                let x = self.val(args[0]);
                let lo = self.val(args[1]);
                let hi = self.val(args[2]);
                format!("lc_clamp({x}, {lo}, {hi})")
            }
            Op::Reduce(..) => match self.sched.hoisted_index(n) {
                Some(k) => self.table_read(k, n),
                None => return self.inline_reduce(n),
            },
        };
        // A read's value is already unknown to the shader compiler; anything computed,
        // or known once the kernel is specialised (an index value), is hidden.
        let computed = !matches!(node.op, Op::Read(..) | Op::Reduce(..));
        let expr = if computed && node.ty == Ty::Num {
            opaque(&expr)
        } else {
            expr
        };
        let name = self.name("v");
        let comment = self.comment(n);
        self.w.line(format!("let {name} = {expr}; {comment}"));
        let d = self.depth();
        self.cache[d].insert(n, name.clone());
        name
    }
}
