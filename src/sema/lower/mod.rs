//! Name resolution and typing: one loss's AST → its IR graph.
//!
//! Names resolve, innermost first, to: indices bound by reductions (or by an indexed
//! `let`'s parameters), plain `let`s (expanded where they are used, so their index names
//! bind to whatever binds them there), params, inputs, dimension symbols, and finally
//! the loss's free (domain) indices, which are any other names used inside a subscript.
//!
//! One [`Lowerer`] walks one loss; its methods live by job in the files below. A
//! lowering that fails returns `Err(())` after pushing the error that says why, so the
//! callers only propagate; where a failure is recovered from (a stage, a dimension),
//! [`Lowerer::recover`] checks that it was reported.

mod declarations;
mod expressions;
mod stages;
mod subscripts;
mod values;

use std::collections::{HashMap, HashSet};

use petgraph::stable_graph::NodeIndex;

use crate::diagnostics::{Diagnostic, Span};
use crate::ice::PLEASE_REPORT;
use crate::ir::passes::depth::{MAX_IR_DEPTH, too_deep};
use crate::ir::*;
use crate::syntax::ast::{self, ExprKind, LossDef, Stage};

pub use values::lower_value;

/// Lowers one loss. Returns `None` (with diagnostics) when it has errors.
pub fn lower_loss(def: &LossDef, diags: &mut Vec<Diagnostic>) -> Option<LossIr> {
    let mut l = Lowerer::new(def);
    l.declarations();
    let ir = l.stages();
    let ok = l.error_count() == 0;
    if ok && ir.is_none() {
        // A loss without errors always lowers; dropping it silently would hide a bug.
        l.diags.push(internal_error(
            def,
            def.name.span,
            "the loss did not lower, yet no error says why",
        ));
    }
    diags.append(&mut l.diags);
    if ok { ir } else { None }
}

/// The longest chain of lets defined by lets that is expanded (each level is a stack
/// frame of the lowering).
const MAX_LET_DEPTH: usize = 200;

/// The largest whole number a subscript or a dimension may hold, written or computed
/// (10^15): far beyond any size, and far from the ends of `i64`, where the IR's
/// arithmetic saturates.
const MAX_LITERAL: i64 = 1_000_000_000_000_000;

/// What a name in a declaration stands for.
#[derive(Clone, Copy)]
enum Decl {
    Input(InputId),
    Param(ParamId),
    Let(usize),
    Dim(DimId),
}

/// The state of lowering one loss: what is declared so far and the graph being built.
struct Lowerer<'a> {
    def: &'a LossDef,
    diags: Vec<Diagnostic>,
    dims: Vec<DimSym>,
    inputs: TiVec<InputId, InputInfo>,
    params: TiVec<ParamId, ParamInfo>,
    decls: HashMap<String, (Decl, Span)>,
    indices: TiVec<IndexId, IndexVar>,
    domain_by_name: HashMap<String, IndexId>,
    /// Names written inside a subscript anywhere in the loss: the candidates for
    /// domain indices.
    subscript_names: HashSet<String>,
    graph: Graph,
    /// `let`s being expanded, to report recursion instead of looping.
    expanding: Vec<usize>,
    /// Optional inputs read by the stage being lowered.
    optional_reads: Vec<(InputId, Span)>,
    /// Plain lets already expanded in this stage, by (let, scope, context): a let used
    /// twice in one scope is lowered once (chains of lets stay linear, not exponential).
    let_memo: HashMap<(usize, Scope, Ctx), NodeIndex>,
    /// Levels of `expr` and `index_expr` on the stack, lets' bodies included.
    depth: usize,
    /// Whether the depth cap has been reported (once per loss).
    too_deep: bool,
}

/// The index variables in scope: `(name, value)`, innermost last.
type Scope = Vec<(String, IndexExpr)>;

/// Where an expression is lowered, which decides what free names may mean.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Ctx {
    /// `compute`, `remove_nans`, `rectify`: new names in subscripts are domain indices.
    Domain,
    /// `weight`, `empty:` and indexed-let bodies: no free indices.
    Closed,
}

/// A lowered expression's node; `Err(())` once its error is reported.
type Lowered = Result<NodeIndex, ()>;

impl<'a> Lowerer<'a> {
    fn new(def: &'a LossDef) -> Lowerer<'a> {
        let mut subscript_names = HashSet::new();
        let mut collect = |e: &ast::Expr| {
            e.walk(&mut |x| {
                if let ExprKind::Access(_, args) = &x.kind {
                    for a in args {
                        a.walk(&mut |y| {
                            if let ExprKind::Name(n) = &y.kind {
                                subscript_names.insert(n.name.clone());
                            }
                        })
                    }
                }
            })
        };
        for s in &def.stages {
            match s {
                Stage::Compute(e, _) | Stage::Mask(_, e, _) | Stage::Rectify(e, _) => collect(e),
                _ => {}
            }
        }
        for l in &def.lets {
            collect(&l.body);
        }
        Lowerer {
            def,
            diags: vec![],
            dims: vec![],
            inputs: TiVec::new(),
            params: TiVec::new(),
            decls: HashMap::new(),
            indices: TiVec::new(),
            domain_by_name: HashMap::new(),
            subscript_names,
            graph: Graph::default(),
            expanding: vec![],
            optional_reads: vec![],
            let_memo: HashMap::new(),
            depth: 0,
            too_deep: false,
        }
    }

    fn error(&mut self, msg: impl Into<String>, span: Span, label: impl Into<String>) {
        self.diags.push(Diagnostic::error(msg, span, label));
    }

    /// Enters one more level of `expr` or `index_expr`, or reports the nesting too deep:
    /// each expression is within the parser's cap, but lets expanded inside lets nest
    /// deeper. The caller leaves with `self.depth -= 1`.
    fn enter(&mut self, span: Span) -> Result<(), ()> {
        if self.depth >= MAX_IR_DEPTH {
            if !std::mem::replace(&mut self.too_deep, true) {
                self.diags.push(too_deep(span));
            }
            return Err(());
        }
        self.depth += 1;
        Ok(())
    }

    fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error).count()
    }

    /// Runs a lowering whose failure the caller recovers from, as `None`. A failure
    /// must have reported its error; one that did not would leave out part of the loss
    /// (a stage, say) without a word, so it becomes an internal error at `span`.
    fn recover<T>(
        &mut self,
        span: Span,
        lower: impl FnOnce(&mut Self) -> Result<T, ()>,
    ) -> Option<T> {
        let errors_before = self.error_count();
        let result = lower(self).ok();
        if result.is_none() && self.error_count() == errors_before {
            let d = internal_error(
                self.def,
                span,
                "this failed to lower, yet no error says why",
            );
            self.diags.push(d);
        }
        result
    }
}

/// A diagnostic for a broken invariant of the lowering: a bug in lossc, not in the loss,
/// worded as [`crate::ice::InternalError`] is.
fn internal_error(def: &LossDef, span: Span, what: &str) -> Diagnostic {
    Diagnostic::error(
        format!(
            "internal compiler error in loss `{}`: {what}",
            def.name.name
        ),
        span,
        "while lowering this",
    )
    .with_note(PLEASE_REPORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreported_failure_is_an_internal_error() {
        let (file, diags) = crate::syntax::parse("loss l { compute 1 reduce mean }");
        assert!(diags.is_empty(), "{diags:?}");
        let def = &file.losses[0];
        let mut l = Lowerer::new(def);
        assert_eq!(l.recover(def.span, |_| Ok(1)), Some(1));
        assert!(l.diags.is_empty());
        // A failure that reported its error is just a failure.
        let reported = l.recover(def.span, |l| {
            l.error("an error", def.span, "here");
            Err::<(), ()>(())
        });
        assert_eq!(reported, None);
        assert_eq!(l.diags.len(), 1);
        // One that did not is a bug, and says so.
        assert_eq!(l.recover(def.span, |_| Err::<(), ()>(())), None);
        assert_eq!(l.diags.len(), 2);
        assert!(
            l.diags[1]
                .message
                .starts_with("internal compiler error in loss `l`")
        );
        assert!(l.diags[1].notes[0].contains("please report it"));
    }
}
