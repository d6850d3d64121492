//! What the repair tools share: running a repairing dump into a restore through a
//! pipe, so that nothing but one array block of each side is held in memory, and the
//! error type.
//!
//! A repair never writes to its input: the input is only read through the dump, and
//! the output is written by the restore, with the same write safety (an existing
//! superblock is invalidated first; every block, flush, superblock, flush).

use std::fmt;
use std::io::{BufReader, Write};

use crate::io::BlockDevice;
use crate::report::DumpError;
use crate::restore::{RestoreError, RestoreSummary};

/// Why a repair failed.
#[derive(Debug)]
pub enum RepairError {
    /// Nothing could be salvaged: the superblock (or what it needs) is unreadable.
    Unsalvageable(DumpError),
    /// Regions whose hydration state is lost, and no policy was given (clone).
    Unreadable(Vec<(u64, u64)>),
    /// Writing the new metadata failed.
    Restore(RestoreError),
    /// The pipe between the two halves failed.
    Io(std::io::Error),
}

impl fmt::Display for RepairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepairError::Unsalvageable(e) => write!(f, "nothing can be salvaged: {e}"),
            RepairError::Unreadable(r) => {
                let list: Vec<String> = r
                    .iter()
                    .take(20)
                    .map(|(b, e)| format!("{b}..{e}"))
                    .collect();
                write!(
                    f,
                    "the hydration state of {} regions is lost (regions {}{}); it cannot be guessed: --assume-unhydrated reads them from the source again (losing writes made to them), --assume-hydrated serves them from the destination (exposing data that may never have been copied)",
                    r.iter().map(|(b, e)| e - b).sum::<u64>(),
                    list.join(", "),
                    if r.len() > 20 { ", ..." } else { "" }
                )
            }
            RepairError::Restore(e) => write!(f, "writing the repaired metadata: {e}"),
            RepairError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RepairError {}

/// Streams `dump(writer)` into `restore(reader)` on two threads. The dump's own
/// error wins over the restore's (a failed dump truncates the restore's input).
pub fn pipe_through<T, N, D>(
    dump: D,
    restore: impl FnOnce(BufReader<std::io::PipeReader>) -> Result<(T, RestoreSummary), RestoreError>,
) -> Result<(T, RestoreSummary, N), RepairError>
where
    D: FnOnce(&mut dyn Write) -> Result<N, DumpError> + Send,
    N: Send,
{
    let (reader, mut writer) = std::io::pipe().map_err(RepairError::Io)?;
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let r = dump(&mut writer);
            drop(writer);
            r
        });
        let restored = restore(BufReader::with_capacity(1 << 16, reader));
        let dumped = h.join().unwrap_or_else(|_| {
            Err(DumpError::Io(std::io::Error::other(
                "the dump thread panicked",
            )))
        });
        match (dumped, restored) {
            (Ok(n), Ok((t, s))) => Ok((t, s, n)),
            // The restore stopped reading: its error explains the dump's broken pipe.
            (Err(DumpError::Io(_)), Err(e)) => Err(RepairError::Restore(e)),
            (Err(e), _) => Err(RepairError::Unsalvageable(e)),
            (Ok(_), Err(e)) => Err(RepairError::Restore(e)),
        }
    })
}

/// Checks that the input is readable before anything is written to the output.
pub fn probe(dev: &dyn BlockDevice) -> Result<(), RepairError> {
    let mut b = crate::io::zeroed_block();
    dev.read(0, &mut b).map_err(RepairError::Io)
}
