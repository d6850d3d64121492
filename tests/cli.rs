//! Command-line behaviour of every tool: dispatch, help, each option, and the error
//! paths (missing, unreadable, too small, XML, unformatted input; closed pipes).

use std::io::Read;
use std::process::{Command, Stdio};

use dmce::pdata::checksum::{stamp, BlockKind};
use dmce::pdata::put_le32;

use crate::util::{bin, load_zst, repo, run_tool, TestDir};

const TOOLS: &[&str] = &["clone_check", "clone_dump", "era_check", "era_dump"];

fn clone_img() -> String {
    repo()
        .join("fixtures/samples/clone-b-partial/metadata.img")
        .to_string_lossy()
        .into_owned()
}

fn era_img(dir: &TestDir) -> String {
    let p = dir.path("era.img");
    std::fs::write(
        &p,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    p.to_string_lossy().into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_tool_has_help_and_version() {
    for t in TOOLS {
        let o = run_tool(t, &["--help"]);
        assert_eq!(o.status.code(), Some(0), "{t} --help");
        assert!(stdout(&o).contains("Usage"), "{t} --help");
        let o = run_tool(t, &["--version"]);
        assert_eq!(o.status.code(), Some(0), "{t} --version");
    }
}

#[test]
fn tool_is_chosen_by_link_name_or_first_argument() {
    let d = TestDir::new("argv0");
    let link = d.path("clone_check");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let o = Command::new(&link).arg(clone_img()).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("51 hydrated"));
    let o = Command::new(bin()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("clone_check"));
    let o = Command::new(bin()).arg("thin_check").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown tool 'thin_check'"));
}

#[test]
fn usage_errors_exit_1() {
    for t in TOOLS {
        let o = run_tool(t, &["--no-such-option", "x"]);
        assert_eq!(o.status.code(), Some(1), "{t}");
        let o = run_tool(t, &[]);
        assert_eq!(o.status.code(), Some(1), "{t}");
    }
}

#[test]
fn missing_input_is_one_clear_line() {
    for t in TOOLS {
        let o = run_tool(t, &["/nonexistent/meta.img"]);
        assert_eq!(o.status.code(), Some(1), "{t}");
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{t}: {e}");
        assert!(
            e.contains("/nonexistent/meta.img") && e.contains("No such file"),
            "{t}: {e}"
        );
    }
}

#[test]
fn unreadable_too_small_xml_and_unformatted_inputs() {
    let d = TestDir::new("inputs");
    let small = d.path("small.img");
    std::fs::write(&small, [1u8; 100]).unwrap();
    let xml = d.path("dump.xml");
    std::fs::write(&xml, "\n  <superblock uuid=\"\" block_size=\"128\">\n").unwrap();
    let zero = d.path("zero.img");
    std::fs::write(&zero, vec![0u8; 1 << 20]).unwrap();
    let dir = d.path("a-directory");
    std::fs::create_dir(&dir).unwrap();
    for t in TOOLS {
        let o = run_tool(t, &[small.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(stderr(&o).contains("too small"), "{t}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1);

        let o = run_tool(t, &[xml.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(stderr(&o).contains("looks like XML"), "{t}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1);

        let o = run_tool(t, &[dir.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert_eq!(stderr(&o).lines().count(), 1, "{t}: {}", stderr(&o));

        let o = run_tool(t, &[zero.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{t}");
        let all = stdout(&o) + &stderr(&o);
        assert!(all.contains("not formatted"), "{t}: {all}");
    }
}

#[test]
fn checker_options() {
    let d = TestDir::new("check-opts");
    let era = era_img(&d);
    // Clean images: exit 0 with one summary line; -q prints nothing.
    for (t, img) in [("clone_check", clone_img()), ("era_check", era.clone())] {
        let o = run_tool(t, &[&img]);
        assert_eq!(o.status.code(), Some(0), "{t}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1);
        let o = run_tool(t, &["-q", &img]);
        assert_eq!(o.status.code(), Some(0));
        assert!(o.stdout.is_empty() && o.stderr.is_empty());
        let o = run_tool(t, &["--super-block-only", &img]);
        assert_eq!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("superblock OK"), "{}", stderr(&o));
    }
    // The table's geometry.
    let o = run_tool("clone_check", &["--region-size", "128", &clone_img()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the table says 128"));
    let o = run_tool(
        "clone_check",
        &[
            "--region-size",
            "64",
            "--target-size",
            "131072",
            &clone_img(),
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let o = run_tool("clone_check", &["--target-size", "131000", &clone_img()]);
    assert_eq!(o.status.code(), Some(1));
    let o = run_tool("era_check", &["--block-size", "64", &era]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the table says 64"));
    let o = run_tool("era_check", &["--block-size", "128", &era]);
    assert_eq!(o.status.code(), Some(0));

    // A non-fatal problem (superblock flags) fails unless --ignore-non-fatal-errors.
    let mut img = std::fs::read(clone_img()).unwrap();
    let sb: &mut [u8; 4096] = (&mut img[..4096]).try_into().unwrap();
    put_le32(sb, 4, 2);
    stamp(sb, 0, BlockKind::CloneSuperblock);
    let p = d.path("flags.img");
    std::fs::write(&p, &img).unwrap();
    let o = run_tool("clone_check", &[p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("warning: block 0: superblock: flags 0x2"),
        "{}",
        stderr(&o)
    );
    let o = run_tool(
        "clone_check",
        &["--ignore-non-fatal-errors", p.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Damage: exit 1 with the block named.
    img[4096 * 33 + 200] ^= 1;
    std::fs::write(&p, &img).unwrap();
    let o = run_tool(
        "clone_check",
        &["--ignore-non-fatal-errors", p.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "error: block 33: space-map index block: bad space-map index block: stored checksum"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dump_options() {
    let d = TestDir::new("dump-opts");
    let era = era_img(&d);
    let out = d.path("out.xml");
    let o = run_tool("clone_dump", &[&clone_img(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let via_stdout = run_tool("clone_dump", &[&clone_img()]).stdout;
    assert_eq!(std::fs::read(&out).unwrap(), via_stdout);

    let o = run_tool(
        "era_dump",
        &["--output", out.to_str().unwrap(), "--logical", &era],
    );
    assert_eq!(o.status.code(), Some(0));
    let want =
        std::fs::read(repo().join("fixtures/samples/era-b-eras/era_dump_logical.xml")).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), want);

    // Refuses to write over its input.
    let o = run_tool("era_dump", &["-o", &era, &era]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the output is the input"));
    assert_eq!(
        std::fs::read(&era).unwrap(),
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst"))
    );
}

#[test]
fn closed_stdout_pipe_fails_quietly() {
    let d = TestDir::new("pipe");
    let era = era_img(&d);
    let mut child = Command::new(bin())
        .args(["era_dump", &era])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(&first, b"<superbloc");
    // The dump is incomplete: it fails, without a word.
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_tool_has_a_man_page_naming_each_option() {
    for t in dmce::commands::TOOLS.iter().map(|t| t.name) {
        let page = std::fs::read_to_string(repo().join("man").join(format!("{t}.8")))
            .unwrap_or_else(|e| panic!("man/{t}.8: {e}"));
        let help = stdout(&run_tool(t, &["--help"]));
        for word in help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']') {
            if let Some(name) = word.strip_prefix("--") {
                let name = name.split('=').next().unwrap();
                let troff = format!("\\-\\-{}", name.replace('-', "\\-"));
                assert!(
                    page.contains(&troff),
                    "man/{t}.8 does not document --{name}"
                );
            }
        }
    }
}

#[test]
fn era_invalidate_and_snapshot_options() {
    let d = TestDir::new("invalidate");
    let era = era_img(&d);
    let o = run_tool("era_invalidate", &["--written-since", "3", &era]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "<blocks>\n  <block block=\"512\"/>\n  <block block=\"520\"/>\n  <block block=\"600\"/>\n  <block block=\"1023\"/>\n</blocks>\n"
    );
    let out = d.path("inv.xml");
    let o = run_tool(
        "era_invalidate",
        &["--written-since", "9", "-o", out.to_str().unwrap(), &era],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "<blocks>\n</blocks>\n"
    );
    // The sample holds no metadata snapshot.
    for (t, extra) in [
        ("era_invalidate", vec!["--written-since", "1"]),
        ("era_dump", vec![]),
    ] {
        let mut args = extra.clone();
        args.extend(["--metadata-snapshot", era.as_str()]);
        let o = run_tool(t, &args);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            stderr(&o).contains("no metadata snapshot"),
            "{t}: {}",
            stderr(&o)
        );
    }
    let o = run_tool("era_invalidate", &[&era]);
    assert_eq!(o.status.code(), Some(1), "--written-since is required");
    // --repair on a clean image changes nothing.
    let plain = run_tool("era_dump", &[&era]).stdout;
    let o = run_tool("era_dump", &["--repair", &era]);
    assert_eq!(o.stdout, plain);
    assert!(o.stderr.is_empty());
    let plain = run_tool("clone_dump", &[&clone_img()]).stdout;
    let o = run_tool("clone_dump", &["--repair", &clone_img()]);
    assert_eq!(o.stdout, plain);
    assert!(o.stderr.is_empty());
}

/// The options (without `--`) a text names: `--name` in `--help`, `\-\-name` in troff.
fn long_options(text: &str, troff: bool) -> std::collections::BTreeSet<String> {
    let dash = if troff { "\\-" } else { "-" };
    let prefix = format!("{dash}{dash}");
    let mut found = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(&prefix) {
        rest = &rest[i + prefix.len()..];
        let mut name = String::new();
        let mut s = rest;
        loop {
            if let Some(c) = s.chars().next().filter(|c| c.is_ascii_alphanumeric()) {
                name.push(c);
                s = &s[1..];
            } else if let Some(t) = s
                .strip_prefix(dash)
                .filter(|t| t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()))
            {
                name.push('-');
                s = t;
            } else {
                break;
            }
        }
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// The text of the sections of a man page called `names`.
fn man_sections(page: &str, names: &[&str]) -> String {
    page.split("\n.SH ")
        .skip(1)
        .filter(|s| names.contains(&s.lines().next().unwrap_or("").trim_matches('"')))
        .collect::<Vec<_>>()
        .join("\n")
}

fn man_page(name: &str) -> String {
    std::fs::read_to_string(repo().join("man").join(format!("{name}.8")))
        .unwrap_or_else(|e| panic!("man/{name}.8: {e}"))
}

#[test]
fn every_option_a_man_page_documents_is_in_help() {
    let pages = dmce::commands::TOOLS
        .iter()
        .map(|t| (t.name, run_tool(t.name, &["--help"])))
        .chain([("dmce", Command::new(bin()).arg("--help").output().unwrap())]);
    for (name, help) in pages {
        assert_eq!(help.status.code(), Some(0), "{name} --help");
        let help = long_options(&stdout(&help), false);
        let documented = long_options(
            &man_sections(&man_page(name), &["SYNOPSIS", "OPTIONS"]),
            true,
        );
        assert!(!documented.is_empty(), "man/{name}.8 documents no option");
        for o in documented {
            assert!(
                help.contains(&o),
                "man/{name}.8 documents --{o}, which {name} --help does not have"
            );
        }
    }
}

#[test]
fn every_man_page_sees_also_its_targets_tools_and_dmce() {
    let names: Vec<&str> = dmce::commands::TOOLS.iter().map(|t| t.name).collect();
    let see_also = |page: &str| man_sections(page, &["SEE ALSO"]);
    for t in &names {
        let refs = see_also(&man_page(t));
        let target = t.split('_').next().unwrap();
        let want = names
            .iter()
            .filter(|n| *n != t && n.split('_').next() == Some(target))
            .chain(&["dmce"]);
        for n in want {
            assert!(
                refs.contains(&format!(".BR {n} (8)")),
                "man/{t}.8: SEE ALSO does not name {n}(8)"
            );
        }
    }
    let dmce = man_page("dmce");
    let refs = see_also(&dmce);
    let tools = man_sections(&dmce, &["TOOLS"]);
    for n in &names {
        assert!(
            refs.contains(&format!(".BR {n} (8)")),
            "man/dmce.8: SEE ALSO does not name {n}(8)"
        );
        assert!(
            tools.contains(&format!(".B {n}\n")),
            "man/dmce.8: TOOLS does not list {n}"
        );
    }
}

/// `make install` takes the tool list from `man/`: a page per tool and dmce.8
/// (section 8; the configuration's page is in section 5).
#[test]
fn the_man_pages_are_the_tools_and_dmce() {
    let mut pages: Vec<String> = std::fs::read_dir(repo().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".8"))
        .collect();
    pages.sort();
    let mut want: Vec<String> = dmce::commands::TOOLS
        .iter()
        .map(|t| t.name)
        .chain(["dmce"])
        .map(|n| format!("{n}.8"))
        .collect();
    want.sort();
    assert_eq!(pages, want);
}
