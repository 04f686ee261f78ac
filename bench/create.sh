#!/usr/bin/env bash
# bench/create.sh - how fast is `bmaptool create`, against the reference tool and
# against the physical limit (one core hashing the mapped bytes with SHA-256)?
#
# What it measures
#   Scenario 1, a realistic disk image: a 4 GiB sparse file with a DOS partition
#   table, one Linux partition from 1 MiB, ext4 on it, filled with about 1 GiB of
#   files copied from /usr. With the page cache warm, one hyperfine invocation (each
#   command warmed up once, then its runs back to back) compares
#     ours       target/release/bmaptool create -o ours.bmap IMAGE
#     openssl    openssl dgst -sha256 MAPPED   (MAPPED = exactly the image's mapped
#                bytes in one file: the single-core SHA-256 limit for this image)
#     reference  $REFERENCE_BMAPTOOL create -o ref.bmap IMAGE
#   and then records each tool's peak RSS with /usr/bin/time -v and checks that both
#   bmaps list the same ranges (and the same range checksums).
#   Scenario 2, a huge sparse file: 1 TiB with 10,000 extents of 4 KiB of random data,
#   evenly spaced; times our create on it (mapping cost, not hashing cost).
#   The summary gives the medians and these targets:
#     ours / openssl <= 0.6, our peak RSS < 64 MiB, 1 TiB case median < 2 s.
#
# How to run (needs root for losetup, mount and mknod; takes a few minutes):
#   sudo bench/create.sh
#   sudo RUNS=10 BENCH_DIR=/mnt/scratch bench/create.sh
#
# The image builder and the scratch/cleanup helpers are in bench/lib.sh.
# Needs: cargo, hyperfine, openssl, python3, sfdisk (package fdisk), partx, losetup
# (util-linux), mkfs.ext4 (e2fsprogs), /usr/bin/time (package time; installed with
# apt-get when missing), the reference tool (Debian package bmap-tools).
#
# Environment knobs
#   RUNS=5                   hyperfine runs per command (after one warm-up run)
#   REFERENCE_BMAPTOOL=/usr/bin/bmaptool   the reference tool
#   BENCH_DIR=               scratch directory; it needs ~3 GiB free, should be a
#                            file system with FIEMAP and sparse files (ext4, xfs,
#                            btrfs; not tmpfs). Default: mktemp -d under /var/tmp.
#                            A directory we create is removed on exit; in a given
#                            directory only the files we made are removed.
#   KEEP_BENCH_DIR=0         1 keeps the scratch files (image, bmaps, JSON)
#   IMAGE_SIZE=4G            size of the disk image (truncate syntax)
#   FILL_MIB=1024            how much file data (MiB, apparent size) to copy in
#   SPARSE_SIZE=1T           size of the scenario-2 sparse file (truncate syntax)
#   SPARSE_EXTENTS=10000     number of 4 KiB extents in it
#   STRICT=0                 1 makes the script exit 1 when a target is missed
#                            or the bmaps differ
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-5}
REFERENCE_BMAPTOOL=${REFERENCE_BMAPTOOL:-/usr/bin/bmaptool}
IMAGE_SIZE=${IMAGE_SIZE:-4G}
FILL_MIB=${FILL_MIB:-1024}
SPARSE_SIZE=${SPARSE_SIZE:-1T}
SPARSE_EXTENTS=${SPARSE_EXTENTS:-10000}
STRICT=${STRICT:-0}

bench_require_root
bench_require_tools cargo hyperfine openssl python3 sfdisk partx losetup mkfs.ext4 mount umount
[[ -x $REFERENCE_BMAPTOOL ]] || die "reference tool not found: $REFERENCE_BMAPTOOL"

bench_scratch_init
IMG=$DIR/disk.img
MAPPED=$DIR/mapped.bin
SPARSE=$DIR/sparse-1t.img
bench_track_file "$SPARSE" "$DIR"/{ours,ref,ours-rss,ref-rss,sparse}.bmap \
    "$DIR"/{create,sparse}.json "$DIR"/{ours,ref}.time

bench_build_release

# ---------------------------------------------------------- scenario 1: the image
build_disk_image "$IMG" "$IMAGE_SIZE" "$FILL_MIB"

say "our first create (also gives the ranges for the hash file)"
"$OURS" create -q -o "$DIR/ours.bmap" "$IMG"
read -r NRANGES MAPPED_BYTES BIGGEST_BYTES BIGGEST_RANGE < <(bmap_stats "$DIR/ours.bmap")
ALLOCATED=$(du --block-size=1 "$IMG" | cut -f1)
say "image: $NRANGES ranges, mapped $MAPPED_BYTES bytes ($(mib "$MAPPED_BYTES") MiB), allocated (du) $ALLOCATED bytes, largest range $BIGGEST_RANGE = $(mib "$BIGGEST_BYTES") MiB"

say "extracting the mapped bytes into one file for the openssl baseline"
extract_mapped "$DIR/ours.bmap" "$IMG" "$MAPPED"
sync

# -------------------------------------------------------------- timings, scenario 1
say "hyperfine: ours vs openssl vs reference (warm-up 1, $RUNS runs each)"
hyperfine --warmup 1 --runs "$RUNS" --export-json "$DIR/create.json" \
    -n ours "$(q "$OURS") create -o $(q "$DIR/ours.bmap") $(q "$IMG")" \
    -n openssl-sha256 "openssl dgst -sha256 $(q "$MAPPED")" \
    -n reference "$(q "$REFERENCE_BMAPTOOL") create -o $(q "$DIR/ref.bmap") $(q "$IMG")"

say "peak memory (/usr/bin/time -v)"
/usr/bin/time -v -o "$DIR/ours.time" "$OURS" create -o "$DIR/ours-rss.bmap" "$IMG"
/usr/bin/time -v -o "$DIR/ref.time" "$REFERENCE_BMAPTOOL" create -o "$DIR/ref-rss.bmap" "$IMG"
OURS_RSS=$(rss_mib "$DIR/ours.time")
REF_RSS=$(rss_mib "$DIR/ref.time")

# Same ranges? Compare the <Range> lines with all white space removed (the header
# comments differ between reference versions), then the block numbers alone.
ranges_of() { grep '<Range' "$1" | tr -d '[:space:]'; }
blocks_of() { ranges_of "$1" | sed 's/<Range[^>]*>//g; s#</Range>#\n#g'; }
if cmp -s <(ranges_of "$DIR/ours.bmap") <(ranges_of "$DIR/ref.bmap"); then
    RANGES_MATCH="yes (same ranges and checksums, $NRANGES ranges)"
elif cmp -s <(blocks_of "$DIR/ours.bmap") <(blocks_of "$DIR/ref.bmap"); then
    RANGES_MATCH="NO: same block ranges but different checksums"
else
    RANGES_MATCH="NO: block ranges differ ($(grep -c '<Range' "$DIR/ours.bmap") ours vs $(grep -c '<Range' "$DIR/ref.bmap") reference)"
fi

# ----------------------------------------------------- scenario 2: 1 TiB, sparse
say "making a $SPARSE_SIZE sparse file with $SPARSE_EXTENTS extents of 4 KiB"
truncate -s "$SPARSE_SIZE" "$SPARSE"
python3 - "$SPARSE" "$SPARSE_EXTENTS" <<'EOF'
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY)
step = os.fstat(fd).st_size // n // 4096 * 4096
assert step > 4096, "file too small for that many separate extents"
for i in range(n):
    os.pwrite(fd, os.urandom(4096), i * step)
os.close(fd)
EOF
sync
hyperfine --warmup 1 --runs "$RUNS" --export-json "$DIR/sparse.json" \
    -n "ours-$SPARSE_SIZE" "$(q "$OURS") create -o $(q "$DIR/sparse.bmap") $(q "$SPARSE")"
read -r SPARSE_RANGES _ _ _ < <(bmap_stats "$DIR/sparse.bmap")

# -------------------------------------------------------------------------- summary
set +e
python3 - "$DIR/create.json" "$DIR/sparse.json" <<EOF
import json, sys
med = {}
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        med[r["command"]] = (r["median"], r["stddev"] or 0.0, min(r["times"]), max(r["times"]))
ours, ossl, ref, big = (med[k][0] for k in ("ours", "openssl-sha256", "reference", "ours-$SPARSE_SIZE"))
ours_rss, ref_rss = float("$OURS_RSS"), float("$REF_RSS")
ok = lambda c: "ok" if c else "MISSED"
print()
print("=== bmaptool create benchmark: summary ===")
print(f"image: $IMAGE_SIZE sparse, ext4, $NRANGES ranges, mapped {$MAPPED_BYTES / 2**20:.1f} MiB, "
      f"largest range $BIGGEST_RANGE ({$BIGGEST_BYTES / 2**20:.1f} MiB)")
print(f"runs per command: $RUNS (after 1 warm-up), page cache warm")
print()
print(f"{'command':<16}{'median s':>10}{'stddev':>9}{'min':>9}{'max':>9}")
for k in ("ours", "openssl-sha256", "reference", "ours-$SPARSE_SIZE"):
    m, s, lo, hi = med[k]
    print(f"{k:<16}{m:>10.3f}{s:>9.3f}{lo:>9.3f}{hi:>9.3f}")
print()
print(f"{'measure':<34}{'value':>10}  {'target':<10}")
print(f"{'ours / openssl-sha256':<34}{ours / ossl:>10.3f}  {'<= 0.6':<10}{ok(ours / ossl <= 0.6)}")
print(f"{'reference / openssl-sha256':<34}{ref / ossl:>10.3f}")
print(f"{'ours / reference':<34}{ours / ref:>10.3f}")
print(f"{'our peak RSS (MiB)':<34}{ours_rss:>10.1f}  {'< 64':<10}{ok(ours_rss < 64)}")
print(f"{'reference peak RSS (MiB)':<34}{ref_rss:>10.1f}")
print(f"{'$SPARSE_SIZE, $SPARSE_RANGES ranges: ours (s)':<34}{big:>10.3f}  {'< 2':<10}{ok(big < 2)}")
print(f"{'bmaps list the same ranges':<34}  $RANGES_MATCH")
if $SPARSE_RANGES != $SPARSE_EXTENTS:
    print(f"note: the $SPARSE_SIZE file should give $SPARSE_EXTENTS ranges; our bmap has $SPARSE_RANGES")
missed = not (ours / ossl <= 0.6 and ours_rss < 64 and big < 2) or not "$RANGES_MATCH".startswith("yes")
sys.exit(3 if missed else 0)
EOF
summary_rc=$?
set -e
if [[ $summary_rc -ne 0 && $summary_rc -ne 3 ]]; then die "summary failed"; fi
if [[ $STRICT == 1 && $summary_rc -eq 3 ]]; then exit 1; fi
