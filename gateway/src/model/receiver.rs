//! Names of alert receivers that every stage must agree on.

/// Reserved receiver name: the MQTT alert topics, which are not a webhook (a webhook may not take
/// this name).
pub const MQTT_RECEIVER: &str = "mqtt";
