//! The streamed exposition is the one-string exposition, byte for byte, cut at line ends; its rule
//! series equal a naive reference encoding built here from the ruleset alone; and a sink that
//! refuses a chunk stops the encoder.

mod common;

use common::{add_counters, parse, snapshot_of};
use nfscope_exporter::{
    ExportOptions, RuleLabel, RuleLabels, SelfMetrics, SinkClosed, Snapshot,
    encode_metrics_streaming, encode_metrics_with_labels, rule_ids,
};
use nfscope_ruleset::Ruleset;
use nfscope_test_support::corpus_rules;

fn self_metrics() -> SelfMetrics {
    SelfMetrics {
        version: "0.1.0-test".into(),
        scrapes_total: 3,
        ..SelfMetrics::default()
    }
}

fn corpus_snapshots() -> Vec<(String, Snapshot)> {
    corpus_rules()
        .into_iter()
        .flat_map(|(name, text)| {
            let dumped = parse(&name, &text);
            let mut counted = dumped.clone();
            add_counters(&mut counted);
            [
                (name.clone(), snapshot_of(dumped)),
                (format!("{name} (counters)"), snapshot_of(counted)),
            ]
        })
        .collect()
}

/// Streams with chunks of `chunk_bytes`; returns the chunks and the tail.
fn stream(snapshot: &Snapshot, opts: &ExportOptions, chunk_bytes: usize) -> (Vec<String>, String) {
    let annotations: Vec<_> = snapshot
        .rulesets
        .iter()
        .map(nfscope_annotate::annotate)
        .collect();
    let mut chunks = Vec::new();
    let mut sink = |chunk: String| {
        chunks.push(chunk);
        Ok(())
    };
    let streamed = encode_metrics_streaming(
        snapshot,
        &annotations,
        &[],
        &self_metrics(),
        opts,
        chunk_bytes,
        &mut sink,
    )
    .expect("a collecting sink never closes");
    (chunks, streamed.tail)
}

fn whole(snapshot: &Snapshot, opts: &ExportOptions) -> String {
    let annotations: Vec<_> = snapshot
        .rulesets
        .iter()
        .map(nfscope_annotate::annotate)
        .collect();
    encode_metrics_with_labels(snapshot, &annotations, &[], &self_metrics(), opts).body
}

fn option_sets() -> Vec<ExportOptions> {
    vec![
        ExportOptions::default(),
        ExportOptions {
            rule_label: RuleLabel::None,
            ..ExportOptions::default()
        },
        ExportOptions {
            max_rule_series: 3,
            ..ExportOptions::default()
        },
    ]
}

#[test]
fn streamed_chunks_and_tail_are_the_whole_body_cut_at_line_ends() {
    let mut multi_chunk = 0;
    for (name, snapshot) in corpus_snapshots() {
        for opts in option_sets() {
            let expected = whole(&snapshot, &opts);
            for chunk_bytes in [1, 700, 64 * 1024] {
                let (chunks, tail) = stream(&snapshot, &opts, chunk_bytes);
                let joined = chunks.concat() + &tail;
                assert!(
                    joined == expected,
                    "{name} {opts:?} chunk {chunk_bytes}: streamed body differs"
                );
                for chunk in &chunks {
                    assert!(
                        !chunk.is_empty() && chunk.ends_with('\n'),
                        "{name}: chunk not cut at a line end"
                    );
                    assert!(
                        before_last_sample(chunk) < chunk_bytes,
                        "{name}: chunk of {} bytes kept growing past {chunk_bytes}",
                        chunk.len()
                    );
                }
                if chunk_bytes == 1 {
                    let lines = chunks.iter().map(|c| c.lines().count()).max();
                    assert!(lines <= Some(3), "chunk 1: a chunk per sample (+ header)");
                }
                multi_chunk += usize::from(chunks.len() > 1);
            }
        }
    }
    assert!(
        multi_chunk > 20,
        "too few multi-chunk encodings: {multi_chunk}"
    );
}

/// Bytes of `chunk` before its last sample line and the header lines right before it (a chunk
/// is sent after the first sample that takes it to the chunk size).
fn before_last_sample(chunk: &str) -> usize {
    let mut end = chunk.len() - 1; // the final line end
    end = chunk[..end].rfind('\n').map_or(0, |i| i + 1);
    while end > 0 {
        let start = chunk[..end - 1].rfind('\n').map_or(0, |i| i + 1);
        if !chunk[start..].starts_with('#') {
            break;
        }
        end = start;
    }
    end
}

/// The rule families as an independent, naive encoder writes them.
fn reference_rule_lines(ruleset: &Ruleset, full: bool) -> Vec<String> {
    fn esc(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }
    let ids = rule_ids(ruleset);
    let mut lines = Vec::new();
    for (metric, packets) in [
        ("iptables_rule_packets_total", true),
        ("iptables_rule_bytes_total", false),
    ] {
        for (t, table) in ruleset.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                for (r0, rule) in chain.rules.iter().enumerate() {
                    let Some(k) = rule.counters else { continue };
                    let text = nfscope_ruleset::render_rule_spec(&rule.spec);
                    let comment = rule.spec.comments().collect::<Vec<_>>().join("; ");
                    let rule_label = if full {
                        format!("rule=\"{}\",", esc(&text))
                    } else {
                        String::new()
                    };
                    lines.push(format!(
                        "{metric}{{family=\"{}\",backend=\"{}\",table=\"{}\",chain=\"{}\",{rule_label}rule_id=\"{}\",comment=\"{}\"}} {}",
                        ruleset.family.as_str(),
                        ruleset.backend.as_str(),
                        esc(&table.name),
                        esc(&chain.name),
                        ids.get(t, c, r0),
                        esc(&comment),
                        if packets { k.packets } else { k.bytes },
                    ));
                }
            }
        }
    }
    lines
}

#[test]
fn rule_series_equal_a_naive_reference_encoding() {
    let mut escaped = 0;
    for (name, snapshot) in corpus_snapshots() {
        for (rule_label, full) in [(RuleLabel::Full, true), (RuleLabel::None, false)] {
            let opts = ExportOptions {
                rule_label,
                ..ExportOptions::default()
            };
            let (chunks, _) = stream(&snapshot, &opts, 4096);
            let body = chunks.concat();
            let got: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("iptables_rule_"))
                .collect();
            let want = reference_rule_lines(&snapshot.rulesets[0], full);
            assert_eq!(got, want, "{name} {rule_label:?}");
            escaped += got.iter().filter(|l| l.contains("\\\"")).count();
        }
    }
    assert!(
        escaped > 100,
        "the corpus should exercise escaping: {escaped}"
    );
}

#[test]
fn label_accessors_give_the_decoded_text() {
    for (name, snapshot) in corpus_snapshots() {
        let ruleset = &snapshot.rulesets[0];
        let labels = RuleLabels::new(ruleset);
        for (t, table) in ruleset.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                for (r0, rule) in chain.rules.iter().enumerate() {
                    assert_eq!(
                        labels.rule_text(t, c, r0),
                        nfscope_ruleset::render_rule_spec(&rule.spec),
                        "{name}"
                    );
                    let comment = rule.spec.comments().collect::<Vec<_>>().join("; ");
                    assert_eq!(labels.comment(t, c, r0), comment, "{name}");
                }
            }
        }
    }
}

#[test]
fn a_refusing_sink_stops_the_encoder() {
    let (_, snapshot) = corpus_snapshots()
        .into_iter()
        .max_by_key(|(_, s)| s.rulesets[0].rule_count())
        .expect("corpus");
    let mut offered = 0;
    let mut sink = |_chunk: String| {
        offered += 1;
        if offered <= 2 {
            Ok(())
        } else {
            Err(SinkClosed)
        }
    };
    let result = encode_metrics_streaming(
        &snapshot,
        &[],
        &[],
        &self_metrics(),
        &ExportOptions::default(),
        64,
        &mut sink,
    );
    assert_eq!(result, Err(SinkClosed));
    assert_eq!(offered, 3, "no chunk is offered after the sink refused one");
}
