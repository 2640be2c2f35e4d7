//! The bootloader of the rackwatch node on a W5500-EVB-Pico: embassy-boot-rp, as embassy's
//! `examples/boot/bootloader/rp`, in the partitions of `memory.x`.
//!
//! At every reset it reads embassy-boot's state partition. When the application marked a verified
//! update (`mark_updated`), it swaps ACTIVE and DFU page by page (the swap resumes after a power cut)
//! and starts the new image on trial. When the image on trial reset without marking itself booted
//! (`mark_booted`, which the application does once it reached its broker), it swaps back: the previous
//! image runs again and finds the state `Revert`. Otherwise it starts ACTIVE as it is.
#![no_std]
#![no_main]

use core::cell::RefCell;

use cortex_m_rt::{entry, exception};
use embassy_boot_rp::{BootLoader, BootLoaderConfig, WatchdogFlash};
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::Duration;

/// The W25Q16JV on the board.
const FLASH_SIZE: usize = 2 * 1024 * 1024;
/// The watchdog runs while pages are swapped (the flash is fed it at each access) and into the
/// application, which sets its own timeout first thing. A 4 KiB sector erase takes up to 400 ms
/// (W25Q16JV datasheet 9.6, tSE); the RP2040 allows up to 8.3 s.
const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(8);

#[entry]
fn main() -> ! {
    let p = embassy_rp::init(Default::default());
    let flash = WatchdogFlash::<FLASH_SIZE>::start(p.FLASH, p.WATCHDOG, WATCHDOG_TIMEOUT);
    let flash = Mutex::new(RefCell::new(flash));
    let config = BootLoaderConfig::from_linkerfile_blocking(&flash, &flash, &flash);
    let active = config.active.offset();
    // A flash error in the middle of a swap: reset and take the swap up again where its progress says.
    let Ok(loader) = BootLoader::<{ embassy_rp::flash::ERASE_SIZE }>::try_prepare(config) else {
        cortex_m::peripheral::SCB::sys_reset()
    };
    // SAFETY: ACTIVE (memory.x) holds an application linked to run there, whose vector table is its
    // first word; the bootloader touches nothing after this.
    #[allow(unsafe_code)]
    unsafe {
        loader.load(embassy_rp::flash::FLASH_BASE as u32 + active)
    }
}

/// A fault in the bootloader: reset and try again.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
#[cfg_attr(target_os = "none", unsafe(link_section = ".HardFault.user"))]
unsafe extern "C" fn HardFault() {
    cortex_m::peripheral::SCB::sys_reset();
}

#[allow(unsafe_code)]
#[exception]
unsafe fn DefaultHandler(_: i16) -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}
