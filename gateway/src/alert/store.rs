//! The engine's state file: JSON, replaced atomically (write a temporary file, fsync it, rename it
//! over the old one, fsync the folder), so a crash leaves either the old state or the new, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::engine::Saved;

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a state file of this gateway: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl StateFile {
    pub fn new(path: PathBuf) -> Self {
        StateFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or an empty one when there is no file yet.
    pub fn load(&self) -> Result<Saved, StoreError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&text).map_err(|source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        })
    }

    /// Replaces the file with `saved`.
    pub fn save(&self, saved: &Saved) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(saved).map_err(|e| io(std::io::Error::other(e)))?;
        let folder = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder).map_err(io)?;
        let temporary = self.path.with_extension("json.tmp");
        {
            let mut file = std::fs::File::create(&temporary).map_err(io)?;
            file.write_all(&json).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temporary, &self.path).map_err(io)?;
        std::fs::File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_reads_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("alerts-state.json"));
        assert_eq!(file.load().unwrap(), Saved::default());
        let saved = Saved {
            next_silence_id: 7,
            ..Saved::default()
        };
        file.save(&saved).unwrap();
        assert_eq!(file.load().unwrap(), saved);
        assert!(!dir.path().join("alerts-state.json.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts-state.json");
        std::fs::write(&path, "{\"incidents\": [").unwrap();
        assert!(matches!(
            StateFile::new(path).load(),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
