//! JSON encoding shared by every message: one encoder and one decoder, both bounded.

use serde::{Serialize, de::DeserializeOwned};

use crate::MAX_MESSAGE_LEN;

/// Why a message could not be decoded. Every variant is a reason the gateway counts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message is longer than [`MAX_MESSAGE_LEN`]; it is rejected before it is parsed.
    #[error("message of {len} bytes is over the {MAX_MESSAGE_LEN}-byte limit")]
    TooLarge { len: usize },
    /// The bytes are not JSON of the message's shape (syntax, trailing bytes, a missing field, a wrong type,
    /// an identifier with characters outside `[A-Za-z0-9_.-]`, more readings than allowed).
    #[error("malformed JSON: {0}")]
    Json(JsonError),
    /// The `"v"` field names a wire format this build does not speak.
    #[error("wire format version {0} is not supported (this build speaks v{v})", v = crate::VERSION)]
    UnsupportedVersion(u8),
    /// Well-formed JSON whose content breaks a rule of the spec (e.g. a command without its argument).
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// The JSON parser's reason, kept as a small copyable value (no heap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(&'static str);

impl JsonError {
    fn from_de(error: &serde_json_core::de::Error) -> Self {
        use serde_json_core::de::Error as E;
        JsonError(match error {
            E::EofWhileParsingList
            | E::EofWhileParsingObject
            | E::EofWhileParsingString
            | E::EofWhileParsingNumber
            | E::EofWhileParsingValue => "unexpected end of input",
            E::ExpectedColon => "expected ':'",
            E::ExpectedListCommaOrEnd => "expected ',' or ']'",
            E::ExpectedObjectCommaOrEnd => "expected ',' or '}'",
            E::ExpectedSomeIdent => "expected an identifier",
            E::ExpectedSomeValue => "expected a value",
            E::InvalidNumber => "invalid number",
            E::InvalidType => "a field has the wrong type",
            E::InvalidUnicodeCodePoint => "invalid unicode code point",
            E::InvalidEscapeSequence => "invalid escape sequence",
            E::EscapedStringIsTooLong => "escaped string is too long",
            E::KeyMustBeAString => "object key must be a string",
            E::TrailingCharacters => "trailing characters",
            E::TrailingComma => "trailing comma",
            E::CustomError => "a field is missing or out of range",
            _ => "malformed JSON",
        })
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is smaller than the encoded message.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// The encoded message would be longer than [`MAX_MESSAGE_LEN`].
    #[error("encoded message of {len} bytes is over the {MAX_MESSAGE_LEN}-byte limit")]
    TooLarge { len: usize },
    /// A value is NaN or infinite: JSON cannot carry it, so the reading must be sent as a fault.
    #[error("a value is not a finite number")]
    NonFinite,
}

/// Implemented by every message: its wire version and whether its floats are finite.
pub(crate) trait Message: Serialize + DeserializeOwned {
    fn version(&self) -> u8;
    /// `false` when a float field is NaN or infinite (serde-json-core would write `null`).
    fn is_finite(&self) -> bool {
        true
    }
}

pub(crate) fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    // serde-json-core also refuses anything but whitespace after the value.
    let (message, _) =
        serde_json_core::from_slice::<M>(bytes).map_err(|e| DecodeError::Json(JsonError::from_de(&e)))?;
    if message.version() != crate::VERSION {
        return Err(DecodeError::UnsupportedVersion(message.version()));
    }
    Ok(message)
}

pub(crate) fn encode<M: Message>(message: &M, out: &mut [u8]) -> Result<usize, EncodeError> {
    if !message.is_finite() {
        return Err(EncodeError::NonFinite);
    }
    let len = serde_json_core::to_slice(message, out).map_err(|_| EncodeError::BufferTooSmall)?;
    if len > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLarge { len });
    }
    Ok(len)
}

/// `decode` and `encode` methods for a message type, so callers never name the codec.
macro_rules! message_codec {
    ($message:ty) => {
        impl $message {
            /// Decodes one message from its JSON bytes (unknown fields are ignored).
            pub fn decode(bytes: &[u8]) -> Result<Self, $crate::DecodeError> {
                $crate::codec::decode(bytes)
            }

            /// Encodes the message as JSON into `out`, returning the number of bytes written.
            pub fn encode(&self, out: &mut [u8]) -> Result<usize, $crate::EncodeError> {
                $crate::codec::encode(self, out)
            }
        }
    };
}
pub(crate) use message_codec;

/// `"v"`: the wire version, written first in every message.
pub(crate) fn version() -> u8 {
    crate::VERSION
}

pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
