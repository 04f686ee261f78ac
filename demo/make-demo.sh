#!/usr/bin/env bash
# Rebuilds the demo that the README's first command flashes: a small GPT-partitioned
# disk image with an ext4 file system holding real files (the sources of this project's
# bmap library, MIT OR Apache-2.0), its bmap made by this repository's
# `bmaptool create`, the image compressed with xz, a detached OpenPGP signature of the
# bmap by a key generated for the demo, and that key's public half (armored).
#
# Needs no root and no mount: sfdisk writes the partition table into the file and
# `mkfs.ext4 -d` builds the file system at the partition's offset. Needs cargo, sfdisk
# (fdisk), mkfs.ext4/e2fsck/debugfs (e2fsprogs, 1.43 or newer), xz and gpg.
#
# A new key is made on every run; its secret half lives only in a temporary GnuPG home
# that is deleted at the end, so nobody can sign another bmap with it.
#
# Usage: demo/make-demo.sh        (writes demo/demo.img.xz, demo/demo.img.bmap,
#                                  demo/demo.img.bmap.asc and demo/demo-key.asc)
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo

for tool in cargo sfdisk mkfs.ext4 e2fsck debugfs xz gpg gpgv; do
    command -v "$tool" >/dev/null || { echo "make-demo.sh: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d)
export GNUPGHOME="$work/gnupg"
cleanup() {
    # Stop the agent this script's GnuPG home started, then forget the secret key.
    [ -d "$GNUPGHOME" ] && gpgconf --kill gpg-agent 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Fixed dates and identifiers: the same sources give the same image bytes. The date is
# the last commit that changed what goes into the file system.
inputs=(crates/bmap/src demo/make-demo.sh)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct -- "${inputs[@]}" 2>/dev/null || echo 1700000000)}
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
disk_id=5b1f9c3e-7a52-4c47-9d0e-6d656d6f2d31
part_id=5b1f9c3e-7a52-4c47-9d0e-6d656d6f2d32
fs_id=5b1f9c3e-7a52-4c47-9d0e-6d656d6f2d33

mib=$((1024 * 1024))
image_size=$((64 * mib))    # the whole disk
part_start=$((1 * mib))     # sector 2048, the usual alignment
part_size=$((62 * mib))     # leaves room for the backup GPT at the end

echo "--- the files"
root="$work/root"
mkdir -p "$root/src"
cp -r "${inputs[0]}" "$root/src/bmap"
cat >"$root/README.txt" <<'EOF'
This file system is the demo image of bmaptool (Rust), flashed by the first command
of the project's README. It holds the sources of the project's bmap library (MIT OR
Apache-2.0), so that the image has real files in it.

The image is sparse: only the blocks that hold the partition table and this file
system's data and metadata are mapped, and its bmap lists them. `bmaptool copy`
writes just those blocks and checks each range against its SHA-256.

Rebuild it with demo/make-demo.sh in the repository.
EOF
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
chmod -R u=rwX,go=rX "$root"

echo "--- the disk image: GPT, one Linux partition, ext4 populated with mkfs.ext4 -d"
image="$work/demo.img"
truncate -s "$image_size" "$image"
sfdisk --quiet "$image" <<EOF
label: gpt
label-id: $disk_id
first-lba: 2048
start=$((part_start / 512)), size=$((part_size / 512)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$part_id, name="demo-root"
EOF
mkfs.ext4 -q -F -b 4096 -L demo-root -U "$fs_id" \
    -E "offset=$part_start,hash_seed=$fs_id,root_owner=0:0" \
    -d "$root" "$image" "$((part_size / 1024))k"

# mkfs.ext4 -d copies each file's times, and reading the files moved their atime while
# ctime cannot be set from outside: pin all four in the file system. e2fsprogs opens a
# file system at an offset as "FILE?offset=N".
fs="$image?offset=$part_start"
(cd "$root" && find . | sed 's|^\.||; s|^$|/|') | while read -r path; do
    for field in atime mtime ctime crtime; do
        echo "set_inode_field \"$path\" $field @$SOURCE_DATE_EPOCH"
    done
done >"$work/times"
debugfs -w -f "$work/times" "$fs" >/dev/null 2>"$work/debugfs.log"
if grep -v '^debugfs [0-9]' "$work/debugfs.log" >&2; then
    echo "make-demo.sh: debugfs could not set the times" >&2
    exit 1
fi

# Check what was built: the partition table, the file system, a file read back.
sfdisk --dump "$image" | grep -q "start=        2048, size=      126976" \
    || { sfdisk --dump "$image" >&2; echo "make-demo.sh: unexpected partition table" >&2; exit 1; }
fsck=$(e2fsck -fn "$fs" 2>&1) || { echo "$fsck" >&2; exit 1; }
debugfs -R "cat /README.txt" "$fs" 2>/dev/null | cmp - "$root/README.txt"

echo "--- the bmap, by this repository's bmaptool create"
cargo build --quiet -p bmaptool
bmaptool=$(cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/bmaptool
"$bmaptool" create -o "$out/demo.img.bmap" "$image"

echo "--- xz"
xz -6e -T1 -c "$image" >"$out/demo.img.xz"

echo "--- a signing key for the demo, the detached signature, the public key"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-gen-key "bmaptool demo (signs the demo bmap only) <demo@bmaptool.invalid>" \
    ed25519 sign never
gpg --batch --quiet --yes --armor --export --output "$out/demo-key.asc"
gpg --batch --quiet --yes --armor --detach-sign --output "$out/demo.img.bmap.asc" \
    "$out/demo.img.bmap"
gpg --batch --quiet --yes --dearmor --output "$work/demo-key.gpg" "$out/demo-key.asc"
gpgv --quiet --keyring "$work/demo-key.gpg" "$out/demo.img.bmap.asc" "$out/demo.img.bmap"

echo "--- the README's first command, with this build"
"$bmaptool" copy --keyring "$out/demo-key.asc" "$out/demo.img.xz" "$work/flashed.img"
cmp "$image" "$work/flashed.img"

ls -l "$out"
