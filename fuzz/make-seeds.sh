#!/bin/bash
# Writes the seed inputs of every fuzz target into fuzz/corpus/TARGET/seed-*: small real
# bmaps (made by our `bmaptool create`, and the older formats written here), keys and
# signatures made by gpg, images compressed by the real compressors, image locations.
# Run from anywhere; needs python3, gpg, gzip, bzip2, xz, lzop, lz4, zstd, tar and zip.
set -euo pipefail
fuzz=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz")
corpus=$fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$corpus"/{bmap_parse,signature,decoder,location}

# Images: a few data runs, holes, a partial last block (bytes from a seeded generator).
python3 - "$work" <<'EOF'
import random, sys, os
d = sys.argv[1]
def image(name, size, pieces, seed):
    rng = random.Random(seed)
    with open(os.path.join(d, name), "wb") as f:
        f.truncate(size)
        for off, n, kind in pieces:
            f.seek(off)
            f.write(rng.randbytes(n) if kind == "r" else b"bmap fuzz seed " * (n // 15))
image("small.img", 64 * 1024 + 123, [(0, 4096, "t"), (5 * 4096, 3000, "r"), (64 * 1024, 123, "r")], 1)
image("one.img", 1, [(0, 1, "r")], 2)
image("holes.img", 3 * 4096, [], 3)
image("tiny.img", 16 * 1024, [(0, 8192, "t"), (12288, 100, "r")], 4)
EOF
bmaptool() { cargo run -q --manifest-path "$root/Cargo.toml" -p bmaptool -- "$@"; }
for img in small one holes; do
    bmaptool create -q -o "$corpus/bmap_parse/seed-$img-2.0.bmap" "$work/$img.img"
done
bmaptool create -q --no-checksum -o "$corpus/bmap_parse/seed-small-nochecksum.bmap" "$work/small.img"

# Older formats and other checksum types, from the 2.0 bmap of small.img.
python3 - "$corpus/bmap_parse" "$work/small.img" <<'EOF'
import hashlib, re, sys
out, img = sys.argv[1], open(sys.argv[2], "rb").read()
src = open(out + "/seed-small-2.0.bmap").read()
ranges = re.findall(r'<Range chksum="[0-9a-f]+">\s*([0-9-]+)\s*</Range>', src)
def block_map(attr, algo):
    lines = []
    for r in ranges:
        a, _, b = r.partition("-")
        first, last = int(a), int(b or a)
        digest = hashlib.new(algo, img[first * 4096:(last + 1) * 4096]).hexdigest() if algo else ""
        at = f' {attr}="{digest}"' if algo else ""
        lines.append(f"        <Range{at}> {r} </Range>")
    return "\n".join(lines)
def write(name, version, attr, algo, self_elem, checksum_type):
    body = [f'<?xml version="1.0" ?>\n<bmap version="{version}">',
            f"    <ImageSize> {len(img)} </ImageSize>", "    <BlockSize> 4096 </BlockSize>",
            f"    <BlocksCount> {(len(img) + 4095) // 4096} </BlocksCount>",
            f"    <MappedBlocksCount> {sum(int(r.partition('-')[2] or r) - int(r.partition('-')[0]) + 1 for r in ranges)} </MappedBlocksCount>"]
    if checksum_type:
        body.append(f"    <ChecksumType> {algo} </ChecksumType>")
    if self_elem:
        body.append(f"    <{self_elem}> {'0' * len(hashlib.new(algo).hexdigest())} </{self_elem}>")
    body += ["    <BlockMap>", block_map(attr, algo), "    </BlockMap>", "</bmap>", ""]
    text = "\n".join(body)
    if self_elem:
        zeros = "0" * len(hashlib.new(algo).hexdigest())
        text = text.replace(zeros, hashlib.new(algo, text.encode()).hexdigest(), 1)
    open(f"{out}/seed-small-{name}.bmap", "w").write(text)
write("1.2", "1.2", "sha1", "sha1", None, False)
write("1.3", "1.3", "sha1", "sha1", "BmapFileSHA1", False)
write("1.4", "1.4", "chksum", "sha256", "BmapFileChecksum", True)
write("2.0-md5", "2.0", "chksum", "md5", "BmapFileChecksum", True)
write("2.0-sha512", "2.0", "chksum", "sha512", "BmapFileChecksum", True)
write("2.0-sha3_256", "2.0", "chksum", "sha3_256", "BmapFileChecksum", True)
write("2.0-blake2b", "2.0", "chksum", "blake2b", "BmapFileChecksum", True)
EOF

# Keys and signatures: an ed25519 and an RSA key, each input "keyring SEP signature SEP data".
export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg() { command gpg --batch --quiet --pinentry-mode loopback --passphrase '' "$@"; }
gpg --quick-gen-key 'Fuzz Seed <fuzz@example.org>' ed25519 sign never
gpg --quick-gen-key 'Fuzz RSA <rsa@example.org>' rsa2048 sign never
bmap=$corpus/bmap_parse/seed-small-2.0.bmap
gpg --export > "$work/keys.gpg"
gpg --armor --export > "$work/keys.asc"
gpg --local-user fuzz@example.org --detach-sign -o "$work/ed.sig" "$bmap"
gpg --local-user rsa@example.org --armor --detach-sign -o "$work/rsa.asc" "$bmap"
gpg --local-user fuzz@example.org --clearsign -o "$work/clear.asc" "$bmap"
gpg --local-user rsa@example.org --digest-algo SHA512 --clearsign -o "$work/clear-rsa.asc" "$bmap"
sep=$'\n--8<--fuzz--8<--\n'
seed() { # NAME KEYRING SIGNATURE [DATA]
    { cat "$2"; printf '%s' "$sep"; cat "$3"; if [ -n "${4:-}" ]; then printf '%s' "$sep"; cat "$4"; fi; } \
        > "$corpus/signature/seed-$1"
}
seed detached-binary "$work/keys.gpg" "$work/ed.sig" "$bmap"
seed detached-armored "$work/keys.asc" "$work/rsa.asc" "$bmap"
seed detached-keybox "$GNUPGHOME/pubring.kbx" "$work/ed.sig" "$bmap"
seed clearsigned "$work/keys.gpg" "$work/clear.asc"
seed clearsigned-sha512 "$work/keys.asc" "$work/clear-rsa.asc"

# Compressed and archived images; the first byte picks the name (bmap::fuzzing::DECODER_NAMES).
cd "$work"
img=tiny.img
name() { # INDEX FILE OUT
    { printf "\\x$(printf %02x "$1")"; cat "$2"; } > "$corpus/decoder/seed-$3"
}
gzip -9 -c $img > a.gz; name 1 a.gz gz
cat a.gz a.gz > b.gz; name 0 b.gz gz-two-members
bzip2 -c $img > a.bz2; name 2 a.bz2 bz2
xz -c $img > a.xz; name 3 a.xz xz
xz -c --check=sha256 --block-size=4096 $img > b.xz; name 0 b.xz xz-blocks
lzma -c $img > a.lzma; name 4 a.lzma lzma
lzop -c $img > a.lzo; name 5 a.lzo lzo
lz4 -c $img > a.lz4; name 6 a.lz4 lz4
lz4 -l -c $img > b.lz4; name 6 b.lz4 lz4-legacy
zstd -q -c $img > a.zst; name 7 a.zst zst
zstd -q -c --long=20 $img > b.zst; cat b.zst b.zst > c.zst; name 0 c.zst zst-two-frames
tar -cf a.tar $img; name 8 a.tar tar
tar -S -cf b.tar small.img; name 8 b.tar tar-gnu-sparse
tar --format=pax -S --sparse-version=1.0 -cf c.tar small.img; name 8 c.tar tar-pax-sparse
tar --format=pax -cf d.tar $img; name 0 d.tar tar-pax
gzip -c a.tar > a.tgz; name 1 a.tgz tar-gz
zstd -q -c b.tar > b.tzst; name 0 b.tzst tar-gnu-sparse-zst
zip -q -0 a.zip $img; name 9 a.zip zip-stored
zip -q -9 b.zip $img; name 9 b.zip zip-deflated
name 10 $img raw
printf '\x07' > "$corpus/decoder/seed-empty"

# Image locations, as given on the command line.
i=0
while read -r line; do
    printf '%s' "$line" > "$corpus/location/seed-$i"
    i=$((i + 1))
done <<'EOF'
disk.img.gz
/srv/images/.hidden.tar.xz
https://user:secret@example.org:8443/images/disk.img.zst?token=a%2Fb#frag
http://[::1]/a.b.c
ftp://mirror.example.org/pub/disk.tar.lzo
file:///tmp/disk.img.bz2
ssh://user@host:/path/to/disk.img.lz4
ssh://host/path/disk.zip
диск.img.tbz2
dir.d/file
https://example.org/
mailto:a@b
EOF
echo "seeds written under $corpus"
