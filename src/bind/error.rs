//! Why arrays and values could not be bound to a loss. Every variant names the loss and
//! the input or param involved, so that the message says which array to fix.

use thiserror::Error;

/// A binding failure.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum BindError {
    /// A param without a default was given no value.
    #[error("loss `{loss}`: missing param `{param}` (it has no default)")]
    MissingParam { loss: String, param: String },
    /// A required input was not given.
    #[error("loss `{loss}`: missing input `{input}` of shape {shape}")]
    MissingInput {
        loss: String,
        input: String,
        shape: String,
    },
    /// An input's array has the wrong number of dimensions.
    #[error(
        "loss `{loss}`: input `{input}` should have {rank} dimensions ({shape}), but the array has shape {actual:?}"
    )]
    InputRank {
        loss: String,
        input: String,
        rank: usize,
        shape: String,
        actual: Vec<usize>,
    },
    /// An input's shape and its number of values disagree.
    #[error("input `{input}`: shape {shape:?} needs {needs} values, the array has {has}")]
    InputLength {
        input: String,
        shape: Vec<usize>,
        needs: usize,
        has: usize,
    },
    /// A count of `sum_top` or `mean_top` that is not a whole number ≥ 0.
    #[error(
        "loss `{loss}`: the count of `sum_top` or `mean_top` is {value}, not a whole number 0 or more (at {at})"
    )]
    TopCount {
        loss: String,
        value: f32,
        at: String,
    },
    /// A count of `sum_top` or `mean_top` the binder cannot evaluate (sema refuses
    /// one that reads anything but scalar params and dimensions).
    #[error(
        "loss `{loss}`: the count of `sum_top` or `mean_top` at {at} is not built from numbers, scalar params and dimensions"
    )]
    TopCountNotClosed { loss: String, at: String },
    /// An `int` input given a float array.
    #[error(
        "loss `{loss}`: input `{input}` is declared `int`, but its array holds floating-point numbers: give an integer array (np.int64, torch.long, ...)"
    )]
    IntInputFloat { loss: String, input: String },
    /// An `int` input given a value that is not a whole number f32 holds exactly.
    #[error(
        "loss `{loss}`: input `{input}` is declared `int`, but its element {at:?} is {value}, not a whole number within ±2^24 (16777216)"
    )]
    IntInputNotWhole {
        loss: String,
        input: String,
        value: f64,
        at: Vec<usize>,
    },
    /// A param's array has the wrong number of dimensions.
    #[error(
        "loss `{loss}`: param `{param}` should have {rank} dimensions ({shape}), but the value has shape {actual:?}"
    )]
    ParamRank {
        loss: String,
        param: String,
        rank: usize,
        shape: String,
        actual: Vec<usize>,
    },
    /// A list or a range was given for a param that is not of one dimension.
    #[error(
        "loss `{loss}`: param `{param}` has {rank} dimensions; a list or a range fills only a param of one"
    )]
    ListForTensor {
        loss: String,
        param: String,
        rank: usize,
    },
    /// A param's value is unusable (see [`ParamProblem`]).
    #[error("loss `{loss}`: param `{param}` {problem}")]
    Param {
        loss: String,
        param: String,
        problem: ParamProblem,
    },
    /// A range default (`0..K`) needs a dimension that no input fixes.
    #[error("loss `{loss}`: the default of param `{param}` needs dimensions that no input fixes")]
    RangeNeedsDims { loss: String, param: String },
    /// No input or param fixes a dimension symbol.
    #[error(
        "loss `{loss}`: cannot tell the size of `{dim}`: no input or param given has it in its shape"
    )]
    UnknownDim { loss: String, dim: String },
    /// A dimension beyond the kernels' 32-bit sizes.
    #[error("loss `{loss}`: `{dim}` = {value} is larger than lossc supports (2^31 - 1)")]
    DimTooLarge {
        loss: String,
        dim: String,
        value: i64,
    },
    /// An absent optional input's default would fill more values than lossc allocates.
    #[error(
        "loss `{loss}`: input `{input}` is absent, and filling its shape {shape:?} with its default would take {values} values; at most {limit} are allocated (give the input, or a smaller shape)"
    )]
    DefaultTooLarge {
        loss: String,
        input: String,
        shape: Vec<i64>,
        values: String,
        limit: usize,
    },
    /// An input's shape holds more values than a `usize` counts: no such array exists.
    #[error(
        "loss `{loss}`: input `{input}` has shape {shape:?}, which holds more values than this machine can address"
    )]
    InputShapeTooLarge {
        loss: String,
        input: String,
        shape: Vec<usize>,
    },
    /// An index variable's range has more values than the kernels' 32-bit sizes hold, or
    /// bounds that overflow.
    #[error(
        "loss `{loss}`: index `{index}` has {range}; lossc supports at most 2^31 - 1 values per index (at {at})"
    )]
    RangeTooLarge {
        loss: String,
        index: String,
        /// `"N values (lo..=hi)"`, or why it has no count.
        range: String,
        /// `file:line:col` of the index's binder.
        at: String,
    },
    /// A size that no whole value of a dimension symbol gives (`2 * K` = 35).
    #[error("loss `{loss}`: {what} is {size}, which is not {shape} for any whole {dim}")]
    NoWholeDim {
        loss: String,
        what: String,
        size: i64,
        shape: String,
        dim: String,
    },
    /// A size that contradicts dimensions solved from other arrays.
    #[error("loss `{loss}`: {what} is {size}, but it should be {should}{since}")]
    SizeMismatch {
        loss: String,
        what: String,
        size: i64,
        should: String,
        /// `", since K = 17 (from ...)"`, or empty.
        since: String,
    },
    /// An affine subscript leaves its axis somewhere in its index ranges.
    #[error(transparent)]
    SubscriptOutOfRange(Box<OutOfRange>),
}

impl From<OutOfRange> for BindError {
    fn from(e: OutOfRange) -> BindError {
        BindError::SubscriptOutOfRange(Box::new(e))
    }
}

/// A read that leaves its axis: checked over whole index ranges by the binder, and
/// through gathers (whose values are data) by each back end as it reads.
#[derive(Clone, Debug, PartialEq, Error)]
#[error(
    "loss `{loss}`: index {index} is out of range for axis {axis} of `{tensor}` (size {size}), at `{tensor}[{subscript}]`{}",
    at.as_ref().map(|a| format!(" (at {a})")).unwrap_or_default()
)]
pub struct OutOfRange {
    /// The loss.
    pub loss: String,
    /// The index the read would take.
    pub index: i64,
    /// The axis it leaves.
    pub axis: usize,
    /// The input or param read.
    pub tensor: String,
    /// The axis's size.
    pub size: usize,
    /// The read's subscripts in source form.
    pub subscript: String,
    /// `file:line:col` of the read, when the message gives it.
    pub at: Option<String>,
}

/// What is wrong with a param's value.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ParamProblem {
    /// Its shape holds more values than lossc allocates for the arrays given (see
    /// [`super::sizes::value_limit`]) or than the kernels index.
    #[error(
        "would hold {values} values (shape {shape:?}), more than lossc allocates for the arrays given (at most {limit}: the larger of 2^28 and the number of values they hold, and never over 2^31 - 1)"
    )]
    TooLarge {
        shape: Vec<usize>,
        /// The count, or a bound when it is past `u128`.
        values: String,
        limit: usize,
    },
    /// An enum param was given something other than a string.
    #[error("takes one of {variants}")]
    EnumExpected { variants: String },
    /// An enum param was given a string that is not one of its variants.
    #[error("is \"{value}\", which is not one of {variants}")]
    NotAVariant { value: String, variants: String },
    /// A numeric param was given a string.
    #[error("takes a number, not the string \"{value}\"")]
    StringForNumber { value: String },
    /// A scalar param was given an array.
    #[error("is a scalar, but the value has shape {shape:?}")]
    NotScalar { shape: Vec<usize> },
    /// A tensor param was given an array of another shape.
    #[error("should have shape {expected:?}, but the value has shape {actual:?}")]
    Shape {
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// An index param holds a value that is not a whole number.
    #[error("is an index list, but holds {value}, which is not a whole number")]
    NotWhole { value: f64 },
}
