//! Reading the arrays a loss runs on: `.npz` files (NumPy) or JSON objects whose values
//! are tensors `{"shape": [...], "data": [...]}` (NaN as `null`), numbers, (nested) lists
//! of numbers, or strings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::Value as Json;

/// The element type an array was stored with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// Floating point (f32/f64 in `.npz`; every JSON number).
    Float,
    /// Integers or booleans.
    Int,
}

/// A dense row-major array; values are kept as f64 until bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Its shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub data: Vec<f64>,
    /// How it was stored.
    pub dtype: DType,
}

impl Array {
    /// A scalar.
    pub fn scalar(v: f64) -> Array {
        Array {
            shape: vec![],
            data: vec![v],
            dtype: DType::Float,
        }
    }
}

/// One named value of a data file.
#[derive(Clone, Debug, PartialEq)]
pub enum DataValue {
    /// An array (or a scalar, of shape `[]`).
    Array(Array),
    /// A string (an enum param's value).
    Str(String),
}

/// Named values, as read from a file.
pub type Data = BTreeMap<String, DataValue>;

/// A data file that could not be read.
#[derive(Debug)]
pub struct DataError(pub String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

/// Reads `.npz` (by extension) or JSON.
pub fn read_data(path: &Path) -> Result<Data, DataError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
    {
        read_npz(path)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DataError(format!("cannot read {}: {e}", path.display())))?;
        parse_json_data(&text).map_err(|e| DataError(format!("{}: {}", path.display(), e.0)))
    }
}

/// Parses a JSON data object.
pub fn parse_json_data(text: &str) -> Result<Data, DataError> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| DataError(format!("invalid JSON: {e}")))?;
    let Json::Object(map) = json else {
        return Err(DataError(
            "the data must be a JSON object mapping names to values".into(),
        ));
    };
    let mut out = Data::new();
    for (k, v) in map {
        if v.is_null() {
            continue; // an absent value, as Python's None
        }
        out.insert(
            k.clone(),
            json_value(&v).map_err(|e| DataError(format!("`{k}`: {}", e.0)))?,
        );
    }
    Ok(out)
}

/// One JSON value as a data value.
pub fn json_value(v: &Json) -> Result<DataValue, DataError> {
    match v {
        Json::String(s) => Ok(DataValue::Str(s.clone())),
        Json::Object(o) => {
            let shape: Vec<usize> = o
                .get("shape")
                .and_then(Json::as_array)
                .ok_or_else(|| DataError("a tensor object needs \"shape\": [...]".into()))?
                .iter()
                .map(|d| {
                    d.as_u64()
                        .map(|d| d as usize)
                        .ok_or_else(|| DataError("a shape holds whole numbers".into()))
                })
                .collect::<Result<_, _>>()?;
            let data = match o.get("data") {
                Some(Json::Array(items)) => {
                    let mut flat = Vec::new();
                    flatten(items, &mut flat, &mut vec![], 0)?;
                    flat
                }
                _ => return Err(DataError("a tensor object needs \"data\": [...]".into())),
            };
            let n = shape
                .iter()
                .try_fold(1usize, |a, d| a.checked_mul(*d))
                .ok_or_else(|| {
                    DataError(format!(
                        "shape {shape:?} holds more values than this machine can address"
                    ))
                })?;
            if data.len() != n {
                return Err(DataError(format!(
                    "shape {shape:?} holds {n} values but \"data\" has {}",
                    data.len()
                )));
            }
            Ok(DataValue::Array(Array {
                shape,
                data,
                dtype: DType::Float,
            }))
        }
        Json::Array(items) => {
            let mut data = Vec::new();
            let mut shape = Vec::new();
            flatten(items, &mut data, &mut shape, 0)?;
            Ok(DataValue::Array(Array {
                shape,
                data,
                dtype: DType::Float,
            }))
        }
        _ => Ok(DataValue::Array(Array::scalar(number(v)?))),
    }
}

fn number(v: &Json) -> Result<f64, DataError> {
    match v {
        Json::Number(n) => n
            .as_f64()
            .ok_or_else(|| DataError(format!("{n} is not a number"))),
        Json::Null => Ok(f64::NAN),
        Json::String(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(DataError(format!("\"{s}\" is not a number"))),
        },
        Json::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        _ => Err(DataError("expected a number".into())),
    }
}

/// Flattens nested lists, recording (and checking) the shape level by level.
fn flatten(
    items: &[Json],
    out: &mut Vec<f64>,
    shape: &mut Vec<usize>,
    depth: usize,
) -> Result<(), DataError> {
    if depth > 32 {
        return Err(DataError("lists nested more than 32 deep".into()));
    }
    match shape.get(depth) {
        Some(&n) if n != items.len() => {
            return Err(DataError(format!(
                "ragged nested lists: {} items where {n} were expected",
                items.len()
            )));
        }
        None => shape.push(items.len()),
        _ => {}
    }
    for it in items {
        match it {
            Json::Array(inner) => flatten(inner, out, shape, depth + 1)?,
            _ => {
                if shape.len() > depth + 1 {
                    return Err(DataError("ragged nested lists".into()));
                }
                out.push(number(it)?)
            }
        }
    }
    Ok(())
}

fn read_npz(path: &Path) -> Result<Data, DataError> {
    let err = |e: std::io::Error| DataError(format!("cannot read {}: {e}", path.display()));
    let mut archive = npyz::npz::NpzArchive::open(path).map_err(err)?;
    let names: Vec<String> = archive.array_names().map(str::to_string).collect();
    let mut out = Data::new();
    for name in names {
        let npy = archive
            .by_name(&name)
            .map_err(err)?
            .ok_or_else(|| DataError(format!("{name}: missing")))?;
        out.insert(
            name.clone(),
            npy_array(npy)
                .map_err(|e| DataError(format!("{}: array `{name}`: {}", path.display(), e.0)))?,
        );
    }
    Ok(out)
}

fn npy_array<R: std::io::Read>(npy: npyz::NpyFile<R>) -> Result<DataValue, DataError> {
    use npyz::TypeChar;
    if npy.order() == npyz::Order::Fortran {
        return Err(DataError(
            "Fortran-ordered arrays are not supported: save with np.ascontiguousarray".into(),
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|d| *d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(DataError("structured arrays are not supported".into()));
    };
    let io = |e: std::io::Error| DataError(e.to_string());
    let (data, dtype) = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => (
            npy.into_vec::<f32>()
                .map_err(io)?
                .into_iter()
                .map(f64::from)
                .collect(),
            DType::Float,
        ),
        (TypeChar::Float, 8) => (npy.into_vec::<f64>().map_err(io)?, DType::Float),
        (TypeChar::Int, 8) => (
            npy.into_vec::<i64>()
                .map_err(io)?
                .into_iter()
                .map(|v| v as f64)
                .collect(),
            DType::Int,
        ),
        (TypeChar::Int, 4) => (
            npy.into_vec::<i32>()
                .map_err(io)?
                .into_iter()
                .map(f64::from)
                .collect(),
            DType::Int,
        ),
        (TypeChar::Uint, 1) => (
            npy.into_vec::<u8>()
                .map_err(io)?
                .into_iter()
                .map(f64::from)
                .collect(),
            DType::Int,
        ),
        (TypeChar::Bool, 1) => (
            npy.into_vec::<bool>()
                .map_err(io)?
                .into_iter()
                .map(|b| if b { 1.0 } else { 0.0 })
                .collect(),
            DType::Int,
        ),
        (TypeChar::UnicodeStr, _) if shape.is_empty() => {
            let v = npy.into_vec::<String>().map_err(io)?;
            return Ok(DataValue::Str(v.into_iter().next().unwrap_or_default()));
        }
        (c, s) => {
            return Err(DataError(format!(
                "unsupported dtype {c:?}{s}: use float32, float64, int32, int64, uint8 or bool"
            )));
        }
    };
    Ok(DataValue::Array(Array { shape, data, dtype }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_tensors_lists_numbers_and_strings() {
        let d = parse_json_data(
            r#"{"x": {"shape": [2, 2], "data": [1, null, 3, 4]}, "e": [1, 2, 3], "m": [[1, 2], [3, 4]], "s": 0.5, "c": "mean", "skip": null}"#,
        )
        .unwrap();
        let DataValue::Array(x) = &d["x"] else {
            panic!()
        };
        assert_eq!(x.shape, vec![2, 2]);
        assert!(x.data[1].is_nan());
        let DataValue::Array(m) = &d["m"] else {
            panic!()
        };
        assert_eq!(
            (m.shape.clone(), m.data.clone()),
            (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])
        );
        assert_eq!(d["c"], DataValue::Str("mean".into()));
        assert!(!d.contains_key("skip"));
    }

    #[test]
    fn json_errors_are_clear() {
        let e = parse_json_data(r#"{"x": {"shape": [3], "data": [1, 2]}}"#).unwrap_err();
        assert!(e.0.contains("holds 3 values"), "{e}");
        let e = parse_json_data(r#"{"x": [[1, 2], [3]]}"#).unwrap_err();
        assert!(e.0.contains("ragged"), "{e}");
        assert!(parse_json_data("[1]").is_err());
    }
}
