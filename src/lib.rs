//! lossc: a compiler for training losses.
//!
//! `.loss` text → [`syntax`] (pest parse tree → AST with spans) → [`sema`] (name
//! resolution, typing, index binding) → [`ir`] (a petgraph graph in index notation, with
//! its passes) → [`eval`] (the CPU reference evaluator), driven by [`runtime`] (binding
//! arrays to declarations, running a factory) and the `lossc` command line.

pub mod codegen;
pub mod diagnostics;
pub mod eval;
pub mod gpu;
pub mod ir;
pub mod runtime;
pub mod sema;
pub mod syntax;
