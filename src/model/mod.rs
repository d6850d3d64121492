//! Reference models of the kernel's dm-clone and dm-era commit paths
//! (REPLAY.md §2.4), driven by `dmtrace` events ([`crate::trace`]).
//!
//! Each model mirrors the kernel's state one to one and takes the kernel's
//! decisions at the same points, each named after the kernel function it mirrors.
//! Metadata goes through the project's own transaction manager onto a simulated
//! metadata device ([`crate::sim::MetaDev`]); data devices hold stamps. The
//! historical bugs of REPLAY.md §1.10 are small switches ([`crate::trace::Variant`])
//! at the decision points their fixes changed.
//!
//! * [`clone`] mirrors `dm-clone-target.c`, over [`clone_meta`] (`dm-clone-metadata.c`).
//! * [`era`] mirrors `dm-era-target.c`, over [`era_meta`].
//! * [`replay`] runs a trace against a model: virtual time, expectations, the
//!   image left behind.

pub mod bits;
pub mod clone;
pub mod clone_meta;
pub mod era;
pub mod era_meta;
pub mod numbered;
pub mod oracle;
pub mod replay;
pub mod user;

#[cfg(test)]
mod tests;

use std::fmt;

use crate::pdata::tm::TmError;
use crate::sim::DiskError;

/// A user write as a trace states it.
#[derive(Debug, Clone, Default)]
pub struct WriteReq {
    /// First sector.
    pub start: u64,
    /// One past the last sector.
    pub end: u64,
    /// REQ_FUA.
    pub fua: bool,
    /// REQ_PREFLUSH.
    pub preflush: bool,
    /// The payload when it is not the write's own stamp.
    pub data: Option<crate::sim::Origin>,
    /// `id=`.
    pub id: Option<String>,
    /// Completes only on `complete id=`.
    pub is_async: bool,
}

/// Why a model step failed.
#[derive(Debug)]
pub enum ModelError {
    /// The trace asks for something the kernel could not do at this point
    /// (REPLAY.md "Enabledness"): a trace error.
    NotEnabled(String),
    /// The trace is inconsistent with itself (unknown id, time going back, a
    /// parameter the table would refuse).
    Trace(String),
    /// The kernel would refuse to open the metadata.
    Open(String),
    /// The metadata layer failed (out of metadata space, or a model bug).
    Meta(TmError),
    /// A simulated device refused an I/O.
    Disk(DiskError),
    /// A model invariant broke (a bug in the model).
    Internal(String),
}

impl ModelError {
    pub(crate) fn io(e: std::io::Error) -> Self {
        ModelError::Internal(format!("metadata device: {e}"))
    }

    pub(crate) fn internal(m: String) -> Self {
        ModelError::Internal(m)
    }

    /// True when the metadata device had no free block left.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            ModelError::Meta(crate::pdata::tm::TmError::Sm(
                crate::pdata::space_map::writer::SmError::NoSpace { .. }
            ))
        )
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::NotEnabled(m) => write!(f, "not possible here: {m}"),
            ModelError::Trace(m) => write!(f, "{m}"),
            ModelError::Open(m) => write!(f, "the kernel would refuse the metadata: {m}"),
            ModelError::Meta(e) => write!(f, "metadata: {e}"),
            ModelError::Disk(e) => write!(f, "device: {e}"),
            ModelError::Internal(m) => write!(f, "model error: {m}"),
        }
    }
}

impl std::error::Error for ModelError {}

impl From<TmError> for ModelError {
    fn from(e: TmError) -> Self {
        ModelError::Meta(e)
    }
}

impl From<DiskError> for ModelError {
    fn from(e: DiskError) -> Self {
        ModelError::Disk(e)
    }
}
