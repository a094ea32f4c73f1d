//! The kernel's own trace of one packet, read with `xtables-monitor --trace` (iptables-nft).
//!
//! Owns the mechanics of a second ground truth for `nfscope trace` on the nft backend: raw-table
//! `-j TRACE` rules installed in a test namespace and removed on drop ([`TraceRules`]), the
//! monitor process killed on drop ([`Monitor`]), parsing of its output lines ([`parse_line`]),
//! cutting one packet's events out of the stream ([`trace_one`]) and the kernel's decision
//! ([`decision`]). It does not know the lab topology nor the tracer: mapping events to rule
//! positions of a dump and comparing with `decided_by` is the test's job.
//!
//! Synchronisation uses a sentinel instead of sleeps: a traced UDP packet from the namespace to
//! `127.0.0.2:9`. The monitor is ready once a sentinel shows up; after the test packet, a second
//! sentinel's events arrive behind every event of the test packet (netlink delivers in order and
//! the test packet is fully processed when its sender returns), so seeing it means the test
//! packet's trace is complete. Every wait has a deadline.
//!
//! Output format (iptables 1.8.9), one event per line; a rule event that carries packet headers
//! is preceded by a `PACKET:` line with the same id:
//! ```text
//! PACKET: 2 e6fdafda IN=v0 MACSRC=… SRC=192.168.77.2 DST=192.168.77.1 LEN=60 … DPORT=81 SYN
//!  TRACE: 2 e6fdafda filter:INPUT:rule:0x3:JUMP:MYCH  -4 -t filter -A INPUT -p tcp -j MYCH
//!  TRACE: 2 e6fdafda filter:MYCH:rule:0x4:DROP  -4 -t filter -A MYCH -p tcp -m tcp --dport 81 -j DROP
//!  TRACE: 2 dfcd6ede filter:INPUT:policy:DROP
//! ```
//! REJECT shows as verdict `DROP` (nft's reject ends in NF_DROP); the rule text tells them apart.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Destination of the sentinel packets (loopback, so it never leaves the namespace).
pub const SENTINEL_DST: &str = "127.0.0.2";
const SENTINEL_PORT: u16 = 9;
/// Longest wait for the monitor to report a packet.
const DEADLINE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// Is `xtables-monitor` installed and runnable?
pub fn available() -> bool {
    Command::new("xtables-monitor")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Did the monitor die because it could not turn a traced rule back into iptables syntax?
/// xtables-monitor 1.8.9 initialises its extensions for IPv4 only, so printing an IPv6 rule with
/// a protocol match fails ("unsupported layer 4 protocol value", "match extension not found")
/// and the monitor exits.
pub fn cannot_print_rule(error: &str) -> bool {
    error.contains("Parsing nftables rule failed")
}

/// One `-j TRACE` rule for the raw table: `TOOL -t raw -I CHAIN 1 SPEC… -j TRACE`.
#[derive(Debug, Clone)]
pub struct TraceRule {
    /// `iptables-nft` or `ip6tables-nft`.
    pub tool: &'static str,
    /// `PREROUTING` (packets arriving) or `OUTPUT` (locally generated).
    pub chain: &'static str,
    /// The match, without `-j TRACE`.
    pub spec: Vec<String>,
}

impl TraceRule {
    fn argv(&self, action: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = [self.tool, "-t", "raw"]
            .iter()
            .chain(action)
            .map(|s| (*s).to_owned())
            .collect();
        argv.extend(self.spec.iter().cloned());
        argv.extend(["-j".to_owned(), "TRACE".to_owned()]);
        argv
    }
}

/// The rule that traces the sentinel packets.
pub fn sentinel_rule() -> TraceRule {
    TraceRule {
        tool: "iptables-nft",
        chain: "OUTPUT",
        spec: ["-d", SENTINEL_DST, "-p", "udp", "--dport", "9"]
            .map(str::to_owned)
            .to_vec(),
    }
}

/// TRACE rules installed in a namespace, deleted again on drop.
pub struct TraceRules {
    netns: String,
    installed: Vec<TraceRule>,
}

impl TraceRules {
    /// Inserts each rule at the head of its raw chain.
    pub fn install(netns: &str, rules: Vec<TraceRule>) -> Result<Self, String> {
        let mut guard = Self {
            netns: netns.to_owned(),
            installed: Vec::new(),
        };
        for rule in rules {
            let argv = rule.argv(&["-I", rule.chain, "1"]);
            run_in(netns, &argv)?;
            guard.installed.push(rule);
        }
        Ok(guard)
    }
}

impl Drop for TraceRules {
    fn drop(&mut self) {
        for rule in self.installed.drain(..).rev() {
            let argv = rule.argv(&["-D", rule.chain]);
            if let Err(e) = run_in(&self.netns, &argv) {
                eprintln!("warning: could not remove a TRACE rule: {e}");
            }
        }
    }
}

fn run_in(netns: &str, argv: &[String]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(argv)
        .output()
        .map_err(|e| format!("ip netns exec {netns} {argv:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "in {netns}: {argv:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Sends one sentinel packet from the namespace.
fn send_sentinel(netns: &str) -> Result<(), String> {
    let script = format!("echo x >/dev/udp/{SENTINEL_DST}/{SENTINEL_PORT}");
    run_in(
        netns,
        &[
            "bash".to_owned(),
            "-c".to_owned(),
            format!("{script}; true"),
        ],
    )
}

/// `xtables-monitor --trace` running inside a namespace; killed and reaped on drop.
pub struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Monitor {
    /// Starts the monitor (not yet known to be listening: see [`Monitor::wait_ready`]).
    pub fn start(netns: &str) -> Result<Self, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "xtables-monitor", "--trace"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start xtables-monitor in {netns}: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines lock").push(line);
            }
        });
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let err_sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err_pipe.read_to_string(&mut text);
            err_sink.lock().expect("stderr lock").push_str(&text);
        });
        Ok(Self {
            child,
            lines,
            stderr,
        })
    }

    /// The lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Sends sentinels until one is reported: from then on the monitor hears every traced packet.
    pub fn wait_ready(&mut self, netns: &str) -> Result<(), String> {
        let until = Instant::now() + DEADLINE;
        while Instant::now() < until {
            send_sentinel(netns)?;
            if self.poll_until(Instant::now() + Duration::from_millis(100), |lines| {
                sentinels_after(lines, 0) > 0
            })? {
                return Ok(());
            }
        }
        Err(self.failure("no sentinel reported: monitor not listening"))
    }

    /// Polls the output until `done` holds (`Ok(true)`), the time is up (`Ok(false)`) or the
    /// monitor exits (`Err`).
    fn poll_until(
        &mut self,
        until: Instant,
        done: impl Fn(&[String]) -> bool,
    ) -> Result<bool, String> {
        loop {
            if done(&self.lines()) {
                return Ok(true);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(&format!("xtables-monitor exited ({status})")));
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::thread::sleep(POLL);
        }
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "{what}; stderr: {:?}; output:\n{}",
            self.stderr.lock().expect("stderr lock").trim(),
            self.lines().join("\n")
        )
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Number of sentinel packets whose first `PACKET:` line is at index `from` or later.
fn sentinels_after(lines: &[String], from: usize) -> usize {
    lines[from.min(lines.len())..]
        .iter()
        .filter_map(|l| parse_line(l))
        .filter(|e| matches!(e, Line::Packet(p) if p.dst == SENTINEL_DST))
        .count()
}

/// A `PACKET:` line: the headers of a traced packet at one point of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketLine {
    pub id: String,
    pub src: String,
    pub dst: String,
}

/// What a `TRACE:` line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A rule matched: its verdict (`ACCEPT`, `DROP`, `CONTINUE`, `JUMP:chain`, `GOTO:chain`,
    /// `RETURN`…) and its text in save format (`-4 -t TABLE -A CHAIN …`).
    Rule { verdict: String, text: String },
    /// The base chain's policy applied.
    Policy(String),
    /// Fell off the end of a user chain.
    Return,
}

/// A `TRACE:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub table: String,
    pub chain: String,
    pub kind: EventKind,
}

impl Event {
    /// The verdict this event ends its base chain with, if any (`ACCEPT`, `DROP`, `QUEUE`…).
    pub fn terminal_verdict(&self) -> Option<&str> {
        let v = match &self.kind {
            EventKind::Rule { verdict, .. } | EventKind::Policy(verdict) => verdict.as_str(),
            EventKind::Return => return None,
        };
        (!["CONTINUE", "RETURN", "BREAK", "0xfffffffb"].contains(&v)
            && !v.starts_with("JUMP")
            && !v.starts_with("GOTO"))
        .then_some(v)
    }

    /// The rule's text, or `policy VERDICT` / `return`, for messages.
    pub fn describe(&self) -> String {
        let what = match &self.kind {
            EventKind::Rule { verdict, text } => format!("{verdict} {text}"),
            EventKind::Policy(v) => format!("policy {v}"),
            EventKind::Return => "return".to_owned(),
        };
        format!("{}:{} {what}", self.table, self.chain)
    }
}

/// One parsed output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Packet(PacketLine),
    Trace(Event),
}

/// Parses one output line; `None` for lines that are neither `PACKET:` nor `TRACE:` (or garbled).
pub fn parse_line(line: &str) -> Option<Line> {
    let line = line.trim_start();
    if let Some(rest) = line.strip_prefix("PACKET:") {
        let mut words = rest.split_whitespace();
        let _family = words.next()?;
        let id = words.next()?.to_owned();
        let field = |name: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(name).map(str::to_owned))
        };
        return Some(Line::Packet(PacketLine {
            id,
            src: field("SRC=")?,
            dst: field("DST=")?,
        }));
    }
    let rest = line.strip_prefix("TRACE:")?.trim_start();
    let (_family, rest) = rest.split_once(' ')?;
    let (id, rest) = rest.split_once(' ')?;
    let (place, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut parts = place.splitn(4, ':');
    let table = parts.next()?.to_owned();
    let chain = parts.next()?.to_owned();
    let kind = match (parts.next()?, parts.next().unwrap_or("")) {
        ("rule", handle_and_verdict) => EventKind::Rule {
            verdict: handle_and_verdict.split_once(':')?.1.to_owned(),
            text: text.trim().to_owned(),
        },
        ("policy", verdict) => EventKind::Policy(verdict.to_owned()),
        ("return", _) => EventKind::Return,
        _ => return None,
    };
    Some(Line::Trace(Event {
        id: id.to_owned(),
        table,
        chain,
        kind,
    }))
}

/// The kernel's trace of one test packet.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The packet's events in order.
    pub events: Vec<Event>,
    /// The raw lines of the packet (and nothing of the sentinels), for messages.
    pub lines: Vec<String>,
}

/// Traces one packet: installs `packet_rule` (plus the sentinel rule), starts the monitor, waits
/// until it listens, runs `send`, waits for the trace to complete, then stops the monitor and
/// removes the rules. The packet is recognised by its first `PACKET:` line with `SRC=src`.
pub fn trace_one(
    netns: &str,
    packet_rule: TraceRule,
    src: &str,
    send: impl FnOnce(),
) -> Result<Capture, String> {
    // Declared first so it is dropped last: the monitor looks rules up while it prints.
    let _rules = TraceRules::install(netns, vec![sentinel_rule(), packet_rule])?;
    let mut monitor = Monitor::start(netns)?;
    monitor.wait_ready(netns)?;
    let start = monitor.lines().len();
    send();
    send_sentinel(netns)?;
    let complete = monitor.poll_until(Instant::now() + DEADLINE, |lines| {
        packet_start(lines, start, src).is_some_and(|i| sentinels_after(lines, i) > 0)
    })?;
    if !complete {
        return Err(monitor.failure(&format!(
            "no complete trace of a packet from {src} within {DEADLINE:?}"
        )));
    }
    Ok(cut(&monitor.lines(), start, src))
}

/// Index of the first `PACKET:` line from `src` at or after `from`.
fn packet_start(lines: &[String], from: usize, src: &str) -> Option<usize> {
    (from..lines.len())
        .find(|&i| matches!(parse_line(&lines[i]), Some(Line::Packet(p)) if p.src == src))
}

/// The events of the packet starting at its first line from `src`, up to the next sentinel.
fn cut(lines: &[String], from: usize, src: &str) -> Capture {
    let mut capture = Capture {
        events: Vec::new(),
        lines: Vec::new(),
    };
    let Some(start) = packet_start(lines, from, src) else {
        return capture;
    };
    let Some(Line::Packet(first)) = parse_line(&lines[start]) else {
        return capture;
    };
    for line in &lines[start..] {
        match parse_line(line) {
            Some(Line::Packet(p)) if p.dst == SENTINEL_DST => break,
            Some(Line::Packet(p)) if p.id == first.id => capture.lines.push(line.clone()),
            Some(Line::Trace(e)) if e.id == first.id => {
                capture.lines.push(line.clone());
                capture.events.push(e);
            }
            _ => {}
        }
    }
    capture
}

/// What the kernel did with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelVerdict {
    Accept,
    Drop,
    Reject,
}

/// The kernel's verdict and the event that decided it: the first event that drops the packet
/// (`REJECT` when that rule's target is REJECT), else the last ACCEPT of the filter table (the
/// tracer's convention for accepted packets).
pub fn decision(events: &[Event]) -> Result<(KernelVerdict, &Event), String> {
    if let Some(e) = events.iter().find(|e| e.terminal_verdict() == Some("DROP")) {
        let reject = matches!(&e.kind, EventKind::Rule { text, .. } if text.contains(" -j REJECT"));
        let verdict = if reject {
            KernelVerdict::Reject
        } else {
            KernelVerdict::Drop
        };
        return Ok((verdict, e));
    }
    if let Some(other) = events
        .iter()
        .find_map(|e| e.terminal_verdict().filter(|v| *v != "ACCEPT"))
    {
        return Err(format!("unexpected kernel verdict {other}"));
    }
    events
        .iter()
        .rev()
        .find(|e| e.table == "filter" && e.terminal_verdict() == Some("ACCEPT"))
        .map(|e| (KernelVerdict::Accept, e))
        .ok_or_else(|| "the trace has neither a DROP nor a filter-table ACCEPT".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real output of xtables-monitor 1.8.9 (kernel 6.18), abridged MAC addresses.
    const SAMPLE: &str = "\
PACKET: 2 e6fdafda IN=v0 MACSRC=56:c1:eb:36:2f:37 MACDST=16:8c:82:ca:2a:89 MACPROTO=0800 SRC=192.168.77.2 DST=192.168.77.1 LEN=60 TOS=0x0 TTL=64 ID=28884 DF SPORT=34314 DPORT=80 SYN 
 TRACE: 2 e6fdafda raw:PREROUTING:rule:0x2:CONTINUE  -4 -t raw -A PREROUTING -s 192.168.77.2/32 -p tcp -j TRACE
 TRACE: 2 e6fdafda raw:PREROUTING:policy:ACCEPT 
PACKET: 2 e6fdafda IN=v0 MACSRC=56:c1:eb:36:2f:37 MACDST=16:8c:82:ca:2a:89 MACPROTO=0800 SRC=192.168.77.2 DST=192.168.77.1 LEN=60 TOS=0x0 TTL=64 ID=28884 DF SPORT=34314 DPORT=80 SYN 
 TRACE: 2 e6fdafda filter:INPUT:rule:0x3:JUMP:MYCH  -4 -t filter -A INPUT -p tcp -j MYCH
 TRACE: 2 e6fdafda filter:MYCH:rule:0x5:DROP  -4 -t filter -A MYCH -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
PACKET: 2 0badf00d OUT=lo SRC=127.0.0.1 DST=127.0.0.2 LEN=30 DPORT=9 
 TRACE: 2 0badf00d raw:OUTPUT:rule:0x9:CONTINUE  -4 -t raw -A OUTPUT -d 127.0.0.2/32 -p udp -m udp --dport 9 -j TRACE
";

    fn lines() -> Vec<String> {
        SAMPLE.lines().map(str::to_owned).collect()
    }

    #[test]
    fn parses_rule_policy_and_packet_lines() {
        let l = lines();
        assert_eq!(
            parse_line(&l[0]),
            Some(Line::Packet(PacketLine {
                id: "e6fdafda".into(),
                src: "192.168.77.2".into(),
                dst: "192.168.77.1".into()
            }))
        );
        let Some(Line::Trace(jump)) = parse_line(&l[4]) else {
            panic!("not a trace line: {}", l[4]);
        };
        assert_eq!(
            (jump.table.as_str(), jump.chain.as_str()),
            ("filter", "INPUT")
        );
        assert_eq!(
            jump.kind,
            EventKind::Rule {
                verdict: "JUMP:MYCH".into(),
                text: "-4 -t filter -A INPUT -p tcp -j MYCH".into()
            }
        );
        assert_eq!(jump.terminal_verdict(), None);
        let Some(Line::Trace(policy)) = parse_line(&l[2]) else {
            panic!("not a trace line: {}", l[2]);
        };
        assert_eq!(policy.kind, EventKind::Policy("ACCEPT".into()));
        assert_eq!(parse_line("xtables-monitor: something else"), None);
        assert_eq!(parse_line(" TRACE: 2 1 filter:X:rule"), None);
    }

    #[test]
    fn cuts_one_packet_and_finds_a_reject() {
        let capture = cut(&lines(), 0, "192.168.77.2");
        assert_eq!(capture.events.len(), 4, "{capture:?}");
        assert!(capture.lines.iter().all(|l| !l.contains("0badf00d")));
        let (verdict, by) = decision(&capture.events).unwrap();
        assert_eq!(verdict, KernelVerdict::Reject);
        assert_eq!(by.chain, "MYCH");
        assert_eq!(sentinels_after(&lines(), 0), 1);
        assert_eq!(sentinels_after(&lines(), 7), 0);
    }

    #[test]
    fn accept_is_the_last_filter_accept() {
        let parse = |s: &str| match parse_line(s) {
            Some(Line::Trace(e)) => e,
            other => panic!("{other:?}"),
        };
        let events = [
            parse(
                " TRACE: 2 1 filter:FORWARD:rule:0x7:JUMP:KUBE-FORWARD  -4 -t filter -A FORWARD -j KUBE-FORWARD",
            ),
            parse(
                " TRACE: 2 1 filter:KUBE-FORWARD:rule:0x9:ACCEPT  -4 -t filter -A KUBE-FORWARD -j ACCEPT",
            ),
            parse(" TRACE: 2 1 nat:POSTROUTING:policy:ACCEPT "),
        ];
        let (verdict, by) = decision(&events).unwrap();
        assert_eq!(verdict, KernelVerdict::Accept);
        assert_eq!(by.chain, "KUBE-FORWARD");
        assert!(decision(&events[..1]).is_err());
    }
}
