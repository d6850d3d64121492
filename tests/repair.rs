//! Repair: healthy images repair to images that dump identically; damaged ones
//! (zeroed leaf, zeroed internal node, damaged array block, damaged space-map index
//! or bitmap, damaged metadata snapshot) repair to images that check clean, and for
//! era every block the undamaged original lists for some N is still listed.
//! A table of what was recovered and lost is printed (`cargo test -- --nocapture`).

use dmce::clone::repair::{repair as clone_repair, LostRegions};
use dmce::era::invalidate::{invalidate, InvalidateOptions};
use dmce::era::repair::repair as era_repair;
use dmce::io::{BlockDevice, MemDevice, BLOCK_SIZE};
use dmce::pdata::btree::NodeHeader;
use dmce::pdata::refs::Role;
use dmce::repair::RepairError;

use crate::kernel_fixtures::fixtures;
use crate::util::{load_zst, repo};

fn clone_dump(dev: &MemDevice) -> String {
    let mut v = Vec::new();
    dmce::clone::dump(dev, &mut v, false).unwrap();
    String::from_utf8(v).unwrap()
}

fn era_dump(dev: &MemDevice) -> String {
    let mut v = Vec::new();
    dmce::era::dump(dev, &mut v, Default::default()).unwrap();
    String::from_utf8(v).unwrap()
}

/// Every image to repair: the kernel samples and the kernel lab's fixtures.
fn images() -> Vec<(String, bool, Vec<u8>)> {
    let mut out = vec![
        (
            "clone-b-partial".to_string(),
            true,
            load_zst(&repo().join("fixtures/samples/clone-b-partial/metadata.img.zst")),
        ),
        (
            "era-b-eras".to_string(),
            false,
            load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
        ),
    ];
    for (dir, t) in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        out.push((
            name,
            t["kind"] == "clone",
            load_zst(&dir.join("metadata.img.zst")),
        ));
    }
    out
}

/// An output for repairing `input`: twice its size, since a repair refuses an
/// output smaller than the `*_metadata_size` figure of the geometry, and the lab
/// made some fixtures (era-millions: 4096 blocks for 2097152 origin blocks, figure
/// 6619 with its two writesets) on devices smaller than that.
fn repair_output(input: &MemDevice) -> MemDevice {
    MemDevice::new(2 * input.nr_blocks())
}

#[test]
fn healthy_images_repair_to_identical_dumps() {
    for (name, is_clone, img) in images() {
        let input = MemDevice::from_bytes(&img);
        let output = repair_output(&input);
        if is_clone {
            let r = clone_repair(&input, &output, LostRegions::Refuse).unwrap();
            assert!(r.notes.unreadable.is_empty(), "{name}");
            assert!(
                dmce::clone::check(&output, &Default::default())
                    .report
                    .findings()
                    .is_empty(),
                "{name}"
            );
            assert_eq!(clone_dump(&output), clone_dump(&input), "{name}");
        } else {
            let r = era_repair(&input, &output).unwrap();
            assert!(r.notes.skipped.is_empty(), "{name}: {:?}", r.notes.skipped);
            assert!(
                dmce::era::check(&output, &Default::default())
                    .report
                    .findings()
                    .is_empty(),
                "{name}"
            );
            assert_eq!(era_dump(&output), era_dump(&input), "{name}");
        }
    }
}

/// The damage patterns that apply to an image: (pattern, block).
fn patterns(img: &[u8], is_clone: bool) -> Vec<(&'static str, u64)> {
    let dev = MemDevice::from_bytes(img);
    let (refs, snap) = if is_clone {
        (
            dmce::clone::check(&dev, &Default::default()).refs.unwrap(),
            0,
        )
    } else {
        let o = dmce::era::check(&dev, &Default::default());
        (o.refs.unwrap(), o.superblock.unwrap().metadata_snap)
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (b, _, role) in refs.blocks() {
        let o = b as usize * BLOCK_SIZE;
        let blk: &[u8; BLOCK_SIZE] = img[o..o + BLOCK_SIZE].try_into().unwrap();
        let p = match role {
            Role::TreeNode(4) => continue, // space-map ref-count tree: rebuilt anyway
            Role::TreeNode(_) if NodeHeader::decode(blk).is_leaf() => "zeroed leaf",
            Role::TreeNode(_) => "zeroed internal node",
            Role::ArrayBlock(_) => "damaged array block",
            Role::SmIndex => "damaged space-map index",
            Role::SmBitmap => "damaged space-map bitmap",
            Role::Superblock if b == snap && b != 0 => "damaged snapshot",
            _ => continue,
        };
        // Two instances of each pattern at most, to keep the run short.
        let n = out.iter().filter(|(q, _)| *q == p).count();
        if n < 2 && seen.insert(b) {
            out.push((p, b));
        }
    }
    out
}

#[test]
fn damaged_images_repair_to_clean_images_without_losing_era_blocks() {
    let mut table = vec![format!(
        "{:<28} {:<26} {:>6}  {}",
        "image", "damage", "block", "outcome"
    )];
    let mut cases = 0;
    for (name, is_clone, img) in images() {
        for (pattern, b) in patterns(&img, is_clone) {
            cases += 1;
            let mut bad = img.clone();
            let o = b as usize * BLOCK_SIZE;
            if pattern.starts_with("zeroed") {
                bad[o..o + BLOCK_SIZE].fill(0);
            } else {
                bad[o + 40] ^= 0xff;
            }
            let input = MemDevice::from_bytes(&bad);
            let output = repair_output(&input);
            let outcome = if is_clone {
                match clone_repair(&input, &output, LostRegions::Refuse) {
                    Ok(r) => {
                        assert!(r.notes.unreadable.is_empty());
                        assert_eq!(
                            clone_dump(&output),
                            clone_dump(&MemDevice::from_bytes(&img)),
                            "{name} {pattern} {b}"
                        );
                        "recovered everything".to_string()
                    }
                    Err(RepairError::Unreadable(ranges)) => {
                        let lost: u64 = ranges.iter().map(|(b, e)| e - b).sum();
                        // With a policy the repair goes through.
                        let output = repair_output(&input);
                        clone_repair(&input, &output, LostRegions::AssumeUnhydrated).unwrap();
                        assert!(dmce::clone::check(&output, &Default::default())
                            .report
                            .findings()
                            .is_empty());
                        format!("refused without a policy: {lost} regions lost; repaired with --assume-unhydrated")
                    }
                    Err(e) => panic!("{name} {pattern} {b}: {e}"),
                }
            } else {
                let r = era_repair(&input, &output)
                    .unwrap_or_else(|e| panic!("{name} {pattern} {b}: {e}"));
                let chk = dmce::era::check(&output, &Default::default());
                assert!(
                    chk.report.findings().is_empty(),
                    "{name} {pattern} {b}: {:#?}",
                    chk.report
                );
                let orig = MemDevice::from_bytes(&img);
                let cur = chk.superblock.unwrap().current_era;
                let mut extra = 0u64;
                for n in 0..=cur + 1 {
                    let opts = InvalidateOptions {
                        written_since: n,
                        metadata_snapshot: false,
                    };
                    let before = invalidate(&orig, opts).unwrap();
                    let after = invalidate(&output, opts).unwrap();
                    for blk in 0..before.nr_blocks {
                        assert!(
                            !before.contains(blk) || after.contains(blk),
                            "{name} {pattern} {b}: block {blk} lost for --written-since {n}"
                        );
                    }
                    extra += after.count() - before.count();
                }
                if r.notes.skipped.is_empty() {
                    assert_eq!(era_dump(&output), era_dump(&orig), "{name} {pattern} {b}");
                    "recovered everything".to_string()
                } else {
                    format!(
                        "{} losses over-reported ({extra} extra block listings over all N)",
                        r.notes.skipped.len()
                    )
                }
            };
            table.push(format!("{name:<28} {pattern:<26} {b:>6}  {outcome}"));
        }
    }
    eprintln!("{}\n{cases} repair cases", table.join("\n"));
    assert!(cases >= 10);
}
