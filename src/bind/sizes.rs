//! How many values a bound loss may make lossc allocate. The arrays given are the only
//! measure of what a loss is for: a data file can claim any size for free (an empty array
//! of shape `[0, 2^31 - 1]` fixes a dimension at 2^31 - 1 with no values at all), so a
//! param filled from a default or a table of the CPU evaluator may hold at most
//! [`value_limit`] values, and every product of sizes is checked.

use super::{Array, BindError};
use crate::ir::{IndexId, InputId, LossIr, TiSlice, extent};

/// The fewest values lossc allows a param or a CPU table, whatever the arrays: 2^28
/// (1 GiB of f32), far beyond any loss's working set and small enough to allocate.
pub const VALUE_LIMIT_FLOOR: usize = 1 << 28;

/// The most values lossc allocates for one param or one table of the CPU evaluator, given
/// the number of values the arrays hold: the larger of the two.
pub fn value_limit(data_values: usize) -> usize {
    data_values.max(VALUE_LIMIT_FLOOR)
}

/// The number of values of a shape, `None` when it does not fit a `usize`. A zero
/// anywhere makes it 0, whatever the other sizes.
pub fn shape_values(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d))
}

/// The number of values of a shape, for a message: exact, or a bound past `u128`.
pub fn show_values(shape: &[usize]) -> String {
    if shape.contains(&0) {
        return "0".into();
    }
    match shape
        .iter()
        .try_fold(1u128, |a, d| a.checked_mul(*d as u128))
    {
        Some(n) => n.to_string(),
        None => "more than 2^128".into(),
    }
}

/// The values the arrays given hold: the data behind the inputs (on the host, or bound by
/// shape alone on a GPU) and the params' arrays.
pub fn data_values<'a>(
    inputs: &TiSlice<InputId, Option<&Array>>,
    param_arrays: impl Iterator<Item = &'a Array>,
) -> usize {
    inputs
        .iter()
        .flatten()
        .map(|a| shape_values(&a.shape).unwrap_or(usize::MAX))
        .chain(param_arrays.map(|a| a.data.len()))
        .fold(0, usize::saturating_add)
}

/// Every index variable's range, checked: bounds that overflow, or more values than the
/// kernels' 32-bit sizes hold, are an error naming the index (an explicit range
/// `0..B*B*B*B` would otherwise end empty, or loop for hours on the CPU).
pub fn check_ranges(
    ir: &LossIr,
    ranges: &TiSlice<IndexId, Option<(i64, i64)>>,
) -> Result<(), BindError> {
    for (var, range) in ir.indices.iter().zip(ranges) {
        let too_large = match range {
            None => Some("bounds that overflow 64-bit integers".to_string()),
            Some((lo, hi)) => (hi.saturating_sub(*lo) >= i32::MAX as i64)
                .then(|| format!("{} values ({lo}..={hi})", extent((*lo, *hi)))),
        };
        if let Some(range) = too_large {
            return Err(BindError::RangeTooLarge {
                loss: ir.name.clone(),
                index: var.name.clone(),
                range,
                at: ir.origin.locate(var.span),
            });
        }
    }
    Ok(())
}
