//! Writes the fuzz targets' seed inputs, made from the fixtures, into
//! `OUTDIR/<target>/` (`fuzz/seed.sh` calls it with `fuzz/corpus`).

use std::path::PathBuf;
use std::process::ExitCode;

use dmce::fuzz_support::seeds::from_fixtures;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds OUTDIR");
        return ExitCode::FAILURE;
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = match from_fixtures(&repo) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fuzz_seeds: reading the fixtures: {e}");
            return ExitCode::FAILURE;
        }
    };
    for s in &seeds {
        let dir = out.join(s.target);
        let path = dir.join(format!("seed-{}", s.name));
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &s.data)) {
            eprintln!("fuzz_seeds: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{} seeds written under {}", seeds.len(), out.display());
    ExitCode::SUCCESS
}
