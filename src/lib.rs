//! Tools for the on-disk metadata of the Linux device-mapper targets dm-clone and
//! dm-era, exact to the kernel's format.
//!
//! Layers, lowest first:
//!
//! * [`io`]: block devices ([`io::BlockDevice`]): files, block devices, memory.
//! * [`pdata`]: the persistent-data library (PERSISTENT-DATA.md): checksums,
//!   B-trees, dm-array, dm-bitset, the metadata space map; checked walkers that turn
//!   damage into [`report::Finding`]s. The write side: a transaction manager
//!   ([`pdata::tm`]) with copy-on-write shadowing, reference counting and the
//!   kernel's two-phase commit, over which B-trees, arrays and bitsets are built in
//!   bulk or updated in place.
//! * [`restore`]: the safe start and the size check both restore tools share;
//!   [`sizing`]: the metadata device size a geometry needs.
//! * [`superblock`]: the validation order both targets' superblocks share.
//! * [`clone`] and [`era`]: each target's superblock, checker and dumper
//!   (CLONE.md, ERA.md).
//! * [`pack`]: metadata packs for bug reports, in thin-provisioning-tools'
//!   `thin_metadata_pack` format.
//! * [`trace`]: the `dmtrace` event-trace format (REPLAY.md §2.2): parser and
//!   canonical printer.
//! * [`xml`], [`json`], [`format`]: the writers of the tools' outputs and the
//!   choice of format.
//! * [`commands`]: the command-line tools, one multi-call binary.
//! * [`fuzz_support`]: the fuzz targets' bodies, shared by `fuzz/` and the corpus
//!   replay of the test suite.

pub mod block_alloc;
pub mod clone;
pub mod commands;
pub mod crash;
pub mod era;
pub mod format;
pub mod fuzz_support;
pub mod gen;
pub mod io;
pub mod json;
pub mod logwrites;
pub mod model;
pub mod pack;
pub mod pdata;
pub mod repair;
pub mod report;
pub mod restore;
pub mod sim;
pub mod sizing;
pub mod superblock;
pub mod trace;
pub mod verify;
pub mod xml;
pub mod xml_reader;
