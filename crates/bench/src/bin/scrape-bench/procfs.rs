//! CPU time and peak memory of a process, read from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//!
//! CPU is `utime + stime + cutime + cstime`: the process's own time plus that of every child it has
//! waited for, so the `iptables-save` / `nft` processes an exporter forks per scrape are included.
//! The kernel counts in clock ticks (`USER_HZ`, 100 per second here), i.e. 10 ms resolution.

use anyhow::{Context as _, Result, bail};

/// Clock ticks per second of the `/proc/<pid>/stat` time fields (`getconf CLK_TCK`).
pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Self plus waited-for children CPU time of `pid` ("self" for the calling process), in ticks.
pub fn cpu_ticks(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Field 2 (comm) may contain spaces and parentheses; everything after the last ')' is safe.
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state); utime..cstime are fields 14..=17.
    if fields.len() < 15 {
        bail!("short /proc/{pid}/stat");
    }
    fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().context("stat time field"))
        .sum()
}

/// User and system time (`cutime`, `cstime`, ticks) of the children `pid` has waited for.
pub fn child_ticks(pid: &str) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    if fields.len() < 15 {
        bail!("short /proc/{pid}/stat");
    }
    let field = |i: usize| fields[i].parse::<u64>().context("stat time field");
    Ok((field(13)?, field(14)?))
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
pub fn peak_rss_kib(pid: &str) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Current resident set size (`VmRSS`) of `pid`, in KiB.
pub fn rss_kib(pid: &str) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// Resets `pid`'s `VmHWM` to its current RSS (`echo 5 > /proc/PID/clear_refs`, Linux ≥ 4.0), so a
/// later [`peak_rss_kib`] tells the peak of what happened since.
pub fn reset_peak_rss(pid: &str) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of {pid}"))
}

fn status_kib(pid: &str, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in status"))
}

/// The id of `pid`'s thread named `name` (`/proc/PID/task/*/comm`), if it has one.
pub fn thread_named(pid: &str, name: &str) -> Result<Option<String>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing the threads of {pid}"))?;
    for task in tasks {
        let task = task?;
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return Ok(Some(task.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// State letter (`R`, `S`, …) and own CPU time (`utime + stime`, ticks) of thread `tid` of `pid`.
pub fn thread_state_and_ticks(pid: &str, tid: &str) -> Result<(char, u64)> {
    let path = format!("/proc/{pid}/task/{tid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("short {path}");
    }
    let state = fields[0].chars().next().unwrap_or('?');
    let ticks = fields[11..13]
        .iter()
        .map(|f| f.parse::<u64>().context("stat time field"))
        .sum::<Result<u64>>()?;
    Ok((state, ticks))
}
