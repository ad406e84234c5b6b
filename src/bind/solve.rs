//! Dimension symbols solved from the sizes of arrays: each equation `poly = size` with a
//! single unknown symbol appearing linearly fixes it (`2 * K` = 34 gives K = 17; `L * K` = 12 gives
//! L = 3 once K = 4 is known), until none is left; then every equation is checked against the
//! solution.

use super::BindError;
use crate::ir::{DimId, Poly};

/// One equation `poly = size`, with a description of where the size came from.
pub(super) struct Equation {
    pub poly: Poly,
    pub size: i64,
    pub what: String,
}

/// Solves equations with one unknown symbol appearing linearly, until none is left, then
/// checks every equation.
pub(super) fn solve_dims(
    eqs: &[Equation],
    dims: &mut [Option<i64>],
    origin: &mut [String],
    names: &[String],
    loss: &str,
) -> Result<(), BindError> {
    loop {
        let mut progress = false;
        for eq in eqs {
            let unknown: Vec<DimId> = {
                let mut u: Vec<DimId> = eq.poly.symbols().filter(|s| dims[*s].is_none()).collect();
                u.sort_unstable();
                u.dedup();
                u
            };
            let [s] = unknown[..] else { continue };
            // Linear in s: exactly one monomial [s], no other monomial mentions s.
            let mentions: Vec<_> = eq
                .poly
                .terms
                .iter()
                .filter(|(m, _)| m.contains(&s))
                .collect();
            let [(m, a)] = mentions[..] else { continue };
            // s once, beside symbols already known (`L * K` once `K` is): their product
            // joins the coefficient.
            if m.iter().filter(|x| **x == s).count() != 1 {
                continue;
            }
            let known = m
                .iter()
                .filter(|x| **x != s)
                .try_fold(*a, |acc, x| acc.checked_mul(dims[*x]?));
            let Some(a) = known.filter(|a| *a != 0) else {
                continue;
            };
            let a = &a;
            let mut rest = eq.poly.clone();
            rest.terms.remove(m);
            let Some(rest) = rest.eval(dims) else {
                continue;
            };
            // Checked: a size near the ends of i64 (an array claiming 2^63 values, a
            // coefficient of -1 on i64::MIN) has no whole solution worth keeping.
            let whole = eq
                .size
                .checked_sub(rest)
                .filter(|num| num.checked_rem(*a) == Some(0))
                .and_then(|num| num.checked_div(*a))
                .filter(|v| *v >= 0);
            let Some(value) = whole else {
                return Err(BindError::NoWholeDim {
                    loss: loss.to_string(),
                    what: eq.what.clone(),
                    size: eq.size,
                    shape: eq.poly.display(names).to_string(),
                    dim: names[s].clone(),
                });
            };
            dims[s] = Some(value);
            origin[s] = format!("{} = {}", eq.what, eq.size);
            progress = true;
        }
        if !progress {
            break;
        }
    }
    for eq in eqs {
        if let Some(v) = eq.poly.eval(dims)
            && v != eq.size
        {
            let from: Vec<String> = eq
                .poly
                .symbols()
                .map(|s| {
                    format!(
                        "{} = {} (from {})",
                        names[s],
                        dims[s].unwrap_or(0),
                        origin[s]
                    )
                })
                .collect();
            let should = if eq.poly.as_constant().is_some() {
                format!("{v}")
            } else {
                format!("{} = {v}", eq.poly.display(names))
            };
            return Err(BindError::SizeMismatch {
                loss: loss.to_string(),
                what: eq.what.clone(),
                size: eq.size,
                should,
                since: if from.is_empty() {
                    String::new()
                } else {
                    format!(", since {}", from.join(", "))
                },
            });
        }
    }
    Ok(())
}
