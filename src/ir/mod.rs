//! The IR: one petgraph graph per loss, in index notation.
//!
//! Nodes are tensor operations; an edge runs from an operand to its user and carries the
//! operand's slot. Every node knows its type, its free index variables and its source
//! span; each index variable knows its symbolic range (a [`Poly`] interval over the
//! dimension symbols), so a node's shape is the ranges of its free indices. Passes live in
//! [`passes`], each with one job; [`dot`] prints the graph.

pub mod dot;
pub mod ids;
pub mod passes;
pub mod poly;
pub mod scalar;
pub mod sites;
pub mod special;
pub mod verify;

use std::fmt;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::diagnostics::Span;
pub use ids::{IndexId, InputId, MaskId, ParamId, TiSlice, TiVec};
pub use poly::{DimId, Poly};

/// The graph type.
pub type Graph = StableGraph<Node, u8>;

/// A value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Ty {
    /// f32.
    Num,
    /// A truth value.
    Bool,
}

/// A dimension symbol (`B`, `K`, ...).
#[derive(Clone, Debug)]
pub struct DimSym {
    /// Its name.
    pub name: String,
    /// Where it first appeared.
    pub span: Span,
}

/// The number of values of an inclusive index range `(lo, hi)` as bound to sizes (0 when
/// `hi < lo`).
pub fn extent((lo, hi): (i64, i64)) -> i64 {
    if hi < lo {
        0
    } else {
        hi.saturating_sub(lo).saturating_add(1)
    }
}

/// An index variable: a free index of the loss's domain, or one bound by a reduction.
#[derive(Clone, Debug)]
pub struct IndexVar {
    /// Its name in the source.
    pub name: String,
    /// Where it was bound (or first used, for a domain index).
    pub span: Span,
    /// An explicit range `lo..hi` (hi exclusive) from the source.
    pub explicit: Option<(Poly, Poly)>,
    /// The inferred inclusive range `[lo, hi]`, filled in by range inference.
    pub range: Option<(Poly, Poly)>,
}

/// One term of an index expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IndexTerm {
    /// An index variable.
    Var(IndexId),
    /// A gather: the value of an `index` param or an `int` input at an index.
    Gather(Tensor, Vec<IndexExpr>),
}

/// An affine index expression: `Σ coeff · term + offset`, where the offset and the
/// coefficients may mention dimension symbols (`x[B - 1 - t]`, `x[b, l * K + k]` for a
/// `[B, L * K]` array viewed as `[B, L, K]`). Sema allows a coefficient with symbols only
/// on an index variable, never on a gather, so every symbolic product is bounded by the
/// host's subscript check before it is computed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct IndexExpr {
    /// Terms with their non-zero coefficients.
    pub terms: Vec<(Poly, IndexTerm)>,
    /// The offset.
    pub offset: Poly,
}

impl IndexExpr {
    /// The variable `v`.
    pub fn var(v: IndexId) -> IndexExpr {
        IndexExpr {
            terms: vec![(Poly::constant(1), IndexTerm::Var(v))],
            offset: Poly::default(),
        }
    }

    /// A gather: the value of `t` at `idx`.
    pub fn gather(t: Tensor, idx: Vec<IndexExpr>) -> IndexExpr {
        IndexExpr {
            terms: vec![(Poly::constant(1), IndexTerm::Gather(t, idx))],
            offset: Poly::default(),
        }
    }

    /// A symbolic constant.
    pub fn poly(p: Poly) -> IndexExpr {
        IndexExpr {
            terms: vec![],
            offset: p,
        }
    }

    /// `self + k · other`, saturating like [`Poly`]'s arithmetic (sema refuses the
    /// coefficients that come near the ends of `i64`, so saturation never shows).
    pub fn add_scaled(&self, other: &IndexExpr, k: i64) -> IndexExpr {
        self.add_times(other, &Poly::constant(k))
    }

    /// `self + k · other` for a symbolic `k`.
    pub fn add_times(&self, other: &IndexExpr, k: &Poly) -> IndexExpr {
        let mut out = self.clone();
        for (c, t) in &other.terms {
            let kc = c.mul(k);
            match out.terms.iter_mut().find(|(_, u)| u == t) {
                Some((c0, _)) => *c0 = c0.add(&kc),
                None => out.terms.push((kc, t.clone())),
            }
        }
        out.terms.retain(|(c, _)| *c != Poly::default());
        out.offset = out.offset.add(&other.offset.mul(k));
        out
    }

    /// `k · self`
    pub fn scale(&self, k: i64) -> IndexExpr {
        IndexExpr::default().add_scaled(self, k)
    }

    /// `k · self` for a symbolic `k`.
    pub fn times(&self, k: &Poly) -> IndexExpr {
        IndexExpr::default().add_times(self, k)
    }

    /// The largest magnitude among the numbers of its coefficients and its offset (a
    /// gather's own subscripts not included), saturating.
    pub fn largest_coefficient(&self) -> i64 {
        let terms = self.terms.iter().flat_map(|(c, _)| c.terms.values());
        let offset = self.offset.terms.values();
        terms
            .chain(offset)
            .map(|c| c.saturating_abs())
            .max()
            .unwrap_or(0)
    }

    /// It with each variable of `map` replaced by its expression, inside gathers too.
    pub fn substitute(&self, map: &[(IndexId, IndexExpr)]) -> IndexExpr {
        let mut out = IndexExpr::poly(self.offset.clone());
        for (c, t) in &self.terms {
            let term = match t {
                IndexTerm::Var(v) => match map.iter().find(|(w, _)| w == v) {
                    Some((_, x)) => x.clone(),
                    None => IndexExpr::var(*v),
                },
                IndexTerm::Gather(p, idx) => {
                    IndexExpr::gather(*p, idx.iter().map(|i| i.substitute(map)).collect())
                }
            };
            out = out.add_times(&term, c);
        }
        out
    }

    /// Every index variable it mentions, gathers' indices included.
    pub fn vars(&self, out: &mut Vec<IndexId>) {
        for (_, t) in &self.terms {
            match t {
                IndexTerm::Var(v) => out.push(*v),
                IndexTerm::Gather(_, idx) => idx.iter().for_each(|e| e.vars(out)),
            }
        }
    }
}

/// Where a read takes its values from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Tensor {
    /// An `input`.
    Input(InputId),
    /// A `param`.
    Param(ParamId),
}

/// Element-wise functions of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum UnaryFn {
    /// `-x`
    Neg,
    /// `!b`
    Not,
    /// `exp`
    Exp,
    /// `log` (natural)
    Log,
    /// `sqrt`
    Sqrt,
    /// `abs`
    Abs,
    /// `relu`
    Relu,
    /// `isnan` (Num → Bool)
    IsNan,
    /// `log1p`: log(1 + x), accurate near 0
    Log1p,
    /// `expm1`: exp(x) - 1, accurate near 0
    Expm1,
    /// `softplus`: torch's with beta 1 and threshold 20 (x itself above 20)
    Softplus,
    /// `sigmoid`: 1 / (1 + exp(-x))
    Sigmoid,
    /// `logsigmoid`: log(sigmoid(x)), stable for large |x|
    LogSigmoid,
    /// `tanh`
    Tanh,
    /// `sin`
    Sin,
    /// `cos`
    Cos,
    /// `atan`
    Atan,
    /// `erf`, the error function
    Erf,
    /// `lgamma`: log |Γ(x)|
    Lgamma,
    /// `digamma`: Γ'(x) / Γ(x)
    Digamma,
    /// trigamma, the derivative of digamma: not in the language, only in gradients
    Trigamma,
    /// `sign`: -1, 0 or 1 (0 for NaN, as torch.sign)
    Sign,
}

impl UnaryFn {
    /// The element-wise functions of one number that source code calls by name, with
    /// their names.
    pub const NAMED: [(&'static str, UnaryFn); 19] = [
        ("exp", UnaryFn::Exp),
        ("log", UnaryFn::Log),
        ("sqrt", UnaryFn::Sqrt),
        ("abs", UnaryFn::Abs),
        ("relu", UnaryFn::Relu),
        ("isnan", UnaryFn::IsNan),
        ("log1p", UnaryFn::Log1p),
        ("expm1", UnaryFn::Expm1),
        ("softplus", UnaryFn::Softplus),
        ("sigmoid", UnaryFn::Sigmoid),
        ("logsigmoid", UnaryFn::LogSigmoid),
        ("tanh", UnaryFn::Tanh),
        ("sin", UnaryFn::Sin),
        ("cos", UnaryFn::Cos),
        ("atan", UnaryFn::Atan),
        ("erf", UnaryFn::Erf),
        ("lgamma", UnaryFn::Lgamma),
        ("digamma", UnaryFn::Digamma),
        ("sign", UnaryFn::Sign),
    ];

    /// The function source code calls `name`.
    pub fn from_name(name: &str) -> Option<UnaryFn> {
        Self::NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }
}

/// Element-wise functions of two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BinaryFn {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `^`
    Pow,
    /// `min(a, b)`, NaN-propagating
    Min,
    /// `max(a, b)`, NaN-propagating
    Max,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `atan2(y, x)`: the angle of (x, y), as torch.atan2
    Atan2,
    /// `xlogy(x, y)`: x · log(y), 0 where x = 0 unless y is NaN (torch.special.xlogy)
    Xlogy,
}

impl BinaryFn {
    /// The element-wise functions of two numbers that source code calls by name
    /// (`min(a, b)`), with their names.
    pub const NAMED: [(&'static str, BinaryFn); 4] = [
        ("min", BinaryFn::Min),
        ("max", BinaryFn::Max),
        ("atan2", BinaryFn::Atan2),
        ("xlogy", BinaryFn::Xlogy),
    ];

    /// The function of two numbers source code calls `name`.
    pub fn from_name(name: &str) -> Option<BinaryFn> {
        Self::NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    /// Whether it gives a number (arithmetic, `min`, `max`) rather than a truth value.
    pub fn gives_number(self) -> bool {
        matches!(
            self,
            BinaryFn::Add
                | BinaryFn::Sub
                | BinaryFn::Mul
                | BinaryFn::Div
                | BinaryFn::Pow
                | BinaryFn::Min
                | BinaryFn::Max
                | BinaryFn::Atan2
                | BinaryFn::Xlogy
        )
    }
}

/// Reductions that bind indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ReduceFn {
    /// Σ
    Sum,
    /// Σ / n (NaN when empty)
    Mean,
    /// maximum (NaN-propagating; -inf when empty)
    Max,
    /// minimum (NaN-propagating; +inf when empty)
    Min,
    /// every element true (true when empty)
    All,
    /// some element true (false when empty)
    Any,
    /// √Σx² (L2 norm)
    Norm,
    /// the median: the middle value, or the two middle values combined by
    /// `scalar::median_of` (NaN when empty or any NaN)
    Median,
    /// Π (1 when empty)
    Prod,
    /// The k-th largest value, k its second operand (a closed number, whole and ≥ 0,
    /// checked when bound) clamped to 1..=count; NaN counts as the largest value, ties
    /// as separate values; -inf when empty. Not in the language: `sum_top` and
    /// `mean_top` are lowered to it (sema), and it is found without sorting, by a
    /// bisection on the values' order-preserving bit patterns.
    NthLargest,
}

impl ReduceFn {
    /// Every reduction with its name in source.
    pub const NAMES: [(&'static str, ReduceFn); 9] = [
        ("sum", ReduceFn::Sum),
        ("mean", ReduceFn::Mean),
        ("max", ReduceFn::Max),
        ("min", ReduceFn::Min),
        ("all", ReduceFn::All),
        ("any", ReduceFn::Any),
        ("norm", ReduceFn::Norm),
        ("median", ReduceFn::Median),
        ("prod", ReduceFn::Prod),
    ];

    /// The reduction called `name` in source.
    pub fn from_name(name: &str) -> Option<ReduceFn> {
        ReduceFn::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
    }

    /// Its name in source (`nth_largest` for the one no source names).
    pub fn name(self) -> &'static str {
        ReduceFn::NAMES
            .iter()
            .find(|(_, r)| *r == self)
            .map_or("nth_largest", |(n, _)| n)
    }
}

/// What a node computes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// An f32 constant (stored as bits, so that ops hash and compare exactly).
    Const(u32),
    /// A truth constant.
    BoolConst(bool),
    /// An element of an input or param.
    Read(Tensor, Vec<IndexExpr>),
    /// The value of an index expression, as a number (`h`, `W`, `t + 1`).
    IndexValue(IndexExpr),
    /// `param == "variant"` for an enum param.
    EnumIs(ParamId, String),
    /// One operand.
    Unary(UnaryFn),
    /// Two operands.
    Binary(BinaryFn),
    /// `select(cond, a, b)`: three operands.
    Select,
    /// `clamp(x, lo, hi)`: three operands, NaN-propagating.
    Clamp,
    /// A reduction over the given (bound) index variables: its body, and for
    /// [`ReduceFn::NthLargest`] a closed count.
    Reduce(ReduceFn, Vec<IndexId>),
    /// The operand evaluated with some index variables set to index expressions of
    /// others (`e` at `t := g - 1`): one operand. Only differentiation ([`crate::ad`])
    /// makes it, to take an adjoint at the indices an input's element was read from; the
    /// expressions are affine and gather no index.
    At(Vec<(IndexId, IndexExpr)>),
}

impl Op {
    /// An f32 constant.
    pub fn constant(v: f32) -> Op {
        Op::Const(v.to_bits())
    }
}

/// A node of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// Its type.
    pub ty: Ty,
    /// Its free index variables, sorted: the node is a tensor over their ranges.
    pub free: Vec<IndexId>,
    /// The source text it comes from.
    pub span: Span,
}

/// The largest magnitude of a whole number an `int` input or an `index` param holds:
/// every whole number up to it is exact in f32, the storage of every array.
pub const EXACT_INT_LIMIT: f64 = 16_777_216.0;

/// Whether `v` is a whole number that f32 holds exactly (|v| ≤ 2^24).
pub fn is_exact_int(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() <= EXACT_INT_LIMIT
}

/// A declared input.
#[derive(Clone, Debug)]
pub struct InputInfo {
    /// Its name.
    pub name: String,
    /// Its dimensions.
    pub shape: Vec<Poly>,
    /// Whether it holds whole numbers (`int[...]`): stored as f32 (every value within
    /// ±2^24, so exactly), usable in gathers, never differentiated.
    pub int: bool,
    /// Whether it may be absent.
    pub optional: bool,
    /// For an optional input with a default, the value of every element when it is
    /// absent: it is then bound as present, filled with it.
    pub default: Option<f32>,
    /// Where it was declared.
    pub span: Span,
}

/// The kind of a declared param.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    /// A scalar f32.
    Scalar,
    /// An f32 tensor; a scalar value broadcasts to it.
    Tensor(Vec<Poly>),
    /// An integer tensor for gathers.
    Index(Vec<Poly>),
    /// One of the listed strings.
    Enum(Vec<String>),
}

/// A param's value as written in source (a default or a factory setting).
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A number.
    Scalar(f64),
    /// A flat list of numbers.
    List(Vec<f64>),
    /// The integers `lo, ..., hi - 1`.
    Range(Poly, Poly),
    /// A string.
    Str(String),
}

/// The scalar param a backward loss ([`crate::ad::kernel`]) reads its forward loss's
/// count of counted elements from: a backward kernel takes it from the forward kernel's
/// results. No `.loss` file can declare it: a name holds no `.`.
pub const COUNT_PARAM: &str = "lc.count";

/// A declared param.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ParamKind,
    /// Its default.
    pub default: Option<ParamValue>,
    /// Where it was declared.
    pub span: Span,
}

/// Whether masked elements leave the mean (`drop`) or stay in it as zeros (`zero`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskMode {
    /// The element no longer counts in the reduction.
    Drop,
    /// The element counts, with value 0.
    Zero,
}

/// How the loss's domain is reduced to a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReduceMode {
    /// Arithmetic mean over the counted elements.
    Mean,
    /// Sum over the counted elements.
    Sum,
}

/// A `remove_nans` stage.
#[derive(Clone, Debug)]
pub struct Mask {
    /// `drop` or `zero`.
    pub mode: MaskMode,
    /// The condition (true = masked).
    pub cond: NodeIndex,
    /// Optional inputs the condition reads: when one is absent the stage is skipped.
    pub needs: Vec<InputId>,
    /// The stage's span.
    pub span: Span,
}

/// One loss, checked and lowered.
#[derive(Clone, Debug)]
pub struct LossIr {
    /// Its name.
    pub name: String,
    /// Its doc comment.
    pub doc: String,
    /// Its dimension symbols.
    pub dims: Vec<DimSym>,
    /// Its inputs.
    pub inputs: TiVec<InputId, InputInfo>,
    /// Its params.
    pub params: TiVec<ParamId, ParamInfo>,
    /// Every index variable.
    pub indices: TiVec<IndexId, IndexVar>,
    /// The domain: the free indices of `compute`, in order of first use.
    pub domain: Vec<IndexId>,
    /// The graph.
    pub graph: Graph,
    /// `compute`'s root.
    pub compute: NodeIndex,
    /// `remove_nans` stages.
    pub masks: TiVec<MaskId, Mask>,
    /// `rectify`'s epsilon.
    pub rectify: Option<NodeIndex>,
    /// `reduce`'s mode.
    pub reduce: ReduceMode,
    /// The value of a reduction over no element, if the loss declares one.
    pub empty: Option<NodeIndex>,
    /// `weight`'s root (a constant 1 when the loss declares none).
    pub weight: NodeIndex,
    /// The loss's span.
    pub span: Span,
    /// Where its source text came from, to turn spans into `file:line:col`.
    pub origin: Origin,
}

/// A source file's name and line starts, enough to locate any span of it.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// The file's name as given.
    pub file: String,
    /// Byte offset of the start of each line.
    pub line_starts: Vec<usize>,
}

impl Origin {
    /// The origin of a source text.
    pub fn new(file: &str, text: &str) -> Origin {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Origin {
            file: file.to_string(),
            line_starts,
        }
    }

    /// Where a span starts: file, line and column (1-based; columns in bytes).
    pub fn position(&self, span: Span) -> Location {
        let line = self
            .line_starts
            .partition_point(|s| *s <= span.start)
            .max(1);
        Location {
            file: self.file.clone(),
            line,
            column: span.start - self.line_starts[line - 1] + 1,
        }
    }

    /// `file:line:col` of a span's start.
    pub fn locate(&self, span: Span) -> String {
        self.position(span).to_string()
    }
}

/// A place in a source file, written `file:line:col`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file's name as given.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in bytes.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl LossIr {
    /// The roots: every node a stage names.
    pub fn roots(&self) -> Vec<NodeIndex> {
        let mut r = vec![self.compute, self.weight];
        r.extend(self.masks.iter().map(|m| m.cond));
        r.extend(self.rectify);
        r.extend(self.empty);
        r
    }

    /// The roots evaluated once per element of the domain: `compute`, every mask's
    /// condition, and `rectify` (not `weight` and `empty:`, evaluated once per loss).
    pub fn element_roots(&self) -> Vec<NodeIndex> {
        let mut r = vec![self.compute];
        r.extend(self.masks.iter().map(|m| m.cond));
        r.extend(self.rectify);
        r
    }

    /// Applies a node renaming (from CSE or folding) to every root.
    pub fn remap_roots(&mut self, f: &dyn Fn(NodeIndex) -> NodeIndex) {
        self.compute = f(self.compute);
        self.weight = f(self.weight);
        for m in &mut self.masks {
            m.cond = f(m.cond);
        }
        self.rectify = self.rectify.map(f);
        self.empty = self.empty.map(f);
    }

    /// The dimension symbols' names, for printing polynomials.
    pub fn dim_names(&self) -> Vec<String> {
        self.dims.iter().map(|d| d.name.clone()).collect()
    }

    /// An index expression in source-like form.
    pub fn show_index(&self, e: &IndexExpr) -> String {
        let names = self.dim_names();
        let mut parts = Vec::new();
        for (c, t) in &e.terms {
            let t = match t {
                IndexTerm::Var(v) => self.indices[*v].name.clone(),
                IndexTerm::Gather(t, idx) => {
                    format!("{}[{}]", self.tensor_name(*t), self.show_subscripts(idx))
                }
            };
            parts.push(match c.as_constant() {
                Some(1) => t,
                Some(c) => format!("{c}*{t}"),
                None if c.terms.len() == 1 => format!("{}*{t}", c.display(&names)),
                None => format!("({})*{t}", c.display(&names)),
            });
        }
        if !e.offset.terms.is_empty() || parts.is_empty() {
            parts.push(e.offset.display(&names).to_string());
        }
        parts.join(" + ").replace("+ -", "- ")
    }

    /// The name of an input or a param.
    pub fn tensor_name(&self, t: Tensor) -> &str {
        match t {
            Tensor::Input(i) => &self.inputs[i].name,
            Tensor::Param(p) => &self.params[p].name,
        }
    }

    /// The input or param called `name`.
    pub fn tensor_named(&self, name: &str) -> Option<Tensor> {
        let input = self.inputs.position(|i| i.name == name).map(Tensor::Input);
        input.or_else(|| self.params.position(|p| p.name == name).map(Tensor::Param))
    }

    /// A read's subscripts in source-like form, comma-separated (`b, 2*k + 1`).
    pub fn show_subscripts(&self, idx: &[IndexExpr]) -> String {
        idx.iter()
            .map(|i| self.show_index(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A node's operands in slot order.
pub fn operands(g: &Graph, n: NodeIndex) -> Vec<NodeIndex> {
    let mut e: Vec<(u8, NodeIndex)> = g
        .edges_directed(n, Direction::Incoming)
        .map(|e| (*e.weight(), e.source()))
        .collect();
    e.sort_unstable_by_key(|(slot, _)| *slot);
    e.into_iter().map(|(_, s)| s).collect()
}

/// The free indices of a node with op `op` over operands `args`: its operands' and its
/// subscripts', less those a reduction binds or an `at` sets (plus the variables of the
/// expressions an `at` sets them to), sorted. Sema and differentiation build nodes with
/// it; the verifier checks them with its own account.
pub fn free_indices(g: &Graph, op: &Op, args: &[NodeIndex]) -> Vec<IndexId> {
    let mut free: Vec<IndexId> = args.iter().flat_map(|a| g[*a].free.clone()).collect();
    match op {
        Op::Read(_, idx) => idx.iter().for_each(|e| e.vars(&mut free)),
        Op::IndexValue(e) => e.vars(&mut free),
        Op::Reduce(_, bound) => free.retain(|v| !bound.contains(v)),
        Op::At(map) => {
            free.retain(|v| map.iter().all(|(w, _)| w != v));
            map.iter().for_each(|(_, e)| e.vars(&mut free));
        }
        _ => {}
    }
    free.sort_unstable();
    free.dedup();
    free
}

/// Removes `n`'s operand edges, for a pass that turns it into a leaf (a constant, a read)
/// in place, so that its users keep it.
pub fn detach_operands(g: &mut Graph, n: NodeIndex) {
    let incoming: Vec<_> = g
        .edges_directed(n, Direction::Incoming)
        .map(|e| e.id())
        .collect();
    for e in incoming {
        g.remove_edge(e);
    }
}

/// Adds a node with its operands.
pub fn add_node(g: &mut Graph, node: Node, args: &[NodeIndex]) -> NodeIndex {
    let n = g.add_node(node);
    for (slot, a) in args.iter().enumerate() {
        g.add_edge(*a, n, slot as u8);
    }
    n
}

/// One entry of a factory.
#[derive(Clone, Debug)]
pub struct FactoryTerm {
    /// The loss's name.
    pub loss: String,
    /// Param values set by the factory.
    pub settings: Vec<(String, ParamValue)>,
    /// Whether the anneal factor applies.
    pub annealed: bool,
}

impl FactoryTerm {
    /// The loss `loss` as it is: no settings, not annealed (`--losses`, one kernel per
    /// loss).
    pub fn plain(loss: impl Into<String>) -> FactoryTerm {
        FactoryTerm {
            loss: loss.into(),
            settings: vec![],
            annealed: false,
        }
    }
}

/// A checked factory.
#[derive(Clone, Debug)]
pub struct Factory {
    /// Its name.
    pub name: String,
    /// Its doc comment.
    pub doc: String,
    /// Its terms, in order.
    pub terms: Vec<FactoryTerm>,
}

/// Everything a set of `.loss` files defines.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// The losses.
    pub losses: Vec<LossIr>,
    /// The factories.
    pub factories: Vec<Factory>,
}

impl Program {
    /// The loss called `name`.
    pub fn loss(&self, name: &str) -> Option<&LossIr> {
        self.losses.iter().find(|l| l.name == name)
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Num => "number",
            Ty::Bool => "truth value",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Coefficients saturate, as `Poly`'s do, rather than overflow (a panic in a debug
    /// build, a wrapped coefficient in a release one).
    #[test]
    fn index_arithmetic_saturates() {
        let big = IndexExpr::var(IndexId::new(0)).scale(i64::MAX / 2);
        assert_eq!(
            big.scale(4).terms,
            vec![(Poly::constant(i64::MAX), IndexTerm::Var(IndexId::new(0)))]
        );
        assert_eq!(
            big.scale(-4).terms,
            vec![(Poly::constant(i64::MIN), IndexTerm::Var(IndexId::new(0)))]
        );
        let sum = big.scale(2).add_scaled(&big, 2);
        assert_eq!(
            sum.terms,
            vec![(Poly::constant(i64::MAX), IndexTerm::Var(IndexId::new(0)))]
        );
        assert_eq!(sum.largest_coefficient(), i64::MAX);
        assert_eq!(extent((i64::MIN, i64::MAX)), i64::MAX);
    }
}
