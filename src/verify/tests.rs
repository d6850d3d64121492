//! Each invariant fires on a hand-made bad state, and passes on the same state
//! untampered: the models are run through their library API to a point, then
//! an image, a device or a recorded view is changed by hand.
//!
//! I5 is not here (it is checked elsewhere).

use std::sync::Arc;

use super::log::Target;
use super::*;
use crate::crash::Options;
use crate::io::{Block, BLOCK_SIZE};
use crate::model::clone::CloneConfig;
use crate::model::era::EraConfig;
use crate::model::WriteReq;
use crate::pdata::refs::Role;
use crate::sim::{ExtentMap, Io, MetaVal};
use crate::trace::{Init, Variant};

fn clone_model() -> CloneModel {
    let cfg = CloneConfig {
        size: 64,
        region_size: 8,
        meta_blocks: 256,
        hydration: false,
        threshold: 1,
        batch: 1,
        discard_passdown: true,
        dest_init: Init::Stamp,
        source_init: Init::Stamp,
        discard_zeroes: false,
        meta_writethrough: false,
        dest_writethrough: false,
        copy_us: 100,
    };
    CloneModel::new(cfg, Variant::Fixed, 0).unwrap()
}

fn era_model() -> EraModel {
    let cfg = EraConfig {
        size: 64,
        block_size: 8,
        meta_blocks: 256,
        start_era: 1,
        origin_init: Init::Stamp,
        discard_zeroes: false,
        meta_writethrough: false,
        origin_writethrough: false,
        manual_worker: false,
    };
    EraModel::new(cfg, Variant::Fixed, 0).unwrap()
}

fn write(start: u64, end: u64, fua: bool, id: &str) -> WriteReq {
    WriteReq {
        start,
        end,
        fua,
        id: Some(id.into()),
        ..Default::default()
    }
}

/// A dm-clone model whose region 1 was copied to the destination (the copy
/// completed into the destination's cache) and not committed.
fn clone_copied() -> CloneModel {
    let mut m = clone_model();
    m.hydrate_start(1, 2).unwrap();
    m.hydrate_done(1).unwrap();
    m
}

/// `img` with block `b` changed by `f`.
fn tamper(img: &MetaImage, b: u64, f: impl Fn(&mut Block)) -> MetaImage {
    let mut map = ExtentMap::new();
    for (x, blk) in img.blocks() {
        let mut blk = *blk;
        if x == b {
            f(&mut blk);
        }
        map.insert(x, x + 1, 1, MetaVal(Arc::new(blk)));
    }
    MetaImage::new(img.nr_blocks(), map)
}

/// A block the superblock of `img` reaches in `role`.
fn live_block(target: Target, img: &MetaImage, role: fn(Role) -> bool) -> u64 {
    let live = ordering::reachable(target, img).expect("valid metadata");
    let mut blocks: Vec<u64> = live
        .iter()
        .filter(|&(_, &r)| role(r))
        .map(|(&b, _)| b)
        .collect();
    blocks.sort();
    *blocks.first().expect("a block of that role")
}

fn ids(vs: &[Violation]) -> Vec<&'static str> {
    vs.iter().map(|v| v.id).collect()
}

#[test]
fn i1_fires_on_a_corrupted_metadata_block() {
    let mut m = clone_copied();
    m.commit().unwrap();
    let img = m.meta_image();
    let mut chk = CloneChecker::new(&m);
    assert_eq!(chk.check(&img, 1, "s"), vec![]);
    let b = live_block(Target::Clone, &img, |r| matches!(r, Role::ArrayBlock(_)));
    let bad = tamper(&img, b, |blk| blk[100] ^= 0x40);
    let vs = chk.check(&bad, 1, "s");
    assert_eq!(ids(&vs), vec!["I1"], "{vs:?}");
    assert!(vs[0].what.contains(&format!("block {b}")), "{}", vs[0].what);
    assert!(
        chk.hydrated.is_none(),
        "no hydrated set from invalid metadata"
    );
}

#[test]
fn i2_fires_on_a_hydrated_bit_whose_copy_never_became_durable() {
    // The copy of region 1 is only in the destination's cache; a commit (which
    // flushes the destination first) makes it durable.
    let copied = clone_copied();
    let mut committed = clone_copied();
    committed.commit().unwrap();
    let with_bit = committed.meta_image();
    assert_eq!(image_hydrated(&with_bit).unwrap().runs(), vec![(1, 2)]);
    assert_eq!(
        CloneChecker::new(&committed).check(&with_bit, 1, "s"),
        vec![]
    );
    assert_eq!(
        CloneChecker::new(&copied).check(&copied.meta_image(), 1, "s"),
        vec![]
    );
    // The bit committed while the copy is still volatile: a power cut can
    // leave the destination's initial content under a hydrated region.
    let vs = CloneChecker::new(&copied).check(&with_bit, 1, "s");
    assert_eq!(ids(&vs), vec!["I2"], "{vs:?}");
    assert!(
        vs[0].what.contains("region 1 is hydrated; sector 8")
            && vs[0].what.contains("lost hydration"),
        "{}",
        vs[0].what
    );
}

#[test]
fn i3_fires_when_an_acknowledged_write_is_in_no_hydrated_region() {
    // A FUA overwrite of region 1 completes only once its bit is committed.
    let mut m = clone_model();
    let fresh = m.meta_image();
    m.write(write(8, 16, true, "w1")).unwrap();
    assert_eq!(m.is_done("w1"), Some(true));
    let img = m.meta_image();
    let mut chk = CloneChecker::new(&m);
    assert_eq!(chk.check(&img, 1, "s"), vec![]);
    // The metadata of before the write: the acknowledged data is unreachable.
    let vs = chk.check(&fresh, 1, "s");
    assert_eq!(ids(&vs), vec!["I3"], "{vs:?}");
    assert!(
        vs[0]
            .what
            .contains("acknowledged write w1 at sector 8 is lost: region 1 is not hydrated"),
        "{}",
        vs[0].what
    );
}

#[test]
fn i4_fires_when_a_region_of_an_earlier_durable_view_is_lost() {
    let mut m = clone_copied();
    let before = m.meta_image();
    m.commit().unwrap();
    let after = m.meta_image();
    let mut mono = Monotone::default();
    mono.clone_durable(&after);
    let h = image_hydrated(&after).unwrap();
    assert_eq!(mono.clone_state(&h, 2, "s"), None);
    let lost = image_hydrated(&before).unwrap();
    let v = mono.clone_state(&lost, 2, "s").expect("region 1 lost");
    assert_eq!(v.id, "I4");
    assert!(v.what.contains("region 1 was hydrated"), "{}", v.what);
}

#[test]
fn i6_fires_when_the_source_is_written() {
    let mut m = clone_copied();
    m.commit().unwrap();
    let img = m.meta_image();
    assert_eq!(CloneChecker::new(&m).check(&img, 1, "s"), vec![]);
    // A sector of region 1, which is hydrated: reads go to the destination, so
    // only I6 (and not I5) has something to say.
    let s = m.region_size();
    let stamp = DataVal {
        origin: Origin::Zero,
        sector: s,
    };
    m.source
        .submit(Io::new(IoKind::Write, s, s + 1, stamp, false))
        .unwrap();
    let vs = CloneChecker::new(&m).check(&img, 1, "s");
    assert_eq!(ids(&vs), vec!["I6"], "{vs:?}");
    assert!(
        vs[0].what.contains("the source device got 1 writes"),
        "{}",
        vs[0].what
    );
}

#[test]
fn i7_fires_when_the_durable_set_misses_a_region_hydrated_in_core() {
    let mut m = clone_copied();
    let before = m.meta_image();
    assert_eq!(m.in_core_hydrated(), Some(vec![(1, 2)]));
    // After a suspend: durable must equal in core.
    let v = clone_suspended(&m, &before, 3).expect("region 1 only in core");
    assert_eq!(v.id, "I7");
    assert!(v.what.contains("in core [(1, 2)]"), "{}", v.what);
    // After a flush: durable must hold what was in core at its issue.
    let v = clone_flushed(&before, &[(1, 2)], 3).expect("region 1 not durable");
    assert_eq!(v.id, "I7");
    assert!(
        v.what.starts_with("region 1 was hydrated in core"),
        "{}",
        v.what
    );
    m.commit().unwrap();
    let after = m.meta_image();
    assert_eq!(clone_suspended(&m, &after, 3), None);
    assert_eq!(clone_flushed(&after, &[(1, 2)], 3), None);
}

#[test]
fn e1_fires_on_a_corrupted_metadata_block() {
    let mut m = era_model();
    m.write(write(24, 32, false, "a")).unwrap();
    let img = m.meta_image();
    let mut chk = EraChecker::new(&m);
    assert_eq!(chk.check(&img, 1, "s"), vec![]);
    let b = live_block(Target::Era, &img, |r| matches!(r, Role::ArrayBlock(_)));
    let bad = tamper(&img, b, |blk| blk[BLOCK_SIZE - 1] ^= 1);
    let vs = chk.check(&bad, 1, "s");
    assert_eq!(ids(&vs), vec!["E1"], "{vs:?}");
    assert!(vs[0].what.contains(&format!("block {b}")), "{}", vs[0].what);
}

#[test]
fn e2_fires_when_a_submitted_write_is_in_no_writeset() {
    let mut m = era_model();
    let fresh = m.meta_image();
    m.write(write(24, 32, false, "a")).unwrap();
    assert_eq!(
        m.submitted(),
        &[crate::model::era::Modified {
            first: 3,
            end: 4,
            era: 1,
            discard: false
        }]
    );
    let mut chk = EraChecker::new(&m);
    assert_eq!(chk.check(&m.meta_image(), 1, "s"), vec![]);
    // Metadata that never recorded block 3, under a write the origin got.
    let vs = chk.check(&fresh, 1, "s");
    assert_eq!(ids(&vs), vec!["E2"], "{vs:?}");
    assert!(
        vs[0]
            .what
            .starts_with("block 3 was written in era 1, but after recovery"),
        "{}",
        vs[0].what
    );
}

#[test]
fn e3_fires_when_a_block_disappears_from_written_since() {
    let mut m = era_model();
    let fresh = m.meta_image();
    m.write(write(24, 32, false, "a")).unwrap();
    let img = m.meta_image();
    let mut mono = Monotone::default();
    assert_eq!(mono.era_durable(&img, 1), vec![]);
    assert_eq!(mono.era_durable(&img, 2), vec![]);
    // The next durable view lost the block (as a digest that transcribed the
    // wrong bits and dropped the writeset would).
    let vs = mono.era_durable(&fresh, 3);
    assert_eq!(ids(&vs), vec!["E3"], "{vs:?}");
    assert!(
        vs[0].what.starts_with("block 3 was written since era 1"),
        "{}",
        vs[0].what
    );
}

#[test]
fn e4_fires_when_the_current_era_goes_back() {
    let mut m = era_model();
    let fresh = m.meta_image();
    m.checkpoint().unwrap();
    let img = m.meta_image();
    assert_eq!(m.current_era(), Some(2));
    let mut mono = Monotone::default();
    assert_eq!(mono.era_durable(&fresh, 1), vec![]);
    assert_eq!(mono.era_durable(&img, 2), vec![]);
    // A superblock whose era went backwards.
    let vs = mono.era_durable(&fresh, 3);
    assert!(ids(&vs).contains(&"E4"), "{vs:?}");
    let v = vs.iter().find(|v| v.id == "E4").expect("E4");
    assert_eq!(v.what, "the current era went back from 2 to 1");
}

/// Two consecutive committed dm-clone images and the blocks the commit wrote.
fn commit_images() -> (MetaImage, MetaImage, Vec<u64>) {
    let mut m = clone_copied();
    let old = m.meta_image();
    m.commit().unwrap();
    let new = m.meta_image();
    let mut written: Vec<u64> = new
        .blocks()
        .filter(|&(b, blk)| {
            let mut x = [0u8; BLOCK_SIZE];
            old.read(b, &mut x).unwrap();
            x != *blk
        })
        .map(|(b, _)| b)
        .collect();
    written.sort();
    (old, new, written)
}

/// `img` with the blocks of `from` in `blocks` landed over it.
fn landed(img: &MetaImage, from: &MetaImage, blocks: &[u64]) -> MetaImage {
    let mut map = ExtentMap::new();
    for (b, blk) in img.blocks() {
        map.insert(b, b + 1, 1, MetaVal(Arc::new(*blk)));
    }
    for &b in blocks {
        map.insert(b, b + 1, 2, MetaVal(from.read_shared(b).unwrap()));
    }
    MetaImage::new(img.nr_blocks(), map)
}

#[test]
fn g1_fires_on_a_superblock_written_in_the_epoch_of_its_blocks() {
    let (old, new, written) = commit_images();
    assert_eq!(written[0], 0, "the commit wrote the superblock");
    assert!(written.len() > 1);
    // The fixed order: the blocks, a flush, the superblock, a flush.
    let blocks = &written[1..];
    let mid = landed(&old, &new, blocks);
    assert_eq!(
        ordering::at_flush(Target::Clone, &old, blocks, &mid),
        vec![]
    );
    assert_eq!(ordering::at_flush(Target::Clone, &mid, &[0], &new), vec![]);
    // All of them in one epoch.
    let found = ordering::at_flush(Target::Clone, &old, &written, &new);
    let ids: Vec<&str> = found.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec!["G1"], "{found:?}");
    let b = found[0]
        .1
        .strip_prefix("the superblock and block ")
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse::<u64>().ok())
        .expect("names the block");
    assert!(blocks.contains(&b), "{}", found[0].1);
}

#[test]
fn g2_fires_on_a_write_over_a_block_live_in_the_durable_superblock() {
    let (_, new, _) = commit_images();
    let b = live_block(Target::Clone, &new, |r| matches!(r, Role::ArrayBlock(_)));
    let free = (1..new.nr_blocks())
        .find(|x| ordering::reachable(Target::Clone, &new).is_some_and(|l| !l.contains_key(x)))
        .expect("a free block");
    let ok = landed(&new, &new, &[]);
    assert_eq!(
        ordering::at_flush(Target::Clone, &new, &[free], &ok),
        vec![]
    );
    let over = tamper(&new, b, |blk| blk[200] ^= 1);
    let found = ordering::at_flush(Target::Clone, &new, &[b], &over);
    assert_eq!(
        found,
        vec![(
            "G2",
            format!(
                "block {b}, an array block (8-byte values) reachable from the durable superblock, is written over"
            )
        )]
    );
}

/// G4 has no crash state: the log's reader checks it, a malformed entry is an
/// error naming it and a log that was not closed is a warning of the
/// verification.
#[test]
fn g4_fires_on_a_log_not_closed_and_on_a_malformed_entry() {
    use crate::logwrites::{Log, LogError, LogWriter};
    let (_, img, _) = commit_images();
    let log_of = |close: bool| -> Vec<u8> {
        let mut w = LogWriter::new(std::io::Cursor::new(Vec::new()), 4096).unwrap();
        for (b, blk) in img.blocks().filter(|&(b, _)| b != 0) {
            w.write(b, blk, 0).unwrap();
        }
        w.flush().unwrap();
        let (_, sb) = img.blocks().next().expect("a superblock");
        w.write(0, sb, 0).unwrap();
        w.flush().unwrap();
        let c = if close { w.close() } else { w.cut() };
        c.unwrap().into_inner()
    };
    let warnings = |bytes: Vec<u8>| -> Vec<String> {
        let log = Log::open(bytes).unwrap();
        let mut vs = Vec::new();
        let sum = log::meta::verify(
            Target::Clone,
            &log,
            img.nr_blocks(),
            ExtentMap::new(),
            Options::default(),
            &mut |v| vs.push(v),
        )
        .unwrap();
        assert_eq!(vs, vec![], "the log itself is a clean commit");
        sum.warnings
    };
    let closed = warnings(log_of(true));
    assert!(
        closed.iter().all(|w| !w.contains("not closed")),
        "{closed:?}"
    );
    let cut = warnings(log_of(false));
    assert!(
        cut.iter()
            .any(|w| w.contains("no `dm-log-writes-end` mark: it was not closed")),
        "{cut:?}"
    );
    // A non-MARK entry whose byte 32 is not zero (replay-log refuses it).
    let mut bytes = log_of(true);
    bytes[4096 + 32] = 1;
    match Log::open(bytes) {
        Err(LogError::Entry { index, .. }) => assert_eq!(index, 0),
        other => panic!("a malformed first entry must be refused: {other:?}"),
    }
}

/// An unhydrated region whose source was discarded reads discarded data: I5
/// fires, naming the region and the sector; untouched, the state passes.
#[test]
fn i5_fires_when_an_unhydrated_region_reads_a_changed_source() {
    let mut m = clone_model();
    let img = m.meta_image();
    assert!(CloneChecker::new(&m).check(&img, 1, "s").is_empty());
    let io = Io {
        kind: IoKind::Discard,
        start: 16,
        end: 24,
        val: Some(DataVal {
            origin: Origin::Discarded,
            sector: 16,
        }),
        fua: false,
    };
    let s = m.source.issue(io).unwrap();
    m.source.complete(s).unwrap();
    let v = CloneChecker::new(&m).check(&img, 1, "s");
    let i5: Vec<_> = v.iter().filter(|v| v.id == "I5").collect();
    assert_eq!(i5.len(), 1, "{v:?}");
    assert!(
        i5[0].what.contains("region 2") && i5[0].what.contains("sector 16"),
        "{}",
        i5[0].what
    );
}

#[test]
fn a_hydrated_set_is_not_read_from_a_superblock_whose_geometry_is_impossible() {
    // A checksummed superblock (a metadata log can carry one) naming 2^59
    // regions: the bitmap is refused before it is allocated.
    let mut m = clone_copied();
    m.commit().unwrap();
    let img = m.meta_image();
    let restamp = |target_size: u64, region_size: u64| {
        tamper(&img, 0, |blk| {
            let mut sb = csb::CloneSuperblock::decode(blk);
            sb.target_size = target_size;
            sb.region_size = region_size;
            *blk = sb.encode();
        })
    };
    let e = image_hydrated(&restamp(1 << 62, 8)).unwrap_err();
    assert!(e.contains("regions"), "{e}");
    let e = image_hydrated(&restamp(1 << 20, 3)).unwrap_err();
    assert!(e.contains("region size 3"), "{e}");
    // Within the kernel's limits, but more bitset blocks than the device holds.
    let e = image_hydrated(&restamp(8 << 31, 8)).unwrap_err();
    assert!(e.contains("bitset blocks"), "{e}");
    assert!(image_hydrated(&img).is_ok());
}

#[test]
fn e3_compares_the_newest_eras_of_a_long_lived_target() {
    // The e3 case with both superblocks a billion eras on: each threshold era
    // walks the metadata, so only the newest 256 are compared (one per era
    // took hours), and the lost block is still found.
    let mut m = era_model();
    let fresh = m.meta_image();
    m.write(write(24, 32, false, "a")).unwrap();
    let img = m.meta_image();
    let aged = |img: &MetaImage| {
        tamper(img, 0, |blk| {
            let mut sb = crate::era::superblock::EraSuperblock::decode(blk);
            sb.current_era += 1_000_000_000;
            *blk = sb.encode(0);
        })
    };
    let mut mono = Monotone::default();
    assert_eq!(mono.era_durable(&aged(&img), 1), vec![]);
    let vs = mono.era_durable(&aged(&fresh), 2);
    // One E3 per threshold era that lost the block, of the newest 257.
    assert_eq!(vs.len(), 256);
    assert!(vs.iter().all(|v| v.id == "E3"));
    assert!(
        vs[0]
            .what
            .starts_with("block 3 was written since era 999999746"),
        "{}",
        vs[0].what
    );
}
