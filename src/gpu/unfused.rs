//! The unfused baseline: the same IR run as an eager framework runs it, one dispatch per
//! IR operation with every intermediate materialised in GPU memory, then a pass for the
//! stages, a reduction, and the final combination. It exists to measure what fusion buys
//! (`cargo bench --bench fusion`), and its results are checked against the CPU evaluator
//! like every other kernel.

use std::collections::HashMap;

use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;
use wgpu::util::DeviceExt;

use super::Gpu;
use crate::bind::Bound;
use crate::codegen::wgsl::{PRELUDE, binary_wgsl, f32_lit, unary_wgsl};
use crate::codegen::writer::Writer;
use crate::ir::{
    BinaryFn, IndexExpr, IndexId, IndexTerm, LossIr, MaskMode, Op, ParamKind, ReduceFn, ReduceMode,
    Tensor, UnaryFn, extent, operands,
};

const WG: u32 = 64;

/// One dispatch of the plan.
struct Step {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: u32,
}

/// Every dispatch of an unfused run, ready to record.
pub struct UnfusedPlan {
    steps: Vec<Step>,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    n_losses: usize,
}

/// A kernel over the arena (binding 0) and the value buffer (binding 1), one invocation
/// per value: the prelude, the bindings, and `main` opened with `g`, the invocation's
/// index, returning at `n` and beyond.
fn elementwise_kernel(n: usize) -> Writer {
    let mut w = Writer::default();
    w.splice(PRELUDE);
    w.line("@group(0) @binding(0) var<storage, read> arena: array<f32>;");
    w.line("@group(0) @binding(1) var<storage, read_write> vals: array<f32>;");
    w.line(format!("@compute @workgroup_size({WG})"));
    w.open("fn main(@builtin(global_invocation_id) gid: vec3<u32>)");
    w.line("let g = i32(gid.x);");
    w.line(format!("if (g >= {n}) {{ return; }}"));
    w
}

/// Where each materialised node lives in the value buffer, and over which indices.
struct Slab {
    offset: usize,
    vars: Vec<IndexId>,
}

/// Builds the kernels of one loss's nodes, all sharing the value buffer.
struct LossPlan<'a> {
    b: &'a Bound<'a>,
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
                    format!("i32({})", self.read(Tensor::Param(*p), idx, names))
                }
            };
            s = format!("{s} + {c} * {x}");
        }
        format!("({s})")
    }

    fn read(&self, t: Tensor, idx: &[IndexExpr], names: &HashMap<IndexId, String>) -> String {
        let (name, shape) = match t {
            Tensor::Input(i) => (
                &self.ir.inputs[i].name,
                self.b.inputs[i]
                    .as_ref()
                    .map(|d| d.shape.clone())
                    .unwrap_or_default(),
            ),
            Tensor::Param(p) => (&self.ir.params[p].name, self.b.params[p].shape.clone()),
        };
        let off = self
            .arena_at
            .get(&(self.li, name.clone()))
            .copied()
            .unwrap_or(0);
        let mut lin = String::from("0");
        for (e, n) in idx.iter().zip(&shape) {
            lin = format!("({lin}) * {n} + {}", self.index(e, names));
        }
        format!("arena[{off} + {lin}]")
    }

    /// The value of operand `n` inside a kernel whose indices are named by `names`.
    fn operand(&self, n: NodeIndex, names: &HashMap<IndexId, String>) -> String {
        match &self.ir.graph[n].op {
            Op::Const(bits) => f32_lit(f32::from_bits(*bits)),
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

    /// The WGSL of the kernel that materialises node `n`.
    fn node_kernel(&self, n: NodeIndex) -> String {
        let node = &self.ir.graph[n];
        let slab = &self.slabs[&n];
        let mut names: HashMap<IndexId, String> = HashMap::new();
        let mut w = elementwise_kernel(self.size(&slab.vars).max(1));
        w.line("var q = g;");
        for v in slab.vars.iter().rev() {
            let name = format!("i{v}");
            w.line(format!(
                "let {name} = {} + q % {};",
                self.b.ranges[*v].0,
                self.ext(*v).max(1)
            ));
            w.line(format!("q = q / {};", self.ext(*v).max(1)));
            names.insert(*v, name);
        }
        let args = operands(&self.ir.graph, n);
        let bool_f = |x: String| format!("select(0.0f, 1.0f, {x})");
        let truth = |x: String| format!("({x} != 0.0f)");
        let value = match &node.op {
            Op::Read(t, idx) => self.read(*t, idx, &names),
            Op::IndexValue(e) => format!("f32({})", self.index(e, &names)),
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
                let (a, b) = (self.operand(args[0], &names), self.operand(args[1], &names));
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
            Op::Reduce(kind, bound) => {
                let (init, step, fin) = match kind {
                    ReduceFn::Sum => ("0.0f", "acc = acc + x;", "acc"),
                    ReduceFn::Mean => ("0.0f", "acc = acc + x;", "acc / f32(cnt)"),
                    ReduceFn::Norm => ("0.0f", "acc = acc + x * x;", "sqrt(acc)"),
                    ReduceFn::Max => ("-lc_inf()", "acc = lc_max(acc, x);", "acc"),
                    ReduceFn::Min => ("lc_inf()", "acc = lc_min(acc, x);", "acc"),
                    ReduceFn::All => ("1.0f", "acc = min(acc, x);", "acc"),
                    ReduceFn::Any => ("0.0f", "acc = max(acc, x);", "acc"),
                    // Ranked as in the fused kernel: count smaller and equal values.
                    ReduceFn::Median => ("0.0f", "", ""),
                };
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
                    w.line(step);
                }
                w.line("cnt++;");
                for _ in bound {
                    w.close();
                }
                if *kind == ReduceFn::Median {
                    "select(hi - (hi - lo) * 0.5f, lc_nan(), nan || cnt == 0)".into()
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
}

impl UnfusedPlan {
    /// Plans the unfused run of bound losses (kernels specialised to their sizes).
    pub fn new(gpu: &Gpu, bound: &[&Bound], anneal: &[f32]) -> Result<UnfusedPlan, String> {
        let d = &gpu.device;
        // The arena, laid out as the fused kernel's.
        let mut arena: Vec<f32> = Vec::new();
        let mut input_at: HashMap<String, usize> = HashMap::new();
        let mut arena_at: HashMap<(usize, String), usize> = HashMap::new();
        for (li, b) in bound.iter().enumerate() {
            for (info, data) in b.ir.inputs.iter().zip(&b.inputs) {
                let Some(data) = data else { continue };
                let at = *input_at.entry(info.name.clone()).or_insert_with(|| {
                    let at = arena.len();
                    arena.extend_from_slice(&data.data);
                    at
                });
                arena_at.insert((li, info.name.clone()), at);
            }
            for (info, data) in b.ir.params.iter().zip(&b.params) {
                if !matches!(info.kind, ParamKind::Enum(_)) {
                    arena_at.insert((li, info.name.clone()), arena.len());
                    arena.extend_from_slice(&data.data);
                }
            }
        }
        arena.push(0.0);
        // Slabs for every non-constant node, then per loss: element values, keep flags,
        // the reduced (sum, count), and the outputs.
        let mut plans = Vec::new();
        let mut total_vals = 0usize;
        for (li, b) in bound.iter().enumerate() {
            let mut p = LossPlan {
                b,
                ir: b.ir,
                arena_at: &arena_at,
                li,
                slabs: HashMap::new(),
            };
            let order = toposort(&b.ir.graph, None).map_err(|_| "cyclic IR")?;
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
        let vals = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unfused values"),
            size: (total_vals.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let arena_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("unfused arena"),
            contents: &arena
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let n_losses = bound.len();
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unfused out"),
            size: ((3 * n_losses + 1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unfused staging"),
            size: ((3 * n_losses + 1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // One explicit layout for every step: arena, values, outputs.
        let entry = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("unfused"),
            entries: &[entry(0, true), entry(1, false), entry(2, false)],
        });
        let pipeline_layout = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("unfused"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let bind_group = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("unfused"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: arena_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: vals.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: out.as_entire_binding(),
                },
            ],
        });
        let mut steps = Vec::new();
        let mut make = |wgsl: String, workgroups: u32| -> Result<(), String> {
            crate::codegen::validate::validate(&wgsl)?;
            let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("unfused"),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
            let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("unfused"),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            steps.push(Step {
                pipeline,
                bind_group: bind_group.clone(),
                workgroups: workgroups.max(1),
            });
            Ok(())
        };
        let groups = |threads: usize| (threads.max(1) as u32).div_ceil(WG);
        for (li, (p, order, elems_at, domain)) in plans.iter().enumerate() {
            for n in order {
                if p.slabs.contains_key(n) {
                    make(p.node_kernel(*n), groups(p.size(&p.slabs[n].vars)))?;
                }
            }
            // The stages over the domain: value and keep flag per element.
            let ir = p.ir;
            let mut names = HashMap::new();
            let mut w = elementwise_kernel(p.size(&ir.domain));
            w.line("var q = g;");
            for v in ir.domain.iter().rev() {
                w.line(format!(
                    "let i{v} = {} + q % {};",
                    p.b.ranges[*v].0,
                    p.ext(*v).max(1)
                ));
                w.line(format!("q = q / {};", p.ext(*v).max(1)));
                names.insert(*v, format!("i{v}"));
            }
            w.line("var keep = 1.0f;");
            w.line("var zeroed = false;");
            for (m, on) in ir.masks.iter().zip(&p.b.active_masks) {
                if !on {
                    continue;
                }
                let c = p.operand(m.cond, &names);
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
                p.operand(ir.compute, &names)
            ));
            if let Some(r) = ir.rectify {
                w.line(format!("x = lc_relu(x - {});", p.operand(r, &names)));
            }
            w.line(format!(
                "vals[{elems_at} + g] = select(0.0f, x, keep != 0.0f);"
            ));
            w.line(format!("vals[{} + g] = keep;", elems_at + domain));
            w.close();
            make(w.finish(), groups(p.size(&ir.domain)))?;
            // The reduction: one workgroup, a fixed-order tree.
            let mut w = Writer::default();
            w.splice(PRELUDE);
            w.line("@group(0) @binding(0) var<storage, read> arena: array<f32>;");
            w.line("@group(0) @binding(1) var<storage, read_write> vals: array<f32>;");
            w.line("var<workgroup> s_sum: array<f32, 256>;");
            w.line("var<workgroup> s_cnt: array<f32, 256>;");
            w.line("@compute @workgroup_size(256)");
            w.open("fn main(@builtin(local_invocation_index) lid: u32)");
            w.line("var s = 0.0f;");
            w.line("var c = 0.0f;");
            w.line(format!("for (var e = i32(lid); e < {}; e += 256) {{ s = s + vals[{elems_at} + e]; c = c + vals[{} + e]; }}", p.size(&ir.domain), elems_at + domain));
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
            make(w.finish(), 1)?;
            // The loss, its weight and weighted value.
            let mut w = Writer::default();
            w.splice(PRELUDE);
            w.line("@group(0) @binding(0) var<storage, read> arena: array<f32>;");
            w.line("@group(0) @binding(1) var<storage, read_write> vals: array<f32>;");
            w.line("@group(0) @binding(2) var<storage, read_write> out: array<f32>;");
            w.line("@compute @workgroup_size(1)");
            w.open("fn main()");
            w.line(format!("let s = vals[{}];", elems_at + 2 * domain));
            w.line(format!("let c = vals[{}];", elems_at + 2 * domain + 1));
            let empty = match (ir.empty, ir.reduce) {
                (Some(e), _) => p.operand(e, &HashMap::new()),
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
                p.operand(ir.weight, &HashMap::new())
            ));
            w.line(format!("out[{}] = loss;", 3 * li));
            w.line(format!("out[{}] = wt;", 3 * li + 1));
            w.line(format!("out[{}] = wt * loss;", 3 * li + 2));
            w.close();
            make(w.finish(), 1)?;
        }
        // The factory total.
        let mut w = Writer::default();
        w.line("@group(0) @binding(0) var<storage, read> arena: array<f32>;");
        w.line("@group(0) @binding(1) var<storage, read_write> vals: array<f32>;");
        w.line("@group(0) @binding(2) var<storage, read_write> out: array<f32>;");
        w.line("@compute @workgroup_size(1)");
        w.open("fn main()");
        w.line("var t = 0.0f;");
        for (li, a) in anneal.iter().enumerate() {
            w.line(format!("t = t + {} * out[{}];", f32_lit(*a), 3 * li + 2));
        }
        w.line(format!("out[{}] = t;", 3 * n_losses));
        w.close();
        make(w.finish(), 1)?;
        Ok(UnfusedPlan {
            steps,
            out,
            staging,
            n_losses,
        })
    }

    /// How many dispatches one run records.
    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }

    /// Records and runs every dispatch (one compute pass), then reads the results back.
    pub fn run(&self, gpu: &Gpu) -> Result<Vec<f32>, String> {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("unfused"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("unfused"),
                timestamp_writes: None,
            });
            for s in &self.steps {
                pass.set_pipeline(&s.pipeline);
                pass.set_bind_group(0, &s.bind_group, &[]);
                pass.dispatch_workgroups(s.workgroups, 1, 1);
            }
        }
        enc.copy_buffer_to_buffer(&self.out, 0, &self.staging, 0, None);
        gpu.queue.submit([enc.finish()]);
        let v = super::dispatch::read_back(gpu, &self.staging).map_err(|e| e.to_string())?;
        debug_assert_eq!(v.len(), 3 * self.n_losses + 1);
        Ok(v)
    }
}
