//! The spool folder watched at every commit: removed, replaced by another folder, or without write
//! permission, the commit fails and nothing is acknowledged; when the folder can be (re)created,
//! every segment not yet drained is written into it again from the files the spool holds open, so
//! a restart finds everything that was acknowledged.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use super::segment::{FolderIdentity, SpoolError, lock, open_segment, segment_path, sync_dir, write_cursor};
use super::writer::SpoolWriter;

impl SpoolWriter {
    pub(super) fn folder_error(&self, detail: &str) -> SpoolError {
        SpoolError::Folder {
            path: self.dir.display().to_string(),
            detail: detail.to_owned(),
        }
    }

    /// A failure to create or sync a file in the folder: the disk's when it is full, else the
    /// folder's (removed or replaced under the spool).
    pub(super) fn folder_failure(&self, error: std::io::Error) -> SpoolError {
        match SpoolError::from_write(error) {
            SpoolError::Io(error) => self.folder_error(&error.to_string()),
            full => full,
        }
    }

    /// Checks that the spool folder is still the one the segments are in and can be written; a
    /// removed folder is created again and a replaced one adopted, and every segment not yet drained
    /// is written into it from the files the spool holds open. Any I/O failure on the way is the
    /// folder's (it can be removed again while this runs), never a failure of the disk.
    pub(super) fn watch_folder(&mut self) -> Result<(), SpoolError> {
        self.check_folder().map_err(|e| match e {
            SpoolError::Io(io) => self.folder_error(&io.to_string()),
            other => other,
        })
    }

    fn check_folder(&mut self) -> Result<(), SpoolError> {
        // One stat of the folder per commit: its identity and its kind.
        let meta = match std::fs::metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir)
                    .map_err(|e| self.folder_error(&format!("removed, and cannot be created again: {e}")))?;
                std::fs::metadata(&self.dir)?
            }
            Err(e) => return Err(self.folder_error(&e.to_string())),
        };
        let identity = FolderIdentity::from_metadata(&meta);
        if !meta.is_dir() {
            return Err(self.folder_error("is no longer a folder"));
        }
        if meta.permissions().readonly() {
            return Err(self.folder_error("is read-only"));
        }
        if identity != self.home || self.file.metadata()?.nlink() == 0 {
            self.rehome()?;
            self.home = identity;
        }
        Ok(())
    }

    /// Writes every segment not yet drained, and the cursor, into the (new) folder.
    fn rehome(&mut self) -> Result<(), SpoolError> {
        let (segments, drained) = {
            let index = lock(&self.index);
            (index.segments.clone(), index.drained)
        };
        let mut buffer = Vec::new();
        let mut reopened = Vec::with_capacity(segments.len());
        for segment in &segments {
            buffer.resize(usize::try_from(segment.committed).unwrap_or(usize::MAX), 0);
            segment.file.read_exact_at(&mut buffer, 0)?;
            let tmp = self.dir.join(format!("{:020}.seg.tmp", segment.id));
            std::fs::write(&tmp, &buffer).map_err(SpoolError::from_write)?;
            File::open(&tmp)?.sync_data().map_err(SpoolError::from_write)?;
            std::fs::rename(&tmp, segment_path(&self.dir, segment.id))?;
            reopened.push(open_segment(&self.dir, segment.id)?);
        }
        write_cursor(&self.dir, drained)?;
        sync_dir(&self.dir)?;
        let mut index = lock(&self.index);
        for (segment, file) in index.segments.iter_mut().zip(&reopened) {
            segment.file = Arc::clone(file);
        }
        drop(index);
        if let Some(file) = reopened.last() {
            self.file = Arc::clone(file);
        }
        tracing::warn!(
            segments = segments.len(),
            path = %self.dir.display(),
            "spool folder was removed or replaced: every segment not yet in the database was written into it again"
        );
        Ok(())
    }
}
