//! The spool's unit tests: records written, torn, corrupted and drained, read back.
use std::fs::OpenOptions;
use std::io::Write;

use super::*;
use crate::model::SequenceMark;

const LIMITS: Limits = Limits {
    max_bytes: 1 << 20,
    segment_bytes: 4096,
};

/// Everything in one segment: records stay at known offsets.
const ONE_SEGMENT: Limits = Limits {
    max_bytes: 1 << 20,
    segment_bytes: 1 << 20,
};

fn mark(seq: u32) -> SequenceMark {
    SequenceMark {
        boot: 9,
        seq,
        anchor_ms: 1_000,
    }
}

fn read_all(reader: &mut SpoolReader) -> Batch {
    let mut batch = Batch::default();
    reader.read(&mut batch, usize::MAX).unwrap();
    batch
}

#[test]
fn committed_records_are_read_back_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
    for i in 0..5 {
        writer
            .append(Some(("n1", mark(i))), format!("m v={i} {i}\n").as_bytes())
            .unwrap();
    }
    assert_eq!(
        read_all(&mut reader).lines,
        0,
        "uncommitted records are invisible"
    );
    for i in 5..200 {
        writer
            .append(Some(("n1", mark(i))), format!("m v={i} {i}\n").as_bytes())
            .unwrap();
    }
    writer.commit().unwrap();
    let batch = read_all(&mut reader);
    assert_eq!(batch.lines, 200);
    let text = String::from_utf8(batch.body).unwrap();
    assert!(text.starts_with("m v=0 0\nm v=1 1\n") && text.ends_with("m v=199 199\n"));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() >= 2,
        "rotated into several segments"
    );
}

#[test]
fn advance_deletes_drained_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
    for i in 0..200 {
        writer.append(None, format!("m v={i} {i}\n").as_bytes()).unwrap();
    }
    writer.commit().unwrap();
    let mut first = Batch::default();
    reader.read(&mut first, 150).unwrap();
    assert_eq!(first.lines, 150);
    reader.advance(first.end.unwrap()).unwrap();
    drop((writer, reader));

    let (_, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
    let rest = read_all(&mut reader);
    assert_eq!(rest.lines, 50);
    assert!(String::from_utf8(rest.body).unwrap().starts_with("m v=150 150\n"));
}

#[test]
fn torn_tail_is_truncated_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = open(dir.path(), ONE_SEGMENT, |_| {}).unwrap();
    for i in 0..10 {
        writer.append(Some(("n1", mark(i))), b"m v=1 1\n").unwrap();
    }
    writer.commit().unwrap();
    drop(writer);
    // A crash in the middle of the eleventh append.
    let path = segment_path(dir.path(), 1);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 2]).unwrap();
    drop(file);

    let mut marks = Vec::new();
    let (mut writer, mut reader) = open(dir.path(), LIMITS, |r| marks.push(r.mark.unwrap().1.seq)).unwrap();
    assert_eq!(marks, (0..10).collect::<Vec<_>>());
    writer.append(Some(("n1", mark(10))), b"m v=2 2\n").unwrap();
    writer.commit().unwrap();
    assert_eq!(read_all(&mut reader).lines, 11);
}

#[test]
fn a_flipped_bit_ends_the_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = open(dir.path(), LIMITS, |_| {}).unwrap();
    writer.append(None, b"a v=1 1\n").unwrap();
    writer.append(None, b"b v=1 1\n").unwrap();
    writer.commit().unwrap();
    drop(writer);
    let path = segment_path(dir.path(), 1);
    let mut data = std::fs::read(&path).unwrap();
    let last = data.len() - 3;
    data[last] ^= 1;
    std::fs::write(&path, data).unwrap();
    let (_, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
    assert_eq!(read_all(&mut reader).body, b"a v=1 1\n");
}

#[test]
fn full_spool_refuses_appends_until_drained() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 3000,
        segment_bytes: 1000,
    };
    let (mut writer, mut reader) = open(dir.path(), limits, |_| {}).unwrap();
    let line = [b'x'; 200];
    let mut appended = 0;
    while writer.append(None, &line).is_ok() {
        appended += 1;
    }
    assert!(matches!(writer.append(None, &line), Err(SpoolError::Full { .. })));
    writer.commit().unwrap();
    let mut batch = Batch::default();
    reader.read(&mut batch, usize::MAX).unwrap();
    reader.advance(batch.end.unwrap()).unwrap();
    writer.append(None, &line).unwrap();
    assert!(appended >= 10);
}

fn append_lines(writer: &mut SpoolWriter, range: std::ops::Range<u32>) {
    for i in range {
        writer
            .append(Some(("n1", mark(i))), format!("m v={i} {i}\n").as_bytes())
            .unwrap();
    }
}

#[test]
fn a_disk_full_halfway_through_a_commit_leaves_no_torn_record_before_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
    append_lines(&mut writer, 0..3);
    writer.commit().unwrap();
    append_lines(&mut writer, 3..6);
    // The disk fills in the middle of the second record of this commit.
    writer.disk_full_after = Some(40);
    let error = writer.commit().unwrap_err();
    assert!(error.is_full(), "ENOSPC is a full spool: {error}");
    assert_eq!(
        read_all(&mut reader).lines,
        3,
        "nothing of the failed commit is visible"
    );
    // Space comes back: the same records are written again at the same place, then new ones.
    writer.commit().unwrap();
    append_lines(&mut writer, 6..8);
    writer.commit().unwrap();
    drop((writer, reader));

    let mut replayed = Vec::new();
    let (_, mut reader) = open(dir.path(), LIMITS, |r| replayed.push(r.mark.unwrap().1.seq)).unwrap();
    assert_eq!(replayed, (0..8).collect::<Vec<_>>());
    assert_eq!(read_all(&mut reader).lines, 8);
}

#[test]
fn an_unreadable_record_never_costs_the_acknowledged_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = open(dir.path(), ONE_SEGMENT, |_| {}).unwrap();
    append_lines(&mut writer, 0..5);
    writer.commit().unwrap();
    drop(writer);
    // Damage the middle of record 2 (each record is 8 + 1 + 1 + 2 + 16 + 10 bytes).
    let path = segment_path(dir.path(), 1);
    let mut data = std::fs::read(&path).unwrap();
    let record = data.len() / 5;
    data[2 * record + 20] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let mut replayed = Vec::new();
    let (mut writer, mut reader) =
        open(dir.path(), LIMITS, |r| replayed.push(r.mark.unwrap().1.seq)).unwrap();
    assert_eq!(replayed, vec![0, 1, 3, 4]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        data.len(),
        "nothing truncated"
    );
    append_lines(&mut writer, 5..6);
    writer.commit().unwrap();
    let text = String::from_utf8(read_all(&mut reader).body).unwrap();
    assert_eq!(text, "m v=0 0\nm v=1 1\nm v=3 3\nm v=4 4\nm v=5 5\n");
}

#[test]
fn a_drained_single_segment_is_sealed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 64 << 20,
        segment_bytes: 32 << 20,
    };
    let (mut writer, mut reader) = open(dir.path(), limits, |_| {}).unwrap();
    let line = [b'x'; 1000];
    for _ in 0..1100 {
        writer.append(None, &line).unwrap();
    }
    writer.commit().unwrap();
    let batch = read_all(&mut reader);
    reader.advance(batch.end.unwrap()).unwrap();
    assert!(
        segment_path(dir.path(), 1).exists(),
        "the active segment stays until sealed"
    );
    // Ingest, idle, finds it drained and starts a new segment; the reader then deletes the old one.
    writer.release_drained().unwrap();
    let batch = read_all(&mut reader);
    assert_eq!(batch.lines, 0);
    reader.advance(batch.end.unwrap()).unwrap();
    assert!(!segment_path(dir.path(), 1).exists());
    assert_eq!(writer.bytes(), 0);
}

#[test]
fn a_removed_spool_folder_is_recreated_with_everything_not_yet_drained() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("spool");
    let (mut writer, mut reader) = open(&dir, LIMITS, |_| {}).unwrap();
    append_lines(&mut writer, 0..4);
    writer.commit().unwrap();
    let mut first = Batch::default();
    reader.read(&mut first, 2).unwrap();
    reader.advance(first.end.unwrap()).unwrap();

    std::fs::remove_dir_all(&dir).unwrap();
    // Replaced by a file: the spool cannot be made again, so nothing is committed.
    std::fs::write(&dir, b"not a folder").unwrap();
    append_lines(&mut writer, 4..6);
    assert!(matches!(writer.commit(), Err(SpoolError::Folder { .. })));
    // The reader still drains what was committed, through the files it holds open.
    assert_eq!(read_all(&mut reader).lines, 2);

    std::fs::remove_file(&dir).unwrap();
    writer.commit().unwrap();
    drop((writer, reader));
    let mut replayed = Vec::new();
    let (_, mut reader) = open(&dir, LIMITS, |r| replayed.push(r.mark.unwrap().1.seq)).unwrap();
    assert_eq!(replayed, (0..6).collect::<Vec<_>>());
    let text = String::from_utf8(read_all(&mut reader).body).unwrap();
    assert!(text.starts_with("m v=2 2\n"), "the cursor came along: {text}");
    assert_eq!(text.lines().count(), 4);
}
