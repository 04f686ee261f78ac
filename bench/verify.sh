#!/usr/bin/env bash
# bench/verify.sh - how fast is `bmaptool verify` of a flashed device, against the
# physical limit measured in the same run: reading the mapped bytes with O_DIRECT, and
# hashing them on the two cores the check uses?
#
# What it measures
#   The image: the realistic disk image of bench/create.sh (bench/lib.sh builds it):
#   a sparse file of IMAGE_SIZE, DOS label, one ext4 partition holding FILL_MIB MiB of
#   files copied from /usr; its bmap is made by our `bmaptool create`. MAPPED is a file
#   holding exactly the image's mapped bytes (for the hash limit).
#   The target: a loop device over an IMAGE_SIZE file in the scratch directory
#   (buffered loop, no partition scan), flashed once with our `bmaptool copy`.
#   Commands (hyperfine, --prepare 'sync'):
#     ours        bmaptool verify -q --bmap BMAP LOOP
#                 (O_DIRECT reads of the mapped ranges, hashed on both cores)
#     raw-read    a small Python script: O_DIRECT reads of exactly the mapped ranges
#                 of LOOP, in 1 MiB reads at queue depth one into one aligned buffer,
#                 hashing nothing (limit 1: reading the mapped bytes past the cache)
#     sha256      openssl dgst -sha256 MAPPED (MAPPED warm in the page cache)
#                 (limit 2: hashing the mapped bytes on one core; the check hashes
#                 different ranges on two cores, hence sha256 / 2)
#     copy-null   bmaptool copy --bmap BMAP LOOP /dev/null: the old way of checking a
#                 card (buffered reads through the device's page cache; context only)
#   Page cache: O_DIRECT reads of the loop device bypass its own cache; the loop
#   device reads its backing file through the backing file's cache, which stays warm
#   after the copy (as it does for raw-read, so the comparison is fair). DROP_CACHES=1
#   drops all caches before every run instead (then the scratch disk's read speed is
#   in every read command, the limit included).
#   Correctness, outside the timings: `verify --json` of the flashed device must say
#   "good" with every range good; after one byte of a mapped range is changed through
#   the device it must exit 1 naming that range (then the byte is put back).
#   Summary: medians, spread (max / min over the rounds) and user/system time per
#   command;
#     limit = max(raw-read, sha256 / 2)
#     ours / limit <= 1.15 (issue 12); copy-null / ours for context.
#
# How to run (needs root for losetup, mount, mknod; a few minutes at the defaults):
#   sudo bench/verify.sh
#   sudo RUNS=9 BENCH_DIR=/mnt/scratch bench/verify.sh 2>&1 | tee verify.log
#   smoke test: sudo IMAGE_SIZE=512M FILL_MIB=128 RUNS=2 bench/verify.sh
#
# Needs: cargo, hyperfine, openssl, python3, sfdisk, partx, losetup, mkfs.ext4, dd,
# /usr/bin/time (installed with apt-get when missing).
#
# Environment knobs
#   RUNS=5            timed runs per command (after a warm-up run of each, discarded)
#   ALTERNATE=1       1: RUNS rotated rounds of all commands; 0: back to back
#   BENCH_DIR=        scratch directory (default: mktemp -d under /var/tmp); needs
#                     ~2 x IMAGE_SIZE free on a file system with sparse files and FIEMAP
#   KEEP_BENCH_DIR=0  1 keeps the scratch files; REUSE_IMAGE=1 reuses an image a kept
#                     run left (see bench/lib.sh)
#   IMAGE_SIZE=4G     size of the disk image (truncate syntax)
#   FILL_MIB=1024     how much file data (MiB, apparent size) to copy in
#   DROP_CACHES=0     1: echo 3 > /proc/sys/vm/drop_caches before every run
#   LOOP_DIO=0        1: the loop device does direct I/O on its backing file, so its
#                     reads reach the scratch disk as a real device's would (DMA, no
#                     copy by a CPU). 0 (buffered): the loop worker copies from the
#                     backing file's page cache on a core the hashers also need, so on
#                     a 2-core machine the check is CPU-bound and the limit, which
#                     counts that copy only in raw-read's wall time, is optimistic
#   STRICT=0          1 makes the script exit 1 when the target is missed
#   A failed correctness check always makes the script exit 1 (after the summary).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-5}
IMAGE_SIZE=${IMAGE_SIZE:-4G}
FILL_MIB=${FILL_MIB:-1024}
DROP_CACHES=${DROP_CACHES:-0}
STRICT=${STRICT:-0}

bench_require_root
bench_require_tools cargo hyperfine openssl python3 sfdisk partx losetup mkfs.ext4 \
    mount umount dd
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number: $RUNS"

bench_scratch_init
IMG=$DIR/disk.img
BMAP=$DIR/disk.img.bmap
MAPPED=$DIR/mapped.bin
BACKING=$DIR/verify-backing.img
RAWREAD=$DIR/rawread.py
bench_track_file "$DIR"/verify.{good,bad}.json

bench_build_release
bench_image "$IMG" "$BMAP" "$IMAGE_SIZE" "$FILL_MIB"
IMAGE_BYTES=$(stat -c %s "$IMG")
read -r NRANGES MAPPED_BYTES BIGGEST_BYTES BIGGEST_RANGE < <(bmap_stats "$BMAP")
say "image: $IMAGE_BYTES bytes, $NRANGES ranges, mapped $MAPPED_BYTES bytes ($(mib "$MAPPED_BYTES") MiB), largest range $BIGGEST_RANGE = $(mib "$BIGGEST_BYTES") MiB"
extract_mapped "$BMAP" "$IMG" "$MAPPED"
[[ $(stat -c %s "$MAPPED") -eq $MAPPED_BYTES ]] || die "$MAPPED has the wrong size"

# ----------------------------------------------------------- the flashed device
say "making the loop target over a $IMAGE_BYTES-byte file and flashing it"
bench_loop_device LOOP "$BACKING" "$IMAGE_BYTES" "${LOOP_DIO:-0}"
"$OURS" copy -q --bmap "$BMAP" "$IMG" "$LOOP"
sync

# The raw read limit: O_DIRECT reads of the mapped ranges (bench/lib.sh).
bench_rawread_script "$RAWREAD"

# ------------------------------------------------------------------ correctness
declare -A CHECK
"$OURS" verify -q --json --bmap "$BMAP" "$LOOP" > "$DIR/verify.good.json" \
    && python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(d["result"] != "good" or d["ranges_good"] != d["ranges_total"])' "$DIR/verify.good.json" \
    && CHECK[good]=ok || CHECK[good]=FAILED
say "verify of the flashed device: ${CHECK[good]}"
# One byte in the middle of the largest range, changed through the device.
POKE=$(( ${BIGGEST_RANGE%-*} * 4096 + BIGGEST_BYTES / 2 ))
OLD=$(dd if="$LOOP" bs=1 skip="$POKE" count=1 status=none | od -An -tu1 | tr -d ' ')
poke() { # VALUE: writes byte VALUE at POKE through the device
    printf "\\x$(printf %02x "$1")" | dd of="$LOOP" bs=1 seek="$POKE" count=1 conv=notrunc,fsync status=none
}
poke $((OLD ^ 255))
rc=0
"$OURS" verify -q --json --bmap "$BMAP" "$LOOP" > "$DIR/verify.bad.json" || rc=$?
if ((rc == 1)) && python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); r = d["bad_ranges"]; sys.exit(not (len(r) == 1 and r[0]["start"] <= int(sys.argv[2]) < r[0]["end"]))' "$DIR/verify.bad.json" "$POKE"; then
    CHECK[bad]=ok
else
    CHECK[bad]="FAILED (exit $rc)"
fi
say "verify after changing byte $POKE: ${CHECK[bad]}"
poke "$OLD"
"$OURS" verify -q --bmap "$BMAP" "$LOOP" || die "the device does not verify after the byte was put back"

# --------------------------------------------------------------------- timings
O=$(q "$OURS") B=$(q "$BMAP") L=$(q "$LOOP") M=$(q "$MAPPED")
PREPARE=sync
[[ $DROP_CACHES == 1 ]] && PREPARE="sync; echo 3 > /proc/sys/vm/drop_caches"
bench_run_rounds verify "$PREPARE" \
    ours "$O verify -q --bmap $B $L" \
    raw-read "python3 $(q "$RAWREAD") $B $L" \
    sha256 "openssl dgst -sha256 $M" \
    copy-null "$O copy -q --bmap $B $L /dev/null"

# ---------------------------------------------------------------------- summary
set +e
python3 - "$DIR/verify.json" <<EOF
import json, sys
med = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
check = {$(for k in "${!CHECK[@]}"; do printf '"%s": "%s", ' "$k" "${CHECK[$k]}"; done)}
print()
print("=== bmaptool verify benchmark: summary ===")
print(f"image: $IMAGE_SIZE ($IMAGE_BYTES bytes), ext4, $NRANGES ranges, mapped "
      f"{$MAPPED_BYTES / 2**20:.1f} MiB, largest range $BIGGEST_RANGE")
print(f"target: $LOOP (over $BACKING); runs per command: $RUNS; drop caches: $DROP_CACHES")
print(f"{'command':<12}{'median s':>10}{'min':>9}{'max':>9}{'spread':>8}{'user':>8}{'sys':>8}")
for name in ("ours", "raw-read", "sha256", "copy-null"):
    if name not in med:
        print(f"{name:<12}  FAILED (see $DIR/verify.{name}.err)")
        continue
    r = med[name]
    print(f"{name:<12}{r['median']:>10.3f}{r['min']:>9.3f}{r['max']:>9.3f}"
          f"{r['max'] / r['min']:>8.2f}{r['user']:>8.2f}{r['system']:>8.2f}")
m = {k: r["median"] for k, r in med.items()}
missed = True
if all(k in m for k in ("ours", "raw-read", "sha256")):
    limit = max(m["raw-read"], m["sha256"] / 2)
    which = "raw-read" if m["raw-read"] >= m["sha256"] / 2 else "sha256/2"
    mb_s = lambda t: $MAPPED_BYTES / 2**20 / t
    print(f"limit = max(raw-read, sha256/2) = {limit:.3f} s ({which}); O_DIRECT read "
          f"{mb_s(m['raw-read']):.0f} MiB/s, sha256 {mb_s(m['sha256']):.0f} MiB/s on one core")
    ratio = m["ours"] / limit
    missed = not ratio <= 1.15
    print(f"{'ours / limit':<30}{ratio:>9.3f}  <= 1.15  {'ok' if not missed else 'MISSED'}")
    if "copy-null" in m:
        print(f"{'copy-null / ours':<30}{m['copy-null'] / m['ours']:>9.3f}  (context)")
for key in ("good", "bad"):
    print(f"{'correctness: ' + key:<30}  {check.get(key, 'not run')}")
bad = any(check.get(k) != "ok" for k in ("good", "bad"))
sys.exit(4 if bad else 3 if missed else 0)
EOF
summary_rc=$?
set -e
case $summary_rc in
    0) ;;
    3) [[ $STRICT == 1 ]] && exit 1 ;;
    4) die "a correctness check failed" ;;
    *) die "summary failed" ;;
esac
exit 0
