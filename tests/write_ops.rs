//! The copy-on-write operations under the transaction manager, against a model:
//! random inserts and removes over many transactions, with whole trees shared by
//! "snapshots" (an extra reference to a root) and deleted again. After every
//! commit each tree holds exactly its model's entries, every node is well filled,
//! and the space map's counts equal the references found by walking (no leak, no
//! under-count): what the checkers demand of the kernel's own metadata.

use std::collections::BTreeMap;

use dmce::io::{BlockDevice, MemDevice};
use dmce::pdata::array_write::Array;
use dmce::pdata::btree::build::BTreeBuilder;
use dmce::pdata::btree::ops::{self, RefValues};
use dmce::pdata::refs::Role;
use dmce::pdata::space_map::check_space_map;
use dmce::pdata::space_map::SmRoot;
use dmce::pdata::tm::{TransactionManager, WriteOrder};
use dmce::pdata::walk::{TreeDesc, Walker};
use dmce::report::{Part, Place};

use crate::roundtrip::Rng;

fn verify(dev: &MemDevice, sm: &SmRoot, roots: &[u64], arrays: &[(u64, u64)], what: &str) {
    let mut w = Walker::new(dev, sm.nr_blocks, true);
    w.allow_sharing = true;
    w.reach(0, Role::Superblock, &Part::Superblock.into(), None);
    for (i, &r) in roots.iter().enumerate() {
        let desc = TreeDesc {
            structure: Place::new(Part::WritesetTree, format!("tree {i}")),
            value_size: 4,
            from: Some(0),
        };
        w.walk_btree(r, &desc, &mut |_, _, _, _| {});
    }
    for (i, &(r, n)) in arrays.iter().enumerate() {
        let desc = dmce::pdata::array::ArrayDesc {
            structure: Place::new(Part::EraArray, format!("array {i}")),
            value_size: 4,
            nr_entries: n,
            from: Some(0),
        };
        w.check_array(r, &desc, &|_, _| Vec::new());
    }
    check_space_map(&mut w, sm, dev.nr_blocks());
    assert!(
        w.report.findings().is_empty(),
        "{what}: {:#?}",
        w.report.findings()
    );
}

#[test]
fn btree_updates_match_a_model_across_transactions_and_shared_roots() {
    for seed in [71u64, 72, 73] {
        let dev = MemDevice::new(2048);
        let mut tm = TransactionManager::format(&dev).unwrap();
        tm.set_max_dirty(32);
        tm.set_write_order(WriteOrder::Shuffled(seed));
        let mut rng = Rng::new(seed);
        let mut root = BTreeBuilder::new(4).finish(&mut tm).unwrap().root;
        let mut model: BTreeMap<u64, u32> = BTreeMap::new();
        let mut snaps: Vec<(u64, BTreeMap<u64, u32>)> = Vec::new();
        let keys = if seed == 73 { 200 } else { 6000 };
        for txn in 0..10 {
            for _ in 0..1500 {
                let k = rng.below(keys);
                if rng.below(3) == 0 {
                    let r = ops::remove_if_present(&mut tm, root, k, &RefValues::Plain).unwrap();
                    assert_eq!(r.is_some(), model.remove(&k).is_some());
                    root = r.unwrap_or(root);
                } else {
                    let v = rng.next() as u32;
                    root = ops::insert(&mut tm, root, 4, k, &v.to_le_bytes(), &RefValues::Plain)
                        .unwrap();
                    model.insert(k, v);
                }
            }
            if txn % 3 == 0 {
                tm.inc(root).unwrap();
                snaps.push((root, model.clone()));
            }
            if txn % 4 == 3 && snaps.len() > 1 {
                let (r, _) = snaps.remove(0);
                ops::delete(&mut tm, r, 4, &RefValues::Plain).unwrap();
            }
            let sm = tm.pre_commit().unwrap();
            tm.commit(&[0u8; 4096]).unwrap();
            let what = format!("seed {seed} transaction {txn}");
            let got: Vec<(u64, u32)> = ops::entries(&mut tm, root)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, u32::from_le_bytes(v.try_into().unwrap())))
                .collect();
            assert_eq!(got, model.clone().into_iter().collect::<Vec<_>>(), "{what}");
            for (r, m) in &snaps {
                assert_eq!(ops::entries(&mut tm, *r).unwrap().len(), m.len(), "{what}");
            }
            let mut roots = vec![root];
            roots.extend(snaps.iter().map(|s| s.0));
            verify(&dev, &sm, &roots, &[], &what);
        }
        // Delete everything: only the superblock and the space map remain.
        for (r, _) in snaps.drain(..) {
            ops::delete(&mut tm, r, 4, &RefValues::Plain).unwrap();
        }
        ops::delete(&mut tm, root, 4, &RefValues::Plain).unwrap();
        let sm = tm.pre_commit().unwrap();
        tm.commit(&[0u8; 4096]).unwrap();
        verify(
            &dev,
            &sm,
            &[],
            &[],
            &format!("seed {seed} after deleting all"),
        );
    }
}

#[test]
fn array_resize_and_set_match_a_model_with_shared_arrays() {
    let seed = 81;
    let dev = MemDevice::new(1024);
    let mut tm = TransactionManager::format(&dev).unwrap();
    tm.set_max_dirty(16);
    let mut rng = Rng::new(seed);
    let mut a = Array::empty(&mut tm, 4).unwrap();
    let mut model: Vec<u32> = Vec::new();
    let mut snap: Option<(Array, Vec<u32>)> = None;
    for txn in 0..12 {
        let n = rng.below(5000);
        let fill = rng.next() as u32;
        a.resize(&mut tm, n, &fill.to_le_bytes()).unwrap();
        model.resize(n as usize, fill);
        for _ in 0..200 {
            if n == 0 {
                break;
            }
            let i = rng.below(n);
            let v = rng.next() as u32;
            a.set(&mut tm, i, &v.to_le_bytes()).unwrap();
            model[i as usize] = v;
        }
        if txn % 4 == 1 {
            if let Some((s, _)) = snap.take() {
                s.delete(&mut tm).unwrap();
            }
            tm.inc(a.root).unwrap();
            snap = Some((a, model.clone()));
        }
        let sm = tm.pre_commit().unwrap();
        tm.commit(&[0u8; 4096]).unwrap();
        let what = format!("seed {seed} transaction {txn} ({n} entries)");
        for (arr, m) in std::iter::once((&a, &model)).chain(snap.iter().map(|(s, m)| (s, m))) {
            for i in (0..arr.nr_entries).step_by(97) {
                let v = arr.get(&mut tm, i).unwrap();
                assert_eq!(
                    u32::from_le_bytes(v.try_into().unwrap()),
                    m[i as usize],
                    "{what}"
                );
            }
        }
        let mut arrays = vec![(a.root, a.nr_entries)];
        arrays.extend(snap.iter().map(|(s, _)| (s.root, s.nr_entries)));
        verify(&dev, &sm, &[], &arrays, &what);
    }
}

/// Damage met by the copy-on-write operations (a child pointer looping back to
/// the root, or pointing past the device) is an error, never a panic or a hang.
#[test]
fn operations_on_damaged_trees_fail_cleanly() {
    use dmce::pdata::checksum::{stamp, BlockKind};
    for bad_child in [None, Some(100_000u64)] {
        let dev = MemDevice::new(256);
        let mut tm = TransactionManager::format(&dev).unwrap();
        let mut b = BTreeBuilder::new(4);
        for k in 0..1000u64 {
            b.push(&mut tm, k, &(k as u32).to_le_bytes()).unwrap();
        }
        let root = b.finish(&mut tm).unwrap().root;
        let sm = tm.pre_commit().unwrap();
        tm.commit(&[0u8; 4096]).unwrap();
        let mut blk = [0u8; 4096];
        dev.read(root, &mut blk).unwrap();
        let target = bad_child.unwrap_or(root);
        // Value 1 of the (internal) root: after 32 header bytes and 252 keys.
        let o = 32 + 8 * 252 + 8;
        blk[o..o + 8].copy_from_slice(&target.to_le_bytes());
        stamp(&mut blk, root, BlockKind::BtreeNode);
        dev.write(root, &blk).unwrap();
        let img = dev.to_bytes();
        let open = || TransactionManager::open(MemDevice::from_bytes(&img), &sm).unwrap();
        let what = format!("child {target}");
        let p = RefValues::Plain;
        assert!(ops::lookup(&mut open(), root, 500).is_err(), "{what}");
        assert!(ops::entries(&mut open(), root).is_err(), "{what}");
        assert!(
            ops::insert(&mut open(), root, 4, 500, &[1; 4], &p).is_err(),
            "{what}"
        );
        assert!(
            ops::remove_if_present(&mut open(), root, 500, &p).is_err(),
            "{what}"
        );
        assert!(ops::delete(&mut open(), root, 4, &p).is_err(), "{what}");
    }
}

/// HAZARDS.md H-E4 (dm era 64f2d15afe7b): re-inserting a writeset-tree key with
/// an identical 12-byte value must not release the bitset the value still
/// references (the kernel compared 16 bytes and could call `dec` on it). The
/// count of the bitset's root stays 1 and the space map checks clean; a
/// different value does release the old bitset.
#[test]
fn writeset_tree_overwrite_with_the_same_value_keeps_its_bitset() {
    use dmce::pdata::bitset_write::Bitset;
    let dev = MemDevice::new(256);
    let mut tm = TransactionManager::format(&dev).unwrap();
    let mut root = BTreeBuilder::new(12).finish(&mut tm).unwrap().root;
    let ws = |nr_bits: u32, root: u64| {
        let mut v = nr_bits.to_le_bytes().to_vec();
        v.extend_from_slice(&root.to_le_bytes());
        v
    };
    let a = Bitset::new(&mut tm, 100).unwrap().root();
    root = ops::insert(&mut tm, root, 12, 7, &ws(100, a), &RefValues::BitsetRoots).unwrap();
    assert_eq!(tm.count(a), 1);
    // The same era archived again with the same writeset.
    tm.inc(a).unwrap();
    root = ops::insert(&mut tm, root, 12, 7, &ws(100, a), &RefValues::BitsetRoots).unwrap();
    // The new value's reference is the old one's: the extra count taken for
    // the new value is the only one dropped (by the caller, as the kernel's
    // __dm_bless_for_disk hands the reference to the tree).
    assert_eq!(
        tm.count(a),
        2,
        "identical value: the old bitset must not be released"
    );
    tm.dec(a).unwrap();
    let sm = tm.pre_commit().unwrap();
    tm.commit(&[0u8; 4096]).unwrap();
    verify_writesets(&dev, &sm, root, &[a], "same value");
    // A different writeset for the key releases the old one.
    let b = Bitset::new(&mut tm, 100).unwrap().root();
    root = ops::insert(&mut tm, root, 12, 7, &ws(100, b), &RefValues::BitsetRoots).unwrap();
    assert_eq!(tm.count(a), 0, "the replaced bitset is released");
    assert_eq!(tm.count(b), 1);
    let sm = tm.pre_commit().unwrap();
    tm.commit(&[0u8; 4096]).unwrap();
    verify_writesets(&dev, &sm, root, &[b], "different value");
}

/// Checks a writeset tree at `root` whose values reference the bitsets
/// `bitsets` (100 bits each) and the space map's counts against the references.
fn verify_writesets(dev: &MemDevice, sm: &SmRoot, root: u64, bitsets: &[u64], what: &str) {
    let mut w = Walker::new(dev, sm.nr_blocks, true);
    w.reach(0, Role::Superblock, &Part::Superblock.into(), None);
    let desc = TreeDesc {
        structure: Place::new(Part::WritesetTree, "writesets".to_string()),
        value_size: 12,
        from: Some(0),
    };
    w.walk_btree(root, &desc, &mut |_, _, _, _| {});
    for (i, &r) in bitsets.iter().enumerate() {
        let desc = dmce::pdata::array::ArrayDesc {
            structure: Place::new(Part::WritesetTree, format!("bitset {i}")),
            value_size: 8,
            nr_entries: 2,
            from: Some(0),
        };
        w.check_array(r, &desc, &|_, _| Vec::new());
    }
    check_space_map(&mut w, sm, dev.nr_blocks());
    assert!(
        w.report.findings().is_empty(),
        "{what}: {:#?}",
        w.report.findings()
    );
}
