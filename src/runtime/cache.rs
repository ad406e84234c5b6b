//! What a factory keeps between runs, for callers that run it again and again (a
//! training loop, the Python module): its fused kernel, compiled on the first GPU run,
//! and the plans of its dispatches, each kept under what it was laid out for. A run on
//! data of the same shapes and param values as an earlier one (the next batch) compiles
//! nothing, specialises nothing and creates no buffer: it writes the new inputs into the
//! plan's arena and dispatches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::RunError;
use super::grad::FusedGradientPlan;
use super::run::Prepared;
use crate::codegen::{CompileError, Kernel};
use crate::gpu::{Dispatch, RowPlacement};
use crate::ice::InternalError;
use crate::ir::{FactoryTerm, Program};

/// How many plans a cache keeps (the most recently used): a loop alternating train and
/// validation batches of different shapes keeps both.
const PLANS: usize = 8;

/// A factory's compiled kernel and plans. [`super::run::run_cached`] fills it; an empty
/// one ([`RunCache::default`]) makes a run compile and plan from scratch.
#[derive(Default)]
pub struct RunCache {
    kernel: OnceLock<Kernel>,
    /// The plans, the most recently used last. Runs of one factory take turns: each
    /// writes its inputs into a plan's buffers and dispatches with the lock held.
    plans: Mutex<Vec<(PlanKey, Plan)>>,
    /// How many plans it has built.
    built: AtomicUsize,
}

/// A laid-out dispatch, values only or with gradients.
pub enum Plan {
    /// The forward kernel alone.
    Forward(Box<Dispatch>),
    /// The forward and backward kernels.
    Gradients(Box<FusedGradientPlan>),
}

/// Everything a plan depends on but the inputs' elements: each loss's sizes, ranges,
/// input shapes, param values and active stages, the inputs differentiated, and the
/// placement of rows.
#[derive(Debug, PartialEq)]
pub struct PlanKey {
    losses: Vec<LossKey>,
    wrt: Option<Vec<String>>,
    rows: RowPlacement,
}

#[derive(Debug, PartialEq)]
struct LossKey {
    name: String,
    annealed: bool,
    dims: Vec<i64>,
    ranges: Vec<(i64, i64)>,
    inputs: Vec<Option<Vec<usize>>>,
    /// Which inputs are defaulted (each its own array, not shared by name).
    defaulted: Vec<bool>,
    /// Each param's shape and elements (bit patterns, so that NaN equals NaN).
    params: Vec<(Vec<usize>, Vec<u32>)>,
    enums: Vec<Option<String>>,
    masks: Vec<bool>,
    value_limit: usize,
}

impl PlanKey {
    /// The key of a run of `prepared`, differentiated with respect to `wrt` if given.
    pub fn new(prepared: &[Prepared], wrt: Option<&[String]>, rows: RowPlacement) -> PlanKey {
        let losses = prepared
            .iter()
            .map(|p| {
                let b = &p.bound;
                LossKey {
                    name: b.ir.name.clone(),
                    annealed: p.annealed,
                    dims: b.dims.clone(),
                    ranges: b.ranges.iter().copied().collect(),
                    inputs: b
                        .inputs
                        .iter()
                        .map(|i| i.as_ref().map(|t| t.shape.clone()))
                        .collect(),
                    defaulted: b.defaulted.iter().copied().collect(),
                    params: b
                        .params
                        .iter()
                        .map(|t| {
                            (
                                t.shape.clone(),
                                t.data.iter().map(|x| x.to_bits()).collect(),
                            )
                        })
                        .collect(),
                    enums: b.enums.iter().cloned().collect(),
                    masks: b.active_masks.iter().copied().collect(),
                    value_limit: b.value_limit,
                }
            })
            .collect();
        PlanKey {
            losses,
            wrt: wrt.map(<[String]>::to_vec),
            rows,
        }
    }
}

impl RunCache {
    /// The fused kernel of `terms`, compiled on the first call.
    pub fn kernel(
        &self,
        program: &Program,
        name: &str,
        terms: &[FactoryTerm],
    ) -> Result<&Kernel, CompileError> {
        if let Some(k) = self.kernel.get() {
            return Ok(k);
        }
        let compiled = crate::codegen::compile(program, name, terms)?;
        // Two threads may both compile it; they compile the same kernel.
        Ok(self.kernel.get_or_init(|| compiled))
    }

    /// Runs `f` on the plan kept under `key`, first building it with `build` (and keeping
    /// it) when there is none.
    pub fn with_plan<T>(
        &self,
        key: PlanKey,
        build: impl FnOnce() -> Result<Plan, RunError>,
        f: impl FnOnce(&mut Plan, bool) -> Result<T, RunError>,
    ) -> Result<T, RunError> {
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| InternalError::new("a factory's plan cache is poisoned"))?;
        let kept = match plans.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let entry = plans.remove(i);
                plans.push(entry);
                true
            }
            None => {
                let plan = build()?;
                self.built.fetch_add(1, Ordering::Relaxed);
                if plans.len() == PLANS {
                    plans.remove(0);
                }
                plans.push((key, plan));
                false
            }
        };
        let (_, plan) = plans
            .last_mut()
            .ok_or_else(|| InternalError::new("a plan vanished from its cache"))?;
        f(plan, kept)
    }

    /// How many plans it has built (kept or since dropped).
    pub fn built(&self) -> usize {
        self.built.load(Ordering::Relaxed)
    }

    /// How many plans it keeps.
    pub fn plans(&self) -> usize {
        self.plans.lock().map(|p| p.len()).unwrap_or(0)
    }
}
