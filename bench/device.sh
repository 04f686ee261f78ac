#!/usr/bin/env bash
# bench/device.sh - what does `bmaptool copy --skip-unchanged` cost or save when the
# device already holds the image (reflashing the same board), against a full copy?
#
# What it measures
#   The image: the realistic disk image of bench/lib.sh (a sparse file with a DOS
#   label and one ext4 partition filled with files from /usr), its bmap made by our
#   `bmaptool create`; reused from an earlier run with KEEP_BENCH_DIR=1 (bench_image).
#   The device: a loop device over an IMAGE_SIZE file in the scratch directory, with
#   direct I/O on its backing file (LOOP_DIO=1: its reads and writes reach the scratch
#   disk instead of the page cache, as a card's would reach the card). It is written
#   with the image once before the timings; every timed command leaves it holding the
#   image, so every run of skip starts from an unchanged device.
#   Commands (hyperfine, --prepare 'sync'):
#     full        bmaptool copy --bmap BMAP IMAGE LOOP   (fail-safe order, the default)
#     skip        bmaptool copy --skip-unchanged --bmap BMAP IMAGE LOOP
#     full-plain  bmaptool copy --no-fail-safe --bmap BMAP IMAGE LOOP (context: the
#                 cost of the fail-safe order: the wipe, the flush, the held parts)
#     raw-read    dd if=LOOP of=/dev/null bs=1M iflag=direct count=MAPPED_MIB (the
#                 limit of skip on an unchanged device: reading the mapped bytes)
#   Alternated rounds (ALTERNATE=1, as bench/copy.sh): RUNS rounds of every command
#   once, the order rotated each round, after a discarded warm-up.
#   Then, outside the timings: one skip run with the device's write counter
#   (/sys/block/loopN/stat, sectors written) read before and after: it must not move;
#   and the device must still equal the image (cmp over the image's size).
#   Summary: median and spread (max / min) of each command, skip / full, skip /
#   raw-read.
#
# How to run (needs root for losetup, mount; a few minutes with the defaults):
#   sudo bench/device.sh
#   sudo RUNS=9 BENCH_DIR=/mnt/scratch KEEP_BENCH_DIR=1 bench/device.sh 2>&1 | tee device.log
#
# Needs: cargo, hyperfine, python3, sfdisk, partx, losetup, mkfs.ext4, cmp, dd,
# /usr/bin/time (installed with apt-get when missing).
#
# Environment knobs
#   RUNS=5            timed rounds (after one warm-up round)
#   ALTERNATE=1       1: rotated rounds; 0: each command's runs back to back
#   IMAGE_SIZE=2G     size of the disk image (truncate syntax)
#   FILL_MIB=512      file data copied into it (MiB)
#   LOOP_DIO=1        0: a buffered loop device (its reads come from the page cache)
#   BENCH_DIR=, KEEP_BENCH_DIR=0, REUSE_IMAGE=1   as in bench/lib.sh
#   A failed check (writes during skip, device differs) makes the script exit 1.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-5}
ALTERNATE=${ALTERNATE:-1}
IMAGE_SIZE=${IMAGE_SIZE:-2G}
FILL_MIB=${FILL_MIB:-512}
LOOP_DIO=${LOOP_DIO:-1}

bench_require_root
bench_require_tools cargo hyperfine python3 sfdisk partx losetup mkfs.ext4 mount umount \
    cmp dd
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number: $RUNS"

bench_scratch_init
IMG=$DIR/disk.img
BMAP=$DIR/disk.img.bmap
BACKING=$DIR/device-backing.img

bench_build_release
bench_image "$IMG" "$BMAP" "$IMAGE_SIZE" "$FILL_MIB"
IMAGE_BYTES=$(stat -c %s "$IMG")
read -r NRANGES MAPPED_BYTES _ _ < <(bmap_stats "$BMAP")
MAPPED_MIB=$(((MAPPED_BYTES + 1048575) / 1048576))
say "image: $IMAGE_BYTES bytes, $NRANGES ranges, mapped $(mib "$MAPPED_BYTES") MiB"

bench_loop_device LOOP "$BACKING" "$IMAGE_BYTES" "$LOOP_DIO"
say "device: $LOOP (direct I/O on the backing file: $(cat "/sys/block/$(basename "$LOOP")/loop/dio" 2>/dev/null || echo '?'))"
"$OURS" copy -q --bmap "$BMAP" "$IMG" "$LOOP"

sectors_written() { awk '{ print $7 }' "/sys/block/$(basename "$LOOP")/stat"; }

bench_run_rounds device sync \
    full "$(q "$OURS") copy -q --bmap $(q "$BMAP") $(q "$IMG") $(q "$LOOP")" \
    skip "$(q "$OURS") copy -q --skip-unchanged --bmap $(q "$BMAP") $(q "$IMG") $(q "$LOOP")" \
    full-plain "$(q "$OURS") copy -q --no-fail-safe --bmap $(q "$BMAP") $(q "$IMG") $(q "$LOOP")" \
    raw-read "dd if=$(q "$LOOP") of=/dev/null bs=1M iflag=direct count=$MAPPED_MIB status=none"

# ------------------------------------------------------------------------ checks
FAILED=0
before=$(sectors_written)
"$OURS" copy --skip-unchanged --bmap "$BMAP" "$IMG" "$LOOP" 2> "$DIR/skip.log"
bench_track_file "$DIR/skip.log"
after=$(sectors_written)
SKIP_LINE=$(grep 'skip-unchanged:' "$DIR/skip.log" || true)
if [[ $after -ne $before ]]; then
    say "CHECK FAILED: skip on an unchanged device wrote $(((after - before) * 512)) bytes"
    FAILED=1
fi
if ! cmp -n "$IMAGE_BYTES" "$IMG" "$LOOP" >&2; then
    say "CHECK FAILED: the device differs from the image"
    FAILED=1
fi

# ----------------------------------------------------------------------- summary
python3 - "$DIR/device.json" "$(bench_load_summary device)" "$SKIP_LINE" \
    "$((after - before))" <<'EOF'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print(f"\n{'command':<12} {'median s':>9} {'spread':>7}  runs")
for name, r in results.items():
    print(f"{name:<12} {r['median']:>9.3f} {r['max'] / r['min']:>6.2f}x  {len(r['times'])}")
def ratio(a, b):
    if a in results and b in results:
        print(f"{a} / {b}: {results[a]['median'] / results[b]['median']:.2f}")
print()
ratio("skip", "full")
ratio("skip", "raw-read")
ratio("full", "full-plain")
print(f"sectors written by one skip run on the unchanged device: {sys.argv[4]}")
print(sys.argv[3])
print(sys.argv[2])
EOF
exit "$FAILED"
