//! Every way a run can fail, in one enum: the layers' own errors (reading data, binding,
//! evaluating, the GPU, lossc's own bugs) and the runtime's (data keys that name nothing,
//! a loss or factory that does not exist). Each is rendered by its `Display`, in the
//! layer that knows its meaning; the command line prints it after `error: `.

use thiserror::Error;

use crate::ad::AdError;
use crate::bind::BindError;
use crate::codegen::CompileError;
use crate::eval::EvalError;
use crate::gpu::GpuError;
use crate::ice::InternalError;
use crate::runtime::data::DataError;

/// A run that failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// A Burn tensor or device the Burn integration cannot use (feature `burn`).
    #[error("{0}")]
    Burn(String),
    /// A data file or `--set` value could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The arrays do not fit the declarations.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The CPU evaluator stopped.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The GPU stopped, or the dispatch could not be laid out.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A bug in lossc.
    #[error(transparent)]
    Internal(#[from] InternalError),
    /// The kernel could not be compiled or written.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// An output file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    /// A `loss.param` key whose loss is not in the run.
    #[error("`{key}` names loss `{loss}`, which is not in this run (the losses are {losses})")]
    KeyNamesOtherLoss {
        key: String,
        loss: String,
        losses: String,
    },
    /// A `loss.param` key whose param the loss does not declare.
    #[error("loss `{loss}` has no param `{param}`{}", hint.as_ref().map(|c| format!("; did you mean `{loss}.{c}`?")).unwrap_or_default())]
    NoSuchParam {
        loss: String,
        param: String,
        hint: Option<String>,
    },
    /// A key that is a near miss of a declared name: a typo, not another loss's data.
    #[error("`{key}` is neither an input nor a param of {losses}; did you mean `{suggestion}`?")]
    Typo {
        key: String,
        losses: String,
        suggestion: String,
    },
    /// A plain param key that several losses declare.
    #[error("`{key}` is a param of several losses ({owners}): write `{choices}`")]
    AmbiguousKey {
        key: String,
        owners: String,
        choices: String,
    },
    /// A `--set` key that names nothing in the run.
    #[error("--set: `{key}` is neither an input nor a param of {losses}")]
    SetNamesNothing { key: String, losses: String },
    /// An input given a string.
    #[error("input `{input}` must be an array, not a string")]
    InputIsString { input: String },
    /// A loss that the files do not define.
    #[error("no loss named `{name}` (the files define {known}){}", hint.as_ref().map(|c| format!("; did you mean `{c}`?")).unwrap_or_default())]
    NoSuchLoss {
        name: String,
        known: String,
        hint: Option<String>,
    },
    /// A factory that the files do not define.
    #[error("no factory named `{name}` (the files define: {known})")]
    NoSuchFactory { name: String, known: String },
    /// The command does not say which losses to run.
    #[error("{0}")]
    Usage(String),
    /// A loss the adjoint IR cannot differentiate.
    #[error(transparent)]
    Ad(#[from] AdError),
    /// `--wrt` names something that is no input of the run's losses.
    #[error("--wrt: `{name}` is not an input of {losses} (their inputs are {known}){}", hint.as_ref().map(|c| format!("; did you mean `{c}`?")).unwrap_or_default())]
    NoSuchInput {
        name: String,
        losses: String,
        known: String,
        hint: Option<String>,
    },
    /// `--wrt` names an `int` input.
    #[error("--wrt: input `{name}` is declared `int` (whole numbers), so it has no gradient")]
    IntInput { name: String },
    /// `--wrt` names an optional input the data does not give.
    #[error("--wrt: input `{name}` has no data in this run, so it has no gradient")]
    AbsentInput { name: String },
}
