//! Where a secret comes from: the file names an environment variable or a file that holds it, never
//! the secret itself. Whoever sends what is read keeps it in a `Secret` (gateway/src/secret.rs).

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{ConfigError, invalid};

/// Where a secret comes from. Exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "where the secret is: { env = \"VARIABLE\" } or { file = \"/path/to/file\" }, never the secret itself"
)]
pub struct SecretSource {
    /// Name of an environment variable that holds the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// Path of a file whose content (trailing newline removed) is the secret.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl SecretSource {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.env, &self.file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(invalid(key, "give exactly one of `env` and `file`")),
        }
    }

    /// Reads the secret. The error names the key but never shows the secret.
    pub fn read(&self, key: &str) -> Result<String, ConfigError> {
        match (&self.env, &self.file) {
            (Some(var), None) => {
                std::env::var(var).map_err(|_| invalid(key, format!("environment variable {var} is not set")))
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display()))),
            _ => Err(invalid(key, "give exactly one of `env` and `file`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_from_missing_env_names_the_key_not_the_value() {
        let source = SecretSource {
            env: Some("RACKWATCH_TEST_UNSET_VARIABLE".into()),
            file: None,
        };
        let error = source.read("influxdb.token").unwrap_err().to_string();
        assert_eq!(
            error,
            "influxdb.token: environment variable RACKWATCH_TEST_UNSET_VARIABLE is not set"
        );
    }
}
