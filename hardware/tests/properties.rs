//! Conversions hold over their whole range, not just at the datasheet's examples.
#![allow(clippy::unwrap_used, reason = "test code")]

use proptest::prelude::*;
use rackwatch_hardware::adm1272::{Adm1272Config, CurrentSenseRange, VoltageRange};
use rackwatch_hardware::air;
use rackwatch_hardware::tmp105::raw_to_celsius;

fn any_config() -> impl Strategy<Value = Adm1272Config> {
    (any::<bool>(), any::<bool>(), 0.1f32..2.0).prop_map(|(v100, mv30, sense)| Adm1272Config {
        voltage_range: if v100 {
            VoltageRange::V100
        } else {
            VoltageRange::V60
        },
        current_sense_range: if mv30 {
            CurrentSenseRange::Mv30
        } else {
            CurrentSenseRange::Mv15
        },
        sense_resistor_milliohm: sense,
    })
}

proptest! {
    #[test]
    fn adm1272_voltage_decodes_within_half_an_lsb(config in any_config(), volts in 0.0f32..59.0) {
        let format = config.voltage_format();
        let decoded = format.decode(format.encode(volts));
        let lsb = 1.0 / (format.m * 10f32.powi(i32::from(format.r)));
        prop_assert!((decoded - volts).abs() <= 0.5 * lsb + 1e-4, "{volts} → {decoded}");
    }

    #[test]
    fn adm1272_current_decodes_within_half_an_lsb(config in any_config(), amps in -20.0f32..20.0) {
        let format = config.current_format();
        let decoded = format.decode(format.encode(amps));
        let lsb = 1.0 / (format.m * 10f32.powi(i32::from(format.r)));
        prop_assert!((decoded - amps).abs() <= 0.5 * lsb + 1e-3, "{amps} → {decoded}");
    }

    #[test]
    fn tmp105_conversion_is_monotonic_in_the_signed_register(a in any::<i16>(), b in any::<i16>()) {
        let (ta, tb) = (raw_to_celsius(a.cast_unsigned()), raw_to_celsius(b.cast_unsigned()));
        prop_assert_eq!(a < b, ta < tb);
        prop_assert!((-128.0..128.0).contains(&ta));
    }

    #[test]
    fn dew_point_and_relative_humidity_invert_each_other(t in -10.0f32..50.0, rh in 1.0f32..100.0) {
        let td = air::dew_point(t, rh).unwrap();
        prop_assert!(td <= t + 1e-3);
        prop_assert!((air::relative_humidity(t, td) - rh).abs() < 0.05);
    }
}
