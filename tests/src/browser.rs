//! Headless Chromium driven through chromedriver (Debian packages `chromium`, `chromium-driver`),
//! for tests of what a person sees on the dashboard.

use std::path::PathBuf;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use tempfile::TempDir;

use crate::process::{Service, find_binary, free_port};

impl Drop for Browser {
    /// Chromium outlives chromedriver when a test fails before the session is closed: every process
    /// started with this browser's profile folder on its command line is killed with it.
    fn drop(&mut self) {
        let profile = self._profile.path().display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&profile) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// One rack tile of the dashboard's floor plan, as its data attributes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RackTile {
    pub rack: String,
    /// `none` before any reading, else the ASHRAE band of the hottest inlet.
    pub band: String,
    /// `firing` while an alert of the rack fires, else empty.
    pub alert: String,
}

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

    /// Every rack tile of the floor plan as (rack, band, alert), read in one script run: the page
    /// redraws tiles as readings arrive, so element handles taken one by one can go stale between
    /// two reads.
    pub async fn rack_tiles(&self) -> Vec<RackTile> {
        let script = "return Array.from(document.querySelectorAll('.rack[data-rack]'))\
                      .map(e => [e.dataset.rack || '', e.dataset.band || '', e.dataset.alert || '']);";
        let value = self.client.execute(script, Vec::new()).await.unwrap();
        serde_json::from_value::<Vec<(String, String, String)>>(value)
            .unwrap()
            .into_iter()
            .map(|(rack, band, alert)| RackTile { rack, band, alert })
            .collect()
    }

    /// The text of every element that matches `css`, read in one script run (see [`Browser::rack_tiles`]).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);";
        let value = self
            .client
            .execute(script, vec![serde_json::Value::from(css)])
            .await
            .unwrap();
        serde_json::from_value(value).unwrap()
    }

    /// Clicks the first element that matches `css` as a person would (a WebDriver click), finding it
    /// again when the page redrew it between the find and the click.
    pub async fn click(&self, css: &str) {
        let mut last = None;
        for _ in 0..20 {
            let clicked = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(element) => element.click().await.map(drop),
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("could not click {css}: {last:?}");
    }

    /// Moves the mouse pointer onto the first element that matches `css` (a WebDriver pointer move),
    /// finding it again when the page redrew it in between.
    pub async fn hover(&self, css: &str) {
        use fantoccini::actions::{InputSource, MouseActions, PointerAction};
        let mut last = None;
        for _ in 0..20 {
            let moved = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(element) => {
                    let actions = MouseActions::new("mouse".to_owned()).then(PointerAction::MoveToElement {
                        element,
                        duration: None,
                        x: 0.0,
                        y: 0.0,
                    });
                    self.client.perform_actions(actions).await
                }
                Err(e) => Err(e),
            };
            match moved {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("could not move the pointer onto {css}: {last:?}");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
        self.client.execute(script, args).await.unwrap()
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
