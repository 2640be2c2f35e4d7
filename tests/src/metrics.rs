//! The gateway's `/metrics` as numbers: the Prometheus text format read into a map, and histograms.

use std::collections::HashMap;

pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

pub fn metric(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}

/// The cumulative buckets `(le, count)` of a histogram, `+Inf` last.
pub fn histogram(metrics: &HashMap<String, f64>, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// A quantile of a histogram as Prometheus' `histogram_quantile` computes it (linear within the
/// bucket), with the bucket's bounds: the true value is only known to lie between them.
#[derive(Debug, Clone, Copy)]
pub struct BucketQuantile {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<BucketQuantile> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(BucketQuantile {
                    estimate: previous.0,
                    lower: previous.0,
                    upper: le,
                });
            }
            let within = if count > previous.1 {
                (rank - previous.1) / (count - previous.1)
            } else {
                1.0
            };
            return Some(BucketQuantile {
                estimate: previous.0 + (le - previous.0) * within,
                lower: previous.0,
                upper: le,
            });
        }
        previous = (le, count);
    }
    None
}

pub fn delta_histogram(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, count)| {
            let was = before.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
            (le, count - was)
        })
        .collect()
}
