//! The host's pure part of a dispatch, testable without a GPU: packing every input and
//! param into the arena (one f32 buffer), and filling the kernel's parameter block (the
//! slots of [`crate::codegen::layout::Layout`]) from the bound sizes, the arena offsets
//! and the dispatch's layout ([`super::Plan`]).

use std::collections::HashMap;

use super::{GpuError, Plan};
use crate::bind::Bound;
use crate::codegen::Kernel;
use crate::codegen::emit::WORKGROUP;
use crate::codegen::layout::Slot;
use crate::ir::{ParamKind, extent};

/// The inputs and params of a dispatch, packed into one f32 buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Arena {
    /// The values: every input once per name (losses of a factory share inputs by name),
    /// then each loss's params; inputs that live in the caller's GPU buffers take zeros
    /// here and are copied in on the GPU.
    pub values: Vec<f32>,
    /// Where each loss's tensor starts, in f32s: `(loss, tensor name) → offset`.
    pub offsets: HashMap<(usize, String), usize>,
    /// Inputs copied in from the caller's GPU buffers: name, f32 offset, f32 count.
    pub device_copies: Vec<DeviceCopy>,
}

/// One input copied into the arena from a caller's GPU buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceCopy {
    /// The input's name.
    pub input: String,
    /// Where it goes in the arena, in f32s.
    pub at: usize,
    /// How many f32s.
    pub len: usize,
}

impl Arena {
    /// Its size in bytes as bound: at least one vec4, and whole vec4s, since the arena is
    /// also bound as `array<vec4<f32>>`.
    pub fn bound_bytes(&self) -> u64 {
        (self.values.len().max(4).div_ceil(4) * 16) as u64
    }

    /// The values padded to [`Arena::bound_bytes`].
    pub fn padded(&self) -> Vec<f32> {
        let mut v = self.values.clone();
        v.resize(self.values.len().max(4).div_ceil(4) * 4, 0.0);
        v
    }
}

/// Packs the inputs and params of `bound` into an arena. `device_inputs` names the
/// inputs that live in the caller's GPU buffers, with each buffer's size in bytes.
pub fn pack_arena(bound: &[&Bound], device_inputs: &[(&str, u64)]) -> Result<Arena, GpuError> {
    let mut arena = Arena::default();
    let mut input_at: HashMap<String, usize> = HashMap::new();
    for (li, b) in bound.iter().enumerate() {
        for ((info, data), defaulted) in b.ir.inputs.iter().zip(&b.inputs).zip(&b.defaulted) {
            let Some(data) = data else { continue };
            // A defaulted array is this loss's own (another loss may give the same name
            // another shape or default); a NUL cannot be in a name.
            let key = if *defaulted {
                format!("{}\0{li}", info.name)
            } else {
                info.name.clone()
            };
            let at = match input_at.get(&key) {
                Some(at) => *at,
                None => {
                    let at = arena.values.len();
                    let n: usize = data.shape.iter().product();
                    match device_inputs.iter().find(|(name, _)| *name == info.name) {
                        Some((_, bytes)) => {
                            if *bytes < (n * 4) as u64 {
                                return Err(GpuError::BufferTooSmall {
                                    input: info.name.clone(),
                                    bytes: *bytes,
                                    shape: data.shape.clone(),
                                    needs: (n * 4) as u64,
                                });
                            }
                            arena.device_copies.push(DeviceCopy {
                                input: info.name.clone(),
                                at,
                                len: n,
                            });
                            arena.values.resize(at + n, 0.0);
                        }
                        None if data.data.len() == n => arena.values.extend_from_slice(&data.data),
                        None => {
                            return Err(GpuError::NoInputData {
                                input: info.name.clone(),
                            });
                        }
                    }
                    input_at.insert(key, at);
                    at
                }
            };
            arena.offsets.insert((li, info.name.clone()), at);
        }
        for (info, data) in b.ir.params.iter().zip(&b.params) {
            if matches!(info.kind, ParamKind::Enum(_)) {
                continue;
            }
            arena
                .offsets
                .insert((li, info.name.clone()), arena.values.len());
            arena.values.extend_from_slice(&data.data);
        }
    }
    Ok(arena)
}

/// Refuses an arena larger than one storage binding of `max` bytes, naming the largest
/// input (the likeliest one to split).
pub fn check_arena_fits(arena: &Arena, bound: &[&Bound], max: u64) -> Result<(), GpuError> {
    let bytes = (arena.values.len().max(1) * 4) as u64;
    if bytes <= max {
        return Ok(());
    }
    let largest = bound
        .iter()
        .flat_map(|b| b.ir.inputs.iter().zip(&b.inputs))
        .filter_map(|(info, d)| d.as_ref().map(|d| (info, d)))
        .max_by_key(|(_, d)| d.shape.iter().product::<usize>())
        .map(|(info, d)| {
            let n: usize = d.shape.iter().product();
            (info.name.clone(), d.shape.clone(), (n * 4) as u64)
        });
    Err(GpuError::ArenaTooLarge {
        bytes,
        max,
        largest,
    })
}

/// The value of every slot of `kernel`'s parameter block for this dispatch, as the
/// kernel reads them (`i32`; the anneal factors as f32 bits).
pub fn fill_parameter_block(
    kernel: &Kernel,
    bound: &[&Bound],
    anneal: &[f32],
    arena: &Arena,
    plan: &Plan,
) -> Result<Vec<i32>, GpuError> {
    let work = &plan.work;
    let mut block = vec![0i32; kernel.layout.vec4s() * 4];
    for (i, slot) in kernel.layout.slots.iter_enumerated() {
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
            Slot::Offset { loss, tensor } => arena
                .offsets
                .get(&(*loss, tensor.clone()))
                .copied()
                .unwrap_or(0) as i64,
            Slot::Shape { loss, tensor, axis } => shape_of(bound[*loss], tensor)
                .get(*axis)
                .copied()
                .unwrap_or(0) as i64,
            Slot::Enum { loss, param } => enum_number(bound[*loss], param),
            Slot::MaskOn { loss, mask } => i64::from(bound[*loss].active_masks[*mask]),
            Slot::Rows { loss } => plan.rows[*loss],
            Slot::RowPerThread { loss } => work.rows_per_item[*loss],
            Slot::Elems { loss } => plan.elems[*loss],
            Slot::ChunksPerRow { loss } => plan.chunks_per_row[*loss].max(1),
            Slot::Base { loss } => work.base[*loss],
            Slot::Items { loss } => work.items[*loss],
            Slot::Table { loss, table } => plan.tables[*loss][*table],
            Slot::Anneal { loss } => anneal[*loss].to_bits() as i32 as i64,
            Slot::GradOffset { loss } => bound[..*loss].iter().map(|b| domain_size(b)).sum(),
            Slot::TotalItems => work.total_items,
            Slot::SliceSize => plan.slice * WORKGROUP as i64,
            Slot::Workgroups => work.workgroups,
        };
        block[i.index()] = i32::try_from(v).map_err(|_| GpuError::SlotOverflow(v))?;
    }
    Ok(block)
}

/// A tensor's bound shape by name (empty for an absent optional input).
fn shape_of(b: &Bound, tensor: &str) -> Vec<usize> {
    if let Some(i) = b.ir.inputs.position(|x| x.name == tensor) {
        b.inputs[i]
            .as_ref()
            .map(|d| d.shape.clone())
            .unwrap_or_default()
    } else if let Some(p) = b.ir.params.position(|x| x.name == tensor) {
        b.params[p].shape.clone()
    } else {
        vec![]
    }
}

/// An enum param's value as its variant's number (declaration order from 0), -1 when
/// unset.
fn enum_number(b: &Bound, param: &str) -> i64 {
    match b.ir.params.position(|x| x.name == param) {
        Some(p) => match (&b.ir.params[p].kind, &b.enums[p]) {
            (ParamKind::Enum(vs), Some(v)) => {
                vs.iter().position(|x| x == v).map_or(-1, |k| k as i64)
            }
            _ => -1,
        },
        None => -1,
    }
}

/// The number of elements of a loss's domain (of a backward loss's gradient).
pub fn domain_size(b: &Bound) -> i64 {
    b.ir.domain.iter().map(|d| extent(b.ranges[*d])).product()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::{Array, ParamSource, bind};
    use crate::diagnostics::Source;
    use crate::gpu::plan::{Adapter, RowPlacement, plan};
    use crate::ir::{FactoryTerm, InputId, ParamId, Program, TiSlice, TiVec};

    /// Two losses that share the input `x` by name; `b` has a param `s` of shape [N].
    const TWO: &str = "loss a {\n    input x : [N]\n    compute x[i] * 2\n    reduce sum\n}\n\
                       loss b {\n    input x : [N]\n    input y : [M]\n    param s : [N] = 0.5\n    \
                       compute x[i] * s[i] + y[0]\n    reduce mean\n}\n";

    fn program(text: &str) -> Program {
        let sources = [Source::new("two.loss", text)];
        let checked = crate::sema::check(&sources);
        assert!(!checked.has_errors(), "{}", checked.render(&sources));
        checked.program
    }

    fn arr(values: &[f64]) -> Array {
        Array {
            shape: vec![values.len()],
            data: values.to_vec(),
            typed_float: true,
        }
    }

    /// Binds `a` and `b` to x = [1, 2, 3] and y = [10, 20].
    fn bound(p: &Program) -> Vec<Bound<'_>> {
        let (x, y) = (arr(&[1.0, 2.0, 3.0]), arr(&[10.0, 20.0]));
        let a = p.loss("a").unwrap();
        let b = p.loss("b").unwrap();
        let s = ParamSource::Source(b.params[ParamId::new(0)].default.clone().unwrap());
        vec![
            bind(a, TiSlice::from_ref(&[Some(&x)]), &TiVec::new()).unwrap(),
            bind(
                b,
                TiSlice::from_ref(&[Some(&x), Some(&y)]),
                TiSlice::from_ref(&[Some(s)]),
            )
            .unwrap(),
        ]
    }

    #[test]
    fn inputs_are_packed_once_per_name_then_each_loss_params() {
        let p = program(TWO);
        let bound = bound(&p);
        let refs: Vec<&Bound> = bound.iter().collect();
        let arena = pack_arena(&refs, &[]).unwrap();
        // x (shared), then y, then b's s broadcast to [N] = 3.
        assert_eq!(arena.values, vec![1.0, 2.0, 3.0, 10.0, 20.0, 0.5, 0.5, 0.5]);
        let at = |loss: usize, name: &str| arena.offsets[&(loss, name.to_string())];
        assert_eq!(
            (at(0, "x"), at(1, "x"), at(1, "y"), at(1, "s")),
            (0, 0, 3, 5)
        );
        assert!(arena.device_copies.is_empty());
        // Padded to whole vec4s: 8 values are two.
        assert_eq!(arena.bound_bytes(), 32);
        assert_eq!(arena.padded().len(), 8);
    }

    #[test]
    fn device_inputs_take_zeros_and_are_copied_on_the_gpu() {
        let p = program(TWO);
        let bound = bound(&p);
        let refs: Vec<&Bound> = bound.iter().collect();
        let arena = pack_arena(&refs, &[("y", 8)]).unwrap();
        assert_eq!(&arena.values[3..5], &[0.0, 0.0]);
        assert_eq!(
            arena.device_copies,
            vec![DeviceCopy {
                input: "y".into(),
                at: 3,
                len: 2
            }]
        );
        // A buffer of 4 bytes cannot hold y's 2 values.
        match pack_arena(&refs, &[("y", 4)]) {
            Err(GpuError::BufferTooSmall {
                input,
                bytes: 4,
                needs: 8,
                ..
            }) => assert_eq!(input, "y"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_input_without_host_data_or_buffer_is_named() {
        let p = program(TWO);
        let mut bound = bound(&p);
        bound[1].inputs[InputId::new(1)]
            .as_mut()
            .unwrap()
            .data
            .clear();
        let refs: Vec<&Bound> = bound.iter().collect();
        match pack_arena(&refs, &[]) {
            Err(GpuError::NoInputData { input }) => assert_eq!(input, "y"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_arena_over_the_binding_names_the_largest_input() {
        let p = program(TWO);
        let bound = bound(&p);
        let refs: Vec<&Bound> = bound.iter().collect();
        let arena = pack_arena(&refs, &[]).unwrap();
        assert!(check_arena_fits(&arena, &refs, 32).is_ok());
        match check_arena_fits(&arena, &refs, 31) {
            Err(GpuError::ArenaTooLarge {
                bytes: 32,
                max: 31,
                largest: Some((name, shape, 12)),
            }) => assert_eq!((name.as_str(), shape), ("x", vec![3])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_parameter_block_holds_sizes_offsets_work_and_anneal_bits() {
        let p = program(TWO);
        let bound = bound(&p);
        let refs: Vec<&Bound> = bound.iter().collect();
        let terms = [FactoryTerm::plain("a"), FactoryTerm::plain("b")];
        let kernel = crate::codegen::compile(&p, "two", &terms).unwrap();
        let arena = pack_arena(&refs, &[]).unwrap();
        let work = plan(&Adapter::a_gpu(), &kernel, &refs, RowPlacement::Auto).unwrap();
        let block = fill_parameter_block(&kernel, &refs, &[1.0, 0.25], &arena, &work).unwrap();
        assert_eq!(block.len() % 4, 0);
        let mut checked = 0;
        for (i, slot) in kernel.layout.slots.iter_enumerated() {
            let expected = match slot {
                Slot::Dim { loss: 1, dim } if dim == "M" => 2,
                Slot::Dim { dim, .. } if dim == "N" => 3,
                Slot::Offset { loss: 1, tensor } if tensor == "y" => 3,
                Slot::Offset { loss: 1, tensor } if tensor == "s" => 5,
                Slot::Offset { tensor, .. } if tensor == "x" => 0,
                Slot::Anneal { loss: 1 } => 0.25f32.to_bits() as i32,
                Slot::Anneal { loss: 0 } => 1.0f32.to_bits() as i32,
                Slot::TotalItems => work.work.total_items as i32,
                _ => continue,
            };
            assert_eq!(block[i.index()], expected, "{slot:?}");
            checked += 1;
        }
        // Every kernel reads its anneal factors and work count; the sizes and offsets
        // that the specialised text folds may still have slots in the generic layout.
        assert!(checked >= 3, "only {checked} slots checked");
    }
}
