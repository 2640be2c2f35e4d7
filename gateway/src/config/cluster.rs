//! `[cluster]`: several gateways sharing the site, each serving one partition of its rows
//! (gateway/CLUSTER.md).

use std::collections::HashSet;

use rackwatch_protocols::Label;
use serde::Deserialize;

use super::error::{ConfigError, invalid};

/// This gateway's share of a site served by several (gateway/CLUSTER.md). Every gateway of the site
/// has the same `partitions` and its own `partition`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The partition this gateway serves: an index into `partitions`.
    pub partition: usize,
    /// The inventory rows of each partition. A node in no listed row, or missing from the
    /// inventory, belongs to partition 0.
    pub partitions: Vec<Vec<Label>>,
}

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.partition >= self.partitions.len() {
            return Err(invalid(
                "cluster.partition",
                format!(
                    "{} is not one of the {} partitions (counted from 0)",
                    self.partition,
                    self.partitions.len()
                ),
            ));
        }
        let mut rows = HashSet::new();
        if let Some(row) = self.partitions.iter().flatten().find(|row| !rows.insert(*row)) {
            return Err(invalid(
                "cluster.partitions",
                format!("row {row} is in two partitions"),
            ));
        }
        Ok(())
    }

    /// What `--partition N` adds to the MQTT client id: `-pN` for the highest partition, the
    /// longest suffix any gateway of the site gets.
    pub(super) fn longest_client_suffix(&self) -> String {
        format!("-p{}", self.partitions.len().saturating_sub(1))
    }
}
