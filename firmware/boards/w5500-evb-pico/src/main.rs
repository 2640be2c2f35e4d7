//! The rackwatch sensor node on a WIZnet W5500-EVB-Pico: an RP2040 with a W5500 Ethernet controller
//! on SPI0, the sensors on I2C0, the console and provisioning on USB CDC-ACM, and the configuration
//! store in the last two 4 KiB sectors of the board's 2 MiB flash.
//!
//! This file only wires the board to the application core, on embassy (as the embassy examples
//! `ethernet_w5500_tcp_client.rs`, `flash.rs` and `usb_serial.rs` do): the W5500 driver and the IP
//! stack (DHCP) run as tasks, the USB device and its CDC-ACM pipes as two more, and the main task
//! polls the core (`rackwatch_firmware::Node`) every few milliseconds, feeds it the bytes the host
//! sent, feeds the watchdog and drives the LED. Firmware updates (src/ota.rs) go into the DFU
//! partition of embassy-boot's two-slot layout; the bootloader is ../w5500-evb-pico-bootloader.
//!
//! | what | RP2040 pins | |
//! | --- | --- | --- |
//! | W5500 (SPI0) | GP16 MISO, GP17 CS, GP18 SCK, GP19 MOSI, GP20 RST, GP21 INT | on the board |
//! | sensors (I2C0, 100 kHz) | GP4 SDA, GP5 SCL | README.md, "Wiring" |
//! | LED | GP25 | on the board |
//! | console, provisioning | USB (micro-USB socket) | `/dev/ttyACM*` |
#![no_std]
#![no_main]

mod broker_link;
mod ota;
mod sensors;
mod usb_console;

use core::cell::RefCell;
use core::fmt::Write as _;

use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, StackResources};
use embassy_net_wiznet::chip::W5500;
use embassy_rp::gpio::{Input, Level, Output, Pull};
use embassy_rp::i2c::{self, I2c};
use embassy_rp::peripherals::{DMA_CH0, DMA_CH1, I2C0, SPI0, USB};
use embassy_rp::spi::{self, Async, Spi};
use embassy_rp::watchdog::{ResetReason, Watchdog};
use embassy_rp::{bind_interrupts, dma, usb};
use embassy_time::{Delay, Duration, Instant, Timer};
use embedded_hal_bus::i2c::RefCellDevice;
use embedded_hal_bus::spi::ExclusiveDevice;
use rackwatch_firmware::config_store::ConfigStore;
use rackwatch_firmware::provisioning::{self, Provisioner};
use rackwatch_firmware::{Event, Node, NodeConfig};
use rackwatch_hardware::device::Device;
use rackwatch_protocols::update::FirmwareVersion;
use rackwatch_protocols::{BrokerConfig, ConfigOrigin, NodeId, SiteId};
use static_cell::StaticCell;

use broker_link::BrokerLink;

bind_interrupts!(struct Irqs {
    USBCTRL_IRQ => usb::InterruptHandler<USB>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>, dma::InterruptHandler<DMA_CH1>;
});

/// A slot of the configuration store: one 4 KiB erase sector of the QSPI flash.
const CONFIG_SLOT: usize = 4096;
/// The store: the last two sectors, after the partitions of memory.x.
const STORE_OFFSET: u32 = (ota::FLASH_SIZE - 2 * CONFIG_SLOT) as u32;
/// Longer than any loop turn, including a whole I2C sampling round and a sector erase (up to 400 ms,
/// W25Q16JV datasheet 9.6, tSE); the RP2040 allows up to 8.3 s.
const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the main task sleeps between polls of the node: short enough for a provisioning answer to
/// feel immediate, long enough to leave the tasks the CPU.
const POLL_PERIOD: Duration = Duration::from_millis(5);
/// Store-and-forward capacity: the core's default (128 records, 21 minutes at 10 s).
const RING: usize = rackwatch_firmware::DEFAULT_RING_CAPACITY;
/// Where a node that was never provisioned reports: site `lab`, node `pico-` and its MAC address.
const DEFAULT_SITE: &str = "lab";

/// The configuration store's two sectors, of the flash the update agent shares.
type ConfigFlash = ota::Partition;
type Bus<'a> = RefCellDevice<'a, I2c<'static, I2C0, i2c::Blocking>>;
type EthernetSpi = ExclusiveDevice<Spi<'static, SPI0, Async>, Output<'static>, Delay>;
type EthernetRunner =
    embassy_net_wiznet::Runner<'static, W5500, EthernetSpi, Input<'static>, Output<'static>>;

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    let mut watchdog = Watchdog::new(p.WATCHDOG);
    let reset_reason = watchdog.reset_reason();
    watchdog.start(WATCHDOG_TIMEOUT);
    // On while the node starts; then see `Led`.
    let mut led = Led(Output::new(p.PIN_25, Level::High));

    // Identity from the flash chip's unique ID: the serial number, the MAC address and the default id.
    let mut flash = ota::BoardFlash::new_blocking(p.FLASH);
    let mut unique = [0u8; 8];
    let _ = flash.blocking_unique_id(&mut unique);
    let [_, _, _, a, b, c, d, e] = unique;
    // Locally administered, unicast (IEEE 802 section 8.2.2): no OUI of ours to use.
    let mac = [0x02, a, b, c, d, e];
    static SERIAL: StaticCell<heapless::String<24>> = StaticCell::new();
    let serial = SERIAL.init(hex("RP2040-", &unique));

    // The console on USB, up first so the boot lines reach a host that is already listening.
    let (usb_device, cdc) = usb_console::build(usb::Driver::new(p.USB, Irqs), serial.as_str());
    spawn(&spawner, usb_console::device(usb_device));
    spawn(&spawner, usb_console::serial(cdc));
    let mut console = Console { frames: false };
    console.log(format_args!(
        "rackwatch node {} on w5500-evb-pico, serial {serial}, after {}",
        env!("CARGO_PKG_VERSION"),
        match reset_reason {
            Some(ResetReason::Forced) => "a forced reset (reboot command or panic)",
            Some(ResetReason::TimedOut) => "a watchdog reset: the main loop stalled",
            None => "power-on or the RUN pin",
        }
    ));

    // One flash, shared by the configuration store and the update agent (src/ota.rs), each with its
    // partitions.
    static FLASH: StaticCell<ota::SharedFlash> = StaticCell::new();
    let flash: &'static ota::SharedFlash =
        FLASH.init(embassy_sync::blocking_mutex::Mutex::new(RefCell::new(flash)));

    // The configuration: the stored one, else the defaults (and why).
    let config_flash = BlockingPartition::new(flash, STORE_OFFSET, 2 * CONFIG_SLOT as u32);
    let Ok(store) = ConfigStore::new(config_flash, 0) else {
        reset()
    };
    static PROVISIONER: StaticCell<Provisioner<ConfigFlash, CONFIG_SLOT>> = StaticCell::new();
    let provisioner = PROVISIONER.init(Provisioner::new(
        store,
        defaults(mac),
        #[cfg(feature = "tls")]
        provisioning::check_tls_ipv4_broker,
        #[cfg(not(feature = "tls"))]
        provisioning::check_plain_ipv4_broker,
    ));
    let origin = provisioner.origin();
    console.log(format_args!("configuration: {}", origin.describe()));

    // The sensors, wherever they are on the bus.
    let mut i2c = I2c::new_blocking(p.I2C0, p.PIN_5, p.PIN_4, i2c::Config::default());
    let found = sensors::probe(&mut i2c);
    let bus = RefCell::new(i2c);
    let mut devices: heapless::Vec<Device<Bus<'_>, Delay>, { sensors::MAX_PARTS }> = heapless::Vec::new();
    for part in &found.parts {
        let mut device = part.build(RefCellDevice::new(&bus), Delay);
        if let Err(fault) = device.init(part) {
            console.log(format_args!("sensor setup of {part:?}: {fault}"));
        }
        let _ = devices.push(device);
    }
    log_channels(&mut console, &found);

    let in_force = provisioner.in_force();
    let mut config = NodeConfig::new(in_force.site.clone(), in_force.node.clone(), boot_id());
    config.interval_ms = in_force.interval_ms;
    config.serial = Some(serial.clone());
    config.config_origin = Some(origin);
    // The version update files are compared with and the birth message reports.
    let running = FirmwareVersion::parse(config.firmware.as_str()).unwrap_or(FirmwareVersion::new(0, 0, 0));
    static NODE: StaticCell<Node<RING>> = StaticCell::new();
    let Ok(node) = Node::new(config, &found.channels) else {
        reset()
    };
    let node = NODE.init(node);
    // Updates: the bootloader's state, the journal, a download a reset cut (src/ota.rs).
    let mut updates = ota::PicoOta::boot(flash, running, Instant::now().as_millis());
    match &updates {
        Ok(agent) => {
            node.accept_updates(agent.report());
            console.log(format_args!("firmware {running} ({})", agent.describe()));
        }
        Err(why) => {
            // Subscribed all the same, to answer `unsupported` (and why) rather than let a rollout
            // time out on this node.
            node.accept_updates(rackwatch_firmware::ota::FirmwareReport {
                slot: None,
                last: None,
            });
            console.log(format_args!("firmware {running}, no updates: {}", why.reason()));
        }
    }
    if origin == ConfigOrigin::Provisioned
        && let Err(reason) = node.adopt_provisioned(provisioner.in_force(), 0)
    {
        // A stored calibration names a channel this fit of the board does not have.
        console.log(format_args!("stored calibration not applied: {reason}"));
    }
    let broker = broker_endpoint(&provisioner.in_force().broker);
    console.log(format_args!(
        "node {} at site {}, broker {}, every {} ms",
        node.config().node,
        node.config().site,
        Broker(broker),
        node.interval_ms()
    ));

    // Ethernet: the W5500 on SPI0 and embassy-net with DHCP.
    let mut spi_config = spi::Config::default();
    // The W5500 takes up to 80 MHz (datasheet 1.1); 50 MHz as embassy's example runs it.
    spi_config.frequency = 50_000_000;
    let spi = Spi::new(
        p.SPI0, p.PIN_18, p.PIN_19, p.PIN_16, p.DMA_CH0, p.DMA_CH1, Irqs, spi_config,
    );
    let chip_select = Output::new(p.PIN_17, Level::High);
    let interrupt = Input::new(p.PIN_21, Pull::Up);
    let chip_reset = Output::new(p.PIN_20, Level::High);
    static WIZNET: StaticCell<embassy_net_wiznet::State<4, 4>> = StaticCell::new();
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    static SOCKET_BUFFERS: StaticCell<([u8; 1024], [u8; 2048])> = StaticCell::new();
    let ethernet = match ExclusiveDevice::new(spi, chip_select, Delay) {
        Ok(spi) => embassy_net_wiznet::new(
            mac,
            WIZNET.init(embassy_net_wiznet::State::new()),
            spi,
            interrupt,
            chip_reset,
        )
        .await
        .ok(),
        Err(_) => None,
    };
    let mut link = match ethernet {
        Some((device, runner)) => {
            spawn(&spawner, ethernet_task(runner));
            let config = embassy_net::Config::dhcpv4(Default::default());
            let (stack, net) = embassy_net::new(
                device,
                config,
                RESOURCES.init(StackResources::new()),
                u64::from(boot_id()),
            );
            spawn(&spawner, net_task(net));
            let (rx, tx) = SOCKET_BUFFERS.init(([0; 1024], [0; 2048]));
            BrokerLink::Ethernet {
                stack,
                socket: TcpSocket::new(stack, rx, tx),
                broker,
            }
        }
        None => {
            console.log(format_args!(
                "ethernet: the W5500 does not answer; sampling without network"
            ));
            BrokerLink::Absent
        }
    };

    // TLS: the engine future lives in this task's frame, its buffers in a static (tls.rs).
    #[cfg(feature = "tls")]
    let tls_state = {
        static TLS: StaticCell<rackwatch_firmware::tls::TlsState> = StaticCell::new();
        TLS.init(rackwatch_firmware::tls::TlsState::new())
    };
    #[cfg(feature = "tls")]
    let (tls_pipe, tls_buffers) = tls_state.parts();
    // The provisioned name and CA (or pin) at boot, else the build's; a provisioning that changes
    // them restarts the board, so the engine always runs on what is stored.
    #[cfg(feature = "tls")]
    let tls_broker = {
        static TLS_BROKER: StaticCell<BrokerConfig> = StaticCell::new();
        &*TLS_BROKER.init(provisioner.in_force().broker.clone())
    };
    #[cfg(feature = "tls")]
    let tls_settings = rackwatch_firmware::tls::TlsSettings::of(tls_broker).unwrap_or_else(tls::built_in);
    #[cfg(feature = "tls")]
    console.log(format_args!(
        "tls: broker must prove it is {}, with {}",
        tls_settings.server_name,
        match tls_settings.trust {
            rackwatch_firmware::tls::Trust::Ca(_) => "a certificate from the CA",
            rackwatch_firmware::tls::Trust::Pin(_) => "the pinned CA last in its chain",
        }
    ));
    #[cfg(feature = "tls")]
    let tls_engine = core::pin::pin!(rackwatch_firmware::tls::engine(
        tls_pipe,
        tls_buffers,
        tls_settings,
        tls::rng(),
    ));
    #[cfg(feature = "tls")]
    let mut tls = rackwatch_firmware::tls::TlsClient::new(tls_pipe, tls_engine);

    let mut had_address = false;
    loop {
        let now = Instant::now().as_millis();
        #[cfg(feature = "tls")]
        let poll = node.poll(now, &mut devices[..], &mut tls.over(&mut link));
        #[cfg(not(feature = "tls"))]
        let poll = node.poll(now, &mut devices[..], &mut link);
        let mut received = [0u8; 64];
        while let Ok(count @ 1..) = usb_console::FROM_HOST.try_read(&mut received) {
            for &byte in received.get(..count).unwrap_or_default() {
                #[cfg(feature = "tls")]
                let mut transport = tls.over(&mut link);
                #[cfg(not(feature = "tls"))]
                let mut transport = &mut link;
                let applied = provisioner
                    .feed(byte, node, now, &mut transport, &mut usb_console::send)
                    .map(|config| (config.node.clone(), broker_endpoint(&config.broker)));
                #[cfg(feature = "tls")]
                if applied.is_some() && !provisioning::same_tls(&provisioner.in_force().broker, tls_broker) {
                    console.log(format_args!(
                        "provisioned TLS settings changed: resetting to apply them"
                    ));
                    // Let the USB task send the answer and the line, then reset (reason: forced).
                    Timer::after_millis(50).await;
                    watchdog.trigger_reset();
                }
                console.frames = provisioner.host_attached();
                if let Some((node_id, broker)) = applied {
                    link.set_broker(broker);
                    console.log(format_args!(
                        "provisioned as {node_id}, broker {}",
                        Broker(broker)
                    ));
                }
            }
        }
        while let Some(event) = node.next_event() {
            console.log(format_args!("{event}"));
            if let (Event::Connected { .. }, Ok(agent)) = (&event, &mut updates) {
                agent.connected(node);
            }
            if matches!(event, Event::Sampled { .. }) {
                console.readings(node);
            }
        }
        if link.has_address() != had_address {
            had_address = !had_address;
            console.log(format_args!(
                "dhcp: {}",
                if had_address {
                    "address leased"
                } else {
                    "address lost"
                }
            ));
        }
        // An update frame: written into DFU and answered, and the node polled again soon.
        let served = match &mut updates {
            Ok(agent) => agent.serve(node),
            Err(why) => match node.ota_frame() {
                Some(frame) => {
                    let answer = rackwatch_firmware::ota::unsupported(frame, why.reason());
                    node.answer_ota(answer);
                    true
                }
                None => false,
            },
        };
        led.show(now, node.identifying(now), node.is_online());
        if updates.as_ref().is_ok_and(|agent| agent.must_reset(now)) {
            console.log(format_args!(
                "the new image did not confirm in time: resetting to go back"
            ));
            Timer::after_millis(50).await;
            watchdog.trigger_reset();
        }
        if poll.reboot {
            console.log(format_args!("reboot requested, resetting"));
            // Let the USB task send the line, then reset through the watchdog (reason: forced).
            Timer::after_millis(50).await;
            watchdog.trigger_reset();
        }
        watchdog.feed(WATCHDOG_TIMEOUT);
        if served {
            // The next frame follows the answer: give the network tasks their turn, then poll again.
            embassy_futures::yield_now().await;
        } else {
            Timer::after(POLL_PERIOD).await;
        }
    }
}

#[embassy_executor::task]
async fn ethernet_task(runner: EthernetRunner) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, embassy_net_wiznet::Device<'static>>) -> ! {
    runner.run().await
}

/// Spawns a task; a task that cannot be spawned (its pool is taken) is a build error in disguise.
fn spawn<S>(spawner: &Spawner, token: Result<embassy_executor::SpawnToken<S>, embassy_executor::SpawnError>) {
    match token {
        Ok(token) => spawner.spawn(token),
        Err(_) => reset(),
    }
}

/// The on-board LED: blinks fast (4 Hz) while `identify` is on, stays lit while the node is connected
/// to its broker, and blinks slowly (1 Hz) while it is not.
struct Led(Output<'static>);

impl Led {
    fn show(&mut self, now_ms: u64, identifying: bool, online: bool) {
        let lit = match (identifying, online) {
            (true, _) => (now_ms / 125).is_multiple_of(2),
            (false, true) => true,
            (false, false) => (now_ms / 500).is_multiple_of(2),
        };
        self.0.set_level(if lit { Level::High } else { Level::Low });
    }
}

/// The USB console: plain lines until a provisioning host attaches, `Log` frames afterwards.
struct Console {
    frames: bool,
}

impl Console {
    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        let mut out = [0u8; 176];
        if let Some(bytes) = provisioning::console_line(self.frames, line, &mut out) {
            usb_console::send(bytes);
        }
    }

    /// The newest readings as a `Telemetry` frame, once a host is attached (`rackwatch node console`).
    fn readings(&mut self, node: &Node<RING>) {
        let Some(telemetry) = node.last_telemetry().filter(|_| self.frames) else {
            return;
        };
        let mut body = [0u8; 1024];
        let mut out = [0u8; 1040];
        if let Some(frame) = provisioning::telemetry_frame(&telemetry, &mut body, &mut out) {
            usb_console::send(frame);
        }
    }
}

/// The channels the probe found, a line each part, for the console.
fn log_channels(console: &mut Console, found: &sensors::Found) {
    if found.channels.is_empty() {
        console.log(format_args!("sensors: none found on I2C0 (GP4 SDA, GP5 SCL)"));
    }
    let mut line: heapless::String<160> = heapless::String::new();
    for setup in &found.channels {
        let _ = write!(line, " {}/{:?}", setup.channel.name, setup.channel.measurement);
    }
    console.log(format_args!(
        "sensors: {} parts, {} channels:{line}",
        found.parts.len(),
        found.channels.len()
    ));
    if found.left_out > 0 {
        console.log(format_args!("sensors: {} left out (no room)", found.left_out));
    }
}

/// The broker address of a configuration: this board has no DNS (the core's `tls_ipv4_broker` or
/// `plain_ipv4_broker`, as the build has TLS, which its board check applied before storing it).
fn broker_endpoint(broker: &BrokerConfig) -> Option<IpEndpoint> {
    #[cfg(feature = "tls")]
    let (address, port) = provisioning::tls_ipv4_broker(broker).ok()?;
    #[cfg(not(feature = "tls"))]
    let (address, port) = provisioning::plain_ipv4_broker(broker).ok()?;
    Some(IpEndpoint::new(address.into(), port))
}

/// The configuration of a node never provisioned: `lab`, `pico-<mac>`, no broker (the build may name
/// one with `RACKWATCH_BROKER=a.b.c.d:port`), the core's default interval.
fn defaults(mac: [u8; 6]) -> rackwatch_protocols::NodeConfig {
    let (host, port) = option_env!("RACKWATCH_BROKER")
        .and_then(|broker| broker.split_once(':'))
        .and_then(|(host, port)| Some((heapless::String::try_from(host).ok()?, port.parse().ok()?)))
        .unwrap_or((heapless::String::new(), 1883));
    rackwatch_protocols::NodeConfig {
        version: rackwatch_protocols::VERSION,
        node: NodeId::new(&hex("pico-", &mac)).unwrap_or_else(|_| reset()),
        site: SiteId::new(DEFAULT_SITE).unwrap_or_else(|_| reset()),
        location: rackwatch_protocols::Location::default(),
        interval_ms: rackwatch_firmware::DEFAULT_INTERVAL_MS,
        broker: BrokerConfig {
            // A TLS build speaks only TLS: to the build's broker name and CA until provisioned.
            tls: cfg!(feature = "tls"),
            ..BrokerConfig::plain(host, port)
        },
        channels: heapless::Vec::new(),
    }
}

/// `prefix` followed by `bytes` in lower-case hex.
fn hex(prefix: &str, bytes: &[u8]) -> heapless::String<24> {
    let mut text = heapless::String::new();
    let _ = text.push_str(prefix);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// A boot id from the ring oscillator's jitter (RP2040 datasheet 2.17.5, RANDOMBIT).
/// The broker's identity and the handshake's randomness, with TLS.
#[cfg(feature = "tls")]
mod tls {
    use rackwatch_firmware::tls::{SeededRng, TlsSettings, Trust};

    /// The broker's host name its certificate must carry.
    const BROKER_NAME: &str = env!("RACKWATCH_BROKER_NAME");
    /// The CA that signed the broker's certificate (DER).
    const BROKER_CA: &[u8] = include_bytes!(env!("RACKWATCH_BROKER_CA"));

    /// The build's broker name and CA: the trust of a node not provisioned with TLS.
    pub fn built_in() -> TlsSettings<'static> {
        TlsSettings {
            server_name: BROKER_NAME,
            trust: Trust::Ca(BROKER_CA),
        }
    }

    /// 32 bytes from the RP2040's ring oscillator random bit (`RoscRng`).
    pub fn rng() -> SeededRng {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut embassy_rp::clocks::RoscRng, &mut seed);
        SeededRng::new(seed)
    }
}

fn boot_id() -> u32 {
    rand_core::RngCore::next_u32(&mut embassy_rp::clocks::RoscRng)
}

/// A broker for the console: the address, or "none".
struct Broker(Option<IpEndpoint>);

impl core::fmt::Display for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(endpoint) => write!(f, "{endpoint}"),
            None => f.write_str("none (provision one)"),
        }
    }
}

/// Resets the chip (ARMv6-M ARM B3.2.6, AIRCR.SYSRESETREQ).
fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// On panic, reset: a node that reboots at once is back on the bus sooner than the watchdog would
/// make it.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    reset()
}
