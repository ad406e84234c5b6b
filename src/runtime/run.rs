//! Running a factory: resolving which value each param takes, binding and evaluating
//! each loss, and combining them as Lightning Pose's `LossFactory` does:
//! `total = Σ anneal_i · (weight_i · loss_i)`, accumulated in f32 in factory order, with
//! the logs `{stage}_{name}_loss`, `{name}_weight`, `{stage}_{name}_loss_weighted`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::diagnostics::closest;
use crate::eval;
use crate::ir::{FactoryTerm, LossIr, ParamValue, Program};
use crate::runtime::bind::{BindError, ParamSource, bind};
use crate::runtime::data::{Data, DataValue};

/// The options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The stage prefix of the logs (`train`, `val`, `test`).
    pub stage: String,
    /// The anneal factor for annealed terms.
    pub anneal: f32,
    /// How the GPU kernel places rows on threads (the CPU evaluator ignores it).
    pub rows: crate::gpu::RowPlacement,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stage: "train".into(),
            anneal: 1.0,
            rows: crate::gpu::RowPlacement::Auto,
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

fn logs<S: serde::Serializer>(v: &[(String, f32)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    struct Num(f32);
    impl Serialize for Num {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            number(&self.0, s)
        }
    }
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
    /// How many GPU dispatches the run recorded (0 on the CPU).
    pub dispatches: u32,
    /// Which back end ran it.
    pub backend: String,
    /// Warnings for the user (data keys no loss uses).
    #[serde(skip)]
    pub warnings: Vec<String>,
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
    unused: &mut Vec<String>,
) -> Result<HashMap<(usize, String), String>, BindError> {
    let mut out = HashMap::new();
    for key in keys {
        if let Some((loss, param)) = key.split_once('.') {
            let Some(li) = losses.iter().position(|l| l.name == loss) else {
                return Err(BindError(format!(
                    "`{key}` names loss `{loss}`, which is not in this run (the losses are {})",
                    names(losses)
                )));
            };
            if !losses[li].params.iter().any(|p| p.name == param) {
                let hint = closest(param, losses[li].params.iter().map(|p| p.name.as_str()))
                    .map(|c| format!("; did you mean `{loss}.{c}`?"))
                    .unwrap_or_default();
                return Err(BindError(format!(
                    "loss `{loss}` has no param `{param}`{hint}"
                )));
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
                        return Err(BindError(format!(
                            "`{key}` is neither an input nor a param of {}; did you mean `{c}`?",
                            names(losses)
                        )));
                    }
                    None => unused.push(format!(
                        "`{key}` is neither an input nor a param of {}: ignored",
                        names(losses)
                    )),
                }
            }
            _ => {
                return Err(BindError(format!(
                    "`{key}` is a param of several losses ({}): write `{}`",
                    owners
                        .iter()
                        .map(|li| losses[*li].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    owners
                        .iter()
                        .map(|li| format!("{}.{key}", losses[*li].name))
                        .collect::<Vec<_>>()
                        .join("` or `")
                )));
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
    pub bound: crate::runtime::bind::Bound<'a>,
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
) -> Result<(Vec<Prepared<'a>>, Vec<String>), BindError> {
    let losses: Vec<&LossIr> = terms
        .iter()
        .map(|t| {
            program.loss(&t.loss).ok_or_else(|| {
                let known: Vec<&str> = program.losses.iter().map(|l| l.name.as_str()).collect();
                let hint = closest(&t.loss, known.iter().copied())
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                BindError(format!(
                    "no loss named `{}` (the files define {}){hint}",
                    t.loss,
                    known.join(", ")
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut warnings = Vec::new();
    let from_data = route_keys(&losses, data.keys().cloned(), &mut warnings)?;
    let mut unknown_set = Vec::new();
    let from_set = route_keys(
        &losses,
        overrides.iter().map(|(k, _)| k.clone()),
        &mut unknown_set,
    )?;
    if let Some(first) = unknown_set.into_iter().next() {
        let first = first.trim_end_matches(": ignored");
        return Err(BindError(format!("--set: {first}")));
    }
    let set: BTreeMap<&str, &DataValue> = overrides.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Vec::new();
    for (li, (loss, term)) in losses.iter().zip(terms).enumerate() {
        let inputs: Vec<Option<&crate::runtime::data::Array>> = loss
            .inputs
            .iter()
            .map(|i| {
                match set
                    .get(i.name.as_str())
                    .copied()
                    .or_else(|| data.get(&i.name))
                {
                    Some(DataValue::Array(a)) => Ok(Some(a)),
                    Some(DataValue::Str(_)) => Err(BindError(format!(
                        "input `{}` must be an array, not a string",
                        i.name
                    ))),
                    None => Ok(None),
                }
            })
            .collect::<Result<_, _>>()?;
        let params: Vec<Option<ParamSource>> = loss
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

/// Combines per-loss values into the factory's result, in factory order, in f32.
pub fn combine(
    names: &[&str],
    values: &[eval::LossValue],
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

/// Runs the factory on the CPU reference evaluator.
pub fn run_cpu(
    program: &Program,
    terms: &[FactoryTerm],
    data: &Data,
    overrides: &Overrides,
    opts: &RunOptions,
) -> Result<RunResult, Box<dyn std::error::Error>> {
    let (prepared, warnings) = prepare(program, terms, data, overrides)?;
    let values: Vec<eval::LossValue> = prepared
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
        dispatches: 0,
        backend: "cpu".into(),
        warnings,
    })
}

/// A `--set` value: JSON (a number, a list, a tensor object) or else a bare string.
pub fn parse_override(s: &str) -> Result<(String, DataValue), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`--set {s}`: expected name=value"))?;
    let value = match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::Null) => {
            return Err(format!(
                "`--set {s}`: give a value (to leave a param at its default, leave out --set)"
            ));
        }
        Ok(j) => crate::runtime::data::json_value(&j).map_err(|e| format!("`--set {s}`: {e}"))?,
        Err(_) => DataValue::Str(v.to_string()),
    };
    Ok((k.trim().to_string(), value))
}

/// `ParamValue` is re-exported for callers building factory terms by hand.
pub type Setting = (String, ParamValue);
