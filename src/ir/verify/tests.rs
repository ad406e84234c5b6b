//! The verifier accepts every example and catches each kind of broken IR, built by
//! hand from a clean loss.

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::*;
use crate::diagnostics::Source;
use crate::ir::{BinaryFn, IndexId, InputId, LossIr, MaskId, Op, Ty, UnaryFn};

const CLEAN: &str = "loss l {\n input x : [N]\n input y : [N]\n compute x[i] * 2 + exp(-y[i])\n \
                     remove_nans drop where isnan(x[i])\n reduce mean\n}\n";

/// `x[i] * 2 + exp(-y[i])`, with a mask on `isnan(x[i])`, checked and ranged.
fn clean() -> LossIr {
    let checked = crate::sema::check(&[Source::new("l.loss", CLEAN)]);
    assert!(!checked.has_errors());
    checked.program.losses.into_iter().next().unwrap()
}

/// The first node whose op satisfies `f`.
fn find(ir: &LossIr, f: impl Fn(&Op) -> bool) -> NodeIndex {
    ir.graph
        .node_indices()
        .find(|n| f(&ir.graph[*n].op))
        .expect("no such node")
}

fn violation(ir: &LossIr, stage: Stage) -> Violation {
    verify(ir, stage).expect_err("the broken IR verified").what
}

#[test]
fn every_example_verifies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut sources = Vec::new();
    for dir in [root.clone(), root.join("lightning_pose")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "loss") {
                let text = std::fs::read_to_string(&path).unwrap();
                sources.push(Source::new(path.display().to_string(), text));
            }
        }
    }
    let checked = crate::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    assert!(checked.program.losses.len() >= 12);
    for ir in &checked.program.losses {
        assert_eq!(verify(ir, Stage::Lowered), Ok(()));
        assert_eq!(verify(ir, Stage::Ranged), Ok(()));
    }
}

#[test]
fn a_missing_operand_is_caught() {
    let mut ir = clean();
    let add = find(&ir, |op| *op == Op::Binary(BinaryFn::Add));
    let edge = ir
        .graph
        .edges_directed(add, Direction::Incoming)
        .find(|e| *e.weight() == 1)
        .unwrap()
        .id();
    ir.graph.remove_edge(edge);
    let v = violation(&ir, Stage::Lowered);
    assert!(
        matches!(
            v,
            Violation::Arity {
                want: 2,
                got: 1,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn slots_with_a_gap_or_twice_the_same_are_caught() {
    let mut ir = clean();
    let mul = find(&ir, |op| *op == Op::Binary(BinaryFn::Mul));
    let edge = ir
        .graph
        .edges_directed(mul, Direction::Incoming)
        .find(|e| *e.weight() == 1)
        .unwrap()
        .id();
    ir.graph[edge] = 2;
    assert_eq!(violation(&ir, Stage::Lowered), Violation::Slots(vec![0, 2]));
    ir.graph[edge] = 0;
    assert_eq!(violation(&ir, Stage::Lowered), Violation::Slots(vec![0, 0]));
}

#[test]
fn a_truth_value_where_a_number_is_expected_is_caught() {
    let mut ir = clean();
    // The constant 2 of `x[i] * 2` becomes `true`.
    let two = find(&ir, |op| *op == Op::constant(2.0));
    ir.graph[two].op = Op::BoolConst(true);
    ir.graph[two].ty = Ty::Bool;
    let v = violation(&ir, Stage::Lowered);
    assert!(
        matches!(
            v,
            Violation::OperandType {
                slot: 1,
                want: Ty::Num,
                got: Ty::Bool,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn a_node_of_the_wrong_type_is_caught() {
    let mut ir = clean();
    let isnan = find(&ir, |op| *op == Op::Unary(UnaryFn::IsNan));
    ir.graph[isnan].ty = Ty::Num;
    let v = violation(&ir, Stage::Lowered);
    assert!(
        matches!(
            v,
            Violation::ResultType {
                want: Ty::Bool,
                got: Ty::Num,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn a_cycle_is_caught() {
    let mut ir = clean();
    // `exp(-y[i])` feeds its own negation.
    let neg = find(&ir, |op| *op == Op::Unary(UnaryFn::Neg));
    let exp = find(&ir, |op| *op == Op::Unary(UnaryFn::Exp));
    ir.graph.add_edge(exp, neg, 1);
    assert_eq!(violation(&ir, Stage::Lowered), Violation::Cycle);
}

#[test]
fn a_wrong_free_list_is_caught() {
    let mut ir = clean();
    let mul = find(&ir, |op| *op == Op::Binary(BinaryFn::Mul));
    let i = ir.graph[mul].free[0];
    ir.graph[mul].free.clear();
    assert_eq!(
        violation(&ir, Stage::Lowered),
        Violation::Free {
            want: vec![i],
            got: vec![]
        }
    );
    // Unsorted or repeated is wrong too.
    ir.graph[mul].free = vec![i, i];
    assert!(matches!(
        violation(&ir, Stage::Lowered),
        Violation::Free { .. }
    ));
}

#[test]
fn a_reduction_leaves_its_bound_indices_out() {
    let src = "loss l {\n input x : [N, K]\n compute sum(k: x[n, k])\n reduce mean\n}\n";
    let checked = crate::sema::check(&[Source::new("l.loss", src)]);
    let mut ir = checked.program.losses.into_iter().next().unwrap();
    let sum = find(&ir, |op| matches!(op, Op::Reduce(..)));
    let Op::Reduce(_, bound) = ir.graph[sum].op.clone() else {
        unreachable!()
    };
    ir.graph[sum].free.extend(&bound);
    ir.graph[sum].free.sort_unstable();
    assert!(matches!(
        violation(&ir, Stage::Lowered),
        Violation::Free { .. }
    ));
}

#[test]
fn a_missing_root_is_caught() {
    let mut ir = clean();
    let mask = ir.masks[MaskId::new(0)].cond;
    ir.graph.remove_node(mask);
    assert_eq!(
        violation(&ir, Stage::Lowered),
        Violation::MissingRoot("remove_nans")
    );
}

#[test]
fn an_unknown_range_is_caught_once_ranges_are_inferred() {
    let mut ir = clean();
    ir.indices[IndexId::new(0)].range = None;
    assert_eq!(verify(&ir, Stage::Lowered), Ok(()));
    assert_eq!(
        violation(&ir, Stage::Ranged),
        Violation::RangeUnknown("i".into())
    );
}

#[test]
fn a_read_with_the_wrong_rank_or_tensor_is_caught() {
    let mut ir = clean();
    let read = find(&ir, |op| matches!(op, Op::Read(..)));
    let Op::Read(t, idx) = ir.graph[read].op.clone() else {
        unreachable!()
    };
    ir.graph[read].op = Op::Read(t, vec![idx[0].clone(), idx[0].clone()]);
    assert!(matches!(
        violation(&ir, Stage::Lowered),
        Violation::Rank {
            rank: 1,
            subscripts: 2,
            ..
        }
    ));
    ir.graph[read].op = Op::Read(crate::ir::Tensor::Input(InputId::new(7)), idx);
    assert!(matches!(
        violation(&ir, Stage::Lowered),
        Violation::BadId(_)
    ));
}

#[test]
fn the_error_names_the_loss_and_the_place_and_asks_for_a_report() {
    let mut ir = clean();
    let isnan = find(&ir, |op| *op == Op::Unary(UnaryFn::IsNan));
    ir.graph[isnan].ty = Ty::Num;
    let e = verify(&ir, Stage::Lowered).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("internal compiler error in loss `l` at l.loss:5:"),
        "{text}"
    );
    assert!(text.contains("please report it"), "{text}");
    let d = e.to_diagnostic();
    assert!(d.is_error && d.primary.0 == ir.graph[isnan].span);
    let rendered = Source::new("l.loss", CLEAN).render(&[d]);
    assert!(rendered.starts_with("error: internal compiler error in loss `l` at l.loss:5:25"));
    assert!(rendered.contains("┌─ l.loss:5:25"), "{rendered}");
    assert!(rendered.contains(PLEASE_REPORT), "{rendered}");
}
