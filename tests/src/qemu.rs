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

impl Qemu {
    /// Boots `image` with `append` as its command line (the node reads `key=value` words from it
    /// through semihosting, e.g. `broker=10.0.2.2:PORT interval_ms=1000`).
    pub fn start(image: &Path, append: &str) -> Self {
        let program = find_binary("qemu-system-arm", "qemu-system-arm");
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-qemu-")
            .tempdir()
            .unwrap();
        let qmp = dir.path().join("qmp.sock");
        let console = dir.path().join("console.log");
        let child = Command::new(program)
            .args(["-M", "lm3s6965evb", "-display", "none", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .args(["-device", "tmp105,address=0x48"])
            .args(["-device", "adm1272,address=0x10"])
            .args(["-device", "max31785,address=0x52"])
            .args(["-nic", "user"])
            .arg("-kernel")
            .arg(image)
            .args(["-append", append])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu-system-arm: {e}"));
        let qemu = Qemu { child, dir };
        for _ in 0..100 {
            if qmp.exists() {
                return qemu;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("QEMU did not open its QMP socket; console:\n{}", qemu.console());
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
