//! The trace and log targets.

use crate::crash::Options;
use crate::logwrites::Log;
use crate::trace::parse;
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

/// The dm-log-writes reader, every payload, and the metadata-log verifier of
/// both targets (crash tier 1, a few samples).
pub fn logwrites(data: &[u8]) {
    let Ok(log) = Log::open(data.to_vec()) else {
        return;
    };
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
