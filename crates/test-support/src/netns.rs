//! Throw-away network namespaces for root tests.
//!
//! [`TestNetns::new`] creates `nfscope-<tag>-<pid>-<n>` with `ip netns add` and brings `lo` up;
//! dropping the guard kills what still runs inside and deletes it (a veth pair dies with either
//! end). Commands run through `ip netns exec`, so nothing here touches the initial namespace.
//! Root tests check [`crate::root_or_skip`] first.

use std::io::{self, Write as _};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that exists as long as this guard does.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates a fresh namespace named `nfscope-<tag>-<pid>-<n>` with `lo` up.
    pub fn new(tag: &str) -> io::Result<Self> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("nfscope-{tag}-{}-{n}", std::process::id());
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Self { name };
        run_checked(Command::new("ip").args([
            "netns",
            "exec",
            &netns.name,
            "ip",
            "link",
            "set",
            "lo",
            "up",
        ]))?;
        Ok(netns)
    }

    /// The namespace's name, for `ip netns exec` and `CollectOptions::netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `argv` inside the namespace and returns what it did (panics only if `ip` cannot run).
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {argv:?}: {e}", self.name))
    }

    /// Runs `argv` inside the namespace with `input` on its standard input.
    pub fn exec_input(&self, argv: &[&str], input: &str) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} {argv:?}: {e}", self.name));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let owned = input.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(owned.as_bytes()));
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for {argv:?}: {e}"));
        writer
            .join()
            .expect("writer thread")
            .unwrap_or_else(|e| panic!("write to {argv:?}: {e}"));
        out
    }

    /// Runs a `sh -c` script inside the namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Runs a `sh -c` script inside the namespace, panics with its stderr unless it succeeds,
    /// and returns its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in {}: {script}\nfailed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Connects this namespace to `peer` with a veth pair, assigns the addresses (CIDR notation;
    /// IPv6 ones without duplicate address detection) and brings both ends up. Returns the
    /// interface names (here, there).
    pub fn veth_to(
        &self,
        peer: &Self,
        here: &[&str],
        there: &[&str],
    ) -> io::Result<(String, String)> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (format!("nfs{n}a"), format!("nfs{n}b"));
        let add = format!(
            "ip link add {a} type veth peer name {b} netns {}",
            peer.name
        );
        run_checked(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", &add]))?;
        self.configure(&a, here)?;
        peer.configure(&b, there)?;
        Ok((a, b))
    }

    fn configure(&self, ifname: &str, addrs: &[&str]) -> io::Result<()> {
        let mut script = String::new();
        for addr in addrs {
            let nodad = if addr.contains(':') { " nodad" } else { "" };
            script.push_str(&format!("ip addr add {addr} dev {ifname}{nodad} && "));
        }
        script.push_str(&format!("ip link set {ifname} up"));
        run_checked(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", &script]))
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Leftover processes would keep the namespace alive after its name is gone.
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!("ip netns pids {0} | xargs -r kill -9", self.name),
            ])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run_checked(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!(
        "{cmd:?} failed ({}): {}",
        out.status,
        stderr.trim()
    )))
}
