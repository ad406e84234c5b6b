//! What can go wrong between a bound factory and its numbers on a GPU: a layout the
//! adapter cannot run ([`PlanError`]), and the device, the data or the kernel itself
//! ([`GpuError`]). A host that would rather run elsewhere matches on the variant (the
//! runtime's CPU fallback matches [`PlanError::LoopBudget`]), never on the text.

use thiserror::Error;

use crate::bind::OutOfRange;
use crate::ice::InternalError;

/// A dispatch that cannot be laid out on this adapter.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum PlanError {
    /// Mesa's llvmpipe would stop some thread before its loops end (see
    /// [`super::LLVMPIPE_LOOP_LIMIT`]), which would give wrong numbers.
    #[error(
        "this run needs up to {needed} loop iterations per GPU thread, and Mesa's llvmpipe stops any thread after {limit}, which would give wrong numbers{}; use --backend cpu (or a real GPU){}",
        costliest.as_ref().map(|c| format!(" (the costliest loop: {c})")).unwrap_or_default(),
        if *shared_would_fit { ", or --rows shared" } else { "" }
    )]
    LoopBudget {
        /// The loop iterations the worst thread needs.
        needed: u64,
        /// llvmpipe's budget.
        limit: u64,
        /// The reduction that costs the most iterations per row, in words: its kind,
        /// its loss, its source location and its count.
        costliest: Option<String>,
        /// Whether the rows were placed one per thread by request, so that shared rows
        /// may still fit.
        shared_would_fit: bool,
    },
    /// A loss's rows or elements exceed the kernel's 32-bit indices.
    #[error("the problem is too large for one kernel (over 2^31 elements)")]
    TooManyElements,
    /// The work items of all losses exceed what the synchronisation buffer indexes.
    #[error("the problem is too large for one kernel")]
    TooManyItems,
}

/// A GPU run that failed.
#[derive(Clone, Debug, Error)]
pub enum GpuError {
    /// wgpu found no adapter.
    #[error(
        "no GPU adapter found ({0}); on Debian, `apt-get install mesa-vulkan-drivers` gives a software one, or use --backend cpu"
    )]
    NoAdapter(String),
    /// The adapter would not open a device.
    #[error("cannot open the GPU device: {0}")]
    NoDevice(String),
    /// The dispatch cannot be laid out.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An input given as a GPU buffer is smaller than its bound shape.
    #[error("the GPU buffer for `{input}` holds {bytes} bytes; its shape {shape:?} needs {needs}")]
    BufferTooSmall {
        input: String,
        bytes: u64,
        shape: Vec<usize>,
        needs: u64,
    },
    /// A caller's GPU buffer lacks a usage the run needs.
    #[error("the GPU buffer `{buffer}` needs the usage {needs}")]
    BufferUsage { buffer: String, needs: String },
    /// A caller's GPU buffer for the gradients is smaller than they are.
    #[error("the GPU buffer for the gradients holds {bytes} bytes; they need {needs}")]
    GradientBufferTooSmall { bytes: u64, needs: u64 },
    /// An input given a GPU buffer at run time was not planned as one.
    #[error("input `{input}` was not planned to be read from a GPU buffer")]
    NotDeviceInput { input: String },
    /// An input has neither host data nor a GPU buffer.
    #[error("input `{input}` has no data: neither host arrays nor a GPU buffer")]
    NoInputData { input: String },
    /// The inputs and params exceed one storage binding; names the largest input.
    #[error(
        "the inputs and params take {bytes} bytes{}, more than this adapter binds in one buffer ({max} bytes); split the batch",
        largest.as_ref().map(|(name, shape, b)| format!(" (the largest, `{name}` of shape {shape:?}, takes {b} bytes)")).unwrap_or_default()
    )]
    ArenaTooLarge {
        bytes: u64,
        max: u64,
        /// The largest input: name, shape, bytes.
        largest: Option<(String, Vec<usize>, u64)>,
    },
    /// The hoisted tables exceed one storage binding.
    #[error("the hoisted tables need more scratch memory than this adapter binds")]
    ScratchTooLarge,
    /// A parameter-block value past the kernel's 32-bit slots.
    #[error("a size does not fit the kernel's 32-bit indices: {0}")]
    SlotOverflow(i64),
    /// A read through a gather left its axis, where its value was needed: the first such
    /// read in the factory's order, as the CPU evaluator reports it.
    #[error(transparent)]
    OutOfRange(Box<OutOfRange>),
    /// Some workgroup's partial results never arrived.
    #[error(
        "the kernel's partial results never arrived (a GPU scheduling problem); rerun with --backend cpu"
    )]
    Timeout,
    /// The results could not be read back.
    #[error("cannot read the GPU result: {0}")]
    ReadBack(String),
    /// A broken invariant of lossc (a kernel the driver rejects, say).
    #[error(transparent)]
    Internal(#[from] InternalError),
}
