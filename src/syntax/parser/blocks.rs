//! Blocks: `loss` and `factory` items, their declarations and stages, and values.

use pest::iterators::Pair;

use super::tree::{Kids as _, doc_text, unquote};
use super::{Builder, Rule};
use crate::diagnostics::{Diagnostic, Span};
use crate::syntax::ast::*;

impl Builder<'_> {
    /// One item: a loss or a factory, with the doc comment above it.
    pub(super) fn item(&mut self, item: Pair<Rule>, file: &mut File) {
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
                let mut next = it.next().ok_or(())?;
                let int = next.as_rule() == Rule::int_kw;
                if int {
                    next = it.next().ok_or(())?;
                }
                let shape = self.shape(next)?;
                let optional = it.next().is_some();
                let default = match it.next() {
                    Some(e) => Some(self.expr(e)?.0),
                    None => None,
                };
                loss.inputs.push(InputDecl {
                    name,
                    int,
                    shape,
                    optional,
                    default,
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
                let has_where = s
                    .clone()
                    .into_inner()
                    .any(|p| p.as_rule() == Rule::kw_where);
                let mut it = s.kids();
                let stage = match rule {
                    Rule::compute_stage => Stage::Compute(self.expr(it.next().ok_or(())?)?.0, span),
                    Rule::mask_stage => {
                        let written = it.next().ok_or(())?.as_str().trim();
                        let mode = match written {
                            "drop" => MaskMode::Drop,
                            _ => MaskMode::Zero,
                        };
                        let cond = it.next();
                        if !has_where {
                            self.missing_where(written, cond.map(|c| self.span(&c)), span);
                            return Err(());
                        }
                        Stage::Mask(mode, self.expr(cond.ok_or(())?)?.0, span)
                    }
                    Rule::rectify_stage => Stage::Rectify(self.expr(it.next().ok_or(())?)?.0, span),
                    Rule::reduce_stage => {
                        let mode = match it.next().ok_or(())?.as_str().trim() {
                            "mean" => ReduceMode::Mean,
                            _ => ReduceMode::Sum,
                        };
                        let (mut by, mut empty) = (None, None);
                        for clause in it {
                            let is_by = clause.as_rule() == Rule::by_clause;
                            let e = clause.kids().last().ok_or(())?;
                            let e = Some(self.expr(e)?.0);
                            if is_by { by = e } else { empty = e }
                        }
                        Stage::Reduce {
                            mode,
                            by,
                            empty,
                            span,
                        }
                    }
                    _ => Stage::Weight(self.expr(it.next().ok_or(())?)?.0, span),
                };
                loss.stages.push(stage);
            }
            _ => {}
        }
        Ok(())
    }

    /// `remove_nans MODE` without `where COND`, or with a condition but no `where`: says
    /// what the stage needs, at the stage (or at the condition).
    fn missing_where(&mut self, mode: &str, cond: Option<Span>, stage: Span) {
        let d = match cond {
            None => Diagnostic::error(
                format!("`remove_nans {mode}` needs a condition: `remove_nans {mode} where COND`"),
                stage,
                "no `where` condition",
            )
            .with_note(format!(
                "COND says which elements to {}, e.g. `remove_nans {mode} where isnan(x[b])`",
                if mode == "drop" {
                    "drop"
                } else {
                    "replace by 0"
                }
            )),
            Some(cond) => Diagnostic::error(
                format!("`remove_nans {mode}` needs `where` before its condition"),
                cond,
                "write `where` before this",
            ),
        };
        self.diags.push(d);
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

    /// A default or a setting.
    pub(super) fn value(&mut self, p: Pair<Rule>) -> Result<Value, ()> {
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
}
