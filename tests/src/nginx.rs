//! A real nginx (Debian package `nginx`) as a rate-limiting reverse proxy in front of a database:
//! `limit_req` answers 429 with the `Retry-After` the test chose. Its prefix, configuration, pid,
//! logs and temporary folders are in its own temporary folder, so it runs without root; one process
//! (`master_process off`), killed when the handle drops. The access log records each request's time
//! (`$msec`) and status, so a test can see how long a client waited after a 429.

use std::fmt::Write as _;

use tempfile::TempDir;

use crate::process::{Service, find_binary, free_port};

/// A running nginx proxying to one upstream.
#[derive(Debug)]
pub struct Nginx {
    service: Service,
    dir: TempDir,
}

/// One line of the access log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logged {
    /// When nginx finished the request, Unix time in milliseconds.
    pub at_ms: i64,
    pub status: u16,
}

impl Nginx {
    /// Proxies every request to `127.0.0.1:upstream_port`, at most `rate` (nginx syntax, e.g.
    /// `1r/s`) with no burst; a request over the rate is answered 429 with `Retry-After: retry_after`.
    pub fn start_rate_limited(upstream_port: u16, rate: &str, retry_after: &str) -> Self {
        let program = find_binary("nginx", "nginx");
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-nginx-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let d = dir.path().display();
        let mut conf = String::new();
        writeln!(conf, "daemon off;\nmaster_process off;\npid {d}/nginx.pid;").unwrap();
        writeln!(conf, "error_log {d}/error.log info;").unwrap();
        writeln!(conf, "events {{ worker_connections 64; }}").unwrap();
        writeln!(conf, "http {{").unwrap();
        for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            writeln!(conf, "  {temp}_temp_path {d}/{temp};").unwrap();
        }
        writeln!(conf, "  log_format timed '$msec $status';").unwrap();
        writeln!(conf, "  access_log {d}/access.log timed;").unwrap();
        writeln!(
            conf,
            "  limit_req_zone $binary_remote_addr zone=database:1m rate={rate};"
        )
        .unwrap();
        writeln!(conf, "  limit_req_status 429;").unwrap();
        writeln!(conf, "  server {{").unwrap();
        writeln!(conf, "    listen 127.0.0.1:{port};").unwrap();
        writeln!(conf, "    error_page 429 @throttled;").unwrap();
        writeln!(conf, "    location / {{").unwrap();
        writeln!(conf, "      limit_req zone=database;").unwrap();
        writeln!(conf, "      proxy_pass http://127.0.0.1:{upstream_port};").unwrap();
        writeln!(conf, "    }}").unwrap();
        writeln!(conf, "    location @throttled {{").unwrap();
        writeln!(conf, "      add_header Retry-After \"{retry_after}\" always;").unwrap();
        writeln!(conf, "      return 429 \"throttled\\n\";").unwrap();
        writeln!(conf, "    }}").unwrap();
        writeln!(conf, "  }}\n}}").unwrap();
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let args = vec![
            "-p".to_owned(),
            format!("{d}/"),
            "-e".to_owned(),
            format!("{d}/error.log"),
            "-c".to_owned(),
            conf_path.display().to_string(),
        ];
        let log = dir.path().join("nginx.out");
        let service = Service::start("nginx", program, args, log, port, |_| true);
        Nginx { service, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.service.port())
    }

    /// The access log so far.
    pub fn requests(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (msec, status) = line.split_once(' ')?;
                let (seconds, millis) = msec.split_once('.')?;
                Some(Logged {
                    at_ms: seconds.parse::<i64>().ok()? * 1000 + millis.parse::<i64>().ok()?,
                    status: status.trim().parse().ok()?,
                })
            })
            .collect()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}
