//! Bounded depth: the IR's depth is capped right after lowering, before any walker that
//! recurses over it runs.
//!
//! The parser caps one expression's nesting, but plain `let`s are expanded where they
//! are used, so a chain of lets multiplies that cap: 20 lets of 390 nested minuses each
//! make a graph 7 800 nodes deep. The evaluator and the emitter recurse once per level
//! (along operands, and through gathers inside subscripts), so the depth of the graph is
//! the depth of their stacks: in a debug build, where frames are largest, about 0.8 KiB
//! (evaluator; 1.4 KiB through gathers) and 2.2 KiB (emitter) per level. At
//! [`MAX_IR_DEPTH`] that is 0.4 (0.7) and 1.1 MiB, at most half a test thread's 2 MiB
//! (`tests/depth.rs` runs the deepest allowed losses there). The cap is far above any
//! real loss (the Lightning Pose losses are at most 17 deep) and above the parser's cap
//! on one expression (400), so that only expanded lets reach it. Lowering counts its own
//! recursion against the same cap.

use petgraph::algo::toposort;
use petgraph::visit::NodeIndexable;

use crate::diagnostics::Diagnostic;
use crate::ir::{IndexExpr, IndexTerm, LossIr, Op, operands};

/// The deepest graph (and the deepest recursion of lowering) a loss may have: levels of
/// operations, each gather inside a subscript counting as one more.
pub const MAX_IR_DEPTH: usize = 500;

/// The error for an expression deeper than [`MAX_IR_DEPTH`] once its lets are expanded,
/// at the first place it exceeds the cap. Shared with lowering.
pub fn too_deep(span: crate::diagnostics::Span) -> Diagnostic {
    Diagnostic::error(
        format!("expression nested more than {MAX_IR_DEPTH} levels deep once its `let`s are expanded"),
        span,
        "too deep here",
    )
    .with_note("a plain `let` is expanded where it is used, so its depth adds to the depth of the expression using it: shorten the chain of `let`s")
}

/// The error at the first node, in topological order, deeper than [`MAX_IR_DEPTH`].
/// Iterative: it is what makes recursion safe for everything after it.
pub fn check_depth(ir: &LossIr) -> Option<Diagnostic> {
    // A cycle is the verifier's to report; without an order there is no depth to check.
    let order = toposort(&ir.graph, None).ok()?;
    let mut depth = vec![0usize; ir.graph.node_bound()];
    for n in order {
        let below = operands(&ir.graph, n)
            .iter()
            .map(|a| depth[a.index()])
            .max()
            .unwrap_or(0);
        let gathers = match &ir.graph[n].op {
            Op::Read(_, idx) => gather_depth(idx),
            Op::IndexValue(e) => gather_depth(std::slice::from_ref(e)),
            _ => 0,
        };
        depth[n.index()] = below.max(gathers) + 1;
        if depth[n.index()] > MAX_IR_DEPTH {
            return Some(too_deep(ir.graph[n].span));
        }
    }
    None
}

/// How deeply gathers nest in the subscripts (0 without gathers), with an explicit stack:
/// subscripts built through lets nest beyond the parser's cap too.
fn gather_depth(idx: &[IndexExpr]) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&IndexExpr, usize)> = idx.iter().map(|e| (e, 0)).collect();
    while let Some((e, level)) = stack.pop() {
        deepest = deepest.max(level);
        for (_, term) in &e.terms {
            if let IndexTerm::Gather(_, inner) = term {
                stack.extend(inner.iter().map(|x| (x, level + 1)));
            }
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Source;
    use crate::ir::{IndexId, ParamId, Tensor};

    fn check(src: &str) -> String {
        let s = Source::new("d.loss", src);
        crate::sema::check(std::slice::from_ref(&s)).render(&[s])
    }

    /// Lets used side by side, each already expanded once: lowering stays shallow (a
    /// let's second use is remembered, not expanded again), but the graph is as deep as
    /// the whole chain.
    #[test]
    fn a_deep_graph_from_shallow_lowering_is_one_located_error() {
        let mut src = String::from("loss l {\n input x : [B]\n let a0 = x[b]\n");
        for i in 1..3 {
            src += &format!(" let a{i} = {}a{}\n", "-".repeat(390), i - 1);
        }
        src += " compute a0 + a1 + a2\n reduce mean\n}\n";
        let r = check(&src);
        assert_eq!(r.matches("error:").count(), 1, "{r}");
        assert!(r.contains("nested more than 500 levels deep"), "{r}");
        // The caret is on the let whose minuses take the graph past the cap: a2's line.
        assert!(r.contains("d.loss:5:"), "{r}");
    }

    #[test]
    fn gathers_count_as_levels() {
        let e = |d: usize| {
            let mut e = IndexExpr::var(IndexId::new(0));
            for _ in 0..d {
                e = IndexExpr::gather(Tensor::Param(ParamId::new(0)), vec![e]);
            }
            e
        };
        assert_eq!(gather_depth(&[e(0)]), 0);
        assert_eq!(gather_depth(&[e(1), e(3)]), 3);
    }
}
