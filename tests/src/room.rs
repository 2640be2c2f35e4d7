//! A small simulated room for the dashboard and API tests: one node per rack publishing its three
//! inlet probes and its outlet every 300 ms; racks marked hot run their inlets at 36 °C.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// The room: `(row, rack)` pairs, one node `n-{rack}` each, in room `hall-a`.
#[derive(Debug, Clone)]
pub struct Room {
    pub site: String,
    pub racks: Vec<(String, String)>,
    hot: Arc<Mutex<HashSet<String>>>,
}

impl Room {
    pub fn new(site: &str, racks: &[(&str, &str)]) -> Self {
        Room {
            site: site.to_owned(),
            racks: racks
                .iter()
                .map(|(row, rack)| ((*row).to_owned(), (*rack).to_owned()))
                .collect(),
            hot: Arc::default(),
        }
    }

    /// The gateway inventory (TOML) of the room.
    pub fn inventory(&self) -> String {
        self.racks
            .iter()
            .map(|(row, rack)| {
                format!("[nodes.n-{rack}]\nroom = \"hall-a\"\nrow = \"{row}\"\nrack = \"{rack}\"\n")
            })
            .collect()
    }

    pub fn set_hot(&self, rack: &str, hot: bool) {
        let mut set = self.hot.lock().unwrap();
        if hot {
            set.insert(rack.to_owned());
        } else {
            set.remove(rack);
        }
    }

    /// Publishes until aborted, or for at most 10 minutes.
    pub fn start(&self, broker_port: u16) -> tokio::task::JoinHandle<()> {
        let room = self.clone();
        tokio::spawn(async move {
            let options = MqttOptions::new(format!("room-{}", room.site), "127.0.0.1", broker_port);
            let (client, mut eventloop) = AsyncClient::new(options, 1000);
            tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
            for seq in 0..2000u32 {
                for (_, rack) in &room.racks {
                    let inlet = if room.hot.lock().unwrap().contains(rack) {
                        36.0
                    } else {
                        22.0
                    };
                    let mut readings = heapless::Vec::new();
                    let probes = [
                        ("inlet_top", inlet + 0.5),
                        ("inlet_middle", inlet),
                        ("inlet_bottom", inlet - 0.5),
                        ("outlet", inlet + 12.0),
                    ];
                    for (channel, value) in probes {
                        let channel = ChannelName::new(channel).unwrap();
                        readings
                            .push(Reading::ok(channel, Quantity::Temperature, value, Unit::Celsius))
                            .unwrap();
                    }
                    let telemetry = Telemetry {
                        version: 1,
                        node: NodeId::new(&format!("n-{rack}")).unwrap(),
                        boot: 1,
                        seq,
                        timestamp_ms: Some(crate::now_ms() as u64),
                        uptime_ms: u64::from(seq) * 300,
                        dropped: 0,
                        readings,
                    };
                    let mut buf = [0u8; 1024];
                    let n = telemetry.encode(&mut buf).unwrap();
                    let topic = format!("rackwatch/v1/{}/n-{rack}/telemetry", room.site);
                    client
                        .publish(topic, QoS::AtLeastOnce, false, buf[..n].to_vec())
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    }
}

/// Polls `check` every 200 ms until it holds or `timeout` passes; returns how long it took.
pub async fn within<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The TOML of an alert rule that fires at once when a rack's inlet exceeds 32 °C.
pub const INLET_HOT_RULE: &str = "[alerts]\n[[alerts.rules]]\nname = \"inlet_hot\"\nkind = \"threshold\"\nquantity = \"temperature\"\nside = \"inlet\"\nabove = 32.0\nclear = 30.0\nseverity = \"critical\"\ngroup_by = \"rack\"\n";
