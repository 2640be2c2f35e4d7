//! Headless Chromium driven through chromedriver (Debian packages `chromium`, `chromium-driver`),
//! for tests of what a person sees on the dashboard.

use std::path::PathBuf;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use tempfile::TempDir;

use crate::process::{Service, find_binary, free_port};

/// A chromedriver process and a WebDriver session on a headless Chromium.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    _driver: Service,
    _profile: TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        let chromium = find_binary("chromium", "chromium");
        let driver = find_binary("chromedriver", "chromium-driver");
        let profile = tempfile::Builder::new()
            .prefix("rackwatch-chromium-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let service = Service::start(
            "chromedriver",
            driver,
            vec![format!("--port={port}"), "--allowed-ips=127.0.0.1".to_owned()],
            log,
            port,
            |port| crate::http_get(port, "/status").is_some(),
        );
        // The flags keep Chromium off the network (this machine has none) and out of the sandbox,
        // which root cannot use.
        let args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        )])
        .collect();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({ "binary": chromium.display().to_string(), "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        Browser {
            client,
            _driver: service,
            _profile: profile,
        }
    }

    /// Saves a screenshot under `tests/artifacts/` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}
