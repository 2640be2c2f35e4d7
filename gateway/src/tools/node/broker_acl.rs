//! `rackwatch broker-acl`: a Mosquitto `password_file` and `acl_file` from the inventory, so each node
//! may publish only its own topics and read only its own commands, and the gateway only what it uses.
//!
//! Password hashes are those of `mosquitto_passwd` in Mosquitto 2.0 (`$7$`: PBKDF2-HMAC-SHA512, 101
//! iterations, 12-byte salt, 64-byte hash, both base64 with padding; mosquitto `src/password_mosq.c`).
//! Secrets come from the inventory's `password_env` / `password_file`; a node or gateway without one
//! gets a generated secret written to a 0600 file. No secret is ever printed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rackwatch_protocols::topic::PREFIX;
use rand::Rng as _;

use super::inventory::Inventory;

/// `mosquitto_passwd`'s default iteration count (`PW_DEFAULT_ITERATIONS`).
pub const ITERATIONS: u32 = 101;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// What `broker-acl` needs besides the inventory.
#[derive(Debug, Clone)]
pub struct AclRequest {
    pub inventory: PathBuf,
    /// The site, over the inventory's.
    pub site: Option<String>,
    pub out: PathBuf,
    /// The gateway's MQTT user name.
    pub gateway_user: String,
    /// Environment variable holding the gateway's password; generated when not given.
    pub gateway_password_env: Option<String>,
    /// Also write a Mosquitto TLS listener block for the nodes (`conf.d/tls_listener.conf`).
    pub tls: Option<TlsListener>,
}

/// The TLS listener the nodes connect to: the port, and the broker's certificate and key files.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub port: u16,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The files written.
#[derive(Debug, Clone)]
pub struct AclFiles {
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
    /// Secret files generated in this run (their contents are never printed).
    pub generated: Vec<PathBuf>,
    /// The TLS listener block, when asked for.
    pub tls_listener: Option<PathBuf>,
}

/// A Mosquitto listener block (mosquitto.conf(5)) for nodes speaking TLS: TLS 1.3 only, because
/// the nodes speak nothing older and nothing older should be offered to them.
pub fn tls_listener_block(tls: &TlsListener) -> String {
    format!(
        "# rackwatch nodes over TLS 1.3, written by `rackwatch broker-acl`. `certfile` holds the broker's own\n\
         # P-256 certificate, not its chain: a node reads the handshake in 1 KiB records (firmware/README.md).\n\
         listener {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.3\n",
        tls.port,
        tls.cert_file.display(),
        tls.key_file.display()
    )
}

/// One line of a Mosquitto password file: `user:$7$101$salt$hash`.
pub fn password_line(user: &str, password: &str, salt: &[u8; SALT_LEN]) -> String {
    let mut hash = [0u8; HASH_LEN];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password.as_bytes(),
        &mut hash,
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("{user}:$7${ITERATIONS}${}${}", b64.encode(salt), b64.encode(hash))
}

/// The topics a node may use, for the ACL and for documentation.
fn node_rules(site: &str, node: &str) -> String {
    let base = format!("{PREFIX}/{site}/{node}");
    format!(
        "user {node}\ntopic write {base}/telemetry\ntopic write {base}/status\ntopic write {base}/cmd/ack\ntopic read {base}/cmd\ntopic read {base}/ota\ntopic write {base}/ota/ack\n\n"
    )
}

/// What the gateway subscribes to and publishes (gateway `source::mqtt`, `alert`, and the firmware
/// rollout's `ota` frames and their answers).
fn gateway_rules(user: &str) -> String {
    format!(
        "user {user}\ntopic read {PREFIX}/+/+/telemetry\ntopic read {PREFIX}/+/+/status\ntopic read {PREFIX}/+/+/cmd/ack\ntopic write {PREFIX}/+/+/cmd\ntopic write {PREFIX}/+/+/ota\ntopic read {PREFIX}/+/+/ota/ack\ntopic readwrite {PREFIX}/+/alerts/#\n\n"
    )
}

/// Writes `password_file` and `acl_file` into `request.out`.
pub fn write(request: &AclRequest) -> Result<AclFiles, String> {
    let inventory = Inventory::load(&request.inventory).map_err(|e| e.to_string())?;
    let site = request
        .site
        .clone()
        .or_else(|| inventory.site.clone())
        .ok_or_else(|| {
            format!(
                "{}: a site is required for the ACL (`site` in the inventory or --site)",
                request.inventory.display()
            )
        })?;
    // Ids go into topic patterns and ACL lines: one with a space, `+`, `#` or a line break would
    // widen or break the rules, so only valid protocol identifiers pass.
    rackwatch_protocols::SiteId::new(&site).map_err(|e| format!("site {site:?}: {e}"))?;
    for user in inventory
        .nodes
        .iter()
        .map(|n| &n.node)
        .chain([&request.gateway_user])
    {
        rackwatch_protocols::NodeId::new(user).map_err(|e| format!("user {user:?}: {e}"))?;
    }
    std::fs::create_dir_all(&request.out).map_err(|e| format!("{}: {e}", request.out.display()))?;
    let secrets = request.out.join("secrets");
    let mut generated = Vec::new();
    let mut passwords = String::new();
    let mut acl = format!("# rackwatch broker ACL for site {site}, written by `rackwatch broker-acl`.\n\n");

    let gateway_password = match &request.gateway_password_env {
        Some(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
        None => existing_or_generated(&secrets.join(&request.gateway_user), &mut generated)?,
    };
    writeln!(
        passwords,
        "{}",
        password_line(&request.gateway_user, &gateway_password, &salt())
    )
    .ok();
    acl.push_str(&gateway_rules(&request.gateway_user));

    for entry in &inventory.nodes {
        // The node's environment variable when it names one; else its file, created when missing.
        let password = match &entry.password_env {
            Some(_) => entry.password()?.unwrap_or_default(),
            None => {
                let file = entry
                    .password_file
                    .clone()
                    .unwrap_or_else(|| secrets.join(&entry.node));
                existing_or_generated(&file, &mut generated)?
            }
        };
        writeln!(passwords, "{}", password_line(&entry.node, &password, &salt())).ok();
        acl.push_str(&node_rules(&site, &entry.node));
    }

    let password_file = request.out.join("password_file");
    let acl_file = request.out.join("acl_file");
    write_private(&password_file, passwords.as_bytes())?;
    write_private(&acl_file, acl.as_bytes())?;
    // Mosquitto's `include_dir` (deploy/compose) wants the folder even when it is empty.
    let conf_d = request.out.join("conf.d");
    std::fs::create_dir_all(&conf_d).map_err(|e| format!("{}: {e}", conf_d.display()))?;
    let tls_listener = match &request.tls {
        Some(tls) => {
            let file = conf_d.join("tls_listener.conf");
            std::fs::write(&file, tls_listener_block(tls)).map_err(|e| format!("{}: {e}", file.display()))?;
            Some(file)
        }
        None => None,
    };
    Ok(AclFiles {
        password_file,
        acl_file,
        generated,
        tls_listener,
    })
}

fn salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill(&mut salt);
    salt
}

/// The secret in `file`, or a new random one written there (0600).
fn existing_or_generated(file: &Path, generated: &mut Vec<PathBuf>) -> Result<String, String> {
    if let Ok(existing) = std::fs::read_to_string(file) {
        return Ok(existing.trim_end().to_owned());
    }
    let secret: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_private(file, secret.as_bytes())?;
    generated.push(file.to_owned());
    Ok(secret)
}

/// Creates or replaces `path` readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_a_known_pbkdf2_sha512_vector() {
        // PBKDF2-HMAC-SHA512 of "password" / salt "saltsaltsalt" with 101 iterations, computed
        // independently (Python: hashlib.pbkdf2_hmac("sha512", b"password", b"saltsaltsalt", 101)).
        let line = password_line("n1", "password", b"saltsaltsalt");
        let (user, rest) = line.split_once(':').unwrap();
        assert_eq!(user, "n1");
        let parts: Vec<&str> = rest.split('$').collect();
        assert_eq!(parts[..4], ["", "7", "101", "c2FsdHNhbHRzYWx0"]);
        assert_eq!(
            parts[4],
            "FCG7EBo8zJik0YXy2GHzSQZMIgRMOw788yO4Bu88kcpfFKpL26d4kQZwYWnUrhm5QP8Ay4tRcegPZigCc1KVBg=="
        );
    }

    #[test]
    fn a_node_may_publish_only_its_own_topics() {
        let rules = node_rules("fra1", "r01-n1");
        assert!(rules.contains("topic write rackwatch/v1/fra1/r01-n1/telemetry\n"));
        assert!(rules.contains("topic read rackwatch/v1/fra1/r01-n1/cmd\n"));
        assert!(rules.contains("topic read rackwatch/v1/fra1/r01-n1/ota\n"));
        assert!(rules.contains("topic write rackwatch/v1/fra1/r01-n1/ota/ack\n"));
        assert!(!rules.contains('+') && !rules.contains('#'));
    }
}
