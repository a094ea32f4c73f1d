//! Shared helpers for the integration tests: locating the shared corpus and comparing models.
#![allow(dead_code)]

use std::path::PathBuf;

use nfscope_ruleset::{Ruleset, Table};

/// The shared corpus: `$NFSCOPE_CORPUS`, else `../../../shared/corpus` from this crate.
pub fn corpus_dir() -> PathBuf {
    match std::env::var_os("NFSCOPE_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    }
}

/// Files in the corpus directory (not `fragments/`) with this extension, sorted. Panics with a
/// clear message when the corpus is missing, so the tests cannot pass vacuously.
pub fn corpus_files(ext: &str) -> Vec<(String, String)> {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "corpus not found at {} ({e}); set NFSCOPE_CORPUS",
            dir.display()
        )
    });
    let mut files: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            (name, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} files in {}", dir.display());
    files
}

/// The ruleset with every `line` field zeroed and notices dropped, for round-trip comparison.
pub fn without_lines(mut rs: Ruleset) -> Ruleset {
    rs.notices.clear();
    for t in &mut rs.tables {
        zero_table(t);
    }
    rs
}

fn zero_table(t: &mut Table) {
    t.line = 0;
    for c in &mut t.chains {
        c.line = 0;
        for r in &mut c.rules {
            r.line = 0;
        }
    }
}
