//! The web console in a real browser (root): `nfscope demo` serves the lab, Debian's headless
//! Chromium driven over chromedriver's W3C WebDriver HTTP API opens each view and deep link and
//! the test reads what a person would see — a policy and a Service found by a search, the
//! deciding rule and explanation of a trace, the workloads of the graph, the failures view's
//! state — and fails when a page script throws (the console records errors in
//! `window.__nfscopeErrors`). Screenshots of each view go to `docs/screenshots/`.
//!
//! Skips without root or without `chromium`/`chromedriver` (`scripts/install-deps` installs
//! them); under `CI=true` either is a failure. The browser runs with background networking off:
//! the machine has no internet and the console fetches nothing but its own origin.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nfscope_test_support::{free_port, root_or_skip, skip_unless};
use serde_json::{Value, json};
use support::{NFSCOPE, TempDir, http_get, http_header};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

// ---------------------------------------------------------------------------------------------
// The demo lab

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// `nfscope demo` on a free port; killed, and its namespaces removed, on drop.
struct Demo {
    child: Child,
    addr: SocketAddr,
    prefix: String,
}

impl Demo {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(NFSCOPE)
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nfscope demo");
        let prefix = format!("nfsd-{}-", child.id());
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            prefix,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, Duration::from_secs(40)).unwrap_or((0, String::new()))
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for name in netns_with_prefix(&self.prefix) {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A WebDriver client: JSON over HTTP/1.1 to chromedriver on loopback

/// One request to chromedriver; the parsed `value` of its answer, or the error it sent.
fn webdriver(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open whatever we ask: read by Content-Length (or to
    // the last chunk), not to the end of the stream.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let (head, payload) = loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let body = &raw[split + 4..];
            let complete = match head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                Some(length) => body.len() >= length,
                None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
                None => n == 0,
            };
            if complete {
                let payload = if head.contains("transfer-encoding: chunked") {
                    dechunk(body)
                } else {
                    body.to_vec()
                };
                break (head, payload);
            }
        }
        if n == 0 {
            return Err(format!("{method} {path}: connection closed mid-answer"));
        }
    };
    let answer: Value = serde_json::from_slice(&payload).map_err(|e| {
        format!(
            "{method} {path}: {e}: {}",
            String::from_utf8_lossy(&payload)
        )
    })?;
    let status_ok = head.split_whitespace().nth(1) == Some("200");
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if status_ok {
        Ok(value)
    } else {
        Err(format!("{method} {path}: {head}: {value}"))
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(status) = webdriver(port, "GET", "/status", None)
                && status["ready"] == true
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session.
struct Browser<'a> {
    driver: &'a Driver,
    id: String,
    _profile: TempDir,
}

impl<'a> Browser<'a> {
    /// A session in a fresh profile. A browser that does not come up in time on a loaded
    /// machine ("DevToolsActivePort file doesn't exist") is started again, up to 3 times; the
    /// failure names chromium's own last words.
    fn open(driver: &'a Driver) -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let profile = TempDir::new("chromium-profile");
            let log = profile.path().join("chrome_debug.log");
            let capabilities = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--disable-extensions",
                        "--no-default-browser-check", "--password-store=basic",
                        "--window-size=1280,800", "--enable-logging", "--v=0",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
            }}});
            match webdriver(driver.port, "POST", "/session", Some(&capabilities)) {
                Ok(session) => {
                    let id = session["sessionId"].as_str().expect("sessionId").to_owned();
                    return Self {
                        driver,
                        id,
                        _profile: profile,
                    };
                }
                Err(error) => {
                    let said = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = said.lines().rev().take(15).collect();
                    failures.push(format!(
                        "{error}\nchromium log (last lines, newest first):\n{}",
                        tail.join("\n")
                    ));
                }
            }
        }
        panic!(
            "no browser session after 3 tries:\n{}",
            failures.join("\n---\n")
        );
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.id);
        webdriver(self.driver.port, method, &path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn exec(&self, script: &str, args: &[Value]) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    fn current_url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn back(&self) {
        self.call("POST", "/back", Some(&json!({})));
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(&json!({"width": width, "height": height})),
        );
    }

    /// Waits until the view has finished (body[data-state] is no longer `loading`); its state.
    fn settled(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.exec(
                "return document.body ? document.body.getAttribute('data-state') : null;",
                &[],
            );
            if let Some(state) = state.as_str()
                && state != "loading"
            {
                return state.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the page did not settle: {}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The visible text of the first element matching `css` ("" when none).
    fn text(&self, css: &str) -> String {
        self.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            &[json!(css)],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The visible texts of every element matching `css`.
    fn texts(&self, css: &str) -> Vec<String> {
        let v = self.exec(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText === undefined ? e.textContent : e.innerText);",
            &[json!(css)],
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One attribute of every element matching `css`.
    fn attrs(&self, css: &str, name: &str) -> Vec<String> {
        let v = self.exec(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.getAttribute(arguments[1]) || '');",
            &[json!(css), json!(name)],
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/clear"), Some(&json!({})));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        );
    }

    /// Script errors the page recorded; panics if the console's error hook is missing.
    fn errors(&self) -> Vec<String> {
        let v = self.exec(
            "return Array.isArray(window.__nfscopeErrors) ? window.__nfscopeErrors : null;",
            &[],
        );
        let list = v.as_array().unwrap_or_else(|| {
            panic!(
                "the console's error hook did not run on {}",
                self.current_url()
            )
        });
        list.iter()
            .map(|e| e.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn assert_no_errors(&self) {
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "script errors on {}: {errors:?}",
            self.current_url()
        );
    }

    /// The page is not wider than the window (nothing needs sideways scrolling but tables
    /// inside their own scroll boxes).
    fn assert_fits_width(&self) {
        let v = self.exec(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            &[],
        );
        let (scroll, client) = (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0));
        assert!(
            scroll <= client + 1,
            "{} is {scroll}px wide in a {client}px window",
            self.current_url()
        );
    }

    fn screenshot(&self, name: &str) {
        let png = self.call("GET", "/screenshot", None);
        let png = data_encoding::BASE64
            .decode(png.as_str().unwrap_or_default().as_bytes())
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).expect("docs/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = webdriver(
            self.driver.port,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
        );
    }
}

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_console_shows_rules_traces_the_graph_and_failures_of_the_demo_lab() {
    const TEST: &str = "the_console_shows_rules_traces_the_graph_and_failures_of_the_demo_lab";
    if !root_or_skip(TEST) {
        return;
    }
    let have = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !skip_unless(
        TEST,
        have,
        "needs chromium and chromium-driver (scripts/install-deps)",
    ) {
        return;
    }
    let demo = Demo::start();
    // The lab is up when its graph names the LAN client's connections to the web workload.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = demo.get("/api/graph/data");
        let graph: Value = serde_json::from_str(&body).unwrap_or_default();
        let ids: Vec<&str> = graph["nodes"]
            .as_array()
            .map(|n| n.iter().filter_map(|n| n["id"].as_str()).collect())
            .unwrap_or_default();
        if status == 200
            && ["lan-client", "rogue-client", "demo/web", "demo/db"]
                .iter()
                .all(|id| ids.contains(id))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "demo lab not ready: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Outside the browser: curl keeps the text index; the console's pages carry the CSP.
    let (status, index) = demo.get("/");
    assert_eq!(status, 200);
    assert!(
        index.starts_with("nfscope exporter\n") && index.contains("\n/ui/ "),
        "{index}"
    );
    for path in [
        "/ui/",
        "/ui/rules",
        "/ui/trace",
        "/ui/graph",
        "/ui/failures",
        "/ui/static/common.js",
    ] {
        let csp = http_header(demo.addr, path, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("script-src 'self'")
                && !csp.contains("unsafe"),
            "{path}: {csp:?}"
        );
    }
    assert_eq!(demo.get("/ui/static/nope.js").0, 404);

    let driver = Driver::start();
    let browser = Browser::open(&driver);

    // The error hook works: a throwing script is recorded, so a clean page means no error.
    browser.goto(&demo.url("/ui/"));
    browser.exec(
        "setTimeout(function () { throw new Error('probe'); }, 0); return null;",
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    // (An injected script's error reaches the hook as the opaque "Script error.".)
    assert_eq!(browser.errors().len(), 1, "a thrown error is recorded");

    // `/` in a browser links to the console; the console's home links to every view.
    browser.goto(&demo.url("/"));
    assert_eq!(
        browser.attrs("a[href='/ui/']", "href").len(),
        1,
        "{}",
        browser.text("body")
    );
    browser.assert_no_errors();
    browser.goto(&demo.url("/ui/"));
    let links = browser.attrs("main a", "href");
    for view in ["/ui/rules", "/ui/trace", "/ui/graph", "/ui/failures"] {
        assert!(links.iter().any(|l| l == view), "{view} in {links:?}");
    }
    browser.assert_no_errors();

    // Rules: a NetworkPolicy found by a search.
    browser.goto(&demo.url("/ui/rules?q=policy:db-allow-web"));
    assert_eq!(browser.settled(), "ready", "{}", browser.text("main"));
    let chains = browser.attrs("section.chain", "data-chain");
    assert!(
        chains.iter().any(|c| c.starts_with("KUBE-NWPLCY-")),
        "the policy's chain is found: {chains:?}"
    );
    assert!(
        !chains.iter().any(|c| c.starts_with("KUBE-SVC-")),
        "Services are filtered out: {chains:?}"
    );
    assert!(
        browser
            .text("main")
            .contains("kube-router network policy demo/db-allow-web"),
        "{}",
        browser.text("main")
    );
    browser.assert_no_errors();
    browser.screenshot("rules");

    // Lint findings inline: a finding of /api/lint shows on its chain's page, at its rule.
    let lint = demo.json("/api/lint");
    let findings = lint["findings"].as_array().expect("findings");
    let finding = findings
        .iter()
        .find(|f| f["rule_index"].is_u64() && f["nftables"].is_null())
        .unwrap_or_else(|| panic!("the demo lab has a rule finding: {findings:?}"));
    let rs = format!(
        "{}-{}",
        finding["family"].as_str().unwrap(),
        finding["backend"].as_str().unwrap()
    );
    browser.goto(&demo.url(&format!(
        "/ui/rules?{}",
        query(&[
            ("rs", &rs),
            ("table", finding["table"].as_str().unwrap()),
            ("chain", finding["chain"].as_str().unwrap()),
        ])
    )));
    assert_eq!(browser.settled(), "ready", "{}", browser.text("main"));
    let row = format!(
        "#r-{}-{} li.finding",
        finding["chain"].as_str().unwrap(),
        finding["rule_index"]
    );
    let shown = browser.texts(&row);
    let id = finding["id"].as_str().unwrap();
    assert!(
        shown
            .iter()
            .any(|t| t.contains(id) && t.contains(finding["message"].as_str().unwrap())),
        "{id} at {row}: {shown:?}"
    );
    browser.assert_no_errors();
    browser.goto(&demo.url("/ui/rules?q=policy:db-allow-web"));
    assert_eq!(browser.settled(), "ready");

    // "Refresh counters" reads the rules again and gives every shown rule a rate.
    assert!(
        browser.texts("td.rate").iter().all(|r| r == "–"),
        "no rate before a second read"
    );
    browser.click("#refresh");
    assert_eq!(browser.settled(), "ready");
    let rates = browser.texts("td.rate");
    assert!(
        !rates.is_empty() && rates.iter().all(|r| r.ends_with("/s")),
        "{rates:?}"
    );

    // A Service, typed into the search box (keyboard: Enter submits), with the URL following.
    browser.type_into("#q", "service:web\u{E007}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.current_url().contains("q=service%3Aweb") {
        assert!(Instant::now() < deadline, "URL: {}", browser.current_url());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(browser.settled(), "ready");
    let chains = browser.attrs("section.chain", "data-chain");
    assert!(
        chains.iter().any(|c| c.starts_with("KUBE-SVC-")),
        "{chains:?}"
    );
    assert!(
        !chains.iter().any(|c| c.starts_with("KUBE-NWPLCY-")),
        "{chains:?}"
    );
    assert!(browser.text("main").contains("service demo/web:http"));

    // A jump target is a link to its chain, which lists who jumps to it; back returns.
    let target = browser.text("a.jump");
    assert!(
        target.starts_with("jump ") || target.starts_with("goto "),
        "{target:?}"
    );
    browser.click("a.jump");
    assert_eq!(browser.settled(), "ready");
    assert!(
        browser.current_url().contains("chain="),
        "{}",
        browser.current_url()
    );
    assert_eq!(browser.text("h2.chain-name"), target[5..]);
    assert!(browser.text("main").contains("Jumped to from"));
    assert!(
        !browser.texts("ul.callers li").is_empty(),
        "{}",
        browser.text("main")
    );
    browser.assert_no_errors();
    browser.back();
    assert_eq!(browser.settled(), "ready");
    assert!(
        browser.current_url().contains("q=service%3Aweb"),
        "{}",
        browser.current_url()
    );
    assert!(!browser.attrs("section.chain", "data-chain").is_empty());
    browser.assert_no_errors();

    // Trace deep link: the deciding rule and the explanation are those /api/trace gives.
    let packet = query(&[
        ("src", "192.168.50.66"),
        ("dst", "10.96.0.30"),
        ("proto", "tcp"),
        ("dport", "5432"),
        ("in", "br-lan"),
    ]);
    let api = demo.json(&format!("/api/trace?{packet}"));
    assert_eq!(api["verdict"], "REJECT", "{api}");
    let explanation = api["explanation"].as_str().expect("an explanation");
    assert!(explanation.contains("db-0"), "{explanation}");
    browser.goto(&demo.url(&format!("/ui/trace?{packet}")));
    assert_eq!(browser.settled(), "ready", "{}", browser.text("main"));
    assert!(browser.text(".verdict").contains("REJECT"));
    assert!(
        browser.text(".verdict").contains(explanation),
        "{}",
        browser.text(".verdict")
    );
    let card = browser.text(".decided-by");
    let decided = &api["decided_by"];
    for part in [&decided["chain"], &decided["rule"], &decided["annotation"]] {
        assert!(
            card.contains(part.as_str().expect("string")),
            "{part} in {card}"
        );
    }
    let highlighted = browser.texts("li.step.decided");
    assert_eq!(highlighted.len(), 1, "{highlighted:?}");
    assert!(highlighted[0].contains(decided["rule"].as_str().unwrap()));
    let hooks = browser.texts("li.hook > h3");
    assert_eq!(
        hooks.first().map(String::as_str),
        Some("PREROUTING"),
        "{hooks:?}"
    );
    assert_eq!(
        hooks.last().map(String::as_str),
        Some("FORWARD"),
        "rejected in FORWARD: {hooks:?}"
    );
    assert!(browser.text("main").contains("DNAT to 10.244.1.31:5432"));
    assert_eq!(
        browser.exec("return document.getElementById('f-src').value;", &[]),
        "192.168.50.66",
        "the form shows the deep link's packet"
    );
    browser.assert_no_errors();
    browser.screenshot("trace");

    // Load balancing: every branch with its probability.
    let packet = query(&[
        ("src", "192.168.50.10"),
        ("dst", "10.96.0.10"),
        ("proto", "tcp"),
        ("dport", "80"),
        ("in", "br-lan"),
    ]);
    let api = demo.json(&format!("/api/trace?{packet}"));
    let branches = api["branches"].as_array().map_or(0, Vec::len);
    assert_eq!(branches, 3, "{api}");
    browser.goto(&demo.url(&format!("/ui/trace?{packet}")));
    assert_eq!(browser.settled(), "ready");
    let shown = browser.texts("li.branch summary");
    assert_eq!(shown.len(), branches, "{shown:?}");
    assert!(shown.iter().all(|b| b.contains("33.3 %")), "{shown:?}");
    browser.assert_no_errors();

    // The form: typed, submitted with Enter, the URL is the deep link.
    browser.goto(&demo.url("/ui/trace"));
    assert_eq!(browser.settled(), "empty");
    browser.type_into("#f-src", "192.168.50.10");
    browser.type_into("#f-dst", "10.96.0.40");
    browser.type_into("#f-in", "br-lan");
    browser.type_into("#f-dport", "80\u{E007}");
    assert_eq!(browser.settled(), "ready", "{}", browser.text("main"));
    let url = browser.current_url();
    for part in [
        "src=192.168.50.10",
        "dst=10.96.0.40",
        "proto=tcp",
        "dport=80",
        "in=br-lan",
    ] {
        assert!(url.contains(part), "{part} in {url}");
    }
    let api = demo.json("/api/trace?src=192.168.50.10&dst=10.96.0.40&proto=tcp&dport=80&in=br-lan");
    let explanation = api["explanation"].as_str().expect("explanation");
    assert!(explanation.contains("no endpoints"), "{explanation}");
    assert!(browser.text(".verdict").contains(explanation));
    browser.assert_no_errors();

    // Graph: the workloads and the edges between them; red exactly where failures are counted.
    browser.goto(&demo.url("/ui/graph"));
    assert_eq!(browser.settled(), "ready", "{}", browser.text("main"));
    let nodes = browser.attrs("g.node", "data-node");
    for id in ["lan-client", "rogue-client", "demo/web", "demo/db"] {
        assert!(nodes.iter().any(|n| n == id), "{id} in {nodes:?}");
    }
    let edges = browser.attrs("path.edge", "data-edge");
    assert!(
        edges.iter().any(|e| e == "lan-client->demo/web"),
        "{edges:?}"
    );
    assert!(
        browser
            .texts("text.edge-label")
            .iter()
            .any(|t| t.contains("conns"))
    );
    let red = browser.attrs("path.edge.failed", "data-edge");
    let graph = demo.json("/api/graph/data");
    let failed_in_api: Vec<&str> = graph["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            [&e["detail__failures"], &e["arc__failed"]]
                .iter()
                .any(|f| f.as_f64().is_some_and(|f| f > 0.0))
        })
        .filter_map(|e| e["id"].as_str())
        .collect();
    for id in &red {
        assert!(
            failed_in_api.contains(&id.as_str()),
            "{id} is red but has no failures: {failed_in_api:?}"
        );
    }
    if !failed_in_api.is_empty() {
        assert!(
            !red.is_empty(),
            "failing edges {failed_in_api:?} are not red"
        );
    }
    browser.assert_no_errors();
    browser.screenshot("graph");

    // Failures: the list, its empty state, or "off" when this server has no /api/failures.
    browser.goto(&demo.url("/ui/failures"));
    let state = browser.settled();
    let (status, body) = demo.get("/api/failures");
    let status_text = browser.text("#status");
    match status {
        404 => {
            assert_eq!(state, "off");
            assert!(
                status_text
                    .to_lowercase()
                    .contains("failure tracking is off (start serve with --flows)"),
                "{status_text}"
            );
        }
        200 => {
            let doc: Value = serde_json::from_str(&body).expect("failures JSON");
            let first = doc["failures"].as_array().and_then(|f| f.first()).cloned();
            match first {
                Some(first) => {
                    // Failures keep coming in the lab: wait for the page to list some.
                    assert_eq!(state, "ready", "{status_text}");
                    let items = browser.texts("li.failure");
                    assert!(!items.is_empty());
                    if let Some(explanation) = first["explanation"].as_str() {
                        assert!(
                            items.iter().any(|i| i.contains(explanation)),
                            "{explanation} in {items:?}"
                        );
                    }
                    browser.click("li.failure a.open-trace");
                    assert!(browser.current_url().contains("/ui/trace?src="));
                    assert_eq!(browser.settled(), "ready", "{}", browser.text("main"));
                    assert!(!browser.text(".verdict").is_empty());
                    browser.back();
                    browser.settled();
                }
                None => {
                    assert_eq!(state, "empty");
                    assert!(
                        status_text.contains("No failures in the last 15 minutes"),
                        "{status_text}"
                    );
                }
            }
        }
        other => panic!("/api/failures answered {other}: {body}"),
    }
    browser.assert_no_errors();
    browser.screenshot("failures");

    // A phone's width: nothing but tables' own scroll boxes is wider than the screen.
    browser.resize(390, 844);
    browser.goto(&demo.url(&format!(
        "/ui/trace?{}",
        query(&[
            ("src", "192.168.50.66"),
            ("dst", "10.96.0.30"),
            ("proto", "tcp"),
            ("dport", "5432"),
            ("in", "br-lan")
        ])
    )));
    assert_eq!(browser.settled(), "ready");
    browser.assert_fits_width();
    browser.assert_no_errors();
    browser.screenshot("trace-phone");
    browser.goto(&demo.url("/ui/rules?q=pod:db-0"));
    assert_eq!(browser.settled(), "ready");
    browser.assert_fits_width();
    browser.assert_no_errors();
    browser.screenshot("rules-phone");
}
