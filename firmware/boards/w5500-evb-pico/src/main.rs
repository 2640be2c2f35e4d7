#![no_std]
#![no_main]
use embassy_executor::Spawner;
#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let _p = embassy_rp::init(Default::default());
}
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! { cortex_m::peripheral::SCB::sys_reset() }
