//! The binder and the CPU evaluator against values and sizes that no checked program or
//! sane data file gives: each is a typed error, never a panic or an allocation the data
//! does not call for.

use lossc::bind::sizes::VALUE_LIMIT_FLOOR;
use lossc::bind::{Array, BindError, ParamProblem, ParamSource, bind};
use lossc::diagnostics::Source;
use lossc::eval::EvalError;
use lossc::ir::{InputId, LossIr, ParamId, ParamKind, TiSlice, TiVec};

/// The one loss of a source that checks clean.
fn loss(text: &str) -> LossIr {
    let sources = [Source::new("t.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program.losses.into_iter().next().unwrap()
}

/// Every param's default, as the runtime passes it when nothing else gives a value.
fn defaults(ir: &LossIr) -> TiVec<ParamId, Option<ParamSource>> {
    ir.params
        .iter()
        .map(|p| p.default.clone().map(ParamSource::Source))
        .collect()
}

/// Arrays for a loss's inputs, in declaration order.
fn inputs<'a, 'b>(arrays: &'b [Option<&'a Array>]) -> &'b TiSlice<InputId, Option<&'a Array>> {
    TiSlice::from_ref(arrays)
}

fn array(shape: &[usize], data: &[f64]) -> Array {
    Array {
        shape: shape.to_vec(),
        data: data.to_vec(),
        typed_float: true,
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
    ir.params[ParamId::new(0)].kind = ParamKind::Index(vec![]);
    let x = array(&[3], &[1.0, 2.0, 3.0]);
    let err = bind(&ir, inputs(&[Some(&x)]), &defaults(&ir)).unwrap_err();
    assert!(
        matches!(&err, BindError::ListForTensor { param, rank: 0, .. } if param == "p"),
        "{err}"
    );
}

/// `sum(z: x[a, b, c, z])` on an empty array of shape `[2^21, 2^21, 2^21, 0]`: the domain
/// would hold 2^63 values (it overflowed `Vec::with_capacity`); a typed error names it.
#[test]
fn a_domain_that_only_an_empty_array_claims_is_refused() {
    let ir =
        loss("loss l {\n input x : [A, B, C, Z]\n compute sum(z: x[a, b, c, z])\n reduce sum\n}\n");
    let x = array(&[1 << 21, 1 << 21, 1 << 21, 0], &[]);
    let bound = bind(&ir, inputs(&[Some(&x)]), &TiVec::new()).unwrap();
    let err = lossc::eval::evaluate(&bound).unwrap_err();
    assert!(
        matches!(&err, EvalError::TooManyValues { what, sizes, .. }
            if *what == "the domain" && sizes == &[1 << 21, 1 << 21, 1 << 21]),
        "{err}"
    );
    assert!(
        err.to_string().contains("9223372036854775808 values"),
        "{err}"
    );
}

/// An inner reduction's table over `(a, b, c)` of 2^42 values, with a domain of one.
#[test]
fn a_reduction_table_that_only_an_empty_array_claims_is_refused() {
    let ir = loss(
        "loss l {\n input x : [A, B, C, Z]\n compute max(a: max(b: sum(z: x[a, b, c, z])))\n reduce sum\n}\n",
    );
    let x = array(&[1 << 21, 1 << 21, 1, 0], &[]);
    let bound = bind(&ir, inputs(&[Some(&x)]), &TiVec::new()).unwrap();
    let err = lossc::eval::evaluate(&bound).unwrap_err();
    assert!(
        matches!(&err, EvalError::TooManyValues { what, limit, at, .. }
            if *what == "the reduction" && *limit == VALUE_LIMIT_FLOOR && at == "t.loss:3:24"),
        "{err}"
    );
    assert!(err.to_string().contains("4398046511104 values"), "{err}");
}

/// A range default and a broadcast default over a dimension of 2^31 - 1 that only an
/// empty array fixes: 16 GiB of values before; now an error before anything is made.
#[test]
fn params_over_sizes_only_an_empty_array_claims_are_refused() {
    let x = array(&[0, (1 << 31) - 1], &[]);
    for param in ["index[K] = 0..K", "[K] = 1.0"] {
        let ir = loss(&format!(
            "loss l {{\n input x : [B, K]\n param p : {param}\n compute x[b, k] * p[k]\n reduce sum\n}}\n"
        ));
        let err = bind(&ir, inputs(&[Some(&x)]), &defaults(&ir)).unwrap_err();
        assert!(
            matches!(&err, BindError::Param { param, problem: ParamProblem::TooLarge { values, limit, .. }, .. }
                if param == "p" && values == "2147483647" && *limit == VALUE_LIMIT_FLOOR),
            "{param}: {err}"
        );
    }
}

/// The data sets the limit: a param as large as the values given is fine.
#[test]
fn params_as_large_as_the_data_are_bound() {
    let ir = loss(
        "loss l {\n input x : [B, K]\n param p : index[K] = 0..K\n param w : [B, K] = 2.0\n compute x[b, p[k]] * w[b, k]\n reduce sum\n}\n",
    );
    let x = array(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let bound = bind(&ir, inputs(&[Some(&x)]), &defaults(&ir)).unwrap();
    assert_eq!(bound.params[ParamId::new(0)].data, vec![0.0, 1.0, 2.0]);
    let v = lossc::eval::evaluate(&bound).unwrap();
    assert_eq!(v.loss, 42.0);
}

/// An array whose shape cannot be counted (no such array exists) is an error, not an
/// overflowing product.
#[test]
fn an_input_shape_past_usize_is_an_error() {
    let ir = loss("loss l {\n input x : [A, B, C]\n compute x[a, b, c]\n reduce sum\n}\n");
    let x = array(&[1 << 40, 1 << 40, 1 << 40], &[]);
    let err = bind(&ir, inputs(&[Some(&x)]), &TiVec::new()).unwrap_err();
    assert!(
        matches!(&err, BindError::InputShapeTooLarge { input, .. } if input == "x"),
        "{err}"
    );
}

/// An explicit range past 2^31 - 1 values, or whose bounds overflow, names the index;
/// before, an overflowing bound made the range silently empty.
#[test]
fn index_ranges_past_32_bits_are_errors() {
    let x = array(&[100_000], &[]);
    for (range, says) in [
        ("0..3000000000", "3000000000 values (0..=2999999999)"),
        ("0..B*B*B*B*B", "bounds that overflow"),
    ] {
        let ir = loss(&format!(
            "loss l {{\n input x : [B]\n compute x[b] + sum(i in {range}: i)\n reduce sum\n}}\n"
        ));
        let err = bind(&ir, inputs(&[Some(&x)]), &TiVec::new()).unwrap_err();
        assert!(
            matches!(&err, BindError::RangeTooLarge { index, range, at, .. }
                if index == "i" && range.contains(says) && at == "t.loss:3:21"),
            "{err}"
        );
    }
}

/// A subscript offset that overflows (`B^5` on B = 100 000) is out of range; it used to
/// evaluate as 0 and read `y[0]`.
#[test]
fn an_overflowing_subscript_offset_is_out_of_range() {
    let ir = loss(
        "loss l {\n input x : [B]\n input y : [N]\n compute x[b] + sum(j in 0..1: y[B*B*B*B*B + j])\n reduce sum\n}\n",
    );
    let x = array(&[100_000], &[]);
    let y = array(&[1], &[1.0]);
    let err = bind(&ir, inputs(&[Some(&x), Some(&y)]), &TiVec::new()).unwrap_err();
    assert!(
        matches!(&err, BindError::SubscriptOutOfRange(o) if o.index == i64::MAX && o.tensor == "y"),
        "{err}"
    );
}

/// Axis sizes past `i64` (an empty array may claim them) solve to an error, never to a
/// wrapped negative size or an overflow in the solver.
#[test]
fn axis_sizes_past_i64_are_errors() {
    let huge = array(&[usize::MAX, 0], &[]);
    for shape in ["[K, Z]", "[2 * K, Z]", "[N - K, Z]"] {
        let ir = loss(&format!(
            "loss l {{\n input x : {shape}\n input y : [N]\n compute x[k, z] + y[n]\n reduce sum\n}}\n"
        ));
        let y = array(&[1], &[1.0]);
        let err = bind(&ir, inputs(&[Some(&huge), Some(&y)]), &TiVec::new()).unwrap_err();
        assert!(
            matches!(
                err,
                BindError::DimTooLarge { .. } | BindError::NoWholeDim { .. }
            ),
            "{shape}: {err}"
        );
    }
}
