//! The meaning of every element-wise operation on one f32 (truth values are 1.0 / 0.0).
//! Constant folding and the CPU evaluator both use these, so they cannot disagree; the
//! GPU back end mirrors them.

use super::{BinaryFn, UnaryFn};

/// Truth value → number.
pub fn from_bool(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

/// `f(x)`.
pub fn unary(f: UnaryFn, x: f32) -> f32 {
    match f {
        UnaryFn::Neg => -x,
        UnaryFn::Not => from_bool(x == 0.0),
        UnaryFn::Exp => x.exp(),
        UnaryFn::Log => x.ln(),
        UnaryFn::Sqrt => x.sqrt(),
        UnaryFn::Abs => x.abs(),
        // torch.relu propagates NaN.
        UnaryFn::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        UnaryFn::IsNan => from_bool(x.is_nan()),
    }
}

/// `f(a, b)`. `min`/`max` propagate NaN, as torch's do.
pub fn binary(f: BinaryFn, a: f32, b: f32) -> f32 {
    match f {
        BinaryFn::Add => a + b,
        BinaryFn::Sub => a - b,
        BinaryFn::Mul => a * b,
        BinaryFn::Div => a / b,
        BinaryFn::Pow => pow(a, b),
        BinaryFn::Min => nan_min(a, b),
        BinaryFn::Max => nan_max(a, b),
        BinaryFn::Eq => from_bool(a == b),
        BinaryFn::Ne => from_bool(a != b),
        BinaryFn::Lt => from_bool(a < b),
        BinaryFn::Le => from_bool(a <= b),
        BinaryFn::Gt => from_bool(a > b),
        BinaryFn::Ge => from_bool(a >= b),
        BinaryFn::And => from_bool(a != 0.0 && b != 0.0),
        BinaryFn::Or => from_bool(a != 0.0 || b != 0.0),
    }
}

/// `a ^ b`; a whole exponent 2 is an exact square, as `x ** 2` is in torch.
pub fn pow(a: f32, b: f32) -> f32 {
    if b == 2.0 { a * a } else { a.powf(b) }
}

/// NaN-propagating minimum.
pub fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// NaN-propagating maximum.
pub fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// `clamp(x, lo, hi)`, NaN-propagating (as `torch.clamp`).
pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    nan_min(nan_max(x, lo), hi)
}
