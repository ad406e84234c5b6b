//! lossc inside other frameworks' training loops: each integration turns a compiled
//! factory into an op of the framework, on the framework's tensors, behind a cargo
//! feature so that the plain build needs none of them.

#[cfg(feature = "burn")]
pub mod burn;
