//! Webhook notifications: one HTTP POST per notification, in the rackwatch JSON shape or the shape
//! Prometheus Alertmanager's `POST /api/v2/alerts` takes (when and how often: `delivery`). One attempt here; the engine decides when
//! to try again (with back-off) and remembers what each receiver was told.

use std::time::Duration;

use rackwatch_protocols::Alert;
use serde_json::{Value, json};

use super::delivery::{DeliveryJob, DeliveryResult};
use crate::config::ConfigError;
use crate::config::{WebhookConfig, WebhookFormat};
use crate::secret::Secret;

/// A receiver ready to post to. Its `Debug` shows the token as `Secret(***)`.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    pub format: WebhookFormat,
    token: Option<Secret>,
    timeout: Duration,
}

/// What every notification of this gateway carries besides the alert.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The `site` label: two gateways' alerts must not merge in one Alertmanager.
    pub site: String,
    /// `http.public_url`: the dashboard, which `generatorURL` points into.
    pub public_url: Option<String>,
}

impl Webhook {
    /// Reads the token now, so a missing secret fails at start.
    pub fn from_config(config: &WebhookConfig, key: &str) -> Result<Self, ConfigError> {
        Ok(Webhook {
            name: config.name.to_string(),
            url: config.url.clone(),
            format: config.format,
            token: config
                .token
                .as_ref()
                .map(|t| t.read(&format!("{key}.token")).map(Secret::new))
                .transpose()?,
            timeout: config.timeout,
        })
    }

    /// Posts one notification.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        job: &DeliveryJob,
        context: &Context,
    ) -> Result<DeliveryResult, String> {
        let body = match self.format {
            WebhookFormat::Json => json_body(job),
            WebhookFormat::Alertmanager => alertmanager_body(job, context),
        };
        let mut request = client.post(&self.url).timeout(self.timeout).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(DeliveryResult::Delivered),
            Ok(response) => {
                let status = response.status();
                let retry = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                if retry {
                    Err(format!("HTTP {status}"))
                } else {
                    Ok(DeliveryResult::Refused)
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The rackwatch shape: the alert message of protocols, and how it is being sent.
pub fn json_body(job: &DeliveryJob) -> Value {
    json!({
        "alert": job.alert,
        "repeat": job.repeat,
        "acknowledged": job.acknowledged,
        "level": job.level,
    })
}

/// Alertmanager API v2 `postableAlerts`. The labels identify the alert (and are the names of
/// rackwatch's silence matchers, so a silence can be written the same way in either); `endsAt` lies a
/// few re-send intervals ahead while it fires, and is the time it resolved on the resolve.
pub fn alertmanager_body(job: &DeliveryJob, context: &Context) -> Value {
    let alert = &job.alert;
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(alert.rule.as_str()));
    labels.insert("rule".into(), json!(alert.rule.as_str()));
    labels.insert("key".into(), json!(alert.key.as_str()));
    labels.insert("severity".into(), json!(alert.severity.as_str()));
    labels.insert("site".into(), json!(context.site));
    for (name, value) in [
        ("room", alert.room.as_deref()),
        ("row", alert.row.as_deref()),
        ("rack", alert.rack.as_deref()),
        ("node", alert.node.as_deref()),
        ("channel", alert.channel.as_deref()),
    ] {
        if let Some(value) = value {
            labels.insert(name.into(), json!(value));
        }
    }
    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), json!(alert.summary.as_str()));
    annotations.insert("description".into(), json!(job.description));
    if let Some(value) = alert.value {
        annotations.insert("value".into(), json!(value.to_string()));
    }
    if let Some(threshold) = alert.threshold {
        annotations.insert("threshold".into(), json!(threshold.to_string()));
    }
    let mut entry = json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(job.firing_since_ms),
        "generatorURL": generator_url(alert, context),
    });
    if let (Some(ends_at), Some(object)) = (job.ends_at_ms, entry.as_object_mut()) {
        object.insert("endsAt".into(), json!(rfc3339(ends_at)));
    }
    json!([entry])
}

/// The alert's rack in the dashboard (`{public_url}/?rack=hall-a.r01.a03`, the dashboard's rack id),
/// or the dashboard itself for an alert wider than a rack; empty without `http.public_url`.
fn generator_url(alert: &Alert, context: &Context) -> String {
    let Some(base) = &context.public_url else {
        return String::new();
    };
    let base = base.trim_end_matches('/');
    match &alert.rack {
        Some(rack) => {
            let position = crate::model::Position {
                room: alert.room.clone(),
                row: alert.row.clone(),
                rack: Some(rack.clone()),
            };
            format!("{base}/?rack={}", crate::view::dashboard::rack_id(&position))
        }
        None => format!("{base}/"),
    }
}

/// Unix milliseconds as RFC 3339 UTC (`2026-11-24T20:05:00.000Z`), by the civil-from-days
/// algorithm of Howard Hinnant's `chrono`-compatible date algorithms.
pub fn rfc3339(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_webhook_never_shows_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "hook-secret-42").unwrap();
        let config: WebhookConfig = toml::from_str(&format!(
            "name = \"pager\"\nurl = \"http://127.0.0.1:1/\"\ntoken = {{ file = \"{}\" }}",
            token.display()
        ))
        .unwrap();
        let hook = Webhook::from_config(&config, "alerts.webhooks[0]").unwrap();
        let shown = format!("{hook:?}");
        assert!(
            !shown.contains("hook-secret-42") && shown.contains("Secret(***)"),
            "{shown}"
        );
    }

    #[test]
    fn alertmanager_alerts_carry_site_labels_ends_at_and_a_link_to_the_rack() {
        use rackwatch_protocols::{AlertState, Label, Severity};
        let label = |s: &str| Some(Label::new(s).unwrap());
        let job = DeliveryJob {
            receiver: 0,
            key: "inlet_hot.hall-a.r01.a03".into(),
            state: AlertState::Firing,
            episode: 1,
            repeat: true,
            alert: Alert {
                version: 1,
                key: "inlet_hot.hall-a.r01.a03".try_into().unwrap(),
                rule: Label::new("inlet_hot").unwrap(),
                severity: Severity::Critical,
                state: AlertState::Firing,
                room: label("hall-a"),
                row: label("r01"),
                rack: label("a03"),
                node: None,
                channel: None,
                value: Some(33.1),
                threshold: Some(32.0),
                since_ms: 0,
                summary: "inlet_hot firing: rack a03".try_into().unwrap(),
            },
            acknowledged: true,
            firing_since_ms: 0,
            level: 1,
            ends_at_ms: Some(240_000),
            description: "inlet_hot firing: rack a03, row r01".into(),
        };
        let context = Context {
            site: "fra1".into(),
            public_url: Some("https://rackwatch.fra1.example/".into()),
        };
        let body = alertmanager_body(&job, &context);
        let alert = &body[0];
        assert_eq!(
            alert["labels"],
            serde_json::json!({"alertname": "inlet_hot", "rule": "inlet_hot", "key": "inlet_hot.hall-a.r01.a03",
                "severity": "critical", "site": "fra1", "room": "hall-a", "row": "r01", "rack": "a03"})
        );
        assert_eq!(alert["endsAt"], "1970-01-01T00:04:00.000Z");
        assert_eq!(
            alert["annotations"]["description"],
            "inlet_hot firing: rack a03, row r01"
        );
        assert_eq!(
            alert["generatorURL"],
            "https://rackwatch.fra1.example/?rack=hall-a.r01.a03"
        );
        let without_url = alertmanager_body(&job, &Context::default());
        assert_eq!(without_url[0]["generatorURL"], "");
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_550_700_123), "2026-11-24T20:05:00.123Z");
    }
}
