//! Semantic analysis: name resolution and typing ([`lower`]), then the IR passes, and the
//! checks that span files (factories naming losses, duplicate loss names).

pub mod lower;

use std::collections::HashMap;

use crate::diagnostics::{Diagnostic, Source, closest};
use crate::ir::{Factory, FactoryTerm, Program, passes};
use crate::syntax;

/// The result of checking a set of files: the program (complete only when there are no
/// errors) and the diagnostics, each with the index of its file.
pub struct Checked {
    /// Every loss and factory that checked clean.
    pub program: Program,
    /// Diagnostics as `(file index, diagnostic)`.
    pub diagnostics: Vec<(usize, Diagnostic)>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|(_, d)| d.is_error)
    }

    /// Every diagnostic rendered against its source.
    pub fn render(&self, sources: &[Source]) -> String {
        self.diagnostics
            .iter()
            .map(|(f, d)| sources[*f].render(std::slice::from_ref(d)))
            .collect()
    }
}

/// The stack of the thread the front end runs on. Parsing recurses once per bracket
/// level (up to [`syntax::parser::MAX_NESTING`]) and lowering once per expression level,
/// lets' bodies included (up to [`crate::ir::passes::depth::MAX_IR_DEPTH`]). In a debug
/// build the parser's frames (pest's and the AST builder's) take about 160 KiB per
/// bracket level, 10 MiB at its cap: more than a main thread's 8 MiB, five times a test
/// thread's 2 MiB. Lowering's take up to 5 KiB per level, 2.5 MiB at its cap (nested
/// gathers). The stack is reserved, not committed: untouched pages cost no memory.
const FRONT_END_STACK: usize = 64 << 20;

/// Parses and checks the sources, and runs the IR passes on every loss: on a thread of
/// its own whose stack fits the front end's deepest recursion whatever thread calls it
/// (the thread that calls it waits; a panic resumes there).
pub fn check(sources: &[Source]) -> Checked {
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("lossc front end".into())
            .stack_size(FRONT_END_STACK)
            .spawn_scoped(scope, || check_here(sources))
        {
            Ok(front_end) => front_end
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had (a process at its limit): the caller's stack will do for
            // every loss short of the caps.
            Err(_) => check_here(sources),
        }
    })
}

/// [`check`] on the current thread.
fn check_here(sources: &[Source]) -> Checked {
    let mut program = Program::default();
    let mut diagnostics = Vec::new();
    let mut loss_at: HashMap<String, (usize, crate::diagnostics::Span)> = HashMap::new();
    let mut factories = Vec::new();
    for (fi, src) in sources.iter().enumerate() {
        let (ast, diags) = syntax::parse(&src.text);
        diagnostics.extend(diags.into_iter().map(|d| (fi, d)));
        for def in &ast.losses {
            if let Some((ff, first)) = loss_at.get(&def.name.name) {
                let mut d = Diagnostic::error(
                    format!("loss `{}` is defined twice", def.name.name),
                    def.name.span,
                    "defined again here",
                );
                if *ff == fi {
                    d = d.with_secondary(*first, "first defined here");
                } else {
                    d = d.with_note(format!("first defined in {}", sources[*ff].name));
                }
                diagnostics.push((fi, d));
                continue;
            }
            loss_at.insert(def.name.name.clone(), (fi, def.name.span));
            let mut diags = Vec::new();
            if let Some(mut ir) = lower::lower_loss(def, &mut diags) {
                ir.origin = crate::ir::Origin::new(&src.name, &src.text);
                diags.extend(passes::run_all(&mut ir));
                if !diags.iter().any(|d| d.is_error) {
                    program.losses.push(ir);
                }
            }
            diagnostics.extend(diags.into_iter().map(|d| (fi, d)));
        }
        factories.extend(ast.factories.into_iter().map(|f| (fi, f)));
    }
    for (fi, f) in factories {
        let mut terms = Vec::new();
        let mut seen: HashMap<&str, crate::diagnostics::Span> = HashMap::new();
        for e in &f.entries {
            if let Some(first) = seen.insert(&e.loss.name, e.loss.span) {
                diagnostics.push((
                    fi,
                    Diagnostic::error(
                        format!(
                            "loss `{}` appears twice in factory `{}`",
                            e.loss.name, f.name.name
                        ),
                        e.loss.span,
                        "again here",
                    )
                    .with_secondary(first, "first here"),
                ));
                continue;
            }
            let Some(loss) = program.loss(&e.loss.name) else {
                if !loss_at.contains_key(&e.loss.name) {
                    let mut d = Diagnostic::error(
                        format!("unknown loss `{}`", e.loss.name),
                        e.loss.span,
                        "no loss of this name",
                    );
                    if let Some(c) = closest(&e.loss.name, loss_at.keys().map(String::as_str)) {
                        d = d.with_note(format!("did you mean `{c}`?"));
                    }
                    diagnostics.push((fi, d));
                }
                continue;
            };
            let mut settings = Vec::new();
            for (key, value) in &e.settings {
                let Some(p) = loss.params.iter().find(|p| p.name == key.name) else {
                    let mut d = Diagnostic::error(
                        format!("loss `{}` has no param `{}`", loss.name, key.name),
                        key.span,
                        "unknown param",
                    );
                    if let Some(c) = closest(&key.name, loss.params.iter().map(|p| p.name.as_str()))
                    {
                        d = d.with_note(format!("did you mean `{c}`?"));
                    }
                    diagnostics.push((fi, d));
                    continue;
                };
                let dims = |n: &str| loss.dims.iter().position(|d| d.name == n);
                match lower::lower_value(value, &p.kind, &dims) {
                    Ok(v) => settings.push((key.name.clone(), v)),
                    Err(d) => diagnostics.push((fi, d)),
                }
            }
            terms.push(FactoryTerm {
                loss: loss.name.clone(),
                settings,
                annealed: e.annealed,
            });
        }
        program.factories.push(Factory {
            name: f.name.name.clone(),
            doc: f.doc.clone(),
            terms,
        });
    }
    Checked {
        program,
        diagnostics,
    }
}
