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

RUNS=${RUNS:-5}
REFERENCE_BMAPTOOL=${REFERENCE_BMAPTOOL:-/usr/bin/bmaptool}
KEEP_BENCH_DIR=${KEEP_BENCH_DIR:-0}
IMAGE_SIZE=${IMAGE_SIZE:-4G}
FILL_MIB=${FILL_MIB:-1024}
SPARSE_SIZE=${SPARSE_SIZE:-1T}
SPARSE_EXTENTS=${SPARSE_EXTENTS:-10000}
STRICT=${STRICT:-0}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/create.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (losetup, mount, mknod): run as 'sudo $0'"
for tool in cargo hyperfine openssl python3 sfdisk partx losetup mkfs.ext4 mount umount; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ -x $REFERENCE_BMAPTOOL ]] || die "reference tool not found: $REFERENCE_BMAPTOOL"
if [[ ! -x /usr/bin/time ]]; then
    say "installing GNU time"
    apt-get install -y time >/dev/null
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---------------------------------------------------------------- scratch + cleanup
MADE_DIR=0
if [[ -n ${BENCH_DIR:-} ]]; then
    if [[ ! -d $BENCH_DIR ]]; then
        mkdir -p "$BENCH_DIR"
        MADE_DIR=1
    fi
else
    BENCH_DIR=$(mktemp -d /var/tmp/bmap-bench.XXXXXX)
    MADE_DIR=1
fi
DIR=$(cd "$BENCH_DIR" && pwd)
IMG=$DIR/disk.img
MAPPED=$DIR/mapped.bin
SPARSE=$DIR/sparse-1t.img
MNT=$DIR/mnt
LOOP=
PART_NODE_MADE=
MOUNTED=0

cleanup() {
    local rc=$?
    set +e
    if [[ $MOUNTED -eq 1 ]]; then umount "$MNT"; fi
    if [[ -n $LOOP ]]; then losetup -d "$LOOP"; fi
    if [[ -n $PART_NODE_MADE ]]; then rm -f "$PART_NODE_MADE"; fi
    if [[ $KEEP_BENCH_DIR == 1 ]]; then
        say "kept scratch files in $DIR"
    elif [[ $MADE_DIR -eq 1 ]]; then
        rm -rf "$DIR"
    else
        rmdir "$MNT" 2>/dev/null
        rm -f "$IMG" "$MAPPED" "$SPARSE" "$DIR"/{ours,ref,ours-rss,ref-rss,sparse}.bmap \
            "$DIR"/{create,sparse}.json "$DIR"/{ours,ref}.time
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------- build
say "building our release binary"
(cd "$REPO" && cargo build --release -p bmaptool)
OURS=${CARGO_TARGET_DIR:-$REPO/target}/release/bmaptool
[[ -x $OURS ]] || die "no binary at $OURS"

# ---------------------------------------------------------- scenario 1: the image
say "making a $IMAGE_SIZE sparse disk image in $DIR"
truncate -s "$IMAGE_SIZE" "$IMG"
printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$IMG"
LOOP=$(losetup -P --show -f "$IMG")
PART_SYS=$(basename "$LOOP")p1
PART=${LOOP}p1
# Without udev (containers) the partition may not be scanned or have no /dev node:
# ask partx for it, then make the node from sysfs.
for i in $(seq 1 50); do
    [[ -e /sys/class/block/$PART_SYS/dev ]] && break
    if [[ $i -eq 5 ]]; then partx -a "$LOOP" 2>/dev/null || true; fi
    sleep 0.1
done
[[ -e /sys/class/block/$PART_SYS/dev ]] || die "partition $PART_SYS never appeared"
for _ in $(seq 1 20); do [[ -b $PART ]] && break; sleep 0.1; done
if [[ ! -b $PART ]]; then
    IFS=: read -r major minor < "/sys/class/block/$PART_SYS/dev"
    mknod "$PART" b "$major" "$minor"
    PART_NODE_MADE=$PART
fi
mkfs.ext4 -q "$PART"
mkdir -p "$MNT"
# noinit_itable: no background inode-table zeroing, so the mapped size does not
# depend on how long the file system stayed mounted.
mount -o noinit_itable "$PART" "$MNT"
MOUNTED=1

say "copying ~$FILL_MIB MiB of files from /usr ($(du -sh /usr 2>/dev/null | cut -f1) in all)"
python3 - "$MNT" "$FILL_MIB" <<'EOF'
# Copy regular files (and symlinks) from /usr/{lib,share,bin}, in a stable order,
# until FILL_MIB MiB of file data is in; repeat into usr.2, usr.3, ... if /usr is
# smaller than that.
import os, shutil, sys
dest_root, cap = sys.argv[1], int(sys.argv[2]) << 20
total, files, rnd = 0, 0, 1
while total < cap:
    before = total
    for sub in ("lib", "share", "bin"):
        src_top = os.path.join("/usr", sub)
        for dirpath, dirnames, filenames in os.walk(src_top):
            dirnames.sort()
            rel = os.path.relpath(dirpath, "/usr")
            ddir = os.path.join(dest_root, "usr" if rnd == 1 else f"usr.{rnd}", rel)
            os.makedirs(ddir, exist_ok=True)
            for name in sorted(filenames):
                src, dst = os.path.join(dirpath, name), os.path.join(ddir, name)
                try:
                    if os.path.islink(src):
                        os.symlink(os.readlink(src), dst)
                    elif os.path.isfile(src):
                        size = os.path.getsize(src)
                        shutil.copyfile(src, dst)
                        total += size
                        files += 1
                except OSError:
                    continue
                if total >= cap:
                    break
            if total >= cap:
                break
        if total >= cap:
            break
    if total == before:
        sys.exit("nothing to copy from /usr")
    rnd += 1
print(f"copied {files} files, {total / 2**20:.0f} MiB", file=sys.stderr)
EOF
df -h "$MNT" | tail -1 >&2
umount "$MNT"
MOUNTED=0
losetup -d "$LOOP"
LOOP=
if [[ -n $PART_NODE_MADE ]]; then rm -f "$PART_NODE_MADE"; PART_NODE_MADE=; fi
sync

# bmap statistics: ranges, mapped bytes, largest range.
bmap_stats() {
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
num = lambda tag: int(re.search(rf"<{tag}>\s*(\d+)\s*</{tag}>", text).group(1))
bs, image = num("BlockSize"), num("ImageSize")
ranges = [(int(a), int(b or a)) for a, b in
          re.findall(r"<Range[^>]*>\s*(\d+)\s*(?:-\s*(\d+))?\s*</Range>", text)]
mapped = sum(min((b + 1) * bs, image) - a * bs for a, b in ranges)
big = max(ranges, key=lambda r: r[1] - r[0])
print(len(ranges), mapped, (big[1] - big[0] + 1) * bs, f"{big[0]}-{big[1]}")
EOF
}

say "our first create (also gives the ranges for the hash file)"
"$OURS" create -q -o "$DIR/ours.bmap" "$IMG"
read -r NRANGES MAPPED_BYTES BIGGEST_BYTES BIGGEST_RANGE < <(bmap_stats "$DIR/ours.bmap")
ALLOCATED=$(du --block-size=1 "$IMG" | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
say "image: $NRANGES ranges, mapped $MAPPED_BYTES bytes ($(mib "$MAPPED_BYTES") MiB), allocated (du) $ALLOCATED bytes, largest range $BIGGEST_RANGE = $(mib "$BIGGEST_BYTES") MiB"

say "extracting the mapped bytes into one file for the openssl baseline"
python3 - "$DIR/ours.bmap" "$IMG" "$MAPPED" "$MAPPED_BYTES" <<'EOF'
import os, re, sys
bmap, img, out, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
text = open(bmap).read()
bs = int(re.search(r"<BlockSize>\s*(\d+)", text).group(1))
image = int(re.search(r"<ImageSize>\s*(\d+)", text).group(1))
ranges = [(int(a), int(b or a)) for a, b in
          re.findall(r"<Range[^>]*>\s*(\d+)\s*(?:-\s*(\d+))?\s*</Range>", text)]
done = 0
with open(img, "rb", buffering=0) as src, open(out, "wb") as dst:
    for a, b in ranges:
        off, end = a * bs, min((b + 1) * bs, image)
        while off < end:
            chunk = os.pread(src.fileno(), min(8 << 20, end - off), off)
            dst.write(chunk)
            off += len(chunk)
            done += len(chunk)
if done != want:
    sys.exit(f"extracted {done} bytes, expected {want}")
EOF
sync

# -------------------------------------------------------------- timings, scenario 1
q() { printf '%q' "$1"; }
say "hyperfine: ours vs openssl vs reference (warm-up 1, $RUNS runs each)"
hyperfine --warmup 1 --runs "$RUNS" --export-json "$DIR/create.json" \
    -n ours "$(q "$OURS") create -o $(q "$DIR/ours.bmap") $(q "$IMG")" \
    -n openssl-sha256 "openssl dgst -sha256 $(q "$MAPPED")" \
    -n reference "$(q "$REFERENCE_BMAPTOOL") create -o $(q "$DIR/ref.bmap") $(q "$IMG")"

say "peak memory (/usr/bin/time -v)"
/usr/bin/time -v -o "$DIR/ours.time" "$OURS" create -o "$DIR/ours-rss.bmap" "$IMG"
/usr/bin/time -v -o "$DIR/ref.time" "$REFERENCE_BMAPTOOL" create -o "$DIR/ref-rss.bmap" "$IMG"
rss_mib() { awk -F: '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
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
