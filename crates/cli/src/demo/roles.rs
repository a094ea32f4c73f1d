//! The small programs the lab runs inside its namespaces: a pod's TCP server and a client's
//! connection loop. They are this same binary, started as
//! `ip netns exec NS nfscope demo --internal-role JSON`, so the lab needs no shell quoting and no
//! tools beyond iproute2.
//!
//! Each role exits on its own when the demo process that started it is gone (its parent pid
//! changes), so a killed demo never leaves servers or loops behind. It does not create or remove
//! namespaces (`lab`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What a helper process does; passed as JSON in `--internal-role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "role")]
pub enum Role {
    /// Answer every TCP connection on `port` (IPv4 and IPv6) with a tiny HTTP response naming the pod.
    PodServer { pod: String, port: u16 },
    /// Connect to every target every `interval_ms`, send a GET and read the answer; then close
    /// with a FIN, or with a RST (`SO_LINGER` 0) when `reset_on_close`.
    Traffic {
        targets: Vec<SocketAddr>,
        interval_ms: u64,
        #[serde(default)]
        reset_on_close: bool,
    },
}

/// How long one connection attempt may take before it counts as dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

impl Role {
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).expect("role serializes")
    }

    pub fn from_arg(arg: &str) -> anyhow::Result<Self> {
        serde_json::from_str(arg).with_context(|| format!("bad --internal-role {arg:?}"))
    }
}

/// Runs a role until the parent demo process goes away.
pub async fn run_role(role: Role, parent: u32) -> anyhow::Result<()> {
    let work = async {
        match role {
            Role::PodServer { pod, port } => serve_pod(&pod, port).await,
            Role::Traffic {
                targets,
                interval_ms,
                reset_on_close,
            } => traffic_loop(targets, Duration::from_millis(interval_ms), reset_on_close).await,
        }
    };
    tokio::select! {
        result = work => result,
        () = parent_gone(parent) => Ok(()),
    }
}

/// Resolves once this process's parent is no longer `parent` (it died and we were re-parented).
async fn parent_gone(parent: u32) {
    loop {
        if std::os::unix::process::parent_id() != parent {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn serve_pod(pod: &str, port: u16) -> anyhow::Result<()> {
    // `[::]` with the default `bindv6only=0` accepts IPv4 (mapped) connections too.
    let listener = TcpListener::bind(("::", port))
        .await
        .with_context(|| format!("{pod}: bind port {port}"))?;
    let body = format!("{pod} (namespace {})\n", super::topology::K8S_NAMESPACE);
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), answer(stream, &body)).await;
        });
    }
}

/// Reads the request head (or whatever arrives first), answers HTTP/1.0 and closes cleanly.
async fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn traffic_loop(
    targets: Vec<SocketAddr>,
    interval: Duration,
    reset_on_close: bool,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for &target in &targets {
            tokio::spawn(async move {
                let request = one_request(target, reset_on_close);
                let _ = tokio::time::timeout(CONNECT_TIMEOUT * 2, request).await;
            });
        }
    }
}

/// One short HTTP exchange; failures (REJECT, DROP) are the point of some targets, so ignored.
/// With `reset_on_close` the socket is closed abortively: the kernel sends a RST, not a FIN.
async fn one_request(target: SocketAddr, reset_on_close: bool) -> std::io::Result<()> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).await?;
    if reset_on_close {
        stream.set_zero_linger()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips_through_its_argument() {
        let roles = [
            Role::PodServer {
                pod: "web-1".into(),
                port: 8080,
            },
            Role::Traffic {
                targets: vec![
                    "10.96.0.10:80".parse().unwrap(),
                    "[fd00::1]:80".parse().unwrap(),
                ],
                interval_ms: 500,
                reset_on_close: true,
            },
        ];
        for role in roles {
            assert_eq!(Role::from_arg(&role.to_arg()).unwrap(), role);
        }
        assert!(Role::from_arg("{\"role\":\"nope\"}").is_err());
    }

    #[tokio::test]
    async fn pod_server_answers_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            answer(stream, "web-9\n").await.unwrap();
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        server.await.unwrap();
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nweb-9\n"), "{reply}");
    }

    /// What the server sees after answering: a clean end of stream, or a reset.
    async fn server_sees_after_answer(reset_on_close: bool) -> std::io::ErrorKind {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 256];
            let _ = stream.read(&mut request).await.unwrap();
            stream.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
            stream.shutdown().await.unwrap();
            let mut rest = [0u8; 16];
            match stream.read(&mut rest).await {
                Ok(0) => std::io::ErrorKind::UnexpectedEof,
                Ok(_) => std::io::ErrorKind::InvalidData,
                Err(e) => e.kind(),
            }
        });
        one_request(addr, reset_on_close).await.unwrap();
        server.await.unwrap()
    }

    #[tokio::test]
    async fn clients_close_with_fin_or_with_reset() {
        assert_eq!(
            server_sees_after_answer(false).await,
            std::io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            server_sees_after_answer(true).await,
            std::io::ErrorKind::ConnectionReset
        );
    }
}
