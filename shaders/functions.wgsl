// lossc's function library: the element-wise functions WGSL lacks or gives too coarsely.
// A kernel carries only the functions it calls (src/codegen/wgsl.rs, `link`), so this
// file holds functions only, each with its comment directly above it; constants live
// inside the functions. Each is checked against the CPU evaluator (src/ir/scalar.rs) by
// tests/function_library.rs; the errors quoted are that test's maxima (relative, over
// finite normal results). Special values are decided with bit tests first: the shader
// compiler may assume no NaN, infinity or signed zero (see shaders/prelude.wgsl).

// sign(x): -1, 0 or 1; +0 for NaN and for both zeros (torch.sign). Exact, from the bits
// (the compiler may not assume the sign of a zero it cannot see).
// Measured (tests/function_library.rs): exact (all inputs).
fn lc_sign(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) == 0u || lc_isnan(x)) {
        return lc_bits(0u);
    }
    return lc_bits((b & 0x80000000u) | 0x3f800000u);
}

// e^x to about 2e-7 relative: the prelude's lc_exp (WGSL's exp) loses |x| 6e-8 relative
// through the rounding of x log2(e), 5e-6 near ±88. Here x = n ln2 + r, |r| <= ln2/2,
// with ln2 in two parts (n ln2_hi exact, the difference hidden from reassociation), e^r
// by its Taylor series to r^7, then times 2^n as two exact power-of-two factors (so one
// rounding for a subnormal result). inf above ln(f32 max), 0 below -104, NaN for NaN.
// Measured (tests/function_library.rs): through lc_expm1, lc_sigmoid, lc_softplus, lc_erf
// below.
fn lc_exp_acc(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (x > 88.7228317) {
        return lc_inf();
    }
    if (x < -104.0) {
        return 0.0;
    }
    let n = round(x * 1.44269504);
    let r = lc_opaque(x - n * 0.693145752) - n * 1.42860677e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.0083333338 + r * (0.0013888889 + r * 0.00019841270))))));
    let ni = i32(n);
    let n1 = ni / 2;
    let n2 = ni - n1;
    return lc_opaque(p * bitcast<f32>(u32(n1 + 127) << 23u)) * bitcast<f32>(u32(n2 + 127) << 23u);
}

// log(1 + x): for 1 + x in [sqrt(1/2), sqrt(2)] the series 2 atanh(s), s = x / (2 + x),
// to s^11 (relative accurate down to subnormal x); elsewhere log(1 + x), whose rounding
// error is small against |log(1 + x)| >= 0.34.
// Measured (tests/function_library.rs): max rel error 2.9e-7 over 250k inputs (-1 to
// 3e38).
fn lc_log1p(x: f32) -> f32 {
    if (lc_isnan(x) || x < -1.0) {
        return lc_nan();
    }
    if (x == -1.0) {
        return -lc_inf();
    }
    if (lc_isinf(x)) {
        return x;
    }
    if (x > -0.29289322 && x < 0.41421357) {
        let s = x * (2.0 / (2.0 + x));
        let z = (x / (2.0 + x)) * (x / (2.0 + x));
        let p = z * (0.33333333 + z * (0.2 + z * (0.14285714 + z * (0.11111111 + z * 0.09090909))));
        return s + s * p;
    }
    return lc_log(1.0 + x);
}

// exp(x) - 1: the Taylor series to x^9 for |x| < 0.35, else exp(x) - 1 (at least 0.29 in
// magnitude there, so exp's rounding stays relative); inf above ln(f32 max), -1 below -17.5.
// Measured (tests/function_library.rs): max rel error 2.8e-7 over 240k inputs, up to the
// overflow at 88.72.
fn lc_expm1(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (x > 88.7228317) {
        return lc_inf();
    }
    if (x < -17.5) {
        return -1.0;
    }
    if ((bitcast<u32>(x) & 0x7fffffffu) == 0u) {
        return x;
    }
    if (abs(x) < 0.35) {
        let p = x * (0.5 + x * (0.16666667 + x * (0.041666668 + x * (0.0083333338 + x * (0.0013888889 + x * (0.00019841270 + x * (2.4801587e-5 + x * 2.7557319e-6)))))));
        return x + x * p;
    }
    return lc_exp_acc(x) - 1.0;
}

// torch's softplus, beta 1, threshold 20: x above 20, exp(x) below -20 (log1p(e) = e to
// f32 precision there), else log1p(exp(x)).
// Measured (tests/function_library.rs): max rel error 3.0e-7 over 240k inputs; subnormal
// results to 2 ulps.
fn lc_softplus(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (x > 20.0) {
        return x;
    }
    if (x < -20.0) {
        if (lc_isinf(x)) {
            return 0.0;
        }
        return lc_exp_acc(x);
    }
    return lc_log1p(lc_exp_acc(x));
}

// 1 / (1 + exp(-x)) for x >= 0, and exp(x) / (1 + exp(x)) below, which keeps the
// relative precision of tiny (down to subnormal) results.
// Measured (tests/function_library.rs): max rel error 1.9e-7 over 240k inputs; subnormal
// results to 2 ulps.
fn lc_sigmoid(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (x > 30.0) {
        return 1.0;
    }
    if (x < -110.0) {
        return 0.0;
    }
    if (x >= 0.0) {
        return 1.0 / (1.0 + lc_exp_acc(-x));
    }
    let e = lc_exp_acc(x);
    return e / (1.0 + e);
}

// log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), finite and stable for every finite x.
// Measured (tests/function_library.rs): max rel error 3.0e-7 over 240k inputs; subnormal
// results to 2 ulps.
fn lc_logsigmoid(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (lc_isinf(x)) {
        return select(0.0, x, x < 0.0);
    }
    // +0 where the CPU's f64 e^-x underflows, -0 where only the f32 result does.
    if (x > 745.13321) {
        return lc_bits(0u);
    }
    if (x > 0.0) {
        // -log1p(e^-x), negative.
        return lc_with_sign_of(lc_log1p(lc_exp_acc(-x)), -1.0);
    }
    return x - lc_log1p(lc_exp_acc(x));
}

// tanh(x) = t / (t + 2) with t = expm1(2|x|), the sign of x; ±1 beyond |x| = 10.
// Measured (tests/function_library.rs): max rel error 2.5e-7 over 240k inputs (tiny
// inputs included).
fn lc_tanh(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    let a = abs(x);
    if (a > 10.0) {
        return lc_with_sign_of(1.0, x);
    }
    let t = lc_expm1(2.0 * a);
    // At most 1: a GPU's division may round t / (t + 2) up past 1 (seen on an NVIDIA
    // H200 at |x| = 9.3), and then tanh's derivative, 1 - y², would change sign.
    return lc_with_sign_of(min(t / (t + 2.0), 1.0), x);
}

// atan(x): Cephes' atanf. |x| > tan(3pi/8): pi/2 - atan(1/|x|); |x| > tan(pi/8):
// pi/4 + atan((|x| - 1) / (|x| + 1)); then a degree-9 odd polynomial on [0, tan(pi/8)].
// Measured (tests/function_library.rs): max rel error 2.2e-7 over 240k inputs.
fn lc_atan(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (lc_isinf(x)) {
        return lc_with_sign_of(1.57079633, x);
    }
    let a = abs(x);
    var base = 0.0;
    var t = a;
    if (a > 2.41421356) {
        base = 1.57079633;
        t = -1.0 / a;
    } else if (a > 0.41421356) {
        base = 0.78539816;
        t = (a - 1.0) / (a + 1.0);
    }
    let z = t * t;
    let p = (((0.0805374449538 * z - 0.138776856032) * z + 0.199777106478) * z - 0.333329491539) * z * t + t;
    return lc_with_sign_of(base + p, x);
}

// atan2(y, x) as C's: the signed-zero and infinite cases by table, else atan(|y| / |x|)
// (both scaled up by 2^100 when tiny, so that the quotient never meets a subnormal
// divisor), reflected to pi - a for a negative x, with the sign of y.
// Measured (tests/function_library.rs): max rel error 2.2e-7 over 350k pairs, every
// zero/infinity pairing.
fn lc_atan2(y: f32, x: f32) -> f32 {
    if (lc_isnan(y) || lc_isnan(x)) {
        return lc_nan();
    }
    let xneg = (bitcast<u32>(x) & 0x80000000u) != 0u;
    var ax = abs(x);
    var ay = abs(y);
    var r = 0.0;
    if (ay == 0.0) {
        r = select(0.0, 3.14159265, xneg);
    } else if (lc_isinf(x)) {
        if (lc_isinf(y)) {
            r = select(0.78539816, 2.35619449, xneg);
        } else {
            r = select(0.0, 3.14159265, xneg);
        }
    } else if (lc_isinf(y) || ax == 0.0) {
        r = 1.57079633;
    } else {
        if (ax < 1e-20 && ay < 1e-20) {
            ax = ax * 1.2676506e30;
            ay = ay * 1.2676506e30;
        }
        // Both scaled down by 2^-100 when either is huge: a GPU may divide through the
        // reciprocal, which is subnormal, so flushed to 0, for a divisor past 2^126 (an
        // NVIDIA H200 gave atan2(3.4e38, 3.4e38) = 0).
        if (ax > 1e30 || ay > 1e30) {
            ax = ax * 7.8886091e-31;
            ay = ay * 7.8886091e-31;
        }
        let a = lc_atan(ay / ax);
        r = select(a, 3.14159265 - a, xneg);
    }
    return lc_with_sign_of(r, y);
}

// erf(x): the Taylor series to x^15 for |x| < 0.5; Abramowitz & Stegun 7.1.26
// (1 - P(t) exp(-x^2), t = 1 / (1 + 0.3275911 |x|), absolute error 1.5e-7) up to 4;
// ±1 beyond.
// Measured (tests/function_library.rs): max rel error 5.7e-7 over 240k inputs (at 0.5).
fn lc_erf(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    let a = abs(x);
    // A zero of x's sign; also for a subnormal x on a GPU that flushes it (its compare
    // sees 0), where returning x itself would give a subnormal 11% off erf(x).
    if (a == 0.0) {
        return lc_with_sign_of(0.0, x);
    }
    if (a < 0.5) {
        let z = x * x;
        let p = z * (-0.33333333 + z * (0.1 + z * (-0.023809524 + z * (0.0046296296 + z * (-0.00075757576 + z * (0.00010683761 - z * 1.3227513e-5))))));
        return 1.12837917 * x + 1.12837917 * (x * p);
    }
    if (a >= 4.0) {
        return lc_with_sign_of(1.0, x);
    }
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let q = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    return lc_with_sign_of(1.0 - q * lc_exp_acc(-a * a), x);
}

// |x| reduced by pi/2 exactly (Payne-Hanek in integer arithmetic): (t, q) with
// |x| = (4k + q) pi/2 + t, |t| <= pi/4. |x| = m 2^e, m < 2^24; m 2^s (s = e mod 16) as
// three 16-bit digits times 2/pi's first 256 bits as 16-bit limbs, keeping the product's
// bits of weight 2^1 down to 2^-112 in u32s (exact), then rounding to the nearest
// quarter turn. For |x| >= pi/4, finite.
fn lc_rem_pio2(x: f32) -> vec2<f32> {
    var b = array<u32, 16>(0xa2f9u, 0x836eu, 0x4e44u, 0x1529u, 0xfc27u, 0x57d1u, 0xf534u, 0xddc0u, 0xdb62u, 0x9599u, 0x3c43u, 0x9041u, 0xfe51u, 0x63abu, 0xdebbu, 0xc561u);
    let bits = bitcast<u32>(x) & 0x7fffffffu;
    let m = (bits & 0x7fffffu) | 0x800000u;
    let e = i32(bits >> 23u) - 150;
    let j = (e + 48) / 16 - 3;
    let s = u32(e - 16 * j);
    let ms = m << s;
    var d = array<u32, 3>((m >> 16u) >> (16u - s), (ms >> 16u) & 0xffffu, ms & 0xffffu);
    var acc = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    for (var a = 0; a < 3; a++) {
        for (var k = 0; k < 8; k++) {
            let i = k + 1 + j - a;
            if (i >= 0 && i < 16) {
                let p = d[a] * b[i];
                acc[k] += p & 0xffffu;
                if (k > 0) {
                    acc[k - 1] += p >> 16u;
                }
            }
        }
    }
    for (var k = 7; k > 0; k--) {
        acc[k - 1] += acc[k] >> 16u;
        acc[k] &= 0xffffu;
    }
    var q = acc[0] & 3u;
    var neg = false;
    if (acc[1] >= 0x8000u) {
        q = (q + 1u) & 3u;
        neg = true;
        for (var k = 1; k < 8; k++) {
            acc[k] = 0xffffu - acc[k];
        }
    }
    let f = (((f32(acc[5]) * 8.2718061e-25 + f32(acc[4]) * 5.4210109e-20) + f32(acc[3]) * 3.5527137e-15) + f32(acc[2]) * 2.3283064e-10) + f32(acc[1]) * 1.5258789e-5;
    let t = f * 1.57079633;
    return vec2<f32>(select(t, -t, neg), f32(q));
}

// sin t for |t| <= pi/4: Cephes' sinf polynomial (relative error about 1e-7).
fn lc_sin_kernel(t: f32) -> f32 {
    let z = t * t;
    return ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * t + t;
}

// cos t for |t| <= pi/4: Cephes' cosf polynomial.
fn lc_cos_kernel(t: f32) -> f32 {
    let z = t * t;
    return ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
}

// sin(x): the polynomial directly for |x| <= pi/4, else after lc_rem_pio2's exact
// reduction (every finite x); NaN for ±inf.
// Measured (tests/function_library.rs): max rel error 2.4e-7 over 1.2M inputs, among them
// the f32s nearest k pi (and neighbours) for |x| <= 1e5 and a sample up to 1e8.
fn lc_sin(x: f32) -> f32 {
    if (lc_isnan(x) || lc_isinf(x)) {
        return lc_nan();
    }
    let a = abs(x);
    if (a == 0.0) {
        return x;
    }
    if (a <= 0.78539816) {
        return lc_sin_kernel(x);
    }
    let r = lc_rem_pio2(a);
    let q = u32(r.y);
    var v = select(lc_sin_kernel(r.x), lc_cos_kernel(r.x), (q & 1u) == 1u);
    if (q >= 2u) {
        v = -v;
    }
    return select(v, -v, x < 0.0);
}

// cos(x): as lc_sin.
// Measured (tests/function_library.rs): max rel error 2.4e-7 over 1.2M inputs, among them
// the f32s nearest (k + 1/2) pi (and neighbours) for |x| <= 1e5 and a sample up to 1e8.
fn lc_cos(x: f32) -> f32 {
    if (lc_isnan(x) || lc_isinf(x)) {
        return lc_nan();
    }
    let a = abs(x);
    if (a <= 0.78539816) {
        return lc_cos_kernel(a);
    }
    let r = lc_rem_pio2(a);
    let q = u32(r.y);
    let v = select(lc_cos_kernel(r.x), lc_sin_kernel(r.x), (q & 1u) == 1u);
    return select(v, -v, q == 1u || q == 2u);
}

// (sin(pi x), cos(pi x)) for finite x, the period taken out exactly first: x = n + r
// with n whole and |r| <= 1/2 (exact in f32), then the kernels at pi r or pi (1/2 - |r|),
// the sign (-1)^n.
fn lc_sincospi(x: f32) -> vec2<f32> {
    let n = round(x);
    let r = x - n;
    let ar = abs(r);
    var s = 0.0;
    var c = 0.0;
    if (ar <= 0.25) {
        s = lc_sin_kernel(3.14159265 * r);
        c = lc_cos_kernel(3.14159265 * r);
    } else {
        let u = 3.14159265 * (0.5 - ar);
        s = lc_with_sign_of(lc_cos_kernel(u), r);
        c = lc_sin_kernel(u);
    }
    var odd = false;
    if (abs(n) < 16777216.0) {
        odd = (i32(n) & 1) != 0;
    }
    if (odd) {
        return vec2<f32>(-s, -c);
    }
    return vec2<f32>(s, c);
}

// lgamma(2 + u) for |u| <= 1/2: its Taylor series about 2, (1 - gamma) u +
// sum_k (-1)^k (zeta(k) - 1) u^k / k, to u^17 (which keeps it relative near the zero at 2).
fn lc_lgamma_series(u: f32) -> f32 {
    var c = array<f32, 17>(0.42278433509846713, 0.3224670334241132, -0.0673523010531981, 0.020580808427784546, -0.007385551028673986, 0.0028905103307415234, -0.001192753911703261, 0.0005096695247430425, -0.00022315475845357939, 9.945751278180853e-05, -4.492623673813314e-05, 2.050721277567069e-05, -9.439488275268397e-06, 4.374866789907488e-06, -2.039215753801366e-06, 9.55141213040742e-07, -4.492469198764566e-07);
    var p = c[16];
    for (var k = 15; k >= 0; k--) {
        p = p * u + c[k];
    }
    return p * u;
}

// log|gamma(x)| for finite x > 0: the series about 2 on [1.5, 2.5]; on [0.5, 1.5) and
// (0, 0.5) through lgamma(x + 1) = lgamma(x) + log(x) (log1p(x - 1) keeps the zero at 1
// relative); up to 8 by the recurrence down to [1.5, 2.5] (one log of the product);
// beyond, Stirling's series (x - 1/2)(log x - 1) + (log(2 pi) - 1)/2 + 1/(12x) - ...
fn lc_lgamma_pos(x: f32) -> f32 {
    if (x < 0.5) {
        return lc_lgamma_series(x) - lc_log1p(x) - lc_log(x);
    }
    if (x < 1.5) {
        return lc_lgamma_series(x - 1.0) - lc_log1p(x - 1.0);
    }
    if (x <= 2.5) {
        return lc_lgamma_series(x - 2.0);
    }
    if (x < 8.0) {
        var y = x;
        var p = 1.0;
        while (y > 2.5) {
            y = y - 1.0;
            p = p * y;
        }
        return lc_log(p) + lc_lgamma_series(y - 2.0);
    }
    let z = 1.0 / x;
    let z2 = z * z;
    return (x - 0.5) * (lc_log(x) - 1.0) + 0.41893853 + z * (0.083333333 - z2 * (0.0027777778 - z2 * 0.00079365079));
}

// The zeros of lgamma below -2 that f32 can resolve: two between each pair of poles
// -n-1, -n for n = 2..9, k = 2 (n - 2) + (0 for the left one, 1 for the right one):
// (the zero's f32, the zero minus it, half its distance to the nearer pole).
fn lc_lgamma_zero(k: u32) -> vec3<f32> {
    switch (k) {
        case 0u: {
            return vec3<f32>(-2.747682571411133, -7.531627978889148e-08, 0.12615866959095);
        }
        case 1u: {
            return vec3<f32>(-2.4570248126983643, 7.447756363477305e-08, 0.22851237654685974);
        }
        case 2u: {
            return vec3<f32>(-3.955294370651245, 8.579264718865471e-08, 0.022352857515215874);
        }
        case 3u: {
            return vec3<f32>(-3.143580913543701, 2.5193721113180643e-08, 0.07179044187068939);
        }
        case 4u: {
            return vec3<f32>(-4.991544723510742, 8.295069446515474e-08, 0.004227679688483477);
        }
        case 5u: {
            return vec3<f32>(-4.039361953735352, 1.1399481468826542e-07, 0.019680919125676155);
        }
        case 6u: {
            return vec3<f32>(-5.998607635498047, 1.5541717124555758e-07, 0.000696259958203882);
        }
        case 7u: {
            return vec3<f32>(-5.008218288421631, 1.2009903733782262e-07, 0.004109084140509367);
        }
        case 8u: {
            return vec3<f32>(-6.9998016357421875, 1.278515498021079e-07, 9.924605546984822e-05);
        }
        case 9u: {
            return vec3<f32>(-6.00138521194458, -8.250857501913698e-08, 0.0006926472415216267);
        }
        case 10u: {
            return vec3<f32>(-7.999975204467773, 7.371952773345664e-09, 1.2401452295307536e-05);
        }
        case 11u: {
            return vec3<f32>(-7.0001983642578125, 3.085048774839302e-08, 9.916670387610793e-05);
        }
        case 12u: {
            return vec3<f32>(-8.99999713897705, -1.0527392668694436e-07, 1.3778744687442668e-06);
        }
        case 13u: {
            return vec3<f32>(-8.000024795532227, -4.73845539719771e-09, 1.2400135346979368e-05);
        }
        case 14u: {
            return vec3<f32>(-10.0, 2.7557337083353163e-07, 1.3778668517261394e-07);
        }
        case 15u: {
            return vec3<f32>(-9.00000286102295, 1.0530812656840364e-07, 1.3778574157186085e-06);
        }
        default: {
            return vec3<f32>(0.0, 0.0, 0.0);
        }
    }
}

// lgamma for -10 < x < -2 within half a pole-distance of a zero z (lc_lgamma_zero):
// (value, 1), else (0, 0). With the reflection formula, lgamma(x) = lgamma(x) - lgamma(z)
// = log(sin(pi z) / sin(pi x)) - [lgamma(1 - x) - lgamma(1 - z)]; the quotient is
// 1 + q, q = -2 cos(pi (x + z) / 2) sin(pi d / 2) / sin(pi x) with d = x - z formed
// exactly (z as two f32s), its log by log1p; the bracket by Simpson's rule on digamma
// over [1 - z, 1 - x]. No cancellation is left but that of the result itself.
fn lc_lgamma_near_zero(x: f32) -> vec2<f32> {
    let n = floor(-x);
    if (!(n >= 2.0 && n <= 9.0)) {
        return vec2<f32>(0.0, 0.0);
    }
    for (var h = 0u; h < 2u; h++) {
        let zero = lc_lgamma_zero(2u * (u32(n) - 2u) + h);
        let d0 = x - zero.x;
        if (abs(d0) < zero.z) {
            let d = lc_opaque(d0) - zero.y;
            let q = -2.0 * lc_sincospi(0.5 * (x + zero.x)).y * lc_sin_kernel(1.57079633 * d) / lc_sincospi(x).x;
            let a = 1.0 - x;
            let b = 1.0 - zero.x;
            let m = 0.5 * (a + b);
            let s = -d * (lc_digamma_pos(a) + 4.0 * lc_digamma_pos(m) + lc_digamma_pos(b)) * 0.16666667;
            return vec2<f32>(lc_log1p(q) - s, 1.0);
        }
    }
    return vec2<f32>(0.0, 0.0);
}

// log|gamma(x)|: +inf at the poles (0 and the negative whole numbers) and at ±inf; for
// x < 0 the reflection log(pi / |sin(pi x)|) - lgamma(1 - x), sin(pi x) from lc_sincospi.
// Measured (tests/function_library.rs): max rel error 3.5e-6 over 480k inputs (worst near
// the zero beside the pole -8); 1000 ulps around 1 and 2 included.
fn lc_lgamma(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (lc_isinf(x) || x == 0.0) {
        return lc_inf();
    }
    if (x < 0.0) {
        if (x == floor(x)) {
            return lc_inf();
        }
        // lgamma(x) = -log|x| - gamma x + O(x^2): -log|x| to f32 precision.
        if (x > -1e-30) {
            return -lc_log(-x);
        }
        let near = lc_lgamma_near_zero(x);
        if (near.y != 0.0) {
            return near.x;
        }
        let s = abs(lc_sincospi(x).x);
        return lc_log(3.14159265 / s) - lc_lgamma_pos(1.0 - x);
    }
    return lc_lgamma_pos(x);
}

// digamma for finite x > 0: near the positive root x0 = 1.4616321... (|x - x0| < 1/4) its
// Taylor series about x0 (x0 as two f32s, x - x0 formed exactly); elsewhere the
// recurrence psi(x) = psi(x + 1) - 1/x up to 10, then log x - 1/(2x) - sum B2k/(2k x^2k).
fn lc_digamma_pos(x: f32) -> f32 {
    if (abs(x - 1.46163213) < 0.25) {
        let d = lc_opaque(x - 1.4616321325302124) - 1.2438149938918909e-08;
        var c = array<f32, 12>(0.96767224544762117, -0.44276316898359211, 0.25849976095565101, -0.16394270544240653, 0.10782405069126237, -0.072199561256454711, 0.048804288164143107, -0.033161126474847359, 0.022597648232218105, -0.015424765904948959, 0.010538791616612175, -0.0072045343863568682);
        var p = c[11];
        for (var k = 10; k >= 0; k--) {
            p = p * d + c[k];
        }
        return p * d;
    }
    var y = x;
    var acc = 0.0;
    while (y < 10.0) {
        acc -= 1.0 / y;
        y += 1.0;
    }
    let r = 1.0 / y;
    let z = r * r;
    return acc + lc_log(y) - 0.5 * r - z * (0.083333333 - z * (0.0083333333 - z * (0.0039682540 - z * 0.0041666667)));
}

// The root r_n of digamma between the poles -n-1 and -n, n = 0..49 (where the
// reflection formula cancels): (r_n's f32, r_n minus it, half of r_n's distance to the
// nearer pole); zeros past the table.
fn lc_digamma_root(n: u32) -> vec3<f32> {
    switch (n) {
        case 0u: {
            return vec3<f32>(-0.5040830373764038, 2.911194839933548e-08, 0.2479584962129593);
        }
        case 1u: {
            return vec3<f32>(-1.5734984874725342, 1.4310143720909213e-08, 0.2132507562637329);
        }
        case 2u: {
            return vec3<f32>(-2.6107208728790283, 4.434883670310962e-09, 0.19463956356048584);
        }
        case 3u: {
            return vec3<f32>(-3.635293483734131, 1.1729722976153582e-07, 0.18235331773757935);
        }
        case 4u: {
            return vec3<f32>(-4.653237819671631, 5.79284884176604e-08, 0.17338111996650696);
        }
        case 5u: {
            return vec3<f32>(-5.6671624183654785, -2.3191407020224473e-08, 0.16641877591609955);
        }
        case 6u: {
            return vec3<f32>(-6.678418159484863, -5.358856346157986e-08, 0.16079089045524597);
        }
        case 7u: {
            return vec3<f32>(-7.687788486480713, 1.614490868531849e-07, 0.15610583126544952);
        }
        case 8u: {
            return vec3<f32>(-8.695764541625977, 3.7780957529601124e-07, 0.15211792290210724);
        }
        case 9u: {
            return vec3<f32>(-9.702672958374023, 4.183721597014156e-07, 0.148663729429245);
        }
        case 10u: {
            return vec3<f32>(-10.708741188049316, 3.497951717542617e-07, 0.14562958478927612);
        }
        case 11u: {
            return vec3<f32>(-11.714133262634277, 2.0140532350161503e-07, 0.14293347299098969);
        }
        case 12u: {
            return vec3<f32>(-12.718971252441406, 2.2669219875920382e-07, 0.14051449298858643);
        }
        case 13u: {
            return vec3<f32>(-13.723347663879395, 2.0651556776648658e-07, 0.1383262723684311);
        }
        case 14u: {
            return vec3<f32>(-14.727334022521973, -3.934965562646197e-07, 0.13633279502391815);
        }
        case 15u: {
            return vec3<f32>(-15.730988502502441, -4.038304409814191e-07, 0.13450554013252258);
        }
        case 16u: {
            return vec3<f32>(-16.734355926513672, -7.974420638095191e-07, 0.13282163441181183);
        }
        case 17u: {
            return vec3<f32>(-17.73747444152832, -7.184492685904252e-07, 0.1312624216079712);
        }
        case 18u: {
            return vec3<f32>(-18.740375518798828, 5.740187284372292e-07, 0.12981252372264862);
        }
        case 19u: {
            return vec3<f32>(-19.74308204650879, 3.739185714235248e-07, 0.128459170460701);
        }
        case 20u: {
            return vec3<f32>(-20.745616912841797, 4.923427093127608e-08, 0.12719157338142395);
        }
        case 21u: {
            return vec3<f32>(-21.74799919128418, 4.2308305003508606e-07, 0.12600061297416687);
        }
        case 22u: {
            return vec3<f32>(-22.750242233276367, -7.510296928969598e-07, 0.12487851083278656);
        }
        case 23u: {
            return vec3<f32>(-23.752363204956055, 2.6757087294129045e-07, 0.1238185316324234);
        }
        case 24u: {
            return vec3<f32>(-24.754369735717773, -5.221051977268457e-07, 0.12281487137079239);
        }
        case 25u: {
            return vec3<f32>(-25.756275177001953, 9.623091787642723e-08, 0.12186245620250702);
        }
        case 26u: {
            return vec3<f32>(-26.758087158203125, 8.715417590076173e-07, 0.12095685303211212);
        }
        case 27u: {
            return vec3<f32>(-27.759811401367188, -2.9445951821404523e-07, 0.12009415030479431);
        }
        case 28u: {
            return vec3<f32>(-28.761457443237305, -7.840275608601822e-07, 0.11927088350057602);
        }
        case 29u: {
            return vec3<f32>(-29.763032913208008, 8.840805451943061e-07, 0.11848398298025131);
        }
        case 30u: {
            return vec3<f32>(-30.764537811279297, -7.754388750564633e-07, 0.11773070693016052);
        }
        case 31u: {
            return vec3<f32>(-31.76598358154297, 7.690847205709881e-07, 0.11700859665870667);
        }
        case 32u: {
            return vec3<f32>(-32.76736831665039, -8.046348738134632e-07, 0.11631543934345245);
        }
        case 33u: {
            return vec3<f32>(-33.768699645996094, -1.8482064534279045e-06, 0.1156492531299591);
        }
        case 34u: {
            return vec3<f32>(-34.76998519897461, 1.66684789936481e-06, 0.11500823497772217);
        }
        case 35u: {
            return vec3<f32>(-35.771217346191406, -1.155551304703419e-06, 0.11439074575901031);
        }
        case 36u: {
            return vec3<f32>(-36.77240753173828, -1.8429983458124605e-06, 0.11379531025886536);
        }
        case 37u: {
            return vec3<f32>(-37.7735595703125, 7.088009193530733e-07, 0.11322057247161865);
        }
        case 38u: {
            return vec3<f32>(-38.7746696472168, 2.0693267236447274e-07, 0.11266528069972992);
        }
        case 39u: {
            return vec3<f32>(-39.77574157714844, -1.8051452358198971e-06, 0.11212830990552902);
        }
        case 40u: {
            return vec3<f32>(-40.77678298950195, 2.157755890321564e-07, 0.1116086095571518);
        }
        case 41u: {
            return vec3<f32>(-41.77779006958008, 5.347304922057215e-07, 0.11110523343086243);
        }
        case 42u: {
            return vec3<f32>(-42.77876663208008, 1.195311402743546e-06, 0.11061728000640869);
        }
        case 43u: {
            return vec3<f32>(-43.77971267700195, 5.608533546136022e-07, 0.11014394462108612);
        }
        case 44u: {
            return vec3<f32>(-44.78063201904297, 9.308554720574673e-07, 0.10968445241451263);
        }
        case 45u: {
            return vec3<f32>(-45.781524658203125, 9.001199481686308e-07, 0.10923811793327332);
        }
        case 46u: {
            return vec3<f32>(-46.78239059448242, -8.367135366663983e-07, 0.10880428552627563);
        }
        case 47u: {
            return vec3<f32>(-47.783233642578125, -1.6795020456930357e-06, 0.10838233679533005);
        }
        case 48u: {
            return vec3<f32>(-48.7840576171875, 1.0546567318435037e-06, 0.10797172039747238);
        }
        case 49u: {
            return vec3<f32>(-49.784854888916016, -1.3198540111515285e-06, 0.10757189244031906);
        }
        default: {
            return vec3<f32>(0.0, 0.0, 0.0);
        }
    }
}

// digamma for -50 < x < 0 within half a pole-distance of a root r (lc_digamma_root):
// (value, 1), else (0, 0). psi(x) = psi(x) - psi(r), and with the reflection formula and
// psi(1 - r) = pi cot(pi r), psi(x) = [psi(1 - x) - psi(1 - r)] + pi sin(pi d) /
// (sin(pi x) sin(pi r)), d = x - r formed exactly (r as two f32s): the first part by
// Simpson's rule on trigamma over [1 - r, 1 - x], the second without cancellation.
fn lc_digamma_near_root(x: f32) -> vec2<f32> {
    let n = floor(-x);
    if (!(n >= 0.0 && n < 50.0)) {
        return vec2<f32>(0.0, 0.0);
    }
    let root = lc_digamma_root(u32(n));
    let d0 = x - root.x;
    if (!(abs(d0) < root.z)) {
        return vec2<f32>(0.0, 0.0);
    }
    let d = lc_opaque(d0) - root.y;
    let a = 1.0 - x;
    let b = 1.0 - root.x;
    let m = 0.5 * (a + b);
    let s = -d * (lc_trigamma_pos(a) + 4.0 * lc_trigamma_pos(m) + lc_trigamma_pos(b)) * 0.16666667;
    // sin(pi r) = sin(pi r_hi) + pi r_lo cos(pi r_hi): r_lo is up to 2e-6 near -50.
    let sc = lc_sincospi(root.x);
    let sr = sc.x + 3.14159265 * root.y * sc.y;
    let t = 3.14159265 * lc_sin_kernel(3.14159265 * d) / (lc_sincospi(x).x * sr);
    return vec2<f32>(s + t, 1.0);
}

// digamma(x), as torch: -inf at +0, +inf at -0, NaN at the negative whole numbers and
// at -inf; for x < 0 the reflection psi(1 - x) - pi cos(pi x) / sin(pi x).
// Measured (tests/function_library.rs): max rel error 2.2e-6 over 570k inputs above -50
// (1000 ulps around the positive root and each negative root included). Below -50, near a
// root, the reflection's two terms (about log(1 - x) each) cancel: error about 1e-6 log(1
// - x) absolute there.
fn lc_digamma(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (lc_isinf(x)) {
        return select(lc_nan(), x, x > 0.0);
    }
    if (x == 0.0) {
        return select(-lc_inf(), lc_inf(), (bitcast<u32>(x) & 0x80000000u) != 0u);
    }
    if (x < 0.0) {
        if (x == floor(x)) {
            return lc_nan();
        }
        let near = lc_digamma_near_root(x);
        if (near.y != 0.0) {
            return near.x;
        }
        let sc = lc_sincospi(x);
        return lc_digamma_pos(1.0 - x) - 3.14159265 * sc.y / sc.x;
    }
    return lc_digamma_pos(x);
}

// trigamma for finite x >= 1/2: the recurrence psi'(x) = psi'(x + 1) + 1/x^2 up to 10,
// then 1/x + 1/(2x^2) + sum B2k / x^(2k+1).
fn lc_trigamma_pos(x: f32) -> f32 {
    var y = x;
    var acc = 0.0;
    while (y < 10.0) {
        let r = 1.0 / y;
        acc += r * r;
        y += 1.0;
    }
    let r = 1.0 / y;
    let z = r * r;
    return acc + r + 0.5 * z + z * r * (0.16666667 - z * (0.033333333 - z * (0.023809524 - z * 0.033333333)));
}

// trigamma(x), the derivative of digamma: +inf at the poles (0 and the negative whole
// numbers), 0 at +inf, NaN at -inf; below 1/2 the reflection
// pi^2 / sin^2(pi x) - psi'(1 - x), sin(pi x) from lc_sincospi.
// Measured (tests/function_library.rs): max rel error 8.0e-7 over 470k inputs.
fn lc_trigamma(x: f32) -> f32 {
    if (lc_isnan(x)) {
        return lc_nan();
    }
    if (lc_isinf(x)) {
        return select(lc_nan(), 0.0, x > 0.0);
    }
    if (x <= 0.0 && x == floor(x)) {
        return lc_inf();
    }
    if (x < 0.5) {
        let q = 3.14159265 / lc_sincospi(x).x;
        return q * q - lc_trigamma_pos(1.0 - x);
    }
    return lc_trigamma_pos(x);
}

// torch.special.xlogy: x log(y), 0 where x = 0 unless y is NaN; log y as log1p(y - 1)
// (y - 1 exact) for y in (1/2, 2), so that results near y = 1 stay relative.
// Measured (tests/function_library.rs): max rel error 1.9e-7 over 350k pairs.
fn lc_xlogy(x: f32, y: f32) -> f32 {
    if (lc_isnan(y) || lc_isnan(x)) {
        return lc_nan();
    }
    if (x == 0.0) {
        return 0.0;
    }
    if (y < 0.0) {
        return lc_nan();
    }
    if (y == 0.0) {
        return -lc_with_sign_of(lc_inf(), x);
    }
    if (lc_isinf(y)) {
        return lc_with_sign_of(lc_inf(), x);
    }
    if (y == 1.0) {
        if (lc_isinf(x)) {
            return lc_nan();
        }
        return lc_with_sign_of(0.0, x);
    }
    var l = 0.0;
    if (y > 0.5 && y < 2.0) {
        l = lc_log1p(y - 1.0);
    } else {
        l = lc_log(y);
    }
    // The sign of a product that underflows to zero, as the CPU's.
    return lc_with_sign_of(x * l, bitcast<f32>(bitcast<u32>(x) ^ bitcast<u32>(l)));
}

// A value's place in the ranking of sum_top and mean_top: increasing with the value, -0
// just below +0, every NaN above +inf (ir::scalar::order_key). Exact, from the bits.
// Measured (tests/reductions.rs): through the k-th largest, against the CPU evaluator.
fn lc_key(x: f32) -> u32 {
    if (lc_isnan(x)) {
        return 0xffffffffu;
    }
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// The value whose lc_key is k (NaN for the key of NaN; ir::scalar::from_order_key).
// Measured (tests/reductions.rs): through the k-th largest, against the CPU evaluator.
fn lc_unkey(k: u32) -> f32 {
    if (k == 0xffffffffu) {
        return lc_nan();
    }
    return lc_bits(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}
