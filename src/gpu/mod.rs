//! The wgpu runtime: finds an adapter (a real GPU when there is one; Mesa's lavapipe or
//! llvmpipe through GL otherwise; `WGPU_BACKEND` is honoured), keeps one device for the
//! process, caches pipelines by kernel text, fills a kernel's parameter block from bound
//! data, and runs it in one dispatch.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use wgpu::util::DeviceExt;

use crate::codegen::Kernel;
use crate::codegen::emit::{TIMEOUT_CODE, WORKGROUP};
use crate::codegen::layout::Slot;
use crate::ir::ParamKind;
use crate::runtime::bind::Bound;
use crate::runtime::run::{RunOptions, RunResult, combine};

pub mod plan;
pub mod unfused;

use crate::ir::extent;
use plan::WorkPlan;
pub use plan::{Adapter, LLVMPIPE_LOOP_LIMIT, Plan, RowPlacement};

/// The process's GPU device.
pub struct Gpu {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter is.
    pub info: wgpu::AdapterInfo,
    /// The device's limits.
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<u64, Arc<Pipeline>>>,
}

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();

/// The shared device, created on first use.
pub fn gpu() -> Result<&'static Gpu, String> {
    GPU.get_or_init(|| pollster::block_on(Gpu::new()))
        .as_ref()
        .map_err(Clone::clone)
}

impl Gpu {
    async fn new() -> Result<Gpu, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| {
                format!("no GPU adapter found ({e}); on Debian, `apt-get install mesa-vulkan-drivers` gives a software one, or use --backend cpu")
            })?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("lossc"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| format!("cannot open the GPU device: {e}"))?;
        Ok(Gpu {
            device,
            queue,
            info: adapter.get_info(),
            limits,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// Wraps a device the caller already has (to run kernels on its buffers).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Gpu {
        let limits = device.limits();
        Gpu {
            device,
            queue,
            info,
            limits,
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the adapter is Mesa's llvmpipe (lavapipe on Vulkan, or llvmpipe on GL),
    /// which bounds the loop iterations of a shader invocation.
    pub fn is_llvmpipe(&self) -> bool {
        self.info.name.contains("llvmpipe") || self.info.driver.contains("llvmpipe")
    }

    /// A one-line description of the adapter.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    fn pipeline(&self, wgsl: &str) -> Result<Arc<Pipeline>, String> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        wgsl.hash(&mut h);
        let key = h.finish();
        if let Some(p) = self
            .pipelines
            .lock()
            .map_err(|_| "pipeline cache poisoned")?
            .get(&key)
        {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("lossc kernel"),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("lossc"),
                entries: &[
                    entry(0, wgpu::BufferBindingType::Uniform),
                    entry(1, storage(true)),
                    entry(2, storage(false)),
                    entry(3, storage(false)),
                    entry(4, storage(false)),
                    entry(5, storage(true)),
                ],
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("lossc"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("lossc"),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!(
                "internal compiler error: the GPU driver rejects the kernel: {e}"
            ));
        }
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines
            .lock()
            .map_err(|_| "pipeline cache poisoned")?
            .insert(key, p.clone());
        Ok(p)
    }
}

/// The host's side of one kernel's parameters and data, ready to dispatch (repeatedly).
pub struct Dispatch {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    sync: wgpu::Buffer,
    out: wgpu::Buffer,
    /// The results, then the error word, read back in one mapping.
    staging: wgpu::Buffer,
    arena: wgpu::Buffer,
    /// Inputs in the caller's GPU buffers: (buffer, arena byte offset, bytes).
    copies: Vec<(wgpu::Buffer, u64, u64)>,
    workgroups: u32,
    n_losses: usize,
    sites: Vec<String>,
}

impl Dispatch {
    /// Lays out the arena and fills the parameter block for `kernel` on bound data.
    pub fn new(
        gpu: &Gpu,
        kernel: &Kernel,
        bound: &[&Bound],
        anneal: &[f32],
    ) -> Result<Dispatch, String> {
        Dispatch::with_device_inputs(gpu, kernel, bound, anneal, &[])
    }

    /// Like [`Dispatch::new`], but the named inputs live in the caller's GPU buffers (f32,
    /// row-major, of the shapes they were bound with; their host data may be empty). They
    /// are copied into the arena on the GPU at every [`Dispatch::run`]: nothing goes
    /// through the host, and the caller may update them between runs. The buffers must
    /// belong to `gpu`'s device and allow `COPY_SRC`.
    pub fn with_device_inputs(
        gpu: &Gpu,
        kernel: &Kernel,
        bound: &[&Bound],
        anneal: &[f32],
        device_inputs: &[(&str, &wgpu::Buffer)],
    ) -> Result<Dispatch, String> {
        Dispatch::build(
            gpu,
            kernel,
            bound,
            anneal,
            device_inputs,
            true,
            RowPlacement::Auto,
        )
    }

    /// Like [`Dispatch::new`], with the rows placed as `placement` says instead of
    /// [`RowPlacement::Auto`] (to compare placements, or to test both on one adapter).
    pub fn with_placement(
        gpu: &Gpu,
        kernel: &Kernel,
        bound: &[&Bound],
        anneal: &[f32],
        placement: RowPlacement,
    ) -> Result<Dispatch, String> {
        Dispatch::build(gpu, kernel, bound, anneal, &[], true, placement)
    }

    /// Like [`Dispatch::new`], but runs the generic kernel (`kernel.wgsl`, as `lossc
    /// compile` writes it) with its parameter block filled, as any WebGPU host following
    /// the manifest would, instead of a kernel specialised to the sizes.
    pub fn generic(
        gpu: &Gpu,
        kernel: &Kernel,
        bound: &[&Bound],
        anneal: &[f32],
    ) -> Result<Dispatch, String> {
        Dispatch::build(gpu, kernel, bound, anneal, &[], false, RowPlacement::Auto)
    }

    fn build(
        gpu: &Gpu,
        kernel: &Kernel,
        bound: &[&Bound],
        anneal: &[f32],
        device_inputs: &[(&str, &wgpu::Buffer)],
        specialise: bool,
        placement: RowPlacement,
    ) -> Result<Dispatch, String> {
        // The arena: every input (once per name) and every param, as f32.
        let mut arena: Vec<f32> = Vec::new();
        let mut input_at: HashMap<String, usize> = HashMap::new();
        let mut offsets: HashMap<(usize, String), usize> = HashMap::new();
        let mut copies = Vec::new();
        for (li, b) in bound.iter().enumerate() {
            for (info, data) in b.ir.inputs.iter().zip(&b.inputs) {
                let Some(data) = data else { continue };
                let at = match input_at.get(&info.name) {
                    Some(at) => *at,
                    None => {
                        let at = arena.len();
                        let n: usize = data.shape.iter().product();
                        match device_inputs.iter().find(|(name, _)| *name == info.name) {
                            Some((_, buf)) => {
                                if buf.size() < (n * 4) as u64 {
                                    return Err(format!(
                                        "the GPU buffer for `{}` holds {} bytes; its shape {:?} needs {}",
                                        info.name,
                                        buf.size(),
                                        data.shape,
                                        n * 4
                                    ));
                                }
                                copies.push(((*buf).clone(), (at * 4) as u64, (n * 4) as u64));
                                arena.resize(at + n, 0.0);
                            }
                            None if data.data.len() == n => arena.extend_from_slice(&data.data),
                            None => {
                                return Err(format!(
                                    "input `{}` has no data: neither host arrays nor a GPU buffer",
                                    info.name
                                ));
                            }
                        }
                        input_at.insert(info.name.clone(), at);
                        at
                    }
                };
                offsets.insert((li, info.name.clone()), at);
            }
            for (info, data) in b.ir.params.iter().zip(&b.params) {
                if matches!(info.kind, ParamKind::Enum(_)) {
                    continue;
                }
                offsets.insert((li, info.name.clone()), arena.len());
                arena.extend_from_slice(&data.data);
            }
        }
        let arena_bytes = (arena.len().max(1) * 4) as u64;
        let max = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        if arena_bytes > max {
            // Name the largest input, the likeliest one to split.
            let largest = bound
                .iter()
                .flat_map(|b| b.ir.inputs.iter().zip(&b.inputs))
                .filter_map(|(info, d)| d.as_ref().map(|d| (info, d)))
                .max_by_key(|(_, d)| d.shape.iter().product::<usize>());
            let which = largest
                .map(|(info, d)| {
                    let n: usize = d.shape.iter().product();
                    format!(
                        " (the largest, `{}` of shape {:?}, takes {} bytes)",
                        info.name,
                        d.shape,
                        n * 4
                    )
                })
                .unwrap_or_default();
            return Err(format!(
                "the inputs and params take {arena_bytes} bytes{which}, more than this adapter binds in one buffer ({max} bytes); split the batch"
            ));
        }
        let plan = plan::plan(&Adapter::of(gpu), kernel, bound, placement)?;
        let Plan {
            rows,
            elems,
            chunks_per_row: cpr,
            tables,
            slice,
            work:
                WorkPlan {
                    rows_per_item,
                    items,
                    base,
                    total_items,
                    workgroups,
                    ..
                },
            ..
        } = plan;
        let wg = WORKGROUP as i64;

        let mut meta = vec![0i32; kernel.layout.vec4s() * 4];
        for (i, slot) in kernel.layout.slots.iter().enumerate() {
            let v: i64 = match slot {
                Slot::Dim { loss, dim } => {
                    let b = bound[*loss];
                    b.ir.dims
                        .iter()
                        .position(|d| &d.name == dim)
                        .map_or(0, |d| b.dims[d])
                }
                Slot::Lo { loss, index } => bound[*loss].ranges[*index].0,
                Slot::Extent { loss, index } => extent(bound[*loss].ranges[*index]),
                Slot::Offset { loss, tensor } => {
                    offsets.get(&(*loss, tensor.clone())).copied().unwrap_or(0) as i64
                }
                Slot::Shape { loss, tensor, axis } => {
                    let b = bound[*loss];
                    let shape = if let Some(i) = b.ir.inputs.iter().position(|x| &x.name == tensor)
                    {
                        b.inputs[i]
                            .as_ref()
                            .map(|d| d.shape.clone())
                            .unwrap_or_default()
                    } else if let Some(p) = b.ir.params.iter().position(|x| &x.name == tensor) {
                        b.params[p].shape.clone()
                    } else {
                        vec![]
                    };
                    shape.get(*axis).copied().unwrap_or(0) as i64
                }
                Slot::Enum { loss, param } => {
                    let b = bound[*loss];
                    match b.ir.params.iter().position(|x| &x.name == param) {
                        Some(p) => match (&b.ir.params[p].kind, &b.enums[p]) {
                            (ParamKind::Enum(vs), Some(v)) => {
                                vs.iter().position(|x| x == v).map_or(-1, |k| k as i64)
                            }
                            _ => -1,
                        },
                        None => -1,
                    }
                }
                Slot::MaskOn { loss, mask } => i64::from(bound[*loss].active_masks[*mask]),
                Slot::Rows { loss } => rows[*loss],
                Slot::RowPerThread { loss } => rows_per_item[*loss],
                Slot::Elems { loss } => elems[*loss],
                Slot::ChunksPerRow { loss } => cpr[*loss].max(1),
                Slot::Base { loss } => base[*loss],
                Slot::Items { loss } => items[*loss],
                Slot::Table { loss, table } => tables[*loss][*table],
                Slot::Anneal { loss } => anneal[*loss].to_bits() as i32 as i64,
                Slot::TotalItems => total_items,
                Slot::SliceSize => slice * wg,
                Slot::Workgroups => workgroups,
            };
            meta[i] = i32::try_from(v)
                .map_err(|_| format!("a size does not fit the kernel's 32-bit indices: {v}"))?;
        }

        let d = &gpu.device;
        let losses: Vec<&crate::ir::LossIr> = bound.iter().map(|b| b.ir).collect();
        let wgsl = if specialise {
            kernel.specialise(&losses, &meta)?
        } else {
            kernel.wgsl.clone()
        };
        // For debugging: the specialised kernel as run.
        if let Some(path) = std::env::var_os("LOSSC_DUMP_KERNEL") {
            std::fs::write(&path, &wgsl).map_err(|e| format!("LOSSC_DUMP_KERNEL: {e}"))?;
        }
        let pipeline = gpu.pipeline(&wgsl)?;
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let meta_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("lossc meta"),
            contents: &meta
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        // At least one vec4, and whole vec4s (the arena is also bound as array<vec4<f32>>).
        arena.resize(arena.len().max(4).div_ceil(4) * 4, 0.0);
        let arena_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("lossc arena"),
            contents: &bytes(&arena),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        });
        let scratch_len = (slice * wg * workgroups).max(1) as u64;
        if scratch_len * 4 > max {
            return Err(
                "the hoisted tables need more scratch memory than this adapter binds".into(),
            );
        }
        let scratch = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc scratch"),
            size: scratch_len * 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut sync_init = vec![0u32; 2];
        sync_init.extend(std::iter::repeat_n(
            0xffff_ffffu32,
            (2 * total_items) as usize,
        ));
        let sync = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("lossc sync"),
            contents: &sync_init
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        });
        let n_losses = bound.len();
        let out_bytes = ((3 * n_losses + 1) * 4) as u64;
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc out"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lossc staging"),
            size: out_bytes + 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("lossc"),
            layout: &pipeline.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: meta_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: arena_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: scratch.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: sync.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: out.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 5,
                    resource: arena_buf.as_entire_binding(),
                },
            ],
        });
        Ok(Dispatch {
            pipeline,
            bind_group,
            sync,
            out,
            staging,
            arena: arena_buf,
            copies,
            workgroups: workgroups as u32,
            n_losses,
            sites: kernel.sites.clone(),
        })
    }

    /// The number of workgroups one dispatch launches.
    pub fn workgroups(&self) -> u32 {
        self.workgroups
    }

    /// Dispatches once and reads back `[loss, weight, weighted] × losses` and the total.
    /// Returns the values and the number of dispatches recorded.
    pub fn run(&self, gpu: &Gpu) -> Result<(Vec<f32>, u32), String> {
        gpu.queue.write_buffer(&self.sync, 4, &0u32.to_le_bytes());
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("lossc"),
            });
        for (buf, at, bytes) in &self.copies {
            enc.copy_buffer_to_buffer(buf, 0, &self.arena, *at, Some(*bytes));
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
        let out_bytes = (4 * (3 * self.n_losses + 1)) as u64;
        enc.copy_buffer_to_buffer(&self.out, 0, &self.staging, 0, None);
        enc.copy_buffer_to_buffer(&self.sync, 4, &self.staging, out_bytes, Some(4));
        gpu.queue.submit([enc.finish()]);
        let mut out = read_back(gpu, &self.staging)?;
        let code = out.pop().map_or(0, |x| x.to_bits());
        if code == TIMEOUT_CODE {
            return Err("the kernel's partial results never arrived (a GPU scheduling problem); rerun with --backend cpu".into());
        }
        if code != 0 {
            let site = self
                .sites
                .get(code as usize - 1)
                .cloned()
                .unwrap_or_else(|| format!("site {code}"));
            return Err(format!("index out of range in {site}"));
        }
        debug_assert_eq!(out.len(), 3 * self.n_losses + 1);
        Ok((out, dispatches))
    }
}

fn read_back(gpu: &Gpu, buf: &wgpu::Buffer) -> Result<Vec<f32>, String> {
    let slice = buf.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| format!("GPU poll failed: {e}"))?;
    rx.recv()
        .map_err(|_| "the GPU never mapped the result".to_string())?
        .map_err(|e| format!("cannot read the GPU result: {e}"))?;
    let values = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| format!("cannot read the GPU result: {e}"))?;
        view.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    buf.unmap();
    Ok(values)
}

/// Runs prepared losses through their fused kernel, in one dispatch.
pub fn run_gpu(
    kernel: &Kernel,
    prepared: &[crate::runtime::run::Prepared],
    opts: &RunOptions,
) -> Result<RunResult, String> {
    let gpu = gpu()?;
    let bound: Vec<&Bound> = prepared.iter().map(|p| &p.bound).collect();
    let anneal: Vec<f32> = prepared
        .iter()
        .map(|p| if p.annealed { opts.anneal } else { 1.0 })
        .collect();
    let dispatch = Dispatch::with_placement(gpu, kernel, &bound, &anneal, opts.rows)?;
    let (out, dispatches) = dispatch.run(gpu)?;
    let values: Vec<crate::eval::LossValue> = (0..prepared.len())
        .map(|i| crate::eval::LossValue {
            loss: out[3 * i],
            weight: out[3 * i + 1],
        })
        .collect();
    let names: Vec<&str> = prepared.iter().map(|p| p.bound.ir.name.as_str()).collect();
    let annealed: Vec<bool> = prepared.iter().map(|p| p.annealed).collect();
    let (total, losses, logs) = combine(&names, &values, &annealed, opts);
    // The kernel computed `weighted` and the total itself; report those, which are
    // what a GPU host would read.
    let losses = losses
        .into_iter()
        .enumerate()
        .map(|(i, (n, mut r))| {
            r.weighted = out[3 * i + 2];
            (n, r)
        })
        .collect();
    let _ = total;
    let total = out[3 * prepared.len()];
    Ok(RunResult {
        total,
        losses,
        logs,
        dispatches,
        backend: format!("gpu: {}", gpu.describe()),
        warnings: vec![],
    })
}
