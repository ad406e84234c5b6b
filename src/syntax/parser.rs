//! pest parse tree → AST, at once, with spans. Syntax errors become located diagnostics;
//! a file is parsed item by item so that an error in one block does not hide errors in
//! the next. Nesting is bounded before pest runs, so no input can overflow the stack.

use pest::Parser as _;
use pest::iterators::Pair;

use super::ast::*;
use crate::diagnostics::{Diagnostic, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/loss.pest"]
struct LossParser;

/// The deepest bracket nesting accepted. pest recurses once per level; the bound keeps
/// any input (200 000 nested parentheses, say) from overflowing the stack.
pub const MAX_NESTING: usize = 64;

/// The deepest expression tree accepted (operator chains count too).
pub const MAX_EXPR_DEPTH: usize = 400;

/// Parses one file's text. Returns the AST of every item that parsed and the diagnostics
/// of those that did not.
pub fn parse(text: &str) -> (File, Vec<Diagnostic>) {
    let mut file = File::default();
    let mut diags = Vec::new();
    if let Some(d) = check_nesting(text) {
        return (file, vec![d]);
    }
    for (start, end) in split_items(text) {
        let chunk = &text[start..end];
        match LossParser::parse(Rule::file, chunk) {
            Ok(mut pairs) => {
                let mut b = Builder {
                    offset: start,
                    diags: &mut diags,
                };
                let root = pairs.next().expect("pest returns the file rule");
                for item in root.kids().filter(|p| p.as_rule() == Rule::item) {
                    b.item(item, &mut file);
                }
            }
            Err(e) => diags.push(syntax_error(text, start, e)),
        }
    }
    (file, diags)
}

/// Splits the text at top-level `loss` / `factory` keywords written at the start of a
/// line (with the doc comments just above them), so that each block parses on its own.
fn split_items(text: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut offset = 0;
    let mut doc_start: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let starts_item = ["loss", "factory"].iter().any(|kw| {
            line.strip_prefix(kw)
                .is_some_and(|rest| rest.starts_with([' ', '\t']))
        });
        if line.starts_with("///") {
            doc_start.get_or_insert(offset);
        } else if starts_item {
            let s = doc_start.unwrap_or(offset);
            if s > 0 {
                starts.push(s);
            }
            doc_start = None;
        } else if !line.trim().is_empty() {
            doc_start = None;
        }
        offset += line.len();
    }
    starts.dedup();
    let mut out: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    out.push((*starts.last().unwrap_or(&0), text.len()));
    out
}

/// Rejects bracket nesting deeper than [`MAX_NESTING`] before pest sees it.
fn check_nesting(text: &str) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            in_string = !(c == b'"' || c == b'\n');
        } else if c == b'"' {
            in_string = true;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if matches!(c, b'(' | b'[' | b'{') {
            depth += 1;
            if depth > MAX_NESTING {
                return Some(
                    Diagnostic::error(
                        format!("brackets nested more than {MAX_NESTING} levels deep"),
                        Span::new(i, i + 1),
                        "this bracket is too deep",
                    )
                    .with_note("split the expression with `let` declarations"),
                );
            }
        } else if matches!(c, b')' | b']' | b'}') {
            depth = depth.saturating_sub(1);
        }
        i += 1;
    }
    None
}

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

fn syntax_error(text: &str, offset: usize, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = offset
        + match e.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((s, _)) => s,
        };
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

/// Children of a pair without the keyword tokens, which carry no information.
/// Children of a pair, keywords left out.
type KidPairs<'i> =
    std::iter::Filter<pest::iterators::Pairs<'i, Rule>, fn(&Pair<'i, Rule>) -> bool>;

trait Kids<'i> {
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

struct Builder<'d> {
    offset: usize,
    diags: &'d mut Vec<Diagnostic>,
}

type Built = Result<(Expr, usize), ()>;

impl Builder<'_> {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        // pest's spans can end with the whitespace and comments skipped before the next
        // token; a caret should end with the text itself.
        let len = trim_trailing_trivia(s.as_str()).len();
        Span::new(self.offset + s.start(), self.offset + s.start() + len)
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn item(&mut self, item: Pair<Rule>, file: &mut File) {
        let mut doc = Vec::new();
        for p in item.kids() {
            match p.as_rule() {
                Rule::doc => doc.push(doc_text(p.as_str())),
                Rule::loss_def => {
                    if let Some(l) = self.loss(p, doc.join("\n")) {
                        file.losses.push(l)
                    }
                }
                Rule::factory_def => {
                    if let Some(f) = self.factory(p, doc.join("\n")) {
                        file.factories.push(f)
                    }
                }
                _ => {}
            }
        }
    }

    fn loss(&mut self, p: Pair<Rule>, doc: String) -> Option<LossDef> {
        let span = self.span(&p);
        let mut inner = p.kids();
        let name = self.ident(inner.next()?);
        let mut loss = LossDef {
            name,
            doc,
            inputs: vec![],
            params: vec![],
            lets: vec![],
            stages: vec![],
            span,
        };
        let mut ok = true;
        for item in inner {
            let decl = match item.kids().find(|p| p.as_rule() != Rule::doc) {
                Some(d) => d,
                None => continue,
            };
            ok &= self.loss_item(decl, &mut loss).is_ok();
        }
        ok.then_some(loss)
    }

    fn loss_item(&mut self, decl: Pair<Rule>, loss: &mut LossDef) -> Result<(), ()> {
        let span = self.span(&decl);
        match decl.as_rule() {
            Rule::input_decl => {
                let mut it = decl.kids();
                let name = self.ident(it.next().ok_or(())?);
                let shape = self.shape(it.next().ok_or(())?)?;
                let optional = it.next().is_some();
                loss.inputs.push(InputDecl {
                    name,
                    shape,
                    optional,
                    span,
                });
            }
            Rule::param_decl => {
                let mut it = decl.kids();
                let name = self.ident(it.next().ok_or(())?);
                let mut ty = ParamType::Scalar;
                let mut default = None;
                for p in it {
                    match p.as_rule() {
                        Rule::param_type => ty = self.param_type(p)?,
                        Rule::value => default = Some(self.value(p)?),
                        _ => {}
                    }
                }
                loss.params.push(ParamDecl {
                    name,
                    ty,
                    default,
                    span,
                });
            }
            Rule::let_decl => {
                let mut it = decl.kids();
                let name = self.ident(it.next().ok_or(())?);
                let mut indices = None;
                let mut body = None;
                for p in it {
                    match p.as_rule() {
                        Rule::index_params => {
                            indices = Some(p.kids().map(|i| self.ident(i)).collect())
                        }
                        _ => body = Some(self.expr(p)?.0),
                    }
                }
                loss.lets.push(LetDecl {
                    name,
                    indices,
                    body: body.ok_or(())?,
                    span,
                });
            }
            Rule::stage => {
                let s = decl.kids().next().ok_or(())?;
                let rule = s.as_rule();
                let mut it = s.kids();
                let stage = match rule {
                    Rule::compute_stage => Stage::Compute(self.expr(it.next().ok_or(())?)?.0, span),
                    Rule::mask_stage => {
                        let mode = match it.next().ok_or(())?.as_str().trim() {
                            "drop" => MaskMode::Drop,
                            _ => MaskMode::Zero,
                        };
                        Stage::Mask(mode, self.expr(it.next().ok_or(())?)?.0, span)
                    }
                    Rule::rectify_stage => Stage::Rectify(self.expr(it.next().ok_or(())?)?.0, span),
                    Rule::reduce_stage => {
                        let mode = match it.next().ok_or(())?.as_str().trim() {
                            "mean" => ReduceMode::Mean,
                            _ => ReduceMode::Sum,
                        };
                        let empty = match it.next() {
                            Some(e) => Some(self.expr(e.kids().next().ok_or(())?)?.0),
                            None => None,
                        };
                        Stage::Reduce(mode, empty, span)
                    }
                    _ => Stage::Weight(self.expr(it.next().ok_or(())?)?.0, span),
                };
                loss.stages.push(stage);
            }
            _ => {}
        }
        Ok(())
    }

    fn shape(&mut self, p: Pair<Rule>) -> Result<Vec<Expr>, ()> {
        p.kids().map(|e| self.expr(e).map(|(e, _)| e)).collect()
    }

    fn param_type(&mut self, p: Pair<Rule>) -> Result<ParamType, ()> {
        let t = p.kids().next().ok_or(())?;
        Ok(match t.as_rule() {
            Rule::index_type => ParamType::Index(self.shape(t.kids().next().ok_or(())?)?),
            Rule::enum_type => ParamType::Enum(
                t.kids()
                    .map(|s| (unquote(s.as_str()), self.span(&s)))
                    .collect(),
            ),
            _ => ParamType::Tensor(self.shape(t)?),
        })
    }

    fn value(&mut self, p: Pair<Rule>) -> Result<Value, ()> {
        let v = p.kids().next().ok_or(())?;
        let span = self.span(&v);
        Ok(match v.as_rule() {
            Rule::string => Value::Str(unquote(v.as_str()), span),
            Rule::list => Value::List(
                v.kids()
                    .map(|e| self.expr(e).map(|(e, _)| e))
                    .collect::<Result<_, _>>()?,
                span,
            ),
            Rule::range => {
                let mut it = v.kids();
                let lo = self.expr(it.next().ok_or(())?)?.0;
                let hi = self.expr(it.next().ok_or(())?)?.0;
                Value::Range(lo, hi, span)
            }
            _ => Value::Expr(self.expr(v)?.0),
        })
    }

    fn factory(&mut self, p: Pair<Rule>, doc: String) -> Option<FactoryDef> {
        let span = self.span(&p);
        let mut inner = p.kids();
        let name = self.ident(inner.next()?);
        let mut entries = Vec::new();
        for e in inner {
            let mut it = e.kids();
            let loss = self.ident(it.next()?);
            let mut entry = FactoryEntry {
                loss,
                settings: vec![],
                annealed: false,
            };
            for p in it {
                match p.as_rule() {
                    Rule::settings => {
                        for s in p.kids() {
                            let mut si = s.kids();
                            let key = self.ident(si.next()?);
                            let value = self.value(si.next()?).ok()?;
                            entry.settings.push((key, value));
                        }
                    }
                    _ => entry.annealed = true,
                }
            }
            entries.push(entry);
        }
        Some(FactoryDef {
            name,
            doc,
            entries,
            span,
        })
    }

    fn too_deep(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::error(
                format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
                span,
                "too deep",
            )
            .with_note("split the expression with `let` declarations"),
        );
    }

    fn make(&mut self, kind: ExprKind, span: Span, depth: usize) -> Built {
        if depth > MAX_EXPR_DEPTH {
            self.too_deep(span);
            return Err(());
        }
        Ok((Expr { kind, span }, depth))
    }

    /// Any expression-level rule.
    fn expr(&mut self, p: Pair<Rule>) -> Built {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::expr | Rule::paren | Rule::primary => {
                let inner = p.kids().next().ok_or(())?;
                self.expr(inner)
            }
            Rule::value => match self.value(p)? {
                Value::Expr(e) => Ok((e, 1)),
                _ => Err(()),
            },
            Rule::or_expr | Rule::and_expr | Rule::cmp_expr | Rule::add_expr | Rule::mul_expr => {
                // Left-associative chain: operand (op operand)*, folded iteratively.
                let mut it = p.kids();
                let (mut acc, mut depth) = self.expr(it.next().ok_or(())?)?;
                while let Some(op) = it.next() {
                    let (rhs, rd) = self.expr(it.next().ok_or(())?)?;
                    let op = bin_op(op.as_str());
                    let s = acc.span.to(rhs.span);
                    let d = depth.max(rd) + 1;
                    (acc, depth) =
                        self.make(ExprKind::Binary(op, Box::new(acc), Box::new(rhs)), s, d)?;
                }
                Ok((acc, depth))
            }
            Rule::unary => {
                let pairs: Vec<Pair<Rule>> = p.kids().collect();
                let (ops, operand) = pairs.split_at(pairs.len() - 1);
                let (mut acc, mut depth) = self.expr(operand[0].clone())?;
                for op in ops.iter().rev() {
                    let s = self.span(op).to(acc.span);
                    (acc, depth) = self.make(
                        ExprKind::Unary(un_op(op.as_str()), Box::new(acc)),
                        s,
                        depth + 1,
                    )?;
                }
                let _ = span;
                Ok((acc, depth))
            }
            Rule::pow_expr => {
                // primary (^ prefix* primary)*: right-associative, with prefixes binding
                // looser than `^` (`2 ^ -x ^ 2` is `2 ^ (-(x ^ 2))`), folded from the right.
                let mut groups: Vec<(Vec<Pair<Rule>>, Pair<Rule>)> = Vec::new();
                let mut prefixes = Vec::new();
                for q in p.kids() {
                    match q.as_rule() {
                        Rule::pow_op => {}
                        Rule::prefix_op => prefixes.push(q),
                        _ => groups.push((std::mem::take(&mut prefixes), q)),
                    }
                }
                let (last_prefixes, last) = groups.pop().ok_or(())?;
                let (mut acc, mut depth) = self.expr(last)?;
                let mut pending = last_prefixes;
                while let Some((prefixes, base)) = groups.pop() {
                    for op in pending.iter().rev() {
                        let s = self.span(op).to(acc.span);
                        (acc, depth) = self.make(
                            ExprKind::Unary(un_op(op.as_str()), Box::new(acc)),
                            s,
                            depth + 1,
                        )?;
                    }
                    let (b, bd) = self.expr(base)?;
                    let s = b.span.to(acc.span);
                    let d = depth.max(bd) + 1;
                    (acc, depth) = self.make(
                        ExprKind::Binary(BinOp::Pow, Box::new(b), Box::new(acc)),
                        s,
                        d,
                    )?;
                    pending = prefixes;
                }
                debug_assert!(pending.is_empty());
                Ok((acc, depth))
            }
            Rule::number => {
                let text = p.as_str();
                match text.parse::<f64>() {
                    Ok(v) => self.make(ExprKind::Number(v), span, 1),
                    Err(_) => {
                        self.diags
                            .push(Diagnostic::error("malformed number", span, "here"));
                        Err(())
                    }
                }
            }
            Rule::string => self.make(ExprKind::Str(unquote(p.as_str())), span, 1),
            Rule::ident => {
                let id = self.ident(p);
                self.make(ExprKind::Name(id), span, 1)
            }
            Rule::access | Rule::call => {
                let rule = p.as_rule();
                let mut it = p.kids();
                let name = self.ident(it.next().ok_or(())?);
                let mut args = Vec::new();
                let mut depth = 0;
                for a in it {
                    let (e, d) = self.expr(a)?;
                    depth = depth.max(d);
                    args.push(e);
                }
                let kind = if rule == Rule::access {
                    ExprKind::Access(name, args)
                } else {
                    ExprKind::Call(name, args)
                };
                self.make(kind, span, depth + 1)
            }
            Rule::reduction => {
                let mut it = p.kids();
                let name = self.ident(it.next().ok_or(())?);
                let mut binders = Vec::new();
                let mut body = None;
                let mut depth = 0;
                for q in it {
                    if q.as_rule() == Rule::binder {
                        let mut bi = q.kids();
                        let bname = self.ident(bi.next().ok_or(())?);
                        let range = match (bi.next(), bi.next()) {
                            (Some(lo), Some(hi)) => Some((self.expr(lo)?.0, self.expr(hi)?.0)),
                            _ => None,
                        };
                        binders.push(Binder { name: bname, range });
                    } else {
                        let (e, d) = self.expr(q)?;
                        depth = d;
                        body = Some(e);
                    }
                }
                self.make(
                    ExprKind::Reduction(name, binders, Box::new(body.ok_or(())?)),
                    span,
                    depth + 1,
                )
            }
            _ => Err(()),
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

fn doc_text(line: &str) -> String {
    let t = line.trim_start_matches("///");
    t.strip_prefix(' ').unwrap_or(t).trim_end().to_string()
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

fn bin_op(s: &str) -> BinOp {
    match s {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "^" => BinOp::Pow,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        "<=" => BinOp::Le,
        ">" => BinOp::Gt,
        ">=" => BinOp::Ge,
        "&&" => BinOp::And,
        _ => BinOp::Or,
    }
}

fn un_op(s: &str) -> UnOp {
    if s == "!" { UnOp::Not } else { UnOp::Neg }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr_of(src: &str) -> Expr {
        let text = format!("loss l {{ compute {src} reduce mean }}");
        let (file, diags) = parse(&text);
        assert!(diags.is_empty(), "{diags:?}");
        match &file.losses[0].stages[0] {
            Stage::Compute(e, _) => e.clone(),
            _ => unreachable!(),
        }
    }

    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Number(v) => format!("{v}"),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Name(n) => n.name.clone(),
            ExprKind::Access(n, a) => format!(
                "{}[{}]",
                n.name,
                a.iter().map(show).collect::<Vec<_>>().join(",")
            ),
            ExprKind::Call(n, a) => format!(
                "{}({})",
                n.name,
                a.iter().map(show).collect::<Vec<_>>().join(",")
            ),
            ExprKind::Unary(op, x) => {
                format!("({}{})", if *op == UnOp::Neg { "-" } else { "!" }, show(x))
            }
            ExprKind::Binary(op, a, b) => format!("({} {} {})", show(a), op.symbol(), show(b)),
            ExprKind::Reduction(n, bs, body) => format!(
                "{}({}: {})",
                n.name,
                bs.iter()
                    .map(|b| b.name.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                show(body)
            ),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(show(&expr_of("1 + 2 * 3 - 4")), "((1 + (2 * 3)) - 4)");
        assert_eq!(show(&expr_of("-x ^ 2")), "(-(x ^ 2))");
        assert_eq!(show(&expr_of("2 ^ 3 ^ 2")), "(2 ^ (3 ^ 2))");
        assert_eq!(show(&expr_of("2 ^ -x ^ 2")), "(2 ^ (-(x ^ 2)))");
        assert_eq!(
            show(&expr_of("a < b || c == d && !e")),
            "((a < b) || ((c == d) && (!e)))"
        );
    }

    #[test]
    fn reductions_calls_and_access() {
        assert_eq!(
            show(&expr_of("sum(h, w: x[b, k, h + 1, w])")),
            "sum(h,w: x[b,k,(h + 1),w])"
        );
        assert_eq!(show(&expr_of("max(a, b)")), "max(a,b)");
        assert_eq!(show(&expr_of("norm(c in 0..2: y[c])")), "norm(c: y[c])");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "loss l {{ compute {}1{} reduce mean }}",
            "(".repeat(200_000),
            ")".repeat(200_000)
        );
        let (_, diags) = parse(&deep);
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("nested"));
        let chain = format!(
            "loss l {{ compute 1{} reduce mean }}",
            " + 1".repeat(100_000)
        );
        let (_, diags) = parse(&chain);
        assert!(diags[0].message.contains("nested more than"));
        let negs = format!("loss l {{ compute {}1 reduce mean }}", "-".repeat(100_000));
        let (_, diags) = parse(&negs);
        assert!(diags[0].message.contains("nested more than"));
    }

    #[test]
    fn errors_in_two_blocks_are_both_reported() {
        let text = "loss a {\n  compute x +\n}\nloss b {\n  compute ) \n}\n";
        let (_, diags) = parse(text);
        assert_eq!(diags.len(), 2, "{diags:?}");
    }
}
