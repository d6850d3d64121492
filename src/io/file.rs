//! A metadata device backed by a regular file or a block device.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{out_of_range, Block, BlockDevice, BLOCK_SIZE};

/// `O_EXCL`: on a block device without `O_CREAT`, Linux grants the open only if no one
/// else (a mounted filesystem, a device-mapper table) holds the device.
const O_EXCL: i32 = 0o200;

/// A file or block device used as a metadata device.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    nr_blocks: u64,
    size_bytes: u64,
}

impl FileDevice {
    /// Opens `path` read-only (check, dump). For a block device, cached pages are
    /// dropped first so that what the kernel target wrote through its own buffers
    /// is read from the device, not from a stale page cache.
    pub fn open_read(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        drop_page_cache(&file)?;
        Self::from_file(file, path)
    }

    /// Opens `path` read-only; a block device is opened exclusively (`O_EXCL`), so a
    /// device held by a device-mapper table is refused with `EBUSY`.
    pub fn open_read_exclusive(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let mut opts = OpenOptions::new();
        opts.read(true);
        if is_block_device(&meta) {
            opts.custom_flags(O_EXCL);
        }
        let file = opts.open(path)?;
        drop_page_cache(&file)?;
        Self::from_file(file, path)
    }

    /// Opens `path` for writing. A block device is opened exclusively (`O_EXCL`), so a
    /// device in use by a table or a filesystem is refused.
    pub fn open_write(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if is_block_device(&meta) {
            opts.custom_flags(O_EXCL);
        }
        let file = opts.open(path)?;
        Self::from_file(file, path)
    }

    /// A device on `file`, already open, named `path` in messages.
    pub fn from_file(mut file: File, path: &Path) -> io::Result<Self> {
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a directory",
            ));
        }
        // Seeking to the end gives the size of block devices as well as of files.
        let size_bytes = file.seek(SeekFrom::End(0))?;
        Ok(FileDevice {
            file,
            path: path.to_path_buf(),
            nr_blocks: size_bytes / BLOCK_SIZE as u64,
            size_bytes,
        })
    }

    /// The path the device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes (may include a partial trailing block that is never used).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Drops the clean cached pages of a block device (a no-op for regular files, whose
/// page cache is the truth).
fn drop_page_cache(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if is_block_device(&file.metadata()?) {
        // SAFETY: plain system call on a valid, owned descriptor; no memory is shared.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    Ok(())
}

/// True when `meta` describes a block device.
pub fn is_block_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}

impl BlockDevice for FileDevice {
    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()> {
        if b >= self.nr_blocks {
            return Err(out_of_range(b, self.nr_blocks));
        }
        self.file.read_exact_at(buf, b * BLOCK_SIZE as u64)
    }

    fn write(&self, b: u64, buf: &Block) -> io::Result<()> {
        if b >= self.nr_blocks {
            return Err(out_of_range(b, self.nr_blocks));
        }
        self.file.write_all_at(buf, b * BLOCK_SIZE as u64)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
