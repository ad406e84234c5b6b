//! Located diagnostics: every error the front end reports names a span of the source,
//! and is rendered with file, line, column, the source line and a caret under the text.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::NoColor};

/// A byte range `start..end` in one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// One error (or warning) about a source file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// `true` for errors, `false` for warnings.
    pub is_error: bool,
    /// The one-line message.
    pub message: String,
    /// The offending text and what to say under it.
    pub primary: (Span, String),
    /// Related places.
    pub secondary: Vec<(Span, String)>,
    /// Hints, printed after the source excerpt.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span` with a label under the text.
    pub fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            is_error: true,
            message: message.into(),
            primary: (span, label.into()),
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a related place.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Adds a hint.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}

/// A source file that could not be read.
#[derive(Debug)]
pub enum SourceError {
    /// The file could not be opened or read.
    Io { path: String, reason: String },
    /// Its text is not UTF-8: the diagnostic locates the first bad byte in `source`.
    NotUtf8 {
        source: Box<Source>,
        diagnostic: Box<Diagnostic>,
    },
}

impl SourceError {
    /// The error as the command line prints it, ending in a newline.
    pub fn render(&self) -> String {
        match self {
            SourceError::Io { path, reason } => format!("error: cannot read {path}: {reason}\n"),
            SourceError::NotUtf8 { source, diagnostic } => {
                source.render(std::slice::from_ref(&**diagnostic))
            }
        }
    }
}

/// A source file: its name (as shown in diagnostics) and its text.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path or name shown in diagnostics.
    pub name: String,
    /// The text.
    pub text: String,
}

impl Source {
    /// A source from a name and its text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Reads a source file. Text that is not UTF-8 is an error located at the first bad
    /// byte, against the file read lossily.
    pub fn read(path: &std::path::Path) -> Result<Source, SourceError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| SourceError::Io {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Source::new(name, text)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                let diagnostic = Diagnostic::error(
                    "the file is not valid UTF-8",
                    Span::new(at, at + 1),
                    "invalid byte here",
                )
                .with_note(".loss files are UTF-8 text");
                Err(SourceError::NotUtf8 {
                    source: Box::new(Source::new(name, text)),
                    diagnostic: Box::new(diagnostic),
                })
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = clamp_to_char_boundary(&self.text, offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Renders diagnostics as plain text (no colour), the form users and snapshots see.
    pub fn render(&self, diagnostics: &[Diagnostic]) -> String {
        // Control characters have no width, so no caret could be drawn under them: show
        // each as `?` (byte for byte, so that spans stay valid).
        let shown: String = self
            .text
            .chars()
            .flat_map(|c| {
                let visible = !c.is_control() || matches!(c, '\n' | '\t' | '\r');
                let n = if visible { 1 } else { c.len_utf8() };
                std::iter::repeat_n(if visible { c } else { '?' }, n)
            })
            .collect();
        let file = SimpleFile::new(self.name.as_str(), shown.as_str());
        let config = term::Config::default();
        let mut out = NoColor::new(Vec::new());
        for d in diagnostics {
            let fix = |s: Span| {
                let start = clamp_to_char_boundary(&self.text, s.start);
                let end = clamp_to_char_boundary(&self.text, s.end.max(start));
                start..end
            };
            let mut labels =
                vec![Label::primary((), fix(d.primary.0)).with_message(d.primary.1.clone())];
            for (span, msg) in &d.secondary {
                labels.push(Label::secondary((), fix(*span)).with_message(msg.clone()));
            }
            let cs = if d.is_error {
                CsDiagnostic::error()
            } else {
                CsDiagnostic::warning()
            };
            let cs = cs
                .with_message(d.message.clone())
                .with_labels(labels)
                .with_notes(d.notes.clone());
            // Writing to an in-memory buffer fails only on a codespan bug; fall back to the
            // bare message rather than lose the diagnostic.
            if term::emit(&mut out, &config, &file, &cs).is_err() {
                let (line, col) = self.line_col(d.primary.0.start);
                out.get_mut().extend(
                    format!("error: {}\n  at {}:{line}:{col}\n", d.message, self.name).bytes(),
                );
            }
        }
        String::from_utf8_lossy(&out.into_inner()).into_owned()
    }
}

fn clamp_to_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Edit distance, for "did you mean" hints.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        // One-letter names are all one edit apart: suggesting among them misleads.
        if d <= (name.len().max(c.len()) / 3).max(1)
            && d < name.len()
            && best.is_none_or(|(bd, _)| d < bd)
        {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The edit (Levenshtein) distance between two names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let s = Source::new("f", "ab\nçd x");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(6), (2, 3)); // 'ç' is two bytes
    }

    #[test]
    fn closest_suggests_near_names_only() {
        assert_eq!(
            closest("log_weigth", ["log_weight", "epsilon"]),
            Some("log_weight")
        );
        assert_eq!(closest("zzz", ["log_weight", "epsilon"]), None);
    }
}
