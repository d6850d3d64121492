//! What thin-provisioning-tools 1.3.3's own era tests expect of the tools (run in
//! full by `benches/peer_suite.sh`): the key phrases of its error messages, kept
//! inside ours; a checker's report on standard error; a dump whose pipe breaks
//! fails silently. And the files the restores and repairs write: replaced only when
//! complete.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{bin, load_zst, repo, run_tool, TestDir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn era_image(d: &TestDir) -> std::path::PathBuf {
    let p = d.path("era.img");
    std::fs::write(
        &p,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    p
}

/// Runs `args`, expects exit 1 and one line on stderr holding each phrase.
fn fails_with(args: &[&str], phrases: &[&str]) {
    let o = run_tool(args[0], &args[1..]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
    assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
    for p in phrases {
        assert!(e.contains(p), "{args:?}: no \"{p}\" in: {e}");
    }
    assert!(o.stdout.is_empty(), "{args:?}");
}

#[test]
fn inputs_the_tools_refuse_are_named_with_the_peers_phrases() {
    let d = TestDir::new("peer-inputs");
    let era = era_image(&d);
    let tiny = d.path("tiny.bin");
    std::fs::write(&tiny, vec![0u8; 1024]).unwrap();
    let xml = d.path("meta.xml");
    std::fs::write(&xml, run_tool("era_dump", &[s(&era)]).stdout).unwrap();
    let dir = d.path("dir");
    std::fs::create_dir(&dir).unwrap();
    let missing = d.path("no-such-file");
    for tool in [
        vec!["era_check"],
        vec!["era_dump"],
        vec!["era_invalidate", "--written-since", "0"],
        vec!["clone_check"],
        vec!["clone_dump"],
    ] {
        let with = |input: &Path| {
            let mut v = tool.clone();
            v.push(s(input));
            v.iter().map(|x| x.to_string()).collect::<Vec<String>>()
        };
        let run = |input: &Path, phrases: &[&str]| {
            let v = with(input);
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            fails_with(&v, phrases);
        };
        run(
            &missing,
            &[
                "Couldn't find input file",
                "No such file or directory",
                s(&missing),
            ],
        );
        run(
            &dir,
            &["Not a block device or regular file", "directory", s(&dir)],
        );
        run(
            &tiny,
            &[
                "Metadata device/file too small.  Is this binary metadata?",
                "1024 bytes",
                s(&tiny),
            ],
        );
        run(
            &xml,
            &[
                "This looks like XML.  This tool only supports the binary metadata format.",
                "_restore",
                s(&xml),
            ],
        );
    }
    // The restores: a missing or directory input, a missing, directory or tiny output.
    let out = d.path("out.img");
    std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    let small = d.path("small.img");
    std::fs::write(&small, vec![0u8; 4096]).unwrap();
    fn r<'a>(i: &'a Path, o: &'a Path) -> Vec<&'a str> {
        vec!["era_restore", "-i", s(i), "-o", s(o)]
    }
    fails_with(
        &r(&missing, &out),
        &["Couldn't find input file", s(&missing)],
    );
    fails_with(
        &r(&dir, &out),
        &["Not a block device or regular file", s(&dir)],
    );
    fails_with(
        &r(&xml, &missing),
        &["Couldn't find output file", s(&missing)],
    );
    fails_with(
        &r(&xml, &dir),
        &["Not a block device or regular file", s(&dir)],
    );
    fails_with(
        &r(&xml, &small),
        &[
            "Output file too small",
            "the kernel needs at least",
            s(&small),
        ],
    );
}

#[test]
fn unformatted_metadata_and_a_missing_snapshot_say_the_peers_words() {
    let d = TestDir::new("peer-words");
    let era = era_image(&d);
    let zero = d.path("zero.img");
    std::fs::write(&zero, vec![0u8; 16 << 20]).unwrap();
    // A zeroed superblock: not formatted, and the peer's "bad checksum in superblock".
    let o = run_tool("era_check", &[s(&zero)]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("not formatted") && e.contains("bad checksum in superblock"),
        "{e}"
    );
    // `-q` still prints nothing.
    let o = run_tool("era_check", &["-q", s(&zero)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    // --metadata-snapshot without a snapshot: "no current metadata snap".
    for args in [
        vec![
            "era_invalidate",
            "--written-since",
            "0",
            "--metadata-snapshot",
        ],
        vec!["era_dump", "--metadata-snapshot"],
        vec!["era_check", "--metadata-snapshot"],
    ] {
        let mut args = args.clone();
        args.push(s(&era));
        let o = run_tool(args[0], &args[1..]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = text(&o.stderr);
        assert!(
            e.contains("no current metadata snap") && e.contains("holds no metadata snapshot"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn a_checkers_report_goes_to_standard_error_and_json_to_standard_output() {
    let d = TestDir::new("peer-stderr");
    let era = era_image(&d);
    let clone = repo().join("fixtures/samples/clone-b-partial/metadata.img");
    let zero = d.path("zero.img");
    std::fs::write(&zero, vec![0u8; 1 << 20]).unwrap();
    for (tool, img, code, phrase) in [
        ("era_check", era.as_path(), 0, "era metadata OK"),
        ("clone_check", clone.as_path(), 0, "clone metadata OK"),
        ("era_check", zero.as_path(), 1, "error: block 0: superblock"),
        (
            "clone_check",
            zero.as_path(),
            1,
            "error: block 0: superblock",
        ),
        ("clone_check", era.as_path(), 1, "not dm-clone"),
    ] {
        let o = run_tool(tool, &[s(img)]);
        assert_eq!(o.status.code(), Some(code), "{tool} {img:?}");
        assert!(o.stdout.is_empty(), "{tool}: {}", text(&o.stdout));
        let e = text(&o.stderr);
        assert!(e.contains(phrase), "{tool} {img:?}: {e}");
        // Every line names the input.
        for l in e.lines() {
            assert!(l.starts_with(&format!("{}: ", s(img))), "{tool}: {l}");
        }
        let o = run_tool(tool, &["--format", "json", s(img)]);
        assert_eq!(o.status.code(), Some(code), "{tool} --format json");
        assert!(text(&o.stdout).starts_with('{'), "{tool}");
        assert!(o.stderr.is_empty(), "{tool}: {}", text(&o.stderr));
    }
}

/// The peer's pipe test: the reader takes a little of a long dump and goes away
/// while the tool is blocked writing; the tool fails without a word.
#[test]
fn a_dump_whose_reader_goes_away_mid_write_fails_silently() {
    use std::io::Read;
    let d = TestDir::new("peer-pipe");
    // 1 M blocks: era_dump prints several megabytes, more than a pipe holds.
    let xml = "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"1048576\" current_era=\"1\">\n</superblock>\n";
    let x = d.path("big.xml");
    std::fs::write(&x, xml).unwrap();
    let img = d.path("big.img");
    std::fs::write(&img, vec![0u8; 16 << 20]).unwrap();
    let o = run_tool("era_restore", &["-q", "-i", s(&x), "-o", s(&img)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    for args in [
        vec!["era_dump", s(&img)],
        vec!["era_dump", "--logical", s(&img)],
    ] {
        let mut child = Command::new(bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 128];
        out.read_exact(&mut buf).unwrap();
        drop(out);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(o.stderr.is_empty(), "{args:?}: {}", text(&o.stderr));
    }
}

/// An image file written by a restore or repair is replaced only when complete: a
/// failure leaves the previous file byte for byte, and no temporary file behind.
#[test]
fn a_failed_restore_or_repair_keeps_the_previous_image_file() {
    let d = TestDir::new("peer-keep");
    let era = era_image(&d);
    let xml = d.path("e.xml");
    std::fs::write(&xml, run_tool("era_dump", &[s(&era)]).stdout).unwrap();
    let out = d.path("out.img");
    std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    let o = run_tool("era_restore", &["-q", "-i", s(&xml), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(0));
    let good = std::fs::read(&out).unwrap();
    let mut bad_xml = std::fs::read(&xml).unwrap();
    bad_xml.truncate(bad_xml.len() / 2);
    let bad = d.path("bad.xml");
    std::fs::write(&bad, bad_xml).unwrap();
    let junk = d.path("junk.img");
    std::fs::write(&junk, vec![0x5au8; 1 << 20]).unwrap();
    let clone_junk = d.path("cbad.xml");
    std::fs::write(&clone_junk, "<superblock uuid=\"\" region_size=\"64\"").unwrap();
    for args in [
        vec!["era_restore", "-i", s(&bad), "-o", s(&out)],
        vec!["clone_restore", "-i", s(&clone_junk), "-o", s(&out)],
        vec!["era_repair", "-i", s(&junk), "-o", s(&out)],
        vec!["clone_repair", "-i", s(&junk), "-o", s(&out)],
    ] {
        let o = run_tool(args[0], &args[1..]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            std::fs::read(&out).unwrap() == good,
            "{args:?} changed the image"
        );
        let names: Vec<String> = std::fs::read_dir(d.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{args:?} left {names:?}");
    }
    // The pack tools likewise: a failed pack or unpack keeps the previous file.
    let pack = d.path("good.pack");
    std::fs::write(&pack, b"previous").unwrap();
    for args in [
        vec!["era_metadata_pack", "-i", s(&junk), "-o", s(&pack)],
        vec!["clone_metadata_pack", "-i", s(&junk), "-o", s(&pack)],
        vec!["era_metadata_unpack", "-i", s(&junk), "-o", s(&pack)],
    ] {
        let o = run_tool(args[0], &args[1..]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(std::fs::read(&pack).unwrap(), b"previous", "{args:?}");
    }
    // A successful restore replaces it, keeping its size, mode and owner.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
    // And its owner, where the tool may set it (as root).
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata(&out).unwrap().uid() == 0;
    if root {
        std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    }
    let o = run_tool("era_repair", &["-q", "-i", s(&era), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(m.len(), 4 << 20);
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    if root {
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
    }
    let o = run_tool("era_check", &[s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// An output named through a symbolic link: the file it names is replaced, the
/// link stays a link (a dump, a restore).
#[test]
fn an_output_named_through_a_symlink_replaces_the_file_it_names() {
    let d = TestDir::new("peer-symlink");
    let era = era_image(&d);
    let (xml, xml_link) = (d.path("e.xml"), d.path("e-link.xml"));
    std::fs::write(&xml, b"previous").unwrap();
    std::os::unix::fs::symlink(&xml, &xml_link).unwrap();
    let o = run_tool("era_dump", &["-o", s(&xml_link), s(&era)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&xml_link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(text(&std::fs::read(&xml).unwrap()).starts_with("<superblock"));
    let (img, img_link) = (d.path("out.img"), d.path("out-link.img"));
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    std::os::unix::fs::symlink(&img, &img_link).unwrap();
    let o = run_tool("era_restore", &["-q", "-i", s(&xml), "-o", s(&img_link)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&img_link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(run_tool("era_check", &[s(&img)]).status.code(), Some(0));
}
