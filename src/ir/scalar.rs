//! The meaning of every element-wise operation on one f32 (truth values are 1.0 / 0.0).
//! Constant folding and the CPU evaluator both use these, so they cannot disagree; the
//! GPU back end mirrors them.

use super::{BinaryFn, UnaryFn, special};

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
        UnaryFn::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        _ => transcendental(f, x as f64) as f32,
    }
}

/// The transcendental functions (`log1p` to `trigamma`) in f64: their f32 result is this
/// rounded once.
pub fn transcendental(f: UnaryFn, x: f64) -> f64 {
    match f {
        UnaryFn::Log1p => x.ln_1p(),
        UnaryFn::Expm1 => x.exp_m1(),
        // torch.nn.functional.softplus with beta 1: x itself above the threshold 20.
        UnaryFn::Softplus => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        UnaryFn::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        // log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), finite for every finite x.
        UnaryFn::LogSigmoid => x.min(0.0) - (-x.abs()).exp().ln_1p(),
        UnaryFn::Tanh => x.tanh(),
        UnaryFn::Sin => x.sin(),
        UnaryFn::Cos => x.cos(),
        UnaryFn::Atan => x.atan(),
        UnaryFn::Erf => special::erf(x),
        UnaryFn::Lgamma => special::lgamma(x),
        UnaryFn::Digamma => special::digamma(x),
        UnaryFn::Trigamma => special::trigamma(x),
        _ => unreachable!("{f:?} is computed in f32"),
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
        BinaryFn::Atan2 => (a as f64).atan2(b as f64) as f32,
        BinaryFn::Xlogy => xlogy(a, b),
    }
}

/// torch.special.xlogy: `x · log(y)`, 0 where x = 0 unless y is NaN.
pub fn xlogy(x: f32, y: f32) -> f32 {
    xlogy_f64(x as f64, y as f64) as f32
}

/// [`xlogy`] in f64.
pub fn xlogy_f64(x: f64, y: f64) -> f64 {
    if y.is_nan() {
        f64::NAN
    } else if x == 0.0 {
        0.0
    } else {
        x * y.ln()
    }
}

/// `a ^ b`: C's `pow` (C99 Annex F.9.4.4), each special case decided here rather than
/// left to the platform's libm, so that the GPU's `lc_pow` (shaders/prelude.wgsl) can
/// follow the same steps; `powf` only sees a finite base other than 0 and ±1 and a
/// finite exponent other than 0. A whole exponent 2 is an exact square, as `x ** 2` is in
/// torch (and as C's correctly rounded `pow` would give).
pub fn pow(a: f32, b: f32) -> f32 {
    if b == 2.0 {
        return a * a;
    }
    // x ^ ±0 = 1 and 1 ^ y = 1, even for a NaN.
    if b == 0.0 || a == 1.0 {
        return 1.0;
    }
    if a.is_nan() || b.is_nan() {
        return f32::NAN;
    }
    if b.is_infinite() {
        let m = a.abs();
        return if m == 1.0 {
            1.0
        } else if (m < 1.0) == (b < 0.0) {
            f32::INFINITY
        } else {
            0.0
        };
    }
    let odd = is_odd_integer(b);
    if a == 0.0 {
        // ±0: the sign survives only an odd exponent.
        return match (b < 0.0, odd) {
            (true, true) => f32::INFINITY.copysign(a),
            (true, false) => f32::INFINITY,
            (false, true) => a,
            (false, false) => 0.0,
        };
    }
    if a.is_infinite() {
        let m = if b < 0.0 { 0.0 } else { f32::INFINITY };
        return if a < 0.0 && odd { -m } else { m };
    }
    if a < 0.0 {
        if b != b.floor() {
            return f32::NAN;
        }
        let m = (-a).powf(b);
        return if odd { -m } else { m };
    }
    a.powf(b)
}

/// Whether finite `b` is an odd whole number (every f32 of magnitude 2^24 or more is even).
pub fn is_odd_integer(b: f32) -> bool {
    b.abs() < 16_777_216.0 && b == b.floor() && (b as i32) % 2 != 0
}

/// The median from its two middle values `lo <= hi` (the same value twice for an odd
/// count), neither NaN: docs/language.md states the rule. Two equal values give that
/// value (so a middle ±inf stays ±inf); otherwise torch.lerp's `hi - (hi - lo) · 0.5`,
/// bit for bit torch.quantile's, while `hi - lo` is finite; with an infinite middle value
/// (or a difference past f32's range) `lo · 0.5 + hi · 0.5`, the midpoint where torch's
/// formula gives NaN or the wrong infinity. A zero median is +0, whatever the zeros'
/// signs and order. The GPU's `lc_median_of` (shaders/prelude.wgsl) is the same.
pub fn median_of(lo: f32, hi: f32) -> f32 {
    let m = if lo == hi {
        lo
    } else if (hi - lo).is_finite() {
        hi - (hi - lo) * 0.5
    } else {
        lo * 0.5 + hi * 0.5
    };
    if m == 0.0 { 0.0 } else { m }
}

/// NaN-propagating minimum.
pub fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// A value's place in the order `sum_top` ranks by: increasing with the value, -0
/// just below +0, every NaN above +inf (NaN counts as the largest value, as in
/// torch.topk). The GPU's `lc_key` (shaders/prelude.wgsl) is the same.
pub fn order_key(x: f32) -> u32 {
    if x.is_nan() {
        u32::MAX
    } else if x.is_sign_negative() {
        !x.to_bits()
    } else {
        x.to_bits() | 0x8000_0000
    }
}

/// The value whose [`order_key`] is `key` (NaN for the key of NaN).
pub fn from_order_key(key: u32) -> f32 {
    if key == u32::MAX {
        f32::NAN
    } else if key & 0x8000_0000 != 0 {
        f32::from_bits(key & 0x7fff_ffff)
    } else {
        f32::from_bits(!key)
    }
}

/// The k-th largest of `items` in [`order_key`]'s order, k = `count` clamped to
/// 1..=len (ties count as separate values); -inf for no items.
pub fn nth_largest(items: &[f32], count: f32) -> f32 {
    if items.is_empty() {
        return f32::NEG_INFINITY;
    }
    let k = if count.is_nan() || count < 1.0 {
        1
    } else {
        (count.min(items.len() as f32) as usize).clamp(1, items.len())
    };
    let mut keys: Vec<u32> = items.iter().map(|x| order_key(*x)).collect();
    let (_, kth, _) = keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    from_order_key(*kth)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_key_orders_every_value_and_nan_last() {
        let xs = [
            f32::NEG_INFINITY,
            -3.0,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            1e-45,
            2.5,
            f32::INFINITY,
            f32::NAN,
        ];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) < order_key(w[1]), "{w:?}");
        }
        for x in &xs[..8] {
            assert_eq!(from_order_key(order_key(*x)).to_bits(), x.to_bits());
        }
        assert!(from_order_key(order_key(-f32::NAN)).is_nan());
    }

    #[test]
    fn the_nth_largest_counts_ties_and_clamps_its_count() {
        let xs = [3.0, 1.0, 3.0, 2.0];
        assert_eq!(nth_largest(&xs, 1.0), 3.0);
        assert_eq!(nth_largest(&xs, 2.0), 3.0);
        assert_eq!(nth_largest(&xs, 3.0), 2.0);
        assert_eq!(nth_largest(&xs, 9.0), 1.0);
        assert_eq!(nth_largest(&xs, 0.0), 3.0);
        assert!(nth_largest(&[1.0, f32::NAN], 1.0).is_nan());
        assert_eq!(nth_largest(&[1.0, f32::NAN], 2.0), 1.0);
        assert_eq!(nth_largest(&[], 1.0), f32::NEG_INFINITY);
    }
}
