//! The thin wgpu part of a dispatch: buffers for the parameter block, the arena, the
//! scratch tables, the synchronisation words and the results; one bind group; one
//! compute pass; and the read-back of the results and the error word.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::device::{Pipeline, bind_group};
use super::pack::{check_arena_fits, fill_parameter_block, pack_arena};
use super::plan::{self, Adapter, Plan, RowPlacement};
use super::{Gpu, GpuError};
use crate::bind::{Bound, OutOfRange};
use crate::codegen::bindings::{BINDINGS, Holds};
use crate::codegen::emit::{TIMEOUT_CODE, WORKGROUP};
use crate::codegen::{Kernel, Site};
use crate::ice::InternalError;
use crate::ir::{LossIr, Tensor};

/// Which text of the kernel a dispatch runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelForm {
    /// The kernel specialised to the bound sizes: every parameter slot a literal.
    #[default]
    Specialised,
    /// The generic kernel (`kernel.wgsl`, as `lossc compile` writes it) with its
    /// parameter block filled, as any WebGPU host following the manifest runs it.
    Generic,
}

/// How to build a [`Dispatch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DispatchOptions<'a> {
    /// How rows are placed on threads.
    pub placement: RowPlacement,
    /// Which kernel text runs.
    pub form: KernelForm,
    /// Inputs that live in the caller's GPU buffers (f32, row-major, of the shapes they
    /// were bound with; their host data may be empty). They are copied into the arena on
    /// the GPU at every [`Dispatch::run`]: nothing goes through the host, and the caller
    /// may update them between runs. The buffers must belong to the dispatch's device and
    /// allow `COPY_SRC`.
    pub device_inputs: &'a [(&'a str, &'a wgpu::Buffer)],
}

/// The host's side of one kernel's parameters and data, ready to dispatch (repeatedly).
pub struct Dispatch {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    /// The parameter block, and where each loss's anneal factor is in it.
    meta: wgpu::Buffer,
    anneal_slots: Vec<(u64, usize)>,
    sync: wgpu::Buffer,
    out: wgpu::Buffer,
    /// The results, then the error word, read back in one mapping.
    staging: wgpu::Buffer,
    arena: wgpu::Buffer,
    /// Inputs in the caller's GPU buffers, copied into the arena at every run.
    copies: Vec<InputCopy>,
    workgroups: u32,
    n_losses: usize,
    /// The checked reads by error code, each with its axis's size in the bound data.
    sites: Vec<(Site, usize)>,
    /// Where the sites' words start in `sync`, in words.
    site_words: u64,
    wgsl: String,
    /// Where each loss's tensors are in the arena (a backward kernel reads them there).
    pub(super) offsets: std::collections::HashMap<(usize, String), usize>,
    /// The options it was built with.
    pub(super) placement: RowPlacement,
    pub(super) form: KernelForm,
}

impl Dispatch {
    /// Lays out the arena and the work, fills the parameter block for `kernel` on bound
    /// data, and creates the buffers; `anneal` holds each loss's anneal factor.
    pub fn new(
        gpu: &Gpu,
        kernel: &Kernel,
        bound: &[&Bound],
        anneal: &[f32],
        options: &DispatchOptions,
    ) -> Result<Dispatch, GpuError> {
        for (name, buf) in options.device_inputs {
            check_usage(name, buf, wgpu::BufferUsages::COPY_SRC)?;
        }
        let sizes: Vec<(&str, u64)> = options
            .device_inputs
            .iter()
            .map(|(name, buf)| (*name, buf.size()))
            .collect();
        let arena = pack_arena(bound, &sizes)?;
        let max = max_binding(gpu);
        check_arena_fits(&arena, bound, max)?;
        let plan = plan::plan(&Adapter::of(gpu), kernel, bound, options.placement)?;
        let block = fill_parameter_block(kernel, bound, anneal, &arena, &plan)?;
        let wgsl = match options.form {
            KernelForm::Specialised => {
                let losses: Vec<&LossIr> = bound.iter().map(|b| b.ir).collect();
                kernel.specialise(&losses, &block)?
            }
            KernelForm::Generic => kernel.wgsl.clone(),
        };
        let pipeline = gpu.pipeline(&wgsl)?;
        let Plan { slice, work, .. } = plan;
        let d = &gpu.device;
        let meta_buf = meta_buffer(gpu, "lossc meta", &block);
        let arena_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("lossc arena"),
            contents: &le_bytes(arena.padded().iter().map(|x| x.to_le_bytes())),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        });
        let copies = arena
            .device_copies
            .iter()
            .map(|c| {
                let buf = options
                    .device_inputs
                    .iter()
                    .find(|(name, _)| *name == c.input)
                    .map(|(_, b)| (*b).clone())
                    .ok_or_else(|| {
                        InternalError::new(format!("no GPU buffer for the copy of `{}`", c.input))
                    })?;
                Ok(InputCopy {
                    input: c.input.clone(),
                    buffer: buf,
                    offset: 0,
                    at: (c.at * 4) as u64,
                    bytes: (c.len * 4) as u64,
                })
            })
            .collect::<Result<_, GpuError>>()?;
        let scratch = scratch_buffer(gpu, "lossc scratch", slice, work.workgroups)?;
        // The arrival counter, the error word, each work item's two slots, empty, then
        // one word per checked read (the largest index it failed with).
        let mut sync_init = vec![0u32; 2];
        sync_init.extend(std::iter::repeat_n(
            0xffff_ffffu32,
            (2 * work.total_items) as usize,
        ));
        let site_words = sync_init.len() as u64;
        sync_init.extend(std::iter::repeat_n(0u32, kernel.sites.len()));
        let sync = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("lossc sync"),
            contents: &le_bytes(sync_init.iter().map(|x| x.to_le_bytes())),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        });
        let n_losses = bound.len();
        // The results, then each loss's count for a backward kernel (4n + 1 floats);
        // the first 3n + 1 are read back.
        let out_bytes = ((3 * n_losses + 1) * 4) as u64;
        let out_size = ((4 * n_losses + 1) * 4) as u64;
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc out"),
            size: out_size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc staging"),
            size: out_bytes + 4 + 4 * kernel.sites.len() as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = bind_group(&gpu.device, &pipeline.layout, &BINDINGS, |holds| {
            Some(match holds {
                Holds::Meta => meta_buf.clone(),
                Holds::Arena => arena_buf.clone(),
                Holds::Scratch => scratch.clone(),
                Holds::Sync => sync.clone(),
                Holds::Out => out.clone(),
                Holds::Values | Holds::Saved | Holds::Grads => return None,
            })
        })?;
        Ok(Dispatch {
            pipeline,
            bind_group,
            meta: meta_buf,
            anneal_slots: anneal_slots(kernel, n_losses),
            sync,
            out,
            staging,
            arena: arena_buf,
            copies,
            workgroups: work.workgroups as u32,
            n_losses,
            sites: kernel
                .sites
                .iter()
                .map(|s| (s.clone(), axis_size(bound, s)))
                .collect(),
            site_words,
            wgsl,
            offsets: arena.offsets,
            placement: options.placement,
            form: options.form,
        })
    }

    /// Reads input `name` from `buffer`, starting `offset` bytes in, from the next run on
    /// (an input planned as in the caller's GPU buffers, `DispatchOptions::device_inputs`):
    /// a training loop whose framework hands it a new buffer every step. The buffer must
    /// allow `COPY_SRC` and hold the input's elements from `offset`, a multiple of 4.
    pub fn set_device_input(
        &mut self,
        name: &str,
        buffer: &wgpu::Buffer,
        offset: u64,
    ) -> Result<(), GpuError> {
        check_usage(name, buffer, wgpu::BufferUsages::COPY_SRC)?;
        let Some(c) = self.copies.iter_mut().find(|c| c.input == name) else {
            return Err(GpuError::NotDeviceInput {
                input: name.to_string(),
            });
        };
        if !offset.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
            || buffer.size() < offset
            || buffer.size() - offset < c.bytes
        {
            return Err(GpuError::BufferTooSmall {
                input: name.to_string(),
                bytes: buffer.size().saturating_sub(offset),
                shape: vec![(c.bytes / 4) as usize],
                needs: c.bytes,
            });
        }
        c.buffer = buffer.clone();
        c.offset = offset;
        Ok(())
    }

    /// Writes the host data of `bound` into the arena for the next runs: the same losses
    /// with inputs of the shapes and params of the values the dispatch was built with (a
    /// training loop's next batch), so that nothing is laid out or compiled again. Inputs
    /// read from the caller's GPU buffers keep being copied from them.
    pub fn write_inputs(&self, gpu: &Gpu, bound: &[&Bound]) -> Result<(), GpuError> {
        let sizes: Vec<(&str, u64)> = self
            .copies
            .iter()
            .map(|c| (c.input.as_str(), c.buffer.size() - c.offset))
            .collect();
        let arena = pack_arena(bound, &sizes)?;
        if arena.offsets != self.offsets || arena.bound_bytes() != self.arena.size() {
            return Err(
                InternalError::new("new inputs for a dispatch laid out for other shapes").into(),
            );
        }
        let bytes = le_bytes(arena.padded().iter().map(|x| x.to_le_bytes()));
        gpu.queue.write_buffer(&self.arena, 0, &bytes);
        Ok(())
    }

    /// Sets each loss's anneal factor for the next runs (the kernel reads it from the
    /// parameter block, even when specialised), without a new pipeline.
    pub fn set_anneal(&self, gpu: &Gpu, anneal: &[f32]) {
        write_anneal(gpu, &self.meta, &self.anneal_slots, anneal);
    }

    pub(super) fn arena(&self) -> &wgpu::Buffer {
        &self.arena
    }

    pub(super) fn out(&self) -> &wgpu::Buffer {
        &self.out
    }

    /// The number of workgroups one dispatch launches.
    pub fn workgroups(&self) -> u32 {
        self.workgroups
    }

    /// The kernel text this dispatch runs (specialised or generic), for a host that wants
    /// to keep or inspect it (`LOSSC_DUMP_KERNEL` in the command line).
    pub fn wgsl(&self) -> &str {
        &self.wgsl
    }

    /// Dispatches once and reads back `[loss, weight, weighted] × losses` and the total.
    /// Returns the values and the number of dispatches recorded.
    pub fn run(&self, gpu: &Gpu) -> Result<(Vec<f32>, u32), GpuError> {
        let (out, _, dispatches) = self.run_with(gpu, None, None)?;
        Ok((out, dispatches))
    }

    /// Dispatches once, then `backward` if given, in one command buffer; reads back the
    /// results and the backward kernel's gradients, or copies the gradients into
    /// `grads_to` (a buffer, and a byte offset in it) on the GPU, and returns none.
    pub(super) fn run_with(
        &self,
        gpu: &Gpu,
        backward: Option<&super::backward::Backward>,
        grads_to: Option<(&wgpu::Buffer, u64)>,
    ) -> Result<(Vec<f32>, Vec<f32>, u32), GpuError> {
        gpu.queue.write_buffer(&self.sync, 4, &0u32.to_le_bytes());
        if !self.sites.is_empty() {
            let zeros = vec![0u8; 4 * self.sites.len()];
            gpu.queue
                .write_buffer(&self.sync, 4 * self.site_words, &zeros);
        }
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("lossc"),
            });
        for c in &self.copies {
            enc.copy_buffer_to_buffer(&c.buffer, c.offset, &self.arena, c.at, Some(c.bytes));
        }
        let mut dispatches = 0;
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("lossc"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(self.workgroups, 1, 1);
            dispatches += 1;
        }
        if let Some(b) = backward {
            dispatches += b.record(&mut enc, grads_to);
        }
        let out_bytes = (4 * (3 * self.n_losses + 1)) as u64;
        enc.copy_buffer_to_buffer(&self.out, 0, &self.staging, 0, Some(out_bytes));
        enc.copy_buffer_to_buffer(&self.sync, 4, &self.staging, out_bytes, Some(4));
        if !self.sites.is_empty() {
            let bytes = 4 * self.sites.len() as u64;
            enc.copy_buffer_to_buffer(
                &self.sync,
                4 * self.site_words,
                &self.staging,
                out_bytes + 4,
                Some(bytes),
            );
        }
        gpu.queue.submit([enc.finish()]);
        let mut out = read_back(gpu, &self.staging)?;
        let grads = match backward {
            Some(b) if grads_to.is_none() => b.read(gpu)?,
            _ => vec![],
        };
        let words: Vec<u32> = out
            .split_off(3 * self.n_losses + 1)
            .iter()
            .map(|x| x.to_bits())
            .collect();
        let code = words.first().copied().unwrap_or(0);
        if code == TIMEOUT_CODE {
            return Err(GpuError::Timeout);
        }
        if code != 0 {
            let k = code as usize - 1;
            let Some((site, size)) = self.sites.get(k) else {
                return Err(InternalError::new(format!(
                    "the kernel reports a failed read with code {code}, which names no read"
                ))
                .into());
            };
            // The index, stored with its sign bit flipped.
            let index = (words.get(1 + k).copied().unwrap_or(0) ^ 0x8000_0000) as i32;
            return Err(GpuError::OutOfRange(Box::new(OutOfRange {
                loss: site.loss_name.clone(),
                index: index.into(),
                axis: site.axis,
                tensor: site.tensor_name.clone(),
                size: *size,
                subscript: site.subscript.clone(),
                at: Some(site.at.to_string()),
            })));
        }
        debug_assert_eq!(out.len(), 3 * self.n_losses + 1);
        Ok((out, grads, dispatches))
    }
}

/// An input copied from a caller's GPU buffer into the arena at every run.
struct InputCopy {
    input: String,
    buffer: wgpu::Buffer,
    /// Where its elements start in `buffer`, in bytes.
    offset: u64,
    /// Where they go in the arena, in bytes, and how many bytes.
    at: u64,
    bytes: u64,
}

/// Where each of `n` losses' anneal factor is in `kernel`'s parameter block, in bytes.
pub(super) fn anneal_slots(kernel: &Kernel, n: usize) -> Vec<(u64, usize)> {
    (0..n)
        .filter_map(|loss| {
            let slot = kernel
                .layout
                .get(&crate::codegen::layout::Slot::Anneal { loss })?;
            Some((4 * slot.index() as u64, loss))
        })
        .collect()
}

/// Writes each loss's anneal factor (as f32 bits) into a parameter block.
pub(super) fn write_anneal(gpu: &Gpu, meta: &wgpu::Buffer, slots: &[(u64, usize)], anneal: &[f32]) {
    for (at, loss) in slots {
        if let Some(a) = anneal.get(*loss) {
            gpu.queue
                .write_buffer(meta, *at, &a.to_bits().to_le_bytes());
        }
    }
}

/// Refuses a caller's buffer that lacks a usage the run needs (wgpu would abort).
pub(super) fn check_usage(
    name: &str,
    buf: &wgpu::Buffer,
    needs: wgpu::BufferUsages,
) -> Result<(), GpuError> {
    if buf.usage().contains(needs) {
        Ok(())
    } else {
        Err(GpuError::BufferUsage {
            buffer: name.to_string(),
            needs: format!("{needs:?}"),
        })
    }
}

/// The size of the axis a checked read checks, in the bound data.
fn axis_size(bound: &[&Bound], s: &Site) -> usize {
    let Some(b) = bound.get(s.loss) else { return 0 };
    let shape = match s.tensor {
        Tensor::Input(i) => b.inputs.get(i).and_then(|d| d.as_ref()).map(|d| &d.shape),
        Tensor::Param(p) => b.params.get(p).map(|d| &d.shape),
    };
    shape.and_then(|s2| s2.get(s.axis)).copied().unwrap_or(0)
}

fn le_bytes<const N: usize>(words: impl Iterator<Item = [u8; N]>) -> Vec<u8> {
    words.flatten().collect()
}

/// The largest storage binding the device allows, in bytes.
pub(super) fn max_binding(gpu: &Gpu) -> u64 {
    gpu.limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size)
}

/// A kernel's parameter block as a uniform buffer.
pub(super) fn meta_buffer(gpu: &Gpu, label: &str, block: &[i32]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &le_bytes(block.iter().map(|x| x.to_le_bytes())),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// The hoisted tables' scratch of a dispatch: `slice` f32 per thread of each of its
/// `workgroups` (at least one f32), refused past the largest storage binding.
pub(super) fn scratch_buffer(
    gpu: &Gpu,
    label: &str,
    slice: i64,
    workgroups: i64,
) -> Result<wgpu::Buffer, GpuError> {
    let len = (slice * WORKGROUP as i64 * workgroups).max(1) as u64;
    if len * 4 > max_binding(gpu) {
        return Err(GpuError::ScratchTooLarge);
    }
    Ok(gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: len * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    }))
}

/// Maps `buf`, reads it as f32s, and unmaps it.
pub(super) fn read_back(gpu: &Gpu, buf: &wgpu::Buffer) -> Result<Vec<f32>, GpuError> {
    let slice = buf.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::ReadBack(format!("the GPU poll failed: {e}")))?;
    rx.recv()
        .map_err(|_| GpuError::ReadBack("the GPU never mapped the result".into()))?
        .map_err(|e| GpuError::ReadBack(e.to_string()))?;
    let values = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| GpuError::ReadBack(e.to_string()))?;
        view.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    buf.unmap();
    Ok(values)
}
