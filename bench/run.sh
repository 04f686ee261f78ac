#!/usr/bin/env bash
# bench/run.sh - the whole benchmark in one command: every case of bmaptool against its
# physical limit and against the reference tool, measured in the same run, written as
# one Markdown table (bench/results/latest.md by default, and stdout).
#
# What it runs
#   The release binary (cargo build --release -p bmaptool), then the realistic image of
#   bench/lib.sh: a SIZE sparse file, DOS label, one ext4 partition holding FILL_MIB
#   MiB of files copied from /usr (mostly holes), its bmap by our `bmaptool create`,
#   MAPPED (a file of exactly the image's mapped bytes, for the limits) and the image
#   compressed in every format (gz bz2 xz lzo lz4 zst, a sparse tar in zstd, a zip;
#   the commands are BENCH_COMPRESSOR in bench/lib.sh). Two loop devices over files
#   of the image's size (buffered loop) are the device destinations.
#   Groups of commands, each timed by bench_run_rounds (bench/lib.sh): a discarded
#   warm-up of every command, then RUNS rounds of one hyperfine call with --runs 1,
#   every command once per round, the order rotated each round (buffered writes swing
#   up to 4x from run to run: alternating puts the swings on every command alike).
#   Writing commands end with fsync; DEST (a file) is removed and synced before each.
#     create   ours: create IMAGE; sha256: openssl dgst -sha256 MAPPED (the hash
#              limit: one core); reference: create IMAGE
#     file     ours: copy IMAGE DEST; ours-stdin: cat IMAGE | copy - DEST;
#              reference (IMAGE, and /dev/stdin for the pipe: 3.6 has no "-");
#              write-file: dd MAPPED to DEST with O_DIRECT, 4 MiB writes (write limit)
#     loop     ours: copy IMAGE LOOP1; ours --verify-written; reference;
#              write-loop: dd MAPPED to LOOP1 with O_DIRECT (write limit)
#     multi    ours: copy IMAGE LOOP1 LOOP2; write-both: the two O_DIRECT dd at once
#     FMT      for each format: ours: copy IMAGE.FMT DEST; reference: the same;
#              decode: the system decoder alone to /dev/null (pigz -dc, pbzip2 -dc,
#              xz -T0 -dc, lzop -dc, lz4 -dc, zstd -dc, zstd -dc | tar -xO, funzip:
#              the decoders the reference runs, but xz on both cores)
#     http     crates/bmaptool/tests/fixtures/httpd.py (Range, keep-alive) on
#              127.0.0.1; ours and reference: copy --bmap URL URL DEST for the raw
#              image (only the mapped ranges are fetched) and the .zst; limits:
#              curl of MAPPED in one GET, curl of the .zst piped to zstd -dc
#     verify   (LOOP1 flashed again first) ours: verify --bmap BMAP LOOP1; read-loop:
#              dd of the mapped byte count from LOOP1 with O_DIRECT, 1 MiB reads
#              (read limit; sequential, so a little kinder than the mapped ranges)
#   The limit of a case is the slowest stage it cannot avoid, each measured alone in
#   this run: a copy to DEST is bounded by max(its source stage: decode or transfer,
#   write-file, sha256 / 2) (it hashes on both cores while it writes); create by
#   sha256 (one core: ours hashes on two, so it may beat it); verify by max(read-loop,
#   sha256 / 2); --verify-written by write-loop + read-loop (it writes, then reads
#   back); several destinations by write-both.
#   Ratio = ours / limit (1.00 = at the limit); speed-up = reference / ours. The
#   reference is /usr/bin/bmaptool (Debian bmap-tools 3.6): it has no verify, no
#   --verify-written and one destination per run, so those rows say n/a; a command
#   that fails in its warm-up is left out of the timings and its row says why.
#   Every command's own median, min-max, user and system time, and the load average
#   of each group, follow the table.
#
# How to run (root: losetup, mount, mknod):
#   sudo bench/run.sh                        # the full run: about 20 minutes on 2 cores
#   sudo QUICK=1 bench/run.sh                # a smoke run: a small image, 2 rounds
#   sudo SIZE=4G FILL_MIB=1024 RUNS=5 OUT=/tmp/bench.md bench/run.sh
#
# Needs: cargo, hyperfine, openssl, python3, curl, sfdisk, partx, losetup, mkfs.ext4,
# dd, tar, zip, funzip (unzip), gzip, pigz, bzip2, pbzip2, xz, lzop, lz4, zstd, /usr/bin/time
# (installed with apt-get when missing), the reference tool (Debian bmap-tools).
#
# Environment knobs
#   QUICK=0          1: SIZE=512M, FILL_MIB=128, RUNS=2 (unless given)
#   SIZE=1G          the image size (truncate syntax); FILL_MIB=256 of files in it (a
#                    larger image mostly lengthens the bz2 and xz cases: their decoders
#                    run at 20-40 MiB/s a core)
#   RUNS=3           timed rounds per group (after the warm-up)
#   FORMATS="gz bz2 xz lzo lz4 zst tar.zst zip"   the compressed cases, in this order
#   OUT=bench/results/latest.md   where the report goes (also printed on stdout)
#   REFERENCE_BMAPTOOL=/usr/bin/bmaptool
#   BENCH_DIR=, KEEP_BENCH_DIR=0, REUSE_IMAGE=1   scratch directory (needs ~4 x SIZE
#                    free, not tmpfs), keeping it, reusing its image and compressed
#                    copies (see bench/lib.sh)
# Exit status: 1 when one of our commands failed, else 0.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    SIZE=${SIZE:-512M} FILL_MIB=${FILL_MIB:-128} RUNS=${RUNS:-2}
else
    SIZE=${SIZE:-1G} FILL_MIB=${FILL_MIB:-256} RUNS=${RUNS:-3}
fi
FORMATS=${FORMATS:-gz bz2 xz lzo lz4 zst tar.zst zip}
OUT=${OUT:-$BENCH_REPO/bench/results/latest.md}
REFERENCE_BMAPTOOL=${REFERENCE_BMAPTOOL:-/usr/bin/bmaptool}
export RUNS ALTERNATE=1

bench_require_root
bench_require_tools cargo hyperfine openssl python3 curl sfdisk partx losetup mkfs.ext4 \
    mount umount dd tar zip funzip gzip pigz bzip2 pbzip2 xz lzop lz4 zstd
[[ -x $REFERENCE_BMAPTOOL ]] || die "reference tool not found: $REFERENCE_BMAPTOOL"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number: $RUNS"
declare -A DECODER=(
    [gz]="pigz -dc" [bz2]="pbzip2 -dc" [bz2s]="bzip2 -dc" [xz]="xz -T0 -dc"
    [lzo]="lzop -dc" [lz4]="lz4 -dc" [zst]="zstd -dc" [tar.zst]="zstd -dc {} | tar -xO"
    [zip]="funzip"
)
for fmt in $FORMATS; do
    [[ -n ${DECODER[$fmt]:-} && -n ${BENCH_COMPRESSOR[$fmt]:-} ]] \
        || die "unknown format $fmt (known: ${!DECODER[*]})"
done

bench_scratch_init
IMG=$DIR/disk.img
BMAP=$DIR/disk.img.bmap
MAPPED=$DIR/mapped.bin
DEST=$DIR/dest.img
WWW=$DIR/www
META=$DIR/meta.json
bench_track_file "$DEST" "$META" "$DIR"/{create,create-ref}.bmap "$DIR/report.md"
T0=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at the start: $LOAD_START"

bench_build_release

# ------------------------------------------------------------ the image and its copies
bench_image "$IMG" "$BMAP" "$SIZE" "$FILL_MIB"
IMAGE_BYTES=$(stat -c %s "$IMG")
read -r NRANGES MAPPED_BYTES _ _ < <(bmap_stats "$BMAP")
MAPPED_MIB=$(((MAPPED_BYTES + 1048575) / 1048576))
say "image: $IMAGE_BYTES bytes, $NRANGES ranges, mapped $(mib "$MAPPED_BYTES") MiB"
extract_mapped "$BMAP" "$IMG" "$MAPPED"
for fmt in $FORMATS; do bench_compressed "$IMG" "$fmt"; done
bench_compressed "$IMG" zst # the HTTP case's compressed image
bench_loop_device LOOP1 "$DIR/loop1-backing.img" "$IMAGE_BYTES"
bench_loop_device LOOP2 "$DIR/loop2-backing.img" "$IMAGE_BYTES"
say "loop destinations: $LOOP1 $LOOP2"
sync
T_PREP=$((SECONDS - T0))

# ----------------------------------------------------------------------- the groups
O=$(q "$OURS") R="$(q "$REFERENCE_BMAPTOOL") -q" B=$(q "$BMAP") I=$(q "$IMG")
M=$(q "$MAPPED") D=$(q "$DEST") L1=$(q "$LOOP1") L2=$(q "$LOOP2")
WRITE="dd if=$M bs=4M oflag=direct conv=fsync status=none"
GROUPS_RUN=()
group() { # LABEL PREPARE NAME COMMAND...
    GROUPS_RUN+=("$1")
    bench_run_rounds "$@"
}

group create sync \
    ours "$O create -q -o $(q "$DIR/create.bmap") $I" \
    sha256 "openssl dgst -sha256 $M" \
    reference "$R create -o $(q "$DIR/create-ref.bmap") $I"

group file "rm -f $D; sync" \
    ours "$O copy -q --bmap $B $I $D" \
    ours-stdin "cat $I | $O copy -q --bmap $B - $D" \
    reference "$R copy --bmap $B $I $D" \
    reference-stdin "cat $I | $R copy --bmap $B /dev/stdin $D" \
    write-file "$WRITE of=$D"
rm -f "$DEST"

group loop sync \
    ours "$O copy -q --bmap $B $I $L1" \
    ours-verify-written "$O copy -q --verify-written --bmap $B $I $L1" \
    reference "$R copy --bmap $B $I $L1" \
    write-loop "$WRITE of=$L1"

group multi sync \
    ours "$O copy -q --bmap $B $I $L1 $L2" \
    write-both "$WRITE of=$L1 & p=\$!; $WRITE of=$L2; wait \$p"

for fmt in $FORMATS; do
    X=$(q "$IMG.$fmt")
    dec=${DECODER[$fmt]}
    if [[ $dec == *"{}"* ]]; then dec=${dec//\{\}/$X}; else dec="$dec $X"; fi
    group "$fmt" "rm -f $D; sync" \
        ours "$O copy -q --bmap $B $X $D" \
        reference "$R copy --bmap $B $X $D" \
        decode "$dec > /dev/null"
    rm -f "$DEST"
done

mkdir -p "$WWW"
[[ $_BENCH_MADE_DIR -eq 1 ]] || _BENCH_DIRS+=("$WWW")
for f in disk.img disk.img.bmap disk.img.zst mapped.bin; do
    ln -f "$DIR/$f" "$WWW/$f"
    bench_track_file "$WWW/$f"
done
bench_httpd_start "$WWW"
U=$HTTPD_URL
group http "rm -f $D; sync" \
    ours "$O copy -q --bmap $U/disk.img.bmap $U/disk.img $D" \
    reference "$R copy --bmap $U/disk.img.bmap $U/disk.img $D" \
    curl-mapped "curl -sf $U/mapped.bin > /dev/null" \
    ours-zst "$O copy -q --bmap $U/disk.img.bmap $U/disk.img.zst $D" \
    reference-zst "$R copy --bmap $U/disk.img.bmap $U/disk.img.zst $D" \
    curl-zst "curl -sf $U/disk.img.zst | zstd -dc > /dev/null"
bench_httpd_stop
rm -f "$DEST"

say "flashing $LOOP1 with the image for the verify group"
"$OURS" copy -q --bmap "$BMAP" "$IMG" "$LOOP1"
sync
group verify sync \
    ours "$O verify -q --bmap $B $L1" \
    read-loop "dd if=$L1 of=/dev/null bs=1M count=$MAPPED_MIB iflag=direct status=none"

# ---------------------------------------------------------------------- the report
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at the end: $LOAD_END"
tool_version() { # COMMAND...: the first line of its version output
    local v
    v=$("$@" 2>&1 | grep -m1 -E '[0-9]+\.[0-9]+' | sed 's/^[[:space:]*]*//; s/[[:space:]*]*$//' | cut -c1-60) || true
    printf '%s' "${v:-?}"
}
SRC_DEV=$(findmnt -no SOURCE -T "$DIR" | sed 's/\[.*//')
DISK=$(lsblk -dno NAME,SIZE,ROTA,MODEL "$SRC_DEV" 2>/dev/null \
    | awk 'NR == 1 { m = $4; for (i = 5; i <= NF; i++) m = m " " $i
        printf "%s, %s, rotational=%s, model %s", $1, $2, $3, (m == "" ? "?" : m) }' || true)
GIT_REV=$(cd "$BENCH_REPO" && git rev-parse --short HEAD)
(cd "$BENCH_REPO" && git diff --quiet HEAD -- . ':!bench/results') || GIT_REV="$GIT_REV (+ uncommitted changes)"
python3 - "$META" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "git": "$GIT_REV ($(cd "$BENCH_REPO" && git rev-parse --abbrev-ref HEAD))",
    "cpu": "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)",
    "cores": "$(nproc)",
    "ram": "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)",
    "kernel": "$(uname -sr)",
    "virt": "$(systemd-detect-virt 2>/dev/null || echo unknown)",
    "disk": "$(findmnt -no SOURCE,FSTYPE -T "$DIR" | tr -s ' ') (lsblk: ${DISK:-?})",
    "scratch": "$DIR",
    "load_start": "$LOAD_START", "load_end": "$LOAD_END",
    "minutes": "$(((SECONDS - T0 + 30) / 60))", "prep_minutes": "$(((T_PREP + 30) / 60))",
    "size": "$SIZE", "image_bytes": $IMAGE_BYTES, "fill_mib": $FILL_MIB,
    "ranges": $NRANGES, "mapped": $MAPPED_BYTES, "runs": $RUNS, "quick": "$QUICK",
    "loops": "$LOOP1 $LOOP2",
    "versions": {
        "bmaptool (ours)": "$(tool_version "$OURS" --version)",
        "reference": "$(tool_version "$REFERENCE_BMAPTOOL" --version) ($REFERENCE_BMAPTOOL)",
        "hyperfine": "$(tool_version hyperfine --version)",
        "rustc": "$(tool_version rustc --version)",
        "gzip": "$(tool_version gzip --version)", "pigz": "$(tool_version pigz --version)",
        "pbzip2": "$(tool_version pbzip2 --version)", "xz": "$(tool_version xz --version)",
        "lzop": "$(tool_version lzop --version)", "lz4": "$(tool_version lz4 --version)",
        "zstd": "$(tool_version zstd --version)", "tar": "$(tool_version tar --version)",
        "zip": "$(tool_version zip -v)", "unzip": "$(tool_version unzip -v)",
        "curl": "$(tool_version curl --version)", "openssl": "$(tool_version openssl version)",
    },
    "sizes": {f: __import__("os").path.getsize("$IMG." + f) for f in "$FORMATS zst".split()},
    "loads": {$(for g in "${GROUPS_RUN[@]}"; do printf '"%s": "%s", ' "$g" "$(bench_load_summary "$g")"; done)},
}, open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$(dirname "$OUT")"
set +e
python3 "$BENCH_REPO/bench/report.py" "$DIR" "$META" "$FORMATS" > "$DIR/report.md"
report_rc=$?
set -e
((report_rc == 0 || report_rc == 3)) || die "the report failed (exit $report_rc)"
cp "$DIR/report.md" "$OUT"
cat "$OUT"
say "report written to $OUT"
((report_rc == 0)) || die "one of our commands failed: see the report"
