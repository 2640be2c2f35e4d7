//! The Ethernet MAC (LM3S6965 datasheet chapter 16) as a smoltcp device, polled.
//!
//! FIFO formats, as the datasheet (16.3.1.1/16.3.1.2, "Transmit/Receive FIFO") describes them and
//! QEMU 7.2's `hw/net/stellaris_enet.c` implements them, little-endian words through MACDATA:
//! - **Receive**: the first half-word is the FIFO length of the frame: frame bytes, plus 2 for this
//!   length, plus 4 for the FCS. The frame (destination MAC first) follows from byte 2, then the FCS,
//!   then padding to a whole word. The driver drops the FCS.
//! - **Transmit**: the first half-word is the *payload* length = frame bytes − 14 (the Ethernet header is
//!   not counted); the frame follows from byte 2. With TCTL.CRC the MAC appends the FCS; with TCTL.PADEN
//!   it pads to the 60-byte minimum. Writing TR.NEWTX sends (the model ignores the threshold).
//!
//! The model has no PHY behind MDIO, so link state is not read; a real board's module brings up the PHY.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::mmio::Register;

const MAC_BASE: usize = 0x4004_8000;
/// Raw interrupt status (read) / acknowledge (write).
const RIS_IACK: Register = Register::at(MAC_BASE, 0x00);
const IM: Register = Register::at(MAC_BASE, 0x04);
const RCTL: Register = Register::at(MAC_BASE, 0x08);
const TCTL: Register = Register::at(MAC_BASE, 0x0C);
const DATA: Register = Register::at(MAC_BASE, 0x10);
/// Individual address: MAC bytes 0..4 in IA0, 4..6 in IA1, least significant byte first.
const IA0: Register = Register::at(MAC_BASE, 0x14);
const IA1: Register = Register::at(MAC_BASE, 0x18);
/// Transmit threshold: 0x3F sends only on TR.NEWTX.
const THR: Register = Register::at(MAC_BASE, 0x1C);
/// Number of complete frames in the receive FIFO.
const NP: Register = Register::at(MAC_BASE, 0x34);
/// Transmission request.
const TR: Register = Register::at(MAC_BASE, 0x38);

const INT_ALL: u32 = 0x7F;
/// Transmit error: acknowledging it also empties the transmit FIFO.
const INT_TXER: u32 = 1 << 1;
const RCTL_RXEN: u32 = 1 << 0;
const RCTL_AMUL: u32 = 1 << 1;
const RCTL_BADCRC: u32 = 1 << 3;
const RCTL_RSTFIFO: u32 = 1 << 4;
const TCTL_TXEN: u32 = 1 << 0;
const TCTL_PADEN: u32 = 1 << 1;
const TCTL_CRC: u32 = 1 << 2;
const TCTL_DUPLEX: u32 = 1 << 4;
const THR_OFF: u32 = 0x3F;
const TR_NEWTX: u32 = 1 << 0;

/// An Ethernet frame without FCS: 14-byte header and up to 1500 bytes of payload.
const MAX_FRAME: usize = 1514;
const ETHERNET_HEADER: usize = 14;
/// The receive FIFO holds 2 KiB (datasheet 16.3.1.2); a length beyond that means we lost framing.
const RX_FIFO_BYTES: usize = 2048;
/// FIFO length overhead of a received frame: its length half-word and the FCS.
const RX_OVERHEAD: usize = 2 + 4;
/// Polls of TR.NEWTX before a frame is dropped because the previous one never left.
const TX_WAIT_POLLS: u32 = 100_000;

/// The Ethernet MAC with one frame of receive and transmit buffer.
#[derive(Debug)]
pub struct Ethernet {
    mac_address: [u8; 6],
    rx_frame: [u8; MAX_FRAME],
    tx_frame: [u8; MAX_FRAME],
    dropped_frames: u32,
}

impl Ethernet {
    pub(super) fn new(mac_address: [u8; 6]) -> Self {
        IM.write(0);
        RIS_IACK.write(INT_ALL);
        let [a, b, c, d, e, f] = mac_address;
        IA0.write(u32::from_le_bytes([a, b, c, d]));
        IA1.write(u32::from_le_bytes([e, f, 0, 0]));
        THR.write(THR_OFF);
        TCTL.write(TCTL_TXEN | TCTL_PADEN | TCTL_CRC | TCTL_DUPLEX);
        RCTL.write(RCTL_RSTFIFO);
        // Multicast stays on for ARP/IPv4 multicast; frames with a bad FCS are rejected by the MAC.
        RCTL.write(RCTL_RXEN | RCTL_AMUL | RCTL_BADCRC);
        Self {
            mac_address,
            rx_frame: [0; MAX_FRAME],
            tx_frame: [0; MAX_FRAME],
            dropped_frames: 0,
        }
    }

    /// The station address the MAC was programmed with.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac_address
    }

    /// Frames dropped so far: too long, malformed, or not sent because the transmitter was stuck.
    pub fn dropped_frames(&self) -> u32 {
        self.dropped_frames
    }

    /// Moves the oldest frame out of the receive FIFO into `rx_frame`; its length, or `None` if there is
    /// none or it was dropped.
    fn receive_frame(&mut self) -> Option<usize> {
        // Reading MACDATA with no frame waiting is an underflow (the model logs an error), so ask NP first.
        if NP.read() & 0x3F == 0 {
            return None;
        }
        let first = DATA.read().to_le_bytes();
        let fifo_length = usize::from(u16::from_le_bytes([first[0], first[1]]));
        if !(RX_OVERHEAD + ETHERNET_HEADER..=RX_FIFO_BYTES).contains(&fifo_length) {
            // The length word is garbage: we are no longer at a frame boundary. Start over.
            RCTL.write(RCTL_RXEN | RCTL_AMUL | RCTL_BADCRC | RCTL_RSTFIFO);
            RCTL.write(RCTL_RXEN | RCTL_AMUL | RCTL_BADCRC);
            self.dropped_frames = self.dropped_frames.wrapping_add(1);
            return None;
        }
        let frame_length = fifo_length - RX_OVERHEAD;
        let words = fifo_length.div_ceil(4);
        let keep = frame_length <= MAX_FRAME;
        // Byte i of the frame sits at FIFO byte i + 2; FIFO bytes past the frame are FCS and padding.
        let mut store = |fifo_index: usize, byte: u8| {
            if keep
                && let Some(index) = fifo_index.checked_sub(2).filter(|&i| i < frame_length)
                && let Some(slot) = self.rx_frame.get_mut(index)
            {
                *slot = byte;
            }
        };
        store(2, first[2]);
        store(3, first[3]);
        for word_index in 1..words {
            for (offset, byte) in DATA.read().to_le_bytes().into_iter().enumerate() {
                store(word_index * 4 + offset, byte);
            }
        }
        if keep {
            Some(frame_length)
        } else {
            self.dropped_frames = self.dropped_frames.wrapping_add(1);
            None
        }
    }
}

/// Pushes `frame` (header included, FCS not) into the transmit FIFO and starts it. `false` if it could
/// not be sent.
fn transmit_frame(frame: &[u8]) -> bool {
    let Some(payload_length) = frame.len().checked_sub(ETHERNET_HEADER) else {
        return false;
    };
    // The previous frame must have left the FIFO (datasheet 16.3.1.1).
    if !(0..TX_WAIT_POLLS).any(|_| TR.read() & TR_NEWTX == 0) {
        RIS_IACK.write(INT_TXER);
        return false;
    }
    let length = u16::try_from(payload_length).unwrap_or(u16::MAX).to_le_bytes();
    let (head, rest) = frame.split_at(frame.len().min(2));
    let mut first = [length[0], length[1], 0, 0];
    for (slot, &byte) in first.iter_mut().skip(2).zip(head) {
        *slot = byte;
    }
    DATA.write(u32::from_le_bytes(first));
    for chunk in rest.chunks(4) {
        let mut word = [0; 4];
        for (slot, &byte) in word.iter_mut().zip(chunk) {
            *slot = byte;
        }
        DATA.write(u32::from_le_bytes(word));
    }
    TR.write(TR_NEWTX);
    true
}

/// A received frame, handed to smoltcp.
#[derive(Debug)]
pub struct EthernetRxToken<'a> {
    frame: &'a [u8],
}

/// Room for one frame to send.
#[derive(Debug)]
pub struct EthernetTxToken<'a> {
    buffer: &'a mut [u8; MAX_FRAME],
    dropped_frames: &'a mut u32,
}

impl phy::RxToken for EthernetRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

impl phy::TxToken for EthernetTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU we report; clamp anyway and count the frame lost.
        let length = len.min(MAX_FRAME);
        let (frame, _) = self.buffer.split_at_mut(length);
        let result = f(frame);
        if len > MAX_FRAME || !transmit_frame(frame) {
            *self.dropped_frames = self.dropped_frames.wrapping_add(1);
        }
        result
    }
}

impl Device for Ethernet {
    type RxToken<'a> = EthernetRxToken<'a>;
    type TxToken<'a> = EthernetTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let length = self.receive_frame()?;
        let (frame, _) = self.rx_frame.split_at(length);
        Some((
            EthernetRxToken { frame },
            EthernetTxToken {
                buffer: &mut self.tx_frame,
                dropped_frames: &mut self.dropped_frames,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(EthernetTxToken {
            buffer: &mut self.tx_frame,
            dropped_frames: &mut self.dropped_frames,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MAX_FRAME;
        capabilities.max_burst_size = Some(1);
        capabilities
    }
}
