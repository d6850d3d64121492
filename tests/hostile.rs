//! Hostile input: seeded random mutations of live blocks, with the checksum fixed up
//! afterwards so that the damage reaches the structural checks. Checkers, dumps (in
//! every mode) and era_invalidate must return — with findings or errors — and never
//! panic. A failure prints the seed and iteration to replay.

use std::panic::{catch_unwind, AssertUnwindSafe};

use dmce::era::invalidate::{invalidate, InvalidateOptions};
use dmce::era::DumpOptions;
use dmce::io::{BlockDevice, MemDevice, BLOCK_SIZE};
use dmce::pdata::checksum::{kind_of, stamp};

use crate::roundtrip::Rng;
use crate::util::{load_zst, repo};

fn live_blocks(img: &[u8]) -> Vec<u64> {
    (0..(img.len() / BLOCK_SIZE) as u64)
        .filter(|&b| {
            let o = b as usize * BLOCK_SIZE;
            let blk: &[u8; BLOCK_SIZE] = img[o..o + BLOCK_SIZE].try_into().unwrap();
            kind_of(blk).is_some()
        })
        .collect()
}

/// Runs every read entry point on `img`; all must return.
fn exercise(img: &[u8]) {
    let dev = MemDevice::from_bytes(img);
    let _ = dmce::clone::check(&dev, &Default::default());
    let _ = dmce::era::check(&dev, &Default::default());
    for repair in [false, true] {
        let _ = dmce::clone::dump(&dev, std::io::sink(), repair);
        for logical in [false, true] {
            for metadata_snapshot in [false, true] {
                let _ = dmce::era::dump(
                    &dev,
                    std::io::sink(),
                    DumpOptions {
                        logical,
                        metadata_snapshot,
                        repair,
                    },
                );
            }
        }
    }
    for n in [0, 1, 3] {
        let _ = invalidate(
            &dev,
            InvalidateOptions {
                written_since: n,
                metadata_snapshot: false,
            },
        );
    }
}

/// Mutates `iterations` times (each from the pristine image) and exercises each result.
pub fn mutate_and_exercise(name: &str, img: &[u8], seed: u64, iterations: u64) {
    let live = live_blocks(img);
    assert!(!live.is_empty(), "{name}: no checksummed blocks");
    for it in 0..iterations {
        let mut rng = Rng::new(seed ^ it.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut v = img.to_vec();
        for _ in 0..1 + rng.below(3) {
            let b = live[rng.below(live.len() as u64) as usize];
            let o = b as usize * BLOCK_SIZE;
            let blk: &mut [u8; BLOCK_SIZE] = (&mut v[o..o + BLOCK_SIZE]).try_into().unwrap();
            let kind = kind_of(blk);
            for _ in 0..1 + rng.below(6) {
                // Headers and the first entries are where structure lives.
                let off = if rng.below(4) == 0 {
                    rng.below(4096)
                } else {
                    4 + rng.below(300)
                } as usize;
                blk[off] = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    2 => blk[off].wrapping_add(1),
                    _ => rng.next() as u8,
                };
            }
            if let Some(k) = kind {
                if rng.below(8) != 0 {
                    stamp(blk, b, k);
                }
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| exercise(&v)));
        assert!(
            r.is_ok(),
            "{name}: panic with seed {seed:#x}, iteration {it}"
        );
    }
}

#[test]
fn random_mutations_of_kernel_samples_never_panic() {
    for (name, file) in [
        (
            "clone-b-partial",
            "fixtures/samples/clone-b-partial/metadata.img.zst",
        ),
        ("era-b-eras", "fixtures/samples/era-b-eras/metadata.img.zst"),
    ] {
        let img = load_zst(&repo().join(file));
        mutate_and_exercise(name, &img, 0xD00D_F00D, 120);
    }
}

#[test]
fn an_era_superblock_claiming_more_blocks_than_its_device_holds_is_refused() {
    // Found by fuzzing: with an era array lost, era_dump --repair listed every one
    // of the 4 * 10^9 blocks such a superblock claims (hours, gigabytes).
    use dmce::era::superblock::read_at;
    let base = MemDevice::new(64);
    crate::roundtrip::era_restore(
        &crate::roundtrip::EraGen::new(9, 3000, 3, 2).xml(false),
        &base,
    );
    for nr_blocks in [u32::MAX, 1 << 31, (1 << 31) - 1, 1018 * 64 + 1] {
        let (mut sb, _) = read_at(&base, 0).unwrap();
        sb.nr_blocks = nr_blocks;
        let dev = MemDevice::from_bytes(&base.to_bytes());
        dev.write(0, &sb.encode(0)).unwrap();
        let c = dmce::era::check(&dev, &Default::default());
        assert!(
            c.report
                .findings()
                .iter()
                .any(|f| f.code == "era-nr-blocks"),
            "nr_blocks {nr_blocks}: {:?}",
            c.report.findings()
        );
        if nr_blocks < 1 << 31 {
            // The array's 3 blocks are checked; the index entries the
            // superblock's count asks for beyond them are one run.
            let want = format!(
                "no index entries for array blocks 3..{}",
                u64::from(nr_blocks).div_ceil(1018)
            );
            let runs: Vec<_> = (c.report.findings().iter())
                .filter(|f| f.message.contains("no index entr"))
                .collect();
            assert!(
                runs.len() == 1 && runs[0].message.contains(&want),
                "nr_blocks {nr_blocks}: {runs:?}"
            );
        }
        for repair in [false, true] {
            for logical in [false, true] {
                let opts = DumpOptions {
                    logical,
                    metadata_snapshot: false,
                    repair,
                };
                let e = dmce::era::dump(&dev, std::io::sink(), opts).unwrap_err();
                assert!(e.to_string().contains("era-nr-blocks"), "{e}");
            }
        }
        let e = invalidate(
            &dev,
            InvalidateOptions {
                written_since: 0,
                metadata_snapshot: false,
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("era array blocks") || e.to_string().contains("2^31"),
            "{e}"
        );
        let out = MemDevice::new(64);
        assert!(dmce::era::repair::repair(&dev, &out).is_err());
    }
}
