//! The gradient of a run's total with respect to its inputs: each loss's adjoint IR
//! ([`crate::ad`]) evaluated by the CPU evaluator, scaled by the loss's anneal factor and
//! weight, and summed over the losses that read the input, in factory order, in f32:
//! `d total / d x = Σ_i anneal_i · weight_i · d loss_i / d x`.

use serde::Serialize;

use super::RunError;
use super::run::{Prepared, number_list};
use crate::ad::adjoint;
use crate::bind::rebind;
use crate::diagnostics::closest;
use crate::eval;
use crate::ir::InputId;

/// The inputs a run differentiates its total with respect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Wrt {
    /// None: the run computes values only.
    #[default]
    Nothing,
    /// Every input of the run's losses that the data gives.
    EveryInput,
    /// These inputs, by name.
    Inputs(Vec<String>),
}

/// `d total / d input`, in the input's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gradient {
    /// The input's shape.
    pub shape: Vec<usize>,
    /// Its elements, row-major (NaN as `null` in JSON, infinities as strings).
    #[serde(serialize_with = "number_list")]
    pub data: Vec<f32>,
}

impl Gradient {
    /// Its Euclidean norm (accumulated in f64).
    pub fn norm(&self) -> f64 {
        self.data
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt()
    }

    /// The largest magnitude of its elements (NaN if one is NaN).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, x| {
            if m.is_nan() || x.is_nan() {
                f32::NAN
            } else {
                m.max(x.abs())
            }
        })
    }
}

/// The names of the inputs to differentiate with respect to, checked against the losses'
/// inputs: in the order asked, or for [`Wrt::EveryInput`] in the order the losses
/// declare them.
pub fn resolve(prepared: &[Prepared], wrt: &Wrt) -> Result<Vec<String>, RunError> {
    let mut declared: Vec<String> = Vec::new();
    let mut given: Vec<String> = Vec::new();
    for p in prepared {
        for (info, data) in p.bound.ir.inputs.iter().zip(&p.bound.inputs) {
            if !declared.contains(&info.name) {
                declared.push(info.name.clone());
            }
            if data.is_some() && !given.contains(&info.name) {
                given.push(info.name.clone());
            }
        }
    }
    let asked = match wrt {
        Wrt::Nothing => return Ok(vec![]),
        Wrt::EveryInput => return Ok(given),
        Wrt::Inputs(names) => names,
    };
    let mut out: Vec<String> = Vec::new();
    for name in asked {
        if !declared.contains(name) {
            let losses: Vec<String> = prepared
                .iter()
                .map(|p| format!("`{}`", p.bound.ir.name))
                .collect();
            return Err(RunError::NoSuchInput {
                name: name.clone(),
                losses: losses.join(", "),
                known: declared
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                hint: closest(name, declared.iter().map(String::as_str)).map(str::to_string),
            });
        }
        if !given.contains(name) {
            return Err(RunError::AbsentInput { name: name.clone() });
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// The gradients of the total with respect to the inputs `names`, given each loss's
/// weight and the anneal factor of the annealed ones.
pub fn gradients(
    prepared: &[Prepared],
    names: &[String],
    weights: &[f32],
    anneal: f32,
) -> Result<Vec<(String, Gradient)>, RunError> {
    let mut out: Vec<(String, Gradient)> = Vec::new();
    for name in names {
        let shape = prepared
            .iter()
            .find_map(|p| {
                let i = p.bound.ir.inputs.iter().position(|x| &x.name == name)?;
                p.bound.inputs[InputId::new(i)]
                    .as_ref()
                    .map(|d| d.shape.clone())
            })
            .unwrap_or_default();
        let len = shape.iter().product();
        out.push((
            name.clone(),
            Gradient {
                shape,
                data: vec![0.0; len],
            },
        ));
    }
    for (p, weight) in prepared.iter().zip(weights) {
        let ir = p.bound.ir;
        let wrt: Vec<(usize, InputId)> = out
            .iter()
            .enumerate()
            .filter_map(|(k, (name, _))| {
                let i = ir.inputs.iter().position(|x| &x.name == name)?;
                let i = InputId::new(i);
                p.bound.inputs[i].is_some().then_some((k, i))
            })
            .collect();
        if wrt.is_empty() {
            continue;
        }
        let ids: Vec<InputId> = wrt.iter().map(|(_, i)| *i).collect();
        let adj = adjoint(ir, &ids, &p.bound.active_masks)?;
        let bound = rebind(&p.bound, &adj.ir)?;
        let roots: Vec<_> = adj.grads.iter().map(|g| (g.axes.clone(), g.node)).collect();
        let values = eval::gradients(&bound, &roots)?;
        let scale = if p.annealed { anneal } else { 1.0 } * weight;
        for ((k, _), g) in wrt.iter().zip(values) {
            for (t, v) in out[*k].1.data.iter_mut().zip(g) {
                *t += scale * v;
            }
        }
    }
    Ok(out)
}
