//! A compiled factory as a Burn autodiff op on wgpu (feature `burn`).
//!
//! [`BurnFactory::forward`] takes Burn tensors, runs lossc's forward and backward kernels
//! on their GPU buffers (two dispatches: [`FusedGradientPlan::run_into`]) and returns the
//! factory's total as a Burn tensor whose backward step multiplies the upstream gradient
//! into the gradients the backward kernel already wrote, into Burn tensors. Nothing of
//! the inputs or gradients goes through the host: the inputs are copied into lossc's
//! arena on the GPU, the gradients out of lossc's gradient buffer into a tensor Burn
//! allocated; only the losses' values and the error word are read back (a few floats,
//! for the logs and the total).
//!
//! **The backend type.** The op runs on [`Backend`] = `Autodiff<Wgpu>` where `Wgpu` is
//! Burn's `CubeBackend<WgpuRuntime>` *without* fusion (lossc's dependency on Burn leaves
//! the `fusion` feature off). The fusion-wrapped backend does not expose its tensors'
//! buffers, so a custom kernel cannot read them: a crate that turns Burn's `fusion`
//! feature on (directly, or through `burn`'s default features) breaks this op at compile
//! time. Tensors must be on the device [`BurnGpu::device`] returns: lossc and Burn share
//! one `wgpu::Device` and one queue, so their commands are ordered by submission.

use std::collections::HashMap;
use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{
    CubeTensor, RuntimeOptions, WgpuDevice, WgpuRuntime, WgpuSetup, init_device,
};
use burn::backend::{Autodiff, TensorMetadata, Wgpu};
use burn::tensor::{DType, Device, Shape, Tensor};

use crate::gpu::{DispatchOptions, Gpu};
use crate::ir::{FactoryTerm, Program};
use crate::runtime::RunError;
use crate::runtime::data::{Array, Data, DataValue};
use crate::runtime::grad::{FusedGradientPlan, GradientTerm, Wrt, resolve};
use crate::runtime::run::prepare;

/// Burn's backend the op runs on, without autodiff: `CubeBackend<WgpuRuntime>`, no fusion.
pub type Inner = Wgpu;
/// The autodiff backend the op is written for.
pub type Backend = Autodiff<Inner>;
type Prim = CubeTensor<WgpuRuntime>;

/// One `wgpu::Device` shared by Burn and lossc: a device lossc opens and registers with
/// Burn (`init_device`), and lossc's [`Gpu`] on it. One per process ([`BurnGpu::get`]).
pub struct BurnGpu {
    wgpu_device: WgpuDevice,
    gpu: Gpu,
}

static BURN_GPU: OnceLock<Result<BurnGpu, String>> = OnceLock::new();

impl BurnGpu {
    /// The process's shared device, opened on first use: the adapter wgpu prefers, with
    /// every feature it has (Burn picks its kernels from the adapter's features) and its
    /// limits, registered with Burn as a device of its own (`WgpuDevice::Existing`), so
    /// that it never clashes with Burn's default device.
    pub fn get() -> Result<&'static BurnGpu, RunError> {
        BURN_GPU
            .get_or_init(|| pollster::block_on(BurnGpu::open()))
            .as_ref()
            .map_err(|e| RunError::Burn(e.clone()))
    }

    async fn open() -> Result<BurnGpu, String> {
        let (instance, adapter) = crate::gpu::preferred_adapter()
            .await
            .map_err(|e| e.to_string())?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("lossc + burn"),
                required_features: adapter
                    .features()
                    .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| format!("cannot open the GPU device for Burn and lossc: {e}"))?;
        let info = adapter.get_info();
        let setup = WgpuSetup {
            instance,
            adapter,
            device: device.clone(),
            queue: queue.clone(),
            backend: info.backend,
        };
        let wgpu_device = init_device(setup, RuntimeOptions::default());
        Ok(BurnGpu {
            wgpu_device,
            gpu: Gpu::from_device(device, queue, info),
        })
    }

    /// Burn's device, with autodiff: tensors for [`BurnFactory::forward`] live here.
    pub fn device(&self) -> Device {
        Device::from(self.wgpu_device.clone()).autodiff()
    }

    /// lossc's view of the same GPU.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

/// An input of [`BurnFactory::forward`]: its name in the `.loss` files and a Burn tensor
/// of any rank on [`Backend`].
pub struct Input {
    name: String,
    tensor: FloatTensor<Backend>,
}

impl Input {
    /// Input `name`, given as `tensor` (on [`BurnGpu::device`]).
    pub fn new<const D: usize>(name: &str, tensor: Tensor<D>) -> Result<Input, RunError> {
        let tensor = tensor
            .try_into_primitive::<Backend>()
            .map_err(|_| not_on_backend(name))?;
        Ok(Input {
            name: name.to_string(),
            tensor,
        })
    }
}

fn not_on_backend(name: &str) -> RunError {
    RunError::Burn(format!(
        "input `{name}` is not a float tensor on lossc's Burn backend (Autodiff<Wgpu> without fusion, on BurnGpu::device)"
    ))
}

/// One loss's part of a [`BurnOutput`].
#[derive(Clone, Debug, PartialEq)]
pub struct BurnLoss {
    /// The loss's name.
    pub name: String,
    /// Its value.
    pub loss: f32,
    /// Its weight.
    pub weight: f32,
    /// Its value times its weight.
    pub weighted: f32,
}

/// What [`BurnFactory::forward`] returns.
pub struct BurnOutput {
    /// The factory's total, shape `[1]`, differentiable with respect to every input
    /// that requires a gradient.
    pub total: Tensor<1>,
    /// The total as a number.
    pub value: f32,
    /// Each loss, in factory order.
    pub losses: Vec<BurnLoss>,
    /// The dispatches lossc recorded (2 when a gradient is asked).
    pub dispatches: u32,
}

/// A factory compiled once, planned once per set of input shapes, run on Burn tensors.
pub struct BurnFactory {
    program: Program,
    terms: Vec<FactoryTerm>,
    /// Params (and anything else) given as host data, as in a data file.
    params: Data,
    kernel: crate::codegen::Kernel,
    /// Plans by the inputs' names and shapes and the inputs differentiated.
    plans: HashMap<PlanKey, Planned>,
}

type PlanKey = (Vec<(String, Vec<usize>)>, Vec<String>);

struct Planned {
    plan: FusedGradientPlan,
    terms: Vec<GradientTerm>,
}

impl BurnFactory {
    /// Compiles the factory `terms` of `program` (named `name`); `params` holds the
    /// params' values (`"<param>"` or `"<loss>.<param>"`, as in a data file).
    pub fn new(
        program: &Program,
        name: &str,
        terms: &[FactoryTerm],
        params: Data,
    ) -> Result<BurnFactory, RunError> {
        let kernel = crate::codegen::compile(program, name, terms)?;
        Ok(BurnFactory {
            program: program.clone(),
            terms: terms.to_vec(),
            params,
            kernel,
            plans: HashMap::new(),
        })
    }

    /// Runs the factory on `inputs` with the annealed losses' factor `anneal`: forward
    /// and backward in two dispatches when an input requires a gradient. The total's
    /// backward step gives each such input `upstream × d total / d input`.
    pub fn forward(
        &mut self,
        burn: &BurnGpu,
        inputs: Vec<Input>,
        anneal: f32,
    ) -> Result<BurnOutput, RunError> {
        // Contiguous inner tensors, and which inputs require a gradient.
        let mut prims: Vec<(String, Prim, bool)> = Vec::new();
        let mut nodes = Vec::new();
        for input in inputs {
            if input.tensor.primitive.dtype != DType::F32 {
                return Err(RunError::Burn(format!(
                    "input `{}` is {:?}; lossc reads f32",
                    input.name, input.tensor.primitive.dtype
                )));
            }
            let tracked = !input.tensor.node.requirement.is_none();
            if input.tensor.primitive.device != burn.wgpu_device {
                return Err(RunError::Burn(format!(
                    "input `{}` is on {:?}, not on the device lossc shares with Burn ({:?}, BurnGpu::device)",
                    input.name, input.tensor.primitive.device, burn.wgpu_device
                )));
            }
            if prims.iter().any(|(n, _, _)| *n == input.name) {
                return Err(RunError::Burn(format!(
                    "input `{}` is given twice",
                    input.name
                )));
            }
            let prim = contiguous(input.tensor.primitive.clone());
            prims.push((input.name, prim, tracked));
            nodes.push(input.tensor);
        }
        let key: PlanKey = (
            prims
                .iter()
                .map(|(n, p, _)| (n.clone(), p.shape().to_vec()))
                .collect(),
            prims
                .iter()
                .filter(|(_, _, t)| *t)
                .map(|(n, _, _)| n.clone())
                .collect(),
        );
        // The inputs' buffers (kept alive until the run is done), Burn's pending work
        // submitted first so that lossc's commands come after it on the shared queue.
        let views: Vec<BufferView> = prims
            .iter()
            .map(|(_, p, _)| buffer_of(p))
            .collect::<Result<_, _>>()?;
        if !self.plans.contains_key(&key) {
            let planned = self.plan(burn, &key, &prims, &views)?;
            self.plans.insert(key.clone(), planned);
        }
        let planned = self.plans.get_mut(&key).expect("planned above");
        for ((name, _, _), v) in prims.iter().zip(&views) {
            planned.plan.set_device_input(name, &v.buffer, v.offset)?;
        }
        planned.plan.set_anneal(burn.gpu(), anneal);
        let Some((_, first, _)) = prims.first() else {
            return Err(RunError::Burn(
                "a factory op needs at least one input".into(),
            ));
        };
        let len = planned.plan.gradient_len();
        let grads = empty(first, Shape::new([len.max(1)]));
        let run = {
            let g = buffer_of(&grads)?;
            planned.plan.run_into(burn.gpu(), &g.buffer, g.offset)?
        };
        drop(views);
        let losses = self
            .terms
            .iter()
            .map(|t| &t.loss)
            .zip(&run.values)
            .zip(&run.weighted)
            .map(|((name, v), w)| BurnLoss {
                name: name.clone(),
                loss: v.loss,
                weight: v.weight,
                weighted: *w,
            })
            .collect();
        // Each tracked input's gradient: the sum of its terms, in order.
        let mut per_input: Vec<Option<Prim>> = Vec::new();
        for (name, prim, tracked) in &prims {
            if !tracked {
                per_input.push(None);
                continue;
            }
            let mut sum: Option<Prim> = None;
            for t in planned.terms.iter().filter(|t| &t.input == name) {
                let slice =
                    Inner::float_slice(grads.clone(), &[(t.offset..t.offset + t.len).into()]);
                let term = Inner::float_reshape(slice, prim.shape());
                sum = Some(match sum {
                    Some(s) => Inner::float_add(s, term),
                    None => term,
                });
            }
            // A gradient that does not depend on its input is all zeros.
            per_input.push(Some(sum.unwrap_or_else(|| {
                Inner::float_zeros(prim.shape(), &prim.device, DType::F32.into())
            })));
        }
        let value = Tensor::<1>::from_floats([run.total], &Device::from(burn.wgpu_device.clone()));
        let value_prim = value
            .try_into_primitive::<Inner>()
            .map_err(|_| RunError::Burn("the total is not on Burn's wgpu backend".into()))?;
        let total = attach(nodes, value_prim, per_input)?;
        Ok(BurnOutput {
            total: Tensor::from_primitive::<Backend>(total),
            value: run.total,
            losses,
            dispatches: run.dispatches,
        })
    }

    fn plan(
        &self,
        burn: &BurnGpu,
        key: &PlanKey,
        prims: &[(String, Prim, bool)],
        views: &[BufferView],
    ) -> Result<Planned, RunError> {
        let mut data = self.params.clone();
        for (name, shape) in &key.0 {
            data.insert(
                name.clone(),
                DataValue::Array(Array {
                    shape: shape.clone(),
                    data: vec![],
                    typed_float: true,
                }),
            );
        }
        // A name no loss reads is a mistake here (in a data file it is only a warning).
        let (prepared, unused) = prepare(&self.program, &self.terms, &data, &vec![])?;
        if !unused.is_empty() {
            return Err(RunError::Burn(unused.join("; ")));
        }
        let names = resolve(&prepared, &Wrt::Inputs(key.1.clone()))?;
        let device_inputs: Vec<(&str, &wgpu::Buffer)> = prims
            .iter()
            .zip(views)
            .map(|((n, _, _), v)| (n.as_str(), &v.buffer))
            .collect();
        let options = DispatchOptions {
            device_inputs: &device_inputs,
            ..Default::default()
        };
        let plan =
            FusedGradientPlan::new(burn.gpu(), &self.kernel, &prepared, &names, 1.0, &options)?;
        Ok(Planned {
            terms: plan.gradient_terms(),
            plan,
        })
    }
}

/// The op's backward step: each tracked parent's gradient, computed with the forward,
/// times the upstream gradient of the total.
#[derive(Debug)]
struct FactoryBackward<const N: usize>;

impl<const N: usize> Backward<Inner, N> for FactoryBackward<N> {
    type State = Vec<Option<Prim>>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let upstream: Prim = grads.consume::<Inner>(&ops.node);
        for (parent, g) in ops.parents.into_iter().zip(ops.state) {
            if let (Some(node), Some(g)) = (parent, g) {
                let ones = Shape::from(vec![1usize; g.shape().num_dims()]);
                let up = Inner::float_reshape(upstream.clone(), ones);
                grads.register::<Inner>(node.id, Inner::float_mul(g, up));
            }
        }
    }
}

/// The total as the output of an autodiff op whose parents are the inputs' nodes.
fn attach(
    inputs: Vec<FloatTensor<Backend>>,
    total: Prim,
    grads: Vec<Option<Prim>>,
) -> Result<FloatTensor<Backend>, RunError> {
    macro_rules! arity {
        ($($n:literal),*) => {
            match inputs.len() {
                $($n => {
                    let parents: [_; $n] = std::array::from_fn(|i| inputs[i].node.clone());
                    Ok(match FactoryBackward::<$n>
                        .prepare::<NoCheckpointing>(parents)
                        .compute_bound()
                        .stateful()
                    {
                        OpsKind::Tracked(prep) => prep.finish(grads, total),
                        OpsKind::UnTracked(prep) => prep.finish(total),
                    })
                })*
                n => Err(RunError::Burn(format!(
                    "a factory op takes 1 to 8 inputs, not {n}"
                ))),
            }
        };
    }
    arity!(1, 2, 3, 4, 5, 6, 7, 8)
}

/// A contiguous copy of `t` when it is not contiguous (a transposed or sliced view).
fn contiguous(t: Prim) -> Prim {
    if t.is_contiguous() {
        t
    } else {
        Inner::float_add_scalar(t, 0.0f32.into())
    }
}

/// An uninitialised contiguous f32 tensor of `shape` on `like`'s device.
fn empty(like: &Prim, shape: Shape) -> Prim {
    let handle = like.client.empty(shape.num_elements() * 4);
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        DType::F32,
    )
}

/// A tensor's `wgpu::Buffer` and where its elements start, with the handle that keeps
/// the allocation from being reused while lossc reads or writes it.
struct BufferView {
    _keep: Box<dyn std::any::Any>,
    buffer: wgpu::Buffer,
    offset: u64,
}

/// The buffer of a contiguous f32 tensor; Burn's pending commands are submitted first.
fn buffer_of(t: &Prim) -> Result<BufferView, RunError> {
    let res = t
        .client
        .get_resource(t.handle.clone())
        .map_err(|e| RunError::Burn(format!("cannot reach a tensor's GPU buffer: {e:?}")))?;
    let (buffer, offset) = {
        let r = res.resource();
        (r.buffer.clone(), r.offset)
    };
    t.client
        .flush()
        .map_err(|e| RunError::Burn(format!("cannot submit Burn's commands: {e:?}")))?;
    Ok(BufferView {
        _keep: Box::new(res),
        buffer,
        offset,
    })
}
