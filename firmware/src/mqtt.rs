//! A small MQTT 3.1.1 codec: the nine packets a sensor node needs, encoded into and decoded from byte
//! slices, no heap, no I/O (OASIS MQTT Version 3.1.1, 2014; section numbers below cite it).
//!
//! Why our own and not a crate: the session must be sans-IO (the board drives it over smoltcp, the host
//! over tokio, tests over a fake), so what we need is a packet codec, not a client. `minimq` owns its
//! network stack through `embedded-nal` and its own buffers; `rust-mqtt` is async and MQTT 5 first;
//! `mqttrs` is a codec but pins `heapless` 0.7/`bytes`, which this workspace (heapless 0.9) does not
//! use. The packets a node sends and receives are few and simple, so the codec is a few hundred lines
//! with round-trip property tests.
//!
//! Supported: CONNECT (with will, optional user name and password), CONNACK, PUBLISH (QoS 0 and 1),
//! PUBACK, SUBSCRIBE and SUBACK with one topic filter, PINGREQ, PINGRESP, DISCONNECT. QoS 2 is refused
//! as [`DecodeError::Unsupported`].

/// Fixed-header packet types (§2.2.1, table 2.1).
mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

/// CONNECT flags (§3.1.2.3, figure 3.4).
mod connect_flag {
    pub const CLEAN_SESSION: u8 = 1 << 1;
    pub const WILL: u8 = 1 << 2;
    pub const WILL_QOS_SHIFT: u8 = 3;
    pub const WILL_RETAIN: u8 = 1 << 5;
    pub const PASSWORD: u8 = 1 << 6;
    pub const USER_NAME: u8 = 1 << 7;
}

/// "MQTT" with its length prefix and protocol level 4 (§3.1.2.1, §3.1.2.2).
const PROTOCOL_NAME: &[u8] = b"\x00\x04MQTT";
const PROTOCOL_LEVEL: u8 = 4;
/// The largest Remaining Length four bytes can hold (§2.2.3, table 2.4).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Quality of service of a PUBLISH or subscription (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
}

impl QoS {
    fn from_bits(bits: u8) -> Result<Self, DecodeError> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Err(DecodeError::Unsupported),
            _ => Err(DecodeError::Malformed("QoS 3")),
        }
    }
}

/// The last will of a CONNECT (§3.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
}

/// CONNECT (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    pub client_id: &'a str,
    pub keep_alive_s: u16,
    pub clean_session: bool,
    pub will: Option<Will<'a>>,
    pub user_name: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

/// CONNACK return codes (§3.2.2.3, table 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReturn {
    Accepted,
    UnacceptableProtocolVersion,
    IdentifierRejected,
    ServerUnavailable,
    BadUserNameOrPassword,
    NotAuthorized,
}

impl ConnectReturn {
    fn code(self) -> u8 {
        match self {
            ConnectReturn::Accepted => 0,
            ConnectReturn::UnacceptableProtocolVersion => 1,
            ConnectReturn::IdentifierRejected => 2,
            ConnectReturn::ServerUnavailable => 3,
            ConnectReturn::BadUserNameOrPassword => 4,
            ConnectReturn::NotAuthorized => 5,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            0 => ConnectReturn::Accepted,
            1 => ConnectReturn::UnacceptableProtocolVersion,
            2 => ConnectReturn::IdentifierRejected,
            3 => ConnectReturn::ServerUnavailable,
            4 => ConnectReturn::BadUserNameOrPassword,
            5 => ConnectReturn::NotAuthorized,
            _ => return Err(DecodeError::Malformed("CONNACK return code")),
        })
    }
}

/// PUBLISH (§3.3). `packet_id` is present exactly when `qos` is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: Option<u16>,
    pub payload: &'a [u8],
}

/// One MQTT control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck {
        session_present: bool,
        code: ConnectReturn,
    },
    Publish(Publish<'a>),
    PubAck {
        packet_id: u16,
    },
    /// SUBSCRIBE with one topic filter.
    Subscribe {
        packet_id: u16,
        filter: &'a str,
        qos: QoS,
    },
    /// SUBACK for one topic filter: the granted QoS, or `None` for failure (0x80, §3.9.3).
    SubAck {
        packet_id: u16,
        granted: Option<QoS>,
    },
    PingReq,
    PingResp,
    Disconnect,
}

/// Why bytes are not an MQTT packet this codec accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Breaks a rule of the spec; the connection must be closed (§4.8).
    Malformed(&'static str),
    /// Valid MQTT that a node does not use (QoS 2, several filters in one SUBSCRIBE, UNSUBSCRIBE...).
    Unsupported,
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output slice is too small.
    BufferTooSmall,
    /// A string or payload is longer than its length field can say (65 535 bytes), or a PUBLISH's
    /// `packet_id` does not match its QoS.
    Invalid,
}

impl<'a> Packet<'a> {
    /// Decodes the packet at the start of `bytes`: `Ok(None)` when more bytes are needed, else the
    /// packet and how many bytes it took.
    pub fn decode(bytes: &'a [u8]) -> Result<Option<(Packet<'a>, usize)>, DecodeError> {
        let Some((&header, rest)) = bytes.split_first() else {
            return Ok(None);
        };
        let Some((remaining, length_bytes)) = decode_remaining_length(rest)? else {
            return Ok(None);
        };
        let total = 1 + length_bytes + remaining;
        let Some(body) = bytes.get(1 + length_bytes..total) else {
            return Ok(None);
        };
        let packet = decode_body(header, body)?;
        Ok(Some((packet, total)))
    }

    /// Encodes the packet into `out`, returning its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut w = Writer { out, at: 0 };
        match *self {
            Packet::Connect(ref c) => {
                let mut len = PROTOCOL_NAME.len() + 1 + 1 + 2 + 2 + c.client_id.len();
                if let Some(will) = &c.will {
                    len += 2 + will.topic.len() + 2 + will.payload.len();
                }
                if let Some(user) = c.user_name {
                    len += 2 + user.len();
                }
                if let Some(password) = c.password {
                    len += 2 + password.len();
                }
                w.fixed_header(kind::CONNECT << 4, len)?;
                w.bytes(PROTOCOL_NAME)?;
                w.byte(PROTOCOL_LEVEL)?;
                let mut flags = 0;
                if c.clean_session {
                    flags |= connect_flag::CLEAN_SESSION;
                }
                if let Some(will) = &c.will {
                    flags |= connect_flag::WILL | ((will.qos as u8) << connect_flag::WILL_QOS_SHIFT);
                    if will.retain {
                        flags |= connect_flag::WILL_RETAIN;
                    }
                }
                if c.user_name.is_some() {
                    flags |= connect_flag::USER_NAME;
                }
                if c.password.is_some() {
                    flags |= connect_flag::PASSWORD;
                }
                w.byte(flags)?;
                w.u16(c.keep_alive_s)?;
                w.string(c.client_id.as_bytes())?;
                if let Some(will) = &c.will {
                    w.string(will.topic.as_bytes())?;
                    w.string(will.payload)?;
                }
                if let Some(user) = c.user_name {
                    w.string(user.as_bytes())?;
                }
                if let Some(password) = c.password {
                    w.string(password)?;
                }
            }
            Packet::ConnAck {
                session_present,
                code,
            } => {
                w.fixed_header(kind::CONNACK << 4, 2)?;
                w.byte(u8::from(session_present))?;
                w.byte(code.code())?;
            }
            Packet::Publish(ref p) => {
                if p.packet_id.is_some() != (p.qos == QoS::AtLeastOnce) {
                    return Err(EncodeError::Invalid);
                }
                let len = 2 + p.topic.len() + if p.packet_id.is_some() { 2 } else { 0 } + p.payload.len();
                let mut first = (kind::PUBLISH << 4) | ((p.qos as u8) << 1);
                if p.dup {
                    first |= 1 << 3;
                }
                if p.retain {
                    first |= 1;
                }
                w.fixed_header(first, len)?;
                w.string(p.topic.as_bytes())?;
                if let Some(id) = p.packet_id {
                    w.u16(id)?;
                }
                w.bytes(p.payload)?;
            }
            Packet::PubAck { packet_id } => {
                w.fixed_header(kind::PUBACK << 4, 2)?;
                w.u16(packet_id)?;
            }
            Packet::Subscribe {
                packet_id,
                filter,
                qos,
            } => {
                // Bits 3..0 of SUBSCRIBE's fixed header are reserved and must be 0010 (§3.8.1).
                w.fixed_header((kind::SUBSCRIBE << 4) | 0b0010, 2 + 2 + filter.len() + 1)?;
                w.u16(packet_id)?;
                w.string(filter.as_bytes())?;
                w.byte(qos as u8)?;
            }
            Packet::SubAck { packet_id, granted } => {
                w.fixed_header(kind::SUBACK << 4, 3)?;
                w.u16(packet_id)?;
                w.byte(granted.map_or(0x80, |q| q as u8))?;
            }
            Packet::PingReq => w.fixed_header(kind::PINGREQ << 4, 0)?,
            Packet::PingResp => w.fixed_header(kind::PINGRESP << 4, 0)?,
            Packet::Disconnect => w.fixed_header(kind::DISCONNECT << 4, 0)?,
        }
        Ok(w.at)
    }
}

/// The Remaining Length at the start of `bytes` (§2.2.3): its value and how many bytes it took, or
/// `None` when it is not complete yet.
fn decode_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::Malformed("remaining length over four bytes"))
    } else {
        Ok(None)
    }
}

fn decode_body(header: u8, body: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let flags = header & 0x0F;
    let mut r = Reader { bytes: body };
    let packet = match header >> 4 {
        kind::CONNECT => {
            expect_flags(flags, 0)?;
            if r.take(PROTOCOL_NAME.len())? != PROTOCOL_NAME {
                return Err(DecodeError::Malformed("protocol name"));
            }
            if r.byte()? != PROTOCOL_LEVEL {
                return Err(DecodeError::Unsupported);
            }
            let connect_flags = r.byte()?;
            if connect_flags & 1 != 0 {
                return Err(DecodeError::Malformed("reserved CONNECT flag"));
            }
            let keep_alive_s = r.u16()?;
            let client_id = r.str()?;
            let will = if connect_flags & connect_flag::WILL != 0 {
                Some(Will {
                    topic: r.str()?,
                    payload: r.string()?,
                    qos: QoS::from_bits((connect_flags >> connect_flag::WILL_QOS_SHIFT) & 0b11)?,
                    retain: connect_flags & connect_flag::WILL_RETAIN != 0,
                })
            } else {
                None
            };
            let user_name = if connect_flags & connect_flag::USER_NAME != 0 {
                Some(r.str()?)
            } else {
                None
            };
            let password = if connect_flags & connect_flag::PASSWORD != 0 {
                Some(r.string()?)
            } else {
                None
            };
            Packet::Connect(Connect {
                client_id,
                keep_alive_s,
                clean_session: connect_flags & connect_flag::CLEAN_SESSION != 0,
                will,
                user_name,
                password,
            })
        }
        kind::CONNACK => {
            expect_flags(flags, 0)?;
            let acknowledge = r.byte()?;
            if acknowledge & !1 != 0 {
                return Err(DecodeError::Malformed("reserved CONNACK flag"));
            }
            Packet::ConnAck {
                session_present: acknowledge & 1 != 0,
                code: ConnectReturn::from_code(r.byte()?)?,
            }
        }
        kind::PUBLISH => {
            let qos = QoS::from_bits((flags >> 1) & 0b11)?;
            let dup = flags & 0b1000 != 0;
            if dup && qos == QoS::AtMostOnce {
                return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
            }
            let topic = r.str()?;
            let packet_id = match qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce => Some(r.u16()?),
            };
            let payload = r.bytes;
            r.bytes = &[];
            Packet::Publish(Publish {
                dup,
                qos,
                retain: flags & 1 != 0,
                topic,
                packet_id,
                payload,
            })
        }
        kind::PUBACK => {
            expect_flags(flags, 0)?;
            Packet::PubAck { packet_id: r.u16()? }
        }
        kind::SUBSCRIBE => {
            expect_flags(flags, 0b0010)?;
            let packet_id = r.u16()?;
            let filter = r.str()?;
            let qos = QoS::from_bits(r.byte()?)?;
            if !r.bytes.is_empty() {
                return Err(DecodeError::Unsupported);
            }
            Packet::Subscribe {
                packet_id,
                filter,
                qos,
            }
        }
        kind::SUBACK => {
            expect_flags(flags, 0)?;
            let packet_id = r.u16()?;
            let granted = match r.byte()? {
                0x80 => None,
                bits => Some(QoS::from_bits(bits)?),
            };
            if !r.bytes.is_empty() {
                return Err(DecodeError::Unsupported);
            }
            Packet::SubAck { packet_id, granted }
        }
        kind::PINGREQ => {
            expect_flags(flags, 0)?;
            Packet::PingReq
        }
        kind::PINGRESP => {
            expect_flags(flags, 0)?;
            Packet::PingResp
        }
        kind::DISCONNECT => {
            expect_flags(flags, 0)?;
            Packet::Disconnect
        }
        0 | 15 => return Err(DecodeError::Malformed("reserved packet type")),
        _ => return Err(DecodeError::Unsupported),
    };
    if !r.bytes.is_empty() {
        return Err(DecodeError::Malformed("bytes after the packet's fields"));
    }
    Ok(packet)
}

fn expect_flags(flags: u8, expected: u8) -> Result<(), DecodeError> {
    if flags == expected {
        Ok(())
    } else {
        Err(DecodeError::Malformed("reserved fixed-header flags"))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Malformed("packet shorter than its fields"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or_default(),
            b.get(1).copied().unwrap_or_default(),
        ]))
    }

    /// A length-prefixed byte string (§1.5.3).
    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A length-prefixed UTF-8 string (§1.5.3).
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.string()?).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.at + bytes.len();
        self.out
            .get_mut(self.at..end)
            .ok_or(EncodeError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    fn byte(&mut self, byte: u8) -> Result<(), EncodeError> {
        self.bytes(&[byte])
    }

    fn u16(&mut self, value: u16) -> Result<(), EncodeError> {
        self.bytes(&value.to_be_bytes())
    }

    fn string(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::Invalid)?;
        self.u16(len)?;
        self.bytes(bytes)
    }

    fn fixed_header(&mut self, first: u8, remaining: usize) -> Result<(), EncodeError> {
        if remaining > MAX_REMAINING_LENGTH {
            return Err(EncodeError::Invalid);
        }
        self.byte(first)?;
        let mut rest = remaining;
        loop {
            // Seven bits per byte, least significant group first, bit 7 says "more follows" (§2.2.3).
            let mut digit = u8::try_from(rest & 0x7F).unwrap_or_default();
            rest >>= 7;
            if rest > 0 {
                digit |= 0x80;
            }
            self.byte(digit)?;
            if rest == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
