//! The depth cap (`lossc::ir::passes::depth::MAX_IR_DEPTH`): the deepest losses it allows
//! check, evaluate and compile on a test thread's 2 MiB stack (a debug build's frames are
//! the largest), and one level more is one located error, never a stack overflow.

use std::collections::BTreeMap;

use lossc::diagnostics::Source;
use lossc::ir::passes::depth::MAX_IR_DEPTH;
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Array, DataValue};
use lossc::runtime::run::{RunOptions, run_cpu};

/// Lets `a1`, `a2`, ... of `k` levels each (`level` wraps one level around its operand),
/// over `a0 = x[b]`; `compute` is the last let, or the sum of all when `side_by_side`
/// (each let expanded once and remembered, so lowering stays shallow and only the
/// graph is deep).
fn lets(n: usize, k: usize, level: &dyn Fn(String) -> String, side_by_side: bool) -> String {
    let mut s = String::from("loss l {\n    input x : [B]\n    let a0 = x[b]\n");
    for i in 1..=n {
        let body = (0..k).fold(format!("a{}", i - 1), |e, _| level(e));
        s += &format!("    let a{i} = {body}\n");
    }
    let compute = if side_by_side {
        (0..=n)
            .map(|i| format!("a{i}"))
            .collect::<Vec<_>>()
            .join(" + ")
    } else {
        format!("a{n}")
    };
    s + &format!("    compute {compute}\n    reduce mean\n}}\n")
}

/// The shapes of deep losses: chains of minuses (the parser takes 390 in one let), of
/// calls (brackets: 60 in one let), of comparisons under selects, and lets used side by
/// side. `None` when `depth` levels do not fit the shape.
fn shape(name: &str, depth: usize) -> String {
    let per_let = |k: usize| depth.div_ceil(k);
    match name {
        "minus" => lets(per_let(390), 390.min(depth), &|e| format!("-{e}"), false),
        "calls" => lets(per_let(60), 60.min(depth), &|e| format!("abs({e})"), false),
        "select" => lets(
            per_let(30),
            30.min(depth),
            &|e| format!("select(x[b] > 0, {e}, 1)"),
            false,
        ),
        "side_by_side" => lets(per_let(390), 390.min(depth), &|e| format!("-{e}"), true),
        _ => unreachable!(),
    }
}

fn check(text: &str) -> Result<Program, String> {
    let sources = [Source::new("deep.loss", text)];
    let checked = lossc::sema::check(&sources);
    if checked.has_errors() {
        Err(checked.render(&sources))
    } else {
        Ok(checked.program)
    }
}

/// The deepest loss of each shape that checks clean (the depth is counted in levels of
/// the shape, not of the IR), and the error one level deeper.
fn deepest(name: &str) -> (String, String) {
    let (mut ok, mut too_deep) = (1, 2 * MAX_IR_DEPTH);
    assert!(check(&shape(name, ok)).is_ok());
    while too_deep - ok > 1 {
        let mid = (ok + too_deep) / 2;
        if check(&shape(name, mid)).is_ok() {
            ok = mid;
        } else {
            too_deep = mid;
        }
    }
    let error = check(&shape(name, too_deep)).unwrap_err();
    (shape(name, ok), error)
}

/// Evaluates on the CPU and compiles to WGSL, on a thread with a test thread's stack.
fn run_and_compile(program: Program) -> f32 {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let terms = [FactoryTerm::plain("l")];
            let x = DataValue::Array(Array {
                shape: vec![2],
                data: vec![1.0, -2.0],
                typed_float: true,
            });
            let data = BTreeMap::from([("x".to_string(), x)]);
            let run = run_cpu(&program, &terms, &data, &vec![], &RunOptions::default())
                .unwrap_or_else(|e| panic!("{e}"));
            let kernel = lossc::codegen::compile(&program, "l", &terms).unwrap();
            lossc::codegen::explain(&program, &kernel);
            lossc::ir::dot::to_dot(&[&program.losses[0]]);
            run.total
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn the_deepest_allowed_losses_check_evaluate_and_compile_on_a_test_thread() {
    for name in ["minus", "calls", "select", "side_by_side"] {
        let (text, error) = deepest(name);
        assert!(
            error.contains(&format!("nested more than {MAX_IR_DEPTH} levels deep")),
            "{name}: {error}"
        );
        assert_eq!(error.matches("error:").count(), 1, "{name}: {error}");
        let program = check(&text).unwrap();
        let total = run_and_compile(program);
        assert!(total.is_finite(), "{name}: {total}");
    }
}

/// Reductions nested through lets that each add an index (`f_k[i, c]` sums `f_{k-1}[i, b]`
/// over `b`, so none can be a table): `n` levels deep.
fn nested_reductions(n: usize) -> String {
    let mut s = String::from("loss deep {\n    input x : [N]\n    let f0[i, c] = x[i] * c\n");
    for k in 1..=n {
        s += &format!(
            "    let f{k}[i, c] = sum(b in 0..2: f{}[i, b] * c + b)\n",
            k - 1
        );
    }
    s + &format!("    compute f{n}[i, 1]\n    reduce sum\n}}\n")
}

#[test]
fn reductions_nested_deeper_than_a_gpu_kernel_allows_are_a_located_error() {
    // 40 levels fit the 125 blocks of a kernel (naga's limit); 41 do not, and are refused
    // with the place of the innermost reduction that went past it, not as a bug of lossc.
    let fits = check(&nested_reductions(40)).unwrap();
    lossc::codegen::compile(&fits, "deep", &[FactoryTerm::plain("deep")]).unwrap();
    let deep = check(&nested_reductions(41)).unwrap();
    match lossc::codegen::compile(&deep, "deep", &[FactoryTerm::plain("deep")]) {
        Err(e @ lossc::codegen::CompileError::TooDeep { .. }) => {
            let text = e.to_string();
            assert!(text.contains("loss `deep` at deep.loss:4:20"), "{text}");
            assert!(!text.contains("internal"), "{text}");
        }
        other => panic!("expected a too-deep error, got {:?}", other.map(|k| k.name)),
    }
    // Under `--backend auto` the CPU evaluator runs it instead, and the run says why.
    let data = BTreeMap::from([(
        "x".to_string(),
        DataValue::Array(Array {
            shape: vec![1],
            data: vec![1.0],
            typed_float: true,
        }),
    )]);
    let opts = RunOptions::default();
    let auto = lossc::runtime::run::run(
        &deep,
        "deep",
        &[FactoryTerm::plain("deep")],
        &data,
        &vec![],
        &opts,
    )
    .unwrap();
    let cpu = run_cpu(&deep, &[FactoryTerm::plain("deep")], &data, &vec![], &opts).unwrap();
    assert_eq!(auto.backend, "cpu");
    assert_eq!(auto.total.to_bits(), cpu.total.to_bits());
    assert!(
        auto.notes.iter().any(|n| n.contains("nested too deep")),
        "{:?}",
        auto.notes
    );
}
