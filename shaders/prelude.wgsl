// lossc prelude: the hand-written helpers every generated kernel splices in.
//
// WGSL leaves NaN behaviour of min/max/clamp and of `pow` on negative bases to the
// implementation, and has no isnan; these helpers pin them to the CPU evaluator's
// meaning (src/ir/scalar.rs) with bit tests, which no compiler may assume away.

const LC_WG: u32 = 64u;
// A partial-result slot holds this until its workgroup has published a value.
const LC_EMPTY: u32 = 0xffffffffu;
const LC_CANONICAL_NAN: u32 = 0x7fc00000u;

var<workgroup> lc_red: array<f32, 64>;
var<workgroup> lc_cnt: array<u32, 64>;
var<workgroup> lc_last: u32;
// Per invocation (private): the count that lc_tree_sum_count leaves.
var<private> lc_last_count: u32;

fn lc_isnan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn lc_isinf(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}

// Whether finite `b` is an odd whole number (every f32 of magnitude 2^24 or more is even).
fn lc_is_odd(b: f32) -> bool {
    return abs(b) < 16777216.0 && b == floor(b) && (i32(b) & 1) != 0;
}

// `m` with the sign bit of `s`.
fn lc_with_sign_of(m: f32, s: f32) -> f32 {
    return bitcast<f32>((bitcast<u32>(m) & 0x7fffffffu) | (bitcast<u32>(s) & 0x80000000u));
}

// Zero, in a form no shader compiler can know: every entry point sets it first, from the
// length of a storage array, which WebGPU never binds empty. WGSL and Vulkan let a
// compiler assume that no value is NaN or infinite and that a zero has no sign, and
// compilers use it: llvmpipe folds `0 * x` and `x - x` to 0 and `(x + 1) - x` to 1 even
// for a NaN or infinite x. The generators pass every constant and every computed value
// through lc_opaque, so that the compiler sees each operation with operands it knows
// nothing about, and makes none of those rewrites (docs/backend.md, section 9).
var<private> lc_zero_bits: u32;

// `x` itself, hidden from the shader compiler's algebra (an integer or with zero). Not
// an xor: a value hidden twice, `lc_opaque(lc_opaque(c))`, which a select on a known
// condition can produce, would be `(c ^ z) ^ z`, which the compiler cancels to `c`;
// `(c | z) | z` stays `c | z`, unknown.
fn lc_opaque(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | lc_zero_bits);
}

// An f32 from its bits, at run time: WGSL makes a constant expression that evaluates to
// NaN or an infinity a shader-creation error (Tint enforces it), so special values must
// not be constant-folded; and hidden, as lc_opaque's values are.
fn lc_bits(bits: u32) -> f32 {
    return bitcast<f32>(bits | lc_zero_bits);
}

fn lc_nan() -> f32 {
    return lc_bits(LC_CANONICAL_NAN);
}

fn lc_inf() -> f32 {
    return lc_bits(0x7f800000u);
}

fn lc_min(a: f32, b: f32) -> f32 {
    if (lc_isnan(a) || lc_isnan(b)) {
        return lc_nan();
    }
    return min(a, b);
}

fn lc_max(a: f32, b: f32) -> f32 {
    if (lc_isnan(a) || lc_isnan(b)) {
        return lc_nan();
    }
    return max(a, b);
}

fn lc_clamp(x: f32, lo: f32, hi: f32) -> f32 {
    return lc_min(lc_max(x, lo), hi);
}

fn lc_relu(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return x;
    }
    return max(x, 0.0);
}

// a ^ b with C's pow, step for step as src/ir/scalar.rs's `pow`: every special case
// (zeros, infinities, NaN, negative bases) decided here with bit tests and comparisons,
// and WGSL's pow, whose result the spec leaves undefined for a base of 0 or below, only
// for a finite positive base other than 1 and a finite exponent other than 0 and 2.
fn lc_pow(a: f32, b: f32) -> f32 {
    if (b == 2.0) {
        return a * a;
    }
    // x ^ ±0 = 1 and 1 ^ y = 1, even for a NaN.
    if (b == 0.0 || a == 1.0) {
        return 1.0;
    }
    if (lc_isnan(a) || lc_isnan(b)) {
        return lc_nan();
    }
    if (lc_isinf(b)) {
        let m = abs(a);
        if (m == 1.0) {
            return 1.0;
        }
        if ((m < 1.0) == (b < 0.0)) {
            return lc_inf();
        }
        return 0.0;
    }
    let odd = lc_is_odd(b);
    if (a == 0.0) {
        // ±0: the sign survives only an odd exponent.
        if (b < 0.0) {
            if (odd) {
                return lc_with_sign_of(lc_inf(), a);
            }
            return lc_inf();
        }
        if (odd) {
            return a;
        }
        return 0.0;
    }
    if (lc_isinf(a)) {
        var m = lc_inf();
        if (b < 0.0) {
            m = 0.0;
        }
        if (a < 0.0 && odd) {
            return -m;
        }
        return m;
    }
    if (a < 0.0) {
        if (!(b == floor(b))) {
            return lc_nan();
        }
        let m = lc_pow_positive(-a, b);
        if (odd) {
            return -m;
        }
        return m;
    }
    return lc_pow_positive(a, b);
}

// Subnormals. Arithmetic keeps them on llvmpipe, but its exp, exp2, log, log2 and pow
// read or build the exponent field: log(1e-40) gave -88.02 (the log of 2^-127) instead of
// -92.10, exp(-100) gave 0 instead of 3.8e-44. These helpers move a subnormal operand or
// result into the normal range by an exact power of two (docs/backend.md, section 9).
const LC_MIN_NORMAL: f32 = 1.17549435e-38;

// ln x: for a subnormal x, ln(x * 2^24) - 24 ln 2. Without a branch, and with one
// comparison: zero, negative and NaN operands give log's own value either way (the log
// of 0, of a negative number, of NaN, less a finite constant).
fn lc_log(x: f32) -> f32 {
    let s = x < LC_MIN_NORMAL;
    return log(select(x, x * 16777216.0, s)) - select(0.0, 16.6355324, s);
}

// log2 x: for a subnormal x, log2(x * 2^24) - 24, as lc_log.
fn lc_log2(x: f32) -> f32 {
    let s = x < LC_MIN_NORMAL;
    return log2(select(x, x * 16777216.0, s)) - select(0.0, 24.0, s);
}

// e^x: below ln 2^-126, where the result is subnormal, the square of e^(x/2).
fn lc_exp(x: f32) -> f32 {
    let s = x < -87.3365448;
    let h = exp(select(x, x * 0.5, s));
    return select(h, h * h, s);
}

// 2^t: below -126, where the result is subnormal, the square of 2^(t/2).
fn lc_exp2(t: f32) -> f32 {
    let s = t < -126.0;
    let h = exp2(select(t, t * 0.5, s));
    return select(h, h * h, s);
}

// a ^ b for a finite a > 0 and a finite b: WGSL's pow, unless an operand or the result
// is subnormal, then 2^(b log2 a) with the helpers above (the formula WGSL's pow is
// specified by).
fn lc_pow_positive(a: f32, b: f32) -> f32 {
    if (a >= LC_MIN_NORMAL) {
        let p = pow(a, b);
        if (p >= LC_MIN_NORMAL) {
            return p;
        }
    }
    return lc_exp2(b * lc_log2(a));
}

// The median from its two middle values lo <= hi (the same value twice for an odd
// count), as src/ir/scalar.rs's `median_of`: NaN if either is; two equal values give that
// value; else torch.lerp's hi - (hi - lo) * 0.5 while hi - lo is finite, and the
// midpoint lo * 0.5 + hi * 0.5 with an infinite middle value; a zero median is +0.
fn lc_median_of(lo: f32, hi: f32) -> f32 {
    if (lc_isnan(lo) || lc_isnan(hi)) {
        return lc_nan();
    }
    var m = lo;
    if (!(lo == hi)) {
        let d = hi - lo;
        if (lc_isinf(d)) {
            m = lo * 0.5 + hi * 0.5;
        } else {
            m = hi - d * 0.5;
        }
    }
    if (m == 0.0) {
        return 0.0;
    }
    return m;
}

// A partial sum as stored: NaNs canonical, so that no value equals LC_EMPTY.
fn lc_publish(x: f32) -> u32 {
    if (lc_isnan(x)) {
        return LC_CANONICAL_NAN;
    }
    return bitcast<u32>(x);
}
