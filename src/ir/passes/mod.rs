//! IR passes, each with one job, run in a fixed order by [`run_all`].

pub mod cse;
pub mod dce;
pub mod depth;
pub mod fold;
pub mod ranges;

use crate::diagnostics::Diagnostic;
use crate::ir::LossIr;
use crate::ir::verify::{Stage, verify};

/// Whether the verifier runs after lowering and after every pass (debug builds, and so
/// every test), or only once after the last.
const VERIFY_EVERY_PASS: bool = cfg!(debug_assertions);

/// The depth check (before anything that recurses over the graph), then constant
/// folding, common-subexpression elimination, dead-node removal and range inference
/// (which reports what it cannot infer). The verifier checks the result, and in debug
/// builds the lowered graph and every pass's output too: a violation is reported as an
/// internal compiler error instead of reaching a back end.
pub fn run_all(ir: &mut LossIr) -> Vec<Diagnostic> {
    if let Some(d) = depth::check_depth(ir) {
        return vec![d];
    }
    passes_verified(ir).unwrap_or_else(|ice| vec![ice])
}

/// The passes after the depth check; `Err` holds an internal compiler error.
fn passes_verified(ir: &mut LossIr) -> Result<Vec<Diagnostic>, Diagnostic> {
    verified(ir, Stage::Lowered, VERIFY_EVERY_PASS)?;
    let rewrites: [fn(&mut LossIr); 3] = [
        fold::fold_constants,
        cse::eliminate_common_subexpressions,
        dce::remove_dead_nodes,
    ];
    for pass in rewrites {
        pass(ir);
        verified(ir, Stage::Lowered, VERIFY_EVERY_PASS)?;
    }
    let diags = ranges::infer_ranges(ir);
    if !diags.iter().any(|d| d.is_error) {
        verified(ir, Stage::Ranged, true)?;
    }
    Ok(diags)
}

/// [`verify`] as a diagnostic, when `run`.
fn verified(ir: &LossIr, stage: Stage, run: bool) -> Result<(), Diagnostic> {
    if !run {
        return Ok(());
    }
    verify(ir, stage).map_err(|e| e.to_diagnostic())
}
