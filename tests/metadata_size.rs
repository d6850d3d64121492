//! clone_metadata_size and era_metadata_size: the figure is what the restores
//! require. Metadata restored into exactly that size is accepted (and checks
//! clean, with free blocks to commit in); one block less is refused with the same
//! figure and the command that prints it.

use std::path::Path;

use crate::roundtrip::EraGen;
use crate::util::{run_tool, TestDir};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn make_file(p: &Path, bytes: u64) {
    let f = std::fs::File::create(p).unwrap();
    f.set_len(bytes).unwrap();
}

/// The figure in bytes, from the size tool's `-u b -n` output.
fn figure(tool: &str, args: &[&str]) -> u64 {
    let mut a = args.to_vec();
    a.extend(["-u", "b", "-n"]);
    let o = run_tool(tool, &a);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{tool} {args:?}: {}",
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    let n: u64 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{tool}: {out}"));
    assert_eq!(n % 4096, 0, "{tool} {args:?}: {n} is not whole blocks");
    n
}

/// `metadata blocks U/T used` of a restore's report line.
fn used_of(report: &str) -> (u64, u64) {
    let tail = report.split("metadata blocks ").nth(1).expect(report);
    let (u, rest) = tail.split_once('/').expect(report);
    let t = rest.split_whitespace().next().expect(report);
    (u.parse().unwrap(), t.parse().unwrap())
}

/// Restores with `restore` (tool and arguments before `-o`) into `bytes` and into
/// one block less: the first is accepted and gives the report line, the second is
/// refused naming the figure and `command`.
fn exactly_and_one_less(d: &TestDir, restore: &[&str], bytes: u64, command: &str) -> String {
    let img = d.path("out.img");
    make_file(&img, bytes - 4096);
    let mut args = restore[1..].to_vec();
    args.extend(["-o", s(&img)]);
    let o = run_tool(restore[0], &args);
    assert_eq!(o.status.code(), Some(1), "{restore:?} into one block less");
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "needs at least {} blocks ({bytes} bytes)",
            bytes / 4096
        )) && err.contains(command),
        "{restore:?}: {err}"
    );
    make_file(&img, bytes);
    let o = run_tool(restore[0], &args);
    assert_eq!(o.status.code(), Some(0), "{restore:?}: {}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    let check = if restore[0].starts_with("clone") {
        "clone_check"
    } else {
        "era_check"
    };
    let c = run_tool(check, &[s(&img)]);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c.stdout));
    text(&o.stdout)
}

#[test]
fn a_fully_hydrated_clone_fits_the_figure_and_not_one_block_less() {
    let d = TestDir::new("msize-clone");
    for nr in [1u64, 2048, 32_577, 1 << 20, 1 << 23] {
        let xml = d.path("c.xml");
        std::fs::write(
            &xml,
            format!(
                "<superblock uuid=\"\" region_size=\"8\" target_size=\"{}\" nr_regions=\"{nr}\">\n  <hydrated begin=\"0\" end=\"{nr}\"/>\n</superblock>\n",
                nr * 8
            ),
        )
        .unwrap();
        let nrs = nr.to_string();
        let bytes = figure("clone_metadata_size", &["--nr-regions", &nrs]);
        let dev = (nr * 8).to_string();
        assert_eq!(
            figure("clone_metadata_size", &["-s", &dev, "-r", "8"]),
            bytes
        );
        let command = format!("clone_metadata_size --nr-regions {nr}");
        let report = exactly_and_one_less(&d, &["clone_restore", "-i", s(&xml)], bytes, &command);
        let (used, total) = used_of(&report);
        assert_eq!(total * 4096, bytes);
        // The figure is twice the bitset and the space map (the commit copies
        // them), so at most twice what the restored image uses; the kernel grows
        // the bitset's index tree a little less full than the restore packs it.
        assert!(
            used < total && total <= 2 * used + 16,
            "{nr}: {used}/{total}"
        );
        // clone_repair writes through the same restore.
        let src = d.path("src.img");
        std::fs::copy(d.path("out.img"), &src).unwrap();
        exactly_and_one_less(&d, &["clone_repair", "-i", s(&src)], bytes, &command);
    }
}

#[test]
fn era_metadata_with_n_writesets_fits_the_figure_and_not_one_block_less() {
    let d = TestDir::new("msize-era");
    for (seed, nr, k) in [
        (1u64, 1024u64, 1u64),
        (2, 1024, 3),
        (3, 100_000, 2),
        (4, 300_000, 5),
    ] {
        let xml = d.path("e.xml");
        std::fs::write(&xml, EraGen::new(seed, nr, k + 2, k).xml(true)).unwrap();
        let (nrs, ks) = (nr.to_string(), k.to_string());
        let bytes = figure("era_metadata_size", &["--nr-blocks", &nrs, "-w", &ks]);
        let dev = (nr * 128).to_string();
        assert_eq!(
            figure(
                "era_metadata_size",
                &["-s", &dev, "-b", "64k", "--writesets", &ks]
            ),
            bytes
        );
        let command = format!("era_metadata_size --nr-blocks {nr} --writesets {k}");
        let report = exactly_and_one_less(&d, &["era_restore", "-i", s(&xml)], bytes, &command);
        assert!(report.contains(&format!("{k} writesets")), "{report}");
        let (used, total) = used_of(&report);
        assert!(used < total && total * 4096 == bytes, "{used}/{total}");
        // More writesets need more room: the same input is too large for the
        // figure of fewer.
        if k > 1 {
            let fewer = figure(
                "era_metadata_size",
                &["--nr-blocks", &nrs, "-w", &(k - 1).to_string()],
            );
            assert!(fewer < bytes);
        }
    }
}

#[test]
fn era_inputs_without_writesets_or_without_the_current_one() {
    let d = TestDir::new("msize-era-shapes");
    // No writesets (era_dump --logical): one archived writeset is still allowed
    // for, as every checkpoint archives one.
    let xml = d.path("e.xml");
    std::fs::write(&xml, EraGen::new(5, 5000, 4, 0).xml(true)).unwrap();
    let bytes = figure("era_metadata_size", &["--nr-blocks", "5000"]);
    exactly_and_one_less(
        &d,
        &["era_restore", "-i", s(&xml)],
        bytes,
        "era_metadata_size --nr-blocks 5000 --writesets 1",
    );
    // thin-provisioning-tools 0.9.0's dump of a running target ends one era before
    // the current one: the restore adds an empty current writeset, which the
    // kernel archives at the next resume, so it counts.
    let x = EraGen::new(6, 5000, 4, 2)
        .xml(true)
        .replace("current_era=\"4\"", "current_era=\"5\"");
    std::fs::write(&xml, x).unwrap();
    let bytes = figure("era_metadata_size", &["--nr-blocks", "5000", "-w", "3"]);
    exactly_and_one_less(
        &d,
        &["era_restore", "-i", s(&xml)],
        bytes,
        "era_metadata_size --nr-blocks 5000 --writesets 3",
    );
}

#[test]
fn sizes_units_and_output_forms() {
    let sz = |args: &[&str]| {
        let o = run_tool(args[0], &args[1..]);
        (o.status.code(), text(&o.stdout), text(&o.stderr))
    };
    // 1 TiB of 4 KiB regions: 8276 bitset blocks, twice, and the space map.
    let (c, out, _) = sz(&["clone_metadata_size", "-s", "1t", "-r", "4k"]);
    assert_eq!((c, out.as_str()), (Some(0), "132480 sectors\n"));
    let (_, out, _) = sz(&["clone_metadata_size", "-s", "2147483648", "-r", "8", "-n"]);
    assert_eq!(out, "132480\n");
    let (_, out, _) = sz(&[
        "clone_metadata_size",
        "--nr-regions",
        "268435456",
        "-u",
        "m",
        "-n=short",
    ]);
    assert_eq!(out, "64.69m\n");
    let (_, out, _) = sz(&[
        "clone_metadata_size",
        "--nr-regions",
        "268435456",
        "-u",
        "MiB",
        "--numeric-only=long",
    ]);
    assert_eq!(out, "64.69mebibytes\n");
    let (_, out, _) = sz(&["era_metadata_size", "-s", "4g", "-b", "8", "-v", "-u", "k"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "13028 kibibytes");
    assert!(lines[1].starts_with(
        "3257  metadata blocks of 4096 bytes for 1048576 blocks, 1 archived writesets"
    ));
    let parts: u64 = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(parts, 3257);
    // What the kernel would refuse, and what it cannot address.
    for (args, phrase) in [
        (
            vec!["clone_metadata_size", "-s", "1t", "-r", "12"],
            "power of two",
        ),
        (
            vec!["clone_metadata_size", "-s", "1t", "-r", "8g"],
            "power of two",
        ),
        (
            vec!["clone_metadata_size", "-s", "0", "-r", "8"],
            "must not be zero",
        ),
        (
            vec!["clone_metadata_size", "-s", "100b", "-r", "8"],
            "whole number of 512-byte sectors",
        ),
        (
            vec!["clone_metadata_size", "--nr-regions", "2147483649"],
            "more than the target accepts",
        ),
        (
            vec!["era_metadata_size", "-s", "1t", "-b", "12"],
            "multiple of 8 sectors",
        ),
        (
            vec!["era_metadata_size", "-s", "8t", "-b", "4k"],
            "more than the target accepts",
        ),
        (
            vec!["era_metadata_size", "-s", "6t", "-b", "4k"],
            "more than the 4161600 blocks",
        ),
        (
            vec!["era_metadata_size", "-s", "1t", "-b", "4k", "-u", "x"],
            "unknown unit",
        ),
        (
            vec!["era_metadata_size", "-s", "1t", "-b", "4k", "-w", "0"],
            "0",
        ),
        (vec!["era_metadata_size", "-s", "1t"], "--block-size"),
        (vec!["clone_metadata_size"], "--device-size"),
        (
            vec![
                "clone_metadata_size",
                "--nr-regions",
                "5",
                "-s",
                "1t",
                "-r",
                "8",
            ],
            "cannot be used with",
        ),
    ] {
        let (c, out, err) = sz(&args);
        assert_eq!(c, Some(1), "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(phrase), "{args:?}: {err}");
    }
}
