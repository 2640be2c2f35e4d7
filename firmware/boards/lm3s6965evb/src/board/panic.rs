//! On panic: say why on the console, then reset (the watchdog would, later; a node that reboots at once
//! is back on the bus sooner).

use core::fmt::Write;
use core::panic::PanicInfo;

use super::uart::Uart0Tx;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    let mut console = Uart0Tx::for_panic();
    let _ = write!(console, "\r\npanic: {}", info.message());
    if let Some(location) = info.location() {
        let _ = write!(console, " at {}:{}", location.file(), location.line());
    }
    let _ = write!(console, "\r\nresetting\r\n");
    let _ = embedded_io::Write::flush(&mut console);
    super::reset()
}
