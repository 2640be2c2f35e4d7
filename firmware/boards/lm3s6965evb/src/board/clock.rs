//! A monotonic clock and busy-wait delays from the Cortex-M3 SysTick timer.
//!
//! SysTick counts the processor clock (CLKSOURCE = 1): QEMU's lm3s6965evb does not connect the SysTick
//! reference clock, so CLKSOURCE = 0 would never tick. It runs over its whole 24-bit range (1.34 s at
//! 12.5 MHz) and its exception only counts wraps; time is wraps × 2^24 plus what the counter has run down
//! since. Reading time from the counter instead of counting 1 ms interrupts matters under QEMU: when the
//! host is busy, timer deadlines that fall while SysTick is still pending merge into one exception (the
//! pending state is a single bit), and a 1 ms tick counter was seen to lose 10–35 % of its ticks on a
//! loaded 2-core host. The counter value itself follows QEMU's virtual clock exactly.

use core::cell::Cell;

use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;
use embedded_hal::delay::DelayNs;

/// SysTick ticks from one wrap to the next: the 24-bit reload register at its maximum
/// (ARMv7-M ARM B3.3.3).
const TICKS_PER_WRAP: u64 = 1 << 24;

/// SysTick wraps since [`Clock::start`].
static WRAPS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
/// The latest tick count handed out, to keep time monotonic (see [`now_ticks`]).
static LATEST_TICKS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

#[exception]
fn SysTick() {
    interrupt::free(|cs| {
        let wraps = WRAPS.borrow(cs);
        wraps.set(wraps.get().wrapping_add(1));
    });
}

/// SysTick ticks since [`Clock::start`].
fn now_ticks() -> u64 {
    interrupt::free(|cs| {
        let wraps = WRAPS.borrow(cs);
        let mut wrapped = wraps.get();
        let mut remaining = SYST::get_current();
        if SCB::is_pendst_pending() {
            // The counter wrapped but its exception has not run (it is masked here): count that wrap now,
            // and read the counter again, since the first read may have been before the wrap.
            wrapped += 1;
            remaining = SYST::get_current();
        }
        let mut ticks = wrapped * TICKS_PER_WRAP + (TICKS_PER_WRAP - 1 - u64::from(remaining));
        let latest = LATEST_TICKS.borrow(cs);
        if ticks < latest.get() {
            // Behind the last reading: a wrap whose exception QEMU merged into the next one (only when the
            // host starved the guest for over a wrap). Take it into account from now on.
            wraps.set(wraps.get() + 1);
            ticks += TICKS_PER_WRAP;
        }
        let ticks = ticks.max(latest.get());
        latest.set(ticks);
        ticks
    })
}

/// Time since boot, in milliseconds, and delays. Cheap to copy: every copy reads the same counter.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    ticks_per_millisecond: u64,
}

impl Clock {
    pub(super) fn start(mut syst: SYST, sysclk_hz: u32) -> Self {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(u32::try_from(TICKS_PER_WRAP - 1).unwrap_or(0x00FF_FFFF));
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Self {
            ticks_per_millisecond: u64::from(sysclk_hz / 1_000).max(1),
        }
    }

    /// Milliseconds since the board was set up.
    pub fn now_ms(&self) -> u64 {
        now_ticks() / self.ticks_per_millisecond
    }

    /// The same as a smoltcp timestamp.
    pub fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_millis(i64::try_from(self.now_ms()).unwrap_or(i64::MAX))
    }

    /// Spins until `ticks` SysTick ticks have passed.
    fn spin_ticks(&self, ticks: u64) {
        let deadline = now_ticks().saturating_add(ticks);
        while now_ticks() < deadline {}
    }
}

impl DelayNs for Clock {
    fn delay_ns(&mut self, ns: u32) {
        self.spin_ticks((u64::from(ns) * self.ticks_per_millisecond).div_ceil(1_000_000));
    }

    fn delay_us(&mut self, us: u32) {
        self.spin_ticks((u64::from(us) * self.ticks_per_millisecond).div_ceil(1_000));
    }

    fn delay_ms(&mut self, ms: u32) {
        self.spin_ticks(u64::from(ms) * self.ticks_per_millisecond);
    }
}
