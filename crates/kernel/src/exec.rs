//! Finding the save tools and running them with a hard time limit.
//!
//! A tool runs in its own process group with stdin closed and stdout and stderr on separate pipes:
//! stderr is never mixed into the text that gets parsed (kubernetes#78443), but it is kept for
//! error messages. When the time limit passes, the whole group is killed, so a hung tool (or a
//! grandchild holding its pipes) can never hang a scrape.

use std::env;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::KernelError;
use crate::sys;

/// Folders searched after `PATH`: where distributions install the netfilter tools.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// What a tool printed, after it exited successfully.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Finds an executable named `tool`: only in `tool_dir` when given, else on `PATH` and then in
/// `/usr/sbin`, `/sbin`, `/usr/local/sbin`.
pub fn find_tool(tool: &str, tool_dir: Option<&Path>) -> Result<PathBuf, KernelError> {
    let dirs = search_dirs(tool_dir);
    dirs.iter()
        .map(|dir| dir.join(tool))
        .find(|path| is_executable(path))
        .ok_or_else(|| {
            let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            KernelError::ToolNotFound {
                tool: tool.to_owned(),
                searched: searched.join(":"),
            }
        })
}

fn search_dirs(tool_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = tool_dir {
        return vec![dir.to_path_buf()];
    }
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(SBIN_DIRS.iter().map(PathBuf::from));
    dirs.retain(|d| d.is_absolute());
    dirs.dedup();
    dirs
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Soft stack limit the tools inherit (see `sys::raise_stack_soft_limit`): enough for
/// `iptables-nft-save` on a 300k-rule ruleset, still a bound.
const TOOL_STACK_BYTES: u64 = 1 << 30;

/// Runs `path args…` (reported as `tool`) and returns its output, or an error when it cannot be
/// started, exits non-zero, or is still running after `timeout`.
pub(crate) fn run_tool(
    tool: &str,
    path: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<ToolOutput, KernelError> {
    let deadline = Instant::now() + timeout;
    static STACK: std::sync::Once = std::sync::Once::new();
    STACK.call_once(|| sys::raise_stack_soft_limit(TOOL_STACK_BYTES));
    let mut child = Command::new(path)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| KernelError::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    let pipes = PipeReaders::start(&mut child);
    let finished = pipes
        .wait_until(deadline)
        .and_then(|out| wait_until(&mut child, deadline).map(|s| (s, out)));
    let Some((status, (stdout, stderr))) = finished else {
        // Best effort: the group may already be gone; reaping below is what matters.
        let _ = sys::kill_process_group(child.id());
        let _ = child.wait();
        return Err(KernelError::Timeout {
            tool: tool.to_owned(),
            after: timeout,
        });
    };
    if !status.success() {
        let stderr = first_line(&stderr).to_owned();
        return Err(KernelError::ToolFailed {
            tool: tool.to_owned(),
            status,
            stderr,
        });
    }
    Ok(ToolOutput { stdout, stderr })
}

/// The first non-blank line of `text`, trimmed (empty when there is none).
pub(crate) fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Polls the child until it exits or the deadline passes (`None`).
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Two threads draining stdout and stderr, so a chatty tool never blocks on a full pipe.
struct PipeReaders {
    done: mpsc::Receiver<(Stream, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl PipeReaders {
    fn start(child: &mut Child) -> Self {
        let (tx, done) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            spawn_reader::<ChildStdout>(out, Stream::Stdout, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader::<ChildStderr>(err, Stream::Stderr, tx);
        }
        Self { done }
    }

    /// Both streams read to their end, as `(stdout, stderr)`; `None` when the deadline passes first.
    fn wait_until(self, deadline: Instant) -> Option<(String, String)> {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            let (stream, text) = self.done.recv_timeout(left).ok()?;
            match stream {
                Stream::Stdout => stdout = text,
                Stream::Stderr => stderr = text,
            }
        }
        Some((stdout, stderr))
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    mut pipe: R,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the stream early; what was read so far is still sent.
        let _ = pipe.read_to_end(&mut bytes);
        // The receiver is gone when the tool timed out; nothing is waiting for this text then.
        let _ = tx.send((stream, String::from_utf8_lossy(&bytes).into_owned()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_inherit_a_stack_limit_large_enough_for_big_saves() {
        let out = run_tool(
            "sh",
            Path::new("/bin/sh"),
            &["-c", "ulimit -s; ulimit -Hs"],
            Duration::from_secs(10),
        )
        .expect("sh runs");
        let mut lines = out.stdout.lines();
        let kib = |v: Option<&str>| match v {
            Some("unlimited") => u64::MAX,
            Some(n) => n.parse::<u64>().expect("a number of KiB"),
            None => panic!("no output"),
        };
        let (soft, hard) = (kib(lines.next()), kib(lines.next()));
        let wanted = (TOOL_STACK_BYTES / 1024).min(hard);
        assert!(soft >= wanted, "soft stack limit {soft} KiB < {wanted} KiB");
    }

    #[test]
    fn first_line_skips_blank_lines_and_trims() {
        assert_eq!(first_line("\n  \n  boom here  \nsecond\n"), "boom here");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn tool_dir_is_the_only_place_searched_when_given() {
        let err = find_tool("sh", Some(Path::new("/nonexistent-nfscope-dir"))).unwrap_err();
        assert!(matches!(err, KernelError::ToolNotFound { .. }), "{err}");
        assert_eq!(err.to_string(), "sh not found in /nonexistent-nfscope-dir");
        assert_eq!(
            find_tool("sh", Some(Path::new("/bin"))).unwrap(),
            Path::new("/bin/sh")
        );
    }

    #[test]
    fn a_run_reports_stdout_and_stderr_separately() {
        let sh = find_tool("sh", None).unwrap();
        let out = run_tool(
            "sh",
            &sh,
            &["-c", "echo out; echo err >&2"],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn a_failing_run_reports_the_first_stderr_line() {
        let sh = find_tool("sh", None).unwrap();
        let err = run_tool(
            "sh",
            &sh,
            &["-c", "echo ok; printf '\\nfirst\\nsecond\\n' >&2; exit 3"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "sh failed (exit status: 3): first");
    }

    #[test]
    fn a_grandchild_holding_the_pipe_cannot_outlive_the_timeout() {
        let sh = find_tool("sh", None).unwrap();
        let started = Instant::now();
        let err = run_tool(
            "sh",
            &sh,
            &["-c", "(sleep 30; echo late) & sleep 30"],
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, KernelError::Timeout { .. }), "{err}");
        assert_eq!(err.to_string(), "sh timed out after 300ms");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }
}
