//! Reading the arrays a loss runs on: `.npz` files (NumPy) or JSON objects whose values
//! are tensors `{"shape": [...], "data": [...]}` (NaN as `null`), numbers, (nested) lists
//! of numbers, or strings.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::Path;

use serde_json::Value as Json;
use thiserror::Error;

pub use crate::bind::value::{Array, DataValue};

/// Named values, as read from a file.
pub type Data = BTreeMap<String, DataValue>;

/// A data file, or a value in it, that could not be read.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    /// The file is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is not an object of named values.
    #[error("the data must be a JSON object mapping names to values")]
    NotAnObject,
    /// The value of one key is malformed.
    #[error("`{key}`: {source}")]
    Key {
        key: String,
        #[source]
        source: Box<DataError>,
    },
    /// An error inside a file, prefixed with the file's path.
    #[error("{path}: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<DataError>,
    },
    /// An error in one array of an `.npz` file.
    #[error("{path}: array `{name}`: {source}")]
    InArray {
        path: String,
        name: String,
        #[source]
        source: Box<DataError>,
    },
    /// An `.npz` entry listed but absent.
    #[error("{name}: missing")]
    Missing { name: String },
    /// A value whose structure is wrong (a ragged list, a shape that does not match).
    #[error("{0}")]
    Malformed(String),
    /// A value of a kind lossc does not read (a dtype, a memory order).
    #[error("{0}")]
    Unsupported(String),
    /// A `--set name=value` argument that cannot be read.
    #[error("`--set {arg}`: {reason}")]
    Set { arg: String, reason: String },
}

fn malformed(m: impl Into<String>) -> DataError {
    DataError::Malformed(m.into())
}

/// Reads `.npz` (by extension) or JSON.
pub fn read_data(path: &Path) -> Result<Data, DataError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
    {
        read_npz(path)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        parse_json_data(&text).map_err(|e| DataError::InFile {
            path: path.display().to_string(),
            source: Box::new(e),
        })
    }
}

/// Parses a JSON data object.
pub fn parse_json_data(text: &str) -> Result<Data, DataError> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| DataError::InvalidJson(e.to_string()))?;
    let Json::Object(map) = json else {
        return Err(DataError::NotAnObject);
    };
    let mut out = Data::new();
    for (k, v) in map {
        if v.is_null() {
            continue; // an absent value, as Python's None
        }
        out.insert(
            k.clone(),
            json_value(&v).map_err(|e| DataError::Key {
                key: k.clone(),
                source: Box::new(e),
            })?,
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
                .ok_or_else(|| malformed("a tensor object needs \"shape\": [...]"))?
                .iter()
                .map(|d| {
                    d.as_u64()
                        .map(|d| d as usize)
                        .ok_or_else(|| malformed("a shape holds whole numbers"))
                })
                .collect::<Result<_, _>>()?;
            let data = match o.get("data") {
                Some(Json::Array(items)) => {
                    let mut flat = Vec::new();
                    flatten(items, &mut flat, &mut vec![], 0)?;
                    flat
                }
                _ => return Err(malformed("a tensor object needs \"data\": [...]")),
            };
            let n = counted(&shape)?;
            if data.len() != n {
                return Err(malformed(format!(
                    "shape {shape:?} holds {n} values but \"data\" has {}",
                    data.len()
                )));
            }
            Ok(DataValue::Array(Array {
                shape,
                data,
                typed_float: false,
            }))
        }
        Json::Array(items) => {
            let mut data = Vec::new();
            let mut shape = Vec::new();
            flatten(items, &mut data, &mut shape, 0)?;
            Ok(DataValue::Array(Array {
                shape,
                data,
                typed_float: false,
            }))
        }
        _ => Ok(DataValue::Array(Array::scalar(number(v)?))),
    }
}

fn number(v: &Json) -> Result<f64, DataError> {
    match v {
        Json::Number(n) => n
            .as_f64()
            .ok_or_else(|| malformed(format!("{n} is not a number"))),
        Json::Null => Ok(f64::NAN),
        Json::String(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(malformed(format!("\"{s}\" is not a number"))),
        },
        Json::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        _ => Err(malformed("expected a number")),
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
        return Err(malformed("lists nested more than 32 deep"));
    }
    match shape.get(depth) {
        Some(&n) if n != items.len() => {
            return Err(malformed(format!(
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
                    return Err(malformed("ragged nested lists"));
                }
                out.push(number(it)?)
            }
        }
    }
    Ok(())
}

fn read_npz(path: &Path) -> Result<Data, DataError> {
    let label = path.display().to_string();
    let archive = npyz::npz::NpzArchive::open(path).map_err(|e| io_error(&label, e))?;
    read_npz_archive(archive, &label)
}

/// Parses the bytes of an `.npz` file, as [`read_data`] reads one from disk; errors name
/// the archive `npz data`.
pub fn parse_npz_data(bytes: &[u8]) -> Result<Data, DataError> {
    let label = "npz data";
    let archive =
        npyz::npz::NpzArchive::new(std::io::Cursor::new(bytes)).map_err(|e| io_error(label, e))?;
    read_npz_archive(archive, label)
}

fn io_error(label: &str, e: std::io::Error) -> DataError {
    DataError::Io {
        path: label.to_string(),
        reason: e.to_string(),
    }
}

/// Every array of an archive; `label` names it in errors (its path).
fn read_npz_archive<R: Read + Seek>(
    mut archive: npyz::npz::NpzArchive<R>,
    label: &str,
) -> Result<Data, DataError> {
    // In name order: the zip crate lists them in a hash map's order, which changes from
    // run to run, and so would the error of an archive with two bad arrays.
    let mut names: Vec<String> = archive.array_names().map(str::to_string).collect();
    names.sort();
    names.dedup();
    let mut out = Data::new();
    for name in names {
        let npy = npy_entry(&mut archive, &name, label)?;
        out.insert(
            name.clone(),
            npy_array(npy).map_err(|e| in_array(label, &name, e))?,
        );
    }
    Ok(out)
}

fn in_array(label: &str, name: &str, e: DataError) -> DataError {
    DataError::InArray {
        path: label.to_string(),
        name: name.to_string(),
        source: Box::new(e),
    }
}

/// The `.npy` entry of the array `name`, its header read by [`super::npy`] (strictly, and
/// with its shape checked) before npyz reads the header rewritten in NumPy's spelling.
fn npy_entry<'a, R: Read + Seek>(
    archive: &'a mut npyz::npz::NpzArchive<R>,
    name: &str,
    label: &str,
) -> Result<npyz::NpyFile<impl Read + 'a>, DataError> {
    let file_name = npyz::npz::file_name_from_array_name(name);
    let mut file = match archive.zip_archive().by_name(&file_name) {
        Ok(file) => file,
        Err(npyz::zip::result::ZipError::FileNotFound) => {
            return Err(DataError::Missing {
                name: name.to_string(),
            });
        }
        Err(npyz::zip::result::ZipError::Io(e)) => return Err(io_error(label, e)),
        Err(e) => {
            return Err(DataError::Io {
                path: label.to_string(),
                reason: e.to_string(),
            });
        }
    };
    // The magic string and the version, the header's length, and the header (read only
    // as far as the entry goes, whatever the length says).
    let mut read = |n: u64| {
        let mut bytes = Vec::new();
        (&mut file)
            .take(n)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(label, e))
            .map(|_| bytes)
    };
    let start = read(8)?;
    let Some(length_bytes) = super::npy::length_bytes(&start) else {
        return Err(in_array(
            label,
            name,
            malformed("not an .npy file (no magic string, or an unknown version)"),
        ));
    };
    let length = read(length_bytes)?
        .iter()
        .rev()
        .fold(0u64, |a, b| (a << 8) | u64::from(*b));
    let text = read(length)?;
    let header = super::npy::Header::parse(&text).map_err(|e| in_array(label, name, e))?;
    npyz::NpyFile::new(std::io::Cursor::new(header.write()).chain(file))
        .map_err(|e| io_error(label, e))
}

fn npy_array<R: Read>(npy: npyz::NpyFile<R>) -> Result<DataValue, DataError> {
    use npyz::TypeChar;
    if npy.order() == npyz::Order::Fortran {
        return Err(DataError::Unsupported(
            "Fortran-ordered arrays are not supported: save with np.ascontiguousarray".into(),
        ));
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(usize::MAX))
        .collect();
    let n = counted(&shape)?;
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(DataError::Unsupported(
            "structured arrays are not supported".into(),
        ));
    };
    let io = |e: std::io::Error| malformed(e.to_string());
    fn whole<T, R>(npy: npyz::NpyFile<R>) -> Result<Vec<f64>, DataError>
    where
        T: npyz::Deserialize + Into<f64>,
        R: Read,
    {
        Ok(npy
            .into_vec::<T>()
            .map_err(|e| malformed(e.to_string()))?
            .into_iter()
            .map(Into::into)
            .collect())
    }
    let typed_float = ts.type_char() == TypeChar::Float;
    let data: Vec<f64> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => npy
            .into_vec::<f32>()
            .map_err(io)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Float, 8) => npy.into_vec::<f64>().map_err(io)?,
        (TypeChar::Int, 8) => npy
            .into_vec::<i64>()
            .map_err(io)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (TypeChar::Int, 4) => whole::<i32, _>(npy)?,
        (TypeChar::Int, 2) => whole::<i16, _>(npy)?,
        (TypeChar::Int, 1) => whole::<i8, _>(npy)?,
        (TypeChar::Uint, 8) => npy
            .into_vec::<u64>()
            .map_err(io)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (TypeChar::Uint, 4) => whole::<u32, _>(npy)?,
        (TypeChar::Uint, 2) => whole::<u16, _>(npy)?,
        (TypeChar::Uint, 1) => whole::<u8, _>(npy)?,
        (TypeChar::Bool, 1) => npy
            .into_vec::<bool>()
            .map_err(io)?
            .into_iter()
            .map(|b| if b { 1.0 } else { 0.0 })
            .collect(),
        (TypeChar::UnicodeStr, _) if shape.is_empty() => {
            let v = npy.into_vec::<String>().map_err(io)?;
            return Ok(DataValue::Str(v.into_iter().next().unwrap_or_default()));
        }
        (c, s) => {
            return Err(DataError::Unsupported(format!(
                "unsupported dtype {c:?}{s}: use float32, float64, a signed or unsigned integer type, or bool"
            )));
        }
    };
    // npyz reads the records its own product of the shape counts (the header's shape is
    // checked before it sees it, so the two agree); a disagreement is still an error,
    // never an array whose data does not fill its shape.
    if data.len() != n {
        return Err(malformed(format!(
            "shape {shape:?} holds {n} values but the file has {}",
            data.len()
        )));
    }
    Ok(DataValue::Array(Array {
        shape,
        data,
        typed_float,
    }))
}

/// The number of values of a shape (0 when any axis is 0), or an error when it does not
/// fit a `usize`: no file holds that many.
fn counted(shape: &[usize]) -> Result<usize, DataError> {
    crate::bind::sizes::shape_values(shape).ok_or_else(|| {
        malformed(format!(
            "shape {shape:?} holds more values than this machine can address"
        ))
    })
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
        assert!(e.to_string().contains("holds 3 values"), "{e}");
        let e = parse_json_data(r#"{"x": [[1, 2], [3]]}"#).unwrap_err();
        assert!(e.to_string().contains("ragged"), "{e}");
        assert!(parse_json_data("[1]").is_err());
        let big = 1u64 << 40;
        let e = parse_json_data(&format!(
            r#"{{"x": {{"shape": [{big}, {big}], "data": []}}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("more values than"), "{e}");
    }

    /// A zero axis makes an array empty whatever the others claim; the binder then
    /// refuses what such sizes would make it allocate.
    #[test]
    fn an_empty_array_may_claim_any_size() {
        let big = 1u64 << 40;
        let d = parse_json_data(&format!(
            r#"{{"x": {{"shape": [{big}, {big}, 0], "data": []}}}}"#
        ))
        .unwrap();
        let DataValue::Array(x) = &d["x"] else {
            panic!()
        };
        assert_eq!(x.shape, vec![1 << 40, 1 << 40, 0]);
    }
}
