//! The provisioning inventory: which node (by the serial number it reports in `Info`) gets which node
//! id, location and broker credentials. TOML or CSV, told apart by the file's extension.
//!
//! ```toml
//! site = "fra1"
//! interval_ms = 10000
//! broker = { host = "10.0.2.2", port = 1883 }
//! [[node]]
//! serial = "LM3S6965-123456"
//! node = "r01-n1"
//! room = "hall-a"
//! row = "r01"
//! rack = "a01"
//! u = 42
//! password_env = "R01_N1_MQTT_PASSWORD"   # or password_file = "secrets/r01-n1"
//! ```
//!
//! CSV has a header line naming the same per-node columns (`serial,node,room,row,rack,u,password_file`);
//! site, interval and broker then come from the command line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole inventory file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// The site of every node in the file.
    pub site: Option<String>,
    /// Default sampling interval.
    pub interval_ms: Option<u32>,
    /// The broker every node connects to.
    pub broker: Option<BrokerAddress>,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeEntry>,
}

/// Where nodes reach the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub tls: bool,
}

/// One node of the inventory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// The serial number the node reports (`Info`'s `serial`).
    pub serial: Option<String>,
    /// Its node id: topic level and MQTT user name.
    pub node: String,
    pub room: Option<String>,
    pub row: Option<String>,
    pub rack: Option<String>,
    pub u: Option<u8>,
    /// Environment variable that holds the node's MQTT password.
    pub password_env: Option<String>,
    /// File that holds the node's MQTT password (`rackwatch broker-acl` creates it when missing).
    pub password_file: Option<PathBuf>,
}

/// An inventory that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Inventory {
    /// Reads a `.csv` or a TOML file.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            parse_csv(&text)
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        let mut inventory = parsed.map_err(|message| InventoryError::Parse {
            path: path.to_owned(),
            message,
        })?;
        // Relative secret files are relative to the inventory, not to where the command runs.
        let base = path.parent().unwrap_or(Path::new("."));
        for entry in &mut inventory.nodes {
            if let Some(file) = entry.password_file.as_mut()
                && file.is_relative()
            {
                *file = base.join(&*file);
            }
        }
        Ok(inventory)
    }

    /// The entry of the node that reports `serial`.
    pub fn by_serial(&self, serial: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.serial.as_deref() == Some(serial))
    }
}

impl NodeEntry {
    /// The node's MQTT password from its environment variable or file, if it names one that exists.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| format!("node {}: environment variable {var} is not set", self.node));
        }
        match &self.password_file {
            Some(file) => std::fs::read_to_string(file)
                .map(|s| Some(s.trim_end().to_owned()))
                .map_err(|e| format!("node {}: password file {}: {e}", self.node, file.display())),
            None => Ok(None),
        }
    }
}

fn parse_csv(text: &str) -> Result<Inventory, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Ok(Inventory::default());
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut inventory = Inventory::default();
    for (number, line) in lines {
        let mut entry = NodeEntry::default();
        for (column, value) in columns.iter().zip(line.split(',').map(str::trim)) {
            let value = (!value.is_empty()).then(|| value.to_owned());
            match *column {
                "serial" => entry.serial = value,
                "node" => entry.node = value.unwrap_or_default(),
                "room" => entry.room = value,
                "row" => entry.row = value,
                "rack" => entry.rack = value,
                "u" => {
                    entry.u = value
                        .map(|v| {
                            v.parse()
                                .map_err(|_| format!("line {}: u {v:?} is not 0 to 255", number + 1))
                        })
                        .transpose()?;
                }
                "password_env" => entry.password_env = value,
                "password_file" => entry.password_file = value.map(PathBuf::from),
                other => return Err(format!("unknown column {other:?}")),
            }
        }
        if entry.node.is_empty() {
            return Err(format!("line {}: no node id", number + 1));
        }
        inventory.nodes.push(entry);
    }
    Ok(inventory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_toml_give_the_same_entry() {
        let csv = parse_csv("serial,node,room,rack,u\nLM3S-1,r01-n1,hall-a,a01,42\n").unwrap();
        let toml: Inventory = toml::from_str(
            "[[node]]\nserial = \"LM3S-1\"\nnode = \"r01-n1\"\nroom = \"hall-a\"\nrack = \"a01\"\nu = 42\n",
        )
        .unwrap();
        for inventory in [csv, toml] {
            let entry = inventory.by_serial("LM3S-1").unwrap();
            assert_eq!(
                (
                    entry.node.as_str(),
                    entry.room.as_deref(),
                    entry.rack.as_deref(),
                    entry.u
                ),
                ("r01-n1", Some("hall-a"), Some("a01"), Some(42))
            );
        }
    }

    #[test]
    fn csv_names_the_line_of_a_bad_value() {
        let error = parse_csv("node,u\nn1,300\n").unwrap_err();
        assert_eq!(error, "line 2: u \"300\" is not 0 to 255");
    }
}
