//! Low-level writer for the Prometheus text exposition format 0.0.4.
//!
//! Owns the byte-exact details of the format: `# HELP` / `# TYPE` headers, label-value escaping
//! (`\` → `\\`, `"` → `\"`, newline → `\n`), HELP escaping (`\` and newline), and number formatting
//! (`+Inf`, `-Inf`, `NaN`). It knows nothing about netfilter: the metric schema lives in
//! [`crate::metrics`].

use std::fmt::Write as _;

/// The metric type written after `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// A sample value: integers are written exactly, floats in Prometheus spelling.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value {
    Int(u64),
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

/// Appends exposition text to one growing `String`.
///
/// A family is opened with [`Exposition::family`]; its header is removed again by
/// [`Exposition::end_family`] when no sample followed, so empty families leave no trace.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
    family_start: usize,
    header_end: usize,
}

impl Exposition {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
            family_start: 0,
            header_end: 0,
        }
    }

    /// Continues writing after `out` (which already holds whole families).
    pub(crate) fn appending_to(out: String) -> Self {
        let end = out.len();
        Self {
            out,
            family_start: end,
            header_end: end,
        }
    }

    /// Starts a metric family: writes `# HELP` and `# TYPE`.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
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

    /// Ends the current family, dropping its header when it has no samples.
    pub(crate) fn end_family(&mut self) {
        if self.out.len() == self.header_end {
            self.out.truncate(self.family_start);
        }
    }

    /// Writes one sample line. Label names must be valid (they are fixed by the schema);
    /// label values are escaped.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
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
    }

    pub(crate) fn into_string(self) -> String {
        self.out
    }
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, line feed → `\n`. Everything else (including
/// other control characters and any Unicode) is valid UTF-8 and passes through.
pub(crate) fn push_escaped_label_value(out: &mut String, value: &str) {
    push_escaped(out, value, |b| matches!(b, b'\\' | b'"' | b'\n'));
}

/// Escapes HELP text: `\` → `\\`, line feed → `\n` (quotes are legal there).
pub(crate) fn push_escaped_help(out: &mut String, value: &str) {
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
        Value::Int(v) => {
            let _ = write!(out, "{v}");
        }
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
pub(crate) fn sanitize_name(name: &str) -> String {
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
