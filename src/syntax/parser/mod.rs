//! pest parse tree → AST, at once, with spans. Syntax errors become located diagnostics;
//! a file is parsed item by item so that an error in one block does not hide errors in
//! the next. Nesting is bounded before pest runs, so no input can overflow the stack.
//!
//! This file splits the text into items and runs pest; the [`Builder`] that turns
//! pest's tree into the AST lives by job in the files below.

mod blocks;
mod errors;
mod expressions;
mod tree;

use pest::Parser as _;

use super::ast::*;
use crate::diagnostics::{Diagnostic, Span};
use errors::syntax_error;
use tree::Kids as _;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/loss.pest"]
struct LossParser;

/// The deepest bracket nesting accepted. pest recurses once per level; the bound keeps
/// any input (200 000 nested parentheses, say) from overflowing the stack.
pub const MAX_NESTING: usize = 64;

/// The deepest expression tree accepted (operator chains count too).
pub const MAX_EXPR_DEPTH: usize = 400;

/// Parses one file's text. Returns the AST of every item that parsed and the diagnostics
/// of those that did not.
pub fn parse(text: &str) -> (File, Vec<Diagnostic>) {
    let mut file = File::default();
    let mut diags = Vec::new();
    if let Some(d) = check_nesting(text) {
        return (file, vec![d]);
    }
    for (start, end) in split_items(text) {
        let chunk = &text[start..end];
        match LossParser::parse(Rule::file, chunk) {
            Ok(mut pairs) => {
                let mut b = Builder {
                    offset: start,
                    diags: &mut diags,
                };
                let root = pairs.next().expect("pest returns the file rule");
                for item in root.kids().filter(|p| p.as_rule() == Rule::item) {
                    b.item(item, &mut file);
                }
            }
            Err(e) => diags.push(syntax_error(text, start, e)),
        }
    }
    (file, diags)
}

/// Builds the AST of one item from pest's tree, pushing the errors pest does not catch
/// (numbers, depth).
struct Builder<'d> {
    /// Where the item's text starts in the file, added to pest's spans.
    offset: usize,
    diags: &'d mut Vec<Diagnostic>,
}

/// An expression and the depth of its tree.
type Built = Result<(Expr, usize), ()>;

/// Splits the text at top-level `loss` / `factory` keywords written at the start of a
/// line (with the doc comments just above them), so that each block parses on its own.
fn split_items(text: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut offset = 0;
    let mut doc_start: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let starts_item = ["loss", "factory"].iter().any(|kw| {
            line.strip_prefix(kw)
                .is_some_and(|rest| rest.starts_with([' ', '\t']))
        });
        if line.starts_with("///") {
            doc_start.get_or_insert(offset);
        } else if starts_item {
            let s = doc_start.unwrap_or(offset);
            if s > 0 {
                starts.push(s);
            }
            doc_start = None;
        } else if !line.trim().is_empty() {
            doc_start = None;
        }
        offset += line.len();
    }
    starts.dedup();
    let mut out: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    out.push((*starts.last().unwrap_or(&0), text.len()));
    out
}

/// Rejects bracket nesting deeper than [`MAX_NESTING`] before pest sees it.
fn check_nesting(text: &str) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            in_string = !(c == b'"' || c == b'\n');
        } else if c == b'"' {
            in_string = true;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if matches!(c, b'(' | b'[' | b'{') {
            depth += 1;
            if depth > MAX_NESTING {
                return Some(
                    Diagnostic::error(
                        format!("brackets nested more than {MAX_NESTING} levels deep"),
                        Span::new(i, i + 1),
                        "this bracket is too deep",
                    )
                    .with_note("split the expression with `let` declarations"),
                );
            }
        } else if matches!(c, b')' | b']' | b'}') {
            depth = depth.saturating_sub(1);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr_of(src: &str) -> Expr {
        let text = format!("loss l {{ compute {src} reduce mean }}");
        let (file, diags) = parse(&text);
        assert!(diags.is_empty(), "{diags:?}");
        match &file.losses[0].stages[0] {
            Stage::Compute(e, _) => e.clone(),
            _ => unreachable!(),
        }
    }

    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Number(v) => format!("{v}"),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Name(n) => n.name.clone(),
            ExprKind::Access(n, a) => format!(
                "{}[{}]",
                n.name,
                a.iter().map(show).collect::<Vec<_>>().join(",")
            ),
            ExprKind::Call(n, a) => format!(
                "{}({})",
                n.name,
                a.iter().map(show).collect::<Vec<_>>().join(",")
            ),
            ExprKind::Unary(op, x) => {
                format!("({}{})", if *op == UnOp::Neg { "-" } else { "!" }, show(x))
            }
            ExprKind::Binary(op, a, b) => format!("({} {} {})", show(a), op.symbol(), show(b)),
            ExprKind::Reduction(n, count, bs, body) => format!(
                "{}({}{}: {})",
                n.name,
                count
                    .as_ref()
                    .map(|c| format!("{}, ", show(c)))
                    .unwrap_or_default(),
                bs.iter()
                    .map(|b| b.name.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                show(body)
            ),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(show(&expr_of("1 + 2 * 3 - 4")), "((1 + (2 * 3)) - 4)");
        assert_eq!(show(&expr_of("-x ^ 2")), "(-(x ^ 2))");
        assert_eq!(show(&expr_of("2 ^ 3 ^ 2")), "(2 ^ (3 ^ 2))");
        assert_eq!(show(&expr_of("2 ^ -x ^ 2")), "(2 ^ (-(x ^ 2)))");
        assert_eq!(
            show(&expr_of("a < b || c == d && !e")),
            "((a < b) || ((c == d) && (!e)))"
        );
    }

    #[test]
    fn reductions_calls_and_access() {
        assert_eq!(
            show(&expr_of("sum(h, w: x[b, k, h + 1, w])")),
            "sum(h,w: x[b,k,(h + 1),w])"
        );
        assert_eq!(show(&expr_of("max(a, b)")), "max(a,b)");
        assert_eq!(show(&expr_of("norm(c in 0..2: y[c])")), "norm(c: y[c])");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "loss l {{ compute {}1{} reduce mean }}",
            "(".repeat(200_000),
            ")".repeat(200_000)
        );
        let (_, diags) = parse(&deep);
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("nested"));
        let chain = format!(
            "loss l {{ compute 1{} reduce mean }}",
            " + 1".repeat(100_000)
        );
        let (_, diags) = parse(&chain);
        assert!(diags[0].message.contains("nested more than"));
        let negs = format!("loss l {{ compute {}1 reduce mean }}", "-".repeat(100_000));
        let (_, diags) = parse(&negs);
        assert!(diags[0].message.contains("nested more than"));
    }

    #[test]
    fn errors_in_two_blocks_are_both_reported() {
        let text = "loss a {\n  compute x +\n}\nloss b {\n  compute ) \n}\n";
        let (_, diags) = parse(text);
        assert_eq!(diags.len(), 2, "{diags:?}");
    }
}
