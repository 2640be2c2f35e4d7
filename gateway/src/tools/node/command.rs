//! `rackwatch node command --node r01-n1 identify|reboot|set-interval 5s|set-fan 0 80%`: asks the
//! running gateway (`POST /api/nodes/{id}/commands`, gateway `command`) to send a command to a node
//! over its broker connection, and prints the node's ack. The API token comes from an environment
//! variable or a file, never from the command line (where `ps` would show it).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::view::command::CommandAnswer;

/// `rackwatch node command`
#[derive(Debug, Clone, Args)]
pub struct CommandOptions {
    /// The node's id.
    #[arg(long)]
    pub node: String,
    /// The gateway's HTTP address.
    #[arg(long, env = "RACKWATCH_GATEWAY", default_value = "http://127.0.0.1:9180")]
    pub gateway: String,
    /// Environment variable holding the gateway's API token (`http.token`).
    #[arg(long, default_value = "RACKWATCH_API_TOKEN")]
    pub token_env: String,
    /// File holding the API token (instead of `--token-env`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How long to wait for the node's ack (`10s`).
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    #[command(subcommand)]
    pub action: NodeAction,
}

/// What the node is told to do.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum NodeAction {
    /// Blink the node's identify LED, so a technician finds it in the rack.
    Identify {
        #[arg(long, default_value_t = 30)]
        seconds: u16,
    },
    /// Restart the node.
    Reboot,
    /// Sample every INTERVAL (`5s`, `500ms`).
    SetInterval { interval: String },
    /// Drive fan FAN (0-based) at TARGET: a duty (`80%`) or a speed (`4000rpm`).
    SetFan { fan: u8, target: String },
}

impl NodeAction {
    /// The request body of `POST /api/nodes/{id}/commands`.
    pub fn body(&self, timeout: &str) -> Result<Value, String> {
        let mut body = match self {
            NodeAction::Identify { seconds } => json!({"action": "identify", "seconds": seconds}),
            NodeAction::Reboot => json!({"action": "reboot"}),
            NodeAction::SetInterval { interval } => json!({"action": "set_interval", "interval": interval}),
            NodeAction::SetFan { fan, target } => {
                let target = target.trim();
                if let Some(duty) = target.strip_suffix('%') {
                    let duty: f32 = duty
                        .trim()
                        .parse()
                        .map_err(|_| format!("fan target `{target}` is not a duty like 80%"))?;
                    json!({"action": "set_fan", "fan": fan, "duty_percent": duty})
                } else if let Some(rpm) = target.to_ascii_lowercase().strip_suffix("rpm") {
                    let rpm: u16 = rpm
                        .trim()
                        .parse()
                        .map_err(|_| format!("fan target `{target}` is not a speed like 4000rpm"))?;
                    json!({"action": "set_fan", "fan": fan, "rpm": rpm})
                } else {
                    return Err(format!(
                        "fan target `{target}`: give a duty (80%) or a speed (4000rpm)"
                    ));
                }
            }
        };
        if let Some(object) = body.as_object_mut() {
            object.insert("timeout".into(), json!(timeout));
        }
        Ok(body)
    }

    fn name(&self) -> &'static str {
        match self {
            NodeAction::Identify { .. } => "identify",
            NodeAction::Reboot => "reboot",
            NodeAction::SetInterval { .. } => "set-interval",
            NodeAction::SetFan { .. } => "set-fan",
        }
    }
}

fn token(options: &CommandOptions) -> Result<String, String> {
    match &options.token_file {
        Some(file) => std::fs::read_to_string(file)
            .map(|t| t.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("token file {}: {e}", file.display())),
        None => std::env::var(&options.token_env).map_err(|_| {
            format!(
                "the API token: set {} (or give --token-env VAR or --token-file PATH)",
                options.token_env
            )
        }),
    }
}

/// Sends the command through the gateway; `Ok` with the line to print once the node acked `ok`.
pub async fn run(options: &CommandOptions) -> Result<String, String> {
    let body = options.action.body(&options.timeout)?;
    let token = token(options)?;
    let waited = crate::config::parse_duration(&options.timeout).map_err(|e| format!("--timeout: {e}"))?;
    let url = format!(
        "{}/api/nodes/{}/commands",
        options.gateway.trim_end_matches('/'),
        options.node
    );
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .timeout(waited + Duration::from_secs(5))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        let reason = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err(format!("the gateway answered {status}: {reason}"));
    }
    let answer: CommandAnswer = serde_json::from_str(&text)
        .map_err(|e| format!("unexpected answer from the gateway ({e}): {text}"))?;
    let line = format!(
        "node {}: {} acked {} in {} ms (command {}){}",
        answer.node,
        options.action.name(),
        answer.result,
        answer.took_ms,
        answer.id,
        answer.detail.map(|d| format!(": {d}")).unwrap_or_default()
    );
    if answer.result == "ok" {
        Ok(line)
    } else {
        Err(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_targets_are_a_duty_or_a_speed() {
        let fan = |target: &str| {
            NodeAction::SetFan {
                fan: 0,
                target: target.into(),
            }
            .body("10s")
        };
        assert_eq!(
            fan("80%").unwrap(),
            json!({"action": "set_fan", "fan": 0, "duty_percent": 80.0, "timeout": "10s"})
        );
        assert_eq!(fan("4000rpm").unwrap()["rpm"], 4000);
        assert!(fan("fast").unwrap_err().contains("80%"));
    }
}
