//! Operators command nodes through the gateway: `POST /api/nodes/{id}/commands` (and `rackwatch node
//! command`, which calls it) publishes a protocols `Command` on `rackwatch/v1/{site}/{node}/cmd` over
//! the gateway's broker connection and answers with the node's `Ack` once it arrives on `.../cmd/ack`,
//! or 504 when none came in time.
//!
//! The gateway's own connection for this (client id `{mqtt.client_id}-c`, clean session) subscribes
//! to the acks itself, so an answer reaches the waiting request even while ingest is busy or its
//! spool refuses readings; the broker's ACL for the gateway user already allows both topics
//! (`rackwatch broker-acl`).
//!
//! ```text
//! POST /api/nodes/r01-n1/commands   Authorization: Bearer {http.token}
//! {"action": "set_interval", "interval": "5s"}            → 200 {"id": 7, "node": "r01-n1", "result": "ok", ...}
//! {"action": "identify", "seconds": 30}  {"action": "reboot"}  {"action": "set_fan", "fan": 0, "duty_percent": 80}
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{Ack, AckResult, Command, CommandKind, FanTarget, NodeId, SiteId};
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::{COMMANDS_CLIENT_SUFFIX, Config, ConfigError};
use crate::secret::Secret;
use crate::shutdown::Shutdown;

/// How long a request waits for the node's ack unless it says otherwise.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a request may ask to wait.
const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(120);

/// Commands waiting for their ack: command id → where the ack goes.
type Waiting = Arc<Mutex<HashMap<u32, (NodeId, oneshot::Sender<Ack>)>>>;

/// Sends commands to nodes and waits for their acks.
#[derive(Debug, Clone)]
pub struct NodeCommander {
    client: AsyncClient,
    site: SiteId,
    waiting: Waiting,
    next_id: Arc<Mutex<u32>>,
}

/// Why a command got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the command could not be encoded: {0}")]
    Encode(rackwatch_protocols::EncodeError),
    #[error("the gateway's MQTT client refused the command: {0}")]
    Queue(#[from] rumqttc::ClientError),
    #[error("node {node} did not acknowledge command {id} within {waited:?}")]
    NoAck { node: NodeId, id: u32, waited: Duration },
}

/// The command connection's options: the ingest connection's broker, credentials and TLS, its own id.
pub fn options(config: &crate::config::MqttConfig) -> Result<MqttOptions, ConfigError> {
    let mut options = crate::source::mqtt::options(config)?;
    options.set_client_id(format!("{}{COMMANDS_CLIENT_SUFFIX}", config.client_id));
    options.set_clean_session(true);
    options.set_manual_acks(false);
    Ok(options)
}

impl NodeCommander {
    /// Connects (and reconnects) until shutdown, subscribed to every node's acks at `site`.
    pub fn start(
        options: MqttOptions,
        site: SiteId,
        shutdown: Shutdown,
    ) -> (NodeCommander, tokio::task::JoinHandle<()>) {
        let (client, eventloop) = AsyncClient::new(options, 64);
        let waiting: Waiting = Arc::default();
        let commander = NodeCommander {
            client: client.clone(),
            site: site.clone(),
            waiting: Arc::clone(&waiting),
            // Ids unique across restarts without persisting them: start somewhere random.
            next_id: Arc::new(Mutex::new(rand::random::<u32>() & 0x7fff_ffff)),
        };
        let acks = topic::node_filter(Some(&site), NodeTopic::Ack).to_string();
        let subscriber = client.clone();
        let task = tokio::spawn(crate::source::mqtt_session::drive(
            "command",
            client,
            eventloop,
            shutdown,
            move |packet| match packet {
                Packet::ConnAck(_) => {
                    if let Err(e) = subscriber.try_subscribe(acks.as_str(), QoS::AtLeastOnce) {
                        tracing::warn!("command connection: cannot subscribe to acks: {e}");
                    }
                }
                Packet::Publish(publish) => answer(&waiting, &publish.payload),
                _ => {}
            },
        ));
        (commander, task)
    }

    /// Sends `kind` to `node` and waits up to `timeout` for its ack.
    pub async fn send(
        &self,
        node: &NodeId,
        kind: CommandKind,
        timeout: Duration,
    ) -> Result<Ack, CommandError> {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            *next = next.wrapping_add(1) & 0x7fff_ffff;
            *next
        };
        let command = Command { id, kind };
        let mut payload = vec![0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
        let len = command.encode(&mut payload).map_err(CommandError::Encode)?;
        payload.truncate(len);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, (node.clone(), tx));
        let topic = topic::node(&self.site, node, NodeTopic::Command);
        let published = self
            .client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await;
        if let Err(e) = published {
            self.lock().remove(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(ack)) => Ok(ack),
            _ => {
                self.lock().remove(&id);
                Err(CommandError::NoAck {
                    node: node.clone(),
                    id,
                    waited: timeout,
                })
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (NodeId, oneshot::Sender<Ack>)>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands an ack to the request waiting for it; an ack nobody waits for (another gateway's, a late
/// one, automated cooling's) is left alone.
fn answer(waiting: &Waiting, payload: &[u8]) {
    let Ok(ack) = Ack::decode(payload) else {
        return;
    };
    let mut waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
    if waiting.get(&ack.id).is_some_and(|(node, _)| *node == ack.node)
        && let Some((_, reply)) = waiting.remove(&ack.id)
    {
        let _ = reply.send(ack);
    }
}

/// A command as the API takes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandRequest {
    /// Blink the node's identify LED for `seconds` (default 30).
    Identify {
        #[serde(default)]
        seconds: Option<u16>,
        #[serde(default)]
        timeout: Option<String>,
    },
    Reboot {
        #[serde(default)]
        timeout: Option<String>,
    },
    /// Sample every `interval` (`"5s"`).
    SetInterval {
        interval: String,
        #[serde(default)]
        timeout: Option<String>,
    },
    /// Drive fan `fan` at `duty_percent` or `rpm`.
    SetFan {
        fan: u8,
        #[serde(default)]
        duty_percent: Option<f32>,
        #[serde(default)]
        rpm: Option<u16>,
        #[serde(default)]
        timeout: Option<String>,
    },
}

impl CommandRequest {
    /// The protocol command and how long to wait for its ack, or what is wrong with the request.
    pub fn parse(&self) -> Result<(CommandKind, Duration), String> {
        let duration =
            |text: &str, key: &str| crate::config::parse_duration(text).map_err(|e| format!("{key}: {e}"));
        let (kind, timeout) = match self {
            CommandRequest::Identify { seconds, timeout } => (
                CommandKind::Identify {
                    seconds: seconds.unwrap_or(30),
                },
                timeout,
            ),
            CommandRequest::Reboot { timeout } => (CommandKind::Reboot, timeout),
            CommandRequest::SetInterval { interval, timeout } => {
                let interval_ms =
                    u32::try_from(duration(interval, "interval")?.as_millis()).unwrap_or(u32::MAX);
                let range = rackwatch_protocols::MIN_INTERVAL_MS..=rackwatch_protocols::MAX_INTERVAL_MS;
                if !range.contains(&interval_ms) {
                    return Err("interval: must be 100ms to 1h".into());
                }
                (CommandKind::SetInterval { interval_ms }, timeout)
            }
            CommandRequest::SetFan {
                fan,
                duty_percent,
                rpm,
                timeout,
            } => {
                let target = match (duty_percent, rpm) {
                    (Some(duty), None) if (0.0..=100.0).contains(duty) => FanTarget::DutyPercent(*duty),
                    (Some(_), None) => return Err("duty_percent: must be 0 to 100".into()),
                    (None, Some(rpm)) => FanTarget::Rpm(*rpm),
                    _ => return Err("give exactly one of duty_percent and rpm".into()),
                };
                (CommandKind::SetFan { fan: *fan, target }, timeout)
            }
        };
        let timeout = match timeout {
            Some(text) => duration(text, "timeout")?,
            None => DEFAULT_ACK_TIMEOUT,
        };
        if timeout.is_zero() || timeout > MAX_ACK_TIMEOUT {
            return Err("timeout: must be more than 0s and at most 2m".into());
        }
        Ok((kind, timeout))
    }
}

/// The answer of `POST /api/nodes/{id}/commands`: the node's ack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAnswer {
    pub id: u32,
    pub node: String,
    /// `ok`, `rejected`, `unsupported` or `failed`, as the node said.
    pub result: String,
    #[serde(default)]
    pub detail: Option<String>,
    /// From publishing the command to receiving the ack.
    pub took_ms: u64,
}

/// What the route shares.
#[derive(Debug, Clone)]
struct CommandApi {
    commander: Option<NodeCommander>,
    token: Option<Secret>,
}

/// `POST /api/nodes/{id}/commands`. Without `[mqtt]` (`commander` `None`) it answers 503.
pub fn routes(commander: Option<NodeCommander>, config: &Config) -> Result<Router, ConfigError> {
    let token = config
        .http
        .token
        .as_ref()
        .map(|t| t.read("http.token").map(Secret::new))
        .transpose()?;
    Ok(Router::new()
        .route("/api/nodes/{id}/commands", post(command))
        .with_state(CommandApi { commander, token }))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn command(
    State(api): State<CommandApi>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Result<Json<CommandRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(token) = &api.token else {
        return error(
            StatusCode::FORBIDDEN,
            "commanding nodes needs http.token in the gateway's configuration",
        );
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !token.authorizes(given) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Ok(node) = NodeId::new(&node) else {
        return error(StatusCode::BAD_REQUEST, format!("`{node}` is not a node id"));
    };
    let request = match body {
        Ok(Json(request)) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (kind, timeout) = match request.parse() {
        Ok(parsed) => parsed,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(commander) = &api.commander else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "commanding nodes needs [mqtt] in the gateway's configuration",
        );
    };
    let sent = Instant::now();
    match commander.send(&node, kind, timeout).await {
        Ok(ack) => Json(CommandAnswer {
            id: ack.id,
            node: ack.node.to_string(),
            result: ack_result(ack.result).to_owned(),
            detail: ack.detail.map(|d| d.to_string()),
            took_ms: u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
        .into_response(),
        Err(e @ CommandError::NoAck { .. }) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn ack_result(result: AckResult) -> &'static str {
    match result {
        AckResult::Ok => "ok",
        AckResult::Rejected => "rejected",
        AckResult::Unsupported => "unsupported",
        AckResult::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Result<(CommandKind, Duration), String> {
        serde_json::from_str::<CommandRequest>(json)
            .map_err(|e| e.to_string())?
            .parse()
    }

    #[test]
    fn requests_become_protocol_commands() {
        assert_eq!(
            parsed(r#"{"action": "set_interval", "interval": "5s"}"#),
            Ok((
                CommandKind::SetInterval { interval_ms: 5000 },
                DEFAULT_ACK_TIMEOUT
            ))
        );
        assert_eq!(
            parsed(r#"{"action": "identify", "timeout": "3s"}"#),
            Ok((CommandKind::Identify { seconds: 30 }, Duration::from_secs(3)))
        );
        assert_eq!(
            parsed(r#"{"action": "set_fan", "fan": 0, "duty_percent": 80}"#).map(|p| p.0),
            Ok(CommandKind::SetFan {
                fan: 0,
                target: FanTarget::DutyPercent(80.0)
            })
        );
        assert_eq!(
            parsed(r#"{"action": "reboot"}"#).map(|p| p.0),
            Ok(CommandKind::Reboot)
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(
            parsed(r#"{"action": "set_interval", "interval": "5ms"}"#),
            Err("interval: must be 100ms to 1h".into())
        );
        assert_eq!(
            parsed(r#"{"action": "set_fan", "fan": 0, "duty_percent": 180}"#),
            Err("duty_percent: must be 0 to 100".into())
        );
        assert!(parsed(r#"{"action": "self_destruct"}"#).is_err());
        assert!(parsed(r#"{"action": "identify", "timeout": "1h"}"#).is_err());
    }

    #[test]
    fn an_ack_reaches_only_the_request_for_its_id_and_node() {
        let waiting: Waiting = Arc::default();
        let (tx, mut rx) = oneshot::channel();
        let node = NodeId::new("r01-n1").unwrap();
        waiting.lock().unwrap().insert(7, (node.clone(), tx));
        let encode = |ack: Ack| {
            let mut buf = [0u8; 256];
            let n = ack.encode(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        answer(
            &waiting,
            &encode(Ack::new(7, NodeId::new("r01-n2").unwrap(), AckResult::Ok)),
        );
        answer(&waiting, &encode(Ack::new(8, node.clone(), AckResult::Ok)));
        answer(&waiting, b"not json");
        assert!(rx.try_recv().is_err());
        answer(&waiting, &encode(Ack::new(7, node, AckResult::Ok)));
        assert_eq!(rx.try_recv().unwrap().result, AckResult::Ok);
    }
}
