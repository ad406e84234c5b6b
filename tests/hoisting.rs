//! A reduction inside another reduction that depends on the domain's indices alone is
//! invariant in the enclosing loop: it is hoisted and computed once per row, so a
//! cross-entropy over C classes costs O(C) per row, not O(C²) (a max-shifted
//! log-sum-exp inside the sum over classes). Checked on 512 classes, which lavapipe's
//! loop budget refused before, against a log-sum-exp computed here in f64.

use lossc::diagnostics::Source;
use lossc::gpu::RowPlacement;
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::parse_json_data;
use lossc::runtime::run::{Backend, RunOptions, run};

const CE: &str = "loss ce_soft {
    input logits : [N, C]
    input probs  : [N, C]

    let m[n]   = max(c: logits[n, c])
    let lse[n] = m[n] + log(sum(c: exp(logits[n, c] - m[n])))

    compute sum(c: probs[n, c] * (lse[n] - logits[n, c]))
    reduce  mean
}
";

fn program() -> Program {
    let sources = [Source::new("ce.loss", CE)];
    let checked = lossc::sema::check(&sources);
    assert!(!checked.has_errors(), "{}", checked.render(&sources));
    checked.program
}

/// Deterministic logits in [-8, 8) and soft targets that sum to 1 per row.
fn data(n: usize, c: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let logits: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            (0..c)
                .map(|_| (next() * 16.0 - 8.0) as f32 as f64)
                .collect()
        })
        .collect();
    let probs = (0..n)
        .map(|_| {
            let raw: Vec<f64> = (0..c).map(|_| next() + 0.01).collect();
            let s: f64 = raw.iter().sum();
            raw.iter().map(|x| (x / s) as f32 as f64).collect()
        })
        .collect();
    (logits, probs)
}

/// The loss in f64, independently of lossc: Σ_c p·(lse − logit), averaged over rows.
fn expected(logits: &[Vec<f64>], probs: &[Vec<f64>]) -> f64 {
    let rows: Vec<f64> = logits
        .iter()
        .zip(probs)
        .map(|(l, p)| {
            let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + l.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            l.iter().zip(p).map(|(x, q)| q * (lse - x)).sum()
        })
        .collect();
    rows.iter().sum::<f64>() / rows.len() as f64
}

#[test]
fn cross_entropy_over_512_classes_runs_on_the_gpu_in_one_dispatch() {
    let program = program();
    let (logits, probs) = data(8, 512);
    let json = serde_json::json!({ "logits": logits, "probs": probs }).to_string();
    let data = parse_json_data(&json).unwrap();
    let want = expected(&logits, &probs);
    let terms = [FactoryTerm::plain("ce_soft")];
    for (backend, rows) in [
        (Backend::Cpu, RowPlacement::Auto),
        (Backend::Gpu, RowPlacement::Auto),
        (Backend::Gpu, RowPlacement::Shared),
        (Backend::Gpu, RowPlacement::PerThread),
    ] {
        let opts = RunOptions {
            backend,
            rows,
            ..RunOptions::default()
        };
        let r = run(&program, "ce_soft", &terms, &data, &vec![], &opts)
            .unwrap_or_else(|e| panic!("{backend:?} {rows:?}: {e}"));
        let got = r.total as f64;
        assert!(
            ((got - want) / want).abs() < 1e-5,
            "{backend:?} {rows:?}: {got} vs {want}"
        );
        if backend == Backend::Gpu {
            assert_eq!(r.dispatches, 1, "{rows:?}");
            assert!(r.backend.starts_with("gpu"), "{rows:?}: {}", r.backend);
            assert!(r.notes.is_empty(), "{rows:?}: {:?}", r.notes);
        }
    }
}

#[test]
fn the_invariant_reductions_are_hoisted_once_per_row() {
    let program = program();
    let k = lossc::codegen::compile(&program, "ce_soft", &[FactoryTerm::plain("ce_soft")]).unwrap();
    let s = &k.schedules[0];
    // max(c), sum(c) of the log-sum-exp, the max again inside it (the same table, not
    // built twice), and the outer sum over classes.
    assert_eq!(
        s.hoisted.len(),
        4,
        "{}",
        lossc::codegen::explain(&program, &k)
    );
    assert_eq!(s.hoisted.iter().filter(|h| h.same_as.is_none()).count(), 3);
    assert!(s.hoisted.iter().all(|h| h.table_vars.is_empty()));
    let text = lossc::codegen::explain(&program, &k);
    // Every read of `logits` happens once per row, none once per pair of classes.
    assert!(!text.contains("(c, c)"), "{text}");
}
