//! Crash safety of the restore tools (PERSISTENT-DATA.md §9, §11 T4): a device
//! that fails once, or stops for good, at the N-th write or flush, for every N of
//! a small restore, onto a blank device and over an existing valid image.
//!
//! Afterwards the device either checks clean and dumps to the new content, or
//! carries no superblock any tool accepts. The only other outcome allowed is the
//! old image untouched, when the fault hit the invalidation of the old superblock
//! itself (nothing else has been written then). With "stop", the image a power
//! failure leaves is checked too: every write not covered by a flush is undone.
//! Every injected fault must be reported as an error.

use dmce::io::{BlockDevice, FaultDevice, FaultMode, MemDevice};
use dmce::{clone, era};

use crate::roundtrip::{clone_check_and_dump, era_check_and_dump, gen_clone_xml, EraGen};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Clone,
    Era,
}

fn restore(t: Target, xml: &str, dev: &dyn BlockDevice) -> Result<(), String> {
    match t {
        Target::Clone => clone::restore::restore(xml.as_bytes(), dev, None)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Target::Era => era::restore::restore(xml.as_bytes(), dev, None)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// The dump if the superblock is valid (then the check must be clean), `None`
/// when no valid superblock is there.
fn state(t: Target, dev: &dyn BlockDevice, what: &str) -> Option<String> {
    match t {
        Target::Clone => clone::superblock::read(dev)
            .ok()
            .map(|_| clone_check_and_dump(dev, what)),
        Target::Era => era::superblock::read_at(dev, 0)
            .ok()
            .map(|_| era_check_and_dump(dev, what)),
    }
}

fn xmls(t: Target) -> (String, String) {
    match t {
        Target::Clone => (
            gen_clone_xml(31, 64, 3000, true),
            gen_clone_xml(32, 128, 40_000, false),
        ),
        Target::Era => (
            EraGen::new(33, 300, 3, 2).xml(false),
            EraGen::new(34, 2000, 6, 3).xml(true),
        ),
    }
}

const BLOCKS: u64 = 128;

fn run(t: Target, over_old: bool) -> usize {
    let (old_xml, new_xml) = xmls(t);
    let base = MemDevice::new(BLOCKS);
    if over_old {
        restore(t, &old_xml, &base).unwrap();
    }
    let base_img = base.to_bytes();
    let old = state(t, &base, "old image");
    // The new content's dump: restore without faults.
    let probe = FaultDevice::counting(MemDevice::from_bytes(&base_img));
    restore(t, &new_xml, &probe).unwrap();
    let new = state(t, &probe, "fault-free restore").expect("valid after restore");
    let total = probe.ops();
    assert!(
        probe.flushes() >= 3,
        "invalidate, pre-commit and commit flush"
    );
    let mut cases = 0;
    for n in 1..=total {
        for mode in [FaultMode::FailOnce, FaultMode::Stop] {
            let dev = FaultDevice::new(MemDevice::from_bytes(&base_img), n, mode);
            let r = restore(t, &new_xml, &dev);
            let what =
                format!("{t:?} over_old={over_old} fault {mode:?} at operation {n} of {total}");
            assert!(dev.fired(), "{what}: fault did not fire");
            assert!(r.is_err(), "{what}: the fault was not reported");
            let mut images = vec![("as left", MemDevice::from_bytes(&dev.inner().to_bytes()))];
            if mode == FaultMode::Stop {
                dev.lose_unflushed().unwrap();
                images.push(("after losing the write cache", dev.into_inner()));
            }
            for (which, img) in images {
                let what = format!("{what}, {which}");
                match state(t, &img, &what) {
                    None => {}
                    Some(d) if d == new => {}
                    Some(d) if Some(&d) == old.as_ref() && n <= 2 => {}
                    Some(_) => panic!("{what}: a valid superblock with unexpected content"),
                }
                cases += 1;
            }
        }
    }
    cases
}

#[test]
fn clone_restore_survives_a_fault_at_every_write_and_flush() {
    let n = run(Target::Clone, false) + run(Target::Clone, true);
    eprintln!("{n} crash images checked");
    assert!(n > 20, "{n} cases");
}

#[test]
fn era_restore_survives_a_fault_at_every_write_and_flush() {
    let n = run(Target::Era, false) + run(Target::Era, true);
    eprintln!("{n} crash images checked");
    assert!(n > 20, "{n} cases");
}

/// A later transaction on committed metadata (PERSISTENT-DATA.md §11 T1, T4):
/// digest the oldest writeset into the era array, archive a new one, with early
/// write-back of dirty blocks. A fault at any write or flush, with or without the
/// loss of the write cache, leaves the old state or the new one, both clean: the
/// copy-on-write path never touches a block of the committed state.
fn era_update(dev: &dyn BlockDevice) -> Result<(), String> {
    use dmce::era::superblock::{EraSuperblock, WritesetDisk};
    use dmce::pdata::array_write::Array;
    use dmce::pdata::bitset_write::Bitset;
    use dmce::pdata::btree::ops::{self, RefValues};
    use dmce::pdata::tm::TransactionManager;
    let e = |e: dmce::pdata::tm::TmError| e.to_string();
    let (sb, _) = era::superblock::read_at(dev, 0).map_err(|e| e.to_string())?;
    let mut tm = TransactionManager::open(dev, &sb.sm_root).map_err(e)?;
    tm.set_max_dirty(16);
    let n = sb.nr_blocks as u64;
    let entries = ops::entries(&mut tm, sb.writeset_tree_root).map_err(e)?;
    let (lo, v) = entries.first().cloned().ok_or("no writeset")?;
    let w = WritesetDisk::decode(&v);
    let old = Bitset::open(w.root, w.nr_bits as u64);
    let mut array = Array {
        root: sb.era_array_root,
        value_size: 4,
        nr_entries: n,
    };
    for b in 0..n.min(w.nr_bits as u64) {
        if old.test(&mut tm, b).map_err(e)? {
            array
                .set(&mut tm, b, &(lo as u32).to_le_bytes())
                .map_err(e)?;
        }
    }
    let mut tree = ops::remove(
        &mut tm,
        sb.writeset_tree_root,
        12,
        lo,
        &RefValues::BitsetRoots,
    )
    .map_err(e)?;
    let mut ws = Bitset::new(&mut tm, n).map_err(e)?;
    for b in (0..n).step_by(7) {
        ws.assign(&mut tm, b, true).map_err(e)?;
    }
    let mut v = [0u8; 12];
    WritesetDisk {
        nr_bits: n as u32,
        root: ws.root(),
    }
    .encode(&mut v);
    let era = sb.current_era as u64 + 1;
    tree = ops::insert(&mut tm, tree, 12, era, &v, &RefValues::BitsetRoots).map_err(e)?;
    let sm_root = tm.pre_commit().map_err(e)?;
    let new = EraSuperblock {
        sm_root,
        current_era: era as u32,
        writeset_tree_root: tree,
        era_array_root: array.root,
        ..sb
    };
    tm.commit(&new.encode(0)).map_err(e)
}

#[test]
fn era_updates_leave_the_old_or_the_new_state_after_a_fault_anywhere() {
    let base = MemDevice::new(BLOCKS);
    restore(
        Target::Era,
        &EraGen::new(35, 30_000, 4, 3).xml(false),
        &base,
    )
    .unwrap();
    let base_img = base.to_bytes();
    let old = state(Target::Era, &base, "before the update").unwrap();
    let probe = FaultDevice::counting(MemDevice::from_bytes(&base_img));
    era_update(&probe).unwrap();
    let new = state(Target::Era, &probe, "after the update").unwrap();
    assert_ne!(old, new);
    let total = probe.ops();
    let mut cases = 0;
    for n in 1..=total {
        for mode in [FaultMode::FailOnce, FaultMode::Stop] {
            let dev = FaultDevice::new(MemDevice::from_bytes(&base_img), n, mode);
            let what = format!("update, fault {mode:?} at operation {n} of {total}");
            assert!(
                era_update(&dev).is_err(),
                "{what}: the fault was not reported"
            );
            let mut images = vec![("as left", MemDevice::from_bytes(&dev.inner().to_bytes()))];
            if mode == FaultMode::Stop {
                dev.lose_unflushed().unwrap();
                images.push(("after losing the write cache", dev.into_inner()));
            }
            for (which, img) in images {
                let what = format!("{what}, {which}");
                let got = state(Target::Era, &img, &what)
                    .unwrap_or_else(|| panic!("{what}: no valid superblock"));
                assert!(
                    got == old || got == new,
                    "{what}: neither the old nor the new state"
                );
                cases += 1;
            }
        }
    }
    eprintln!("{cases} crash images of an update checked ({total} operations)");
    assert!(total > 20, "{total} operations");
}
