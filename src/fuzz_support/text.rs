//! The trace and log targets.

use crate::crash::Options;
use crate::io::BLOCK_SIZE;
use crate::logwrites::Log;
use crate::model::replay::{replay_with, ReplayOptions};
use crate::trace::{parse, Event, Variant};
use crate::verify::log::{check_meta_log, meta, meta_nr_blocks, Target};

/// The dmtrace parser: whatever parses prints to text that parses back to the
/// same trace.
pub fn dmtrace(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut t) = parse(text) else {
        return;
    };
    let printed = t.to_string();
    let mut again = match parse(&printed) {
        Ok(t) => t,
        Err(e) => panic!("printed trace does not parse: {e}\n{printed}"),
    };
    t.renumber();
    again.renumber();
    assert!(
        again == t,
        "printed trace parses to another trace:\n{printed}"
    );
    assert_eq!(again.to_string(), printed, "printing is not a fixed point");
}

/// The largest target the replay target runs (sectors), its most regions or
/// era blocks, its largest metadata device (sectors) and most statements: the
/// fuzzer looks for panics, hangs and wrong verdicts in the models and the
/// crash-state checks, not for long runs of large targets.
const REPLAY_MAX_SECTORS: u64 = 1 << 20;
const REPLAY_MAX_UNITS: u64 = 4096;
const REPLAY_MAX_META_SECTORS: u64 = 1 << 15;
const REPLAY_MAX_STATEMENTS: usize = 64;

/// The reference models on whatever trace parses (within the bounds above),
/// with a crash point after every statement (tier 1). On the fixed model no
/// invariant may break: the kernel's fixed commit paths keep them all.
pub fn replay(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse(text) else {
        return;
    };
    if t.stmts.len() > REPLAY_MAX_STATEMENTS {
        return;
    }
    for s in &t.stmts {
        if let Event::Config(c) = &s.event {
            let size = c.size.unwrap_or(0);
            let unit = c.region.or(c.block).unwrap_or(8).max(1);
            if size > REPLAY_MAX_SECTORS
                || size / unit > REPLAY_MAX_UNITS
                || c.meta_size.unwrap_or(0) > REPLAY_MAX_META_SECTORS
            {
                return;
            }
        }
    }
    let mut opts = ReplayOptions {
        every_statement: true,
        ..Default::default()
    };
    opts.crash.tier = 1;
    opts.crash.samples = 4;
    let Ok(out) = replay_with(&t, opts) else {
        return;
    };
    if t.header.variant.unwrap_or_default() == Variant::Fixed {
        assert!(
            out.violations.is_empty(),
            "the fixed model breaks an invariant: {}\n{text}",
            out.violations
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

/// The dm-log-writes reader, every payload, and the metadata-log verifier of
/// both targets (crash tier 1, a few samples); then, when a superblock write
/// of the log fails its checksum, the same on the log with every superblock
/// re-stamped, so that mutations reach the sizes and eras a superblock
/// carries (which drive what the verifier allocates).
pub fn logwrites(data: &[u8]) {
    let Ok(log) = Log::open(data.to_vec()) else {
        return;
    };
    let stamped = restamp_superblocks(&log, data);
    verify_log(log);
    if let Some(d) = stamped {
        if let Ok(log) = Log::open(d) {
            verify_log(log);
        }
    }
}

/// `data` (the bytes of `log`) with the checksum of every write of a dm-clone
/// or dm-era superblock to block 0 stamped anew; `None` when none changed.
fn restamp_superblocks(log: &Log<Vec<u8>>, data: &[u8]) -> Option<Vec<u8>> {
    use crate::clone::superblock::CLONE_MAGIC;
    use crate::era::superblock::ERA_MAGIC;
    use crate::pdata::checksum::{stamp, verify, BlockKind};
    use crate::superblock::MAGIC_OFFSET;
    let s = log.sector_size as u64;
    let mut out = data.to_vec();
    let mut changed = false;
    for e in log.entries.iter().filter(|e| e.is_write() && e.sector == 0) {
        let at = e.pos.saturating_add(s) as usize;
        if e.nr_sectors.saturating_mul(s) < BLOCK_SIZE as u64 || at + BLOCK_SIZE > out.len() {
            continue;
        }
        let mut b = [0u8; BLOCK_SIZE];
        b.copy_from_slice(&out[at..at + BLOCK_SIZE]);
        let magic = u64::from_le_bytes(b[MAGIC_OFFSET..MAGIC_OFFSET + 8].try_into().unwrap());
        let kind = match magic {
            CLONE_MAGIC => BlockKind::CloneSuperblock,
            ERA_MAGIC => BlockKind::EraSuperblock,
            _ => continue,
        };
        if verify(&b, 0, kind).is_err() {
            stamp(&mut b, 0, kind);
            out[at..at + BLOCK_SIZE].copy_from_slice(&b);
            changed = true;
        }
    }
    changed.then_some(out)
}

/// The reader's payloads and the metadata-log verifier of both targets on
/// `log`.
fn verify_log(log: Log<Vec<u8>>) {
    let s = log.sector_size as u64;
    for e in &log.entries {
        if let Ok(p) = log.payload(e) {
            if e.is_write() {
                assert_eq!(p.len() as u64, e.nr_sectors * s, "payload of {e}");
            }
        }
    }
    let nr = meta_nr_blocks(&log, None);
    if check_meta_log(&log, nr, "fuzzed log").is_err() {
        return;
    }
    let opts = Options {
        tier: 1,
        samples: 4,
        seed: 0,
        atomic_unit: log.sector_size as usize,
    };
    for target in [Target::Clone, Target::Era] {
        let _ = meta::verify(target, &log, nr, Default::default(), opts, &mut |_| {});
    }
}
