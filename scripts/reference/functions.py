#!/usr/bin/env python3
"""Reference values and gradients of lossc's element-wise functions, from PyTorch.

Writes `tests/reference/functions.json` (next to this repository's `tests/`), or the path
given with `--out`; a short summary (cases per function, sanity checks) goes to stdout:

    /path/to/python scripts/reference/functions.py [--out FILE]

Needs PyTorch, NumPy and mpmath. The Rust tests only read the JSON, so they need none of
these; rerun this script (and commit the JSON) when the functions or the inputs change.

For 15 functions (13 unary, 2 binary) the script builds a deterministic, de-duplicated
list of float32 inputs: hand-picked edge points (signed zeros, infinities, NaN,
subnormals, the largest finite value, poles, points next to the zeros of the result or of
its derivative, saturation and overflow points, thresholds) followed by a seeded random
sweep (`numpy.random.default_rng(12345)`, re-created for every function) over each
function's useful domain. For every input it records

  * `value`:   torch's float32 result, computed on one float32 CPU tensor holding the whole
               batch (torch's CPU kernels may vectorise it, e.g. with SLEEF);
  * `grad`:    torch's float32 autograd gradient with respect to each argument
               (`f(*args).sum().backward()` on the batch; the functions are element-wise);
  * `value64`: the exact function value at the float32 input, rounded to float64. It is
               computed with mpmath at 160 bits and rounded correctly wherever the input
               is finite and non-zero and the result is a finite real; elsewhere (signed
               zeros, infinities, NaN, poles, `sign`, and `xlogy`'s and `atan2`'s special
               cases) it is torch's float64 result on the same input. It is the
               mathematical function, not torch's float32 algorithm: e.g. for softplus it
               is log(1 + e^x) even above torch's threshold of 20, where torch returns x.
  * `grad64`:  the exact derivative(s) at the float32 input (DERIVATIVES, in mpmath),
               rounded to float64, where the input is finite and non-zero and the
               derivative defined and finite; elsewhere torch's float64 autograd gradient.
               softplus's follows torch's threshold (exactly 1 above 20).

JSON layout (one case per line):

    {"generated_by": "scripts/reference/functions.py", "torch_version": ...,
     "mpmath_version": ..., "value64_source": ...,
     "functions": {NAME: {"arity": N, "cases": [
         {"x": [ARG, ...], "value": V, "value64": V64, "grad": [DV/DARG, ...],
          "grad64": [...]}, ...]}}}

Numbers: finite values are JSON numbers whose text round-trips exactly (float32
quantities are written as the shortest repr of the float32 value widened to a double, so
parsing as f64 and then casting to f32, or parsing straight to f32, gives the value back);
-0.0 is written as -0.0; NaN is the string "nan", infinities "inf" and "-inf". The binary
functions take their arguments in torch's order: atan2(y, x) and xlogy(x, y).
"""

import argparse
import math
import os
import sys
from fractions import Fraction

import mpmath
import numpy as np
import torch
import torch.nn.functional as F

mp = mpmath.mp
mp.prec = 160

SEED = 12345

F32 = np.float32
INF = float("inf")
NAN = float("nan")
SUB = float(np.finfo(F32).smallest_subnormal)  # 2^-149
NORM = float(np.finfo(F32).tiny)  # 2^-126, the smallest normal
MAX = float(np.finfo(F32).max)  # 3.4028235e38


# --------------------------------------------------------------------------------------
# float32 helpers


def f32(v):
    """`v` rounded to float32, as a Python float (exact)."""
    return float(F32(v))


def next_up(v):
    return float(np.nextafter(F32(v), F32(INF)))


def next_down(v):
    return float(np.nextafter(F32(v), F32(-INF)))


def with_neighbours(v, ulps=1):
    """The float32 `v` and its `ulps` float32 neighbours on each side."""
    out = [f32(v)]
    up = down = f32(v)
    for _ in range(ulps):
        up, down = next_up(up), next_down(down)
        out += [down, up]
    return out


def nearest_f32(x):
    """The float32 nearest to the mpmath number `x` (no double rounding)."""
    c = F32(float(x))
    candidates = [c, np.nextafter(c, F32(INF)), np.nextafter(c, F32(-INF))]
    return float(min(candidates, key=lambda cand: abs(mpmath.mpf(float(cand)) - x)))


def key32(v):
    """Dedupe key of a float32: its bit pattern, with every NaN the same."""
    return "nan" if math.isnan(v) else int(F32(v).view(np.uint32))


# --------------------------------------------------------------------------------------
# number encoding


def enc_special(v):
    if math.isnan(v):
        return '"nan"'
    if math.isinf(v):
        return '"inf"' if v > 0 else '"-inf"'
    return None


def enc32(v):
    v = float(v)
    return enc_special(v) or repr(float(F32(v)))


def enc64(v):
    v = float(v)
    return enc_special(v) or repr(v)


def mp_to_float(x):
    """Correctly rounded float64 of an mpmath number (subnormals and overflow included)."""
    if x == 0:
        return 0.0
    sign, man, exp, bc = x._mpf_  # x = (-1)^sign * man * 2^exp, man has bc bits
    negative = sign == 1
    # |x| lies in [2^(exp+bc-1), 2^(exp+bc)); settle far-out magnitudes before building
    # the exact fraction (whose power of two could have ~1e38 bits, e.g. expm1(3e38)).
    top = int(exp) + int(bc)
    if top > 1100:
        return -INF if negative else INF
    if top < -1200:
        return -0.0 if negative else 0.0
    magnitude = Fraction(int(man)) * (Fraction(2) ** int(exp))
    try:
        return -float(magnitude) if negative else float(magnitude)
    except OverflowError:
        return -INF if negative else INF


# --------------------------------------------------------------------------------------
# the functions: torch (float32 and float64) and mpmath


def _finite_nonzero(*args):
    return all(math.isfinite(a) and a != 0.0 for a in args)


def _is_pole(x):
    """lgamma and digamma have poles at the non-positive integers."""
    return x <= 0 and x == math.floor(x)


def mp_lgamma(x):
    if _is_pole(x):
        return None
    return mpmath.re(mpmath.loggamma(x))  # log|Gamma(x)|; loggamma is complex for x < 0


def mp_digamma(x):
    return None if _is_pole(x) else mpmath.digamma(x)


def mp_log1p(x):
    return mpmath.log1p(x) if x > -1 else None


def mp_atan2(y, x):
    return mpmath.atan2(y, x) if _finite_nonzero(y, x) else None


def mp_xlogy(x, y):
    return x * mpmath.log(y) if _finite_nonzero(x, y) and y > 0 else None


# name -> (arity, torch function, mpmath function or None)
FUNCTIONS = {
    "log1p": (1, torch.log1p, mp_log1p),
    "expm1": (1, torch.expm1, mpmath.expm1),
    "softplus": (1, F.softplus, lambda x: mpmath.log1p(mpmath.exp(x))),
    "sigmoid": (1, torch.sigmoid, lambda x: 1 / (1 + mpmath.exp(-x))),
    "logsigmoid": (1, F.logsigmoid, lambda x: -mpmath.log1p(mpmath.exp(-x))),
    "tanh": (1, torch.tanh, mpmath.tanh),
    "sin": (1, torch.sin, mpmath.sin),
    "cos": (1, torch.cos, mpmath.cos),
    "atan": (1, torch.atan, mpmath.atan),
    "erf": (1, torch.erf, mpmath.erf),
    "lgamma": (1, torch.lgamma, mp_lgamma),
    "digamma": (1, torch.digamma, mp_digamma),
    "sign": (1, torch.sign, None),
    "atan2": (2, torch.atan2, mp_atan2),
    "xlogy": (2, torch.special.xlogy, mp_xlogy),
}


def _pos(v):
    return v if v > 0 else None


def _not_pole(f):
    return lambda x: None if _is_pole(x) else f(x)


# name -> the exact derivative(s) in mpmath, a tuple per argument (None where undefined:
# grad64 then takes torch's float64 autograd gradient). softplus follows torch's
# threshold: its derivative is exactly 1 above 20, where torch returns x itself.
DERIVATIVES = {
    "log1p": lambda x: (1 / (1 + x) if x > -1 else None,),
    "expm1": lambda x: (mpmath.exp(x),),
    "softplus": lambda x: (mpmath.mpf(1) if x > 20 else 1 / (1 + mpmath.exp(-x)),),
    "sigmoid": lambda x: (mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2,),
    "logsigmoid": lambda x: (1 / (1 + mpmath.exp(x)),),
    "tanh": lambda x: (mpmath.sech(x) ** 2,),
    "sin": lambda x: (mpmath.cos(x),),
    "cos": lambda x: (-mpmath.sin(x),),
    "atan": lambda x: (1 / (1 + x * x),),
    "erf": lambda x: (2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x),),
    "lgamma": lambda x: (None if _is_pole(x) else mpmath.psi(0, x),),
    "digamma": lambda x: (None if _is_pole(x) else mpmath.psi(1, x),),
    "sign": lambda x: (mpmath.mpf(0),),
    "atan2": lambda y, x: (x / (x * x + y * y), -y / (x * x + y * y)),
    "xlogy": lambda x, y: (mpmath.log(y) if y > 0 else None, x / y),
}


# --------------------------------------------------------------------------------------
# edge points

# Shared by every unary function.
COMMON = [
    0.0, -0.0, INF, -INF, NAN, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0,
    SUB, -SUB, NORM, -NORM, next_down(NORM), -next_down(NORM), MAX, -MAX,
    1e-30, -1e-30, 1e-8, -1e-8, 1e-4, -1e-4, 10.0, -10.0, 100.0, -100.0,
]

# Arguments of the binary functions' edge grid (every pair of them).
BINARY_GRID = [0.0, -0.0, INF, -INF, NAN, 1.0, -1.0, 0.5, SUB, NORM, MAX]

TINY = [1e-30, 1e-20, 1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 2.0**-24, 2.0**-23, 2.0**-12]

LN_MAX = nearest_f32(mpmath.log(MAX))  # 88.72284: exp overflows float32 above it


def both_signs(values):
    return [s * v for v in values for s in (1.0, -1.0)]


def trig_points():
    """float32s nearest to k*pi and (k+1/2)*pi and their neighbours, k up to 1e5/pi.

    sin vanishes at k*pi and cos at (k+1/2)*pi; each is the other's derivative, so both
    sets matter for both functions (value or gradient near a zero)."""
    ks = list(range(0, 13)) + [
        16, 20, 25, 32, 50, 64, 100, 113, 128, 200, 256, 355, 500, 512, 710, 1000, 1024,
        2000, 3000, 4096, 5000, 8192, 10000, 16384, 20000, 25000, 30000, 31830,
    ]
    rng = np.random.default_rng(SEED)
    ks += sorted(int(k) for k in rng.integers(1, 31831, size=10))
    negative = {1, 2, 3, 10, 100, 1000, 31830}
    points = []
    for k in ks:
        for offset in (0, mpmath.mpf(1) / 2):
            centre = nearest_f32((k + offset) * mpmath.pi)
            signs = (1.0, -1.0) if k in negative else (1.0,)
            points += [s * p for s in signs for p in with_neighbours(centre)]
    # Huge arguments (argument reduction) and integers around float32's 2^23, 2^24.
    points += both_signs([1e5, 1e6, 1e10, 1e20, 1e30, 2.0**23, 2.0**24, 8388607.5,
                          next_down(2.0**24), 3.0e38])
    points += [f32(math.pi / 4), f32(math.pi / 2), f32(math.pi), f32(3 * math.pi / 4)]
    return points


def lgamma_negative_roots(count):
    """Roots of log|Gamma(x)| on (-n-1, -n) for n = 2 .. count+1: |Gamma| stays above 1
    on (-2, 0) and crosses 1 twice on each later interval, ever closer to the poles."""
    f = lambda x: mpmath.re(mpmath.loggamma(x))
    roots = []
    for lo in range(-3, -3 - count, -1):
        # Scan the interval for sign changes, then polish with findroot.
        grid = [lo + (i + 0.5) / 4096 for i in range(4096)]
        vals = [f(mpmath.mpf(g)) for g in grid]
        for a, b, fa, fb in zip(grid, grid[1:], vals, vals[1:]):
            if fa * fb < 0:
                roots.append(mpmath.findroot(f, (a, b), solver="anderson"))
    return roots


def digamma_negative_roots(count):
    """The root of digamma on each (-n-1, -n), n = 0 .. count-1."""
    roots = []
    for n in range(count):
        roots.append(mpmath.findroot(mpmath.digamma, (-n - 0.999, -n - 0.001),
                                     solver="anderson"))
    return roots


def poles():
    return [0.0, -0.0, -1.0, -2.0, -3.0, -10.0, -50.0, -1e6, -(2.0**24), -INF,
            next_up(-1.0), next_down(-1.0), next_up(-2.0), next_down(-2.0),
            -2.5, -0.5, -1.5, -1e-30, 1e-30, -1e-38, -SUB, SUB,
            -49.5, -1e4 - 0.5, -1e6 - 0.5, -(2.0**23) + 0.5]


def edge_points(name):
    if name == "log1p":
        return COMMON + both_signs(TINY) + [
            next_up(-1.0), next_down(-1.0), -0.999, -0.9, f32(math.e - 1), 1e4, 1e30,
            f32(-1 + 2.0**-24), -0.25, 0.25, -0.7, 0.4142135,
        ]
    if name == "expm1":
        return COMMON + both_signs(TINY) + [
            88.7, 89.0, 88.0, LN_MAX, next_up(LN_MAX), next_down(LN_MAX), -88.7, -89.0,
            -87.3, -103.97, -104.0, -16.0, -17.0, -16.6, -20.0, 0.6931472, -0.6931472,
            1e-10, 0.25, -0.25, 1e4, -1e4, 1e30, -1e30,
        ]
    if name == "softplus":
        return COMMON + both_signs(TINY) + [
            20.0, next_up(20.0), next_down(20.0), 19.9, 20.1, 19.0, 21.0, 15.0, 16.0,
            16.6, 17.0, 18.0, 30.0, -15.0, -16.0, -17.0, -20.0, -30.0, -87.0, -88.0, -89.0,
            -100.0, -103.0, -104.0, -105.0, -150.0, 88.7, 89.0, 1e4, -1e4, 1e30, -1e30,
        ]
    if name == "sigmoid":
        return COMMON + both_signs(TINY) + both_signs([
            15.0, 16.0, 16.6, 17.0, 20.0, 30.0, 87.3, 88.7, LN_MAX, 89.0, 103.0, 103.97,
            104.0, 105.0, 1e4, 1e30,
        ])
    if name == "logsigmoid":
        return COMMON + both_signs(TINY) + both_signs([
            15.0, 16.0, 16.6, 17.0, 20.0, 30.0, 87.3, 88.7, 89.0, 103.0, 104.0, 105.0,
            1e4, 1e30,
        ])
    if name == "tanh":
        return COMMON + both_signs(TINY) + both_signs([
            0.5493061, 0.55, 0.625, 1e-3, 0.125, 2.0**-12, 5.0, 8.0, 8.3, 9.0, 9.01, 9.1,
            11.0, 20.0, 44.0, 88.7, 89.0, 1e4, 1e30,
        ])
    if name in ("sin", "cos"):
        return COMMON + both_signs(TINY) + trig_points()
    if name == "atan":
        return COMMON + both_signs(TINY) + both_signs([
            0.4375, 0.6875, 1.1875, 2.4375, 2.0**-27, 2.0**66, 1e4, 1e8, 16777216.0,
            1e20, 1e30, f32(math.tan(1.0)), 3.0, 0.25,
        ])
    if name == "erf":
        return COMMON + both_signs(TINY) + both_signs([
            0.84375, 1.25, 2.857, 3.0, 3.9, 3.92, 4.0, 5.0, 6.0, 1e4, 1e30, 2.0**-28,
            0.25, 0.75,
        ])
    if name == "lgamma":
        near_zeros = (with_neighbours(1.0, 2) + with_neighbours(2.0, 2)
                      + [0.999, 1.001, 1.999, 2.001, 0.99, 1.01, 1.99, 2.01])
        roots = [nearest_f32(r) for r in lgamma_negative_roots(4)]
        return COMMON + poles() + near_zeros + [
            p for r in roots for p in with_neighbours(r)
        ] + [
            3.0, 4.0, 10.0, 100.0, 1e4, 1e6, 1e10, 1e20, 1e30, 4e36, 4.08e36, 4.1e36,
            1e37, 1e-20, 1e-10, 1e-8, 1e-4, 0.1, 1.4616321, 2.5, 3.5,
        ]
    if name == "digamma":
        root = nearest_f32(mpmath.findroot(mpmath.digamma, 1.4616321449683622))
        negative = [nearest_f32(r) for r in digamma_negative_roots(6)]
        return COMMON + poles() + with_neighbours(root, 2) + [
            p for r in negative for p in with_neighbours(r)
        ] + [
            1.46, 1.47, 3.0, 10.0, 100.0, 1e4, 1e6, 1e10, 1e20, 1e30, 1e-20, 1e-10, 1e-8,
            1e-4, 0.1, 2.5,
        ]
    if name == "sign":
        return COMMON + both_signs([2.0**-140, 1e-40, next_down(NORM), 1e30])
    if name == "atan2":
        grid = [(y, x) for y in BINARY_GRID for x in BINARY_GRID]
        return grid + [
            (1.0, 1.0), (-1.0, -1.0), (1e-30, 1e30), (1e30, 1e-30), (-1e-30, 1e30),
            (SUB, MAX), (-SUB, MAX), (MAX, SUB), (-MAX, -MAX), (SUB, -1.0), (-SUB, -1.0),
            (-0.0, -1.0), (0.0, -SUB), (-0.0, -SUB), (1.0, -MAX), (-1.0, -MAX),
            (INF, -MAX), (-INF, -MAX), (-1.0, -0.0), (-1.0, 0.0), (1e-4, -1.0),
            (-1e-4, -1.0), (3.0, 4.0), (-3.0, -4.0), (1.0, 2.0**24), (2.0**24, 1.0),
        ]
    if name == "xlogy":
        grid = [(x, y) for x in BINARY_GRID for y in BINARY_GRID]
        return grid + [
            (2.0, f32(math.e)), (1.0, next_up(1.0)), (1.0, next_down(1.0)), (-3.0, 0.5),
            (1e-30, 1e-30), (MAX, MAX), (MAX, 0.5), (-MAX, MAX), (0.0, -1.0),
            (-0.0, -1.0), (1.0, -1.0), (NAN, -1.0), (2.0, -0.0), (-2.0, 0.0),
            (-2.0, -0.0), (0.0, SUB), (1.0, SUB), (-1.0, SUB), (1e-30, MAX),
        ]
    raise KeyError(name)


# --------------------------------------------------------------------------------------
# sweeps


def log_uniform(rng, n, lo=-6.0, hi=4.0):
    return 10.0 ** rng.uniform(lo, hi, n)


def signed_log_uniform(rng, n, lo=-6.0, hi=4.0):
    return log_uniform(rng, n, lo, hi) * rng.choice([-1.0, 1.0], n)


def sweep(name):
    """A seeded sweep over the function's useful domain, in a fixed order."""
    rng = np.random.default_rng(SEED)
    if name in ("atan2", "xlogy"):
        first = np.concatenate([signed_log_uniform(rng, 200), rng.uniform(-10, 10, 100)])
        if name == "xlogy":
            # y mostly positive (log's domain), with a uniform block that has negatives.
            second = np.concatenate([log_uniform(rng, 200), rng.uniform(-10, 10, 100)])
        else:
            second = np.concatenate([signed_log_uniform(rng, 200), rng.uniform(-10, 10, 100)])
        return [(f32(a), f32(b)) for a, b in zip(first, second)]

    positive = log_uniform(rng, 120)
    negative = -log_uniform(rng, 120)
    uniform = rng.uniform(-10, 10, 100)
    parts = [positive, negative, uniform]
    if name == "log1p":
        # log1p's domain is (-1, inf): negatives from -1e-6 to just above -1.
        parts[1] = -log_uniform(rng, 120, -6.0, math.log10(0.9999))
        parts[2] = rng.uniform(-1, 10, 100)
    elif name in ("sin", "cos"):
        parts[0] = log_uniform(rng, 120, -6.0, 5.0)
        parts[1] = -log_uniform(rng, 120, -6.0, 5.0)
        parts.append(rng.uniform(-1e5, 1e5, 60))
    elif name in ("lgamma", "digamma"):
        parts.append(rng.uniform(-50, 0, 120))  # negative non-integers between the poles
        parts.append(-log_uniform(rng, 40, -6.0, 0.0))
    elif name == "expm1":
        parts.append(rng.uniform(-100, 89, 60))
    elif name in ("sigmoid", "logsigmoid", "softplus", "tanh", "erf"):
        parts.append(rng.uniform(-30, 30, 60))
    values = [f32(v) for v in np.concatenate(parts)]
    if name in ("lgamma", "digamma"):
        values = [v for v in values if not _is_pole(v)]  # poles are edge points
    return values


# --------------------------------------------------------------------------------------
# evaluation


def inputs(name, arity):
    """Edge points then the sweep, as float32 tuples, de-duplicated (first one kept)."""
    seen, out = set(), []
    for item in list(edge_points(name)) + list(sweep(name)):
        args = tuple(f32(a) for a in (item if arity > 1 else (item,)))
        key = tuple(key32(a) for a in args)
        if key not in seen:
            seen.add(key)
            out.append(args)
    return out


def evaluate(name, arity, fn, mp_fn, cases):
    cols = [np.array([c[i] for c in cases], dtype=np.float32) for i in range(arity)]

    # float32: value and autograd gradients on the whole batch.
    leaves = [torch.tensor(col, dtype=torch.float32, requires_grad=True) for col in cols]
    out = fn(*leaves)
    out.sum().backward()
    values = out.detach().numpy()
    grads = [leaf.grad.numpy() if leaf.grad is not None else np.zeros_like(col)
             for leaf, col in zip(leaves, cols)]

    # float64 torch on the same (float32) inputs: the fallback for value64 and grad64.
    with torch.no_grad():
        values_t64 = fn(*[torch.tensor(col, dtype=torch.float64) for col in cols]).numpy()
    leaves64 = [torch.tensor(col, dtype=torch.float64, requires_grad=True) for col in cols]
    fn(*leaves64).sum().backward()
    grads_t64 = [leaf.grad.numpy() if leaf.grad is not None else np.zeros(len(cases))
                 for leaf in leaves64]
    grad64 = []
    for i, args in enumerate(cases):
        exact = [None] * arity
        if _finite_nonzero(*args):
            try:
                exact = list(DERIVATIVES[name](*[mpmath.mpf(a) for a in args]))
            except (ValueError, ZeroDivisionError):
                pass
        row = []
        for a in range(arity):
            d = exact[a]
            if isinstance(d, mpmath.mpf) and mpmath.isfinite(d):
                row.append(mp_to_float(d) if d != 0 else 0.0)
            else:
                row.append(float(grads_t64[a][i]))
        grad64.append(row)

    value64, checks = [], []
    for i, args in enumerate(cases):
        v = None
        # mpmath has no signed zeros or infinities: those inputs (and exactly zero
        # results, whose sign is a convention) take torch's float64 value.
        if mp_fn is not None and _finite_nonzero(*args):
            try:
                r = mp_fn(*[mpmath.mpf(a) for a in args])
            except (ValueError, ZeroDivisionError):
                r = None
            if isinstance(r, mpmath.mpf) and mpmath.isfinite(r) and r != 0:
                v = mp_to_float(r)
        if v is None:
            v = float(values_t64[i])
        else:
            checks.append((args, v, float(values_t64[i])))
        value64.append(v)

    # Sanity checks, printed in the summary: torch float64 against mpmath, and each value
    # in the batch against the same function on a one-element tensor (which goes through
    # the scalar path of torch's CPU kernels rather than the vectorised one).
    worst = max(((abs(t - v) / abs(v) if v != 0 else abs(t), args)
                 for args, v, t in checks if math.isfinite(t)), default=(0.0, None))
    scalar_diff = 0
    for i, args in enumerate(cases):
        with torch.no_grad():
            single = fn(*[torch.tensor([a], dtype=torch.float32) for a in args])
        a, b = float(single[0]), float(values[i])
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            scalar_diff += 1
    return values, value64, grads, grad64, {"torch64_vs_mpmath_worst": worst,
                                    "batch_vs_single": scalar_diff}


def case_line(args, value, v64, grads, g64):
    x = ", ".join(enc32(a) for a in args)
    g = ", ".join(enc32(d) for d in grads)
    e = ", ".join(enc64(d) for d in g64)
    return (f'{{"x": [{x}], "value": {enc32(value)}, "value64": {enc64(v64)}, '
            f'"grad": [{g}], "grad64": [{e}]}}')


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "..", "tests", "reference", "functions.json")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.normpath(default_out),
                        help="where to write the JSON (default: %(default)s)")
    args = parser.parse_args()

    torch.set_num_threads(1)

    lines = [
        "{",
        '"generated_by": "scripts/reference/functions.py",',
        f'"torch_version": "{torch.__version__}",',
        f'"mpmath_version": "{mpmath.__version__}",',
        '"value64_source": "mpmath at 160 bits, correctly rounded, where the input is '
        'finite and non-zero and the result a finite real; torch float64 elsewhere",',
        '"functions": {',
    ]
    print(f"torch {torch.__version__}, mpmath {mpmath.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'function':<11} {'cases':>5}  {'batch!=single':>13}  torch64 vs mpmath (worst rel)")
    names = list(FUNCTIONS)
    total = 0
    for n, name in enumerate(names):
        arity, fn, mp_fn = FUNCTIONS[name]
        cases = inputs(name, arity)
        values, value64, grads, grad64, stats = evaluate(name, arity, fn, mp_fn, cases)
        total += len(cases)
        worst, where = stats["torch64_vs_mpmath_worst"]
        print(f"{name:<11} {len(cases):>5}  {stats['batch_vs_single']:>13}  "
              f"{worst:.3g} at {where}")
        lines.append(f'"{name}": {{"arity": {arity}, "cases": [')
        body = [case_line(c, values[i], value64[i], [g[i] for g in grads], grad64[i])
                for i, c in enumerate(cases)]
        lines.append(",\n".join(body))
        lines.append("]}" + ("," if n + 1 < len(names) else ""))
    lines += ["}", "}"]

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{total} cases -> {args.out}")


if __name__ == "__main__":
    sys.exit(main())
