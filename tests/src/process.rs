//! A server process owned by a test: started, waited for, stopped, restarted, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A free TCP port on 127.0.0.1, chosen by the kernel. (Another process may take it before the
/// server binds it; the window is short and the server's start then fails loudly.)
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// Finds `name` on PATH or in the sbin folders Debian installs daemons to, or fails the test with
/// the package that provides it.
pub fn find_binary(name: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs =
        std::env::split_paths(&path).chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed. Install it with `sudo apt-get install {debian_package}` \
         (tests/run.sh installs every test dependency)"
    );
}

/// One server process and how to start it again.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Environment variables set for the server besides the test's own.
    env: Vec<(String, String)>,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Service {
    /// Starts `program args` with stdout and stderr appended to `log`, and waits until `port`
    /// accepts TCP connections and `ready` says the server answers.
    pub fn start(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        log: PathBuf,
        port: u16,
        ready: fn(u16) -> bool,
    ) -> Self {
        Self::start_with_env(name, program, args, Vec::new(), log, port, ready)
    }

    /// [`Service::start`] with `env` set for the server (`RUST_LOG`, say).
    pub fn start_with_env(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
        port: u16,
        ready: fn(u16) -> bool,
    ) -> Self {
        let mut service = Service {
            name,
            program,
            args,
            env,
            log,
            port,
            child: None,
        };
        service.spawn(ready);
        service
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self, ready: fn(u16) -> bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited with {status} while starting; its log:\n{}",
                    self.name,
                    self.read_log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && ready(self.port) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not answer on port {} within 30 s; its log:\n{}",
                    self.name,
                    self.port,
                    self.read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.child = Some(child);
    }

    /// Stops the server with SIGTERM (SIGKILL after 10 s) and waits for it to exit.
    pub fn stop(&mut self) {
        self.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
    }

    /// Starts the server again with the same arguments, port and data folder.
    pub fn restart(&mut self, ready: fn(u16) -> bool) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.spawn(ready);
    }

    fn signal_and_wait(&mut self, signal: Signal, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's log so far, for failure messages.
    pub fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
