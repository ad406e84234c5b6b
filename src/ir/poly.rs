//! Integer polynomials over dimension symbols: the symbolic sizes of the IR (`B`, `2 * K`,
//! `H * W`, `B - 2`). Shapes and index ranges are kept in this form until arrays are bound.
//! Arithmetic saturates: absurd sizes in source must end as errors, never as overflows.

use std::collections::BTreeMap;
use std::fmt;

/// A dimension symbol's id within its loss.
pub type DimId = usize;

/// `Σ coeff · Π symbols + constant`, kept normalised (no zero coefficients).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Poly {
    /// Monomial (sorted symbol ids, repeated for powers) → coefficient; the empty
    /// monomial is the constant term.
    pub terms: BTreeMap<Vec<DimId>, i64>,
}

impl Poly {
    /// The constant `c`.
    pub fn constant(c: i64) -> Poly {
        let mut p = Poly::default();
        if c != 0 {
            p.terms.insert(vec![], c);
        }
        p
    }

    /// The symbol `s`.
    pub fn sym(s: DimId) -> Poly {
        let mut p = Poly::default();
        p.terms.insert(vec![s], 1);
        p
    }

    /// `Some(c)` when the polynomial is the constant `c`.
    pub fn as_constant(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&vec![]).copied(),
            _ => None,
        }
    }

    fn normalise(mut self) -> Poly {
        self.terms.retain(|_, c| *c != 0);
        self
    }

    /// `self + other`
    pub fn add(&self, other: &Poly) -> Poly {
        let mut p = self.clone();
        for (m, c) in &other.terms {
            let e = p.terms.entry(m.clone()).or_insert(0);
            *e = e.saturating_add(*c);
        }
        p.normalise()
    }

    /// `k · self`
    pub fn scale(&self, k: i64) -> Poly {
        Poly {
            terms: self
                .terms
                .iter()
                .map(|(m, c)| (m.clone(), c.saturating_mul(k)))
                .collect(),
        }
        .normalise()
    }

    /// `self - other`
    pub fn sub(&self, other: &Poly) -> Poly {
        self.add(&other.scale(-1))
    }

    /// `self · other`
    pub fn mul(&self, other: &Poly) -> Poly {
        let mut p = Poly::default();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &other.terms {
                let mut m: Vec<DimId> = m1.iter().chain(m2).copied().collect();
                m.sort_unstable();
                let e = p.terms.entry(m).or_insert(0);
                *e = e.saturating_add(c1.saturating_mul(*c2));
            }
        }
        p.normalise()
    }

    /// `⌊self / k⌋` when it can be written as a polynomial: every non-constant coefficient
    /// must be a multiple of `k` (k > 0).
    pub fn floor_div(&self, k: i64) -> Option<Poly> {
        let mut p = Poly::default();
        for (m, c) in &self.terms {
            if m.is_empty() {
                p.terms.insert(vec![], c.div_euclid(k));
            } else if c % k == 0 {
                p.terms.insert(m.clone(), c / k);
            } else {
                return None;
            }
        }
        Some(p.normalise())
    }

    /// `⌈self / k⌉`, under the same condition as [`Poly::floor_div`].
    pub fn ceil_div(&self, k: i64) -> Option<Poly> {
        self.scale(-1).floor_div(k).map(|p| p.scale(-1))
    }

    /// `+1` or `−1` when every number in it has that sign, so that it has that sign
    /// (or is 0) for every value of its symbols, which are sizes and never negative;
    /// `None` when the numbers' signs differ or it is 0.
    pub fn sign(&self) -> Option<i64> {
        let mut signs = self.terms.values().map(|c| c.signum());
        let first = signs.next()?;
        signs.all(|s| s == first).then_some(first)
    }

    /// `⌊self / a⌋` when it is a polynomial: for a whole number `a`, as
    /// [`Poly::floor_div`]; for a single monomial with a positive number, only when it
    /// divides every term exactly (`(L·K − K) / K = L − 1`).
    pub fn floor_div_by(&self, a: &Poly) -> Option<Poly> {
        match a.as_constant() {
            Some(k) if k > 0 => self.floor_div(k),
            Some(_) => None,
            None => self.exact_div_monomial(a),
        }
    }

    /// `⌈self / a⌉`, under the same conditions as [`Poly::floor_div_by`].
    pub fn ceil_div_by(&self, a: &Poly) -> Option<Poly> {
        match a.as_constant() {
            Some(k) if k > 0 => self.ceil_div(k),
            Some(_) => None,
            None => self.exact_div_monomial(a),
        }
    }

    fn exact_div_monomial(&self, a: &Poly) -> Option<Poly> {
        let [(am, ac)] = a.terms.iter().collect::<Vec<_>>()[..] else {
            return None;
        };
        if *ac <= 0 {
            return None;
        }
        let mut p = Poly::default();
        for (m, c) in &self.terms {
            let mut rest = m.clone();
            for s in am {
                let at = rest.iter().position(|x| x == s)?;
                rest.remove(at);
            }
            if c % ac != 0 {
                return None;
            }
            p.terms.insert(rest, c / ac);
        }
        Some(p)
    }

    /// The symbols it mentions.
    pub fn symbols(&self) -> impl Iterator<Item = DimId> + '_ {
        self.terms.keys().flatten().copied()
    }

    /// Its value once every symbol has one (`None` for an unknown symbol or overflow).
    pub fn eval(&self, dims: &[Option<i64>]) -> Option<i64> {
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v = *c;
            for s in m {
                v = v.checked_mul((*dims.get(*s)?)?)?;
            }
            total = total.checked_add(v)?;
        }
        Some(total)
    }

    /// Its value once every symbol has one, saturating at the ends of `i64` (`None` only
    /// for an unknown symbol): a subscript `B*B*B*B*B` on a large `B` must end out of
    /// range, not at 0.
    pub fn eval_saturating(&self, dims: &[Option<i64>]) -> Option<i64> {
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v = *c;
            for s in m {
                v = v.saturating_mul((*dims.get(*s)?)?);
            }
            total = total.saturating_add(v);
        }
        Some(total)
    }

    /// Writes it with the given symbol names.
    pub fn display<'a>(&'a self, names: &'a [String]) -> PolyDisplay<'a> {
        PolyDisplay { poly: self, names }
    }
}

/// A [`Poly`] with its symbol names, for printing.
pub struct PolyDisplay<'a> {
    poly: &'a Poly,
    names: &'a [String],
}

impl fmt::Display for PolyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.poly.terms.is_empty() {
            return write!(f, "0");
        }
        // Highest-degree terms first, the constant last: `2*K - 1`.
        let mut terms: Vec<_> = self.poly.terms.iter().collect();
        terms.sort_by_key(|(m, _)| (std::cmp::Reverse(m.len()), (*m).clone()));
        for (i, (m, c)) in terms.iter().enumerate() {
            let c = **c;
            let (sign, mag) = if c < 0 { ("-", -c) } else { ("+", c) };
            match (i, sign) {
                (0, "-") => write!(f, "-")?,
                (0, _) => {}
                _ => write!(f, " {sign} ")?,
            }
            let names: Vec<&str> = m
                .iter()
                .map(|s| self.names.get(*s).map_or("?", String::as_str))
                .collect();
            if m.is_empty() {
                write!(f, "{mag}")?;
            } else if mag == 1 {
                write!(f, "{}", names.join("*"))?;
            } else {
                write!(f, "{mag}*{}", names.join("*"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_display() {
        let names = vec!["B".to_string(), "K".to_string()];
        let k2 = Poly::sym(1).scale(2);
        let p = k2.sub(&Poly::constant(1));
        assert_eq!(p.display(&names).to_string(), "2*K - 1");
        assert_eq!(p.floor_div(2).unwrap().display(&names).to_string(), "K - 1");
        assert_eq!(p.ceil_div(2).unwrap().display(&names).to_string(), "K");
        assert_eq!(Poly::sym(0).add(&Poly::sym(1)).floor_div(2), None);
        assert_eq!(
            Poly::sym(0).mul(&Poly::sym(1)).eval(&[Some(3), Some(4)]),
            Some(12)
        );
        assert_eq!(Poly::sym(0).eval(&[None]), None);
        let b5 = (0..4).fold(Poly::sym(0), |p, _| p.mul(&Poly::sym(0)));
        assert_eq!(b5.eval(&[Some(100_000)]), None);
        assert_eq!(b5.eval_saturating(&[Some(100_000)]), Some(i64::MAX));
        assert_eq!(
            b5.scale(-1).eval_saturating(&[Some(100_000)]),
            Some(i64::MIN)
        );
        assert_eq!(Poly::sym(0).sub(&Poly::sym(0)).as_constant(), Some(0));
    }
}
