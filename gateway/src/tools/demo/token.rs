//! The demo's API token: issued at every start and printed, so that Acknowledge and Silence work on
//! the demo's dashboard (without a token the gateway refuses them, as it should on a real site).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A fresh token, written to `token` in `data_dir` (owner-only) for `[http] token = { file }`.
pub fn issue(data_dir: &Path) -> std::io::Result<(String, PathBuf)> {
    let token: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("token");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok((token, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_issues_a_new_token_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let (first, path) = issue(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, _) = issue(dir.path()).unwrap();
        assert_ne!(first, second);
    }
}
