//! Findings: what a checker or a walker found wrong, as data.
//!
//! Damage is never an `Err`: each violation of a rule of the spec becomes a
//! [`Finding`] with a stable code, a severity, the block it was found in and the
//! structure that block belongs to. The tools decide what to print and which exit
//! code follows.

use std::fmt;

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
    /// The structure the block belongs to, e.g. `era array index tree`.
    pub structure: String,
    /// What was found and what was expected.
    pub message: String,
}

impl Finding {
    /// An error finding.
    pub fn error(
        code: &'static str,
        block: Option<u64>,
        structure: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Error,
            code,
            block,
            structure: structure.into(),
            message: message.into(),
        }
    }

    /// A warning finding.
    pub fn warning(
        code: &'static str,
        block: Option<u64>,
        structure: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, block, structure, message)
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: ")?;
        if let Some(b) = self.block {
            write!(f, "block {b}: ")?;
        }
        write!(f, "{}: {} [{}]", self.structure, self.message, self.code)
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
                let not_damage = matches!(x.code, "sb-unformatted" | "era-snapshot")
                    || x.message.starts_with("this is dm-");
                if !not_damage {
                    write!(f, "metadata is damaged: ")?;
                }
                if let Some(b) = x.block {
                    write!(f, "block {b}: ")?;
                }
                write!(f, "{}: {} [{}]", x.structure, x.message, x.code)
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
