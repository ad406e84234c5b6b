//! What the program generator knows of every value it writes: bounds on its magnitude,
//! and whether the back ends compute it exactly or else how far from the exact value an
//! f32 result may lie. Two rules of the generator rest on it:
//!
//! * **No subnormals.** Every finite nonzero value an expression can take lies within
//!   [2^[`MIN_LOG2`], 2^[`MAX_LOG2`]]; an operation that could leave that range is not
//!   written (WGSL lets a GPU flush subnormals, docs/backend.md section 9, and the error
//!   bounds here are relative ones, which hold for normal values only; a sum near f32's
//!   largest value could overflow in one back end's order and not the other's).
//! * **The tolerance follows from the program.** An exact value (a dyadic rational with
//!   few enough bits: data, constants, `+ - *`, `min`, `max`, `sum`, ...) must come out
//!   bit for bit equal (NaN = NaN, 0 = −0) on both back ends; an inexact one (after `/`,
//!   `exp`, `log`, `sqrt`, `mean`, `norm`, `^`) within the propagated error bound `err`.
//!   Comparisons and the other discontinuous operations (`log`, `sqrt`, a denominator, a
//!   power) take exact operands only, or operands kept away from their discontinuity
//!   (`abs(a) + 1`), so that f32 rounding never flips a branch.
//!
//! All quantities are base-2 logarithms. Bounds are conservative, not tight.

/// The smallest magnitude (log2) a finite nonzero value may have: far above f32's
/// smallest normal, 2^-126, so that every operation's result also stays normal.
pub const MIN_LOG2: f64 = -100.0;
/// The largest magnitude (log2) a finite value may have: far below f32's 2^128.
pub const MAX_LOG2: f64 = 100.0;
/// f32's relative rounding error, with a margin.
const ROUND: f64 = -22.0;
/// How many significant bits an exact value may need (f32 has 24).
const MANTISSA: f64 = 24.0;

/// The magnitude and the error of a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mag {
    /// Every finite nonzero value v has |v| ≥ 2^lo. For an exact value, v is also a
    /// multiple of 2^lo (its quantum).
    pub lo: f64,
    /// Every finite value v has |v| < 2^hi.
    pub hi: f64,
    /// `None` when both back ends compute the value exactly; else log2 of a bound on
    /// |computed − exact|.
    pub err: Option<f64>,
}

/// log2(2^a + 2^b).
fn log_add(a: f64, b: f64) -> f64 {
    let (big, small) = if a >= b { (a, b) } else { (b, a) };
    if small == f64::NEG_INFINITY {
        return big;
    }
    big + (1.0 + (small - big).exp2()).log2()
}

impl Mag {
    /// An exact value: a multiple of 2^quantum below 2^hi.
    pub fn exact(quantum: f64, hi: f64) -> Mag {
        Mag {
            lo: quantum,
            hi,
            err: None,
        }
    }

    /// The exact f32 constant `v` (or a value known to be it).
    pub fn constant(v: f32) -> Mag {
        if v == 0.0 || !v.is_finite() {
            return Mag::exact(0.0, 0.0);
        }
        // The quantum: the value of the lowest set bit of the significand.
        let bits = v.to_bits();
        let exponent = ((bits >> 23) & 0xff) as i32 - 127;
        let mantissa = (bits & 0x7f_ffff) | 0x80_0000;
        let quantum = exponent - 23 + mantissa.trailing_zeros() as i32;
        Mag::exact(quantum as f64, (v.abs() as f64).log2().floor() + 1.0)
    }

    /// Whether the value stays clear of subnormals and of overflow.
    pub fn fits(&self) -> bool {
        self.lo >= MIN_LOG2 && self.hi <= MAX_LOG2
    }

    /// Whether both back ends compute it exactly.
    pub fn is_exact(&self) -> bool {
        self.err.is_none()
    }

    /// The error bound, −∞ when exact.
    fn e(&self) -> f64 {
        self.err.unwrap_or(f64::NEG_INFINITY)
    }

    /// The result of an operation of magnitude (lo, hi) whose inputs carry the error
    /// `propagated`: exact when the inputs are and the result fits the significand
    /// (`quantum` is then its quantum), else rounded.
    fn result(lo: f64, hi: f64, propagated: f64, quantum: Option<f64>) -> Mag {
        match quantum {
            Some(q) if propagated == f64::NEG_INFINITY && hi - q <= MANTISSA => Mag::exact(q, hi),
            // A rounded multiple of 2^q is still at least 2^q.
            Some(q) => Mag {
                lo: q.min(lo),
                hi,
                err: Some(log_add(propagated, hi + ROUND)),
            },
            None => Mag {
                lo,
                hi,
                err: Some(log_add(propagated, hi + ROUND)),
            },
        }
    }

    /// `a + b` or `a - b`.
    pub fn add(a: Mag, b: Mag) -> Mag {
        let hi = a.hi.max(b.hi) + 1.0;
        if a.is_exact() && b.is_exact() {
            Mag::result(0.0, hi, f64::NEG_INFINITY, Some(a.lo.min(b.lo)))
        } else {
            // Cancellation: two computed values that differ give at least the smaller's
            // ulp.
            Mag::result(a.lo.min(b.lo) - 24.0, hi, log_add(a.e(), b.e()), None)
        }
    }

    /// `a * b`.
    pub fn mul(a: Mag, b: Mag) -> Mag {
        let err = log_add(log_add(a.e() + b.hi, b.e() + a.hi), a.e() + b.e());
        let quantum = (a.is_exact() && b.is_exact()).then_some(a.lo + b.lo);
        Mag::result(a.lo + b.lo, a.hi + b.hi, err, quantum)
    }

    /// `a / b`, where `b` is exact or at least 2^b.lo in magnitude whatever the rounding.
    pub fn div(a: Mag, b: Mag) -> Mag {
        let err = log_add(a.e() - b.lo, b.e() + a.hi - 2.0 * b.lo);
        // WGSL allows 2.5 ulp for a division.
        let mut m = Mag::result(a.lo - b.hi, a.hi - b.lo, err, None);
        m.err = m.err.map(|e| e + 2.0);
        m
    }

    /// `min`, `max`, `select`, `clamp`: one of the operands.
    pub fn either(a: Mag, b: Mag) -> Mag {
        Mag {
            lo: a.lo.min(b.lo),
            hi: a.hi.max(b.hi),
            err: match (a.err, b.err) {
                (None, None) => None,
                _ => Some(a.e().max(b.e())),
            },
        }
    }

    /// `exp(clamp(a, -c, c))`: in [e^-c, e^c]; relative error the argument's absolute
    /// error plus WGSL's allowance (3 + 2|x| ulp).
    pub fn exp_clamped(a: Mag, c: f64) -> Mag {
        let hi = c * std::f64::consts::LOG2_E + 1.0;
        Mag {
            lo: -hi,
            hi,
            err: Some(log_add(hi + a.e(), hi - 16.0)),
        }
    }

    /// `exp(a)` of a value known to be below 2^a.hi in magnitude.
    pub fn exp(a: Mag) -> Mag {
        Mag::exp_clamped(a, a.hi.exp2())
    }

    /// `log(v)`: of an exact `v` (when `shifted` is false), or of `abs(a) + 1`.
    pub fn log(a: Mag, shifted: bool) -> Mag {
        let top = a.hi.abs().max(a.lo.abs()).max(1.0);
        let hi = (top * std::f64::consts::LN_2 + 1.0).log2() + 1.0;
        // log(v) is smallest next to 1: |v − 1| ≥ the quantum (exact v), or ≥ |a| itself.
        let lo = a.lo.min(0.0) - 1.0;
        let own = log_add(hi - 20.0, -20.0);
        Mag {
            lo: if shifted { lo - 24.0 } else { lo },
            hi,
            err: Some(log_add(a.e(), own)),
        }
    }

    /// `f(a)` for a function of slope at most 2/√π with |f(a)| ≥ min(|a|, 1) / 2 and
    /// |f| < 2^hi, which the GPU computes to a relative 1e-5 (shaders/functions.wgsl):
    /// `tanh`, `atan`, `erf`, `sin` on [-1.5, 1.5]; callers raise `lo` for others.
    pub fn bounded(a: Mag, hi: f64) -> Mag {
        Mag {
            lo: a.lo.min(0.0) - 1.0,
            hi,
            err: Some(log_add(a.e() + 1.0, hi - 16.0)),
        }
    }

    /// `sqrt(v)`: of an exact `v`, or of `abs(a)` (then √ of the error bounds the
    /// error).
    pub fn sqrt(a: Mag) -> Mag {
        let hi = a.hi / 2.0 + 0.5;
        Mag {
            lo: a.lo / 2.0 - 1.0,
            hi,
            err: Some(log_add(a.e() / 2.0 + 0.5, hi + ROUND + 1.0)),
        }
    }

    /// `a ^ p` for an exact `a` and a constant or exact `p` with |p| < 2^p_hi: powf's
    /// relative error grows with |p · log2 a|.
    pub fn pow(a: Mag, p_hi: f64) -> Mag {
        let top = a.hi.abs().max(a.lo.abs());
        let reach = p_hi.exp2() * top;
        Mag {
            lo: -reach - 1.0,
            hi: reach + 1.0,
            err: Some(reach + 1.0 - 14.0),
        }
    }

    /// `sum` over at most 2^count values.
    pub fn sum(a: Mag, count: f64) -> Mag {
        let hi = a.hi + count;
        if a.is_exact() {
            Mag::result(a.lo, hi, f64::NEG_INFINITY, Some(a.lo))
        } else {
            // Pairwise summation: log2(n) roundings of at most the largest partial sum.
            let rounding = hi + ROUND + (count + 1.0).log2();
            let mut m = Mag::result(a.lo - 24.0, hi, a.e() + count, None);
            m.err = m.err.map(|e| log_add(e, rounding));
            m
        }
    }

    /// `mean` over at most 2^count values.
    pub fn mean(a: Mag, count: f64) -> Mag {
        let s = Mag::sum(a, count);
        Mag {
            lo: s.lo - count,
            hi: s.hi,
            err: Some(log_add(s.e(), s.hi + ROUND + 2.0)),
        }
    }

    /// `norm` over at most 2^count values: at least the largest |v|, and 1-Lipschitz in
    /// each value.
    pub fn norm(a: Mag, count: f64) -> Mag {
        let hi = a.hi + count / 2.0 + 1.0;
        Mag {
            lo: a.lo,
            hi,
            err: Some(log_add(a.e() + count / 2.0, hi + ROUND + count)),
        }
    }

    /// `median`: a middle value, or two combined as `hi − (hi − lo) · 0.5`.
    pub fn median(a: Mag) -> Mag {
        Mag::result(
            a.lo - 24.0,
            a.hi + 1.0,
            a.e(),
            a.is_exact().then_some(a.lo - 1.0),
        )
    }

    /// The tolerance of a comparison of this value: 0 when exact, else four times the
    /// error bound.
    pub fn tolerance(&self) -> f64 {
        self.err.map_or(0.0, |e| (e + 2.0).exp2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_know_their_quantum() {
        assert_eq!(Mag::constant(0.25), Mag::exact(-2.0, -1.0));
        assert_eq!(Mag::constant(-6.0), Mag::exact(1.0, 3.0));
        assert_eq!(Mag::constant(1.5), Mag::exact(-1.0, 1.0));
        let tenth = Mag::constant(0.1);
        assert_eq!(tenth.hi - tenth.lo, 24.0);
    }

    #[test]
    fn exact_arithmetic_stays_exact_until_it_needs_more_bits() {
        let d = Mag::exact(-2.0, 3.0);
        assert!(Mag::mul(d, d).is_exact());
        assert!(Mag::sum(Mag::mul(d, d), 6.0).is_exact());
        assert!(!Mag::mul(Mag::constant(0.1), d).is_exact());
        assert!(!Mag::mean(d, 3.0).is_exact());
    }
}
