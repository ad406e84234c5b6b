//! The kernel's parameter block: every run-time quantity the generated WGSL reads
//! (dimension sizes, index ranges, arena offsets, work counts) has a slot in one uniform
//! array of i32. The compiler allocates slots by meaning; the host fills them from the
//! bound data; the manifest lists them so that any WebGPU host can fill them too.

use std::collections::HashMap;

use serde::Serialize;

use crate::ir::ids::{TiVec, define_id};
use crate::ir::{IndexId, MaskId};

define_id! {
    /// A slot's position in the parameter block (`lc_meta.m[i / 4]`, component `i % 4`).
    SlotId
}

/// What a slot holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Slot {
    /// The size of a dimension symbol of a loss.
    Dim { loss: usize, dim: String },
    /// The first value of an index variable's range.
    Lo { loss: usize, index: IndexId },
    /// The number of values of an index variable's range (0 when empty).
    Extent { loss: usize, index: IndexId },
    /// The element offset of a tensor in the arena.
    Offset { loss: usize, tensor: String },
    /// The size of one axis of a tensor.
    Shape {
        loss: usize,
        tensor: String,
        axis: usize,
    },
    /// The variant index of an enum param.
    Enum { loss: usize, param: String },
    /// 1 when a `remove_nans` stage runs (its optional inputs are present), else 0.
    MaskOn { loss: usize, mask: MaskId },
    /// The number of rows.
    Rows { loss: usize },
    /// Rows per work item when each thread takes a whole row (small rows); 0 when the
    /// workgroup shares each row.
    RowPerThread { loss: usize },
    /// The number of elements per row.
    Elems { loss: usize },
    /// Chunks of elements per row (ceil(elems / chunk)).
    ChunksPerRow { loss: usize },
    /// The first work item of the loss.
    Base { loss: usize },
    /// The number of work items of the loss (rows × chunks per row when the workgroup
    /// shares rows; ceil(rows / rows per item) when each thread takes a row).
    Items { loss: usize },
    /// The offset of a hoisted table in a workgroup's scratch slice.
    Table { loss: usize, table: usize },
    /// The anneal factor of the loss, as f32 bits.
    Anneal { loss: usize },
    /// In a backward kernel: where the loss's gradient starts in the gradient buffer, in
    /// f32s (the sizes of the losses before it).
    GradOffset { loss: usize },
    /// The number of work items of all losses.
    TotalItems,
    /// The number of f32 scratch values per workgroup: one row's tables per thread.
    SliceSize,
    /// The number of workgroups dispatched.
    Workgroups,
}

/// The slots of one kernel.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Layout {
    /// Slots in order.
    pub slots: TiVec<SlotId, Slot>,
    #[serde(skip)]
    index: HashMap<Slot, SlotId>,
}

impl Layout {
    /// The slot's position, allocated on first use.
    pub fn slot(&mut self, s: Slot) -> SlotId {
        if let Some(i) = self.index.get(&s) {
            return *i;
        }
        let i = self.slots.push_and_get_key(s.clone());
        self.index.insert(s, i);
        i
    }

    /// The slot's position, if allocated.
    pub fn get(&self, s: &Slot) -> Option<SlotId> {
        self.index.get(s).copied()
    }

    /// The slot's value in a filled parameter block (`block`, as
    /// `gpu::pack::fill_parameter_block` writes it), if allocated.
    pub fn value(&self, s: &Slot, block: &[i32]) -> Option<i32> {
        block.get(self.get(s)?.index()).copied()
    }

    /// The number of `vec4<i32>` the uniform block holds.
    pub fn vec4s(&self) -> usize {
        self.slots.len().div_ceil(4).max(1)
    }
}
