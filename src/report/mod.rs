//! Findings: what a checker or a walker found wrong, as data.
//!
//! Damage is never an `Err`: each violation of a rule of the spec becomes a
//! [`Finding`] with a stable code, a severity, the block it was found in and the
//! structure that block belongs to. The tools decide what to print and which exit
//! code follows.

mod json;

pub use json::{write_check_json, write_findings_json};

use std::fmt;

/// The structure of the metadata a finding concerns, as a stable identifier for
/// machines ([`Part::id`]); the finding's `structure` text says more (which node,
/// which era, live or snapshot). Set where the finding is made, from the structure
/// being walked, never inferred from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The live superblock (block 0).
    Superblock,
    /// The superblock of a dm-era metadata snapshot.
    SnapshotSuperblock,
    /// The metadata space map: index block, bitmaps, overflow reference-count tree.
    SpaceMap,
    /// dm-clone's region bitset (its array blocks and index tree).
    RegionBitset,
    /// dm-era's writeset tree (archived writesets by era).
    WritesetTree,
    /// The bitset of an archived dm-era writeset.
    Writeset,
    /// The bitset of dm-era's current writeset.
    CurrentWriteset,
    /// dm-era's era array (its array blocks and index tree).
    EraArray,
}

impl Part {
    /// Every part, in the order of [`Part::id`]'s documentation.
    pub const ALL: [Part; 8] = [
        Part::Superblock,
        Part::SnapshotSuperblock,
        Part::SpaceMap,
        Part::RegionBitset,
        Part::WritesetTree,
        Part::Writeset,
        Part::CurrentWriteset,
        Part::EraArray,
    ];

    /// The stable identifier: `superblock`, `snapshot-superblock`, `space-map`,
    /// `region-bitset`, `writeset-tree`, `writeset`, `current-writeset`, `era-array`.
    pub fn id(self) -> &'static str {
        match self {
            Part::Superblock => "superblock",
            Part::SnapshotSuperblock => "snapshot-superblock",
            Part::SpaceMap => "space-map",
            Part::RegionBitset => "region-bitset",
            Part::WritesetTree => "writeset-tree",
            Part::Writeset => "writeset",
            Part::CurrentWriteset => "current-writeset",
            Part::EraArray => "era-array",
        }
    }

    /// The name findings use for the part as a whole.
    pub fn name(self) -> &'static str {
        match self {
            Part::Superblock => "superblock",
            Part::SnapshotSuperblock => "metadata snapshot superblock",
            Part::SpaceMap => "space map",
            Part::RegionBitset => "region bitset",
            Part::WritesetTree => "writeset tree",
            Part::Writeset => "writeset",
            Part::CurrentWriteset => "current writeset",
            Part::EraArray => "era array",
        }
    }
}

/// A structure being walked: its [`Part`] and the text findings name it by
/// (`snapshot era array index tree node (keys 0..)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The part of the metadata.
    pub part: Part,
    /// The descriptive name.
    pub name: String,
}

impl Place {
    /// A place of `part` called `name`.
    pub fn new(part: Part, name: impl Into<String>) -> Self {
        Place {
            part,
            name: name.into(),
        }
    }

    /// A place inside this one: the same part, `suffix` appended to the name.
    pub fn sub(&self, suffix: impl fmt::Display) -> Self {
        Place {
            part: self.part,
            name: format!("{}{suffix}", self.name),
        }
    }
}

impl From<Part> for Place {
    fn from(part: Part) -> Self {
        Place::new(part, part.name())
    }
}

impl From<&Place> for Place {
    fn from(p: &Place) -> Self {
        p.clone()
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// How bad a finding is (PERSISTENT-DATA.md §10: E and W).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Tolerated by the kernel; repairable (leaks, search hints, padding).
    Warning,
    /// Corruption: the kernel would fail, or data would be lost.
    Error,
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable identifier of the rule, e.g. `btree-key-order`.
    pub code: &'static str,
    /// The block where the damage was seen, if it is tied to one.
    pub block: Option<u64>,
    /// The part of the metadata the block belongs to.
    pub part: Part,
    /// The structure the block belongs to, in words, e.g. `era array index tree`.
    pub structure: String,
    /// What was found and what was expected.
    pub message: String,
}

impl Finding {
    /// An error finding.
    pub fn error(
        code: &'static str,
        block: Option<u64>,
        place: impl Into<Place>,
        message: impl Into<String>,
    ) -> Self {
        let place = place.into();
        Finding {
            severity: Severity::Error,
            code,
            block,
            part: place.part,
            structure: place.name,
            message: message.into(),
        }
    }

    /// A warning finding.
    pub fn warning(
        code: &'static str,
        block: Option<u64>,
        place: impl Into<Place>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, block, place, message)
        }
    }
}

/// A finding without its severity (`block B: structure: message [code]`), for a
/// line that already says it is an error, or a finding quoted inside another
/// message: one "error:" per line.
pub struct Detail<'a>(&'a Finding);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if let Some(b) = x.block {
            write!(f, "block {b}: ")?;
        }
        write!(f, "{}: {} [{}]", x.structure, x.message, x.code)
    }
}

impl Finding {
    /// The finding without its severity: see [`Detail`].
    pub fn detail(&self) -> Detail<'_> {
        Detail(self)
    }

    /// `error` or `warning`.
    pub fn severity_name(&self) -> &'static str {
        match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity_name(), self.detail())
    }
}

/// An ordered collection of findings.
#[derive(Debug, Default, Clone)]
pub struct Report {
    findings: Vec<Finding>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a finding.
    pub fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }

    /// Adds several findings.
    pub fn extend(&mut self, fs: impl IntoIterator<Item = Finding>) {
        self.findings.extend(fs);
    }

    /// All findings, in the order they were found.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// True when at least one error was found.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// True when at least one warning was found.
    pub fn has_warnings(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Warning)
    }

    /// Number of findings of a severity.
    pub fn count(&self, sev: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == sev).count()
    }

    /// The first error, if any.
    pub fn first_error(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.severity == Severity::Error)
    }

    /// What the findings amount to.
    pub fn verdict(&self) -> Verdict {
        if self.has_errors() {
            Verdict::Errors
        } else if self.has_warnings() {
            Verdict::Warnings
        } else {
            Verdict::Clean
        }
    }

    /// Whether a check with these findings passes (exit status 0): no error, and
    /// no warning unless non-fatal problems are accepted.
    pub fn passes(&self, ignore_non_fatal: bool) -> bool {
        match self.verdict() {
            Verdict::Clean => true,
            Verdict::Warnings => ignore_non_fatal,
            Verdict::Errors => false,
        }
    }
}

/// What a report's findings amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No finding.
    Clean,
    /// Warnings (non-fatal problems) only.
    Warnings,
    /// At least one error.
    Errors,
}

impl Verdict {
    /// `clean`, `warnings` or `errors`.
    pub fn id(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Warnings => "warnings",
            Verdict::Errors => "errors",
        }
    }
}

/// Why a dump failed.
#[derive(Debug)]
pub enum DumpError {
    /// The metadata is damaged; the first finding says where.
    Damaged(Finding),
    /// Writing the output failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for DumpError {
    fn from(e: std::io::Error) -> Self {
        DumpError::Io(e)
    }
}

impl From<Finding> for DumpError {
    fn from(f: Finding) -> Self {
        DumpError::Damaged(f)
    }
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Damaged(x) => {
                // One "error:" per line: the tool's own prefix says it already.
                // Unformatted metadata, the other target's metadata and a missing
                // snapshot are not damage.
                let not_damage = matches!(
                    x.code,
                    "sb-unformatted" | "era-snapshot" | crate::superblock::TRUNCATED
                ) || x.message.starts_with("this is dm-");
                if !not_damage {
                    write!(f, "metadata is damaged: ")?;
                }
                write!(f, "{}", x.detail())
            }
            DumpError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DumpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DumpError::Io(e) => Some(e),
            DumpError::Damaged(_) => None,
        }
    }
}
