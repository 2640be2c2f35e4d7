//! Volatile access to the memory-mapped registers of the LM3S6965.
//!
//! This is the only place where the drivers touch raw addresses. A [`Register`] can only be made inside
//! `board` from the peripheral base addresses of the datasheet's memory map (LM3S6965 datasheet,
//! table 2-4 "Memory Map") plus a register offset from that peripheral's register map.

/// One 32-bit memory-mapped peripheral register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Register {
    address: usize,
}

impl Register {
    /// The register at `offset` in the peripheral block at `base`.
    pub(super) const fn at(base: usize, offset: usize) -> Self {
        Self {
            address: base + offset,
        }
    }

    pub(super) fn read(self) -> u32 {
        // SAFETY: `address` is a word-aligned register of an LM3S6965 peripheral (see module docs), which is
        // always mapped; a volatile read of it touches no memory that Rust code owns.
        unsafe { core::ptr::read_volatile(self.address as *const u32) }
    }

    pub(super) fn write(self, value: u32) {
        // SAFETY: as in `read`; writing a peripheral register changes device state only, never memory that
        // Rust code owns (none of these peripherals does DMA).
        unsafe { core::ptr::write_volatile(self.address as *mut u32, value) }
    }

    pub(super) fn set_bits(self, bits: u32) {
        self.write(self.read() | bits);
    }
}
