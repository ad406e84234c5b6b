//! Semantic analysis: name resolution and typing ([`lower`]), then the IR passes, and the
//! checks that span files (duplicate loss names, and [`factories`]).

mod factories;
pub mod lower;

use crate::diagnostics::{Diagnostic, Source};
use crate::ir::{Program, passes};
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
    let mut loss_at = factories::Defined::new();
    let mut factory_defs = Vec::new();
    for (fi, src) in sources.iter().enumerate() {
        let (ast, diags) = syntax::parse(&src.text);
        diagnostics.extend(diags.into_iter().map(|d| (fi, d)));
        for def in &ast.losses {
            if let Some(first) = loss_at.get(&def.name.name) {
                let what = format!("loss `{}`", def.name.name);
                let d = factories::defined_twice(what, def.name.span, fi, *first, sources);
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
            once_each(&mut diags);
            diagnostics.extend(diags.into_iter().map(|d| (fi, d)));
        }
        factory_defs.extend(ast.factories.into_iter().map(|f| (fi, f)));
    }
    factories::check_factories(
        sources,
        factory_defs,
        &loss_at,
        &mut program,
        &mut diagnostics,
    );
    Checked {
        program,
        diagnostics,
    }
}

/// Keeps the first diagnostic of each message at each place. A let's body is lowered
/// again at each use (with that use's indices), so a mistake in it would otherwise be
/// reported once per use, by the lowering and by the passes alike.
fn once_each(diags: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert((d.primary.0, d.message.clone())));
}
