//! Reader tests on hand-made logs, one per rule of REPLAY.md §1.2.

use std::io::Cursor;

use super::*;

fn writer(s: u32) -> LogWriter<Cursor<Vec<u8>>> {
    LogWriter::new(Cursor::new(Vec::new()), s).unwrap()
}

fn bytes(w: LogWriter<Cursor<Vec<u8>>>, close: bool) -> Vec<u8> {
    if close {
        w.close().unwrap().into_inner()
    } else {
        w.cut().unwrap().into_inner()
    }
}

fn sectors(n: usize, s: u32, fill: u8) -> Vec<u8> {
    vec![fill; n * s as usize]
}

fn open(b: Vec<u8>) -> Log<Vec<u8>> {
    Log::open(b).unwrap()
}

#[test]
fn both_sector_sizes_round_trip() {
    for s in [512u32, 4096] {
        let mut w = writer(s);
        w.mark("activated").unwrap();
        w.write(8, &sectors(2, s, 0xaa), 0).unwrap();
        w.write(0, &sectors(1, s, 0xbb), FUA | METADATA).unwrap();
        w.flush().unwrap();
        let log = open(bytes(w, true));
        assert_eq!(log.sector_size, s);
        assert!(log.closed);
        assert_eq!(log.nr_entries, 5);
        let kinds: Vec<String> = log.entries.iter().map(|e| e.flag_names()).collect();
        assert_eq!(kinds, ["MARK", "WRITE", "FUA|METADATA", "FLUSH", "MARK"]);
        let w1 = &log.entries[1];
        assert_eq!((w1.sector, w1.nr_sectors), (8, 2));
        assert_eq!(log.payload(w1).unwrap(), sectors(2, s, 0xaa));
        assert_eq!(log.entries[1].pos, 2 * s as u64);
        assert_eq!(log.entries[2].pos, 5 * s as u64);
        assert!(log.notes.is_empty(), "{:?}", log.notes);
    }
}

#[test]
fn marks_of_length_zero_and_maximum() {
    let s = 512;
    let long = "x".repeat(max_label(s));
    let mut w = writer(s);
    w.mark("").unwrap();
    w.mark(&long).unwrap();
    w.mark(&format!("{long}yz")).unwrap();
    let log = open(bytes(w, true));
    let labels: Vec<&str> = log
        .entries
        .iter()
        .map(|e| e.label.as_deref().unwrap())
        .collect();
    assert_eq!(labels[0], "");
    assert_eq!(labels[1], long);
    assert_eq!(labels[2], long, "cut to what the sector holds");
    // A label one byte too long is malformed.
    let mut b = bytes(
        {
            let mut w = writer(s);
            w.mark("m").unwrap();
            w
        },
        false,
    );
    let e = s as usize;
    b[e + 24..e + 32].copy_from_slice(&((max_label(s) + 1) as u64).to_le_bytes());
    let err = Log::open(b).unwrap_err().to_string();
    assert!(
        err.starts_with("entry 0 (byte 512): a MARK label of 480 bytes"),
        "{err}"
    );
}

#[test]
fn discard_has_no_payload() {
    let s = 512;
    let mut w = writer(s);
    w.discard(64, 1000).unwrap();
    w.write(0, &sectors(1, s, 1), 0).unwrap();
    let log = open(bytes(w, true));
    assert!(log.entries[0].is_discard());
    assert_eq!(log.entries[0].nr_sectors, 1000);
    assert!(log.payload(&log.entries[0]).unwrap().is_empty());
    assert_eq!(
        log.entries[1].pos,
        2 * 512,
        "the next entry follows at once"
    );
    assert_eq!(log.payload(&log.entries[1]).unwrap(), sectors(1, s, 1));
}

#[test]
fn flush_with_data_carries_its_payload() {
    let s = 512;
    let mut w = writer(s);
    w.write(16, &sectors(3, s, 7), FLUSH).unwrap();
    w.flush().unwrap();
    let log = open(bytes(w, true));
    let e = &log.entries[0];
    assert!(e.is_flush() && e.is_write());
    assert_eq!(log.payload(e).unwrap(), sectors(3, s, 7));
    assert_eq!(log.entries[1].pos, 5 * 512);
}

#[test]
fn garbage_in_the_super_padding_is_ignored() {
    let mut w = writer(4096);
    w.flush().unwrap();
    let mut b = bytes(w, true);
    b[28..32].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    b[100] = 0x55; // beyond the struct: never read either
    let log = open(b);
    assert_eq!(log.entries.len(), 2);
}

#[test]
fn garbage_in_an_entry_padding_is_malformed() {
    let mut w = writer(512);
    w.flush().unwrap();
    w.flush().unwrap();
    let mut b = bytes(w, true);
    b[1024 + 32] = 1;
    let err = Log::open(b).unwrap_err().to_string();
    assert!(
        err.starts_with("entry 1 (byte 1024): byte 32 of the entry's sector is 0x01"),
        "{err}"
    );
}

#[test]
fn lagging_nr_entries_is_scanned_past() {
    let s = 512;
    let mut w = writer(s);
    w.mark("q1").unwrap(); // super now counts 1
    w.write(0, &sectors(1, s, 9), 0).unwrap();
    w.flush().unwrap();
    let mut b = bytes(w, false);
    // Stale bytes of an older log after the valid ones must not be read as
    // entries: an all-zero sector ends the scan.
    b.extend(sectors(1, s, 0));
    b.extend(sectors(4, s, 0x77));
    let log = open(b);
    assert_eq!(log.nr_entries, 1);
    assert_eq!(log.entries.len(), 3);
    assert!(!log.closed);
    assert!(log
        .notes
        .iter()
        .any(|n| n.contains("2 more valid ones follow")));
}

#[test]
fn scanning_past_stops_at_the_first_invalid_entry() {
    let s = 512;
    let mut w = writer(s);
    w.mark("a").unwrap();
    w.flush().unwrap();
    let mut b = bytes(w, false);
    // Garbage that looks like a header with unknown flags.
    let mut g = vec![0u8; 512];
    g[16] = 0x80;
    g[8] = 1;
    b.extend(g);
    b.extend(sectors(1, s, 0));
    let log = open(b);
    assert_eq!(log.entries.len(), 2);
}

#[test]
fn truncated_tail_ends_the_log_with_a_note() {
    let s = 512;
    let mut w = writer(s);
    w.write(0, &sectors(4, s, 3), 0).unwrap();
    w.write(8, &sectors(4, s, 4), FUA).unwrap();
    let mut b = bytes(w, false);
    b.truncate(b.len() - 700);
    let log = open(b);
    assert_eq!(log.nr_entries, 2);
    assert_eq!(log.entries.len(), 1);
    let note = log.notes.join("\n");
    assert!(
        note.contains("the super counts 2 entries but the log holds 1"),
        "{note}"
    );
    assert!(note.contains("needs 2048 bytes of payload"), "{note}");
}

#[test]
fn unknown_flag_is_noted_in_counted_entries() {
    let mut w = writer(512);
    w.flush().unwrap();
    let mut b = bytes(w, true);
    b[512 + 16] |= 0x40;
    let log = open(b);
    assert_eq!(log.entries.len(), 2);
    assert!(
        log.notes[0].contains("unknown flag bits 0x40 ignored"),
        "{:?}",
        log.notes
    );
}

#[test]
fn malformed_supers_are_refused() {
    let good = bytes(writer(512), true);
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Damage, &str)> = vec![
        (Box::new(|b| b.truncate(20)), "too short for its super"),
        (Box::new(|b| b[0] ^= 1), "magic is 0x006a736677736873"),
        (Box::new(|b| b[8] = 2), "version 2"),
        (
            Box::new(|b| b[24..28].copy_from_slice(&777u32.to_le_bytes())),
            "sector size is 777",
        ),
    ];
    for (f, want) in cases {
        let mut b = good.clone();
        f(&mut b);
        let err = Log::open(b).unwrap_err().to_string();
        assert!(err.contains(want), "{err} lacks {want}");
    }
}

#[test]
fn malformed_counted_entries_name_the_entry() {
    let s = 512usize;
    let mut w = writer(512);
    w.write(0, &sectors(1, 512, 1), 0).unwrap();
    w.flush().unwrap();
    let good = bytes(w, true);
    let at =
        |b: &mut Vec<u8>, off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    let mut b = good.clone();
    at(&mut b, s + 8, u64::MAX);
    at(&mut b, s, 5);
    assert!(Log::open(b)
        .unwrap_err()
        .to_string()
        .contains("entry 0 (byte 512): sectors 5+"));
    let mut b = good.clone();
    at(&mut b, s + 24, 3);
    assert!(Log::open(b)
        .unwrap_err()
        .to_string()
        .contains("data_len is 3"));
    let mut b = good.clone();
    at(&mut b, 3 * s + 16, DISCARD);
    assert!(Log::open(b)
        .unwrap_err()
        .to_string()
        .contains("entry 1 (byte 1536): a discard of 0 sectors"));
}

#[test]
fn bounds_against_the_device() {
    let mut w = writer(512);
    w.write(7, &sectors(2, 512, 1), 0).unwrap();
    let log = open(bytes(w, true));
    assert!(log.check_bounds(9 * 512).is_ok());
    let err = log.check_bounds(8 * 512).unwrap_err().to_string();
    assert!(err.contains("past the device's 4096 bytes"), "{err}");
}

mod hostile {
    //! No log, however damaged, makes the reader or the metadata verifier
    //! panic: a valid log with bytes changed, cut, or headers rewritten.

    use super::*;
    use crate::verify::log::{meta, meta_nr_blocks, Target};
    use proptest::prelude::*;

    /// A small log of a formatted dm-clone device, made by the model.
    fn seed() -> Vec<u8> {
        let t = crate::trace::parse(
            "dmtrace 1 clone\nconfig size=64 region=8 hydration=off\nwrite at=1+1\nflush\nmark label=q1\nwrite at=20+4 fua\nremove\n",
        )
        .unwrap();
        let o = crate::model::replay::replay_with(
            &t,
            crate::model::replay::ReplayOptions {
                emit_logs: true,
                ..Default::default()
            },
        )
        .unwrap();
        let (_, f) = o.logs.iter().find(|(n, _)| n == "meta.log").unwrap();
        match f {
            crate::model::replay::emit::Emitted::Bytes(b) => b.clone(),
            _ => unreachable!("a log is bytes"),
        }
    }

    fn check(b: Vec<u8>) {
        let Ok(log) = Log::open(b) else { return };
        for e in &log.entries {
            let _ = log.payload(e);
        }
        let nr = meta_nr_blocks(&log, None).min(1 << 12);
        let opts = crate::crash::Options {
            tier: 1,
            samples: 4,
            seed: 0,
            atomic_unit: 512,
        };
        for target in [Target::Clone, Target::Era] {
            let _ = meta::verify(target, &log, nr, Default::default(), opts, &mut |_| {});
        }
        // The same bytes as a data or user log, and as a trace.
        if let Ok(d) = crate::verify::log::data::DataLog::replay(&log, true) {
            let _ = d.acked();
            let _ = d.last(0);
        }
        let extra = crate::verify::log::conformance::Extra {
            before_mark: &|_, _| Vec::new(),
            after_each: &["commit"],
            after_mark: &|_, _| Vec::new(),
            at_end: Vec::new(),
            split: Some(8),
            defer_fua: true,
        };
        let text = crate::verify::log::conformance::to_trace(
            Target::Clone,
            &log,
            "config size=64 region=8 hydration=off",
            true,
            &extra,
        );
        let _ = crate::trace::parse(&text);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn changed_bytes(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16)) {
            let mut b = seed();
            let n = b.len();
            for (at, v) in edits {
                b[at % n] = v;
            }
            check(b);
        }

        #[test]
        fn cut_anywhere(at in any::<usize>()) {
            let mut b = seed();
            let n = b.len();
            b.truncate(at % n);
            check(b);
        }

        #[test]
        fn rewritten_headers(entry in 0usize..40, field in 0usize..4, v in prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>(), 0..64u64]) {
            let mut b = seed();
            let log = Log::open(b.clone()).unwrap();
            if let Some(e) = log.entries.get(entry % log.entries.len()) {
                let at = e.pos as usize + field * 8;
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            check(b);
        }
    }
}
