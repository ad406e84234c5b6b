//! The front end's syntax layer: the AST and the pest-based parser that builds it.

pub mod ast;
pub mod parser;

pub use parser::parse;
