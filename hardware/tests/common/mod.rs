//! Shared helpers: each test reads as "these bytes on the bus give this value".
#![allow(dead_code, reason = "each test file uses a subset")]

use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

/// A NACK of the address byte: the device is absent or busy.
pub const NACK: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);

/// A register read as the drivers do it by default: pointer write with STOP, then a read.
pub fn register_read(address: u8, register: u8, answer: &[u8]) -> [Transaction; 2] {
    [
        Transaction::write(address, vec![register]),
        Transaction::read(address, answer.to_vec()),
    ]
}

/// A bus that expects exactly `transactions`, in order.
pub fn bus(transactions: &[Transaction]) -> Mock {
    Mock::new(transactions)
}

/// Concatenates transaction groups.
pub fn script<const N: usize>(groups: [&[Transaction]; N]) -> Vec<Transaction> {
    groups.iter().flat_map(|g| g.iter().cloned()).collect()
}
