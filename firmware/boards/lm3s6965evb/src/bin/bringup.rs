//! Bring-up for QEMU's lm3s6965evb: proves every driver of the board module once, then keeps reporting
//! the inlet temperature every second while feeding the watchdog.
//!
//! Console commands: `t` reads the temperature now, `w` stops feeding the watchdog (the board resets
//! about two seconds later and the banner appears again), `p` panics (the panic handler prints and resets
//! through SYSRESETREQ), `q` ends QEMU through semihosting.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{I2c, NoAcknowledgeSource};
use rackwatch_board_lm3s6965evb::board::{self, Board, I2c0, I2cError, Uart0Tx};
use rackwatch_board_lm3s6965evb::link::{self, GATEWAY, NODE_ADDRESS, NODE_PREFIX};
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, IpAddress};

/// TCP port of the gateway's broker, reached through QEMU's user networking at 10.0.2.2 (the host's
/// loopback). Set at build time with `RACKWATCH_BROKER_PORT`; MQTT's registered port otherwise.
const BROKER_PORT: u16 = port_from_env(option_env!("RACKWATCH_BROKER_PORT"));
const LOCAL_PORT: u16 = 49_152;

/// TMP105 (TI SBOS363): temperature register, two bytes, 12-bit two's complement left-justified, 1/16 °C.
const TMP105: u8 = 0x48;
const TMP105_TEMPERATURE: u8 = 0x00;
/// Configuration register: R1:R0 = 11 selects 12-bit resolution (power-on default is 9-bit, 0.5 °C).
const TMP105_CONFIGURATION: u8 = 0x01;
const TMP105_12_BIT: u8 = 0b0110_0000;
/// ADM1272 hot-swap controller (PMBus): READ_VIN, a little-endian word in direct format.
const ADM1272: u8 = 0x10;
const PMBUS_READ_VIN: u8 = 0x88;
/// MAX31785 fan controller (PMBus): PMBUS_REVISION and MFR_ID, one byte each.
const MAX31785: u8 = 0x52;
const PMBUS_REVISION: u8 = 0x98;
const PMBUS_MFR_ID: u8 = 0x99;
/// Nothing answers here on the QEMU command line of the README: proves the NACK path.
const ABSENT_DEVICE: u8 = 0x50;

const WATCHDOG_TIMEOUT_MS: u32 = 2_000;
const REPORT_PERIOD_MS: u64 = 1_000;
const RECONNECT_PERIOD_MS: u64 = 2_000;

#[allow(clippy::panic, reason = "const evaluation: a malformed port fails the build")]
const fn port_from_env(text: Option<&str>) -> u16 {
    let Some(text) = text else { return 1883 };
    let mut digits = text.as_bytes();
    let mut port: u32 = 0;
    assert!(!digits.is_empty(), "RACKWATCH_BROKER_PORT is empty");
    while let [digit, rest @ ..] = digits {
        assert!(digit.is_ascii_digit(), "RACKWATCH_BROKER_PORT is not a number");
        port = port * 10 + (*digit - b'0') as u32;
        assert!(port <= u16::MAX as u32, "RACKWATCH_BROKER_PORT is above 65535");
        digits = rest;
    }
    port as u16
}

#[entry]
fn main() -> ! {
    let Some(Board {
        mut i2c,
        console,
        ethernet: mut nic,
        mut clock,
        mut watchdog,
    }) = Board::take()
    else {
        board::reset()
    };
    let (mut console, mut keys) = console.split();
    let mac = nic.mac_address();
    let station = EthernetAddress(mac);
    let _ = write!(
        console,
        "\r\nrackwatch bring-up on lm3s6965evb (QEMU), SYSCLK {} Hz, MAC {station}\r\n",
        board::SYSCLK_HZ,
    );

    watchdog.start(WATCHDOG_TIMEOUT_MS);
    let _ = write!(console, "watchdog: armed, {WATCHDOG_TIMEOUT_MS} ms\r\n");

    let before = clock.now_ms();
    clock.delay_ms(50);
    let _ = write!(
        console,
        "clock: delay_ms(50) took {} ms\r\n",
        clock.now_ms() - before
    );

    if let Err(error) = i2c.write(TMP105, &[TMP105_CONFIGURATION, TMP105_12_BIT]) {
        let _ = write!(console, "tmp105@0x48: configuration: {error:?}\r\n");
    }
    report_temperature(&mut i2c, &mut console);
    let mut word = [0; 2];
    match i2c.write_read(ADM1272, &[PMBUS_READ_VIN], &mut word) {
        Ok(()) => {
            let _ = write!(
                console,
                "adm1272@0x10: READ_VIN raw 0x{:04x}\r\n",
                u16::from_le_bytes(word)
            );
        }
        Err(error) => {
            let _ = write!(console, "adm1272@0x10: {error:?}\r\n");
        }
    }
    for (name, command) in [("PMBUS_REVISION", PMBUS_REVISION), ("MFR_ID", PMBUS_MFR_ID)] {
        let mut byte = [0; 1];
        match i2c.write_read(MAX31785, &[command], &mut byte) {
            Ok(()) => {
                let _ = write!(console, "max31785@0x52: {name} raw 0x{:02x}\r\n", byte[0]);
            }
            Err(error) => {
                let _ = write!(console, "max31785@0x52: {name} {error:?}\r\n");
            }
        }
    }
    let verdict = match i2c.write(ABSENT_DEVICE, &[0]) {
        Err(I2cError::NoAcknowledge(NoAcknowledgeSource::Address)) => "NACK on address, as expected",
        Err(_) => "unexpected error",
        Ok(()) => "unexpectedly acknowledged",
    };
    let _ = write!(
        console,
        "i2c: probe of absent 0x{ABSENT_DEVICE:02x}: {verdict}\r\n"
    );

    // smoltcp: static address on QEMU's user network, the broker behind the gateway.
    let seed = u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]) ^ clock.now_ms();
    let mut interface = link::interface(&mut nic, mac, seed, clock.now());

    let (Some(storage), Some(rx_buffer), Some(tx_buffer)) = (
        cortex_m::singleton!(: [SocketStorage<'static>; 1] = [SocketStorage::EMPTY; 1]),
        cortex_m::singleton!(: [u8; 1024] = [0; 1024]),
        cortex_m::singleton!(: [u8; 1024] = [0; 1024]),
    ) else {
        board::reset()
    };
    let mut sockets = SocketSet::new(&mut storage[..]);
    let tcp_handle = sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx_buffer[..]),
        tcp::SocketBuffer::new(&mut tx_buffer[..]),
    ));
    let broker = (IpAddress::Ipv4(GATEWAY), BROKER_PORT);
    let _ = write!(
        console,
        "net: {NODE_ADDRESS}/{NODE_PREFIX} via {GATEWAY}, connecting to {GATEWAY}:{BROKER_PORT}\r\n"
    );

    let mut line_sent = false;
    let mut reconnect_at = 0;
    let mut last_state = tcp::State::Closed;
    let mut next_report = clock.now_ms() + REPORT_PERIOD_MS;
    let mut feeding = true;
    loop {
        let now = clock.now_ms();
        interface.poll(clock.now(), &mut nic, &mut sockets);

        let socket = sockets.get_mut::<tcp::Socket>(tcp_handle);
        if socket.state() != last_state {
            last_state = socket.state();
            let _ = write!(console, "tcp: {last_state}\r\n");
        }
        if !line_sent && socket.state() == tcp::State::Closed && now >= reconnect_at {
            reconnect_at = now + RECONNECT_PERIOD_MS;
            if let Err(error) = socket.connect(interface.context(), broker, LOCAL_PORT) {
                let _ = write!(console, "tcp: connect: {error}\r\n");
            }
        }
        if !line_sent && socket.can_send() {
            let mut line: heapless::String<96> = heapless::String::new();
            let _ = writeln!(line, "rackwatch lm3s6965evb {station} up {now} ms");
            match socket.send_slice(line.as_bytes()) {
                Ok(sent) => {
                    let _ = write!(console, "tcp: sent {sent} bytes to {GATEWAY}:{BROKER_PORT}\r\n");
                    line_sent = true;
                    socket.close();
                }
                Err(error) => {
                    let _ = write!(console, "tcp: send: {error}\r\n");
                }
            }
        }

        if now >= next_report {
            next_report += REPORT_PERIOD_MS;
            report_temperature(&mut i2c, &mut console);
        }
        if feeding {
            watchdog.feed();
        }

        match keys.try_read_byte() {
            Ok(Some(b't')) => report_temperature(&mut i2c, &mut console),
            Ok(Some(b'w')) => {
                feeding = false;
                let _ = write!(
                    console,
                    "watchdog: no longer fed, reset in about {WATCHDOG_TIMEOUT_MS} ms\r\n"
                );
            }
            Ok(Some(b'p')) => panic_on_request(),
            Ok(Some(b'q')) => {
                let _ = write!(console, "bye\r\n");
                board::exit_qemu(true)
            }
            Ok(_) => {}
            Err(error) => {
                let _ = write!(console, "console: {error}\r\n");
            }
        }
    }
}

/// Reads the TMP105 raw through the I2C driver and prints it in °C.
fn report_temperature(i2c: &mut I2c0, console: &mut Uart0Tx) {
    let mut raw = [0; 2];
    match i2c.write_read(TMP105, &[TMP105_TEMPERATURE], &mut raw) {
        Ok(()) => {
            // Arithmetic shift keeps the sign of the 12-bit value; 1/16 °C = 62.5 m°C.
            let sixteenths = i32::from(i16::from_be_bytes(raw) >> 4);
            let millidegrees = sixteenths * 625 / 10;
            let sign = if millidegrees < 0 { "-" } else { "" };
            let magnitude = millidegrees.unsigned_abs();
            let _ = write!(
                console,
                "tmp105@0x48: raw 0x{:04x} = {sign}{}.{:03} C\r\n",
                u16::from_be_bytes(raw),
                magnitude / 1000,
                magnitude % 1000
            );
        }
        Err(error) => {
            let _ = write!(console, "tmp105@0x48: {error:?}\r\n");
        }
    }
}

#[allow(
    clippy::panic,
    reason = "proves the panic handler and the SYSRESETREQ reset on request"
)]
fn panic_on_request() -> ! {
    panic!("requested from the console")
}
