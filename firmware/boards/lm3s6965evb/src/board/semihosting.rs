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

/// SYS_OPEN, SYS_CLOSE, SYS_WRITE, SYS_READ, SYS_SEEK, SYS_FLEN (6.5.14, 6.5.3, 6.5.31, 6.5.22,
/// 6.5.25, 6.5.5).
const SYS_OPEN: u32 = 0x01;
const SYS_CLOSE: u32 = 0x02;
const SYS_WRITE: u32 = 0x05;
const SYS_READ: u32 = 0x06;
const SYS_SEEK: u32 = 0x0A;
const SYS_FLEN: u32 = 0x0C;
/// SYS_OPEN's mode numbers for fopen's "rb", "r+b" (open an existing file) and "w+b" (create it).
const MODE_READ: usize = 1;
const MODE_READ_WRITE_EXISTING: usize = 3;
const MODE_READ_WRITE_CREATE: usize = 7;
/// The longest host path taken, NUL included.
const MAX_PATH: usize = 128;

/// A file on the host, open for reading and writing at any offset. QEMU writes through to the host's
/// file at each call, so what was written survives a reset of the guest and the end of QEMU itself.
#[derive(Debug)]
pub struct HostFile {
    handle: usize,
}

/// A host file operation failed (or semihosting is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFileError;

impl HostFile {
    /// Opens `path` on the host, creating it when it does not exist; `created` says which happened.
    pub fn open_or_create(path: &str) -> Result<(Self, bool), HostFileError> {
        Self::open(path, MODE_READ_WRITE_EXISTING)
            .map(|file| (file, false))
            .or_else(|_| Self::open(path, MODE_READ_WRITE_CREATE).map(|file| (file, true)))
    }

    fn open(path: &str, mode: usize) -> Result<Self, HostFileError> {
        // The host reads the name up to its NUL (QEMU's `lock_user_string`), so it needs one.
        let mut name = [0u8; MAX_PATH];
        name.get_mut(..path.len())
            .filter(|_| path.len() < MAX_PATH && !path.as_bytes().contains(&0))
            .ok_or(HostFileError)?
            .copy_from_slice(path.as_bytes());
        let mut block: [usize; 3] = [name.as_ptr() as usize, mode, path.len()];
        let handle = call(SYS_OPEN, block.as_mut_ptr() as usize);
        if (handle as isize) < 0 {
            return Err(HostFileError);
        }
        Ok(HostFile { handle })
    }

    /// Closes the file (the host keeps an open handle until then, across guest resets too).
    pub fn close(self) {
        let mut block: [usize; 1] = [self.handle];
        let _ = call(SYS_CLOSE, block.as_mut_ptr() as usize);
    }

    /// The file's length in bytes.
    pub fn len(&self) -> Result<usize, HostFileError> {
        let mut block: [usize; 1] = [self.handle];
        let len = call(SYS_FLEN, block.as_mut_ptr() as usize);
        if (len as isize) < 0 {
            return Err(HostFileError);
        }
        Ok(len)
    }

    /// Reads `buf.len()` bytes from `offset`; bytes past the end of the file read as `past_end`.
    pub fn read_at(&mut self, offset: usize, buf: &mut [u8], past_end: u8) -> Result<(), HostFileError> {
        self.seek(offset)?;
        let mut block: [usize; 3] = [self.handle, buf.as_mut_ptr() as usize, buf.len()];
        // SYS_READ returns how many bytes it did *not* read.
        let missing = call(SYS_READ, block.as_mut_ptr() as usize);
        let read = buf.len().checked_sub(missing).ok_or(HostFileError)?;
        if let Some(rest) = buf.get_mut(read..) {
            rest.fill(past_end);
        }
        Ok(())
    }

    /// Writes `bytes` at `offset`.
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), HostFileError> {
        self.seek(offset)?;
        let mut block: [usize; 3] = [self.handle, bytes.as_ptr() as usize, bytes.len()];
        // SYS_WRITE returns how many bytes it did *not* write.
        match call(SYS_WRITE, block.as_mut_ptr() as usize) {
            0 => Ok(()),
            _ => Err(HostFileError),
        }
    }

    fn seek(&mut self, offset: usize) -> Result<(), HostFileError> {
        let mut block: [usize; 2] = [self.handle, offset];
        match call(SYS_SEEK, block.as_mut_ptr() as usize) {
            0 => Ok(()),
            _ => Err(HostFileError),
        }
    }
}

/// Eight random bytes from the host's `/dev/urandom`, or `None` when the host has none. The LM3S6965 has
/// no random number generator, and a clock-based boot id repeats when QEMU is restarted within the same
/// second (seen in tests/tests/node_provisioning.rs): the gateway would take the new boot's first records
/// for repeats of the old one's.
pub fn host_random() -> Option<u64> {
    let urandom = HostFile::open("/dev/urandom", MODE_READ).ok()?;
    let mut bytes = [0u8; 8];
    let mut block: [usize; 3] = [urandom.handle, bytes.as_mut_ptr() as usize, bytes.len()];
    let missing = call(SYS_READ, block.as_mut_ptr() as usize);
    urandom.close();
    (missing == 0).then(|| u64::from_le_bytes(bytes))
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
