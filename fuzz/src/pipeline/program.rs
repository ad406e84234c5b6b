//! Well-typed `.loss` programs from the fuzzer's bytes. Every loss reads the same inputs
//! (`x`, `y : [N, M]`, `z : [N]`, `m : [N] optional`) and declares its own params (`a0`,
//! `e0 : [M]`, `g0 : index[S]`, `mode0 : "p" | "q"` for loss 0); its lets, stages and
//! expressions are drawn from the bytes. What it covers: lets used in several places
//! (plain, per row, per element), comparisons of reduced values, `select` with
//! reductions in its branches, enum params, gathers (in taken and untaken branches),
//! offsets (`x[i + 1, j]`, which make the domain empty when N = 1), every reduction
//! (`sum_top` and `mean_top` too), masks, rectify, empty-reduction values, weighted means
//! (`reduce mean by`), weights, and factories with settings and annealed terms.
//!
//! Each expression comes with its [`Mag`]; the generator writes only what keeps every
//! value normal and every discontinuity exact (see [`super::mag`]).

use arbitrary::Unstructured;

use super::expr::{Expr, open};
use super::mag::Mag;

/// What an index variable runs over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    /// The rows of `x`, `y`, `z`, `m`: N.
    Row,
    /// The columns of `x`, `y`, `e`: M.
    Col,
    /// The entries of the gather param `g`: S.
    Gather,
}

/// An index variable in scope.
#[derive(Clone, Debug)]
pub(super) struct Index {
    pub name: String,
    pub kind: Kind,
    /// A domain index, whose range is inferred: it may be read with an offset.
    pub domain: bool,
}

/// A `let` the loss declares so far.
#[derive(Clone, Debug)]
pub(super) struct Let {
    pub name: String,
    /// Its parameters' kinds: none for a plain let (which then reads `i` and `j` where
    /// it is used), else one per parameter.
    pub params: Vec<Kind>,
    /// Its body (what a use stands for, but for the text).
    pub body: Expr,
}

/// What one loss's generator knows.
pub(super) struct Gen<'u, 'b> {
    u: &'u mut Unstructured<'b>,
    /// The suffix of this loss's param names.
    suffix: usize,
    pub lets: Vec<Let>,
    /// Binders named so far (for fresh names).
    fresh: usize,
    /// Whether the optional input `m` may be read (in `remove_nans` only).
    pub in_mask: bool,
    /// Whether a `select`'s condition is being generated.
    pub in_select: bool,
}

/// One generated loss: its text and the magnitudes of its loss and weight.
pub struct GeneratedLoss {
    pub name: String,
    pub text: String,
    pub loss: Mag,
    pub weight: Mag,
}

impl Gen<'_, '_> {
    /// A number in 0..n (0 once the bytes run out).
    pub(super) fn pick(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.u.int_in_range(0..=n - 1).unwrap_or(0)
    }

    /// True with probability `num / den` (always once the bytes run out).
    pub(super) fn chance(&mut self, num: u32, den: u32) -> bool {
        self.u.ratio(num, den).unwrap_or(true)
    }

    pub(super) fn param(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    /// An index of `kind` in scope, if any.
    pub(super) fn index_of(&mut self, scope: &[Index], kind: Kind) -> Option<Index> {
        let of_kind: Vec<&Index> = scope.iter().filter(|i| i.kind == kind).collect();
        if of_kind.is_empty() {
            return None;
        }
        let i = self.pick(of_kind.len());
        Some(of_kind[i].clone())
    }

    /// A fresh binder of `kind`: `i` or `j` when free (so that plain lets can read them),
    /// else a new name.
    pub(super) fn binder(&mut self, scope: &[Index], kind: Kind) -> Index {
        let free = |n: &str| !scope.iter().any(|i| i.name == n);
        let name = match kind {
            Kind::Row if free("i") => "i".to_string(),
            Kind::Col if free("j") => "j".to_string(),
            _ => {
                self.fresh += 1;
                let prefix = match kind {
                    Kind::Row => "k",
                    Kind::Col => "c",
                    Kind::Gather => "s",
                };
                format!("{prefix}{}", self.fresh)
            }
        };
        Index {
            name,
            kind,
            domain: false,
        }
    }

    /// `name in 0..D`, or just `name` when `reads` (its scope's) can infer its range
    /// (and the bytes say so).
    pub(super) fn binding(&mut self, index: &Index, reads: &[String]) -> String {
        let inferable = reads.iter().any(|n| *n == index.name);
        if inferable && self.chance(2, 3) {
            return index.name.clone();
        }
        let dim = match index.kind {
            Kind::Row => "N",
            Kind::Col => "M",
            Kind::Gather => "S",
        };
        format!("{} in 0..{dim}", index.name)
    }

    /// The body of a loss, with its lets and stages.
    fn loss(&mut self, name: &str) -> GeneratedLoss {
        let mut text = format!(
            "loss {name} {{\n    input x : [N, M]\n    input y : [N, M]\n    input z : [N]\n    \
             input m : [N] optional\n    input xf : [N * M]\n"
        );
        let exact = super::expr::exact_constants();
        let default = exact[self.pick(exact.len())];
        text += &format!("    param {} = {default}\n", self.param("a"));
        let default = exact[self.pick(exact.len())];
        text += &format!("    param {} : [M] = {default}\n", self.param("e"));
        let gather_default = ["", " = 0..M", " = [0]", " = 0..N"][self.pick(4)];
        text += &format!("    param {} : index[S]{gather_default}\n", self.param("g"));
        let mode_default = ["", " = \"p\"", " = \"q\""][self.pick(3)];
        text += &format!(
            "    param {} : \"p\" | \"q\"{mode_default}\n",
            self.param("mode")
        );
        let row = |name: &str| Index {
            name: name.to_string(),
            kind: Kind::Row,
            domain: false,
        };
        let col = |name: &str| Index {
            name: name.to_string(),
            kind: Kind::Col,
            domain: false,
        };
        for l in 0..self.pick(4) {
            let (params, scope): (Vec<Kind>, Vec<Index>) = match self.pick(3) {
                0 => (vec![], vec![row("i"), col("j")]),
                1 => (vec![Kind::Row], vec![row("i")]),
                _ => (vec![Kind::Row, Kind::Col], vec![row("i"), col("j")]),
            };
            let exact = self.chance(1, 2);
            let body = self.num(&scope, 3, exact);
            let let_name = format!("l{l}");
            let head = match params.len() {
                0 => let_name.clone(),
                1 => format!("{let_name}[i]"),
                _ => format!("{let_name}[i, j]"),
            };
            text += &format!("    let {head} = {}\n", body.text);
            self.lets.push(Let {
                name: let_name,
                params,
                body,
            });
        }
        // The domain: (i, j) or (i); every domain index is read alone somewhere, so
        // that its range is inferred.
        let by_element = self.chance(1, 2);
        let mut domain = vec![Index {
            name: "i".into(),
            kind: Kind::Row,
            domain: true,
        }];
        if by_element {
            domain.push(Index {
                name: "j".into(),
                kind: Kind::Col,
                domain: true,
            });
        }
        let body = self.num(&domain, 4, false);
        let mut value = body.mag;
        let foldable_zero = body.foldable_zero();
        let (anchor, anchor_mag, anchor_atoms): (_, _, &[&str]) = match (by_element, self.pick(3)) {
            (true, 0) => (
                "(x[i + 1, j] - x[i, j])",
                Mag::exact(-2.0, 4.0),
                &["x[i + 1, j]", "x[i, j]"],
            ),
            (true, _) => ("x[i, j]", Mag::exact(-2.0, 3.0), &["x[i, j]"]),
            (false, 0) => (
                "(z[i + 1] - z[i])",
                Mag::exact(-2.0, 4.0),
                &["z[i + 1]", "z[i]"],
            ),
            (false, _) => ("z[i]", Mag::exact(-2.0, 3.0), &["z[i]"]),
        };
        let mut atoms = body.atoms.clone();
        // Issue 8 item 4: a body reading the anchor's values is not added to it.
        let shared =
            anchor_atoms.iter().any(|a| atoms.iter().any(|b| b == a)) && !open::FOLDED_SPECIALS;
        atoms.extend(anchor_atoms.iter().map(|a| a.to_string()));
        let body = body.text;
        let combined = match self.pick(3) {
            0 if !shared => (format!("{body} + {anchor}"), Mag::add(value, anchor_mag)),
            1 if !foldable_zero || open::FOLDED_SPECIALS => {
                (format!("({body}) * {anchor}"), Mag::mul(value, anchor_mag))
            }
            _ => (format!("select(isnan({anchor}), {body}, {body})"), value),
        };
        if combined.1.fits() {
            text += &format!("    compute {}\n", combined.0);
            value = combined.1;
        } else {
            text += &format!("    compute select(isnan({anchor}), {body}, {body})\n");
        }
        let mut reads_optional = false;
        for _ in 0..self.pick(3) {
            let mode = ["drop", "zero"][self.pick(2)];
            self.in_mask = true;
            let c = self.cond(&domain, 2);
            self.in_mask = false;
            reads_optional |= c.text.contains("m[");
            text += &format!("    remove_nans {mode} where {}\n", c.text);
            if mode == "zero" {
                value = Mag::either(value, Mag::constant(0.0));
            }
        }
        if self.chance(1, 3) {
            let eps = self.num(&domain, 1, false);
            let rectified = Mag::add(value, eps.mag);
            // Issue 8 item 4: `value - eps` with a value in common folds ((c + x) - x
            // is c on the GPU, NaN for an infinite x).
            let shared = eps.atoms.iter().any(|a| atoms.contains(a)) && !open::FOLDED_SPECIALS;
            if rectified.fits() && !shared {
                text += &format!("    rectify {}\n", eps.text);
                value = rectified;
            }
        }
        let mean = self.chance(1, 2);
        let mut loss = if mean {
            Mag::mean(value, 6.0)
        } else {
            Mag::sum(value, 6.0)
        };
        let reduce = if mean { "mean" } else { "sum" };
        // A weighted mean, with exact weights 1 and 3 (so both back ends weigh alike):
        // like a mean over up to three times the elements. Not beside a mask that reads
        // the optional input, which `by` refuses.
        if mean && !reads_optional && self.chance(1, 4) {
            let c = self.cond(&domain, 1);
            text += &format!("    reduce mean by select({}, 1, 3)\n", c.text);
            loss = Mag::mean(value, 8.0);
        } else if self.chance(1, 3) {
            let empty = self.num(&[], 1, false);
            text += &format!("    reduce {reduce} (empty: {})\n", empty.text);
            loss = Mag::either(loss, empty.mag);
        } else {
            text += &format!("    reduce {reduce}\n");
        }
        let mut weight = Mag::constant(1.0);
        if self.chance(2, 3) {
            let w = self.num(&[], 2, false);
            if !w.foldable_zero() || open::FOLDED_SPECIALS {
                text += &format!("    weight {}\n", w.text);
                weight = w.mag;
            }
        }
        text += "}\n";
        GeneratedLoss {
            name: name.to_string(),
            text,
            loss,
            weight,
        }
    }
}

/// One or two losses; with two, or by chance with one, a factory `fz` over them with
/// settings and annealed terms.
pub struct GeneratedProgram {
    pub losses: Vec<GeneratedLoss>,
    /// The factory's text, if any.
    pub factory: Option<String>,
}

impl GeneratedProgram {
    /// The whole `.loss` file.
    pub fn text(&self) -> String {
        let mut t: String = self.losses.iter().map(|l| l.text.as_str()).collect();
        if let Some(f) = &self.factory {
            t += f;
        }
        t
    }
}

/// A program from the bytes.
pub fn program(u: &mut Unstructured) -> GeneratedProgram {
    let count = 1 + u.int_in_range(0..=1u8).unwrap_or(0) as usize;
    let mut losses = Vec::new();
    for n in 0..count {
        let mut g = Gen {
            u,
            suffix: n,
            lets: vec![],
            fresh: 0,
            in_mask: false,
            in_select: false,
        };
        losses.push(g.loss(&format!("f{n}")));
    }
    let factory = (count == 2 || u.ratio(1, 2).unwrap_or(false)).then(|| {
        let mut f = "factory fz {\n".to_string();
        for n in 0..count {
            let setting = match u.int_in_range(0..=3u8).unwrap_or(0) {
                1 => format!(" {{ a{n} = 2 }}"),
                2 => format!(" {{ mode{n} = \"q\", e{n} = 0.5 }}"),
                _ => String::new(),
            };
            let annealed = if u.ratio(1, 2).unwrap_or(false) {
                " annealed"
            } else {
                ""
            };
            f += &format!("    f{n}{setting}{annealed}\n");
        }
        f + "}\n"
    });
    GeneratedProgram { losses, factory }
}
