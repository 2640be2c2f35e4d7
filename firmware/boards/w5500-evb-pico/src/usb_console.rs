//! The console and provisioning port: USB CDC-ACM on the RP2040's USB device (the Pico's micro-USB
//! socket), so a Linux host sees `/dev/ttyACM0` and `rackwatch node list/provision/console` work as on
//! a UART. The frames are the UART's (protocols/README.md, "Serial frames"); CDC-ACM has no baud
//! rate, so whatever the host sets is ignored.
//!
//! Two pipes decouple the USB tasks from the main loop, which never waits on USB: [`FROM_HOST`]
//! carries received bytes to the provisioner, [`TO_HOST`] carries log lines and answers out. With
//! no host reading, `TO_HOST` fills and further lines are dropped whole (never cut mid-frame).

use embassy_futures::select::select;
use embassy_rp::peripherals::USB;
use embassy_rp::usb::Driver;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::pipe::Pipe;
use embassy_usb::class::cdc_acm::{CdcAcmClass, Receiver, Sender, State};
use embassy_usb::driver::EndpointError;
use embassy_usb::{Builder, UsbDevice};
use static_cell::StaticCell;

/// Bytes from the host, for the provisioner.
pub static FROM_HOST: Pipe<CriticalSectionRawMutex, 512> = Pipe::new();
/// Bytes for the host: console lines, answers, readings.
pub static TO_HOST: Pipe<CriticalSectionRawMutex, 4096> = Pipe::new();

/// pid.codes' test VID/PID (1209:0001), free for development; a product run needs its own PID.
const VENDOR_ID: u16 = 0x1209;
const PRODUCT_ID: u16 = 0x0001;
/// Full-speed bulk packets. Packets of 63 bytes at most are sent, so no transfer ever ends on a full
/// packet and needs a zero-length one to end it (USB 2.0 section 5.8.3).
const PACKET: u16 = 64;
const CHUNK: usize = 63;

/// The USB device on `driver`, with one CDC-ACM function whose serial number is `serial`.
pub fn build(
    driver: Driver<'static, USB>,
    serial: &'static str,
) -> (
    UsbDevice<'static, Driver<'static, USB>>,
    CdcAcmClass<'static, Driver<'static, USB>>,
) {
    static CONFIG_DESCRIPTOR: StaticCell<[u8; 256]> = StaticCell::new();
    static BOS_DESCRIPTOR: StaticCell<[u8; 256]> = StaticCell::new();
    static CONTROL: StaticCell<[u8; 64]> = StaticCell::new();
    static CDC_STATE: StaticCell<State<'static>> = StaticCell::new();

    let mut config = embassy_usb::Config::new(VENDOR_ID, PRODUCT_ID);
    config.manufacturer = Some("rackwatch");
    config.product = Some("rackwatch sensor node");
    config.serial_number = Some(serial);
    config.max_power = 100;
    let mut builder = Builder::new(
        driver,
        config,
        CONFIG_DESCRIPTOR.init([0; 256]),
        BOS_DESCRIPTOR.init([0; 256]),
        &mut [],
        CONTROL.init([0; 64]),
    );
    let class = CdcAcmClass::new(&mut builder, CDC_STATE.init(State::new()), PACKET);
    (builder.build(), class)
}

/// Runs the USB device (enumeration, control requests).
#[embassy_executor::task]
pub async fn device(mut device: UsbDevice<'static, Driver<'static, USB>>) -> ! {
    device.run().await
}

/// Moves bytes between the CDC-ACM endpoints and the pipes while a host has the port open.
#[embassy_executor::task]
pub async fn serial(class: CdcAcmClass<'static, Driver<'static, USB>>) -> ! {
    let (mut sender, mut receiver) = class.split();
    loop {
        receiver.wait_connection().await;
        // Either side ends when the host goes away (unplugged, port closed); wait for the next.
        let _ = select(from_host(&mut receiver), to_host(&mut sender)).await;
    }
}

async fn from_host(receiver: &mut Receiver<'static, Driver<'static, USB>>) -> Result<(), EndpointError> {
    let mut packet = [0u8; PACKET as usize];
    loop {
        let len = receiver.read_packet(&mut packet).await?;
        FROM_HOST.write_all(packet.get(..len).unwrap_or_default()).await;
    }
}

async fn to_host(sender: &mut Sender<'static, Driver<'static, USB>>) -> Result<(), EndpointError> {
    let mut chunk = [0u8; CHUNK];
    loop {
        let len = TO_HOST.read(&mut chunk).await;
        sender.write_packet(chunk.get(..len).unwrap_or_default()).await?;
    }
}

/// Queues `bytes` for the host whole, or drops them when the pipe has no room for all of them.
pub fn send(bytes: &[u8]) {
    if TO_HOST.free_capacity() < bytes.len() {
        return;
    }
    let mut rest = bytes;
    // The pipe is a ring: a write may stop at its end, the rest goes in at its start.
    while let Ok(written @ 1..) = TO_HOST.try_write(rest) {
        rest = rest.get(written..).unwrap_or_default();
    }
}
