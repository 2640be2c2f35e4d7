//! What PMBus parts (ADM1272, MAX31785) have in common: command codes, the DIRECT data format and
//! STATUS_WORD.
//!
//! Specification: PMBus Power System Management Protocol, Part II, revision 1.3 (pmbus.org).
//! PMBus words are little-endian (SMBus "Read Word"). Packet error checking (PEC) is not used: both
//! parts accept transfers without it, and QEMU's models do not implement it.

/// Standard command codes (Part II, "Command Summary").
pub(crate) struct Command;

impl Command {
    pub(crate) const PAGE: u8 = 0x00;
    pub(crate) const CLEAR_FAULTS: u8 = 0x03;
    pub(crate) const FAN_CONFIG_1_2: u8 = 0x3A;
    pub(crate) const FAN_COMMAND_1: u8 = 0x3B;
    pub(crate) const STATUS_WORD: u8 = 0x79;
    pub(crate) const STATUS_FANS_1_2: u8 = 0x81;
    pub(crate) const READ_VIN: u8 = 0x88;
    pub(crate) const READ_VOUT: u8 = 0x8B;
    pub(crate) const READ_IOUT: u8 = 0x8C;
    pub(crate) const READ_TEMPERATURE_1: u8 = 0x8D;
    pub(crate) const READ_FAN_SPEED_1: u8 = 0x90;
    pub(crate) const READ_PIN: u8 = 0x97;
}

/// DIRECT format coefficients (Part II, "DIRECT Data Format"): a device sends Y = (m·X + b)·10^R,
/// so a reading is X = (Y·10^−R − b) / m.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectFormat {
    pub m: f32,
    pub b: f32,
    pub r: i8,
}

impl DirectFormat {
    /// The real-world value of the register value `y`.
    pub fn decode(self, y: i32) -> f32 {
        // y fits 16 bits, exactly representable in f32.
        #[allow(
            clippy::cast_precision_loss,
            reason = "16-bit register values are exact in f32"
        )]
        let y = y as f32;
        (y * libm::powf(10.0, -f32::from(self.r)) - self.b) / self.m
    }

    /// The register value the device would send for `x` (rounded), for tests and simulations.
    pub fn encode(self, x: f32) -> i32 {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "rounded and in range of a register"
        )]
        let y = libm::roundf((self.m * x + self.b) * libm::powf(10.0, f32::from(self.r))) as i32;
        y
    }
}

/// One condition STATUS_WORD reports (Part II, "STATUS_WORD" and "STATUS_BYTE").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusFault {
    /// Bit 15: an output voltage fault or warning (see STATUS_VOUT).
    Vout,
    /// Bit 14: an output current or power fault or warning (see STATUS_IOUT).
    IoutPout,
    /// Bit 13: an input voltage, current or power fault or warning (see STATUS_INPUT).
    Input,
    /// Bit 12: a manufacturer-specific fault (ADM1272: see STATUS_MFR_SPECIFIC).
    ManufacturerSpecific,
    /// Bit 11: POWER_GOOD# — the power-good signal is negated.
    PowerNotGood,
    /// Bit 10: a fan fault or warning (see STATUS_FANS_1_2).
    Fans,
    /// Bit 9: another condition (see STATUS_OTHER).
    Other,
    /// Bit 8: a fault the device cannot attribute.
    Unknown,
    /// Bit 7: the device was busy and could not answer.
    Busy,
    /// Bit 6: the unit is not delivering power (hot-swap FET off).
    Off,
    /// Bit 5: output overvoltage fault.
    VoutOvervoltage,
    /// Bit 4: output overcurrent fault.
    IoutOvercurrent,
    /// Bit 3: input undervoltage fault.
    VinUndervoltage,
    /// Bit 2: a temperature fault or warning (see STATUS_TEMPERATURE).
    Temperature,
    /// Bit 1: communication, memory or logic fault (bad command, PEC).
    Communication,
    /// Bit 0: a fault not listed in the low byte.
    NoneOfTheAbove,
}

const STATUS_BITS: [(u16, StatusFault); 16] = [
    (1 << 15, StatusFault::Vout),
    (1 << 14, StatusFault::IoutPout),
    (1 << 13, StatusFault::Input),
    (1 << 12, StatusFault::ManufacturerSpecific),
    (1 << 11, StatusFault::PowerNotGood),
    (1 << 10, StatusFault::Fans),
    (1 << 9, StatusFault::Other),
    (1 << 8, StatusFault::Unknown),
    (1 << 7, StatusFault::Busy),
    (1 << 6, StatusFault::Off),
    (1 << 5, StatusFault::VoutOvervoltage),
    (1 << 4, StatusFault::IoutOvercurrent),
    (1 << 3, StatusFault::VinUndervoltage),
    (1 << 2, StatusFault::Temperature),
    (1 << 1, StatusFault::Communication),
    (1 << 0, StatusFault::NoneOfTheAbove),
];

/// The STATUS_WORD register, decoded into [`StatusFault`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    /// No fault or warning is flagged.
    pub const fn is_clear(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, fault: StatusFault) -> bool {
        STATUS_BITS
            .iter()
            .any(|&(bit, f)| f == fault && self.0 & bit != 0)
    }

    /// The flagged conditions, most significant bit first.
    pub fn faults(self) -> impl Iterator<Item = StatusFault> {
        STATUS_BITS
            .into_iter()
            .filter(move |&(bit, _)| self.0 & bit != 0)
            .map(|(_, fault)| fault)
    }

    /// The word with `fault` flagged, for simulations.
    pub fn with(self, fault: StatusFault) -> Self {
        let bit = STATUS_BITS
            .iter()
            .find(|&&(_, f)| f == fault)
            .map_or(0, |&(bit, _)| bit);
        StatusWord(self.0 | bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_word_lists_its_faults_high_bit_first() {
        let word = StatusWord(0x0850); // POWER_GOOD#, OFF, IOUT_OC_FAULT
        let faults: heapless::Vec<StatusFault, 16> = word.faults().collect();
        assert_eq!(
            faults.as_slice(),
            [
                StatusFault::PowerNotGood,
                StatusFault::Off,
                StatusFault::IoutOvercurrent
            ]
        );
        assert!(word.contains(StatusFault::Off));
        assert!(!word.contains(StatusFault::Temperature));
    }

    #[test]
    fn status_word_built_from_faults_round_trips() {
        let word = StatusWord::default()
            .with(StatusFault::Input)
            .with(StatusFault::VinUndervoltage);
        assert_eq!(word, StatusWord(0x2008));
        assert!(StatusWord::default().is_clear());
    }

    #[test]
    fn direct_format_decode_inverts_encode() {
        let f = DirectFormat {
            m: 4062.0,
            b: 0.0,
            r: -2,
        };
        let y = f.encode(54.0);
        assert_eq!(y, 2193);
        assert!((f.decode(y) - 54.0).abs() < 0.02);
    }
}
