//! The typed ids of a loss's lists: an index variable, an input, a param and a
//! `remove_nans` stage are each named by their own id type, so that an input's position
//! can never index the params, nor a mask's the index variables. Lists keyed by them are
//! [`TiVec`]s (`TiVec<IndexId, IndexVar>`), indexed only by their own id.
//!
//! `define_id!` makes the same kind of id for the later layers' own lists (the
//! parameter block's slots).
//!
//! An id serializes and displays as its plain number: the manifest, kernels (`i3`) and
//! messages show positions, never type names.

pub use typed_index_collections::{TiSlice, TiVec};

/// Defines an id type: a position in one kind of list, convertible to and from `usize`
/// (as [`TiVec`] needs) and printed as its number.
macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(usize);

        impl $name {
            /// The id at position `i` of its list.
            pub const fn new(i: usize) -> $name {
                $name(i)
            }

            /// Its position in its list.
            pub const fn index(self) -> usize {
                self.0
            }
        }

        impl From<usize> for $name {
            fn from(i: usize) -> $name {
                $name(i)
            }
        }

        impl From<$name> for usize {
            fn from(id: $name) -> usize {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
    };
}
pub(crate) use define_id;

define_id! {
    /// An index variable of a loss ([`crate::ir::LossIr::indices`]).
    IndexId
}

define_id! {
    /// A declared input of a loss ([`crate::ir::LossIr::inputs`]).
    InputId
}

define_id! {
    /// A declared param of a loss ([`crate::ir::LossIr::params`]).
    ParamId
}

define_id! {
    /// A `remove_nans` stage of a loss ([`crate::ir::LossIr::masks`]).
    MaskId
}
