//! Running losses on data: reading arrays ([`data`]), binding them to declarations
//! ([`bind`]), and evaluating a factory with its weights, anneal factors and logs
//! ([`run`]).

pub mod bind;
pub mod data;
pub mod run;
