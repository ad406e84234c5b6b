//! Subscripts: indexed reads of inputs, params and indexed lets, and the affine index
//! expressions inside the brackets, gathers through `index` params included.

use super::{Ctx, Decl, Lowered, Lowerer, MAX_LET_DEPTH, MAX_LITERAL, Scope};
use crate::diagnostics::{Diagnostic, Span, closest};
use crate::ir::sites::gathered;
use crate::ir::*;
use crate::syntax::ast::{self, BinOp, ExprKind, Ident, UnOp};

/// What a name followed by `[...]` reads.
#[derive(Clone, Copy)]
enum Indexed {
    Input(InputId),
    Param(ParamId),
    Let(usize),
}

impl Lowerer<'_> {
    /// Reports a read with the wrong number of indices.
    pub(super) fn rank_error(&mut self, name: &str, rank: usize, given: usize, span: Span) {
        self.error(
            format!(
                "`{name}` has {rank} dimension{}, but {given} ind{} given",
                if rank == 1 { "" } else { "s" },
                if given == 1 { "ex is" } else { "ices are" }
            ),
            span,
            format!(
                "expected {rank} ind{}",
                if rank == 1 { "ex" } else { "ices" }
            ),
        );
    }

    /// Reads input `i`, noting an optional input's read for the stage checks.
    pub(super) fn read_input(&mut self, i: InputId, idx: Vec<IndexExpr>, span: Span) -> Lowered {
        self.note_read(i, span);
        Ok(self.node(Op::Read(Tensor::Input(i), idx), Ty::Num, &[], span))
    }

    /// Notes a read of input `i` (a value or a gather) for the stage checks when it may
    /// be absent (one with a default is always bound, so it may be read anywhere).
    fn note_read(&mut self, i: InputId, span: Span) {
        if self.inputs[i].optional && self.inputs[i].default.is_none() {
            self.optional_reads.push((i, span));
        }
    }

    /// `n[args]`: a read of an input or tensor param, or an indexed let expanded at
    /// these indices.
    pub(super) fn access(
        &mut self,
        n: &Ident,
        args: &[ast::Expr],
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        let (target, rank) = match self.decls.get(&n.name).copied() {
            Some((Decl::Input(i), _)) => (Indexed::Input(i), self.inputs[i].shape.len()),
            Some((Decl::Param(p), _)) => (
                Indexed::Param(p),
                match &self.params[p].kind {
                    ParamKind::Tensor(s) | ParamKind::Index(s) => s.len(),
                    _ => 0,
                },
            ),
            Some((Decl::Let(i), _)) => (
                Indexed::Let(i),
                self.def.lets[i].indices.as_ref().map_or(0, Vec::len),
            ),
            Some((Decl::Dim(_), _)) => {
                self.error(
                    format!("`{}` is a dimension, not a tensor", n.name),
                    n.span,
                    "cannot be indexed",
                );
                return Err(());
            }
            None if scope.iter().any(|(s, _)| *s == n.name)
                || self.subscript_names.contains(&n.name) =>
            {
                self.error(
                    format!("`{}` is an index, not a tensor", n.name),
                    n.span,
                    "cannot be indexed",
                );
                return Err(());
            }
            None => {
                let names: Vec<&str> = self.decls.keys().map(String::as_str).collect();
                let mut d = Diagnostic::error(
                    format!("unknown tensor `{}`", n.name),
                    n.span,
                    "not declared",
                );
                if let Some(c) = closest(&n.name, names) {
                    d = d.with_note(format!("did you mean `{c}`?"));
                }
                self.diags.push(d);
                return Err(());
            }
        };
        if rank != args.len() {
            self.rank_error(&n.name, rank, args.len(), span);
            return Err(());
        }
        let mut idx = Vec::new();
        let mut ok = true;
        for a in args {
            match self.index_expr(a, scope, ctx) {
                Ok(e) => idx.push(e),
                Err(()) => ok = false,
            }
        }
        if !ok {
            return Err(());
        }
        match target {
            Indexed::Input(i) => {
                self.constant_subscripts(Tensor::Input(i), &idx, args)?;
                self.read_input(i, idx, span)
            }
            Indexed::Param(p) => {
                if matches!(self.params[p].kind, ParamKind::Scalar | ParamKind::Enum(_)) {
                    self.error(
                        format!("`{}` is a scalar param and cannot be indexed", n.name),
                        n.span,
                        "not a tensor",
                    );
                    return Err(());
                }
                self.constant_subscripts(Tensor::Param(p), &idx, args)?;
                Ok(self.node(Op::Read(Tensor::Param(p), idx), Ty::Num, &[], span))
            }
            Indexed::Let(i) => {
                let Some(params) = self.def.lets[i].indices.clone() else {
                    self.error(
                        format!("`{}` is a plain let and cannot be indexed", n.name),
                        n.span,
                        "not indexed",
                    );
                    return Err(());
                };
                self.expand_let(i, span, |l, i| {
                    // An indexed let sees only its own parameters, bound to the use site's
                    // index expressions.
                    let mut inner: Scope = params.iter().map(|p| p.name.clone()).zip(idx).collect();
                    let body = &l.def.lets[i].body;
                    l.expr(body, &mut inner, Ctx::Closed)
                })
            }
        }
    }

    /// An affine index expression.
    fn index_expr(&mut self, e: &ast::Expr, scope: &mut Scope, ctx: Ctx) -> Result<IndexExpr, ()> {
        self.enter(e.span)?;
        let lowered = self.index_expr_here(e, scope, ctx);
        self.depth -= 1;
        lowered
    }

    fn index_expr_here(
        &mut self,
        e: &ast::Expr,
        scope: &mut Scope,
        ctx: Ctx,
    ) -> Result<IndexExpr, ()> {
        match &e.kind {
            ExprKind::Number(v) => {
                if v.fract() != 0.0 {
                    self.error(
                        "an index must be a whole number",
                        e.span,
                        "not a whole number",
                    );
                    return Err(());
                }
                if v.abs() > MAX_LITERAL as f64 {
                    self.error("an index must be below 10^15", e.span, "too large");
                    return Err(());
                }
                Ok(IndexExpr::poly(Poly::constant(*v as i64)))
            }
            ExprKind::Name(n) => self.index_name(n, scope, ctx),
            ExprKind::Access(n, args) => self.gather(n, args, scope, ctx, e.span),
            ExprKind::Unary(UnOp::Neg, a) => Ok(self.index_expr(a, scope, ctx)?.scale(-1)),
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) => {
                let a = self.index_expr(a, scope, ctx);
                let b = self.index_expr(b, scope, ctx);
                let sum = a?.add_scaled(&b?, if *op == BinOp::Add { 1 } else { -1 });
                self.bounded_index(sum, e.span)
            }
            ExprKind::Binary(BinOp::Mul, a, b) => {
                let (x, y) = (
                    self.index_expr(a, scope, ctx)?,
                    self.index_expr(b, scope, ctx)?,
                );
                let product = self.index_product(x, y, e.span)?;
                self.bounded_index(product, e.span)
            }
            ExprKind::Binary(BinOp::Div, a, b) => {
                let (x, y) = (
                    self.index_expr(a, scope, ctx)?,
                    self.index_expr(b, scope, ctx)?,
                );
                self.index_quotient(x, y, e.span)
            }
            _ => {
                self.diags.push(
                    Diagnostic::error("this cannot be used as an index", e.span, "not an index expression")
                        .with_note("a subscript is an affine expression of indices, dimensions, whole numbers and `index` params"),
                );
                Err(())
            }
        }
    }

    /// A name in a subscript: a bound index, a dimension, a plain let expanded in place,
    /// or a domain index.
    fn index_name(&mut self, n: &Ident, scope: &mut Scope, ctx: Ctx) -> Result<IndexExpr, ()> {
        if let Some((_, x)) = scope.iter().rev().find(|(s, _)| *s == n.name) {
            return Ok(x.clone());
        }
        match self.decls.get(&n.name).copied() {
            Some((Decl::Dim(d), _)) => Ok(IndexExpr::poly(Poly::sym(d))),
            Some((Decl::Let(i), _)) if self.def.lets[i].indices.is_none() => {
                if self.expanding.len() >= MAX_LET_DEPTH || self.expanding.contains(&i) {
                    self.error(
                        format!("`{}` is defined in terms of itself, or too deeply", n.name),
                        n.span,
                        "used here",
                    );
                    return Err(());
                }
                self.expanding.push(i);
                let body = &self.def.lets[i].body;
                let r = self.index_expr(body, scope, ctx);
                self.expanding.pop();
                r
            }
            Some(_) => {
                self.error(
                    format!("`{}` cannot be used in a subscript", n.name),
                    n.span,
                    "subscripts are built from indices, dimensions, whole numbers, `index` params and `int` inputs",
                );
                Err(())
            }
            None => Ok(IndexExpr::var(self.domain_index(n, ctx)?)),
        }
    }

    /// `p[args]` inside a subscript: a gather through the `index` param `p`.
    fn gather(
        &mut self,
        n: &Ident,
        args: &[ast::Expr],
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Result<IndexExpr, ()> {
        let gathered = match self.decls.get(&n.name) {
            Some((Decl::Param(p), _)) => match &self.params[*p].kind {
                ParamKind::Index(shape) => Some((Tensor::Param(*p), shape.len())),
                _ => None,
            },
            Some((Decl::Input(i), _)) if self.inputs[*i].int => {
                Some((Tensor::Input(*i), self.inputs[*i].shape.len()))
            }
            _ => None,
        };
        let Some((t, rank)) = gathered else {
            self.diags.push(
                Diagnostic::error(
                    format!("`{}` cannot be used in a subscript", n.name),
                    n.span,
                    "neither an `index` param nor an `int` input",
                )
                .with_note(
                    "gathers go through params declared `index[...]` or inputs declared `int[...]`",
                ),
            );
            return Err(());
        };
        if rank != args.len() {
            self.rank_error(&n.name, rank, args.len(), span);
            return Err(());
        }
        let idx = args
            .iter()
            .map(|a| self.index_expr(a, scope, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        self.constant_subscripts(t, &idx, args)?;
        if let Tensor::Input(i) = t {
            self.note_read(i, n.span);
        }
        Ok(IndexExpr::gather(t, idx))
    }

    /// Refuses a constant subscript outside a literal dimension (`x[5]` on `[3]`), or
    /// below 0 on any: no range can make it valid, so it is reported here, at the
    /// subscript, rather than when the arrays are bound. A let's parameter is replaced by
    /// the use site's subscript, so `a[5]` of `let a[m] = x[m]` is caught at `m`.
    fn constant_subscripts(
        &mut self,
        t: Tensor,
        idx: &[IndexExpr],
        args: &[ast::Expr],
    ) -> Result<(), ()> {
        let def = self.def;
        let (name, shape, declared): (&str, &[Poly], Option<&[ast::Expr]>) = match t {
            Tensor::Input(i) => {
                let info = &self.inputs[i];
                let decl = def.inputs.iter().find(|d| d.name.name == info.name);
                (&info.name, &info.shape, decl.map(|d| &d.shape[..]))
            }
            Tensor::Param(p) => {
                let info = &self.params[p];
                let (ParamKind::Tensor(shape) | ParamKind::Index(shape)) = &info.kind else {
                    return Ok(());
                };
                let decl = def.params.iter().find(|d| d.name.name == info.name);
                let dims = decl.and_then(|d| match &d.ty {
                    ast::ParamType::Tensor(s) | ast::ParamType::Index(s) => Some(&s[..]),
                    _ => None,
                });
                (&info.name, shape, dims)
            }
        };
        let mut found = Vec::new();
        for (axis, ((e, dim), arg)) in idx.iter().zip(shape).zip(args).enumerate() {
            let Some(at) = e.terms.is_empty().then(|| e.offset.as_constant()).flatten() else {
                continue;
            };
            // A dimension rejected in its declaration stands as 0: a literal is trusted
            // only when it is positive (a real `[0]` axis is refused when bound).
            let size = dim.as_constant().filter(|d| *d > 0);
            if at >= 0 && size.is_none_or(|d| at < d) {
                continue;
            }
            let (what, label) = match size {
                Some(d) => (format!("(size {d})"), format!("not in 0..{d}")),
                None => (String::new(), "negative".to_string()),
            };
            let mut d = Diagnostic::error(
                format!("index {at} is out of range for axis {axis} of `{name}` {what}")
                    .trim_end()
                    .to_string(),
                arg.span,
                label,
            );
            if let Some(decl) = declared.and_then(|s| s.get(axis)) {
                d = d.with_secondary(decl.span, "declared here");
            }
            found.push(d);
        }
        let ok = found.is_empty();
        self.diags.extend(found);
        if ok { Ok(()) } else { Err(()) }
    }

    /// `x` when its coefficients stay below 10^15, as literals must: a product or sum of
    /// literals could otherwise reach the ends of `i64`, where the IR's arithmetic
    /// saturates and `(2 * big) * i - big * i` would no longer be `big * i`.
    fn bounded_index(&mut self, x: IndexExpr, span: Span) -> Result<IndexExpr, ()> {
        if x.largest_coefficient() > MAX_LITERAL {
            self.diags.push(
                Diagnostic::error("an index must be below 10^15", span, "too large")
                    .with_note("sums and products of whole numbers in a subscript are limited like the numbers themselves"),
            );
            return Err(());
        }
        Ok(x)
    }

    /// `x * y`, affine only when one side is free of indices. A size with dimension
    /// symbols may multiply index variables (`l * K`, a flattened axis read as two), but
    /// not a gather, whose values are known only when it is read.
    fn index_product(&mut self, x: IndexExpr, y: IndexExpr, span: Span) -> Result<IndexExpr, ()> {
        match (x.terms.is_empty(), y.terms.is_empty()) {
            (true, true) => Ok(IndexExpr::poly(x.offset.mul(&y.offset))),
            (true, false) | (false, true) => {
                let (k, v) = if x.terms.is_empty() { (x, y) } else { (y, x) };
                if k.offset.as_constant().is_none() && gathered(&v) {
                    self.diags.push(
                        Diagnostic::error(
                            "a gathered index may be multiplied only by a whole number, not by a size",
                            span,
                            "gathered index times a size",
                        )
                        .with_note("sizes may multiply index variables (`l * K + k`), whose ranges are checked before anything runs; a gathered value is known only when it is read"),
                    );
                    return Err(());
                }
                Ok(v.times(&k.offset))
            }
            (false, false) => {
                self.error(
                    "an index expression must be affine: indices cannot be multiplied together",
                    span,
                    "not affine",
                );
                Err(())
            }
        }
    }

    /// `x / y`, allowed only between index-free sizes that divide exactly.
    fn index_quotient(&mut self, x: IndexExpr, y: IndexExpr, span: Span) -> Result<IndexExpr, ()> {
        let divisor = y
            .offset
            .as_constant()
            .filter(|k| y.terms.is_empty() && *k > 0);
        let exact = divisor
            .filter(|_| x.terms.is_empty())
            .and_then(|k| x.offset.floor_div(k).filter(|q| q.scale(k) == x.offset));
        match exact {
            Some(q) => Ok(IndexExpr::poly(q)),
            None => {
                self.diags.push(
                    Diagnostic::error("division is not allowed on indices", span, "not affine")
                        .with_note("index expressions are affine; only dimensions that divide exactly may be divided"),
                );
                Err(())
            }
        }
    }
}
