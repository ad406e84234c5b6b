//! Range inference: every index variable gets a symbolic inclusive range `[lo, hi]`.
//!
//! Each subscript `Σ aᵢ·vᵢ + c` on a dimension of size `D` is a constraint
//! `0 ≤ Σ aᵢ·vᵢ + c ≤ D − 1`. A variable without an explicit range takes, from every
//! constraint where it is the only unknown, the interval that keeps the subscript in
//! bounds for all values of the others, and the intersection of those intervals: `x[t + 1]`
//! and `x[t]` on `[B]` give `t ∈ [0, B − 2]`. The intervals must have the same width: an
//! index running over `K` in one tensor and `M` in another is an error, not a silent
//! truncation. Subscripts through gathers are checked when the data is known.

use std::collections::HashMap;

use crate::diagnostics::{Diagnostic, Span};
use crate::ir::{IndexExpr, IndexId, IndexTerm, LossIr, Op, ParamKind, Poly, Tensor};

/// One subscript: the expression, the dimension it indexes, and where it was written.
#[derive(Clone, Debug)]
pub struct Constraint {
    /// The subscript.
    pub index: IndexExpr,
    /// The size of the dimension it indexes.
    pub dim: Poly,
    /// The tensor's name and the axis (0-based).
    pub tensor: (String, usize),
    /// The read's span.
    pub span: Span,
}

/// The declared shape of a tensor.
pub fn shape_of(ir: &LossIr, t: Tensor) -> &[Poly] {
    match t {
        Tensor::Input(i) => &ir.inputs[i].shape,
        Tensor::Param(p) => match &ir.params[p].kind {
            ParamKind::Tensor(s) | ParamKind::Index(s) => s,
            _ => &[],
        },
    }
}

/// Every subscript in the graph, gathers' own subscripts included.
pub fn constraints(ir: &LossIr) -> Vec<Constraint> {
    fn visit(ir: &LossIr, t: Tensor, idx: &[IndexExpr], span: Span, out: &mut Vec<Constraint>) {
        let shape = shape_of(ir, t);
        for (axis, (e, d)) in idx.iter().zip(shape).enumerate() {
            out.push(Constraint {
                index: e.clone(),
                dim: d.clone(),
                tensor: (ir.tensor_name(t).to_string(), axis),
                span,
            });
            gathers(ir, e, span, out);
        }
    }
    fn gathers(ir: &LossIr, e: &IndexExpr, span: Span, out: &mut Vec<Constraint>) {
        for (_, term) in &e.terms {
            if let IndexTerm::Gather(p, idx) = term {
                visit(ir, *p, idx, span, out);
            }
        }
    }
    let mut out = Vec::new();
    for n in ir.graph.node_indices() {
        let node = &ir.graph[n];
        match &node.op {
            Op::Read(t, idx) => visit(ir, *t, idx, node.span, &mut out),
            Op::IndexValue(e) => gathers(ir, e, node.span, &mut out),
            _ => {}
        }
    }
    out
}

/// A range `[lo, hi]` one constraint allows an index, with that constraint.
type Candidate<'c> = ((Poly, Poly), &'c Constraint);

/// `[lo, hi]` for `v` from one constraint where it is the only unknown. A symbolic
/// coefficient counts as non-negative when its numbers are (dimensions are never
/// negative), and `v`'s own must divide the bounds exactly: `l * K + k` with `k` in
/// `0..K` on `[L * K]` gives `l ∈ [0, L − 1]`.
fn solve(
    c: &Constraint,
    v: IndexId,
    a: &Poly,
    known: &HashMap<IndexId, (Poly, Poly)>,
) -> Option<(Poly, Poly)> {
    let (mut rmin, mut rmax) = (c.index.offset.clone(), c.index.offset.clone());
    for (k, t) in &c.index.terms {
        let IndexTerm::Var(u) = t else { return None };
        if *u == v {
            continue;
        }
        let (lo, hi) = known.get(u)?;
        let (at_min, at_max) = if k.sign()? > 0 { (lo, hi) } else { (hi, lo) };
        rmin = rmin.add(&at_min.mul(k));
        rmax = rmax.add(&at_max.mul(k));
    }
    // a·v ∈ [−rmin, D − 1 − rmax]
    let low = rmin.scale(-1);
    let high = c.dim.sub(&Poly::constant(1)).sub(&rmax);
    if a.sign()? > 0 {
        Some((low.ceil_div_by(a)?, high.floor_div_by(a)?))
    } else {
        let a = a.scale(-1);
        Some((
            high.scale(-1).ceil_div_by(&a)?,
            low.scale(-1).floor_div_by(&a)?,
        ))
    }
}

/// Fills in `ir.indices[..].range`; reports indices whose range cannot be inferred or
/// whose uses disagree.
pub fn infer_ranges(ir: &mut LossIr) -> Vec<Diagnostic> {
    let cons = constraints(ir);
    let names = ir.dim_names();
    let mut diags = Vec::new();
    let mut known: HashMap<IndexId, (Poly, Poly)> = HashMap::new();
    for (v, var) in ir.indices.iter_enumerated() {
        if let Some((lo, hi)) = &var.explicit {
            known.insert(v, (lo.clone(), hi.sub(&Poly::constant(1))));
        }
    }
    loop {
        let mut found: HashMap<IndexId, Vec<Candidate>> = HashMap::new();
        for c in &cons {
            let unknown: Vec<(&Poly, IndexId)> = c
                .index
                .terms
                .iter()
                .filter_map(|(a, t)| match t {
                    IndexTerm::Var(u) if !known.contains_key(u) => Some((a, *u)),
                    _ => None,
                })
                .collect();
            if let [(a, v)] = unknown[..]
                && let Some(r) = solve(c, v, a, &known)
            {
                found.entry(v).or_default().push((r, c));
            }
        }
        if found.is_empty() {
            break;
        }
        // An index multiplied by a size (`l` of `x[l * K + k]`) waits while the other
        // unknowns of that subscript are being solved this round: next round the
        // subscript constrains it too (`y[l]` alone would give `l` the whole of `y`'s
        // axis, and the read of `x` could then leave its own).
        let waits: Vec<IndexId> = found
            .keys()
            .copied()
            .filter(|v| {
                cons.iter().any(|c| {
                    let scaled = c
                        .index
                        .terms
                        .iter()
                        .any(|(a, t)| *t == IndexTerm::Var(*v) && a.as_constant().is_none());
                    scaled
                        && c.index.terms.iter().any(|(_, t)| match t {
                            IndexTerm::Var(u) => {
                                u != v && !known.contains_key(u) && found.contains_key(u)
                            }
                            IndexTerm::Gather(..) => false,
                        })
                })
            })
            .collect();
        if waits.len() < found.len() {
            found.retain(|v, _| !waits.contains(v));
        }
        let mut found: Vec<_> = found.into_iter().collect();
        found.sort_by_key(|(v, _)| *v);
        for (v, cands) in found {
            let ((mut lo, mut hi), first) = (cands[0].0.clone(), cands[0].1);
            let width = hi.sub(&lo);
            let mut ok = true;
            for ((l, h), c) in &cands[1..] {
                if h.sub(l) != width {
                    let var = &ir.indices[v].name;
                    diags.push(
                        Diagnostic::error(
                            format!(
                                "index `{var}` runs over {} values in `{}` but {} values in `{}`",
                                width.add(&Poly::constant(1)).display(&names),
                                first.tensor.0,
                                h.sub(l).add(&Poly::constant(1)).display(&names),
                                c.tensor.0
                            ),
                            c.span,
                            format!(
                                "axis {} of `{}` is {}",
                                c.tensor.1,
                                c.tensor.0,
                                c.dim.display(&names)
                            ),
                        )
                        .with_secondary(
                            first.span,
                            format!(
                                "axis {} of `{}` is {}",
                                first.tensor.1,
                                first.tensor.0,
                                first.dim.display(&names)
                            ),
                        )
                        .with_note(
                            "use one dimension name for both, or give the sizes separate indices",
                        ),
                    );
                    ok = false;
                    break;
                }
                // Same width: the bounds differ by constants (shifts), so they compare.
                if l.sub(&lo).as_constant().is_some_and(|d| d > 0) {
                    lo = l.clone();
                }
                if h.sub(&hi).as_constant().is_some_and(|d| d < 0) {
                    hi = h.clone();
                }
            }
            if ok {
                known.insert(v, (lo, hi));
            } else {
                known.insert(v, (Poly::constant(0), Poly::constant(-1)));
            }
        }
    }
    for (v, var) in ir.indices.iter_mut_enumerated() {
        var.range = known.get(&v).cloned();
        if var.range.is_none() && !ir.graph.node_weights().all(|n| !mentions(&n.op, v)) {
            let mut d = Diagnostic::error(format!("cannot infer the range of index `{}`", var.name), var.span, "range unknown")
                .with_note(format!(
                    "use `{}` alone (or plus a constant) as a subscript of a declared tensor, or give it a range: `{} in 0..N`",
                    var.name, var.name
                ));
            let times_size = cons.iter().flat_map(|c| &c.index.terms).find_map(|(a, t)| {
                (*t == IndexTerm::Var(v) && a.as_constant().is_none()).then_some(a)
            });
            if let Some(size) = times_size {
                let size = size.display(&names);
                d = d.with_note(format!(
                    "`{}` is multiplied by `{size}`: its range follows from an axis only when the axis is a multiple of `{size}` (`[L * {size}]`, not `[N]`) and the other indices of the subscript have known ranges",
                    var.name
                ));
            }
            diags.push(d);
        }
    }
    diags
}

fn mentions(op: &Op, v: IndexId) -> bool {
    let mut vars = Vec::new();
    match op {
        Op::Read(_, idx) => idx.iter().for_each(|e| e.vars(&mut vars)),
        Op::IndexValue(e) => e.vars(&mut vars),
        Op::Reduce(_, bound) => vars.extend(bound),
        _ => {}
    }
    vars.contains(&v)
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::Source;

    fn ranges(src: &str) -> Result<Vec<(String, String)>, String> {
        let s = Source::new("t.loss", src);
        let checked = crate::sema::check(std::slice::from_ref(&s));
        if checked.has_errors() {
            return Err(checked.render(&[s]));
        }
        let ir = &checked.program.losses[0];
        let names = ir.dim_names();
        Ok(ir
            .indices
            .iter()
            .map(|v| {
                let (lo, hi) = v.range.clone().unwrap();
                (
                    v.name.clone(),
                    format!("{}..={}", lo.display(&names), hi.display(&names)),
                )
            })
            .collect())
    }

    #[test]
    fn shifts_narrow_the_range() {
        let r = ranges("loss l { input x : [B, 2 * K]\n compute norm(c in 0..2: x[t + 1, 2 * k + c] - x[t, 2 * k + c])\n reduce mean }").unwrap();
        assert!(r.contains(&("t".into(), "0..=B - 2".into())), "{r:?}");
        assert!(r.contains(&("k".into(), "0..=K - 1".into())), "{r:?}");
        assert!(r.contains(&("c".into(), "0..=1".into())), "{r:?}");
    }

    #[test]
    fn an_index_times_a_size_waits_for_the_other_indices_of_its_subscript() {
        // `n` alone in `y[n]` would run over N values, one too many for `xf`.
        let r = ranges("loss l { input xf : [N * M]\n input y : [N]\n input v : [M]\n compute sum(j: xf[(n + 1) * M + j] * v[j]) * y[n]\n reduce mean }").unwrap();
        assert!(r.contains(&("n".into(), "0..=N - 2".into())), "{r:?}");
    }

    #[test]
    fn a_size_times_an_index_divides_the_axis() {
        let r = ranges("loss l { input x : [B, L * K]\n input w : [K]\n compute sum(k: x[b, l * K + k] * w[k])\n reduce mean }").unwrap();
        assert!(r.contains(&("l".into(), "0..=L - 1".into())), "{r:?}");
        let r = ranges("loss l { input x : [L * K]\n input w : [K]\n compute sum(k: x[(L - 1 - l) * K + k] * w[k])\n reduce mean }").unwrap();
        assert!(r.contains(&("l".into(), "0..=L - 1".into())), "{r:?}");
        // Two symbols: rows of a flattened H·W grid.
        let r = ranges("loss l { input x : [H * W]\n input y : [W]\n compute sum(w: x[h * W + w] * y[w])\n reduce mean }").unwrap();
        assert!(r.contains(&("h".into(), "0..=H - 1".into())), "{r:?}");
    }

    #[test]
    fn reversed_subscripts_solve_too() {
        let r = ranges("loss l { input x : [N]\n compute x[N - 1 - i]\n reduce sum }").unwrap();
        assert_eq!(r, vec![("i".to_string(), "0..=N - 1".to_string())]);
    }

    #[test]
    fn mismatched_dimensions_are_an_error() {
        let e =
            ranges("loss l { input x : [K]\n input y : [M]\n compute x[k] * y[k]\n reduce sum }")
                .unwrap_err();
        assert!(
            e.contains("runs over K values in `x` but M values in `y`"),
            "{e}"
        );
    }

    #[test]
    fn an_index_only_in_a_product_cannot_be_inferred() {
        let e = ranges(
            "loss l { input x : [B, 2 * K]\n compute sum(c: x[b, 2 * k + c])\n reduce sum }",
        )
        .unwrap_err();
        assert!(e.contains("cannot infer the range of index"), "{e}");
    }
}
