//! The dead-letter file: every message or batch the gateway could not use, with the reason, as one
//! JSON object per line, so an operator can see exactly what a node sent and replay it once fixed.
//!
//! Bounded, because one misbehaving node must not fill the disk the spool needs: payloads are cut to
//! [`MAX_PAYLOAD`] bytes, the file is rotated (`dead-letters.jsonl` -> `dead-letters.1.jsonl`, the
//! older one deleted) so both together stay under `spool.dead_letter_max_mb`, which is taken out of
//! the spool's `max_mb`, and above `spool.dead_letter_rate` entries a second per reason only one in
//! [`SAMPLE_EVERY`] is written. Every entry is counted either way
//! (`rackwatch_dead_letters_sampled_total{reason}` counts those not written).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::events::{Metrics, ReasonLabel};

/// The part of a payload kept in an entry; the entry says how long it was.
pub const MAX_PAYLOAD: usize = 4096;
/// Over the per-reason rate, one entry in this many is written.
pub const SAMPLE_EVERY: u64 = 100;

#[derive(Debug, Serialize)]
struct Entry<'a> {
    received_ms: i64,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    detail: &'a str,
    /// The payload (its first [`MAX_PAYLOAD`] bytes) as text when it is UTF-8, else hex.
    payload: String,
    /// The payload's full length, when it was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_bytes: Option<usize>,
}

/// How large the dead letters may grow and how fast.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Both files together.
    pub max_bytes: u64,
    /// Entries a second per reason before sampling starts.
    pub per_reason_per_second: u64,
}

/// Per reason: the current one-second window and how many entries it has seen.
#[derive(Debug)]
struct Window {
    started: Instant,
    seen: u64,
}

/// Appends entries; flushed with each spool commit.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes in the current file.
    size: u64,
    bounds: Bounds,
    windows: HashMap<&'static str, Window>,
    metrics: Arc<Metrics>,
    /// Entries written since the last sync: most commits have none, and skip the fdatasync.
    unsynced: bool,
}

fn open_append(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((BufWriter::new(file), size))
}

impl DeadLetters {
    pub fn open(path: &Path, bounds: Bounds, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let (file, size) = open_append(path)?;
        Ok(DeadLetters {
            path: path.to_owned(),
            file,
            size,
            bounds,
            windows: HashMap::new(),
            metrics,
            unsynced: false,
        })
    }

    /// The rotated file beside `path`.
    pub fn rotated_path(path: &Path) -> PathBuf {
        path.with_extension("1.jsonl")
    }

    pub fn record(
        &mut self,
        received_ms: i64,
        reason: &'static str,
        topic: Option<&str>,
        node: Option<&str>,
        detail: &str,
        payload: &[u8],
    ) -> std::io::Result<()> {
        if !self.admit(reason) {
            self.metrics
                .dead_letters_sampled
                .get_or_create(&ReasonLabel { reason })
                .inc();
            return Ok(());
        }
        let kept = payload.get(..MAX_PAYLOAD).unwrap_or(payload);
        let text = match std::str::from_utf8(kept) {
            Ok(text) => text.to_owned(),
            // A cut can split a character: keep what is valid of it as text.
            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
                String::from_utf8_lossy(kept.get(..e.valid_up_to()).unwrap_or_default()).into_owned()
            }
            Err(_) => kept.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let entry = Entry {
            received_ms,
            reason,
            topic,
            node,
            detail,
            payload: text,
            payload_bytes: (kept.len() < payload.len()).then_some(payload.len()),
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        let line_len = line.len() as u64;
        if self.size + line_len > self.bounds.max_bytes / 2 {
            self.rotate()?;
        }
        self.unsynced = true;
        self.file.write_all(&line)?;
        self.size += line_len;
        Ok(())
    }

    /// True when this entry is written: within the reason's rate, or one of every [`SAMPLE_EVERY`]
    /// beyond it.
    fn admit(&mut self, reason: &'static str) -> bool {
        let now = Instant::now();
        let window = self.windows.entry(reason).or_insert(Window {
            started: now,
            seen: 0,
        });
        if now.duration_since(window.started) >= Duration::from_secs(1) {
            *window = Window {
                started: now,
                seen: 0,
            };
        }
        window.seen += 1;
        let over = window.seen.saturating_sub(self.bounds.per_reason_per_second);
        over == 0 || over.is_multiple_of(SAMPLE_EVERY)
    }

    /// Starts a new file; the previous one becomes `dead-letters.1.jsonl`, replacing the older.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        std::fs::rename(&self.path, Self::rotated_path(&self.path))?;
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }

    /// Makes the entries durable: a rejected message is acknowledged only after this.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        if self.file.get_ref().metadata()?.nlink() == 0 {
            // The spool folder was removed under us: go on in a new file where it is now.
            let (file, size) = open_append(&self.path)?;
            self.file = file;
            self.size = size;
        }
        self.unsynced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_bad_messages_is_sampled_and_the_files_stay_under_their_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead-letters.jsonl");
        let metrics = Arc::new(Metrics::new());
        let bounds = Bounds {
            max_bytes: 64 * 1024,
            per_reason_per_second: 50,
        };
        let mut letters = DeadLetters::open(&path, bounds, Arc::clone(&metrics)).unwrap();
        let payload = vec![b'x'; 10_000];
        for i in 0..20_000 {
            letters
                .record(i, "malformed", Some("t"), None, "bad", &payload)
                .unwrap();
        }
        letters.sync().unwrap();
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let total = size(&path) + size(&DeadLetters::rotated_path(&path));
        assert!(total <= bounds.max_bytes, "{total} bytes");
        assert!(size(&DeadLetters::rotated_path(&path)) > 0, "rotated");
        let sampled = metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("rackwatch_dead_letters_sampled_total{reason=\"malformed\"} "))
            .map(|v| v.parse::<f64>().unwrap())
            .unwrap();
        // Within one second: 50 written, then one in a hundred of the rest.
        assert!(sampled >= 19_700.0, "{sampled}");
        let text = std::fs::read_to_string(&path).unwrap();
        let entry: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(entry["payload"].as_str().unwrap().len(), MAX_PAYLOAD);
        assert_eq!(entry["payload_bytes"], 10_000);
    }
}
