//! The gradient of a run's total with respect to its inputs: each loss's adjoint IR
//! ([`crate::ad`]) evaluated by the CPU evaluator, scaled by the loss's anneal factor and
//! weight, and summed over the losses that read the input, in factory order, in f32:
//! `d total / d x = Σ_i anneal_i · weight_i · d loss_i / d x`. On the GPU the gradients
//! run fused, one forward and one backward dispatch ([`gradients_fused`]); the unfused
//! execution of the same adjoint IRs ([`gradients_unfused`], one dispatch per IR node)
//! is the baseline the benchmark measures it against.

use serde::Serialize;

use super::RunError;
use super::run::{Prepared, number_list};
use crate::ad::kernel::{GradLoss, gradient_losses};
use crate::ad::{Adjoint, adjoint};
use crate::bind::{Bound, LossValue, TensorData, rebind, rebind_shapes};
use crate::codegen::unfused::GradientOut;
use crate::diagnostics::closest;
use crate::eval;
use crate::gpu::unfused::UnfusedPlan;
use crate::ir::InputId;

/// The inputs a run differentiates its total with respect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Wrt {
    /// None: the run computes values only.
    #[default]
    Nothing,
    /// Every input of the run's losses that the data gives.
    EveryInput,
    /// These inputs, by name.
    Inputs(Vec<String>),
}

/// `d total / d input`, in the input's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gradient {
    /// The input's shape.
    pub shape: Vec<usize>,
    /// Its elements, row-major (NaN as `null` in JSON, infinities as strings).
    #[serde(serialize_with = "number_list")]
    pub data: Vec<f32>,
}

impl Gradient {
    /// Its Euclidean norm (accumulated in f64).
    pub fn norm(&self) -> f64 {
        self.data
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt()
    }

    /// The largest magnitude of its elements (NaN if one is NaN).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, x| {
            if m.is_nan() || x.is_nan() {
                f32::NAN
            } else {
                m.max(x.abs())
            }
        })
    }
}

/// The names of the inputs to differentiate with respect to, checked against the losses'
/// inputs: in the order asked, or for [`Wrt::EveryInput`] in the order the losses
/// declare them.
pub fn resolve(prepared: &[Prepared], wrt: &Wrt) -> Result<Vec<String>, RunError> {
    let mut declared: Vec<String> = Vec::new();
    let mut given: Vec<String> = Vec::new();
    let mut whole: Vec<String> = Vec::new();
    for p in prepared {
        for (info, data) in p.bound.ir.inputs.iter().zip(&p.bound.inputs) {
            if !declared.contains(&info.name) {
                declared.push(info.name.clone());
            }
            if data.is_some() && !given.contains(&info.name) {
                given.push(info.name.clone());
            }
            if info.int {
                whole.push(info.name.clone());
            }
        }
    }
    let asked = match wrt {
        Wrt::Nothing => return Ok(vec![]),
        Wrt::EveryInput => {
            given.retain(|g| !whole.contains(g));
            return Ok(given);
        }
        Wrt::Inputs(names) => names,
    };
    let mut out: Vec<String> = Vec::new();
    for name in asked {
        if !declared.contains(name) {
            let losses: Vec<String> = prepared
                .iter()
                .map(|p| format!("`{}`", p.bound.ir.name))
                .collect();
            return Err(RunError::NoSuchInput {
                name: name.clone(),
                losses: losses.join(", "),
                known: declared
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                hint: closest(name, declared.iter().map(String::as_str)).map(str::to_string),
            });
        }
        if whole.contains(name) {
            return Err(RunError::IntInput { name: name.clone() });
        }
        if !given.contains(name) {
            return Err(RunError::AbsentInput { name: name.clone() });
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// One loss's adjoint IR for the inputs asked that it reads: each as (its position in
/// the names asked, its id in the loss).
struct LossAdjoint {
    wrt: Vec<(usize, InputId)>,
    adj: Adjoint,
}

/// Each loss's adjoint (`None` for a loss that reads none of `names`).
fn adjoints(prepared: &[Prepared], names: &[String]) -> Result<Vec<Option<LossAdjoint>>, RunError> {
    prepared
        .iter()
        .map(|p| {
            let ir = p.bound.ir;
            let wrt: Vec<(usize, InputId)> = names
                .iter()
                .enumerate()
                .filter_map(|(k, name)| {
                    let i = InputId::new(ir.inputs.iter().position(|x| &x.name == name)?);
                    p.bound.inputs[i].is_some().then_some((k, i))
                })
                .collect();
            if wrt.is_empty() {
                return Ok(None);
            }
            let ids: Vec<InputId> = wrt.iter().map(|(_, i)| *i).collect();
            let adj = adjoint(ir, &ids, &p.bound.active_masks)?;
            Ok(Some(LossAdjoint { wrt, adj }))
        })
        .collect()
}

/// A zero gradient per name, in the input's shape.
fn zeros(prepared: &[Prepared], names: &[String]) -> Vec<(String, Gradient)> {
    names
        .iter()
        .map(|name| {
            let shape = prepared
                .iter()
                .find_map(|p| {
                    let i = p.bound.ir.inputs.iter().position(|x| &x.name == name)?;
                    p.bound.inputs[InputId::new(i)]
                        .as_ref()
                        .map(|d| d.shape.clone())
                })
                .unwrap_or_default();
            let len = shape.iter().product();
            (
                name.clone(),
                Gradient {
                    shape,
                    data: vec![0.0; len],
                },
            )
        })
        .collect()
}

/// Adds `scale · values` to a gradient, element by element.
fn accumulate(g: &mut Gradient, scale: f32, values: &[f32]) {
    for (t, v) in g.data.iter_mut().zip(values) {
        *t += scale * v;
    }
}

/// The scale of a loss's gradient in the total's: its anneal factor times its weight.
fn scale(p: &Prepared, weight: f32, anneal: f32) -> f32 {
    let factor = if p.annealed { anneal } else { 1.0 };
    factor * weight
}

/// The gradients of the total with respect to the inputs `names` on the CPU evaluator,
/// given each loss's weight and the anneal factor of the annealed ones.
pub fn gradients(
    prepared: &[Prepared],
    names: &[String],
    weights: &[f32],
    anneal: f32,
) -> Result<Vec<(String, Gradient)>, RunError> {
    let mut out = zeros(prepared, names);
    for ((p, weight), la) in prepared.iter().zip(weights).zip(adjoints(prepared, names)?) {
        let Some(la) = la else {
            continue;
        };
        let bound = rebind(&p.bound, &la.adj.ir)?;
        let roots: Vec<_> = la
            .adj
            .grads
            .iter()
            .map(|g| (g.axes.clone(), g.node))
            .collect();
        let values = eval::gradients(&bound, &roots)?;
        for ((k, _), g) in la.wrt.iter().zip(values) {
            accumulate(&mut out[*k].1, scale(p, *weight, anneal), &g);
        }
    }
    Ok(out)
}

/// The losses' values and the gradients of the total on the GPU, unfused: the adjoint
/// IRs run one dispatch per IR node ([`UnfusedPlan`]), the baseline the fused kernels
/// are measured against. Returns the per-loss values, the total, the gradients and the
/// dispatch count.
pub fn gradients_unfused(
    gpu: &crate::gpu::Gpu,
    prepared: &[Prepared],
    names: &[String],
    anneal: f32,
) -> Result<FusedGradients, RunError> {
    UnfusedGradientPlan::new(gpu, prepared, names, anneal)?.run(gpu)
}

/// The losses' values and the gradients of the total on the GPU, fused
/// ([`FusedGradientPlan`]): two dispatches.
pub fn gradients_fused(
    gpu: &crate::gpu::Gpu,
    kernel: &crate::codegen::Kernel,
    prepared: &[Prepared],
    names: &[String],
    anneal: f32,
    placement: crate::gpu::RowPlacement,
) -> Result<FusedGradients, RunError> {
    let options = crate::gpu::DispatchOptions {
        placement,
        ..Default::default()
    };
    FusedGradientPlan::new(gpu, kernel, prepared, names, anneal, &options)?.run(gpu)
}

/// What turns a run's raw results into values and gradients of the total: the names
/// asked, and for each gradient the GPU computes, its loss and name.
struct Assembly {
    /// A zero gradient per name asked.
    zeros: Vec<(String, Gradient)>,
    /// Per gradient computed: its loss and the position of its input in `zeros`.
    whose: Vec<(usize, usize)>,
    /// The number of losses.
    losses: usize,
    /// Each loss's anneal factor (1 when not annealed), when the GPU leaves the
    /// gradients unscaled (the unfused baseline); `None` when it stores each already
    /// times its loss's anneal factor and weight (the fused backward kernel).
    unscaled: Option<Vec<f32>>,
}

impl Assembly {
    /// `out`: the forward results (`3n + 1` floats); `slabs`: each computed gradient's
    /// elements, in `whose`'s order.
    fn assemble<'s>(
        &self,
        out: &[f32],
        slabs: impl Iterator<Item = &'s [f32]>,
        dispatches: u32,
    ) -> FusedGradients {
        let n = self.losses;
        let values: Vec<LossValue> = (0..n)
            .map(|i| LossValue {
                loss: out[3 * i],
                weight: out[3 * i + 1],
            })
            .collect();
        let mut grads = self.zeros.clone();
        for ((li, k), slab) in self.whose.iter().zip(slabs) {
            // A term already scaled is added as it is: 1 · v is v, bit for bit.
            let scale = match &self.unscaled {
                Some(factors) => factors[*li] * values[*li].weight,
                None => 1.0,
            };
            accumulate(&mut grads[*k].1, scale, slab);
        }
        FusedGradients {
            weighted: (0..n).map(|i| out[3 * i + 2]).collect(),
            values,
            total: out[3 * n],
            grads,
            dispatches,
        }
    }
}

/// Each loss's anneal factor: `anneal` where the loss is annealed, 1 elsewhere.
pub(crate) fn factors(annealed: impl IntoIterator<Item = bool>, anneal: f32) -> Vec<f32> {
    annealed
        .into_iter()
        .map(|a| if a { anneal } else { 1.0 })
        .collect()
}

/// The unfused execution of the losses' adjoint IRs, planned once and run many times.
pub struct UnfusedGradientPlan {
    plan: UnfusedPlan,
    assembly: Assembly,
}

impl UnfusedGradientPlan {
    /// Plans the run: the values and the gradients with respect to `names`.
    pub fn new(
        gpu: &crate::gpu::Gpu,
        prepared: &[Prepared],
        names: &[String],
        anneal: f32,
    ) -> Result<UnfusedGradientPlan, RunError> {
        let adjoints = adjoints(prepared, names)?;
        let rebound: Vec<Option<Bound>> = prepared
            .iter()
            .zip(&adjoints)
            .map(|(p, la)| {
                la.as_ref()
                    .map(|la| rebind(&p.bound, &la.adj.ir))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let bound: Vec<&Bound> = prepared
            .iter()
            .zip(&rebound)
            .map(|(p, r)| r.as_ref().unwrap_or(&p.bound))
            .collect();
        let factors = factors(prepared.iter().map(|p| p.annealed), anneal);
        let mut asked: Vec<GradientOut> = Vec::new();
        let mut whose: Vec<(usize, usize)> = Vec::new();
        for (li, la) in adjoints.iter().enumerate() {
            if let Some(la) = la {
                for ((k, _), g) in la.wrt.iter().zip(&la.adj.grads) {
                    asked.push((li, g.axes.clone(), g.node));
                    whose.push((li, *k));
                }
            }
        }
        let plan = UnfusedPlan::with_gradients(gpu, &bound, &factors, &asked)?;
        Ok(UnfusedGradientPlan {
            plan,
            assembly: Assembly {
                zeros: zeros(prepared, names),
                whose,
                losses: prepared.len(),
                unscaled: Some(factors),
            },
        })
    }

    /// Runs it.
    pub fn run(&self, gpu: &crate::gpu::Gpu) -> Result<FusedGradients, RunError> {
        let out = self.plan.run(gpu)?;
        let slabs = self
            .plan
            .gradients()
            .iter()
            .map(|(at, len)| &out[*at..at + len]);
        Ok(self
            .assembly
            .assemble(&out, slabs, self.plan.dispatches() as u32))
    }

    /// The dispatches of one run.
    pub fn dispatches(&self) -> usize {
        self.plan.dispatches()
    }
}

/// The fused forward and backward kernels of prepared losses, planned once and run many
/// times: the forward kernel, then one backward kernel for every gradient of every loss
/// ([`crate::ad::kernel`]), recorded in one command buffer (one dispatch when no loss's
/// value depends on the inputs asked). The backward kernel stores each loss's gradient
/// times its anneal factor and weight (that loss's term of the total's gradient);
/// [`FusedGradientPlan::run`] reads the terms back and sums each input's on the host, as
/// on the CPU.
///
/// Inputs may live in the caller's GPU buffers (`DispatchOptions::device_inputs`, on
/// lossc's device): each run copies them into the arena on the GPU, so a training loop
/// updates them between runs without a host copy. [`FusedGradientPlan::run_into`]
/// leaves the gradients' terms on the GPU too, in the caller's buffer, and
/// [`FusedGradientPlan::set_anneal`] changes the anneal factor between runs.
///
/// ```
/// use lossc::runtime::data::{Array, DataValue, Data};
/// use lossc::runtime::grad::{FusedGradientPlan, Wrt, resolve};
/// use lossc::runtime::run::prepare;
/// use wgpu::util::DeviceExt;
///
/// let text = "loss l2 {\n    input x : [N]\n    compute x[n] * x[n]\n    reduce sum\n}\n";
/// let program = lossc::sema::check(&[lossc::diagnostics::Source::new("l2.loss", text)]).program;
/// let terms = [lossc::ir::FactoryTerm::plain("l2")];
/// let gpu = lossc::gpu::gpu().expect("a GPU adapter (lavapipe will do)");
/// // The input lives on the GPU; the data given to `prepare` only says its shape.
/// let x = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
///     label: Some("x"),
///     contents: &[1.0f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
///     usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
/// });
/// let mut data = Data::new();
/// let x_shape = Array { shape: vec![3], data: vec![], typed_float: true };
/// data.insert("x".into(), DataValue::Array(x_shape));
/// let (prepared, _) = prepare(&program, &terms, &data, &vec![]).unwrap();
/// let names = resolve(&prepared, &Wrt::EveryInput).unwrap();
/// let kernel = lossc::codegen::compile(&program, "l2", &terms).unwrap();
/// let inputs = [("x", &x)];
/// let options = lossc::gpu::DispatchOptions { device_inputs: &inputs, ..Default::default() };
/// let plan = FusedGradientPlan::new(gpu, &kernel, &prepared, &names, 1.0, &options).unwrap();
/// let run = plan.run(gpu).unwrap();
/// assert_eq!(run.total, 14.0);
/// // Or change x on the GPU; the next run reads it.
/// gpu.queue.write_buffer(&x, 0, &[0u8; 4]);
/// assert_eq!(plan.run(gpu).unwrap().grads[0].1.data, [0.0, 4.0, 6.0]);
/// assert_eq!(run.grads[0].1.data, [2.0, 4.0, 6.0]); // d/dx of Σ x² is 2x
/// assert_eq!(run.dispatches, 2);
/// ```
pub struct FusedGradientPlan {
    forward: crate::gpu::Dispatch,
    backward: Option<crate::gpu::Backward>,
    /// Whether each loss is annealed.
    annealed: Vec<bool>,
    assembly: Assembly,
}

/// One term of the gradients [`FusedGradientPlan::run_into`] writes: a loss's part of
/// `d total / d input` (already times its anneal factor and weight).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GradientTerm {
    /// The input.
    pub input: String,
    /// The loss's position in the factory.
    pub term: usize,
    /// Where its elements start in the buffer, in f32s.
    pub offset: usize,
    /// How many there are (the input's elements, row-major).
    pub len: usize,
}

impl FusedGradientPlan {
    /// Plans the run of `kernel` (the forward kernel of `prepared`): the values and the
    /// gradients with respect to `names`, laid out and fed as `options` say.
    pub fn new(
        gpu: &crate::gpu::Gpu,
        kernel: &crate::codegen::Kernel,
        prepared: &[Prepared],
        names: &[String],
        anneal: f32,
        options: &crate::gpu::DispatchOptions,
    ) -> Result<FusedGradientPlan, RunError> {
        let adjoints = adjoints(prepared, names)?;
        // Each gradient loss with its forward loss and the position of its input.
        let mut losses: Vec<(usize, usize, GradLoss)> = Vec::new();
        for (li, la) in adjoints.iter().enumerate() {
            let Some(la) = la else { continue };
            for gl in gradient_losses(&la.adj)? {
                let k = la.wrt[gl.grad].0;
                losses.push((li, k, gl));
            }
        }
        let bound: Vec<&Bound> = prepared.iter().map(|p| &p.bound).collect();
        let factors = factors(prepared.iter().map(|p| p.annealed), anneal);
        let forward = crate::gpu::Dispatch::new(gpu, kernel, &bound, &factors, options)?;
        let backward = if losses.is_empty() {
            None
        } else {
            let rebound: Vec<Bound> = losses
                .iter()
                .map(|(li, _, gl)| backward_bound(&prepared[*li].bound, &gl.ir, 0.0, false))
                .collect::<Result<_, _>>()?;
            let kb = backward_kernel(
                &kernel.name,
                prepared.len(),
                losses.iter().map(|(li, _, gl)| (*li, gl)),
            )?;
            let refs: Vec<&Bound> = rebound.iter().collect();
            let forward_of: Vec<usize> = losses.iter().map(|(li, _, _)| *li).collect();
            Some(forward.backward(gpu, &kb, &refs, &forward_of, &factors)?)
        };
        Ok(FusedGradientPlan {
            forward,
            backward,
            annealed: prepared.iter().map(|p| p.annealed).collect(),
            assembly: Assembly {
                zeros: zeros(prepared, names),
                whose: losses.iter().map(|(li, k, _)| (*li, *k)).collect(),
                losses: prepared.len(),
                unscaled: None,
            },
        })
    }

    /// Writes the host data of `bound` (the same losses, shapes and params as the plan
    /// was built for) into the forward kernel's arena for the next runs; the backward
    /// kernel reads it there.
    pub fn write_inputs(
        &self,
        gpu: &crate::gpu::Gpu,
        bound: &[&Bound],
    ) -> Result<(), crate::gpu::GpuError> {
        self.forward.write_inputs(gpu, bound)
    }

    /// Sets the anneal factor of the annealed losses for the next runs (a training
    /// schedule), without compiling anything: both kernels read it from their parameter
    /// blocks.
    pub fn set_anneal(&mut self, gpu: &crate::gpu::Gpu, anneal: f32) {
        let factors = factors(self.annealed.iter().copied(), anneal);
        self.forward.set_anneal(gpu, &factors);
        if let Some(b) = &self.backward {
            b.set_anneal(gpu, &factors);
        }
    }

    /// Where [`FusedGradientPlan::run_into`] puts the gradients in the caller's buffer:
    /// one term per loss that reads an input asked for (and whose gradient depends on
    /// it), in factory order. `d total / d input` is the sum of that input's terms, in
    /// their order (a sum of one term is the term).
    pub fn gradient_terms(&self) -> Vec<GradientTerm> {
        let Some(b) = &self.backward else {
            return vec![];
        };
        self.assembly
            .whose
            .iter()
            .zip(&b.spans)
            .map(|((li, k), (offset, len))| GradientTerm {
                input: self.assembly.zeros[*k].0.clone(),
                term: *li,
                offset: *offset,
                len: *len,
            })
            .collect()
    }

    /// The f32s [`FusedGradientPlan::run_into`] writes (0 when no gradient depends on
    /// its input).
    pub fn gradient_len(&self) -> usize {
        self.backward.as_ref().map_or(0, |b| b.len())
    }

    /// Reads input `name` from `buffer` at byte `offset` from the next run on (an input
    /// planned in the caller's GPU buffers): see [`crate::gpu::Dispatch::set_device_input`].
    pub fn set_device_input(
        &mut self,
        name: &str,
        buffer: &wgpu::Buffer,
        offset: u64,
    ) -> Result<(), RunError> {
        Ok(self.forward.set_device_input(name, buffer, offset)?)
    }

    /// Runs it, leaving the gradients on the GPU: the two dispatches, then a copy of
    /// every term of the gradients ([`FusedGradientPlan::gradient_terms`]) into `grads`
    /// from byte `offset` on (a multiple of 4), a buffer on lossc's device with
    /// `COPY_DST` usage and room for [`FusedGradientPlan::gradient_len`] f32s there. Only
    /// the losses' values and the error word are read back (a few floats). The result's
    /// `grads` are empty.
    pub fn run_into(
        &self,
        gpu: &crate::gpu::Gpu,
        grads: &wgpu::Buffer,
        offset: u64,
    ) -> Result<FusedGradients, RunError> {
        let (out, d) = match &self.backward {
            Some(backward) => self
                .forward
                .run_backward_into(gpu, backward, grads, offset)?,
            None => self.forward.run(gpu)?,
        };
        let mut run = self.assembly.assemble(&out, std::iter::empty(), d);
        run.grads.clear();
        Ok(run)
    }

    /// Runs it.
    pub fn run(&self, gpu: &crate::gpu::Gpu) -> Result<FusedGradients, RunError> {
        let Some(backward) = &self.backward else {
            let (out, d) = self.forward.run(gpu)?;
            return Ok(self.assembly.assemble(&out, std::iter::empty(), d));
        };
        let (out, flat, d) = self.forward.run_backward(gpu, backward)?;
        let slabs = backward.spans.iter().map(|(at, len)| &flat[*at..at + len]);
        Ok(self.assembly.assemble(&out, slabs, d))
    }

    /// The forward kernel's dispatch (to time the forward pass alone).
    pub fn forward(&self) -> &crate::gpu::Dispatch {
        &self.forward
    }

    /// The kernels it runs (as specialised), the forward one first.
    pub fn wgsl(&self) -> String {
        let mut text = self.forward.wgsl().to_string();
        if let Some(b) = &self.backward {
            text.push_str(
                "\n// ---- the backward kernel, dispatched after the forward one ----\n\n",
            );
            text.push_str(b.wgsl());
        }
        text
    }
}

/// The backward kernel (`NAME.backward`) of the forward kernel `name` of `n` losses: the
/// gradient losses, each with its forward loss's position, which says where it reads its
/// count in the forward's results.
fn backward_kernel<'g>(
    name: &str,
    n: usize,
    losses: impl Iterator<Item = (usize, &'g GradLoss)>,
) -> Result<crate::codegen::Kernel, RunError> {
    let (irs, saved): (Vec<&crate::ir::LossIr>, Vec<crate::codegen::SavedReads>) = losses
        .map(|(li, gl)| {
            let saved = crate::codegen::SavedReads {
                weight_at: 3 * li + 1,
                count_at: gl.reads_count.then_some(3 * n + 1 + li),
            };
            (&gl.ir, saved)
        })
        .unzip();
    Ok(crate::codegen::compile_backward(
        &format!("{name}.backward"),
        &irs,
        &saved,
    )?)
}

/// A gradient loss bound to its forward loss's data: shapes only (a kernel reads the
/// elements from the forward's arena) or with the elements (for the CPU evaluator), and
/// the forward's count where the loss reads it.
pub fn backward_bound<'a>(
    forward: &Bound,
    ir: &'a crate::ir::LossIr,
    count: f32,
    with_elements: bool,
) -> Result<Bound<'a>, RunError> {
    let mut b = if with_elements {
        rebind(forward, ir)?
    } else {
        rebind_shapes(forward, ir)?
    };
    while b.params.len() < ir.params.len() {
        b.params.push(TensorData {
            shape: vec![],
            data: vec![count],
        });
        b.enums.push(None);
    }
    Ok(b)
}

/// Refuses a name in `wrt` that no loss of `terms` declares as an input, naming the
/// inputs they have (for a kernel compiled without data).
pub fn check_wrt(
    program: &crate::ir::Program,
    terms: &[crate::ir::FactoryTerm],
    wrt: &Wrt,
) -> Result<(), RunError> {
    let Wrt::Inputs(names) = wrt else {
        return Ok(());
    };
    let mut declared: Vec<String> = Vec::new();
    for t in terms {
        if let Some(ir) = program.loss(&t.loss) {
            for i in &ir.inputs {
                if i.int && names.contains(&i.name) {
                    return Err(RunError::IntInput {
                        name: i.name.clone(),
                    });
                }
                if !declared.contains(&i.name) {
                    declared.push(i.name.clone());
                }
            }
        }
    }
    for name in names {
        if !declared.contains(name) {
            return Err(RunError::NoSuchInput {
                name: name.clone(),
                losses: terms
                    .iter()
                    .map(|t| format!("`{}`", t.loss))
                    .collect::<Vec<_>>()
                    .join(", "),
                known: declared
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                hint: closest(name, declared.iter().map(String::as_str)).map(str::to_string),
            });
        }
    }
    Ok(())
}

/// One loss of a backward kernel: the gradient of a factory term's loss with respect to
/// one of its inputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackwardTerm {
    /// The term's position in the factory (its loss's in the forward kernel).
    pub term: usize,
    /// The loss's name.
    pub loss: String,
    /// The input.
    pub input: String,
}

/// The backward kernel of `terms` (compiled as forward kernel `name`) with respect to
/// the inputs `wrt`, without data, for runs in which every `remove_nans` stage runs
/// (every optional input given), as `lossc compile --grad` writes it: the kernel and
/// what each of its losses is. A term whose loss reads none of `wrt` has no loss in it,
/// nor has a gradient that does not depend on its input.
pub fn compile_backward(
    program: &crate::ir::Program,
    name: &str,
    terms: &[crate::ir::FactoryTerm],
    wrt: &Wrt,
) -> Result<CompiledBackward, RunError> {
    let mut losses: Vec<(usize, GradLoss)> = Vec::new();
    let mut differentiated = Vec::new();
    for (li, t) in terms.iter().enumerate() {
        let ir = program
            .loss(&t.loss)
            .ok_or_else(|| crate::codegen::CompileError::NoSuchLoss(t.loss.clone()))?;
        let ids: Vec<InputId> = ir
            .inputs
            .iter_enumerated()
            .filter(|(_, info)| match wrt {
                Wrt::Nothing => false,
                Wrt::EveryInput => true,
                Wrt::Inputs(names) => names.contains(&info.name),
            })
            .map(|(i, _)| i)
            .collect();
        if ids.is_empty() {
            continue;
        }
        differentiated.extend(
            ids.iter()
                .filter(|i| !ir.inputs[**i].int)
                .map(|i| (li, ir.inputs[*i].name.clone())),
        );
        let active: crate::ir::TiVec<crate::ir::MaskId, bool> =
            ir.masks.iter().map(|_| true).collect();
        let adj = adjoint(ir, &ids, &active)?;
        for gl in gradient_losses(&adj)? {
            losses.push((li, gl));
        }
    }
    let kernel = backward_kernel(name, terms.len(), losses.iter().map(|(li, gl)| (*li, gl)))?;
    let described = losses
        .iter()
        .map(|(li, gl)| BackwardTerm {
            term: *li,
            loss: terms[*li].loss.clone(),
            input: gl.ir.inputs[gl.input].name.clone(),
        })
        .collect();
    Ok(CompiledBackward {
        kernel,
        terms: described,
        wrt: differentiated,
        losses: losses.into_iter().map(|(_, gl)| gl.ir).collect(),
    })
}

/// A factory's backward kernel, as [`compile_backward`] builds it.
pub struct CompiledBackward {
    /// The kernel.
    pub kernel: crate::codegen::Kernel,
    /// What each of its losses is.
    pub terms: Vec<BackwardTerm>,
    /// Every (term, input) differentiated, in order: one that no loss is of has
    /// gradient 0 (its loss does not depend on it).
    pub wrt: Vec<(usize, String)>,
    /// Its losses' IRs.
    pub losses: Vec<crate::ir::LossIr>,
}

impl CompiledBackward {
    /// The manifest's `backward` section ([`crate::codegen::manifest::backward`]).
    pub fn manifest(&self) -> serde_json::Value {
        let losses: Vec<(&crate::ir::LossIr, usize, &str)> = self
            .losses
            .iter()
            .zip(&self.terms)
            .map(|(ir, t)| (ir, t.term, t.input.as_str()))
            .collect();
        let wrt: Vec<(usize, &str)> = self.wrt.iter().map(|(t, i)| (*t, i.as_str())).collect();
        crate::codegen::manifest::backward(&self.kernel, &losses, &wrt)
    }

    /// How each loss of the backward kernel is scheduled, as `lossc explain --grad`
    /// prints it.
    pub fn explain(&self) -> String {
        let mut out = format!(
            "backward kernel {}: {} gradient(s), one dispatch after the forward kernel\n",
            self.kernel.name,
            self.losses.len()
        );
        for (ir, s) in self.losses.iter().zip(&self.kernel.schedules) {
            out.push_str(&crate::codegen::schedule::explain(ir, s));
        }
        out
    }
}

/// What [`gradients_unfused`] and [`gradients_fused`] compute.
pub struct FusedGradients {
    /// Each loss's value and weight.
    pub values: Vec<LossValue>,
    /// Each loss's weighted value, as the GPU computed it.
    pub weighted: Vec<f32>,
    /// The factory's total.
    pub total: f32,
    /// The gradients asked for.
    pub grads: Vec<(String, Gradient)>,
    /// The dispatches of the run.
    pub dispatches: u32,
}
