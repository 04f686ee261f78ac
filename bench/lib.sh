# bench/lib.sh - helpers shared by the bench/*.sh scripts. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The caller sets `set -euo pipefail` first.
#
# What it gives
#   say MSG / die MSG            progress lines and fatal errors on stderr
#   bench_require_root           refuse to run unless root
#   bench_require_tools TOOL...  die when one is missing; installs GNU time
#                                (/usr/bin/time) with apt-get when it is missing
#   bench_scratch_init           the scratch directory DIR from BENCH_DIR (default: a
#                                new mktemp -d under /var/tmp) and the cleanup traps
#   bench_track_file PATH...     remove PATH at exit (when DIR was not made by us:
#                                a directory we made goes as a whole)
#   bench_track_loop DEV         detach loop device DEV at exit
#   bench_build_release          cargo build --release -p bmaptool; sets OURS
#   build_disk_image PATH SIZE FILL_MIB
#                                the realistic disk image: a SIZE sparse file, DOS
#                                label, one Linux partition from 1 MiB, ext4, filled
#                                with FILL_MIB MiB of files from /usr
#   bmap_stats BMAP              prints "RANGES MAPPED_BYTES BIGGEST_BYTES A-B"
#   extract_mapped BMAP IMAGE OUT   OUT = exactly the image's mapped bytes, in order
#   merge_hyperfine_json OUT JSON...  one hyperfine-like JSON from several exports
#                                (e.g. one per round): times of a command concatenated,
#                                median/mean/stddev/min/max recomputed, user/system
#                                means weighted by run count
#   median_from_json JSON NAME   median seconds of command NAME in a hyperfine JSON
#   rss_mib TIMEFILE             peak RSS (MiB) from a /usr/bin/time -v report
#   mib BYTES, q STRING          formatting: MiB with one decimal, shell quoting
#
# Environment read here: BENCH_DIR, KEEP_BENCH_DIR (see the calling script's header),
# CARGO_TARGET_DIR.

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_SCRIPT=bench/$(basename "$0")
KEEP_BENCH_DIR=${KEEP_BENCH_DIR:-0}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$BENCH_SCRIPT" "$*" >&2; exit 1; }

bench_require_root() {
    [[ $(id -u) -eq 0 ]] || die "needs root (losetup, mount, mknod): run as 'sudo $0'"
}

bench_require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
    if [[ ! -x /usr/bin/time ]]; then
        say "installing GNU time"
        apt-get install -y time >/dev/null
    fi
}

# ------------------------------------------------------------ scratch and cleanup
# What the cleanup trap undoes, most recent last.
_BENCH_MOUNTS=()   # mount points to unmount
_BENCH_LOOPS=()    # loop devices to detach
_BENCH_NODES=()    # device nodes we made with mknod
_BENCH_FILES=()    # files to remove (only when the directory is not ours)
_BENCH_DIRS=()     # (empty) directories to remove (likewise)
_BENCH_MADE_DIR=0
DIR=

_bench_untrack() { # ARRAY VALUE: drop VALUE from the named array
    local -n arr=$1
    local kept=() v
    for v in "${arr[@]}"; do [[ $v == "$2" ]] || kept+=("$v"); done
    arr=("${kept[@]}")
}

bench_track_file() { _BENCH_FILES+=("$@"); }
bench_track_loop() { _BENCH_LOOPS+=("$1"); }

_bench_cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#_BENCH_MOUNTS[@]} - 1; i >= 0; i--)); do umount "${_BENCH_MOUNTS[i]}"; done
    for ((i = ${#_BENCH_LOOPS[@]} - 1; i >= 0; i--)); do losetup -d "${_BENCH_LOOPS[i]}"; done
    for ((i = ${#_BENCH_NODES[@]} - 1; i >= 0; i--)); do rm -f "${_BENCH_NODES[i]}"; done
    if [[ -n $DIR ]]; then
        if [[ $KEEP_BENCH_DIR == 1 ]]; then
            say "kept scratch files in $DIR"
        elif [[ $_BENCH_MADE_DIR -eq 1 ]]; then
            rm -rf "$DIR"
        else
            rm -f "${_BENCH_FILES[@]}"
            for ((i = ${#_BENCH_DIRS[@]} - 1; i >= 0; i--)); do rmdir "${_BENCH_DIRS[i]}" 2>/dev/null; done
        fi
    fi
    exit "$rc"
}

bench_scratch_init() {
    if [[ -n ${BENCH_DIR:-} ]]; then
        if [[ ! -d $BENCH_DIR ]]; then
            mkdir -p "$BENCH_DIR"
            _BENCH_MADE_DIR=1
        fi
    else
        BENCH_DIR=$(mktemp -d /var/tmp/bmap-bench.XXXXXX)
        _BENCH_MADE_DIR=1
    fi
    DIR=$(cd "$BENCH_DIR" && pwd)
    trap _bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ------------------------------------------------------------------------- build
bench_build_release() {
    say "building our release binary"
    (cd "$BENCH_REPO" && cargo build --release -p bmaptool)
    OURS=${CARGO_TARGET_DIR:-$BENCH_REPO/target}/release/bmaptool
    [[ -x $OURS ]] || die "no binary at $OURS"
}

# --------------------------------------------------------------- the disk image
build_disk_image() { # PATH SIZE FILL_MIB
    local img=$1 size=$2 fill_mib=$3
    local mnt=$img.mnt loop part part_sys node_made= major minor i
    say "making a $size sparse disk image $img"
    bench_track_file "$img"
    rm -f "$img"
    truncate -s "$size" "$img"
    printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$img"
    loop=$(losetup -P --show -f "$img")
    bench_track_loop "$loop"
    part_sys=$(basename "$loop")p1
    part=${loop}p1
    # Without udev (containers) the partition may not be scanned or have no /dev node:
    # ask partx for it, then make the node from sysfs.
    for i in $(seq 1 50); do
        [[ -e /sys/class/block/$part_sys/dev ]] && break
        if [[ $i -eq 5 ]]; then partx -a "$loop" 2>/dev/null || true; fi
        sleep 0.1
    done
    [[ -e /sys/class/block/$part_sys/dev ]] || die "partition $part_sys never appeared"
    for _ in $(seq 1 20); do [[ -b $part ]] && break; sleep 0.1; done
    if [[ ! -b $part ]]; then
        IFS=: read -r major minor < "/sys/class/block/$part_sys/dev"
        mknod "$part" b "$major" "$minor"
        node_made=$part
        _BENCH_NODES+=("$part")
    fi
    mkfs.ext4 -q "$part"
    mkdir -p "$mnt"
    _BENCH_DIRS+=("$mnt")
    # noinit_itable: no background inode-table zeroing, so the mapped size does not
    # depend on how long the file system stayed mounted.
    mount -o noinit_itable "$part" "$mnt"
    _BENCH_MOUNTS+=("$mnt")

    say "copying ~$fill_mib MiB of files from /usr ($(du -sh /usr 2>/dev/null | cut -f1) in all)"
    python3 - "$mnt" "$fill_mib" <<'EOF'
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
    df -h "$mnt" | tail -1 >&2
    umount "$mnt"
    _bench_untrack _BENCH_MOUNTS "$mnt"
    rmdir "$mnt"
    _bench_untrack _BENCH_DIRS "$mnt"
    losetup -d "$loop"
    _bench_untrack _BENCH_LOOPS "$loop"
    if [[ -n $node_made ]]; then
        rm -f "$node_made"
        _bench_untrack _BENCH_NODES "$node_made"
    fi
    sync
}

# ------------------------------------------------------------------ bmap helpers
bmap_stats() { # BMAP -> RANGES MAPPED_BYTES BIGGEST_BYTES A-B
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

extract_mapped() { # BMAP IMAGE OUT: OUT gets the mapped bytes of IMAGE, in order
    bench_track_file "$3"
    python3 - "$1" "$2" "$3" <<'EOF'
import os, re, sys
bmap, img, out = sys.argv[1:4]
text = open(bmap).read()
bs = int(re.search(r"<BlockSize>\s*(\d+)", text).group(1))
image = int(re.search(r"<ImageSize>\s*(\d+)", text).group(1))
ranges = [(int(a), int(b or a)) for a, b in
          re.findall(r"<Range[^>]*>\s*(\d+)\s*(?:-\s*(\d+))?\s*</Range>", text)]
want = sum(min((b + 1) * bs, image) - a * bs for a, b in ranges)
done = 0
with open(img, "rb", buffering=0) as src, open(out, "wb") as dst:
    for a, b in ranges:
        off, end = a * bs, min((b + 1) * bs, image)
        while off < end:
            chunk = os.pread(src.fileno(), min(8 << 20, end - off), off)
            if not chunk:
                sys.exit(f"{img}: unexpected end of file at {off}")
            dst.write(chunk)
            off += len(chunk)
            done += len(chunk)
if done != want:
    sys.exit(f"extracted {done} bytes, expected {want}")
EOF
}

# ------------------------------------------------------------- hyperfine results
merge_hyperfine_json() { # OUT JSON...
    python3 - "$@" <<'EOF'
import json, statistics, sys
out, inputs = sys.argv[1], sys.argv[2:]
merged = {}  # command name -> {"times": [...], "user": sum, "system": sum, "codes": [...]}
for path in inputs:
    for r in json.load(open(path))["results"]:
        m = merged.setdefault(r["command"], {"times": [], "user": 0.0, "system": 0.0,
                                             "exit_codes": []})
        n = len(r["times"])
        m["times"] += r["times"]
        m["user"] += r["user"] * n
        m["system"] += r["system"] * n
        m["exit_codes"] += r.get("exit_codes") or []
results = []
for name, m in merged.items():
    t = m["times"]
    results.append({
        "command": name, "times": t, "exit_codes": m["exit_codes"],
        "median": statistics.median(t), "mean": statistics.fmean(t),
        "stddev": statistics.stdev(t) if len(t) > 1 else None,
        "min": min(t), "max": max(t),
        "user": m["user"] / len(t), "system": m["system"] / len(t),
    })
json.dump({"results": results}, open(out, "w"), indent=1)
EOF
}

median_from_json() { # JSON NAME
    python3 - "$1" "$2" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    if r["command"] == sys.argv[2]:
        print(r["median"])
        break
else:
    sys.exit(f"no command named {sys.argv[2]!r} in {sys.argv[1]}")
EOF
}

# -------------------------------------------------------------------- formatting
rss_mib() { awk -F: '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
q() { printf '%q' "$1"; }

# ----------------------------------------- a reusable image and its compressed copies
# Used by bench/compressed.sh and bench/remote.sh; an image left by one run (with
# KEEP_BENCH_DIR=1 and the same BENCH_DIR) is picked up by the next, so the costly
# compression is done once.
#
#   bench_image IMG BMAP SIZE FILL_MIB
#                                the realistic image (build_disk_image) and our bmap of
#                                it (needs OURS); reused when REUSE_IMAGE is not 0 and
#                                an earlier run left both, with a stamp that still
#                                matches the image (size, mtime, inode, SIZE, FILL_MIB)
#   bench_compressed IMG FMT     makes IMG.FMT (FMT: gz xz zst bz2 bz2s lz4 lzo tar.zst
#                                zip, compressed as BENCH_COMPRESSOR[FMT] says: a command
#                                given the image as its last argument, or, when it holds
#                                "$1", a bash script given the image as $1; it writes the
#                                result on stdout) unless an earlier run left one made
#                                from this very image with the same command
#   bench_run_rounds LABEL PREPARE NAME COMMAND [NAME COMMAND]...
#                                times the commands with hyperfine and leaves the merged
#                                results in DIR/LABEL.json. First every command runs once
#                                outside hyperfine (the warm-up, discarded): one that
#                                fails is reported (DIR/LABEL.NAME.err) and left out, and
#                                its name goes to DIR/LABEL.failed. Then ALTERNATE=1: RUNS
#                                rounds of one hyperfine call with --runs 1, every command
#                                once per round, the order rotated each round (as
#                                bench/copy.sh); ALTERNATE=0: one hyperfine call, --runs
#                                RUNS, each command's runs back to back. The load average
#                                before each round goes to DIR/load.txt.
#   bench_load_summary LABEL     "load average (1 min) at round starts: min-max" of LABEL
declare -A BENCH_COMPRESSOR=(
    [gz]="gzip -6 -c"
    [xz]="xz -6 -T0 -c"
    [zst]="zstd -3 -T0 -q -c"
    [bz2]="pbzip2 -9 -c"
    [bz2s]="bzip2 -9 -c"
    [lz4]="lz4 -1 -q -c"
    [lzo]="lzop -1 -c"
    # A GNU sparse tar (-S: the holes are not stored), compressed with zstd.
    [tar.zst]='tar -cS -C "$(dirname "$1")" -f - "$(basename "$1")" | zstd -3 -T0 -q -c'
    # zip to stdout (a streamed archive: sizes in data descriptors), deflate level 6.
    [zip]='cd "$(dirname "$1")" && zip -q -6 - "$(basename "$1")"'
)

_bench_stamp() { # FILE EXTRA: what identifies FILE's content (and how a derived file was made)
    printf '%s | %s\n' "$(stat -c '%s %y %i' "$1")" "$2"
}

bench_image() { # IMG BMAP SIZE FILL_MIB
    local img=$1 bmap=$2 size=$3 fill=$4
    if [[ ${REUSE_IMAGE:-1} != 0 && -f $img && -f $bmap && -f $bmap.stamp ]] \
        && [[ $(<"$bmap.stamp") == "$(_bench_stamp "$img" "$size $fill")" ]]; then
        say "reusing $img and $bmap from an earlier run"
        return
    fi
    rm -f "$bmap" "$bmap.stamp"
    build_disk_image "$img" "$size" "$fill"
    say "creating the bmap with our bmaptool create"
    bench_track_file "$bmap" "$bmap.stamp"
    "$OURS" create -q -o "$bmap" "$img"
    _bench_stamp "$img" "$size $fill" > "$bmap.stamp"
}

bench_compressed() { # IMG FMT
    local img=$1 fmt=$2 out=$1.$2 cmd stamp t0
    cmd=${BENCH_COMPRESSOR[$fmt]:-}
    [[ -n $cmd ]] || die "no compressor for format $fmt (known: ${!BENCH_COMPRESSOR[*]})"
    stamp=$(_bench_stamp "$img" "$cmd")
    if [[ -f $out && -f $out.stamp && $(<"$out.stamp") == "$stamp" ]]; then
        say "reusing $out ($cmd, $(mib "$(stat -c %s "$out")") MiB) from an earlier run"
        return
    fi
    bench_track_file "$out" "$out.stamp" "$out.part"
    rm -f "$out" "$out.stamp"
    say "compressing $(basename "$img") > $(basename "$out") with: $cmd (this takes a while)"
    t0=$SECONDS
    if [[ $cmd == *'$1'* ]]; then
        bash -c "set -o pipefail; $cmd" _ "$img" > "$out.part"
    else
        $cmd "$img" > "$out.part"
    fi
    mv "$out.part" "$out"
    printf '%s\n' "$stamp" > "$out.stamp"
    say "$(basename "$out"): $(mib "$(stat -c %s "$out")") MiB in $((SECONDS - t0)) s"
}

bench_run_rounds() { # LABEL PREPARE NAME COMMAND [NAME COMMAND]...
    local label=$1 prepare=$2
    shift 2
    local names=() cmds=() jsons=() args r i n rc
    : > "$DIR/$label.failed"
    bench_track_file "$DIR/$label.failed" "$DIR/$label.json" "$DIR/load.txt"
    say "$label: warm-up, every command once (discarded)"
    while (($#)); do
        printf '%s %s warm-up %s\n' "$label" "$1" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$DIR/load.txt"
        sh -c "$prepare"
        bench_track_file "$DIR/$label.$1.err"
        rc=0
        sh -c "$2" > /dev/null 2> "$DIR/$label.$1.err" || rc=$?
        if ((rc != 0)); then
            say "$label: '$1' FAILED (exit $rc), left out of the timings: $2"
            sed 's/^/    /' "$DIR/$label.$1.err" | tail -20 >&2
            printf '%s\t%s\t%s\n' "$1" "$rc" "$(tail -3 "$DIR/$label.$1.err" | tr '\n' ' ')" >> "$DIR/$label.failed"
        else
            names+=("$1")
            cmds+=("$2")
        fi
        shift 2
    done
    n=${#names[@]}
    ((n > 0)) || die "$label: every command failed"
    if [[ ${ALTERNATE:-1} == 1 ]]; then
        for ((r = 1; r <= RUNS; r++)); do
            args=()
            for ((i = 0; i < n; i++)); do
                args+=(-n "${names[(i + r) % n]}" "${cmds[(i + r) % n]}")
            done
            printf '%s round %d %s\n' "$label" "$r" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$DIR/load.txt"
            say "$label: round $r of $RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
            bench_track_file "$DIR/$label.r$r.json"
            hyperfine --style basic --runs 1 --prepare "$prepare" \
                --export-json "$DIR/$label.r$r.json" "${args[@]}" >&2
            jsons+=("$DIR/$label.r$r.json")
        done
    else
        args=()
        for ((i = 0; i < n; i++)); do args+=(-n "${names[i]}" "${cmds[i]}"); done
        printf '%s all 0 %s\n' "$label" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$DIR/load.txt"
        say "$label: hyperfine, $RUNS runs each, back to back"
        bench_track_file "$DIR/$label.all.json"
        hyperfine --style basic --runs "$RUNS" --prepare "$prepare" \
            --export-json "$DIR/$label.all.json" "${args[@]}" >&2
        jsons+=("$DIR/$label.all.json")
    fi
    printf '%s end - %s\n' "$label" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$DIR/load.txt"
    merge_hyperfine_json "$DIR/$label.json" "${jsons[@]}"
}

bench_load_summary() { # LABEL
    awk -v l="$1" '$1 == l && $2 != "end" && $3 != "warm-up" { v = $4 + 0
            if (n == 0 || v < lo) lo = v; if (n == 0 || v > hi) hi = v; n++ }
        $1 == l && $2 == "end" { e = $4 }
        END { if (n) printf "1-min load average at round starts %.2f-%.2f, at the end %s", lo, hi, e }' \
        "$DIR/load.txt"
}

# ------------------------------------------ loop devices, the raw read limit, HTTP
# Used by bench/run.sh, bench/verify.sh, bench/device.sh and bench/remote.sh.
#
#   bench_loop_device VAR BACKING BYTES [DIO]
#                                a loop device (no partition scan) over BACKING, a new
#                                file of BYTES (fallocated where it can be); DIO=1 turns
#                                on direct I/O on the backing file. Its path goes to the
#                                variable VAR; it is detached and BACKING removed at exit
#   bench_rawread_script PATH    writes a Python script to PATH: `python3 PATH BMAP DEV`
#                                reads exactly the mapped ranges of DEV with O_DIRECT,
#                                1 MiB at a time into one aligned buffer, hashing
#                                nothing (the raw read limit of a check)
#   bench_httpd_start WWW        starts crates/bmaptool/tests/fixtures/httpd.py (Range,
#                                keep-alive, GET /_stats) on 127.0.0.1 at a free port,
#                                serving WWW; sets HTTPD_URL (http://127.0.0.1:PORT) and
#                                HTTPD_PID. It stops when this script exits, or at
#                                bench_httpd_stop. The server refuses symbolic links out
#                                of WWW: serve hard links.
bench_loop_device() { # VAR BACKING BYTES [DIO]
    local -n _loop_var=$1
    local backing=$2 bytes=$3 dio=${4:-0}
    bench_track_file "$backing"
    rm -f "$backing"
    fallocate -l "$bytes" "$backing" 2>/dev/null || truncate -s "$bytes" "$backing"
    if [[ $dio == 1 ]]; then
        _loop_var=$(losetup -f --show --direct-io=on "$backing")
    else
        _loop_var=$(losetup -f --show "$backing")
    fi
    bench_track_loop "$_loop_var"
}

bench_rawread_script() { # PATH
    bench_track_file "$1"
    cat > "$1" <<'PYEOF'
import mmap, os, re, sys
bmap, dev = sys.argv[1:3]
text = open(bmap).read()
bs = int(re.search(r"<BlockSize>\s*(\d+)", text).group(1))
image = int(re.search(r"<ImageSize>\s*(\d+)", text).group(1))
ranges = [(int(a), int(b or a)) for a, b in
          re.findall(r"<Range[^>]*>\s*(\d+)\s*(?:-\s*(\d+))?\s*</Range>", text)]
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
total = 0
for a, b in ranges:
    off = a * bs // 4096 * 4096
    end = -(-min((b + 1) * bs, image) // 4096) * 4096
    while off < end:
        n = min(1 << 20, end - off)
        got = os.preadv(fd, [memoryview(buf)[:n]], off)
        if got <= 0:
            sys.exit(f"short read at {off}")
        off += got
        total += got
print(total)
PYEOF
}

HTTPD_PID=
HTTPD_URL=
bench_httpd_start() { # WWW
    local httpd=$BENCH_REPO/crates/bmaptool/tests/fixtures/httpd.py port
    [[ -f $httpd ]] || die "test HTTP server not found: $httpd"
    bench_track_file "$DIR/httpd.port" "$DIR/httpd.log"
    : > "$DIR/httpd.port"
    # The server exits when its standard input (our _BENCH_HTTPD_FD) reaches end of
    # file: at the latest when this script exits.
    exec {_BENCH_HTTPD_FD}> >(exec python3 "$httpd" --root "$1" --bind 127.0.0.1 \
        > "$DIR/httpd.port" 2> "$DIR/httpd.log")
    HTTPD_PID=$!
    for _ in $(seq 1 100); do
        [[ -s $DIR/httpd.port ]] && break
        sleep 0.1
    done
    port=$(head -1 "$DIR/httpd.port")
    [[ $port =~ ^[0-9]+$ ]] || die "the HTTP server did not start: $(cat "$DIR/httpd.log")"
    HTTPD_URL=http://127.0.0.1:$port
    say "HTTP server (pid $HTTPD_PID) at $HTTPD_URL serving $1"
}

bench_httpd_stop() {
    [[ -n $HTTPD_PID ]] || return 0
    exec {_BENCH_HTTPD_FD}>&-
    kill "$HTTPD_PID" 2>/dev/null || true
    HTTPD_PID=
}
