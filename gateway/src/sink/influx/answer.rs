//! What a database's answer to one write means, read from its status, headers and error text.
//!
//! InfluxDB (1.x `/write`, 2.x `/api/v2/write`) keeps every good point of a batch and names what it
//! dropped in a "partial write" error (influxdb `tsdb.PartialWriteError`: `partial write: REASON
//! dropped=N`). The reasons we act on:
//! - `field type conflict: input field "F" on measurement "M" is type T, already exists as type U`:
//!   the lines of `M` whose `F` has type `T` can never be stored; only those are dead-lettered;
//! - `unable to parse 'LINE': why` (one per bad line): those lines are dead-lettered;
//! - `points beyond retention policy`: the points are older than the retention policy keeps; they
//!   are counted, and nothing is retried.
//!
//! 1.x reports a batch's first conflict only, with the batch's total `dropped`: the sink removes the
//! named lines and writes the rest again (rewriting a stored point changes nothing), until the server
//! names no more.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// The longest `Retry-After` honoured: a proxy's mistake must not stop the sink for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What the server did with one write.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Every point stored.
    Written,
    /// Stored except `dropped` points, for `cause`.
    Partial {
        dropped: u64,
        cause: DropCause,
        detail: String,
    },
    /// 413: the body is larger than the server takes; send it in smaller parts.
    TooLarge,
    /// Nothing can be written until an operator acts (wrong credentials, no such database): keep
    /// the spool, try again now and then.
    Halted { reason: &'static str, detail: String },
    /// A passing failure: try again after `retry_after` (the server's) or a back-off.
    Retry {
        reason: &'static str,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// A 4xx that names no line: the server will never take this batch.
    Refused { detail: String },
}

/// Why a partial write dropped points.
#[derive(Debug, Clone, PartialEq)]
pub enum DropCause {
    FieldTypeConflict {
        measurement: String,
        field: String,
        input_type: FieldType,
    },
    /// The lines the server could not parse, as it quoted them.
    Unparsable(Vec<String>),
    BeyondRetention,
    /// A reason we cannot trace to lines (series or tag-value limits).
    Other,
}

impl DropCause {
    /// The `reason` label of `rackwatch_points_dropped_by_database_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DropCause::FieldTypeConflict { .. } => "field_type_conflict",
            DropCause::Unparsable(_) => "unparsable",
            DropCause::BeyondRetention => "beyond_retention",
            DropCause::Other => "other",
        }
    }

    /// Whether the server named this line as one it dropped.
    pub fn names(&self, line: &[u8]) -> bool {
        match self {
            DropCause::FieldTypeConflict {
                measurement,
                field,
                input_type,
            } => {
                let Ok(line) = std::str::from_utf8(line) else {
                    return false;
                };
                let parts = LineParts::split(line);
                parts.measurement == measurement.as_str()
                    && parts
                        .fields()
                        .any(|(key, value)| key == field.as_str() && FieldType::of(value) == *input_type)
            }
            DropCause::Unparsable(quoted) => {
                let line = String::from_utf8_lossy(line);
                quoted.iter().any(|q| *q == line)
            }
            DropCause::BeyondRetention | DropCause::Other => false,
        }
    }
}

/// A line-protocol field type, as InfluxDB names it in a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl FieldType {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "float" => FieldType::Float,
            "integer" => FieldType::Integer,
            "unsigned" => FieldType::Unsigned,
            "string" => FieldType::String,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }

    /// The type of a field value as written in line protocol.
    fn of(value: &str) -> Self {
        if value.starts_with('"') {
            FieldType::String
        } else if matches!(
            value,
            "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
        ) {
            FieldType::Boolean
        } else if value.ends_with('i') {
            FieldType::Integer
        } else if value.ends_with('u') {
            FieldType::Unsigned
        } else {
            FieldType::Float
        }
    }
}

/// A line split at its unescaped, unquoted spaces: `measurement[,tags] fields [timestamp]`.
struct LineParts<'a> {
    measurement: &'a str,
    fields: &'a str,
}

impl<'a> LineParts<'a> {
    fn split(line: &'a str) -> Self {
        let mut sections = split_unescaped(line, b' ');
        let series = sections.next().unwrap_or_default();
        let fields = sections.next().unwrap_or_default();
        let measurement = split_unescaped(series, b',').next().unwrap_or_default();
        LineParts { measurement, fields }
    }

    fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        split_unescaped(self.fields, b',').filter_map(|field| field.split_once('='))
    }
}

/// Splits at `separator` where it is neither escaped by `\` nor inside a `"` string.
fn split_unescaped(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut escaped = false;
    let mut quoted = false;
    let mut cuts = Vec::new();
    for (i, byte) in text.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            b if b == separator && !quoted => {
                cuts.push(text.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push(text.get(start..).unwrap_or_default());
    cuts.into_iter()
}

/// Reads a response's meaning. `body` is the (possibly JSON) error text.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Answer {
    if status.is_success() {
        return Answer::Written;
    }
    let detail = error_text(headers, body);
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => match partial_write(&detail) {
            Some((dropped, cause)) => Answer::Partial {
                dropped,
                cause,
                detail,
            },
            None => Answer::Refused { detail },
        },
        StatusCode::PAYLOAD_TOO_LARGE => Answer::TooLarge,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Halted {
            reason: "unauthorized",
            detail: format!("{status}: {detail}"),
        },
        StatusCode::NOT_FOUND => Answer::Halted {
            reason: "database_not_found",
            detail: format!("{status}: {detail}"),
        },
        StatusCode::TOO_MANY_REQUESTS => Answer::Retry {
            reason: "throttled",
            detail,
            retry_after: retry_after(headers, SystemTime::now()),
        },
        s if s.is_server_error() => Answer::Retry {
            reason: "server_error",
            detail: format!("{status}: {detail}"),
            retry_after: retry_after(headers, SystemTime::now()),
        },
        _ => Answer::Refused {
            detail: format!("{status}: {detail}"),
        },
    }
}

/// The server's error message: the JSON `error` (1.x) or `message` (2.x) of the body, else the body,
/// else 1.x's `X-Influxdb-Error` header.
fn error_text(headers: &HeaderMap, body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            ["error", "message"]
                .iter()
                .find_map(|key| json.get(key)?.as_str().map(str::to_owned))
        });
    let text = from_json
        .or_else(|| (!body.trim().is_empty()).then(|| body.trim().to_owned()))
        .or_else(|| {
            headers
                .get("X-Influxdb-Error")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    // Enough to name the lines of a 5000-line batch's conflicts, bounded for the log.
    text.chars().take(64 * 1024).collect()
}

/// `partial write: REASON dropped=N` -> (N, cause).
fn partial_write(detail: &str) -> Option<(u64, DropCause)> {
    let start = detail.find("partial write:")?;
    let text = detail.get(start + "partial write:".len()..)?.trim();
    let (reason, dropped) = text.rsplit_once("dropped=")?;
    let dropped = dropped.trim().parse().ok()?;
    let reason = reason.trim();
    let cause = if let Some(conflict) = reason.strip_prefix("field type conflict:") {
        field_type_conflict(conflict).unwrap_or(DropCause::Other)
    } else if reason.starts_with("unable to parse '") {
        DropCause::Unparsable(unparsable_lines(reason))
    } else if reason.starts_with("points beyond retention policy") {
        DropCause::BeyondRetention
    } else {
        DropCause::Other
    };
    Some((dropped, cause))
}

/// ` input field "F" on measurement "M" is type T, already exists as type U`
fn field_type_conflict(text: &str) -> Option<DropCause> {
    let rest = text.trim().strip_prefix("input field \"")?;
    let (field, rest) = rest.split_once("\" on measurement \"")?;
    let (measurement, rest) = rest.split_once("\" is type ")?;
    let (input_type, _) = rest.split_once(',')?;
    Some(DropCause::FieldTypeConflict {
        measurement: measurement.to_owned(),
        field: field.to_owned(),
        input_type: FieldType::parse(input_type.trim())?,
    })
}

/// Every `unable to parse 'LINE': why` (newline-separated) -> LINE.
fn unparsable_lines(text: &str) -> Vec<String> {
    text.split('\n')
        .filter_map(|entry| {
            let quoted = entry.trim().strip_prefix("unable to parse '")?;
            let (line, _) = quoted.rsplit_once("': ")?;
            Some(line.to_owned())
        })
        .collect()
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3), capped; a date in the past
/// is no delay.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get("Retry-After")?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let date = httpdate::parse_http_date(value).ok()?;
            date.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        classify(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), body)
    }

    #[test]
    fn field_type_conflict_names_its_lines_only() {
        // As InfluxDB 1.6 answers (influxdb tsdb.PartialWriteError).
        let body = r#"{"error":"partial write: field type conflict: input field \"value\" on measurement \"reading\" is type integer, already exists as type float dropped=2"}"#;
        let Answer::Partial { dropped, cause, .. } = answer(400, body) else {
            panic!("{:?}", answer(400, body));
        };
        assert_eq!(dropped, 2);
        assert!(cause.names(b"reading,node=n1,channel=a\\ b value=3i 1"));
        assert!(
            !cause.names(b"reading,node=n1 value=3.5 1"),
            "a float is no conflict"
        );
        assert!(
            !cause.names(b"readings,node=n1 value=3i 1"),
            "another measurement"
        );
        assert!(!cause.names(b"reading,node=n1 count=3i 1"), "another field");
        assert!(cause.names(b"reading,node=n1 other=\"x y\",value=-4i 1"));
    }

    #[test]
    fn unparsable_lines_are_read_from_the_message() {
        let body = "{\"error\":\"partial write: unable to parse 'garbage line': invalid field format\\nunable to parse 'm value=x 5': invalid boolean dropped=0\"}";
        let Answer::Partial { cause, .. } = answer(400, body) else {
            panic!("{:?}", answer(400, body));
        };
        assert_eq!(
            cause,
            DropCause::Unparsable(vec!["garbage line".into(), "m value=x 5".into()])
        );
        assert!(cause.names(b"m value=x 5"));
    }

    #[test]
    fn retention_drop_is_a_partial_write_without_lines() {
        let body = r#"{"error":"partial write: points beyond retention policy dropped=7"}"#;
        let Answer::Partial { dropped, cause, .. } = answer(400, body) else {
            panic!();
        };
        assert_eq!((dropped, cause.as_str()), (7, "beyond_retention"));
        assert!(!cause.names(b"m v=1 1"));
    }

    #[test]
    fn statuses_map_to_what_the_sink_does() {
        assert_eq!(answer(204, ""), Answer::Written);
        assert_eq!(
            answer(413, "{\"error\":\"Request Entity Too Large\"}"),
            Answer::TooLarge
        );
        assert!(matches!(answer(401, r#"{"error":"authorization failed"}"#),
            Answer::Halted { reason: "unauthorized", detail } if detail.contains("authorization failed")));
        assert!(matches!(
            answer(404, r#"{"error":"database not found: \"rw\""}"#),
            Answer::Halted {
                reason: "database_not_found",
                ..
            }
        ));
        assert!(matches!(
            answer(400, r#"{"error":"bad timestamp"}"#),
            Answer::Refused { .. }
        ));
        assert!(matches!(
            answer(503, ""),
            Answer::Retry {
                reason: "server_error",
                ..
            }
        ));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert("Retry-After", "3".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(5));
        headers.insert("Retry-After", later.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(5)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        headers.insert("Retry-After", past.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert("Retry-After", "86400".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(MAX_RETRY_AFTER));
        headers.insert("Retry-After", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }
}
