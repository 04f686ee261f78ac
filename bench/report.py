#!/usr/bin/env python3
"""bench/report.py - the Markdown report of bench/run.sh.

Usage: report.py DIR META FORMATS
  DIR      the scratch directory: GROUP.json (merged hyperfine results) and
           GROUP.failed (name, exit code, last lines of stderr) per group
  META     run.sh's JSON: the machine, the image, the tool versions, the loads
  FORMATS  the compressed formats measured, space-separated
Prints the report on stdout; exits 3 when one of our commands failed, else 0.
"""
import json
import os
import sys

DIR, META, FORMATS = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3].split()
MiB = 2**20


def load_group(label):
    path = os.path.join(DIR, f"{label}.json")
    res = {r["command"]: r for r in json.load(open(path))["results"]} if os.path.exists(path) else {}
    failed = {}
    fpath = os.path.join(DIR, f"{label}.failed")
    if os.path.exists(fpath):
        for line in open(fpath):
            if line.strip():
                name, rc, err = (line.rstrip("\n").split("\t") + ["", ""])[:3]
                failed[name] = (rc, err.strip())
    return res, failed


GROUPS = ["create", "file", "loop", "multi"] + FORMATS + ["http", "verify"]
DATA = {g: load_group(g) for g in GROUPS}


def med(group, name):
    r = DATA[group][0].get(name)
    return r["median"] if r else None


def failure(group, name):
    f = DATA[group][1].get(name)
    if not f:
        return "not run"
    rc, err = f
    err = err.replace("|", "/")[:90]
    return f"fails (exit {rc}): {err}" if err else f"fails (exit {rc})"


def limit_of(parts):
    """parts: [(label, seconds or None)]: the slowest stage, or None if one is missing."""
    if any(v is None for _, v in parts):
        return None, "not measured: " + ", ".join(l for l, v in parts if v is None)
    label, value = max(parts, key=lambda p: p[1])
    return value, label


HASH2 = ("SHA-256 / 2 cores", None if med("create", "sha256") is None else med("create", "sha256") / 2)
WFILE = ("O_DIRECT write", med("file", "write-file"))
DECODER_NAME = {"gz": "pigz -dc", "bz2": "pbzip2 -dc", "bz2s": "bzip2 -dc", "xz": "xz -T0 -dc",
                "lzo": "lzop -dc", "lz4": "lz4 -dc", "zst": "zstd -dc",
                "tar.zst": "zstd -dc / tar -xO", "zip": "funzip"}


def sum_limit(group_a, name_a, group_b, name_b, label):
    a, b = med(group_a, name_a), med(group_b, name_b)
    return (None, f"not measured: {label}") if a is None or b is None else (a + b, label)


def rows():
    """(case, group, ours name, (limit s, limit label), reference name or None)."""
    yield ("create", "create", "ours",
           limit_of([("SHA-256, 1 core", med("create", "sha256"))]), "reference")
    yield ("copy → file", "file", "ours", limit_of([WFILE, HASH2]), "reference")
    yield ("copy from stdin (pipe) → file", "file", "ours-stdin", limit_of([WFILE, HASH2]),
           "reference-stdin")
    yield ("copy → loop device", "loop", "ours",
           limit_of([("O_DIRECT write", med("loop", "write-loop")), HASH2]), "reference")
    yield ("copy --verify-written → loop device", "loop", "ours-verify-written",
           sum_limit("loop", "write-loop", "verify", "read-loop", "O_DIRECT write + read"), None)
    yield ("copy → 2 loop devices", "multi", "ours",
           limit_of([("2 O_DIRECT writes at once", med("multi", "write-both")), HASH2]), None)
    for fmt in FORMATS:
        yield (f"copy .{fmt} → file", fmt, "ours",
               limit_of([(DECODER_NAME.get(fmt, "decode"), med(fmt, "decode")), WFILE, HASH2]),
               "reference")
    yield ("copy over HTTP, raw (Range) → file", "http", "ours",
           limit_of([("curl of the mapped bytes", med("http", "curl-mapped")), WFILE, HASH2]),
           "reference")
    yield ("copy over HTTP, .zst → file", "http", "ours-zst",
           limit_of([("curl / zstd -dc", med("http", "curl-zst")), WFILE, HASH2]),
           "reference-zst")
    yield ("verify loop device", "verify", "ours",
           limit_of([("O_DIRECT read", med("verify", "read-loop")), HASH2]), None)


def main_table(out):
    bad = False
    out.append("| case | bmaptool median s | spread (min–max) s | limit median s | limit is |"
               " ratio to limit | reference median s | speed-up over reference |")
    out.append("|---|---:|---:|---:|---|---:|---:|---:|")
    for case, group, ours, (limit, limit_label), ref in rows():
        r = DATA[group][0].get(ours)
        if r is None:
            bad = True
            out.append(f"| {case} | **{failure(group, ours)}** | | | | | | |")
            continue
        m = r["median"]
        spread = f"{r['min']:.2f}–{r['max']:.2f}"
        lim = f"{limit:.2f}" if limit is not None else "—"
        ratio = f"{m / limit:.2f}" if limit else "—"
        if ref is None:
            ref_m, speed = "n/a (3.6 cannot)", "n/a"
        elif med(group, ref) is None:
            ref_m, speed = failure(group, ref), "n/a"
        else:
            ref_m, speed = f"{med(group, ref):.2f}", f"{med(group, ref) / m:.1f}×"
        out.append(f"| {case} | {m:.2f} | {spread} | {lim} | {limit_label} | {ratio} | {ref_m} |"
                   f" {speed} |")
    return bad


def header(out):
    m = META
    out.append("# bmaptool benchmark (bench/run.sh)")
    out.append("")
    quick = " **QUICK=1 smoke run: small image, not a measurement**" if m["quick"] == "1" else ""
    out.append(f"Run {m['date']} at commit {m['git']}, {m['minutes']} min in all "
               f"({m['prep_minutes']} min of it preparing: the build, the image and its compressed copies, "
               f"any of them reused from an earlier run with the same BENCH_DIR).{quick}")
    out.append("")
    out.append(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['kernel']}, "
               f"virtualisation: {m['virt']}")
    out.append(f"- Scratch disk: {m['disk']}; loop devices {m['loops']} (buffered) over files on it")
    out.append(f"- Load average (1, 5, 15 min) at the start {m['load_start']}, at the end "
               f"{m['load_end']}. The machine is shared: other work running during a round "
               "is noise in it (alternated rounds spread it over every command).")
    out.append(f"- Image: {m['size']} ({m['image_bytes']} bytes) sparse file, DOS label, ext4 with "
               f"{m['fill_mib']} MiB of files from /usr; {m['ranges']} bmap ranges, "
               f"{m['mapped'] / MiB:.1f} MiB mapped "
               f"({m['mapped'] / m['image_bytes'] * 100:.0f}% of the image)")
    sizes = ", ".join(f"{f} {s / MiB:.1f}" for f, s in m["sizes"].items())
    out.append(f"- Compressed copies (MiB): {sizes}")
    out.append(f"- Timing: hyperfine, a warm-up of every command (discarded), then {m['runs']} "
               "rounds of every command once, the order rotated each round; medians over the "
               "rounds. Sources warm in the page cache; each write ends with fsync.")
    out.append("- Versions:")
    for k, val in m["versions"].items():
        out.append(f"  - {k}: {val}")
    out.append("")


def legend(out):
    out.append("")
    out.append("Limit: the slowest stage the case cannot avoid, each measured alone in the same "
               "run: the O_DIRECT write of the mapped bytes (`dd oflag=direct`, 4 MiB writes), "
               "SHA-256 of them (`openssl dgst`, one core; halved where the work hashes on both "
               "cores), the system decoder alone to /dev/null, curl over loopback, the O_DIRECT "
               "read of the mapped byte count (`dd iflag=direct`, 1 MiB reads). Ratio = bmaptool / limit (1.00 = at the limit; below "
               "1 for create, which hashes on two cores). Speed-up = reference / bmaptool. "
               "n/a: bmap-tools 3.6 has no `verify`, no `--verify-written` and writes one "
               "destination per run. On a loaded machine, a one-thread command gets a share "
               "of the two cores like any other runnable thread: load slows one-thread tools "
               "(the reference's decoders, `funzip`, `lzop`) more than our multi-threaded "
               "copy; judge the ratios with the load figures above. The CPU times (user, sys) "
               "in the table below depend far less on the load than the wall times.")


def appendix(out):
    out.append("")
    out.append("## Every command")
    out.append("")
    out.append("| group | command | median s | min–max s | user s | sys s | runs |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for g in GROUPS:
        res, failed = DATA[g]
        order = lambda n: (0 if n.startswith("ours") else 1 if n.startswith("reference") else 2, n)
        for name, r in sorted(res.items(), key=lambda kv: order(kv[0])):
            out.append(f"| {g} | {name} | {r['median']:.3f} | {r['min']:.3f}–{r['max']:.3f} |"
                       f" {r['user']:.2f} | {r['system']:.2f} | {len(r['times'])} |")
        for name in failed:
            out.append(f"| {g} | {name} | {failure(g, name)} | | | | |")
    out.append("")
    out.append("Load per group (1-min average at the start of each round):")
    out.append("")
    for g in GROUPS:
        out.append(f"- {g}: {META['loads'].get(g, '?')}")


def main():
    out = []
    header(out)
    bad = main_table(out)
    legend(out)
    appendix(out)
    print("\n".join(out))
    sys.exit(3 if bad else 0)


main()
