//! `rackwatch firmware keygen|sign|inspect`: the signed update files that nodes accept
//! (the format: protocols/README.md, "Firmware updates"); `update|status|resume|abort`: fleet
//! rollouts of them ([`rollout`] plans, [`driver`] carries the transfers, [`run`] drives them over MQTT).
//!
//! The update key is an Ed25519 key pair. The private half stays in a file that only `sign` reads
//! (written with mode 0600, never printed or logged); the public half is built into the node image,
//! and the node refuses any update whose header signature does not verify with it. The header
//! carries the image's SHA-256, so the one signature covers board, version, length and every byte.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rackwatch_protocols::update::{FirmwareVersion, HEADER_LEN, MAX_BOARD_LEN, UpdateHeader};
use sha2::{Digest, Sha256};

pub mod driver;
pub mod rollout;
pub mod run;

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Make an update key pair: KEY (private, mode 0600) and KEY.pub (the node image's public key).
    Keygen {
        /// Where to write the private key; the public key goes beside it with `.pub` added.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a firmware image into an update file that nodes of BOARD accept.
    Sign {
        /// The private key file written by `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The raw image to install (the application slot's contents, e.g. from `objcopy -O binary`).
        #[arg(long)]
        image: PathBuf,
        /// Its version, `major.minor.patch`.
        #[arg(long)]
        version: String,
        /// The board it is built for, as the node names itself (e.g. `w5500-evb-pico`).
        #[arg(long)]
        board: String,
        /// Let nodes install it over a newer version.
        #[arg(long)]
        allow_downgrade: bool,
        /// The update file to write (default: beside IMAGE, `node.bin` -> `node-1.4.0.rkfw`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show an update file's header and, with --public-key, check its hash and signature.
    Inspect {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Roll an update out to selected nodes: canary first, then batches, each confirmed before the next.
    Update(Box<run::UpdateOptions>),
    /// Show the rollout's progress, one line per node (from the spool folder).
    Status {
        #[arg(long)]
        config: PathBuf,
    },
    /// Go on with a paused or interrupted rollout; failed nodes start over.
    Resume {
        #[arg(long)]
        config: PathBuf,
        /// A corrected update file (the same update: version and image hash).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Give the rollout up; nodes mid-transfer forget the update and keep their firmware.
    Abort {
        #[arg(long)]
        config: PathBuf,
    },
}

/// Why a firmware command failed, in words for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0} exists already; keys are never overwritten (move it away first)")]
    Exists(String),
    #[error("{0} is not a rackwatch update key (expected the file `rackwatch firmware keygen` wrote)")]
    BadKey(String),
    #[error("version `{0}` is not major.minor.patch (for example 1.4.0)")]
    BadVersion(String),
    #[error("board `{0}` must be 1 to {MAX_BOARD_LEN} ASCII letters, digits, `-`, `_` or `.`")]
    BadBoard(String),
    #[error("{path}: the image has {len} bytes; an update carries at most 4 GiB")]
    TooLarge { path: String, len: usize },
    #[error("the system's random source failed")]
    Random,
    #[error("{path}: not an update file: {reason}")]
    BadFile { path: String, reason: String },
    #[error("{0}")]
    Check(String),
}

const KEY_TAG: &str = "rackwatch-update-key v1";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FirmwareError + '_ {
    move |source| FirmwareError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes a new key pair; refuses to replace either file.
pub fn keygen(out: &Path) -> Result<PathBuf, FirmwareError> {
    use ring::rand::SecureRandom as _;
    let public = public_path(out);
    for path in [out, public.as_path()] {
        if path.exists() {
            return Err(FirmwareError::Exists(path.display().to_string()));
        }
    }
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| FirmwareError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    let mut file = create_private(out)?;
    writeln!(file, "{KEY_TAG}\n{}", hex(&seed)).map_err(io(out))?;
    file.sync_all().map_err(io(out))?;
    fs::write(&public, format!("{}\n", hex(key.verifying_key().as_bytes()))).map_err(io(&public))?;
    Ok(public)
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<fs::File, FirmwareError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> Result<fs::File, FirmwareError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))
}

fn load_private(path: &Path) -> Result<SigningKey, FirmwareError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let mut lines = text.lines();
    let seed = (lines.next() == Some(KEY_TAG))
        .then(|| lines.next().and_then(unhex::<32>))
        .flatten()
        .ok_or_else(|| FirmwareError::BadKey(path.display().to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn load_public(path: &Path) -> Result<VerifyingKey, FirmwareError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    unhex::<32>(&text)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| FirmwareError::BadKey(path.display().to_string()))
}

/// The update file for `image`: its signed header, then the image.
pub fn sign(
    key: &SigningKey,
    image: &[u8],
    board: &str,
    version: FirmwareVersion,
    allow_downgrade: bool,
) -> Result<Vec<u8>, FirmwareError> {
    let board_ok = !board.is_empty()
        && board.len() <= MAX_BOARD_LEN
        && board
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let board_name = heapless::String::try_from(board)
        .ok()
        .filter(|_| board_ok)
        .ok_or_else(|| FirmwareError::BadBoard(board.to_owned()))?;
    let image_len = u32::try_from(image.len()).map_err(|_| FirmwareError::TooLarge {
        path: String::new(),
        len: image.len(),
    })?;
    let mut header = UpdateHeader {
        board: board_name,
        version,
        allow_downgrade,
        image_len,
        image_sha256: Sha256::digest(image).into(),
        signature: [0; 64],
    };
    header.signature = key.sign(&header.signed_bytes()).to_bytes();
    let mut head = [0u8; HEADER_LEN];
    header.emit(&mut head);
    let mut file = head.to_vec();
    file.extend_from_slice(image);
    Ok(file)
}

/// Checks an update file as a node would: layout, length, hash, and (with a key) the signature.
pub fn check(file: &[u8], key: Option<&VerifyingKey>) -> Result<UpdateHeader, String> {
    let header = UpdateHeader::parse(file).map_err(|e| e.to_string())?;
    let image = file.get(HEADER_LEN..).unwrap_or_default();
    if image.len() != header.image_len as usize {
        return Err(format!(
            "the header says {} image bytes, the file holds {}",
            header.image_len,
            image.len()
        ));
    }
    if <[u8; 32]>::from(Sha256::digest(image)) != header.image_sha256 {
        return Err("the image's SHA-256 does not match the header".into());
    }
    if let Some(key) = key {
        key.verify_strict(&header.signed_bytes(), &Signature::from_bytes(&header.signature))
            .map_err(|_| "the signature does not verify with this public key".to_owned())?;
    }
    Ok(header)
}

fn run(command: FirmwareCommand) -> Result<String, FirmwareError> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FirmwareError::Check(format!("cannot start the async runtime: {e}")))
    };
    match command {
        FirmwareCommand::Update(options) => runtime()?.block_on(run::update(&options)),
        FirmwareCommand::Status { config } => run::status(&config),
        FirmwareCommand::Resume { config, file } => {
            runtime()?.block_on(run::resume(&config, file.as_deref()))
        }
        FirmwareCommand::Abort { config } => runtime()?.block_on(run::abort(&config)),
        FirmwareCommand::Keygen { out } => {
            let public = keygen(&out)?;
            Ok(format!(
                "private key: {} (mode 0600; keep it off the nodes and out of the repository)\npublic key: {} (build it into the node image)",
                out.display(),
                public.display()
            ))
        }
        FirmwareCommand::Sign {
            key,
            image,
            version,
            board,
            allow_downgrade,
            out,
        } => {
            let parsed =
                FirmwareVersion::parse(&version).ok_or_else(|| FirmwareError::BadVersion(version.clone()))?;
            let signing = load_private(&key)?;
            let bytes = fs::read(&image).map_err(io(&image))?;
            let file = sign(&signing, &bytes, &board, parsed, allow_downgrade).map_err(|e| match e {
                FirmwareError::TooLarge { len, .. } => FirmwareError::TooLarge {
                    path: image.display().to_string(),
                    len,
                },
                other => other,
            })?;
            let out = out.unwrap_or_else(|| {
                let stem = image.file_stem().unwrap_or_default().to_string_lossy();
                image.with_file_name(format!("{stem}-{parsed}.rkfw"))
            });
            fs::write(&out, &file).map_err(io(&out))?;
            Ok(format!(
                "{}: {board} {parsed}, {} image bytes, sha256 {}{}",
                out.display(),
                bytes.len(),
                hex(&Sha256::digest(&bytes)),
                if allow_downgrade {
                    ", downgrade allowed"
                } else {
                    ""
                }
            ))
        }
        FirmwareCommand::Inspect { file, public_key } => {
            let key = public_key.as_deref().map(load_public).transpose()?;
            let bytes = fs::read(&file).map_err(io(&file))?;
            let header = check(&bytes, key.as_ref()).map_err(|reason| FirmwareError::BadFile {
                path: file.display().to_string(),
                reason,
            })?;
            Ok(format!(
                "{}: board {}, version {}, {} image bytes, sha256 {}, update id {:08x}{}; {}",
                file.display(),
                header.board,
                header.version,
                header.image_len,
                hex(&header.image_sha256),
                header.update_id(),
                if header.allow_downgrade {
                    ", downgrade allowed"
                } else {
                    ""
                },
                if key.is_some() {
                    "hash and signature verified"
                } else {
                    "hash verified; signature not checked (no --public-key)"
                }
            ))
        }
    }
}

/// Runs a `rackwatch firmware` command; prints its result or the reason it failed.
pub fn main(command: FirmwareCommand) -> ExitCode {
    match run(command) {
        Ok(report) => {
            let _ = writeln!(std::io::stdout(), "{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "rackwatch firmware: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("update.key");
        let public = keygen(&key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let signing = load_private(&key).unwrap();
        assert_eq!(load_public(&public).unwrap(), signing.verifying_key());
        assert!(matches!(keygen(&key), Err(FirmwareError::Exists(_))));
    }

    #[test]
    fn a_signed_file_checks_out_with_its_key_and_not_with_another() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let image: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let file = sign(
            &key,
            &image,
            "w5500-evb-pico",
            FirmwareVersion::new(1, 4, 0),
            false,
        )
        .unwrap();
        assert_eq!(file.len(), HEADER_LEN + image.len());
        let header = check(&file, Some(&key.verifying_key())).unwrap();
        assert_eq!(header.version, FirmwareVersion::new(1, 4, 0));
        assert_eq!(header.board.as_str(), "w5500-evb-pico");
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert!(check(&file, Some(&other)).unwrap_err().contains("signature"));
        let mut tampered = file.clone();
        tampered[HEADER_LEN + 10] ^= 1;
        assert!(
            check(&tampered, Some(&key.verifying_key()))
                .unwrap_err()
                .contains("SHA-256")
        );
        assert!(
            check(&file[..file.len() - 1], None)
                .unwrap_err()
                .contains("image bytes")
        );
    }

    #[test]
    fn sign_refuses_a_board_name_a_node_could_not_hold() {
        let key = SigningKey::from_bytes(&[3; 32]);
        for board in ["", "board with spaces", &"x".repeat(33)] {
            assert!(matches!(
                sign(&key, b"image", board, FirmwareVersion::new(1, 0, 0), false),
                Err(FirmwareError::BadBoard(_))
            ));
        }
    }

    #[test]
    fn a_key_file_of_another_kind_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        fs::write(&path, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        let error = load_private(&path).unwrap_err().to_string();
        assert!(error.contains("not a rackwatch update key"), "{error}");
        assert!(!error.contains("BEGIN"), "the key file's content is never echoed");
    }
}
