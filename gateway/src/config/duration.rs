//! The one way a duration is written in the configuration (and in the API and command line): a
//! number and a unit, as a string: `"500ms"`, `"5s"`, `"15m"`, `"4h"`, `"30d"`.
//!
//! A bare number is refused rather than guessed: `timeout = 30` could be seconds or milliseconds,
//! and the keys that once took a number in their name's unit (`timeout_secs`) were renamed when
//! they took a duration, so an old file is refused with the new key's name ([`refuse_renamed_keys`]).

use std::fmt;
use std::time::Duration;

use serde::Deserializer;
use serde::de::{self, Visitor};

use super::error::{ConfigError, invalid};

/// What a duration looks like, for error messages.
const EXPECTED: &str = "a duration with a unit, such as \"500ms\", \"30s\", \"15m\", \"4h\" or \"30d\"";

/// Keys that took a number in their name's unit and now take a duration: (section, old key, new
/// key, the old key's unit). A file with an old key is refused with the new key and its value.
const RENAMED: [(&str, &str, &str, &str); 8] = [
    ("mqtt", "keep_alive_secs", "keep_alive", "s"),
    ("influxdb", "batch_max_age_ms", "batch_max_age", "ms"),
    ("influxdb", "timeout_secs", "timeout", "s"),
    ("influxdb", "max_backoff_secs", "max_backoff", "s"),
    ("spool", "commit_linger_ms", "commit_linger", "ms"),
    ("normalise", "max_future_secs", "max_future", "s"),
    ("normalise", "max_age_secs", "max_age", "s"),
    ("http", "window_minutes", "window", "m"),
];

/// Parses `90s`, `15m`, `1h`, `2d`, `500ms`, `1.5s` (one number, one unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` needs a unit (ms, s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 90s, 15m, 1h"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return Err(format!("`{unit}` is not a unit (ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// `#[serde(deserialize_with = "duration")]` for a duration key.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

/// `#[serde(default, deserialize_with = "optional_duration")]` for a duration key that may be left out.
pub fn optional_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// Says what a duration looks like when a number (or anything else) is given instead.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).map_err(E::custom)
    }
}

/// Refuses a key of [`RENAMED`] in the file (`toml`, parsed but not yet read into the
/// configuration), naming the key that replaced it with the value in its new form: serde alone
/// would say "unknown field" and list every key but the one meant.
pub fn refuse_renamed_keys(toml: &toml::Table) -> Result<(), ConfigError> {
    for (section, old, new, unit) in RENAMED {
        let Some(value) = toml.get(section).and_then(|s| s.get(old)) else {
            continue;
        };
        let example = match value.as_integer() {
            Some(number) => format!("{number}{unit}"),
            None => format!("30{unit}"),
        };
        return Err(invalid(
            format!("{section}.{old}"),
            format!("renamed `{new}`, a duration with a unit: write `{new} = \"{example}\"`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Keys {
        #[serde(deserialize_with = "duration")]
        wait: Duration,
        #[serde(default, deserialize_with = "optional_duration")]
        maybe: Option<Duration>,
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn a_duration_key_reads_a_string_with_a_unit() {
        let keys: Keys = toml::from_str("wait = \"5s\"\nmaybe = \"4h\"").unwrap();
        assert_eq!(keys.wait, Duration::from_secs(5));
        assert_eq!(keys.maybe, Some(Duration::from_secs(4 * 3600)));
        let keys: Keys = toml::from_str("wait = \"500ms\"").unwrap();
        assert_eq!((keys.wait, keys.maybe), (Duration::from_millis(500), None));
    }

    #[test]
    fn a_bare_number_is_refused_with_what_a_duration_looks_like() {
        let error = toml::from_str::<Keys>("wait = 30").unwrap_err().to_string();
        assert!(
            error.contains("invalid type: integer `30`, expected a duration with a unit, such as \"500ms\""),
            "{error}"
        );
        let error = toml::from_str::<Keys>("wait = \"30 s\"").unwrap_err().to_string();
        assert!(error.contains("` s` is not a unit"), "{error}");
    }

    #[test]
    fn an_old_key_is_refused_with_its_new_key_and_value() {
        let toml: toml::Table = "[influxdb]\ntimeout_secs = 5\n[http]\nwindow_minutes = 60"
            .parse()
            .unwrap();
        assert_eq!(
            refuse_renamed_keys(&toml).unwrap_err().to_string(),
            "influxdb.timeout_secs: renamed `timeout`, a duration with a unit: write `timeout = \"5s\"`"
        );
        let toml: toml::Table = "[http]\nwindow_minutes = 60".parse().unwrap();
        assert_eq!(
            refuse_renamed_keys(&toml).unwrap_err().to_string(),
            "http.window_minutes: renamed `window`, a duration with a unit: write `window = \"60m\"`"
        );
        let toml: toml::Table = "[spool]\ncommit_linger_ms = \"5\"".parse().unwrap();
        assert!(
            refuse_renamed_keys(&toml)
                .unwrap_err()
                .to_string()
                .ends_with("`commit_linger = \"30ms\"`")
        );
        let toml: toml::Table = "[spool]\ncommit_linger = \"5ms\"\n[other]\ntimeout_secs = 5"
            .parse()
            .unwrap();
        assert!(refuse_renamed_keys(&toml).is_ok());
    }
}
