//! A small W3C WebDriver client over HTTP, enough to drive headless Chromium through
//! `chromedriver` (Debian's `chromium-driver`): open pages, find elements by CSS, click, type,
//! read text and take screenshots. No browser download, no Node: the test talks to the driver
//! with the HTTP client pgward already depends on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver puts element references under.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long waits for the page last before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// A running `chromedriver`; stopped when dropped.
pub struct Driver {
    _process: tokio::process::Child,
    url: String,
    http: reqwest::Client,
}

/// One browser (a WebDriver session).
pub struct Browser {
    http: reqwest::Client,
    session: String,
    /// The browser's profile, removed with it (chromedriver's own is left behind when the
    /// driver is killed).
    _profile: tempfile::TempDir,
}

/// The executables the browser test needs: `chromedriver` and the Chromium it drives. From
/// `PGWARD_CHROMEDRIVER` / `PGWARD_CHROMIUM`, else the places Debian's packages install them.
pub fn find_browser() -> Option<(PathBuf, Option<PathBuf>)> {
    let driver = std::env::var_os("PGWARD_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which("chromedriver"))?;
    let chromium = std::env::var_os("PGWARD_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            // Debian's /usr/bin/chromium is a shell wrapper; the driver wants the binary.
            let debian = PathBuf::from("/usr/lib/chromium/chromium");
            debian.exists().then_some(debian)
        });
    Some((driver, chromium))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

// === impl Driver ===

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it is ready.
    pub async fn start(chromedriver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let process = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = match http.get(format!("{url}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver {
            _process: process,
            url,
            http,
        }
    }

    /// A new headless browser window of 1280×900.
    pub async fn browser(&self, chromium: Option<&Path>) -> Browser {
        let profile = tempfile::tempdir().expect("browser profile dir");
        let mut options = json!({
            "args": [
                format!("--user-data-dir={}", profile.path().display()),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--force-device-scale-factor=1",
            ]
        });
        if let Some(binary) = chromium {
            options["binary"] = json!(binary);
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                }
            }
        });
        let v: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON from chromedriver");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"));
        Browser {
            http: self.http.clone(),
            session: format!("{}/session/{id}", self.url),
            _profile: profile,
        }
    }
}

// === impl Browser ===

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON from chromedriver");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        let v = self.post("/url", json!({ "url": url })).await;
        assert!(v.is_null(), "navigation to {url} failed: {v}");
    }

    /// The elements matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until an element matches `css`, and returns the first.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            assert!(Instant::now() < deadline, "timed out waiting for `{css}`");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the first element matching `css` shows text containing `wanted`; returns the
    /// text.
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                last = self.text_of(&e).await;
                if last.contains(wanted) {
                    return last;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for `{css}` to show {wanted:?}; it shows {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of element `e`.
    pub async fn text_of(&self, e: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The elements matching `css` inside element `e`.
    pub async fn find_in(&self, e: &str, css: &str) -> Vec<String> {
        let v = self
            .post(
                &format!("/element/{e}/elements"),
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Clicks element `e`.
    pub async fn click_on(&self, e: &str) {
        let v = self.post(&format!("/element/{e}/click"), json!({})).await;
        assert!(v.is_null(), "click failed: {v}");
    }

    /// Waits for `css` and clicks it.
    pub async fn click(&self, css: &str) {
        let e = self.wait_for(css).await;
        self.click_on(&e).await;
    }

    /// Waits for `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        let v = self
            .post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
        assert!(v.is_null(), "typing failed: {v}");
    }

    /// Resizes the window (to fit a long page in a screenshot).
    pub async fn resize(&self, width: u32, height: u32) {
        let v = self
            .post("/window/rect", json!({ "width": width, "height": height }))
            .await;
        assert!(v.is_object(), "resizing failed: {v}");
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a screenshot"))
            .expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
    }
}
