//! Unit tests of the model paths, driving the models directly.

use crate::clone::check::check as clone_check;
use crate::era::check::check as era_check;
use crate::era::invalidate::{invalidate, InvalidateOptions};
use crate::model::clone::{CloneConfig, CloneModel};
use crate::model::era::{EraConfig, EraModel};
use crate::model::{ModelError, WriteReq};

fn w(start: u64, end: u64, fua: bool, id: Option<String>, is_async: bool) -> WriteReq {
    WriteReq {
        start,
        end,
        fua,
        id,
        is_async,
        ..Default::default()
    }
}
use crate::sim::Origin;
use crate::trace::{CloneMsg, CrashMode, Init, Variant, WaitFor};

fn clone_cfg(size: u64, region: u64, hydration: bool) -> CloneConfig {
    CloneConfig {
        size,
        region_size: region,
        meta_blocks: 256,
        hydration,
        threshold: 1,
        batch: 1,
        discard_passdown: true,
        dest_init: Init::Stamp,
        source_init: Init::Stamp,
        discard_zeroes: false,
        meta_writethrough: false,
        dest_writethrough: false,
        copy_us: 1000,
    }
}

fn clone(size: u64, region: u64) -> CloneModel {
    CloneModel::new(clone_cfg(size, region, false), Variant::Fixed, 0).unwrap()
}

fn committed_hydrated(m: &CloneModel) -> Vec<(u64, u64)> {
    let img = m.meta_image();
    let o = clone_check(&img, &Default::default());
    assert!(!o.report.has_errors(), "{:?}", o.report.first_error());
    let mut out = Vec::new();
    crate::clone::dump::dump(&img, &mut out, false).unwrap();
    let xml = String::from_utf8(out).unwrap();
    xml.lines()
        .filter(|l| l.contains("<hydrated"))
        .map(|l| {
            let num = |k: &str| -> u64 {
                let i = l.find(k).unwrap() + k.len() + 2;
                l[i..].split('"').next().unwrap().parse().unwrap()
            };
            (num("begin"), num("end"))
        })
        .collect()
}

#[test]
fn fresh_clone_metadata_checks_clean() {
    let m = clone(1000, 64);
    assert_eq!(m.nr_regions(), 16);
    assert_eq!(m.commits(), 0, "formatting is not a commit of the target");
    assert!(committed_hydrated(&m).is_empty());
}

#[test]
fn partial_write_copies_the_region_and_a_flush_commits_it() {
    let mut m = clone(1024, 64);
    m.write(w(70, 71, false, Some("w1".into()), false)).unwrap();
    assert_eq!(m.is_done("w1"), Some(true));
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(1, 2)]);
    // Source content copied around the user sector.
    assert_eq!(m.read_sector(64, true).origin, Origin::Init(0));
    assert_eq!(m.read_sector(70, true).origin, Origin::User(0));
    assert!(
        committed_hydrated(&m).is_empty(),
        "not committed before a flush"
    );
    m.flush(None, false).unwrap();
    assert_eq!(m.commits(), 1);
    assert_eq!(committed_hydrated(&m), vec![(1, 2)]);
    // The dest flush came before the commit: the copy is durable.
    assert_eq!(
        m.dest.durable_at(64).map(|v| v.origin),
        Some(Origin::Init(0))
    );
}

#[test]
fn write_spanning_regions_is_split_and_full_regions_are_overwrites() {
    let mut m = clone(1024, 64);
    m.write(w(32, 200, false, None, false)).unwrap();
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(0, 4)]);
    // Region 1 and 2 were overwritten whole: no source data in them.
    assert_eq!(m.read_sector(64, true).origin, Origin::User(0));
    assert_eq!(m.read_sector(0, true).origin, Origin::Init(0));
}

#[test]
fn periodic_commit_after_a_second() {
    let mut m = clone(1024, 64);
    m.write(w(0, 8, false, None, false)).unwrap();
    m.advance(999).unwrap();
    assert_eq!(m.commits(), 0);
    m.advance(1000).unwrap();
    assert_eq!(m.commits(), 1);
    assert_eq!(committed_hydrated(&m), vec![(0, 1)]);
}

#[test]
fn status_commits_unless_noflush() {
    let mut m = clone(1024, 64);
    m.write(w(0, 8, false, None, false)).unwrap();
    let s = m.status(true).unwrap();
    assert!(s.contains(" 1/16 "), "{s}");
    assert_eq!(m.commits(), 0);
    m.status(false).unwrap();
    assert_eq!(m.commits(), 1);
}

#[test]
fn fua_overwrite_completes_after_the_commit() {
    let mut m = clone(1024, 64);
    m.write(w(64, 128, true, Some("f".into()), false)).unwrap();
    // Completed within the statement, after a commit that records region 1.
    assert_eq!(m.is_done("f"), Some(true));
    assert_eq!(m.commits(), 1);
    assert_eq!(committed_hydrated(&m), vec![(1, 2)]);
}

#[test]
fn discard_marks_only_whole_regions() {
    let mut m = clone(1024, 64);
    m.discard(10, 200, None, false).unwrap();
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(1, 3)]);
    m.discard(300, 310, None, false).unwrap(); // inside region 4: nothing
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(1, 3)]);
    assert_eq!(m.read_sector(64, true).origin, Origin::Discarded);
}

/// Region 0 hydrated, then a commit whose destination flush region 1's copy
/// completes after: the commit's metadata phases are still to come.
fn hydrate_across_a_commit(m: &mut CloneModel) {
    m.hydrate_start(0, 1).unwrap();
    m.hydrate_done(0).unwrap();
    m.hydrate_start(1, 2).unwrap();
    m.commit_pre().unwrap();
    m.commit_flush_dest().unwrap();
    m.hydrate_done(1).unwrap();
}

#[test]
fn two_phase_commit_keeps_late_hydrations_for_the_next_transaction() {
    let mut m = clone(1024, 64);
    hydrate_across_a_commit(&mut m);
    m.commit_meta().unwrap();
    m.commit_super().unwrap();
    assert_eq!(committed_hydrated(&m), vec![(0, 1)]);
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(0, 2)]);
    m.commit().unwrap();
    assert_eq!(committed_hydrated(&m), vec![(0, 2)]);
}

/// `process_deferred_flush_bios` takes the deferred PREFLUSH bios before it
/// commits: a flush that arrives during the commit waits for the next one,
/// which records what the flush found in core. (Found by the `replay` fuzz
/// target as I7 on the fixed model, which completed it with this commit.)
#[test]
fn a_flush_arriving_during_a_commit_waits_for_the_next_commit() {
    let mut m = clone(1024, 64);
    hydrate_across_a_commit(&mut m);
    m.flush(Some("f".into()), false).unwrap();
    assert_eq!(m.is_done("f"), Some(false));
    m.commit_meta().unwrap();
    m.commit_super().unwrap();
    // The worker's next run commits region 1, then completes the flush.
    assert_eq!(m.is_done("f"), Some(true));
    assert_eq!(m.commits(), 2);
    assert_eq!(committed_hydrated(&m), vec![(0, 2)]);
}

#[test]
fn live_bitmap_variant_commits_late_hydrations() {
    let mut m = CloneModel::new(clone_cfg(1024, 64, false), Variant::LiveBitmapCommit, 0).unwrap();
    hydrate_across_a_commit(&mut m);
    m.commit_meta().unwrap();
    m.commit_super().unwrap();
    assert_eq!(committed_hydrated(&m), vec![(0, 2)]);
    // ... while the copy of region 1 is not durable on the destination.
    assert_eq!(m.dest.durable_at(64), None);
}

#[test]
fn phases_out_of_order_are_refused() {
    let mut m = clone(1024, 64);
    assert!(matches!(m.commit_meta(), Err(ModelError::NotEnabled(_))));
    assert!(matches!(m.commit_super(), Err(ModelError::NotEnabled(_))));
    assert!(matches!(m.hydrate_done(3), Err(ModelError::NotEnabled(_))));
    m.commit_pre().unwrap();
    assert!(matches!(m.commit_pre(), Err(ModelError::NotEnabled(_))));
    m.write(w(0, 1, false, Some("a".into()), true)).unwrap();
    assert!(matches!(m.complete("a"), Err(ModelError::NotEnabled(_))));
}

#[test]
fn background_hydration_follows_threshold_and_batch() {
    let mut cfg = clone_cfg(64 * 100, 64, true);
    cfg.threshold = 8;
    cfg.batch = 4;
    let mut m = CloneModel::new(cfg, Variant::Fixed, 0).unwrap();
    // Resume started the first round: 8 regions in flight, in 2 copies.
    m.advance(1).unwrap();
    assert_eq!(m.nr_hydrated(), 8);
    m.wait(WaitFor::All).unwrap();
    assert_eq!(m.nr_hydrated(), 100);
    assert!(m.now() >= 12, "{} ms", m.now());
    m.remove().unwrap();
    assert_eq!(committed_hydrated(&m), vec![(0, 100)]);
}

#[test]
fn enable_hydration_message_starts_background_copies() {
    let mut m = clone(64 * 10, 64);
    m.advance(5).unwrap();
    assert_eq!(m.nr_hydrated(), 0);
    m.message(CloneMsg::EnableHydration).unwrap();
    m.advance(20).unwrap();
    assert_eq!(m.nr_hydrated(), 10);
}

#[test]
fn crash_keeps_only_durable_metadata_and_recover_reopens() {
    let mut m = clone(1024, 64);
    m.write(w(0, 8, false, None, false)).unwrap();
    m.flush(None, false).unwrap();
    m.write(w(64, 72, false, None, false)).unwrap();
    m.crash(&CrashMode::Durable).unwrap();
    assert_eq!(committed_hydrated(&m), vec![(0, 1)]);
    m.recover().unwrap();
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(0, 1)]);
    m.write(w(64, 72, false, None, false)).unwrap();
    m.remove().unwrap();
    assert_eq!(committed_hydrated(&m), vec![(0, 2)]);
}

fn era_cfg(size: u64, block: u64) -> EraConfig {
    EraConfig {
        size,
        block_size: block,
        meta_blocks: 256,
        start_era: 1,
        origin_init: Init::Stamp,
        discard_zeroes: false,
        meta_writethrough: false,
        origin_writethrough: false,
        manual_worker: false,
    }
}

fn since(m: &EraModel, e: u32) -> Vec<(u64, u64)> {
    let img = m.meta_image();
    let o = era_check(&img, &Default::default());
    assert!(!o.report.has_errors(), "{:?}", o.report.first_error());
    invalidate(
        &img,
        InvalidateOptions {
            written_since: e,
            metadata_snapshot: false,
        },
    )
    .unwrap()
    .runs()
    .collect()
}

#[test]
fn era_write_is_recorded_durably_before_it_reaches_the_origin() {
    let mut m = EraModel::new(era_cfg(1024, 8), Variant::Fixed, 0).unwrap();
    assert_eq!(m.current_era(), Some(1));
    m.write(w(24, 32, false, None, false)).unwrap();
    assert_eq!(since(&m, 1), vec![(3, 4)]);
    m.checkpoint().unwrap();
    assert_eq!(m.current_era(), Some(2));
    m.write(w(40, 48, false, None, false)).unwrap();
    assert_eq!(since(&m, 2), vec![(5, 6)]);
    assert_eq!(since(&m, 1), vec![(3, 4), (5, 6)]);
    m.remove().unwrap();
    assert_eq!(since(&m, 2), vec![(5, 6)]);
}

#[test]
fn era_crash_then_recovery_archives_the_current_writeset() {
    let mut m = EraModel::new(era_cfg(1024, 8), Variant::Fixed, 0).unwrap();
    m.write(w(40, 48, false, None, false)).unwrap();
    m.checkpoint().unwrap();
    m.write(w(56, 64, false, None, false)).unwrap();
    m.crash(&CrashMode::Durable).unwrap();
    assert_eq!(since(&m, 2), vec![(7, 8)]);
    m.recover().unwrap();
    assert_eq!(m.current_era(), Some(3));
    assert_eq!(since(&m, 2), vec![(7, 8)]);
}

#[test]
fn era_explicit_worker_phases_defer_the_second_write() {
    let mut cfg = era_cfg(1024, 8);
    cfg.manual_worker = true;
    let mut m = EraModel::new(cfg.clone(), Variant::Fixed, 0).unwrap();
    m.write(w(24, 32, false, Some("a".into()), true)).unwrap();
    m.worker_mark().unwrap();
    m.commit_meta().unwrap();
    m.write(w(24, 32, false, Some("b".into()), false)).unwrap();
    assert_eq!(
        m.is_done("b"),
        Some(false),
        "fixed: b waits for the in-core bit"
    );
    let mut m = EraModel::new(cfg, Variant::IncoreBitBeforeCommit, 0).unwrap();
    m.write(w(24, 32, false, Some("a".into()), true)).unwrap();
    m.worker_mark().unwrap();
    m.commit_meta().unwrap();
    m.write(w(24, 32, false, Some("b".into()), false)).unwrap();
    assert_eq!(
        m.is_done("b"),
        Some(true),
        "buggy: b passes before the commit"
    );
}

#[test]
fn era_snapshot_and_digest() {
    let mut m = EraModel::new(era_cfg(64 * 8, 8), Variant::Fixed, 0).unwrap();
    for b in 0..10 {
        m.write(w(b * 8, b * 8 + 8, false, None, false)).unwrap();
    }
    m.checkpoint().unwrap();
    m.write(w(0, 8, false, None, false)).unwrap(); // digest runs
    m.snap_take().unwrap();
    m.write(w(80, 88, false, None, false)).unwrap();
    m.snap_drop().unwrap();
    m.remove().unwrap();
    assert_eq!(since(&m, 1), vec![(0, 11)]);
    assert_eq!(since(&m, 2), vec![(0, 1), (10, 11)]);
    assert_eq!(since(&m, 3), vec![(10, 11)]);
    assert!(since(&m, 4).is_empty());
}

#[test]
fn fua_write_to_a_hydrated_region_waits_for_the_commit_of_changes() {
    let mut m = clone(1024, 64);
    m.write(w(0, 8, false, None, false)).unwrap(); // region 0 hydrated, uncommitted
    assert_eq!(m.commits(), 0);
    // bio_triggers_commit: a FUA bio after a change is deferred until a commit.
    m.write(w(0, 8, true, Some("f".into()), false)).unwrap();
    assert_eq!(m.is_done("f"), Some(true));
    assert_eq!(m.commits(), 1);
    // Nothing changed since: a FUA write passes straight down.
    m.write(w(0, 8, true, None, false)).unwrap();
    assert_eq!(m.commits(), 1);
}

#[test]
fn preflush_write_sends_the_flush_first() {
    let mut m = clone(1024, 64);
    m.write(w(64, 72, false, None, false)).unwrap();
    let mut req = w(0, 8, false, Some("p".into()), false);
    req.preflush = true;
    m.write(req).unwrap();
    // The flush committed region 1 before the data went down.
    assert_eq!(m.commits(), 1);
    assert_eq!(committed_hydrated(&m), vec![(1, 2)]);
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(0, 2)]);
    assert_eq!(m.is_done("p"), Some(true));
}

#[test]
fn unhydrated_reads_come_from_the_source_and_discards_are_trimmed() {
    let mut m = clone(1024, 64);
    assert_eq!(m.read_sector(70, false).origin, Origin::Init(0));
    m.discard(10, 200, None, false).unwrap();
    // Passed down trimmed to regions 1..3: sector 10 (region 0) keeps its data.
    assert_eq!(m.dest.read(10), None);
    assert_eq!(m.dest.read(64).map(|v| v.origin), Some(Origin::Discarded));
    assert_eq!(m.dest.read(191).map(|v| v.origin), Some(Origin::Discarded));
    assert_eq!(m.dest.read(192), None);
    let mut cfg = clone_cfg(1024, 64, false);
    cfg.discard_passdown = false;
    let mut m = CloneModel::new(cfg, Variant::Fixed, 0).unwrap();
    m.discard(10, 200, None, false).unwrap();
    assert_eq!(m.in_core_hydrated().unwrap(), vec![(1, 3)]);
    assert_eq!(m.dest.read(64), None, "no passdown");
}

#[test]
fn suspend_commits_and_stops_background_hydration() {
    let mut m = CloneModel::new(clone_cfg(64 * 50, 64, true), Variant::Fixed, 0).unwrap();
    m.advance(1).unwrap();
    let before = m.nr_hydrated();
    assert!(before > 0 && before < 50);
    m.suspend().unwrap();
    let at_suspend = m.nr_hydrated();
    assert_eq!(committed_hydrated(&m), vec![(0, at_suspend)]);
    m.advance(1000).unwrap();
    assert_eq!(m.nr_hydrated(), at_suspend, "no hydration while suspended");
    m.resume().unwrap();
    m.wait(WaitFor::All).unwrap();
    assert_eq!(m.nr_hydrated(), 50);
}

#[test]
fn era_digest_moves_one_hundred_bits_a_step() {
    let mut cfg = era_cfg(8 * 300, 8);
    cfg.manual_worker = true;
    let mut m = EraModel::new(cfg, Variant::Fixed, 0).unwrap();
    for b in [5, 150, 250] {
        m.write(w(b * 8, b * 8 + 8, false, None, false)).unwrap();
        m.worker().unwrap();
    }
    m.checkpoint().unwrap(); // era 1 archived, era 2 current
                             // Lookup, then 3 transcribe steps of 100 bits, then the removal.
    m.digest_step(1).unwrap(); // lookup
    m.digest_step(1).unwrap(); // bits 0..100
    m.worker_commit().unwrap();
    let img = m.meta_image();
    let mut xml = Vec::new();
    crate::era::dump(&img, &mut xml, Default::default()).unwrap();
    let xml = String::from_utf8(xml).unwrap();
    assert!(
        xml.contains("<era block=\"5\" era=\"1\"/>"),
        "first 100 bits digested"
    );
    assert!(
        xml.contains("<era block=\"150\" era=\"0\"/>"),
        "second step not run"
    );
    assert!(xml.contains("<writeset era=\"1\""), "still archived");
    m.digest_step(3).unwrap(); // bits 100..300, then the removal
    m.worker_commit().unwrap();
    let img = m.meta_image();
    let mut xml = Vec::new();
    crate::era::dump(&img, &mut xml, Default::default()).unwrap();
    let xml = String::from_utf8(xml).unwrap();
    assert!(xml.contains("<era block=\"250\" era=\"1\"/>"));
    assert!(
        !xml.contains("<writeset era=\"1\""),
        "removed after transcription"
    );
}

#[test]
fn era_status_is_an_rpc_and_commits() {
    let mut m = EraModel::new(era_cfg(1024, 8), Variant::Fixed, 0).unwrap();
    let c = m.commits();
    let s = m.status().unwrap();
    assert!(s.ends_with(" 1 -"), "{s}");
    assert_eq!(m.commits(), c + 1);
}

#[test]
fn era_discard_marks_every_block_it_overlaps_and_the_variant_only_its_first() {
    // Sectors 12..28 at 8 sectors a block: blocks 1 (partly), 2 and 3 (partly).
    for (variant, marked) in [
        (Variant::Fixed, vec![(1, 4)]),
        (Variant::DiscardFirstBlockOnly, vec![(1, 2)]),
    ] {
        let mut m = EraModel::new(era_cfg(1024, 8), variant, 0).unwrap();
        m.discard(12, 28, None, false).unwrap();
        assert_eq!(since(&m, 1), marked, "{variant}");
        // A discard inside one block marks that block alone on both.
        m.discard(41, 42, None, false).unwrap();
        let mut want = marked.clone();
        want.push((5, 6));
        assert_eq!(since(&m, 1), want, "{variant}");
        // Writes are split at block boundaries: every block is marked on both.
        m.write(w(60, 84, false, None, false)).unwrap();
        want.push((7, 11));
        assert_eq!(since(&m, 1), want, "{variant}");
    }
}

#[test]
fn era_e2_fires_on_a_crash_after_a_discard_that_marked_only_its_first_block() {
    use crate::verify::EraChecker;
    for (variant, fires) in [
        (Variant::Fixed, false),
        (Variant::DiscardFirstBlockOnly, true),
    ] {
        let mut m = EraModel::new(era_cfg(1024, 8), variant, 0).unwrap();
        m.discard(8, 32, None, false).unwrap();
        // The power cut after the discard completed: what is durable.
        let img = m.meta_image();
        let v = EraChecker::new(&m).check(&img, 2, "s");
        let e2: Vec<_> = v.iter().filter(|x| x.id == "E2").collect();
        if fires {
            assert_eq!(e2.len(), 1, "{variant}: {v:?}");
            assert!(
                e2[0].what.starts_with(
                    "block 2 was discarded (the discard covers blocks 1..=3) in era 1"
                ),
                "{}",
                e2[0]
            );
        } else {
            assert!(v.is_empty(), "{variant}: {v:?}");
        }
    }
}

#[test]
fn invariant_checks_fire_on_hand_made_bad_states() {
    use crate::sim::{DataVal, Io, IoKind};
    use crate::verify::{clone_suspended, CloneChecker};
    // I6: a write to the source.
    let mut m = clone(1024, 64);
    m.source
        .submit(Io {
            kind: IoKind::Write,
            start: 0,
            end: 1,
            val: Some(DataVal {
                origin: Origin::Zero,
                sector: 0,
            }),
            fua: false,
        })
        .unwrap();
    let img = m.meta_image();
    let v = CloneChecker::new(&m).check(&img, 1, "s");
    assert!(v.iter().any(|x| x.id == "I6"), "{v:?}");
    // I2: the destination copy of a committed region was lost.
    let mut m = clone(1024, 64);
    m.write(w(0, 8, false, None, false)).unwrap();
    m.flush(None, false).unwrap();
    // The region's content is replaced by the destination's initial content.
    m.dest
        .submit(Io {
            kind: IoKind::Write,
            start: 0,
            end: 64,
            val: Some(m.dest_base(0)),
            fua: true,
        })
        .unwrap();
    let img = m.meta_image();
    let v = CloneChecker::new(&m).check(&img, 2, "s");
    assert!(
        v.iter()
            .any(|x| x.id == "I2" && x.what.contains("lost hydration")),
        "{v:?}"
    );
    // I7: a suspended target whose durable set differs from the in-core one.
    let mut m = clone(1024, 64);
    m.suspend().unwrap();
    let fresh = m.meta_image();
    let mut m2 = clone(1024, 64);
    m2.write(w(0, 8, false, None, false)).unwrap();
    m2.suspend().unwrap();
    assert!(clone_suspended(&m2, &m2.meta_image(), 3).is_none());
    assert!(clone_suspended(&m2, &fresh, 3).is_some());
}
