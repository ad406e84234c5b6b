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
}

impl Array {
    /// A scalar.
    pub fn scalar(v: f64) -> Array {
        Array {
            shape: vec![],
            data: vec![v],
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
