//! Values as written: param defaults and factory settings (numbers, lists, strings and
//! ranges), checked against the param's kind.

use crate::diagnostics::{Diagnostic, Span};
use crate::ir::{DimId, ParamKind, ParamValue, Poly};
use crate::syntax::ast::{self, BinOp, ExprKind, UnOp, Value};

/// Enum values as a user writes them: `"a", "b"`.
pub(super) fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A constant number (defaults and settings).
pub(super) fn const_number(e: &ast::Expr) -> Result<f64, Diagnostic> {
    match &e.kind {
        ExprKind::Number(v) => Ok(*v),
        ExprKind::Unary(UnOp::Neg, a) => Ok(-const_number(a)?),
        ExprKind::Binary(
            op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow),
            a,
            b,
        ) => {
            let (a, b) = (const_number(a)?, const_number(b)?);
            Ok(match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
                _ => a.powf(b),
            })
        }
        _ => Err(Diagnostic::error(
            "expected a constant number",
            e.span,
            "not a constant",
        )),
    }
}

/// A whole-number expression over dimension symbols, for ranges written as values.
fn value_dim(e: &ast::Expr, dims: &dyn Fn(&str) -> Option<DimId>) -> Result<Poly, Diagnostic> {
    match &e.kind {
        ExprKind::Number(v) if v.fract() == 0.0 && v.abs() <= super::MAX_LITERAL as f64 => {
            Ok(Poly::constant(*v as i64))
        }
        ExprKind::Name(n) => dims(&n.name).map(Poly::sym).ok_or_else(|| {
            Diagnostic::error(
                format!("unknown dimension `{}`", n.name),
                n.span,
                "not a dimension of this loss",
            )
        }),
        ExprKind::Unary(UnOp::Neg, a) => Ok(value_dim(a, dims)?.scale(-1)),
        ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul), a, b) => {
            let (a, b) = (value_dim(a, dims)?, value_dim(b, dims)?);
            let p = match op {
                BinOp::Add => a.add(&b),
                BinOp::Sub => a.sub(&b),
                _ => a.mul(&b),
            };
            // As for literals: far from the ends of `i64`, where `Poly` saturates.
            if p.terms
                .values()
                .any(|c| c.saturating_abs() > super::MAX_LITERAL)
            {
                return Err(Diagnostic::error(
                    "a range bound must be below 10^15",
                    e.span,
                    "too large",
                ));
            }
            Ok(p)
        }
        _ => Err(Diagnostic::error(
            "expected a whole number or a dimension",
            e.span,
            "not a range bound",
        )),
    }
}

/// A source value for a param of the given kind: shared by defaults and factory settings.
pub fn lower_value(
    v: &Value,
    kind: &ParamKind,
    dims: &dyn Fn(&str) -> Option<DimId>,
) -> Result<ParamValue, Diagnostic> {
    let mismatch = |what: String, span: Span| {
        Err(Diagnostic::error(
            format!("expected {what}"),
            span,
            "wrong kind of value",
        ))
    };
    match (v, kind) {
        (Value::Str(s, span), ParamKind::Enum(vs)) => {
            if vs.contains(s) {
                Ok(ParamValue::Str(s.clone()))
            } else {
                Err(Diagnostic::error(
                    format!("\"{s}\" is not one of {}", quoted(vs)),
                    *span,
                    "unknown value",
                ))
            }
        }
        (_, ParamKind::Enum(vs)) => mismatch(format!("one of {}", quoted(vs)), v.span()),
        (Value::Str(_, span), _) => mismatch("a number, not a string".into(), *span),
        (Value::Expr(e), ParamKind::Scalar | ParamKind::Tensor(_)) => {
            const_number(e).map(ParamValue::Scalar)
        }
        (Value::Expr(e), ParamKind::Index(_)) => {
            mismatch("a list or a range of indices".into(), e.span)
        }
        (Value::List(_, span), ParamKind::Scalar) => mismatch("a number, not a list".into(), *span),
        (
            Value::List(_, span) | Value::Range(_, _, span),
            ParamKind::Index(shape) | ParamKind::Tensor(shape),
        ) if shape.len() != 1 => Err(one_dimension_only(v, kind, shape.len(), *span)),
        (Value::List(items, _), _) => items
            .iter()
            .map(const_number)
            .collect::<Result<Vec<_>, _>>()
            .map(ParamValue::List),
        (Value::Range(lo, hi, _), ParamKind::Index(_) | ParamKind::Tensor(_)) => Ok(
            ParamValue::Range(value_dim(lo, dims)?, value_dim(hi, dims)?),
        ),
        (Value::Range(_, _, span), ParamKind::Scalar) => {
            mismatch("a number, not a range".into(), *span)
        }
    }
}

/// A list or a range fills one axis, so it is a value only for a param of one dimension
/// (`param p : [] = 0..3` would leave nothing to lay it along).
fn one_dimension_only(v: &Value, kind: &ParamKind, rank: usize, span: Span) -> Diagnostic {
    let what = if matches!(v, Value::Range(..)) {
        "a range"
    } else {
        "a list"
    };
    let dims = match rank {
        0 => "no dimensions".to_string(),
        n => format!("{n} dimensions"),
    };
    let instead = match kind {
        ParamKind::Tensor(_) => ", or give it a single number, which fills any shape",
        _ => "",
    };
    Diagnostic::error(
        format!("{what} needs a param of one dimension"),
        span,
        format!("the param has {dims}"),
    )
    .with_note(format!(
        "declare the param with one dimension (`[N]`) to give it {what}{instead}"
    ))
}
