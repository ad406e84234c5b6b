//! The header of an `.npy` entry, read by lossc before npyz sees it. npyz parses the
//! header's Python dict literal with a general parser that takes seconds on some
//! malformed 100-byte headers (it backtracks), and multiplies the shape's dimensions
//! unchecked (a panic in a debug build, a wrong count in a release one). So the header is
//! read here, strictly, as the dict NumPy writes (`descr`, `fortran_order`, `shape`), the
//! shape is checked, and npyz is handed the same header rewritten in NumPy's own
//! spelling.

use super::data::DataError;

/// What an `.npy` header says.
#[derive(Debug, PartialEq)]
pub struct Header {
    /// The dtype's type string (`<f4`, `|b1`, ...).
    pub descr: String,
    /// Whether the data is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// The dimensions.
    pub shape: Vec<u64>,
}

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8] = b"\x93NUMPY";

/// How many bytes give the header's length after the magic string and the version: 2 in
/// version 1, 4 in versions 2 and 3; `None` for another version or no magic string.
pub fn length_bytes(start: &[u8]) -> Option<u64> {
    match start {
        [m @ .., 1, 0] if m == MAGIC => Some(2),
        [m @ .., 2 | 3, 0] if m == MAGIC => Some(4),
        _ => None,
    }
}

fn malformed(what: impl std::fmt::Display) -> DataError {
    DataError::Malformed(format!("invalid .npy header: {what}"))
}

impl Header {
    /// Reads the header text (the bytes after the length, up to the data), refusing a
    /// shape whose nonzero dimensions' product overflows a `u64`: no file holds that many
    /// values, and a zero dimension does not keep npyz's strides from overflowing.
    pub fn parse(bytes: &[u8]) -> Result<Header, DataError> {
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"))?;
        let mut p = Parser { text, at: 0 };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect('{')?;
        while !p.eat('}') {
            let key = p.string()?;
            p.expect(':')?;
            match key.as_str() {
                "descr" if p.peek() == Some('[') => {
                    return Err(DataError::Unsupported(
                        "structured arrays are not supported".into(),
                    ));
                }
                "descr" => descr = Some(p.string()?),
                "fortran_order" => fortran_order = Some(p.boolean()?),
                "shape" => shape = Some(p.dims()?),
                other => return Err(malformed(format!("unexpected key `{other}`"))),
            }
            if !p.eat(',') {
                p.expect('}')?;
                break;
            }
        }
        p.skip_space();
        if p.at < p.text.len() {
            return Err(malformed("text after the dict"));
        }
        let missing = |k: &str| malformed(format!("no `{k}`"));
        let header = Header {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        };
        let fits = header
            .shape
            .iter()
            .filter(|d| **d != 0)
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .is_some();
        if !fits {
            return Err(DataError::Malformed(format!(
                "shape {:?} is too large: the product of its nonzero dimensions overflows \
                 64 bits",
                header.shape
            )));
        }
        Ok(header)
    }

    /// The header as NumPy writes it (version 1, or 2 when it needs a longer length):
    /// magic string, version, length, dict literal padded with spaces to a multiple of
    /// 64 bytes, newline.
    pub fn write(&self) -> Vec<u8> {
        let dims: Vec<String> = self.shape.iter().map(u64::to_string).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let order = if self.fortran_order { "True" } else { "False" };
        let mut dict = format!(
            "{{'descr': '{}', 'fortran_order': {order}, 'shape': {shape}, }}",
            self.descr
        );
        let v1 = MAGIC.len() + 4 + dict.len() < usize::from(u16::MAX);
        let before = MAGIC.len() + if v1 { 4 } else { 6 };
        while !(before + dict.len() + 1).is_multiple_of(64) {
            dict.push(' ');
        }
        dict.push('\n');
        let mut out = MAGIC.to_vec();
        if v1 {
            out.extend([1, 0]);
            out.extend((dict.len() as u16).to_le_bytes());
        } else {
            out.extend([2, 0]);
            out.extend((dict.len() as u32).to_le_bytes());
        }
        out.extend(dict.as_bytes());
        out
    }
}

/// A cursor over the header text.
struct Parser<'t> {
    text: &'t str,
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        let rest = &self.text[self.at..];
        self.at += rest.len() - rest.trim_start().len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.text[self.at..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), DataError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(malformed(format!("expected `{c}` at byte {}", self.at)))
        }
    }

    /// A string in single or double quotes, without escapes (no type string or key
    /// NumPy writes has one).
    fn string(&mut self) -> Result<String, DataError> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(malformed(format!("expected a string at byte {}", self.at))),
        };
        let rest = &self.text[self.at + 1..];
        let end = rest
            .find(quote)
            .ok_or_else(|| malformed("an unterminated string"))?;
        let s = &rest[..end];
        if s.contains('\\') {
            return Err(malformed("an escape in a string"));
        }
        self.at += end + 2;
        Ok(s.to_string())
    }

    fn word(&mut self) -> &str {
        self.skip_space();
        let rest = &self.text[self.at..];
        let len = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    fn boolean(&mut self) -> Result<bool, DataError> {
        match self.word() {
            "True" => Ok(true),
            "False" => Ok(false),
            w => Err(malformed(format!(
                "`fortran_order` is `{w}`, not True or False"
            ))),
        }
    }

    /// A tuple (or list) of dimensions: decimal integers, with Python 2's `L` suffix
    /// allowed, and a trailing comma.
    fn dims(&mut self) -> Result<Vec<u64>, DataError> {
        let close = if self.eat('(') {
            ')'
        } else if self.eat('[') {
            ']'
        } else {
            return Err(malformed("`shape` is not a tuple"));
        };
        let mut dims = Vec::new();
        while !self.eat(close) {
            self.skip_space();
            let at = self.at;
            let w = self.word();
            let digits = w.strip_suffix('L').unwrap_or(w);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed(format!(
                    "expected a dimension of `shape` (an integer, 0 or more) at byte {at}"
                )));
            }
            let d = digits
                .parse()
                .map_err(|_| malformed(format!("a dimension {digits} past 2^64")))?;
            dims.push(d);
            if !self.eat(',') {
                self.expect(close)?;
                break;
            }
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Header, String> {
        Header::parse(s.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_numpy_writes() {
        let h =
            parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }       \n").unwrap();
        assert_eq!(
            h,
            Header {
                descr: "<f4".into(),
                fortran_order: false,
                shape: vec![2, 3]
            }
        );
        assert_eq!(
            parse("{\"shape\": [7L,], \"fortran_order\": True, \"descr\": \"|b1\"}")
                .unwrap()
                .shape,
            vec![7]
        );
        assert_eq!(
            parse("{'descr': '<i8', 'fortran_order': False, 'shape': ()}")
                .unwrap()
                .shape,
            Vec::<u64>::new()
        );
    }

    #[test]
    fn the_rewritten_header_reads_back_and_is_aligned() {
        for shape in [vec![], vec![5], vec![2, 3, 4]] {
            let h = Header {
                descr: "<f8".into(),
                fortran_order: false,
                shape,
            };
            let bytes = h.write();
            assert_eq!(bytes.len() % 64, 0);
            assert_eq!(length_bytes(&bytes[..8]), Some(2));
            assert_eq!(Header::parse(&bytes[10..]).unwrap(), h);
        }
    }

    #[test]
    fn refuses_what_is_not_a_plain_header() {
        for (text, error) in [
            ("{'descr': '<f4', 'fortran_order': False}", "no `shape`"),
            (
                "{'descr': '<f4', 'fortran_order': Falsegggg, 'shape': (2,)}",
                "`fortran_order` is `Falsegggg`",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                "dimension",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
                "after",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
                "structured",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                "past 2^64",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 0, 4294967296)}",
                "overflows 64 bits",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(error), "{text}: {e}");
        }
    }
}
