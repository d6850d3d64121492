//! Shell completions (`dmce --completions`) and `make install` / `make uninstall`.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::{bin, repo, run_tool, TestDir};

const SHELLS: &[&str] = &["bash", "zsh", "fish"];

fn completions(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--completions")
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The long options a tool's `--help` lists, without `--`.
fn help_options(tool: &str) -> Vec<String> {
    let help = text(&run_tool(tool, &["--help"]).stdout);
    let mut opts: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.split('=').next().unwrap().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    opts.dedup();
    opts
}

#[test]
fn completions_name_every_long_option_of_every_tool() {
    for tool in dmce::commands::TOOLS.iter().map(|t| t.name) {
        let opts = help_options(tool);
        assert!(opts.contains(&"help".to_string()), "{tool}: {opts:?}");
        for shell in SHELLS {
            let o = completions(&[shell, tool]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{shell} {tool}: {}",
                text(&o.stderr)
            );
            assert!(o.stderr.is_empty(), "{shell} {tool}");
            let script = text(&o.stdout);
            for opt in &opts {
                // fish names an option `-l NAME`, bash and zsh `--NAME`.
                let want = if *shell == "fish" {
                    format!("-l {opt} ")
                } else {
                    format!("--{opt}")
                };
                assert!(
                    script.contains(&want),
                    "{shell} completion of {tool} lacks --{opt}"
                );
            }
        }
    }
}

#[test]
fn completions_of_dmce_and_of_all() {
    let names: Vec<&str> = dmce::commands::TOOLS.iter().map(|t| t.name).collect();
    for shell in SHELLS {
        // dmce itself: the tools as its first argument.
        let o = completions(&[shell, "dmce"]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", text(&o.stderr));
        let script = text(&o.stdout);
        for n in &names {
            assert!(script.contains(n), "{shell} completion of dmce lacks {n}");
        }
        // Without a tool: every tool's script, then dmce's.
        let all = text(&completions(&[shell]).stdout);
        for n in names.iter().chain(&["dmce"]) {
            let one = text(&completions(&[shell, n]).stdout);
            assert!(all.contains(&one), "{shell}: all lacks {n}'s script");
        }
    }
}

#[test]
fn completions_usage_errors() {
    for (args, says) in [
        (&[][..], "which shell"),
        (&["tcsh"][..], "unknown shell 'tcsh'"),
        (&["bash", "thin_check"][..], "unknown tool 'thin_check'"),
        (
            &["bash", "clone_check", "era_check"][..],
            "at most one tool",
        ),
    ] {
        let o = completions(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
        let e = text(&o.stderr);
        assert!(
            e.starts_with("dmce: --completions: ") && e.contains(says),
            "{args:?}: {e}"
        );
        assert!(e.contains("usage: dmce --completions"), "{args:?}: {e}");
    }
    // The usage names it.
    let o = Command::new(bin()).arg("--help").output().unwrap();
    assert!(text(&o.stdout).contains("dmce --completions bash|zsh|fish [TOOL]"));
}

/// bash loads the generated script, registers it, and completes an option.
#[test]
fn bash_completes_with_the_generated_script() {
    let d = TestDir::new("bash-completion");
    let file = d.path("clone_check");
    std::fs::write(&file, completions(&["bash", "clone_check"]).stdout).unwrap();
    let script = format!(
        "source '{}' && complete -p clone_check && \
         COMP_WORDS=(clone_check --region) COMP_CWORD=1 && \
         _clone_check clone_check --region clone_check && echo \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let o = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .expect("bash");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("complete -o bashdefault -o default -o nosort -F _clone_check clone_check"),
        "{out}"
    );
    assert_eq!(lines.next(), Some("--region-size"), "{out}");
}

fn make(d: &TestDir, target: &str) -> Output {
    Command::new("make")
        .current_dir(repo())
        .args(["-s", target, "PREFIX=/usr"])
        .arg(format!("DESTDIR={}", d.path("root").display()))
        .arg(format!("BIN={}", bin().display()))
        .output()
        .expect("make must be installed")
}

/// Every file and link under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn make_install_and_uninstall() {
    let d = TestDir::new("make-install");
    let o = make(&d, "install");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let root = d.path("root");
    let usr = root.join("usr");
    let names: Vec<&str> = dmce::commands::TOOLS.iter().map(|t| t.name).collect();

    let mut want = vec!["sbin/dmce".to_string()];
    for n in names.iter().chain(&["dmce"]) {
        if *n != "dmce" {
            want.push(format!("sbin/{n}"));
        }
        want.push(format!("share/man/man8/{n}.8.gz"));
        want.push(format!("share/bash-completion/completions/{n}"));
        want.push(format!("share/zsh/site-functions/_{n}"));
        want.push(format!("share/fish/vendor_completions.d/{n}.fish"));
    }
    for f in [
        "lib/dmce/dmce-assemble",
        "lib/dracut/modules.d/90dmce/dmce-settled.sh",
        "lib/dracut/modules.d/90dmce/module-setup.sh",
        "share/man/man5/dmce-targets.5.gz",
    ] {
        want.push(f.to_string());
    }
    want.sort();
    assert_eq!(tree(&usr), want);
    assert_eq!(
        tree(&root.join("etc")),
        [
            "dmce/targets",
            "initramfs-tools/hooks/dmce",
            "initramfs-tools/scripts/local-top/dmce"
        ]
    );
    // The hook and the dracut module name the installed files.
    for f in [
        "etc/initramfs-tools/hooks/dmce",
        "usr/lib/dracut/modules.d/90dmce/module-setup.sh",
    ] {
        let s = std::fs::read_to_string(root.join(f)).unwrap();
        for want in [
            "DMCE=/usr/sbin/dmce\n",
            "ASSEMBLE=/usr/lib/dmce/dmce-assemble\n",
            "CONF=/etc/dmce/targets\n",
        ] {
            assert!(s.contains(want), "{f}: no {want:?}");
        }
        assert!(!s.contains('@'), "{f}: a placeholder is left");
    }
    let o = Command::new("gzip")
        .arg("-dc")
        .arg(usr.join("share/man/man5/dmce-targets.5.gz"))
        .output()
        .unwrap();
    assert_eq!(
        o.stdout,
        std::fs::read(repo().join("man/dmce-targets.5")).unwrap()
    );

    assert_eq!(
        std::fs::read(usr.join("sbin/dmce")).unwrap(),
        std::fs::read(bin()).unwrap()
    );
    for n in &names {
        let link = usr.join("sbin").join(n);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("dmce"), "{n}");
        let o = Command::new(&link).arg("--help").output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{n}");
        assert!(text(&o.stdout).contains(&format!("Usage: {n}")), "{n}");
    }
    for n in names.iter().chain(&["dmce"]) {
        let gz = usr.join(format!("share/man/man8/{n}.8.gz"));
        let o = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
        assert_eq!(
            o.stdout,
            std::fs::read(repo().join(format!("man/{n}.8"))).unwrap(),
            "{n}"
        );
        for (shell, file) in [
            ("bash", format!("share/bash-completion/completions/{n}")),
            ("zsh", format!("share/zsh/site-functions/_{n}")),
            ("fish", format!("share/fish/vendor_completions.d/{n}.fish")),
        ] {
            assert_eq!(
                std::fs::read(usr.join(&file)).unwrap(),
                completions(&[shell, n]).stdout,
                "{file}"
            );
        }
    }

    // A file put in place of a link since is not the uninstaller's to remove.
    let mine = usr.join("sbin/era_check");
    std::fs::remove_file(&mine).unwrap();
    std::fs::write(&mine, "someone else's era_check").unwrap();
    let o = make(&d, "uninstall");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(tree(&root), vec!["usr/sbin/era_check".to_string()]);

    // An edited configuration survives an uninstall and a new install.
    let o = make(&d, "install");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let conf = root.join("etc/dmce/targets");
    std::fs::write(&conf, "root clone /dev/a /dev/b /dev/c 8\n").unwrap();
    let o = make(&d, "install");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "root clone /dev/a /dev/b /dev/c 8\n"
    );
    let o = make(&d, "uninstall");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(tree(&root), vec!["etc/dmce/targets".to_string()]);
}
