//! The sink: drains the spool into the database through the InfluxDB v1 or v2 write API
//! (`writer`), and does what each answer asks (`answer`):
//!
//! | answer | what the sink does |
//! |---|---|
//! | connection error, timeout, 5xx | retry forever: exponential back-off (100 ms doubling, capped at `influxdb.max_backoff`) with full jitter |
//! | 429, or 5xx with `Retry-After` | wait as long as the server says (seconds or HTTP-date), counted as `throttled` |
//! | 401/403, 404 | halt: keep the spool, log the reason once a minute, `/health/ready` says why, ask again after the back-off; a fixed password or a created database resumes writing |
//! | 400 partial write naming lines (field type conflict, unparsable lines) | the server kept the good points: dead-letter only the lines it dropped (a conflict names a measurement, field and type; when more lines have that shape than were dropped, the halves are written again until the count matches), write the rest again if it dropped more |
//! | 400 partial write, points beyond retention | count them (`rackwatch_points_dropped_by_database_total{reason}`), go on |
//! | 413 | split the batch in halves until each part is taken; sizes that were refused are split before sending |
//! | another 4xx | dead-letter the batch with the server's message |
//!
//! The spool's cursor moves past a batch only once every line of it is stored, dead-lettered or
//! dropped by the database; a crash before that writes the batch again, which stores nothing twice
//! (InfluxDB keeps one point per series and timestamp).

mod answer;
mod status;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub use answer::{Answer, DropCause};
pub use status::SinkStatus;
pub use writer::InfluxWriter;

use crate::config::InfluxConfig;
use crate::events::{DatabaseHalted, Metrics, PointsDroppedByDatabase, WriteFailed};
use crate::model::now_ms;
use crate::shutdown::Shutdown;
use crate::spool::deadletter::DeadLetters;
use crate::spool::{Batch, SpoolReader};

/// How often a batch waiting for its age looks whether the spool has filled it meanwhile.
const FILL_CHECK: Duration = Duration::from_millis(100);

/// The sink task: everything it needs to drain the spool into the database.
#[derive(Debug)]
pub struct Drain {
    pub reader: SpoolReader,
    pub writer: InfluxWriter,
    pub config: InfluxConfig,
    /// Signalled by ingest after every commit.
    pub committed: Arc<Notify>,
    pub dead_letters: Arc<Mutex<DeadLetters>>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<SinkStatus>,
    pub shutdown: Shutdown,
    /// How long to keep draining after shutdown.
    pub grace: Duration,
}

/// The batch could not be delivered before shutdown; it stays in the spool.
#[derive(Debug)]
struct Abandoned;

/// Delivers batches, one part at a time, and remembers what it learned of the server.
#[derive(Debug)]
struct Sink {
    writer: InfluxWriter,
    dead_letters: Arc<Mutex<DeadLetters>>,
    metrics: Arc<Metrics>,
    status: Arc<SinkStatus>,
    shutdown: Shutdown,
    grace: Duration,
    /// Set once shutdown is seen: draining goes on until then.
    deadline: Option<Instant>,
    /// The smallest body the server answered 413 to: parts this large are split before sending.
    too_large_at: Option<usize>,
}

/// Drains the spool into the database until shutdown, then for at most `grace` more.
pub async fn drain(task: Drain) {
    let Drain {
        mut reader,
        writer,
        config,
        committed,
        dead_letters,
        metrics,
        status,
        shutdown,
        grace,
    } = task;
    let mut sink = Sink {
        writer,
        dead_letters,
        metrics,
        status,
        shutdown,
        grace,
        deadline: None,
        too_large_at: None,
    };
    let max_age = config.batch_max_age;
    let mut batch = Batch::default();
    loop {
        batch.body.clear();
        batch.lines = 0;
        batch.end = None;
        if let Err(e) = reader.read(&mut batch, config.batch_max_lines) {
            tracing::error!("spool read failed: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        sink.metrics
            .spool_pending_bytes
            .set(i64::try_from(reader.pending_bytes()).unwrap_or(i64::MAX));
        if batch.lines == 0 {
            if let Some(end) = batch.end {
                let _ = reader.advance(end);
            }
            if sink.shutdown.is_shutdown() {
                return;
            }
            tokio::select! {
                () = committed.notified() => {}
                () = sink.shutdown.recv() => { sink.deadline = Some(Instant::now() + grace); }
            }
            continue;
        }
        // Age batching: a small batch waits up to `batch_max_age` for more lines, looking every
        // `FILL_CHECK` whether it is full (not at every commit: at a steady load that is a wake-up
        // per commit for a few lines).
        let started = Instant::now();
        while batch.lines < config.batch_max_lines && !sink.shutdown.is_shutdown() {
            let Some(left) = max_age.checked_sub(started.elapsed()) else {
                break;
            };
            tokio::select! {
                () = tokio::time::sleep(left.min(FILL_CHECK)) => {}
                () = sink.shutdown.recv() => { sink.deadline = Some(Instant::now() + grace); break }
            }
            if let Err(e) = reader.read(&mut batch, config.batch_max_lines) {
                tracing::error!("spool read failed: {e}");
                break;
            }
        }

        if sink.deliver(&batch.body).await.is_err() {
            tracing::warn!("shutting down with the spool not drained; it is written after the restart");
            return;
        }
        if let Some(end) = batch.end
            && let Err(e) = reader.advance(end)
        {
            tracing::error!("spool cursor could not be saved: {e}");
        }
        if sink.deadline.is_some_and(|d| Instant::now() > d) {
            tracing::warn!("shutdown grace over with the spool not drained; it is written after the restart");
            return;
        }
    }
}

impl Sink {
    /// Writes every line of `body` until each is stored, dead-lettered or dropped by the server.
    async fn deliver(&mut self, body: &[u8]) -> Result<(), Abandoned> {
        // Parts still to write, the next on top.
        let mut parts = vec![body.to_vec()];
        while let Some(part) = parts.pop() {
            if self.too_large_at.is_some_and(|limit| part.len() >= limit)
                && let Some((first, second)) = halves(&part)
            {
                parts.push(second.to_vec());
                parts.push(first.to_vec());
                continue;
            }
            self.write_part(part, &mut parts).await?;
        }
        Ok(())
    }

    /// Writes one part, retrying as its answers ask; parts it splits off go onto `parts`.
    async fn write_part(&mut self, mut part: Vec<u8>, parts: &mut Vec<Vec<u8>>) -> Result<(), Abandoned> {
        let mut attempt = 0;
        loop {
            let t0 = Instant::now();
            match self.writer.write(&part).await {
                Answer::Written => {
                    self.status.writing();
                    self.metrics.write_seconds.observe(t0.elapsed().as_secs_f64());
                    self.metrics.points_written.inc_by(line_count(&part));
                    return Ok(());
                }
                Answer::Partial {
                    dropped,
                    cause,
                    detail,
                } => {
                    self.status.writing();
                    let (named, rest) = split_named(&part, &cause);
                    let named_lines = line_count(&named);
                    // A parse error quotes its line; a conflict names a measurement, a field and a
                    // type, which lines stored in another shard (another week) may share.
                    let exact = matches!(cause, DropCause::Unparsable(_)) || named_lines <= dropped;
                    if named_lines > 0
                        && !exact
                        && let Some((first, second)) = halves(&part)
                    {
                        // Write the halves again to learn which lines the server drops: points
                        // it already stored are stored once.
                        parts.push(second.to_vec());
                        parts.push(first.to_vec());
                        return Ok(());
                    }
                    if named_lines > 0 {
                        self.dead_letter(cause.as_str(), &detail, &named);
                        PointsDroppedByDatabase {
                            reason: cause.as_str(),
                            count: named_lines,
                            detail: &detail,
                        }
                        .emit(&self.metrics);
                        if dropped > named_lines {
                            // 1.x names one conflict per answer: write the rest again to learn the
                            // next (points already stored are stored once).
                            part = rest;
                            continue;
                        }
                        self.metrics.points_written.inc_by(line_count(&rest));
                        return Ok(());
                    }
                    let lines = line_count(&part);
                    if matches!(
                        cause,
                        DropCause::FieldTypeConflict { .. } | DropCause::Unparsable(_)
                    ) {
                        // The server named lines this part does not hold as written: keep the part
                        // for a person to look at, since some of it was refused.
                        self.dead_letter(cause.as_str(), &detail, &part);
                    }
                    PointsDroppedByDatabase {
                        reason: cause.as_str(),
                        count: dropped,
                        detail: &detail,
                    }
                    .emit(&self.metrics);
                    self.metrics.points_written.inc_by(lines.saturating_sub(dropped));
                    return Ok(());
                }
                Answer::TooLarge => {
                    self.too_large_at = Some(self.too_large_at.map_or(part.len(), |l| l.min(part.len())));
                    let Some((first, second)) = halves(&part) else {
                        let detail =
                            format!("one line of {} bytes is larger than the server takes", part.len());
                        self.refuse("too_large", &detail, &part);
                        return Ok(());
                    };
                    WriteFailed {
                        reason: "too_large",
                        detail: "413: writing the batch in smaller parts",
                        retry_in: Some(Duration::ZERO),
                    }
                    .emit(&self.metrics);
                    parts.push(second.to_vec());
                    parts.push(first.to_vec());
                    return Ok(());
                }
                Answer::Refused { detail } => {
                    self.refuse("refused", &detail, &part);
                    return Ok(());
                }
                Answer::Halted { reason, detail } => {
                    self.status.halt(reason, &detail);
                    let wait = self.writer.backoff(attempt);
                    attempt += 1;
                    DatabaseHalted {
                        reason,
                        detail: &detail,
                        retry_in: wait,
                    }
                    .emit(&self.metrics);
                    self.wait(wait).await?;
                }
                Answer::Retry {
                    reason,
                    detail,
                    retry_after,
                } => {
                    let wait = retry_after
                        .filter(|w| !w.is_zero())
                        .unwrap_or_else(|| self.writer.backoff(attempt));
                    attempt += 1;
                    WriteFailed {
                        reason,
                        detail: &detail,
                        retry_in: Some(wait),
                    }
                    .emit(&self.metrics);
                    self.wait(wait).await?;
                }
            }
        }
    }

    /// Sleeps `wait` before a retry; during shutdown only while the grace lasts.
    async fn wait(&mut self, wait: Duration) -> Result<(), Abandoned> {
        if self.shutdown.is_shutdown() {
            if self.deadline.is_none_or(|d| Instant::now() + wait > d) {
                return Err(Abandoned);
            }
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.shutdown.recv() => { self.deadline = Some(Instant::now() + self.grace); }
        }
        Ok(())
    }

    /// The server will never take `lines`: counted, dead-lettered with its message.
    fn refuse(&self, reason: &'static str, detail: &str, lines: &[u8]) {
        WriteFailed {
            reason,
            detail,
            retry_in: None,
        }
        .emit(&self.metrics);
        self.dead_letter("write_refused", detail, lines);
    }

    fn dead_letter(&self, reason: &'static str, detail: &str, lines: &[u8]) {
        let mut letters = self
            .dead_letters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = letters
            .record(now_ms(), reason, None, None, detail, lines)
            .and_then(|()| letters.sync())
        {
            tracing::error!("dead-letter file: {e}");
        }
    }
}

fn line_count(body: &[u8]) -> u64 {
    body.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Splits a body of several lines at the line boundary nearest its middle.
fn halves(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let middle = body.len() / 2;
    let after = body.get(middle..)?.iter().position(|&b| b == b'\n')? + middle + 1;
    let cut = if after < body.len() {
        after
    } else {
        // The middle falls in the last line: cut before it instead.
        body.get(..middle)?.iter().rposition(|&b| b == b'\n')? + 1
    };
    Some(body.split_at(cut))
}

/// (the lines `cause` names, the others), each line with its newline.
fn split_named(body: &[u8], cause: &DropCause) -> (Vec<u8>, Vec<u8>) {
    let mut named = Vec::new();
    let mut rest = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if cause.names(text) {
            named.extend_from_slice(line);
        } else {
            rest.extend_from_slice(line);
        }
    }
    (named, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_cut_at_line_boundaries() {
        let body = b"a v=1 1\nbb v=2 2\nccc v=3 3\n";
        let (first, second) = halves(body).unwrap();
        assert_eq!(
            (first, second),
            (&b"a v=1 1\nbb v=2 2\n"[..], &b"ccc v=3 3\n"[..])
        );
        let (first, second) = halves(b"a v=1 1\nlong-long-long v=2 2\n").unwrap();
        assert_eq!(
            (first, second),
            (&b"a v=1 1\n"[..], &b"long-long-long v=2 2\n"[..])
        );
        assert_eq!(halves(b"one v=1 1\n"), None, "one line cannot be split");
    }

    #[test]
    fn only_named_lines_are_split_off() {
        let cause = DropCause::Unparsable(vec!["bad line".into()]);
        let (named, rest) = split_named(b"m v=1 1\nbad line\nm v=2 2\n", &cause);
        assert_eq!(named, b"bad line\n");
        assert_eq!(rest, b"m v=1 1\nm v=2 2\n");
    }
}
