//! The `lm3s6965evb` board as QEMU 7.2 models it (`hw/arm/stellaris.c`).
//!
//! | what | where | driver |
//! | --- | --- | --- |
//! | I2C0 master, 100 kHz | `0x4002_0000`, pins PB2 (SCL) / PB3 (SDA) | [`I2c0`]: `embedded_hal::i2c::I2c` |
//! | UART0 console, 115200 8N1 | `0x4000_C000`, pins PA0 (RX) / PA1 (TX) | [`Uart0`]: `embedded_io::{Read, Write}`, `core::fmt::Write` |
//! | Ethernet MAC | `0x4004_8000` | [`Ethernet`]: `smoltcp::phy::Device` |
//! | SysTick, 1 ms | core | [`Clock`]: milliseconds, `smoltcp::time::Instant`, `embedded_hal::delay::DelayNs` |
//! | Watchdog 0 | `0x4000_0000` | [`Watchdog`] |
//! | Configuration flash | a host file, through semihosting | [`flash::HostFlash`]: `embedded_storage::nor_flash::NorFlash` |
//!
//! Call [`Board::take`] once, then hand the parts to the application core.

mod clock;
mod ethernet;
pub mod flash;
mod i2c;
mod mmio;
mod panic;
mod semihosting;
mod uart;
mod watchdog;

pub use clock::Clock;
pub use ethernet::{Ethernet, EthernetRxToken, EthernetTxToken};
pub use i2c::{I2c0, I2cError};
pub use semihosting::{command_line, exit_qemu, host_random, host_time_s};
pub use uart::{Uart0, Uart0Rx, Uart0Tx, UartError};
pub use watchdog::Watchdog;

use mmio::Register;

/// System clock under QEMU: the model derives it from RCC.SYSDIV as 200 MHz / (SYSDIV + 1)
/// (`ssys_calculate_system_clock`), and the reset value of RCC (0x078E_3AC0) has SYSDIV = 15: 12.5 MHz.
/// The firmware leaves RCC alone. (Real silicon at reset runs from the ±30 % internal oscillator; a real
/// board's module sets up the PLL and changes this number.)
pub const SYSCLK_HZ: u32 = 12_500_000;

/// I2C bus speed: standard mode; all three rack sensors support it.
const I2C_SCL_HZ: u32 = 100_000;
/// Console speed.
const CONSOLE_BAUD: u32 = 115_200;

/// System control block (datasheet section 6.5).
const SYSCTL_BASE: usize = 0x400F_E000;
/// USER0/USER1: the factory MAC address, 3 bytes each in bits 23:0 (datasheet 8.6, "USER0").
const USER0: Register = Register::at(SYSCTL_BASE, 0x1E0);
const USER1: Register = Register::at(SYSCTL_BASE, 0x1E4);
/// Run-mode clock gating (datasheet 6.5: RCGC0, RCGC1, RCGC2).
const RCGC0: Register = Register::at(SYSCTL_BASE, 0x100);
const RCGC1: Register = Register::at(SYSCTL_BASE, 0x104);
const RCGC2: Register = Register::at(SYSCTL_BASE, 0x108);
const RCGC0_WDT0: u32 = 1 << 3;
const RCGC1_UART0: u32 = 1 << 0;
const RCGC1_I2C0: u32 = 1 << 12;
const RCGC2_GPIOA: u32 = 1 << 0;
const RCGC2_GPIOB: u32 = 1 << 1;
const RCGC2_EMAC0: u32 = 1 << 28;
const RCGC2_EPHY0: u32 = 1 << 30;

/// GPIO ports A and B (datasheet 9.5, register map).
const GPIOA_BASE: usize = 0x4000_4000;
const GPIOB_BASE: usize = 0x4000_5000;
const GPIO_AFSEL: usize = 0x420;
const GPIO_ODR: usize = 0x50C;
const GPIO_PUR: usize = 0x510;
const GPIO_DEN: usize = 0x51C;
/// PA0 = U0Rx, PA1 = U0Tx.
const PA_UART0: u32 = 0b0000_0011;
/// PB2 = I2C0SCL, PB3 = I2C0SDA.
const PB_I2C0: u32 = 0b0000_1100;
/// SDA is open-drain (datasheet 15.4, "I2C initialization": GPIOODR for the SDA pin).
const PB_I2C0_SDA: u32 = 0b0000_1000;

/// QEMU's default NIC address, used when USER0/USER1 are not programmed.
const FALLBACK_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// The board's peripherals, each set up and ready to use.
#[derive(Debug)]
pub struct Board {
    /// The sensor bus.
    pub i2c: I2c0,
    /// Serial console and provisioning link.
    pub console: Uart0,
    /// The Ethernet MAC, a smoltcp device.
    pub ethernet: Ethernet,
    /// Monotonic millisecond clock and delay.
    pub clock: Clock,
    /// The hardware watchdog, not yet started.
    pub watchdog: Watchdog,
}

impl Board {
    /// Sets up the board; `None` if it has been taken before.
    pub fn take() -> Option<Self> {
        let core = cortex_m::Peripherals::take()?;

        RCGC0.set_bits(RCGC0_WDT0);
        RCGC1.set_bits(RCGC1_UART0 | RCGC1_I2C0);
        RCGC2.set_bits(RCGC2_GPIOA | RCGC2_GPIOB | RCGC2_EMAC0 | RCGC2_EPHY0);
        // A few clock cycles must pass after gating a peripheral on before its registers respond
        // (datasheet 6.5, RCGC0 note); reading a gating register back provides them.
        let _ = RCGC2.read();

        Register::at(GPIOA_BASE, GPIO_AFSEL).set_bits(PA_UART0);
        Register::at(GPIOA_BASE, GPIO_DEN).set_bits(PA_UART0);
        Register::at(GPIOB_BASE, GPIO_AFSEL).set_bits(PB_I2C0);
        Register::at(GPIOB_BASE, GPIO_ODR).set_bits(PB_I2C0_SDA);
        Register::at(GPIOB_BASE, GPIO_PUR).set_bits(PB_I2C0);
        Register::at(GPIOB_BASE, GPIO_DEN).set_bits(PB_I2C0);

        Some(Self {
            i2c: I2c0::new(SYSCLK_HZ, I2C_SCL_HZ),
            console: Uart0::new(SYSCLK_HZ, CONSOLE_BAUD),
            ethernet: Ethernet::new(factory_mac_address()),
            clock: Clock::start(core.SYST, SYSCLK_HZ),
            watchdog: Watchdog::new(SYSCLK_HZ),
        })
    }
}

/// The MAC address from USER0/USER1 (QEMU fills them from `-nic ...,mac=`), or QEMU's default.
fn factory_mac_address() -> [u8; 6] {
    let (user0, user1) = (USER0.read(), USER1.read());
    // Erased flash (all ones) or an unset model property (zero) holds no address (datasheet 8.6).
    let unprogrammed = |word: u32| word & 0x00FF_FFFF == 0x00FF_FFFF || word & 0x00FF_FFFF == 0;
    if unprogrammed(user0) || unprogrammed(user1) {
        return FALLBACK_MAC;
    }
    let [a, b, c, _] = user0.to_le_bytes();
    let [d, e, f, _] = user1.to_le_bytes();
    [a, b, c, d, e, f]
}

/// Resets the whole chip through the Cortex-M3 SYSRESETREQ (ARMv7-M ARM B3.2.6, AIRCR), which QEMU
/// turns into a machine reset.
pub fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}
