//! Where each node's message sequence stands: carried in every spool record so that deduplication
//! survives a restart.

/// Sequence state that must survive a restart for dedup and dating to give the same answers: it
/// travels in every spool record and is restored from the spool at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceMark {
    pub boot: u32,
    pub seq: u32,
    /// Unix ms of the node's boot, as estimated so far.
    pub anchor_ms: i64,
}
