#!/bin/sh
# Seed the fuzz corpora from the shared corpus and the ipset fixtures.
# Usage: crates/ruleset/fuzz/seed.sh [CORPUS_DIR]   (default: ../../../shared/corpus from the crate)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-${NFSCOPE_CORPUS:-$here/../../../../shared/corpus}}
mkdir -p "$here/corpus/parse_ruleset" "$here/corpus/parse_ipsets"
cp "$src"/*.rules "$src"/fragments/*.rules "$here/corpus/parse_ruleset/"
cp "$src"/*.ipset "$here"/../tests/fixtures/ipset-*.txt "$here/corpus/parse_ipsets/"
