//! clone_restore and era_restore from the command line: safety refusals, error
//! messages that name the line and column, quiet mode, and interoperability with
//! Debian's thin-provisioning-tools 0.9.0 (era_check, era_dump, era_restore in
//! /usr/sbin; set DMCE_NO_PEER_TOOLS=1 to leave those checks out explicitly).

use std::path::Path;
use std::process::Command;

use crate::roundtrip::{gen_clone_xml, EraGen};
use crate::util::{peer, run_tool, TestDir};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn make_file(p: &Path, bytes: u64) {
    let f = std::fs::File::create(p).unwrap();
    f.set_len(bytes).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn restores_and_prints_a_summary_or_nothing_when_quiet() {
    let d = TestDir::new("restore-summary");
    let (xml, img) = (d.path("c.xml"), d.path("c.img"));
    std::fs::write(&xml, gen_clone_xml(41, 64, 2048, true)).unwrap();
    make_file(&img, 1 << 20);
    let o = run_tool("clone_restore", &["-i", s(&xml), "-o", s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("restored 2048 regions"),
        "{}",
        text(&o.stdout)
    );
    let o = run_tool(
        "clone_restore",
        &["-q", "--input", s(&xml), "--output", s(&img)],
    );
    assert!(o.status.success());
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    let o = run_tool("clone_check", &[s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let o = run_tool("clone_dump", &[s(&img)]);
    assert_eq!(text(&o.stdout), std::fs::read_to_string(&xml).unwrap());
}

#[test]
fn refuses_the_input_as_output_a_missing_output_and_a_small_one() {
    let d = TestDir::new("restore-refuse");
    let (xml, img) = (d.path("e.xml"), d.path("e.img"));
    std::fs::write(&xml, EraGen::new(42, 100_000, 3, 2).xml(true)).unwrap();
    let o = run_tool("era_restore", &["-i", s(&xml), "-o", s(&xml)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("the output is the input"),
        "{}",
        text(&o.stderr)
    );
    let o = run_tool("era_restore", &["-i", s(&xml), "-o", s(&img)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no such file"),
        "{}",
        text(&o.stderr)
    );
    // Large enough for one archived writeset (era_metadata_size's figure: 330
    // blocks), not for the two of the input: found at the end.
    std::fs::write(&img, vec![7u8; 335 * 4096]).unwrap();
    let o = run_tool("era_restore", &["-i", s(&xml), "-o", s(&img)]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("too small")
            && err.contains("needs at least 340 blocks")
            && err.contains("era_metadata_size --nr-blocks 100000 --writesets 2"),
        "{err}"
    );
    // Too small from the start: nothing is written, the same figure.
    make_file(&img, 20 * 4096);
    let o = run_tool("era_restore", &["-i", s(&xml), "-o", s(&img)]);
    assert!(
        text(&o.stderr).contains("needs at least 340 blocks"),
        "{}",
        text(&o.stderr)
    );
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0));
    make_file(&img, 340 * 4096);
    let o = run_tool("era_restore", &["-q", "-i", s(&xml), "-o", s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run_tool("era_check", &[s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stdout));
}

/// On an image file, a failed restore leaves the previous metadata as it was (the
/// new image is written beside it); the block-device path, which invalidates the
/// old superblock first, is covered in-process by `crash`.
#[test]
fn a_failed_restore_leaves_the_previous_image() {
    let d = TestDir::new("restore-invalidate");
    let (good, bad, img) = (d.path("good.xml"), d.path("bad.xml"), d.path("m.img"));
    std::fs::write(&good, gen_clone_xml(43, 64, 2048, false)).unwrap();
    let mut x = gen_clone_xml(44, 64, 2048, false);
    x.truncate(x.len() - 20);
    std::fs::write(&bad, x).unwrap();
    make_file(&img, 1 << 20);
    assert!(
        run_tool("clone_restore", &["-q", "-i", s(&good), "-o", s(&img)])
            .status
            .success()
    );
    let before = std::fs::read(&img).unwrap();
    let o = run_tool("clone_restore", &["-i", s(&bad), "-o", s(&img)]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("truncated"), "{}", text(&o.stderr));
    assert!(std::fs::read(&img).unwrap() == before);
    let o = run_tool("clone_check", &[s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// Each bad input, the line and column the error must name, and a phrase of it.
#[test]
fn bad_input_is_reported_with_line_and_column() {
    let clone_head =
        "<superblock uuid=\"\" region_size=\"64\" target_size=\"6400\" nr_regions=\"100\">\n";
    let era_head =
        "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"100\" current_era=\"5\">\n";
    let ws = |era: u32| format!("  <writeset era=\"{era}\" nr_bits=\"100\">\n");
    let cases: Vec<(&str, String, (u64, u64), &str)> = vec![
        ("clone_restore", format!("{clone_head}  <hydrated begin=\"5\" end=\"9\"/>\n  <hydrated begin=\"8\" end=\"12\"/>\n</superblock>\n"), (3, 3), "overlaps"),
        ("clone_restore", format!("{clone_head}  <hydrated begin=\"50\" end=\"60\"/>\n  <hydrated begin=\"1\" end=\"2\"/>\n</superblock>\n"), (3, 3), "sorted"),
        ("clone_restore", format!("{clone_head}  <hydrated begin=\"50\" end=\"101\"/>\n</superblock>\n"), (2, 3), "larger than the maximum 100"),
        ("clone_restore", format!("{clone_head}  <hydrated begin=\"5\" end=\"5\"/>\n</superblock>\n"), (2, 3), "empty range"),
        ("clone_restore", format!("{clone_head}  <hydrated begin=\"5\" end=\"6\" x=\"1\"/>\n</superblock>\n"), (2, 3), "unknown attribute x"),
        ("clone_restore", format!("{clone_head}  <region begin=\"5\"/>\n</superblock>\n"), (2, 3), "unknown element <region>"),
        ("clone_restore", format!("{clone_head}  <hydrated begin=\"5\" end=\"6\"/>\n"), (3, 1), "truncated"),
        ("clone_restore", "<superblock uuid=\"\" region_size=\"64\" target_size=\"6400\" nr_regions=\"99\">\n</superblock>\n".into(), (1, 1), "gives 100 regions"),
        ("clone_restore", "<superblock uuid=\"\" region_size=\"48\" target_size=\"4800\" nr_regions=\"100\">\n</superblock>\n".into(), (1, 1), "power of two"),
        ("era_restore", format!("{era_head}{}    <bit block=\"3\" value=\"true\"/>\n    <bit block=\"2\" value=\"true\"/>\n", ws(5)), (4, 5), "increasing block order"),
        ("era_restore", format!("{era_head}{}    <bit block=\"100\" value=\"false\"/>\n", ws(5)), (3, 5), "out of range"),
        ("era_restore", format!("{era_head}{}    <marked block_begin=\"60\" len=\"10\"/>\n    <marked block_begin=\"65\" len=\"2\"/>\n", ws(5)), (4, 5), "sorted and disjoint"),
        ("era_restore", format!("{era_head}{}    <marked block_begin=\"90\" len=\"11\"/>\n", ws(5)), (3, 5), "out of range"),
        ("era_restore", format!("{era_head}{}", ws(6)), (2, 3), "above current_era 5"),
        ("era_restore", format!("{era_head}{}  </writeset>\n{}", ws(4), ws(4)), (4, 3), "duplicate era"),
        ("era_restore", format!("{era_head}{}  </writeset>\n{}", ws(3), ws(5)), (4, 3), "era 4 is missing"),
        ("era_restore", format!("{era_head}{}  </writeset>\n  <era_array>\n", ws(3)), (4, 3), "era 4 is missing"),
        ("era_restore", format!("{era_head}  <era_array>\n    <era block=\"1\" era=\"6\"/>\n"), (3, 5), "above current_era 5"),
        ("era_restore", format!("{era_head}  <era_array>\n    <era block=\"1\" era=\"1\"/>\n    <era block=\"1\" era=\"1\"/>\n"), (4, 5), "duplicate block"),
        ("era_restore", format!("{era_head}  <era_array>\n    <era block=\"100\" era=\"1\"/>\n"), (3, 5), "out of range"),
        ("era_restore", format!("{era_head}  <era_array>\n    <era block=\"1\" era=\"1\"/>\n"), (4, 1), "truncated"),
        ("era_restore", format!("{era_head}  <era_array>\n    <era block=\"1\" era=\"1\" when=\"now\"/>\n"), (3, 5), "unknown attribute when"),
        ("era_restore", format!("{era_head}  <metadata/>\n"), (2, 3), "unknown element <metadata>"),
        ("era_restore", format!("{era_head}  <era_array>\n  </era_array>\n  {}", ws(5)), (4, 5), "must come last"),
        ("era_restore", format!("{era_head}  <era_array>\n    <era block=\"x1\" era=\"1\"/>\n"), (3, 5), "not a decimal number"),
        ("era_restore", format!("{era_head}  hello\n"), (2, 3), "unexpected text"),
        ("era_restore", "<superblock uuid=\"\" block_size=\"12\" nr_blocks=\"100\" current_era=\"5\">\n".into(), (1, 1), "multiple of 8"),
    ];
    let d = TestDir::new("restore-errors");
    let img = d.path("m.img");
    make_file(&img, 1 << 20);
    for (i, (tool, xml, (line, col), phrase)) in cases.iter().enumerate() {
        let p = d.path(&format!("{i}.xml"));
        std::fs::write(&p, xml).unwrap();
        let o = run_tool(tool, &["-i", s(&p), "-o", s(&img)]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "case {i}: {err}");
        let at = format!("{}:{line}:{col}: ", s(&p));
        assert!(
            err.contains(&at) && err.contains(phrase),
            "case {i}: expected \"{at}…{phrase}…\" in:\n{err}\ninput:\n{xml}"
        );
    }
}

#[test]
fn debian_era_tools_accept_our_images_and_we_accept_theirs() {
    let (Some(check), Some(dump), Some(restore)) =
        (peer("era_check"), peer("era_dump"), peer("era_restore"))
    else {
        return;
    };
    let d = TestDir::new("restore-peer");
    for (seed, n, cur, ws) in [(51, 5000, 4, 2), (52, 1018 * 3 + 1, 9, 0), (53, 64, 1, 1)] {
        let what = format!("seed {seed}");
        let xml = EraGen::new(seed, n, cur, ws).xml(false);
        let (x, ours, theirs) = (d.path("x.xml"), d.path("ours.img"), d.path("theirs.img"));
        std::fs::write(&x, &xml).unwrap();
        make_file(&ours, 1 << 20);
        make_file(&theirs, 1 << 20);
        let o = run_tool("era_restore", &["-q", "-i", s(&x), "-o", s(&ours)]);
        assert!(o.status.success(), "{what}: {}", text(&o.stderr));
        let o = Command::new(&check).arg(&ours).output().unwrap();
        assert!(
            o.status.success(),
            "{what}: 0.9.0 era_check: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let o = Command::new(&dump).arg(&ours).output().unwrap();
        assert!(o.status.success(), "{what}: 0.9.0 era_dump failed");
        let ours_dump = run_tool("era_dump", &[s(&ours)]);
        assert_eq!(
            text(&o.stdout),
            text(&ours_dump.stdout),
            "{what}: 0.9.0 era_dump vs ours"
        );
        assert_eq!(text(&o.stdout), xml, "{what}: 0.9.0 era_dump vs the input");
        // The other way: 0.9.0's era_restore output passes our checker and dumps the same.
        let o = Command::new(&restore)
            .args(["-i", s(&x), "-o", s(&theirs)])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{what}: 0.9.0 era_restore: {}",
            text(&o.stderr)
        );
        let o = run_tool("era_check", &[s(&theirs)]);
        assert!(
            o.status.success(),
            "{what}: our era_check on 0.9.0's image: {}",
            text(&o.stdout)
        );
        assert_eq!(
            text(&run_tool("era_dump", &[s(&theirs)]).stdout),
            xml,
            "{what}"
        );
    }
}

/// What Debian's 0.9.0 tools make of a committed current writeset (the shape a
/// crash leaves), and that the XML they produce restores with our tool.
#[test]
fn debian_era_dump_of_a_current_writeset() {
    let (Some(check), Some(dump)) = (peer("era_check"), peer("era_dump")) else {
        return;
    };
    let d = TestDir::new("restore-peer-current");
    let xml = EraGen::new(63, 300, 3, 2).xml(false);
    let dev = dmce::io::MemDevice::new(256);
    crate::roundtrip::era_restore(&xml, &dev);
    crate::roundtrip::make_current_writeset(&dev);
    let img = d.path("cur.img");
    std::fs::write(&img, dev.to_bytes()).unwrap();
    let o = Command::new(&check).arg(&img).output().unwrap();
    assert!(
        o.status.success(),
        "0.9.0 era_check: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let o = Command::new(&dump).arg(&img).output().unwrap();
    let theirs = text(&o.stdout);
    assert!(o.status.success(), "0.9.0 era_dump: {}", text(&o.stderr));
    assert_eq!(text(&run_tool("era_dump", &[s(&img)]).stdout), xml);
    // 0.9.0 leaves the current writeset (era 3) out.
    assert!(!theirs.contains("<writeset era=\"3\""), "{theirs}");
    assert!(theirs.contains("<writeset era=\"2\""), "{theirs}");
    // We restore it with an empty current writeset: clean for both checkers, and
    // 0.9.0's dump of the result is its input again.
    let x = d.path("theirs.xml");
    std::fs::write(&x, &theirs).unwrap();
    let out = d.path("out.img");
    make_file(&out, 1 << 20);
    let o = run_tool("era_restore", &["-q", "-i", s(&x), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run_tool("era_check", &[s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let o = Command::new(&check).arg(&out).output().unwrap();
    assert!(
        o.status.success(),
        "0.9.0 era_check: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let o = Command::new(&dump).arg(&out).output().unwrap();
    assert_eq!(text(&o.stdout), theirs);
    let ours = text(&run_tool("era_dump", &[s(&out)]).stdout);
    assert!(ours
        .contains("<writeset era=\"3\" nr_bits=\"300\">\n    <bit block=\"0\" value=\"false\"/>"));
}
