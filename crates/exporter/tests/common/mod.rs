//! Shared test helpers: the corpus, promtool, and a tiny exposition parser that decodes label
//! values so tests can compare them with the originals.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nfscope_ruleset::{Ruleset, Snapshot, SourceKind, SourceReport};

/// `/work/shared/corpus` (or `$NFSCOPE_CORPUS`).
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("NFSCOPE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/corpus"
            ))
        })
}

/// Every complete ruleset of the corpus (`*.rules` at top level; `fragments/` skipped), sorted.
pub fn corpus_rules() -> Vec<(String, String)> {
    let dir = corpus_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the corpus at {}, found {} files",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("read corpus file");
            (name, text)
        })
        .collect()
}

pub fn corpus_file(name: &str) -> String {
    std::fs::read_to_string(corpus_dir().join(name)).expect("read corpus file")
}

/// Parses a dump (lenient, family from the file name) or panics with the error.
pub fn parse(name: &str, text: &str) -> Ruleset {
    let family = name
        .contains(".ip6.")
        .then_some(nfscope_ruleset::Family::Ipv6);
    let opts = nfscope_ruleset::ParseOptions {
        lenient: true,
        family,
        ..Default::default()
    };
    nfscope_ruleset::parse_ruleset(text, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A snapshot of one ruleset with a successful synthetic rules source.
pub fn snapshot_of(ruleset: Ruleset) -> Snapshot {
    let kind = SourceKind::Rules {
        family: ruleset.family,
        backend: ruleset.backend,
    };
    Snapshot {
        rulesets: vec![ruleset],
        ipsets: Vec::new(),
        conntrack: None,
        sources: vec![SourceReport {
            kind,
            method: "test".into(),
            error: None,
            duration_seconds: 0.0125,
        }],
        ..Snapshot::default()
    }
}

/// Gives every rule and declared chain counters derived from its position, so that rulesets
/// from dumps without `-c` still exercise the rule series.
pub fn add_counters(ruleset: &mut Ruleset) {
    let mut n = 0u64;
    for table in &mut ruleset.tables {
        for chain in &mut table.chains {
            for rule in &mut chain.rules {
                n += 1;
                rule.counters = Some(nfscope_ruleset::Counters {
                    packets: n,
                    bytes: n * 60,
                });
            }
        }
    }
}

pub enum Promtool {
    Clean,
    Problems(String),
    Missing,
}

/// Pipes `exposition` into `promtool check metrics`.
pub fn promtool_check(exposition: &str) -> Promtool {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Promtool::Missing,
        Err(e) => panic!("spawn promtool: {e}"),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let body = exposition.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
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
    if output.status.success() && printed.trim().is_empty() {
        Promtool::Clean
    } else {
        Promtool::Problems(format!("exit {:?}: {printed}", output.status.code()))
    }
}

/// Skips (returns false) when promtool is missing, unless `CI=true`.
pub fn assert_promtool_clean(what: &str, exposition: &str) -> bool {
    match promtool_check(exposition) {
        Promtool::Clean => true,
        Promtool::Problems(p) => panic!("promtool check metrics on {what}: {p}"),
        Promtool::Missing => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool missing and CI=true"
            );
            eprintln!("skipping: promtool not installed");
            false
        }
    }
}

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: String,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn value_u64(&self) -> u64 {
        self.value
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {self:?}"))
    }
}

/// Parses exposition text strictly: every sample's family has HELP and TYPE before it, families
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
        let sample = parse_sample(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
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

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = line[..name_end].to_owned();
    if !name
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
    let value = rest
        .strip_prefix(' ')
        .ok_or("no space before value")?
        .to_owned();
    if value.is_empty() || value.contains(' ') {
        return Err(format!("bad value {value:?}"));
    }
    Ok(Sample {
        name,
        labels,
        value,
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

pub fn samples_named<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}
