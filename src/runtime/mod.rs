//! Running losses on data: reading arrays ([`data`]; `npy` reads `.npy` headers),
//! choosing what a command runs ([`select`]), and evaluating a factory on a back end with
//! its weights, anneal factors and logs ([`run`]), with the gradients of its total when
//! asked ([`grad`]). The one entry point is [`run::run`]; every failure is a
//! [`RunError`].

pub mod data;
mod error;
pub mod grad;
mod npy;
pub mod run;
pub mod select;

pub use error::RunError;
pub use run::{Backend, RunOptions, RunResult, run};
