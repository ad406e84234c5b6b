//! Programs that once made the fused GPU kernel disagree with the CPU evaluator (a wrong
//! number, an internal error, an error where the CPU has none), each run on the GPU under
//! every row placement (`auto`, `shared`, `per-thread`) and as the generic kernel, and
//! checked against the CPU evaluator and against a value computed by hand.

mod common;

use lossc::diagnostics::Source;
use lossc::gpu::{Dispatch, DispatchOptions, GpuError, KernelForm, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Data, parse_json_data};
use lossc::runtime::run::{RunOptions, prepare, run_cpu};

fn check(name: &str, text: &str) -> Program {
    let sources = [Source::new(name, text)];
    let c = lossc::sema::check(&sources);
    assert!(!c.has_errors(), "{}", c.render(&sources));
    c.program
}

/// Each way the GPU can run a kernel: the row placements of the specialised kernel, and
/// the generic kernel (sizes read from the parameter block).
fn ways() -> Vec<(&'static str, DispatchOptions<'static>)> {
    let placed = |placement| DispatchOptions {
        placement,
        ..Default::default()
    };
    vec![
        ("--rows auto", placed(RowPlacement::Auto)),
        ("--rows shared", placed(RowPlacement::Shared)),
        ("--rows per-thread", placed(RowPlacement::PerThread)),
        (
            "generic kernel",
            DispatchOptions {
                form: KernelForm::Generic,
                ..Default::default()
            },
        ),
    ]
}

/// The GPU's value of the first loss of `losses` (one kernel) on `data` in each way, or
/// its error.
fn on_the_gpu(
    program: &Program,
    losses: &[&str],
    data: &Data,
) -> Vec<(&'static str, Result<f32, GpuError>)> {
    let terms: Vec<FactoryTerm> = losses.iter().map(|l| FactoryTerm::plain(*l)).collect();
    let kernel = lossc::codegen::compile(program, losses[0], &terms).unwrap();
    let (prepared, _) = prepare(program, &terms, data, &vec![]).unwrap();
    let bound: Vec<_> = prepared.iter().map(|p| &p.bound).collect();
    let dev = lossc::gpu::gpu().unwrap();
    ways()
        .into_iter()
        .map(|(how, options)| {
            let ones = vec![1.0; bound.len()];
            let run = Dispatch::new(dev, &kernel, &bound, &ones, &options)
                .and_then(|d| d.run(dev))
                .map(|(out, _)| out[0]);
            (how, run)
        })
        .collect()
}

/// The loss `loss` of `text` on the JSON `data` is `want` (hand-computed) on the CPU and,
/// bit for bit the same as the CPU or within `rel`, on the GPU in every way.
fn agrees(text: &str, loss: &str, data: &str, want: f32, rel: f32) {
    let program = check(&format!("{loss}.loss"), text);
    let data = parse_json_data(data).unwrap();
    let terms = [FactoryTerm::plain(loss)];
    let cpu = run_cpu(&program, &terms, &data, &vec![], &RunOptions::default())
        .unwrap()
        .losses[0]
        .1
        .loss;
    let near = |x: f32| x == want || (x - want).abs() <= rel * want.abs();
    assert!(near(cpu), "{loss}: the CPU gives {cpu}, by hand {want}");
    for (how, run) in on_the_gpu(&program, &[loss], &data) {
        match run {
            Ok(gpu) => assert!(
                near(gpu),
                "{loss}, {how}: the GPU gives {gpu}, the CPU {cpu}, by hand {want}"
            ),
            Err(e) => panic!("{loss}, {how}: {e}"),
        }
    }
}

/// A `select` on an enum param, with a reduction in its taken branch, inside another
/// reduction: the kernel specialised to the enum's value walks the untaken branch muted,
/// and once met the slots in another order than the generic kernel (an internal error).
#[test]
fn a_select_on_an_enum_with_a_reduction_inside_a_reduction() {
    let text = "loss r {\n    input w : [K]\n    param m : \"no\" | \"yes\" = \"yes\"\n    compute sum(k: select(m == \"yes\", sum(j: w[j]), w[k]))\n    reduce sum\n}\n";
    // "yes": each of the K = 2 terms is w[0] + w[1] = 3; "no": w[0] + w[1].
    agrees(text, "r", r#"{"w": [1, 2]}"#, 6.0, 0.0);
    agrees(text, "r", r#"{"w": [1, 2], "m": "no"}"#, 3.0, 0.0);
    // The other way round, and over rows long enough for four-wide loops: the taken
    // branch second, the reduction in the untaken one.
    let text = "loss r {\n    input w : [B, K]\n    param m : \"no\" | \"yes\" = \"no\"\n    compute sum(k: select(m == \"yes\", w[b, k], sum(j: w[b, j] * k)))\n    reduce sum\n}\n";
    let w: Vec<String> = (0..2 * 8).map(|i| format!("{}", i % 8)).collect();
    let data = format!(r#"{{"w": {{"shape": [2, 8], "data": [{}]}}}}"#, w.join(","));
    // Per row: sum(j) w = 28, times k summed over 0..8 = 28 · 28 = 784; two rows.
    agrees(text, "r", &data, 1568.0, 0.0);
    let yes = data.replace("]}}", r#"]}, "m": "yes"}"#);
    agrees(text, "r", &yes, 56.0, 0.0);
}

/// K = 6 heatmaps of 32 × 24 pixels, x[k, h, w] = k / 100 + ((15485863 · i) mod 1000) /
/// 1000 at flat position i: row sums that f32 rounds differently in different orders.
fn heatmaps() -> String {
    let (k, h, w) = (6u64, 32u64, 24u64);
    let x: Vec<String> = (0..k * h * w)
        .map(|i| {
            let v = (i / (h * w)) as f64 / 100.0 + ((15_485_863 * i) % 1000) as f64 / 1000.0;
            format!("{v}")
        })
        .collect();
    format!(
        r#"{{"x": {{"shape": [{k}, {h}, {w}], "data": [{}]}}}}"#,
        x.join(",")
    )
}

/// A `let` holding a reduction, used at the same indices in two places, is one value: the
/// table of heatmap means `l[j]` (a workgroup's shared reduction when rows are shared)
/// and `l[k]` (one thread's loop, inside the sum over j) once differed in the last bit,
/// so that `l[j] == l[k]` was false for j = k, and a top-k written by counting ranks
/// took a third heatmap.
#[test]
fn a_let_has_one_value_wherever_it_is_computed() {
    let data = heatmaps();
    let text = "loss self_equal {\n    input x : [K, H, W]\n    let l[k] = mean(h, w: x[k, h, w])\n    compute sum(j: select(l[j] == l[k], 1, 0))\n    reduce sum\n}\n";
    // The six means differ, so each equals itself only: 6.
    agrees(text, "self_equal", &data, 6.0, 0.0);
    let text = "loss top2 {\n    input x : [K, H, W]\n    let l[k] = mean(h, w: x[k, h, w])\n    compute select(sum(j: select(l[j] >= l[k], 1, 0)) <= 2, l[k], 0)\n    reduce sum\n}\n";
    // The means, in f64: 0.5008646, 0.5110104, 0.5185521, 0.5273958, 0.5401458,
    // 0.5515937; the two largest add to 1.0917396.
    agrees(text, "top2", &data, 1.091_739_6, 1e-6);
}

/// The losses `losses` of `text`, run as one kernel on the JSON `data`, fail on the CPU
/// and in every way on the GPU with the same message, which holds each of `expect`.
fn fails_alike(text: &str, losses: &[&str], data: &str, expect: &[&str]) {
    let program = check("f.loss", text);
    let data = parse_json_data(data).unwrap();
    let terms: Vec<FactoryTerm> = losses.iter().map(|l| FactoryTerm::plain(*l)).collect();
    let cpu = match run_cpu(&program, &terms, &data, &vec![], &RunOptions::default()) {
        Ok(v) => panic!("{losses:?}: the CPU gives {}, not an error", v.total),
        Err(e) => e.to_string(),
    };
    for e in expect {
        assert!(cpu.contains(e), "{losses:?}: no `{e}` in the CPU's `{cpu}`");
    }
    for (how, run) in on_the_gpu(&program, losses, &data) {
        match run {
            Ok(v) => panic!("{losses:?}, {how}: the GPU gives {v}, the CPU `{cpu}`"),
            Err(e) => assert_eq!(e.to_string(), cpu, "{losses:?}, {how}"),
        }
    }
}

/// PyTorch's weighted cross-entropy with `ignore_index`: the branch a `select` does not
/// take reads nothing, so the ignored target's gathers are not made.
const CROSS_ENTROPY: &str = "loss ce {\n    input logits : [N, C]\n    param target : index[N]\n    param class_weight : [C] = 1.0\n    param ignore_index = -100\n    let m[n] = max(c: logits[n, c])\n    let nll[n] = m[n] + log(sum(c: exp(logits[n, c] - m[n]))) - logits[n, target[n]]\n    compute sum(n: select(target[n] == ignore_index, 0, class_weight[target[n]] * nll[n]))\n          / sum(n: select(target[n] == ignore_index, 0, class_weight[target[n]]))\n    reduce mean\n}\n";

#[test]
fn a_gather_in_the_branch_not_taken_reads_nothing() {
    let data =
        r#"{"logits": [[1, 2, 3], [0, 0, 0]], "target": [2, -100], "class_weight": [1, 1, 2]}"#;
    // Row 0 only: nll = log(1 + e^-1 + e^-2) = 0.40760596, weighted 2 · nll / 2.
    agrees(CROSS_ENTROPY, "ce", data, 0.407_605_96, 1e-6);
}

/// Tables hoisted out of the element loop are built before it is known which entries are
/// read: a failed gather in an entry is kept with it and raised only where it is read.
/// t = [1, -1, 0] ignores row 1; x[n, c] = (5n + c) / 10 + 0.05, w[k, c] = (k + 1) / 2 + c / 4.
const GATHERED_TABLES: &str = "loss g1 {\n    input x : [N, C]\n    param t : index[N]\n    param w : [K, C]\n    compute select(t[n] < 0, 0, sum(c: w[t[n], c] * x[n, c]))\n    reduce sum\n}\nloss g2 {\n    input x : [N, C]\n    param t : index[N]\n    param w : [K, C]\n    let m[n] = mean(c: w[t[n], c])\n    compute select(t[n] < 0, 0, sum(c: (w[t[n], c] * x[n, c] - m[n]) ^ 2))\n    reduce sum\n}\nloss g3 {\n    input x : [N, C]\n    param t : index[N]\n    param w : [K, C]\n    compute select(t[n] < 0, 0, x[n, 0] - median(c: w[t[n], c] + x[n, c]))\n    reduce sum\n}\nloss g4 {\n    input x : [N, C]\n    param t : index[N]\n    param w : [K, C]\n    compute x[n, d] * select(t[n] < 0, 1, mean(c: w[t[n], c]))\n    reduce mean\n}\n";

fn gathered_data(t: &str) -> String {
    let x: Vec<String> = (0..15)
        .map(|i| format!("{}", i as f64 / 10.0 + 0.05))
        .collect();
    let w: Vec<String> = (0..10)
        .map(|i| format!("{}", (i / 5 + 1) as f64 / 2.0 + (i % 5) as f64 / 4.0))
        .collect();
    format!(
        r#"{{"x": {{"shape": [3, 5], "data": [{}]}}, "w": {{"shape": [2, 5], "data": [{}]}}, "t": {t}}}"#,
        x.join(","),
        w.join(",")
    )
}

#[test]
fn a_gather_in_a_hoisted_table_fails_only_where_the_entry_is_read() {
    let data = gathered_data("[1, -1, 0]");
    // g1: row 0 reads w[1] · x[0] = 2.125, row 2 w[0] · x[2] = 6.5.
    agrees(GATHERED_TABLES, "g1", &data, 8.625, 1e-6);
    // g2: squares of w · x - mean(w) add to 6.2384375 (row 0) and 2.1603125 (row 2).
    agrees(GATHERED_TABLES, "g2", &data, 8.398_75, 1e-6);
    // g3: x[n, 0] - the median of w + x: 0.05 - 1.75 and 1.05 - 2.25.
    agrees(GATHERED_TABLES, "g3", &data, -2.9, 1e-6);
    // g4: (1.25 · 1.5 + 3.75 · 1 + 6.25 · 1.0) / 15.
    agrees(GATHERED_TABLES, "g4", &data, 0.791_666_7, 1e-6);
    // Every target ignored: nothing is read through the gather.
    let none = gathered_data("[-1, -1, -1]");
    agrees(GATHERED_TABLES, "g1", &none, 0.0, 0.0);
    agrees(GATHERED_TABLES, "g4", &none, 0.75, 1e-6);
}

/// When reads fail, both back ends name the same one: the first in the order of the
/// losses and of the reads in the source, with the largest index it failed with.
#[test]
fn a_failed_gather_is_named_alike_on_both_back_ends() {
    let ce = |target: &str| {
        format!(
            r#"{{"logits": [[1, 2, 3], [0, 0, 0]], "target": {target}, "class_weight": [1, 1, 2]}}"#
        )
    };
    // `logits[n, target[n]]` (line 7) fails before `class_weight[target[n]]` (line 8).
    let at = [
        "index 5 is out of range for axis 1 of `logits` (size 3)",
        "`logits[n, target[n]]`",
        "f.loss:7:",
    ];
    fails_alike(CROSS_ENTROPY, &["ce"], &ce("[2, 5]"), &at);
    // Two targets out of range: the largest index.
    fails_alike(
        CROSS_ENTROPY,
        &["ce"],
        &ce("[7, 5]"),
        &["index 7 is out of range for axis 1 of `logits`"],
    );
    // In tables: raised where a needed entry is read, in every kind of table.
    for loss in ["g1", "g2", "g3", "g4"] {
        fails_alike(
            GATHERED_TABLES,
            &[loss],
            &gathered_data("[5, -1, 2]"),
            &[
                "index 5 is out of range for axis 0 of `w` (size 2)",
                "at `w[t[n], c]`",
            ],
        );
    }
    // Two losses of one kernel failing: the first loss's read.
    let two = {
        let mut v: serde_json::Value = serde_json::from_str(&gathered_data("[1, -1, 2]")).unwrap();
        let m = v.as_object_mut().unwrap();
        let (w, t) = (m.remove("w").unwrap(), m.remove("t").unwrap());
        m.insert("g3.w".into(), w.clone());
        m.insert("g1.w".into(), w);
        m.insert("g3.t".into(), t.clone());
        m.insert("g1.t".into(), t);
        v.to_string()
    };
    fails_alike(
        GATHERED_TABLES,
        &["g3", "g1"],
        &two,
        &["loss `g3`: index 2 is out of range for axis 0 of `w`"],
    );
    // Two equal reductions at two places, one table built for both (the second reads
    // the first's): a failure in it is the second's read too, and the first place is
    // reported, as the evaluator, computing both, reports it.
    fails_alike(
        "loss e {\n    input y : [N, M]\n    param t : index[N]\n    compute select(t[i] >= 0, mean(q: y[t[i], q]), 0) * y[i, j] + select(t[i] >= 0, mean(q: y[t[i], q]), 0)\n    reduce mean\n}\n",
        &["e"],
        r#"{"y": {"shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}, "t": [1, 7]}"#,
        &["index 7 is out of range for axis 0 of `y` (size 2), at `y[t[i], q]` (at f.loss:4:39)"],
    );
    // A gathered value whose subscript is past i32: 3 · 1431655808 = 2^32 + 128 once
    // wrapped in 32 bits to 128 and read x[128] silently; it saturates on both back ends.
    let x: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    fails_alike(
        "loss w {\n    input x : [N]\n    param p : index[M]\n    compute x[3 * p[i]]\n    reduce sum\n}\n",
        &["w"],
        &format!(r#"{{"x": [{}], "p": [1431655808]}}"#, x.join(",")),
        &["index 2147483647 is out of range for axis 0 of `x` (size 200)"],
    );
    // A gather inside a gather: the inner read fails first (and reads index 0 on).
    let nested = "loss n {\n    input x : [N]\n    param p : index[M]\n    param q : index[S]\n    compute x[p[q[s]]]\n    reduce sum\n}\n";
    fails_alike(
        nested,
        &["n"],
        r#"{"x": [1, 2, 3], "p": [2, 0, 9], "q": [0, 4, 2]}"#,
        &["index 4 is out of range for axis 0 of `p` (size 3), at `p[q[s]]`"],
    );
    fails_alike(
        nested,
        &["n"],
        r#"{"x": [1, 2, 3], "p": [2, 0, 9], "q": [0, 1, 2]}"#,
        &["index 9 is out of range for axis 0 of `x` (size 3), at `x[p[q[s]]]`"],
    );
}
