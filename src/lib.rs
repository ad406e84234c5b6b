//! lossc: a compiler for training losses.
//!
//! The layers, each using only those listed before it (see `docs/architecture.md`):
//!
//! - [`diagnostics`]: source files, spans and located diagnostics, rendered with carets.
//! - [`ice`]: internal compiler errors, lossc's own bugs found by its own checks.
//! - [`syntax`]: the pest grammar's parse tree turned into an AST with spans.
//! - [`ir`]: the graph IR in index notation, its verifier and its passes.
//! - [`sema`]: name resolution and typing, lowering the AST to the IR.
//! - [`ad`]: reverse-mode differentiation, a loss's IR to its adjoint IR.
//! - [`bind`]: arrays and values bound to a loss's declarations, the data both back ends read.
//! - [`eval`]: the CPU reference evaluator of a bound loss.
//! - [`codegen`]: the fused WGSL kernel of a factory, its parameter block and manifest.
//! - [`gpu`]: the wgpu device, the layout of a dispatch, and the dispatch itself.
//! - [`runtime`]: data files, which back end runs a factory, and its total and logs.
//! - [`integrations`]: lossc inside other frameworks' training loops (Burn, feature `burn`).

pub mod ad;
pub mod bind;
pub mod codegen;
pub mod diagnostics;
pub mod eval;
pub mod gpu;
pub mod ice;
pub mod integrations;
pub mod ir;
pub mod runtime;
pub mod sema;
pub mod syntax;
