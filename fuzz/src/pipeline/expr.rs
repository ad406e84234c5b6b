//! The expressions of a generated loss: numbers ([`Gen::num`]) and truth values
//! ([`Gen::cond`]) over the index variables in scope, each with its [`Mag`], and with the
//! exclusions that keep the two back ends comparable (see [`super::mag`], and [`open`]
//! for the issue 8 items the generator once steered around).

use super::mag::Mag;
use super::program::{Gen, Index, Kind};

/// Issue 8's items that the generator steers around, each a switch turned on once its
/// item is fixed: the generator then writes again what the item broke.
pub mod open {
    /// Item 2 (fixed: specialised kernels keep the generic kernel's slots and sites): a
    /// `select` on an enum test whose branches use different slots (a size, an input's
    /// offset) made the specialised kernel's slots differ from the generic one's, an
    /// internal compiler error: `select(mode == "p", N, x[i, j])` with mode = "p". Off,
    /// enum tests stay out of `select` conditions (masks keep them).
    pub const ENUM_SELECT: bool = true;
    /// Item 3 (fixed: `pow` follows C's pow on both back ends): `pow` specials
    /// (0 ^ -0.5, -0 ^ -1, 1 ^ NaN, (-1) ^ inf) differed on the GPU. Off, a power's base
    /// is `abs(a) + 1` and its exponent a constant.
    pub const POW_SPECIALS: bool = true;
    /// Item 4 (fixed: the kernel hands the shader compiler no algebra that assumes no NaN
    /// or infinity): the driver folded `0 * x`, `x - x`, `(c + x) - x` and `0 / 0` as if
    /// x were finite, wherever the kernel knew the 0 or saw the same value twice: a
    /// constant, a size or an enum (literals of the specialised kernel), an index, the
    /// weight, the anneal factor, one read used on both sides. `mean` over an empty range
    /// of literal size gave 0 (`mean(s in 0..S: 1) + z[i]` with S = 0 was a loss of 0
    /// however large z); `compute 1.5 + x[i]` with `rectify x[i]` gave 1.5 for x = −inf
    /// (CPU: NaN). Off, a factor, numerator or denominator the kernel may know to be 0
    /// meets only another such; two sides reading a value in common are not added or
    /// subtracted (`max` instead), nor are compute and rectify; the weight and the anneal
    /// factor are never a known 0; gathers, the only ranges here that can be empty, are
    /// not averaged.
    pub const FOLDED_SPECIALS: bool = true;
}

/// A generated number-valued expression.
#[derive(Clone, Debug)]
pub struct Expr {
    pub text: String,
    pub mag: Mag,
    /// Whether it reads no data and no param: the code generator may make it a constant
    /// (sizes are literals in a specialised kernel), and the driver may fold it.
    pub fixed: bool,
    /// Whether it may be 0 (checked only for `fixed` expressions).
    pub zero: bool,
    /// Whether it may be a value the kernel does not know (data or a param, possibly
    /// NaN or infinite). Not simply `!fixed`: `select(isnan(j), 0, x[i, j])` may be known
    /// (its condition is, and one branch) and may be data (the other branch); so may a
    /// reduction over a gather's range, known when the range is empty.
    pub data: bool,
    /// The index variables it reads alone in a subscript (whose ranges those reads can
    /// infer).
    pub reads: Vec<String>,
    /// The reads of data it contains (`x[i, j]`, lets expanded), whose values the
    /// kernel computes once: two expressions sharing one may fold against each other.
    pub atoms: Vec<String>,
}

impl Expr {
    fn new(text: impl Into<String>, mag: Mag, fixed: bool, zero: bool) -> Expr {
        Expr {
            text: text.into(),
            mag,
            fixed,
            zero,
            data: !fixed,
            reads: vec![],
            atoms: vec![],
        }
    }

    /// The same, made of `parts`: it reads what they read.
    fn of(mut self, parts: &[&Expr]) -> Expr {
        for p in parts {
            self.data |= p.data;
            self.reads.extend(p.reads.iter().cloned());
            self.atoms.extend(p.atoms.iter().cloned());
        }
        self
    }

    /// Whether it and `other` read a value in common.
    fn shares(&self, other: &Expr) -> bool {
        self.atoms.iter().any(|a| other.atoms.contains(a))
    }

    /// A value the kernel may know to be 0 at compile time.
    pub fn foldable_zero(&self) -> bool {
        self.fixed && self.zero
    }
}

/// `text` with each whole word `from[k]` replaced by `to[k]`.
fn rename(text: &str, from: &[&str], to: &[String]) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match from.iter().position(|f| *f == word.as_str()) {
            Some(k) => out.push_str(&to[k]),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Whether `a * b` or `a / b` could meet issue 8 item 4: one side a 0 the kernel may
/// know, the other data (possibly infinite or NaN).
fn folds(a: &Expr, b: &Expr) -> bool {
    !open::FOLDED_SPECIALS && ((a.foldable_zero() && b.data) || (b.foldable_zero() && a.data))
}

/// A generated truth value.
pub struct Cond {
    pub text: String,
    pub reads: Vec<String>,
    /// Whether the kernel may know it (see [`Expr::fixed`]; an enum's value is a
    /// literal of the specialised kernel).
    pub fixed: bool,
}

/// Constants the generator writes, and their f32 values.
pub const CONSTANTS: &[(&str, f32)] = &[
    ("0", 0.0),
    ("1", 1.0),
    ("2", 2.0),
    ("0.5", 0.5),
    ("0.25", 0.25),
    ("3", 3.0),
    ("1.5", 1.5),
    ("0.1", 0.1),
    ("(-1)", -1.0),
    ("(-0.5)", -0.5),
    ("(-0)", -0.0),
];

/// The constants a param's default may be: those exact in f32, as every data value is
/// (a default of 0.1 read as an exact value made the generator demand bit-equal sums of
/// it from back ends that add in different orders).
pub fn exact_constants() -> Vec<&'static str> {
    CONSTANTS
        .iter()
        .filter(|(text, v)| {
            text.trim_matches(|c| c == '(' || c == ')').parse::<f64>() == Ok(f64::from(*v))
        })
        .map(|(text, _)| *text)
        .collect()
}

/// The magnitude of every data value and param (see `super::data`).
const DATA: Mag = Mag {
    lo: -2.0,
    hi: 3.0,
    err: None,
};

impl Gen<'_, '_> {
    /// A subscript on a dimension of `kind`, and the index it holds alone (whose range
    /// it then fixes), or None when nothing in scope fits. Columns may also be gathered
    /// (`g0[s]`).
    fn subscript(&mut self, scope: &[Index], kind: Kind) -> Option<(String, Option<String>)> {
        if kind == Kind::Col && self.chance(1, 4) {
            if let Some(s) = self.index_of(scope, Kind::Gather) {
                return Some((format!("{}[{}]", self.param("g"), s.name), Some(s.name)));
            }
        }
        let index = self.index_of(scope, kind)?;
        if index.domain && kind == Kind::Row && self.chance(1, 5) {
            return Some((format!("{} + 1", index.name), None));
        }
        Some((index.name.clone(), Some(index.name)))
    }

    /// `name[subscripts]`, a read of a tensor whose axes are `kinds`, if the scope
    /// allows.
    fn read(&mut self, scope: &[Index], name: &str, kinds: &[Kind]) -> Option<Expr> {
        let mut subs = Vec::new();
        let mut reads = Vec::new();
        for kind in kinds {
            let (sub, alone) = self.subscript(scope, *kind)?;
            subs.push(sub);
            reads.extend(alone);
        }
        let text = format!("{name}[{}]", subs.join(", "));
        let mut e = Expr::new(text.clone(), DATA, false, true);
        e.reads = reads;
        e.atoms = vec![text];
        Some(e)
    }

    /// `xf[r * M + c]`: the `[N * M]` input `xf` read as `[N, M]` (a reshaped subscript).
    /// It infers no range: `r * M + c` holds neither index alone.
    fn flat_read(&mut self, scope: &[Index]) -> Option<Expr> {
        let (row, _) = self.subscript(scope, Kind::Row)?;
        let (col, _) = self.subscript(scope, Kind::Col)?;
        let row = if row.contains(' ') {
            format!("({row})")
        } else {
            row
        };
        let text = format!("xf[{row} * M + {col}]");
        let mut e = Expr::new(text.clone(), DATA, false, true);
        e.atoms = vec![text];
        Some(e)
    }

    /// A leaf: a constant, a param, a dimension, an index, a read, or a let.
    fn leaf(&mut self, scope: &[Index], exact_only: bool) -> Expr {
        for _ in 0..4 {
            match self.pick(10) {
                0 | 1 => {
                    let (text, v) = CONSTANTS[self.pick(CONSTANTS.len())];
                    return Expr::new(text, Mag::constant(v), true, v == 0.0);
                }
                2 => return Expr::new(self.param("a"), DATA, false, true),
                3 => {
                    let dim = ["N", "M", "S"][self.pick(3)];
                    return Expr::new(dim, Mag::exact(0.0, 4.0), true, dim == "S");
                }
                4 if !scope.is_empty() => {
                    let i = self.pick(scope.len());
                    let name = scope[i].name.clone();
                    return Expr::new(name, Mag::exact(0.0, 3.0), true, true);
                }
                5 | 6 => {
                    let input = ["x", "y", "xf"][self.pick(3)];
                    let read = match input {
                        "xf" => self.flat_read(scope),
                        _ => self.read(scope, input, &[Kind::Row, Kind::Col]),
                    };
                    if let Some(read) = read {
                        return read;
                    }
                }
                7 => {
                    let (kind, name) = if self.in_mask && self.chance(1, 2) {
                        (Kind::Row, "m".to_string())
                    } else if self.chance(1, 2) {
                        (Kind::Row, "z".to_string())
                    } else {
                        (Kind::Col, self.param("e"))
                    };
                    if let Some(read) = self.read(scope, &name, &[kind]) {
                        return read;
                    }
                }
                _ => {
                    if let Some(l) = self.let_use(scope, exact_only) {
                        return l;
                    }
                }
            }
        }
        Expr::new("0.5", Mag::constant(0.5), true, false)
    }

    /// A use of one of the lets declared so far that fits the scope. (Its reads are the
    /// let's own: a use infers no range.)
    fn let_use(&mut self, scope: &[Index], exact_only: bool) -> Option<Expr> {
        if self.lets.is_empty() {
            return None;
        }
        let n = self.pick(self.lets.len());
        let l = self.lets[n].clone();
        if exact_only && !l.body.mag.is_exact() {
            return None;
        }
        let mut atoms = l.body.atoms.clone();
        let text = if l.params.is_empty() {
            // A plain let reads `i` and `j`: usable where both are bound, as a row and
            // a column.
            let bound = |name: &str, kind: Kind| {
                scope
                    .iter()
                    .rev()
                    .find(|i| i.name == name)
                    .is_some_and(|i| i.kind == kind)
            };
            if !(bound("i", Kind::Row) && bound("j", Kind::Col)) {
                return None;
            }
            l.name
        } else {
            let mut subs = Vec::new();
            for kind in &l.params {
                subs.push(self.index_of(scope, *kind)?.name);
            }
            // The body's reads at the use: its parameters `i`, `j` become the
            // subscripts.
            for atom in &mut atoms {
                *atom = rename(atom, &["i", "j"][..subs.len()], &subs);
            }
            format!("{}[{}]", l.name, subs.join(", "))
        };
        Some(Expr {
            text,
            reads: vec![],
            atoms,
            ..l.body
        })
    }

    /// A number-valued expression over `scope`; with `exact_only`, one both back ends
    /// compute exactly.
    pub fn num(&mut self, scope: &[Index], depth: u32, exact_only: bool) -> Expr {
        if depth == 0 || self.chance(1, 4) {
            return self.leaf(scope, exact_only);
        }
        let op = self.pick(19);
        if op >= 17 {
            let e = self.reduction(scope, depth, exact_only);
            if e.mag.fits() && (e.mag.is_exact() || !exact_only) {
                return e;
            }
            return self.leaf(scope, exact_only);
        }
        let a = self.num(scope, depth - 1, exact_only);
        let (fixed, zero) = (a.fixed, a.zero);
        let e = match op {
            0 | 1 => {
                let b = self.num(scope, depth - 1, exact_only);
                if a.shares(&b) && !open::FOLDED_SPECIALS {
                    return Expr::new(
                        format!("max({}, {})", a.text, b.text),
                        Mag::either(a.mag, b.mag),
                        fixed && b.fixed,
                        true,
                    )
                    .of(&[&a, &b]);
                }
                let op = ["+", "-"][self.pick(2)];
                Expr::new(
                    format!("({} {op} {})", a.text, b.text),
                    Mag::add(a.mag, b.mag),
                    fixed && b.fixed,
                    true,
                )
                .of(&[&a, &b])
            }
            2 | 3 => {
                let b = self.num(scope, depth - 1, exact_only);
                if folds(&a, &b) {
                    return a;
                }
                Expr::new(
                    format!("({} * {})", a.text, b.text),
                    Mag::mul(a.mag, b.mag),
                    fixed && b.fixed,
                    zero || b.zero,
                )
                .of(&[&a, &b])
            }
            4 if !exact_only => self.quotient(scope, depth, a.clone()),
            5 => Expr::new(format!("(-{})", a.text), a.mag, fixed, zero).of(&[&a]),
            6 => {
                let f = ["abs", "relu"][self.pick(2)];
                Expr::new(format!("{f}({})", a.text), a.mag, fixed, true).of(&[&a])
            }
            7 => {
                let b = self.num(scope, depth - 1, exact_only);
                let f = ["min", "max"][self.pick(2)];
                Expr::new(
                    format!("{f}({}, {})", a.text, b.text),
                    Mag::either(a.mag, b.mag),
                    fixed && b.fixed,
                    true,
                )
                .of(&[&a, &b])
            }
            8 => {
                let lo = [(-1.0, "-1"), (0.0, "0"), (0.5, "0.5")][self.pick(3)];
                let hi = [(1.0, "1"), (2.0, "2"), (4.0, "4")][self.pick(3)];
                let bounds = Mag::either(Mag::constant(lo.0), Mag::constant(hi.0));
                Expr::new(
                    format!("clamp({}, {}, {})", a.text, lo.1, hi.1),
                    Mag::either(a.mag, bounds),
                    fixed,
                    true,
                )
                .of(&[&a])
            }
            9 => {
                let outer = std::mem::replace(&mut self.in_select, true);
                let c = self.cond(scope, depth - 1);
                self.in_select = outer;
                let b = self.num(scope, depth - 1, exact_only);
                // Known when the condition is known and the branch it takes is.
                let known = c.fixed && (fixed || b.fixed);
                let mut e = Expr::new(
                    format!("select({}, {}, {})", c.text, a.text, b.text),
                    Mag::either(a.mag, b.mag),
                    known,
                    (fixed && zero) || (b.fixed && b.zero),
                )
                .of(&[&a, &b]);
                e.reads.extend(c.reads);
                e
            }
            10 if !exact_only => {
                let e = if a.mag.hi <= 3.0 && self.chance(1, 2) {
                    Expr::new(format!("exp({})", a.text), Mag::exp(a.mag), fixed, false)
                } else {
                    Expr::new(
                        format!("exp(clamp({}, -20, 20))", a.text),
                        Mag::exp_clamped(a.mag, 20.0),
                        fixed,
                        false,
                    )
                };
                e.of(&[&a])
            }
            11 if !exact_only => {
                let e = if a.mag.is_exact() && self.chance(1, 2) {
                    Expr::new(
                        format!("log({})", a.text),
                        Mag::log(a.mag, false),
                        fixed,
                        true,
                    )
                } else {
                    Expr::new(
                        format!("log(abs({}) + 1)", a.text),
                        Mag::log(a.mag, true),
                        fixed,
                        true,
                    )
                };
                e.of(&[&a])
            }
            12 if !exact_only => {
                let text = if a.mag.is_exact() && self.chance(1, 2) {
                    format!("sqrt({})", a.text)
                } else {
                    format!("sqrt(abs({}))", a.text)
                };
                Expr::new(text, Mag::sqrt(a.mag), fixed, zero).of(&[&a])
            }
            13 => self.power(scope, a.clone(), exact_only),
            14 if !exact_only => {
                // Odd, increasing and bounded, |f(a)| ≥ min(|a|, 1) / 2, slope ≤ 2/√π.
                let f = ["tanh", "atan", "erf"][self.pick(3)];
                Expr::new(
                    format!("{f}({})", a.text),
                    Mag::bounded(a.mag, 1.0),
                    fixed,
                    true,
                )
                .of(&[&a])
            }
            15 if !exact_only => {
                // Slope ≤ 1 on a range where each stays clear of 0: sin on [-1.5, 1.5]
                // (|sin a| ≥ |a| / 2), cos there (≥ 0.07), sigmoid and softplus on
                // [-20, 20] (≥ 2^-29).
                let (f, hi) = [
                    ("sin", "1.5"),
                    ("cos", "1.5"),
                    ("sigmoid", "20"),
                    ("softplus", "20"),
                ][self.pick(4)];
                let mag = match f {
                    "sin" => Mag::bounded(a.mag, 1.0),
                    "cos" => Mag {
                        lo: -4.0,
                        ..Mag::bounded(a.mag, 1.0)
                    },
                    "sigmoid" => Mag {
                        lo: -30.0,
                        ..Mag::bounded(a.mag, 1.0)
                    },
                    _ => Mag {
                        lo: -30.0,
                        ..Mag::bounded(a.mag, 5.0)
                    },
                };
                Expr::new(
                    format!("{f}(clamp({}, -{hi}, {hi}))", a.text),
                    mag,
                    fixed,
                    f == "sin",
                )
                .of(&[&a])
            }
            16 if !exact_only => {
                // log1p(|a|) ≥ |a| / 2 below 1; slope ≤ 1.
                let log = Mag::log(a.mag, true);
                let mag = Mag {
                    lo: a.mag.lo.min(0.0) - 1.0,
                    ..Mag::bounded(a.mag, log.hi)
                };
                Expr::new(format!("log1p(abs({}))", a.text), mag, fixed, true).of(&[&a])
            }
            _ => a.clone(),
        };
        if e.mag.fits() && (e.mag.is_exact() || !exact_only) {
            e
        } else {
            a
        }
    }

    /// `a / b`: the denominator is exact, or kept at least 1 away from 0.
    fn quotient(&mut self, scope: &[Index], depth: u32, a: Expr) -> Expr {
        let exact = self.chance(1, 2);
        let b = self.num(scope, depth - 1, exact);
        if folds(&a, &b) {
            return a;
        }
        let (fixed, zero) = (a.fixed && b.fixed, a.zero);
        let e = if b.mag.is_exact() {
            Expr::new(
                format!("({} / {})", a.text, b.text),
                Mag::div(a.mag, b.mag),
                fixed,
                zero,
            )
        } else {
            let shifted = Mag::add(b.mag, Mag::constant(1.0));
            let denominator = Mag { lo: 0.0, ..shifted };
            Expr::new(
                format!("({} / (abs({}) + 1))", a.text, b.text),
                Mag::div(a.mag, denominator),
                fixed,
                zero,
            )
        };
        e.of(&[&a, &b])
    }

    /// `a ^ 2` (exact: computed as `a * a`), `a ^ c`, or a power of two reads.
    fn power(&mut self, scope: &[Index], a: Expr, exact_only: bool) -> Expr {
        if exact_only || !a.mag.is_exact() || self.chance(1, 3) {
            let text = format!("({}) ^ 2", a.text);
            return Expr::new(text, Mag::mul(a.mag, a.mag), a.fixed, a.zero).of(&[&a]);
        }
        if self.chance(1, 2) || !open::POW_SPECIALS {
            let (c, hi) = [
                ("3", 2.0),
                ("-1", 0.0),
                ("0.5", 0.0),
                ("-0.5", 0.0),
                ("1.5", 1.0),
            ][self.pick(5)];
            if open::POW_SPECIALS {
                let text = format!("({}) ^ {c}", a.text);
                return Expr::new(text, Mag::pow(a.mag, hi), a.fixed, true).of(&[&a]);
            }
            let base = Mag {
                lo: 0.0,
                ..Mag::add(a.mag, Mag::constant(1.0))
            };
            let text = format!("(abs({}) + 1) ^ {c}", a.text);
            return Expr::new(text, Mag::pow(base, hi), a.fixed, false).of(&[&a]);
        }
        // Both operands data or constants, whose magnitudes are small: specials on
        // either side (0 ^ -0.5, 1 ^ NaN, (-1) ^ inf, ...).
        let b = self.leaf(scope, true);
        let base = self.leaf(scope, true);
        let reach = b.mag.hi.max(0.0);
        Expr::new(
            format!("({}) ^ ({})", base.text, b.text),
            Mag::pow(base.mag, reach),
            base.fixed && b.fixed,
            true,
        )
        .of(&[&base, &b])
    }

    /// A reduction over a new binder.
    fn reduction(&mut self, scope: &[Index], depth: u32, exact_only: bool) -> Expr {
        let kind = [Kind::Row, Kind::Col, Kind::Col, Kind::Gather][self.pick(4)];
        let index = self.binder(scope, kind);
        let mut inner = scope.to_vec();
        inner.push(index.clone());
        let body = self.num(&inner, depth - 1, exact_only);
        let binding = self.binding(&index, &body.reads);
        // All index ranges here are at most 8 (2^3).
        // (The top-k ones with their count, a literal or a dimension expression: the
        // sum of some of the values is bounded as their sum is, and their mean as their
        // mean is.)
        let reductions: &[(&str, fn(Mag) -> Mag)] = &[
            ("sum", |m| Mag::sum(m, 3.0)),
            ("max", |m| m),
            ("min", |m| m),
            ("median", Mag::median),
            ("mean", |m| Mag::mean(m, 3.0)),
            ("norm", |m| Mag::norm(m, 3.0)),
            ("sum_top(2, ", |m| Mag::sum(m, 3.0)),
            ("sum_top(M + 1, ", |m| Mag::sum(m, 3.0)),
            ("mean_top(3, ", |m| Mag::mean(m, 3.0)),
        ];
        let choices = if exact_only { 4 } else { reductions.len() };
        let mut choice = self.pick(choices);
        // A mean of no values is NaN, which the kernel may fold (see `open`).
        if kind == Kind::Gather
            && matches!(reductions[choice].0, "mean" | "mean_top(3, ")
            && !open::FOLDED_SPECIALS
        {
            choice = 5;
        }
        let (f, mag) = reductions[choice];
        let f = if f.ends_with(' ') {
            f.to_string()
        } else {
            format!("{f}(")
        };
        // Over a gather's range, which may be empty (S = 0, a literal of the
        // specialised kernel), the kernel may know the value whatever the body: a `sum`
        // or `norm` of nothing is 0.
        let mut e = Expr::new(
            format!("{f}{binding}: {})", body.text),
            mag(body.mag),
            body.fixed || kind == Kind::Gather,
            true,
        );
        e.data = body.data;
        e.reads = body
            .reads
            .into_iter()
            .filter(|n| *n != index.name)
            .collect();
        e
    }

    /// A truth value over `scope`. Its numbers are exact, so that both back ends take
    /// the same branch.
    pub fn cond(&mut self, scope: &[Index], depth: u32) -> Cond {
        if depth == 0 || self.chance(1, 3) {
            return self.comparison(scope, depth);
        }
        match self.pick(6) {
            0 => {
                let a = self.cond(scope, depth - 1);
                Cond {
                    text: format!("!({})", a.text),
                    reads: a.reads,
                    fixed: a.fixed,
                }
            }
            1 | 2 => {
                let op = ["&&", "||"][self.pick(2)];
                let a = self.cond(scope, depth - 1);
                let b = self.cond(scope, depth - 1);
                Cond {
                    text: format!("({} {op} {})", a.text, b.text),
                    reads: [a.reads, b.reads].concat(),
                    // One known side may decide it.
                    fixed: a.fixed || b.fixed,
                }
            }
            3 => {
                let kind = [Kind::Row, Kind::Col, Kind::Gather][self.pick(3)];
                let index = self.binder(scope, kind);
                let mut inner = scope.to_vec();
                inner.push(index.clone());
                let body = self.cond(&inner, depth - 1);
                let binding = self.binding(&index, &body.reads);
                let f = ["all", "any"][self.pick(2)];
                Cond {
                    text: format!("{f}({binding}: {})", body.text),
                    reads: body
                        .reads
                        .into_iter()
                        .filter(|n| *n != index.name)
                        .collect(),
                    fixed: body.fixed,
                }
            }
            4 if !self.in_select || open::ENUM_SELECT => {
                let value = ["\"p\"", "\"q\""][self.pick(2)];
                let op = ["==", "!="][self.pick(2)];
                Cond {
                    text: format!("{} {op} {value}", self.param("mode")),
                    reads: vec![],
                    fixed: true,
                }
            }
            _ => self.comparison(scope, depth),
        }
    }

    /// `a < b` (or another comparison) of exact numbers, or `isnan(a)` of any (NaN
    /// arises only from specials, never from rounding: no value overflows).
    fn comparison(&mut self, scope: &[Index], depth: u32) -> Cond {
        if self.chance(1, 4) {
            let a = self.num(scope, depth, false);
            return Cond {
                text: format!("isnan({})", a.text),
                reads: a.reads,
                fixed: a.fixed,
            };
        }
        let a = self.num(scope, depth, true);
        let b = self.num(scope, depth, true);
        let op = ["<", "<=", "==", "!=", ">", ">="][self.pick(6)];
        Cond {
            text: format!("{} {op} {}", a.text, b.text),
            reads: [a.reads, b.reads].concat(),
            fixed: a.fixed && b.fixed,
        }
    }
}

#[cfg(test)]
mod tests {
    /// A param's default is one of the constants f32 holds exactly: every one but 0.1.
    #[test]
    fn param_defaults_are_exact_constants() {
        let exact = super::exact_constants();
        assert_eq!(exact.len(), super::CONSTANTS.len() - 1);
        assert!(!exact.contains(&"0.1") && exact.contains(&"(-0)") && exact.contains(&"0.25"));
    }
}
