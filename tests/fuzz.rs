//! Property tests: no input makes the front end, or the runtime, panic.
//!
//! `lossc::sema::check` (and rendering its diagnostics) must return on random bytes,
//! on random sequences of the language's tokens (at the top level and inside a loss
//! body), on random well-formed expressions, and on the example files mutated token by
//! token. Well-formed expressions that check clean are also evaluated on a tiny data set
//! (no panic there either, and the same result twice). Random data files (shapes from
//! the declarations or at random, NaN, infinities, strings) for every example loss go
//! through binding and the CPU evaluator: an error or a value, never a panic.
//!
//! The seeds are fixed, so every run tries the same cases; the case counts are kept
//! small so the whole file runs in seconds. Inputs the generators do not reach (huge
//! constants, long or deeply nested `let` chains, huge gather indices) have tests of
//! their own in `tests/diagnostics.rs`, `tests/depth.rs` and `tests/cli.rs`.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use lossc::diagnostics::Source;
use lossc::ir::FactoryTerm;
use lossc::runtime::data::{Array, DataValue};
use lossc::runtime::run::{RunOptions, run_cpu};

fn config(cases: u32, seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Checks the text and renders its diagnostics; every span lies within the text.
fn check(text: &str) -> lossc::sema::Checked {
    let sources = [Source::new("fuzz.loss", text)];
    let checked = lossc::sema::check(&sources);
    for (fi, d) in &checked.diagnostics {
        assert_eq!(*fi, 0);
        for (span, _) in std::iter::once(&d.primary).chain(&d.secondary) {
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "span {span:?} outside the text ({} bytes)",
                text.len()
            );
        }
    }
    let _ = checked.render(&sources);
    checked
}

const TOKENS: &[&str] = &[
    // keywords
    "loss",
    "factory",
    "input",
    "param",
    "let",
    "compute",
    "remove_nans",
    "drop",
    "zero",
    "where",
    "rectify",
    "reduce",
    "mean",
    "sum",
    "weight",
    "optional",
    "annealed",
    "index",
    "in",
    "empty",
    // names
    "x",
    "y",
    "b",
    "k",
    "t",
    "B",
    "K",
    "H",
    "W",
    "log_weight",
    "epsilon",
    "foo",
    "_",
    "a1",
    // functions and reductions
    "exp",
    "log",
    "sqrt",
    "abs",
    "relu",
    "min",
    "max",
    "clamp",
    "isnan",
    "select",
    "norm",
    "all",
    "any",
    "median",
    // numbers
    "0",
    "1",
    "2",
    "0.5",
    "1e-10",
    ".5",
    "3.",
    "1e3",
    // operators and punctuation
    "+",
    "-",
    "*",
    "/",
    "^",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "!",
    "=",
    ":",
    ",",
    "|",
    "..",
    ".",
    ";",
    // brackets
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    // strings, comments, odd characters
    "\"mean\"",
    "\"none\"",
    "\"\"",
    "\"x",
    "/// doc\n",
    "// c\n",
    "\n",
    "\t",
    "é",
    "\u{feff}",
];

fn token_soup(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (prop::sample::select(TOKENS), prop::bool::weighted(0.15)),
        0..max,
    )
    .prop_map(|ts| {
        ts.into_iter()
            .map(|(t, nl)| format!("{t}{}", if nl { "\n" } else { " " }))
            .collect()
    })
}

/// A loss whose declarations are fine, with `body` in the place of its compute stage.
fn in_a_loss(body: &str) -> String {
    format!(
        "loss l {{\n    input x : [B, K]\n    input y : [B] optional\n    param p = 0.5\n    param e : [K] = 0.0\n    \
         param c : \"none\" | \"mean\" = \"none\"\n    param idx : index[S] = 0..K\n    \
         let z[b] = sum(k: x[b, k])\n    compute {body}\n    reduce mean\n}}\n"
    )
}

proptest! {
    #![proptest_config(config(512, 1))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }
}

proptest! {
    #![proptest_config(config(512, 2))]

    #[test]
    fn random_printable_text_never_panics(text in "[ -~\n\t]{0,300}") {
        check(&text);
    }
}

proptest! {
    #![proptest_config(config(512, 3))]

    #[test]
    fn random_tokens_never_panic(text in token_soup(120)) {
        check(&text);
    }
}

proptest! {
    #![proptest_config(config(512, 4))]

    #[test]
    fn random_tokens_in_a_loss_never_panic(body in token_soup(40)) {
        check(&in_a_loss(&body));
    }
}

proptest! {
    #![proptest_config(config(256, 5))]

    /// Token soup in every position of a loss and a factory.
    #[test]
    fn random_tokens_in_every_position_never_panic(
        parts in prop::collection::vec(token_soup(10), 8),
    ) {
        let text = format!(
            "/// doc\nloss l {{\n    input x : [{}]\n    param p {}\n    let v{} = {}\n    compute {}\n    \
             remove_nans drop where {}\n    reduce {}\n    weight {}\n}}\n\nfactory f {{\n    l {{ p = 1 }}\n}}\n",
            parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7]
        );
        check(&text);
    }
}

// ---------------------------------------------------------------- well-formed expressions

fn leaf() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "x[b, k]",
        "x[t + 1, k]",
        "x[t, k]",
        "x[b, idx[s]]",
        "x[B - 1 - t, k]",
        "y[b]",
        "p",
        "e[k]",
        "z[b]",
        "0",
        "1",
        "2.5",
        "1e-10",
        "B",
        "K",
        "b",
        "k",
        "(0 - 1)",
        "log_weight",
    ])
    .prop_map(str::to_string)
}

fn number_expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "*", "/", "^"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            (
                prop::sample::select(vec!["exp", "log", "sqrt", "abs", "relu", "-"]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("min({a}, {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("clamp({a}, {b}, {c})")),
            (
                inner.clone(),
                prop::sample::select(vec!["<", "<=", "==", "!=", ">"]),
                inner.clone(),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(a, op, b, c, d)| format!("select({a} {op} {b}, {c}, {d})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("select(isnan({a}), {b}, {c})")),
            (
                prop::sample::select(vec!["sum", "mean", "max", "min", "norm", "median"]),
                prop::sample::select(vec!["k", "b", "k in 0..2", "j in 0..K", "k, b"]),
                inner.clone()
            )
                .prop_map(|(r, binders, a)| format!("{r}({binders}: {a})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("select(c == \"mean\", {a}, {b})")),
        ]
    })
}

fn tiny_data() -> BTreeMap<String, DataValue> {
    let mut data = BTreeMap::new();
    data.insert(
        "m".to_string(),
        DataValue::Array(Array {
            shape: vec![3],
            data: vec![0.0, 1.0, f64::NAN],
            typed_float: true,
        }),
    );
    let x = vec![0.5, -1.0, 2.0, f64::NAN, 3.0, 0.25];
    data.insert(
        "x".to_string(),
        DataValue::Array(Array {
            shape: vec![3, 2],
            data: x,
            typed_float: true,
        }),
    );
    data.insert(
        "y".to_string(),
        DataValue::Array(Array {
            shape: vec![3],
            data: vec![1.0, f64::NAN, -2.0],
            typed_float: true,
        }),
    );
    data
}

/// Well-formed expressions in a loss (most check clean, some have unbound or
/// ill-ranged indices): checking never panics; when clean, evaluating on tiny arrays
/// never panics and gives the same bits twice. Enough of them must check clean and
/// evaluate for the test to mean something.
#[test]
fn well_formed_expressions_check_and_evaluate() {
    use std::cell::Cell;
    let strategy = (
        number_expr(),
        prop::option::of(prop::sample::select(vec![
            "x[b, k] > p",
            "isnan(m[b])",
            "isnan(x[b, k]) || m[b] < p",
            "all(j in 0..K: x[b, j] > 0)",
            "any(k2: isnan(x[b, k2]))",
            "!(x[b, k] <= 1) && e[k] == 0",
        ])),
        prop::sample::select(vec!["drop", "zero"]),
        prop::sample::select(vec!["mean", "sum", "mean (empty: 0)"]),
    );
    let (clean, evaluated) = (Cell::new(0u32), Cell::new(0u32));
    let cases = 384;
    let mut runner = proptest::test_runner::TestRunner::new(config(cases, 6));
    let result = runner.run(&strategy, |(compute, mask, mode, reduce)| {
        let mask = mask.map(|m| format!("    remove_nans {mode} where {m}\n")).unwrap_or_default();
        let text = format!(
            "loss l {{\n    input x : [B, K]\n    input y : [B]\n    input m : [B] optional\n    param p = 0.5\n    \
             param e : [K] = 0.0\n    param c : \"none\" | \"mean\" = \"mean\"\n    param idx : index[S] = 0..K\n    \
             param log_weight = 0.0\n    let z[b] = sum(k: x[b, k])\n    compute {compute} + 0 * x[b, k]\n{mask}    rectify e[k]\n    reduce {reduce}\n    \
             weight 1 / (2 * exp(log_weight))\n}}\n"
        );
        let checked = check(&text);
        if checked.has_errors() {
            return Ok(());
        }
        clean.set(clean.get() + 1);
        let terms = [FactoryTerm::plain("l")];
        let data = tiny_data();
        let run = || run_cpu(&checked.program, &terms, &data, &vec![], &RunOptions::default()).map_err(|e| e.to_string());
        match (run(), run()) {
            (Ok(a), Ok(b)) => {
                evaluated.set(evaluated.get() + 1);
                prop_assert_eq!(a.total.to_bits(), b.total.to_bits(), "{}", text);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "two runs differ: {:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} of 384 checked clean, {} evaluated",
        clean.get(),
        evaluated.get()
    );
    assert!(
        clean.get() >= 100,
        "only {} cases checked clean",
        clean.get()
    );
    assert!(
        evaluated.get() >= 50,
        "only {} cases evaluated",
        evaluated.get()
    );
}

// ---------------------------------------------------------------- mutated examples

/// The example files as token lists (names, numbers, single punctuation, whitespace runs).
fn example_tokens() -> Vec<Vec<String>> {
    common::example_files()
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let mut out: Vec<String> = Vec::new();
            let mut cur = String::new();
            let class = |c: char| {
                if c.is_alphanumeric() || c == '_' || c == '.' {
                    0
                } else if c.is_whitespace() {
                    1
                } else {
                    2
                }
            };
            for c in text.chars() {
                if !cur.is_empty()
                    && (class(c) != class(cur.chars().next().unwrap()) || class(c) == 2)
                {
                    out.push(std::mem::take(&mut cur));
                }
                cur.push(c);
            }
            if !cur.is_empty() {
                out.push(cur);
            }
            out
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(usize),
    Insert(usize, &'static str),
    Duplicate(usize, usize),
    Swap(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Duplicate(i, j)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
    ]
}

fn apply(tokens: &mut Vec<String>, e: &Edit) {
    if tokens.is_empty() {
        return;
    }
    let n = tokens.len();
    match e {
        Edit::Delete(i) => {
            tokens.remove(i % n);
        }
        Edit::Insert(i, t) => tokens.insert(i % (n + 1), t.to_string()),
        Edit::Duplicate(i, j) => {
            let t = tokens[i % n].clone();
            tokens.insert(j % (n + 1), t);
        }
        Edit::Swap(i, j) => tokens.swap(i % n, j % n),
    }
}

proptest! {
    #![proptest_config(config(512, 7))]

    #[test]
    fn mutated_examples_never_panic(which in any::<usize>(), edits in prop::collection::vec(edit(), 1..8)) {
        let files = example_tokens();
        let mut tokens = files[which % files.len()].clone();
        for e in &edits {
            apply(&mut tokens, e);
        }
        check(&tokens.concat());
    }
}

/// Every example, each token deleted in turn: exhaustive and still quick.
#[test]
fn every_single_token_deletion_of_every_example_never_panics() {
    for tokens in example_tokens() {
        for i in 0..tokens.len() {
            let mut t = tokens.clone();
            t.remove(i);
            check(&t.concat());
        }
    }
}

/// Every prefix of every example (a file cut off while it is being written).
#[test]
fn every_prefix_of_every_example_never_panics() {
    for tokens in example_tokens() {
        for i in 0..=tokens.len() {
            check(&tokens[..i].concat());
        }
    }
}

// ---------------------------------------------------------------- random data

/// One value of a random data file: for each declared input and param, absent, shaped
/// from the declaration with random dimension sizes (mostly), or shaped at random.
#[derive(Clone, Debug)]
struct DataPlan {
    which: usize,
    dims: Vec<i64>,
    /// Per input then per param: 0 absent, 1 declared shape, 2 random shape, 3 scalar,
    /// 4 a string.
    modes: Vec<u8>,
    random_shapes: Vec<Vec<usize>>,
    values: Vec<f64>,
}

fn data_plan() -> impl Strategy<Value = DataPlan> {
    (
        any::<usize>(),
        prop::collection::vec(0i64..5, 8),
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 1, 1, 1, 1, 2, 3, 4]), 12),
        prop::collection::vec(prop::collection::vec(0usize..4, 0..4), 12),
        prop::collection::vec(
            prop::sample::select(vec![
                0.0,
                1.0,
                -1.0,
                0.5,
                2.0,
                3.0,
                f64::NAN,
                f64::INFINITY,
                1e30,
                -7.25,
            ]),
            1..16,
        ),
    )
        .prop_map(|(which, dims, modes, random_shapes, values)| DataPlan {
            which,
            dims,
            modes,
            random_shapes,
            values,
        })
}

fn array(shape: Vec<usize>, values: &[f64], index: bool) -> DataValue {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let v = values[i % values.len()];
            // Index values stay small, so that most gathers land in range and the run
            // is evaluated; a huge one is an out-of-range error (tests/cli.rs).
            if index {
                if v.is_finite() {
                    v.clamp(-1.0, 4.0).round()
                } else {
                    0.0
                }
            } else {
                v
            }
        })
        .collect();
    DataValue::Array(Array {
        shape,
        data,
        typed_float: true,
    })
}

#[test]
fn random_data_never_panics_the_runtime() {
    let sources: Vec<Source> = common::example_files()
        .iter()
        .map(|p| Source::new(p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors());
    let program = &checked.program;
    let (ran, failed) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let mut runner = proptest::test_runner::TestRunner::new(config(512, 8));
    let result = runner.run(&data_plan(), |plan| {
        let loss = &program.losses[plan.which % program.losses.len()];
        let dims: Vec<Option<i64>> = (0..loss.dims.len())
            .map(|d| Some(plan.dims[d % plan.dims.len()]))
            .collect();
        let declared = |shape: &[lossc::ir::Poly]| -> Vec<usize> {
            shape
                .iter()
                .map(|p| p.eval(&dims).unwrap_or(0).clamp(0, 6) as usize)
                .collect()
        };
        let mut data = BTreeMap::new();
        let mut slot = 0;
        for input in &loss.inputs {
            let value = match plan.modes[slot % plan.modes.len()] {
                0 => None,
                1 => Some(array(declared(&input.shape), &plan.values, false)),
                2 => Some(array(
                    plan.random_shapes[slot % 12].clone(),
                    &plan.values,
                    false,
                )),
                3 => Some(DataValue::Array(Array::scalar(plan.values[0]))),
                _ => Some(DataValue::Str("mean".into())),
            };
            if let Some(v) = value {
                data.insert(input.name.clone(), v);
            }
            slot += 1;
        }
        for param in &loss.params {
            let (shape, index) = match &param.kind {
                lossc::ir::ParamKind::Tensor(s) => (declared(s), false),
                lossc::ir::ParamKind::Index(s) => (declared(s), true),
                _ => (vec![], false),
            };
            let value = match plan.modes[slot % plan.modes.len()] {
                0 => None,
                1 if matches!(param.kind, lossc::ir::ParamKind::Enum(_)) => {
                    Some(DataValue::Str("median".into()))
                }
                1 => Some(array(shape, &plan.values, index)),
                2 => Some(array(
                    plan.random_shapes[slot % 12].clone(),
                    &plan.values,
                    index,
                )),
                3 => Some(DataValue::Array(Array::scalar(plan.values[0]))),
                _ => Some(DataValue::Str("mean".into())),
            };
            if let Some(v) = value {
                data.insert(param.name.clone(), v);
            }
            slot += 1;
        }
        let terms = [FactoryTerm::plain(loss.name.clone())];
        let run = || {
            run_cpu(program, &terms, &data, &vec![], &RunOptions::default())
                .map_err(|e| e.to_string())
        };
        match (run(), run()) {
            (Ok(a), Ok(b)) => {
                ran.set(ran.get() + 1);
                prop_assert_eq!(a.total.to_bits(), b.total.to_bits());
            }
            (Err(a), Err(b)) => {
                failed.set(failed.get() + 1);
                prop_assert!(!a.is_empty());
                prop_assert_eq!(a, b);
            }
            _ => prop_assert!(false, "two runs differ"),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "random data: {} runs evaluated, {} rejected with an error",
        ran.get(),
        failed.get()
    );
    assert!(ran.get() >= 50, "only {} runs got past binding", ran.get());
}
