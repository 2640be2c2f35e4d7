//! Moist-air relations shared by the SHT4x dew-point channel and the simulated rack.
//!
//! Magnus formula with the coefficients of Sonntag (1990) over water, a = 17.62, b = 243.12 °C, as
//! used in Sensirion's application note "Dew-point Calculation" and WMO-No. 8 (2018), Annex 4.B:
//! better than 0.35 K between −45 °C and 60 °C.

const MAGNUS_A: f32 = 17.62;
const MAGNUS_B_C: f32 = 243.12;

/// ln of the saturation vapour pressure relative to 6.112 hPa at `temperature_c`.
fn magnus(temperature_c: f32) -> f32 {
    MAGNUS_A * temperature_c / (MAGNUS_B_C + temperature_c)
}

/// Dew point in °C of air at `temperature_c` and `relative_humidity` %RH; `None` for dry air
/// (0 %RH has no dew point) or humidity above 100 %RH.
pub fn dew_point(temperature_c: f32, relative_humidity: f32) -> Option<f32> {
    if !(relative_humidity > 0.0 && relative_humidity <= 100.0) {
        return None;
    }
    let gamma = libm::logf(relative_humidity / 100.0) + magnus(temperature_c);
    Some(MAGNUS_B_C * gamma / (MAGNUS_A - gamma))
}

/// Relative humidity in %RH of air at `temperature_c` whose dew point is `dew_point_c` (capped at
/// 100 %RH: air below its dew point condenses).
pub fn relative_humidity(temperature_c: f32, dew_point_c: f32) -> f32 {
    (100.0 * libm::expf(magnus(dew_point_c) - magnus(temperature_c))).min(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dew_point_of_saturated_air_is_the_air_temperature() {
        let td = dew_point(25.0, 100.0).unwrap();
        assert!((td - 25.0).abs() < 1e-3, "{td}");
    }

    #[test]
    fn dew_point_matches_a_psychrometric_table() {
        // 25 °C at 50 %RH has a dew point of 13.9 °C (psychrometric chart, sea level).
        let td = dew_point(25.0, 50.0).unwrap();
        assert!((td - 13.9).abs() < 0.1, "{td}");
    }

    #[test]
    fn relative_humidity_inverts_dew_point() {
        let rh = relative_humidity(24.0, dew_point(24.0, 37.5).unwrap());
        assert!((rh - 37.5).abs() < 0.01, "{rh}");
    }

    #[test]
    fn dry_air_has_no_dew_point() {
        assert_eq!(dew_point(20.0, 0.0), None);
        assert_eq!(dew_point(20.0, 100.5), None);
    }
}
