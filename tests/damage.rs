//! Damage: for every live block of an image, (a) zero it, (b) flip one byte without
//! fixing the checksum, (c) make it structurally wrong with a valid checksum. Every
//! case must be found as an error that names the damaged block (or, for a changed
//! reference count, the block whose count changed); none may panic or hang.

use dmce::io::{BlockDevice, MemDevice, BLOCK_SIZE};
use dmce::pdata::btree::NodeHeader;
use dmce::pdata::checksum::{kind_of, stamp, BlockKind};
use dmce::pdata::refs::Role;
use dmce::pdata::space_map::{bitmap_entry, set_bitmap_entry, IndexEntry, SmRoot};
use dmce::pdata::{le64, put_le32, put_le64};
use dmce::report::{Report, Severity};

use crate::util::{load_zst, repo};

#[derive(Clone, Copy, Debug)]
pub enum Target {
    Clone,
    Era,
}

fn check(t: Target, img: &[u8]) -> (Report, Vec<(u64, u32, Role)>) {
    let dev = MemDevice::from_bytes(img);
    match t {
        Target::Clone => {
            let o = dmce::clone::check(&dev, &Default::default());
            (o.report, o.refs.map(|r| r.blocks()).unwrap_or_default())
        }
        Target::Era => {
            let o = dmce::era::check(&dev, &Default::default());
            (o.report, o.refs.map(|r| r.blocks()).unwrap_or_default())
        }
    }
}

fn block(img: &[u8], b: u64) -> [u8; BLOCK_SIZE] {
    let o = b as usize * BLOCK_SIZE;
    img[o..o + BLOCK_SIZE].try_into().unwrap()
}

fn with_block(img: &[u8], b: u64, data: &[u8; BLOCK_SIZE]) -> Vec<u8> {
    let mut v = img.to_vec();
    let o = b as usize * BLOCK_SIZE;
    v[o..o + BLOCK_SIZE].copy_from_slice(data);
    v
}

/// Re-stamps a block with the checksum of the kind it already carries.
fn restamp(data: &mut [u8; BLOCK_SIZE], loc: u64, kind: BlockKind) {
    stamp(data, loc, kind);
}

/// Structural damage with valid checksums for block `b` of role `role`: each
/// returned image differs from `img` only in block `b` (or, for reference counts, in
/// a bitmap entry), with the block's checksum fixed up.
fn structural(
    img: &[u8],
    b: u64,
    role: Role,
    live: &[(u64, u32, Role)],
) -> Vec<(String, Vec<u8>, u64)> {
    let mut out = Vec::new();
    let orig = block(img, b);
    let other_live = live
        .iter()
        .map(|e| e.0)
        .find(|&x| x != b && x != 0)
        .unwrap_or(1);
    match role {
        Role::TreeNode(_) | Role::RefCountNode => {
            let h = NodeHeader::decode(&orig);
            let mut d = orig;
            put_le32(&mut d, 16, h.max_entries + 1);
            restamp(&mut d, b, BlockKind::BtreeNode);
            out.push(("nr_entries > max_entries".into(), with_block(img, b, &d), b));
            if h.nr_entries >= 2 {
                let mut d = orig;
                let (k0, k1) = (h.key(&orig, 0), h.key(&orig, 1));
                put_le64(&mut d, 32, k1);
                put_le64(&mut d, 40, k0);
                restamp(&mut d, b, BlockKind::BtreeNode);
                out.push(("keys out of order".into(), with_block(img, b, &d), b));
            } else if h.nr_entries == 1 {
                let mut d = orig;
                put_le64(&mut d, 32, h.key(&orig, 0) + 1000);
                restamp(&mut d, b, BlockKind::BtreeNode);
                out.push(("key changed".into(), with_block(img, b, &d), b));
            }
            // A pointer redirected to another live block: a child of an internal
            // node, or the block a leaf value points to (array blocks, bitsets).
            let points =
                h.nr_entries >= 1 && (h.flags == 1 || h.value_size == 8 || h.value_size == 12);
            if points {
                let mut d = orig;
                let off = h.value_offset(0) + if h.value_size == 12 { 4 } else { 0 };
                let cur = le64(&d, off);
                let target = live
                    .iter()
                    .map(|e| e.0)
                    .find(|&x| x != cur && x != b && x != 0)
                    .unwrap_or(other_live);
                put_le64(&mut d, off, target);
                restamp(&mut d, b, BlockKind::BtreeNode);
                out.push((
                    format!("pointer redirected to block {target}"),
                    with_block(img, b, &d),
                    b,
                ));
            }
        }
        Role::ArrayBlock(_) => {
            let mut d = orig;
            let max = dmce::pdata::le32(&orig, 4);
            put_le32(&mut d, 8, max + 1);
            restamp(&mut d, b, BlockKind::ArrayBlock);
            out.push(("nr_entries > max_entries".into(), with_block(img, b, &d), b));
            let mut d = orig;
            put_le32(&mut d, 12, 16);
            restamp(&mut d, b, BlockKind::ArrayBlock);
            out.push(("value size changed".into(), with_block(img, b, &d), b));
        }
        Role::SmIndex => {
            let mut d = orig;
            let mut e = IndexEntry::decode(&orig, 0);
            e.blocknr = live
                .iter()
                .map(|x| x.0)
                .find(|&x| x != e.blocknr && x != b && x != 0)
                .unwrap_or(1);
            e.encode(&mut d, 0);
            restamp(&mut d, b, BlockKind::SmIndex);
            out.push((
                format!("index entry pointing at block {}", e.blocknr),
                with_block(img, b, &d),
                b,
            ));
        }
        Role::SmBitmap => {
            // Change the reference count of each live block tracked by this bitmap
            // (first bitmap only covers 0..16320): up by one, and down by one.
            for &(lb, n, _) in live.iter().filter(|e| e.0 < 16320).take(4) {
                for (what, v) in [("raised", (n + 1).min(2) as u8), ("lowered", (n - 1) as u8)] {
                    if v as u32 == n {
                        continue;
                    }
                    let mut d = orig;
                    assert_eq!(bitmap_entry(&d, lb as usize) as u32, n);
                    set_bitmap_entry(&mut d, lb as usize, v);
                    restamp(&mut d, b, BlockKind::SmBitmap);
                    out.push((
                        format!("reference count of block {lb} {what}"),
                        with_block(img, b, &d),
                        lb,
                    ));
                }
            }
        }
        Role::Superblock => {}
    }
    out
}

/// Array blocks damaged per image at most (evenly spaced); every other live block
/// (superblocks, tree nodes, space-map blocks) is always damaged.
const MAX_ARRAY_BLOCKS: usize = 24;

/// Runs every damage case over `img`; returns the number of cases.
pub fn damage_all(name: &str, t: Target, img: &[u8]) -> usize {
    let (report, live) = check(t, img);
    assert!(
        report.findings().is_empty(),
        "{name}: undamaged image has findings: {report:#?}"
    );
    assert!(!live.is_empty());
    // Every live block but array blocks, of which an evenly spaced sample.
    let arrays: Vec<u64> = live
        .iter()
        .filter(|e| matches!(e.2, Role::ArrayBlock(_)))
        .map(|e| e.0)
        .collect();
    let stride = arrays.len().div_ceil(MAX_ARRAY_BLOCKS).max(1);
    let sampled: std::collections::HashSet<u64> = arrays.iter().step_by(stride).copied().collect();
    let mut cases = 0;
    let mut failures = Vec::new();
    for &(b, _, role) in live
        .iter()
        .filter(|e| !matches!(e.2, Role::ArrayBlock(_)) || sampled.contains(&e.0))
    {
        let orig = block(img, b);
        let mut variants: Vec<(String, Vec<u8>, u64)> = Vec::new();
        variants.push(("zeroed".into(), with_block(img, b, &[0u8; BLOCK_SIZE]), b));
        for off in [0usize, 5, 100, 4095] {
            let mut d = orig;
            d[off] ^= 0x5a;
            variants.push((format!("byte {off} flipped"), with_block(img, b, &d), b));
        }
        variants.extend(structural(img, b, role, &live));
        for (what, damaged, named) in variants {
            cases += 1;
            let (r, _) = check(t, &damaged);
            let errors: Vec<_> = r
                .findings()
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .collect();
            let names = errors
                .iter()
                .any(|f| f.block == Some(named) || f.message.contains(&format!("block {named}")));
            if errors.is_empty() || !names {
                failures.push(format!(
                    "{name}: block {b} ({role:?}) {what}: {:#?}",
                    r.findings()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} damage cases not reported as errors naming the block:\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases
}

#[test]
fn damage_to_kernel_samples_is_always_found() {
    let mut total = 0;
    let c = load_zst(&repo().join("fixtures/samples/clone-b-partial/metadata.img.zst"));
    total += damage_all("clone-b-partial", Target::Clone, &c);
    let e = load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst"));
    total += damage_all("era-b-eras", Target::Era, &e);
    eprintln!("damage cases run on kernel samples: {total}");
    assert!(total > 50);
}

#[test]
fn superblock_kind_is_known() {
    let e = load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst"));
    let dev = MemDevice::from_bytes(&e);
    let mut b = [0u8; BLOCK_SIZE];
    dev.read(0, &mut b).unwrap();
    assert_eq!(kind_of(&b), Some(BlockKind::EraSuperblock));
    assert_eq!(SmRoot::decode(&b).nr_blocks, 2048);
}

#[test]
fn damage_to_kernel_fixtures_is_always_found() {
    let mut total = 0;
    for case in [
        "era-snapshot",
        "era-crash",
        "era-small",
        "era-millions",
        "clone-rs8",
        "clone-partial-last-region",
        "clone-millions",
    ] {
        let img = load_zst(
            &repo()
                .join("fixtures/kernel")
                .join(case)
                .join("metadata.img.zst"),
        );
        let t = if case.starts_with("era") {
            Target::Era
        } else {
            Target::Clone
        };
        total += damage_all(case, t, &img);
    }
    eprintln!("damage cases run on kernel fixtures: {total}");
}

#[test]
fn damage_to_generated_multi_level_images_is_always_found() {
    use crate::roundtrip::{clone_restore, era_restore, gen_clone_xml, EraGen};
    // 2^21 regions: 32768 words, 65 array blocks under a two-level index tree.
    let dev = MemDevice::new(1024);
    clone_restore(&gen_clone_xml(7, 8, 1 << 21, true), &dev);
    let clone = dev.to_bytes();
    // 300000 blocks: 295 era-array blocks under a two-level index, three writesets.
    let dev = MemDevice::new(2048);
    era_restore(&EraGen::new(11, 300_000, 6, 3).xml(true), &dev);
    let era = dev.to_bytes();
    let total = damage_all("generated clone", Target::Clone, &clone)
        + damage_all("generated era", Target::Era, &era);
    eprintln!("damage cases run on generated images: {total}");
}
