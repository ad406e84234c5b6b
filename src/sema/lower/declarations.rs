//! Declarations: inputs, params (with their defaults and enum values), lets' index
//! lists, and the dimension symbols that shapes declare on first use.

use std::collections::{HashMap, HashSet};

use super::{Decl, Lowerer, MAX_LITERAL};
use crate::diagnostics::{Diagnostic, Span, closest};
use crate::ir::*;
use crate::syntax::ast::{self, BinOp, ExprKind, Ident, ParamType, UnOp, Value};

impl Lowerer<'_> {
    /// Declares a name; reports it and returns `false` when it is taken.
    fn declare(&mut self, name: &Ident, decl: Decl) -> bool {
        if let Some((_, first)) = self.decls.get(&name.name) {
            let first = *first;
            self.diags.push(
                Diagnostic::error(
                    format!("`{}` is declared twice", name.name),
                    name.span,
                    "declared again here",
                )
                .with_secondary(first, "first declared here"),
            );
            return false;
        }
        self.decls.insert(name.name.clone(), (decl, name.span));
        true
    }

    /// Declares every input, param and let of the loss, in that order.
    pub(super) fn declarations(&mut self) {
        let def = self.def;
        for input in &def.inputs {
            let shape = self.shape(&input.shape);
            let default = input.default.as_ref().map(|e| {
                match super::values::const_number(e) {
                    Ok(v) if input.int && !crate::ir::is_exact_int(v) => {
                        self.diags.push(
                            Diagnostic::error(
                                format!(
                                    "the default of `{}` is not a whole number",
                                    input.name.name
                                ),
                                e.span,
                                format!("{v} is not a whole number within ±2^24"),
                            )
                            .with_note("an `int` input holds whole numbers, stored exactly as f32"),
                        );
                        f32::NAN
                    }
                    Ok(v) => v as f32,
                    // (Still a default, so that its reads raise no second error.)
                    Err(d) => {
                        self.diags.push(d);
                        f32::NAN
                    }
                }
            });
            let id = self.inputs.next_key();
            if self.declare(&input.name, Decl::Input(id)) {
                self.inputs.push(InputInfo {
                    name: input.name.name.clone(),
                    shape,
                    int: input.int,
                    optional: input.optional,
                    default,
                    span: input.span,
                });
            }
        }
        for param in &def.params {
            let kind = match &param.ty {
                ParamType::Scalar => ParamKind::Scalar,
                ParamType::Tensor(s) => ParamKind::Tensor(self.shape(s)),
                ParamType::Index(s) => ParamKind::Index(self.shape(s)),
                ParamType::Enum(vs) => {
                    let mut seen = HashSet::new();
                    for (v, span) in vs {
                        if !seen.insert(v.clone()) {
                            self.error(
                                format!("enum value \"{v}\" is listed twice"),
                                *span,
                                "again here",
                            );
                        }
                    }
                    ParamKind::Enum(vs.iter().map(|(v, _)| v.clone()).collect())
                }
            };
            let default = param
                .default
                .as_ref()
                .and_then(|v| self.param_value(v, &kind));
            let id = self.params.next_key();
            if self.declare(&param.name, Decl::Param(id)) {
                self.params.push(ParamInfo {
                    name: param.name.name.clone(),
                    kind,
                    default,
                    span: param.span,
                });
            }
        }
        for (i, l) in def.lets.iter().enumerate() {
            self.declare(&l.name, Decl::Let(i));
            if let Some(idx) = &l.indices {
                let mut seen: HashMap<&str, Span> = HashMap::new();
                for ix in idx {
                    if let Some(first) = seen.insert(&ix.name, ix.span) {
                        self.diags.push(
                            Diagnostic::error(
                                format!("index `{}` is listed twice", ix.name),
                                ix.span,
                                "again here",
                            )
                            .with_secondary(first, "first here"),
                        );
                    }
                }
            }
        }
    }

    /// A shape's dimensions; names in them are dimension symbols, declared on first use.
    fn shape(&mut self, dims: &[ast::Expr]) -> Vec<Poly> {
        // A rejected dimension keeps its place, so that later subscripts are not also
        // reported as rank mismatches.
        dims.iter()
            .map(|d| match self.recover(d.span, |l| l.dim_expr(d, true)) {
                Some(p) if p.as_constant().is_some_and(|c| c < 0) => {
                    self.error("a dimension cannot be negative", d.span, "negative size");
                    Poly::constant(0)
                }
                Some(p) => p,
                None => Poly::constant(0),
            })
            .collect()
    }

    /// An integer expression over dimension symbols.
    pub(super) fn dim_expr(&mut self, e: &ast::Expr, declare: bool) -> Result<Poly, ()> {
        match &e.kind {
            ExprKind::Number(v) => {
                if v.fract() != 0.0 {
                    self.error(
                        "a dimension must be a whole number",
                        e.span,
                        "not a whole number",
                    );
                    return Err(());
                }
                if v.abs() > MAX_LITERAL as f64 {
                    self.error("a dimension must be below 10^15", e.span, "too large");
                    return Err(());
                }
                Ok(Poly::constant(*v as i64))
            }
            ExprKind::Name(n) => match self.decls.get(&n.name) {
                Some((Decl::Dim(d), _)) => Ok(Poly::sym(*d)),
                Some(_) => {
                    self.error(
                        format!("`{}` is not a dimension", n.name),
                        n.span,
                        "dimensions are names used in shapes, like `B` in `[B, K]`",
                    );
                    Err(())
                }
                None if declare => {
                    let d = self.dims.len();
                    self.dims.push(DimSym {
                        name: n.name.clone(),
                        span: n.span,
                    });
                    self.decls.insert(n.name.clone(), (Decl::Dim(d), n.span));
                    Ok(Poly::sym(d))
                }
                None => {
                    let names: Vec<String> = self.dims.iter().map(|d| d.name.clone()).collect();
                    let mut d = Diagnostic::error(
                        format!("unknown dimension `{}`", n.name),
                        n.span,
                        "not declared in any shape",
                    );
                    if let Some(c) = closest(&n.name, names.iter().map(String::as_str)) {
                        d = d.with_note(format!("did you mean `{c}`?"));
                    }
                    self.diags.push(d);
                    Err(())
                }
            },
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul), a, b) => {
                let (a, b) = (self.dim_expr(a, declare)?, self.dim_expr(b, declare)?);
                let p = match op {
                    BinOp::Add => a.add(&b),
                    BinOp::Sub => a.sub(&b),
                    _ => a.mul(&b),
                };
                // As for literals: far from the ends of `i64`, where `Poly` saturates.
                if p.terms.values().any(|c| c.saturating_abs() > MAX_LITERAL) {
                    self.diags.push(
                        Diagnostic::error("a dimension must be below 10^15", e.span, "too large")
                            .with_note("sums and products of whole numbers in a dimension are limited like the numbers themselves"),
                    );
                    return Err(());
                }
                Ok(p)
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.dim_expr(a, declare)?, self.dim_expr(b, declare)?);
                match op {
                    BinOp::Div => match (
                        b.as_constant(),
                        b.as_constant()
                            .and_then(|k| (k > 0).then(|| a.floor_div(k)).flatten()),
                    ) {
                        (Some(k), Some(q)) if q.scale(k) == a => Ok(q),
                        _ => {
                            self.error("a dimension can be divided only by a constant that divides it exactly", e.span, "inexact division");
                            Err(())
                        }
                    },
                    _ => {
                        self.error(
                            "dimensions allow only `+`, `-`, `*` and exact `/`",
                            e.span,
                            "not a dimension expression",
                        );
                        Err(())
                    }
                }
            }
            ExprKind::Unary(UnOp::Neg, a) => Ok(self.dim_expr(a, declare)?.scale(-1)),
            _ => {
                self.error(
                    "expected a dimension (a whole number, a name, or `+ - * /` of those)",
                    e.span,
                    "not a dimension",
                );
                Err(())
            }
        }
    }

    /// A default, against the dimensions declared so far.
    fn param_value(&mut self, v: &Value, kind: &ParamKind) -> Option<ParamValue> {
        let dims: HashMap<String, DimId> = self
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        match super::lower_value(v, kind, &|n| dims.get(n).copied()) {
            Ok(v) => Some(v),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }
}
