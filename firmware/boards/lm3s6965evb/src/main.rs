//! The rackwatch sensor node on QEMU's lm3s6965evb: the TMP105, ADM1272 and MAX31785 on I2C0, MQTT to
//! the broker over the Ethernet MAC and smoltcp, log lines on UART0, the watchdog fed by the main loop.
//!
//! This file only wires the board to the application core (`rackwatch_firmware::Node`): it builds the
//! drivers from a device table, names the channels, and polls the network and the node in one loop.
//! Provisioning frames on UART0 (`rackwatch node provision`) are fed to the core's `Provisioner`
//! between polls. The configuration store lives in a host file named by `-append flash=PATH`
//! (`board::flash`), so a provisioned node boots on its configuration after a reset, a `reboot`
//! command or a restart of QEMU; with no stored configuration (or both slots corrupt) the `-append`
//! settings apply, and the console and birth message say why.
//! A loop that stops (a wedged bus, a bug) stops feeding the watchdog, which resets the node.
#![no_std]
#![no_main]

use core::cell::RefCell;
use core::fmt::Write as _;

use cortex_m_rt::entry;
use embedded_hal_bus::i2c::RefCellDevice;
use rackwatch_board_lm3s6965evb::board::flash::{BoardFlash, HostFlash};
use rackwatch_board_lm3s6965evb::board::{self, Board, Clock, I2c0, Uart0Tx};
use rackwatch_board_lm3s6965evb::link::{self, TcpLink};
use rackwatch_board_lm3s6965evb::settings::{self, Settings};
use rackwatch_firmware::config_store::ConfigStore;
use rackwatch_firmware::ota::{self, FirmwareReport};
use rackwatch_firmware::provisioning::{self, Provisioner};
use rackwatch_firmware::{ChannelSetup, Filter, Node, NodeConfig};
use rackwatch_hardware::adm1272::Adm1272Config;
use rackwatch_hardware::device::{Device, DeviceConfig};
use rackwatch_hardware::tmp105::Resolution;
use rackwatch_hardware::{Channel, Measurement};
use rackwatch_protocols::{BrokerConfig, ChannelName, ConfigOrigin};
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// Longer than any one loop iteration, including a whole I2C sampling round and a JSON encode.
const WATCHDOG_TIMEOUT_MS: u32 = 2_000;
/// Store-and-forward capacity: 128 records of 112 bytes (14 KiB), 21 minutes at the default 10 s.
#[cfg(not(feature = "tls"))]
const RING: usize = rackwatch_firmware::DEFAULT_RING_CAPACITY;
/// With TLS, 64 records (7 KiB, 10 minutes): with the full ring the handshake's stack (the engine future
/// and P-256 arithmetic) ran into the statics in QEMU (firmware/README.md, "TLS to the broker").
#[cfg(feature = "tls")]
const RING: usize = rackwatch_firmware::DEFAULT_RING_CAPACITY / 2;

/// The parts on the bus, in the order of QEMU's `-device` options (so `device[N]` in QMP is index N).
const PARTS: [DeviceConfig; 3] = [
    DeviceConfig::Tmp105 {
        address: 0x48,
        resolution: Resolution::Bits12,
    },
    DeviceConfig::Adm1272 {
        address: 0x10,
        config: Adm1272Config {
            voltage_range: rackwatch_hardware::adm1272::VoltageRange::V100,
            current_sense_range: rackwatch_hardware::adm1272::CurrentSenseRange::Mv30,
            sense_resistor_milliohm: 0.3,
        },
        monitor_vout_and_temperature: false,
    },
    DeviceConfig::Max31785 { address: 0x52 },
];
const INLET: u8 = 0;
const HOT_SWAP: u8 = 1;
const FANS: u8 = 2;

type Bus<'a> = RefCellDevice<'a, I2c0>;
/// A slot of the configuration store (one flash page): a configuration's JSON with a few calibrated
/// channels fits.
const CONFIG_SLOT: usize = 1024;
type Flash = BoardFlash<{ 2 * CONFIG_SLOT }>;

#[entry]
fn main() -> ! {
    let Some(Board {
        i2c,
        console,
        ethernet: mut nic,
        clock,
        mut watchdog,
    }) = Board::take()
    else {
        board::reset()
    };
    let (console, mut keys) = console.split();
    let mut console = Console {
        tx: console,
        frames: false,
    };
    watchdog.start(WATCHDOG_TIMEOUT_MS);
    let mac = nic.mac_address();

    let mut settings = Settings::defaults(mac);
    let mut line = [0u8; 384];
    let command_line = board::command_line(&mut line).unwrap_or_default();
    if let Err(bad) = settings.apply_overrides(command_line) {
        console.log(format_args!("settings: {} ignored (bad value)", bad.0));
    }
    let boot = boot_id(mac, &clock);

    // The configuration: the stored one, else the settings (and why).
    let flash = match settings::flash_path(command_line).map(HostFlash::open) {
        Some(Ok(flash)) => BoardFlash::Host(flash),
        found => {
            let why = match found {
                Some(_) => "cannot open the flash= file",
                None => "no flash= on the command line",
            };
            console.log(format_args!(
                "flash: {why}; running on the settings, provisioning refused"
            ));
            BoardFlash::Absent
        }
    };
    let Ok(store) = ConfigStore::new(flash, 0) else {
        board::reset()
    };
    let Some(provisioner) = cortex_m::singleton!(: Provisioner<Flash, CONFIG_SLOT> =
        Provisioner::new(store, initial_config(&settings), check_broker))
    else {
        board::reset()
    };
    let origin = provisioner.origin();
    let in_force = provisioner.in_force();
    if let Some(broker) = broker_endpoint(&in_force.broker) {
        settings.broker = broker;
    }
    console.log(format_args!(
        "rackwatch node {} on lm3s6965evb, site {}, boot {boot:08x}, broker {}, every {} ms",
        in_force.node, in_force.site, settings.broker, in_force.interval_ms
    ));
    console.log(format_args!("configuration: {}", origin.describe()));

    // The sensors: one driver per part, sharing I2C0 (single thread, no interrupts on the bus).
    let bus = RefCell::new(i2c);
    let mut devices: [Device<Bus<'_>, Clock>; 3] =
        PARTS.map(|part| part.build(RefCellDevice::new(&bus), clock));
    for (index, (device, part)) in devices.iter_mut().zip(PARTS.iter()).enumerate() {
        if let Err(fault) = device.init(part) {
            console.log(format_args!("sensor setup of device {index}: {fault}"));
        }
    }
    let channels = channels();

    let mut config = NodeConfig::new(in_force.site.clone(), in_force.node.clone(), boot);
    config.interval_ms = in_force.interval_ms;
    config.config_origin = Some(origin);
    config.serial = heapless::String::try_from("LM3S6965-")
        .ok()
        .and_then(|mut serial| {
            let [.., d, e, f] = mac;
            write!(serial, "{d:02X}{e:02X}{f:02X}").ok().map(|()| serial)
        });
    let node = static_node(config, &channels);
    // QEMU keeps the flash read-only and this board has no second slot: it takes `ota` frames only to
    // answer `unsupported`, so the gateway shows it as not updatable instead of timing out on it.
    node.accept_updates(FirmwareReport {
        slot: None,
        last: None,
    });
    if origin == ConfigOrigin::Provisioned
        && let Err(reason) = node.adopt_provisioned(provisioner.in_force(), 0)
    {
        console.log(format_args!("stored calibration not applied: {reason}"));
    }

    // smoltcp: static address on QEMU's user network, default route to its gateway.
    let seed = u64::from(boot) << 32 | u64::from(boot.rotate_left(16));
    let mut interface = link::interface(&mut nic, mac, seed, clock.now());
    let (Some(storage), Some(rx_buffer), Some(tx_buffer)) = (
        cortex_m::singleton!(: [SocketStorage<'static>; 1] = [SocketStorage::EMPTY; 1]),
        cortex_m::singleton!(: [u8; 1024] = [0; 1024]),
        cortex_m::singleton!(: [u8; 2048] = [0; 2048]),
    ) else {
        board::reset()
    };
    let mut sockets = SocketSet::new(&mut storage[..]);
    let socket = sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx_buffer[..]),
        tcp::SocketBuffer::new(&mut tx_buffer[..]),
    ));
    let mut local_port = 0;
    let mut identifying = false;

    // TLS: the engine future lives on this stack frame, its buffers in a static (tls.rs).
    #[cfg(feature = "tls")]
    let Some(tls_state) = cortex_m::singleton!(: rackwatch_firmware::tls::TlsState =
        rackwatch_firmware::tls::TlsState::new())
    else {
        board::reset()
    };
    #[cfg(feature = "tls")]
    let (tls_pipe, tls_buffers) = tls_state.parts();
    #[cfg(feature = "tls")]
    let tls_engine = core::pin::pin!(rackwatch_firmware::tls::engine(
        tls_pipe,
        tls_buffers,
        tls::settings(),
        tls::rng(boot, &clock),
    ));
    #[cfg(feature = "tls")]
    let mut tls = rackwatch_firmware::tls::TlsClient::new(tls_pipe, tls_engine);
    #[cfg(feature = "tls")]
    console.log(format_args!("tls: broker must prove it is {}", tls::BROKER_NAME));

    loop {
        let now = clock.now_ms();
        interface.poll(clock.now(), &mut nic, &mut sockets);
        let tcp = TcpLink {
            interface: &mut interface,
            sockets: &mut sockets,
            socket,
            broker: settings.broker,
            local_port: &mut local_port,
        };
        #[cfg(feature = "tls")]
        let poll = node.poll(now, &mut devices[..], &mut tls.over(tcp));
        #[cfg(not(feature = "tls"))]
        let poll = node.poll(now, &mut devices[..], &mut { tcp });
        if let Some(frame) = node.ota_frame() {
            let answer = ota::unsupported(frame, "QEMU keeps this board's flash read-only");
            node.answer_ota(answer);
            console.log(format_args!("firmware update refused: {}", answer.reason));
        }
        // Send what the node queued now rather than on the next turn.
        interface.poll(clock.now(), &mut nic, &mut sockets);
        while let Ok(Some(byte)) = keys.try_read_byte() {
            let tcp = TcpLink {
                interface: &mut interface,
                sockets: &mut sockets,
                socket,
                broker: settings.broker,
                local_port: &mut local_port,
            };
            #[cfg(feature = "tls")]
            let mut link = tls.over(tcp);
            #[cfg(not(feature = "tls"))]
            let mut link = tcp;
            let mut send = |frame: &[u8]| {
                let _ = embedded_io::Write::write_all(&mut console.tx, frame);
            };
            let applied = provisioner
                .feed(byte, node, now, &mut link, &mut send)
                .map(|config| (config.node.clone(), broker_endpoint(&config.broker)));
            console.frames = provisioner.host_attached();
            if let Some((node_id, broker)) = applied {
                settings.broker = broker.unwrap_or(settings.broker);
                console.log(format_args!("provisioned as {node_id}"));
            }
        }
        while let Some(event) = node.next_event() {
            console.log(format_args!("{event}"));
            if matches!(event, rackwatch_firmware::Event::Sampled { .. }) {
                console.readings(node);
            }
        }
        if node.identifying(now) != identifying {
            identifying = !identifying;
            // The evaluation board's status LED would blink; QEMU has none to show.
            console.log(format_args!(
                "identify: {}",
                if identifying { "on" } else { "off" }
            ));
        }
        if poll.reboot {
            console.log(format_args!("reboot requested, resetting"));
            board::reset();
        }
        watchdog.feed();
    }
}

/// The broker's identity and the handshake's randomness, with TLS.
#[cfg(feature = "tls")]
mod tls {
    use rackwatch_board_lm3s6965evb::board::{self, Clock};
    use rackwatch_firmware::tls::{SeededRng, TlsSettings, Trust};

    /// The broker's host name its certificate must carry.
    pub const BROKER_NAME: &str = env!("RACKWATCH_BROKER_NAME");
    /// The CA that signed the broker's certificate (DER).
    const BROKER_CA: &[u8] = include_bytes!(env!("RACKWATCH_BROKER_CA"));

    pub fn settings() -> TlsSettings<'static> {
        TlsSettings {
            server_name: BROKER_NAME,
            trust: Trust::Ca(BROKER_CA),
        }
    }

    /// The LM3S6965 has no RNG: 32 bytes of the host's /dev/urandom (semihosting), mixed with the
    /// boot id and the clock in case the host gives none.
    pub fn rng(boot: u32, clock: &Clock) -> SeededRng {
        let mut seed = [0u8; 32];
        for (index, chunk) in seed.chunks_mut(8).enumerate() {
            let mix = board::host_random().unwrap_or(0) ^ u64::from(boot) << index ^ clock.now_ms();
            chunk.copy_from_slice(&mix.to_le_bytes());
        }
        SeededRng::new(seed)
    }
}

/// The node, in a static, not on the stack: the ring and packet buffers are most of the RAM budget.
/// Not inlined, so the value built on the way (as large as the node) lives in this frame, popped on
/// return, not in `main`'s, which never returns: that is stack the TLS handshake needs.
#[inline(never)]
fn static_node(config: NodeConfig, channels: &[ChannelSetup]) -> &'static mut Node<RING> {
    let Some(node) = cortex_m::singleton!(: Node<RING> = match Node::new(config, channels) {
        Ok(node) => node,
        Err(_) => board::reset(),
    }) else {
        board::reset()
    };
    node
}

/// What the node reports: the inlet air, the 48 V feed and fan 0.
fn channels() -> heapless::Vec<ChannelSetup, { rackwatch_firmware::MAX_CHANNELS }> {
    let mut channels = heapless::Vec::new();
    let table: [(&str, u8, Measurement, u8, Filter); 6] = [
        // 12 bits: 1/16 °C, exact in 4 decimals.
        ("inlet", INLET, Measurement::Temperature, 4, Filter::None),
        ("psu_in", HOT_SWAP, Measurement::InputVoltage, 3, Filter::None),
        ("psu_in", HOT_SWAP, Measurement::Current, 3, Filter::None),
        // Hot-swap power readings spike with load transients: a median of 3 drops single spikes.
        ("psu_in", HOT_SWAP, Measurement::Power, 3, Filter::Median(3)),
        ("fan0", FANS, Measurement::FanSpeed { fan: 0 }, 0, Filter::None),
        (
            "fan0",
            FANS,
            Measurement::FanDutyCommanded { fan: 0 },
            2,
            Filter::None,
        ),
    ];
    for (name, device, measurement, decimals, filter) in table {
        if let Ok(name) = ChannelName::new(name) {
            let _ = channels.push(
                ChannelSetup::new(Channel::new(name, device, measurement))
                    .with_decimals(decimals)
                    .with_filter(filter),
            );
        }
    }
    channels
}

/// A boot id that differs from boot to boot: the LM3S6965 has no random number generator, so it mixes
/// the MAC address, the host's random bytes and clock (semihosting) and the time start-up took.
fn boot_id(mac: [u8; 6], clock: &Clock) -> u32 {
    let [a, b, c, d, e, f] = mac;
    let mut x = u64::from_le_bytes([a, b, c, d, e, f, 0, 0])
        ^ u64::from(board::host_time_s().unwrap_or(0)) << 20
        ^ board::host_random().unwrap_or(0)
        ^ clock.now_ms();
    // SplitMix64 finaliser: every input bit moves every output bit.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 32) as u32 ^ x as u32
}

/// UART0's transmit side: plain log lines, or `Log` frames once a provisioning host is attached.
struct Console {
    tx: Uart0Tx,
    frames: bool,
}

impl Console {
    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        let mut out = [0u8; 176];
        if let Some(bytes) = provisioning::console_line(self.frames, line, &mut out) {
            let _ = embedded_io::Write::write_all(&mut self.tx, bytes);
        }
    }

    /// The newest readings as a `Telemetry` frame, once a host is attached (`rackwatch node console`).
    fn readings(&mut self, node: &Node<RING>) {
        if !self.frames {
            return;
        }
        let Some(telemetry) = node.last_telemetry() else {
            return;
        };
        let mut body = [0u8; CONFIG_SLOT];
        let mut out = [0u8; CONFIG_SLOT + 16];
        if let Some(frame) = provisioning::telemetry_frame(&telemetry, &mut body, &mut out) {
            let _ = embedded_io::Write::write_all(&mut self.tx, frame);
        }
    }
}

/// The [`provisioning::BoardCheck`] of this board: no DNS, and no provisioned TLS. The TLS build
/// links and fits the flash, but the handshake (P-256 and the certificate checks) overruns the stack
/// in QEMU, so a configuration asking for TLS is refused with that reason rather than stored.
fn check_broker(config: &rackwatch_protocols::NodeConfig) -> Result<(), &'static str> {
    if config.broker.tls {
        return Err("no TLS on this board: the handshake overruns its stack");
    }
    provisioning::check_plain_ipv4_broker(config)
}

/// The broker address of a configuration: this board has neither TLS nor DNS (the core's
/// `plain_ipv4_broker`, which `check_plain_ipv4_broker` applied before the configuration was stored).
fn broker_endpoint(broker: &BrokerConfig) -> Option<IpEndpoint> {
    let (address, port) = provisioning::plain_ipv4_broker(broker).ok()?;
    Some(IpEndpoint::new(IpAddress::Ipv4(address), port))
}

/// The configuration in force before any provisioning: the settings, nothing calibrated.
fn initial_config(settings: &Settings) -> rackwatch_protocols::NodeConfig {
    let mut host = heapless::String::new();
    let _ = write!(host, "{}", settings.broker.addr);
    rackwatch_protocols::NodeConfig {
        version: rackwatch_protocols::VERSION,
        node: settings.node.clone(),
        site: settings.site.clone(),
        location: rackwatch_protocols::Location::default(),
        interval_ms: settings.interval_ms,
        broker: BrokerConfig::plain(host, settings.broker.port),
        channels: heapless::Vec::new(),
    }
}
