//! Several gateways sharing one site: the site's nodes are split into partitions by inventory row,
//! and each gateway serves one partition (gateway/CLUSTER.md).
//!
//! A rack's nodes are all in its row, so every reading that ΔT, rack and row power and the alert
//! rules combine reaches the same gateway, in order, and the sequence tracking of a node sees all of
//! its messages. Each partition's telemetry is one MQTT shared-subscription group
//! (`$share/{group}-p{k}/...`), so a second gateway can join a partition's group to take it over in
//! a planned hand-over; a crashed gateway's persistent session keeps its partition's messages in the
//! broker until the gateway (same client id, same spool) is back.

use std::collections::HashMap;

use rackwatch_protocols::SiteId;
use rackwatch_protocols::topic::{self, NodeTopic, PREFIX};

use crate::config::{ClusterConfig, Config};
use crate::model::Route;

/// Which partition each node belongs to, and which one this gateway serves.
#[derive(Debug, Clone)]
pub struct Partition {
    index: usize,
    /// Node -> partition, for the nodes of the inventory whose row is listed; all others are in
    /// partition 0.
    of_node: HashMap<String, usize>,
}

impl Partition {
    pub fn new(cluster: &ClusterConfig, config: &Config) -> Self {
        let of_row: HashMap<&str, usize> = cluster
            .partitions
            .iter()
            .enumerate()
            .flat_map(|(index, rows)| rows.iter().map(move |row| (row.as_str(), index)))
            .collect();
        let of_node = config
            .nodes
            .iter()
            .filter_map(|(node, inventory)| {
                let row = inventory.row.as_deref()?;
                Some((node.to_string(), *of_row.get(row)?))
            })
            .collect();
        Partition {
            index: cluster.partition,
            of_node,
        }
    }

    /// The partition of `node`: its row's, or 0 for a node in no listed row or not in the inventory.
    pub fn of(&self, node: &str) -> usize {
        self.of_node.get(node).copied().unwrap_or(0)
    }

    pub fn owns(&self, node: &str) -> bool {
        self.of(node) == self.index
    }

    /// Whether this gateway processes a message: one on another partition's node topic is not ours.
    /// Serial ports are local to this gateway, and anything that is not a node topic is left to
    /// decoding to reject.
    pub fn owns_route(&self, route: &Route) -> bool {
        match route {
            Route::Mqtt { topic } => topic::parse(topic).map_or(true, |t| self.owns(t.node)),
            Route::Serial { .. } => true,
        }
    }

    /// The inventory restricted to this partition's nodes, for the alert engine and the dashboard:
    /// a silent node of another partition is that gateway's to report.
    pub fn retain_own_nodes(&self, config: &mut Config) {
        config.nodes.retain(|node, _| self.owns(node.as_str()));
    }

    /// The subscriptions of this gateway. Telemetry is this partition's shared-subscription group:
    /// partition 0 takes the site's wildcard (it serves every node in no listed row, and drops the
    /// others' messages on arrival), every other partition one filter per node of its rows. Status
    /// and acks are small: every gateway subscribes to all of them and keeps its own.
    pub fn subscriptions(&self, site: &SiteId, group: &str) -> Vec<String> {
        let shared = format!("$share/{group}-p{}", self.index);
        let mut filters = Vec::new();
        if self.index == 0 {
            filters.push(format!(
                "{shared}/{}",
                topic::node_filter(Some(site), NodeTopic::Telemetry)
            ));
        } else {
            let mut nodes: Vec<&String> = self
                .of_node
                .iter()
                .filter(|(_, partition)| **partition == self.index)
                .map(|(node, _)| node)
                .collect();
            nodes.sort();
            filters.extend(
                nodes
                    .into_iter()
                    .map(|node| format!("{shared}/{PREFIX}/{site}/{node}/telemetry")),
            );
        }
        for kind in [NodeTopic::Status, NodeTopic::Ack, NodeTopic::OtaAck] {
            filters.push(topic::node_filter(Some(site), kind).to_string());
        }
        filters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_text() -> String {
        r#"
            site = "fra1"
            [mqtt]
            url = "mqtt://127.0.0.1:1883"
            [spool]
            dir = "/tmp/unused"
            [cluster]
            partition = 1
            partitions = [["r01"], ["r02", "r03"]]
            [nodes.a1]
            row = "r01"
            [nodes.b1]
            row = "r02"
            [nodes.c1]
            row = "r03"
            [nodes.x1]
            row = "r09"
            "#
        .to_owned()
    }

    fn config() -> Config {
        Config::parse(&config_text()).unwrap()
    }

    #[test]
    fn nodes_go_to_their_rows_partition_and_the_rest_to_partition_0() {
        let config = config();
        let partition = Partition::new(config.cluster.as_ref().unwrap(), &config);
        let of: Vec<usize> = ["a1", "b1", "c1", "x1", "not-in-inventory"]
            .iter()
            .map(|n| partition.of(n))
            .collect();
        assert_eq!(of, [0, 1, 1, 0, 0]);
        assert!(partition.owns_route(&Route::Mqtt {
            topic: "rackwatch/v1/fra1/c1/status".into()
        }));
        assert!(!partition.owns_route(&Route::Mqtt {
            topic: "rackwatch/v1/fra1/a1/telemetry".into()
        }));
    }

    #[test]
    fn a_partition_subscribes_to_its_own_nodes_in_its_group() {
        let mut config = config();
        let cluster = config.cluster.clone().unwrap();
        let site = config.site.clone();
        assert_eq!(
            Partition::new(&cluster, &config).subscriptions(&site, "rackwatch"),
            [
                "$share/rackwatch-p1/rackwatch/v1/fra1/b1/telemetry",
                "$share/rackwatch-p1/rackwatch/v1/fra1/c1/telemetry",
                "rackwatch/v1/fra1/+/status",
                "rackwatch/v1/fra1/+/cmd/ack",
                "rackwatch/v1/fra1/+/ota/ack",
            ]
        );
        let zero = ClusterConfig {
            partition: 0,
            ..cluster.clone()
        };
        assert_eq!(
            Partition::new(&zero, &config).subscriptions(&site, "rackwatch")[0],
            "$share/rackwatch-p0/rackwatch/v1/fra1/+/telemetry"
        );
        Partition::new(&cluster, &config).retain_own_nodes(&mut config);
        let kept: Vec<&str> = config.nodes.keys().map(|n| n.as_str()).collect();
        assert_eq!(kept, ["b1", "c1"]);
    }

    #[test]
    fn a_bad_partition_map_is_refused_with_its_key() {
        let base = config_text();
        for (cluster, key) in [
            (
                "partition = 2\npartitions = [[\"r01\"], [\"r02\"]]",
                "cluster.partition",
            ),
            (
                "partition = 0\npartitions = [[\"r01\"], [\"r01\"]]",
                "cluster.partitions",
            ),
        ] {
            let text = base.replace(
                "partition = 1\n            partitions = [[\"r01\"], [\"r02\", \"r03\"]]",
                cluster,
            );
            match Config::parse(&text) {
                Err(crate::config::ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{cluster}: {other:?}"),
            }
        }
    }

    #[test]
    fn one_file_serves_every_partition() {
        let mut config = config();
        config.serve_partition(0).unwrap();
        assert_eq!(config.cluster.as_ref().unwrap().partition, 0);
        assert_eq!(config.mqtt.as_ref().unwrap().client_id, "rackwatch-gateway-p0");
        assert_eq!(config.spool.dir, std::path::Path::new("/tmp/unused/p0"));
        assert!(config.serve_partition(5).is_err());
    }

    #[test]
    fn the_compose_files_configuration_is_valid_for_both_gateways() {
        let text = include_str!("../../deploy/compose/rackwatch.toml");
        for partition in 0..2 {
            let mut config = Config::parse(text).unwrap();
            config.serve_partition(partition).unwrap();
            let cluster = config.cluster.clone().unwrap();
            let filters = Partition::new(&cluster, &config).subscriptions(&config.site, "rackwatch");
            assert!(
                filters[0].starts_with(&format!("$share/rackwatch-p{partition}/")),
                "{filters:?}"
            );
        }
    }
}
