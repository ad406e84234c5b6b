//! Reshaped subscripts: `x[b, l * K + k]` reads a `[B, L * K]` array as `[B, L, K]`.
//! Values and gradients are worked out by hand in f64 (and agree with the same loss
//! written over a three-axis array), on both back ends; misuse is located.

mod common;

use lossc::runtime::run::{Backend, RunResult};

fn run_json(text: &str, data: &str, backend: Backend) -> RunResult {
    common::run_text(text, data, backend).unwrap()
}

fn grad<'a>(r: &'a RunResult, name: &str) -> &'a [f32] {
    common::grad_of(r, name)
}

fn assert_close(a: &[f32], b: &[f64], what: &str) {
    common::assert_close_to(a, b, 1e-5, what)
}

const B: usize = 2;
const L: usize = 3;
const K: usize = 4;

/// x[b][j], j = l·K + k: small numbers of both signs, all different.
fn x_at(b: usize, j: usize) -> f64 {
    ((b * 13 + j * 7) % 11) as f64 / 4.0 - 1.0 + j as f64 / 64.0
}

fn w_at(k: usize) -> f64 {
    0.5 * (k + 1) as f64
}

/// `x` as `[B, L * K]` (flat) or `[B, L, K]`, and `w`, as JSON.
fn data(flat: bool) -> String {
    let rows: Vec<String> = (0..B)
        .map(|b| {
            let groups: Vec<String> = (0..L)
                .map(|l| {
                    let v: Vec<String> = (0..K).map(|k| x_at(b, l * K + k).to_string()).collect();
                    v.join(", ")
                })
                .collect();
            if flat {
                format!("[{}]", groups.join(", "))
            } else {
                format!("[[{}]]", groups.join("], ["))
            }
        })
        .collect();
    let w: Vec<String> = (0..K).map(|k| w_at(k).to_string()).collect();
    format!(r#"{{"x": [{}], "w": [{}]}}"#, rows.join(", "), w.join(", "))
}

const FLAT: &str = "loss t {
    input x : [B, L * K]
    input w : [K]
    compute sum(k: x[b, l * K + k] * w[k])
    reduce mean
}
";

const VIEWED: &str = "loss t {
    input x : [B, L, K]
    input w : [K]
    compute sum(k: x[b, l, k] * w[k])
    reduce mean
}
";

/// The mean over (b, l) of Σ_k x[b, l·K + k]·w[k]; `l` runs over L (inferred from the
/// axis `L * K`, with `L` solved from the array once `K` is known from `w`).
#[test]
fn a_flattened_axis_reads_as_two() {
    let n = (B * L) as f64;
    let mut value = 0.0;
    let mut dx = vec![0.0; B * L * K];
    let mut dw = vec![0.0; K];
    for b in 0..B {
        for l in 0..L {
            for k in 0..K {
                value += x_at(b, l * K + k) * w_at(k) / n;
                dx[b * L * K + l * K + k] = w_at(k) / n;
                dw[k] += x_at(b, l * K + k) / n;
            }
        }
    }
    for backend in [Backend::Cpu, Backend::Gpu] {
        for (text, flat) in [(FLAT, true), (VIEWED, false)] {
            let what = format!("{backend:?} flat={flat}");
            let r = run_json(text, &data(flat), backend);
            assert_close(&[r.total], &[value], &format!("{what} value"));
            assert_close(grad(&r, "x"), &dx, &format!("{what} d/dx"));
            assert_close(grad(&r, "w"), &dw, &format!("{what} d/dw"));
        }
    }
}

/// A negative symbolic coefficient: groups read in reverse, `x[b, (L - 1 - l) * K + k]`,
/// weighted by `l` so that the order shows.
#[test]
fn groups_read_in_reverse() {
    let text = "loss t {
    input x : [B, L * K]
    input w : [K]
    compute l * sum(k: x[b, (L - 1 - l) * K + k] * w[k])
    reduce sum
}
";
    let mut value = 0.0;
    let mut dx = vec![0.0; B * L * K];
    for b in 0..B {
        for l in 0..L {
            for k in 0..K {
                let j = (L - 1 - l) * K + k;
                value += l as f64 * x_at(b, j) * w_at(k);
                dx[b * L * K + j] = l as f64 * w_at(k);
            }
        }
    }
    for backend in [Backend::Cpu, Backend::Gpu] {
        let r = run_json(text, &data(true), backend);
        assert_close(&[r.total], &[value], &format!("{backend:?} value"));
        assert_close(grad(&r, "x"), &dx, &format!("{backend:?} d/dx"));
    }
}

/// A heatmap stored flat, `[B, H * W]`, against a target `[B, H, W]`.
#[test]
fn a_flat_heatmap_against_a_shaped_target() {
    let text = "loss t {
    input hm : [B, H * W]
    input target : [B, H, W]
    compute sum(h, w: (hm[b, h * W + w] - target[b, h, w]) ^ 2)
    reduce mean
}
";
    let (b_, h_, w_) = (2usize, 3usize, 5usize);
    let hm = |b: usize, j: usize| ((b * 5 + j * 3) % 7) as f64 / 3.0;
    let tg = |b: usize, h: usize, w: usize| ((b + h * 2 + w) % 4) as f64 / 2.0;
    let mut hm_rows = Vec::new();
    let mut tg_rows = Vec::new();
    let mut value = 0.0;
    let mut dhm = Vec::new();
    for b in 0..b_ {
        let flat: Vec<String> = (0..h_ * w_).map(|j| hm(b, j).to_string()).collect();
        hm_rows.push(format!("[{}]", flat.join(", ")));
        let mut grid = Vec::new();
        for h in 0..h_ {
            let row: Vec<String> = (0..w_).map(|w| tg(b, h, w).to_string()).collect();
            grid.push(format!("[{}]", row.join(", ")));
            for w in 0..w_ {
                let d = hm(b, h * w_ + w) - tg(b, h, w);
                value += d * d / b_ as f64;
                dhm.push(2.0 * d / b_ as f64);
            }
        }
        tg_rows.push(format!("[{}]", grid.join(", ")));
    }
    let data = format!(
        r#"{{"hm": [{}], "target": [{}]}}"#,
        hm_rows.join(", "),
        tg_rows.join(", ")
    );
    for backend in [Backend::Cpu, Backend::Gpu] {
        let r = run_json(text, &data, backend);
        assert_close(&[r.total], &[value], &format!("{backend:?} value"));
        assert_close(grad(&r, "hm"), &dhm, &format!("{backend:?} d/dhm"));
    }
}

/// When the range of `l` comes from another array, a flat axis too short for it is the
/// located out-of-range error naming the input, before anything runs.
#[test]
fn a_flat_axis_too_short_is_refused_naming_the_input() {
    let text = "loss t {
    input x : [N]
    input y : [L, K]
    compute sum(k: x[l * K + k] * y[l, k])
    reduce sum
}
";
    let data = r#"{"x": [1, 2, 3, 4, 5], "y": [[1, 1, 1], [1, 1, 1]]}"#;
    for backend in [Backend::Cpu, Backend::Gpu] {
        let Err(e) = common::run_text(text, data, backend) else {
            panic!("{backend:?}: a flat axis too short ran");
        };
        assert!(e.contains("`x`") && e.contains("5"), "{backend:?}: {e}");
        assert!(e.contains("t.loss:4"), "{backend:?}: {e}");
    }
    // Long enough, it runs: (1 + 2 + 3) + (4 + 5 + 6).
    let data = r#"{"x": [1, 2, 3, 4, 5, 6, 7], "y": [[1, 1, 1], [1, 1, 1]]}"#;
    for backend in [Backend::Cpu, Backend::Gpu] {
        let r = run_json(text, data, backend);
        assert_close(&[r.total], &[21.0], &format!("{backend:?}"));
    }
}

/// The fused kernel of a reshaped read, for review: the subscript's size is read from the
/// parameter block (`K * l`), where a declared axis would take its stride.
#[test]
fn the_kernel_of_a_reshaped_read() {
    let program = common::check_text(FLAT);
    let terms = [lossc::ir::FactoryTerm::plain("t")];
    let k = lossc::codegen::compile(&program, "t", &terms).unwrap();
    // The read of `x` (t.loss:4:20) multiplies an index by a slot of the block.
    let read = k
        .wgsl
        .lines()
        .find(|l| l.ends_with("// t.loss:4:20"))
        .unwrap();
    assert!(
        read.contains("(lc_meta.m[") && read.contains(") * i"),
        "{read}"
    );
    insta::assert_snapshot!("reshaped_read.wgsl", k.wgsl);
}

#[test]
fn misuse_is_located() {
    let gathered = common::errors_of(
        "loss t { input x : [N * K]\n param p : index[M]\n compute sum(k in 0..K: x[p[m] * K + k])\n reduce mean }",
    );
    assert!(
        gathered.contains("a gathered index may be multiplied only by a whole number"),
        "{gathered}"
    );
    assert!(gathered.contains("t.loss:3:"), "{gathered}");
    let unknown = common::errors_of(
        "loss t { input x : [N]\n input w : [K]\n compute sum(k: x[l * K + k] * w[k])\n reduce mean }",
    );
    assert!(
        unknown.contains("cannot infer the range of index `l`"),
        "{unknown}"
    );
    let products =
        common::errors_of("loss t { input x : [N, K]\n compute x[n, k * k]\n reduce mean }");
    assert!(
        products.contains("indices cannot be multiplied together"),
        "{products}"
    );
}
