//! Helpers over pest's tree: children without keywords, spans without trailing
//! trivia, names, doc lines and string literals.

use pest::iterators::Pair;

use super::{Builder, Rule};
use crate::diagnostics::Span;
use crate::syntax::ast::Ident;

/// Children of a pair without the keyword tokens, which carry no information.
pub(super) type KidPairs<'i> =
    std::iter::Filter<pest::iterators::Pairs<'i, Rule>, fn(&Pair<'i, Rule>) -> bool>;

/// [`Kids::kids`] on pest's pairs.
pub(super) trait Kids<'i> {
    fn kids(self) -> KidPairs<'i>;
}

impl<'i> Kids<'i> for Pair<'i, Rule> {
    fn kids(self) -> KidPairs<'i> {
        fn keep(p: &Pair<Rule>) -> bool {
            !matches!(
                p.as_rule(),
                Rule::kw_index
                    | Rule::kw_compute
                    | Rule::kw_remove_nans
                    | Rule::kw_where
                    | Rule::kw_rectify
                    | Rule::kw_reduce
                    | Rule::kw_weight
                    | Rule::kw_in
            )
        }
        self.into_inner()
            .filter(keep as fn(&Pair<'i, Rule>) -> bool)
    }
}

impl Builder<'_> {
    /// A pair's span in the file, trailing trivia left out.
    pub(super) fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        // pest's spans can end with the whitespace and comments skipped before the next
        // token; a caret should end with the text itself.
        let len = trim_trailing_trivia(s.as_str()).len();
        Span::new(self.offset + s.start(), self.offset + s.start() + len)
    }

    /// A pair as a name with its span.
    pub(super) fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }
}

/// `text` without trailing whitespace and `//` comments.
fn trim_trailing_trivia(text: &str) -> &str {
    let mut t = text.trim_end();
    loop {
        let line_start = t.rfind('\n').map_or(0, |i| i + 1);
        match comment_start(&t[line_start..]) {
            Some(c) => t = t[..line_start + c].trim_end(),
            None => return t,
        }
    }
}

/// Where a `//` comment starts on a line (outside strings).
fn comment_start(line: &str) -> Option<usize> {
    let mut in_string = false;
    let bytes = line.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
    }
    None
}

/// A `///` line's text.
pub(super) fn doc_text(line: &str) -> String {
    let t = line.trim_start_matches("///");
    t.strip_prefix(' ').unwrap_or(t).trim_end().to_string()
}

/// A string literal's text.
pub(super) fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}
