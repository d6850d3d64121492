//! B-tree nodes (PERSISTENT-DATA.md §4).

pub mod build;
pub mod grown;
pub(crate) mod node;
pub mod ops;

pub use node::{calc_max_entries, NodeHeader, INTERNAL_NODE, LEAF_NODE, NODE_HEADER_SIZE};
