//! Validated identifiers: node ids, site ids, channel names and location labels.
//!
//! Identifiers become MQTT topic levels and InfluxDB tag values, so they are restricted to
//! `[A-Za-z0-9_.-]`, 1 to N characters: no `/`, `+` or `#` (MQTT 3.1.1 §4.7), no spaces, commas or
//! `=` (line protocol escaping), no escapes in JSON. A value that breaks the rule never gets in.

use core::fmt;
use core::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than {max} characters")]
    TooLong { max: usize },
    #[error("identifier has a character outside [A-Za-z0-9_.-]")]
    BadCharacter,
}

/// An identifier of at most `N` characters from `[A-Za-z0-9_.-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ident<const N: usize>(heapless::String<N>);

/// A node's identity: its topic level and its key in the gateway's inventory.
pub type NodeId = Ident<32>;
/// A site (data centre): the first level of every topic after the version.
pub type SiteId = Ident<32>;
/// A channel of a node, e.g. `inlet_top`: one sensor quantity at one place.
pub type ChannelName = Ident<24>;
/// A short label such as a room, row or rack name, or a rule name.
pub type Label = Ident<32>;

impl<const N: usize> Ident<N> {
    /// Checks `value` against the identifier rule and copies it.
    pub fn new(value: &str) -> Result<Self, IdError> {
        validate(value, N)?;
        let mut id = heapless::String::new();
        // Cannot fail: the length was checked above.
        id.push_str(value).map_err(|_| IdError::TooLong { max: N })?;
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The identifier rule, for callers that check a `&str` without copying it (topic parsing).
pub(crate) fn validate(value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > max {
        return Err(IdError::TooLong { max });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

impl<const N: usize> Deref for Ident<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> TryFrom<&str> for Ident<N> {
    type Error = IdError;
    fn try_from(value: &str) -> Result<Self, IdError> {
        Self::new(value)
    }
}

impl<const N: usize> fmt::Display for Ident<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Ident<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> Serialize for Ident<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de, const N: usize> Deserialize<'de> for Ident<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<const N: usize>;
        impl<const N: usize> serde::de::Visitor<'_> for Visitor<N> {
            type Value = Ident<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an identifier of 1 to {N} characters from [A-Za-z0-9_.-]")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Ident<N>, E> {
                Ident::new(value).map_err(|_| E::invalid_value(serde::de::Unexpected::Str(value), &self))
            }
        }
        deserializer.deserialize_str(Visitor::<N>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_topic_safe_names() {
        assert_eq!(NodeId::new("r01-n1.b_2").unwrap().as_str(), "r01-n1.b_2");
    }

    #[test]
    fn rejects_topic_wildcards_separators_and_spaces() {
        for bad in ["a/b", "a+", "#", "a b", "a,b", "a=b", "é", "a\"b", "a\\b"] {
            assert_eq!(NodeId::new(bad), Err(IdError::BadCharacter), "{bad}");
        }
        assert_eq!(NodeId::new(""), Err(IdError::Empty));
        assert_eq!(
            ChannelName::new("x".repeat(25).as_str()),
            Err(IdError::TooLong { max: 24 })
        );
    }
}
