//! lossc as a Python extension module, `lossc._lossc` (feature `python`; maturin builds
//! it from `pyproject.toml`, and the package in `python/lossc/` re-exports it with the
//! PyTorch and Lightning Pose layers written in Python). See `docs/python.md`.
//!
//! The module is a thin skin over the runtime: `load` is the command line's file check,
//! a `Factory` is a factory's terms with a [`RunCache`] (its kernel compiled once, its
//! plans kept per shape), and a call is [`run_cached`] on data converted from Python
//! values. Every error lossc reports becomes `lossc.LossError` with lossc's message;
//! the GIL is released while a factory runs.

use std::ffi::CString;
use std::sync::Arc;

use numpy::{
    PyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyException, PyTypeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::diagnostics::{Diagnostic, Source, SourceError};
use crate::ir::FactoryTerm;
use crate::runtime::data::{Array, Data, DataValue};
use crate::runtime::grad::Wrt;
use crate::runtime::run::find_loss;
use crate::runtime::{Backend, RunCache, RunError, RunOptions, run_cached, select};

pyo3::create_exception!(
    lossc,
    LossError,
    PyException,
    "An error lossc reports: diagnostics of .loss files (`diagnostics` lists them, each a \
     dict with `file`, `line`, `column`, `message`, `severity`), or a run that cannot be \
     done on the data given (`diagnostics` is empty)."
);

/// `LossError(message)` with its `diagnostics` list.
fn loss_error(py: Python<'_>, message: String, diagnostics: Vec<Py<PyDict>>) -> PyErr {
    let err = LossError::new_err(message);
    let list = PyList::new(py, diagnostics).map(Bound::unbind);
    match list {
        Ok(list) => match err.value(py).setattr("diagnostics", list) {
            Ok(()) => err,
            Err(e) => e,
        },
        Err(e) => e,
    }
}

fn run_error(py: Python<'_>, e: RunError) -> PyErr {
    loss_error(py, e.to_string(), vec![])
}

/// A diagnostic as a dict: where it is (1-based line and column) and what it says.
fn diagnostic_dict(py: Python<'_>, source: &Source, d: &Diagnostic) -> PyResult<Py<PyDict>> {
    let (line, column) = source.line_col(d.primary.0.start);
    let dict = PyDict::new(py);
    dict.set_item("file", &source.name)?;
    dict.set_item("line", line)?;
    dict.set_item("column", column)?;
    dict.set_item("message", &d.message)?;
    dict.set_item("severity", if d.is_error { "error" } else { "warning" })?;
    dict.set_item("label", &d.primary.1)?;
    dict.set_item("notes", d.notes.clone())?;
    Ok(dict.unbind())
}

/// The paths `load` was given: one path (a `str` or path-like) or a sequence of them.
fn paths_of(paths: &Bound<'_, PyAny>) -> PyResult<Vec<std::path::PathBuf>> {
    let os = paths.py().import("os")?;
    let one = |p: &Bound<'_, PyAny>| -> PyResult<std::path::PathBuf> {
        os.call_method1("fspath", (p,))?
            .extract::<std::path::PathBuf>()
    };
    if paths.is_instance_of::<PyString>() || paths.hasattr("__fspath__")? {
        return Ok(vec![one(paths)?]);
    }
    let mut out = Vec::new();
    for p in paths.try_iter().map_err(|_| {
        PyTypeError::new_err("lossc.load takes a path or a list of paths to .loss files")
    })? {
        out.push(one(&p?)?);
    }
    Ok(out)
}

/// Reads, parses and checks `.loss` files: a `Program`, or `LossError` with the
/// diagnostics. Warnings go to Python's `warnings`.
#[pyfunction]
fn load(py: Python<'_>, paths: &Bound<'_, PyAny>) -> PyResult<Program> {
    let mut sources = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths_of(paths)? {
        match Source::read(&path) {
            Ok(s) => sources.push(s),
            Err(SourceError::Io { path, reason }) => {
                let msg = format!("cannot read {path}: {reason}");
                return Err(pyo3::exceptions::PyOSError::new_err(msg));
            }
            Err(SourceError::NotUtf8 { source, diagnostic }) => {
                unreadable.push((source, diagnostic));
            }
        }
    }
    if sources.is_empty() && unreadable.is_empty() {
        return Err(PyValueError::new_err("lossc.load: no .loss files given"));
    }
    let checked = py.detach(|| crate::sema::check(&sources));
    let mut rendered = String::new();
    let mut dicts = Vec::new();
    for (source, d) in &unreadable {
        rendered.push_str(&source.render(std::slice::from_ref(&**d)));
        dicts.push(diagnostic_dict(py, source, d)?);
    }
    rendered.push_str(&checked.render(&sources));
    for (fi, d) in &checked.diagnostics {
        dicts.push(diagnostic_dict(py, &sources[*fi], d)?);
    }
    if checked.has_errors() || !unreadable.is_empty() {
        return Err(loss_error(py, rendered.trim_end().to_string(), dicts));
    }
    if !rendered.is_empty() {
        let category = py.get_type::<PyUserWarning>();
        let message = CString::new(rendered.trim_end().replace('\0', "?"))?;
        PyErr::warn(py, &category, &message, 1)?;
    }
    Ok(Program {
        program: Arc::new(checked.program),
    })
}

/// The losses and factories of checked `.loss` files.
#[pyclass(module = "lossc", frozen)]
struct Program {
    program: Arc<crate::ir::Program>,
}

#[pymethods]
impl Program {
    /// The factory called `name`, compiled on its first run.
    fn factory(&self, py: Python<'_>, name: &str) -> PyResult<Factory> {
        let (name, terms) =
            select::run_terms(&self.program, &[], &[], Some(name)).map_err(|e| run_error(py, e))?;
        self.factory_of(py, name, terms)
    }

    /// A factory of the losses `names` (one name or a list), in order, those in
    /// `annealed` times the anneal factor.
    #[pyo3(signature = (names, annealed = None))]
    fn losses(
        &self,
        py: Python<'_>,
        names: &Bound<'_, PyAny>,
        annealed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Factory> {
        let names = strings(names, "names")?;
        let annealed = match annealed {
            Some(a) => strings(a, "annealed")?,
            None => vec![],
        };
        if names.is_empty() {
            return Err(PyValueError::new_err(
                "Program.losses: give at least one loss",
            ));
        }
        let (name, terms) = select::run_terms(&self.program, &names, &annealed, None)
            .map_err(|e| run_error(py, e))?;
        self.factory_of(py, name, terms)
    }

    /// The names of the losses the files define, in order.
    #[getter]
    fn loss_names(&self) -> Vec<String> {
        self.program.losses.iter().map(|l| l.name.clone()).collect()
    }

    /// The names of the factories the files define, in order.
    #[getter]
    fn factory_names(&self) -> Vec<String> {
        self.program
            .factories
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }

    /// The params loss `name` declares, in order.
    fn params(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        Ok(self
            .loss(py, name)?
            .params
            .iter()
            .map(|p| p.name.clone())
            .collect())
    }

    /// The inputs loss `name` declares, in order.
    fn inputs(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        Ok(self
            .loss(py, name)?
            .inputs
            .iter()
            .map(|i| i.name.clone())
            .collect())
    }

    fn __repr__(&self) -> String {
        format!(
            "<lossc.Program: losses {:?}, factories {:?}>",
            self.loss_names(),
            self.factory_names()
        )
    }
}

impl Program {
    /// The loss called `name`, or `LossError` naming the losses there are.
    fn loss(&self, py: Python<'_>, name: &str) -> PyResult<&crate::ir::LossIr> {
        find_loss(&self.program, name).map_err(|e| run_error(py, e))
    }

    fn factory_of(
        &self,
        py: Python<'_>,
        name: String,
        terms: Vec<FactoryTerm>,
    ) -> PyResult<Factory> {
        // `run_terms` does not check that `--losses` names exist: check here, where the
        // error can say which loss.
        for t in &terms {
            self.loss(py, &t.loss)?;
        }
        Ok(Factory {
            program: self.program.clone(),
            name,
            terms,
            cache: RunCache::default(),
        })
    }
}

/// One string or a sequence of strings.
fn strings(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if let Ok(s) = v.extract::<String>() {
        return Ok(vec![s]);
    }
    v.extract::<Vec<String>>().map_err(|_| {
        PyTypeError::new_err(format!("`{what}` must be a string or a list of strings"))
    })
}

/// Losses run together, their kernel compiled once and their plans kept per shape.
///
/// `factory(data, *, anneal=1.0, stage="train", backend="auto", wrt=None)` runs them on
/// `data`, a dict of input names and param names (`"<loss>.<param>"`, or the plain name
/// when one loss has it) to NumPy arrays, numbers, lists, tensor objects and strings
/// (`None`: absent). `backend` is `"auto"`, `"gpu"` or `"cpu"`; `wrt` an input name, a
/// list of them, or `True` for every input given. Returns a `lossc.Result`.
#[pyclass(module = "lossc", frozen)]
struct Factory {
    program: Arc<crate::ir::Program>,
    name: String,
    terms: Vec<FactoryTerm>,
    cache: RunCache,
}

#[pymethods]
impl Factory {
    /// Runs the losses on `data` (a dict of input and param names to arrays, numbers,
    /// lists and strings): the total, each loss, the logs, and with `wrt` the gradients
    /// of the total.
    #[pyo3(signature = (data, *, anneal = 1.0, stage = "train", backend = "auto", wrt = None))]
    fn __call__(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        anneal: f32,
        stage: &str,
        backend: &str,
        wrt: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RunResult> {
        let backend = match backend {
            "auto" => Backend::Auto,
            "gpu" => Backend::Gpu,
            "cpu" => Backend::Cpu,
            other => {
                return Err(PyValueError::new_err(format!(
                    "backend must be \"auto\", \"gpu\" or \"cpu\", not {other:?}"
                )));
            }
        };
        let wrt = match wrt {
            None => Wrt::Nothing,
            Some(w) if w.is_instance_of::<PyBool>() => {
                if w.extract::<bool>()? {
                    Wrt::EveryInput
                } else {
                    Wrt::Nothing
                }
            }
            Some(w) => Wrt::Inputs(strings(w, "wrt").map_err(|_| {
                PyTypeError::new_err("`wrt` must be an input name, a list of them, or True")
            })?),
        };
        let data = data_of(data)?;
        let opts = RunOptions {
            stage: stage.to_string(),
            anneal,
            backend,
            wrt,
            ..RunOptions::default()
        };
        let result = py
            .detach(|| {
                run_cached(
                    &self.program,
                    &self.name,
                    &self.terms,
                    &data,
                    &vec![],
                    &opts,
                    &self.cache,
                )
            })
            .map_err(|e| run_error(py, e))?;
        RunResult::new(py, result)
    }

    /// The factory's name (the losses joined by `+` for `Program.losses`).
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Its losses, in order.
    #[getter]
    fn losses(&self) -> Vec<String> {
        self.terms.iter().map(|t| t.loss.clone()).collect()
    }

    /// Its annealed losses.
    #[getter]
    fn annealed(&self) -> Vec<String> {
        self.terms
            .iter()
            .filter(|t| t.annealed)
            .map(|t| t.loss.clone())
            .collect()
    }

    /// The inputs its losses declare, each once, in order of declaration.
    #[getter]
    fn inputs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.terms {
            if let Some(ir) = self.program.loss(&t.loss) {
                for i in &ir.inputs {
                    if !out.contains(&i.name) {
                        out.push(i.name.clone());
                    }
                }
            }
        }
        out
    }

    /// How many GPU plans it keeps (one per set of shapes and param values run on the
    /// GPU, up to 8): a call on the shapes of an earlier one builds none.
    #[getter]
    fn plans(&self) -> usize {
        self.cache.plans()
    }

    /// How many GPU plans it has built since it was made (each a kernel specialised to
    /// its params, its pipeline and buffers).
    #[getter]
    fn plans_built(&self) -> usize {
        self.cache.built()
    }

    fn __repr__(&self) -> String {
        format!("<lossc.Factory {}: {:?}>", self.name, self.losses())
    }
}

/// Converts a data dict: keys are strings; values are NumPy arrays (float, int or bool,
/// any memory order), Python numbers, nested lists of numbers, strings (enum params), or
/// `None` (left out, as absent).
fn data_of(data: &Bound<'_, PyAny>) -> PyResult<Data> {
    let py = data.py();
    let Ok(dict) = data.cast::<PyDict>() else {
        return Err(PyTypeError::new_err(format!(
            "data must be a dict of input and param names to values, not {}",
            data.get_type().name()?
        )));
    };
    let numpy = py.import("numpy")?;
    let mut out = Data::new();
    for (k, v) in dict.iter() {
        let Ok(key) = k.extract::<String>() else {
            return Err(PyTypeError::new_err(format!(
                "data keys must be strings, not {}",
                k.get_type().name()?
            )));
        };
        if v.is_none() {
            continue;
        }
        let value = value_of(&numpy, &key, &v)?;
        out.insert(key, value);
    }
    Ok(out)
}

fn key_error(py: Python<'_>, key: &str, reason: impl std::fmt::Display) -> PyErr {
    loss_error(py, format!("`{key}`: {reason}"), vec![])
}

/// One value of a data dict.
fn value_of(numpy: &Bound<'_, PyModule>, key: &str, v: &Bound<'_, PyAny>) -> PyResult<DataValue> {
    let py = v.py();
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(DataValue::Str(s.to_str()?.to_string()));
    }
    if v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>() {
        let x: f64 = v
            .extract()
            .map_err(|_| key_error(py, key, "an integer too large for a number lossc reads"))?;
        return Ok(DataValue::Array(Array::scalar(x)));
    }
    // A data file's tensor object, `{"shape": [...], "data": [...]}` (None as NaN).
    if let Ok(d) = v.cast::<PyDict>() {
        let (Some(shape), Some(data)) = (d.get_item("shape")?, d.get_item("data")?) else {
            return Err(key_error(
                py,
                key,
                "a dict value must be a tensor object {\"shape\": [...], \"data\": [...]}",
            ));
        };
        let shape: Vec<usize> = shape
            .extract()
            .map_err(|_| key_error(py, key, "a tensor's \"shape\" holds whole numbers"))?;
        let DataValue::Array(flat) = value_of(numpy, key, &data)? else {
            return Err(key_error(py, key, "a tensor's \"data\" holds numbers"));
        };
        let n: usize = shape.iter().product();
        if flat.data.len() != n {
            return Err(key_error(
                py,
                key,
                format!(
                    "shape {shape:?} holds {n} values but \"data\" has {}",
                    flat.data.len()
                ),
            ));
        }
        return Ok(DataValue::Array(Array {
            shape,
            data: flat.data,
            typed_float: false,
        }));
    }
    // Arrays, NumPy scalars, lists (None as NaN), and anything else NumPy reads
    // (`__array__`).
    let array = match v.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => {
            let a = numpy
                .call_method1("asarray", (v,))
                .map_err(|e| key_error(py, key, e.value(py)))?;
            // A list holding None reads as objects; as floats, None is NaN.
            let a = match a.cast::<PyUntypedArray>() {
                Ok(u) if u.dtype().kind() == b'O' => a
                    .call_method1("astype", ("float64",))
                    .map_err(|e| key_error(py, key, e.value(py)))?,
                _ => a,
            };
            a.cast_into::<PyUntypedArray>()
                .map_err(|_| key_error(py, key, "not read as an array"))?
        }
    };
    let dtype = array.dtype();
    if !matches!(dtype.kind(), b'f' | b'i' | b'u' | b'b') {
        return Err(key_error(
            py,
            key,
            format!(
                "an array of dtype {} is not read: give floats, integers or booleans",
                dtype.str()?
            ),
        ));
    }
    let shape = array.shape().to_vec();
    // A list's numbers carry no type, as JSON's do; an array's (NumPy's, torch's) do.
    let typed_float =
        dtype.kind() == b'f' && !(v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>());
    let doubles = array.call_method1("astype", ("float64",))?;
    let doubles = doubles
        .cast::<PyArrayDyn<f64>>()
        .map_err(|_| key_error(py, key, "not read as an array of float64"))?;
    let view = doubles.readonly();
    // The view iterates in logical (row-major) order whatever the strides.
    let data: Vec<f64> = view.as_array().iter().copied().collect();
    Ok(DataValue::Array(Array {
        shape,
        data,
        typed_float,
    }))
}

/// What a factory call returns.
#[pyclass(module = "lossc", name = "Result", frozen, get_all)]
struct RunResult {
    /// The weighted sum of the losses (each annealed one times the anneal factor).
    total: f64,
    /// `{loss: {"loss", "weight", "weighted"}}`, in factory order.
    losses: Py<PyDict>,
    /// `(name, value)` pairs, as Lightning Pose logs them.
    logs: Py<PyList>,
    /// `{input: d total / d input}` as float32 arrays of the input's shape.
    grads: Py<PyDict>,
    /// GPU dispatches (0 on the CPU).
    dispatches: u32,
    /// Where it ran: `"cpu"` or `"gpu: <adapter>"`.
    backend: String,
    /// Data keys no loss uses.
    warnings: Vec<String>,
    /// Why a run under `backend="auto"` went to the CPU, if it did.
    notes: Vec<String>,
}

impl RunResult {
    fn new(py: Python<'_>, r: crate::runtime::RunResult) -> PyResult<RunResult> {
        let losses = PyDict::new(py);
        for (name, l) in &r.losses {
            let d = PyDict::new(py);
            d.set_item("loss", l.loss)?;
            d.set_item("weight", l.weight)?;
            d.set_item("weighted", l.weighted)?;
            losses.set_item(name, d)?;
        }
        let logs = PyList::empty(py);
        for (name, v) in &r.logs {
            logs.append(PyTuple::new(
                py,
                [
                    name.into_pyobject(py)?.into_any(),
                    v.into_pyobject(py)?.into_any(),
                ],
            )?)?;
        }
        let grads = PyDict::new(py);
        for (name, g) in r.grads {
            let array = PyArray::from_vec(py, g.data).reshape(g.shape)?;
            grads.set_item(name, array)?;
        }
        Ok(RunResult {
            total: f64::from(r.total),
            losses: losses.unbind(),
            logs: logs.unbind(),
            grads: grads.unbind(),
            dispatches: r.dispatches,
            backend: r.backend,
            warnings: r.warnings,
            notes: r.notes,
        })
    }
}

#[pymethods]
impl RunResult {
    fn __repr__(&self) -> String {
        format!(
            "<lossc.Result total={} on {} ({} dispatches)>",
            self.total, self.backend, self.dispatches
        )
    }
}

/// The extension module.
#[pymodule]
fn _lossc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_class::<Program>()?;
    m.add_class::<Factory>()?;
    m.add_class::<RunResult>()?;
    m.add("LossError", m.py().get_type::<LossError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
