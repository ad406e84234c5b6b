//! Syntax errors: pest's error turned into a located diagnostic that names what was
//! expected in words and the token found.

use super::Rule;
use crate::diagnostics::{Diagnostic, Span};

/// What a rule is called in "expected ..." messages; `None` for rules not worth naming.
fn rule_name(rule: &Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::item | Rule::loss_def | Rule::factory_def => "`loss` or `factory`",
        Rule::loss_item => "a declaration (`input`, `param`, `let`) or a stage",
        Rule::doc => "a `///` doc comment",
        Rule::input_decl => "`input`",
        Rule::param_decl => "`param`",
        Rule::let_decl => "`let`",
        Rule::stage => "a stage (`compute`, `remove_nans`, `rectify`, `reduce`, `weight`)",
        Rule::optional_kw => "`optional`",
        Rule::shape => "a shape like `[B, K]`",
        Rule::param_type => "a parameter type (`[dims]`, `index[dims]` or `\"a\" | \"b\"`)",
        Rule::index_params => "`[` index names `]`",
        Rule::mask_mode => "`drop` or `zero`",
        Rule::reduce_mode => "`mean` or `sum`",
        Rule::empty_clause => "`(empty: VALUE)`",
        Rule::by_clause | Rule::kw_by => "`by WEIGHT`",
        Rule::int_kw => "`int`",
        Rule::factory_entry => "a loss name",
        Rule::settings => "`{ name = value, ... }`",
        Rule::setting => "`name = value`",
        Rule::annealed_kw => "`annealed`",
        Rule::value | Rule::list | Rule::range => "a value",
        Rule::expr
        | Rule::or_expr
        | Rule::and_expr
        | Rule::cmp_expr
        | Rule::add_expr
        | Rule::mul_expr
        | Rule::unary
        | Rule::pow_expr
        | Rule::primary => "an expression",
        Rule::or_op => "`||`",
        Rule::and_op => "`&&`",
        Rule::cmp_op => "a comparison",
        Rule::add_op | Rule::mul_op | Rule::pow_op => "an operator",
        Rule::prefix_op => "`-` or `!`",
        Rule::paren => "`(`",
        Rule::access => "an indexed name",
        Rule::call => "a call",
        Rule::reduction => "a reduction",
        Rule::binder => "an index name",
        Rule::number => "a number",
        Rule::string => "a string",
        Rule::ident => "a name",
        _ => return None,
    })
}

/// The diagnostic for pest's error in the item starting at `offset`.
pub(super) fn syntax_error(text: &str, offset: usize, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = offset
        + match e.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((s, _)) => s,
        };
    if let Some(d) = known_mistake(text, pos) {
        return d;
    }
    let found = found_token(text, pos);
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().filter_map(rule_name).collect();
            names.sort_unstable();
            names.dedup();
            match names.len() {
                0 => String::from("something else"),
                1 => names[0].to_string(),
                n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let end = pos + found.len().max(if pos < text.len() { 1 } else { 0 });
    let shown: String = found.chars().flat_map(char::escape_debug).collect();
    let label = if found.is_empty() {
        "unexpected end of file".to_string()
    } else {
        format!("unexpected `{shown}`")
    };
    let message = if expected == "something else" {
        if found.is_empty() {
            "syntax error: unexpected end of file".to_string()
        } else {
            format!("syntax error: unexpected `{shown}`")
        }
    } else {
        format!("syntax error: expected {expected}")
    };
    let mut d = Diagnostic::error(message, Span::new(pos, end), label);
    if found.is_empty() {
        d = d.with_note("is a closing `}` or `)` missing?");
    }
    d
}

/// A syntax error at `pos` that other languages' habits explain, with what to write.
fn known_mistake(text: &str, pos: usize) -> Option<Diagnostic> {
    // `x ** 2`: pest stops at the second `*`, where an operand should be.
    if text.get(pos..)?.starts_with('*') && text.get(..pos)?.ends_with('*') {
        return Some(
            Diagnostic::error(
                "`**` is not an operator: write powers with `^`",
                Span::new(pos - 1, pos + 1),
                "use `^` here",
            )
            .with_note("`x ^ 2` is x squared (computed as `x * x`)"),
        );
    }
    None
}

/// The token at `pos`, for "unexpected `...`" labels.
fn found_token(text: &str, pos: usize) -> String {
    let rest = match text.get(pos..) {
        Some(r) => r,
        None => return String::new(),
    };
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    if !word.is_empty() {
        return word;
    }
    rest.chars()
        .next()
        .map(|c| c.to_string())
        .unwrap_or_default()
}
