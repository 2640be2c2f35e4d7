//! A monotonic millisecond clock and busy-wait delays from the Cortex-M3 SysTick timer.
//!
//! SysTick counts the processor clock (CLKSOURCE = 1): QEMU's lm3s6965evb does not connect the SysTick
//! reference clock, so CLKSOURCE = 0 would never tick. It reloads every millisecond and its exception
//! advances a 64-bit millisecond count, which does not wrap in the life of a rack.

use core::cell::Cell;

use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use embedded_hal::delay::DelayNs;

/// Milliseconds since [`Clock::start`].
static MILLISECONDS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

#[exception]
fn SysTick() {
    interrupt::free(|cs| {
        let milliseconds = MILLISECONDS.borrow(cs);
        milliseconds.set(milliseconds.get().wrapping_add(1));
    });
}

/// Time since boot, in milliseconds, and delays. Cheap to copy: every copy reads the same counter.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    ticks_per_millisecond: u32,
}

impl Clock {
    pub(super) fn start(mut syst: SYST, sysclk_hz: u32) -> Self {
        // SysTick's counter has 24 bits (ARMv7-M ARM B3.3.3).
        let ticks_per_millisecond = (sysclk_hz / 1_000).clamp(1, 1 << 24);
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(ticks_per_millisecond - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Self {
            ticks_per_millisecond,
        }
    }

    /// Milliseconds since the board was set up.
    pub fn now_ms(&self) -> u64 {
        interrupt::free(|cs| MILLISECONDS.borrow(cs).get())
    }

    /// The same as a smoltcp timestamp.
    pub fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_millis(i64::try_from(self.now_ms()).unwrap_or(i64::MAX))
    }

    /// Spins until `ticks` SysTick ticks have passed. Counts the ticks itself from the current-value
    /// register, so it does not depend on the exception running (it works with interrupts masked) as long
    /// as it polls at least once per millisecond.
    fn spin_ticks(&self, ticks: u64) {
        let period = u64::from(self.ticks_per_millisecond);
        let mut previous = u64::from(SYST::get_current());
        let mut elapsed = 0;
        while elapsed < ticks {
            let current = u64::from(SYST::get_current());
            // The counter runs down from `period - 1` to 0, then reloads.
            elapsed += if current <= previous {
                previous - current
            } else {
                previous + period - current
            };
            previous = current;
        }
    }
}

impl DelayNs for Clock {
    fn delay_ns(&mut self, ns: u32) {
        let ticks = (u64::from(ns) * u64::from(self.ticks_per_millisecond)).div_ceil(1_000_000);
        self.spin_ticks(ticks);
    }

    fn delay_us(&mut self, us: u32) {
        let ticks = (u64::from(us) * u64::from(self.ticks_per_millisecond)).div_ceil(1_000);
        self.spin_ticks(ticks);
    }

    fn delay_ms(&mut self, ms: u32) {
        self.spin_ticks(u64::from(ms) * u64::from(self.ticks_per_millisecond));
    }
}
