//! The spool's writing end: appends records and makes them durable in group commits.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::record::{HEADER, KIND_DERIVED, KIND_TELEMETRY, MAX_RECORD};
use super::segment::{
    FolderIdentity, Index, Limits, Position, Segment, SpoolError, lock, open_segment, sync_dir,
};
use crate::model::SequenceMark;

/// Appends records. Owned by the one thread that commits.
#[derive(Debug)]
pub struct SpoolWriter {
    pub(super) dir: PathBuf,
    pub(super) home: FolderIdentity,
    pub(super) segment: u64,
    pub(super) file: Arc<File>,
    /// Durable length of the active segment: every commit writes here.
    pub(super) committed: u64,
    /// Appended records not yet committed, encoded; kept until a commit succeeds.
    pub(super) pending: Vec<u8>,
    /// A write or sync failed: the file is cut back and reopened before the next one.
    pub(super) failed: bool,
    /// The last commit found the disk full: release the active segment as soon as it is drained.
    pub(super) short_of_space: bool,
    pub(super) limits: Limits,
    pub(super) index: Arc<Mutex<Index>>,
    pub(super) scratch: Vec<u8>,
    /// Tests: the next commit writes this many bytes, then fails as a full disk does.
    #[cfg(test)]
    pub(super) disk_full_after: Option<usize>,
}

impl SpoolWriter {
    /// Takes one record. Durable only after [`Self::commit`].
    pub fn append(&mut self, mark: Option<(&str, SequenceMark)>, lines: &[u8]) -> Result<(), SpoolError> {
        self.scratch.clear();
        match mark {
            Some((node, mark)) => {
                self.scratch.push(KIND_TELEMETRY);
                let node = node.as_bytes();
                let node_len =
                    u8::try_from(node.len()).map_err(|_| std::io::Error::other("node id over 255 bytes"))?;
                self.scratch.push(node_len);
                self.scratch.extend_from_slice(node);
                self.scratch.extend_from_slice(&mark.boot.to_le_bytes());
                self.scratch.extend_from_slice(&mark.seq.to_le_bytes());
                self.scratch.extend_from_slice(&mark.anchor_ms.to_le_bytes());
            }
            None => self.scratch.push(KIND_DERIVED),
        }
        self.scratch.extend_from_slice(lines);
        let len = u32::try_from(self.scratch.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD);
        let len = len.ok_or_else(|| std::io::Error::other("spool record over 1 MiB"))?;
        let size = HEADER as u64 + u64::from(len);

        let total = lock(&self.index).total();
        if total + size > self.limits.max_bytes {
            return Err(SpoolError::Full {
                bytes: total,
                max: self.limits.max_bytes,
            });
        }
        if self.written() > 0 && self.written() + size > self.limits.segment_bytes {
            self.rotate()?;
        }
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending
            .extend_from_slice(&crc32fast::hash(&self.scratch).to_le_bytes());
        self.pending.extend_from_slice(&self.scratch);
        let written = self.written();
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.written = written;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.committed + self.pending.len() as u64
    }

    /// Makes every appended record durable (one positioned write + fdatasync) and visible to the
    /// reader. On failure nothing of it counts: the bytes are cut off again and written anew, at the
    /// same place, by the next call.
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        self.watch_folder()?;
        if self.failed {
            self.recover()?;
        }
        if self.short_of_space {
            self.release_drained()?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.write_pending();
        if let Err(e) = written {
            self.failed = true;
            // Best effort now; `recover` does it again before the next write.
            let _ = self.file.set_len(self.committed);
            let error = SpoolError::from_write(e);
            self.short_of_space = error.is_full();
            return Err(error);
        }
        self.short_of_space = false;
        if self.file.metadata()?.nlink() == 0 {
            // Durable, but in a file no longer in the folder: a restart would not find it.
            self.failed = true;
            return Err(self.folder_error("a segment file was deleted"));
        }
        self.committed += self.pending.len() as u64;
        self.pending.clear();
        let committed = self.committed;
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.committed = committed;
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn write_pending(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&self.pending, self.committed)?;
        self.file.sync_data()
    }

    #[cfg(test)]
    fn write_pending(&mut self) -> std::io::Result<()> {
        if let Some(bytes) = self.disk_full_after.take() {
            let part = self.pending.get(..bytes).unwrap_or(&self.pending);
            self.file.write_all_at(part, self.committed)?;
            return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
        self.file.write_all_at(&self.pending, self.committed)?;
        self.file.sync_data()
    }

    /// Cuts the active segment back to what was committed and reopens it: a writer whose write
    /// failed is never reused.
    fn recover(&mut self) -> Result<(), SpoolError> {
        let file = open_segment(&self.dir, self.segment)?;
        file.set_len(self.committed).map_err(SpoolError::from_write)?;
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.file = Arc::clone(&file);
        }
        self.file = file;
        self.failed = false;
        Ok(())
    }

    /// When the database has taken everything of the active segment, starts a new one, so the
    /// drained file can be deleted: with a single segment the disk would otherwise never free.
    /// Called when the disk is short of space and when ingest is idle; a busy spool rotates at
    /// `segment_mb` anyway, and sealing on every commit would make a file per commit.
    pub fn release_drained(&mut self) -> Result<(), SpoolError> {
        let drained = lock(&self.index).drained;
        let all_taken = drained
            == Position {
                segment: self.segment,
                offset: self.committed,
            };
        if self.committed == 0 || !all_taken {
            return Ok(());
        }
        self.start_segment()
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.commit()?;
        self.start_segment()
    }

    /// Seals the active segment at its committed length and opens the next; what is pending moves
    /// with the writer into the new one.
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let next = self.segment + 1;
        let file = open_segment(&self.dir, next).map_err(|e| self.folder_failure(e))?;
        file.set_len(0).map_err(SpoolError::from_write)?;
        // The new file's directory entry must be durable before records in it are acknowledged.
        sync_dir(&self.dir).map_err(|e| self.folder_failure(e))?;
        let pending = self.pending.len() as u64;
        let mut index = lock(&self.index);
        if let Some(s) = index.segments.back_mut() {
            s.written = s.committed;
        }
        index.segments.push_back(Segment {
            id: next,
            committed: 0,
            written: pending,
            file: Arc::clone(&file),
        });
        drop(index);
        self.file = file;
        self.segment = next;
        self.committed = 0;
        Ok(())
    }

    /// Bytes on disk (committed or not), for the metrics.
    pub fn bytes(&self) -> u64 {
        lock(&self.index).total()
    }
}
