#!/bin/bash
# Runs one fuzz target on one core for a while, growing its corpus in fuzz/corpus/TARGET.
# Usage: fuzz/run.sh TARGET [SECONDS [EXTRA_SEED_DIR...]]   (default 600 s)
# Extra seed directories are read, never written (new inputs go to the corpus).
# Crashes land in fuzz/artifacts/TARGET/; the log in fuzz/artifacts/TARGET/fuzz-0.log.
set -euo pipefail
fuzz=$(cd "$(dirname "$0")" && pwd)
target=$1
seconds=${2:-600}
shift $(($# < 2 ? $# : 2))
malloc_limit=2048
case $target in
    location) max_len=4096 ;;
    # A decoder takes at most the window limit (source::limits, 128 MiB by default)
    # for its first block, and liblzma at most its 1 GiB threading budget after that.
    decoder) max_len=65536 malloc_limit=1100 ;;
    *) max_len=65536 ;;
esac
mkdir -p "$fuzz/artifacts/$target"
cd "$fuzz/artifacts/$target"
cargo +nightly fuzz run --fuzz-dir "$fuzz" "$target" "$fuzz/corpus/$target" "$@" -- \
    -jobs=1 -workers=1 -max_total_time="$seconds" -max_len="$max_len" \
    -rss_limit_mb=2048 -malloc_limit_mb="$malloc_limit" -timeout=10 -print_final_stats=1
