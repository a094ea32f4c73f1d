//! One parser of the Prometheus text exposition (0.0.4) and one `promtool check metrics`.
//!
//! [`parse_exposition`] also checks the structure the exporter promises (every family typed
//! before its samples, families contiguous, no series twice); [`parse_samples`] reads the sample
//! lines only, for bodies whose structure another check (promtool) already covers. Both decode
//! label values, so tests compare them with the originals, and panic on a malformed line so a
//! broken exposition fails the test that reads it.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Label pairs in the order written, values decoded.
    pub labels: Vec<(String, String)>,
    /// The value as a number (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
    /// The value as written.
    pub raw: String,
}

impl Sample {
    /// The value of a label, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a label, or `""` when the sample lacks it.
    pub fn label_str(&self, key: &str) -> &str {
        self.label(key).unwrap_or("")
    }

    /// The value as an integer; panics unless it is written as one.
    pub fn value_u64(&self) -> u64 {
        self.raw
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {self:?}"))
    }
}

/// Parses exposition text strictly: every sample's family has a TYPE line before it, families
/// are contiguous, label values decode, and no series appears twice.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut typed: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current = String::new();
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().expect("type name").to_owned();
            assert!(
                !finished.contains(&name) && typed.insert(name.clone()),
                "line {}: family {name} twice",
                n + 1
            );
            if !current.is_empty() {
                finished.insert(std::mem::take(&mut current));
            }
            current = name;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample =
            parse_sample(line, true).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        assert!(
            sample.name == current,
            "line {}: sample {} outside its family {current}",
            n + 1,
            sample.name
        );
        let mut key = sample.labels.clone();
        key.sort();
        assert!(
            seen.insert((sample.name.clone(), key)),
            "line {}: duplicate series {line}",
            n + 1
        );
        samples.push(sample);
    }
    samples
}

/// Parses the sample lines of an exposition (comments and blank lines skipped; a timestamp after
/// the value allowed), without checking how families are laid out.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            parse_sample(l, false).unwrap_or_else(|e| panic!("malformed sample line {l:?}: {e}"))
        })
        .collect()
}

fn parse_sample(line: &str, strict: bool) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = line[..name_end].to_owned();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find("=\"").ok_or("no =\"")?;
            let key = rest[..eq].to_owned();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {key:?}"));
            }
            let (value, after) = decode_label_value(&rest[eq + 2..])?;
            labels.push((key, value));
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before value")?;
    let raw = if strict {
        if rest.is_empty() || rest.contains(' ') {
            return Err(format!("bad value {rest:?}"));
        }
        rest
    } else {
        rest.split_whitespace().next().ok_or("no value")?
    };
    let value = raw
        .parse::<f64>()
        .map_err(|_| format!("value {raw:?} is not a number"))?;
    Ok(Sample {
        name,
        labels,
        value,
        raw: raw.to_owned(),
    })
}

/// Decodes up to the closing quote; returns the value and the text after the quote.
fn decode_label_value(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                other => return Err(format!("bad escape {other:?}")),
            },
            '\n' => return Err("raw newline in label value".into()),
            c => out.push(c),
        }
    }
    Err("unterminated label value".into())
}

/// Samples of one metric name.
pub fn named<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

/// The value of the single sample of `name`; panics unless there is exactly one.
pub fn value_of(samples: &[Sample], name: &str) -> f64 {
    let found = named(samples, name);
    assert_eq!(found.len(), 1, "expected one {name} sample, got {found:?}");
    found[0].value
}

/// Pipes `body` into `promtool check metrics`: `None` when promtool is not installed, else
/// whether it exited successfully and what it printed (stdout and stderr).
pub fn promtool_check(body: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("spawn promtool: {e}"),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let owned = body.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(owned.as_bytes()));
    let output = child.wait_with_output().expect("promtool output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to promtool");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), printed))
}

/// Asserts that promtool accepts `body` without a word; `what` names it in the failure. Returns
/// false (the check skipped) when promtool is missing, which `CI=true` turns into a failure.
pub fn assert_promtool_clean(what: &str, body: &str) -> bool {
    match promtool_check(body) {
        Some((ok, printed)) => {
            assert!(
                ok && printed.trim().is_empty(),
                "promtool check metrics on {what}: {printed}"
            );
            true
        }
        None => crate::skip_unless(what, false, "promtool not installed"),
    }
}
