//! ARM semihosting, which QEMU serves with `-semihosting-config enable=on,target=native`.
//!
//! Only for QEMU and debug probes: on a board without a debugger attached, `BKPT` escalates to HardFault.

/// SYS_EXIT (ARM "Semihosting for AArch32 and AArch64", 6.5.2).
const SYS_EXIT: u32 = 0x18;
/// ADP_Stopped_ApplicationExit: QEMU exits with status 0.
const APPLICATION_EXIT: u32 = 0x2_0026;
/// ADP_Stopped_RunTimeErrorUnknown: QEMU exits with status 1.
const RUN_TIME_ERROR: u32 = 0x2_0023;

/// Ends the QEMU process: exit status 0 when `success`, 1 otherwise.
pub fn exit_qemu(success: bool) -> ! {
    let reason = if success { APPLICATION_EXIT } else { RUN_TIME_ERROR };
    #[cfg(target_arch = "arm")]
    // SAFETY: the semihosting call takes its operation in r0 and, on M-profile, SYS_EXIT's reason code in
    // r1; it reads no memory. Under QEMU it does not return; if a debugger resumes us we spin below.
    unsafe {
        core::arch::asm!("bkpt #0xab", in("r0") SYS_EXIT, in("r1") reason, options(nostack));
    }
    #[cfg(not(target_arch = "arm"))]
    let _ = (SYS_EXIT, reason);
    loop {
        cortex_m::asm::wfi();
    }
}
