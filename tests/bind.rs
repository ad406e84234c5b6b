//! The binder and the CPU evaluator against values and sizes that no checked program or
//! sane data file gives: each is a typed error, never a panic or an allocation the data
//! does not call for.

use lossc::bind::{Array, BindError, ParamSource, bind};
use lossc::diagnostics::Source;
use lossc::ir::{LossIr, ParamKind};

/// The one loss of a source that checks clean.
fn loss(text: &str) -> LossIr {
    let sources = [Source::new("t.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program.losses.into_iter().next().unwrap()
}

/// Every param's default, as the runtime passes it when nothing else gives a value.
fn defaults(ir: &LossIr) -> Vec<Option<ParamSource>> {
    ir.params
        .iter()
        .map(|p| p.default.clone().map(ParamSource::Source))
        .collect()
}

fn array(shape: &[usize], data: &[f64]) -> Array {
    Array {
        shape: shape.to_vec(),
        data: data.to_vec(),
    }
}

/// A range default on a param of no dimension is refused by the checker; a program that
/// reaches the binder with one anyway (built by other means) gets an error, not an index
/// out of bounds.
#[test]
fn a_range_for_a_param_of_no_dimension_is_an_error() {
    let mut ir = loss(
        "loss l {\n input x : [B]\n param p : index[K] = 0..3\n compute x[b]\n reduce mean\n}\n",
    );
    ir.params[0].kind = ParamKind::Index(vec![]);
    let x = array(&[3], &[1.0, 2.0, 3.0]);
    let err = bind(&ir, &[Some(&x)], &defaults(&ir)).unwrap_err();
    assert!(
        matches!(&err, BindError::ListForTensor { param, rank: 0, .. } if param == "p"),
        "{err}"
    );
}
