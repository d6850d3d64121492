//! The fast paths answer as the slow ones do: clone_dump's walk of the region bitset
//! a word (and a run of equal words) at a time against a per-bit reference, and
//! era_invalidate's answers from the superblock alone against the full walk.

use std::path::PathBuf;

use dmce::clone;
use dmce::era::invalidate::{invalidate, invalidate_list, InvalidateOptions};
use dmce::era::superblock::EraSuperblock;
use dmce::io::MemDevice;
use dmce::pdata::bitset::BitsetCursor;
use dmce::pdata::walk::Walker;
use dmce::report::Part;

use crate::roundtrip::{clone_check_and_dump, clone_restore, Rng};
use crate::util::{assert_text_eq, load_zst, repo, run_tool, TestDir};

/// The dump of a bitset, found one bit at a time.
fn per_bit_xml(bits: &[bool]) -> String {
    let n = bits.len();
    let mut s = format!(
        "<superblock uuid=\"\" region_size=\"8\" target_size=\"{}\" nr_regions=\"{n}\">\n",
        n * 8
    );
    let mut i = 0;
    while i < n {
        if bits[i] {
            let b = i;
            while i < n && bits[i] {
                i += 1;
            }
            s += &format!("  <hydrated begin=\"{b}\" end=\"{i}\"/>\n");
        } else {
            i += 1;
        }
    }
    s + "</superblock>\n"
}

/// Bits in words of every kind: random at several densities, all set, all clear,
/// single bits and single gaps at word edges, in pieces of random length so that
/// runs start and end anywhere, across words and array blocks.
fn dense_bits(seed: u64, n: usize) -> Vec<bool> {
    let mut rng = Rng::new(seed);
    let mut bits = Vec::with_capacity(n);
    while bits.len() < n {
        let len = 1 + rng.below(300) as usize;
        let kind = rng.below(6);
        for k in 0..len {
            bits.push(match kind {
                0 => rng.below(2) == 1,
                1 => rng.below(10) == 0,
                2 => rng.below(10) != 0,
                3 => true,
                4 => false,
                _ => (bits.len() + k) % 64 == 0 || (bits.len() + k) % 64 == 63,
            });
        }
    }
    bits.truncate(n);
    bits
}

#[test]
fn clone_dump_of_dense_bitsets_equals_the_per_bit_reference() {
    // Three array blocks of 509 words and a partial fourth: runs cross words and
    // blocks; region counts on and off a word's edge; the last bit set and clear.
    let per_block = 509 * 64;
    for (seed, n, last) in [
        (1u64, 3 * per_block + 1000 + 37, Some(true)),
        (2, 3 * per_block + 1000 + 37, Some(false)),
        (3, 2 * per_block, Some(true)),
        (4, 640, None),
        (5, 63, Some(true)),
        (6, 1, Some(true)),
    ] {
        let mut bits = dense_bits(seed, n);
        if let Some(v) = last {
            *bits.last_mut().unwrap() = v;
        }
        let want = per_bit_xml(&bits);
        let what = format!("dense seed {seed}, {n} regions");
        let dev = MemDevice::new(256);
        clone_restore(&want, &dev);
        // The image holds exactly these bits, read one at a time...
        let sb = clone::superblock::read(&dev).unwrap().0;
        let mut w = Walker::new(&dev, sb.sm_root.nr_blocks, false);
        let mut cursor = BitsetCursor::open(
            &mut w,
            sb.bitset_root,
            &Part::RegionBitset.into(),
            n as u64,
            Some(0),
        );
        for (i, &b) in bits.iter().enumerate() {
            assert_eq!(cursor.get(i as u64).unwrap(), b, "{what}: bit {i}");
        }
        // ... and the dump, which walks words and runs, lists the same runs.
        assert_text_eq(&clone_check_and_dump(&dev, &what), &want, &what);
    }
}

/// Every era image among the fixtures: the kernel's and the samples'.
fn era_fixtures() -> Vec<PathBuf> {
    let mut all = Vec::new();
    for dir in ["fixtures/kernel", "fixtures/samples"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path().join("metadata.img.zst");
            let name = p.parent().unwrap().file_name().unwrap().to_owned();
            if name.to_string_lossy().starts_with("era-") && p.exists() {
                all.push(p);
            }
        }
    }
    all.sort();
    assert!(all.len() >= 7, "era fixtures: {all:?}");
    all
}

#[test]
fn era_invalidate_from_the_superblock_equals_the_full_walk_on_every_fixture() {
    let mut cases = 0;
    for p in era_fixtures() {
        let img = load_zst(&p);
        let dev = MemDevice::from_bytes(&img);
        let sb = EraSuperblock::decode((&img[..4096]).try_into().unwrap());
        let snaps: &[bool] = if sb.metadata_snap != 0 {
            &[false, true]
        } else {
            &[false]
        };
        for &metadata_snapshot in snaps {
            for since in [
                0,
                1,
                sb.current_era,
                sb.current_era.saturating_add(1),
                u32::MAX,
            ] {
                let opts = InvalidateOptions {
                    written_since: since,
                    metadata_snapshot,
                };
                let what = format!("{} since {since} snapshot {metadata_snapshot}", p.display());
                let full = invalidate(&dev, opts).unwrap();
                let quick = invalidate_list(&dev, opts).unwrap();
                let xml = |i: &dmce::era::invalidate::Invalidation| {
                    String::from_utf8(i.write_xml(Vec::new()).unwrap()).unwrap()
                };
                assert_text_eq(&xml(&quick), &xml(&full), &what);
                assert_eq!(quick.count(), full.count(), "{what}");
                assert_eq!(quick.nr_blocks, full.nr_blocks, "{what}");
                if since == 0 {
                    assert_eq!(full.count(), full.nr_blocks, "{what}: every block");
                }
                cases += 1;
            }
        }
    }
    assert!(cases >= 35, "{cases} cases");
}

/// The refusals stay: a damaged superblock and a missing snapshot, with
/// `--written-since 0` as with any other era.
#[test]
fn era_invalidate_since_0_still_refuses_what_it_refused() {
    let d = TestDir::new("fast-refusals");
    let mut img = load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst"));
    let good = d.path("good.img");
    std::fs::write(&good, &img).unwrap();
    let o = run_tool(
        "era_invalidate",
        &[
            "--written-since",
            "0",
            "--metadata-snapshot",
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "no snapshot: {o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no metadata snapshot"));
    img[100] ^= 1;
    let bad = d.path("bad.img");
    std::fs::write(&bad, &img).unwrap();
    for since in ["0", "1"] {
        let o = run_tool(
            "era_invalidate",
            &["--written-since", since, bad.to_str().unwrap()],
        );
        assert_eq!(
            o.status.code(),
            Some(1),
            "damaged superblock, since {since}: {o:?}"
        );
        assert!(o.stdout.is_empty());
    }
}
