//! The unfused baseline's kernels: the same IR run as an eager framework runs it, one
//! kernel per IR operation with every intermediate materialised in a value buffer, then a
//! kernel for the stages, a reduction, and the final combination. It exists to measure what
//! fusion buys (`cargo bench --bench fusion`); [`crate::gpu::unfused`] runs it. Every
//! kernel is specialised to the bound sizes and validated by naga.

use std::collections::HashMap;

use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;

use super::bindings::{Access, Binding, Holds};
use super::wgsl::{PRELUDE, binary_wgsl, opaque, opaque_lit, set_zero_bits, unary_wgsl};
use super::writer::Writer;
use crate::ice::InternalError;
use crate::ir::{
    BinaryFn, IndexExpr, IndexId, IndexTerm, InputId, LossIr, MaskId, MaskMode, Op, ParamId,
    ReduceFn, ReduceMode, Tensor, TiSlice, TiVec, UnaryFn, extent, operands,
};

/// Threads per workgroup of the per-value kernels.
const WG: u32 = 64;

/// The bindings every unfused kernel shares (each declares those it uses).
pub const BINDINGS: [Binding; 3] = [
    Binding {
        number: 0,
        name: "arena",
        access: Access::Read,
        element: "f32",
        holds: Holds::Arena,
        role: "every input (once per name) and every non-enum param of every loss, f32",
        note: None,
    },
    Binding {
        number: 1,
        name: "vals",
        access: Access::ReadWrite,
        element: "f32",
        holds: Holds::Values,
        role: "every materialised node, then per loss: element values, keep flags, (sum, count)",
        note: None,
    },
    Binding {
        number: 2,
        name: "out",
        access: Access::ReadWrite,
        element: "f32",
        holds: Holds::Out,
        role: "per loss i: loss at 3i, weight at 3i+1, weighted at 3i+2; the factory total at 3n",
        note: None,
    },
];

/// One dispatch: a kernel and its workgroup count (the kernels run in order, each
/// reading what the ones before it wrote).
pub struct Step {
    /// The WGSL module, entry point `main`.
    pub wgsl: String,
    /// Workgroups to dispatch, `(workgroups, 1, 1)`; at least 1.
    pub workgroups: u32,
    /// The loop iterations its busiest invocation runs (llvmpipe bounds them).
    pub iterations: u64,
}

/// How a reduction other than a median folds its values: the accumulator `acc`'s
/// first value, its next from the value `x`, two partial results `a` and `b` combined,
/// and the result from `acc` and the number of values `cnt`.
struct Fold {
    init: &'static str,
    step: &'static str,
    combine: &'static str,
    fin: &'static str,
}

/// The [`Fold`] of `kind`; `None` for a median, which ranks its values instead, and for
/// the k-th largest, found by bisection.
fn fold(kind: ReduceFn) -> Option<Fold> {
    let (init, step, combine, fin) = match kind {
        ReduceFn::Sum => ("lc_opaque(0.0f)", "acc + x", "a + b", "acc"),
        ReduceFn::Mean => (
            "lc_opaque(0.0f)",
            "acc + x",
            "a + b",
            "acc / lc_opaque(f32(cnt))",
        ),
        ReduceFn::Norm => ("lc_opaque(0.0f)", "acc + x * x", "a + b", "sqrt(acc)"),
        ReduceFn::Max => ("-lc_inf()", "lc_max(acc, x)", "lc_max(a, b)", "acc"),
        ReduceFn::Min => ("lc_inf()", "lc_min(acc, x)", "lc_min(a, b)", "acc"),
        ReduceFn::All => ("1.0f", "min(acc, x)", "min(a, b)", "acc"),
        ReduceFn::Any => ("0.0f", "max(acc, x)", "max(a, b)", "acc"),
        ReduceFn::Prod => ("lc_opaque(1.0f)", "acc * x", "a * b", "acc"),
        ReduceFn::Median | ReduceFn::NthLargest => return None,
    };
    Some(Fold {
        init,
        step,
        combine,
        fin,
    })
}

/// Threads of a workgroup that shares one long reduction's values.
const COOP: usize = 256;
/// A reduction over more values than this (per output value) is shared by a workgroup
/// of [`COOP`] threads, one workgroup per output value.
const COOP_FROM: i64 = 4096;

/// Every kernel of an unfused run and the sizes of the buffers they share.
pub struct Unfused {
    /// The value buffer's length in f32 (binding 1); at least 1.
    pub values: usize,
    /// The output buffer's length in f32 (binding 2): `3 × losses + 1`, then the
    /// gradients asked for.
    pub outputs: usize,
    /// Where each gradient asked for lies in the output buffer: (offset, length), in the
    /// order asked.
    pub gradients: Vec<(usize, usize)>,
    /// The dispatches, in order.
    pub steps: Vec<Step>,
}

/// One loss as its unfused kernels are specialised to it: what binding its data to it
/// fixed (codegen knows the sizes, not the data).
pub struct BoundSizes<'a> {
    /// The loss.
    pub ir: &'a LossIr,
    /// The value of every dimension symbol.
    pub dims: &'a [i64],
    /// Every index variable's inclusive range `(lo, hi)`; empty when `hi < lo`.
    pub ranges: &'a TiSlice<IndexId, (i64, i64)>,
    /// Each input's shape, `None` when an optional one is absent.
    pub inputs: TiVec<InputId, Option<&'a [usize]>>,
    /// Each param's shape (enum params: empty).
    pub params: TiVec<ParamId, &'a [usize]>,
    /// Enum params' variants.
    pub enums: &'a TiSlice<ParamId, Option<String>>,
    /// Whether each `remove_nans` stage runs.
    pub active_masks: &'a TiSlice<MaskId, bool>,
}

/// A gradient of an adjoint IR (`crate::ad`) to copy out: the loss's index in the run,
/// the gradient's axes, and its node (`None`: all zeros).
pub type GradientOut = (usize, Vec<IndexId>, Option<NodeIndex>);

/// Generates the unfused run of bound losses, with the factory's anneal factors (kernels
/// specialised to their sizes). `arena_at` gives where each loss's tensors start in the
/// arena (binding 0), in f32s: `(loss, tensor name) → offset`. Each of `gradients` (nodes
/// of adjoint IRs) is written after the losses and the total, element by element over
/// its axes, row-major.
pub fn generate(
    bound: &[BoundSizes],
    arena_at: &HashMap<(usize, String), usize>,
    anneal: &[f32],
    gradients: &[GradientOut],
) -> Result<Unfused, InternalError> {
    // Slabs for every non-constant node, then per loss: element values, keep flags,
    // the reduced (sum, count), and the outputs.
    let mut plans = Vec::new();
    let mut total_vals = 0usize;
    for (li, b) in bound.iter().enumerate() {
        let mut p = LossPlan {
            b,
            ir: b.ir,
            arena_at,
            li,
            slabs: HashMap::new(),
        };
        let order = toposort(&b.ir.graph, None)
            .map_err(|_| InternalError::in_loss(&b.ir.name, None, "the IR has a cycle"))?;
        for n in &order {
            if matches!(b.ir.graph[*n].op, Op::Const(_) | Op::BoolConst(_)) {
                continue;
            }
            let vars = b.ir.graph[*n].free.clone();
            let size = p.size(&vars).max(1);
            p.slabs.insert(
                *n,
                Slab {
                    offset: total_vals,
                    vars,
                },
            );
            total_vals += size;
        }
        let domain = p.size(&b.ir.domain).max(1);
        let elems_at = total_vals;
        total_vals += 2 * domain + 2;
        plans.push((p, order, elems_at, domain));
    }
    let n_losses = bound.len();
    let mut steps = Vec::new();
    let mut make = |wgsl: String, workgroups: u32, iterations: u64| -> Result<(), InternalError> {
        let wgsl = super::wgsl::link(wgsl);
        super::validate::validate(&wgsl)?;
        steps.push(Step {
            wgsl,
            workgroups: workgroups.max(1),
            iterations,
        });
        Ok(())
    };
    let groups = |threads: usize| (threads.max(1) as u32).div_ceil(WG);
    for (p, order, elems_at, domain) in &plans {
        for n in order {
            if p.slabs.contains_key(n) {
                let size = p.size(&p.slabs[n].vars);
                match p.shared_reduction(*n) {
                    Some((wgsl, iterations)) => make(wgsl, size as u32, iterations)?,
                    None => make(p.node_kernel(*n), groups(size), p.iterations(*n))?,
                }
            }
        }
        make(
            p.stages_kernel(*elems_at, *domain),
            groups(p.size(&p.ir.domain)),
            1,
        )?;
        make(
            p.reduce_kernel(*elems_at, *domain),
            1,
            (*domain).div_ceil(256) as u64,
        )?;
        make(p.combine_kernel(*elems_at, *domain), 1, 1)?;
    }
    make(total_kernel(anneal, n_losses), 1, 1)?;
    let mut outputs = 3 * n_losses + 1;
    let mut at = Vec::new();
    for (li, axes, node) in gradients {
        let p = &plans[*li].0;
        let len = p.size(axes);
        make(p.gradient_kernel(axes, *node, outputs), groups(len), 1)?;
        at.push((outputs, len));
        outputs += len;
    }
    Ok(Unfused {
        values: total_vals.max(1),
        outputs,
        gradients: at,
        steps,
    })
}

/// The factory total: the weighted losses times their anneal factors, in factory order.
fn total_kernel(anneal: &[f32], n_losses: usize) -> String {
    let mut w = Writer::default();
    w.splice(PRELUDE);
    declare(&mut w, 3);
    w.line("@compute @workgroup_size(1)");
    w.open("fn main()");
    w.line(set_zero_bits("arena"));
    w.line("var t = 0.0f;");
    for (li, a) in anneal.iter().enumerate() {
        w.line(format!("t = t + {} * out[{}];", opaque_lit(*a), 3 * li + 2));
    }
    w.line(format!("out[{}] = t;", 3 * n_losses));
    w.close();
    w.finish()
}

/// A kernel over the arena (binding 0) and the value buffer (binding 1), one invocation
/// per value: the prelude, the bindings, and `main` opened with `g`, the invocation's
/// index, returning at `n` and beyond.
fn elementwise_kernel(n: usize) -> Writer {
    let mut w = Writer::default();
    w.splice(PRELUDE);
    declare(&mut w, 2);
    w.line(format!("@compute @workgroup_size({WG})"));
    w.open("fn main(@builtin(global_invocation_id) gid: vec3<u32>)");
    w.line(set_zero_bits("arena"));
    w.line("let g = i32(gid.x);");
    w.line(format!("if (g >= {n}) {{ return; }}"));
    w
}

/// Declares the first `n` of [`BINDINGS`].
fn declare(w: &mut Writer, n: usize) {
    for b in &BINDINGS[..n] {
        w.line(b.declaration());
    }
}

/// Where each materialised node lives in the value buffer, and over which indices.
struct Slab {
    offset: usize,
    vars: Vec<IndexId>,
}

/// Builds the kernels of one loss's nodes, all sharing the value buffer.
struct LossPlan<'a> {
    b: &'a BoundSizes<'a>,
    ir: &'a LossIr,
    arena_at: &'a HashMap<(usize, String), usize>,
    li: usize,
    slabs: HashMap<NodeIndex, Slab>,
}

impl LossPlan<'_> {
    fn ext(&self, v: IndexId) -> i64 {
        extent(self.b.ranges[v])
    }

    fn size(&self, vars: &[IndexId]) -> usize {
        vars.iter().map(|v| self.ext(*v) as usize).product()
    }

    /// Row-major linear index of `vars` (names from `names`) in a slab over `vars`.
    fn lin(&self, vars: &[IndexId], names: &HashMap<IndexId, String>) -> String {
        let mut s = String::from("0");
        for v in vars {
            s = format!(
                "({s}) * {} + ({} - {})",
                self.ext(*v),
                names[v],
                self.b.ranges[*v].0
            );
        }
        s
    }

    fn index(&self, e: &IndexExpr, names: &HashMap<IndexId, String>) -> String {
        let dims: Vec<Option<i64>> = self.b.dims.iter().copied().map(Some).collect();
        let mut s = format!("{}", e.offset.eval(&dims).unwrap_or(0));
        for (c, t) in &e.terms {
            let x = match t {
                IndexTerm::Var(v) => names[v].clone(),
                IndexTerm::Gather(p, idx) => {
                    format!("i32({})", self.read(*p, idx, names))
                }
            };
            let c = c.eval(&dims).unwrap_or(0);
            s = format!("{s} + {c} * {x}");
        }
        format!("({s})")
    }

    fn read(&self, t: Tensor, idx: &[IndexExpr], names: &HashMap<IndexId, String>) -> String {
        let (name, shape) = match t {
            Tensor::Input(i) => (
                &self.ir.inputs[i].name,
                self.b.inputs[i].unwrap_or_default(),
            ),
            Tensor::Param(p) => (&self.ir.params[p].name, self.b.params[p]),
        };
        let off = self
            .arena_at
            .get(&(self.li, name.clone()))
            .copied()
            .unwrap_or(0);
        let mut lin = String::from("0");
        for (e, n) in idx.iter().zip(shape) {
            lin = format!("({lin}) * {n} + {}", self.index(e, names));
        }
        format!("arena[{off} + {lin}]")
    }

    /// The value of operand `n` inside a kernel whose indices are named by `names`.
    fn operand(&self, n: NodeIndex, names: &HashMap<IndexId, String>) -> String {
        match &self.ir.graph[n].op {
            Op::Const(bits) => opaque_lit(f32::from_bits(*bits)),
            Op::BoolConst(b) => {
                if *b {
                    "1.0f".into()
                } else {
                    "0.0f".into()
                }
            }
            _ => {
                let s = &self.slabs[&n];
                format!("vals[{} + {}]", s.offset, self.lin(&s.vars, names))
            }
        }
    }

    /// Opens a loop per index over its range, naming each `{prefix}{index}` in `names`.
    fn open_loops(
        &self,
        w: &mut Writer,
        vars: &[IndexId],
        prefix: &str,
        names: &mut HashMap<IndexId, String>,
    ) {
        for v in vars {
            let name = format!("{prefix}{v}");
            let lo = self.b.ranges[*v].0;
            w.open(format!(
                "for (var {name}: i32 = {lo}; {name} < {}; {name}++)",
                lo + self.ext(*v)
            ));
            names.insert(*v, name);
        }
    }

    /// Names `vars`' values at the invocation's linear index `g`, row-major.
    fn decompose(&self, w: &mut Writer, vars: &[IndexId], names: &mut HashMap<IndexId, String>) {
        w.line("var q = g;");
        for v in vars.iter().rev() {
            let name = format!("i{v}");
            w.line(format!(
                "let {name} = {} + q % {};",
                self.b.ranges[*v].0,
                self.ext(*v).max(1)
            ));
            w.line(format!("q = q / {};", self.ext(*v).max(1)));
            names.insert(*v, name);
        }
    }

    /// The kernel that copies a gradient's node into the output buffer at `at`, over its
    /// axes (the node may not depend on every one), or writes zeros for no node.
    fn gradient_kernel(&self, axes: &[IndexId], node: Option<NodeIndex>, at: usize) -> String {
        let mut w = Writer::default();
        w.splice(PRELUDE);
        declare(&mut w, 3);
        w.line(format!("@compute @workgroup_size({WG})"));
        w.open("fn main(@builtin(global_invocation_id) gid: vec3<u32>)");
        w.line(set_zero_bits("arena"));
        w.line("let g = i32(gid.x);");
        w.line(format!("if (g >= {}) {{ return; }}", self.size(axes)));
        let mut names: HashMap<IndexId, String> = HashMap::new();
        self.decompose(&mut w, axes, &mut names);
        let value = match node {
            Some(n) => self.operand(n, &names),
            None => "0.0f".into(),
        };
        w.line(format!("out[{at} + g] = {value};"));
        w.close();
        w.finish()
    }

    /// The loop iterations of [`Self::node_kernel`]'s invocations for node `n`: its
    /// reduction's values (squared, for a median's ranks), or 1.
    fn iterations(&self, n: NodeIndex) -> u64 {
        match &self.ir.graph[n].op {
            Op::Reduce(kind, bound) => {
                let total = self.size(bound) as u64;
                match kind {
                    ReduceFn::Median => total.saturating_mul(total.saturating_add(1)),
                    ReduceFn::NthLargest => total.saturating_mul(32),
                    _ => total,
                }
            }
            _ => 1,
        }
    }

    /// For a reduction over more than [`COOP_FROM`] values per output value (not a
    /// median, whose ranks need every pair), the kernel in which one workgroup of
    /// [`COOP`] threads computes each output value: thread `t` reduces values
    /// `t, t + COOP, ...` in order, then a fixed-order tree combines the threads. With
    /// its loop iterations per invocation.
    fn shared_reduction(&self, n: NodeIndex) -> Option<(String, u64)> {
        let Op::Reduce(kind, bound) = &self.ir.graph[n].op else {
            return None;
        };
        let total = self.size(bound);
        let slab = &self.slabs[&n];
        let outputs = self.size(&slab.vars).max(1);
        if (total as i64) <= COOP_FROM || outputs > 65_535 {
            return None;
        }
        let Fold {
            init,
            step,
            combine,
            fin,
        } = fold(*kind)?;
        let mut w = Writer::default();
        w.splice(PRELUDE);
        declare(&mut w, 2);
        w.line(format!("var<workgroup> s_acc: array<f32, {COOP}>;"));
        w.line(format!("@compute @workgroup_size({COOP})"));
        w.open(
            "fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>)",
        );
        w.line(set_zero_bits("arena"));
        w.line("let g = i32(wg.x);");
        let mut names: HashMap<IndexId, String> = HashMap::new();
        self.decompose(&mut w, &slab.vars, &mut names);
        w.line(format!("var acc: f32 = {init};"));
        w.open(format!("for (var e = i32(lid); e < {total}; e += {COOP})"));
        w.line("var r = e;");
        let mut inner = names.clone();
        for v in bound.iter().rev() {
            let name = format!("b{v}");
            w.line(format!(
                "let {name} = {} + r % {};",
                self.b.ranges[*v].0,
                self.ext(*v).max(1)
            ));
            w.line(format!("r = r / {};", self.ext(*v).max(1)));
            inner.insert(*v, name);
        }
        let args = operands(&self.ir.graph, n);
        w.line(format!("let x = {};", self.operand(args[0], &inner)));
        w.line(format!("acc = {step};"));
        w.close();
        w.line("s_acc[lid] = acc;");
        w.line("workgroupBarrier();");
        w.open(format!("for (var k = {}u; k > 0u; k = k >> 1u)", COOP / 2));
        w.open("if (lid < k)");
        w.line("let a = s_acc[lid];");
        w.line("let b = s_acc[lid + k];");
        w.line(format!("s_acc[lid] = {combine};"));
        w.close();
        w.line("workgroupBarrier();");
        w.close();
        w.open("if (lid == 0u)");
        w.line("let acc = s_acc[0];");
        w.line(format!("let cnt = {total};"));
        w.line(format!(
            "vals[{} + {}] = {fin};",
            slab.offset,
            self.lin(&slab.vars, &names)
        ));
        w.close();
        w.close();
        Some((w.finish(), total.div_ceil(COOP) as u64))
    }

    /// The WGSL of the kernel that materialises node `n`.
    fn node_kernel(&self, n: NodeIndex) -> String {
        let node = &self.ir.graph[n];
        let slab = &self.slabs[&n];
        let mut names: HashMap<IndexId, String> = HashMap::new();
        let mut w = elementwise_kernel(self.size(&slab.vars).max(1));
        self.decompose(&mut w, &slab.vars, &mut names);
        let args = operands(&self.ir.graph, n);
        let bool_f = |x: String| format!("select(0.0f, 1.0f, {x})");
        let truth = |x: String| format!("({x} != 0.0f)");
        let value = match &node.op {
            Op::Read(t, idx) => self.read(*t, idx, &names),
            Op::IndexValue(e) => opaque(&format!("f32({})", self.index(e, &names))),
            Op::EnumIs(p, v) => {
                let on = self.b.enums[*p].as_deref() == Some(v.as_str());
                if on { "1.0f".into() } else { "0.0f".into() }
            }
            // Truth values are stored as 0.0 or 1.0: converted to `bool` for the
            // operations that take one, and back for those that give one.
            Op::Unary(f) => {
                let a = self.operand(args[0], &names);
                match f {
                    UnaryFn::Not => bool_f(unary_wgsl(*f, &truth(a))),
                    UnaryFn::IsNan => bool_f(unary_wgsl(*f, &a)),
                    _ => unary_wgsl(*f, &a),
                }
            }
            Op::Binary(f) => {
                let a = self.operand(args[0], &names);
                // The same value twice (`x - x`): hidden anew, or the shader compiler may
                // fold the operation (see `lc_opaque` in the prelude).
                let b = if args[1] == args[0] {
                    opaque(&a)
                } else {
                    self.operand(args[1], &names)
                };
                match f {
                    BinaryFn::And | BinaryFn::Or => bool_f(binary_wgsl(*f, &truth(a), &truth(b))),
                    BinaryFn::Eq
                    | BinaryFn::Ne
                    | BinaryFn::Lt
                    | BinaryFn::Le
                    | BinaryFn::Gt
                    | BinaryFn::Ge => bool_f(binary_wgsl(*f, &a, &b)),
                    _ => binary_wgsl(*f, &a, &b),
                }
            }
            Op::Select => {
                let (c, a, b) = (
                    self.operand(args[0], &names),
                    self.operand(args[1], &names),
                    self.operand(args[2], &names),
                );
                format!("select({b}, {a}, {})", truth(c))
            }
            Op::Clamp => {
                let (x, lo, hi) = (
                    self.operand(args[0], &names),
                    self.operand(args[1], &names),
                    self.operand(args[2], &names),
                );
                format!("lc_clamp({x}, {lo}, {hi})")
            }
            Op::Const(_) | Op::BoolConst(_) => self.operand(n, &names),
            // The operand's slab read at the given indices.
            Op::At(map) => {
                let mut at = names.clone();
                for (v, e) in map {
                    at.insert(*v, format!("({})", self.index(e, &names)));
                }
                self.operand(args[0], &at)
            }
            // The k-th largest by bisection on the keys, as in the fused kernel.
            Op::Reduce(ReduceFn::NthLargest, bound) => {
                let total: i64 = bound.iter().map(|v| self.ext(*v)).product();
                let count = self.operand(args[1], &names);
                w.line(format!("let k = max(1, i32(min({count}, f32({total}))));"));
                w.line("var key = 0u;");
                w.open("for (var bit: i32 = 31; bit >= 0; bit--)");
                w.line("let cand = key | (1u << u32(bit));");
                w.line("var ge = 0;");
                let mut inner = names.clone();
                self.open_loops(&mut w, bound, "b", &mut inner);
                w.line(format!(
                    "if (lc_key({}) >= cand) {{ ge++; }}",
                    self.operand(args[0], &inner)
                ));
                for _ in bound {
                    w.close();
                }
                w.line("if (ge >= k) { key = cand; }");
                w.close();
                format!("select(lc_unkey(key), -lc_inf(), {total} == 0)")
            }
            Op::Reduce(kind, bound) => {
                // A median is ranked as in the fused kernel: count smaller and equal
                // values.
                let Fold {
                    init, step, fin, ..
                } = fold(*kind).unwrap_or(Fold {
                    init: "0.0f",
                    step: "",
                    combine: "",
                    fin: "",
                });
                w.line(format!("var acc: f32 = {init};"));
                w.line("var cnt: i32 = 0;");
                w.line("var lo = lc_nan();");
                w.line("var hi = lc_nan();");
                w.line("var nan = false;");
                let total: i64 = bound.iter().map(|v| self.ext(*v)).product();
                let mut inner = names.clone();
                self.open_loops(&mut w, bound, "b", &mut inner);
                w.line(format!("let x = {};", self.operand(args[0], &inner)));
                if *kind == ReduceFn::Median {
                    w.line("var less = 0;");
                    w.line("var eq = 0;");
                    let mut other = inner.clone();
                    self.open_loops(&mut w, bound, "c", &mut other);
                    w.line(format!("let y = {};", self.operand(args[0], &other)));
                    w.line("if (y < x) { less++; }");
                    w.line("if (y == x) { eq++; }");
                    for _ in bound {
                        w.close();
                    }
                    w.line("if (lc_isnan(x)) { nan = true; }");
                    w.line(format!("if (less <= ({total} - 1) / 2 && ({total} - 1) / 2 < less + eq) {{ lo = x; }}"));
                    w.line(format!(
                        "if (less <= {total} / 2 && {total} / 2 < less + eq) {{ hi = x; }}"
                    ));
                } else {
                    w.line(format!("acc = {step};"));
                }
                w.line("cnt++;");
                for _ in bound {
                    w.close();
                }
                if *kind == ReduceFn::Median {
                    "select(lc_median_of(lo, hi), lc_nan(), nan || cnt == 0)".into()
                } else {
                    fin.into()
                }
            }
        };
        w.line(format!(
            "vals[{} + {}] = {value};",
            slab.offset,
            self.lin(&slab.vars, &names)
        ));
        w.close();
        w.finish()
    }
    /// The stages over the domain: each element's value and keep flag, at `elems_at` and
    /// `elems_at + domain` in the value buffer.
    fn stages_kernel(&self, elems_at: usize, domain: usize) -> String {
        let ir = self.ir;
        let mut names = HashMap::new();
        let mut w = elementwise_kernel(self.size(&ir.domain));
        w.line("var q = g;");
        for v in ir.domain.iter().rev() {
            w.line(format!(
                "let i{v} = {} + q % {};",
                self.b.ranges[*v].0,
                self.ext(*v).max(1)
            ));
            w.line(format!("q = q / {};", self.ext(*v).max(1)));
            names.insert(*v, format!("i{v}"));
        }
        w.line("var keep = 1.0f;");
        w.line("var zeroed = false;");
        for (m, on) in ir.masks.iter().zip(self.b.active_masks) {
            if !on {
                continue;
            }
            let c = self.operand(m.cond, &names);
            match m.mode {
                MaskMode::Drop => w.line(format!(
                    "if (keep != 0.0f && {c} != 0.0f) {{ keep = 0.0f; }}"
                )),
                MaskMode::Zero => w.line(format!(
                    "if (keep != 0.0f && {c} != 0.0f) {{ zeroed = true; }}"
                )),
            }
        }
        w.line(format!(
            "var x = select({}, 0.0f, zeroed);",
            self.operand(ir.compute, &names)
        ));
        if let Some(r) = ir.rectify {
            w.line(format!("x = lc_relu(x - {});", self.operand(r, &names)));
        }
        w.line(format!(
            "vals[{elems_at} + g] = select(0.0f, x, keep != 0.0f);"
        ));
        w.line(format!("vals[{} + g] = keep;", elems_at + domain));
        w.close();
        w.finish()
    }

    /// The reduction of the element values and keep flags to (sum, count): one
    /// workgroup, a fixed-order tree.
    fn reduce_kernel(&self, elems_at: usize, domain: usize) -> String {
        let mut w = Writer::default();
        w.splice(PRELUDE);
        declare(&mut w, 2);
        w.line("var<workgroup> s_sum: array<f32, 256>;");
        w.line("var<workgroup> s_cnt: array<f32, 256>;");
        w.line("@compute @workgroup_size(256)");
        w.open("fn main(@builtin(local_invocation_index) lid: u32)");
        w.line(set_zero_bits("arena"));
        w.line("var s = 0.0f;");
        w.line("var c = 0.0f;");
        w.line(format!("for (var e = i32(lid); e < {}; e += 256) {{ s = s + vals[{elems_at} + e]; c = c + vals[{} + e]; }}", self.size(&self.ir.domain), elems_at + domain));
        w.line("s_sum[lid] = s;");
        w.line("s_cnt[lid] = c;");
        w.line("workgroupBarrier();");
        w.open("for (var k = 128u; k > 0u; k = k >> 1u)");
        w.line("if (lid < k) { s_sum[lid] = s_sum[lid] + s_sum[lid + k]; s_cnt[lid] = s_cnt[lid] + s_cnt[lid + k]; }");
        w.line("workgroupBarrier();");
        w.close();
        w.line(format!(
            "if (lid == 0u) {{ vals[{} ] = s_sum[0]; vals[{}] = s_cnt[0]; }}",
            elems_at + 2 * domain,
            elems_at + 2 * domain + 1
        ));
        w.close();
        w.finish()
    }

    /// The loss, its weight and weighted value, from (sum, count).
    fn combine_kernel(&self, elems_at: usize, domain: usize) -> String {
        let (ir, li) = (self.ir, self.li);
        let mut w = Writer::default();
        w.splice(PRELUDE);
        declare(&mut w, 3);
        w.line("@compute @workgroup_size(1)");
        w.open("fn main()");
        w.line(set_zero_bits("arena"));
        w.line(format!("let s = vals[{}];", elems_at + 2 * domain));
        w.line(format!("let c = vals[{}];", elems_at + 2 * domain + 1));
        let empty = match (ir.empty, ir.reduce) {
            (Some(e), _) => self.operand(e, &HashMap::new()),
            (None, ReduceMode::Mean) => "lc_nan()".into(),
            (None, ReduceMode::Sum) => "0.0f".into(),
        };
        let full = if ir.reduce == ReduceMode::Mean {
            "s / c"
        } else {
            "s"
        };
        w.line(format!("let loss = select({empty}, {full}, c > 0.0f);"));
        w.line(format!(
            "let wt = {};",
            self.operand(ir.weight, &HashMap::new())
        ));
        w.line(format!("out[{}] = loss;", 3 * li));
        w.line(format!("out[{}] = wt;", 3 * li + 1));
        w.line(format!("out[{}] = wt * loss;", 3 * li + 2));
        w.close();
        w.finish()
    }
}
