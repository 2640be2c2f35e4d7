//! The sensors on I2C0, found at boot by probing the addresses each part can take, so one image
//! serves every fit of the board (README.md, "Wiring"):
//!
//! | part | addresses | told apart by | channels |
//! | --- | --- | --- | --- |
//! | INA226 shunt monitor | 0x40–0x4F | manufacturer ID 0x5449 and die ID 0x2260 (datasheet 7.6.1) | `rail_4X`: bus voltage, current, power |
//! | SHT4x humidity | 0x44 | acknowledges the read-serial command 0x89 (datasheet 4.5) | `room`: temperature, humidity |
//! | TMP1xx temperature | 0x48–0x4B | acknowledges a read of its temperature register | 0x48 `inlet`, 0x49 `outlet`, 0x4A `inlet_top`, 0x4B `outlet_top` |
//! | ADM1272 hot-swap | 0x10–0x1F | acknowledges a PMBus read | `psu_in` (0x10), else `psu_in_1X`: input voltage, current, power |
//! | MAX31785 fan controller | 0x52–0x55 | acknowledges a PMBus read | `fan0` (0x52), else `fan0_5X`: fan 0 speed and duty |
//!
//! The INA226 and TMP1xx ranges overlap (0x48–0x4B), as do the INA226 and SHT4x (0x44): an address
//! is an INA226 only when both of its ID registers match, which neither other part returns.
//! Past [`MAX_PARTS`] parts or the core's `MAX_CHANNELS` channels, the rest are left out and counted.

use core::fmt::Write as _;

use embedded_hal::i2c::I2c;
use rackwatch_firmware::{ChannelSetup, Filter, MAX_CHANNELS};
use rackwatch_hardware::adm1272::Adm1272Config;
use rackwatch_hardware::device::DeviceConfig;
use rackwatch_hardware::ina226::Calibration;
use rackwatch_hardware::sht4x::Precision;
use rackwatch_hardware::tmp105::Resolution;
use rackwatch_hardware::{Channel, Measurement};
use rackwatch_protocols::ChannelName;

/// Parts driven at most.
pub const MAX_PARTS: usize = 8;

/// INA226 registers (datasheet 7.6): manufacturer ID "TI" and die ID.
const INA226_MANUFACTURER_ID: u8 = 0xFE;
const INA226_DIE_ID: u8 = 0xFF;
const INA226_TI: [u8; 2] = [0x54, 0x49];
const INA226_DIE: [u8; 2] = [0x22, 0x60];
/// The shunt of the common INA226 breakout boards (R100, 0.1 Ω), read up to 0.8 A.
const INA226_SHUNT_OHM: f32 = 0.1;
const INA226_MAX_CURRENT_A: f32 = 0.8;
/// SHT4x "read serial number" (datasheet 4.5): harmless, and acknowledged only by an SHT4x.
const SHT4X_READ_SERIAL: u8 = 0x89;
/// PMBus PAGE (0x00), readable on both PMBus parts; also the TMP1xx temperature register.
const FIRST_REGISTER: u8 = 0x00;

/// What the probe found: the parts (device `N` of the node is `parts[N]`) and their channels.
#[derive(Debug, Default)]
pub struct Found {
    pub parts: heapless::Vec<DeviceConfig, MAX_PARTS>,
    pub channels: heapless::Vec<ChannelSetup, MAX_CHANNELS>,
    /// Parts or channels left out for lack of room.
    pub left_out: u8,
}

/// Probes every address a supported part can take, in address order.
pub fn probe<I: I2c>(i2c: &mut I) -> Found {
    let mut found = Found::default();
    for address in 0x08..=0x77u8 {
        if let Some(part) = identify(i2c, address) {
            found.add(address, part);
        }
    }
    found
}

fn identify<I: I2c>(i2c: &mut I, address: u8) -> Option<DeviceConfig> {
    let register = |i2c: &mut I, register: u8| {
        let mut value = [0u8; 2];
        i2c.write_read(address, &[register], &mut value)
            .ok()
            .map(|()| value)
    };
    let answers = |i2c: &mut I| i2c.write_read(address, &[FIRST_REGISTER], &mut [0u8; 1]).is_ok();
    match address {
        0x40..=0x4F
            if register(i2c, INA226_MANUFACTURER_ID) == Some(INA226_TI)
                && register(i2c, INA226_DIE_ID) == Some(INA226_DIE) =>
        {
            let calibration = Calibration::for_max_current(INA226_SHUNT_OHM, INA226_MAX_CURRENT_A).ok()?;
            Some(DeviceConfig::Ina226 { address, calibration })
        }
        0x44 if i2c.write(address, &[SHT4X_READ_SERIAL]).is_ok() => Some(DeviceConfig::Sht4x {
            address,
            precision: Precision::High,
        }),
        0x48..=0x4B if answers(i2c) => Some(DeviceConfig::Tmp105 {
            address,
            resolution: Resolution::Bits12,
        }),
        0x10..=0x1F if answers(i2c) => Some(DeviceConfig::Adm1272 {
            address,
            config: Adm1272Config::default(),
            monitor_vout_and_temperature: false,
        }),
        0x52..=0x55 if answers(i2c) => Some(DeviceConfig::Max31785 { address }),
        _ => None,
    }
}

impl Found {
    fn add(&mut self, address: u8, part: DeviceConfig) {
        let device = self.parts.len() as u8;
        let (name, table): (heapless::String<24>, &[(Measurement, u8, Filter)]) = match part {
            DeviceConfig::Tmp105 { .. } => {
                let name = match address {
                    0x48 => "inlet",
                    0x49 => "outlet",
                    0x4A => "inlet_top",
                    _ => "outlet_top",
                };
                // 12 bits: 1/16 °C, exact in 4 decimals.
                (named(name, None), &[(Measurement::Temperature, 4, Filter::None)])
            }
            DeviceConfig::Sht4x { .. } => (
                named("room", None),
                &[
                    (Measurement::Temperature, 2, Filter::None),
                    (Measurement::RelativeHumidity, 1, Filter::None),
                ],
            ),
            DeviceConfig::Ina226 { .. } => (named("rail", Some(address)), &RAIL),
            DeviceConfig::Adm1272 { .. } => (named("psu_in", (address != 0x10).then_some(address)), &FEED),
            DeviceConfig::Max31785 { .. } => (
                named("fan0", (address != 0x52).then_some(address)),
                &[
                    (Measurement::FanSpeed { fan: 0 }, 0, Filter::None),
                    (Measurement::FanDuty { fan: 0 }, 2, Filter::None),
                ],
            ),
        };
        let Ok(name) = ChannelName::new(&name) else {
            self.left_out = self.left_out.saturating_add(1);
            return;
        };
        if self.parts.len() == MAX_PARTS || self.channels.capacity() - self.channels.len() < table.len() {
            self.left_out = self.left_out.saturating_add(1);
            return;
        }
        let _ = self.parts.push(part);
        for &(measurement, decimals, filter) in table {
            let _ = self.channels.push(
                ChannelSetup::new(Channel::new(name.clone(), device, measurement))
                    .with_decimals(decimals)
                    .with_filter(filter),
            );
        }
    }
}

/// A hot-swap feed's readings. Power readings spike with load transients: a median of 3 drops them.
const FEED: [(Measurement, u8, Filter); 3] = [
    (Measurement::InputVoltage, 3, Filter::None),
    (Measurement::Current, 3, Filter::None),
    (Measurement::Power, 3, Filter::Median(3)),
];
/// A shunt-monitored rail's readings.
const RAIL: [(Measurement, u8, Filter); 3] = [
    (Measurement::BusVoltage, 3, Filter::None),
    (Measurement::Current, 3, Filter::None),
    (Measurement::Power, 3, Filter::Median(3)),
];

/// `base`, or `base_XX` with the address in hex.
fn named(base: &str, address: Option<u8>) -> heapless::String<24> {
    let mut name = heapless::String::new();
    let _ = name.push_str(base);
    if let Some(address) = address {
        let _ = write!(name, "_{address:02x}");
    }
    name
}
