//! The test corpus: real `iptables-save`/`ipset save` dumps committed under `testdata/corpus/` at
//! the repository root, with their origin and licence in `testdata/corpus/SOURCES.md`.
//!
//! Found relative to this crate's `CARGO_MANIFEST_DIR`, so a fresh clone has everything its
//! tests read. Every reader panics with the path when a file is missing, so no test can pass
//! vacuously on an empty corpus.

use std::path::{Path, PathBuf};

/// `testdata/corpus/` of this repository.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus")
}

/// The path of one corpus file (`name` may be `fragments/…`).
pub fn corpus_path(name: &str) -> PathBuf {
    corpus_dir().join(name)
}

/// The text of one corpus file (`name` may be `fragments/…`).
pub fn corpus_file(name: &str) -> String {
    let path = corpus_path(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read corpus file {}: {e}", path.display()))
}

/// `(file name, text)` of every top-level corpus file (not `fragments/`) with this extension,
/// sorted by name. Panics when there is none.
pub fn corpus_files(ext: &str) -> Vec<(String, String)> {
    let ext_matches = |p: &Path| p.extension().is_some_and(|x| x == ext);
    files_in(&corpus_dir(), ext_matches, &format!("*.{ext}"))
}

/// `(file name, text)` of the files directly in `dir` that `keep` accepts, sorted by name.
/// Panics when the folder cannot be read or nothing is kept (`what` names the pattern).
fn files_in(dir: &Path, keep: impl Fn(&Path) -> bool, what: &str) -> Vec<(String, String)> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus not found at {} ({e})", dir.display()));
    let mut files: Vec<(String, String)> = entries
        .map(|e| e.expect("corpus dir entry").path())
        .filter(|p| p.is_file() && keep(p))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("read corpus file {}: {e}", p.display()));
            (name, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {what} files in {}", dir.display());
    files
}

/// Every complete ruleset of the corpus (`*.rules` at top level; `fragments/` skipped), sorted.
/// Panics unless at least 20 are there.
pub fn corpus_rules() -> Vec<(String, String)> {
    let files = corpus_files("rules");
    assert!(
        files.len() >= 20,
        "expected the corpus at {}, found {} rulesets",
        corpus_dir().display(),
        files.len()
    );
    files
}

/// `testdata/corpus/nft/`: native nftables listings (`*.nft`), their `nft -j` JSON (`*.json`) and
/// the commands some were loaded from, with their origin in the folder's `SOURCES*.md`.
pub fn nft_corpus_dir() -> PathBuf {
    corpus_dir().join("nft")
}

/// `(file name, text)` of every file in `testdata/corpus/nft/` whose name ends with `suffix`
/// (`.nft`, `.json`), sorted by name. Panics when there is none.
pub fn nft_corpus_files(suffix: &str) -> Vec<(String, String)> {
    let ends_with = |p: &Path| p.to_string_lossy().ends_with(suffix);
    files_in(&nft_corpus_dir(), ends_with, &format!("*{suffix}"))
}
