//! The integration tests: one binary, one module per concern.

/// The boot assembler (boot/dmce-assemble) on configurations.
mod boot_config;
/// Command-line behaviour: dispatch, options, error paths.
mod cli;
/// Crash safety of the restore tools: a fault at every write and flush.
mod crash;
/// Damage: every live block zeroed, flipped, or made structurally wrong.
mod damage;
/// Fast paths (word runs, answers from the superblock) agree with the slow ones.
mod fast_paths;
/// The fuzz targets' seeds, committed corpora and regression cases, replayed.
mod fuzz_corpus;
/// Golden outputs on kernel-made images.
mod golden;
/// Hostile input: random mutations with fixed-up checksums never panic.
mod hostile;
/// `--format human`: the dumps' summaries give each fixture's figures.
mod human;
/// Shell completions, and make install / uninstall.
mod install;
/// `--format json`: every tool's JSON agrees with its XML or text.
mod json;
/// Byte-exact replays of kernel operation sequences against kernel-made images.
mod kernel_exact;
/// Every fixture the kernel lab made: checks clean, dumps to its ground truth.
mod kernel_fixtures;
/// The restore and repair tools killed with SIGKILL part-way.
mod kill;
/// Live metadata (a device held by a table) is refused.
mod live;
/// dm-log-writes logs: the verifier catches the bugs the models re-introduce.
mod logwrites;
/// Warnings and the text of errors.
mod messages;
/// clone_metadata_size and era_metadata_size: the figure the restores require.
mod metadata_size;
/// Output failures: exit status kept, no panic, no file lost; the version line.
mod output;
/// Metadata packs: round trips, hostile packs, thin-provisioning-tools 1.3.3.
mod pack;
/// What thin-provisioning-tools' own era tests expect; files replaced when complete.
mod peers;
/// Repair of healthy and damaged images.
mod repair;
/// The reference models replay the kernel lab's traces and agree with its images.
mod replay;
/// clone_restore and era_restore on the command line, and with Debian's era tools.
mod restore_cli;
/// Write path: XML → restore → check → dump round trips, copy-on-write updates.
mod roundtrip;
mod util;
/// Copy-on-write B-tree and array operations against a model, with shared trees.
mod write_ops;
