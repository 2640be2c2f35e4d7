//! What a node trusts when it speaks TLS to its broker, as provisioned: the broker's CA certificate
//! (DER, carried base64 in the JSON) or, where the node's configuration store is too small for a
//! certificate, the SHA-256 pin of that CA certificate's DER (carried as 64 hex digits).
//!
//! A pin is checked against the last certificate of the chain the broker sends (its root CA, which
//! the broker must then send: Mosquitto sends what its `certfile` holds after the server
//! certificate); that certificate then serves as the trust anchor exactly as a provisioned one would.

use core::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest CA certificate a node takes: a P-256 CA from `openssl req` is about 450 bytes.
pub const MAX_CA_DER: usize = 600;
/// Base64 of [`MAX_CA_DER`] bytes.
const MAX_CA_BASE64: usize = MAX_CA_DER.div_ceil(3) * 4;

/// A CA certificate in DER.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate(heapless::Vec<u8, MAX_CA_DER>);

impl CaCertificate {
    /// `None` when `der` is empty or longer than [`MAX_CA_DER`].
    pub fn new(der: &[u8]) -> Option<Self> {
        if der.is_empty() {
            return None;
        }
        heapless::Vec::from_slice(der).ok().map(CaCertificate)
    }

    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaCertificate({} bytes)", self.0.len())
    }
}

/// The SHA-256 of a CA certificate's DER.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CaPin(pub [u8; 32]);

impl fmt::Debug for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaPin(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Serialize for CaCertificate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text: heapless::String<MAX_CA_BASE64> = heapless::String::new();
        for chunk in self.0.chunks(3) {
            let [a, b, c] = [0, 1, 2].map(|i| chunk.get(i).copied().unwrap_or(0));
            let group = u32::from_be_bytes([0, a, b, c]);
            for i in 0..4 {
                let sextet = (group >> (18 - 6 * i)) & 0x3F;
                let symbol = BASE64.get(sextet as usize).copied().unwrap_or(b'=');
                let shown = if i > chunk.len() { '=' } else { char::from(symbol) };
                text.push(shown)
                    .map_err(|_| serde::ser::Error::custom("CA too long"))?;
            }
        }
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for CaCertificate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Base64;
        impl Visitor<'_> for Base64 {
            type Value = CaCertificate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a base64 CA certificate of at most {MAX_CA_DER} bytes")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<CaCertificate, E> {
                decode_base64(text)
                    .and_then(|der| CaCertificate::new(&der))
                    .ok_or_else(|| E::custom("bad CA certificate"))
            }
        }
        deserializer.deserialize_str(Base64)
    }
}

/// Standard base64 with padding; `None` for anything else or more than [`MAX_CA_DER`] bytes.
fn decode_base64(text: &str) -> Option<heapless::Vec<u8, MAX_CA_DER>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = heapless::Vec::new();
    let groups = text.len() / 4;
    for (index, group) in text.chunks(4).enumerate() {
        let last = index + 1 == groups;
        let padding = group.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut bits = 0u32;
        for &symbol in group.get(..4 - padding)? {
            let value = BASE64.iter().position(|&b| b == symbol)?;
            bits = (bits << 6) | value as u32;
        }
        bits <<= 6 * padding;
        let [_, a, b, c] = bits.to_be_bytes();
        out.extend_from_slice([a, b, c].get(..3 - padding)?).ok()?;
    }
    Some(out)
}

impl Serialize for CaPin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text: heapless::String<64> = heapless::String::new();
        for byte in self.0 {
            for nibble in [byte >> 4, byte & 0x0F] {
                let digit = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                let _ = text.push(char::from(digit));
            }
        }
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for CaPin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl Visitor<'_> for Hex {
            type Value = CaPin;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 as 64 hex digits")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<CaPin, E> {
                CaPin::from_hex(text).ok_or_else(|| E::custom("bad CA pin"))
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

impl CaPin {
    /// 64 hex digits, either case.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut pin = [0u8; 32];
        for (byte, pair) in pin.iter_mut().zip(text.chunks(2)) {
            let digit = |b: &u8| char::from(*b).to_digit(16);
            let [high, low] = [pair.first().and_then(digit)?, pair.get(1).and_then(digit)?];
            *byte = (high << 4 | low) as u8;
        }
        Some(CaPin(pin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_certificate_round_trips_through_base64() {
        for len in [1, 2, 3, 4, 5, 450, MAX_CA_DER] {
            let der: heapless::Vec<u8, MAX_CA_DER> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let ca = CaCertificate::new(&der).unwrap();
            let mut json = [0u8; 1024];
            let n = serde_json_core::to_slice(&ca, &mut json).unwrap();
            let (back, _) = serde_json_core::from_slice::<CaCertificate>(&json[..n]).unwrap();
            assert_eq!(back, ca, "{len} bytes");
        }
        let (ca, _) = serde_json_core::from_slice::<CaCertificate>(br#""TWFu""#).unwrap();
        assert_eq!(ca.der(), b"Man");
        let (ca, _) = serde_json_core::from_slice::<CaCertificate>(br#""TWE=""#).unwrap();
        assert_eq!(ca.der(), b"Ma");
    }

    #[test]
    fn bad_base64_and_oversized_certificates_are_refused() {
        for bad in [
            &br#""TWF""#[..],
            br#""TW=u""#,
            br#""TW!u""#,
            br#""""#,
            br#""TQ==TWFu""#,
        ] {
            assert!(
                serde_json_core::from_slice::<CaCertificate>(bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(CaCertificate::new(&[0; MAX_CA_DER + 1]).is_none());
    }

    #[test]
    fn a_pin_round_trips_as_hex() {
        let pin = CaPin(core::array::from_fn(|i| (i * 9) as u8));
        let mut json = [0u8; 80];
        let n = serde_json_core::to_slice(&pin, &mut json).unwrap();
        assert_eq!(n, 66);
        let (back, _) = serde_json_core::from_slice::<CaPin>(&json[..n]).unwrap();
        assert_eq!(back, pin);
        assert!(CaPin::from_hex("00").is_none());
        assert!(CaPin::from_hex(&"zz".repeat(32)).is_none());
    }
}
