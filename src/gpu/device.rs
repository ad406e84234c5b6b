//! The process's GPU device: finds an adapter (a real GPU when there is one; Mesa's
//! lavapipe or llvmpipe through GL otherwise; `WGPU_BACKEND` is honoured), keeps one
//! device for the process, and caches compute pipelines by kernel text.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use super::GpuError;
use crate::codegen::bindings::{BINDINGS, Binding, Holds};
use crate::ice::InternalError;

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
    pipelines: Mutex<PipelineCache<Arc<Pipeline>>>,
}

/// The pipelines of the kernels most recently built, by their whole WGSL text (a hash
/// alone could hand one kernel another's pipeline). A training loop runs a few kernels
/// again and again; a process that compiles many (a long test, a sweep over shapes)
/// keeps the newest [`PIPELINES_KEPT`], since each holds the driver's compiled code.
struct PipelineCache<P> {
    by_text: HashMap<String, P>,
    /// Texts in the order they were built, oldest first.
    order: VecDeque<String>,
}

/// How many pipelines a [`Gpu`] keeps.
pub const PIPELINES_KEPT: usize = 32;

impl<P: Clone> Default for PipelineCache<P> {
    fn default() -> Self {
        PipelineCache {
            by_text: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<P: Clone> PipelineCache<P> {
    fn get(&self, wgsl: &str) -> Option<P> {
        self.by_text.get(wgsl).cloned()
    }

    fn insert(&mut self, wgsl: &str, p: P) {
        if self.by_text.insert(wgsl.to_string(), p).is_none() {
            self.order.push_back(wgsl.to_string());
        }
        while self.order.len() > PIPELINES_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_text.remove(&oldest);
            }
        }
    }
}

pub(super) struct Pipeline {
    pub(super) pipeline: wgpu::ComputePipeline,
    pub(super) layout: wgpu::BindGroupLayout,
}

static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();

/// The shared device, created on first use. The outcome is kept for the process: on a
/// machine without an adapter every call answers the same error, cheaply.
pub fn gpu() -> Result<&'static Gpu, GpuError> {
    GPU.get_or_init(|| pollster::block_on(Gpu::new()))
        .as_ref()
        .map_err(Clone::clone)
}

/// A wgpu instance (`WGPU_BACKEND` honoured) and the adapter it prefers: a real GPU when
/// there is one.
pub async fn preferred_adapter() -> Result<(wgpu::Instance, wgpu::Adapter), GpuError> {
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
        .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
    Ok((instance, adapter))
}

impl Gpu {
    async fn new() -> Result<Gpu, GpuError> {
        let (_instance, adapter) = preferred_adapter().await?;
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
            .map_err(|e| GpuError::NoDevice(e.to_string()))?;
        Ok(Gpu {
            device,
            queue,
            info: adapter.get_info(),
            limits,
            pipelines: Mutex::new(PipelineCache::default()),
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
            pipelines: Mutex::new(PipelineCache::default()),
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

    pub(super) fn pipeline(&self, wgsl: &str) -> Result<Arc<Pipeline>, GpuError> {
        self.pipeline_for(wgsl, &BINDINGS)
    }

    /// The pipeline of a kernel with the given bindings, cached by its text.
    pub(super) fn pipeline_for(
        &self,
        wgsl: &str,
        bindings: &[Binding],
    ) -> Result<Arc<Pipeline>, GpuError> {
        if let Some(p) = self
            .pipelines
            .lock()
            .map_err(|_| InternalError::new("the pipeline cache is poisoned"))?
            .get(wgsl)
        {
            return Ok(p);
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("lossc kernel"),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
        let layout = bind_group_layout(&self.device, "lossc", bindings);
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
            return Err(
                InternalError::new(format!("the GPU driver rejects the kernel: {e}")).into(),
            );
        }
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines
            .lock()
            .map_err(|_| InternalError::new("the pipeline cache is poisoned"))?
            .insert(wgsl, p.clone());
        Ok(p)
    }
}

/// The bind group layout of a kernel's bindings, from its table
/// ([`crate::codegen::bindings`]): the emitter declared the same numbers and access modes.
pub(super) fn bind_group_layout(
    device: &wgpu::Device,
    label: &str,
    bindings: &[Binding],
) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .map(|b| wgpu::BindGroupLayoutEntry {
            binding: b.number,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: if b.is_uniform() {
                    wgpu::BufferBindingType::Uniform
                } else {
                    wgpu::BufferBindingType::Storage {
                        read_only: b.read_only(),
                    }
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// The bind group of a kernel's bindings: each binding views the buffer `buffer` gives
/// for what it [`Holds`].
pub(super) fn bind_group(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    bindings: &[Binding],
    buffer: impl Fn(Holds) -> Option<wgpu::Buffer>,
) -> Result<wgpu::BindGroup, GpuError> {
    let buffers = bindings
        .iter()
        .map(|b| {
            buffer(b.holds).ok_or_else(|| {
                InternalError::new(format!(
                    "no buffer for binding {} ({:?})",
                    b.number, b.holds
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let entries: Vec<wgpu::BindGroupEntry> = bindings
        .iter()
        .zip(&buffers)
        .map(|(b, buf)| wgpu::BindGroupEntry {
            binding: b.number,
            resource: buf.as_entire_binding(),
        })
        .collect();
    Ok(device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("lossc"),
        layout,
        entries: &entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::{PIPELINES_KEPT, PipelineCache};

    #[test]
    fn the_pipeline_cache_keeps_the_newest_and_keys_by_whole_text() {
        let mut c = PipelineCache::default();
        for k in 0..PIPELINES_KEPT + 3 {
            c.insert(&format!("kernel {k}"), k);
        }
        assert_eq!(c.by_text.len(), PIPELINES_KEPT);
        assert_eq!(c.get("kernel 0"), None);
        assert_eq!(c.get("kernel 2"), None);
        assert_eq!(c.get("kernel 3"), Some(3));
        assert_eq!(
            c.get(&format!("kernel {}", PIPELINES_KEPT + 2)),
            Some(PIPELINES_KEPT + 2)
        );
        // Built again, a kept text stays once.
        c.insert("kernel 3", 3);
        assert_eq!(c.order.len(), PIPELINES_KEPT);
    }
}
