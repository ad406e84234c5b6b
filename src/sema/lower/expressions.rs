//! Expressions: operators, calls, reductions and names (lets expanded where they are
//! used), each lowered to graph nodes with its type and free indices.

use std::collections::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::values::quoted;
use super::{Ctx, Decl, Lowered, Lowerer, MAX_LET_DEPTH, Scope};
use crate::diagnostics::{Diagnostic, Span, closest};
use crate::ir::*;
use crate::syntax::ast::{self, BinOp, ExprKind, Ident, UnOp};

impl Lowerer<'_> {
    /// Adds a node; its free indices are its operands' and its subscripts', less those
    /// a reduction binds.
    pub(super) fn node(&mut self, op: Op, ty: Ty, args: &[NodeIndex], span: Span) -> NodeIndex {
        let free = free_indices(&self.graph, &op, args);
        add_node(&mut self.graph, Node { op, ty, free, span }, args)
    }

    /// Lowers `e` and checks that it has type `want`.
    pub(super) fn typed(
        &mut self,
        e: &ast::Expr,
        scope: &mut Scope,
        ctx: Ctx,
        want: Ty,
    ) -> Lowered {
        let n = self.expr(e, scope, ctx)?;
        self.expect(n, want, e.span)
    }

    /// Reports a node of the wrong type, with a hint at the conversion.
    fn expect(&mut self, n: NodeIndex, want: Ty, span: Span) -> Lowered {
        let got = self.graph[n].ty;
        if got != want {
            let hint = match want {
                Ty::Bool => {
                    "a condition is a comparison, `isnan(...)`, `all(...)`, `any(...)` or `&&`/`||` of those"
                }
                Ty::Num => "turn a condition into a number with `select(cond, 1, 0)`",
            };
            self.diags.push(
                Diagnostic::error(
                    format!("expected a {want}, found a {got}"),
                    span,
                    format!("this is a {got}"),
                )
                .with_note(hint),
            );
            return Err(());
        }
        Ok(n)
    }

    /// Lowers any expression.
    pub(super) fn expr(&mut self, e: &ast::Expr, scope: &mut Scope, ctx: Ctx) -> Lowered {
        self.enter(e.span)?;
        let lowered = match &e.kind {
            ExprKind::Number(v) => Ok(self.node(Op::constant(*v as f32), Ty::Num, &[], e.span)),
            ExprKind::Str(_) => {
                self.error(
                    "a string can only be compared with an enum param",
                    e.span,
                    "unexpected string",
                );
                Err(())
            }
            ExprKind::Name(n) => self.name(n, scope, ctx),
            ExprKind::Access(n, args) => self.access(n, args, scope, ctx, e.span),
            ExprKind::Unary(op, a) => {
                let (f, ty) = match op {
                    UnOp::Neg => (UnaryFn::Neg, Ty::Num),
                    UnOp::Not => (UnaryFn::Not, Ty::Bool),
                };
                let a = self.typed(a, scope, ctx, ty)?;
                Ok(self.node(Op::Unary(f), ty, &[a], e.span))
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, scope, ctx, e.span),
            ExprKind::Call(f, args) => self.call(f, args, scope, ctx, e.span),
            ExprKind::Reduction(f, count, binders, body) => {
                self.reduction(f, count.as_deref(), binders, body, scope, ctx, e.span)
            }
        };
        self.depth -= 1;
        lowered
    }

    /// An operator; `==` and `!=` against a string compare an enum param.
    fn binary(
        &mut self,
        op: BinOp,
        a: &ast::Expr,
        b: &ast::Expr,
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        if matches!(op, BinOp::Eq | BinOp::Ne)
            && let Some(n) = self.enum_compare(op, a, b, span)?
        {
            return Ok(n);
        }
        let (f, arg_ty, ty) = match op {
            BinOp::Add => (BinaryFn::Add, Ty::Num, Ty::Num),
            BinOp::Sub => (BinaryFn::Sub, Ty::Num, Ty::Num),
            BinOp::Mul => (BinaryFn::Mul, Ty::Num, Ty::Num),
            BinOp::Div => (BinaryFn::Div, Ty::Num, Ty::Num),
            BinOp::Pow => (BinaryFn::Pow, Ty::Num, Ty::Num),
            BinOp::Eq => (BinaryFn::Eq, Ty::Num, Ty::Bool),
            BinOp::Ne => (BinaryFn::Ne, Ty::Num, Ty::Bool),
            BinOp::Lt => (BinaryFn::Lt, Ty::Num, Ty::Bool),
            BinOp::Le => (BinaryFn::Le, Ty::Num, Ty::Bool),
            BinOp::Gt => (BinaryFn::Gt, Ty::Num, Ty::Bool),
            BinOp::Ge => (BinaryFn::Ge, Ty::Num, Ty::Bool),
            BinOp::And => (BinaryFn::And, Ty::Bool, Ty::Bool),
            BinOp::Or => (BinaryFn::Or, Ty::Bool, Ty::Bool),
        };
        let x = self.typed(a, scope, ctx, arg_ty);
        let y = self.typed(b, scope, ctx, arg_ty);
        Ok(self.node(Op::Binary(f), ty, &[x?, y?], span))
    }

    /// `param == "value"` for enum params; `None` when neither side is an enum param.
    fn enum_compare(
        &mut self,
        op: BinOp,
        a: &ast::Expr,
        b: &ast::Expr,
        span: Span,
    ) -> Result<Option<NodeIndex>, ()> {
        let as_enum = |l: &Self, e: &ast::Expr| match &e.kind {
            ExprKind::Name(n) => match l.decls.get(&n.name) {
                Some((Decl::Param(p), _)) => match &l.params[*p].kind {
                    ParamKind::Enum(variants) => Some((*p, variants.clone())),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        let ((p, variants), other) = match (as_enum(self, a), as_enum(self, b)) {
            (Some(p), _) => (p, b),
            (_, Some(p)) => (p, a),
            _ => return Ok(None),
        };
        let ExprKind::Str(s) = &other.kind else {
            self.error(
                format!(
                    "enum param `{}` can only be compared with a string",
                    self.params[p].name
                ),
                other.span,
                format!("expected one of {}", quoted(&variants)),
            );
            return Err(());
        };
        if !variants.contains(s) {
            self.error(
                format!("\"{s}\" is not a value of `{}`", self.params[p].name),
                other.span,
                format!("expected one of {}", quoted(&variants)),
            );
            return Err(());
        }
        let n = self.node(Op::EnumIs(p, s.clone()), Ty::Bool, &[], span);
        Ok(Some(if op == BinOp::Ne {
            self.node(Op::Unary(UnaryFn::Not), Ty::Bool, &[n], span)
        } else {
            n
        }))
    }

    /// A call of a built-in function, checked for arity.
    fn call(
        &mut self,
        f: &Ident,
        args: &[ast::Expr],
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        let unary = UnaryFn::from_name(&f.name).map(|op| {
            let ty = if op == UnaryFn::IsNan {
                Ty::Bool
            } else {
                Ty::Num
            };
            (op, ty)
        });
        let binary = BinaryFn::from_name(&f.name);
        let arity = match f.name.as_str() {
            _ if unary.is_some() => 1,
            _ if binary.is_some() => 2,
            "select" | "clamp" => 3,
            name if ReduceFn::from_name(name).is_some() || name == "logsumexp" => {
                self.diags.push(
                    Diagnostic::error(
                        format!("`{name}` is a reduction and binds indices"),
                        f.span,
                        "no indices bound",
                    )
                    .with_note(format!(
                        "write `{name}(i, j: EXPR)` to reduce EXPR over i and j"
                    )),
                );
                return Err(());
            }
            name => {
                let known: Vec<&str> = UnaryFn::NAMED
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(BinaryFn::NAMED.iter().map(|(n, _)| *n))
                    .chain(["select", "clamp"])
                    .collect();
                let mut d = Diagnostic::error(
                    format!("unknown function `{name}`"),
                    f.span,
                    "not a function",
                );
                if let Some(c) = closest(name, known.iter().copied()) {
                    d = d.with_note(format!("did you mean `{c}`?"));
                } else {
                    d = d.with_note(format!("the functions are {}", known.join(", ")));
                }
                self.diags.push(d);
                return Err(());
            }
        };
        if args.len() != arity {
            self.error(
                format!(
                    "`{}` takes {arity} argument{}, found {}",
                    f.name,
                    if arity == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
                "wrong number of arguments",
            );
            return Err(());
        }
        if let Some((op, ty)) = unary {
            let a = self.typed(&args[0], scope, ctx, Ty::Num)?;
            return Ok(self.node(Op::Unary(op), ty, &[a], span));
        }
        if let Some(op) = binary {
            let a = self.typed(&args[0], scope, ctx, Ty::Num);
            let b = self.typed(&args[1], scope, ctx, Ty::Num);
            return Ok(self.node(Op::Binary(op), Ty::Num, &[a?, b?], span));
        }
        match f.name.as_str() {
            "clamp" => {
                let x = self.typed(&args[0], scope, ctx, Ty::Num);
                let lo = self.typed(&args[1], scope, ctx, Ty::Num);
                let hi = self.typed(&args[2], scope, ctx, Ty::Num);
                Ok(self.node(Op::Clamp, Ty::Num, &[x?, lo?, hi?], span))
            }
            _ => {
                let c = self.typed(&args[0], scope, ctx, Ty::Bool);
                let a = self.expr(&args[1], scope, ctx)?;
                let ty = self.graph[a].ty;
                let b = self.typed(&args[2], scope, ctx, ty);
                Ok(self.node(Op::Select, ty, &[c?, a, b?], span))
            }
        }
    }

    /// A reduction: binds its indices (with their explicit ranges) around its body.
    #[allow(clippy::too_many_arguments)]
    fn reduction(
        &mut self,
        f: &Ident,
        count: Option<&ast::Expr>,
        binders: &[ast::Binder],
        body: &ast::Expr,
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        let kind = match f.name.as_str() {
            // Lowered below to a max and a sum (see `log_sum_exp`).
            "logsumexp" => Some(ReduceFn::Max),
            // Lowered below through the k-th largest value (see `sum_top`).
            "sum_top" | "mean_top" => Some(ReduceFn::NthLargest),
            name => ReduceFn::from_name(name),
        };
        let top = kind == Some(ReduceFn::NthLargest);
        if top && count.is_none() {
            self.error(
                format!("`{}` takes a count first", f.name),
                f.span,
                format!(
                    "write `{}(n, {}: ...)`",
                    f.name,
                    binders.first().map_or("i", |b| b.name.name.as_str())
                ),
            );
            return Err(());
        }
        let count = count.map(|c| self.top_count(c));
        let Some(kind) = kind else {
            let known: Vec<&str> = ReduceFn::NAMES
                .iter()
                .map(|(n, _)| *n)
                .chain(["logsumexp", "sum_top", "mean_top"])
                .collect();
            let mut d = Diagnostic::error(
                format!("unknown reduction `{}`", f.name),
                f.span,
                "not a reduction",
            );
            if let Some(c) = closest(&f.name, known.iter().copied()) {
                d = d.with_note(format!("did you mean `{c}`?"));
            } else {
                d = d.with_note(format!("the reductions are {}", known.join(", ")));
            }
            self.diags.push(d);
            return Err(());
        };
        let depth = scope.len();
        let mut bound = Vec::new();
        let mut names: HashMap<&str, Span> = HashMap::new();
        for b in binders {
            if let Some(first) = names.insert(&b.name.name, b.name.span) {
                self.diags.push(
                    Diagnostic::error(
                        format!("index `{}` is bound twice", b.name.name),
                        b.name.span,
                        "again here",
                    )
                    .with_secondary(first, "first here"),
                );
            }
            if self.decls.contains_key(&b.name.name) {
                self.error(
                    format!(
                        "`{}` is already declared and cannot name an index",
                        b.name.name
                    ),
                    b.name.span,
                    "choose another index name",
                );
            }
            let explicit = match &b.range {
                Some((lo, hi)) => match (
                    self.recover(lo.span, |l| l.dim_expr(lo, false)),
                    self.recover(hi.span, |l| l.dim_expr(hi, false)),
                ) {
                    (Some(lo), Some(hi)) => Some((lo, hi)),
                    _ => None,
                },
                None => None,
            };
            let id = self.indices.push_and_get_key(IndexVar {
                name: b.name.name.clone(),
                span: b.name.span,
                explicit,
                range: None,
            });
            scope.push((b.name.name.clone(), IndexExpr::var(id)));
            bound.push(id);
        }
        let want = if matches!(kind, ReduceFn::All | ReduceFn::Any) {
            Ty::Bool
        } else {
            Ty::Num
        };
        let result = self.typed(body, scope, ctx, want);
        scope.truncate(depth);
        let body = result?;
        if f.name == "logsumexp" {
            return Ok(self.log_sum_exp(bound, body, span));
        }
        if let Some(count) = count {
            return Ok(self.sum_top(f.name == "mean_top", count?, bound, body, span));
        }
        Ok(self.node(Op::Reduce(kind, bound), want, &[body], span))
    }

    /// The count of `sum_top(n, i: e)`: a closed number of literals, scalar params and
    /// dimensions, so that it is known, and checked whole and ≥ 0, when the loss is
    /// bound (before anything runs).
    fn top_count(&mut self, c: &ast::Expr) -> Result<NodeIndex, ()> {
        // Data and indices, named as such (not as a closed context's free index).
        let mut misuse = None;
        c.walk(&mut |e| {
            if let ExprKind::Name(n) | ExprKind::Access(n, _) = &e.kind {
                let what = match self.decls.get(&n.name) {
                    Some((Decl::Input(_), _)) => Some("an input"),
                    Some((Decl::Param(p), _))
                        if matches!(
                            self.params[*p].kind,
                            ParamKind::Tensor(_) | ParamKind::Index(_)
                        ) =>
                    {
                        Some("a tensor param")
                    }
                    None => Some("an index"),
                    _ => None,
                };
                if let Some(what) = what {
                    misuse.get_or_insert((n.clone(), what));
                }
            }
        });
        if let Some((n, what)) = misuse {
            self.error(
                "a count of `sum_top` or `mean_top` is built from numbers, scalar params and dimensions",
                n.span,
                format!("`{}` is {what}", n.name),
            );
            return Err(());
        }
        let n = self.typed(c, &mut Vec::new(), Ctx::Closed, Ty::Num)?;
        let mut stack = vec![n];
        while let Some(m) = stack.pop() {
            let node = &self.graph[m];
            let fits = match &node.op {
                Op::Read(Tensor::Param(_), idx) => idx.is_empty(),
                Op::IndexValue(e) => e.terms.is_empty(),
                Op::Read(..) | Op::Reduce(..) | Op::At(_) => false,
                _ => true,
            };
            if !fits {
                let at = node.span;
                self.error(
                    "a count of `sum_top` or `mean_top` is built from numbers, scalar params and dimensions",
                    at,
                    "not known before the loss runs",
                );
                return Err(());
            }
            stack.extend(operands(&self.graph, m));
        }
        Ok(n)
    }

    /// `sum_top(n, i: e)`, the sum of the n largest values of `e` over `i` (all of them
    /// when n is larger; NaN counts as the largest): with `t` the k-th largest value,
    /// k = min(n, count), the values above `t` and `k − c` copies of `t`, where `c`
    /// values are above it. So ties do not change the value, and the cost is linear in
    /// the count (the k-th largest is found by bisection, `ReduceFn::NthLargest`).
    /// `mean_top` divides by k (NaN for k = 0). The gradient follows: 1 (or 1/k) for
    /// each value above `t`, and `k − c` shared evenly among the values equal to `t`
    /// (the k-th largest's derivative is the max's).
    fn sum_top(
        &mut self,
        mean: bool,
        n: NodeIndex,
        bound: Vec<IndexId>,
        body: NodeIndex,
        span: Span,
    ) -> NodeIndex {
        let num = |l: &mut Self, v: f32| l.node(Op::Const(v.to_bits()), Ty::Num, &[], span);
        let t = self.node(
            Op::Reduce(ReduceFn::NthLargest, bound.clone()),
            Ty::Num,
            &[body, n],
            span,
        );
        let sum = |l: &mut Self, x: NodeIndex| {
            l.node(
                Op::Reduce(ReduceFn::Sum, bound.clone()),
                Ty::Num,
                &[x],
                span,
            )
        };
        // Above `t` in the ranking: larger, or NaN where `t` is not (values equal to `t`,
        // -0 and +0 alike, are its ties).
        let nan = self.node(Op::Unary(UnaryFn::IsNan), Ty::Bool, &[body], span);
        let t_nan = self.node(Op::Unary(UnaryFn::IsNan), Ty::Bool, &[t], span);
        let t_num = self.node(Op::Unary(UnaryFn::Not), Ty::Bool, &[t_nan], span);
        let nan_above = self.node(Op::Binary(BinaryFn::And), Ty::Bool, &[nan, t_num], span);
        let gt = self.node(Op::Binary(BinaryFn::Gt), Ty::Bool, &[body, t], span);
        let above = self.node(Op::Binary(BinaryFn::Or), Ty::Bool, &[nan_above, gt], span);
        let (zero, one) = (num(self, 0.0), num(self, 1.0));
        let flag = self.node(Op::Select, Ty::Num, &[above, one, zero], span);
        let c = sum(self, flag);
        let kept = self.node(Op::Select, Ty::Num, &[above, body, zero], span);
        let s = sum(self, kept);
        let all = sum(self, one);
        let k = self.node(Op::Binary(BinaryFn::Min), Ty::Num, &[n, all], span);
        let m = self.node(Op::Binary(BinaryFn::Sub), Ty::Num, &[k, c], span);
        let some = self.node(Op::Binary(BinaryFn::Gt), Ty::Bool, &[m, zero], span);
        let mt = self.node(Op::Binary(BinaryFn::Mul), Ty::Num, &[m, t], span);
        let tied = self.node(Op::Select, Ty::Num, &[some, mt, zero], span);
        let total = self.node(Op::Binary(BinaryFn::Add), Ty::Num, &[s, tied], span);
        if mean {
            self.node(Op::Binary(BinaryFn::Div), Ty::Num, &[total, k], span)
        } else {
            total
        }
    }

    /// `logsumexp(i: e)` as torch.logsumexp computes it: `m = max(i: e)`, shifted by
    /// `s = m` unless m is infinite (then 0), `log(sum(i: exp(e - s))) + s`. NaN
    /// propagates (through the max); over nothing, or over -inf only, it is -inf; a +inf
    /// element gives +inf. Two reductions over the same body, which the IR shares.
    fn log_sum_exp(&mut self, bound: Vec<IndexId>, body: NodeIndex, span: Span) -> NodeIndex {
        let num = |l: &mut Self, v: f32| l.node(Op::Const(v.to_bits()), Ty::Num, &[], span);
        let m = self.node(
            Op::Reduce(ReduceFn::Max, bound.clone()),
            Ty::Num,
            &[body],
            span,
        );
        let abs = self.node(Op::Unary(UnaryFn::Abs), Ty::Num, &[m], span);
        let inf = num(self, f32::INFINITY);
        let infinite = self.node(Op::Binary(BinaryFn::Eq), Ty::Bool, &[abs, inf], span);
        let zero = num(self, 0.0);
        let shift = self.node(Op::Select, Ty::Num, &[infinite, zero, m], span);
        let d = self.node(Op::Binary(BinaryFn::Sub), Ty::Num, &[body, shift], span);
        let e = self.node(Op::Unary(UnaryFn::Exp), Ty::Num, &[d], span);
        let t = self.node(Op::Reduce(ReduceFn::Sum, bound), Ty::Num, &[e], span);
        let l = self.node(Op::Unary(UnaryFn::Log), Ty::Num, &[t], span);
        self.node(Op::Binary(BinaryFn::Add), Ty::Num, &[l, shift], span)
    }

    /// A bare name: a bound index, a plain let, a scalar param or input, a dimension
    /// or a domain index.
    fn name(&mut self, n: &Ident, scope: &mut Scope, ctx: Ctx) -> Lowered {
        if let Some((_, e)) = scope.iter().rev().find(|(s, _)| *s == n.name) {
            let e = e.clone();
            return Ok(self.node(Op::IndexValue(e), Ty::Num, &[], n.span));
        }
        match self.decls.get(&n.name).copied() {
            Some((Decl::Let(i), _)) => {
                let l = &self.def.lets[i];
                if let Some(idx) = &l.indices {
                    self.error(
                        format!(
                            "`{}` is an indexed let and needs {} indices",
                            n.name,
                            idx.len()
                        ),
                        n.span,
                        format!(
                            "write `{}[{}]`",
                            n.name,
                            idx.iter()
                                .map(|i| i.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    return Err(());
                }
                let key = (i, scope.clone(), ctx);
                if let Some(n) = self.let_memo.get(&key) {
                    return Ok(*n);
                }
                let r = self.expand_let(i, n.span, |l, i| {
                    let body = &l.def.lets[i].body;
                    l.expr(body, scope, ctx)
                })?;
                self.let_memo.insert(key, r);
                Ok(r)
            }
            Some((Decl::Param(p), _)) => match &self.params[p].kind {
                ParamKind::Scalar => {
                    Ok(self.node(Op::Read(Tensor::Param(p), vec![]), Ty::Num, &[], n.span))
                }
                ParamKind::Enum(v) => {
                    let v = quoted(v);
                    self.error(
                        format!("enum param `{}` is not a number", n.name),
                        n.span,
                        format!("compare it with one of {v}"),
                    );
                    Err(())
                }
                ParamKind::Tensor(s) | ParamKind::Index(s) if !s.is_empty() => {
                    let rank = s.len();
                    self.rank_error(&n.name, rank, 0, n.span);
                    Err(())
                }
                _ => Ok(self.node(Op::Read(Tensor::Param(p), vec![]), Ty::Num, &[], n.span)),
            },
            Some((Decl::Input(i), _)) => {
                let rank = self.inputs[i].shape.len();
                if rank == 0 {
                    return self.read_input(i, vec![], n.span);
                }
                self.rank_error(&n.name, rank, 0, n.span);
                Err(())
            }
            Some((Decl::Dim(d), _)) => Ok(self.node(
                Op::IndexValue(IndexExpr::poly(Poly::sym(d))),
                Ty::Num,
                &[],
                n.span,
            )),
            None => {
                let v = self.domain_index(n, ctx)?;
                Ok(self.node(Op::IndexValue(IndexExpr::var(v)), Ty::Num, &[], n.span))
            }
        }
    }

    /// Expands let `i` with `f`, reporting recursion and chains too deep.
    pub(super) fn expand_let(
        &mut self,
        i: usize,
        span: Span,
        f: impl FnOnce(&mut Self, usize) -> Lowered,
    ) -> Lowered {
        if self.expanding.len() >= MAX_LET_DEPTH {
            self.diags.push(
                Diagnostic::error(
                    format!("lets refer to lets more than {MAX_LET_DEPTH} deep"),
                    span,
                    "too deep here",
                )
                .with_note("shorten the chain of `let`s"),
            );
            return Err(());
        }
        if self.expanding.contains(&i) {
            let name = self.def.lets[i].name.name.clone();
            self.diags.push(
                Diagnostic::error(
                    format!("`{name}` is defined in terms of itself"),
                    span,
                    "used here",
                )
                .with_secondary(self.def.lets[i].span, "defined here"),
            );
            return Err(());
        }
        self.expanding.push(i);
        let r = f(self, i);
        self.expanding.pop();
        r
    }

    /// The domain index called `n`, created on first use.
    pub(super) fn domain_index(&mut self, n: &Ident, ctx: Ctx) -> Result<IndexId, ()> {
        if ctx == Ctx::Domain && self.subscript_names.contains(&n.name) {
            if let Some(v) = self.domain_by_name.get(&n.name) {
                return Ok(*v);
            }
            let v = self.indices.push_and_get_key(IndexVar {
                name: n.name.clone(),
                span: n.span,
                explicit: None,
                range: None,
            });
            self.domain_by_name.insert(n.name.clone(), v);
            return Ok(v);
        }
        if ctx == Ctx::Closed
            && (self.subscript_names.contains(&n.name) || self.domain_by_name.contains_key(&n.name))
        {
            self.error(
                format!("index `{}` is not bound here", n.name),
                n.span,
                "no free indices allowed here",
            );
            if let Some(d) = self.diags.last_mut() {
                d.notes.push("`weight`, `empty:` and indexed `let` bodies are closed: bind indices with a reduction or a let parameter".into());
            }
            return Err(());
        }
        let mut names: Vec<&str> = self.decls.keys().map(String::as_str).collect();
        names.extend(self.domain_by_name.keys().map(String::as_str));
        names.sort_unstable();
        let mut d = Diagnostic::error(format!("unknown name `{}`", n.name), n.span, "not declared");
        if let Some(c) = closest(&n.name, names) {
            d = d.with_note(format!("did you mean `{c}`?"));
        }
        d = d.with_note("declare it with `input`, `param` or `let`; an index must be used in a subscript like `x[i]`");
        self.diags.push(d);
        Err(())
    }
}
