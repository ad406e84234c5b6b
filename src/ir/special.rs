//! The special functions of the language in f64, for the CPU evaluator: each f32 result
//! is the f64 value rounded once, which keeps it within an ulp or so of the true value
//! (and of PyTorch's, which is what the reference vectors in `tests/reference/` check).
//! erf and lgamma come from `libm` (musl's, error under an ulp of f64); digamma and
//! trigamma are written here, by recurrence, reflection and the asymptotic series, with
//! PyTorch's choices at the poles.

use std::f64::consts::PI;

/// `x · π` reduced to `(t, sign)`: `sin(π x) = sign · sin(π t)` and
/// `cos(π x) = sign · cos(π t)` with `t` in [-0.5, 0.5], exactly (subtracting a whole
/// number from an f64 is exact here), so that values near the poles keep their precision.
fn half_turns(x: f64) -> (f64, f64) {
    let n = x.round();
    let t = x - n;
    let sign = if n.rem_euclid(2.0) == 0.0 { 1.0 } else { -1.0 };
    (t, sign)
}

/// `sin(π x)`, exact at whole numbers.
pub fn sin_pi(x: f64) -> f64 {
    let (t, s) = half_turns(x);
    s * (PI * t).sin()
}

/// `π / tan(π x)`, with the period taken out exactly before multiplying by π.
fn pi_cot_pi(x: f64) -> f64 {
    let (t, _) = half_turns(x);
    PI / (PI * t).tan()
}

/// log |Γ(x)|: +inf at the poles (0 and the negative whole numbers) and at ±inf.
pub fn lgamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// The error function.
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// ψ(x) = Γ'(x)/Γ(x), as torch.digamma: -inf at +0 and +inf at -0, NaN at the negative
/// whole numbers and at -inf, +inf at +inf.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::INFINITY.copysign(-x);
    }
    if x < 0.0 {
        if x == x.trunc() {
            return f64::NAN;
        }
        // ψ(x) = ψ(1 - x) - π / tan(π x)
        return digamma(1.0 - x) - pi_cot_pi(x);
    }
    let mut x = x;
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    // ln x - 1/(2x) - Σ B_2k / (2k x^2k), k = 1..7 (x >= 10: the next term is < 1e-20).
    const C: [f64; 7] = [
        1.0 / 12.0,
        -1.0 / 120.0,
        1.0 / 252.0,
        -1.0 / 240.0,
        1.0 / 132.0,
        -691.0 / 32760.0,
        1.0 / 12.0,
    ];
    let z = 1.0 / (x * x);
    let series = C.iter().rev().fold(0.0, |s, c| s * z + c) * z;
    acc + x.ln() - 0.5 / x - series
}

/// ψ'(x), the derivative of [`digamma`]: +inf at the poles (0 and the negative whole
/// numbers, where torch's trigamma gives +inf too), 0 at +inf, NaN at -inf.
pub fn trigamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return 0.0;
    }
    if x <= 0.0 && x == x.trunc() {
        return f64::INFINITY;
    }
    if x < 0.5 {
        // ψ'(x) = π² / sin²(π x) - ψ'(1 - x)
        let s = sin_pi(x);
        return PI * PI / (s * s) - trigamma(1.0 - x);
    }
    let mut x = x;
    let mut acc = 0.0;
    while x < 10.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    // 1/x + 1/(2x²) + Σ B_2k / x^(2k+1), k = 1..7.
    const B: [f64; 7] = [
        1.0 / 6.0,
        -1.0 / 30.0,
        1.0 / 42.0,
        -1.0 / 30.0,
        5.0 / 66.0,
        -691.0 / 2730.0,
        7.0 / 6.0,
    ];
    let z = 1.0 / (x * x);
    let series = B.iter().rev().fold(0.0, |s, b| s * z + b) * z / x;
    acc + 1.0 / x + 0.5 * z + series
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Abramowitz & Stegun (6.3.2, 6.4.2) and the closed forms ψ(1) = -γ,
    /// ψ(1/2) = -γ - 2 ln 2, ψ'(1) = π²/6, ψ'(1/2) = π²/2.
    #[test]
    fn known_values() {
        const EULER: f64 = 0.577_215_664_901_532_9;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * b.abs().max(1.0);
        assert!(close(digamma(1.0), -EULER));
        assert!(close(digamma(0.5), -EULER - 2.0 * 2f64.ln()));
        assert!(close(digamma(-0.5), -EULER - 2.0 * 2f64.ln() + 2.0));
        assert!(close(digamma(100.0), 4.600_161_852_738_087));
        assert!(close(trigamma(1.0), PI * PI / 6.0));
        assert!(close(trigamma(0.5), PI * PI / 2.0));
        assert!(close(trigamma(-0.5), PI * PI / 2.0 + 4.0));
        assert!(close(lgamma(0.5), 0.5 * PI.ln()));
        // ψ's positive root, x0 = 1.4616321449683623 (A&S 6.3.19).
        assert!(digamma(1.461_632_144_968_362_3).abs() < 1e-15);
        assert_eq!(digamma(0.0), f64::NEG_INFINITY);
        assert_eq!(digamma(-0.0), f64::INFINITY);
        assert!(digamma(-3.0).is_nan());
        assert_eq!(trigamma(-2.0), f64::INFINITY);
    }
}
