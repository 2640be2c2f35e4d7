//! The engine's state file: JSON, replaced atomically (write a temporary file, fsync it, rename it
//! over the old one, fsync the folder), so a crash leaves either the old state or the new, never half.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use super::engine::Saved;

/// The state is written at most this often while transitions keep coming (each save is two fsyncs:
/// the file and its folder). What a crash between two saves costs is said in `runner.rs`.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

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

/// One state to write; `done` hears once it is on disk (or the write failed, which is logged).
#[derive(Debug)]
struct Job {
    saved: Saved,
    done: oneshot::Sender<()>,
}

/// Writes the state on a thread of its own, so the fsyncs never hold an async worker. Jobs that
/// queue up while a write is under way are folded into one: only the latest state is written.
#[derive(Debug)]
pub struct StateWriter {
    jobs: std::sync::mpsc::Sender<Job>,
    saves: Arc<AtomicU64>,
}

impl StateWriter {
    /// Starts the writer thread; it ends when the writer is dropped, after the jobs it was given.
    pub fn start(file: StateFile) -> Result<StateWriter, StoreError> {
        let path = file.path.clone();
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let saves = Arc::new(AtomicU64::new(0));
        std::thread::Builder::new()
            .name("rackwatch-alert-state".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut latest = first.saved;
                    let mut waiting = vec![first.done];
                    while let Ok(next) = queue.try_recv() {
                        latest = next.saved;
                        waiting.push(next.done);
                    }
                    if let Err(e) = file.save(&latest) {
                        tracing::error!("alert state not saved: {e}");
                    }
                    for done in waiting {
                        let _ = done.send(());
                    }
                }
            })
            .map_err(|source| StoreError::Io { path, source })?;
        Ok(StateWriter { jobs, saves })
    }

    /// Writes `saved` on the writer thread; returns at once. The receiver hears once it is on disk
    /// (or the write failed, which is logged); drop it not to wait.
    pub fn save(&self, saved: Saved) -> oneshot::Receiver<()> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        let (done, written) = oneshot::channel();
        let _ = self.jobs.send(Job { saved, done });
        written
    }

    /// How many writes were asked for (the state is saved coalesced, not per transition; the
    /// thread may fold several into one).
    pub fn saves(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.saves)
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
