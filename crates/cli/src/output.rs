//! Writing command output to stdout, treating a closed pipe (`nfscope rules | head`) as success.

use std::io::{self, Write};

/// Writes `text` to stdout and flushes. A broken pipe is silently ignored: the reader has seen
/// all it wanted.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
