//! Metadata packs: every fixture round-trips through `*_metadata_pack` and
//! `*_metadata_unpack`; hostile packs fail with one line and leave no output; and,
//! given thin-provisioning-tools 1.3.3 (`DMCE_PEER_PDATA_TOOLS`), the two
//! implementations read each other's packs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dmce::io::{FileDevice, BLOCK_SIZE};

use crate::util::{load_zst, repo, run_tool, TestDir};

/// Every fixture image: (name, target prefix, image bytes).
fn fixture_images() -> Vec<(String, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["fixtures/kernel", "fixtures/samples"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let img = p.join("metadata.img.zst");
            if !img.exists() {
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let target = if name.starts_with("clone") {
                "clone"
            } else {
                "era"
            };
            out.push((name, target, load_zst(&img)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 17, "fixtures found: {}", out.len());
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &Output, what: &str) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Packs `img` with our tool and unpacks it again; returns the unpacked image.
fn round_trip(d: &TestDir, target: &str, img: &Path, extra: &[&str]) -> (Vec<u8>, String) {
    let pack = d.path("p.pack");
    let back = d.path("back.img");
    let mut args = vec!["-i", s(img), "-o", s(&pack)];
    args.extend(extra);
    let line = ok(&run_tool(&format!("{target}_metadata_pack"), &args), "pack");
    ok(
        &run_tool(
            &format!("{target}_metadata_unpack"),
            &["-i", s(&pack), "-o", s(&back)],
        ),
        "unpack",
    );
    (std::fs::read(&back).unwrap(), line)
}

/// The blocks in use (the superblock and whatever the check's walk reaches).
fn used_blocks(target: &str, img: &Path) -> BTreeSet<u64> {
    let dev = FileDevice::open_read(img).unwrap();
    let refs = match target {
        "clone" => dmce::clone::check(&dev, &Default::default()).refs,
        _ => dmce::era::check(&dev, &Default::default()).refs,
    };
    refs.unwrap().blocks().into_iter().map(|e| e.0).collect()
}

fn dumps(target: &str, img: &Path) -> Vec<String> {
    let mut v = vec![ok(&run_tool(&format!("{target}_dump"), &[s(img)]), "dump")];
    if target == "era" {
        v.push(ok(&run_tool("era_dump", &["--logical", s(img)]), "dump"));
    }
    v
}

#[test]
fn every_fixture_round_trips() {
    let d = TestDir::new("pack-fixtures");
    let mut exact = Vec::new();
    for (name, target, bytes) in fixture_images() {
        let img = d.path("orig.img");
        std::fs::write(&img, &bytes).unwrap();
        let used = used_blocks(target, &img);

        // The blocks in use: each comes back as it was, the rest is zero. The image
        // is byte for byte the original exactly when the original's free space is
        // zero; else the difference is old copies in free space.
        let (back, line) = round_trip(&d, target, &img, &[]);
        assert!(
            line.contains(&format!("packed {} of", used.len())),
            "{name}: {line}"
        );
        assert_eq!(back.len(), bytes.len(), "{name}: size");
        let mut stale = 0;
        for (i, (a, b)) in bytes
            .chunks_exact(BLOCK_SIZE)
            .zip(back.chunks_exact(BLOCK_SIZE))
            .enumerate()
        {
            if used.contains(&(i as u64)) {
                assert!(a == b, "{name}: block {i} in use differs");
            } else {
                assert!(b.iter().all(|&x| x == 0), "{name}: unused block {i}");
                stale += usize::from(a.iter().any(|&x| x != 0));
            }
        }
        assert_eq!(stale == 0, back == bytes, "{name}");
        if stale == 0 {
            exact.push(name.clone());
        }
        let unpacked = d.path("unpacked.img");
        std::fs::write(&unpacked, &back).unwrap();
        ok(
            &run_tool(&format!("{target}_check"), &[s(&unpacked)]),
            &name,
        );
        assert_eq!(
            dumps(target, &unpacked),
            dumps(target, &img),
            "{name}: dump"
        );

        // Every non-zero block: byte for byte, old copies included.
        let (back, _) = round_trip(&d, target, &img, &["--all-blocks"]);
        assert!(back == bytes, "{name}: --all-blocks round trip");
        eprintln!(
            "{name}: {} blocks in use, {stale} old copies in free space",
            used.len()
        );
    }
    // The kernel leaves old copies of shadowed blocks in free space: only a target
    // that never committed after formatting has none.
    assert_eq!(exact, ["clone-fresh"]);
}

/// Writes the clone sample and a pack of it.
fn sample_and_pack(d: &TestDir) -> (PathBuf, PathBuf, Vec<u8>) {
    let img = d.path("clone.img");
    std::fs::copy(
        repo().join("fixtures/samples/clone-b-partial/metadata.img"),
        &img,
    )
    .unwrap();
    let pack = d.path("clone.pack");
    ok(
        &run_tool("clone_metadata_pack", &["-i", s(&img), "-o", s(&pack)]),
        "pack",
    );
    let bytes = std::fs::read(&pack).unwrap();
    (img, pack, bytes)
}

/// An unpack that must fail: exit 1, one line naming the pack, no panic, and the
/// output left as it was.
fn unpack_fails(d: &TestDir, target: &str, pack: &Path, want: &str) {
    let out = d.path("out.img");
    std::fs::write(&out, b"previous").unwrap();
    let o = run_tool(
        &format!("{target}_metadata_unpack"),
        &["-i", s(pack), "-o", s(&out)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(s(pack)) && err.contains(want),
        "want {want:?}: {err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(d.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn hostile_packs_fail_cleanly() {
    let d = TestDir::new("pack-hostile");
    let (_, _, good) = sample_and_pack(&d);
    let bad = d.path("bad.pack");
    // Truncated anywhere: the header, a chunk's length, its data. (The header
    // alone is a valid pack of no blocks.)
    let cuts = [0, 7, 31, 35, 41, good.len() / 2, good.len() - 1];
    for n in cuts {
        std::fs::write(&bad, &good[..n]).unwrap();
        let want = match n {
            0 => "an empty file",
            1..=7 => "not a metadata pack",
            8..=31 => "header: the file ends early",
            _ => "chunk 0 (at byte 32)",
        };
        unpack_fails(&d, "clone", &bad, want);
    }
    // Flipped bits past the header: an error or the same image, never a panic.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut failures = 0;
    for _ in 0..60 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut q = good.clone();
        let bit = 32 * 8 + (x % ((q.len() as u64 - 32) * 8)) as usize;
        q[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&bad, &q).unwrap();
        let out = d.path("flip.img");
        let _ = std::fs::remove_file(&out);
        let o = run_tool("clone_metadata_unpack", &["-i", s(&bad), "-o", s(&out)]);
        match o.status.code() {
            Some(0) => {}
            Some(1) => {
                failures += 1;
                assert!(!out.exists(), "bit {bit}: output left behind");
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(err.contains("chunk 0") && err.lines().count() == 1, "{err}");
            }
            c => panic!(
                "bit {bit}: exit {c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }
    assert!(failures > 50, "{failures} of 60 flips refused");
    // A pack of one target given to the other's unpack.
    unpack_fails(
        &d,
        "era",
        &d.path("clone.pack"),
        "the pack holds dm-clone metadata, not dm-era (use clone_metadata_unpack)",
    );
    // An image where a pack belongs.
    unpack_fails(
        &d,
        "clone",
        &d.path("clone.img"),
        "it looks like dm-clone metadata, not a pack of it (clone_metadata_pack makes one)",
    );
}

#[test]
fn pack_refuses_other_metadata_and_its_own_input() {
    let d = TestDir::new("pack-refuse");
    let era = d.path("era.img");
    std::fs::write(
        &era,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    let out = d.path("x.pack");
    let o = run_tool("clone_metadata_pack", &["-i", s(&era), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("this is dm-era metadata, not dm-clone (use era_metadata_pack)"),
        "{err}"
    );
    assert!(!out.exists());
    let o = run_tool("era_metadata_pack", &["-i", s(&era), "-o", s(&era)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"));
    let o = run_tool("era_metadata_unpack", &["-i", s(&era), "-o", s(&era)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"));
    // A pack where metadata belongs.
    let (_, pack, _) = sample_and_pack(&d);
    let o = run_tool("clone_metadata_pack", &["-i", s(&pack), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "this is a metadata pack, not metadata (unpack it with clone_metadata_unpack)"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let zero = d.path("zero.img");
    std::fs::write(&zero, vec![0u8; 1 << 20]).unwrap();
    let o = run_tool("era_metadata_pack", &["-i", s(&zero), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not formatted"));
    let o = run_tool(
        "era_metadata_pack",
        &["-i", "/nonexistent/x", "-o", s(&out)],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such file"));
}

#[test]
fn damaged_metadata_is_packed_whole() {
    let d = TestDir::new("pack-damaged");
    let img = d.path("era.img");
    let mut bytes = load_zst(&repo().join("fixtures/kernel/era-eras/metadata.img.zst"));
    let used = {
        std::fs::write(&img, &bytes).unwrap();
        used_blocks("era", &img)
    };
    let victim = *used.iter().nth(3).unwrap() as usize;
    bytes[victim * BLOCK_SIZE + 200] ^= 0x10;
    std::fs::write(&img, &bytes).unwrap();
    let pack = d.path("p.pack");
    let o = run_tool("era_metadata_pack", &["-i", s(&img), "-o", s(&pack)]);
    let out = ok(&o, "pack");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the metadata is damaged (era_check finds")
            && err.contains(&format!("block {victim}"))
            && err.contains("every block that is not all zeroes is packed"),
        "{err}"
    );
    assert!(out.contains("(the non-zero blocks)"), "{out}");
    let back = d.path("back.img");
    ok(
        &run_tool("era_metadata_unpack", &["-i", s(&pack), "-o", s(&back)]),
        "unpack",
    );
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "the damaged image comes back whole"
    );
}

#[test]
fn unpack_onto_a_block_device() {
    let d = TestDir::new("pack-loop");
    let (img, pack, _) = sample_and_pack(&d);
    let want = std::fs::read(repo().join("fixtures/samples/clone-b-partial/metadata.img")).unwrap();
    let backing = d.path("backing.img");
    std::fs::write(&backing, vec![0x5au8; want.len() + (1 << 20)]).unwrap();
    let Some(dev) = crate::live::Loop::new(&backing) else {
        eprintln!("pack: no loop device (not root?); the block-device unpack is not tested");
        return;
    };
    ok(
        &run_tool("clone_metadata_unpack", &["-i", s(&pack), "-o", &dev.0]),
        "unpack onto a device",
    );
    drop(dev);
    let got = std::fs::read(&backing).unwrap();
    // The image's blocks: packed ones in place, unused ones zeroed; past it untouched.
    let used = used_blocks("clone", &img);
    for (i, (a, b)) in want
        .chunks_exact(BLOCK_SIZE)
        .zip(got.chunks_exact(BLOCK_SIZE))
        .enumerate()
    {
        if used.contains(&(i as u64)) {
            assert!(a == b, "block {i}");
        } else {
            assert!(b.iter().all(|&x| x == 0), "block {i} not zeroed");
        }
    }
    assert!(got[want.len()..].iter().all(|&x| x == 0x5a));
}

/// thin-provisioning-tools 1.3.3's `pdata_tools`, from `DMCE_PEER_PDATA_TOOLS`.
fn peer() -> PathBuf {
    PathBuf::from(std::env::var_os("DMCE_PEER_PDATA_TOOLS").expect(
        "set DMCE_PEER_PDATA_TOOLS to the pdata_tools binary of thin-provisioning-tools 1.3.3",
    ))
}

fn run_peer(args: &[&str]) -> Output {
    Command::new(peer()).args(args).output().unwrap()
}

/// Both directions against thin-provisioning-tools 1.3.3, on every fixture:
/// `thin_metadata_unpack` of our packs, our unpack of its packs.
#[test]
#[ignore = "needs DMCE_PEER_PDATA_TOOLS=/path/to/pdata_tools (thin-provisioning-tools 1.3.3)"]
fn peer_reads_our_packs_and_we_read_its_packs() {
    let d = TestDir::new("pack-peer");
    let v = run_peer(&["thin_metadata_unpack", "-V"]);
    eprintln!("peer: {}", String::from_utf8_lossy(&v.stdout).trim());
    for (name, target, bytes) in fixture_images() {
        let img = d.path("orig.img");
        std::fs::write(&img, &bytes).unwrap();
        let (ours, theirs) = (d.path("ours.pack"), d.path("theirs.pack"));
        let (a, b) = (d.path("a.img"), d.path("b.img"));
        let (c, e) = (d.path("c.img"), d.path("e.img"));
        // thin_metadata_unpack will not overwrite metadata.
        for f in [&a, &b, &c, &e] {
            let _ = std::fs::remove_file(f);
        }
        ok(
            &run_tool(
                &format!("{target}_metadata_pack"),
                &["--all-blocks", "-i", s(&img), "-o", s(&ours)],
            ),
            &name,
        );
        let o = run_peer(&["thin_metadata_pack", "-i", s(&img), "-o", s(&theirs)]);
        assert!(o.status.success(), "{name}: thin_metadata_pack: {o:?}");
        // Our default pack (the blocks in use) unpacks the same with either tool.
        let used = d.path("used.pack");
        ok(
            &run_tool(
                &format!("{target}_metadata_pack"),
                &["-i", s(&img), "-o", s(&used)],
            ),
            &name,
        );
        ok(
            &run_tool(
                &format!("{target}_metadata_unpack"),
                &["-i", s(&used), "-o", s(&c)],
            ),
            &name,
        );
        let o = run_peer(&["thin_metadata_unpack", "-i", s(&used), "-o", s(&e)]);
        if target == "era" {
            assert!(o.status.success(), "{name}: {o:?}");
            assert!(
                std::fs::read(&c).unwrap() == std::fs::read(&e).unwrap(),
                "{name}: used blocks"
            );
        }
        let peer_unpack = run_peer(&["thin_metadata_unpack", "-i", s(&ours), "-o", s(&a)]);
        let our_unpack = run_tool(
            &format!("{target}_metadata_unpack"),
            &["-i", s(&theirs), "-o", s(&b)],
        );
        if target == "era" {
            // Every block of dm-era metadata carries a checksum 1.3.3 knows.
            assert!(peer_unpack.status.success(), "{name}: {peer_unpack:?}");
            assert!(
                std::fs::read(&a).unwrap() == bytes,
                "{name}: thin_metadata_unpack of our pack"
            );
            ok(&our_unpack, &name);
            assert!(
                std::fs::read(&b).unwrap() == bytes,
                "{name}: our unpack of its pack"
            );
        } else {
            // 1.3.3 packs no block whose checksum it does not know, the dm-clone
            // superblock among them; its unpack stops at such a block.
            let err = String::from_utf8_lossy(&peer_unpack.stderr);
            assert!(
                !peer_unpack.status.success(),
                "{name}: 1.3.3 unpacked a dm-clone superblock"
            );
            eprintln!(
                "{name}: thin_metadata_unpack of our pack: exit {:?}: {}",
                peer_unpack.status.code(),
                err.lines()
                    .find(|l| l.contains("panicked") || l.contains("assert"))
                    .unwrap_or("")
            );
            let out = ok(&our_unpack, &name);
            let warn = String::from_utf8_lossy(&our_unpack.stderr);
            assert!(warn.contains("holds no block 0"), "{name}: {out}{warn}");
            let got = std::fs::read(&b).unwrap();
            assert!(got[..BLOCK_SIZE].iter().all(|&x| x == 0), "{name}");
            assert!(
                got[BLOCK_SIZE..] == bytes[BLOCK_SIZE..],
                "{name}: the other blocks"
            );
        }
        eprintln!("{name}: ok");
    }
}
