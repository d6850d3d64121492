//! The fuzz corpora replayed on stable: every seed made from the fixtures, every
//! input of the committed corpora (`fuzz/corpus/<target>.tar.zst`, minimised) and
//! every regression case (`fuzz/regressions/<target>/`, compressed when named
//! `*.zst`) goes through the same
//! target body as under `cargo fuzz`, so the ground the fuzzer gained is kept.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    // The targets are shared among as many threads as there are cores, the
    // largest corpus first: the replay corpus alone is most of the time in a
    // debug build.
    let tmp = TestDir::new("fuzz-corpus");
    let size = |name: &str| {
        std::fs::metadata(repo().join(format!("fuzz/corpus/{name}.tar.zst"))).map_or(0, |m| m.len())
    };
    let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    names.sort_by_key(|&n| std::cmp::Reverse(size(n)));
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(names.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                    corpus_and_regressions(name, &tmp.path(name));
                }
            });
        }
    });
}

/// Replays target `name`'s committed corpus, unpacked in `dir`, and its
/// regression cases.
fn corpus_and_regressions(name: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    // A target whose campaign has not been run yet has no committed corpus:
    // its seeds (above) and regression cases still run.
    let packed = repo().join(format!("fuzz/corpus/{name}.tar.zst"));
    let corpus = if packed.exists() {
        unpack(&packed, dir)
    } else {
        Vec::new()
    };
    let regressions = files_in(&repo().join(format!("fuzz/regressions/{name}")));
    for f in corpus.iter().chain(&regressions) {
        let data = if f.extension().is_some_and(|e| e == "zst") {
            load_zst(f)
        } else {
            std::fs::read(f).unwrap()
        };
        replay(name, &f.display().to_string(), &data);
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
