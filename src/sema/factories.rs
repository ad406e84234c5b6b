//! Factories checked against the losses of every file: each names losses that exist,
//! sets params they have to values of the right kind, and no name is defined twice (a
//! second factory of a name would be unreachable from `--factory`, and `lossc compile`
//! writes one kernel file per factory and per loss, named after it).

use std::collections::HashMap;

use crate::diagnostics::{Diagnostic, Source, Span, closest};
use crate::ir::{Factory, FactoryTerm, Program};
use crate::syntax::ast::FactoryDef;

use super::lower;

/// Where each name of one kind is first defined: `(file index, span)`.
pub(super) type Defined = HashMap<String, (usize, Span)>;

/// "`what` is defined twice", at `span` in file `fi`, pointing back at the first
/// definition: a secondary label in the same file, a note naming the other file.
pub(super) fn defined_twice(
    what: String,
    span: Span,
    fi: usize,
    (ff, first): (usize, Span),
    sources: &[Source],
) -> Diagnostic {
    let d = Diagnostic::error(
        format!("{what} is defined twice"),
        span,
        "defined again here",
    );
    if ff == fi {
        d.with_secondary(first, "first defined here")
    } else {
        d.with_note(format!("first defined in {}", sources[ff].name))
    }
}

/// Checks the factories (each with its file index) and adds those without errors to
/// `program`, whose losses are every loss that checked clean; `losses` holds every loss
/// defined, clean or not.
pub(super) fn check_factories(
    sources: &[Source],
    factories: Vec<(usize, FactoryDef)>,
    losses: &Defined,
    program: &mut Program,
    diagnostics: &mut Vec<(usize, Diagnostic)>,
) {
    let mut factory_at = Defined::new();
    for (fi, f) in factories {
        let name = &f.name.name;
        if let Some(first) = factory_at.get(name) {
            let d = defined_twice(
                format!("factory `{name}`"),
                f.name.span,
                fi,
                *first,
                sources,
            );
            diagnostics.push((fi, d));
            continue;
        }
        factory_at.insert(name.clone(), (fi, f.name.span));
        if let Some((lf, loss)) = losses.get(name) {
            let mut d = Diagnostic::error(
                format!("factory `{name}` has the name of a loss"),
                f.name.span,
                "factory named here",
            );
            if *lf == fi {
                d = d.with_secondary(*loss, "the loss");
            } else {
                d = d.with_note(format!("the loss is defined in {}", sources[*lf].name));
            }
            d = d.with_note(
                "`lossc compile` writes one kernel file per factory and per loss, named after it: the two would write the same file",
            );
            diagnostics.push((fi, d));
            continue;
        }
        let factory = check_factory(&f, losses, program, &mut |d| diagnostics.push((fi, d)));
        program.factories.push(factory);
    }
}

/// One factory, without the entries and settings in error (which are reported).
fn check_factory(
    f: &FactoryDef,
    losses: &Defined,
    program: &Program,
    report: &mut dyn FnMut(Diagnostic),
) -> Factory {
    let mut terms = Vec::new();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for e in &f.entries {
        if let Some(first) = seen.insert(&e.loss.name, e.loss.span) {
            report(
                Diagnostic::error(
                    format!(
                        "loss `{}` appears twice in factory `{}`",
                        e.loss.name, f.name.name
                    ),
                    e.loss.span,
                    "again here",
                )
                .with_secondary(first, "first here"),
            );
            continue;
        }
        let Some(loss) = program.loss(&e.loss.name) else {
            if !losses.contains_key(&e.loss.name) {
                let mut d = Diagnostic::error(
                    format!("unknown loss `{}`", e.loss.name),
                    e.loss.span,
                    "no loss of this name",
                );
                if let Some(c) = closest(&e.loss.name, losses.keys().map(String::as_str)) {
                    d = d.with_note(format!("did you mean `{c}`?"));
                }
                report(d);
            }
            continue;
        };
        let mut settings = Vec::new();
        let mut set_at: HashMap<&str, Span> = HashMap::new();
        for (key, value) in &e.settings {
            if let Some(first) = set_at.insert(&key.name, key.span) {
                report(
                    Diagnostic::error(
                        format!("param `{}` of loss `{}` is set twice", key.name, loss.name),
                        key.span,
                        "set again here",
                    )
                    .with_secondary(first, "first set here"),
                );
                continue;
            }
            let Some(p) = loss.params.iter().find(|p| p.name == key.name) else {
                let mut d = Diagnostic::error(
                    format!("loss `{}` has no param `{}`", loss.name, key.name),
                    key.span,
                    "unknown param",
                );
                if let Some(c) = closest(&key.name, loss.params.iter().map(|p| p.name.as_str())) {
                    d = d.with_note(format!("did you mean `{c}`?"));
                }
                report(d);
                continue;
            };
            let dims = |n: &str| loss.dims.iter().position(|d| d.name == n);
            match lower::lower_value(value, &p.kind, &dims) {
                Ok(v) => settings.push((key.name.clone(), v)),
                Err(d) => report(d),
            }
        }
        terms.push(FactoryTerm {
            loss: loss.name.clone(),
            settings,
            annealed: e.annealed,
        });
    }
    Factory {
        name: f.name.name.clone(),
        doc: f.doc.clone(),
        terms,
    }
}
