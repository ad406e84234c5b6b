//! The generator of the `pipeline` target on pseudo-random bytes, outside libFuzzer:
//! every program it writes checks clean, and (with `--ignored`, on a GPU or lavapipe)
//! runs the same on both back ends.

use arbitrary::{Arbitrary, Unstructured};
use lossc_fuzz::pipeline::{Case, check};

/// Bytes from a fixed xorshift sequence.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn case(seed: u64) -> Case {
    let b = bytes(seed, 600);
    Case::arbitrary(&mut Unstructured::new(&b)).unwrap()
}

#[test]
fn generated_programs_check_clean() {
    for seed in 0..3000 {
        let c = case(seed);
        let sources = [lossc::diagnostics::Source::new(
            "case.loss",
            c.program.as_str(),
        )];
        let checked = lossc::sema::check(&sources);
        assert!(
            !checked.has_errors(),
            "seed {seed}:\n{}\n{c:?}",
            checked.render(&sources)
        );
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do)"]
fn generated_programs_agree_on_both_back_ends() {
    let n: u64 = std::env::var("CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    // `FIRST=S` starts at seed S. A long run (`CASES=10000`) reports its progress and
    // every program that takes more than 10 s; a disagreement stops it.
    let first: u64 = std::env::var("FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in first..first + n {
        let started = std::time::Instant::now();
        let c = case(seed);
        if let Err(e) = std::panic::catch_unwind(|| check(&c)) {
            eprintln!("seed {seed} fails");
            std::panic::resume_unwind(e);
        }
        if started.elapsed().as_secs() >= 10 {
            eprintln!("seed {seed} took {:?}:\n{c:?}", started.elapsed());
        }
        if (seed + 1 - first) % 1000 == 0 {
            eprintln!("{} programs agree on both back ends", seed + 1 - first);
        }
    }
    eprintln!("{n} programs agree on both back ends");
}
