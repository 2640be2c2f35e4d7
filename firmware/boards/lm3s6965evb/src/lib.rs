//! Board support for QEMU's `lm3s6965evb` machine: a TI (Luminary Micro) Stellaris LM3S6965, Cortex-M3,
//! and what the rackwatch node application needs on top of it.
//!
//! Everything that knows a register lives in [`board`]; the application core (`rackwatch-firmware`) is
//! written against the embedded-hal / smoltcp traits that the board's drivers implement. [`link`] runs
//! the core's byte stream over any smoltcp device, [`settings`] says where the broker is. A real board
//! is a new board crate or module with the same shape, not an edit of the core.
#![no_std]

pub mod board;
pub mod link;
pub mod settings;
