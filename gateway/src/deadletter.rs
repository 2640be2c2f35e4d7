//! The dead-letter file: every message or batch the gateway could not use, with the reason, as one
//! JSON object per line, so an operator can see exactly what a node sent and replay it once fixed.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

#[derive(Debug, Serialize)]
struct Entry<'a> {
    received_ms: i64,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    detail: &'a str,
    /// The payload as text when it is UTF-8, else hex.
    payload: String,
}

/// Appends entries; flushed with each spool commit.
#[derive(Debug)]
pub struct DeadLetters {
    file: BufWriter<File>,
    /// Entries written since the last sync: most commits have none, and skip the fdatasync.
    unsynced: bool,
}

impl DeadLetters {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetters {
            file: BufWriter::new(file),
            unsynced: false,
        })
    }

    pub fn record(
        &mut self,
        received_ms: i64,
        reason: &str,
        topic: Option<&str>,
        node: Option<&str>,
        detail: &str,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let payload = match std::str::from_utf8(payload) {
            Ok(text) => text.to_owned(),
            Err(_) => payload.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let entry = Entry {
            received_ms,
            reason,
            topic,
            node,
            detail,
            payload,
        };
        self.unsynced = true;
        serde_json::to_writer(&mut self.file, &entry)?;
        self.file.write_all(b"\n")
    }

    /// Makes the entries durable: a rejected message is acknowledged only after this.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        self.unsynced = false;
        Ok(())
    }
}
