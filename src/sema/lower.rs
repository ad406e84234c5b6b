//! Name resolution and typing: one loss's AST → its IR graph.
//!
//! Names resolve, innermost first, to: indices bound by reductions (or by an indexed
//! `let`'s parameters), plain `let`s (expanded where they are used, so their index names
//! bind to whatever binds them there), params, inputs, dimension symbols, and finally
//! the loss's free (domain) indices, which are any other names used inside a subscript.

use std::collections::{HashMap, HashSet};

use petgraph::stable_graph::NodeIndex;

use crate::diagnostics::{Diagnostic, Span, closest};
use crate::ir::*;
use crate::syntax::ast::{self, BinOp, ExprKind, Ident, LossDef, ParamType, Stage, UnOp, Value};

/// Lowers one loss. Returns `None` (with diagnostics) when it has errors.
pub fn lower_loss(def: &LossDef, diags: &mut Vec<Diagnostic>) -> Option<LossIr> {
    let mut l = Lowerer::new(def);
    l.declarations();
    let ir = l.stages();
    let ok = !l.diags.iter().any(|d| d.is_error);
    diags.append(&mut l.diags);
    if ok { ir } else { None }
}

/// The longest chain of lets defined by lets that is expanded (each level is a stack
/// frame of the lowering).
const MAX_LET_DEPTH: usize = 200;

/// What a name in a declaration stands for.
#[derive(Clone, Copy)]
enum Decl {
    Input(usize),
    Param(usize),
    Let(usize),
    Dim(DimId),
}

struct Lowerer<'a> {
    def: &'a LossDef,
    diags: Vec<Diagnostic>,
    dims: Vec<DimSym>,
    inputs: Vec<InputInfo>,
    params: Vec<ParamInfo>,
    decls: HashMap<String, (Decl, Span)>,
    indices: Vec<IndexVar>,
    domain_by_name: HashMap<String, IndexId>,
    /// Names written inside a subscript anywhere in the loss: the candidates for
    /// domain indices.
    subscript_names: HashSet<String>,
    graph: Graph,
    /// `let`s being expanded, to report recursion instead of looping.
    expanding: Vec<usize>,
    /// Optional inputs read by the stage being lowered.
    optional_reads: Vec<(usize, Span)>,
    /// Plain lets already expanded in this stage, by (let, scope, context): a let used
    /// twice in one scope is lowered once (chains of lets stay linear, not exponential).
    let_memo: HashMap<(usize, Scope, Ctx), NodeIndex>,
}

/// The index variables in scope: `(name, value)`, innermost last.
type Scope = Vec<(String, IndexExpr)>;

/// Where an expression is lowered, which decides what free names may mean.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Ctx {
    /// `compute`, `remove_nans`, `rectify`: new names in subscripts are domain indices.
    Domain,
    /// `weight`, `empty:` and indexed-let bodies: no free indices.
    Closed,
}

type Lowered = Result<NodeIndex, ()>;

impl<'a> Lowerer<'a> {
    fn new(def: &'a LossDef) -> Lowerer<'a> {
        let mut subscript_names = HashSet::new();
        let mut collect = |e: &ast::Expr| {
            e.walk(&mut |x| {
                if let ExprKind::Access(_, args) = &x.kind {
                    for a in args {
                        a.walk(&mut |y| {
                            if let ExprKind::Name(n) = &y.kind {
                                subscript_names.insert(n.name.clone());
                            }
                        })
                    }
                }
            })
        };
        for s in &def.stages {
            match s {
                Stage::Compute(e, _) | Stage::Mask(_, e, _) | Stage::Rectify(e, _) => collect(e),
                _ => {}
            }
        }
        for l in &def.lets {
            collect(&l.body);
        }
        Lowerer {
            def,
            diags: vec![],
            dims: vec![],
            inputs: vec![],
            params: vec![],
            decls: HashMap::new(),
            indices: vec![],
            domain_by_name: HashMap::new(),
            subscript_names,
            graph: Graph::default(),
            expanding: vec![],
            optional_reads: vec![],
            let_memo: HashMap::new(),
        }
    }

    fn error(&mut self, msg: impl Into<String>, span: Span, label: impl Into<String>) {
        self.diags.push(Diagnostic::error(msg, span, label));
    }

    fn declare(&mut self, name: &Ident, decl: Decl) -> bool {
        if let Some((_, first)) = self.decls.get(&name.name) {
            let first = *first;
            self.diags.push(
                Diagnostic::error(
                    format!("`{}` is declared twice", name.name),
                    name.span,
                    "declared again here",
                )
                .with_secondary(first, "first declared here"),
            );
            return false;
        }
        self.decls.insert(name.name.clone(), (decl, name.span));
        true
    }

    // ------------------------------------------------------------------ declarations

    fn declarations(&mut self) {
        let def = self.def;
        for input in &def.inputs {
            let shape = self.shape(&input.shape);
            let id = self.inputs.len();
            if self.declare(&input.name, Decl::Input(id)) {
                self.inputs.push(InputInfo {
                    name: input.name.name.clone(),
                    shape,
                    optional: input.optional,
                    span: input.span,
                });
            }
        }
        for param in &def.params {
            let kind = match &param.ty {
                ParamType::Scalar => ParamKind::Scalar,
                ParamType::Tensor(s) => ParamKind::Tensor(self.shape(s)),
                ParamType::Index(s) => ParamKind::Index(self.shape(s)),
                ParamType::Enum(vs) => {
                    let mut seen = HashSet::new();
                    for (v, span) in vs {
                        if !seen.insert(v.clone()) {
                            self.error(
                                format!("enum value \"{v}\" is listed twice"),
                                *span,
                                "again here",
                            );
                        }
                    }
                    ParamKind::Enum(vs.iter().map(|(v, _)| v.clone()).collect())
                }
            };
            let default = param
                .default
                .as_ref()
                .and_then(|v| self.param_value(v, &kind));
            let id = self.params.len();
            if self.declare(&param.name, Decl::Param(id)) {
                self.params.push(ParamInfo {
                    name: param.name.name.clone(),
                    kind,
                    default,
                    span: param.span,
                });
            }
        }
        for (i, l) in def.lets.iter().enumerate() {
            self.declare(&l.name, Decl::Let(i));
            if let Some(idx) = &l.indices {
                let mut seen: HashMap<&str, Span> = HashMap::new();
                for ix in idx {
                    if let Some(first) = seen.insert(&ix.name, ix.span) {
                        self.diags.push(
                            Diagnostic::error(
                                format!("index `{}` is listed twice", ix.name),
                                ix.span,
                                "again here",
                            )
                            .with_secondary(first, "first here"),
                        );
                    }
                }
            }
        }
    }

    /// A shape's dimensions; names in them are dimension symbols, declared on first use.
    fn shape(&mut self, dims: &[ast::Expr]) -> Vec<Poly> {
        // A rejected dimension keeps its place, so that later subscripts are not also
        // reported as rank mismatches.
        dims.iter()
            .map(|d| match self.dim_expr(d, true) {
                Ok(p) if p.as_constant().is_some_and(|c| c < 0) => {
                    self.error("a dimension cannot be negative", d.span, "negative size");
                    Poly::constant(0)
                }
                Ok(p) => p,
                Err(()) => Poly::constant(0),
            })
            .collect()
    }

    /// An integer expression over dimension symbols.
    fn dim_expr(&mut self, e: &ast::Expr, declare: bool) -> Result<Poly, ()> {
        match &e.kind {
            ExprKind::Number(v) => {
                if v.fract() != 0.0 {
                    self.error(
                        "a dimension must be a whole number",
                        e.span,
                        "not a whole number",
                    );
                    return Err(());
                }
                if v.abs() > 1e15 {
                    self.error("a dimension must be below 10^15", e.span, "too large");
                    return Err(());
                }
                Ok(Poly::constant(*v as i64))
            }
            ExprKind::Name(n) => match self.decls.get(&n.name) {
                Some((Decl::Dim(d), _)) => Ok(Poly::sym(*d)),
                Some(_) => {
                    self.error(
                        format!("`{}` is not a dimension", n.name),
                        n.span,
                        "dimensions are names used in shapes, like `B` in `[B, K]`",
                    );
                    Err(())
                }
                None if declare => {
                    let d = self.dims.len();
                    self.dims.push(DimSym {
                        name: n.name.clone(),
                        span: n.span,
                    });
                    self.decls.insert(n.name.clone(), (Decl::Dim(d), n.span));
                    Ok(Poly::sym(d))
                }
                None => {
                    let names: Vec<String> = self.dims.iter().map(|d| d.name.clone()).collect();
                    let mut d = Diagnostic::error(
                        format!("unknown dimension `{}`", n.name),
                        n.span,
                        "not declared in any shape",
                    );
                    if let Some(c) = closest(&n.name, names.iter().map(String::as_str)) {
                        d = d.with_note(format!("did you mean `{c}`?"));
                    }
                    self.diags.push(d);
                    Err(())
                }
            },
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.dim_expr(a, declare)?, self.dim_expr(b, declare)?);
                match op {
                    BinOp::Add => Ok(a.add(&b)),
                    BinOp::Sub => Ok(a.sub(&b)),
                    BinOp::Mul => Ok(a.mul(&b)),
                    BinOp::Div => match (
                        b.as_constant(),
                        b.as_constant()
                            .and_then(|k| (k > 0).then(|| a.floor_div(k)).flatten()),
                    ) {
                        (Some(k), Some(q)) if q.scale(k) == a => Ok(q),
                        _ => {
                            self.error("a dimension can be divided only by a constant that divides it exactly", e.span, "inexact division");
                            Err(())
                        }
                    },
                    _ => {
                        self.error(
                            "dimensions allow only `+`, `-`, `*` and exact `/`",
                            e.span,
                            "not a dimension expression",
                        );
                        Err(())
                    }
                }
            }
            ExprKind::Unary(UnOp::Neg, a) => Ok(self.dim_expr(a, declare)?.scale(-1)),
            _ => {
                self.error(
                    "expected a dimension (a whole number, a name, or `+ - * /` of those)",
                    e.span,
                    "not a dimension",
                );
                Err(())
            }
        }
    }

    fn param_value(&mut self, v: &Value, kind: &ParamKind) -> Option<ParamValue> {
        let dims: HashMap<String, DimId> = self
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        match lower_value(v, kind, &|n| dims.get(n).copied()) {
            Ok(v) => Some(v),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }

    // ------------------------------------------------------------------ stages

    fn stages(&mut self) -> Option<LossIr> {
        let def = self.def;
        let order = |s: &Stage| match s {
            Stage::Compute(..) => 0,
            Stage::Mask(..) => 1,
            Stage::Rectify(..) => 2,
            Stage::Reduce(..) => 3,
            Stage::Weight(..) => 4,
        };
        let stage_name = ["compute", "remove_nans", "rectify", "reduce", "weight"];
        let mut first: [Option<Span>; 5] = [None; 5];
        let mut last_order = 0;
        for s in &def.stages {
            let o = order(s);
            let kw = Span::new(s.span().start, s.span().start + stage_name[o].len());
            if o != 1 {
                if let Some(f) = first[o] {
                    self.diags.push(
                        Diagnostic::error(
                            format!("a loss has one `{}` stage", stage_name[o]),
                            kw,
                            "second one here",
                        )
                        .with_secondary(f, "first one here"),
                    );
                }
            }
            if o < last_order {
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "`{}` must come before `{}`",
                            stage_name[o], stage_name[last_order]
                        ),
                        kw,
                        "out of order",
                    )
                    .with_note(
                        "stages run in the order compute, remove_nans, rectify, reduce, weight",
                    ),
                );
            }
            last_order = last_order.max(o);
            first[o].get_or_insert(kw);
        }
        for (o, what) in [(0, "compute"), (3, "reduce")] {
            if first[o].is_none() {
                let name_span = def.name.span;
                self.diags.push(
                    Diagnostic::error(
                        format!("loss `{}` has no `{what}` stage", def.name.name),
                        name_span,
                        format!("`{what}` missing"),
                    )
                    .with_note(if o == 0 {
                        "add `compute EXPR`, the element-wise loss"
                    } else {
                        "add `reduce mean` or `reduce sum`"
                    }),
                );
            }
        }

        let mut compute = None;
        let mut masks = Vec::new();
        let mut rectify = None;
        let mut reduce = ast::ReduceMode::Mean;
        let mut empty = None;
        let mut weight = None;
        for s in &def.stages {
            self.optional_reads.clear();
            self.let_memo.clear();
            match s {
                Stage::Compute(e, _) => {
                    compute = self.typed(e, &mut Vec::new(), Ctx::Domain, Ty::Num).ok()
                }
                Stage::Mask(mode, e, span) => {
                    if let Ok(c) = self.typed(e, &mut Vec::new(), Ctx::Domain, Ty::Bool) {
                        let mut needs: Vec<usize> =
                            self.optional_reads.iter().map(|(i, _)| *i).collect();
                        needs.sort_unstable();
                        needs.dedup();
                        masks.push(Mask {
                            mode: *mode,
                            cond: c,
                            needs,
                            span: *span,
                        });
                    }
                }
                Stage::Rectify(e, _) => {
                    rectify = self.typed(e, &mut Vec::new(), Ctx::Domain, Ty::Num).ok()
                }
                Stage::Reduce(mode, e, _) => {
                    reduce = *mode;
                    if let Some(e) = e {
                        empty = self.typed(e, &mut Vec::new(), Ctx::Closed, Ty::Num).ok();
                    }
                }
                Stage::Weight(e, _) => {
                    weight = self.typed(e, &mut Vec::new(), Ctx::Closed, Ty::Num).ok()
                }
            }
            if !matches!(s, Stage::Mask(..)) {
                for (i, at) in self.optional_reads.clone() {
                    let name = self.inputs[i].name.clone();
                    self.diags.push(
                        Diagnostic::error(
                            format!("optional input `{name}` is read outside `remove_nans`"),
                            at,
                            "read here",
                        )
                        .with_secondary(self.inputs[i].span, "declared optional here")
                        .with_note("an optional input may only be used in a `remove_nans` condition, which is skipped when it is absent"),
                    );
                }
            }
        }
        let compute = compute?;
        let domain: Vec<IndexId> = self.graph[compute].free.clone();
        // Masks and rectify may use only the domain's indices.
        let check_sub = |l: &mut Self, n: NodeIndex, what: &str| {
            for v in l.graph[n].free.clone() {
                if !domain.contains(&v) {
                    let var = &l.indices[v];
                    l.diags.push(
                        Diagnostic::error(
                            format!(
                                "index `{}` in `{what}` is not an index of `compute`",
                                var.name
                            ),
                            var.span,
                            "not in the loss's domain",
                        )
                        .with_note(format!(
                            "the domain is ({}); bind `{}` with a reduction such as `all({}: ...)`",
                            domain
                                .iter()
                                .map(|d| l.indices[*d].name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            var.name,
                            var.name
                        )),
                    );
                }
            }
        };
        for m in &masks {
            check_sub(self, m.cond, "remove_nans");
        }
        if let Some(r) = rectify {
            check_sub(self, r, "rectify");
        }
        let weight = match weight {
            Some(w) => w,
            None => add_node(
                &mut self.graph,
                Node {
                    op: Op::constant(1.0),
                    ty: Ty::Num,
                    free: vec![],
                    span: def.name.span,
                },
                &[],
            ),
        };
        Some(LossIr {
            name: def.name.name.clone(),
            doc: def.doc.clone(),
            dims: std::mem::take(&mut self.dims),
            inputs: std::mem::take(&mut self.inputs),
            params: std::mem::take(&mut self.params),
            indices: std::mem::take(&mut self.indices),
            domain,
            graph: std::mem::take(&mut self.graph),
            compute,
            masks,
            rectify,
            reduce,
            empty,
            weight,
            span: def.span,
            origin: Origin::default(),
        })
    }

    // ------------------------------------------------------------------ expressions

    fn node(&mut self, op: Op, ty: Ty, args: &[NodeIndex], span: Span) -> NodeIndex {
        let mut free: Vec<IndexId> = args
            .iter()
            .flat_map(|a| self.graph[*a].free.clone())
            .collect();
        match &op {
            Op::Read(_, idx) => idx.iter().for_each(|e| e.vars(&mut free)),
            Op::IndexValue(e) => e.vars(&mut free),
            Op::Reduce(_, bound) => free.retain(|v| !bound.contains(v)),
            _ => {}
        }
        free.sort_unstable();
        free.dedup();
        add_node(&mut self.graph, Node { op, ty, free, span }, args)
    }

    fn typed(&mut self, e: &ast::Expr, scope: &mut Scope, ctx: Ctx, want: Ty) -> Lowered {
        let n = self.expr(e, scope, ctx)?;
        self.expect(n, want, e.span)
    }

    fn expect(&mut self, n: NodeIndex, want: Ty, span: Span) -> Lowered {
        let got = self.graph[n].ty;
        if got != want {
            let hint = match want {
                Ty::Bool => {
                    "a condition is a comparison, `isnan(...)`, `all(...)`, `any(...)` or `&&`/`||` of those"
                }
                Ty::Num => "turn a condition into a number with `select(cond, 1, 0)`",
            };
            self.diags.push(
                Diagnostic::error(
                    format!("expected a {want}, found a {got}"),
                    span,
                    format!("this is a {got}"),
                )
                .with_note(hint),
            );
            return Err(());
        }
        Ok(n)
    }

    fn expr(&mut self, e: &ast::Expr, scope: &mut Scope, ctx: Ctx) -> Lowered {
        match &e.kind {
            ExprKind::Number(v) => Ok(self.node(Op::constant(*v as f32), Ty::Num, &[], e.span)),
            ExprKind::Str(_) => {
                self.error(
                    "a string can only be compared with an enum param",
                    e.span,
                    "unexpected string",
                );
                Err(())
            }
            ExprKind::Name(n) => self.name(n, scope, ctx),
            ExprKind::Access(n, args) => self.access(n, args, scope, ctx, e.span),
            ExprKind::Unary(op, a) => {
                let (f, ty) = match op {
                    UnOp::Neg => (UnaryFn::Neg, Ty::Num),
                    UnOp::Not => (UnaryFn::Not, Ty::Bool),
                };
                let a = self.typed(a, scope, ctx, ty)?;
                Ok(self.node(Op::Unary(f), ty, &[a], e.span))
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, scope, ctx, e.span),
            ExprKind::Call(f, args) => self.call(f, args, scope, ctx, e.span),
            ExprKind::Reduction(f, binders, body) => {
                self.reduction(f, binders, body, scope, ctx, e.span)
            }
        }
    }

    fn binary(
        &mut self,
        op: BinOp,
        a: &ast::Expr,
        b: &ast::Expr,
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        if matches!(op, BinOp::Eq | BinOp::Ne) {
            if let Some(n) = self.enum_compare(op, a, b, span)? {
                return Ok(n);
            }
        }
        let (f, arg_ty, ty) = match op {
            BinOp::Add => (BinaryFn::Add, Ty::Num, Ty::Num),
            BinOp::Sub => (BinaryFn::Sub, Ty::Num, Ty::Num),
            BinOp::Mul => (BinaryFn::Mul, Ty::Num, Ty::Num),
            BinOp::Div => (BinaryFn::Div, Ty::Num, Ty::Num),
            BinOp::Pow => (BinaryFn::Pow, Ty::Num, Ty::Num),
            BinOp::Eq => (BinaryFn::Eq, Ty::Num, Ty::Bool),
            BinOp::Ne => (BinaryFn::Ne, Ty::Num, Ty::Bool),
            BinOp::Lt => (BinaryFn::Lt, Ty::Num, Ty::Bool),
            BinOp::Le => (BinaryFn::Le, Ty::Num, Ty::Bool),
            BinOp::Gt => (BinaryFn::Gt, Ty::Num, Ty::Bool),
            BinOp::Ge => (BinaryFn::Ge, Ty::Num, Ty::Bool),
            BinOp::And => (BinaryFn::And, Ty::Bool, Ty::Bool),
            BinOp::Or => (BinaryFn::Or, Ty::Bool, Ty::Bool),
        };
        let x = self.typed(a, scope, ctx, arg_ty);
        let y = self.typed(b, scope, ctx, arg_ty);
        Ok(self.node(Op::Binary(f), ty, &[x?, y?], span))
    }

    /// `param == "value"` for enum params; `None` when neither side is an enum param.
    fn enum_compare(
        &mut self,
        op: BinOp,
        a: &ast::Expr,
        b: &ast::Expr,
        span: Span,
    ) -> Result<Option<NodeIndex>, ()> {
        let as_enum = |l: &Self, e: &ast::Expr| match &e.kind {
            ExprKind::Name(n) => match l.decls.get(&n.name) {
                Some((Decl::Param(p), _)) if matches!(l.params[*p].kind, ParamKind::Enum(_)) => {
                    Some(*p)
                }
                _ => None,
            },
            _ => None,
        };
        let (p, other) = match (as_enum(self, a), as_enum(self, b)) {
            (Some(p), _) => (p, b),
            (_, Some(p)) => (p, a),
            _ => return Ok(None),
        };
        let ParamKind::Enum(variants) = self.params[p].kind.clone() else {
            unreachable!("as_enum checked the kind")
        };
        let ExprKind::Str(s) = &other.kind else {
            self.error(
                format!(
                    "enum param `{}` can only be compared with a string",
                    self.params[p].name
                ),
                other.span,
                format!("expected one of {}", quoted(&variants)),
            );
            return Err(());
        };
        if !variants.contains(s) {
            self.error(
                format!("\"{s}\" is not a value of `{}`", self.params[p].name),
                other.span,
                format!("expected one of {}", quoted(&variants)),
            );
            return Err(());
        }
        let n = self.node(Op::EnumIs(p, s.clone()), Ty::Bool, &[], span);
        Ok(Some(if op == BinOp::Ne {
            self.node(Op::Unary(UnaryFn::Not), Ty::Bool, &[n], span)
        } else {
            n
        }))
    }

    fn call(
        &mut self,
        f: &Ident,
        args: &[ast::Expr],
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        let unary = match f.name.as_str() {
            "exp" => Some((UnaryFn::Exp, Ty::Num)),
            "log" => Some((UnaryFn::Log, Ty::Num)),
            "sqrt" => Some((UnaryFn::Sqrt, Ty::Num)),
            "abs" => Some((UnaryFn::Abs, Ty::Num)),
            "relu" => Some((UnaryFn::Relu, Ty::Num)),
            "isnan" => Some((UnaryFn::IsNan, Ty::Bool)),
            _ => None,
        };
        let arity = match f.name.as_str() {
            _ if unary.is_some() => 1,
            "min" | "max" => 2,
            "select" | "clamp" => 3,
            name if ReduceFn::from_name(name).is_some() => {
                self.diags.push(
                    Diagnostic::error(
                        format!("`{name}` is a reduction and binds indices"),
                        f.span,
                        "no indices bound",
                    )
                    .with_note(format!(
                        "write `{name}(i, j: EXPR)` to reduce EXPR over i and j"
                    )),
                );
                return Err(());
            }
            name => {
                let known = [
                    "exp", "log", "sqrt", "abs", "relu", "isnan", "min", "max", "select", "clamp",
                ];
                let mut d = Diagnostic::error(
                    format!("unknown function `{name}`"),
                    f.span,
                    "not a function",
                );
                if let Some(c) = closest(name, known) {
                    d = d.with_note(format!("did you mean `{c}`?"));
                } else {
                    d = d.with_note(format!("the functions are {}", known.join(", ")));
                }
                self.diags.push(d);
                return Err(());
            }
        };
        if args.len() != arity {
            self.error(
                format!(
                    "`{}` takes {arity} argument{}, found {}",
                    f.name,
                    if arity == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
                "wrong number of arguments",
            );
            return Err(());
        }
        if let Some((op, ty)) = unary {
            let a = self.typed(&args[0], scope, ctx, Ty::Num)?;
            return Ok(self.node(Op::Unary(op), ty, &[a], span));
        }
        match f.name.as_str() {
            "min" | "max" => {
                let a = self.typed(&args[0], scope, ctx, Ty::Num);
                let b = self.typed(&args[1], scope, ctx, Ty::Num);
                let op = if f.name == "min" {
                    BinaryFn::Min
                } else {
                    BinaryFn::Max
                };
                Ok(self.node(Op::Binary(op), Ty::Num, &[a?, b?], span))
            }
            "clamp" => {
                let x = self.typed(&args[0], scope, ctx, Ty::Num);
                let lo = self.typed(&args[1], scope, ctx, Ty::Num);
                let hi = self.typed(&args[2], scope, ctx, Ty::Num);
                Ok(self.node(Op::Clamp, Ty::Num, &[x?, lo?, hi?], span))
            }
            _ => {
                let c = self.typed(&args[0], scope, ctx, Ty::Bool);
                let a = self.expr(&args[1], scope, ctx)?;
                let ty = self.graph[a].ty;
                let b = self.typed(&args[2], scope, ctx, ty);
                Ok(self.node(Op::Select, ty, &[c?, a, b?], span))
            }
        }
    }

    fn reduction(
        &mut self,
        f: &Ident,
        binders: &[ast::Binder],
        body: &ast::Expr,
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        let Some(kind) = ReduceFn::from_name(&f.name) else {
            let known = ["sum", "mean", "max", "min", "all", "any", "norm", "median"];
            let mut d = Diagnostic::error(
                format!("unknown reduction `{}`", f.name),
                f.span,
                "not a reduction",
            );
            if let Some(c) = closest(&f.name, known) {
                d = d.with_note(format!("did you mean `{c}`?"));
            } else {
                d = d.with_note(format!("the reductions are {}", known.join(", ")));
            }
            self.diags.push(d);
            return Err(());
        };
        let depth = scope.len();
        let mut bound = Vec::new();
        let mut names: HashMap<&str, Span> = HashMap::new();
        for b in binders {
            if let Some(first) = names.insert(&b.name.name, b.name.span) {
                self.diags.push(
                    Diagnostic::error(
                        format!("index `{}` is bound twice", b.name.name),
                        b.name.span,
                        "again here",
                    )
                    .with_secondary(first, "first here"),
                );
            }
            if self.decls.contains_key(&b.name.name) {
                self.error(
                    format!(
                        "`{}` is already declared and cannot name an index",
                        b.name.name
                    ),
                    b.name.span,
                    "choose another index name",
                );
            }
            let explicit = match &b.range {
                Some((lo, hi)) => match (self.dim_expr(lo, false), self.dim_expr(hi, false)) {
                    (Ok(lo), Ok(hi)) => Some((lo, hi)),
                    _ => None,
                },
                None => None,
            };
            let id = self.indices.len();
            self.indices.push(IndexVar {
                name: b.name.name.clone(),
                span: b.name.span,
                explicit,
                range: None,
            });
            scope.push((b.name.name.clone(), IndexExpr::var(id)));
            bound.push(id);
        }
        let want = if matches!(kind, ReduceFn::All | ReduceFn::Any) {
            Ty::Bool
        } else {
            Ty::Num
        };
        let result = self.typed(body, scope, ctx, want);
        scope.truncate(depth);
        let body = result?;
        Ok(self.node(Op::Reduce(kind, bound), want, &[body], span))
    }

    fn name(&mut self, n: &Ident, scope: &mut Scope, ctx: Ctx) -> Lowered {
        if let Some((_, e)) = scope.iter().rev().find(|(s, _)| *s == n.name) {
            let e = e.clone();
            return Ok(self.node(Op::IndexValue(e), Ty::Num, &[], n.span));
        }
        match self.decls.get(&n.name).copied() {
            Some((Decl::Let(i), _)) => {
                let l = &self.def.lets[i];
                if let Some(idx) = &l.indices {
                    self.error(
                        format!(
                            "`{}` is an indexed let and needs {} indices",
                            n.name,
                            idx.len()
                        ),
                        n.span,
                        format!(
                            "write `{}[{}]`",
                            n.name,
                            idx.iter()
                                .map(|i| i.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    return Err(());
                }
                let key = (i, scope.clone(), ctx);
                if let Some(n) = self.let_memo.get(&key) {
                    return Ok(*n);
                }
                let r = self.expand_let(i, n.span, |l, i| {
                    let body = &l.def.lets[i].body;
                    l.expr(body, scope, ctx)
                })?;
                self.let_memo.insert(key, r);
                Ok(r)
            }
            Some((Decl::Param(p), _)) => match &self.params[p].kind {
                ParamKind::Scalar => {
                    Ok(self.node(Op::Read(Tensor::Param(p), vec![]), Ty::Num, &[], n.span))
                }
                ParamKind::Enum(v) => {
                    let v = quoted(v);
                    self.error(
                        format!("enum param `{}` is not a number", n.name),
                        n.span,
                        format!("compare it with one of {v}"),
                    );
                    Err(())
                }
                ParamKind::Tensor(s) | ParamKind::Index(s) if !s.is_empty() => {
                    let rank = s.len();
                    self.rank_error(&n.name, rank, 0, n.span);
                    Err(())
                }
                _ => Ok(self.node(Op::Read(Tensor::Param(p), vec![]), Ty::Num, &[], n.span)),
            },
            Some((Decl::Input(i), _)) => {
                let rank = self.inputs[i].shape.len();
                if rank == 0 {
                    return self.read_input(i, vec![], n.span);
                }
                self.rank_error(&n.name, rank, 0, n.span);
                Err(())
            }
            Some((Decl::Dim(d), _)) => Ok(self.node(
                Op::IndexValue(IndexExpr::poly(Poly::sym(d))),
                Ty::Num,
                &[],
                n.span,
            )),
            None => {
                let v = self.domain_index(n, ctx)?;
                Ok(self.node(Op::IndexValue(IndexExpr::var(v)), Ty::Num, &[], n.span))
            }
        }
    }

    fn expand_let(
        &mut self,
        i: usize,
        span: Span,
        f: impl FnOnce(&mut Self, usize) -> Lowered,
    ) -> Lowered {
        if self.expanding.len() >= MAX_LET_DEPTH {
            self.diags.push(
                Diagnostic::error(
                    format!("lets refer to lets more than {MAX_LET_DEPTH} deep"),
                    span,
                    "too deep here",
                )
                .with_note("shorten the chain of `let`s"),
            );
            return Err(());
        }
        if self.expanding.contains(&i) {
            let name = self.def.lets[i].name.name.clone();
            self.diags.push(
                Diagnostic::error(
                    format!("`{name}` is defined in terms of itself"),
                    span,
                    "used here",
                )
                .with_secondary(self.def.lets[i].span, "defined here"),
            );
            return Err(());
        }
        self.expanding.push(i);
        let r = f(self, i);
        self.expanding.pop();
        r
    }

    /// The domain index called `n`, created on first use.
    fn domain_index(&mut self, n: &Ident, ctx: Ctx) -> Result<IndexId, ()> {
        if ctx == Ctx::Domain && self.subscript_names.contains(&n.name) {
            if let Some(v) = self.domain_by_name.get(&n.name) {
                return Ok(*v);
            }
            let v = self.indices.len();
            self.indices.push(IndexVar {
                name: n.name.clone(),
                span: n.span,
                explicit: None,
                range: None,
            });
            self.domain_by_name.insert(n.name.clone(), v);
            return Ok(v);
        }
        if ctx == Ctx::Closed
            && (self.subscript_names.contains(&n.name) || self.domain_by_name.contains_key(&n.name))
        {
            self.error(
                format!("index `{}` is not bound here", n.name),
                n.span,
                "no free indices allowed here",
            );
            if let Some(d) = self.diags.last_mut() {
                d.notes.push("`weight`, `empty:` and indexed `let` bodies are closed: bind indices with a reduction or a let parameter".into());
            }
            return Err(());
        }
        let mut names: Vec<&str> = self.decls.keys().map(String::as_str).collect();
        names.extend(self.domain_by_name.keys().map(String::as_str));
        names.sort_unstable();
        let mut d = Diagnostic::error(format!("unknown name `{}`", n.name), n.span, "not declared");
        if let Some(c) = closest(&n.name, names) {
            d = d.with_note(format!("did you mean `{c}`?"));
        }
        d = d.with_note("declare it with `input`, `param` or `let`; an index must be used in a subscript like `x[i]`");
        self.diags.push(d);
        Err(())
    }

    fn rank_error(&mut self, name: &str, rank: usize, given: usize, span: Span) {
        self.error(
            format!(
                "`{name}` has {rank} dimension{}, but {given} ind{} given",
                if rank == 1 { "" } else { "s" },
                if given == 1 { "ex is" } else { "ices are" }
            ),
            span,
            format!(
                "expected {rank} ind{}",
                if rank == 1 { "ex" } else { "ices" }
            ),
        );
    }

    fn read_input(&mut self, i: usize, idx: Vec<IndexExpr>, span: Span) -> Lowered {
        if self.inputs[i].optional {
            self.optional_reads.push((i, span));
        }
        Ok(self.node(Op::Read(Tensor::Input(i), idx), Ty::Num, &[], span))
    }

    fn access(
        &mut self,
        n: &Ident,
        args: &[ast::Expr],
        scope: &mut Scope,
        ctx: Ctx,
        span: Span,
    ) -> Lowered {
        let decl = self.decls.get(&n.name).copied();
        let rank = match decl {
            Some((Decl::Input(i), _)) => self.inputs[i].shape.len(),
            Some((Decl::Param(p), _)) => match &self.params[p].kind {
                ParamKind::Tensor(s) | ParamKind::Index(s) => s.len(),
                _ => 0,
            },
            Some((Decl::Let(i), _)) => self.def.lets[i].indices.as_ref().map_or(0, Vec::len),
            _ => 0,
        };
        match decl {
            Some((Decl::Input(_) | Decl::Param(_) | Decl::Let(_), _)) if rank != args.len() => {
                self.rank_error(&n.name, rank, args.len(), span);
                return Err(());
            }
            Some((Decl::Input(_) | Decl::Param(_) | Decl::Let(_), _)) => {}
            Some((Decl::Dim(_), _)) => {
                self.error(
                    format!("`{}` is a dimension, not a tensor", n.name),
                    n.span,
                    "cannot be indexed",
                );
                return Err(());
            }
            None if scope.iter().any(|(s, _)| *s == n.name)
                || self.subscript_names.contains(&n.name) =>
            {
                self.error(
                    format!("`{}` is an index, not a tensor", n.name),
                    n.span,
                    "cannot be indexed",
                );
                return Err(());
            }
            None => {
                let names: Vec<&str> = self.decls.keys().map(String::as_str).collect();
                let mut d = Diagnostic::error(
                    format!("unknown tensor `{}`", n.name),
                    n.span,
                    "not declared",
                );
                if let Some(c) = closest(&n.name, names) {
                    d = d.with_note(format!("did you mean `{c}`?"));
                }
                self.diags.push(d);
                return Err(());
            }
        }
        let mut idx = Vec::new();
        let mut ok = true;
        for a in args {
            match self.index_expr(a, scope, ctx) {
                Ok(e) => idx.push(e),
                Err(()) => ok = false,
            }
        }
        if !ok {
            return Err(());
        }
        match decl {
            Some((Decl::Input(i), _)) => self.read_input(i, idx, span),
            Some((Decl::Param(p), _)) => {
                if matches!(self.params[p].kind, ParamKind::Scalar | ParamKind::Enum(_)) {
                    self.error(
                        format!("`{}` is a scalar param and cannot be indexed", n.name),
                        n.span,
                        "not a tensor",
                    );
                    return Err(());
                }
                Ok(self.node(Op::Read(Tensor::Param(p), idx), Ty::Num, &[], span))
            }
            Some((Decl::Let(i), _)) => {
                let Some(params) = self.def.lets[i].indices.clone() else {
                    self.error(
                        format!("`{}` is a plain let and cannot be indexed", n.name),
                        n.span,
                        "not indexed",
                    );
                    return Err(());
                };
                self.expand_let(i, span, |l, i| {
                    // An indexed let sees only its own parameters, bound to the use site's
                    // index expressions.
                    let mut inner: Scope = params.iter().map(|p| p.name.clone()).zip(idx).collect();
                    let body = &l.def.lets[i].body;
                    l.expr(body, &mut inner, Ctx::Closed)
                })
            }
            _ => Err(()),
        }
    }

    /// An affine index expression.
    fn index_expr(&mut self, e: &ast::Expr, scope: &mut Scope, ctx: Ctx) -> Result<IndexExpr, ()> {
        match &e.kind {
            ExprKind::Number(v) => {
                if v.fract() != 0.0 {
                    self.error(
                        "an index must be a whole number",
                        e.span,
                        "not a whole number",
                    );
                    return Err(());
                }
                if v.abs() > 1e15 {
                    self.error("an index must be below 10^15", e.span, "too large");
                    return Err(());
                }
                Ok(IndexExpr::poly(Poly::constant(*v as i64)))
            }
            ExprKind::Name(n) => {
                if let Some((_, x)) = scope.iter().rev().find(|(s, _)| *s == n.name) {
                    return Ok(x.clone());
                }
                match self.decls.get(&n.name).copied() {
                    Some((Decl::Dim(d), _)) => Ok(IndexExpr::poly(Poly::sym(d))),
                    Some((Decl::Let(i), _)) if self.def.lets[i].indices.is_none() => {
                        if self.expanding.len() >= MAX_LET_DEPTH || self.expanding.contains(&i) {
                            self.error(
                                format!(
                                    "`{}` is defined in terms of itself, or too deeply",
                                    n.name
                                ),
                                n.span,
                                "used here",
                            );
                            return Err(());
                        }
                        self.expanding.push(i);
                        let body = &self.def.lets[i].body;
                        let r = self.index_expr(body, scope, ctx);
                        self.expanding.pop();
                        r
                    }
                    Some(_) => {
                        self.error(
                            format!("`{}` cannot be used in a subscript", n.name),
                            n.span,
                            "subscripts are built from indices, dimensions, whole numbers and `index` params",
                        );
                        Err(())
                    }
                    None => Ok(IndexExpr::var(self.domain_index(n, ctx)?)),
                }
            }
            ExprKind::Access(n, args) => {
                let p = match self.decls.get(&n.name) {
                    Some((Decl::Param(p), _))
                        if matches!(self.params[*p].kind, ParamKind::Index(_)) =>
                    {
                        *p
                    }
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                format!("`{}` cannot be used in a subscript", n.name),
                                n.span,
                                "not an `index` param",
                            )
                            .with_note("gathers go through params declared `index[...]`"),
                        );
                        return Err(());
                    }
                };
                let ParamKind::Index(shape) = &self.params[p].kind else {
                    unreachable!("checked above")
                };
                if shape.len() != args.len() {
                    let r = shape.len();
                    self.rank_error(&n.name, r, args.len(), e.span);
                    return Err(());
                }
                let idx = args
                    .iter()
                    .map(|a| self.index_expr(a, scope, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(IndexExpr {
                    terms: vec![(1, IndexTerm::Gather(p, idx))],
                    offset: Poly::default(),
                })
            }
            ExprKind::Unary(UnOp::Neg, a) => Ok(self.index_expr(a, scope, ctx)?.scale(-1)),
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) => {
                let a = self.index_expr(a, scope, ctx);
                let b = self.index_expr(b, scope, ctx);
                Ok(a?.add_scaled(&b?, if *op == BinOp::Add { 1 } else { -1 }))
            }
            ExprKind::Binary(BinOp::Mul, a, b) => {
                let (x, y) = (
                    self.index_expr(a, scope, ctx)?,
                    self.index_expr(b, scope, ctx)?,
                );
                match (x.terms.is_empty(), y.terms.is_empty()) {
                    (true, true) => Ok(IndexExpr::poly(x.offset.mul(&y.offset))),
                    (true, false) | (false, true) => {
                        let (k, v) = if x.terms.is_empty() { (x, y) } else { (y, x) };
                        match k.offset.as_constant() {
                            Some(c) => Ok(v.scale(c)),
                            None => {
                                self.error(
                                    "an index may be multiplied only by a whole number",
                                    e.span,
                                    "not affine",
                                );
                                Err(())
                            }
                        }
                    }
                    (false, false) => {
                        self.error("an index expression must be affine: indices cannot be multiplied together", e.span, "not affine");
                        Err(())
                    }
                }
            }
            ExprKind::Binary(BinOp::Div, a, b) => {
                let (x, y) = (
                    self.index_expr(a, scope, ctx)?,
                    self.index_expr(b, scope, ctx)?,
                );
                let k = y
                    .offset
                    .as_constant()
                    .filter(|k| y.terms.is_empty() && *k > 0);
                match (k, x.terms.is_empty()) {
                    (Some(k), true)
                        if x.offset
                            .floor_div(k)
                            .is_some_and(|q| q.scale(k) == x.offset) =>
                    {
                        Ok(IndexExpr::poly(x.offset.floor_div(k).unwrap_or_default()))
                    }
                    _ => {
                        self.diags.push(
                            Diagnostic::error("division is not allowed on indices", e.span, "not affine")
                                .with_note("index expressions are affine; only dimensions that divide exactly may be divided"),
                        );
                        Err(())
                    }
                }
            }
            _ => {
                self.diags.push(
                    Diagnostic::error("this cannot be used as an index", e.span, "not an index expression")
                        .with_note("a subscript is an affine expression of indices, dimensions, whole numbers and `index` params"),
                );
                Err(())
            }
        }
    }
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A constant number (defaults and settings).
fn const_number(e: &ast::Expr) -> Result<f64, Diagnostic> {
    match &e.kind {
        ExprKind::Number(v) => Ok(*v),
        ExprKind::Unary(UnOp::Neg, a) => Ok(-const_number(a)?),
        ExprKind::Binary(
            op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow),
            a,
            b,
        ) => {
            let (a, b) = (const_number(a)?, const_number(b)?);
            Ok(match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
                _ => a.powf(b),
            })
        }
        _ => Err(Diagnostic::error(
            "expected a constant number",
            e.span,
            "not a constant",
        )),
    }
}

/// A whole-number expression over dimension symbols, for ranges written as values.
fn value_dim(e: &ast::Expr, dims: &dyn Fn(&str) -> Option<DimId>) -> Result<Poly, Diagnostic> {
    match &e.kind {
        ExprKind::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => Ok(Poly::constant(*v as i64)),
        ExprKind::Name(n) => dims(&n.name).map(Poly::sym).ok_or_else(|| {
            Diagnostic::error(
                format!("unknown dimension `{}`", n.name),
                n.span,
                "not a dimension of this loss",
            )
        }),
        ExprKind::Unary(UnOp::Neg, a) => Ok(value_dim(a, dims)?.scale(-1)),
        ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul), a, b) => {
            let (a, b) = (value_dim(a, dims)?, value_dim(b, dims)?);
            Ok(match op {
                BinOp::Add => a.add(&b),
                BinOp::Sub => a.sub(&b),
                _ => a.mul(&b),
            })
        }
        _ => Err(Diagnostic::error(
            "expected a whole number or a dimension",
            e.span,
            "not a range bound",
        )),
    }
}

/// A source value for a param of the given kind: shared by defaults and factory settings.
pub fn lower_value(
    v: &Value,
    kind: &ParamKind,
    dims: &dyn Fn(&str) -> Option<DimId>,
) -> Result<ParamValue, Diagnostic> {
    let mismatch = |what: String, span: Span| {
        Err(Diagnostic::error(
            format!("expected {what}"),
            span,
            "wrong kind of value",
        ))
    };
    match (v, kind) {
        (Value::Str(s, span), ParamKind::Enum(vs)) => {
            if vs.contains(s) {
                Ok(ParamValue::Str(s.clone()))
            } else {
                Err(Diagnostic::error(
                    format!("\"{s}\" is not one of {}", quoted(vs)),
                    *span,
                    "unknown value",
                ))
            }
        }
        (_, ParamKind::Enum(vs)) => mismatch(format!("one of {}", quoted(vs)), v.span()),
        (Value::Str(_, span), _) => mismatch("a number, not a string".into(), *span),
        (Value::Expr(e), ParamKind::Scalar | ParamKind::Tensor(_)) => {
            const_number(e).map(ParamValue::Scalar)
        }
        (Value::Expr(e), ParamKind::Index(_)) => {
            mismatch("a list or a range of indices".into(), e.span)
        }
        (Value::List(_, span), ParamKind::Scalar) => mismatch("a number, not a list".into(), *span),
        (Value::List(items, _), _) => items
            .iter()
            .map(const_number)
            .collect::<Result<Vec<_>, _>>()
            .map(ParamValue::List),
        (Value::Range(lo, hi, _), ParamKind::Index(_) | ParamKind::Tensor(_)) => Ok(
            ParamValue::Range(value_dim(lo, dims)?, value_dim(hi, dims)?),
        ),
        (Value::Range(_, _, span), ParamKind::Scalar) => {
            mismatch("a number, not a range".into(), *span)
        }
    }
}
