//! The restore and repair tools as real processes, killed with SIGKILL part-way.
//!
//! The tools write in place to an output that must already exist (a metadata
//! device, or an image file of the device's size): the old superblock is zeroed
//! and flushed before anything else is written, the new one written last. So
//! whatever the moment of the kill, the output holds one of:
//!
//! * the new image, byte for byte what an uninterrupted run writes (or metadata
//!   that checks clean and dumps as it does);
//! * the old image untouched (killed before the first write);
//! * an image that every checker rejects: ours, and for dm-era Debian's
//!   thin-provisioning-tools 0.9.0 era_check.
//!
//! The output file keeps its size, and an output path that does not exist is
//! refused without creating a file. The quick test kills each tool at four points
//! of a small run; the ignored one at 50 points of a large run and prints the table:
//! `cargo test --test main kill -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::roundtrip::{gen_clone_xml, EraGen};
use crate::util::{bin, peer, TestDir};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    CloneRestore,
    EraRestore,
    CloneRepair,
    EraRepair,
}

impl Tool {
    const ALL: [Tool; 4] = [
        Tool::CloneRestore,
        Tool::EraRestore,
        Tool::CloneRepair,
        Tool::EraRepair,
    ];

    fn name(self) -> &'static str {
        match self {
            Tool::CloneRestore => "clone_restore",
            Tool::EraRestore => "era_restore",
            Tool::CloneRepair => "clone_repair",
            Tool::EraRepair => "era_repair",
        }
    }

    fn era(self) -> bool {
        matches!(self, Tool::EraRestore | Tool::EraRepair)
    }

    fn restore(self) -> &'static str {
        if self.era() {
            "era_restore"
        } else {
            "clone_restore"
        }
    }
}

/// How large a run is.
#[derive(Clone, Copy)]
struct Scale {
    /// Regions of the clone XML (8-sector regions).
    clone_regions: u64,
    /// Origin blocks of the era XML (three writesets).
    era_blocks: u64,
    /// Size of the output (and repair input) files.
    file_bytes: u64,
}

const QUICK: Scale = Scale {
    clone_regions: 20_000_000,
    era_blocks: 200_000,
    file_bytes: 16 << 20,
};

const LARGE: Scale = Scale {
    clone_regions: 200_000_000,
    era_blocks: 2_000_000,
    file_bytes: 64 << 20,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn dmce(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn sized_file(path: &Path, bytes: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(bytes).unwrap();
}

/// A restore by the tool, which must succeed.
fn restore_file(tool: &str, xml: &Path, out: &Path) {
    let o = dmce(&[tool, "-q", "-i", s(xml), "-o", s(out)]);
    assert!(
        o.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What a tool's run starts from: its input, the output's old content, and what an
/// uninterrupted run leaves.
struct Setup {
    dir: TestDir,
    tool: Tool,
    input: PathBuf,
    old: Vec<u8>,
    new: Vec<u8>,
    new_dump: Vec<u8>,
    /// Wall time of an uninterrupted run (the shortest of three).
    time: Duration,
}

impl Setup {
    fn new(tool: Tool, scale: Scale) -> Setup {
        let dir = TestDir::new(&format!("kill-{}", tool.name()));
        let (xml, old_xml) = if tool.era() {
            (
                EraGen::new(71, scale.era_blocks, 6, 3).xml(true),
                EraGen::new(72, 1000, 2, 2).xml(false),
            )
        } else {
            (
                gen_clone_xml(73, 8, scale.clone_regions, true),
                gen_clone_xml(74, 64, 500, false),
            )
        };
        let xml_path = dir.path("in.xml");
        std::fs::write(&xml_path, xml).unwrap();
        std::fs::write(dir.path("old.xml"), old_xml).unwrap();
        let out = dir.path("out.img");
        sized_file(&out, scale.file_bytes);
        restore_file(tool.restore(), &dir.path("old.xml"), &out);
        let old = std::fs::read(&out).unwrap();
        let input = match tool {
            Tool::CloneRestore | Tool::EraRestore => xml_path,
            Tool::CloneRepair | Tool::EraRepair => {
                let img = dir.path("in.img");
                sized_file(&img, scale.file_bytes);
                restore_file(tool.restore(), &xml_path, &img);
                img
            }
        };
        let mut setup = Setup {
            dir,
            tool,
            input,
            old,
            new: Vec::new(),
            new_dump: Vec::new(),
            time: Duration::ZERO,
        };
        // The shortest of three runs: the first reads cold caches, and kill points
        // spread over a longer time would fall after the exit.
        setup.time = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let (killed, status) = setup.run(None);
            setup.time = setup.time.min(start.elapsed());
            assert!(
                !killed && status == Some(0),
                "{}: uninterrupted run",
                tool.name()
            );
        }
        setup.new = std::fs::read(&out).unwrap();
        assert!(setup.new != setup.old);
        setup.new_dump = setup.dump().expect("the new image dumps");
        setup
    }

    fn out(&self) -> PathBuf {
        self.dir.path("out.img")
    }

    /// Puts the old content back, runs the tool, kills it after `kill_after`;
    /// returns whether the kill came before the tool exited, and its exit status.
    fn run(&self, kill_after: Option<Duration>) -> (bool, Option<i32>) {
        std::fs::write(self.out(), &self.old).unwrap();
        let out = self.out();
        let mut child = Command::new(bin())
            .args([self.tool.name(), "-q", "-i", s(&self.input), "-o", s(&out)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let Some(d) = kill_after else {
            return (false, child.wait().unwrap().code());
        };
        std::thread::sleep(d);
        let exited = child.try_wait().unwrap();
        if let Some(st) = exited {
            return (false, st.code());
        }
        child.kill().unwrap();
        let st = child.wait().unwrap();
        (true, st.code())
    }

    fn dump(&self) -> Option<Vec<u8>> {
        let tool = if self.tool.era() {
            "era_dump"
        } else {
            "clone_dump"
        };
        let o = dmce(&[tool, s(&self.out())]);
        o.status.success().then_some(o.stdout)
    }

    /// Which checkers accept the output: ours, and Debian's era_check for dm-era.
    fn accepted_by(&self) -> Vec<&'static str> {
        let out = self.out();
        let mut v = Vec::new();
        let ours = if self.tool.era() {
            "era_check"
        } else {
            "clone_check"
        };
        if dmce(&[ours, "-q", s(&out)]).status.success() {
            v.push(ours);
        }
        if self.tool.era() {
            if let Some(p) = peer("era_check") {
                let o = Command::new(p).arg(&out).output().unwrap();
                if o.status.success() {
                    v.push("0.9.0 era_check");
                }
            }
        }
        v
    }

    /// What the output holds now.
    fn outcome(&self) -> Outcome {
        let img = std::fs::read(self.out()).unwrap();
        if img.len() != self.old.len() {
            return Outcome::Bad(format!("the output's size changed to {}", img.len()));
        }
        if img == self.new {
            return Outcome::New;
        }
        if img == self.old {
            return Outcome::Untouched;
        }
        let accepted = self.accepted_by();
        if accepted.is_empty() {
            return Outcome::Rejected;
        }
        match self.dump() {
            Some(d) if d == self.new_dump && accepted.len() == 1 + self.tool.era() as usize => {
                Outcome::SameDump
            }
            _ => Outcome::Bad(format!(
                "a partial image accepted by {}",
                accepted.join(", ")
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Byte for byte the uninterrupted run's image.
    New,
    /// Another image that checks clean and dumps as the new one.
    SameDump,
    /// The old image, not yet touched.
    Untouched,
    /// Every checker rejects it.
    Rejected,
    /// Anything else: a defect.
    Bad(String),
}

/// Kills the tool at `points` moments spread over an uninterrupted run; returns
/// `(kill time, killed before exit, outcome)` for each.
fn kill_points(setup: &Setup, points: u32) -> Vec<(Duration, bool, Outcome)> {
    let mut v = Vec::new();
    for k in 1..=points {
        let at = setup.time * k / (points + 1);
        let (killed, status) = setup.run(Some(at));
        let o = setup.outcome();
        if !killed {
            assert_eq!(status, Some(0), "{}: exit status", setup.tool.name());
        }
        v.push((at, killed, o));
    }
    v
}

fn check_all(scale: Scale, points: u32, print: bool) {
    let mut bad = Vec::new();
    let mut totals = Vec::new();
    for tool in Tool::ALL {
        let setup = Setup::new(tool, scale);
        let rows = kill_points(&setup, points);
        if print {
            eprintln!(
                "{}: uninterrupted run {} ms, output {} MiB",
                tool.name(),
                setup.time.as_millis(),
                setup.old.len() >> 20
            );
            for (at, killed, o) in &rows {
                eprintln!(
                    "  {:>6} ms  {:<8} {o:?}",
                    at.as_millis(),
                    if *killed { "killed" } else { "exited" }
                );
            }
        }
        let count = |want: &Outcome| rows.iter().filter(|r| r.2 == *want).count();
        totals.push(format!(
            "{}: {} kills ({} after exit): new {}, same dump {}, untouched {}, rejected {}",
            tool.name(),
            rows.len(),
            rows.iter().filter(|r| !r.1).count(),
            count(&Outcome::New),
            count(&Outcome::SameDump),
            count(&Outcome::Untouched),
            count(&Outcome::Rejected),
        ));
        bad.extend(rows.into_iter().filter_map(|(at, _, o)| match o {
            Outcome::Bad(w) => Some(format!(
                "{} killed at {} ms: {w}",
                tool.name(),
                at.as_millis()
            )),
            _ => None,
        }));
        // A new output path is refused, and nothing is created.
        let missing = setup.dir.path("missing.img");
        let o = dmce(&[tool.name(), "-q", "-i", s(&setup.input), "-o", s(&missing)]);
        assert_eq!(o.status.code(), Some(1), "{}: missing output", tool.name());
        assert!(
            !missing.exists(),
            "{}: created {}",
            tool.name(),
            missing.display()
        );
    }
    for t in &totals {
        eprintln!("{t}");
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn killed_restores_and_repairs_leave_the_new_image_the_old_one_or_one_no_checker_accepts() {
    check_all(QUICK, 4, false);
}

#[test]
#[ignore = "minutes: 50 kills of each tool on a large run"]
fn fifty_kills_of_each_tool_on_a_large_run() {
    check_all(LARGE, 50, true);
}
