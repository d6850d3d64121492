//! What the tools say: warnings a user must see, and the text of errors.

use std::path::Path;

use crate::util::{load_zst, repo, run_tool, TestDir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A restore or repair onto a device the kernel could not run on (issue: "metadata
/// blocks 10/10 used" succeeded silently) is refused with the size needed, the
/// figure era_metadata_size prints for the command the message names.
#[test]
fn a_restore_onto_a_device_too_small_to_run_on_is_refused_with_the_size_needed() {
    let d = TestDir::new("msg-full");
    let era = d.path("era.img");
    std::fs::write(
        &era,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    let xml = d.path("e.xml");
    std::fs::write(&xml, run_tool("era_dump", &[s(&era)]).stdout).unwrap();
    let img = d.path("small.img");
    for tool in [
        vec!["era_restore", "-i", s(&xml), "-o", s(&img)],
        vec!["era_repair", "-i", s(&era), "-o", s(&img)],
    ] {
        std::fs::write(&img, vec![0u8; 10 * 4096]).unwrap();
        let o = run_tool(tool[0], &tool[1..]);
        assert_eq!(o.status.code(), Some(1), "{tool:?}");
        let e = text(&o.stderr);
        let need: u64 = e
            .split("needs at least ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{tool:?}: {e}"));
        let cmd = e
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("{tool:?}: no command in {e}"));
        let mut words: Vec<&str> = cmd.split_whitespace().collect();
        assert_eq!(words[0], "era_metadata_size", "{e}");
        words.extend(["-n", "-u", "b"]);
        let o = run_tool(words[0], &words[1..]);
        assert_eq!(text(&o.stdout), format!("{}\n", need * 4096), "{cmd}");
        for (blocks, ok) in [(need - 1, false), (need, true)] {
            std::fs::write(&img, vec![0u8; (blocks * 4096) as usize]).unwrap();
            let o = run_tool(tool[0], &tool[1..]);
            assert_eq!(
                o.status.success(),
                ok,
                "{tool:?} into {blocks}: {}",
                text(&o.stderr)
            );
        }
    }
}

/// An era image whose first writeset-tree entry is zeroed (root 0, nr_bits 0) in
/// a leaf that still checksums: a lost writeset whose count cannot be trusted.
fn lost_writeset_image(d: &TestDir) -> (std::path::PathBuf, u64, u64) {
    use dmce::pdata::checksum::{stamp, BlockKind};
    let mut img = load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst"));
    let sb = dmce::era::superblock::EraSuperblock::decode((&img[..4096]).try_into().unwrap());
    let root = sb.writeset_tree_root;
    let at = (root * 4096) as usize;
    let node: &mut [u8; 4096] = (&mut img[at..at + 4096]).try_into().unwrap();
    let nr_entries = u32::from_le_bytes(node[16..20].try_into().unwrap());
    let max_entries = u32::from_le_bytes(node[20..24].try_into().unwrap()) as usize;
    assert!(nr_entries >= 1 && node[0..4] != [0; 4]);
    let v = 32 + 8 * max_entries;
    node[v..v + 12].fill(0);
    let era = u64::from_le_bytes(node[32..40].try_into().unwrap());
    stamp(node, root, BlockKind::BtreeNode);
    let p = d.path("lost-ws.img");
    std::fs::write(&p, &img).unwrap();
    (p, sb.nr_blocks as u64, era)
}

/// A lost writeset is over-reported with the superblock's nr_blocks, and what the
/// repairs write checks clean.
#[test]
fn a_lost_writeset_is_over_reported_with_the_superblocks_nr_blocks() {
    let d = TestDir::new("msg-lost-ws");
    let (img, nr_blocks, era) = lost_writeset_image(&d);
    let o = run_tool("era_check", &[s(&img)]);
    assert_eq!(o.status.code(), Some(1));
    let all = format!("<blocks>\n  <range begin=\"0\" end=\"{nr_blocks}\"/>\n</blocks>\n");
    let o = run_tool(
        "era_invalidate",
        &["--written-since", &era.to_string(), s(&img)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), all);
    assert!(
        text(&o.stderr).contains(&format!("all {nr_blocks} blocks are listed")),
        "{}",
        text(&o.stderr)
    );
    // Era 0 lists every block whatever the damage: read from the superblock alone,
    // with nothing to say about the rest.
    let o = run_tool("era_invalidate", &["--written-since", "0", s(&img)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), all);
    assert_eq!(text(&o.stderr), "");
    let o = run_tool("era_dump", &["-r", s(&img)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let xml = text(&o.stdout);
    assert!(!xml.contains("nr_bits=\"0\""), "{xml}");
    assert!(xml.contains(&format!("nr_bits=\"{nr_blocks}\"")), "{xml}");
    // Restored, the repairing dump checks clean; so does era_repair's image.
    let x = d.path("r.xml");
    std::fs::write(&x, xml).unwrap();
    let out = d.path("out.img");
    std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    let o = run_tool("era_restore", &["-i", s(&x), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run_tool("era_check", &[s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    let o = run_tool("era_repair", &["-i", s(&img), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run_tool("era_check", &[s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    // Every block is listed as written since the lost era.
    let o = run_tool("era_invalidate", &["--written-since", "1", s(&out)]);
    assert_eq!(
        text(&o.stdout),
        format!("<blocks>\n  <range begin=\"0\" end=\"{nr_blocks}\"/>\n</blocks>\n")
    );
}

/// The other target's metadata, unformatted metadata and a missing snapshot are
/// named as such, never as damage, with the input named and one "error:" at most.
#[test]
fn error_text_names_the_input_and_the_real_cause() {
    let d = TestDir::new("msg-text");
    let era = d.path("era.img");
    std::fs::write(
        &era,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    let clone = repo().join("fixtures/samples/clone-b-partial/metadata.img");
    let zero = d.path("zero.img");
    std::fs::write(&zero, vec![0u8; 1 << 20]).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["clone_dump", s(&era)],
            "this is dm-era metadata, not dm-clone",
        ),
        (
            vec!["era_dump", s(&clone)],
            "this is dm-clone metadata, not dm-era",
        ),
        (vec!["era_dump", s(&zero)], "not formatted"),
        (vec!["clone_dump", s(&zero)], "not formatted"),
        (
            vec!["era_dump", "--metadata-snapshot", s(&era)],
            "no metadata snapshot",
        ),
        (
            vec!["era_invalidate", "--written-since", "0", s(&zero)],
            "not formatted",
        ),
        (
            vec!["era_invalidate", "--written-since", "0", s(&clone)],
            "this is dm-clone metadata, not dm-era",
        ),
        (
            vec![
                "era_invalidate",
                "--written-since",
                "0",
                "--metadata-snapshot",
                s(&era),
            ],
            "no metadata snapshot",
        ),
    ];
    for (args, phrase) in cases {
        let o = run_tool(args[0], &args[1..]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = text(&o.stderr);
        assert!(e.contains(phrase), "{args:?}: {e}");
        assert!(
            e.contains(args[args.len() - 1]),
            "{args:?}: the input is not named: {e}"
        );
        assert!(
            !e.contains("damaged") && !e.contains("error:"),
            "{args:?}: {e}"
        );
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
    }
    let o = run_tool("clone_check", &[s(&era)]);
    assert!(text(&o.stderr).contains("this is dm-era metadata, not dm-clone"));
}

/// An image cut short is said to be truncated, with both sizes, instead of blaming
/// the tree node that points past its end; the dumps do not call it damage, and
/// era_invalidate lists every block.
#[test]
fn a_truncated_image_is_named_as_such() {
    let d = TestDir::new("msg-truncated");
    let era = load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst"));
    let clone =
        std::fs::read(repo().join("fixtures/samples/clone-b-partial/metadata.img")).unwrap();
    let (et, ct) = (d.path("era-cut.img"), d.path("clone-cut.img"));
    std::fs::write(&et, &era[..5 * 4096]).unwrap();
    std::fs::write(&ct, &clone[..5 * 4096]).unwrap();
    for args in [
        vec!["era_check", s(&et)],
        vec!["era_dump", s(&et)],
        vec!["clone_check", s(&ct)],
        vec!["clone_dump", s(&ct)],
    ] {
        let o = run_tool(args[0], &args[1..]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = text(&o.stderr);
        assert!(
            e.contains("the image is truncated")
                && e.contains(
                    "has 2048 blocks (8388608 bytes), the device or file has 5 (20480 bytes)"
                ),
            "{args:?}: {e}"
        );
        // One line; a checker adds its count of errors.
        let lines = if args[0].ends_with("_check") { 2 } else { 1 };
        assert_eq!(e.lines().count(), lines, "{args:?}: {e}");
        assert!(e.lines().all(|l| l.contains(args[1])), "{args:?}: {e}");
        assert!(
            !e.contains("tree") && !e.contains("damaged"),
            "{args:?}: {e}"
        );
    }
    let o = run_tool("era_invalidate", &["--written-since", "3", s(&et)]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o.stdout),
        "<blocks>\n  <range begin=\"0\" end=\"1024\"/>\n</blocks>\n"
    );
    let e = text(&o.stderr);
    assert!(
        e.contains("the image is truncated: all 1024 blocks are listed"),
        "{e}"
    );
    assert!(!e.contains("tree"), "{e}");
    // The repairs salvage what the image holds, and say it was truncated.
    let out = d.path("out.img");
    for args in [
        vec!["era_repair", "-i", s(&et), "-o", s(&out)],
        vec![
            "clone_repair",
            "--assume-unhydrated",
            "-i",
            s(&ct),
            "-o",
            s(&out),
        ],
    ] {
        std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
        let o = run_tool(args[0], &args[1..]);
        let e = text(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
        assert!(e.contains("the image is truncated"), "{args:?}: {e}");
        let check = if args[0] == "era_repair" {
            "era_check"
        } else {
            "clone_check"
        };
        assert_eq!(
            run_tool(check, &[s(&out)]).status.code(),
            Some(0),
            "{args:?}"
        );
    }
}

/// A finding quoted inside another line (a repairing dump's notes, a pack's reason
/// for packing every block) is quoted without its "error:": no line of a tool's
/// own says "error:" at all.
#[test]
fn a_quoted_finding_has_no_second_error_prefix() {
    let d = TestDir::new("msg-nested");
    let era = load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst"));
    let cut = d.path("era-cut.img");
    std::fs::write(&cut, &era[..5 * 4096]).unwrap();
    let (pack, out) = (d.path("p.pack"), d.path("out.img"));
    std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    for args in [
        vec!["era_dump", "--repair", s(&cut)],
        vec!["era_metadata_pack", "-i", s(&cut), "-o", s(&pack)],
        vec!["era_repair", "-i", s(&cut), "-o", s(&out)],
    ] {
        let o = run_tool(args[0], &args[1..]);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let e = text(&o.stderr);
        assert!(e.lines().count() >= 1, "{args:?}: nothing said");
        for l in e.lines() {
            assert!(l.starts_with(&format!("{}: ", args[0])), "{args:?}: {l}");
            assert!(!l.contains("error:"), "{args:?}: {l}");
        }
    }
}
