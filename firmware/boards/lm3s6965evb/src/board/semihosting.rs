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

/// SYS_GET_CMDLINE (ARM "Semihosting for AArch32 and AArch64", 6.5.6).
const SYS_GET_CMDLINE: u32 = 0x15;
/// SYS_TIME (6.5.26): seconds since 1970 on the host.
const SYS_TIME: u32 = 0x11;

/// The command line QEMU gives the guest: the kernel's path followed by the words of `-append`
/// (QEMU falls back to `-kernel`/`-append` when `-semihosting-config` has no `arg=`). `None` when the
/// host refuses or the line does not fit `buf` or is not UTF-8.
pub fn command_line(buf: &mut [u8]) -> Option<&str> {
    // The parameter block: buffer address and size in; the length written comes back in word 1.
    let mut block: [usize; 2] = [buf.as_mut_ptr() as usize, buf.len()];
    let status = call(SYS_GET_CMDLINE, block.as_mut_ptr() as usize);
    if status != 0 {
        return None;
    }
    let [_, len] = block;
    core::str::from_utf8(buf.get(..len)?).ok()
}

/// The host's clock in seconds since 1970, or `None` when the host does not answer.
pub fn host_time_s() -> Option<u32> {
    let seconds = call(SYS_TIME, 0);
    (seconds != usize::MAX).then(|| u32::try_from(seconds).unwrap_or(u32::MAX))
}

/// One semihosting call: operation in r0, parameter in r1, result in r0.
fn call(operation: u32, parameter: usize) -> usize {
    #[cfg(target_arch = "arm")]
    {
        let mut result = operation as usize;
        // SAFETY: under QEMU with semihosting enabled, BKPT 0xAB performs `operation` on the parameter
        // block at `parameter`, which the callers keep alive and correctly sized for the call; the host
        // writes only inside the buffer the block describes. Without a debugger it would HardFault,
        // which is why only this QEMU board calls it.
        unsafe {
            core::arch::asm!(
                "bkpt #0xab",
                inout("r0") result,
                in("r1") parameter,
                options(nostack)
            );
        }
        result
    }
    #[cfg(not(target_arch = "arm"))]
    {
        let _ = (operation, parameter);
        usize::MAX
    }
}
