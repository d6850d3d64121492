//! The checkers' findings as JSON (`--format json`), documented in clone_check(8)
//! and era_check(8):
//!
//! ```text
//! {
//!   "format": "era_check",
//!   "version": 1,
//!   "verdict": "errors",
//!   "exit_status": 1,
//!   "errors": 1,
//!   "warnings": 0,
//!   "findings": [
//!     {"severity":"error","code":"btree-key-order","block":37,"structure":"era-array","where":"era array index tree node (keys 0..)","message":"key 5 at entry 3 does not follow key 7"}
//!   ],
//!   "metadata": { ... }
//! }
//! ```

use std::io::{self, Write};

use super::{Finding, Report, Severity};
use crate::json::JsonOut;

impl Finding {
    /// The finding as one JSON object on one line: `severity`, `code`, `block`
    /// (`null` when not tied to a block), `structure` (the [`Part`](super::Part) id), `where`
    /// (the structure in words) and `message`.
    pub fn write_json<W: Write>(&self, j: &mut JsonOut<W>) -> io::Result<()> {
        j.begin_object(true)?;
        j.field_str("severity", self.severity_name())?;
        j.field_str("code", self.code)?;
        j.key("block")?;
        j.opt_num(self.block)?;
        j.field_str("structure", self.part.id())?;
        j.field_str("where", &self.structure)?;
        j.field_str("message", &self.message)?;
        j.end()
    }
}

/// Writes `"key": [findings...]`, one finding a line.
pub fn write_findings_json<'f, W: Write>(
    j: &mut JsonOut<W>,
    key: &str,
    findings: impl IntoIterator<Item = &'f Finding>,
) -> io::Result<()> {
    j.key(key)?;
    j.begin_array(false)?;
    for f in findings {
        f.write_json(j)?;
    }
    j.end()
}

/// Writes a checker's JSON document: the verdict, the exit status it gives, every
/// finding, and `"metadata"`, which `metadata` writes (an object, or `null`).
pub fn write_check_json<W: Write>(
    out: W,
    tool: &str,
    report: &Report,
    ignore_non_fatal: bool,
    metadata: impl FnOnce(&mut JsonOut<W>) -> io::Result<()>,
) -> io::Result<()> {
    let mut j = JsonOut::new(out);
    j.begin_object(false)?;
    j.field_str("format", tool)?;
    j.field_num("version", 1)?;
    j.field_str("verdict", report.verdict().id())?;
    j.field_num(
        "exit_status",
        if report.passes(ignore_non_fatal) {
            0
        } else {
            1
        },
    )?;
    j.field_num("errors", report.count(Severity::Error) as u64)?;
    j.field_num("warnings", report.count(Severity::Warning) as u64)?;
    write_findings_json(&mut j, "findings", report.findings())?;
    j.key("metadata")?;
    metadata(&mut j)?;
    j.end()?;
    j.finish()?.flush()
}
