//! The history API: a rack's rollups over a chosen range, for the charts and for reports.
//!
//! `GET /api/racks/{id}/history?range=1h|24h|7d|30d&metric=inlet|outlet|delta_t|power|humidity|dew_point`
//! answers one point per bucket (1-minute buckets up to a day, 1-hour buckets beyond) with the
//! bucket's min, mean, max and sample count; `GET /api/export.csv?rack={id}&range=...` gives every
//! metric of the rack as CSV. Both read the gateway's own history, which survives a restart; when it
//! is unavailable (disk full, a corrupt file moved aside) they answer 503 with the reason.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::model::now_ms;
use crate::schema::read::rack_key;
use crate::sink::history::drain::HistoryStatus;
use crate::sink::history::{Bucket, Resolution};

/// The ranges a chart offers, with the resolution each is drawn at.
const RANGES: [(&str, i64, Resolution); 4] = [
    ("1h", 3_600_000, Resolution::Minute),
    ("24h", 86_400_000, Resolution::Minute),
    ("7d", 7 * 86_400_000, Resolution::Hour),
    ("30d", 30 * 86_400_000, Resolution::Hour),
];

/// The metrics of a rack: the API's name, the history series it reads (`rack/{id}/{series}`), and
/// its unit.
const METRICS: [(&str, &str, &str); 6] = [
    ("inlet", "inlet", "C"),
    ("outlet", "outlet", "C"),
    ("delta_t", "delta_t", "K"),
    ("power", "power", "W"),
    ("humidity", "relative_humidity", "%RH"),
    ("dew_point", "dew_point", "C"),
];

/// The history routes.
pub fn routes(history: HistoryStatus) -> Router {
    Router::new()
        .route("/api/racks/{id}/history", get(rack_history))
        .route("/api/export.csv", get(export_csv))
        .with_state(history)
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    range: Option<String>,
    metric: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    rack: String,
    range: Option<String>,
}

/// `GET /api/racks/{id}/history`.
#[derive(Debug, Serialize)]
pub struct RackHistory {
    pub rack: String,
    pub metric: &'static str,
    pub unit: &'static str,
    pub range: &'static str,
    /// `1m` or `1h`.
    pub resolution: &'static str,
    pub points: Vec<Point>,
}

/// One bucket.
#[derive(Debug, Serialize)]
pub struct Point {
    /// The bucket's start, Unix milliseconds.
    pub t: i64,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub count: u64,
}

impl From<&Bucket> for Point {
    fn from(bucket: &Bucket) -> Self {
        Point {
            t: bucket.start_ms,
            min: bucket.min,
            mean: bucket.mean(),
            max: bucket.max,
            count: bucket.count,
        }
    }
}

/// A request the API cannot answer, and how.
#[derive(Debug)]
enum Refusal {
    BadQuery(String),
    Unavailable(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            Refusal::BadQuery(error) => (StatusCode::BAD_REQUEST, error),
            Refusal::Unavailable(error) => (StatusCode::SERVICE_UNAVAILABLE, error),
        };
        (status, Json(serde_json::json!({ "error": error }))).into_response()
    }
}

fn range(name: Option<&str>) -> Result<(&'static str, i64, Resolution), Refusal> {
    let name = name.unwrap_or("1h");
    RANGES.into_iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        let known: Vec<&str> = RANGES.iter().map(|(n, _, _)| *n).collect();
        Refusal::BadQuery(format!("range {name:?} is not one of {}", known.join(", ")))
    })
}

fn metric(name: Option<&str>) -> Result<(&'static str, &'static str, &'static str), Refusal> {
    let name = name.unwrap_or("inlet");
    METRICS.into_iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        let known: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
        Refusal::BadQuery(format!("metric {name:?} is not one of {}", known.join(", ")))
    })
}

fn resolution_name(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Minute => "1m",
        Resolution::Hour => "1h",
    }
}

/// The rack's buckets of one series over `span` up to now.
fn buckets(
    history: &HistoryStatus,
    rack: &str,
    series: &str,
    span: i64,
    resolution: Resolution,
) -> Result<Vec<Bucket>, Refusal> {
    let now = now_ms();
    let key = rack_key(rack, series);
    if key.len() > crate::sink::history::MAX_KEY_LEN {
        return Err(Refusal::BadQuery(format!("rack id {rack:?} is too long")));
    }
    // The bucket that holds `now - span` is included whole, and the one still filling.
    history
        .range(&key, now - span - resolution.width_ms(), now + 1, resolution)
        .map_err(Refusal::Unavailable)
}

async fn rack_history(
    State(history): State<HistoryStatus>,
    Path(rack): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<RackHistory>, Refusal> {
    let (range, span, resolution) = range(query.range.as_deref())?;
    let (metric, series, unit) = metric(query.metric.as_deref())?;
    let points = buckets(&history, &rack, series, span, resolution)?
        .iter()
        .map(Point::from)
        .collect();
    Ok(Json(RackHistory {
        rack,
        metric,
        unit,
        range,
        resolution: resolution_name(resolution),
        points,
    }))
}

async fn export_csv(
    State(history): State<HistoryStatus>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, Refusal> {
    let (range, span, resolution) = range(query.range.as_deref())?;
    let mut csv = String::from("time,metric,unit,min,mean,max,count\n");
    for (metric, series, unit) in METRICS {
        for bucket in buckets(&history, &query.rack, series, span, resolution)? {
            let time =
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(bucket.start_ms.max(0) as u64);
            csv.push_str(&format!(
                "{},{metric},{unit},{},{},{},{}\n",
                humantime::format_rfc3339_seconds(time),
                bucket.min,
                bucket.mean(),
                bucket.max,
                bucket.count
            ));
        }
    }
    let file = format!(
        "attachment; filename=\"rack-{}-{range}.csv\"",
        query.rack.replace('"', "")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, file),
        ],
        csv,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ranges_and_metrics_are_refused_naming_the_known_ones() {
        let Err(Refusal::BadQuery(error)) = range(Some("2w")) else {
            panic!("2w is no range")
        };
        assert_eq!(error, "range \"2w\" is not one of 1h, 24h, 7d, 30d");
        let Err(Refusal::BadQuery(error)) = metric(Some("temperature")) else {
            panic!("temperature is no rack metric")
        };
        assert!(
            error.contains("inlet, outlet, delta_t, power, humidity, dew_point"),
            "{error}"
        );
        assert_eq!(range(None).unwrap().0, "1h");
        assert_eq!(metric(Some("humidity")).unwrap().1, "relative_humidity");
    }
}
