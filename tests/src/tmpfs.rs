//! A small disk of its own for a test: a tmpfs of a few MiB mounted on a temporary folder, so a
//! test can fill it to ENOSPC without touching the machine's disks. Mounting needs root (as in CI);
//! without it the test fails saying so, it never skips.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A mounted tmpfs, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB.
    pub fn mount(size_mib: u32) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test fills a disk of its own: it mounts a {size_mib} MiB tmpfs, which needs root \
             (CI runs the tests as root; run it with sudo)"
        );
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-tmpfs-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes in use on the tmpfs.
    pub fn used_bytes(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(self.dir.path()).unwrap();
        (stat.blocks() - stat.blocks_free()) * stat.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a gateway killed a moment ago may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
