//! Where the spool drains to: the database writers.

pub mod history;
pub mod influx;
