//! A view's fact file on disk: the append-only file core's projection writes its facts to, a
//! few dozen per person at a time, and reads them back from when it re-folds a journey.
//!
//! Appends go straight to the operating system (no buffer of our own), so a process killed
//! after a commit has lost none of what the commit points to. The view store commits the
//! file's length beside the entries and the checkpoint in one sled batch, having first made
//! the appended bytes durable; when it opens the view it cuts the file back to that length,
//! dropping what a commit that never finished appended.

use baton_core::FactFile;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The file's name in a view's directory.
pub(crate) const FACT_FILE: &str = "facts";

#[derive(Debug)]
pub(crate) struct DiskFactFile {
    path: PathBuf,
    file: std::fs::File,
    /// Where the next append goes: the file's length.
    end: Mutex<u64>,
    /// Set by an append, cleared once the file is synced.
    unsynced: AtomicBool,
}

impl DiskFactFile {
    /// Opens (creating when missing) the fact file in `dir`.
    pub(crate) fn open(dir: &Path) -> std::io::Result<DiskFactFile> {
        let path = dir.join(FACT_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let end = file.metadata()?.len();
        Ok(DiskFactFile {
            path,
            file,
            end: Mutex::new(end),
            unsynced: AtomicBool::new(false),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length: what has been appended.
    pub(crate) fn len(&self) -> u64 {
        *self
            .end
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cuts the file back to `length`, the length the last commit recorded. A file shorter
    /// than that lost facts the entries point to: an error.
    pub(crate) fn truncate_to(&self, length: u64) -> std::io::Result<()> {
        let mut end = self
            .end
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *end < length {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "it holds {} bytes, and the last commit recorded {length}",
                    *end
                ),
            ));
        }
        if *end > length {
            self.file.set_len(length)?;
            self.file.sync_data()?;
            *end = length;
        }
        Ok(())
    }

    /// Makes every append so far durable, if there was one since the last sync.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        if self.unsynced.swap(false, Ordering::AcqRel)
            && let Err(error) = self.file.sync_data()
        {
            self.unsynced.store(true, Ordering::Release);
            return Err(error);
        }
        Ok(())
    }
}

impl FactFile for DiskFactFile {
    fn append(&self, bytes: &[u8]) -> std::io::Result<u64> {
        let mut end = self
            .end
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let offset = *end;
        self.unsynced.store(true, Ordering::Release);
        self.file.write_all_at(bytes, offset)?;
        *end = offset + bytes.len() as u64;
        Ok(offset)
    }

    fn read_at(&self, offset: u64, into: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(into, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_read_back_and_a_reopened_file_cuts_back_to_the_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let file = DiskFactFile::open(dir.path()).expect("opens");
        assert_eq!(file.append(b"hello").expect("appends"), 0);
        assert_eq!(file.append(b", world").expect("appends"), 5);
        file.sync().expect("syncs");
        let mut read = [0; 5];
        file.read_at(7, &mut read).expect("reads");
        assert_eq!(&read, b"world");
        assert!(file.read_at(10, &mut read).is_err(), "past the end");
        drop(file);

        let file = DiskFactFile::open(dir.path()).expect("reopens");
        assert_eq!(file.len(), 12);
        file.truncate_to(5).expect("cuts back");
        assert_eq!(file.append(b"!").expect("appends"), 5);
        assert_eq!(std::fs::read(file.path()).expect("reads"), b"hello!");
        let error = file.truncate_to(100).expect_err("shorter than committed");
        assert!(error.to_string().contains("holds 6 bytes"), "{error}");
    }
}
