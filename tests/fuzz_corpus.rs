//! The fuzz corpora replayed on stable: every seed made from the fixtures, every
//! input of the committed corpora (`fuzz/corpus/<target>.tar.zst`, minimised) and
//! every regression case (`fuzz/regressions/<target>/`, compressed when named
//! `*.zst`) goes through the same
//! target body as under `cargo fuzz`, so the ground the fuzzer gained is kept.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use dmce::fuzz_support::seeds::from_fixtures;
use dmce::fuzz_support::{run, TARGETS};

use crate::util::{load_zst, repo, TestDir};

fn replay(target: &str, what: &str, data: &[u8]) {
    let r = catch_unwind(AssertUnwindSafe(|| run(target, data)));
    match r {
        Ok(true) => {}
        Ok(false) => panic!("{what}: no fuzz target {target}"),
        Err(_) => panic!(
            "{what}: target {target} panicked (replay: cargo +nightly fuzz run {target} {what})"
        ),
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn every_fuzz_target_is_built_by_the_fuzz_crate() {
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "dmce-fuzz")
        .collect();
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(
        bins, names,
        "fuzz/Cargo.toml's [[bin]]s and fuzz_support::TARGETS"
    );
    for t in TARGETS {
        let src = std::fs::read_to_string(repo().join(format!("fuzz/fuzz_targets/{}.rs", t.name)))
            .unwrap();
        assert!(
            src.contains(&format!("run(\"{}\", data)", t.name)),
            "fuzz/fuzz_targets/{}.rs must run its own target",
            t.name
        );
    }
}

#[test]
fn seeds_from_the_fixtures_pass_every_target() {
    let seeds = from_fixtures(&repo()).unwrap();
    for t in TARGETS {
        let n = seeds.iter().filter(|s| s.target == t.name).count();
        assert!(n > 0, "no seed for {}", t.name);
    }
    for s in &seeds {
        replay(s.target, &format!("seed {}", s.name), &s.data);
    }
}

#[test]
fn committed_corpora_and_regressions_pass_every_target() {
    let tmp = TestDir::new("fuzz-corpus");
    for t in TARGETS {
        let dir = tmp.path(t.name);
        std::fs::create_dir_all(&dir).unwrap();
        // A target whose campaign has not been run yet has no committed corpus:
        // its seeds (above) and regression cases still run.
        let packed = repo().join(format!("fuzz/corpus/{}.tar.zst", t.name));
        let corpus = if packed.exists() {
            unpack(&packed, &dir)
        } else {
            Vec::new()
        };
        for f in corpus.iter().chain(&files_in(
            &repo().join(format!("fuzz/regressions/{}", t.name)),
        )) {
            let data = if f.extension().is_some_and(|e| e == "zst") {
                load_zst(f)
            } else {
                std::fs::read(f).unwrap()
            };
            replay(t.name, &f.display().to_string(), &data);
        }
    }
}

/// Unpacks a committed corpus into `dir` and lists its inputs.
fn unpack(packed: &Path, dir: &Path) -> Vec<PathBuf> {
    let st = Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(packed)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("tar and zstd must be installed (see .ci/deps)");
    assert!(st.success(), "unpacking {}", packed.display());
    let corpus = files_in(dir);
    assert!(!corpus.is_empty(), "{} is empty", packed.display());
    corpus
}
