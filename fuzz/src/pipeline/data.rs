//! The JSON data of a generated program: `x`, `y` (N × M), `z` and, half the time, `m`
//! (N), `xf` (N · M values, read as N × M), with N, M ≤ 8 (so at most 64 values an
//! array), and for each loss `n` some of its params (`an`, `en`, `gn`, `moden`); the
//! others keep their defaults or settings.
//!
//! Values are dyadic (multiples of 1/4 below 8 in magnitude), so that sums and products
//! are exact in f32, plus the specials 0, −0, ±inf and NaN. No value is subnormal:
//! the program generator keeps every value normal (see `super::mag`).

use arbitrary::Unstructured;
use serde_json::{Value, json};

/// The values of the arrays: the JSON each is written as.
const VALUES: &[&str] = &[
    "0", "-0.0", "0.25", "0.5", "-0.5", "1", "-1", "1.5", "2", "-2", "3", "-3.5", "4", "6", "-6",
    "0.75",
];
const SPECIALS: &[&str] = &[
    "\"NaN\"",
    "\"Infinity\"",
    "\"-Infinity\"",
    "null",
    "-0.0",
    "0",
];

fn value(u: &mut Unstructured) -> String {
    let specials = u.ratio(1, 6).unwrap_or(false);
    let from = if specials { SPECIALS } else { VALUES };
    from[u.choose_index(from.len()).unwrap_or(0)].to_string()
}

fn values(u: &mut Unstructured, n: usize) -> String {
    let v: Vec<String> = (0..n).map(|_| value(u)).collect();
    format!("[{}]", v.join(", "))
}

/// An N × M array: a tensor object, or nested lists.
fn matrix(u: &mut Unstructured, n: usize, m: usize) -> String {
    if u.ratio(1, 2).unwrap_or(true) {
        format!("{{\"shape\": [{n}, {m}], \"data\": {}}}", values(u, n * m))
    } else {
        let rows: Vec<String> = (0..n).map(|_| values(u, m)).collect();
        format!("[{}]", rows.join(", "))
    }
}

/// The data for `losses` generated losses.
pub fn data(u: &mut Unstructured, losses: usize) -> String {
    let n = u.int_in_range(1..=8usize).unwrap_or(1);
    let m = u.int_in_range(1..=8usize).unwrap_or(1);
    let mut entries = vec![
        format!("\"x\": {}", matrix(u, n, m)),
        format!("\"y\": {}", matrix(u, n, m)),
        format!("\"z\": {}", values(u, n)),
    ];
    if u.ratio(1, 2).unwrap_or(false) {
        entries.push(format!("\"m\": {}", values(u, n)));
    }
    for l in 0..losses {
        if u.ratio(1, 3).unwrap_or(false) {
            entries.push(format!("\"a{l}\": {}", value(u)));
        }
        match u.int_in_range(0..=3u8).unwrap_or(0) {
            0 => entries.push(format!("\"e{l}\": {}", value(u))),
            1 => entries.push(format!("\"e{l}\": {}", values(u, m))),
            _ => {}
        }
        if u.ratio(3, 4).unwrap_or(false) {
            // Mostly in range; now and then one past either end, an error on both back
            // ends wherever it is read.
            let s = u.int_in_range(0..=4usize).unwrap_or(0);
            let g: Vec<Value> = (0..s)
                .map(|_| {
                    if u.ratio(1, 10).unwrap_or(false) {
                        json!(if u.ratio(1, 2).unwrap_or(false) {
                            -1
                        } else {
                            m as i64
                        })
                    } else {
                        json!(u.int_in_range(0..=m - 1).unwrap_or(0))
                    }
                })
                .collect();
            entries.push(format!("\"g{l}\": {}", Value::Array(g)));
        }
        match u.int_in_range(0..=2u8).unwrap_or(0) {
            0 => entries.push(format!("\"mode{l}\": \"p\"")),
            1 => entries.push(format!("\"mode{l}\": \"q\"")),
            _ => {}
        }
    }
    // Drawn last, so that the draws above stay those of the programs before it.
    entries.push(format!("\"xf\": {}", values(u, n * m)));
    format!("{{{}}}", entries.join(", "))
}
