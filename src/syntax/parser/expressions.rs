//! Expressions: pest's precedence levels folded into the AST iteratively, each node's
//! tree depth bounded by [`MAX_EXPR_DEPTH`].

use pest::iterators::Pair;

use super::tree::{Kids as _, unquote};
use super::{Builder, Built, MAX_EXPR_DEPTH, Rule};
use crate::diagnostics::{Diagnostic, Span};
use crate::syntax::ast::*;

impl Builder<'_> {
    /// Reports an expression tree deeper than [`MAX_EXPR_DEPTH`].
    fn too_deep(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::error(
                format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
                span,
                "too deep",
            )
            .with_note("split the expression with `let` declarations"),
        );
    }

    /// An expression node of tree depth `depth`, refused past [`MAX_EXPR_DEPTH`].
    fn make(&mut self, kind: ExprKind, span: Span, depth: usize) -> Built {
        if depth > MAX_EXPR_DEPTH {
            self.too_deep(span);
            return Err(());
        }
        Ok((Expr { kind, span }, depth))
    }

    /// Any expression-level rule.
    pub(super) fn expr(&mut self, p: Pair<Rule>) -> Built {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::expr | Rule::paren | Rule::primary => {
                let inner = p.kids().next().ok_or(())?;
                self.expr(inner)
            }
            Rule::value => match self.value(p)? {
                Value::Expr(e) => Ok((e, 1)),
                _ => Err(()),
            },
            Rule::or_expr | Rule::and_expr | Rule::cmp_expr | Rule::add_expr | Rule::mul_expr => {
                // Left-associative chain: operand (op operand)*, folded iteratively.
                let mut it = p.kids();
                let (mut acc, mut depth) = self.expr(it.next().ok_or(())?)?;
                while let Some(op) = it.next() {
                    let (rhs, rd) = self.expr(it.next().ok_or(())?)?;
                    let op = bin_op(op.as_str());
                    let s = acc.span.to(rhs.span);
                    let d = depth.max(rd) + 1;
                    (acc, depth) =
                        self.make(ExprKind::Binary(op, Box::new(acc), Box::new(rhs)), s, d)?;
                }
                Ok((acc, depth))
            }
            Rule::unary => {
                let pairs: Vec<Pair<Rule>> = p.kids().collect();
                let (ops, operand) = pairs.split_at(pairs.len() - 1);
                let (mut acc, mut depth) = self.expr(operand[0].clone())?;
                for op in ops.iter().rev() {
                    let s = self.span(op).to(acc.span);
                    (acc, depth) = self.make(
                        ExprKind::Unary(un_op(op.as_str()), Box::new(acc)),
                        s,
                        depth + 1,
                    )?;
                }
                Ok((acc, depth))
            }
            Rule::pow_expr => {
                // primary (^ prefix* primary)*: right-associative, with prefixes binding
                // looser than `^` (`2 ^ -x ^ 2` is `2 ^ (-(x ^ 2))`), folded from the right.
                let mut groups: Vec<(Vec<Pair<Rule>>, Pair<Rule>)> = Vec::new();
                let mut prefixes = Vec::new();
                for q in p.kids() {
                    match q.as_rule() {
                        Rule::pow_op => {}
                        Rule::prefix_op => prefixes.push(q),
                        _ => groups.push((std::mem::take(&mut prefixes), q)),
                    }
                }
                let (last_prefixes, last) = groups.pop().ok_or(())?;
                let (mut acc, mut depth) = self.expr(last)?;
                let mut pending = last_prefixes;
                while let Some((prefixes, base)) = groups.pop() {
                    for op in pending.iter().rev() {
                        let s = self.span(op).to(acc.span);
                        (acc, depth) = self.make(
                            ExprKind::Unary(un_op(op.as_str()), Box::new(acc)),
                            s,
                            depth + 1,
                        )?;
                    }
                    let (b, bd) = self.expr(base)?;
                    let s = b.span.to(acc.span);
                    let d = depth.max(bd) + 1;
                    (acc, depth) = self.make(
                        ExprKind::Binary(BinOp::Pow, Box::new(b), Box::new(acc)),
                        s,
                        d,
                    )?;
                    pending = prefixes;
                }
                debug_assert!(pending.is_empty());
                Ok((acc, depth))
            }
            Rule::number => {
                let text = p.as_str();
                match text.parse::<f64>() {
                    Ok(v) => self.make(ExprKind::Number(v), span, 1),
                    Err(_) => {
                        self.diags
                            .push(Diagnostic::error("malformed number", span, "here"));
                        Err(())
                    }
                }
            }
            Rule::string => self.make(ExprKind::Str(unquote(p.as_str())), span, 1),
            Rule::ident => {
                let id = self.ident(p);
                self.make(ExprKind::Name(id), span, 1)
            }
            Rule::access | Rule::call => {
                let rule = p.as_rule();
                let mut it = p.kids();
                let name = self.ident(it.next().ok_or(())?);
                let mut args = Vec::new();
                let mut depth = 0;
                for a in it {
                    let (e, d) = self.expr(a)?;
                    depth = depth.max(d);
                    args.push(e);
                }
                let kind = if rule == Rule::access {
                    ExprKind::Access(name, args)
                } else {
                    ExprKind::Call(name, args)
                };
                self.make(kind, span, depth + 1)
            }
            Rule::reduction => {
                let mut it = p.kids();
                let name = self.ident(it.next().ok_or(())?);
                let mut binders = Vec::new();
                let mut body = None;
                let mut count = None;
                let mut depth = 0;
                for q in it {
                    if q.as_rule() == Rule::top_count {
                        let (e, d) = self.expr(q.kids().next().ok_or(())?)?;
                        depth = d;
                        count = Some(Box::new(e));
                    } else if q.as_rule() == Rule::binder {
                        let mut bi = q.kids();
                        let bname = self.ident(bi.next().ok_or(())?);
                        let range = match (bi.next(), bi.next()) {
                            (Some(lo), Some(hi)) => Some((self.expr(lo)?.0, self.expr(hi)?.0)),
                            _ => None,
                        };
                        binders.push(Binder { name: bname, range });
                    } else {
                        let (e, d) = self.expr(q)?;
                        depth = depth.max(d);
                        body = Some(e);
                    }
                }
                self.make(
                    ExprKind::Reduction(name, count, binders, Box::new(body.ok_or(())?)),
                    span,
                    depth + 1,
                )
            }
            _ => Err(()),
        }
    }
}

/// A binary operator from its spelling.
fn bin_op(s: &str) -> BinOp {
    match s {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "^" => BinOp::Pow,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        "<=" => BinOp::Le,
        ">" => BinOp::Gt,
        ">=" => BinOp::Ge,
        "&&" => BinOp::And,
        _ => BinOp::Or,
    }
}

/// A prefix operator from its spelling.
fn un_op(s: &str) -> UnOp {
    if s == "!" { UnOp::Not } else { UnOp::Neg }
}
