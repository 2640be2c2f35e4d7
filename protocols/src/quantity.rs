//! What a reading measures, in which unit, and whether the sensor could measure it.

use serde::{Deserialize, Serialize};

/// The physical quantity of a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Dry-bulb air or component temperature.
    Temperature,
    /// Relative humidity of the air.
    RelativeHumidity,
    /// Dew point temperature, when the node computes it itself.
    DewPoint,
    Voltage,
    Current,
    Power,
    /// Energy counter since the meter's last reset.
    Energy,
    /// Fan tachometer speed.
    FanSpeed,
    /// Fan PWM duty cycle.
    FanDuty,
}

impl Quantity {
    /// Every quantity, for exhaustive tests and documentation.
    pub const ALL: [Quantity; 9] = [
        Quantity::Temperature,
        Quantity::RelativeHumidity,
        Quantity::DewPoint,
        Quantity::Voltage,
        Quantity::Current,
        Quantity::Power,
        Quantity::Energy,
        Quantity::FanSpeed,
        Quantity::FanDuty,
    ];

    /// The name used on the wire and as the InfluxDB `quantity` tag.
    pub const fn as_str(self) -> &'static str {
        match self {
            Quantity::Temperature => "temperature",
            Quantity::RelativeHumidity => "relative_humidity",
            Quantity::DewPoint => "dew_point",
            Quantity::Voltage => "voltage",
            Quantity::Current => "current",
            Quantity::Power => "power",
            Quantity::Energy => "energy",
            Quantity::FanSpeed => "fan_speed",
            Quantity::FanDuty => "fan_duty",
        }
    }

    /// The canonical unit the gateway stores this quantity in.
    pub const fn canonical_unit(self) -> Unit {
        match self {
            Quantity::Temperature | Quantity::DewPoint => Unit::Celsius,
            Quantity::RelativeHumidity => Unit::PercentRh,
            Quantity::Voltage => Unit::Volt,
            Quantity::Current => Unit::Ampere,
            Quantity::Power => Unit::Watt,
            Quantity::Energy => Unit::WattHour,
            Quantity::FanSpeed => Unit::Rpm,
            Quantity::FanDuty => Unit::Percent,
        }
    }
}

/// The unit a value is expressed in. Nodes may send any unit of the reading's quantity; the gateway
/// converts to [`Quantity::canonical_unit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "C")]
    Celsius,
    #[serde(rename = "F")]
    Fahrenheit,
    #[serde(rename = "K")]
    Kelvin,
    #[serde(rename = "%RH")]
    PercentRh,
    #[serde(rename = "V")]
    Volt,
    #[serde(rename = "mV")]
    Millivolt,
    #[serde(rename = "A")]
    Ampere,
    #[serde(rename = "mA")]
    Milliampere,
    #[serde(rename = "W")]
    Watt,
    #[serde(rename = "kW")]
    Kilowatt,
    #[serde(rename = "Wh")]
    WattHour,
    #[serde(rename = "kWh")]
    KilowattHour,
    #[serde(rename = "rpm")]
    Rpm,
    #[serde(rename = "%")]
    Percent,
}

impl Unit {
    /// The symbol used on the wire.
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::Celsius => "C",
            Unit::Fahrenheit => "F",
            Unit::Kelvin => "K",
            Unit::PercentRh => "%RH",
            Unit::Volt => "V",
            Unit::Millivolt => "mV",
            Unit::Ampere => "A",
            Unit::Milliampere => "mA",
            Unit::Watt => "W",
            Unit::Kilowatt => "kW",
            Unit::WattHour => "Wh",
            Unit::KilowattHour => "kWh",
            Unit::Rpm => "rpm",
            Unit::Percent => "%",
        }
    }

    /// Converts `value` in this unit to `quantity`'s canonical unit, or `None` when this unit does
    /// not measure that quantity (a node that sends power in volts is rejected, not guessed at).
    pub fn to_canonical(self, quantity: Quantity, value: f64) -> Option<f64> {
        let canonical = quantity.canonical_unit();
        if self == canonical {
            return Some(value);
        }
        let converted = match (canonical, self) {
            (Unit::Celsius, Unit::Fahrenheit) => (value - 32.0) * 5.0 / 9.0,
            (Unit::Celsius, Unit::Kelvin) => value - 273.15,
            (Unit::Volt, Unit::Millivolt) | (Unit::Ampere, Unit::Milliampere) => value / 1000.0,
            (Unit::Watt, Unit::Kilowatt) | (Unit::WattHour, Unit::KilowattHour) => value * 1000.0,
            _ => return None,
        };
        Some(converted)
    }
}

/// Whether the sensor behind a reading could measure it. A reading that is not `Ok` carries no value
/// (or a value the gateway must not store as data) and never stops the node's other channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingStatus {
    #[default]
    Ok,
    /// The sensor did not answer or answered garbage (NACK, CRC error, bus timeout).
    Fault,
    /// The sensor answered with a value outside its measuring range.
    OutOfRange,
    /// The sensor has not finished its first conversion yet.
    NotReady,
}

impl ReadingStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReadingStatus::Ok => "ok",
            ReadingStatus::Fault => "fault",
            ReadingStatus::OutOfRange => "out_of_range",
            ReadingStatus::NotReady => "not_ready",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_fahrenheit_and_kelvin_to_celsius() {
        assert_eq!(
            Unit::Fahrenheit.to_canonical(Quantity::Temperature, 212.0),
            Some(100.0)
        );
        assert_eq!(
            Unit::Kelvin.to_canonical(Quantity::Temperature, 273.15),
            Some(0.0)
        );
    }

    #[test]
    fn converts_milli_and_kilo_prefixes() {
        assert_eq!(
            Unit::Millivolt.to_canonical(Quantity::Voltage, 48_250.0),
            Some(48.25)
        );
        assert_eq!(Unit::Kilowatt.to_canonical(Quantity::Power, 7.5), Some(7500.0));
        assert_eq!(
            Unit::KilowattHour.to_canonical(Quantity::Energy, 1.5),
            Some(1500.0)
        );
    }

    #[test]
    fn refuses_a_unit_of_another_quantity() {
        assert_eq!(Unit::Volt.to_canonical(Quantity::Power, 1.0), None);
        assert_eq!(Unit::Celsius.to_canonical(Quantity::RelativeHumidity, 1.0), None);
    }

    #[test]
    fn every_quantity_accepts_its_canonical_unit() {
        for q in Quantity::ALL {
            assert_eq!(q.canonical_unit().to_canonical(q, 1.25), Some(1.25), "{q:?}");
        }
    }
}
