#!/usr/bin/env bash
# bench/multi.sh - what does writing one image to several devices at once cost, when
# the decoder is the bottleneck? `bmaptool copy IMG.FMT DEST1 DEST2 ...` reads, decodes
# and verifies the image once and writes every destination on its own thread.
#
# What it measures
#   The image: the realistic disk image of bench/copy.sh (bench/lib.sh builds it): an
#   IMAGE_SIZE sparse file, DOS label, one ext4 partition holding FILL_MIB MiB of files
#   from /usr; its bmap made by our `bmaptool create`; compressed once per format (xz:
#   xz -6 -T0, zst: zstd -3 -T0; see BENCH_COMPRESSOR in bench/lib.sh), kept and reused
#   as bench/compressed.sh does.
#   The destinations: four loop devices over sparse backing files of IMAGE_SIZE in the
#   scratch directory.
#   For each format, one group of commands timed in the same run, alternating (as
#   bench/copy.sh: RUNS rounds of one hyperfine call with --runs 1, the order rotated
#   each round, after a warm-up that is discarded); --prepare 'sync':
#     one       bmaptool copy --bmap BMAP IMG.FMT LOOP1
#     two       bmaptool copy --bmap BMAP IMG.FMT LOOP1 LOOP2
#     four      bmaptool copy --bmap BMAP IMG.FMT LOOP1 LOOP2 LOOP3 LOOP4
#     decoder   the system decoder alone to /dev/null (xz -T0 -dc, zstd -dc): the floor
#   Every copy ends with an fsync of each device, so writeback is inside its time.
#   Outside the timings: the four-destination copy once more under /usr/bin/time -v
#   (peak RSS), then each device's mapped bytes are compared with the image's.
#   Summary, per format: median, min-max and spread (stddev / median) of each command;
#   two / one and four / one (target: four / one <= 1.5, "four devices within 1.5x of
#   one"); one / decoder for context (is the decoder the bottleneck?). The 1-minute
#   load average at the start of each round is summarised (the machine may be shared).
#
# How to run (needs root: losetup, mount, mknod to build the image):
#   sudo bench/multi.sh
#   sudo IMAGE_SIZE=1G FILL_MIB=256 RUNS=3 bench/multi.sh         # a quick run
#   sudo BENCH_DIR=/var/tmp/bench KEEP_BENCH_DIR=1 bench/multi.sh   # reuse the image
#
# Needs: cargo, hyperfine, python3, sfdisk, partx, losetup, mkfs.ext4, xz, zstd,
# /usr/bin/time (installed with apt-get when missing).
#
# Environment knobs
#   RUNS=5             timed runs per command (after one warm-up run)
#   ALTERNATE=1        1: RUNS rotated rounds per format; 0: one hyperfine call per
#                      format, each command's runs back to back
#   FORMATS="xz zst"   the formats to measure, in this order
#   BENCH_DIR=         scratch directory; needs ~IMAGE_SIZE + 5 x the mapped size free,
#                      on a file system with FIEMAP and sparse files (not tmpfs).
#                      Default: mktemp -d under /var/tmp, removed on exit.
#   KEEP_BENCH_DIR=0   1 keeps the scratch files (image, bmap, compressed copies, JSON)
#   REUSE_IMAGE=1      0 rebuilds the image (and recompresses)
#   IMAGE_SIZE=2G      size of the disk image (truncate syntax)
#   FILL_MIB=512       how much file data (MiB, apparent size) to copy in
#   STRICT=0           1 makes the script exit 1 when the target is missed
#   A failed copy or a device that differs from the image always makes the script
#   exit 1 (after the summary).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-5}
ALTERNATE=${ALTERNATE:-1}
FORMATS=${FORMATS:-xz zst}
IMAGE_SIZE=${IMAGE_SIZE:-2G}
FILL_MIB=${FILL_MIB:-512}
STRICT=${STRICT:-0}

bench_require_root
bench_require_tools cargo hyperfine python3 sfdisk partx losetup mkfs.ext4 mount umount \
    cmp xz zstd
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number: $RUNS"
for fmt in $FORMATS; do
    case $fmt in xz | zst) ;; *) die "unknown format $fmt (known: xz zst)" ;; esac
done

bench_scratch_init
IMG=$DIR/disk.img
BMAP=$DIR/disk.img.bmap
bench_track_file "$DIR/verify.tsv" "$DIR/mapped.img" "$DIR/dest-mapped.img"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

bench_build_release
bench_image "$IMG" "$BMAP" "$IMAGE_SIZE" "$FILL_MIB"
IMAGE_BYTES=$(stat -c %s "$IMG")
read -r NRANGES MAPPED_BYTES _ _ < <(bmap_stats "$BMAP")
say "image: $IMAGE_BYTES bytes, $NRANGES ranges, mapped $MAPPED_BYTES bytes ($(mib "$MAPPED_BYTES") MiB)"
for fmt in $FORMATS; do bench_compressed "$IMG" "$fmt"; done

# ------------------------------------------------------------------ the destinations
LOOPS=()
for i in 1 2 3 4; do
    backing=$DIR/dest$i.img
    bench_track_file "$backing"
    rm -f "$backing"
    truncate -s "$IMAGE_SIZE" "$backing"
    loop=$(losetup --show -f "$backing")
    bench_track_loop "$loop"
    LOOPS+=("$loop")
done
say "destinations: ${LOOPS[*]}"
sync

# ------------------------------------------------ correctness and peak RSS, per format
extract_mapped "$BMAP" "$IMG" "$DIR/mapped.img"
: > "$DIR/verify.tsv"
for fmt in $FORMATS; do
    say "$fmt: a copy to four devices once (peak RSS), then each compared with the image"
    bench_track_file "$DIR/four-$fmt.time" "$DIR/four-$fmt.err"
    result=ok
    if /usr/bin/time -v -o "$DIR/four-$fmt.time" "$OURS" copy -q --bmap "$BMAP" \
        "$IMG.$fmt" "${LOOPS[@]}" 2> "$DIR/four-$fmt.err"; then
        for loop in "${LOOPS[@]}"; do
            extract_mapped "$BMAP" "$loop" "$DIR/dest-mapped.img"
            if ! cmp -s "$DIR/mapped.img" "$DIR/dest-mapped.img"; then
                result="FAILED: $loop differs from the image"
            fi
        done
    else
        result="FAILED: our copy exited with an error: $(tail -2 "$DIR/four-$fmt.err" | tr '\n' ' ')"
        cat "$DIR/four-$fmt.err" >&2
    fi
    say "$fmt: $result"
    printf '%s\t%s\t%s\n' "$fmt" "$(rss_mib "$DIR/four-$fmt.time")" "$result" >> "$DIR/verify.tsv"
done
rm -f "$DIR/dest-mapped.img"

# --------------------------------------------------------------------------- timings
O=$(q "$OURS") B=$(q "$BMAP")
L=()
for loop in "${LOOPS[@]}"; do L+=("$(q "$loop")"); done
for fmt in $FORMATS; do
    X=$(q "$IMG.$fmt")
    case $fmt in
        xz) decoder="xz -T0 -dc $X > /dev/null" ;;
        zst) decoder="zstd -dc $X > /dev/null" ;;
    esac
    bench_run_rounds "m-$fmt" "sync" \
        one "$O copy -q --bmap $B $X ${L[0]}" \
        two "$O copy -q --bmap $B $X ${L[0]} ${L[1]}" \
        four "$O copy -q --bmap $B $X ${L[*]}" \
        decoder "$decoder"
done

# ---------------------------------------------------------------------- summary
LOADS=()
for fmt in $FORMATS; do LOADS+=("$fmt=$(bench_load_summary "m-$fmt")"); done
set +e
python3 - "$DIR" "$FORMATS" "$STRICT" "${LOADS[@]}" <<EOF
import json, statistics, sys

dir_, formats, strict = sys.argv[1], sys.argv[2].split(), sys.argv[3] == "1"
loads = dict(a.split("=", 1) for a in sys.argv[4:])
verify = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(f"{dir_}/verify.tsv")}
failed_runs = {}
bad = False
print()
print("bench/multi.sh: one image to 1, 2 and 4 loop devices in one run")
print(f"image: $IMAGE_BYTES bytes ($IMAGE_SIZE), $NRANGES ranges, mapped "
      f"{$MAPPED_BYTES / 2**20:.1f} MiB; RUNS=$RUNS, ALTERNATE=$ALTERNATE; "
      f"load average at the start: $LOAD_START")
for fmt in formats:
    results = {r["command"]: r for r in json.load(open(f"{dir_}/m-{fmt}.json"))["results"]}
    failed = [l.split("\t")[0] for l in open(f"{dir_}/m-{fmt}.failed") if l.strip()]
    print()
    print(f"== {fmt} ({loads.get(fmt, '')})")
    print(f"  {'command':<8} {'median s':>9} {'min-max s':>15} {'spread':>7} {'MiB/s mapped':>13}")
    for name in ("one", "two", "four", "decoder"):
        r = results.get(name)
        if r is None:
            print(f"  {name:<8} FAILED (see {dir_}/m-{fmt}.{name}.err)")
            bad = True
            continue
        med = r["median"]
        spread = (r["stddev"] or 0) / med * 100
        print(f"  {name:<8} {med:9.3f} {r['min']:7.3f}-{r['max']:<7.3f} {spread:6.1f}% "
              f"{$MAPPED_BYTES / 2**20 / med:13.1f}")
    if all(k in results for k in ("one", "two", "four")):
        one = results["one"]["median"]
        two, four = results["two"]["median"] / one, results["four"]["median"] / one
        ok = four <= 1.5
        print(f"  two / one  = {two:.2f}")
        print(f"  four / one = {four:.2f}  (target <= 1.50: {'met' if ok else 'MISSED'})")
        if "decoder" in results:
            print(f"  one / decoder alone = {one / results['decoder']['median']:.2f} "
                  "(near 1: the decoder is the bottleneck)")
        if strict and not ok:
            bad = True
    v = verify.get(fmt)
    if v:
        print(f"  four devices once: peak RSS {v[1]} MiB; devices hold the image: {v[2]}")
        if v[2] != "ok":
            bad = True
    if failed:
        bad = True
sys.exit(1 if bad else 0)
EOF
