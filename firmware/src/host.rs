//! The node core on the host (feature `host`): simulated racks instead of I2C sensors, MQTT over tokio
//! TCP instead of smoltcp. One node is one tokio task with about 20 KiB of state, so hundreds of nodes
//! share one process and a couple of threads; the gateway's `rackwatch demo` and load benchmark run
//! their fleets through [`spawn_node`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::{Arc, Mutex};
//! use rackwatch_firmware::host::{HostNodeConfig, SimRack, spawn_node};
//! use rackwatch_hardware::sim::{DataHall, HallConfig};
//!
//! let hall = Arc::new(Mutex::new(DataHall::new(&HallConfig { rows: 2, racks_per_row: 20, ..HallConfig::default() })));
//! let broker = "127.0.0.1:1883".parse()?;
//! let nodes: Vec<_> = (0..40)
//!     .map(|i| {
//!         let config = HostNodeConfig::new("lab", &format!("n{i:03}"))?.with_interval_ms(1_000);
//!         Ok(spawn_node(config, SimRack::new(Arc::clone(&hall), i), broker))
//!     })
//!     .collect::<Result<_, rackwatch_protocols::IdError>>()?;
//! // ... step the hall (`hall.lock()?.step(dt)`) while the nodes sample and publish ...
//! for node in nodes {
//!     node.stop().await; // publishes `offline`, DISCONNECT
//! }
//! # Ok(()) }
//! ```

use std::boxed::Box;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::string::String;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::vec::Vec;

use rackwatch_hardware::sim::{DataHall, probe};
use rackwatch_hardware::{Channel, FanControl, Fault, Measurement, Sample, SensorSet};
use rackwatch_protocols::{ChannelName, FanTarget, FirmwareVersion, IdError, LinkFailure, NodeId, SiteId};
use tokio::io::ErrorKind;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::host_update::{HostOta, HostUpdates};
use crate::node::{Event, Node, NodeConfig, SessionError};
use crate::sampling::{ChannelSetup, Filter};
use crate::store::DEFAULT_RING_CAPACITY;
use crate::tls::{TlsClient, TlsSettings, TlsState, Trust};
use crate::transport::{LinkError, LinkState, Transport};

/// One rack of a shared simulated [`DataHall`], as a node's sensors and fan controller. Each call
/// locks the hall briefly; whoever steps the hall holds the same lock.
#[derive(Debug, Clone)]
pub struct SimRack {
    hall: Arc<Mutex<DataHall>>,
    index: usize,
}

impl SimRack {
    /// Rack `index` of `hall` (row-major, as [`DataHall::racks`]).
    pub fn new(hall: Arc<Mutex<DataHall>>, index: usize) -> Self {
        SimRack { hall, index }
    }

    fn with_rack<R>(
        &self,
        f: impl FnOnce(&mut rackwatch_hardware::sim::SimulatedRack) -> Result<R, Fault>,
    ) -> Result<R, Fault> {
        let mut hall = self.hall.lock().map_err(|_| Fault::NotReady)?;
        let rack = hall.racks_mut().get_mut(self.index).ok_or(Fault::Unsupported)?;
        f(rack)
    }
}

impl SensorSet for SimRack {
    fn sample(&mut self, device: usize, measurement: Measurement) -> Result<Sample, Fault> {
        self.with_rack(|rack| rack.sample(device, measurement))
    }
}

impl FanControl for SimRack {
    fn set_fan(&mut self, fan: u8, target: FanTarget) -> Result<(), Fault> {
        self.with_rack(|rack| rack.set_fan(fan, target))
    }
}

/// The channels of a simulated rack, named as on a real node: inlet and outlet temperature, inlet
/// humidity and dew point, the busbar feed's voltage, current and power, fan 0's speed and duty.
pub fn rack_channels() -> Vec<ChannelSetup> {
    let channel = |name: &str, device: u8, measurement: Measurement, decimals: u8| {
        ChannelName::new(name)
            .map(|name| ChannelSetup::new(Channel::new(name, device, measurement)).with_decimals(decimals))
    };
    [
        channel("inlet", probe::INLET, Measurement::Temperature, 4),
        channel("outlet", probe::OUTLET, Measurement::Temperature, 4),
        channel("humidity", probe::HUMIDITY, Measurement::RelativeHumidity, 1)
            .map(|c| c.with_filter(Filter::Median(3))),
        channel("humidity", probe::HUMIDITY, Measurement::DewPoint, 2),
        channel("psu_in", probe::POWER, Measurement::InputVoltage, 2),
        channel("psu_in", probe::POWER, Measurement::Current, 2),
        channel("psu_in", probe::POWER, Measurement::Power, 1).map(|c| c.with_filter(Filter::Median(3))),
        channel("fan0", probe::FANS, Measurement::FanSpeed { fan: 0 }, 0),
        channel("fan0", probe::FANS, Measurement::FanDutyCommanded { fan: 0 }, 1),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A host node: the core's configuration and its channels.
#[derive(Debug, Clone)]
pub struct HostNodeConfig {
    pub node: NodeConfig,
    pub channels: Vec<ChannelSetup>,
    /// Firmware updates into file-backed slots; `None`: the node does not subscribe to `ota`.
    pub updates: Option<HostUpdates>,
    /// TLS 1.3 to the broker ([`crate::tls`]); `None` speaks plain MQTT.
    pub tls: Option<HostTls>,
}

/// What a host node's broker must prove.
#[derive(Debug, Clone)]
pub struct HostTls {
    /// The host name its certificate carries.
    pub server_name: String,
    /// The CA certificate (DER) it chains to, or that CA's SHA-256 pin.
    pub trust: HostTrust,
}

/// [`crate::tls::Trust`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTrust {
    Ca(Vec<u8>),
    Pin([u8; 32]),
}

impl HostNodeConfig {
    /// Node `node` at site `site` with a random boot id, the default interval and [`rack_channels`].
    pub fn new(site: &str, node: &str) -> Result<Self, IdError> {
        let mut config = NodeConfig::new(SiteId::new(site)?, NodeId::new(node)?, random_boot_id());
        config.serial = heapless::String::try_from("SIM").ok().and_then(|mut s| {
            let _ = s.push('-');
            s.push_str(node.get(..20).unwrap_or(node)).ok().map(|()| s)
        });
        Ok(HostNodeConfig {
            node: config,
            channels: rack_channels(),
            updates: None,
            tls: None,
        })
    }

    pub fn with_interval_ms(mut self, interval_ms: u32) -> Self {
        self.node.interval_ms = interval_ms;
        self
    }

    /// Takes firmware updates (signed for [`crate::host_update::HOST_BOARD`]) into slots in a folder.
    pub fn with_updates(mut self, updates: HostUpdates) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Speaks TLS 1.3 to the broker, which must prove it is `server_name` with a certificate from
    /// `ca_der`; the address given to [`spawn_node`] is still where it connects.
    pub fn with_tls(mut self, server_name: &str, ca_der: Vec<u8>) -> Self {
        self.tls = Some(HostTls {
            server_name: server_name.into(),
            trust: HostTrust::Ca(ca_der),
        });
        self
    }

    /// Takes the TLS settings of a provisioned broker configuration (the one `rackwatch node
    /// provision --tls --ca` writes): its name, CA or pin, as a board applies them. `None` when it
    /// asks for no TLS or fails `provisioning::check`.
    pub fn with_provisioned_tls(mut self, broker: &rackwatch_protocols::BrokerConfig) -> Option<Self> {
        let settings = TlsSettings::of(broker)?;
        self.tls = Some(HostTls {
            server_name: settings.server_name.into(),
            trust: match settings.trust {
                Trust::Ca(der) => HostTrust::Ca(der.to_vec()),
                Trust::Pin(pin) => HostTrust::Pin(pin),
            },
        });
        Some(self)
    }
}

/// A random `boot`: std's hasher keys are random per process and per `RandomState`.
fn random_boot_id() -> u32 {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let hash = hasher.finish();
    u32::try_from(hash >> 32).unwrap_or_default() ^ u32::try_from(hash & 0xFFFF_FFFF).unwrap_or_default()
}

/// What a running host node shows to its owner.
#[derive(Debug, Default)]
pub struct NodeStatus {
    online: AtomicBool,
    delivered: AtomicU64,
    sampled: AtomicU64,
    dropped: AtomicU64,
    reboots: AtomicU32,
    boot: AtomicU32,
    /// Why the link last failed (a TLS refusal), if it ever did.
    link_failure: Mutex<Option<LinkFailure>>,
}

impl NodeStatus {
    /// Whether its MQTT session is up.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }
    /// Telemetry messages the broker acknowledged.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Sampling rounds taken.
    pub fn sampled(&self) -> u64 {
        self.sampled.load(Ordering::Relaxed)
    }
    /// Records dropped from a full store-and-forward ring.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// `reboot` commands carried out.
    pub fn reboots(&self) -> u32 {
        self.reboots.load(Ordering::Relaxed)
    }
    /// The current boot id.
    pub fn boot(&self) -> u32 {
        self.boot.load(Ordering::Relaxed)
    }
    /// Why the link to the broker last failed (e.g. a refused certificate), the reason the console
    /// shows and the next birth message's `link` carries.
    pub fn link_failure(&self) -> Option<LinkFailure> {
        self.link_failure.lock().ok().and_then(|failure| *failure)
    }
}

/// A running host node.
#[derive(Debug)]
pub struct NodeHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: Arc<NodeStatus>,
}

impl NodeHandle {
    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// Shuts the node down cleanly: it publishes its `offline` status and disconnects (or gives up
    /// after 5 s), then its task ends.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }

    /// Ends the node at once, like pulling its power: the broker publishes its last will.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Starts a node on the current tokio runtime, sampling `rack` and publishing to the broker at
/// `broker`. It connects (and reconnects) by itself; see [`NodeHandle`].
pub fn spawn_node(config: HostNodeConfig, rack: SimRack, broker: SocketAddr) -> NodeHandle {
    let (stop, stop_rx) = watch::channel(false);
    let status = Arc::new(NodeStatus::default());
    let task = if config.tls.is_some() {
        spawn_tls_node(config, rack, broker, stop_rx, Arc::clone(&status))
    } else {
        let status = Arc::clone(&status);
        tokio::spawn(async move { run_node(config, rack, broker, stop_rx, status, None, &mut Plain).await })
    };
    NodeHandle { stop, task, status }
}

/// A TLS node on a thread of its own: `embedded-tls`'s futures are not `Send`, so the node runs on a
/// current-thread runtime there. The task returned waits for it; aborting that task (a
/// [`NodeHandle::kill`]) drops the kill sender, and the node's loop ends without a goodbye.
fn spawn_tls_node(
    config: HostNodeConfig,
    rack: SimRack,
    broker: SocketAddr,
    stop: watch::Receiver<bool>,
    status: Arc<NodeStatus>,
) -> JoinHandle<()> {
    let (kill, killed) = oneshot::channel::<()>();
    let (done, finished) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let (Ok(runtime), Some(tls)) = (
            tokio::runtime::Builder::new_current_thread().enable_all().build(),
            config.tls.clone(),
        ) else {
            return;
        };
        // The state on the heap, the engine pinned on this thread's stack: both outlive the node.
        let mut state = Box::new(TlsState::new());
        let (pipe, buffers) = state.parts();
        let settings = TlsSettings {
            server_name: &tls.server_name,
            trust: match &tls.trust {
                HostTrust::Ca(der) => Trust::Ca(der),
                HostTrust::Pin(pin) => Trust::Pin(*pin),
            },
        };
        let engine = std::pin::pin!(crate::tls::engine(pipe, buffers, settings, rand_core::OsRng));
        let mut client = TlsClient::new(pipe, engine);
        tokio::task::LocalSet::new().block_on(
            &runtime,
            run_node(config, rack, broker, stop, status, Some(killed), &mut client),
        );
        let _ = done.send(());
    });
    tokio::spawn(async move {
        let _kill = kill;
        let _ = finished.await;
    })
}

/// How a node's bytes reach the broker: plain TCP, or TLS over it.
trait Wire {
    fn poll(
        &mut self,
        node: &mut Node<DEFAULT_RING_CAPACITY>,
        now_ms: u64,
        rack: &mut SimRack,
        tcp: &mut TcpTransport,
    ) -> crate::node::Poll;
}

/// Plain MQTT over TCP.
struct Plain;

impl Wire for Plain {
    fn poll(
        &mut self,
        node: &mut Node<DEFAULT_RING_CAPACITY>,
        now_ms: u64,
        rack: &mut SimRack,
        tcp: &mut TcpTransport,
    ) -> crate::node::Poll {
        node.poll(now_ms, rack, tcp)
    }
}

impl<F: Future<Output = std::convert::Infallible>> Wire for TlsClient<'_, F> {
    fn poll(
        &mut self,
        node: &mut Node<DEFAULT_RING_CAPACITY>,
        now_ms: u64,
        rack: &mut SimRack,
        tcp: &mut TcpTransport,
    ) -> crate::node::Poll {
        node.poll(now_ms, rack, &mut self.over(tcp))
    }
}

#[allow(clippy::too_many_arguments, reason = "the node's whole context, passed once")]
async fn run_node<W: Wire>(
    mut config: HostNodeConfig,
    mut rack: SimRack,
    broker: SocketAddr,
    mut stop: watch::Receiver<bool>,
    status: Arc<NodeStatus>,
    mut killed: Option<oneshot::Receiver<()>>,
    wire: &mut W,
) {
    let connect_timeout = Duration::from_millis(u64::from(config.node.connect_timeout_ms));
    'boot: loop {
        status.boot.store(config.node.boot, Ordering::Relaxed);
        let started = Instant::now();
        let mut ota = None;
        if let Some(updates) = &config.updates {
            let factory =
                FirmwareVersion::parse(&config.node.firmware).unwrap_or(FirmwareVersion::new(0, 0, 0));
            // A node whose slot folder cannot be opened runs without updates, as a board would.
            if let Ok((agent, running)) = HostOta::boot(updates, factory, 0) {
                config.node.firmware =
                    heapless::String::try_from(std::format!("{running}").as_str()).unwrap_or_default();
                ota = Some(agent);
            }
        }
        let Ok(mut node) = Node::<DEFAULT_RING_CAPACITY>::new(config.node.clone(), &config.channels) else {
            return;
        };
        if let Some(agent) = &ota {
            node.accept_updates(agent.report());
        }
        let mut transport = TcpTransport::default();
        let mut stopping = false;
        loop {
            let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let poll = wire.poll(&mut node, now_ms, &mut rack, &mut transport);
            while let Some(event) = node.next_event() {
                match event {
                    Event::Connected { .. } => {
                        status.online.store(true, Ordering::Relaxed);
                        if let Some(agent) = &mut ota {
                            agent.connected(&mut node);
                        }
                    }
                    Event::Disconnected { reason, .. } => {
                        status.online.store(false, Ordering::Relaxed);
                        if let (SessionError::Link(failure), Ok(mut last)) =
                            (reason, status.link_failure.lock())
                        {
                            *last = Some(failure);
                        }
                    }
                    Event::Delivered { .. } => {
                        status.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Sampled { .. } => {
                        status.sampled.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Dropped { records } => {
                        status.dropped.fetch_add(u64::from(records), Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            if poll.stopped {
                status.online.store(false, Ordering::Relaxed);
                return;
            }
            if ota.as_mut().is_some_and(|agent| agent.serve(&mut node)) {
                continue;
            }
            if poll.reboot || ota.as_ref().is_some_and(|agent| agent.must_reset(now_ms)) {
                transport.close();
                status.online.store(false, Ordering::Relaxed);
                status.reboots.fetch_add(1, Ordering::Relaxed);
                config.node.boot = random_boot_id();
                continue 'boot;
            }
            if transport.wants_connection() {
                // Opening is the one await outside the select: bounded by the connect timeout.
                let connected = tokio::time::timeout(connect_timeout, TcpStream::connect(broker)).await;
                transport.connected(connected.ok().and_then(Result::ok));
                continue;
            }
            let deadline = ota.as_ref().and_then(HostOta::deadline_ms).unwrap_or(u64::MAX);
            let wake = started + Duration::from_millis(poll.wake_at_ms.min(deadline));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = transport.readable() => {}
                () = async {
                    match killed.as_mut() {
                        Some(killed) => {
                            let _ = killed.await;
                        }
                        None => std::future::pending().await,
                    }
                } => return,
                changed = stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_err() || *stop.borrow() {
                        node.shut_down();
                    }
                }
            }
        }
    }
}

/// The core's [`Transport`] over a tokio `TcpStream`, used without awaiting (`try_read`/`try_write`);
/// the node's task awaits readiness between polls.
#[derive(Debug, Default)]
struct TcpTransport {
    stream: Option<TcpStream>,
    opening: bool,
}

impl TcpTransport {
    fn wants_connection(&self) -> bool {
        self.opening && self.stream.is_none()
    }

    fn connected(&mut self, stream: Option<TcpStream>) {
        self.opening = false;
        self.stream = stream.inspect(|s| {
            let _ = s.set_nodelay(true);
        });
    }

    async fn readable(&self) {
        match &self.stream {
            Some(stream) => {
                let _ = stream.readable().await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Transport for TcpTransport {
    fn open(&mut self) -> Result<(), LinkError> {
        self.stream = None;
        self.opening = true;
        Ok(())
    }

    fn state(&mut self) -> LinkState {
        match (&self.stream, self.opening) {
            (Some(_), _) => LinkState::Open,
            (None, true) => LinkState::Opening,
            (None, false) => LinkState::Closed,
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let stream = self.stream.as_ref().ok_or(LinkError)?;
        match stream.try_read(buf) {
            Ok(0) if !buf.is_empty() => Err(LinkError),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(LinkError),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        let stream = self.stream.as_ref().ok_or(LinkError)?;
        match stream.try_write(bytes) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(LinkError),
        }
    }

    fn close(&mut self) {
        self.stream = None;
        self.opening = false;
    }
}
