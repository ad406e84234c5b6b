//! Running losses on data: reading arrays ([`data`]; `npy` reads `.npy` headers),
//! choosing what a command runs ([`select`]), and evaluating a factory on a back end with
//! its weights, anneal factors and logs ([`run`]), with the gradients of its total when
//! asked ([`grad`]), keeping a factory's kernel and plans between runs when the caller
//! runs it again and again ([`cache`]). The entry points are [`run::run`] and
//! [`run::run_cached`]; every failure is a [`RunError`].

pub mod cache;
pub mod data;
mod error;
pub mod grad;
mod npy;
pub mod run;
pub mod select;

pub use cache::RunCache;
pub use error::RunError;
pub use run::{Backend, RunOptions, RunResult, run, run_cached};
