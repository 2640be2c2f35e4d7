//! Watchdog timer 0 (LM3S6965 datasheet chapter 12), which QEMU 7.2 models as `luminary-watchdog`
//! (`hw/watchdog/cmsdk-apb-watchdog.c`) clocked from SYSCLK.
//!
//! The counter runs down from LOAD twice: the first time-out raises its interrupt (left disabled in the
//! NVIC, so nothing runs), the second resets the chip if RESEN is set. [`Watchdog::start`] therefore loads
//! half the requested time-out. Once started it cannot be stopped: the Stellaris ignores writes to CTL
//! after INTEN is set (datasheet 12.4; the model does the same), so INTEN and RESEN go in one write.
//! Between feeds the registers are locked (WDTLOCK), so a stray write cannot disarm it.

use super::mmio::Register;

const WATCHDOG0_BASE: usize = 0x4000_0000;
const LOAD: Register = Register::at(WATCHDOG0_BASE, 0x000);
const CTL: Register = Register::at(WATCHDOG0_BASE, 0x008);
/// Any write clears the time-out interrupt and reloads the counter from LOAD.
const ICR: Register = Register::at(WATCHDOG0_BASE, 0x00C);
const LOCK: Register = Register::at(WATCHDOG0_BASE, 0xC00);

const CTL_INTEN: u32 = 1 << 0;
const CTL_RESEN: u32 = 1 << 1;
const UNLOCK: u32 = 0x1ACC_E551;
/// Any other value locks.
const LOCK_VALUE: u32 = 0;

/// The hardware watchdog.
#[derive(Debug)]
pub struct Watchdog {
    sysclk_hz: u32,
}

impl Watchdog {
    pub(super) fn new(sysclk_hz: u32) -> Self {
        Self { sysclk_hz }
    }

    /// Arms the watchdog: the chip resets unless [`feed`](Self::feed) is called at least every
    /// `timeout_ms` milliseconds. Calling it again only changes the time-out.
    pub fn start(&mut self, timeout_ms: u32) {
        let half_timeout_ticks = u64::from(self.sysclk_hz) * u64::from(timeout_ms) / 2_000;
        LOCK.write(UNLOCK);
        LOAD.write(u32::try_from(half_timeout_ticks).unwrap_or(u32::MAX).max(1));
        CTL.write(CTL_INTEN | CTL_RESEN);
        LOCK.write(LOCK_VALUE);
    }

    /// Restarts the time-out.
    pub fn feed(&mut self) {
        LOCK.write(UNLOCK);
        ICR.write(1);
        LOCK.write(LOCK_VALUE);
    }
}
