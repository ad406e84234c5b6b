//! Running a factory: resolving which value each param takes, binding each loss,
//! evaluating them on the chosen back end (with the CPU fallback), and combining them as
//! Lightning Pose's `LossFactory` does: `total = Σ anneal_i · (weight_i · loss_i)`,
//! accumulated in f32 in factory order, with the logs `{stage}_{name}_loss`,
//! `{name}_weight`, `{stage}_{name}_loss_weighted`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::ser::SerializeMap;

use super::RunError;
use crate::bind::{Array, Bound, DataValue, LossValue, ParamSource, bind};
use crate::codegen::{CompileError, Kernel};
use crate::diagnostics::closest;
use crate::eval;
use crate::gpu::{Dispatch, DispatchOptions, GpuError, PlanError, RowPlacement};
use crate::ir::{FactoryTerm, InputId, LossIr, ParamId, ParamValue, Program, TiVec};
use crate::runtime::cache::{Plan, PlanKey, RunCache};
use crate::runtime::data::{Data, DataError};
use crate::runtime::grad::{self, Gradient, Wrt};

/// Where a run evaluates its losses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The GPU when wgpu finds an adapter, else the CPU; also the CPU when the adapter
    /// cannot run this dispatch exactly (llvmpipe's loop budget).
    #[default]
    Auto,
    /// The fused kernel through wgpu; any GPU error is the run's error.
    Gpu,
    /// The CPU reference evaluator.
    Cpu,
}

/// The options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The stage prefix of the logs (`train`, `val`, `test`).
    pub stage: String,
    /// The anneal factor for annealed terms.
    pub anneal: f32,
    /// How the GPU kernel places rows on threads (the CPU evaluator ignores it).
    pub rows: RowPlacement,
    /// Where to evaluate.
    pub backend: Backend,
    /// The inputs to differentiate the total with respect to.
    pub wrt: Wrt,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stage: "train".into(),
            anneal: 1.0,
            rows: RowPlacement::Auto,
            backend: Backend::Auto,
            wrt: Wrt::Nothing,
        }
    }
}

/// One loss's part of the result.
#[derive(Clone, Debug, Serialize)]
pub struct LossResult {
    /// The unweighted loss.
    #[serde(serialize_with = "number")]
    pub loss: f32,
    /// Its weight.
    #[serde(serialize_with = "number")]
    pub weight: f32,
    /// `weight · loss`.
    #[serde(serialize_with = "number")]
    pub weighted: f32,
}

/// An f32 in JSON: the shortest decimal that reads back to the same bits; NaN as `null`
/// and infinities as `"Infinity"` / `"-Infinity"`, as the conformance vectors write them.
fn number<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_none()
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f32(*v)
    }
}

/// A list of f32s in JSON, each as [`number`] writes it.
pub(crate) fn number_list<S: serde::Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for x in v {
        seq.serialize_element(&Num(*x))?;
    }
    seq.end()
}

/// An f32 that serializes as [`number`] writes it.
struct Num(f32);

impl Serialize for Num {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        number(&self.0, s)
    }
}

fn logs<S: serde::Serializer>(v: &[(String, f32)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for (name, x) in v {
        seq.serialize_element(&(name, Num(*x)))?;
    }
    seq.end()
}

/// The result of a run, in the form `lossc run --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// `Σ anneal · weight · loss`.
    #[serde(serialize_with = "number")]
    pub total: f32,
    /// Per loss, in factory order.
    #[serde(serialize_with = "ordered")]
    pub losses: Vec<(String, LossResult)>,
    /// `[name, value]` pairs, named as Lightning Pose names them.
    #[serde(serialize_with = "logs")]
    pub logs: Vec<(String, f32)>,
    /// `d total / d input` for each input asked for, in the order asked (omitted from
    /// JSON when none was).
    #[serde(
        serialize_with = "ordered_grads",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub grads: Vec<(String, Gradient)>,
    /// How many GPU dispatches the run recorded (0 on the CPU).
    pub dispatches: u32,
    /// Which back end ran it.
    pub backend: String,
    /// Warnings for the user (data keys no loss uses).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Notes for the user (why the run fell back to the CPU).
    #[serde(skip)]
    pub notes: Vec<String>,
    /// The kernel text the GPU ran (specialised to the sizes), when it ran on one.
    #[serde(skip)]
    pub kernel: Option<String>,
}

fn ordered_grads<S: serde::Serializer>(v: &[(String, Gradient)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, g) in v {
        m.serialize_entry(k, g)?;
    }
    m.end()
}

fn ordered<S: serde::Serializer>(v: &[(String, LossResult)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, r) in v {
        m.serialize_entry(k, r)?;
    }
    m.end()
}

/// Param values that override everything else (`--set name=value`).
pub type Overrides = Vec<(String, DataValue)>;

/// Finds which loss (and which declaration) a data key names. Keys are input names, or
/// params as `loss.param`, or plain `param` when only one loss of the factory has it.
/// A plain key that names nothing is left out, with a warning in `unused` (a data file
/// may carry arrays for other losses, as Lightning Pose passes every loss every array),
/// unless it is a near miss of a declared name: that is a typo, and an error.
fn route_keys(
    losses: &[&LossIr],
    keys: impl IntoIterator<Item = String>,
    unused: &mut Vec<(String, String)>,
) -> Result<HashMap<(usize, String), String>, RunError> {
    let mut out = HashMap::new();
    for key in keys {
        if let Some((loss, param)) = key.split_once('.') {
            let Some(li) = losses.iter().position(|l| l.name == loss) else {
                return Err(RunError::KeyNamesOtherLoss {
                    key: key.clone(),
                    loss: loss.to_string(),
                    losses: names(losses),
                });
            };
            if !losses[li].params.iter().any(|p| p.name == param) {
                return Err(RunError::NoSuchParam {
                    loss: loss.to_string(),
                    param: param.to_string(),
                    hint: closest(param, losses[li].params.iter().map(|p| p.name.as_str()))
                        .map(str::to_string),
                });
            }
            out.insert((li, param.to_string()), key.clone());
            continue;
        }
        if losses
            .iter()
            .any(|l| l.inputs.iter().any(|i| i.name == key))
        {
            continue; // inputs are shared by name
        }
        let owners: Vec<usize> = (0..losses.len())
            .filter(|li| losses[*li].params.iter().any(|p| p.name == key))
            .collect();
        match owners[..] {
            [li] => {
                out.insert((li, key.clone()), key.clone());
            }
            [] => {
                let all: Vec<String> = losses
                    .iter()
                    .flat_map(|l| {
                        l.inputs
                            .iter()
                            .map(|i| i.name.clone())
                            .chain(l.params.iter().map(|p| p.name.clone()))
                    })
                    .collect();
                // A near miss of a declared name is a typo, and a typo must not pass
                // silently; any other key may belong to losses not in this run.
                match closest(&key, all.iter().map(String::as_str)).filter(|c| typo(&key, c)) {
                    Some(c) => {
                        return Err(RunError::Typo {
                            key: key.clone(),
                            losses: names(losses),
                            suggestion: c.to_string(),
                        });
                    }
                    None => unused.push((key.clone(), names(losses))),
                }
            }
            _ => {
                return Err(RunError::AmbiguousKey {
                    key: key.clone(),
                    owners: owners
                        .iter()
                        .map(|li| losses[*li].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    choices: owners
                        .iter()
                        .map(|li| format!("{}.{key}", losses[*li].name))
                        .collect::<Vec<_>>()
                        .join("` or `"),
                });
            }
        }
    }
    Ok(out)
}

/// Whether `key` is so close to `name` (two edits at most) that it must be a typo.
fn typo(key: &str, name: &str) -> bool {
    crate::diagnostics::edit_distance(key, name) <= 2
}

fn names(losses: &[&LossIr]) -> String {
    losses
        .iter()
        .map(|l| format!("`{}`", l.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One loss of a run, bound and ready to evaluate by any back end.
pub struct Prepared<'a> {
    /// The bound loss.
    pub bound: Bound<'a>,
    /// Whether the anneal factor applies.
    pub annealed: bool,
}

/// Resolves every value and binds every loss of the factory. Also returns warnings
/// about data keys that no loss uses.
pub fn prepare<'a>(
    program: &'a Program,
    terms: &[FactoryTerm],
    data: &Data,
    overrides: &Overrides,
) -> Result<(Vec<Prepared<'a>>, Vec<String>), RunError> {
    let losses: Vec<&LossIr> = terms
        .iter()
        .map(|t| find_loss(program, &t.loss))
        .collect::<Result<_, _>>()?;
    let mut unused = Vec::new();
    let from_data = route_keys(&losses, data.keys().cloned(), &mut unused)?;
    let warnings = unused
        .into_iter()
        .map(|(key, losses)| {
            format!("`{key}` is neither an input nor a param of {losses}: ignored")
        })
        .collect();
    let mut unknown_set = Vec::new();
    let from_set = route_keys(
        &losses,
        overrides.iter().map(|(k, _)| k.clone()),
        &mut unknown_set,
    )?;
    if let Some((key, losses)) = unknown_set.into_iter().next() {
        return Err(RunError::SetNamesNothing { key, losses });
    }
    let set: BTreeMap<&str, &DataValue> = overrides.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Vec::new();
    for (li, (loss, term)) in losses.iter().zip(terms).enumerate() {
        let inputs: TiVec<InputId, Option<&Array>> = loss
            .inputs
            .iter()
            .map(|i| {
                match set
                    .get(i.name.as_str())
                    .copied()
                    .or_else(|| data.get(&i.name))
                {
                    Some(DataValue::Array(a)) => Ok(Some(a)),
                    Some(DataValue::Str(_)) => Err(RunError::InputIsString {
                        input: i.name.clone(),
                    }),
                    None => Ok(None),
                }
            })
            .collect::<Result<_, _>>()?;
        let params: TiVec<ParamId, Option<ParamSource>> = loss
            .params
            .iter()
            .map(|p| {
                let key = (li, p.name.clone());
                if let Some(k) = from_set.get(&key) {
                    return Some(ParamSource::Data(set[k.as_str()].clone()));
                }
                if let Some(k) = from_data.get(&key) {
                    return Some(ParamSource::Data(data[k].clone()));
                }
                if let Some((_, v)) = term.settings.iter().find(|(n, _)| *n == p.name) {
                    return Some(ParamSource::Source(v.clone()));
                }
                p.default.clone().map(ParamSource::Source)
            })
            .collect();
        out.push(Prepared {
            bound: bind(loss, &inputs, &params)?,
            annealed: term.annealed,
        });
    }
    Ok((out, warnings))
}

/// The factory total, each loss's result, and the logs.
pub type Combined = (f32, Vec<(String, LossResult)>, Vec<(String, f32)>);

/// The loss called `name`, or an error that lists the losses the files define.
pub fn find_loss<'a>(program: &'a Program, name: &str) -> Result<&'a LossIr, RunError> {
    program.loss(name).ok_or_else(|| {
        let known: Vec<&str> = program.losses.iter().map(|l| l.name.as_str()).collect();
        RunError::NoSuchLoss {
            name: name.to_string(),
            known: known.join(", "),
            hint: closest(name, known.iter().copied()).map(str::to_string),
        }
    })
}

/// Combines per-loss values into the factory's result, in factory order, in f32.
pub fn combine(
    names: &[&str],
    values: &[LossValue],
    annealed: &[bool],
    opts: &RunOptions,
) -> Combined {
    let mut total = 0.0f32;
    let mut losses = Vec::new();
    let mut logs = Vec::new();
    for ((name, v), annealed) in names.iter().zip(values).zip(annealed) {
        let weighted = v.weight * v.loss;
        let anneal = if *annealed { opts.anneal } else { 1.0 };
        total += anneal * weighted;
        logs.push((format!("{}_{name}_loss", opts.stage), v.loss));
        logs.push((format!("{name}_weight"), v.weight));
        logs.push((format!("{}_{name}_loss_weighted", opts.stage), weighted));
        losses.push((
            name.to_string(),
            LossResult {
                loss: v.loss,
                weight: v.weight,
                weighted,
            },
        ));
    }
    (total, losses, logs)
}

/// Runs a factory's terms on `data`: binds every loss, evaluates them where
/// `opts.backend` says, and combines them. `kernel_name` names the fused kernel (the
/// factory's name, or the losses joined by `+`).
///
/// With [`Backend::Auto`], a machine without a GPU adapter runs on the CPU, and so does a
/// dispatch that the adapter cannot run exactly ([`PlanError::LoopBudget`]: llvmpipe's
/// loop budget is a property of the adapter, not of the data); the result's `notes` say
/// so. Any other GPU error is the run's error: a wrong number is worse than a refusal.
pub fn run(
    program: &Program,
    kernel_name: &str,
    terms: &[FactoryTerm],
    data: &Data,
    overrides: &Overrides,
    opts: &RunOptions,
) -> Result<RunResult, RunError> {
    let cache = RunCache::default();
    run_cached(program, kernel_name, terms, data, overrides, opts, &cache)
}

/// [`run`], keeping the compiled kernel and the dispatch's plan in `cache` for the next
/// runs of the same terms: a run on data of the shapes and param values of an earlier
/// one compiles nothing and lays out nothing ([`RunCache`]).
pub fn run_cached(
    program: &Program,
    kernel_name: &str,
    terms: &[FactoryTerm],
    data: &Data,
    overrides: &Overrides,
    opts: &RunOptions,
    cache: &RunCache,
) -> Result<RunResult, RunError> {
    let (prepared, warnings) = prepare(program, terms, data, overrides)?;
    let gpu_found = match opts.backend {
        Backend::Cpu => false,
        Backend::Gpu => {
            crate::gpu::gpu()?;
            true
        }
        Backend::Auto => crate::gpu::gpu().is_ok(),
    };
    let names = grad::resolve(&prepared, &opts.wrt)?;
    let mut result = if gpu_found {
        let kernel = match cache.kernel(program, kernel_name, terms) {
            // A program too deep for any GPU kernel runs where it can under `auto`.
            Err(e @ CompileError::TooDeep { .. }) if opts.backend == Backend::Auto => {
                let mut r = run_prepared_cpu_with_gradients(&prepared, &names, opts)?;
                r.notes.push(format!("{e}; running on the CPU"));
                r.warnings = warnings;
                return Ok(r);
            }
            other => other?,
        };
        let wrt = (opts.wrt != Wrt::Nothing).then_some(&names[..]);
        match run_gpu_cached(kernel, &prepared, wrt, opts, cache) {
            Err(RunError::Gpu(GpuError::Plan(e @ PlanError::LoopBudget { .. })))
                if opts.backend == Backend::Auto =>
            {
                let mut r = run_prepared_cpu_with_gradients(&prepared, &names, opts)?;
                r.notes.push(format!("{e}; running on the CPU"));
                r
            }
            other => other?,
        }
    } else {
        run_prepared_cpu_with_gradients(&prepared, &names, opts)?
    };
    result.warnings = warnings;
    Ok(result)
}

/// Runs the factory on the CPU reference evaluator.
pub fn run_cpu(
    program: &Program,
    terms: &[FactoryTerm],
    data: &Data,
    overrides: &Overrides,
    opts: &RunOptions,
) -> Result<RunResult, RunError> {
    let cpu = RunOptions {
        backend: Backend::Cpu,
        ..opts.clone()
    };
    run(program, "", terms, data, overrides, &cpu)
}

/// Evaluates prepared losses on the CPU and combines them.
fn run_prepared_cpu(prepared: &[Prepared], opts: &RunOptions) -> Result<RunResult, RunError> {
    let values: Vec<LossValue> = prepared
        .iter()
        .map(|p| eval::evaluate(&p.bound))
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = prepared.iter().map(|p| p.bound.ir.name.as_str()).collect();
    let annealed: Vec<bool> = prepared.iter().map(|p| p.annealed).collect();
    let (total, losses, logs) = combine(&names, &values, &annealed, opts);
    Ok(RunResult {
        total,
        losses,
        logs,
        grads: vec![],
        dispatches: 0,
        backend: "cpu".into(),
        warnings: vec![],
        notes: vec![],
        kernel: None,
    })
}

/// Evaluates prepared losses on the CPU, with the gradients of their total with respect
/// to `names` (none when empty).
fn run_prepared_cpu_with_gradients(
    prepared: &[Prepared],
    names: &[String],
    opts: &RunOptions,
) -> Result<RunResult, RunError> {
    let mut r = run_prepared_cpu(prepared, opts)?;
    if opts.wrt != Wrt::Nothing {
        let weights: Vec<f32> = r.losses.iter().map(|(_, l)| l.weight).collect();
        r.grads = grad::gradients(prepared, names, &weights, opts.anneal)?;
    }
    Ok(r)
}

/// Runs prepared losses through their fused kernel on the process's GPU, in one
/// dispatch. The kernel computes each loss's weighted value and the total itself: the
/// result reports those, which are what any GPU host reads.
pub fn run_gpu(
    kernel: &Kernel,
    prepared: &[Prepared],
    opts: &RunOptions,
) -> Result<RunResult, RunError> {
    run_gpu_cached(kernel, prepared, None, opts, &RunCache::default())
}

/// Runs prepared losses on the process's GPU with the plan `cache` keeps for them (built
/// and kept when it has none): the forward kernel alone, or with `wrt` the forward and
/// backward kernels in one command buffer, with the gradients of the total with respect
/// to those inputs.
fn run_gpu_cached(
    kernel: &Kernel,
    prepared: &[Prepared],
    wrt: Option<&[String]>,
    opts: &RunOptions,
    cache: &RunCache,
) -> Result<RunResult, RunError> {
    let gpu = crate::gpu::gpu()?;
    let bound: Vec<&Bound> = prepared.iter().map(|p| &p.bound).collect();
    let factors = grad::factors(prepared.iter().map(|p| p.annealed), opts.anneal);
    let options = DispatchOptions {
        placement: opts.rows,
        ..DispatchOptions::default()
    };
    let build = || {
        Ok(match wrt {
            None => Plan::Forward(Box::new(Dispatch::new(
                gpu, kernel, &bound, &factors, &options,
            )?)),
            Some(names) => Plan::Gradients(Box::new(grad::FusedGradientPlan::new(
                gpu,
                kernel,
                prepared,
                names,
                opts.anneal,
                &options,
            )?)),
        })
    };
    let names: Vec<&str> = prepared.iter().map(|p| p.bound.ir.name.as_str()).collect();
    let annealed: Vec<bool> = prepared.iter().map(|p| p.annealed).collect();
    let key = PlanKey::new(prepared, wrt, opts.rows);
    cache.with_plan(key, build, |plan, kept| match plan {
        Plan::Forward(dispatch) => {
            if kept {
                dispatch.write_inputs(gpu, &bound)?;
                dispatch.set_anneal(gpu, &factors);
            }
            let (out, dispatches) = dispatch.run(gpu)?;
            let values: Vec<LossValue> = (0..prepared.len())
                .map(|i| LossValue {
                    loss: out[3 * i],
                    weight: out[3 * i + 1],
                })
                .collect();
            let (_, mut losses, logs) = combine(&names, &values, &annealed, opts);
            for (i, (_, r)) in losses.iter_mut().enumerate() {
                r.weighted = out[3 * i + 2];
            }
            Ok(RunResult {
                total: out[3 * prepared.len()],
                losses,
                logs,
                grads: vec![],
                dispatches,
                backend: format!("gpu: {}", gpu.describe()),
                warnings: vec![],
                notes: vec![],
                kernel: Some(dispatch.wgsl().to_string()),
            })
        }
        Plan::Gradients(plan) => {
            if kept {
                plan.write_inputs(gpu, &bound)?;
                plan.set_anneal(gpu, opts.anneal);
            }
            let g = plan.run(gpu)?;
            let (_, mut losses, logs) = combine(&names, &g.values, &annealed, opts);
            for ((_, r), w) in losses.iter_mut().zip(&g.weighted) {
                r.weighted = *w;
            }
            Ok(RunResult {
                total: g.total,
                losses,
                logs,
                grads: g.grads,
                dispatches: g.dispatches,
                backend: format!("gpu: {}", gpu.describe()),
                warnings: vec![],
                notes: vec![],
                kernel: Some(plan.wgsl()),
            })
        }
    })
}

/// A `--set` value: JSON (a number, a list, a tensor object) or else a bare string.
pub fn parse_override(s: &str) -> Result<(String, DataValue), DataError> {
    let set_error = |reason: String| DataError::Set {
        arg: s.to_string(),
        reason,
    };
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| set_error("expected name=value".into()))?;
    let value = match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::Null) => {
            return Err(set_error(
                "give a value (to leave a param at its default, leave out --set)".into(),
            ));
        }
        Ok(j) => crate::runtime::data::json_value(&j).map_err(|e| set_error(e.to_string()))?,
        Err(_) => DataValue::Str(v.to_string()),
    };
    Ok((k.trim().to_string(), value))
}

/// `ParamValue` is re-exported for callers building factory terms by hand.
pub type Setting = (String, ParamValue);
