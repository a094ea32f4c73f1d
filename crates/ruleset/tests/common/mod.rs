//! Helpers for this crate's integration tests: the corpus (from the workspace's test support)
//! and comparing models.
#![allow(dead_code)]

use nfscope_ruleset::{Ruleset, Table};

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

/// The repository's native nftables corpus folder (`testdata/corpus/nft`).
pub fn nft_corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/nft")
}

/// Files of the nft corpus whose name ends with `suffix` (e.g. `.nft`, `.json`), sorted, as
/// (name, text). Panics when there are none, so the tests cannot pass vacuously.
pub fn nft_corpus_files(suffix: &str) -> Vec<(String, String)> {
    let dir = nft_corpus_dir();
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("nft corpus not found at {} ({e})", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *{suffix} files in {}", dir.display());
    files
}
