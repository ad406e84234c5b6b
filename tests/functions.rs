//! The special functions of docs/language.md (`log1p` … `sign`, `atan2`, `xlogy`) on
//! both back ends, against the values and autograd gradients PyTorch gives in f32:
//! `tests/reference/functions.json`, written by `scripts/reference/functions.py` and
//! checked in, so that this test needs no PyTorch.
//!
//! Each function `f` runs as the loss `sum(i: w[i] * f(x[i]))` with every case as one
//! element and the gradients asked for: with `w = 1`, `d/dw[i]` is `f(x[i])` itself and
//! `d/dx[i]` is `f'(x[i])`, so one run checks every value and every derivative, through
//! the fused forward and backward kernels on the GPU.

mod common;

use lossc::diagnostics::Source;
use lossc::ir::FactoryTerm;
use lossc::runtime::data::{Array, Data, DataValue};
use lossc::runtime::grad::Wrt;
use lossc::runtime::run::{Backend, RunOptions, run};

use common::json_number as number;

/// One function's cases: the arguments, torch's value, the exact value (mpmath, rounded
/// to f64), and per argument torch's gradient and the exact derivative.
struct Cases {
    name: String,
    arity: usize,
    args: Vec<Vec<f64>>,
    values: Vec<f64>,
    exact: Vec<f64>,
    grads: Vec<Vec<f64>>,
    exact_grads: Vec<Vec<f64>>,
}

fn reference() -> Vec<Cases> {
    let json = common::read_json(&common::root().join("tests/reference/functions.json"));
    let mut out = Vec::new();
    for (name, f) in json["functions"].as_object().unwrap() {
        let arity = f["arity"].as_u64().unwrap() as usize;
        let cases = f["cases"].as_array().unwrap();
        let mut c = Cases {
            name: name.clone(),
            arity,
            args: vec![Vec::new(); arity],
            values: Vec::new(),
            exact: Vec::new(),
            grads: vec![Vec::new(); arity],
            exact_grads: vec![Vec::new(); arity],
        };
        for case in cases {
            for a in 0..arity {
                c.args[a].push(number(&case["x"][a]));
                c.grads[a].push(number(&case["grad"][a]));
                // Rounded to f32: beyond its range, the infinity an f32 result must be.
                c.exact_grads[a].push(number(&case["grad64"][a]) as f32 as f64);
            }
            c.values.push(number(&case["value"]));
            c.exact.push(number(&case["value64"]) as f32 as f64);
        }
        out.push(c);
    }
    out
}

/// Whether `got` is `want`: NaN for NaN, the same infinity, and within relative `rel`
/// for a normal f32; a result below f32's normal range (where an f32 holds only a few
/// digits) within an absolute `f32::MIN_POSITIVE`; and, with `floor`, any difference up
/// to `floor` (see the gradients in [`failures`]).
fn agrees(got: f32, want: f64, rel: f64, floor: f64) -> bool {
    let got = got as f64;
    if want.is_nan() || want.is_infinite() {
        return (got.is_nan() && want.is_nan()) || got == want;
    }
    if !got.is_finite() {
        return false;
    }
    let diff = (got - want).abs();
    if diff <= floor {
        return true;
    }
    if want.abs() < f32::MIN_POSITIVE as f64 {
        return diff <= f32::MIN_POSITIVE as f64;
    }
    diff <= rel * want.abs()
}

fn is_subnormal(v: f64) -> bool {
    v != 0.0 && v.abs() < f32::MIN_POSITIVE as f64
}

/// `v`, or a zero of its sign when it is subnormal in f32.
fn flush(v: f64) -> f64 {
    if is_subnormal(v) {
        0.0f64.copysign(v)
    } else {
        v
    }
}

/// Whether `got` is the value PyTorch defines at the point: where torch's f32 value is
/// NaN or infinite, that (unless the exact value is finite and torch overflowed early:
/// `lgamma` of 4.1e36 is 3.4e38, which torch's f32 `lgamma` gives as inf; lossc gives
/// the exact value); elsewhere the exact value to a relative 1e-5, so that lossc is held
/// to the truth and not to torch's own f32 rounding, which near the zeros of a function
/// is larger than the value (torch's `digamma` at the f32 nearest its root is +1.1e-8;
/// the exact value is -1.2e-8).
fn value_agrees(got: f32, torch: f64, exact: f64) -> bool {
    if torch.is_finite() || exact.is_finite() {
        agrees(got, exact, 1e-5, 0.0)
    } else {
        agrees(got, torch, 0.0, 0.0)
    }
}

/// Runs every function on `backend` and returns the failures, one line each.
fn failures(backend: Backend) -> Vec<String> {
    let mut bad = Vec::new();
    for c in reference() {
        let call = if c.arity == 1 {
            format!("{}(x[i])", c.name)
        } else {
            format!("{}(x[i], y[i])", c.name)
        };
        let text = format!(
            "loss t {{\n  input w : [N]\n  input x : [N]\n{}  compute w[i] * {call}\n  reduce sum\n}}\n",
            if c.arity == 2 {
                "  input y : [N]\n"
            } else {
                ""
            }
        );
        let sources = [Source::new("functions.loss", &text)];
        let checked = lossc::sema::check(&sources);
        assert!(!checked.has_errors(), "{}", checked.render(&sources));
        let n = c.values.len();
        let array = |data: Vec<f64>| {
            DataValue::Array(Array {
                shape: vec![n],
                data,
                typed_float: true,
            })
        };
        let mut data = Data::new();
        data.insert("w".into(), array(vec![1.0; n]));
        let names = ["x", "y"];
        for (a, arg) in c.args.iter().enumerate() {
            data.insert(names[a].into(), array(arg.clone()));
        }
        let terms = [FactoryTerm::plain("t")];
        let on = |backend, data: &Data| {
            let opts = RunOptions {
                backend,
                wrt: Wrt::EveryInput,
                ..Default::default()
            };
            run(&checked.program, "t", &terms, data, &vec![], &opts).unwrap()
        };
        let r = on(backend, &data);
        if backend == Backend::Gpu {
            assert!(r.backend.starts_with("gpu"), "{}", r.backend);
        }
        let grad = |name: &str| &r.grads.iter().find(|(g, _)| g == name).unwrap().1.data;
        // WGSL lets a GPU flush subnormal operands to zero (NVIDIA's drivers do): where an
        // argument is subnormal, the GPU may give the CPU's answer for it flushed.
        let flushed_run = (backend == Backend::Gpu).then(|| {
            let mut flushed = data.clone();
            for (a, arg) in c.args.iter().enumerate() {
                let f = arg.iter().map(|v| flush(*v)).collect();
                flushed.insert(names[a].into(), array(f));
            }
            on(Backend::Cpu, &flushed)
        });
        let subnormal_at = |k: usize| (0..c.arity).any(|a| is_subnormal(c.args[a][k]));
        let as_flushed = |name: &str, k: usize, got: f32| {
            subnormal_at(k)
                && flushed_run.as_ref().is_some_and(|f| {
                    let want = f.grads.iter().find(|(g, _)| g == name).unwrap().1.data[k];
                    agrees(got, want as f64, 1e-4, 0.0)
                })
        };
        let args = |k: usize| {
            (0..c.arity)
                .map(|a| format!("{:e}", c.args[a][k]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (k, &got) in grad("w").iter().enumerate() {
            if !value_agrees(got, c.values[k], c.exact[k]) && !as_flushed("w", k, got) {
                bad.push(format!(
                    "{}({}) = {got:e}, torch {:e}, exact {:e}",
                    c.name,
                    args(k),
                    c.values[k],
                    c.exact[k]
                ));
            }
        }
        // Gradients: the exact derivative (torch's where it is not finite), where torch's
        // value is finite (a derivative at a pole or at NaN is not defined; there lossc
        // need only not fail), to a relative 1e-4, or an absolute 2^-22: lossc's
        // derivatives are torch's f32 formulas on the f32 value (sigmoid's is
        // (1 - y) · y, tanh's 1 - y²), whose terms are of order 1, so they lose up to
        // 2^-23 where the terms cancel: torch gives sigmoid'(17) as 0, for 4.1e-8. Or
        // torch's own f32 gradient to a relative 1e-4, where that is what lossc follows
        // rather than the exact value: atan2's derivative is 0 where x² + y² underflows.
        for (a, name) in names.iter().enumerate().take(c.arity) {
            for (k, (&got, &want)) in grad(name).iter().zip(&c.exact_grads[a]).enumerate() {
                if !c.values[k].is_finite() {
                    continue;
                }
                let torch = c.grads[a][k];
                if !agrees(got, want, 1e-4, 2f64.powi(-22))
                    && !agrees(got, torch, 1e-4, 0.0)
                    && !as_flushed(name, k, got)
                {
                    bad.push(format!(
                        "d{}/d{name}({}) = {got:e}, exact {want:e}, torch {torch:e}",
                        c.name,
                        args(k),
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn cpu_agrees_with_pytorch() {
    common::assert_no_disagreements("cpu", &failures(Backend::Cpu));
}

#[test]
fn gpu_agrees_with_pytorch() {
    common::assert_no_disagreements("gpu", &failures(Backend::Gpu));
}
