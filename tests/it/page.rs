//! The page of `googlenet serve` in a real browser: Debian's Chromium, headless, driven over
//! WebDriver by chromedriver, at a phone's width. Two photos are chosen through the file input;
//! each must show the top-5 that `/v1/classify` answers, and Enter on a photo must bring its
//! heatmap. Skipped, saying so, when chromedriver is not installed (CI installs it, and there a
//! missing browser fails the test).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::server::{client, Server};
use base64::Engine;
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A WebDriver session in a chromedriver started for the test; both end when dropped.
struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT` of chromedriver.
    root: String,
    /// The session's id, once it is open.
    session: Option<String>,
    agent: ureq::Agent,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless session on a screen of
    /// `width` x `height` pixels, as a phone's.
    fn start(width: u32, height: u32) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent = client(Duration::from_secs(60));
        let root = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while agent.get(format!("{root}/status")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut browser = Browser { driver, root, session: None, agent };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1}},
            },
        }}});
        let answer = browser.call("POST", "/session", Some(capabilities));
        let id = answer["sessionId"].as_str().unwrap_or_else(|| panic!("{answer}"));
        browser.session = Some(id.to_owned());
        browser
    }

    /// A WebDriver command on the session (`path` after `/session/{id}`), its `value`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let id = self.session.as_deref().unwrap();
        self.call(method, &format!("/session/{id}{path}"), body)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.root);
        let mut response = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string()),
            None if method == "DELETE" => self.agent.delete(&url).call(),
            None => self.agent.get(&url).call(),
        }
        .unwrap();
        let text = response.body_mut().with_config().limit(1 << 26).read_to_string().unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(response.status(), 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    /// Runs `script` in the page and returns its value.
    fn script(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Waits (at most `limit`) until `script` returns true.
    fn wait_for(&self, script: &str, limit: Duration) {
        let started = Instant::now();
        while self.script(script) != Value::Bool(true) {
            assert!(started.elapsed() < limit, "timed out waiting for {script}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The element `selector` finds.
    fn element(&self, selector: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": selector})),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    /// Presses `key` (a WebDriver key code) with the focus where it is.
    fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.command("POST", "/actions", Some(actions));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = &self.session {
            let _ = self.agent.delete(format!("{}/session/{id}", self.root)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_page_classifies_dropped_photos_and_shows_a_heatmap() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and chromium-driver for the page test (.ci/run)"
        );
        eprintln!("skipped: the page test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)");
        return;
    }
    let server = Server::start(&[]);
    // The last photo chosen comes first on the page.
    let photos = [crate::common::asset("coffee.png"), crate::common::asset("chelsea.png")];
    let expected: Vec<Vec<String>> = photos.iter().map(|p| top_names(&server, p)).collect();

    let browser = Browser::start(390, 844);
    browser.command("POST", "/url", Some(json!({"url": server.url("/")})));
    browser.wait_for(
        "return document.getElementById('model').textContent.includes('1000 classes')",
        Duration::from_secs(30),
    );

    // The file input is the first stop of the keyboard.
    browser.press("\u{E004}");
    assert_eq!(browser.script("return document.activeElement.id"), "files");

    let input = browser.element("#files");
    let paths: Vec<String> = photos.iter().map(|p| p.display().to_string()).collect();
    browser.command(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": paths.join("\n")})),
    );
    browser.wait_for(
        "return [...document.querySelectorAll('.card')].filter(c => c.dataset.state === 'done').length === 2",
        Duration::from_secs(60),
    );
    for (photo, names) in photos.iter().zip(&expected) {
        let name = photo.file_name().unwrap().to_str().unwrap();
        let shown = browser.script(&format!(
            "const card = [...document.querySelectorAll('.card')].find(c => c.querySelector('h2').textContent === '{name}');
             return [...card.querySelectorAll('.top .name')].map(n => n.textContent);"
        ));
        assert_eq!(shown, json!(names), "{name}");
    }
    // Nothing wider than a phone's screen.
    assert_eq!(
        browser.script("return document.documentElement.scrollWidth <= window.innerWidth"),
        true
    );

    // Enter on the photo's button brings the heatmap, the photo's size.
    let card = "[...document.querySelectorAll('.card')].find(c => c.querySelector('h2').textContent === 'chelsea.png')";
    browser.script(&format!("{card}.querySelector('.photo').focus()"));
    browser.press("\u{E007}");
    browser.wait_for(
        &format!("const img = {card}.querySelector('img'); return img.dataset.view === 'heatmap' && img.complete && img.naturalWidth === 451"),
        Duration::from_secs(90),
    );

    browser.script("window.scrollTo(0, 0)");
    let shot = browser.command("GET", "/screenshot", None);
    let png = base64::engine::general_purpose::STANDARD.decode(shot.as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png"), png).unwrap();
}

/// The names of the top 5 classes `/v1/classify` answers for `photo`.
fn top_names(server: &Server, photo: &Path) -> Vec<String> {
    let bytes = std::fs::read(photo).unwrap();
    let mut response = client(Duration::from_secs(60))
        .post(server.url("/v1/classify"))
        .header("content-type", "image/png")
        .send(&bytes[..])
        .unwrap();
    let answer: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    answer["results"][0]["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}
