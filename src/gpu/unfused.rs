//! Runs the unfused baseline ([`crate::codegen::unfused`]): one dispatch per IR operation
//! with every intermediate materialised in GPU memory. It exists to measure what fusion
//! buys (`cargo bench --bench fusion`), and its results are checked against the CPU
//! evaluator like every other kernel.

use wgpu::util::DeviceExt;

use super::device::{bind_group, bind_group_layout};
use super::pack::pack_arena;
use super::{Gpu, GpuError};
use crate::bind::Bound;
use crate::codegen::bindings::Holds;
use crate::codegen::unfused::{self, BINDINGS, BoundSizes, GradientOut};

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
    outputs: usize,
    gradients: Vec<(usize, usize)>,
}

impl UnfusedPlan {
    /// Plans the unfused run of bound losses (kernels specialised to their sizes).
    pub fn new(gpu: &Gpu, bound: &[&Bound], anneal: &[f32]) -> Result<UnfusedPlan, GpuError> {
        UnfusedPlan::with_gradients(gpu, bound, anneal, &[])
    }

    /// Plans the unfused run of bound adjoint IRs (`crate::ad`), which also writes the
    /// given gradient nodes ([`UnfusedPlan::gradients`] says where).
    pub fn with_gradients(
        gpu: &Gpu,
        bound: &[&Bound],
        anneal: &[f32],
        gradients: &[GradientOut],
    ) -> Result<UnfusedPlan, GpuError> {
        let d = &gpu.device;
        // The arena as the fused kernel's, and one more value, so that it is never empty.
        let mut packed = pack_arena(bound, &[])?;
        packed.values.push(0.0);
        let sizes: Vec<BoundSizes> = bound.iter().map(|b| sizes(b)).collect();
        let generated = unfused::generate(&sizes, &packed.offsets, anneal, gradients)?;
        // llvmpipe ends a shader invocation's loops past its budget, silently: refuse
        // a run that would need more, as the fused kernel's plan does.
        let needed = generated
            .steps
            .iter()
            .map(|s| s.iterations)
            .max()
            .unwrap_or(0);
        if gpu.is_llvmpipe() && needed > super::LLVMPIPE_LOOP_LIMIT {
            return Err(super::PlanError::LoopBudget {
                needed,
                limit: super::LLVMPIPE_LOOP_LIMIT,
                costliest: None,
                shared_would_fit: false,
            }
            .into());
        }
        let vals = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unfused values"),
            size: (generated.values * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let arena = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("unfused arena"),
            contents: &packed
                .values
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unfused out"),
            size: (generated.outputs * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unfused staging"),
            size: (generated.outputs * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // One explicit layout for every step, from the bindings' table.
        let layout = bind_group_layout(d, "unfused", &BINDINGS);
        let pipeline_layout = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("unfused"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let bind_group = bind_group(d, &layout, &BINDINGS, |holds| match holds {
            Holds::Arena => Some(arena.clone()),
            Holds::Values => Some(vals.clone()),
            Holds::Out => Some(out.clone()),
            _ => None,
        })?;
        let steps = generated
            .steps
            .into_iter()
            .map(|s| {
                let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("unfused"),
                    source: wgpu::ShaderSource::Wgsl(s.wgsl.into()),
                });
                let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("unfused"),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
                Step {
                    pipeline,
                    bind_group: bind_group.clone(),
                    workgroups: s.workgroups,
                }
            })
            .collect();
        Ok(UnfusedPlan {
            steps,
            out,
            staging,
            outputs: generated.outputs,
            gradients: generated.gradients,
        })
    }

    /// Where each gradient lies in [`UnfusedPlan::run`]'s output: (offset, length), in
    /// the order asked.
    pub fn gradients(&self) -> &[(usize, usize)] {
        &self.gradients
    }

    /// How many dispatches one run records.
    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }

    /// Records and runs every dispatch (one compute pass), then reads the results back.
    pub fn run(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
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
        let v = super::dispatch::read_back(gpu, &self.staging)?;
        debug_assert_eq!(v.len(), self.outputs);
        Ok(v)
    }
}

/// What the unfused generator needs of a bound loss: its sizes, not its data.
fn sizes<'a>(b: &'a Bound) -> BoundSizes<'a> {
    BoundSizes {
        ir: b.ir,
        dims: &b.dims,
        ranges: &b.ranges,
        inputs: b
            .inputs
            .iter()
            .map(|d| d.as_ref().map(|d| d.shape.as_slice()))
            .collect(),
        params: b.params.iter().map(|p| p.shape.as_slice()).collect(),
        enums: &b.enums,
        active_masks: &b.active_masks,
    }
}
