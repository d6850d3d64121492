//! dm-era metadata (ERA.md): superblock, checker and dumper.

pub mod check;
pub mod dump;
pub mod dump_out;
pub mod invalidate;
pub mod repair;
pub mod restore;
pub mod summary;
pub mod superblock;
pub mod writeset;
pub mod xml;

pub use check::{check, CheckOptions, CheckOutcome};
pub use dump::{dump, dump_as, DumpOptions};
pub use superblock::EraSuperblock;
