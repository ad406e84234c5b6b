//! IEEE special values (±0, ±inf, NaN) through both back ends. Each case is checked
//! against a value written here by hand from the rule that defines it (C's `pow` in C99
//! Annex F.9.4.4, IEEE 754 arithmetic, the median's rule in docs/language.md), not
//! against either back end's output: the CPU evaluator and every form of the GPU kernel
//! (specialised to the sizes with each row placement, and generic) must each give it.

use std::collections::HashMap;
use std::sync::Mutex;

use lossc::diagnostics::Source;
use lossc::gpu::unfused::UnfusedPlan;
use lossc::gpu::{Dispatch, DispatchOptions, KernelForm, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Array, Data, DataValue};
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

/// One case: a program of one loss named `t`, its data, and the loss's value by hand.
struct Case {
    text: String,
    data: Data,
    want: f32,
    /// What it checks, for the failure message.
    what: String,
    /// The GPU kernel forms it runs in (besides the CPU evaluator).
    forms: &'static [Form],
    /// The relative difference from `want` allowed for a finite, nonzero value.
    rel: f32,
}

/// A few f32 roundings (the GPU's `pow` is exp2(y · log2 x), accurate to a few ulps
/// for exponents of ordinary size).
const ROUNDING: f32 = 4e-6;

/// A way to run a loss on the GPU: the fused kernel (named, which text, how rows are
/// placed), or the benchmark's unfused baseline (one dispatch per IR node).
#[derive(Clone, Copy)]
enum Form {
    Fused(&'static str, KernelForm, RowPlacement),
    Unfused,
}

/// Every form of the kernel: specialised to the sizes under each row placement, and
/// generic (sizes from the parameter block); and the unfused baseline.
const EVERY_FORM: &[Form] = &[
    Form::Fused(
        "specialised, shared rows",
        KernelForm::Specialised,
        RowPlacement::Shared,
    ),
    Form::Fused(
        "specialised, a row per thread",
        KernelForm::Specialised,
        RowPlacement::PerThread,
    ),
    Form::Fused("generic", KernelForm::Generic, RowPlacement::Auto),
    Form::Unfused,
];

/// Every form of the fused kernel: [`EVERY_FORM`] but the unfused baseline.
const EVERY_FUSED_FORM: &[Form] = EVERY_FORM.split_at(3).0;

/// For element-wise values of one-element inputs, where row placement changes nothing:
/// the specialised kernel, whose literal sizes the shader compiler folds, and the generic.
const SPECIALISED_AND_GENERIC: &[Form] = &[
    Form::Fused("specialised", KernelForm::Specialised, RowPlacement::Auto),
    Form::Fused("generic", KernelForm::Generic, RowPlacement::Auto),
];

/// The same and the unfused baseline (whose plans compile every kernel anew: kept to a
/// sample of the cases).
const SPECIALISED_GENERIC_AND_UNFUSED: &[Form] = &[
    Form::Fused("specialised", KernelForm::Specialised, RowPlacement::Auto),
    Form::Fused("generic", KernelForm::Generic, RowPlacement::Auto),
    Form::Unfused,
];

/// For a constant folded before code generation: the specialised kernel alone.
const SPECIALISED: &[Form] = &[Form::Fused(
    "specialised",
    KernelForm::Specialised,
    RowPlacement::Auto,
)];

/// Runs every case on the CPU evaluator and on every GPU kernel form, and lists each value
/// that is not the case's `want`. Cases with the same text share one compiled kernel (and
/// the device's pipeline cache shares the specialised text of equal sizes), so a table of
/// data rows compiles once.
fn check_cases(cases: &[Case]) {
    // One test at a time on the device: concurrent dispatches of many small kernels on
    // llvmpipe take ten times as long as the same dispatches in turn.
    static DEVICE: Mutex<()> = Mutex::new(());
    let _turn = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    let dev = lossc::gpu::gpu().unwrap();
    let terms = [FactoryTerm::plain("t")];
    let mut programs: HashMap<&str, (Program, lossc::codegen::Kernel)> = HashMap::new();
    let mut wrong = Vec::new();
    for case in cases {
        let (program, kernel) = programs.entry(&case.text).or_insert_with(|| {
            let sources = [Source::new("specials.loss", case.text.clone())];
            let checked = lossc::sema::check(&sources);
            assert!(!checked.has_errors(), "{}", checked.render(&sources));
            let kernel = lossc::codegen::compile(&checked.program, "t", &terms).unwrap();
            (checked.program, kernel)
        });
        let cpu = run_cpu(program, &terms, &case.data, &vec![], &RunOptions::default()).unwrap();
        let mut got = vec![("CPU".to_string(), cpu.losses[0].1.loss)];
        let (prepared, _) = prepare(program, &terms, &case.data, &vec![]).unwrap();
        let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
        for form in case.forms {
            let (form_name, out) = match *form {
                Form::Fused(form_name, form, placement) => {
                    let options = DispatchOptions {
                        placement,
                        form,
                        ..Default::default()
                    };
                    let out = Dispatch::new(dev, kernel, &bound, &[1.0], &options)
                        .and_then(|d| d.run(dev))
                        .map(|(out, _)| out)
                        .map_err(|e| e.to_string());
                    (form_name, out)
                }
                Form::Unfused => {
                    let out = UnfusedPlan::new(dev, &bound, &[1.0])
                        .and_then(|p| p.run(dev))
                        .map_err(|e| e.to_string());
                    ("unfused", out)
                }
            };
            let out = out.unwrap_or_else(|e| panic!("{}, {form_name}: {e}", case.what));
            got.push((format!("GPU ({form_name})"), out[0]));
        }
        for (back_end, value) in got {
            if !agrees(value, case.want, case.rel) {
                wrong.push(format!(
                    "{}: {back_end} {value:?}, want {:?}",
                    case.what, case.want
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A one-dimensional array.
fn vector(values: &[f32]) -> DataValue {
    DataValue::Array(Array {
        shape: vec![values.len()],
        data: values.iter().map(|v| *v as f64).collect(),
        typed_float: true,
    })
}

/// `v` as a .loss constant expression (NaN and infinities as divisions, −0 negated).
fn literal(v: f32) -> String {
    if v.is_nan() {
        "(0 / 0)".into()
    } else if v.is_infinite() {
        format!("({}1 / 0)", if v < 0.0 { "-" } else { "" })
    } else if v == 0.0 && v.is_sign_negative() {
        "(-0)".into()
    } else {
        format!("({v:?})")
    }
}

/// A loss `t` computing `value` (over index `n` of its inputs), shown by
/// [`SHOW_ZERO_SIGN`] so that one number tells a zero's sign.
fn loss_of(inputs: &[&str], value: &str) -> String {
    let decls: String = inputs
        .iter()
        .map(|i| format!("    input {i} : [N]\n"))
        .collect();
    let shown = SHOW_ZERO_SIGN.replace('V', &format!("({value})"));
    format!("loss t {{\n{decls}    compute {shown}\n    reduce sum\n}}\n")
}

/// What the programs compute from a value `v`, so that one number shows a zero's sign:
/// ±0 become ±7 (through `1 / v`, ±inf); anything else stays itself.
const SHOW_ZERO_SIGN: &str = "select(V == 0, select(1 / V > 0, 7, -7), V)";

fn show_zero_sign(v: f32) -> f32 {
    if v == 0.0 {
        if v.is_sign_negative() { -7.0 } else { 7.0 }
    } else {
        v
    }
}

/// `got` is `want`: NaN for NaN, the same bits for ±inf and a zero's ±7, and otherwise
/// within `rel` of it (and two steps of the smallest subnormal, the spacing of results
/// that small).
fn agrees(got: f32, want: f32, rel: f32) -> bool {
    if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() || want.abs() == 7.0 {
        got.to_bits() == want.to_bits()
    } else {
        (got - want).abs() <= rel * want.abs() + 2.0 * f32::from_bits(1)
    }
}

const INF: f32 = f32::INFINITY;
const NAN: f32 = f32::NAN;

/// C99 Annex F.9.4.4, `pow(x, y)`, case by case, and ordinary powers: (x, y, pow(x, y)).
const POW_TABLE: &[(f32, f32, f32)] = &[
    // pow(x, ±0) is 1 for any x, even a NaN.
    (NAN, 0.0, 1.0),
    (NAN, -0.0, 1.0),
    (INF, 0.0, 1.0),
    (-INF, -0.0, 1.0),
    (0.0, 0.0, 1.0),
    (-0.0, 0.0, 1.0),
    (-3.0, 0.0, 1.0),
    // pow(+1, y) is 1 for any y, even a NaN.
    (1.0, NAN, 1.0),
    (1.0, INF, 1.0),
    (1.0, -INF, 1.0),
    (1.0, -2.5, 1.0),
    // pow(±0, y): ±inf for an odd integer y < 0, +inf for other y < 0 (and -inf).
    (0.0, -1.0, INF),
    (-0.0, -1.0, -INF),
    (0.0, -3.0, INF),
    (-0.0, -3.0, -INF),
    (0.0, -0.5, INF),
    (-0.0, -0.5, INF),
    (0.0, -2.0, INF),
    (-0.0, -2.0, INF),
    (-0.0, -4.0, INF),
    (0.0, -INF, INF),
    (-0.0, -INF, INF),
    // pow(±0, y): ±0 for an odd integer y > 0, +0 for other y > 0 (and +inf).
    (0.0, 3.0, 0.0),
    (-0.0, 3.0, -0.0),
    (-0.0, 1.0, -0.0),
    (0.0, 0.5, 0.0),
    (-0.0, 0.5, 0.0),
    (-0.0, 2.0, 0.0),
    (-0.0, 4.0, 0.0),
    (-0.0, INF, 0.0),
    // pow(-1, ±inf) is 1.
    (-1.0, INF, 1.0),
    (-1.0, -INF, 1.0),
    // pow(x, -inf): +inf for |x| < 1, +0 for |x| > 1; pow(x, +inf) the reverse.
    (0.5, -INF, INF),
    (-0.5, -INF, INF),
    (2.0, -INF, 0.0),
    (-2.0, -INF, 0.0),
    (0.5, INF, 0.0),
    (-0.5, INF, 0.0),
    (2.0, INF, INF),
    (-2.0, INF, INF),
    // pow(-inf, y): -0 for an odd integer y < 0, +0 for other y < 0, -inf for an odd
    // integer y > 0, +inf for other y > 0.
    (-INF, -1.0, -0.0),
    (-INF, -3.0, -0.0),
    (-INF, -2.0, 0.0),
    (-INF, -0.5, 0.0),
    (-INF, 1.0, -INF),
    (-INF, 3.0, -INF),
    (-INF, 2.0, INF),
    (-INF, 0.5, INF),
    // pow(+inf, y): +0 for y < 0, +inf for y > 0.
    (INF, -1.0, 0.0),
    (INF, -0.5, 0.0),
    (INF, 0.5, INF),
    (INF, 3.0, INF),
    // A finite x < 0 and a finite non-integer y: NaN.
    (-8.0, 0.333_333_34, NAN),
    (-2.0, 0.5, NAN),
    (-2.0, -1.5, NAN),
    // A finite x < 0 and an integer y: the sign of (-1)^y times |x|^y.
    (-2.0, 3.0, -8.0),
    (-2.0, -3.0, -0.125),
    (-2.0, 2.0, 4.0),
    (-2.0, 4.0, 16.0),
    (-3.0, 1.0, -3.0),
    (-0.5, 5.0, -0.03125),
    // Every f32 of magnitude 2^24 or more is an even integer.
    (-2.0, 1e10, INF),
    (-2.0, -1e10, 0.0),
    (-0.5, 1e10, 0.0),
    // Otherwise a NaN operand gives NaN.
    (NAN, 1.0, NAN),
    (NAN, -1.0, NAN),
    (NAN, 2.0, NAN),
    (2.0, NAN, NAN),
    (-1.0, NAN, NAN),
    (0.0, NAN, NAN),
    (INF, NAN, NAN),
    (NAN, NAN, NAN),
    // Squares are exact, whatever the operand.
    (-INF, 2.0, INF),
    (-0.0, 2.0, 0.0),
    // Ordinary powers, and overflow.
    (4.0, -0.5, 0.5),
    (4.0, 0.5, 2.0),
    (2.0, 10.0, 1024.0),
    (0.25, -0.5, 2.0),
    (10.0, 39.0, INF),
];

/// Every special case of C's `pow` on both back ends, with both operands read from data,
/// and with either one written as a constant (which the GPU's shader compiler then sees),
/// and with both constant (folded before either back end runs).
#[test]
fn pow_follows_c_for_every_special_case_on_both_back_ends() {
    let mut cases = Vec::new();
    for &(x, y, p) in POW_TABLE {
        let want = show_zero_sign(p);
        let data = |names: &[(&str, f32)]| -> Data {
            names
                .iter()
                .map(|(n, v)| (n.to_string(), vector(&[*v])))
                .collect()
        };
        let (lx, ly) = (literal(x), literal(y));
        let variants = [
            (
                "data ^ data",
                loss_of(&["x", "y"], "x[n] ^ y[n]"),
                data(&[("x", x), ("y", y)]),
            ),
            (
                "constant ^ data",
                loss_of(&["y"], &format!("{lx} ^ y[n]")),
                data(&[("y", y)]),
            ),
            (
                "data ^ constant",
                loss_of(&["x"], &format!("x[n] ^ {ly}")),
                data(&[("x", x)]),
            ),
            (
                "constant ^ constant",
                loss_of(&[], &format!("{lx} ^ {ly}")),
                Data::new(),
            ),
        ];
        for (variant, text, data) in variants {
            let forms = if data.is_empty() {
                SPECIALISED
            } else {
                SPECIALISED_AND_GENERIC
            };
            cases.push(Case {
                text,
                data,
                want,
                what: format!("pow({x:?}, {y:?}), {variant}"),
                forms,
                rel: ROUNDING,
            });
        }
    }
    check_cases(&cases);
}

/// The values every identity below is tried on: the specials and a few ordinary ones.
const SPECIAL_VALUES: &[f32] = &[NAN, INF, -INF, 0.0, -0.0, 1.0, -2.0, 1e30];

/// Rewrites that hold for real numbers but not for every f32 (`0 · x = 0`, `x − x = 0`,
/// `(x + 1) − x = 1`, `x / x = 1`, `x == x`, `x + 0 = x`, ...) must not be made by either
/// back end, nor by the shader compiler, which WGSL lets assume that no value is NaN or
/// infinite. Each expression's value is IEEE 754's, as Rust's f32 arithmetic gives it.
#[test]
fn ieee_arithmetic_is_not_simplified_on_either_back_end() {
    let bool_value = |b: bool| if b { 1.0 } else { 0.0 };
    #[allow(clippy::eq_op)] // x - x, x / x, x == x: exactly what is being tested
    let identities: &[(&str, &dyn Fn(f32) -> f32)] = &[
        ("0 * x[n]", &|x| 0.0 * x),
        ("x[n] * 0", &|x| x * 0.0),
        ("x[n] - x[n]", &|x| x - x),
        ("x[n] + -x[n]", &|x| x + -x),
        ("(x[n] + 1) - x[n]", &|x| (x + 1.0) - x),
        ("(x[n] * 3) / 3", &|x| (x * 3.0) / 3.0),
        ("x[n] / x[n]", &|x| x / x),
        ("0 / x[n]", &|x| 0.0 / x),
        ("x[n] / 0", &|x| x / 0.0),
        ("x[n] + 0", &|x| x + 0.0),
        ("x[n] - 0", &|x| x - 0.0),
        ("0 - x[n]", &|x| 0.0 - x),
        ("exp(x[n]) * 0", &|x| x.exp() * 0.0),
        ("select(x[n] == x[n], 1, 0)", &|x| bool_value(x == x)),
        ("select(x[n] != x[n], 1, 0)", &|x| bool_value(x != x)),
        ("select(x[n] <= x[n], 1, 0)", &|x| bool_value(x <= x)),
        ("select(x[n] >= x[n], 1, 0)", &|x| bool_value(x >= x)),
        ("max(x[n], x[n])", &|x| x),
    ];
    let mut cases = Vec::new();
    for (expr, ieee) in identities {
        for &x in SPECIAL_VALUES {
            cases.push(Case {
                text: loss_of(&["x"], expr),
                data: [("x".to_string(), vector(&[x]))].into(),
                want: show_zero_sign(ieee(x)),
                what: format!("{expr} at x = {x:?}"),
                forms: if x.is_nan() {
                    SPECIALISED_GENERIC_AND_UNFUSED
                } else {
                    SPECIALISED_AND_GENERIC
                },
                rel: ROUNDING,
            });
        }
    }
    check_cases(&cases);
}

/// Sizes become literals in a specialised kernel, and a quantity computed from them must
/// keep IEEE's meaning: torch.var's unbiased variance of one sample is 0 / 0 = NaN, and the
/// mean over an empty range is NaN (docs/language.md).
#[test]
fn quantities_of_specialised_sizes_keep_their_ieee_meaning() {
    let var = "sum(i: (x[i] - mean(j: x[j])) ^ 2) / (N - 1)";
    let empty_mean = "mean(j in 0..N - 1: x[j])";
    let mut cases = Vec::new();
    for (expr, xs, want) in [
        (var, &[3.0][..], NAN),
        (var, &[1.0, 3.0][..], 2.0),
        (empty_mean, &[3.0][..], NAN),
        (empty_mean, &[1.0, 3.0][..], 1.0),
    ] {
        // A compute stage of one element (its domain is empty), as a loss-level value.
        cases.push(Case {
            text: format!(
                "loss t {{\n    input x : [N]\n    compute {expr} + 0 * x[0]\n    reduce mean\n}}\n"
            ),
            data: [("x".to_string(), vector(xs))].into(),
            want,
            what: format!("{expr} on {xs:?}"),
            forms: EVERY_FORM,
            rel: ROUNDING,
        });
    }
    check_cases(&cases);
}

/// The median's rule (docs/language.md) on every row of this table, by hand: the middle
/// value for an odd count; for an even count the two middle values, equal ones giving
/// that value, else `hi - (hi - lo) · 0.5` while `hi - lo` is finite, else the midpoint
/// `lo · 0.5 + hi · 0.5`; NaN for any NaN; a zero median +0.
const MEDIAN_TABLE: &[(&[f32], f32)] = &[
    // ±inf in the middle, odd and even counts.
    (&[INF], INF),
    (&[-INF], -INF),
    (&[1.0, INF, INF], INF),
    (&[-INF, -2.0, -INF], -INF),
    (&[INF, 1.0, -INF], 1.0),
    (&[INF, INF], INF),
    (&[-INF, -INF], -INF),
    (&[1.0, INF], INF),
    (&[-INF, 1.0], -INF),
    (&[INF, -INF], NAN),
    (&[-INF, 1.0, 2.0, INF], 1.5),
    // Ordinary values, and ties.
    (&[3.0, 1.0, 2.0], 2.0),
    (&[4.0, 1.0, 2.0, 3.0], 2.5),
    (&[-1.0, 4.0], 1.5),
    (&[2.0, 2.0, 2.0, 5.0], 2.0),
    (&[1.0, 2.0, 2.0, 5.0], 2.0),
    (&[5.0, 5.0, 1.0, 1.0], 3.0),
    (&[7.0, 7.0], 7.0),
    (&[6.0, 6.0, 6.0], 6.0),
    // NaN anywhere.
    (&[1.0, NAN, 3.0], NAN),
    (&[NAN], NAN),
    (&[INF, NAN], NAN),
    (&[2.0, 1.0, NAN, 4.0], NAN),
    // Zeros of either sign: +0.
    (&[-0.0], 0.0),
    (&[-0.0, -0.0], 0.0),
    (&[0.0, -0.0, 0.0], 0.0),
    (&[-1.0, -0.0, 0.0, 1.0], 0.0),
    (&[-3.0, 3.0], 0.0),
    // Large values: a difference past f32's range takes the midpoint.
    (&[-3e38, 3e38], 0.0),
    (&[1e38, 3e38], 2e38),
    (&[3e38, 3.4e38], 3.2e38),
];

/// The median on both back ends, every kernel form (a median hoisted into a row's table,
/// ranked by the workgroup or by one thread, and the unfused baseline), as the only value
/// of a loss and as a row's table read by several elements.
#[test]
fn median_follows_its_rule_for_infinities_ties_nan_and_zeros() {
    let shown = SHOW_ZERO_SIGN.replace('V', "median(j: x[j])");
    let alone = format!("loss t {{\n    input x : [N]\n    compute {shown}\n    reduce sum\n}}\n");
    // Three elements, the median counted once (the others add 0).
    let in_a_row = format!(
        "loss t {{\n    input x : [N]\n    input k : [K]\n    compute select(k[m] > 1, {shown}, 0)\n    reduce sum\n}}\n"
    );
    let mut cases = Vec::new();
    for &(xs, median) in MEDIAN_TABLE {
        for (how, text) in [("alone", &alone), ("in a row", &in_a_row)] {
            let mut data: Data = [("x".to_string(), vector(xs))].into();
            data.insert("k".into(), vector(&[0.0, 0.0, 2.0]));
            if how == "alone" {
                data.remove("k");
            }
            cases.push(Case {
                text: text.clone(),
                data,
                want: show_zero_sign(median),
                what: format!("median of {xs:?}, {how}"),
                // The unfused baseline has one median, whatever uses it.
                forms: if how == "alone" {
                    EVERY_FORM
                } else {
                    EVERY_FUSED_FORM
                },
                rel: ROUNDING,
            });
        }
    }
    // A median of nothing is NaN.
    cases.push(Case {
        text: loss_of(&["x"], "median(j in 0..N - 1: x[j]) + 0 * x[0]"),
        data: [("x".to_string(), vector(&[5.0]))].into(),
        want: NAN,
        what: "median of nothing".into(),
        forms: EVERY_FORM,
        rel: ROUNDING,
    });
    check_cases(&cases);
}

/// `log` and `exp` at zeros, infinities, NaN and ordinary values, by hand (C's `log` and
/// `exp`, C99 Annex F.10.3.7 and F.10.3.1): the GPU's subnormal paths (`lc_log`, `lc_exp`)
/// take these operands too and must give C's value for them. (x, log x, exp x)
const LOG_EXP_TABLE: &[(f32, f32, f32)] = &[
    (NAN, NAN, NAN),
    (INF, INF, INF),
    (-INF, NAN, 0.0),
    (0.0, -INF, 1.0),
    (-0.0, -INF, 1.0),
    (1.0, 0.0, std::f32::consts::E),
    (-2.0, NAN, 0.135_335_28), // e^-2
    (1e30, 69.077_55, INF),    // ln 1e30 = 30 ln 10
    (-1e30, NAN, 0.0),
];

#[test]
fn log_and_exp_of_zeros_infinities_and_nan_on_both_back_ends() {
    let mut cases = Vec::new();
    for &(x, log, exp) in LOG_EXP_TABLE {
        for (expr, want) in [("log(x[n])", log), ("exp(x[n])", exp)] {
            cases.push(Case {
                text: loss_of(&["x"], expr),
                data: [("x".to_string(), vector(&[x]))].into(),
                want: show_zero_sign(want),
                what: format!("{expr} at x = {x:?}"),
                forms: SPECIALISED_AND_GENERIC,
                rel: ROUNDING,
            });
        }
    }
    check_cases(&cases);
}

/// Subnormal operands and results of every operation with a special path for them
/// (docs/backend.md, section 9): `log`, `exp`, `^`, and arithmetic and `sqrt` besides.
/// Each expected value is computed in f64 (C's math on doubles) and rounded to f32, not by
/// either back end; the GPU's `exp`, `log` and `pow` are allowed the error of
/// exp2(y · log2 x) for |y · log2 x| up to 150.
#[test]
fn subnormal_operands_and_results_agree_with_f64_math_on_both_back_ends() {
    let subnormals = [
        f32::from_bits(1), // 1.4e-45, the smallest
        5e-42,
        1e-40,
        1e-39,
        f32::from_bits(0x007f_ffff), // the largest
        f32::MIN_POSITIVE,           // the smallest normal, for comparison
    ];
    let mut rows: Vec<(String, &[&str], Data, f32)> = Vec::new();
    let data = |pairs: &[(&str, f32)]| -> Data {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vector(&[*v])))
            .collect()
    };
    for &x in &subnormals {
        let d = x as f64;
        rows.push(("log(x[n])".into(), &["x"], data(&[("x", x)]), d.ln() as f32));
        rows.push((
            "sqrt(x[n])".into(),
            &["x"],
            data(&[("x", x)]),
            d.sqrt() as f32,
        ));
        rows.push((
            "x[n] * 1e30".into(),
            &["x"],
            data(&[("x", x)]),
            (d * 1e30) as f32,
        ));
        rows.push((
            "x[n] ^ 0.5".into(),
            &["x"],
            data(&[("x", x)]),
            d.powf(0.5) as f32,
        ));
        rows.push((
            "x[n] ^ -0.25".into(),
            &["x"],
            data(&[("x", x)]),
            d.powf(-0.25) as f32,
        ));
        rows.push((
            "(-x[n]) ^ 3".into(),
            &["x"],
            data(&[("x", x)]),
            (-d).powi(3) as f32,
        ));
        rows.push(("x[n] ^ 1".into(), &["x"], data(&[("x", x)]), x));
    }
    for y in [
        -87.0f32, -88.0, -90.0, -100.0, -103.0, -103.9, -104.0, -110.0,
    ] {
        let e = (y as f64).exp();
        rows.push(("exp(y[n])".into(), &["y"], data(&[("y", y)]), e as f32));
        rows.push((
            "log(exp(y[n]))".into(),
            &["y"],
            data(&[("y", y)]),
            (e as f32 as f64).ln() as f32,
        ));
    }
    for (a, b) in [
        (2.0f32, -130.0f32),
        (0.5, 140.0),
        (1e-20, 2.1),
        (1e-20, 2.0),
        (3.0, -90.0),
    ] {
        let p = (a as f64).powf(b as f64) as f32;
        rows.push((
            "a[n] ^ b[n]".into(),
            &["a", "b"],
            data(&[("a", a), ("b", b)]),
            p,
        ));
    }
    // A subnormal written in the program.
    rows.push((
        "log(1e-40 + x[n])".into(),
        &["x"],
        data(&[("x", 0.0)]),
        (1e-40f32 as f64).ln() as f32,
    ));
    let cases = rows
        .into_iter()
        .map(|(expr, inputs, data, want)| {
            let at: Vec<String> = data
                .iter()
                .map(|(k, v)| match v {
                    DataValue::Array(a) => format!("{k} = {:?}", a.data[0] as f32),
                    DataValue::Str(s) => format!("{k} = {s}"),
                })
                .collect();
            Case {
                text: loss_of(inputs, &expr),
                want: show_zero_sign(want),
                what: format!("{expr} at {}", at.join(", ")),
                data,
                forms: SPECIALISED_AND_GENERIC,
                rel: 2e-5,
            }
        })
        .collect::<Vec<_>>();
    check_cases(&cases);
}
