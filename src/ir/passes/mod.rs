//! IR passes, each with one job, run in a fixed order by [`run_all`].

pub mod cse;
pub mod dce;
pub mod fold;
pub mod ranges;

use crate::diagnostics::Diagnostic;
use crate::ir::LossIr;

/// Constant folding, common-subexpression elimination, dead-node removal, then range
/// inference (which reports what it cannot infer).
pub fn run_all(ir: &mut LossIr) -> Vec<Diagnostic> {
    fold::fold_constants(ir);
    cse::eliminate_common_subexpressions(ir);
    dce::remove_dead_nodes(ir);
    ranges::infer_ranges(ir)
}
