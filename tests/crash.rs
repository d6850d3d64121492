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
