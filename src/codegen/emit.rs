//! Lowering one factory to one fused WGSL compute kernel.
//!
//! Work is split into *items*: each loss has `rows × chunks` of them (see
//! [`super::schedule`]), and the factory's items are numbered loss after loss. Each
//! workgroup takes items `wid, wid + nwg, ...`: per item it computes the row's hoisted
//! tables into its scratch slice, streams one chunk of the row's elements, and publishes
//! the chunk's (sum, count) in its partial-result slots, atomically. The last workgroup to
//! finish (found with an atomic counter) waits for every slot, combines them per loss in a
//! fixed order, applies means, `empty:` values, weights and anneal factors, writes the
//! results, and resets the slots for the next dispatch. Every reduction order is fixed, so
//! results are bit-identical run to run.

use std::collections::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::layout::{Layout, Slot};
use super::schedule::LossSchedule;
use super::writer::Writer;
use crate::ir::{
    BinaryFn, IndexExpr, IndexId, IndexTerm, LossIr, Op, ParamKind, Poly, ReduceFn, ReduceMode,
    Tensor, Ty, UnaryFn, operands,
};

/// WGSL for an element-wise function of one operand, `a` a WGSL expression (a `bool` for
/// `!`; `isnan` gives one). The unfused baseline spells its operations the same way.
pub fn unary_wgsl(f: UnaryFn, a: &str) -> String {
    match f {
        UnaryFn::Neg => format!("(-{a})"),
        UnaryFn::Not => format!("(!{a})"),
        UnaryFn::Exp => format!("exp({a})"),
        UnaryFn::Log => format!("log({a})"),
        UnaryFn::Sqrt => format!("sqrt({a})"),
        UnaryFn::Abs => format!("abs({a})"),
        UnaryFn::Relu => format!("lc_relu({a})"),
        UnaryFn::IsNan => format!("lc_isnan({a})"),
    }
}

/// WGSL for an element-wise function of two operands (`bool`s for `&&` and `||`;
/// comparisons give one).
pub fn binary_wgsl(f: BinaryFn, a: &str, b: &str) -> String {
    let infix = |op: &str| format!("({a} {op} {b})");
    match f {
        BinaryFn::Add => infix("+"),
        BinaryFn::Sub => infix("-"),
        BinaryFn::Mul => infix("*"),
        BinaryFn::Div => infix("/"),
        BinaryFn::Pow => format!("lc_pow({a}, {b})"),
        BinaryFn::Min => format!("lc_min({a}, {b})"),
        BinaryFn::Max => format!("lc_max({a}, {b})"),
        BinaryFn::Eq => infix("=="),
        // SPIR-V back ends may emit an ordered `!=`, false when either side is NaN; IEEE
        // (and the CPU evaluator) say true.
        BinaryFn::Ne => format!("(!({a} == {b}))"),
        BinaryFn::Lt => infix("<"),
        BinaryFn::Le => infix("<="),
        BinaryFn::Gt => infix(">"),
        BinaryFn::Ge => infix(">="),
        BinaryFn::And => infix("&&"),
        BinaryFn::Or => infix("||"),
    }
}

/// Threads per workgroup. 64 fills a warp or wavefront or two on real GPUs, and keeps
/// barriers cheap on software rasterisers (llvmpipe runs a workgroup's SIMD groups as
/// coroutines, and a barrier switches through all of them).
pub const WORKGROUP: usize = 64;
/// Elements of a row one work item streams (64 per thread).
pub const CHUNK: usize = WORKGROUP * 64;
/// The error word's value when a partial result never arrived.
pub const TIMEOUT_CODE: u32 = 0xffff_fff0;

const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");

/// An f32 literal in WGSL (NaN and infinities through `lc_bits`, at run time: WGSL's
/// constant evaluation rejects them).
pub fn f32_lit(v: f32) -> String {
    if v.is_finite() {
        let s = format!("{v:?}");
        if s.contains(['.', 'e']) {
            format!("{s}f")
        } else {
            format!("{s}.0f")
        }
    } else {
        format!("lc_bits({:#010x}u)", v.to_bits())
    }
}

/// Everything one loss's code needs while it is written.
struct LossEmitter<'a> {
    ir: &'a LossIr,
    li: usize,
    sched: &'a LossSchedule,
    layout: &'a mut Layout,
    sites: &'a mut Vec<String>,
    w: &'a mut Writer,
    /// Per open block: node → the WGSL name holding its value.
    cache: Vec<HashMap<NodeIndex, String>>,
    /// Per index variable: a stack of (block depth, WGSL name) bindings.
    binds: HashMap<IndexId, Vec<(usize, String)>>,
    fresh: &'a mut usize,
    /// Set when the emitter meets a state that is a compiler bug.
    bug: Option<String>,
    /// The WGSL name of the scratch offset hoisted tables are read at.
    slice: &'static str,
    /// The parameter block's values, when the kernel is specialised to them.
    values: Option<&'a [i32]>,
    /// The loop being emitted: its indices (row-major) and the WGSL name of its linear
    /// index, for contiguous reads.
    linear: Option<(Vec<IndexId>, String)>,
    /// In a four-wide loop: its base index's name and which of the four elements.
    lane: Option<(String, usize)>,
    /// In a four-wide loop: the block depth of its body, and the vec4 loads its four
    /// elements share, declared at the top of the body once the elements are written.
    shared_loads: Option<(usize, Vec<SharedLoad>)>,
}

/// A vec4 load the four values of a four-wide loop's iteration share.
struct SharedLoad {
    /// The load expression.
    load: String,
    /// The `let` holding it.
    name: String,
    /// The source location of the first read through it, as a comment.
    comment: String,
}

impl<'a> LossEmitter<'a> {
    /// An emitter for loss `li`, writing to `w`, sharing the kernel's slots, read sites
    /// and name counter with the other losses.
    #[allow(clippy::too_many_arguments)]
    fn new(
        ir: &'a LossIr,
        li: usize,
        sched: &'a LossSchedule,
        layout: &'a mut Layout,
        sites: &'a mut Vec<String>,
        w: &'a mut Writer,
        fresh: &'a mut usize,
        values: Option<&'a [i32]>,
    ) -> LossEmitter<'a> {
        LossEmitter {
            ir,
            li,
            sched,
            layout,
            sites,
            w,
            cache: vec![HashMap::new()],
            binds: HashMap::new(),
            fresh,
            bug: None,
            slice: "slice",
            values,
            linear: None,
            lane: None,
            shared_loads: None,
        }
    }
}

impl LossEmitter<'_> {
    fn depth(&self) -> usize {
        self.cache.len() - 1
    }

    fn name(&mut self, prefix: &str) -> String {
        *self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    fn open(&mut self, header: impl AsRef<str>) {
        self.w.open(header);
        self.cache.push(HashMap::new());
    }

    /// `if (cond) {`; in a kernel specialised to sizes where the condition is `known`,
    /// a plain block, its contents dropped when the condition is false.
    fn open_if(&mut self, cond: String, known: Option<bool>) {
        match known {
            None => self.open(format!("if ({cond})")),
            Some(taken) => {
                self.w.open_muted(!taken);
                self.cache.push(HashMap::new());
            }
        }
    }

    /// The `else` of [`Self::open_if`] with the same `known`.
    fn open_else(&mut self, known: Option<bool>) {
        match known {
            None => self.open("else"),
            Some(taken) => {
                self.w.open_muted(taken);
                self.cache.push(HashMap::new());
            }
        }
    }

    /// The value of an enum test (or its negation), in a kernel specialised to sizes.
    fn known_truth(&mut self, n: NodeIndex) -> Option<bool> {
        match &self.ir.graph[n].op {
            Op::EnumIs(p, v) => {
                let ParamKind::Enum(vs) = &self.ir.params[*p].kind else {
                    return None;
                };
                let k = vs.iter().position(|x| x == v)? as i64;
                let slot = Slot::Enum {
                    loss: self.li,
                    param: self.ir.params[*p].name.clone(),
                };
                self.known(&slot).map(|x| x == k)
            }
            Op::Unary(UnaryFn::Not) => self.known_truth(operands(&self.ir.graph, n)[0]).map(|b| !b),
            _ => None,
        }
    }

    /// Whether a hoisted reduction is needed at all: in a specialised kernel, tables only
    /// reachable through the untaken branch of a known configuration choice are not.
    fn needed(&mut self, h: NodeIndex) -> bool {
        if self.values.is_none() {
            return true;
        }
        let mut roots = vec![self.ir.compute];
        roots.extend(self.ir.masks.iter().map(|m| m.cond));
        roots.extend(self.ir.rectify);
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = roots.pop() {
            if n == h {
                return true;
            }
            if !seen.insert(n) {
                continue;
            }
            let args = operands(&self.ir.graph, n);
            match (&self.ir.graph[n].op, self.known_truth_peek(n)) {
                (Op::Select, Some(taken)) => roots.push(if taken { args[1] } else { args[2] }),
                _ => roots.extend(args),
            }
        }
        false
    }

    /// Whether hoisted table `k` must be built: some per-element stage reaches it, or a
    /// reduction that reads it in its place ([`crate::codegen::schedule::Hoisted::same_as`]).
    fn table_needed(&mut self, k: usize) -> bool {
        let nodes: Vec<NodeIndex> = self
            .sched
            .hoisted
            .iter()
            .enumerate()
            .filter(|(j, h)| *j == k || h.same_as == Some(k))
            .map(|(_, h)| h.node)
            .collect();
        nodes.into_iter().any(|n| self.needed(n))
    }

    /// [`Self::known_truth`] of a select's condition.
    fn known_truth_peek(&mut self, n: NodeIndex) -> Option<bool> {
        match self.ir.graph[n].op {
            Op::Select => self.known_truth(operands(&self.ir.graph, n)[0]),
            _ => None,
        }
    }

    /// A slot's value, in a kernel specialised to sizes (and once the slot exists).
    fn known(&self, s: &Slot) -> Option<i64> {
        let i = self.layout.get(s)?;
        self.values?.get(i).map(|v| *v as i64)
    }

    fn close(&mut self) {
        self.w.close();
        self.cache.pop();
        let d = self.cache.len();
        for stack in self.binds.values_mut() {
            while stack.last().is_some_and(|(bd, _)| *bd >= d) {
                stack.pop();
            }
        }
    }

    fn bind(&mut self, v: IndexId, name: String) {
        let d = self.depth();
        self.binds.entry(v).or_default().push((d, name));
    }

    fn var(&mut self, v: IndexId) -> String {
        match self.binds.get(&v).and_then(|s| s.last()) {
            Some((_, n)) => n.clone(),
            None => {
                self.bug = Some(format!(
                    "index `{}` of loss `{}` is unbound in generated code",
                    self.ir.indices[v].name, self.ir.name
                ));
                "0".into()
            }
        }
    }

    fn m(&mut self, s: Slot) -> String {
        let i = self.layout.slot(s);
        meta_value(i, self.values)
    }

    fn lo(&mut self, v: IndexId) -> String {
        self.m(Slot::Lo {
            loss: self.li,
            index: v,
        })
    }

    fn ext(&mut self, v: IndexId) -> String {
        self.m(Slot::Extent {
            loss: self.li,
            index: v,
        })
    }

    /// The number of assignments of `vars`, as an i32 expression.
    fn count(&mut self, vars: &[IndexId]) -> String {
        if vars.is_empty() {
            return "1".into();
        }
        let parts: Vec<String> = vars.iter().map(|v| self.ext(*v)).collect();
        format!("({})", parts.join(" * "))
    }

    /// Binds `vars` from a row-major linear index held in `linear`. (Divisors are at least
    /// 1: with an empty range the code never runs, but a literal zero divisor would not
    /// compile.)
    fn decompose(&mut self, vars: &[IndexId], linear: &str) {
        if vars.is_empty() {
            return;
        }
        let q = self.name("q");
        self.w.line(format!("var {q}: i32 = {linear};"));
        for v in vars.iter().rev() {
            let (lo, ext) = (self.lo(*v), self.ext(*v));
            let n = self.name(&format!("i{v}_"));
            self.w
                .line(format!("let {n} = {lo} + {q} % max({ext}, 1);"));
            self.w.line(format!("{q} = {q} / max({ext}, 1);"));
            self.bind(*v, n);
        }
    }

    /// Binds `vars` to mutable counters starting at the row-major index `start`, and
    /// returns how to advance them by `stride` (a multiple-digit add with carries, so that
    /// the loop does no division: GPUs and CPU SIMD lack fast integer division).
    fn counters(&mut self, vars: &[IndexId], start: &str, stride: usize) -> Vec<String> {
        self.counters_by(vars, start, &[stride])
            .pop()
            .unwrap_or_default()
    }

    /// [`Self::counters`] with several strides: one list of advancing lines per stride.
    fn counters_by(
        &mut self,
        vars: &[IndexId],
        start: &str,
        strides: &[usize],
    ) -> Vec<Vec<String>> {
        if vars.is_empty() {
            return strides.iter().map(|_| vec![]).collect();
        }
        // Each stride's digits in the mixed radix of the extents, once.
        let mut digits_by: Vec<Vec<String>> = Vec::new();
        for stride in strides {
            let digits: Vec<String> = vars.iter().map(|_| self.name("d")).collect();
            let rest = self.name("r");
            self.w.line(format!("var {rest}: i32 = {stride};"));
            for (v, d) in vars.iter().zip(&digits).rev() {
                let ext = self.ext(*v);
                self.w.line(format!("let {d} = {rest} % max({ext}, 1);"));
                self.w.line(format!("{rest} = {rest} / max({ext}, 1);"));
            }
            digits_by.push(digits);
        }
        let q = self.name("q");
        self.w.line(format!("var {q}: i32 = {start};"));
        let mut names = Vec::new();
        for v in vars.iter().rev() {
            let (lo, ext) = (self.lo(*v), self.ext(*v));
            let n = self.name(&format!("c{v}_"));
            self.w
                .line(format!("var {n}: i32 = {lo} + {q} % max({ext}, 1);"));
            self.w.line(format!("{q} = {q} / max({ext}, 1);"));
            names.push((*v, n));
        }
        names.reverse();
        let mut out = Vec::new();
        for digits in &digits_by {
            // In braces: the same advance may be written more than once in a block.
            let mut advance = vec!["{".to_string()];
            let carry = self.name("carry");
            advance.push(format!("    var {carry}: i32 = 0;"));
            for ((v, n), d) in names.iter().zip(digits).rev() {
                let (lo, ext) = (self.lo(*v), self.ext(*v));
                advance.push(format!("    {n} = {n} + {d} + {carry};"));
                advance.push(format!("    {carry} = select(0, 1, {n} >= {lo} + {ext});"));
                advance.push(format!("    {n} = {n} - {carry} * {ext};"));
            }
            advance.push("}".to_string());
            out.push(advance);
        }
        for (v, n) in names {
            self.bind(v, n);
        }
        out
    }

    fn lookup(&self, n: NodeIndex) -> Option<String> {
        let free = &self.ir.graph[n].free;
        for d in (0..self.cache.len()).rev() {
            if let Some(name) = self.cache[d].get(&n) {
                // Valid only if none of its indices was rebound deeper since.
                if free.iter().all(|v| {
                    self.binds
                        .get(v)
                        .and_then(|s| s.last())
                        .is_none_or(|(bd, _)| *bd <= d)
                }) {
                    return Some(name.clone());
                }
            }
        }
        None
    }

    fn comment(&self, n: NodeIndex) -> String {
        format!("// {}", self.ir.origin.locate(self.ir.graph[n].span))
    }

    fn poly(&mut self, p: &Poly) -> String {
        let mut parts = Vec::new();
        for (mono, c) in &p.terms {
            let mut f: Vec<String> = mono
                .iter()
                .map(|d| {
                    let dim = self.ir.dims[*d].name.clone();
                    self.m(Slot::Dim { loss: self.li, dim })
                })
                .collect();
            if *c != 1 || f.is_empty() {
                f.insert(0, format!("{c}"));
            }
            parts.push(f.join(" * "));
        }
        if parts.is_empty() {
            "0".into()
        } else {
            format!("({})", parts.join(" + "))
        }
    }

    fn index(&mut self, e: &IndexExpr) -> String {
        let mut parts = Vec::new();
        if !e.offset.terms.is_empty() {
            parts.push(self.poly(&e.offset));
        }
        for (c, t) in &e.terms {
            let x = match t {
                IndexTerm::Var(v) => self.var(*v),
                IndexTerm::Gather(p, idx) => {
                    format!("i32({})", self.read(Tensor::Param(*p), idx, None))
                }
            };
            parts.push(if *c == 1 { x } else { format!("{c} * {x}") });
        }
        if parts.is_empty() {
            "0".into()
        } else {
            format!("({})", parts.join(" + "))
        }
    }

    /// An element of a tensor of the arena; every subscript is bounds-checked, and an
    /// out-of-range one raises the read's site in the error word.
    fn read(&mut self, t: Tensor, idx: &[IndexExpr], at: Option<NodeIndex>) -> String {
        let name = match t {
            Tensor::Input(i) => self.ir.inputs[i].name.clone(),
            Tensor::Param(p) => self.ir.params[p].name.clone(),
        };
        let off = self.m(Slot::Offset {
            loss: self.li,
            tensor: name.clone(),
        });
        if idx.is_empty() {
            return format!("lc_arena[{off}]");
        }
        // Affine subscripts are checked against the shapes once, on the host, before the
        // dispatch (runtime::bind); only subscripts through gathers are checked here.
        let gathers = idx.iter().any(|e| {
            e.terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)))
        });
        let site = if gathers {
            let shown: Vec<String> = idx.iter().map(|e| self.ir.show_index(e)).collect();
            let place = at
                .map(|n| self.ir.origin.locate(self.ir.graph[n].span))
                .unwrap_or_else(|| self.ir.origin.locate(self.ir.span));
            // One number per read site, however often (four-wide loops, muted branches)
            // its code is written, so that generic and specialised kernels agree.
            let site = format!(
                "loss `{}`: `{name}[{}]` at {place}",
                self.ir.name,
                shown.join(", ")
            );
            match self.sites.iter().position(|s| *s == site) {
                Some(i) => i + 1,
                None => {
                    self.sites.push(site);
                    self.sites.len()
                }
            }
        } else {
            0
        };
        let shapes: Vec<String> = (0..idx.len())
            .map(|axis| {
                self.m(Slot::Shape {
                    loss: self.li,
                    tensor: name.clone(),
                    axis,
                })
            })
            .collect();
        let tail = self.contiguous_tail(&name, idx);
        let lead = idx.len() - tail;
        let mut lin = String::new();
        for (axis, e) in idx.iter().enumerate().take(lead) {
            let i = self.index(e);
            let n = shapes[axis].clone();
            let gathered = e
                .terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)));
            let checked = if gathered {
                format!("lc_chk({i}, {n}, {site}u)")
            } else {
                i
            };
            lin = if axis == 0 {
                checked
            } else {
                format!("({lin}) * {n} + {checked}")
            };
        }
        if tail > 0 {
            // The trailing axes are exactly the loop's indices over their whole ranges:
            // the address is the loop's linear index plus the row's base, which
            // consecutive threads read consecutively.
            let (_, linear) = self.linear.clone().unwrap_or_default();
            let span = shapes[lead..].join(" * ");
            // In the four-wide element loop, an aligned row base makes it one vec4 load.
            let known_span = (lead..idx.len())
                .map(|axis| {
                    self.known(&Slot::Shape {
                        loss: self.li,
                        tensor: name.clone(),
                        axis,
                    })
                })
                .try_fold(1i64, |a, n| n.map(|n| a * n));
            let known_off = self.known(&Slot::Offset {
                loss: self.li,
                tensor: name.clone(),
            });
            if let (Some((x4, u)), Some(sp), Some(o)) = (self.lane.clone(), known_span, known_off) {
                if sp % 4 == 0 && o % 4 == 0 {
                    let base = if lead == 0 {
                        off.to_string()
                    } else {
                        format!("{off} + ({lin}) * {span}")
                    };
                    let load = format!("lc_arena4[({base} + {x4}) / 4]");
                    if !gathers && self.bound_outside_body(&idx[..lead]) {
                        // One vec4 load for the four elements, at the top of the body.
                        let comment = at.map(|n| self.comment(n)).unwrap_or_default();
                        if let Some((_, loads)) = &mut self.shared_loads {
                            let name = match loads.iter().find(|l| l.load == load) {
                                Some(l) => l.name.clone(),
                                None => {
                                    *self.fresh += 1;
                                    let name = format!("w{}", self.fresh);
                                    loads.push(SharedLoad {
                                        load,
                                        name: name.clone(),
                                        comment,
                                    });
                                    name
                                }
                            };
                            return format!("{name}[{u}]");
                        }
                    }
                    return format!("{load}[{u}]");
                }
            }
            lin = if lead == 0 {
                linear
            } else {
                format!("({lin}) * {span} + {linear}")
            };
        }
        format!("lc_arena[{off} + {lin}]")
    }

    /// Whether every index the subscripts mention is bound outside the body of the
    /// four-wide loop being written (so that a load through them can move to its top).
    fn bound_outside_body(&self, idx: &[IndexExpr]) -> bool {
        let Some((body, _)) = &self.shared_loads else {
            return false;
        };
        let mut vs = Vec::new();
        for e in idx {
            e.vars(&mut vs);
        }
        vs.iter().all(|v| {
            self.binds
                .get(v)
                .and_then(|s| s.last())
                .is_some_and(|(d, _)| d < body)
        })
    }

    /// How many trailing subscripts of a read are exactly the indices of the loop being
    /// emitted, in order, each over the whole axis (known only in a kernel specialised to
    /// sizes); 0 when the read is not of that form.
    fn contiguous_tail(&mut self, name: &str, idx: &[IndexExpr]) -> usize {
        let (Some(values), Some((vars, _))) = (self.values, self.linear.clone()) else {
            return 0;
        };
        let m = vars.len();
        if m == 0 || idx.len() < m {
            return 0;
        }
        let lead = idx.len() - m;
        let mentions = |e: &IndexExpr| {
            let mut vs = Vec::new();
            e.vars(&mut vs);
            vs.iter().any(|v| vars.contains(v))
        };
        if idx[..lead].iter().any(mentions) {
            return 0;
        }
        let value = |layout: &Layout, s: Slot| layout.get(&s).and_then(|i| values.get(i).copied());
        for (k, v) in vars.iter().enumerate() {
            let e = &idx[lead + k];
            if e.terms != [(1, IndexTerm::Var(*v))] || !e.offset.terms.is_empty() {
                return 0;
            }
            let lo = value(
                self.layout,
                Slot::Lo {
                    loss: self.li,
                    index: *v,
                },
            );
            let ext = value(
                self.layout,
                Slot::Extent {
                    loss: self.li,
                    index: *v,
                },
            );
            let size = value(
                self.layout,
                Slot::Shape {
                    loss: self.li,
                    tensor: name.to_string(),
                    axis: lead + k,
                },
            );
            if lo != Some(0) || ext.is_none() || ext != size {
                return 0;
            }
        }
        m
    }

    /// The WGSL name holding node `n`'s value, emitting what it needs.
    fn val(&mut self, n: NodeIndex) -> String {
        if let Some(x) = self.lookup(n) {
            return x;
        }
        let node = self.ir.graph[n].clone();
        let args = operands(&self.ir.graph, n);
        let expr = match &node.op {
            Op::Const(bits) => return f32_lit(f32::from_bits(*bits)),
            Op::BoolConst(b) => return b.to_string(),
            Op::Read(t, idx) => self.read(*t, idx, Some(n)),
            Op::IndexValue(e) => format!("f32({})", self.index(e)),
            Op::EnumIs(p, v) => {
                let ParamKind::Enum(vs) = &self.ir.params[*p].kind else {
                    self.bug = Some("an enum test on a non-enum param".into());
                    return "false".into();
                };
                let k = vs.iter().position(|x| x == v).unwrap_or(0);
                let slot = self.m(Slot::Enum {
                    loss: self.li,
                    param: self.ir.params[*p].name.clone(),
                });
                format!("({slot} == {k})")
            }
            Op::Unary(f) => {
                let a = self.val(args[0]);
                unary_wgsl(*f, &a)
            }
            Op::Binary(f) => {
                let a = self.val(args[0]);
                match f {
                    BinaryFn::Pow if matches!(self.ir.graph[args[1]].op, Op::Const(c) if f32::from_bits(c) == 2.0) =>
                    {
                        format!("({a} * {a})")
                    }
                    _ => {
                        let b = self.val(args[1]);
                        binary_wgsl(*f, &a, &b)
                    }
                }
            }
            Op::Select => {
                if let Some(taken) = self.known_truth(args[0]) {
                    // A configuration choice known in a specialised kernel: only the taken
                    // branch runs (the other is walked muted, for the same slots).
                    let (keep, skip) = if taken {
                        (args[1], args[2])
                    } else {
                        (args[2], args[1])
                    };
                    self.w.open_muted(true);
                    self.cache.push(HashMap::new());
                    self.val(args[0]);
                    self.val(skip);
                    self.close();
                    return self.val(keep);
                }
                let c = self.val(args[0]);
                let a = self.val(args[1]);
                let b = self.val(args[2]);
                format!("select({b}, {a}, {c})")
            }
            Op::Clamp => {
                let x = self.val(args[0]);
                let lo = self.val(args[1]);
                let hi = self.val(args[2]);
                format!("lc_clamp({x}, {lo}, {hi})")
            }
            Op::Reduce(..) => match self.sched.hoisted_index(n) {
                Some(k) => self.table_read(k, n),
                None => return self.inline_reduce(n),
            },
        };
        let name = self.name("v");
        let comment = self.comment(n);
        self.w.line(format!("let {name} = {expr}; {comment}"));
        let d = self.depth();
        self.cache[d].insert(n, name.clone());
        name
    }

    /// The entry of hoisted table `k` for the current table indices.
    fn table_read(&mut self, k: usize, n: NodeIndex) -> String {
        let vars = self.sched.hoisted[k].table_vars.clone();
        // A table shared with an earlier reduction is read where that one was built; a
        // single shared value may be in a register.
        let k = match self.sched.hoisted[k].same_as {
            Some(src) => {
                if let Some(x) = self.lookup(self.sched.hoisted[src].node) {
                    return x;
                }
                src
            }
            None => k,
        };
        let mut lin = String::from("0");
        for (i, v) in vars.iter().enumerate() {
            let (x, lo, ext) = (self.var(*v), self.lo(*v), self.ext(*v));
            lin = if i == 0 {
                format!("({x} - {lo})")
            } else {
                format!("({lin}) * {ext} + ({x} - {lo})")
            };
        }
        let off = self.m(Slot::Table {
            loss: self.li,
            table: k,
        });
        let raw = format!("lc_scratch[{} + {off} + {lin}]", self.slice);
        if self.ir.graph[n].ty == Ty::Bool {
            format!("({raw} != 0.0)")
        } else {
            raw
        }
    }

    /// Opens one loop per index over its range, binding each; close with [`Self::close`].
    fn open_loops(&mut self, vars: &[IndexId]) {
        for v in vars {
            let (lo, ext) = (self.lo(*v), self.ext(*v));
            let x = self.name(&format!("i{v}_"));
            self.open(format!(
                "for (var {x}: i32 = {lo}; {x} < {lo} + {ext}; {x}++)"
            ));
            self.bind(*v, x);
        }
    }

    /// Counts, over every value of `body` for the indices `bound`, those smaller than and
    /// equal to `a`: a value's rank without sorting. Returns the two counters' names.
    fn count_ranks(&mut self, a: &str, body: NodeIndex, bound: &[IndexId]) -> (String, String) {
        let (less, equal) = (self.name("mless"), self.name("meq"));
        self.w.line(format!("var {less}: i32 = 0;"));
        self.w.line(format!("var {equal}: i32 = 0;"));
        self.open_loops(bound);
        let b = self.val(body);
        self.w
            .line(format!("if ({b} < {a}) {{ {less} = {less} + 1; }}"));
        self.w
            .line(format!("if ({b} == {a}) {{ {equal} = {equal} + 1; }}"));
        for _ in bound {
            self.close();
        }
        (less, equal)
    }

    /// A reduction evaluated by the current thread alone, with loops over its indices.
    fn inline_reduce(&mut self, n: NodeIndex) -> String {
        let node = self.ir.graph[n].clone();
        let Op::Reduce(kind, bound) = &node.op else {
            unreachable!("called on reductions")
        };
        let body = operands(&self.ir.graph, n)[0];
        let comment = self.comment(n);
        if *kind == ReduceFn::Median {
            return self.inline_median(n, body, bound);
        }
        let acc = self.name("acc");
        let (init, is_bool) = match kind {
            ReduceFn::All => ("true".to_string(), true),
            ReduceFn::Any => ("false".to_string(), true),
            ReduceFn::Max => ("-lc_inf()".to_string(), false),
            ReduceFn::Min => ("lc_inf()".to_string(), false),
            _ => ("0.0f".to_string(), false),
        };
        self.w.line(format!(
            "var {acc}: {} = {init}; {comment}",
            if is_bool { "bool" } else { "f32" }
        ));
        let step = |b: String| match kind {
            ReduceFn::Sum | ReduceFn::Mean => format!("{acc} = {acc} + {b};"),
            ReduceFn::Norm => format!("{acc} = {acc} + {b} * {b};"),
            ReduceFn::Max => format!("{acc} = lc_max({acc}, {b});"),
            ReduceFn::Min => format!("{acc} = lc_min({acc}, {b});"),
            ReduceFn::All => format!("{acc} = {acc} && {b};"),
            ReduceFn::Any => format!("{acc} = {acc} || {b};"),
            ReduceFn::Median => unreachable!("handled above"),
        };
        if self.known_multiple_of_4(bound) {
            // Four consecutive values per iteration, in the same order as one at a time:
            // contiguous reads load a vec4 each.
            self.open("");
            let (x4, xn) = (self.name("x"), self.count(bound));
            self.four_wide(bound, &x4, "0", &xn, false, &mut |e: &mut Self| {
                let b = e.val(body);
                e.w.line(step(b));
            });
            self.close();
        } else {
            let opened = bound.len();
            self.open_loops(bound);
            let b = self.val(body);
            self.w.line(step(b));
            for _ in 0..opened {
                self.close();
            }
        }
        let result = match kind {
            ReduceFn::Mean => {
                let c = self.count(bound);
                format!("{acc} / f32({c})")
            }
            ReduceFn::Norm => format!("sqrt({acc})"),
            _ => acc.clone(),
        };
        let name = self.name("v");
        self.w.line(format!("let {name} = {result};"));
        let d = self.depth();
        self.cache[d].insert(n, name.clone());
        name
    }

    /// The 0.5 quantile by counting ranks (no arrays needed): the value of rank ⌊(n−1)/2⌋
    /// and of rank ⌊n/2⌋, combined as torch.lerp does. NaN if any value is NaN.
    fn inline_median(&mut self, n: NodeIndex, body: NodeIndex, bound: &[IndexId]) -> String {
        let comment = self.comment(n);
        let (lo_v, hi_v, nan, cnt) = (
            self.name("mlo"),
            self.name("mhi"),
            self.name("mnan"),
            self.name("mn"),
        );
        let total = self.count(bound);
        self.w.line(format!("let {cnt} = {total}; {comment}"));
        self.w.line(format!("var {lo_v}: f32 = lc_nan();"));
        self.w.line(format!("var {hi_v}: f32 = lc_nan();"));
        self.w.line(format!("var {nan}: bool = false;"));
        self.open_loops(bound);
        let a = self.val(body);
        let (less, equal) = self.count_ranks(&a, body, bound);
        self.w
            .line(format!("if (lc_isnan({a})) {{ {nan} = true; }}"));
        let (r1, r2) = (self.name("rank"), self.name("rank"));
        self.w.line(format!("let {r1} = ({cnt} - 1) / 2;"));
        self.w.line(format!("let {r2} = {cnt} / 2;"));
        self.w.line(format!(
            "if ({less} <= {r1} && {r1} < {less} + {equal}) {{ {lo_v} = {a}; }}"
        ));
        self.w.line(format!(
            "if ({less} <= {r2} && {r2} < {less} + {equal}) {{ {hi_v} = {a}; }}"
        ));
        for _ in bound {
            self.close();
        }
        let name = self.name("v");
        self.w.line(format!(
            "let {name} = select({hi_v} - ({hi_v} - {lo_v}) * 0.5f, lc_nan(), {nan} || {cnt} == 0);"
        ));
        let d = self.depth();
        self.cache[d].insert(n, name.clone());
        name
    }

    /// The per-element stages for the current element: masks, compute, rectify, and the
    /// running partial sum and count.
    fn element(&mut self) {
        let li = self.li;
        self.w.line("var keep = true;");
        self.w.line("var zeroed = false;");
        for (mi, mask) in self.ir.masks.clone().iter().enumerate() {
            let on = self.m(Slot::MaskOn { loss: li, mask: mi });
            self.open(format!("if (keep && {on} != 0)"));
            let c = self.val(mask.cond);
            match mask.mode {
                crate::ir::MaskMode::Drop => self.w.line(format!("if ({c}) {{ keep = false; }}")),
                crate::ir::MaskMode::Zero => self.w.line(format!("if ({c}) {{ zeroed = true; }}")),
            }
            self.close();
        }
        let mut roots = vec![self.ir.compute];
        roots.extend(self.ir.rectify);
        if roots.iter().all(|r| !self.reads_through_gather(*r)) {
            // Without gathers every read is in bounds (checked on the host), so the value
            // is computed whatever the masks say, and then selected: no loads under a
            // branch, which SIMD back ends would have to mask. A masked NaN is not
            // selected, so it still never reaches the result.
            let v = self.val(self.ir.compute);
            self.w
                .line(format!("var x: f32 = select({v}, 0.0f, zeroed);"));
            if let Some(r) = self.ir.rectify {
                let eps = self.val(r);
                self.w.line(format!("x = lc_relu(x - {eps}); // rectify"));
            }
            self.w.line("part = part + select(0.0f, x, keep);");
            self.w.line("part_n = part_n + select(0u, 1u, keep);");
            return;
        }
        self.open("if (keep)");
        self.w.line("var x: f32 = 0.0f;");
        self.open("if (!zeroed)");
        let v = self.val(self.ir.compute);
        self.w.line(format!("x = {v};"));
        self.close();
        if let Some(r) = self.ir.rectify {
            let eps = self.val(r);
            self.w.line(format!("x = lc_relu(x - {eps}); // rectify"));
        }
        self.w.line("part = part + x;");
        self.w.line("part_n = part_n + 1u;");
        self.close();
    }

    /// A loop over `vars` from the linear index `start` to `end` in which each thread
    /// takes four consecutive values (`{x4} + 0..3`) per iteration, so that aligned
    /// contiguous reads load one vec4 each; `each` writes the code for one value. With
    /// `shared`, the workgroup's threads interleave (thread `lid` starts at `4 * lid` and
    /// steps by 256); otherwise the current thread walks every value alone.
    fn four_wide(
        &mut self,
        vars: &[IndexId],
        x4: &str,
        start: &str,
        end: &str,
        shared: bool,
        each: &mut dyn FnMut(&mut Self),
    ) {
        let (first, step) = if shared {
            (format!("{start} + 4 * i32(lid)"), 4 * WORKGROUP)
        } else {
            (start.to_string(), 4)
        };
        let adv = self.counters_by(vars, &first, &[1, step - 3]);
        self.open(format!(
            "for (var {x4}: i32 = {first}; {x4} < {end}; {x4} += {step})"
        ));
        let top = self.w.mark();
        let outer = (
            self.linear.take(),
            self.lane.take(),
            self.shared_loads.replace((self.depth(), Vec::new())),
        );
        for u in 0..4 {
            self.open("");
            self.linear = Some((vars.to_vec(), format!("({x4} + {u})")));
            self.lane = Some((x4.to_string(), u));
            each(self);
            self.lane = None;
            self.linear = None;
            self.close();
            for line in &adv[if u < 3 { 0 } else { 1 }] {
                self.w.line(line);
            }
        }
        let loads = self.shared_loads.take().map(|(_, l)| l).unwrap_or_default();
        let lets: Vec<String> = loads
            .iter()
            .map(|l| format!("let {} = {}; {}", l.name, l.load, l.comment))
            .collect();
        self.w.insert(top, &lets);
        (self.linear, self.lane, self.shared_loads) = outer;
        self.close();
    }

    /// Whether, in a kernel specialised to sizes, the number of assignments of `vars` is a
    /// positive multiple of 4 (a loop over them can be four-wide). Allocates the ranges'
    /// slots in the generic kernel too, so that both lay out the same slots whichever
    /// loop follows.
    fn known_multiple_of_4(&mut self, vars: &[IndexId]) -> bool {
        let mut known = Some(1i64);
        for v in vars {
            self.lo(*v);
            self.ext(*v);
            let e = self.known(&Slot::Extent {
                loss: self.li,
                index: *v,
            });
            known = known.zip(e).map(|(a, e)| a * e);
        }
        !vars.is_empty() && known.is_some_and(|n| n >= 4 && n % 4 == 0)
    }

    /// `for (e = start; e < end; e += stride)` over the elements, one at a time: the
    /// stages for each, with the element indices advanced by carries.
    fn element_loop(&mut self, ev: &[IndexId], start: &str, end: &str, stride: usize) {
        let advance = self.counters(ev, start, stride);
        self.open(format!(
            "for (var e: i32 = {start}; e < {end}; e += {stride})"
        ));
        self.linear = Some((ev.to_vec(), "e".into()));
        self.element();
        self.linear = None;
        for line in advance {
            self.w.line(line);
        }
        self.close();
    }

    /// Whether evaluating `n` reads anything through a gather (whose index is data, and
    /// checked as it is read).
    fn reads_through_gather(&self, n: NodeIndex) -> bool {
        use petgraph::visit::{Dfs, Reversed, Walker};
        let rev = Reversed(&self.ir.graph);
        let gathered = |e: &IndexExpr| {
            e.terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)))
        };
        Dfs::new(rev, n)
            .iter(rev)
            .any(|m| match &self.ir.graph[m].op {
                Op::Read(_, idx) => idx.iter().any(gathered),
                Op::IndexValue(e) => gathered(e),
                _ => false,
            })
    }

    /// `fn loss_N(item, gitem, lid, slice)`: one work item of this loss. Two modes, chosen
    /// by the host from the sizes: rows shared by the workgroup (hoisted tables computed
    /// cooperatively, elements streamed by all threads), or, for small rows, one row per
    /// thread, with no barrier at all until the partial sums are combined.
    fn loss_fn(&mut self) {
        let li = self.li;
        self.w.line(format!(
            "// loss {} ({})",
            self.ir.name,
            self.ir.origin.locate(self.ir.span)
        ));
        for line in self.ir.doc.lines() {
            self.w.line(format!("/// {line}"));
        }
        self.open(format!(
            "fn loss_{li}(item: i32, gitem: i32, lid: u32, slice: i32)"
        ));
        self.w.line("var part: f32 = 0.0f;");
        self.w.line("var part_n: u32 = 0u;");
        // Enum slots first, so that a specialised kernel knows every configuration choice
        // before it decides which hoisted tables are needed.
        for p in &self.ir.params {
            if matches!(p.kind, ParamKind::Enum(_)) {
                self.layout.slot(Slot::Enum {
                    loss: li,
                    param: p.name.clone(),
                });
            }
        }
        let rows = self.sched.row_vars.clone();
        let hoisted = self.sched.hoisted.clone();
        let ev = self.sched.elem_vars.clone();
        let elems = self.m(Slot::Elems { loss: li });
        let mode = self.m(Slot::RowPerThread { loss: li });
        let n_rows = self.m(Slot::Rows { loss: li });
        let slice_size = self.m(Slot::SliceSize);

        let known_mode = self.known(&Slot::RowPerThread { loss: li }).map(|m| m != 0);
        self.open_if(format!("{mode} != 0"), known_mode);
        self.w.line(format!("let row = item * {mode} + i32(lid);"));
        self.open(format!("if (i32(lid) < {mode} && row < {n_rows})"));
        self.w.line(format!(
            "let tslice = slice + i32(lid) * ({slice_size} / {WORKGROUP});"
        ));
        self.slice = "tslice";
        self.decompose(&rows, "row");
        for (k, h) in hoisted.iter().enumerate() {
            if h.same_as.is_some() {
                continue;
            }
            let needed = self.table_needed(k);
            self.w.open_muted(!needed);
            self.cache.push(HashMap::new());
            let node = self.ir.graph[h.node].clone();
            self.w.line(format!(
                "// hoisted, this thread's row: {} {}",
                crate::ir::dot::op_label(self.ir, &node.op),
                self.comment(h.node)
            ));
            let size = self.count(&h.table_vars);
            let off = self.m(Slot::Table { loss: li, table: k });
            let t = self.name("t");
            self.open(format!("for (var {t}: i32 = 0; {t} < {size}; {t}++)"));
            self.decompose(&h.table_vars, &t);
            let r = self.inline_reduce(h.node);
            let r = if node.ty == Ty::Bool {
                format!("select(0.0f, 1.0f, {r})")
            } else {
                r
            };
            self.w
                .line(format!("lc_scratch[tslice + {off} + {t}] = {r};"));
            self.close();
            self.close();
        }
        if self.known_multiple_of_4(&ev) {
            // Four consecutive elements per iteration: contiguous reads load a vec4 each.
            self.four_wide(&ev, "e4", "0", &elems, false, &mut |e: &mut Self| {
                e.element()
            });
        } else {
            self.element_loop(&ev, "0", &elems, 1);
        }
        self.close();
        self.slice = "slice";
        self.close();

        self.open_else(known_mode);
        let cpr = self.m(Slot::ChunksPerRow { loss: li });
        self.w.line(format!("let row = item / {cpr};"));
        self.w.line(format!("let chunk = item % {cpr};"));
        self.decompose(&rows, "row");
        for (k, h) in hoisted.iter().enumerate() {
            if h.same_as.is_some() {
                continue;
            }
            if self.table_needed(k) {
                self.table(k, h.node, &h.table_vars);
            } else {
                self.w.open_muted(true);
                self.cache.push(HashMap::new());
                self.table(k, h.node, &h.table_vars);
                self.close();
            }
        }
        // Stream this chunk of the row's elements.
        self.w.line(format!("let e0 = chunk * {CHUNK};"));
        self.w.line(format!("let e1 = min(e0 + {CHUNK}, {elems});"));
        if self.known_multiple_of_4(&ev) {
            // Four consecutive elements per thread and iteration, so that contiguous
            // reads load a vec4 each: a quarter of the load instructions.
            self.four_wide(&ev, "e4", "e0", "e1", true, &mut |e: &mut Self| e.element());
        } else {
            self.element_loop(&ev, "e0 + i32(lid)", "e1", WORKGROUP);
        }
        self.close();

        // A row of one element shared by the workgroup (a heatmap's KL per keypoint):
        // only thread 0 has a value, so no reduction is needed to publish it.
        let single = self.known(&Slot::RowPerThread { loss: li }) == Some(0)
            && self.known(&Slot::Elems { loss: li }) == Some(1);
        if single {
            self.open("if (lid == 0u)");
            self.w
                .line("atomicStore(&lc_sync[2 + 2 * gitem], lc_publish(part));");
            self.w.line("atomicStore(&lc_sync[3 + 2 * gitem], part_n);");
            self.close();
        } else {
            self.w.line("lc_red[lid] = part;");
            self.w.line("lc_cnt[lid] = part_n;");
            self.w.line("let s = lc_tree_sum_count(lid);");
            self.w.line("let c = lc_last_count;");
            self.open("if (lid == 0u)");
            self.w
                .line("atomicStore(&lc_sync[2 + 2 * gitem], lc_publish(s));");
            self.w.line("atomicStore(&lc_sync[3 + 2 * gitem], c);");
            self.close();
        }
        self.close();
        self.w.blank();
    }

    /// Computes hoisted table `k` for the current row into the scratch slice.
    fn table(&mut self, k: usize, n: NodeIndex, table_vars: &[IndexId]) {
        let node = self.ir.graph[n].clone();
        let Op::Reduce(kind, bound) = &node.op else {
            return;
        };
        let label = crate::ir::dot::op_label(self.ir, &node.op);
        self.w
            .line(format!("// hoisted: {label} {}", self.comment(n)));
        let size = self.count(table_vars);
        let off = self.m(Slot::Table {
            loss: self.li,
            table: k,
        });
        // (Small tables of small rows are built one row per thread: see loss_fn.)
        if self.values.is_some() && table_vars.is_empty() && *kind != ReduceFn::Median {
            // One value, shared: every thread ends the tree holding it, so it stays in a
            // register (no scratch, no barrier to publish it).
            let r = self.cooperative_reduce(n, *kind, bound);
            let name = self.name("h");
            let value = if node.ty == Ty::Bool {
                format!("({r} != 0.0)")
            } else {
                r
            };
            self.w
                .line(format!("let {name} = {value}; {}", self.comment(n)));
            let d = self.depth();
            self.cache[d].insert(n, name);
            return;
        }
        let t = self.name("t");
        self.open(format!("for (var {t}: i32 = 0; {t} < {size}; {t}++)"));
        self.decompose(table_vars, &t);
        let result = if *kind == ReduceFn::Median {
            self.table_median(n, bound);
            let r = self.name("r");
            self.w.line(format!("let {r} = lc_median_result;"));
            r
        } else {
            self.cooperative_reduce(n, *kind, bound)
        };
        self.w.line(format!(
            "if (lid == 0u) {{ lc_scratch[slice + {off} + {t}] = {result}; }}"
        ));
        self.close();
        self.w.line("storageBarrier();");
        self.w.line("workgroupBarrier();");
    }

    /// A reduction shared by the workgroup: each thread folds the values `lid, lid + 64,
    /// ...` of the binder space, then a tree combines the threads in a fixed order. Every
    /// thread ends with the result (an expression returned); call from uniform control
    /// flow.
    fn cooperative_reduce(&mut self, n: NodeIndex, kind: ReduceFn, bound: &[IndexId]) -> String {
        let bound = bound.to_vec();
        let body = operands(&self.ir.graph, n)[0];
        let xs = self.count(&bound);
        let xn = self.name("xn");
        self.w.line(format!("let {xn} = {xs};"));
        let init = match kind {
            ReduceFn::All => "1.0f",
            ReduceFn::Max => "-lc_inf()",
            ReduceFn::Min => "lc_inf()",
            _ => "0.0f",
        };
        let bool_body = self.ir.graph[body].ty == Ty::Bool;
        let acc = self.name("acc");
        self.w.line(format!("var {acc}: f32 = {init};"));
        // Truth values are 0 or 1, never NaN: plain min/max suffice for all/any.
        let step = |b: String| {
            let as_f = if bool_body {
                format!("select(0.0f, 1.0f, {b})")
            } else {
                b
            };
            match kind {
                ReduceFn::Sum | ReduceFn::Mean => format!("{acc} = {acc} + {as_f};"),
                ReduceFn::Norm => format!("{acc} = {acc} + {as_f} * {as_f};"),
                ReduceFn::Max | ReduceFn::Any if bool_body => {
                    format!("{acc} = max({acc}, {as_f});")
                }
                ReduceFn::Max | ReduceFn::Any => format!("{acc} = lc_max({acc}, {as_f});"),
                _ if bool_body => format!("{acc} = min({acc}, {as_f});"),
                _ => format!("{acc} = lc_min({acc}, {as_f});"),
            }
        };
        self.open("");
        if self.known_multiple_of_4(&bound) {
            // Four consecutive values per thread and iteration: contiguous reads load vec4s.
            let x4 = self.name("x");
            self.four_wide(&bound, &x4, "0", &xn, true, &mut |e: &mut Self| {
                let b = e.val(body);
                e.w.line(step(b));
            });
        } else {
            let x = self.name("x");
            let advance = self.counters(&bound, "i32(lid)", WORKGROUP);
            self.open(format!(
                "for (var {x}: i32 = i32(lid); {x} < {xn}; {x} += {WORKGROUP})"
            ));
            self.linear = Some((bound.clone(), x.clone()));
            let b = self.val(body);
            self.linear = None;
            self.w.line(step(b));
            for line in advance {
                self.w.line(line);
            }
            self.close();
        }
        self.close();
        self.w.line(format!("lc_red[lid] = {acc};"));
        let tk = match kind {
            ReduceFn::Max | ReduceFn::Any => 1,
            ReduceFn::Min | ReduceFn::All => 2,
            _ => 0,
        };
        let r = self.name("r");
        self.w.line(format!("let {r} = lc_tree(lid, {tk}u);"));
        match kind {
            ReduceFn::Mean => format!("{r} / f32({xn})"),
            ReduceFn::Norm => format!("sqrt({r})"),
            _ => r,
        }
    }

    /// A hoisted median, shared by the workgroup: each thread ranks the candidates
    /// `lid, lid + 64, ...` against every value; the values of rank ⌊(n−1)/2⌋ and ⌊n/2⌋
    /// come out of two max-reductions (NaN if any value is NaN), combined as torch.lerp.
    /// Leaves the result in `lc_median_result` (uniform: every thread reads the tree).
    fn table_median(&mut self, n: NodeIndex, bound: &[IndexId]) {
        let body = operands(&self.ir.graph, n)[0];
        let total = self.count(bound);
        let (cnt, lo_v, hi_v) = (self.name("mn"), self.name("mlo"), self.name("mhi"));
        self.w.line(format!("let {cnt} = {total};"));
        self.w.line(format!("var {lo_v}: f32 = -lc_inf();"));
        self.w.line(format!("var {hi_v}: f32 = -lc_inf();"));
        let x = self.name("x");
        self.open(format!(
            "for (var {x}: i32 = i32(lid); {x} < {cnt}; {x} += {WORKGROUP})"
        ));
        self.decompose(bound, &x);
        let a = self.val(body);
        let (less, equal) = self.count_ranks(&a, body, bound);
        self.w.line(format!("let r1 = ({cnt} - 1) / 2;"));
        self.w.line(format!("let r2 = {cnt} / 2;"));
        self.open(format!("if (lc_isnan({a}))"));
        self.w.line(format!("{lo_v} = lc_nan();"));
        self.w.line(format!("{hi_v} = lc_nan();"));
        self.close();
        self.open("else");
        self.w.line(format!(
            "if ({less} <= r1 && r1 < {less} + {equal}) {{ {lo_v} = lc_max({lo_v}, {a}); }}"
        ));
        self.w.line(format!(
            "if ({less} <= r2 && r2 < {less} + {equal}) {{ {hi_v} = lc_max({hi_v}, {a}); }}"
        ));
        self.close();
        self.close();
        self.w.line(format!("lc_red[lid] = {lo_v};"));
        let (lo_r, hi_r) = (self.name("mlor"), self.name("mhir"));
        self.w.line(format!("let {lo_r} = lc_tree(lid, 1u);"));
        self.w.line(format!("lc_red[lid] = {hi_v};"));
        self.w.line(format!("let {hi_r} = lc_tree(lid, 1u);"));
        self.w.line(format!("let lc_median_result = select({hi_r} - ({hi_r} - {lo_r}) * 0.5f, lc_nan(), {cnt} == 0);"));
    }

    /// In the last workgroup: this loss's value, weight and weighted value.
    fn finish(&mut self) {
        let li = self.li;
        let (base, items) = (
            self.m(Slot::Base { loss: li }),
            self.m(Slot::Items { loss: li }),
        );
        self.w.line(format!("// combine loss {}", self.ir.name));
        self.open("");
        self.w.line("var s: f32 = 0.0f;");
        self.w.line("var c: u32 = 0u;");
        self.open(format!(
            "for (var k: i32 = i32(lid); k < {items}; k += {WORKGROUP})"
        ));
        self.w.line(format!("let slot = 2 + 2 * ({base} + k);"));
        self.w.line("s = s + bitcast<f32>(lc_wait(slot));");
        self.w.line("c = c + lc_wait(slot + 1);");
        self.close();
        self.w.line("lc_red[lid] = s;");
        self.w.line("lc_cnt[lid] = c;");
        self.w.line("let total = lc_tree_sum_count(lid);");
        self.w.line("let count = lc_last_count;");
        self.open("if (lid == 0u)");
        self.w.line("var loss: f32;");
        self.open("if (count > 0u)");
        match self.ir.reduce {
            ReduceMode::Mean => self.w.line("loss = total / f32(count);"),
            ReduceMode::Sum => self.w.line("loss = total;"),
        }
        self.close();
        self.open("else");
        match (self.ir.empty, self.ir.reduce) {
            (Some(e), _) => {
                let v = self.val(e);
                self.w.line(format!("loss = {v}; // empty:"));
            }
            (None, ReduceMode::Mean) => self.w.line("loss = lc_nan(); // the mean of nothing"),
            (None, ReduceMode::Sum) => self.w.line("loss = 0.0f;"),
        }
        self.close();
        let w = self.val(self.ir.weight);
        self.w.line(format!("lc_out[{}] = loss;", 3 * li));
        self.w.line(format!("lc_out[{}] = {w};", 3 * li + 1));
        self.w.line(format!("lc_out[{}] = {w} * loss;", 3 * li + 2));
        self.close();
        self.close();
    }
}

/// The uniform block's slot `i`.
pub fn meta_ref(i: usize) -> String {
    format!("lc_meta.m[{}].{}", i / 4, ["x", "y", "z", "w"][i % 4])
}

/// Slot `i`: read from the uniform block, or, in a kernel specialised to one problem's
/// sizes, its value as a literal (so that the compiler folds the arithmetic on it).
fn meta_value(i: usize, values: Option<&[i32]>) -> String {
    match values.and_then(|v| v.get(i)) {
        Some(v) if *v < 0 => format!("({v})"),
        Some(v) => format!("{v}"),
        None => meta_ref(i),
    }
}

/// The fused kernel of a factory.
pub struct Generated {
    /// The WGSL module.
    pub wgsl: String,
    /// Its parameter slots.
    pub layout: Layout,
    /// Descriptions of the bounds-checked reads, by site number (1-based).
    pub sites: Vec<String>,
}

/// Writes the fused kernel for the given (already scheduled) losses: generic (sizes read
/// from the parameter block), or specialised to the parameter block's `values`.
pub fn generate(
    name: &str,
    losses: &[(&LossIr, &LossSchedule)],
    values: Option<&[i32]>,
) -> Result<Generated, String> {
    let mut layout = Layout::default();
    let mut sites = Vec::new();
    let mut fresh = 0usize;
    let mut body = Writer::default();
    let mut bug = None;
    for (li, (ir, sched)) in losses.iter().enumerate() {
        let mut e = LossEmitter::new(
            ir,
            li,
            sched,
            &mut layout,
            &mut sites,
            &mut body,
            &mut fresh,
            values,
        );
        e.loss_fn();
        bug = bug.or(e.bug.take());
    }
    // main: the item loop, then the last workgroup's combination.
    let mut main = Writer::default();
    main.line(format!("@compute @workgroup_size({WORKGROUP})"));
    main.open(
        "fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>)",
    );
    let nwg = meta_value(layout.slot(Slot::Workgroups), values);
    let total = meta_value(layout.slot(Slot::TotalItems), values);
    let slice_size = meta_value(layout.slot(Slot::SliceSize), values);
    // A static use, so that a host building its pipeline with `layout: auto` gets the
    // binding the manifest lists even when no read is aligned.
    main.line("_ = lc_arena4[0];");
    main.line("let wid = i32(wg.x);");
    main.line(format!("let slice = wid * {slice_size};"));
    main.open(format!(
        "for (var item: i32 = wid; item < {total}; item += {nwg})"
    ));
    for li in 0..losses.len() {
        let base = meta_value(layout.slot(Slot::Base { loss: li }), values);
        let items = meta_value(layout.slot(Slot::Items { loss: li }), values);
        main.open(format!("if (item >= {base} && item < {base} + {items})"));
        main.line(format!("loss_{li}(item - {base}, item, lid, slice);"));
        main.close();
    }
    main.close();
    main.open("if (lid == 0u)");
    main.line("let done = atomicAdd(&lc_sync[0], 1u);");
    main.line(format!("lc_last = select(0u, 1u, done == u32({nwg} - 1));"));
    main.close();
    main.line("let last = workgroupUniformLoad(&lc_last);");
    main.open("if (last == 1u)");
    for (li, (ir, sched)) in losses.iter().enumerate() {
        let mut e = LossEmitter::new(
            ir,
            li,
            sched,
            &mut layout,
            &mut sites,
            &mut main,
            &mut fresh,
            values,
        );
        e.finish();
        bug = bug.or(e.bug.take());
    }
    main.line("// the factory's total, in factory order");
    main.open("if (lid == 0u)");
    main.line("var total: f32 = 0.0f;");
    for li in 0..losses.len() {
        let a = meta_value(layout.slot(Slot::Anneal { loss: li }), values);
        main.line(format!(
            "total = total + lc_bits(bitcast<u32>({a})) * lc_out[{}];",
            3 * li + 2
        ));
    }
    main.line(format!("lc_out[{}] = total;", 3 * losses.len()));
    main.line("atomicStore(&lc_sync[0], 0u);");
    main.close();
    main.line("// ready for the next dispatch");
    main.open(format!(
        "for (var k: i32 = 2 + i32(lid); k < 2 + 2 * {total}; k += {WORKGROUP})"
    ));
    main.line("atomicStore(&lc_sync[k], LC_EMPTY);");
    main.close();
    main.close();
    main.close();
    if let Some(b) = bug {
        return Err(format!("internal compiler error: {b}"));
    }

    let mut w = Writer::default();
    w.line(format!(
        "// lossc fused kernel `{name}`: {} loss(es) in one dispatch.",
        losses.len()
    ));
    w.line("// Generated by lossc; each statement names the .loss line it comes from.");
    w.blank();
    w.splice(PRELUDE);
    w.blank();
    w.splice(REDUCE);
    w.blank();
    w.open("struct LcMeta");
    w.line(format!("m: array<vec4<i32>, {}>,", layout.vec4s()));
    w.close();
    w.line("@group(0) @binding(0) var<uniform> lc_meta: LcMeta;");
    w.line("@group(0) @binding(1) var<storage, read> lc_arena: array<f32>;");
    w.line("@group(0) @binding(2) var<storage, read_write> lc_scratch: array<f32>;");
    w.line("@group(0) @binding(3) var<storage, read_write> lc_sync: array<atomic<u32>>;");
    w.line("@group(0) @binding(4) var<storage, read_write> lc_out: array<f32>;");
    w.line("// The arena again, four floats at a time (for aligned contiguous reads).");
    w.line("@group(0) @binding(5) var<storage, read> lc_arena4: array<vec4<f32>>;");
    w.blank();
    w.line(
        "// A bounds-checked subscript: out of range raises `site` in the error word and reads 0.",
    );
    w.open("fn lc_chk(i: i32, n: i32, site: u32) -> i32");
    w.open("if (i < 0 || i >= n)");
    w.line("atomicMax(&lc_sync[1], site);");
    w.line("return 0;");
    w.close();
    w.line("return i;");
    w.close();
    w.blank();
    w.line("// A partial result published by another workgroup: atomics are the only memory WGSL");
    w.line("// orders between workgroups, so wait until the slot holds a value.");
    w.open("fn lc_wait(slot: i32) -> u32");
    w.open("for (var spin: u32 = 0u; spin < 100000000u; spin++)");
    w.line("let v = atomicLoad(&lc_sync[slot]);");
    w.line("if (v != LC_EMPTY) { return v; }");
    w.close();
    w.line(format!("atomicMax(&lc_sync[1], {TIMEOUT_CODE:#x}u);"));
    w.line("return 0u;");
    w.close();
    w.blank();
    w.splice(&body.finish());
    w.splice(&main.finish());
    Ok(Generated {
        wgsl: w.finish(),
        layout,
        sites,
    })
}
