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

// An f32 from its bits, at run time: WGSL makes a constant expression that evaluates to
// NaN or an infinity a shader-creation error (Tint enforces it), so special values must
// not be constant-folded.
fn lc_bits(bits: u32) -> f32 {
    var b = bits;
    return bitcast<f32>(b);
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

// a ^ b with C's pow semantics: an exact square for 2, signs for whole exponents of
// negative bases, NaN for fractional ones.
fn lc_pow(a: f32, b: f32) -> f32 {
    if (b == 2.0) {
        return a * a;
    }
    if (b == 0.0) {
        return 1.0;
    }
    if (lc_isnan(a) || lc_isnan(b)) {
        return lc_nan();
    }
    if (a >= 0.0) {
        return pow(a, b);
    }
    if (b != floor(b)) {
        return lc_nan();
    }
    let m = pow(-a, b);
    if (fract(b * 0.5) != 0.0) {
        return -m;
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
