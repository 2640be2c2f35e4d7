use super::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z, a round hour.
const T0: i64 = 1_767_225_600_000;

fn limits(max_mb: u64) -> HistoryLimits {
    HistoryLimits {
        max_mb,
        ..HistoryLimits::default()
    }
}

fn open(dir: &Path) -> History {
    History::open(dir, limits(64)).unwrap()
}

/// The minute buckets of `key` in `[T0, T0 + 1 min)`.
fn first_minute(history: &History, key: &str) -> Vec<Bucket> {
    history.range(key, T0, T0 + MINUTE, Resolution::Minute).unwrap()
}

fn samples<'a>(key: &'a str, points: &[(i64, f64)]) -> Vec<Sample<'a>> {
    points
        .iter()
        .map(|&(ts_ms, value)| Sample { key, ts_ms, value })
        .collect()
}

#[test]
fn a_minute_bucket_holds_exact_min_mean_max_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    let points = [
        (T0 + 1_000, 22.5),
        (T0 + 20_000, 24.0),
        (T0 + 40_000, 21.0),
        (T0 + 59_999, 26.5),
    ];
    let outcome = history.record_batch(&samples("r07/inlet", &points)).unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            recorded: 4,
            not_finite: 0
        }
    );

    let buckets = first_minute(&history, "r07/inlet");
    assert_eq!(buckets.len(), 1);
    let bucket = buckets[0];
    assert_eq!(
        (bucket.start_ms, bucket.min, bucket.max, bucket.count),
        (T0, 21.0, 26.5, 4)
    );
    assert_eq!(bucket.mean(), 23.5);
}

#[test]
fn samples_arriving_in_separate_batches_merge_into_one_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    history.record("r07/inlet", T0 + 5_000, 20.0).unwrap();
    history.record("r07/inlet", T0 + 6_000, 30.0).unwrap();
    let bucket = first_minute(&history, "r07/inlet")[0];
    assert_eq!(
        (bucket.min, bucket.max, bucket.mean(), bucket.count),
        (20.0, 30.0, 25.0, 2)
    );
}

#[test]
fn a_sample_exactly_on_a_minute_boundary_belongs_to_the_later_minute() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    let points = [
        (T0 + MINUTE - 1, 10.0),
        (T0 + MINUTE, 40.0),
        (T0 + 2 * MINUTE, 70.0),
    ];
    history.record_batch(&samples("r07/inlet", &points)).unwrap();

    let all = history
        .range("r07/inlet", T0, T0 + 3 * MINUTE, Resolution::Minute)
        .unwrap();
    let by_start: Vec<(i64, f64, u64)> = all.iter().map(|b| (b.start_ms - T0, b.max, b.count)).collect();
    assert_eq!(
        by_start,
        vec![(0, 10.0, 1), (MINUTE, 40.0, 1), (2 * MINUTE, 70.0, 1)]
    );

    // The range is [from, to): a query ending on the boundary excludes the bucket that starts there.
    let first_two = history
        .range("r07/inlet", T0, T0 + 2 * MINUTE, Resolution::Minute)
        .unwrap();
    assert_eq!(
        first_two.iter().map(|b| b.start_ms - T0).collect::<Vec<_>>(),
        vec![0, MINUTE]
    );
    let from_boundary = history
        .range("r07/inlet", T0 + MINUTE, T0 + 3 * MINUTE, Resolution::Minute)
        .unwrap();
    assert_eq!(
        from_boundary.iter().map(|b| b.start_ms - T0).collect::<Vec<_>>(),
        vec![MINUTE, 2 * MINUTE]
    );
}

#[test]
fn an_hour_bucket_equals_the_merge_of_its_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    // Quarter degrees are exact in binary, so sums compare exactly whatever the addition order.
    let points: Vec<(i64, f64)> = (0..180)
        .map(|i| (T0 + i * 20_000, 18.0 + f64::from((i * 7 % 40) as u8) * 0.25))
        .collect();
    history.record_batch(&samples("r07/inlet", &points)).unwrap();

    let minutes = history
        .range("r07/inlet", T0, T0 + HOUR, Resolution::Minute)
        .unwrap();
    assert_eq!(minutes.len(), 60);
    let mut merged = minutes[0];
    minutes[1..].iter().for_each(|m| merged.merge(m));

    let hours = history
        .range("r07/inlet", T0, T0 + HOUR, Resolution::Hour)
        .unwrap();
    assert_eq!(hours, vec![merged]);
    assert_eq!(merged.count, 180);
}

#[test]
fn series_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    let batch = [
        Sample {
            key: "r07/inlet",
            ts_ms: T0,
            value: 22.0,
        },
        Sample {
            key: "r08/inlet",
            ts_ms: T0,
            value: 31.0,
        },
        Sample {
            key: "r07/inlet",
            ts_ms: T0 + 1,
            value: 24.0,
        },
    ];
    history.record_batch(&batch).unwrap();
    let r07 = first_minute(&history, "r07/inlet");
    let r08 = first_minute(&history, "r08/inlet");
    assert_eq!((r07[0].count, r07[0].max), (2, 24.0));
    assert_eq!((r08[0].count, r08[0].max), (1, 31.0));
    assert!(first_minute(&history, "r09/inlet").is_empty());
}

#[test]
fn non_finite_values_are_counted_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    let points = [(T0, 22.0), (T0 + 1, f64::NAN), (T0 + 2, f64::INFINITY)];
    let outcome = history.record_batch(&samples("r07/inlet", &points)).unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            recorded: 1,
            not_finite: 2
        }
    );
    let bucket = first_minute(&history, "r07/inlet")[0];
    assert_eq!((bucket.min, bucket.max, bucket.count), (22.0, 22.0, 1));
}

#[test]
fn a_key_that_is_not_compact_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    for key in ["", "rack 7", "r07/inlet\n", &"x".repeat(MAX_KEY_LEN + 1)] {
        assert!(
            matches!(history.record(key, T0, 1.0), Err(HistoryError::InvalidKey(_))),
            "{key:?}"
        );
    }
}

#[test]
fn retention_drops_minutes_after_30_days_and_hours_after_13_months() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = open(dir.path());
    let day = 24 * HOUR;
    let points = [(T0, 1.0), (T0 + 20 * day, 2.0), (T0 + 100 * day, 3.0)];
    history.record_batch(&samples("r07/inlet", &points)).unwrap();

    // 40 days after T0: the T0 minute is gone, its hour and the later minutes stay.
    history.prune(T0 + 40 * day).unwrap();
    let minutes = history
        .range("r07/inlet", T0, T0 + 200 * day, Resolution::Minute)
        .unwrap();
    assert_eq!(minutes.iter().map(|b| b.max).collect::<Vec<_>>(), vec![2.0, 3.0]);
    let hours = history
        .range("r07/inlet", T0, T0 + 200 * day, Resolution::Hour)
        .unwrap();
    assert_eq!(
        hours.iter().map(|b| b.max).collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0]
    );

    // 400 days after T0: the T0 hour is past 395 days, the rest of the hours are not.
    history.prune(T0 + 400 * day).unwrap();
    let hours = history
        .range("r07/inlet", T0, T0 + 200 * day, Resolution::Hour)
        .unwrap();
    assert_eq!(hours.iter().map(|b| b.max).collect::<Vec<_>>(), vec![2.0, 3.0]);
    assert!(
        history
            .range("r07/inlet", T0, T0 + 200 * day, Resolution::Minute)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn limits_read_humantime_strings() {
    let limits: HistoryLimits =
        toml::from_str("minute_retention = \"7d\"\nhour_retention = \"90d\"\nmax_mb = 64").unwrap();
    assert_eq!(limits.minute_retention, Duration::from_secs(7 * 86_400));
    assert_eq!(limits.hour_retention, Duration::from_secs(90 * 86_400));
    assert_eq!(limits.max_mb, 64);
    assert_eq!(
        toml::from_str::<HistoryLimits>("").unwrap(),
        HistoryLimits::default()
    );
    assert!(toml::from_str::<HistoryLimits>("minute_retention = \"30\"").is_err());
}

#[test]
fn committed_data_survives_the_store_being_dropped_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut history = open(dir.path());
        history
            .record_batch(&samples("r07/inlet", &[(T0, 22.0), (T0 + MINUTE, 23.0)]))
            .unwrap();
    }
    let history = open(dir.path());
    let minutes = history
        .range("r07/inlet", T0, T0 + HOUR, Resolution::Minute)
        .unwrap();
    assert_eq!(
        minutes.iter().map(|b| b.max).collect::<Vec<_>>(),
        vec![22.0, 23.0]
    );
}

#[test]
fn an_empty_or_deleted_file_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"").unwrap();
    let mut history = open(dir.path());
    history.record("r07/inlet", T0, 22.0).unwrap();
    drop(history);

    std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
    let history = open(dir.path());
    assert!(first_minute(&history, "r07/inlet").is_empty());

    let nested = dir.path().join("not/yet/there");
    assert!(History::open(&nested, limits(64)).is_ok());
}

#[test]
fn a_file_that_is_not_a_database_is_moved_aside_with_an_error_then_a_fresh_store_starts() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = damaged_store(dir.path(), 0..4096);
    expect_moved_aside_then_fresh(dir.path(), &bytes);
}

#[test]
fn a_database_with_a_damaged_header_is_moved_aside_or_repaired_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // Keep the magic number, scramble both commit slots behind it.
    damaged_store(dir.path(), 16..1040);
    match History::open(dir.path(), limits(64)) {
        // redb recovered from the other commit slot: what it returns must still be sound.
        Ok(history) => {
            eprintln!("redb recovered the damaged header");
            let kept = history
                .range("r07/inlet", T0, T0 + MINUTE, Resolution::Minute)
                .unwrap_or_default();
            assert!(kept.iter().all(|b| b.max == 22.0 && b.count == 1), "{kept:?}");
        }
        Err(HistoryError::Corrupt { reason, .. }) => {
            eprintln!("damaged header moved aside: {reason}");
            let mut history = open(dir.path());
            history.record("r07/inlet", T0, 25.0).unwrap();
        }
        Err(other) => panic!("expected a repair or Corrupt, got {other:?}"),
    }
}

/// 20 °C in every series of `keys` at each of `minutes` after T0.
fn every_series_at<'a>(keys: &'a [String], minutes: &[i64]) -> Vec<Sample<'a>> {
    minutes
        .iter()
        .flat_map(|&m| {
            keys.iter().map(move |key| Sample {
                key,
                ts_ms: T0 + m * MINUTE,
                value: 20.0,
            })
        })
        .collect()
}

/// A store holding one sample (22 °C at T0 in `r07/inlet`), then `damaged` bytes of its file
/// overwritten; returns the damaged file's bytes.
fn damaged_store(dir: &Path, damaged: std::ops::Range<usize>) -> Vec<u8> {
    open(dir).record("r07/inlet", T0, 22.0).unwrap();
    let path = dir.join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[damaged].iter_mut().for_each(|b| *b = 0xA5);
    std::fs::write(&path, &bytes).unwrap();
    bytes
}

fn expect_moved_aside_then_fresh(dir: &Path, bytes: &[u8]) {
    let path = dir.join(FILE_NAME);

    let error = History::open(dir, limits(64)).unwrap_err();
    let HistoryError::Corrupt { moved_to, .. } = &error else {
        panic!("expected Corrupt, got {error:?}")
    };
    assert!(error.to_string().starts_with("history unavailable"), "{error}");
    assert_eq!(
        std::fs::read(moved_to).unwrap(),
        bytes,
        "the unreadable file is kept for a post-mortem"
    );
    assert!(!path.exists());

    let mut history = open(dir);
    assert!(first_minute(&history, "r07/inlet").is_empty());
    history.record("r07/inlet", T0, 25.0).unwrap();
    assert_eq!(first_minute(&history, "r07/inlet")[0].max, 25.0);
}

#[test]
fn a_bound_below_one_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        History::open(dir.path(), limits(0)),
        Err(HistoryError::BoundTooSmall(0))
    ));
}

#[test]
fn the_file_stays_under_max_mb_with_many_series_and_the_newest_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::open(dir.path(), limits(1)).unwrap();
    let keys: Vec<String> = (0..40).map(|rack| format!("r{rack:02}/inlet")).collect();
    // 40 series x 12 h of minutes: about 29k minute buckets, several times what 1 MiB holds.
    let minutes = 12 * 60;
    let mut largest = 0;
    for chunk in (0..minutes).collect::<Vec<i64>>().chunks(60) {
        history.record_batch(&every_series_at(&keys, chunk)).unwrap();
        largest = largest.max(history.file_len());
    }
    history.prune(T0 + minutes * MINUTE).unwrap();
    let bound = 1024 * 1024;
    assert!(
        history.file_len() <= bound,
        "file is {} bytes after prune",
        history.file_len()
    );
    // Every batch that takes the file past the bound cuts it back before returning.
    assert!(largest <= bound, "file reached {largest} bytes");
    eprintln!("largest file {largest} bytes, after prune {}", history.file_len());

    let newest = T0 + (minutes - 1) * MINUTE;
    for key in &keys {
        let last = history
            .range(key, newest, newest + MINUTE, Resolution::Minute)
            .unwrap();
        assert_eq!(last.len(), 1, "{key} lost its newest minute");
    }
    let oldest = first_minute(&history, "r00/inlet");
    assert!(oldest.is_empty(), "the oldest minutes go first");
    let kept = history
        .range("r00/inlet", T0, T0 + minutes * MINUTE, Resolution::Minute)
        .unwrap();
    assert!(
        kept.len() < 720 && kept.len() >= 60,
        "{} of 720 minutes kept",
        kept.len()
    );
    eprintln!("{} of 720 minutes kept per series", kept.len());
    let hours = history
        .range("r00/inlet", T0, T0 + minutes * MINUTE, Resolution::Hour)
        .unwrap();
    assert_eq!(hours.len(), 12, "hours outlive minutes");
}

#[test]
fn a_database_with_damaged_data_pages_is_moved_aside_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut history = open(dir.path());
        let keys: Vec<String> = (0..10).map(|rack| format!("r{rack:02}/inlet")).collect();
        let minutes: Vec<i64> = (0..300).collect();
        history.record_batch(&every_series_at(&keys, &minutes)).unwrap();
    }
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    // Header intact, every page behind it flipped: redb itself hits an `unreachable!()` here.
    bytes[8192..].iter_mut().for_each(|b| *b ^= 0x5A);
    std::fs::write(&path, &bytes).unwrap();
    expect_moved_aside_then_fresh(dir.path(), &bytes);
}

#[test]
fn a_file_of_the_older_table_per_series_layout_is_moved_aside_and_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        // Layout 1: a table per series and resolution, keyed by bucket start, no `format` table.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<i64, StoredBucket>::new("m/r07/inlet"))
            .unwrap()
            .insert(T0, (22.0, 22.0, 22.0, 1))
            .unwrap();
        txn.commit().unwrap();
    }
    let mut history = open(dir.path());
    assert!(first_minute(&history, "r07/inlet").is_empty(), "a fresh store");
    let moved: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("history.redb.old-format-"))
        .collect();
    assert_eq!(moved.len(), 1, "the old file is kept aside");
    history.record("r07/inlet", T0, 23.0).unwrap();
    drop(history);
    // The new file has the current layout: reopening keeps it.
    let history = open(dir.path());
    assert_eq!(first_minute(&history, "r07/inlet")[0].max, 23.0);
}
