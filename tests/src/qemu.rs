//! The QEMU lm3s6965evb board running the release node firmware, with the rack's three emulated I2C
//! parts (TMP105 at 0x48, ADM1272 at 0x10, MAX31785 at 0x52), user-mode networking and a QMP socket to
//! change sensor values while it runs. QEMU is killed when the handle drops.

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::process::find_binary;

/// The board crate's folder.
pub fn board_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/boards/lm3s6965evb")
}

/// Builds the release image of the node application (cargo rebuilds it only when a source changed)
/// and returns the ELF's path. Fails the test with cargo's output when the build fails.
pub fn build_node_image() -> PathBuf {
    let dir = board_dir();
    let output = Command::new("cargo")
        .args(["build", "--release", "--bin", "rackwatch-node"])
        .current_dir(&dir)
        // The board is its own workspace with its own target folder and toolchain file: nothing of the
        // test's own build may leak into it.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RACKWATCH_BROKER")
        .env_remove("RACKWATCH_BROKER_PORT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo in {}: {e}", dir.display()));
    assert!(
        output.status.success(),
        "building the firmware image failed (cd {} && cargo build --release):\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    dir.join("target/thumbv7m-none-eabi/release/rackwatch-node")
}

/// A running QEMU.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    dir: TempDir,
}

/// QEMU's own default Ethernet address for the board.
pub const DEFAULT_MAC: &str = "52:54:00:12:34:56";
const QMP_SOCKET: &str = "qmp.sock";

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rackwatch-qemu-")
        .tempdir()
        .unwrap()
}

/// The board with the rack's I2C parts, user-mode networking and QMP in `dir`; UART0 goes to `serial`.
/// Unless `append` names its own `flash=PATH`, the node's configuration flash is a new file in `dir`.
fn command(image: &Path, append: &str, dir: &Path, serial: &str, mac: &str) -> Command {
    let append = if append.split_whitespace().any(|word| word.starts_with("flash=")) {
        append.to_owned()
    } else {
        format!("{append} flash={}", dir.join("flash.bin").display())
    };
    let mut command = Command::new(find_binary("qemu-system-arm", "qemu-system-arm"));
    command
        .args(["-M", "lm3s6965evb", "-display", "none", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-serial", serial])
        .arg("-qmp")
        .arg(format!(
            "unix:{},server=on,wait=off",
            dir.join(QMP_SOCKET).display()
        ))
        .args(["-device", "tmp105,address=0x48"])
        .args(["-device", "adm1272,address=0x10"])
        .args(["-device", "max31785,address=0x52"])
        .args(["-nic", &format!("user,mac={mac}")])
        .arg("-kernel")
        .arg(image)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    command
}

impl Qemu {
    /// Boots `image` with `append` as its command line (the node reads `key=value` words from it
    /// through semihosting, e.g. `broker=10.0.2.2:PORT interval_ms=1000`).
    pub fn start(image: &Path, append: &str) -> Self {
        let dir = temp_dir();
        let console = dir.path().join("console.log");
        let child = command(
            image,
            append,
            dir.path(),
            &format!("file:{}", console.display()),
            DEFAULT_MAC,
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start qemu-system-arm: {e}"));
        let qemu = Qemu { child, dir };
        let qmp = qemu.dir.path().join(QMP_SOCKET);
        for _ in 0..100 {
            if qmp.exists() {
                return qemu;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("QEMU did not open its QMP socket; console:\n{}", qemu.console());
    }

    /// Boots `image` like [`Qemu::start`], but with UART0 on a pseudo-terminal (`-serial pty`), whose
    /// path QEMU 7.2 prints on its standard output ("char device redirected to /dev/pts/N (label
    /// serial0)"); returns that path too. `mac` is the Ethernet address, from which the node derives
    /// its serial number (QEMU's default [`DEFAULT_MAC`] gives `LM3S6965-123456`).
    pub fn start_with_pty(image: &Path, append: &str, mac: &str) -> (Self, PathBuf) {
        let dir = temp_dir();
        let mut child = command(image, append, dir.path(), "pty", mac)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu-system-arm: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (found, pty) = std::sync::mpsc::channel();
        // Reads QEMU's output to the end, so QEMU never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once("redirected to ")
                    && let Some(path) = rest.split_whitespace().next()
                {
                    let _ = found.send(PathBuf::from(path));
                }
            }
        });
        let qemu = Qemu { child, dir };
        let pty = pty
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("QEMU named no pseudo-terminal within 10 s"));
        (qemu, pty)
    }

    /// What the firmware printed on UART0 so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// Runs one QMP command and returns its `return` value (panics on an `error`).
    pub fn qmp(&self, command: &Value) -> Value {
        let stream = UnixStream::connect(self.dir.path().join("qmp.sock")).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // the greeting
        let mut answer = |command: &Value| -> Value {
            writeln!(writer, "{command}").unwrap();
            loop {
                let mut line = String::new();
                assert!(reader.read_line(&mut line).unwrap() > 0, "QMP closed");
                let reply: Value = serde_json::from_str(&line).unwrap();
                if let Some(value) = reply.get("return") {
                    return value.clone();
                }
                assert!(reply.get("error").is_none(), "QMP {command}: {reply}");
            }
        };
        answer(&json!({"execute": "qmp_capabilities"}));
        answer(command)
    }

    /// `qom-get` of a property of the `index`th `-device` (0 TMP105, 1 ADM1272, 2 MAX31785).
    pub fn device_property(&self, index: usize, property: &str) -> Value {
        self.qmp(&json!({"execute": "qom-get", "arguments": {
            "path": format!("/machine/peripheral-anon/device[{index}]"), "property": property}}))
    }

    /// `qom-set` of a property of the `index`th `-device`.
    pub fn set_device_property(&self, index: usize, property: &str, value: i64) {
        self.qmp(&json!({"execute": "qom-set", "arguments": {
            "path": format!("/machine/peripheral-anon/device[{index}]"), "property": property, "value": value}}));
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
