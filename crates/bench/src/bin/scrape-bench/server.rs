//! Runs `nfscope serve --netns NS` and scrapes its `/metrics` over plain HTTP/1.1.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// A running `nfscope serve`, killed (by its pid, through the `Child` handle) on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// When the process was spawned.
    pub started: Instant,
}

impl Server {
    pub fn start(
        nfscope: &Path,
        netns: &str,
        timeout_s: u32,
        text_timeout_s: Option<u32>,
        extra: &[&str],
        log: &Path,
    ) -> Result<Self> {
        let addr = free_local_port()?;
        let text_timeout;
        let mut text_args: Vec<&str> = Vec::new();
        if let Some(t) = text_timeout_s {
            text_timeout = t.to_string();
            text_args.extend(["--text-timeout", text_timeout.as_str()]);
        }
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(nfscope)
            .args([
                "serve",
                "--netns",
                netns,
                "--listen",
                &addr.to_string(),
                "--timeout",
                &timeout_s.to_string(),
            ])
            .args(&text_args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", nfscope.display()))?;
        let mut server = Self {
            child,
            addr,
            started,
        };
        server.wait_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("nfscope serve exited early: {status}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "nfscope serve did not listen on {} within {limit:?}",
            self.addr
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the small race with other processes is acceptable here).
fn free_local_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// An answer other than `200`.
#[derive(Debug)]
pub struct NotOk {
    pub status_line: String,
    pub body_start: String,
}

impl std::fmt::Display for NotOk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status_line, self.body_start)
    }
}

impl std::error::Error for NotOk {}

impl NotOk {
    /// `503 Service Unavailable`: nfscope has no rules to answer with yet.
    pub fn is_unavailable(&self) -> bool {
        self.status_line.contains(" 503 ")
    }
}

/// `GET /metrics`; returns the body size, failing on anything but `200` (a [`NotOk`] error).
pub fn scrape(addr: SocketAddr) -> Result<usize> {
    scrape_within(addr, Duration::from_secs(300))
}

/// [`scrape`] waiting up to `limit` for the answer (the first scrape of a big ruleset waits for
/// the whole first collection).
pub fn scrape_within(addr: SocketAddr, limit: Duration) -> Result<usize> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(limit))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::with_capacity(1 << 20);
    stream
        .read_to_end(&mut response)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                anyhow::anyhow!("no complete answer on /metrics within {limit:?}")
            }
            _ => e.into(),
        })?;
    let header_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header end")?;
    let status_line = String::from_utf8_lossy(
        &response[..response.iter().position(|b| *b == b'\r').unwrap_or(0)],
    );
    if !status_line.contains(" 200 ") {
        let body = String::from_utf8_lossy(&response[header_end + 4..]);
        return Err(NotOk {
            status_line: status_line.into_owned(),
            body_start: body.chars().take(300).collect(),
        }
        .into());
    }
    Ok(response.len() - header_end - 4)
}
