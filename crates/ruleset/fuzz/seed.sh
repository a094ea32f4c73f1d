#!/bin/sh
# Seed the fuzz corpora from the repository's test corpus and the ipset fixtures.
# Usage: crates/ruleset/fuzz/seed.sh [CORPUS_DIR]   (default: testdata/corpus at the repository root)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-$here/../../../testdata/corpus}
mkdir -p "$here/corpus/parse_ruleset" "$here/corpus/parse_ipsets"
cp "$src"/*.rules "$src"/fragments/*.rules "$here/corpus/parse_ruleset/"
cp "$src"/*.ipset "$here"/../tests/fixtures/ipset-*.txt "$here/corpus/parse_ipsets/"
