//! `boot/dmce-assemble` (dmce-targets(5)) on configurations: what it refuses, what it
//! waits for, and that it leaves a system without targets alone. Checking and
//! activating real devices is the kernel lab's `boot` group.

use std::process::{Command, Output};

use crate::util::{repo, TestDir};

fn assemble(d: &TestDir, conf: &str, args: &[&str]) -> Output {
    let path = d.path("targets");
    std::fs::write(&path, conf).unwrap();
    Command::new("sh")
        .arg(repo().join("boot/dmce-assemble"))
        .arg("-c")
        .arg(&path)
        .args(["-w", "0"])
        .args(args)
        .output()
        .expect("sh must be installed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn assemble_does_nothing_without_targets() {
    let d = TestDir::new("assemble-empty");
    let o = assemble(&d, "# nothing here\n\n   # indented comment\n", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", stderr(&o));
    // No configuration file at all: the same.
    let o = Command::new("sh")
        .arg(repo().join("boot/dmce-assemble"))
        .arg("-c")
        .arg(d.path("missing"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn assemble_refuses_bad_lines_naming_file_and_line() {
    let d = TestDir::new("assemble-bad");
    for (line, want) in [
        ("r mirror /dev/a /dev/b 8", "unknown target type 'mirror'"),
        ("r clone /dev/a", "too few fields"),
        (
            "r clone /dev/a /dev/b /dev/c",
            "clone needs METADATA DEST SOURCE REGION_SIZE",
        ),
        (
            "r clone /dev/a /dev/b /dev/c x8",
            "bad region/block size 'x8'",
        ),
        ("r era /dev/a /dev/b 0", "bad region/block size '0'"),
        (
            "r era /dev/a /dev/b 128 no_hydration",
            "unknown option 'no_hydration' for era",
        ),
        ("r clone /dev/a /dev/b /dev/c 8 size=1G", "bad size=1G"),
        (
            "r clone /dev/a /dev/b /dev/c 8 hydration_threshold=",
            "bad hydration_threshold=",
        ),
        ("r clone a /dev/b /dev/c 8", "bad device 'a'"),
    ] {
        let o = assemble(&d, &format!("# comment\n{line}\n"), &[]);
        assert_eq!(o.status.code(), Some(2), "{line}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(want), "{line}: {e}");
        assert!(
            e.contains(&format!("{}:2:", d.path("targets").display())),
            "{line}: {e}"
        );
    }
}

#[test]
fn assemble_fails_on_a_missing_device_and_stops_there() {
    let d = TestDir::new("assemble-missing");
    let conf = "a era /nonexistent/meta /nonexistent/origin 128\n\
                b clone /nonexistent/m /nonexistent/d /nonexistent/s 8 no_hydration\n";
    let o = assemble(&d, conf, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("dmce: a: no device /nonexistent/meta /nonexistent/origin after 0 s"),
        "{e}"
    );
    assert!(
        !e.contains("dmce: b:"),
        "went on past the first failure: {e}"
    );
    // Names given: only those are assembled.
    let o = assemble(&d, conf, &["b"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("dmce: b: no device /nonexistent/m"), "{e}");
    assert!(!e.contains("dmce: a:"), "{e}");
    let o = assemble(&d, conf, &["c"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn assemble_resolves_uuid_and_label_names() {
    let d = TestDir::new("assemble-names");
    let o = assemble(&d, "a era UUID=0123-abcd LABEL=origin 128\n", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("no device /dev/disk/by-uuid/0123-abcd /dev/disk/by-label/origin"),
        "{e}"
    );
}
