//! The committer: ingest's second thread. It owns the spool's writing end, appends what ingest
//! staged, makes it durable (one fdatasync for everything staged meanwhile: group commit) and only
//! then acknowledges it. Ingest goes on decoding while a commit waits for the disk, so a reading
//! reaches the alert engine without waiting for an fdatasync; the bounded hand-over keeps ingest at
//! most [`STAGED_BATCHES`] batches ahead.

use std::ops::Range;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::events::{Metrics, SpoolFailed, SpoolFull};
use crate::health::{Component, Health};
use crate::model::{AckRoutes, Acknowledgement, SequenceMark};
use crate::shutdown::Shutdown;
use crate::spool::deadletter::DeadLetters;
use crate::spool::{SpoolError, SpoolWriter};

/// Batches ingest may stage ahead of the committer.
pub const STAGED_BATCHES: usize = 4;
/// With nothing staged for this long, the committer still looks at the spool: its folder (for
/// `/health/ready`) and whether a drained segment can be sealed so the disk frees.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How often a refused append or commit is tried again (the writer drains meanwhile).
const SPOOL_RETRY: Duration = Duration::from_millis(200);

/// Records ingest staged for one commit, and the acknowledgements owed once they are durable.
#[derive(Debug, Default)]
pub struct Staged {
    bytes: Vec<u8>,
    records: Vec<StagedRecord>,
    pub acks: Vec<Acknowledgement>,
}

#[derive(Debug)]
struct StagedRecord {
    /// The node's id (in `bytes`) and its sequence mark, for telemetry.
    mark: Option<(Range<usize>, SequenceMark)>,
    lines: Range<usize>,
}

impl Staged {
    /// Stages one spool record (see [`SpoolWriter::append`]).
    pub fn push(&mut self, mark: Option<(&str, SequenceMark)>, lines: &[u8]) {
        if lines.is_empty() && mark.is_none() {
            return;
        }
        let mark = mark.map(|(node, mark)| (self.extend(node.as_bytes()), mark));
        let lines = self.extend(lines);
        self.records.push(StagedRecord { mark, lines });
    }

    fn extend(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.acks.is_empty()
    }

    fn records(&self) -> impl Iterator<Item = (Option<(&str, SequenceMark)>, &[u8])> {
        // The ranges were made by `push` from this buffer, and the node from a `&str`.
        self.records.iter().map(|record| {
            let mark = record.mark.as_ref().map(|(node, mark)| {
                let node = self.bytes.get(node.clone()).unwrap_or_default();
                (std::str::from_utf8(node).unwrap_or_default(), *mark)
            });
            (mark, self.bytes.get(record.lines.clone()).unwrap_or_default())
        })
    }
}

/// Everything the committer owns.
#[derive(Debug)]
pub struct Committer {
    pub spool: SpoolWriter,
    pub dead_letters: Arc<Mutex<DeadLetters>>,
    /// Where a commit's acknowledgements go once it is durable.
    pub acks: AckRoutes,
    pub committed: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Where "the spool takes messages" is reported.
    pub health: Arc<Health>,
    /// Stops the waits for a refusing spool: what is not committed then is not acknowledged.
    pub shutdown: Shutdown,
    /// The spool refused the last append or commit (an episode is counted once).
    pub refusing: bool,
}

impl Committer {
    /// Commits what ingest stages until ingest is gone. Runs on its own thread.
    pub fn run(mut self, staged: Receiver<Staged>) {
        let mut acks = Vec::new();
        loop {
            let mut next = match staged.recv_timeout(IDLE_CHECK) {
                Ok(batch) => Some(batch),
                Err(RecvTimeoutError::Timeout) => {
                    self.idle_check();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Group commit: everything staged while the last commit waited shares this one.
            while let Some(batch) = next.take() {
                for (mark, lines) in batch.records() {
                    if !self.append(mark, lines) {
                        // Shutting down with the spool refusing: nothing of this is acknowledged,
                        // so the broker delivers it again after the restart.
                        return;
                    }
                }
                acks.extend(batch.acks);
                next = staged.try_recv().ok();
            }
            if !self.commit() {
                return;
            }
            self.metrics.messages_acknowledged.inc_by(acks.len() as u64);
            self.acks.send(&mut acks);
            self.committed.notify_one();
            self.metrics
                .spool_bytes
                .set(i64::try_from(self.spool.bytes()).unwrap_or(i64::MAX));
        }
        self.commit();
    }

    /// Appends one record, waiting while the spool refuses it (full, or its folder or disk
    /// failing): the broker keeps what is not acknowledged. False at shutdown: the record is left
    /// out, and nothing uncommitted may be acknowledged.
    fn append(&mut self, mark: Option<(&str, SequenceMark)>, lines: &[u8]) -> bool {
        while !self.shutdown.is_shutdown() {
            match self.spool.append(mark, lines) {
                Ok(()) => {
                    if self.refusing {
                        self.recovered();
                    }
                    return true;
                }
                Err(e) => {
                    self.refused(&e);
                    // Make what is already appended durable so the writer can drain it.
                    if self.try_commit().is_ok() {
                        self.committed.notify_one();
                    }
                    std::thread::sleep(SPOOL_RETRY);
                }
            }
        }
        false
    }

    /// Commits the spool and the dead letters, trying again while the spool refuses. False when
    /// shutdown came first: then nothing since the last commit may be acknowledged.
    fn commit(&mut self) -> bool {
        loop {
            match self.try_commit() {
                Ok(()) => {
                    self.recovered();
                    return true;
                }
                Err(e) => {
                    self.refused(&e);
                    if self.shutdown.is_shutdown() {
                        return false;
                    }
                    // The writer may be the one to free space: let it look.
                    self.committed.notify_one();
                    std::thread::sleep(SPOOL_RETRY);
                }
            }
        }
    }

    /// The spool's check when no message comes: an empty commit watches the folder, and a drained
    /// segment is sealed, which the database writer then deletes.
    fn idle_check(&mut self) {
        match self.try_commit().and_then(|()| self.spool.release_drained()) {
            Ok(()) => {
                self.recovered();
                self.committed.notify_one();
            }
            Err(e) => self.refused(&e),
        }
    }

    fn try_commit(&mut self) -> Result<(), SpoolError> {
        self.spool.commit()?;
        self.dead_letters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sync()
            .map_err(SpoolError::Io)
    }

    /// The spool takes messages (again).
    fn recovered(&mut self) {
        if self.refusing {
            self.refusing = false;
            tracing::info!("the spool takes messages again; acknowledging resumes");
        }
        self.health.set(Component::Spool, Ok(()));
    }

    /// Counts (once per episode) and reports a refusal of the spool.
    fn refused(&mut self, error: &SpoolError) {
        let detail = error.to_string();
        if !self.refusing {
            self.refusing = true;
            match error {
                SpoolError::Full { .. } | SpoolError::DiskFull(_) => {
                    SpoolFull { detail: &detail }.emit(&self.metrics);
                }
                SpoolError::Folder { .. } => SpoolFailed {
                    reason: "folder",
                    detail: &detail,
                }
                .emit(&self.metrics),
                SpoolError::Io(_) => SpoolFailed {
                    reason: "io",
                    detail: &detail,
                }
                .emit(&self.metrics),
            }
        }
        self.health.set(Component::Spool, Err(detail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_records_come_back_in_order_with_their_marks() {
        let mark = SequenceMark {
            boot: 3,
            seq: 41,
            anchor_ms: 1_700_000_000_000,
        };
        let mut staged = Staged::default();
        assert!(staged.is_empty());
        staged.push(Some(("n07", mark)), b"reading,node=n07 value=1 1\n");
        staged.push(None, b"");
        staged.push(None, b"alert,key=k state=\"firing\" 2\n");
        let records: Vec<_> = staged.records().collect();
        assert_eq!(
            records,
            vec![
                (Some(("n07", mark)), &b"reading,node=n07 value=1 1\n"[..]),
                (None, &b"alert,key=k state=\"firing\" 2\n"[..]),
            ]
        );
    }
}
