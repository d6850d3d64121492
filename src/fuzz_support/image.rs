//! The whole-image targets: every read tool and both repairs on one device.

use crate::clone;
use crate::clone::repair::LostRegions;
use crate::era;
use crate::era::invalidate::{invalidate, InvalidateOptions};
use crate::era::DumpOptions;
use crate::io::{BlockDevice, MemDevice};

use super::{raw_device, sparse_device};

/// The raw format: mutations reach the checksums.
pub fn raw(data: &[u8]) {
    exercise(&raw_device(data));
}

/// The sparse format: every record re-stamped, mutations reach the decoders.
pub fn stamped(data: &[u8]) {
    if let Some((dev, _)) = sparse_device(data) {
        exercise(&dev);
    }
}

fn clone_dump(dev: &dyn BlockDevice, repair: bool) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    clone::dump(dev, &mut v, repair).map_err(|e| e.to_string())?;
    Ok(v)
}

fn era_dump(dev: &dyn BlockDevice, opts: DumpOptions) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    era::dump(dev, &mut v, opts).map_err(|e| e.to_string())?;
    Ok(v)
}

/// Runs the checkers, dumps in every mode, era_invalidate and both repairs on
/// `dev`. Metadata that checks without errors must dump; a repair that succeeds
/// must leave metadata that checks without errors and, from healthy metadata,
/// dumps as the input does.
pub fn exercise(dev: &MemDevice) {
    exercise_clone(dev);
    exercise_era(dev);
}

fn exercise_clone(dev: &MemDevice) {
    let checked = clone::check(dev, &Default::default());
    let clean = checked.superblock.is_some() && !checked.report.has_errors();
    let dump = clone_dump(dev, false);
    if clean {
        if let Err(e) = &dump {
            panic!("clone metadata checks clean but does not dump: {e}");
        }
    }
    let _ = clone_dump(dev, true);
    for policy in [LostRegions::Refuse, LostRegions::AssumeHydrated] {
        let out = MemDevice::new(dev.nr_blocks());
        if clone::repair::repair(dev, &out, policy).is_err() {
            continue;
        }
        let c = clone::check(&out, &Default::default());
        if let Some(f) = c.report.first_error() {
            panic!("repaired clone metadata does not check: {f}");
        }
        if let (true, Ok(before)) = (clean, &dump) {
            let after = clone_dump(&out, false).expect("repaired metadata dumps");
            assert!(after == *before, "repair changed healthy clone metadata");
        }
    }
}

/// Era metadata claiming more origin blocks than this is only checked. Dumps,
/// era_invalidate and repair do the same work for every block, and their output
/// grows with `nr_blocks` (some 110 bytes of XML per block in each of eight
/// dumps): a million blocks take a minute in the fuzzer's instrumented build,
/// against a second in the tools. The seeds stay below it (the kernel fixtures'
/// image seeds have 16384 blocks at most).
pub const MAX_ERA_EXERCISE_BLOCKS: u32 = 1 << 17;

fn exercise_era(dev: &MemDevice) {
    let claims = |loc: u64| era::superblock::read_at(dev, loc).map(|(sb, _)| sb);
    if let Ok(sb) = claims(0) {
        let snap = claims(sb.metadata_snap).map_or(0, |s| s.nr_blocks);
        if sb.nr_blocks.max(snap) > MAX_ERA_EXERCISE_BLOCKS {
            let _ = era::check(dev, &Default::default());
            return;
        }
    }
    let mut clean = [false; 2];
    for (i, metadata_snapshot) in [false, true].into_iter().enumerate() {
        let opts = era::CheckOptions {
            metadata_snapshot,
            ..Default::default()
        };
        let c = era::check(dev, &opts);
        clean[i] = c.superblock.is_some() && !c.report.has_errors();
    }
    let mut plain = None;
    for repair in [false, true] {
        for logical in [false, true] {
            for metadata_snapshot in [false, true] {
                let opts = DumpOptions {
                    logical,
                    metadata_snapshot,
                    repair,
                };
                let r = era_dump(dev, opts);
                if clean[metadata_snapshot as usize] {
                    if let Err(e) = &r {
                        panic!("era metadata checks clean but does not dump ({opts:?}): {e}");
                    }
                }
                if !repair && !logical && !metadata_snapshot {
                    plain = r.ok();
                }
            }
        }
    }
    for metadata_snapshot in [false, true] {
        for written_since in [0, 1, 3, u32::MAX] {
            let r = invalidate(
                dev,
                InvalidateOptions {
                    written_since,
                    metadata_snapshot,
                },
            );
            if clean[metadata_snapshot as usize] {
                if let Err(e) = &r {
                    panic!("era metadata checks clean but era_invalidate fails: {e}");
                }
            }
        }
    }
    let out = MemDevice::new(dev.nr_blocks());
    if era::repair::repair(dev, &out).is_ok() {
        let c = era::check(&out, &Default::default());
        if let Some(f) = c.report.first_error() {
            panic!("repaired era metadata does not check: {f}");
        }
        if let (true, Some(before)) = (clean[0], &plain) {
            let after = era_dump(&out, DumpOptions::default()).expect("repaired metadata dumps");
            assert!(after == *before, "repair changed healthy era metadata");
        }
    }
}
