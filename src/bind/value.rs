//! Values as a data file or a caller gives them, before binding: dense arrays (kept in
//! f64 until bound, so that integers and doubles reach the binder exactly) and strings
//! (an enum param's value).

/// A dense row-major array; values are kept as f64 until bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Its shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub data: Vec<f64>,
    /// Whether it came typed as floating point (a float `.npz` array, a float NumPy
    /// array): an `int` input refuses it even when every value is whole, since a float
    /// array of class ids is more likely a mistake than a choice. JSON numbers carry no
    /// type, so arrays from JSON are not.
    pub typed_float: bool,
}

impl Array {
    /// A scalar.
    pub fn scalar(v: f64) -> Array {
        Array {
            shape: vec![],
            data: vec![v],
            typed_float: false,
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

/// The position `[i, j, ...]` of the `at`-th element, row-major, of an array of shape
/// `shape`.
pub fn unflatten(mut at: usize, shape: &[usize]) -> Vec<usize> {
    let mut out = vec![0; shape.len()];
    for (o, n) in out.iter_mut().zip(shape).rev() {
        if *n > 0 {
            *o = at % n;
            at /= n;
        }
    }
    out
}
