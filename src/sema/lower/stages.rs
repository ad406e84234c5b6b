//! Stages: their order and count, each stage's expression lowered in its context, the
//! checks that span stages (optional inputs, the domain), and the assembled [`LossIr`].

use petgraph::stable_graph::NodeIndex;

use super::{Ctx, Lowerer};
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::*;
use crate::syntax::ast::{self, Stage};

/// Stage keywords by their place in the pipeline.
const STAGE_NAMES: [&str; 5] = ["compute", "remove_nans", "rectify", "reduce", "weight"];

/// A stage's place in the pipeline: its index in [`STAGE_NAMES`].
fn order(s: &Stage) -> usize {
    match s {
        Stage::Compute(..) => 0,
        Stage::Mask(..) => 1,
        Stage::Rectify(..) => 2,
        Stage::Reduce { .. } => 3,
        Stage::Weight(..) => 4,
    }
}

impl From<ast::MaskMode> for MaskMode {
    fn from(mode: ast::MaskMode) -> MaskMode {
        match mode {
            ast::MaskMode::Drop => MaskMode::Drop,
            ast::MaskMode::Zero => MaskMode::Zero,
        }
    }
}

impl From<ast::ReduceMode> for ReduceMode {
    fn from(mode: ast::ReduceMode) -> ReduceMode {
        match mode {
            ast::ReduceMode::Mean => ReduceMode::Mean,
            ast::ReduceMode::Sum => ReduceMode::Sum,
        }
    }
}

impl Lowerer<'_> {
    /// Lowers every stage and assembles the loss; `None` when `compute` did not lower.
    pub(super) fn stages(&mut self) -> Option<LossIr> {
        let def = self.def;
        self.check_stage_order();
        let mut compute = None;
        let mut masks = TiVec::new();
        let mut rectify = None;
        let mut reduce = ReduceMode::Mean;
        let mut empty = None;
        let mut by = None;
        let mut weight = None;
        for s in &def.stages {
            self.optional_reads.clear();
            self.let_memo.clear();
            match s {
                Stage::Compute(e, _) => {
                    compute = self.recover(e.span, |l| {
                        l.typed(e, &mut Vec::new(), Ctx::Domain, Ty::Num)
                    })
                }
                Stage::Mask(mode, e, span) => {
                    let cond = self.recover(e.span, |l| {
                        l.typed(e, &mut Vec::new(), Ctx::Domain, Ty::Bool)
                    });
                    if let Some(cond) = cond {
                        let mut needs: Vec<InputId> =
                            self.optional_reads.iter().map(|(i, _)| *i).collect();
                        needs.sort_unstable();
                        needs.dedup();
                        masks.push(Mask {
                            mode: (*mode).into(),
                            cond,
                            needs,
                            span: *span,
                        });
                    }
                }
                Stage::Rectify(e, _) => {
                    rectify = self.recover(e.span, |l| {
                        l.typed(e, &mut Vec::new(), Ctx::Domain, Ty::Num)
                    })
                }
                Stage::Reduce {
                    mode,
                    by: b,
                    empty: e,
                    ..
                } => {
                    reduce = (*mode).into();
                    if let Some(e) = e {
                        empty = self.recover(e.span, |l| {
                            l.typed(e, &mut Vec::new(), Ctx::Closed, Ty::Num)
                        });
                    }
                    if let Some(b) = b {
                        by = self
                            .recover(b.span, |l| {
                                l.typed(b, &mut Vec::new(), Ctx::Domain, Ty::Num)
                            })
                            .map(|n| (n, b.span));
                        self.check_weighted_mean(*mode, e.as_ref(), b.span);
                    }
                }
                Stage::Weight(e, _) => {
                    weight = self.recover(e.span, |l| {
                        l.typed(e, &mut Vec::new(), Ctx::Closed, Ty::Num)
                    })
                }
            }
            if !matches!(s, Stage::Mask(..)) {
                self.report_optional_reads();
            }
        }
        let compute = compute?;
        let domain: Vec<IndexId> = self.graph[compute].free.clone();
        for m in &masks {
            self.check_in_domain(m.cond, &domain, "remove_nans");
        }
        if let Some(r) = rectify {
            self.check_in_domain(r, &domain, "rectify");
        }
        let (mut compute, mut domain) = (compute, domain);
        if let Some((w, span)) = by {
            self.check_in_domain(w, &domain, "reduce mean by");
            if let Some(m) = masks.iter().find(|m| !m.needs.is_empty()) {
                self.diags.push(
                    Diagnostic::error(
                        "`reduce mean by` with a `remove_nans` stage that reads an optional input without a default is not supported",
                        span,
                        "weighted mean",
                    )
                    .with_secondary(m.span, "reads an optional input")
                    .with_note("give the optional input a default (`optional = 0`), so that the stage always runs"),
                );
            }
            compute = self.weighted_mean(compute, &masks, rectify, w, &domain, span);
            domain = vec![];
            masks = TiVec::new();
            rectify = None;
            reduce = ReduceMode::Sum;
        }
        let weight = match weight {
            Some(w) => w,
            None => add_node(
                &mut self.graph,
                Node {
                    op: Op::constant(1.0),
                    ty: Ty::Num,
                    free: vec![],
                    span: def.name.span,
                },
                &[],
            ),
        };
        Some(LossIr {
            name: def.name.name.clone(),
            doc: def.doc.clone(),
            dims: std::mem::take(&mut self.dims),
            inputs: std::mem::take(&mut self.inputs),
            params: std::mem::take(&mut self.params),
            indices: std::mem::take(&mut self.indices),
            domain,
            graph: std::mem::take(&mut self.graph),
            compute,
            masks,
            rectify,
            reduce,
            empty,
            weight,
            span: def.span,
            origin: Origin::default(),
        })
    }

    /// `reduce mean by W` lowered to a closed `compute`, `Σ w·x / Σ w` over the domain,
    /// with the masks and `rectify` folded in: an element a drop mask removes counts in
    /// neither sum, and neither `compute` nor `W` is evaluated there (the untaken
    /// branch of a select is not); a zeroed element adds its weight with a value of 0.
    /// Every back end and differentiation then see only existing operations.
    fn weighted_mean(
        &mut self,
        compute: NodeIndex,
        masks: &TiSlice<MaskId, Mask>,
        rectify: Option<NodeIndex>,
        w: NodeIndex,
        domain: &[IndexId],
        span: Span,
    ) -> NodeIndex {
        let zero = self.node(Op::constant(0.0), Ty::Num, &[], span);
        let mut x = compute;
        for m in masks.iter().rev().filter(|m| m.mode == MaskMode::Zero) {
            x = self.node(Op::Select, Ty::Num, &[m.cond, zero, x], span);
        }
        if let Some(eps) = rectify {
            let d = self.node(Op::Binary(BinaryFn::Sub), Ty::Num, &[x, eps], span);
            x = self.node(Op::Unary(UnaryFn::Relu), Ty::Num, &[d], span);
        }
        let mut num = self.node(Op::Binary(BinaryFn::Mul), Ty::Num, &[w, x], span);
        let mut den = w;
        for m in masks.iter().rev().filter(|m| m.mode == MaskMode::Drop) {
            num = self.node(Op::Select, Ty::Num, &[m.cond, zero, num], span);
            den = self.node(Op::Select, Ty::Num, &[m.cond, zero, den], span);
        }
        let over = Op::Reduce(ReduceFn::Sum, domain.to_vec());
        let num = self.node(over.clone(), Ty::Num, &[num], span);
        let den = self.node(over, Ty::Num, &[den], span);
        self.node(Op::Binary(BinaryFn::Div), Ty::Num, &[num, den], span)
    }

    /// `by` belongs to `reduce mean`, without `(empty: ...)`.
    fn check_weighted_mean(&mut self, mode: ast::ReduceMode, empty: Option<&ast::Expr>, by: Span) {
        if mode == ast::ReduceMode::Sum {
            self.diags.push(
                Diagnostic::error(
                    "`by` weighs a mean: write `reduce mean by W`",
                    by,
                    "after `reduce sum`",
                )
                .with_note("for a weighted sum, multiply in `compute`: `compute w[n] * x[n]`"),
            );
        }
        if let Some(e) = empty {
            self.diags.push(
                Diagnostic::error(
                    "a weighted mean takes no `(empty: ...)`",
                    e.span,
                    "not used",
                )
                .with_note("a weighted mean over no element is 0 / 0 = NaN, as PyTorch's"),
            );
        }
    }

    /// One of each stage (`remove_nans` aside), in pipeline order, `compute` and
    /// `reduce` present.
    fn check_stage_order(&mut self) {
        let def = self.def;
        let mut first: [Option<Span>; 5] = [None; 5];
        let mut last_order = 0;
        for s in &def.stages {
            let o = order(s);
            let kw = Span::new(s.span().start, s.span().start + STAGE_NAMES[o].len());
            if o != 1
                && let Some(f) = first[o]
            {
                self.diags.push(
                    Diagnostic::error(
                        format!("a loss has one `{}` stage", STAGE_NAMES[o]),
                        kw,
                        "second one here",
                    )
                    .with_secondary(f, "first one here"),
                );
            }
            if o < last_order {
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "`{}` must come before `{}`",
                            STAGE_NAMES[o], STAGE_NAMES[last_order]
                        ),
                        kw,
                        "out of order",
                    )
                    .with_note(
                        "stages run in the order compute, remove_nans, rectify, reduce, weight",
                    ),
                );
            }
            last_order = last_order.max(o);
            first[o].get_or_insert(kw);
        }
        for (o, what) in [(0, "compute"), (3, "reduce")] {
            if first[o].is_none() {
                let name_span = def.name.span;
                self.diags.push(
                    Diagnostic::error(
                        format!("loss `{}` has no `{what}` stage", def.name.name),
                        name_span,
                        format!("`{what}` missing"),
                    )
                    .with_note(if o == 0 {
                        "add `compute EXPR`, the element-wise loss"
                    } else {
                        "add `reduce mean` or `reduce sum`"
                    }),
                );
            }
        }
    }

    /// Reports the optional inputs read by a stage other than `remove_nans`.
    fn report_optional_reads(&mut self) {
        for (i, at) in self.optional_reads.clone() {
            let name = self.inputs[i].name.clone();
            self.diags.push(
                Diagnostic::error(
                    format!("optional input `{name}` is read outside `remove_nans`"),
                    at,
                    "read here",
                )
                .with_secondary(self.inputs[i].span, "declared optional here")
                .with_note("an optional input may only be used in a `remove_nans` condition, which is skipped when it is absent; one with a default (`optional = 1`) may be read anywhere"),
            );
        }
    }

    /// Masks and rectify may use only the domain's indices.
    fn check_in_domain(&mut self, n: NodeIndex, domain: &[IndexId], what: &str) {
        for v in self.graph[n].free.clone() {
            if !domain.contains(&v) {
                let var = &self.indices[v];
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "index `{}` in `{what}` is not an index of `compute`",
                            var.name
                        ),
                        var.span,
                        "not in the loss's domain",
                    )
                    .with_note(format!(
                        "the domain is ({}); bind `{}` with a reduction such as `all({}: ...)`",
                        domain
                            .iter()
                            .map(|d| self.indices[*d].name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        var.name,
                        var.name
                    )),
                );
            }
        }
    }
}
