//! The backward kernel's dispatch: it runs right after its forward [`Dispatch`], in the
//! same command buffer, on the forward's arena (the same inputs and params, at the same
//! offsets) and reading the forward's results (each mean's count); it writes every
//! gradient element once into its own buffer.

use std::collections::HashMap;
use std::sync::Arc;

use super::device::{Pipeline, bind_group};
use super::dispatch::{
    Dispatch, KernelForm, anneal_slots, check_usage, max_binding, meta_buffer, read_back,
    scratch_buffer, write_anneal,
};
use super::pack::{Arena, domain_size, fill_parameter_block};
use super::plan::{self, Adapter, Plan};
use super::{Gpu, GpuError};
use crate::bind::Bound;
use crate::codegen::Kernel;
use crate::codegen::bindings::{BACKWARD_BINDINGS, Holds};
use crate::ice::InternalError;
use crate::ir::LossIr;

/// A backward kernel bound to its forward dispatch's buffers, ready to run after it.
pub struct Backward {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    /// The parameter block, where each loss's anneal factor is in it, and the forward
    /// loss of each loss.
    meta: wgpu::Buffer,
    anneal_slots: Vec<(u64, usize)>,
    forward_of: Vec<usize>,
    workgroups: u32,
    grads: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Where each loss's gradient starts in the gradient buffer, and its length.
    pub spans: Vec<(usize, usize)>,
    wgsl: String,
}

impl Dispatch {
    /// The backward kernel `kernel` of this dispatch's losses, on `bound` (its gradient
    /// losses bound to the same data); `forward_of[i]` is the forward loss whose tensors
    /// backward loss `i` reads (a gradient loss holds its forward loss's inputs and params
    /// under the same names); `anneal[t]` is forward loss `t`'s anneal factor.
    pub fn backward(
        &self,
        gpu: &Gpu,
        kernel: &Kernel,
        bound: &[&Bound],
        forward_of: &[usize],
        anneal: &[f32],
    ) -> Result<Backward, GpuError> {
        let mut offsets = HashMap::new();
        for (bi, fi) in forward_of.iter().enumerate() {
            for ((li, name), at) in &self.offsets {
                if li == fi {
                    offsets.insert((bi, name.clone()), *at);
                }
            }
        }
        let arena = Arena {
            values: vec![],
            offsets,
            device_copies: vec![],
        };
        let plan = plan::plan(&Adapter::of(gpu), kernel, bound, self.placement)?;
        let factors = by_backward_loss(forward_of, anneal);
        let block = fill_parameter_block(kernel, bound, &factors, &arena, &plan)?;
        let wgsl = match self.form {
            KernelForm::Specialised => {
                let losses: Vec<&LossIr> = bound.iter().map(|b| b.ir).collect();
                kernel.specialise(&losses, &block)?
            }
            KernelForm::Generic => kernel.wgsl.clone(),
        };
        let pipeline = gpu.pipeline_for(&wgsl, &BACKWARD_BINDINGS)?;
        let Plan { slice, work, .. } = plan;
        let d = &gpu.device;
        let meta = meta_buffer(gpu, "lossc backward meta", &block);
        let scratch = scratch_buffer(gpu, "lossc backward scratch", slice, work.workgroups)?;
        // The error word and the sites' words are written by reads whose values are
        // discarded (see `BACKWARD_BINDINGS`); nobody reads them.
        let sync_words = 2 + 2 * work.total_items.max(0) as u64 + kernel.sites.len() as u64;
        let sync = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc backward sync"),
            size: sync_words * 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut spans = Vec::new();
        let mut at = 0usize;
        for b in bound {
            let n = domain_size(b).max(0) as usize;
            spans.push((at, n));
            at += n;
        }
        let bytes = (4 * at.max(1)) as u64;
        if bytes > max_binding(gpu) {
            return Err(GpuError::ScratchTooLarge);
        }
        let grads = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc gradients"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc gradients staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = bind_group(&gpu.device, &pipeline.layout, &BACKWARD_BINDINGS, |h| {
            Some(match h {
                Holds::Meta => meta.clone(),
                Holds::Arena => self.arena().clone(),
                Holds::Scratch => scratch.clone(),
                Holds::Sync => sync.clone(),
                Holds::Saved => self.out().clone(),
                Holds::Grads => grads.clone(),
                Holds::Out | Holds::Values => return None,
            })
        })?;
        Ok(Backward {
            pipeline,
            bind_group,
            anneal_slots: anneal_slots(kernel, bound.len()),
            meta,
            forward_of: forward_of.to_vec(),
            workgroups: work.workgroups as u32,
            grads,
            staging,
            spans,
            wgsl,
        })
    }

    /// Runs the forward kernel, then `backward`, recorded in one command buffer: the
    /// results (as [`Dispatch::run`]), every gradient loss's elements (at
    /// [`Backward::spans`]), and the number of dispatches.
    pub fn run_backward(
        &self,
        gpu: &Gpu,
        backward: &Backward,
    ) -> Result<(Vec<f32>, Vec<f32>, u32), GpuError> {
        self.run_with(gpu, Some(backward), None)
    }

    /// Runs the forward kernel, then `backward`, as [`Dispatch::run_backward`], but
    /// copies the gradients into the caller's buffer `grads` on the GPU, from byte
    /// `offset` on (a multiple of 4), at [`Backward::spans`]; it must allow `COPY_DST`
    /// and hold [`Backward::len`] f32s there. Nothing of them goes through the host.
    /// Returns the results and the number of dispatches.
    pub fn run_backward_into(
        &self,
        gpu: &Gpu,
        backward: &Backward,
        grads: &wgpu::Buffer,
        offset: u64,
    ) -> Result<(Vec<f32>, u32), GpuError> {
        check_usage("gradients", grads, wgpu::BufferUsages::COPY_DST)?;
        let needs = 4 * backward.len() as u64;
        let room = grads.size().saturating_sub(offset);
        if room < needs || !offset.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT) {
            return Err(GpuError::GradientBufferTooSmall { bytes: room, needs });
        }
        let (out, _, d) = self.run_with(gpu, Some(backward), Some((grads, offset)))?;
        Ok((out, d))
    }
}

/// Each backward loss's anneal factor: its forward loss's (`forward_of`), from the
/// forward losses' `anneal`.
fn by_backward_loss(forward_of: &[usize], anneal: &[f32]) -> Vec<f32> {
    forward_of
        .iter()
        .map(|t| anneal.get(*t).copied().unwrap_or(1.0))
        .collect()
}

impl Backward {
    /// Sets the forward losses' anneal factors (by forward loss) for the next runs.
    pub fn set_anneal(&self, gpu: &Gpu, anneal: &[f32]) {
        let mine = by_backward_loss(&self.forward_of, anneal);
        write_anneal(gpu, &self.meta, &self.anneal_slots, &mine);
    }

    /// The number of gradient elements it writes (all its losses').
    pub fn len(&self) -> usize {
        self.spans.last().map_or(0, |(a, n)| a + n)
    }

    /// Whether it writes no gradient element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the backward dispatch and the copy of its gradients (into `to`, or the
    /// staging buffer to read back); the number of dispatches recorded.
    pub(super) fn record(
        &self,
        enc: &mut wgpu::CommandEncoder,
        to: Option<(&wgpu::Buffer, u64)>,
    ) -> u32 {
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("lossc backward"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(self.workgroups, 1, 1);
        }
        match to {
            Some((buf, at)) if !self.is_empty() => {
                enc.copy_buffer_to_buffer(&self.grads, 0, buf, at, Some(4 * self.len() as u64));
            }
            Some(_) => {}
            None => enc.copy_buffer_to_buffer(&self.grads, 0, &self.staging, 0, None),
        }
        1
    }

    /// The gradients of the last run.
    pub(super) fn read(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let mut v = read_back(gpu, &self.staging)?;
        let n = self.len();
        if v.len() < n {
            return Err(
                InternalError::new("the gradient buffer is shorter than its losses").into(),
            );
        }
        v.truncate(n);
        Ok(v)
    }

    /// The kernel text it runs.
    pub fn wgsl(&self) -> &str {
        &self.wgsl
    }
}
