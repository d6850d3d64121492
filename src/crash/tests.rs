//! Unit tests of the crash-state spaces and their tiers on hand-made device
//! histories, with the expected state sets written out.

use super::*;
use crate::sim::{new_clock, Io, IoKind};
use std::collections::HashSet;

fn blk(v: u8) -> MetaVal {
    MetaVal(Arc::new([v; BLOCK_SIZE]))
}

fn write(d: &mut SimDisk<MetaVal>, b: u64, v: u8) -> u64 {
    d.issue(Io {
        kind: IoKind::Write,
        start: b,
        end: b + 1,
        val: Some(blk(v)),
        fua: false,
    })
    .unwrap()
}

fn flush(d: &mut SimDisk<MetaVal>) {
    d.submit(Io {
        kind: IoKind::Flush,
        start: 0,
        end: 0,
        val: None,
        fua: false,
    })
    .unwrap();
}

fn space() -> MetaSpace {
    // Block 1 durable (1); then blocks 2 (2) and 0 (3) completed, block 3 (4)
    // in flight.
    let mut d = SimDisk::new(8, false, new_clock());
    let a = write(&mut d, 1, 1);
    d.complete(a).unwrap();
    flush(&mut d);
    let b = write(&mut d, 2, 2);
    d.complete(b).unwrap();
    let c = write(&mut d, 0, 3);
    d.complete(c).unwrap();
    write(&mut d, 3, 4);
    MetaSpace::capture(&d)
}

fn first_bytes(img: &MetaImage) -> Vec<u8> {
    use crate::io::BlockDevice;
    (0..4)
        .map(|b| {
            let mut x = [0u8; BLOCK_SIZE];
            img.read(b, &mut x).unwrap();
            x[0]
        })
        .collect()
}

#[test]
fn t0_states_are_durable_landed_and_newest_superblock() {
    let s = space();
    assert_eq!(s.pending.len(), 3);
    assert!(s.pending[2].inflight);
    let (states, _) = s.enumerate(&Options {
        tier: 0,
        ..Default::default()
    });
    let imgs: Vec<Vec<u8>> = states
        .iter()
        .map(|c| first_bytes(&s.image(c, 512)))
        .collect();
    assert_eq!(
        imgs,
        vec![vec![0, 1, 0, 0], vec![3, 1, 2, 0], vec![3, 1, 0, 0]]
    );
}

#[test]
fn t1_and_t2_cover_every_subset_once() {
    let s = space();
    let (t1, _) = s.enumerate(&Options {
        tier: 1,
        ..Default::default()
    });
    // T0's 3, plus block 2 alone and the in-flight block 3 alone (every
    // other keep-one or drop-one state is one of those). Blocks 0..4 of
    // each state: the superblock (3), block 1 (durable 1), block 2 (2),
    // block 3 (4, in flight).
    let sorted = |states: &[Choice]| {
        let mut v: Vec<Vec<u8>> = states
            .iter()
            .map(|c| first_bytes(&s.image(c, 512)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&t1),
        vec![
            vec![0, 1, 0, 0],
            vec![0, 1, 0, 4],
            vec![0, 1, 2, 0],
            vec![3, 1, 0, 0],
            vec![3, 1, 2, 0],
        ]
    );
    let (t2, total) = s.enumerate(&Options {
        tier: 2,
        ..Default::default()
    });
    // Every subset of the three pending writes, each once.
    assert_eq!(
        sorted(&t2),
        vec![
            vec![0, 1, 0, 0],
            vec![0, 1, 0, 4],
            vec![0, 1, 2, 0],
            vec![0, 1, 2, 4],
            vec![3, 1, 0, 0],
            vec![3, 1, 0, 4],
            vec![3, 1, 2, 0],
            vec![3, 1, 2, 4],
        ]
    );
    assert!(total > 8);
}

/// Over 12 pending writes, T2 is every subset of at most two of them plus
/// `samples` seeded random subsets: reproducible for a seed.
#[test]
fn t2_beyond_twelve_writes_is_pairs_plus_seeded_samples() {
    let mut d = SimDisk::new(32, false, new_clock());
    for b in 1..=14u64 {
        let w = write(&mut d, b, b as u8);
        d.complete(w).unwrap();
    }
    let s = MetaSpace::capture(&d);
    assert_eq!(s.pending.len(), 14);
    let opts = |samples, seed| Options {
        tier: 2,
        samples,
        seed,
        ..Default::default()
    };
    let landed = |c: &Choice| c.landed.iter().filter(|&&x| x).count();
    let (none, _) = s.enumerate(&opts(0, 0));
    // T0: nothing, all 14 (no superblock write); T1 adds the 13s; pairs
    // and singles: 1 + 14 + 91 + 14 (drop-one) + 1 (all) = 121.
    assert_eq!(none.len(), 121);
    assert_eq!(none.iter().filter(|c| landed(c) == 2).count(), 91);
    assert!(none.iter().all(|c| matches!(landed(c), 0..=2 | 13 | 14)));
    let (a, _) = s.enumerate(&opts(20, 7));
    let (b, _) = s.enumerate(&opts(20, 7));
    let (c, _) = s.enumerate(&opts(20, 8));
    assert_eq!(a, b, "the same seed gives the same states");
    assert_ne!(a, c, "another seed gives others");
    assert!(a.len() > none.len() && a.len() <= none.len() + 20);
}

#[test]
fn t3_tears_block_writes_at_the_atomic_unit() {
    let s = space();
    let (t3, _) = s.enumerate(&Options {
        tier: 3,
        ..Default::default()
    });
    let torn = t3
        .iter()
        .find(|c| c.torn == Some((1, 1)))
        .expect("prefix of one unit");
    let img = s.image(torn, 512);
    use crate::io::BlockDevice;
    let mut b = [0u8; BLOCK_SIZE];
    img.read(0, &mut b).unwrap();
    assert_eq!(b[0], 3);
    assert_eq!(b[512], 0, "the rest of the superblock did not land");
    let (t3_4k, _) = s.enumerate(&Options {
        tier: 3,
        atomic_unit: 4096,
        ..Default::default()
    });
    assert!(t3_4k.iter().all(|c| c.torn.is_none()));
}

#[test]
fn ids_round_trip() {
    let s = space();
    let (states, _) = s.enumerate(&Options {
        tier: 3,
        ..Default::default()
    });
    for c in states {
        let id = c.id(12);
        let (cp, back) = Choice::parse(&id, 3).unwrap();
        assert_eq!((cp, back), (12, c), "{id}");
    }
    assert!(Choice::parse("cp1.m10", 3).is_err());
    assert!(Choice::parse("nope", 3).is_err());
}

#[test]
fn fingerprints_are_equal_exactly_when_images_are() {
    // Two spaces of one device: the states at its capture, and the states
    // once block 2 is durable, every state of both at tier 3.
    let mut d = SimDisk::new(8, false, new_clock());
    let a = write(&mut d, 1, 1);
    d.complete(a).unwrap();
    flush(&mut d);
    let b = write(&mut d, 2, 2);
    d.complete(b).unwrap();
    let c = write(&mut d, 0, 3);
    d.complete(c).unwrap();
    let e = write(&mut d, 2, 0); // zeroes over block 2: as never written
    let first = MetaSpace::capture(&d);
    d.complete(e).unwrap();
    flush(&mut d);
    write(&mut d, 3, 4);
    let second = MetaSpace::capture(&d);
    let opts = Options {
        tier: 3,
        ..Default::default()
    };
    let mut hashes = BlockHashes::default();
    let mut all: Vec<(u128, Vec<u8>)> = Vec::new();
    for s in [&first, &second] {
        let base = s.base_fingerprint(&mut hashes);
        for c in s.enumerate(&opts).0 {
            let img = s.image(&c, 512);
            let mut bytes = Vec::new();
            for b in 0..4 {
                let mut x = [0u8; BLOCK_SIZE];
                use crate::io::BlockDevice;
                img.read(b, &mut x).unwrap();
                bytes.extend_from_slice(&x);
            }
            all.push((s.fingerprint(&c, 512, base, &mut hashes), bytes));
        }
    }
    let mut equal = 0;
    for (i, (k1, b1)) in all.iter().enumerate() {
        for (k2, b2) in &all[i + 1..] {
            assert_eq!(k1 == k2, b1 == b2);
            equal += (b1 == b2) as usize;
        }
    }
    assert!(equal > 0, "the spaces share images");
    assert!(all.len() > 20);
}

#[test]
fn point_suffixes_split_off_and_round_trip() {
    for w in [Within::End, Within::Flush(2), Within::Event(17)] {
        for base in ["cp7.m3", "cp7.m3.t1-ff", "cp7.m0.t0-e"] {
            let id = format!("{base}{}", w.suffix());
            assert_eq!(Within::split(&id), Ok((base, w)), "{id}");
        }
    }
    for bad in ["cp7.m3-ev", "cp7.m3-ev0", "cp7.m3-flushx", "cp7.m3-ev01"] {
        assert!(Within::split(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_event_point_puts_writes_in_flight_after_the_cached_ones() {
    use crate::sim::{new_clock, MetaDev};
    let dev = MetaDev::new(8, false, new_clock());
    dev.record_event_points(true);
    use crate::io::BlockDevice;
    dev.write(2, &[2; BLOCK_SIZE]).unwrap();
    dev.write(0, &[3; BLOCK_SIZE]).unwrap();
    let points = dev.take_event_points();
    // The superblock's write issued: block 2 cached, block 0 in flight.
    let p = &points[2];
    let s = MetaSpace::at_event(8, p);
    let got: Vec<(u64, bool)> = s.pending.iter().map(|x| (x.block, x.inflight)).collect();
    assert_eq!(got, vec![(2, false), (0, true)]);
    let (states, _) = s.enumerate(&Options {
        tier: 0,
        ..Default::default()
    });
    // Durable only, the cached write alone (all landed: the one in flight
    // is not complete), and the superblock alone.
    let imgs: Vec<Vec<u8>> = states
        .iter()
        .map(|c| first_bytes(&s.image(c, 512)))
        .collect();
    assert_eq!(
        imgs,
        vec![vec![0, 0, 0, 0], vec![0, 0, 2, 0], vec![3, 0, 0, 0]]
    );
}

/// The enumeration as the tiers define it, each candidate's image built and
/// compared whole: what `enumerate`'s constant-time differences must agree
/// with, state for state and in order.
fn enumerate_by_images(s: &MetaSpace, opts: &Options) -> (Vec<Choice>, usize) {
    let n = s.pending.len();
    let unit = opts.atomic_unit.clamp(512, BLOCK_SIZE);
    let landed_all: Vec<bool> = s.pending.iter().map(|p| !p.inflight).collect();
    let whole = |landed: Vec<bool>| Choice { landed, torn: None };
    let only = |ix: &[usize]| whole((0..n).map(|i| ix.contains(&i)).collect());
    let mut cands = vec![only(&[]), whole(landed_all.clone())];
    if let Some(sb) = s.pending.iter().rposition(|p| p.block == 0) {
        cands.push(only(&[sb]));
    }
    if opts.tier >= 1 {
        for i in 0..n {
            cands.push(only(&[i]));
            let mut m = landed_all.clone();
            m[i] = false;
            cands.push(whole(m));
        }
    }
    if opts.tier >= 2 {
        if n <= 12 {
            for bits in 0u32..(1 << n) {
                cands.push(whole((0..n).map(|i| bits >> i & 1 == 1).collect()));
            }
        } else {
            for i in 0..n {
                for j in i + 1..n {
                    cands.push(only(&[i, j]));
                }
            }
            let mut x = opts.seed;
            for _ in 0..opts.samples {
                cands.push(whole((0..n).map(|_| splitmix(&mut x) & 1 == 1).collect()));
            }
        }
    }
    if opts.tier >= 3 && unit < BLOCK_SIZE {
        let units = BLOCK_SIZE / unit;
        let full = (1u64 << units) - 1;
        for i in 0..n {
            let mut masks = Vec::new();
            for k in 1..units {
                masks.push((1 << k) - 1);
                masks.push(full & !((1 << k) - 1));
            }
            for u in 0..units {
                masks.push(full & !(1 << u));
            }
            for m in masks {
                let mut landed = landed_all.clone();
                landed[i] = false;
                cands.push(Choice {
                    landed,
                    torn: Some((i, m)),
                });
            }
        }
    }
    let total = cands.len();
    let mut seen = HashSet::new();
    cands.retain(|c| {
        let changed: Vec<(u64, Vec<u8>)> = s
            .overlay(c, unit)
            .into_iter()
            .filter(|(b, d)| **d != s.base_block(*b))
            .map(|(b, d)| (b, d.to_vec()))
            .collect();
        seen.insert(changed)
    });
    (cands, total)
}

#[test]
fn enumeration_keeps_the_first_candidate_of_each_image_at_every_tier() {
    // Random spaces over 5 blocks: contents from a few patterns (zeroes,
    // the base's own, blocks differing in one 512-byte unit), writes
    // completed or in flight, 0 to 16 of them.
    let pattern = |v: u64| -> Arc<Block> {
        let mut b = [0u8; BLOCK_SIZE];
        if v > 0 {
            b.fill(v as u8 & 3);
            b[(v as usize % 8) * 512] = 9;
        }
        Arc::new(b)
    };
    let mut seed = 7u64;
    let mut states = 0;
    for round in 0..300 {
        let mut base = ExtentMap::new();
        for b in 0..5u64 {
            let v = splitmix(&mut seed) % 6;
            if v > 0 {
                base.insert(b, b + 1, 0, MetaVal(pattern(v)));
            }
        }
        let n = (splitmix(&mut seed) % 17) as usize;
        let mut pending = Vec::new();
        for _ in 0..n {
            let block = splitmix(&mut seed) % 5;
            let v = splitmix(&mut seed) % 6;
            let data = match (v, base.get(block)) {
                (5, Some((_, MetaVal(d)))) => d, // as the base holds it
                _ => pattern(v),
            };
            pending.push(Pending {
                block,
                data,
                inflight: false,
            });
        }
        // The writes in flight come after the completed ones.
        let cached = (splitmix(&mut seed) % (n as u64 + 1)) as usize;
        for p in &mut pending[cached..] {
            p.inflight = true;
        }
        let s = MetaSpace::new(5, base, pending);
        for tier in 0..=3 {
            for atomic_unit in [512, 4096] {
                let opts = Options {
                    tier,
                    samples: 20,
                    seed: round,
                    atomic_unit,
                };
                let (got, total) = s.enumerate(&opts);
                let (want, want_total) = enumerate_by_images(&s, &opts);
                assert_eq!(got, want, "round {round}, n {n}, {opts:?}");
                assert_eq!(total, want_total, "round {round}, n {n}, {opts:?}");
                states += got.len();
            }
        }
    }
    assert!(states > 10_000, "{states} states");
}

/// An epoch of many writes that leave their blocks as they were (a discard
/// of blocks never written) adds no state, and enumerating it takes time in
/// proportion to its writes, not their square.
#[test]
fn writes_that_change_nothing_add_no_state() {
    let zero = Arc::new([0u8; BLOCK_SIZE]);
    let mut pending: Vec<Pending> = (1..200_001u64)
        .map(|block| Pending {
            block,
            data: zero.clone(),
            inflight: false,
        })
        .collect();
    pending.push(Pending {
        block: 0,
        data: Arc::new([1; BLOCK_SIZE]),
        inflight: false,
    });
    let s = MetaSpace::new(200_001, ExtentMap::new(), pending);
    let (states, total) = s.enumerate(&Options {
        tier: 3,
        samples: 4,
        ..Default::default()
    });
    // The base, the superblock alone, and the superblock torn: 22 masks of
    // 8 units, two of them twice (the first seven units are the last one
    // missing, the last seven the first one missing).
    assert_eq!(states.len(), 2 + 20);
    assert!(total > 200_000 * 24, "{total}");
}
