//! Constant folding: an element-wise node whose operands are all constants becomes a
//! constant, as does an index value that is a whole number. Dimension symbols are known
//! only when arrays are bound, so `H * W` stays symbolic.

use petgraph::algo::toposort;

use crate::ir::{LossIr, Op, Ty, detach_operands, operands, scalar};

/// Folds every constant sub-expression in place.
pub fn fold_constants(ir: &mut LossIr) {
    let order = toposort(&ir.graph, None).unwrap_or_default();
    for n in order {
        let args = operands(&ir.graph, n);
        let vals: Option<Vec<f32>> = args
            .iter()
            .map(|a| match ir.graph[*a].op {
                Op::Const(bits) => Some(f32::from_bits(bits)),
                Op::BoolConst(b) => Some(scalar::from_bool(b)),
                _ => None,
            })
            .collect();
        let folded = match (&ir.graph[n].op, vals) {
            (Op::IndexValue(e), _) if e.terms.is_empty() => {
                e.offset.as_constant().map(|c| c as f32)
            }
            (Op::Unary(f), Some(v)) => Some(scalar::unary(*f, v[0])),
            (Op::Binary(f), Some(v)) => Some(scalar::binary(*f, v[0], v[1])),
            (Op::Select, Some(v)) => Some(if v[0] != 0.0 { v[1] } else { v[2] }),
            (Op::Clamp, Some(v)) => Some(scalar::clamp(v[0], v[1], v[2])),
            _ => None,
        };
        if let Some(v) = folded {
            let node = &mut ir.graph[n];
            node.op = if node.ty == Ty::Bool {
                Op::BoolConst(v != 0.0)
            } else {
                Op::constant(v)
            };
            detach_operands(&mut ir.graph, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::Source;
    use crate::ir::Op;

    #[test]
    fn folds_constant_arithmetic_but_not_params() {
        let src = "loss l { input x : [N]\n param a = 1.0\n compute x[i] * (2 * 3 + 1) + a * (1 + 1)\n reduce sum }";
        let checked = crate::sema::check(&[Source::new("l.loss", src)]);
        assert!(!checked.has_errors());
        let ir = &checked.program.losses[0];
        let consts: Vec<f32> = ir
            .graph
            .node_weights()
            .filter_map(|n| match n.op {
                Op::Const(b) => Some(f32::from_bits(b)),
                _ => None,
            })
            .collect();
        // 2 * 3 + 1 folds to 7 and 1 + 1 to 2; dead intermediate constants are removed.
        assert!(consts.contains(&7.0) && consts.contains(&2.0), "{consts:?}");
        assert!(
            !consts.contains(&3.0) && !consts.contains(&6.0),
            "{consts:?}"
        );
        assert!(
            ir.graph
                .node_weights()
                .any(|n| matches!(n.op, Op::Read(crate::ir::Tensor::Param(_), _)))
        );
    }
}
