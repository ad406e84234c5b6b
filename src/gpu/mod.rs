//! The wgpu runtime: the process's device and its pipeline cache ([`device`]), the layout
//! of a dispatch's work ([`plan`]), the pure packing of its data and parameter block
//! ([`pack`], testable without a GPU), the thin wgpu part that runs it ([`dispatch`]),
//! and the unfused baseline's executor ([`unfused`]). It reads bound losses
//! ([`crate::bind`]) and compiled kernels ([`crate::codegen`]); it knows nothing of data
//! files or factories' logs (the runtime layer above does).

pub mod backward;
pub mod device;
pub mod dispatch;
mod error;
pub mod pack;
pub mod plan;
pub mod unfused;

pub use backward::Backward;
pub use device::{Gpu, gpu, preferred_adapter};
pub use dispatch::{Dispatch, DispatchOptions, KernelForm};
pub use error::{GpuError, PlanError};
pub use plan::{Adapter, LLVMPIPE_LOOP_LIMIT, Plan, RowPlacement};
