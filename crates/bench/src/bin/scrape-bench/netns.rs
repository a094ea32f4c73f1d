//! A throwaway network namespace holding one generated ruleset, deleted on drop.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// A namespace `nfscope-bench-<pid>-<tag>` created by this run.
pub struct BenchNetns {
    pub name: String,
}

impl BenchNetns {
    pub fn create(tag: &str) -> Result<Self> {
        let name = format!("nfscope-bench-{}-{tag}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .context("running ip netns add")?;
        if !status.success() {
            bail!("ip netns add {name} failed");
        }
        Ok(Self { name })
    }

    /// Feeds `text` to `iptables-<backend>-restore --counters` inside the namespace, or for
    /// backend `nftables` (kube-proxy's nftables mode) to `nft -f -`.
    pub fn restore(&self, backend: &str, text: &str) -> Result<()> {
        let (program, args): (String, &[&str]) = if backend == "nftables" {
            ("nft".to_owned(), &["-f", "-"])
        } else {
            (format!("iptables-{backend}-restore"), &["--counters"])
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, &program])
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {program}"))?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("{program} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for BenchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
