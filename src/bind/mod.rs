//! Binding: arrays and param values meet a loss's declarations. Dimension symbols are
//! solved from the actual shapes (`[B, 2 * K]` with a 34-wide array gives K = 17), every
//! shape is checked against them, params are broadcast or checked, and every index
//! variable's symbolic range becomes a concrete one. Every failure is a [`BindError`]
//! that names the arrays involved.
//!
//! This layer sits below both back ends: the CPU evaluator ([`crate::eval`]) and the GPU
//! runtime ([`crate::gpu`]) read a [`Bound`] loss and return a [`LossValue`]; neither
//! knows where the arrays came from ([`crate::runtime`] reads data files).

pub mod error;
pub mod sizes;
mod solve;
pub mod value;

use crate::ir::{
    IndexId, InputId, LossIr, MaskId, ParamId, ParamInfo, ParamKind, ParamValue, Poly, TiSlice,
    TiVec,
};
pub use error::{BindError, OutOfRange, ParamProblem};
use solve::{Equation, solve_dims};
pub use value::{Array, DataValue};

/// A param's value before binding, with where it came from (for messages).
#[derive(Clone, Debug)]
pub enum ParamSource {
    /// From the data file or `--set`.
    Data(DataValue),
    /// From a factory setting or the declaration's default.
    Source(ParamValue),
}

/// A bound f32 tensor.
#[derive(Clone, Debug, Default)]
pub struct TensorData {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub data: Vec<f32>,
}

/// A loss's value and weight, as a back end computes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossValue {
    /// The reduced (unweighted) loss.
    pub loss: f32,
    /// The weight.
    pub weight: f32,
}

/// A loss with everything it reads bound to concrete values.
#[derive(Clone, Debug)]
pub struct Bound<'a> {
    /// The loss.
    pub ir: &'a LossIr,
    /// The value of every dimension symbol.
    pub dims: Vec<i64>,
    /// Every index variable's inclusive range `(lo, hi)`; empty when `hi < lo`.
    pub ranges: TiVec<IndexId, (i64, i64)>,
    /// Inputs, `None` when an optional one is absent (and has no default).
    pub inputs: TiVec<InputId, Option<TensorData>>,
    /// Whether each input is an absent optional one filled with its default: such
    /// arrays belong to their loss alone, not shared by name with other losses.
    pub defaulted: TiVec<InputId, bool>,
    /// Params (enum params hold an empty tensor; see `enums`).
    pub params: TiVec<ParamId, TensorData>,
    /// Enum params' values.
    pub enums: TiVec<ParamId, Option<String>>,
    /// Whether each `remove_nans` stage runs (its optional inputs are present).
    pub active_masks: TiVec<MaskId, bool>,
    /// The most values a back end may allocate for one table ([`sizes::value_limit`]).
    pub value_limit: usize,
}

/// Binds inputs and params (already resolved to one value each, `None` when absent).
pub fn bind<'a>(
    ir: &'a LossIr,
    inputs: &TiSlice<InputId, Option<&Array>>,
    params: &TiSlice<ParamId, Option<ParamSource>>,
) -> Result<Bound<'a>, BindError> {
    let names = ir.dim_names();
    if let Some(info) = ir
        .params
        .iter()
        .zip(params)
        .find_map(|(info, p)| p.is_none().then_some(info))
    {
        return Err(BindError::MissingParam {
            loss: ir.name.clone(),
            param: info.name.clone(),
        });
    }
    let mut eqs = Vec::new();
    for (info, arr) in ir.inputs.iter().zip(inputs) {
        let Some(arr) = arr else {
            if info.optional {
                // (One with a default is filled once the dimensions are known.)
                continue;
            }
            return Err(BindError::MissingInput {
                loss: ir.name.clone(),
                input: info.name.clone(),
                shape: show_shape(&info.shape, &names),
            });
        };
        if arr.shape.len() != info.shape.len() {
            return Err(BindError::InputRank {
                loss: ir.name.clone(),
                input: info.name.clone(),
                rank: info.shape.len(),
                shape: show_shape(&info.shape, &names),
                actual: arr.shape.clone(),
            });
        }
        let Some(n) = sizes::shape_values(&arr.shape) else {
            return Err(BindError::InputShapeTooLarge {
                loss: ir.name.clone(),
                input: info.name.clone(),
                shape: arr.shape.clone(),
            });
        };
        if arr.data.len() != n && !arr.data.is_empty() {
            return Err(BindError::InputLength {
                input: info.name.clone(),
                shape: arr.shape.clone(),
                needs: n,
                has: arr.data.len(),
            });
        }
        if info.int {
            check_whole(ir, info, arr)?;
        }
        for (axis, (p, n)) in info.shape.iter().zip(&arr.shape).enumerate() {
            eqs.push(Equation {
                poly: p.clone(),
                size: i64::try_from(*n).unwrap_or(i64::MAX),
                what: format!("axis {axis} of `{}`", info.name),
            });
        }
    }
    // Params given as arrays fix their dims too; ranges (`0..K`) wait for the dims.
    let mut deferred = Vec::new();
    for ((p, info), src) in ir.params.iter_enumerated().zip(params) {
        let shape = match &info.kind {
            ParamKind::Tensor(s) | ParamKind::Index(s) => s,
            _ => continue,
        };
        match src {
            Some(ParamSource::Data(DataValue::Array(a)))
                if !(a.shape.is_empty() && matches!(info.kind, ParamKind::Tensor(_))) =>
            {
                if a.shape.len() != shape.len() {
                    return Err(BindError::ParamRank {
                        loss: ir.name.clone(),
                        param: info.name.clone(),
                        rank: shape.len(),
                        shape: show_shape(shape, &names),
                        actual: a.shape.clone(),
                    });
                }
                for (axis, (d, n)) in shape.iter().zip(&a.shape).enumerate() {
                    eqs.push(Equation {
                        poly: d.clone(),
                        size: i64::try_from(*n).unwrap_or(i64::MAX),
                        what: format!("axis {axis} of param `{}`", info.name),
                    });
                }
            }
            Some(ParamSource::Source(ParamValue::List(v))) => {
                let [axis] = &shape[..] else {
                    return Err(list_for_tensor(ir, info, shape));
                };
                eqs.push(Equation {
                    poly: axis.clone(),
                    size: v.len() as i64,
                    what: format!("the length of param `{}`", info.name),
                });
            }
            Some(ParamSource::Source(ParamValue::Range(_, _))) => {
                // Sema refuses a range for a param not of one dimension; a program built
                // some other way gets the error, not a panic.
                if shape.len() != 1 {
                    return Err(list_for_tensor(ir, info, shape));
                }
                deferred.push(p)
            }
            _ => {}
        }
    }
    let mut dims: Vec<Option<i64>> = vec![None; ir.dims.len()];
    let mut origin: Vec<String> = vec![String::new(); ir.dims.len()];
    solve_dims(&eqs, &mut dims, &mut origin, &names, &ir.name)?;
    let mut eqs2 = Vec::new();
    for p in &deferred {
        let info = &ir.params[*p];
        let Some(ParamSource::Source(ParamValue::Range(lo, hi))) = &params[*p] else {
            continue;
        };
        let (Some(lo), Some(hi)) = (lo.eval(&dims), hi.eval(&dims)) else {
            return Err(BindError::RangeNeedsDims {
                loss: ir.name.clone(),
                param: info.name.clone(),
            });
        };
        if let ParamKind::Tensor(s) | ParamKind::Index(s) = &info.kind {
            let [axis] = &s[..] else {
                return Err(list_for_tensor(ir, info, s));
            };
            eqs2.push(Equation {
                poly: axis.clone(),
                size: hi.saturating_sub(lo).max(0),
                what: format!("the length of param `{}`", info.name),
            });
        }
    }
    solve_dims(&eqs2, &mut dims, &mut origin, &names, &ir.name)?;
    // A dimension that only absent optional inputs have is never used (their stages are
    // skipped): give it size 0. Not so for one with a default, which is bound and read
    // as if given: its dimensions must come from elsewhere.
    for (d, v) in dims.iter_mut().enumerate() {
        let has = |i: &crate::ir::InputInfo| i.shape.iter().any(|p| p.symbols().any(|s| s == d));
        let in_absent_only = ir
            .inputs
            .iter()
            .zip(inputs)
            .any(|(i, a)| a.is_none() && i.default.is_none() && has(i))
            && !ir
                .inputs
                .iter()
                .zip(inputs)
                .any(|(i, a)| (a.is_some() || i.default.is_some()) && has(i))
            && !ir.params.iter().any(|p| match &p.kind {
                ParamKind::Tensor(s) | ParamKind::Index(s) => {
                    s.iter().any(|p| p.symbols().any(|x| x == d))
                }
                _ => false,
            });
        if v.is_none() && in_absent_only {
            *v = Some(0);
        }
    }
    let dims: Vec<i64> = dims
        .iter()
        .enumerate()
        .map(|(d, v)| {
            v.ok_or_else(|| BindError::UnknownDim {
                loss: ir.name.clone(),
                dim: names[d].clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    // Sizes are i32 on the GPU; nothing real comes near, and a data file claiming more
    // (an empty array of shape [0, 10^12], say) must not make lossc allocate terabytes.
    if let Some((d, v)) = dims
        .iter()
        .enumerate()
        .find(|(_, v)| !(0..=i32::MAX as i64).contains(*v))
    {
        return Err(BindError::DimTooLarge {
            loss: ir.name.clone(),
            dim: names[d].clone(),
            value: *v,
        });
    }
    let known: Vec<Option<i64>> = dims.iter().copied().map(Some).collect();
    let value_limit = sizes::value_limit(sizes::data_values(
        inputs,
        params.iter().filter_map(|p| match p {
            Some(ParamSource::Data(DataValue::Array(a))) => Some(a),
            _ => None,
        }),
    ));

    let mut inputs_bound: TiVec<InputId, Option<TensorData>> = TiVec::new();
    let mut defaulted: TiVec<InputId, bool> = TiVec::new();
    for (info, a) in ir.inputs.iter().zip(inputs) {
        let filled = match (a, info.default) {
            (Some(a), _) => Some(TensorData {
                shape: a.shape.clone(),
                data: a.data.iter().map(|v| *v as f32).collect(),
            }),
            (None, Some(v)) => Some(fill_default(ir, info, v, &known, value_limit)?),
            (None, None) => None,
        };
        defaulted.push(a.is_none() && filled.is_some());
        inputs_bound.push(filled);
    }

    let mut params_bound = TiVec::new();
    let mut enums = TiVec::new();
    for (info, src) in ir.params.iter().zip(params) {
        let Some(src) = src else {
            return Err(BindError::MissingParam {
                loss: ir.name.clone(),
                param: info.name.clone(),
            });
        };
        let (t, e) = bind_param(ir, info, src, &known, value_limit)?;
        params_bound.push(t);
        enums.push(e);
    }
    let ranges = index_ranges(ir, &known)?;
    // A stage runs when every optional input it reads is bound (given, or defaulted).
    let active_masks: TiVec<MaskId, bool> = ir
        .masks
        .iter()
        .map(|m| m.needs.iter().all(|i| inputs_bound[*i].is_some()))
        .collect();
    let b = Bound {
        ir,
        dims,
        ranges,
        inputs: inputs_bound,
        defaulted,
        params: params_bound,
        enums,
        active_masks,
        value_limit,
    };
    check_subscripts(&b)?;
    check_top_counts(&b)?;
    Ok(b)
}

/// Every count of `sum_top` and `mean_top` (an `NthLargest`'s second operand, a closed
/// expression of numbers, scalar params and dimensions) is a whole number ≥ 0: known
/// now, so both back ends refuse a bad one before anything runs, at its source.
fn check_top_counts(b: &Bound) -> Result<(), BindError> {
    use crate::ir::{Op, ReduceFn, operands};
    let ir = b.ir;
    for n in ir.graph.node_indices() {
        if !matches!(ir.graph[n].op, Op::Reduce(ReduceFn::NthLargest, _)) {
            continue;
        }
        let count = operands(&ir.graph, n)[1];
        let v = closed_value(b, count).ok_or_else(|| BindError::TopCountNotClosed {
            loss: ir.name.clone(),
            at: ir.origin.locate(ir.graph[count].span),
        })?;
        if !(v >= 0.0 && v.fract() == 0.0) {
            return Err(BindError::TopCount {
                loss: ir.name.clone(),
                value: v,
                at: ir.origin.locate(ir.graph[count].span),
            });
        }
    }
    Ok(())
}

/// The value of a closed expression of constants, scalar params and dimensions, as the
/// back ends compute it (`None` for anything else).
fn closed_value(b: &Bound, n: petgraph::stable_graph::NodeIndex) -> Option<f32> {
    use crate::ir::{Op, Tensor, operands, scalar};
    let ir = b.ir;
    let args = operands(&ir.graph, n);
    let arg = |k: usize| closed_value(b, args[k]);
    Some(match &ir.graph[n].op {
        Op::Const(bits) => f32::from_bits(*bits),
        Op::BoolConst(v) => scalar::from_bool(*v),
        Op::Read(Tensor::Param(p), idx) if idx.is_empty() => *b.params[*p].data.first()?,
        Op::IndexValue(e) if e.terms.is_empty() => {
            let dims: Vec<Option<i64>> = b.dims.iter().copied().map(Some).collect();
            e.offset.eval(&dims)? as f32
        }
        Op::EnumIs(p, v) => scalar::from_bool(b.enums[*p].as_deref() == Some(v.as_str())),
        Op::Unary(f) => scalar::unary(*f, arg(0)?),
        Op::Binary(f) => scalar::binary(*f, arg(0)?, arg(1)?),
        Op::Select => {
            if arg(0)? != 0.0 {
                arg(1)?
            } else {
                arg(2)?
            }
        }
        Op::Clamp => scalar::clamp(arg(0)?, arg(1)?, arg(2)?),
        _ => return None,
    })
}

/// An `int` input's array: typed as integers (or untyped, from JSON), every value a
/// whole number f32 holds exactly.
fn check_whole(ir: &LossIr, info: &crate::ir::InputInfo, arr: &Array) -> Result<(), BindError> {
    if arr.typed_float {
        return Err(BindError::IntInputFloat {
            loss: ir.name.clone(),
            input: info.name.clone(),
        });
    }
    match arr.data.iter().position(|v| !crate::ir::is_exact_int(*v)) {
        Some(at) => Err(BindError::IntInputNotWhole {
            loss: ir.name.clone(),
            input: info.name.clone(),
            value: arr.data[at],
            at: value::unflatten(at, &arr.shape),
        }),
        None => Ok(()),
    }
}

/// An absent optional input's array: its declared shape (every dimension is known by
/// now), each element `value`.
fn fill_default(
    ir: &LossIr,
    info: &crate::ir::InputInfo,
    value: f32,
    known: &[Option<i64>],
    limit: usize,
) -> Result<TensorData, BindError> {
    let shape: Vec<i64> = info
        .shape
        .iter()
        .map(|p| p.eval(known).unwrap_or(i64::MAX))
        .collect();
    let sizes: Vec<usize> = shape
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(usize::MAX))
        .collect();
    match sizes::shape_values(&sizes) {
        Some(n) if n <= limit => Ok(TensorData {
            shape: sizes,
            data: vec![value; n],
        }),
        _ => Err(BindError::DefaultTooLarge {
            loss: ir.name.clone(),
            input: info.name.clone(),
            shape,
            values: sizes::show_values(&sizes),
            limit,
        }),
    }
}

/// Every index variable's range with the dimensions `known`, each checked
/// ([`sizes::check_ranges`]); a variable without a range is empty.
fn index_ranges(
    ir: &LossIr,
    known: &[Option<i64>],
) -> Result<TiVec<IndexId, (i64, i64)>, BindError> {
    // A bound that overflows is `None`, an error, rather than an empty range.
    let ranges: TiVec<IndexId, Option<(i64, i64)>> = ir
        .indices
        .iter()
        .map(|v| match &v.range {
            Some((lo, hi)) => Some((lo.eval(known)?, hi.eval(known)?)),
            None => Some((0, -1)),
        })
        .collect();
    sizes::check_ranges(ir, &ranges)?;
    Ok(ranges.into_iter().flatten().collect())
}

/// `b`'s data bound to `ir`, an IR that extends `b.ir` with nodes and index variables
/// of its own (an adjoint IR, `crate::ad`): the new variables' ranges are evaluated with
/// `b`'s dimensions. Its reads are `b.ir`'s, already checked.
pub fn rebind<'a>(b: &Bound, ir: &'a LossIr) -> Result<Bound<'a>, BindError> {
    rebind_with(b, ir, b.inputs.clone())
}

/// [`rebind`] with the inputs' shapes and not their elements: enough for a back end that
/// reads the elements where an earlier binding put them (a backward kernel reads its
/// forward kernel's arena).
pub fn rebind_shapes<'a>(b: &Bound, ir: &'a LossIr) -> Result<Bound<'a>, BindError> {
    let inputs = b
        .inputs
        .iter()
        .map(|d| {
            d.as_ref().map(|d| TensorData {
                shape: d.shape.clone(),
                data: vec![],
            })
        })
        .collect();
    rebind_with(b, ir, inputs)
}

fn rebind_with<'a>(
    b: &Bound,
    ir: &'a LossIr,
    inputs: TiVec<InputId, Option<TensorData>>,
) -> Result<Bound<'a>, BindError> {
    let known: Vec<Option<i64>> = b.dims.iter().copied().map(Some).collect();
    Ok(Bound {
        ir,
        dims: b.dims.clone(),
        ranges: index_ranges(ir, &known)?,
        inputs,
        defaulted: b.defaulted.clone(),
        params: b.params.clone(),
        enums: b.enums.clone(),
        active_masks: b.active_masks.clone(),
        value_limit: b.value_limit,
    })
}

/// Every affine subscript must stay inside its axis over the whole range of its indices
/// (inferred ranges guarantee it; explicit ranges and several-index subscripts are
/// checked here). Subscripts through gathers depend on data and are checked as they
/// are read.
fn check_subscripts(b: &Bound) -> Result<(), BindError> {
    use crate::ir::{IndexTerm, Op, Tensor};
    let known: Vec<Option<i64>> = b.dims.iter().copied().map(Some).collect();
    for n in b.ir.graph.node_indices() {
        let Op::Read(t, idx) = &b.ir.graph[n].op else {
            continue;
        };
        let (name, shape) = match t {
            Tensor::Input(i) => match &b.inputs[*i] {
                Some(d) => (&b.ir.inputs[*i].name, &d.shape),
                None => continue,
            },
            Tensor::Param(p) => (&b.ir.params[*p].name, &b.params[*p].shape),
        };
        for (axis, (e, size)) in idx.iter().zip(shape).enumerate() {
            if e.terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)))
            {
                continue;
            }
            let offset = e.offset.eval_saturating(&known).unwrap_or(0);
            let (mut lo, mut hi) = (offset, offset);
            let mut empty = false;
            for (c, term) in &e.terms {
                let IndexTerm::Var(v) = term else { continue };
                let (a, z) = b.ranges[*v];
                if z < a {
                    empty = true;
                }
                let c = c.eval_saturating(&known).unwrap_or(0);
                let (x, y) = (c.saturating_mul(a), c.saturating_mul(z));
                lo = lo.saturating_add(x.min(y));
                hi = hi.saturating_add(x.max(y));
            }
            if !empty && (lo < 0 || hi >= i64::try_from(*size).unwrap_or(i64::MAX)) {
                let bad = if lo < 0 { lo } else { hi };
                return Err(OutOfRange {
                    loss: b.ir.name.clone(),
                    index: bad,
                    axis,
                    tensor: name.clone(),
                    size: *size,
                    subscript: b.ir.show_subscripts(idx),
                    at: Some(b.ir.origin.locate(b.ir.graph[n].span)),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// A list or a range given for a param that is not of one dimension.
fn list_for_tensor(ir: &LossIr, info: &ParamInfo, shape: &[Poly]) -> BindError {
    BindError::ListForTensor {
        loss: ir.name.clone(),
        param: info.name.clone(),
        rank: shape.len(),
    }
}

fn show_shape(shape: &[Poly], names: &[String]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(|p| p.display(names).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn bind_param(
    ir: &LossIr,
    info: &ParamInfo,
    src: &ParamSource,
    dims: &[Option<i64>],
    value_limit: usize,
) -> Result<(TensorData, Option<String>), BindError> {
    let err = |problem: ParamProblem| {
        Err(BindError::Param {
            loss: ir.name.clone(),
            param: info.name.clone(),
            problem,
        })
    };
    let shape: Vec<usize> = match &info.kind {
        ParamKind::Tensor(s) | ParamKind::Index(s) => s
            .iter()
            .map(|p| p.eval(dims).unwrap_or(0).max(0) as usize)
            .collect(),
        _ => vec![],
    };
    // Counted before anything is made: a default broadcast over sizes that only an empty
    // array claims must not allocate gigabytes.
    let limit = value_limit.min(i32::MAX as usize);
    let Some(n) = sizes::shape_values(&shape).filter(|n| *n <= limit) else {
        return err(ParamProblem::TooLarge {
            values: sizes::show_values(&shape),
            shape,
            limit,
        });
    };
    if let ParamKind::Enum(variants) = &info.kind {
        let s = match src {
            ParamSource::Data(DataValue::Str(s)) | ParamSource::Source(ParamValue::Str(s)) => s,
            _ => {
                return err(ParamProblem::EnumExpected {
                    variants: quoted(variants),
                });
            }
        };
        if !variants.contains(s) {
            return err(ParamProblem::NotAVariant {
                value: s.clone(),
                variants: quoted(variants),
            });
        }
        return Ok((TensorData::default(), Some(s.clone())));
    }
    // Values as (shape, flat data).
    let (vshape, vdata): (Vec<usize>, Vec<f64>) = match src {
        ParamSource::Data(DataValue::Str(s)) | ParamSource::Source(ParamValue::Str(s)) => {
            return err(ParamProblem::StringForNumber { value: s.clone() });
        }
        ParamSource::Data(DataValue::Array(a)) => (a.shape.clone(), a.data.clone()),
        ParamSource::Source(ParamValue::Scalar(v)) => (vec![], vec![*v]),
        ParamSource::Source(ParamValue::List(v)) => (vec![v.len()], v.clone()),
        ParamSource::Source(ParamValue::Range(lo, hi)) => {
            let (lo, hi) = (lo.eval(dims).unwrap_or(0), hi.eval(dims).unwrap_or(0));
            let len = usize::try_from(hi.saturating_sub(lo)).unwrap_or(0);
            // The param's axis was solved from this length; any other is refused before
            // the range is made.
            if shape != [len] {
                return err(ParamProblem::Shape {
                    expected: shape,
                    actual: vec![len],
                });
            }
            (vec![len], (lo..hi).map(|v| v as f64).collect())
        }
    };
    let data: Vec<f32> = match &info.kind {
        ParamKind::Scalar => {
            if vdata.len() != 1 || !vshape.iter().all(|d| *d == 1) {
                return err(ParamProblem::NotScalar { shape: vshape });
            }
            vec![vdata[0] as f32]
        }
        ParamKind::Tensor(_) if vshape.is_empty() => match vdata[..] {
            [v] => vec![v as f32; n],
            _ => {
                return err(ParamProblem::NotScalar { shape: vshape });
            }
        },
        _ => {
            if vshape != shape || vdata.len() != n {
                return err(ParamProblem::Shape {
                    expected: shape,
                    actual: vshape,
                });
            }
            if matches!(info.kind, ParamKind::Index(_))
                && let Some(bad) = vdata.iter().find(|v| v.fract() != 0.0 || !v.is_finite())
            {
                return err(ParamProblem::NotWhole { value: *bad });
            }
            vdata.iter().map(|v| *v as f32).collect()
        }
    };
    Ok((
        TensorData {
            shape: if matches!(info.kind, ParamKind::Scalar) {
                vec![]
            } else {
                shape
            },
            data,
        },
        None,
    ))
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
