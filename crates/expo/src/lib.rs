//! The Prometheus text exposition format 0.0.4, and the one interface every part of nfscope
//! writes metrics through ([`MetricFamilies`]).
//!
//! Owns the byte-exact details of the format: `# HELP` / `# TYPE` headers, the one label-value
//! escaping of the workspace ([`push_escaped_label_value`]: `\` → `\\`, `"` → `\"`, newline →
//! `\n`), HELP escaping (`\` and newline), number formatting (`+Inf`, `-Inf`, `NaN`), and cutting
//! the text into line-aligned chunks for a [`ChunkSink`] when a body is streamed. It knows
//! nothing about netfilter, flows or Kubernetes: the metric schemas live in `nfscope-exporter`,
//! `nfscope-flow`, `nfscope-lint`, `nfscope-kube` and `nfscope-server`, each implementing
//! [`MetricFamilies`]. It does no I/O: the sink decides where chunks go.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt::Write as _;

/// The metric type written after `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram` (samples `_bucket`, `_sum`, `_count` written by the family's owner).
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A sample value: integers are written exactly, floats in Prometheus spelling.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// Written exactly.
    Int(u64),
    /// Written in Prometheus spelling.
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Self::Int(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Int(u64::from(v))
    }
}

/// Why a streaming encoding stopped early: the [`ChunkSink`] would take no more (the client of a
/// streamed response went away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiver of the exposition went away")]
pub struct SinkClosed;

/// Takes the exposition in chunks of whole lines, in order, as a streaming encoding produces them.
pub trait ChunkSink {
    /// Takes one chunk. An error stops the encoding: nothing more is written or sent.
    fn send_chunk(&mut self, chunk: String) -> Result<(), SinkClosed>;
}

impl<F: FnMut(String) -> Result<(), SinkClosed>> ChunkSink for F {
    fn send_chunk(&mut self, chunk: String) -> Result<(), SinkClosed> {
        self(chunk)
    }
}

/// Largest chunk a streaming exposition buffers before sending.
const MAX_CHUNK: usize = 64 << 20;

/// Room left in a chunk buffer beyond its flush size, so a typical last line fits without
/// growing it (longer lines just grow it).
const CHUNK_SLACK: usize = 8 * 1024;

/// Where full chunks go.
struct Stream<'s> {
    sink: &'s mut dyn ChunkSink,
    chunk_bytes: usize,
    closed: bool,
}

/// What a scrape knows that sources of families may describe further: the Kubernetes endpoints
/// (`ip:port`) whose `nfscope_kube_endpoint_new_connections_total` series this body carries,
/// in the order they appear, without duplicates.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrapeFacts<'a> {
    /// The endpoint label values of the endpoint series in this body.
    pub kube_endpoints: &'a [String],
}

/// Anything that contributes whole metric families to a `/metrics` body: the exporter's rule,
/// chain and source families, the flow monitor, lint, the Kubernetes directory and the server's
/// own counters. Families are written through `out`, so every label value is escaped by the one
/// function of this crate.
pub trait MetricFamilies {
    /// Writes this source's families (HELP, TYPE and samples) to `out`.
    fn encode(&self, facts: &ScrapeFacts<'_>, out: &mut Exposition<'_>);
}

/// Appends exposition text to a `String`, optionally handing it to a [`ChunkSink`] in chunks.
///
/// A family is opened with [`Exposition::family`]; its header is removed again by
/// [`Exposition::end_family`] when no sample followed, so empty families leave no trace. A
/// streaming exposition sends its buffer after a sample once it holds `chunk_bytes` (so chunks
/// always end at a line end, and a header is never sent without a sample after it); once the
/// sink refuses a chunk, everything later is discarded and [`Exposition::is_closed`] says so.
#[derive(Default)]
pub struct Exposition<'s> {
    out: String,
    family_start: usize,
    header_end: usize,
    stream: Option<Stream<'s>>,
}

impl<'s> Exposition<'s> {
    /// A non-streaming exposition with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Sends every `chunk_bytes` (at line ends; at most 64 MiB) to `sink`.
    pub fn streaming(sink: &'s mut dyn ChunkSink, chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.clamp(1, MAX_CHUNK);
        Self {
            out: String::with_capacity(chunk_bytes.saturating_add(CHUNK_SLACK)),
            family_start: 0,
            header_end: 0,
            stream: Some(Stream {
                sink,
                chunk_bytes,
                closed: false,
            }),
        }
    }

    /// Continues writing after `out` (which already holds whole families).
    pub fn appending_to(out: String) -> Self {
        let end = out.len();
        Self {
            out,
            family_start: end,
            header_end: end,
            stream: None,
        }
    }

    /// Starts a metric family: writes `# HELP` and `# TYPE`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.family_start = self.out.len();
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        push_escaped_help(&mut self.out, help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
        self.header_end = self.out.len();
    }

    /// Ends the current family, dropping its header when it has no samples. A family that is
    /// not ended keeps its header even without samples.
    pub fn end_family(&mut self) {
        if self.out.len() == self.header_end {
            self.out.truncate(self.family_start);
        }
    }

    /// Writes one sample line. Label names must be valid (they are fixed by the schema);
    /// label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                push_escaped_label_value(&mut self.out, val);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(&mut self.out, value.into());
        self.out.push('\n');
        self.sample_written();
    }

    /// Writes one sample line from pieces that are already valid exposition text (name, `{`,
    /// escaped labels, `} ` — everything before the value), then the value and the line end.
    pub fn raw_sample(&mut self, pieces: &[&str], value: u64) {
        for piece in pieces {
            self.out.push_str(piece);
        }
        push_u64(&mut self.out, value);
        self.out.push('\n');
        self.sample_written();
    }

    /// Sends the buffer when a streaming exposition has a chunk's worth.
    fn sample_written(&mut self) {
        if let Some(stream) = &self.stream
            && self.out.len() >= stream.chunk_bytes
        {
            self.flush();
        }
    }

    /// Sends what is buffered (if anything) to the sink of a streaming exposition.
    pub fn flush(&mut self) {
        let Some(stream) = &mut self.stream else {
            return;
        };
        let capacity = stream.chunk_bytes + CHUNK_SLACK;
        let chunk = std::mem::take(&mut self.out);
        self.family_start = 0;
        self.header_end = 0;
        if stream.closed || chunk.is_empty() {
            return;
        }
        match stream.sink.send_chunk(chunk) {
            Ok(()) => self.out.reserve(capacity),
            Err(SinkClosed) => stream.closed = true,
        }
    }

    /// Did the sink refuse a chunk? Writers of long families check this to stop early.
    pub fn is_closed(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.closed)
    }

    /// The text written (and not sent to a sink).
    pub fn into_string(self) -> String {
        self.out
    }
}

/// Appends the decimal digits of `value`.
pub fn push_u64(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, line feed → `\n`. Everything else (including
/// other control characters and any Unicode) is valid UTF-8 and passes through.
pub fn push_escaped_label_value(out: &mut String, value: &str) {
    if !has_label_special(value.as_bytes()) {
        out.push_str(value); // the common case: names, namespaces, ports
        return;
    }
    push_escaped(out, value, |b| matches!(b, b'\\' | b'"' | b'\n'));
}

/// Does `bytes` hold a `\`, `"` or line feed? Eight bytes at a time.
fn has_label_special(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_byte = |word: u64, b: u8| {
        let x = word ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        if has_byte(word, b'\\') || has_byte(word, b'"') || has_byte(word, b'\n') {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| matches!(b, b'\\' | b'"' | b'\n'))
}

/// Reverses [`push_escaped_label_value`]; borrows when there is nothing to decode.
pub fn unescape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Escapes HELP text: `\` → `\\`, line feed → `\n` (quotes are legal there).
pub fn push_escaped_help(out: &mut String, value: &str) {
    push_escaped(out, value, |b| matches!(b, b'\\' | b'\n'));
}

fn push_escaped(out: &mut String, value: &str, special: impl Fn(u8) -> bool) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !special(b) {
            continue;
        }
        // `b` is ASCII, so `i` and `i + 1` are char boundaries.
        out.push_str(&value[start..i]);
        out.push_str(match b {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        start = i + 1;
    }
    out.push_str(&value[start..]);
}

fn push_value(out: &mut String, value: Value) {
    match value {
        Value::Int(v) => push_u64(out, v),
        Value::Float(v) if v.is_nan() => out.push_str("NaN"),
        Value::Float(v) if v == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(v) if v == f64::NEG_INFINITY => out.push_str("-Inf"),
        Value::Float(v) => {
            let _ = write!(out, "{v}");
        }
    }
}

/// Turns an arbitrary statistic name into a metric-name fragment of `[a-z0-9_]`
/// (upper case folded, anything else → `_`).
pub fn sanitize_name(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(v: &str) -> String {
        let mut s = String::new();
        push_escaped_label_value(&mut s, v);
        s
    }

    #[test]
    fn label_values_escape_backslash_quote_newline_only() {
        assert_eq!(label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(label("x\ny"), "x\\ny");
        assert_eq!(label("tab\there é ☃"), "tab\there é ☃");
    }

    #[test]
    fn unescape_reverses_escape() {
        for v in [r#"a\b"c"#, "x\ny", "plain", "", "\\\\\"\n\"", "tail\\"] {
            assert_eq!(unescape_label_value(&label(v)), v);
        }
        assert!(matches!(unescape_label_value("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn special_bytes_are_found_at_every_position() {
        for len in 0..20 {
            let plain = "a".repeat(len);
            assert!(!has_label_special(plain.as_bytes()));
            for at in 0..len {
                for special in ['\\', '"', '\n'] {
                    let mut s = plain.clone();
                    s.replace_range(at..=at, &special.to_string());
                    assert!(has_label_special(s.as_bytes()), "{s:?}");
                }
            }
        }
        assert!(!has_label_special("é☃\t\r#{}".as_bytes()));
    }

    #[test]
    fn help_keeps_quotes() {
        let mut s = String::new();
        push_escaped_help(&mut s, "say \"hi\" \\ now\n");
        assert_eq!(s, "say \"hi\" \\\\ now\\n");
    }

    #[test]
    fn empty_family_leaves_no_header() {
        let mut e = Exposition::default();
        e.family("a_total", Kind::Counter, "A.");
        e.end_family();
        e.family("b", Kind::Gauge, "B.");
        e.sample("b", &[], 1u64);
        e.end_family();
        assert_eq!(e.into_string(), "# HELP b B.\n# TYPE b gauge\nb 1\n");
    }

    #[test]
    fn special_floats_use_prometheus_spelling() {
        let mut e = Exposition::default();
        e.sample("x", &[("k", "v")], f64::INFINITY);
        e.sample("x", &[], f64::NAN);
        e.sample("x", &[], 0.25f64);
        assert_eq!(e.into_string(), "x{k=\"v\"} +Inf\nx NaN\nx 0.25\n");
    }

    #[test]
    fn sanitize_maps_to_metric_charset() {
        assert_eq!(sanitize_name("Insert-Failed.x"), "insert_failed_x");
    }
}
