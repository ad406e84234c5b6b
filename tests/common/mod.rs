//! Helpers shared by the integration tests: running the `lossc` binary as a user would,
//! and reading the conformance vectors.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod conformance;
pub mod npz;
pub mod programs;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every example loss file.
pub fn example_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples/lightning_pose"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "loss"))
        .collect();
    v.sort();
    v
}

/// `lossc run` of the README's demo: the example losses and factories, the
/// `heatmap_semisupervised` factory, `examples/demo.json` (paths relative to the root).
pub fn demo_run_args() -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(example_files().iter().map(|p| p.display().to_string()));
    args.extend(
        [
            "examples/factories.loss",
            "--factory",
            "heatmap_semisupervised",
            "--data",
            "examples/demo.json",
        ]
        .map(String::from),
    );
    args
}

/// Runs `lossc` with the arguments.
pub fn lossc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("lossc runs")
}

/// Reads a `.json` or `.json.gz` file.
/// A number of a reference file written by a script in `scripts/reference/`: a JSON
/// number, or a special value as a string (`"nan"`, `"inf"`, `"-inf"`, or Python's
/// `"NaN"`, `"Infinity"`, `"-Infinity"`).
#[allow(dead_code)]
pub fn json_number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "nan" | "NaN" => f64::NAN,
            "inf" | "Infinity" => f64::INFINITY,
            "-inf" | "-Infinity" => f64::NEG_INFINITY,
            other => panic!("not a number: {other}"),
        },
        other => panic!("not a number: {other}"),
    }
}

/// Fails with every disagreement of a back end (`backend`) with PyTorch, one per line.
#[allow(dead_code)]
pub fn assert_no_disagreements(backend: &str, bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{} disagreements with PyTorch on the {backend}:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    };
    serde_json::from_str(&text).unwrap()
}

/// `a` matches the reference `b`: both NaN (`null`), exactly equal where `b` is 0, else
/// within relative `rel`.
pub fn close(a: &Value, b: &Value, rel: f64) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (None, None) => a.is_null() && b.is_null(),
        (Some(x), Some(0.0)) => x == 0.0,
        (Some(x), Some(y)) => (x - y).abs() <= rel * y.abs(),
        _ => false,
    }
}

/// A tiny deterministic generator (xorshift) for the random-program tests, so that a
/// failure reproduces from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    /// In [0, 1), with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// In [0, 1), with 24 random bits.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The program of one `.loss` text named `t.loss`, which must check clean.
pub fn check_text(text: &str) -> lossc::ir::Program {
    let sources = [lossc::diagnostics::Source::new("t.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program
}

/// The program of `.loss` files (each named by its path), which must check.
pub fn check_files(paths: &[PathBuf]) -> lossc::ir::Program {
    let sources: Vec<lossc::diagnostics::Source> = paths
        .iter()
        .map(|p| {
            lossc::diagnostics::Source::new(
                p.display().to_string(),
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            )
        })
        .collect();
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program
}

/// Runs loss `t` of one `.loss` text on JSON data on `backend`, with the gradient of
/// every input: the result, or the error as text.
pub fn run_text(
    text: &str,
    data: &str,
    backend: lossc::runtime::run::Backend,
) -> Result<lossc::runtime::run::RunResult, String> {
    let program = check_text(text);
    let data = lossc::runtime::data::parse_json_data(data).unwrap();
    let opts = lossc::runtime::run::RunOptions {
        backend,
        wrt: lossc::runtime::grad::Wrt::EveryInput,
        ..Default::default()
    };
    let terms = [lossc::ir::FactoryTerm::plain("t")];
    lossc::runtime::run::run(&program, "f", &terms, &data, &vec![], &opts)
        .map_err(|e| e.to_string())
}

/// The gradient of input `name` in a run's result.
pub fn grad_of<'a>(r: &'a lossc::runtime::run::RunResult, name: &str) -> &'a [f32] {
    &r.grads
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no gradient of {name}"))
        .1
        .data
}

/// Asserts `a` is `b` (worked out in f64) to `rel` of each value (of 1 below 1).
pub fn assert_close_to(a: &[f32], b: &[f64], rel: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (f64::from(*x) - y).abs() <= rel * y.abs().max(1.0),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

/// `examples/demo.json` for a kernel of `terms`: its plain keys, and the keys qualified
/// by one of the terms' losses (a key qualified by another loss is an error).
pub fn demo_data_for(terms: &[lossc::ir::FactoryTerm]) -> Value {
    let demo = read_json(&root().join("examples/demo.json"));
    Value::Object(
        demo.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| match k.split_once('.') {
                Some((loss, _)) => terms.iter().any(|t| t.loss == loss),
                None => true,
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The rendered diagnostics of one `.loss` text named `t.loss`, which must have errors.
pub fn errors_of(text: &str) -> String {
    let sources = [lossc::diagnostics::Source::new("t.loss", text)];
    let checked = lossc::sema::check(&sources);
    assert!(checked.has_errors(), "expected errors in\n{text}");
    checked.render(&sources)
}
