//! The typed syntax tree of a `.loss` file. Every node carries the byte span it came from,
//! so that every later diagnostic can point at the source.

use crate::diagnostics::Span;

/// A name with the span it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name as written.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// One parsed `.loss` file.
#[derive(Clone, Debug, Default)]
pub struct File {
    /// `loss` blocks, in source order.
    pub losses: Vec<LossDef>,
    /// `factory` blocks, in source order.
    pub factories: Vec<FactoryDef>,
}

/// A `loss NAME { ... }` block.
#[derive(Clone, Debug)]
pub struct LossDef {
    /// The loss's name.
    pub name: Ident,
    /// Its `///` doc comment, lines joined by newlines.
    pub doc: String,
    /// `input` declarations.
    pub inputs: Vec<InputDecl>,
    /// `param` declarations.
    pub params: Vec<ParamDecl>,
    /// `let` declarations.
    pub lets: Vec<LetDecl>,
    /// Pipeline stages, in source order.
    pub stages: Vec<Stage>,
    /// The whole block.
    pub span: Span,
}

/// `input NAME : [dims] (optional (= DEFAULT)?)?`
#[derive(Clone, Debug)]
pub struct InputDecl {
    /// The input's name.
    pub name: Ident,
    /// Its declared dimensions (dimension expressions).
    pub shape: Vec<Expr>,
    /// Whether it holds whole numbers (`int[...]`).
    pub int: bool,
    /// Whether the input may be absent.
    pub optional: bool,
    /// The value of every element when it is absent (`optional = 1`), a constant
    /// expression.
    pub default: Option<Expr>,
    /// The whole declaration.
    pub span: Span,
}

/// The declared type of a parameter.
#[derive(Clone, Debug)]
pub enum ParamType {
    /// A scalar (no type given).
    Scalar,
    /// An f32 tensor of the given dimensions; a scalar value broadcasts.
    Tensor(Vec<Expr>),
    /// An integer tensor used for gathers (`index[S]`).
    Index(Vec<Expr>),
    /// One of a fixed set of strings (`"none" | "mean"`).
    Enum(Vec<(String, Span)>),
}

/// `param NAME (: TYPE)? (= VALUE)?`
#[derive(Clone, Debug)]
pub struct ParamDecl {
    /// The parameter's name.
    pub name: Ident,
    /// Its declared type.
    pub ty: ParamType,
    /// Its default value, if any.
    pub default: Option<Value>,
    /// The whole declaration.
    pub span: Span,
}

/// `let NAME([indices])? = EXPR`
#[derive(Clone, Debug)]
pub struct LetDecl {
    /// The let's name.
    pub name: Ident,
    /// Index parameters of an indexed let (`let z[b, c] = ...`); `None` for a plain let.
    pub indices: Option<Vec<Ident>>,
    /// The defining expression.
    pub body: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// Whether masked elements leave the mean (`drop`) or stay in it as zeros (`zero`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskMode {
    /// The element no longer counts in the reduction.
    Drop,
    /// The element counts, with value 0.
    Zero,
}

/// How the loss's domain is reduced to a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReduceMode {
    /// Arithmetic mean over the counted elements.
    Mean,
    /// Sum over the counted elements.
    Sum,
}

/// One pipeline stage.
#[derive(Clone, Debug)]
pub enum Stage {
    /// `compute EXPR`
    Compute(Expr, Span),
    /// `remove_nans (drop|zero) where EXPR`
    Mask(MaskMode, Expr, Span),
    /// `rectify EXPR`
    Rectify(Expr, Span),
    /// `reduce (mean|sum) (by EXPR)? ((empty: EXPR))?`
    Reduce {
        /// `mean` or `sum`.
        mode: ReduceMode,
        /// A weighted mean's weight at each element (`by EXPR`).
        by: Option<Expr>,
        /// The value over no element (`(empty: EXPR)`).
        empty: Option<Expr>,
        /// The whole stage.
        span: Span,
    },
    /// `weight EXPR`
    Weight(Expr, Span),
}

impl Stage {
    /// The whole stage's span.
    pub fn span(&self) -> Span {
        match self {
            Stage::Compute(_, s)
            | Stage::Mask(_, _, s)
            | Stage::Rectify(_, s)
            | Stage::Reduce { span: s, .. }
            | Stage::Weight(_, s) => *s,
        }
    }
}

/// A `factory NAME { ... }` block.
#[derive(Clone, Debug)]
pub struct FactoryDef {
    /// The factory's name.
    pub name: Ident,
    /// Its doc comment.
    pub doc: String,
    /// Its entries, in order.
    pub entries: Vec<FactoryEntry>,
    /// The whole block.
    pub span: Span,
}

/// `LOSS { name = value, ... } annealed?`
#[derive(Clone, Debug)]
pub struct FactoryEntry {
    /// The loss this entry runs.
    pub loss: Ident,
    /// Parameter settings.
    pub settings: Vec<(Ident, Value)>,
    /// Whether the anneal factor applies to this term.
    pub annealed: bool,
}

/// A literal value (a default or a setting).
#[derive(Clone, Debug)]
pub enum Value {
    /// A constant expression.
    Expr(Expr),
    /// A string (an enum value).
    Str(String, Span),
    /// A list of constant expressions.
    List(Vec<Expr>, Span),
    /// `lo..hi`, the integers lo, lo+1, ..., hi-1.
    Range(Expr, Expr, Span),
}

impl Value {
    /// The value's span.
    pub fn span(&self) -> Span {
        match self {
            Value::Expr(e) => e.span,
            Value::Str(_, s) | Value::List(_, s) | Value::Range(_, _, s) => *s,
        }
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum BinOp {
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
}

impl BinOp {
    /// The operator as written in source.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `!x`
    Not,
}

/// A reduction binder: `c` or `c in lo..hi`.
#[derive(Clone, Debug)]
pub struct Binder {
    /// The bound index.
    pub name: Ident,
    /// An explicit range `lo..hi` (hi exclusive).
    pub range: Option<(Expr, Expr)>,
}

/// An expression with its span.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Clone, Debug)]
pub enum ExprKind {
    /// A number literal.
    Number(f64),
    /// A string literal (compared with enum params).
    Str(String),
    /// A bare name.
    Name(Ident),
    /// `name[i, j, ...]`
    Access(Ident, Vec<Expr>),
    /// A unary operation.
    Unary(UnOp, Box<Expr>),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `f(a, b, ...)`
    Call(Ident, Vec<Expr>),
    /// `f(i, j in lo..hi: body)`, or `f(count, i: body)` for `sum_top` and `mean_top`
    Reduction(Ident, Option<Box<Expr>>, Vec<Binder>, Box<Expr>),
}

impl Expr {
    /// Visit this expression and every sub-expression, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Number(_) | ExprKind::Str(_) | ExprKind::Name(_) => {}
            ExprKind::Access(_, args) | ExprKind::Call(_, args) => {
                args.iter().for_each(|a| a.walk(f))
            }
            ExprKind::Unary(_, e) => e.walk(f),
            ExprKind::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f)
            }
            ExprKind::Reduction(_, count, binders, body) => {
                if let Some(c) = count {
                    c.walk(f);
                }
                for b in binders {
                    if let Some((lo, hi)) = &b.range {
                        lo.walk(f);
                        hi.walk(f);
                    }
                }
                body.walk(f)
            }
        }
    }
}
