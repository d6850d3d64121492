//! dm-clone metadata (CLONE.md): superblock, checker and dumper.

pub mod check;
pub mod dump;
pub mod dump_out;
pub mod repair;
pub mod restore;
pub mod superblock;
pub mod xml;

pub use check::{check, CheckOptions, CheckOutcome};
pub use dump::{dump, dump_as, CloneDumpNotes};
pub use superblock::CloneSuperblock;
