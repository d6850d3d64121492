//! Round trips through the restore tools, in process on memory devices:
//! XML → restore → check (no finding at all) → dump → the same bytes.
//!
//! Generated metadata is seeded (the seed is in every failure message) and covers
//! the geometries that exercise the writers: a partial last region, several array
//! blocks, B-trees of more than one level, `<marked>` runs, and an era metadata
//! snapshot made with the copy-on-write operations. The kernel samples go
//! dump → restore → check → dump.

use dmce::clone;
use dmce::era;
use dmce::era::superblock::{EraSuperblock, WritesetDisk};
use dmce::io::{BlockDevice, MemDevice};
use dmce::pdata::array_write::Array;
use dmce::pdata::bitset_write::Bitset;
use dmce::pdata::btree::build::BTreeBuilder;
use dmce::pdata::btree::ops::{self, RefValues};
use dmce::pdata::checksum::BlockKind;
use dmce::pdata::tm::TransactionManager;

use crate::util::{assert_text_eq, load_zst};

/// SplitMix64: small, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A clone XML as clone_dump writes it: maximal sorted ranges.
pub fn gen_clone_xml(seed: u64, region_size: u64, nr_regions: u64, partial: bool) -> String {
    let mut rng = Rng::new(seed);
    let target = nr_regions * region_size - if partial { region_size / 2 + 1 } else { 0 };
    let mut s = format!(
        "<superblock uuid=\"\" region_size=\"{region_size}\" target_size=\"{target}\" nr_regions=\"{nr_regions}\">\n"
    );
    let mean = (nr_regions / 40).max(2);
    let mut r = rng.below(3);
    while r < nr_regions {
        let len = 1 + rng.below(mean);
        let e = (r + len).min(nr_regions);
        s += &format!("  <hydrated begin=\"{r}\" end=\"{e}\"/>\n");
        r = e + 1 + rng.below(mean);
    }
    s + "</superblock>\n"
}

/// Generated era metadata: writesets `lo..=current` (none when `lo > current`),
/// an era array obeying the digestion order (ERA.md §11 rule 12).
pub struct EraGen {
    pub nr_blocks: u64,
    pub current: u64,
    pub lo: u64,
    pub sets: Vec<Vec<bool>>,
    pub array: Vec<u64>,
}

impl EraGen {
    pub fn new(seed: u64, nr_blocks: u64, current: u64, nr_ws: u64) -> Self {
        let mut rng = Rng::new(seed);
        let lo = current + 1 - nr_ws.min(current + 1);
        let lo = if nr_ws == 0 { current + 1 } else { lo.max(1) };
        let sets: Vec<Vec<bool>> = (lo..=current)
            .map(|_| {
                let density = 1 + rng.below(8);
                (0..nr_blocks).map(|_| rng.below(16) < density).collect()
            })
            .collect();
        let array = (0..nr_blocks)
            .map(|b| {
                if sets.is_empty() {
                    rng.below(current + 1)
                } else if sets[0][b as usize] && rng.below(2) == 0 {
                    lo
                } else {
                    rng.below(lo)
                }
            })
            .collect();
        EraGen {
            nr_blocks,
            current,
            lo,
            sets,
            array,
        }
    }

    /// The XML in era_dump's format; with `marked`, writesets as `<marked>` runs.
    pub fn xml(&self, marked: bool) -> String {
        let mut s = format!(
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"{}\" current_era=\"{}\">\n",
            self.nr_blocks, self.current
        );
        for (k, set) in self.sets.iter().enumerate() {
            s += &format!(
                "  <writeset era=\"{}\" nr_bits=\"{}\">\n",
                self.lo + k as u64,
                self.nr_blocks
            );
            if marked {
                let mut b = 0;
                while b < set.len() {
                    if set[b] {
                        let e = (b..set.len()).find(|&i| !set[i]).unwrap_or(set.len());
                        s += &format!("    <marked block_begin=\"{b}\" len=\"{}\"/>\n", e - b);
                        b = e;
                    } else {
                        b += 1;
                    }
                }
            } else {
                for (b, v) in set.iter().enumerate() {
                    s += &format!("    <bit block=\"{b}\" value=\"{v}\"/>\n");
                }
            }
            s += "  </writeset>\n";
        }
        s += "  <era_array>\n";
        for (b, e) in self.array.iter().enumerate() {
            s += &format!("    <era block=\"{b}\" era=\"{e}\"/>\n");
        }
        s + "  </era_array>\n</superblock>\n"
    }
}

pub fn clone_restore(xml: &str, dev: &dyn BlockDevice) {
    clone::restore::restore(xml.as_bytes(), dev, None).unwrap_or_else(|e| panic!("restore: {e}"));
}

pub fn era_restore(xml: &str, dev: &dyn BlockDevice) {
    era::restore::restore(xml.as_bytes(), dev, None).unwrap_or_else(|e| panic!("restore: {e}"));
}

/// Checks with no finding at all (not even a warning) and returns the dump.
pub fn clone_check_and_dump(dev: &dyn BlockDevice, what: &str) -> String {
    let out = clone::check(dev, &clone::CheckOptions::default());
    assert!(
        out.report.findings().is_empty(),
        "{what}: clone_check findings: {:#?}",
        out.report.findings()
    );
    let mut x = Vec::new();
    clone::dump(dev, &mut x, false).unwrap_or_else(|e| panic!("{what}: dump: {e}"));
    String::from_utf8(x).unwrap()
}

pub fn era_check_and_dump(dev: &dyn BlockDevice, what: &str) -> String {
    let out = era::check(dev, &era::CheckOptions::default());
    assert!(
        out.report.findings().is_empty(),
        "{what}: era_check findings: {:#?}",
        out.report.findings()
    );
    let mut x = Vec::new();
    era::dump(dev, &mut x, era::DumpOptions::default())
        .unwrap_or_else(|e| panic!("{what}: dump: {e}"));
    String::from_utf8(x).unwrap()
}

#[test]
fn clone_generated_metadata_round_trips() {
    // (seed, region size, regions, partial last region, metadata blocks)
    let cases = [
        (1, 64, 2048, false, 64),
        (2, 8, 1000, true, 64),
        (3, 2097152, 1, true, 16),
        (4, 128, 40_000, true, 64),            // 2 array blocks
        (5, 8, 253 * 32_576 + 77, true, 1024), // 254 array blocks: 2-level index
        (6, 64, 100, false, 16),
    ];
    for (seed, rs, n, partial, meta) in cases {
        let what = format!("clone seed {seed} ({n} regions of {rs}, partial {partial})");
        let xml = gen_clone_xml(seed, rs, n, partial);
        let dev = MemDevice::new(meta);
        clone_restore(&xml, &dev);
        let got = clone_check_and_dump(&dev, &what);
        assert_text_eq(&got, &xml, &what);
    }
}

#[test]
fn clone_restore_of_nothing_hydrated_and_all_hydrated() {
    for (n, all) in [(1u64, true), (64, true), (65, true), (5000, false)] {
        let mut xml = format!(
            "<superblock uuid=\"\" region_size=\"8\" target_size=\"{}\" nr_regions=\"{n}\">\n",
            n * 8
        );
        if all {
            xml += &format!("  <hydrated begin=\"0\" end=\"{n}\"/>\n");
        }
        xml += "</superblock>\n";
        let dev = MemDevice::new(32);
        clone_restore(&xml, &dev);
        assert_text_eq(&clone_check_and_dump(&dev, "edge"), &xml, "edge");
    }
}

#[test]
fn era_generated_metadata_round_trips() {
    // (seed, nr_blocks, current era, writesets, metadata blocks)
    let cases = [
        (11, 16, 4, 2, 64),
        (12, 1, 1, 1, 64),
        (13, 3000, 7, 3, 256),     // era array and bitsets of several blocks
        (14, 100, 300, 250, 1100), // writeset tree of two levels
        (15, 1018 * 253 + 5, 9, 0, 1024), // era array index of two levels
        (16, 0, 0, 0, 32),
        (17, 777, 3, 0, 64),
        (18, 64, 2, 2, 64),
    ];
    for (seed, n, cur, ws, meta) in cases {
        let what = format!("era seed {seed} ({n} blocks, current era {cur}, {ws} writesets)");
        let g = EraGen::new(seed, n, cur, ws);
        let xml = g.xml(false);
        let dev = MemDevice::new(meta);
        era_restore(&xml, &dev);
        let got = era_check_and_dump(&dev, &what);
        assert_text_eq(&got, &xml, &what);
        if ws > 0 && n < 5000 {
            // The compact form restores to the same metadata.
            let dev = MemDevice::new(meta);
            era_restore(&g.xml(true), &dev);
            assert_text_eq(&era_check_and_dump(&dev, &what), &xml, &what);
        }
    }
}

#[test]
fn marked_runs_crossing_words_land_on_the_right_bits() {
    let xml = "<superblock uuid=\"\" block_size=\"8\" nr_blocks=\"200\" current_era=\"1\">\n  <writeset era=\"1\" nr_bits=\"200\">\n    <marked block_begin=\"60\" len=\"8\"/>\n    <marked block_begin=\"70\" len=\"130\"/>\n  </writeset>\n</superblock>";
    let dev = MemDevice::new(32);
    era_restore(xml, &dev);
    let out = era_check_and_dump(&dev, "marked");
    for b in 0..200 {
        let set = (60..68).contains(&b) || b >= 70;
        assert!(
            out.contains(&format!("<bit block=\"{b}\" value=\"{set}\"/>")),
            "block {b}"
        );
    }
}

fn sample(case: &str) -> MemDevice {
    MemDevice::from_bytes(&load_zst(&std::path::PathBuf::from(format!(
        "/work/shared/kernel-samples/{case}/metadata.img.zst"
    ))))
}

#[test]
fn kernel_samples_dump_restore_dump() {
    let dev = sample("clone-b-partial");
    let xml = clone_check_and_dump(&dev, "clone-b-partial");
    let out = MemDevice::new(dev.nr_blocks());
    clone_restore(&xml, &out);
    assert_text_eq(&clone_check_and_dump(&out, "restored clone"), &xml, "clone");

    let dev = sample("era-b-eras");
    let xml = era_check_and_dump(&dev, "era-b-eras");
    let out = MemDevice::new(dev.nr_blocks());
    era_restore(&xml, &out);
    assert_text_eq(&era_check_and_dump(&out, "restored era"), &xml, "era");
}

/// Takes an era metadata snapshot on a restored image and moves the live
/// metadata on with copy-on-write operations (new writeset, digestion of the
/// oldest one), as the kernel does; then drops the snapshot. Every committed state
/// must check clean and round-trip through dump and restore.
#[test]
fn era_metadata_snapshot_with_copy_on_write_updates() {
    let seed = 21;
    let g = EraGen::new(seed, 3000, 5, 2);
    let dev = MemDevice::new(512);
    era_restore(&g.xml(false), &dev);
    let (sb, _) = era::superblock::read_at(&dev, 0).unwrap();
    let mut tm = TransactionManager::open(&dev, &sb.sm_root).unwrap();
    tm.set_max_dirty(16);

    // take_metadata_snap: a copy of the superblock, and one more reference to
    // each of the two roots it pins (ERA.md §9).
    let snap = tm.new_block(BlockKind::EraSuperblock).unwrap();
    *tm.get_mut(snap).unwrap() = sb.encode(snap);
    tm.inc(sb.writeset_tree_root).unwrap();
    tm.inc(sb.era_array_root).unwrap();

    // Era 6 starts: a new writeset, archived into the (shared) tree.
    let mut ws = Bitset::new(&mut tm, 3000).unwrap();
    let mut rng = crate::roundtrip::Rng::new(seed);
    let mut new_bits = vec![false; 3000];
    for _ in 0..200 {
        let b = rng.below(3000);
        ws.assign(&mut tm, b, true).unwrap();
        new_bits[b as usize] = true;
    }
    let mut v = [0u8; 12];
    WritesetDisk {
        nr_bits: 3000,
        root: ws.root(),
    }
    .encode(&mut v);
    let mut tree = ops::insert(
        &mut tm,
        sb.writeset_tree_root,
        12,
        6,
        &v,
        &RefValues::BitsetRoots,
    )
    .unwrap();
    // Digest era 4 into the (shared) era array, then remove it from the tree.
    let mut array = Array {
        root: sb.era_array_root,
        value_size: 4,
        nr_entries: 3000,
    };
    let w4 = Bitset::open(
        dmce::pdata::le64(&ops::lookup(&mut tm, tree, 4).unwrap().unwrap(), 4),
        3000,
    );
    let mut eras = g.array.clone();
    for b in 0..3000u64 {
        if w4.test(&mut tm, b).unwrap() {
            array.set(&mut tm, b, &4u32.to_le_bytes()).unwrap();
            eras[b as usize] = 4;
        }
    }
    tree = ops::remove(&mut tm, tree, 12, 4, &RefValues::BitsetRoots).unwrap();
    let sm_root = tm.pre_commit().unwrap();
    let live = EraSuperblock {
        sm_root,
        current_era: 6,
        writeset_tree_root: tree,
        era_array_root: array.root,
        metadata_snap: snap,
        ..sb
    };
    tm.commit(&live.encode(0)).unwrap();

    let what = format!("snapshot seed {seed}");
    let xml = era_check_and_dump(&dev, &what);
    // The expected dump: writesets 5 and 6, the digested array.
    let want = EraGen {
        nr_blocks: 3000,
        current: 6,
        lo: 5,
        sets: vec![g.sets[1].clone(), new_bits],
        array: eras,
    };
    assert_text_eq(&xml, &want.xml(false), &what);
    let again = MemDevice::new(512);
    era_restore(&xml, &again);
    assert_text_eq(&era_check_and_dump(&again, &what), &xml, &what);

    // drop_metadata_snap: delete the snapshot's trees (shared nodes only lose a
    // reference) and its superblock; nothing may leak.
    let snap_sb = EraSuperblock::decode(&tm.read(snap, BlockKind::EraSuperblock).unwrap());
    ops::delete(
        &mut tm,
        snap_sb.writeset_tree_root,
        12,
        &RefValues::BitsetRoots,
    )
    .unwrap();
    ops::delete(&mut tm, snap_sb.era_array_root, 8, &RefValues::Blocks).unwrap();
    tm.dec(snap).unwrap();
    // Then start over with an empty writeset tree and a resized era array.
    ops::delete(&mut tm, tree, 12, &RefValues::BitsetRoots).unwrap();
    let tree = BTreeBuilder::new(12).finish(&mut tm).unwrap().root;
    array.resize(&mut tm, 2500, &[0; 4]).unwrap();
    array.resize(&mut tm, 4100, &[0; 4]).unwrap();
    let sm_root = tm.pre_commit().unwrap();
    let last = EraSuperblock {
        sm_root,
        metadata_snap: 0,
        nr_blocks: 4100,
        current_writeset: WritesetDisk {
            nr_bits: 4100,
            root: 0,
        },
        writeset_tree_root: tree,
        era_array_root: array.root,
        ..live
    };
    tm.commit(&last.encode(0)).unwrap();
    let mut eras = want.array[..2500].to_vec();
    eras.resize(4100, 0);
    let want = EraGen {
        nr_blocks: 4100,
        current: 6,
        lo: 7,
        sets: vec![],
        array: eras,
    };
    let what = format!("dropped snapshot seed {seed}");
    let xml = era_check_and_dump(&dev, &what);
    assert_text_eq(&xml, &want.xml(false), &what);
    let used = dmce::era::superblock::read_at(&dev, 0)
        .unwrap()
        .0
        .sm_root
        .nr_allocated;
    let again = MemDevice::new(512);
    era_restore(&xml, &again);
    assert_text_eq(&era_check_and_dump(&again, &what), &xml, &what);
    let fresh = dmce::era::superblock::read_at(&again, 0)
        .unwrap()
        .0
        .sm_root
        .nr_allocated;
    assert_eq!(
        used, fresh,
        "{what}: blocks in use after the updates vs a fresh restore"
    );
}

/// Moves the writeset of `current_era` out of the tree into the superblock's
/// current writeset: the shape a running (or crashed) target commits.
pub fn make_current_writeset(dev: &MemDevice) {
    let (sb, _) = era::superblock::read_at(dev, 0).unwrap();
    let mut tm = TransactionManager::open(dev, &sb.sm_root).unwrap();
    let cur = sb.current_era as u64;
    let v = ops::lookup(&mut tm, sb.writeset_tree_root, cur)
        .unwrap()
        .expect("the current era is archived");
    let ws = WritesetDisk::decode(&v);
    // The superblock takes over the tree's reference to the bitset.
    tm.inc(ws.root).unwrap();
    let tree = ops::remove(
        &mut tm,
        sb.writeset_tree_root,
        12,
        cur,
        &RefValues::BitsetRoots,
    )
    .unwrap();
    let sm_root = tm.pre_commit().unwrap();
    let live = EraSuperblock {
        sm_root,
        current_writeset: ws,
        writeset_tree_root: tree,
        ..sb
    };
    tm.commit(&live.encode(0)).unwrap();
}

#[test]
fn a_committed_current_writeset_restores_to_the_same_dump() {
    for (seed, n, cur, ws) in [(61, 5000, 4, 3), (62, 70, 1, 1)] {
        let what = format!("current writeset seed {seed}");
        let xml = EraGen::new(seed, n, cur, ws).xml(false);
        let dev = MemDevice::new(256);
        era_restore(&xml, &dev);
        make_current_writeset(&dev);
        let sb = era::superblock::read_at(&dev, 0).unwrap().0;
        assert_ne!(sb.current_writeset.root, 0, "{what}");
        assert_text_eq(&era_check_and_dump(&dev, &what), &xml, &what);
        let again = MemDevice::new(256);
        era_restore(&xml, &again);
        assert_text_eq(&era_check_and_dump(&again, &what), &xml, &what);
    }
}
