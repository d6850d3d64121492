use std::io::{self, Cursor, Read};
use std::path::PathBuf;

use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::format::{encode_header, HEADER_SIZE};
use super::*;
use crate::io::{FaultDevice, FaultMode, MemDevice};
use crate::pdata::checksum::{stamp, BlockKind};

/// The clone sample as the kernel left it: old blocks in its free space.
fn kernel_sample() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/samples/clone-b-partial/metadata.img");
    std::fs::read(p).expect("the clone sample image")
}

/// The clone sample with zero free space (its round trip).
fn sample() -> Vec<u8> {
    let (p, _) = pack_bytes(&kernel_sample(), Target::Clone);
    unpack_bytes(&p, Target::Clone).expect("unpacks").0
}

#[test]
fn free_space_is_not_packed() {
    let kernel = kernel_sample();
    let (p, s) = pack_bytes(&kernel, Target::Clone);
    let (back, _) = unpack_bytes(&p, Target::Clone).unwrap();
    let Selection::Used(used) = &s.selection else {
        panic!("{:?}", s.selection)
    };
    // Exactly the used blocks come back; the rest is zero.
    let mut differ = 0;
    for (i, (a, b)) in kernel
        .chunks_exact(BLOCK_SIZE)
        .zip(back.chunks_exact(BLOCK_SIZE))
        .enumerate()
    {
        if used.binary_search(&(i as u64)).is_ok() {
            assert!(a == b, "used block {i}");
        } else {
            assert!(b.iter().all(|&x| x == 0), "unused block {i}");
            differ += usize::from(a != b);
        }
    }
    assert!(differ > 0, "the sample has stale blocks in its free space");
    // Packing the unpacked image gives the same pack.
    assert_eq!(pack_bytes(&back, Target::Clone).0, p);
    // Asked for every block, the old copies come along: byte for byte.
    let mut all = Vec::new();
    let s = pack(
        &MemDevice::from_bytes(&kernel),
        Target::Clone,
        true,
        &mut all,
    )
    .unwrap();
    assert_eq!(s.selection, Selection::Everything);
    assert_eq!(s.packed, used.len() as u64 + differ as u64);
    assert!(unpack_bytes(&all, Target::Clone).unwrap().0 == kernel);
}

fn pack_bytes(img: &[u8], target: Target) -> (Vec<u8>, PackSummary) {
    let dev = MemDevice::from_bytes(img);
    let mut out = Vec::new();
    let s = pack(&dev, target, false, &mut out).expect("packs");
    assert_eq!(s.bytes, out.len() as u64);
    (out, s)
}

/// Unpacks into memory: the image, or the error.
fn unpack_bytes(pack: &[u8], target: Target) -> Result<(Vec<u8>, UnpackSummary), PackError> {
    let mut r = Cursor::new(pack);
    let reader = PackReader::open(&mut r)?;
    let nr = reader.nr_blocks();
    let mut blocks = Vec::new();
    let mut block0 = None;
    let unpacked = reader.read_blocks(&mut |b, blk| {
        if b == 0 {
            block0 = Some(Box::new(*blk));
        }
        blocks.push((b, Box::new(*blk)));
        Ok(())
    })?;
    // A flipped header may claim a huge image: it cannot be the original anyway.
    let mut img = Vec::new();
    if nr <= 1 << 16 {
        img = vec![0u8; nr as usize * BLOCK_SIZE];
        for (b, blk) in &blocks {
            img[*b as usize * BLOCK_SIZE..][..BLOCK_SIZE].copy_from_slice(&blk[..]);
        }
    }
    let block0 = judge_block0(target, block0.as_deref())?;
    Ok((
        img,
        UnpackSummary {
            nr_blocks: nr,
            unpacked,
            block0,
        },
    ))
}

/// The error of an unpack that must fail (the image of one that does not would be
/// too long to print).
fn refused(r: Result<(Vec<u8>, UnpackSummary), PackError>) -> PackError {
    match r {
        Ok((_, u)) => panic!("unpacked: {u:?}"),
        Err(e) => e,
    }
}

/// A pack of hand-made entries (block number, raw program), one chunk per slice.
fn raw_pack(nr_blocks: u64, chunks: &[&[(u64, Vec<u8>)]]) -> Vec<u8> {
    let mut out = encode_header(nr_blocks).to_vec();
    for c in chunks {
        let mut data = Vec::new();
        for (b, prog) in c.iter() {
            data.extend_from_slice(&b.to_le_bytes());
            data.extend_from_slice(prog);
        }
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        io::Write::write_all(&mut z, &data).unwrap();
        let z = z.finish().unwrap();
        out.extend_from_slice(&(z.len() as u64).to_le_bytes());
        out.extend_from_slice(&z);
    }
    out
}

fn program(block: &Block) -> Vec<u8> {
    let mut p = Vec::new();
    vm::encode_block(block, &mut p);
    p
}

fn corrupt(e: &PackError) -> (&Where, &Damage) {
    match e {
        PackError::Corrupt { at, damage } => (at, damage),
        e => panic!("not a corruption: {e}"),
    }
}

#[test]
fn the_clone_sample_packs_its_used_blocks_and_round_trips() {
    let img = sample();
    let (p, s) = pack_bytes(&img, Target::Clone);
    let Selection::Used(used) = &s.selection else {
        panic!("the sample checks clean: {:?}", s.selection)
    };
    assert_eq!(used[0], 0, "the superblock is packed");
    assert_eq!(s.packed, used.len() as u64);
    assert!(s.unreadable.is_empty());
    // The sample's free space is zero: the round trip is exact.
    let (back, u) = unpack_bytes(&p, Target::Clone).unwrap();
    assert!(back == img, "round trip");
    assert_eq!(u.block0, Block0::Superblock);
    assert_eq!(u.unpacked, s.packed);
    assert_eq!(u.nr_blocks, (img.len() / BLOCK_SIZE) as u64);
    // The same image packs to the same bytes.
    assert_eq!(pack_bytes(&img, Target::Clone).0, p);
}

#[test]
fn other_metadata_and_unformatted_devices_are_refused() {
    let img = sample();
    let dev = MemDevice::from_bytes(&img);
    let e = pack(&dev, Target::Era, false, &mut Vec::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "this is dm-clone metadata, not dm-era (use clone_metadata_pack)"
    );
    let e = pack(&MemDevice::new(16), Target::Clone, false, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("not formatted"), "{e}");
    let mut thin = img.clone();
    thin[32..40].copy_from_slice(&27_022_010u64.to_le_bytes());
    let e = pack(
        &MemDevice::from_bytes(&thin),
        Target::Clone,
        false,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("thin-provisioning metadata, not dm-clone (use thin_metadata_pack)"),
        "{e}"
    );
    let mut junk = img.clone();
    junk[32] ^= 1;
    let e = pack(
        &MemDevice::from_bytes(&junk),
        Target::Clone,
        false,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("bad magic number"), "{e}");
    // An unpack of a clone pack as era.
    let (p, _) = pack_bytes(&img, Target::Clone);
    let e = refused(unpack_bytes(&p, Target::Era));
    assert_eq!(
        e.to_string(),
        "the pack holds dm-clone metadata, not dm-era (use clone_metadata_unpack)"
    );
}

#[test]
fn damaged_metadata_packs_every_nonzero_block() {
    let img = sample();
    let (_, clean) = pack_bytes(&img, Target::Clone);
    let Selection::Used(used) = clean.selection else {
        panic!()
    };
    // Break the last used block's checksum, and leave a stale block in free space.
    let mut bad = img.clone();
    let victim = *used.last().unwrap() as usize;
    bad[victim * BLOCK_SIZE + 100] ^= 0x40;
    let stale = (img.len() / BLOCK_SIZE - 1) as u64;
    let mut blk = [7u8; BLOCK_SIZE];
    stamp(&mut blk, stale, BlockKind::BtreeNode);
    bad[stale as usize * BLOCK_SIZE..][..BLOCK_SIZE].copy_from_slice(&blk);
    let (p, s) = pack_bytes(&bad, Target::Clone);
    let Selection::Damaged { reason } = &s.selection else {
        panic!("{:?}", s.selection)
    };
    assert!(reason.starts_with("clone_check finds"), "{reason}");
    assert!(reason.contains(&format!("block {victim}")), "{reason}");
    assert_eq!(s.packed, used.len() as u64 + 1);
    let (back, _) = unpack_bytes(&p, Target::Clone).unwrap();
    assert!(back == bad, "the damaged image comes back whole");

    // A damaged superblock (its magic intact) is packed too.
    let mut bad_sb = img.clone();
    bad_sb[300] ^= 1;
    let (p, s) = pack_bytes(&bad_sb, Target::Clone);
    assert!(matches!(s.selection, Selection::Damaged { .. }));
    assert!(unpack_bytes(&p, Target::Clone).unwrap().0 == bad_sb);
}

/// A device whose listed blocks cannot be read.
struct Unreadable(MemDevice, Vec<u64>);

impl BlockDevice for Unreadable {
    fn nr_blocks(&self) -> u64 {
        self.0.nr_blocks()
    }
    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()> {
        if self.1.contains(&b) {
            return Err(io::Error::other("medium error"));
        }
        self.0.read(b, buf)
    }
    fn write(&self, b: u64, buf: &Block) -> io::Result<()> {
        self.0.write(b, buf)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn unreadable_blocks_are_left_out_and_listed() {
    let img = sample();
    let (_, clean) = pack_bytes(&img, Target::Clone);
    let Selection::Used(used) = clean.selection else {
        panic!()
    };
    let lost = used[2];
    let dev = Unreadable(MemDevice::from_bytes(&img), vec![lost]);
    let mut out = Vec::new();
    let s = pack(&dev, Target::Clone, false, &mut out).unwrap();
    assert!(matches!(s.selection, Selection::Damaged { .. }));
    assert_eq!(s.unreadable, vec![lost]);
    assert_eq!(s.packed, used.len() as u64 - 1);
    let dev = Unreadable(MemDevice::from_bytes(&img), vec![0]);
    let e = pack(&dev, Target::Clone, false, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, PackError::ReadBlock { block: 0, .. }), "{e}");
}

#[test]
fn a_pack_without_block_0_unpacks_with_a_warning() {
    // As thin_metadata_pack packs dm-clone metadata: its superblock left out.
    let img = sample();
    let blocks: Vec<(u64, Vec<u8>)> = img
        .chunks_exact(BLOCK_SIZE)
        .enumerate()
        .skip(1)
        .filter(|(_, c)| c.iter().any(|&x| x != 0))
        .map(|(i, c)| (i as u64, program(c.try_into().unwrap())))
        .collect();
    let p = raw_pack((img.len() / BLOCK_SIZE) as u64, &[&blocks]);
    let (back, u) = unpack_bytes(&p, Target::Clone).unwrap();
    assert_eq!(u.block0, Block0::Missing);
    assert!(back[..BLOCK_SIZE].iter().all(|&x| x == 0));
    assert!(back[BLOCK_SIZE..] == img[BLOCK_SIZE..]);
    let w = u.warning(Target::Clone).unwrap();
    assert!(
        w.contains("no superblock") && w.contains("thin_metadata_pack"),
        "{w}"
    );
}

#[test]
fn header_damage_is_named() {
    let e = |bytes: &[u8]| match PackReader::open(&mut Cursor::new(bytes)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    let good = encode_header(10);
    assert!(PackReader::open(&mut Cursor::new(&good[..])).is_ok());
    for n in 0..HEADER_SIZE {
        let err = e(&good[..n]);
        let (at, d) = corrupt(&err);
        assert_eq!(*at, Where::Header);
        if n < 8 {
            assert!(matches!(d, Damage::NotAPack { .. }), "{n}: {d}");
        } else {
            assert_eq!(
                *d,
                Damage::Truncated {
                    needed: 32,
                    found: n as u64
                }
            );
        }
    }
    let mut h = good;
    h[8] = 2;
    assert_eq!(corrupt(&e(&h)).1, &Damage::Version(2));
    let mut h = good;
    h[17] = 0x20;
    assert_eq!(corrupt(&e(&h)).1, &Damage::BlockSize(8192));
    assert_eq!(corrupt(&e(&encode_header(0))).1, &Damage::NoBlocks);
    assert!(matches!(
        corrupt(&e(&encode_header(u64::MAX))).1,
        Damage::TooManyBlocks(_)
    ));
    // What a file given by mistake looks like.
    let img = sample();
    let msg = e(&img).to_string();
    assert!(
        msg.starts_with("header: not a metadata pack (magic 0x")
            && msg.ends_with("; it looks like dm-clone metadata, not a pack of it (clone_metadata_pack makes one)"),
        "{msg}"
    );
    assert!(e(b"<superblock uuid=\"\"")
        .to_string()
        .contains("looks like XML"));
    assert!(e(&[]).to_string().contains("an empty file"));
    assert!(e(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0, 0])
        .to_string()
        .contains("zstd"));
}

#[test]
fn chunk_and_entry_damage_is_named() {
    let blk = {
        let mut b = [0u8; BLOCK_SIZE];
        b[..5].copy_from_slice(b"hello");
        b
    };
    let ok = raw_pack(4, &[&[(1, program(&blk))], &[(2, program(&blk))]]);
    let (img, u) = unpack_bytes(&ok, Target::Clone).unwrap();
    assert_eq!(u.unpacked, 2);
    assert_eq!(u.block0, Block0::Missing);
    assert!(img[BLOCK_SIZE..2 * BLOCK_SIZE] == blk && img[2 * BLOCK_SIZE..3 * BLOCK_SIZE] == blk);
    let second = {
        let first_len = u64::from_le_bytes(ok[32..40].try_into().unwrap());
        32 + 8 + first_len
    };

    // Cut anywhere after the header: an error naming a chunk, never a panic.
    // (A cut between chunks leaves a shorter, valid pack.)
    for n in (HEADER_SIZE + 1..ok.len()).filter(|&n| n as u64 != second) {
        let err = unpack_bytes(&ok[..n], Target::Clone)
            .err()
            .unwrap_or_else(|| panic!("cut at {n} accepted"));
        let (at, _) = corrupt(&err);
        let want_at = if (n as u64) < second { 32 } else { second };
        assert!(
            matches!(at, Where::Chunk { at, .. } if *at == want_at),
            "cut at {n}: {err}"
        );
    }
    // Bytes after the compressed data of a chunk.
    let mut trailing = ok.clone();
    let len = u64::from_le_bytes(trailing[32..40].try_into().unwrap());
    trailing[32..40].copy_from_slice(&(len + 3).to_le_bytes());
    trailing.splice(40 + len as usize..40 + len as usize, [1, 2, 3]);
    let err = refused(unpack_bytes(&trailing, Target::Clone));
    assert_eq!(corrupt(&err).1, &Damage::Trailing(3));

    let cases: Vec<(Vec<u8>, Damage)> = vec![
        (
            raw_pack(4, &[&[(4, program(&blk))]]),
            Damage::OutOfRange {
                block: 4,
                nr_blocks: 4,
            },
        ),
        (
            raw_pack(4, &[&[(1, program(&blk))], &[(1, program(&blk))]]),
            Damage::Duplicate(1),
        ),
        (
            raw_pack(4, &[&[(1, vec![0xc0])]]),
            Damage::Program(vm::VmError::BadTag(12)),
        ),
    ];
    for (p, want) in cases {
        let err = refused(unpack_bytes(&p, Target::Clone));
        assert_eq!(corrupt(&err).1, &want, "{err}");
    }
    // An entry cut inside its block number.
    let mut p = raw_pack(4, &[&[(1, program(&blk))]]);
    let data = {
        let mut d = 1u64.to_le_bytes().to_vec();
        d.extend(program(&blk));
        d.extend([2, 0, 0]);
        d
    };
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    io::Write::write_all(&mut z, &data).unwrap();
    let z = z.finish().unwrap();
    p.truncate(32);
    p.extend((z.len() as u64).to_le_bytes());
    p.extend(z);
    let err = refused(unpack_bytes(&p, Target::Clone));
    assert_eq!(
        err.to_string(),
        format!(
            "chunk 0 (at byte 32), entry 1, byte {} of the chunk's data: the file ends early: 3 of 8 bytes (truncated?)",
            data.len() - 3
        )
    );
}

#[test]
fn flipped_bits_never_panic() {
    let img = sample();
    let (p, _) = pack_bytes(&img, Target::Clone);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut q = p.clone();
        let bit = (x % (q.len() as u64 * 8)) as usize;
        q[bit / 8] ^= 1 << (bit % 8);
        // Either an error or an image (a flip in a zlib stream's block types can
        // still decode; its checksum catches changed data).
        if let Ok((back, _)) = unpack_bytes(&q, Target::Clone) {
            let header_flip = bit / 8 < HEADER_SIZE;
            assert!(
                header_flip || back == img,
                "bit {bit} changed the image silently"
            );
        }
    }
}

#[test]
fn zlib_bombs_are_bounded() {
    // A chunk decompressing to more than the limit: zeroes compress ~1000:1.
    let zeroes = vec![0u8; format::MAX_CHUNK_DATA + 1];
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    io::Write::write_all(&mut z, &zeroes).unwrap();
    let z = z.finish().unwrap();
    let mut p = encode_header(4).to_vec();
    p.extend((z.len() as u64).to_le_bytes());
    p.extend(z);
    let err = refused(unpack_bytes(&p, Target::Clone));
    assert!(matches!(corrupt(&err).1, Damage::TooLarge { .. }), "{err}");
}

#[test]
fn unpack_to_a_file_sizes_it_and_zeroes_the_rest() {
    let img = sample();
    let (p, s) = pack_bytes(&img, Target::Clone);
    let path = std::env::temp_dir().join(format!("dmce-pack-unit-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let u = unpack_to_file(&mut Cursor::new(&p), Target::Clone, &f).unwrap();
    assert_eq!(u.unpacked, s.packed);
    let mut back = Vec::new();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(back == img);
}

#[test]
fn unpack_to_a_device_fails_safe_at_every_write() {
    let img = sample();
    let (p, _) = pack_bytes(&img, Target::Clone);
    let nr = (img.len() / BLOCK_SIZE) as u64;
    let mut open = || -> io::Result<Box<dyn Read>> { Ok(Box::new(Cursor::new(p.clone()))) };
    // Old contents everywhere, so that the zeroing of unpacked blocks shows.
    let old = vec![0x5au8; img.len()];
    let counting = FaultDevice::counting(MemDevice::from_bytes(&old));
    unpack_to_device(&mut open, Target::Clone, &counting).unwrap();
    assert!(counting.inner().to_bytes() == img);
    let ops = counting.ops();
    for fail_at in (1..=ops)
        .step_by(((ops / 40) as usize).max(1))
        .chain([ops - 1, ops])
    {
        let dev = FaultDevice::new(MemDevice::from_bytes(&old), fail_at, FaultMode::Stop);
        assert!(unpack_to_device(&mut open, Target::Clone, &dev).is_err());
        dev.lose_unflushed().unwrap();
        let got = dev.inner().to_bytes();
        // Nothing durable, everything, or no superblock: never a superblock over a
        // partial image.
        let no_sb = got[..BLOCK_SIZE].iter().all(|&x| x == 0);
        assert!(
            got == img || got == old || no_sb,
            "fault at {fail_at} of {ops}: a superblock over a partial image"
        );
    }
    // A damaged pack writes nothing.
    let mut q = p.clone();
    q.truncate(q.len() - 1);
    let mut open_bad = || -> io::Result<Box<dyn Read>> { Ok(Box::new(Cursor::new(q.clone()))) };
    let dev = FaultDevice::counting(MemDevice::from_bytes(&old));
    assert!(unpack_to_device(&mut open_bad, Target::Clone, &dev).is_err());
    assert_eq!(dev.writes(), 0);
    // A device smaller than the image is refused before writing.
    let small = FaultDevice::counting(MemDevice::new(nr - 1));
    let e = unpack_to_device(&mut open, Target::Clone, &small).unwrap_err();
    assert!(e.to_string().contains("blocks, the image"), "{e}");
    assert_eq!(small.writes(), 0);
}
