//! Board support for QEMU's `lm3s6965evb` machine: a TI (Luminary Micro) Stellaris LM3S6965, Cortex-M3.
//!
//! Everything that knows a register lives in [`board`]; an application core is written against the
//! embedded-hal / embedded-io / smoltcp traits that the board's drivers implement. A real board is a new
//! board crate or module with the same shape, not an edit of the core.
#![no_std]

pub mod board;
