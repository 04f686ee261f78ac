//! Black-box tests of the limits on hostile input (docs/limits.md): each hostile input
//! is made at test time, and the real binary must refuse it with one clear line, a
//! non-zero exit, no file left behind, and (for the memory ones) a bounded peak RSS
//! measured by GNU time.
//!
//! Tests that need GNU time, zstd, xz or a tmpfs mount skip when those are missing,
//! unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code)] // the copy tests' harness; this file uses part of it
mod copy_support;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use bmap::format::ChecksumKind;
use copy_support::*;
use test_support::need_tool;

/// `bmaptool ARGS...` under GNU time: its output and its peak RSS in bytes. `stdin`
/// is the file standard input comes from (`/dev/null` if `None`).
fn peak<S: AsRef<OsStr>>(args: &[S], stdin: Option<&Path>, dir: &Path) -> (Output, u64) {
    let rss = dir.join("rss");
    let input = fs::File::open(stdin.unwrap_or(Path::new("/dev/null"))).expect("stdin");
    let output = clean_command("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss)
        .arg(env!("CARGO_BIN_EXE_bmaptool"))
        .args(args)
        .stdin(input)
        .output()
        .expect("GNU time runs bmaptool");
    let kib: u64 = fs::read_to_string(&rss)
        .expect("GNU time wrote the peak")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a number of KiB");
    (output, kib * 1024)
}

fn need_time() -> bool {
    require(
        runs("/usr/bin/time", &["-f", "%M", "true"]),
        "GNU time (/usr/bin/time, Debian package time)",
    )
}

/// The one error line of a failed run, which must contain every needle.
#[track_caller]
fn refused(output: &Output, needles: &[&str]) -> String {
    assert_fails(output, needles)
}

/// A format 2.0 bmap of `ranges` one-block ranges without digests, every other block.
fn bmap_with_ranges(ranges: u64) -> String {
    let blocks = 2 * ranges;
    let mut text = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n<ImageSize>{}</ImageSize>\n\
         <BlockSize>4096</BlockSize>\n<BlocksCount>{blocks}</BlocksCount>\n\
         <MappedBlocksCount>{ranges}</MappedBlocksCount>\n<ChecksumType>sha256</ChecksumType>\n\
         <BmapFileChecksum>{}</BmapFileChecksum>\n<BlockMap>\n",
        blocks * 4096,
        "0".repeat(64)
    );
    text.reserve(20 * ranges as usize);
    for block in (0..blocks).step_by(2) {
        text += "<Range>";
        text += &block.to_string();
        text += "</Range>\n";
    }
    text += "</BlockMap>\n</bmap>\n";
    let digest = ChecksumKind::Sha256.digest(text.as_bytes()).to_hex();
    text.replacen(&"0".repeat(64), &digest, 1)
}

/// A bmap file over the 128 MiB cap is refused before a byte of it is read when it is
/// a regular file (a sparse 129 MiB file: instantly, in a few MB), and read only up to
/// the cap when it is a stream (`--bmap /dev/stdin` from `/dev/zero`, endless).
#[test]
fn a_bmap_over_the_size_cap_is_refused_and_a_stream_is_read_only_to_the_cap() {
    if !need_time() {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("tiny.img");
    fs::write(&image, b"x").expect("image");
    let dest = dir.path().join("out.img");
    let huge = dir.path().join("huge.bmap");
    fs::File::create(&huge)
        .and_then(|f| f.set_len((128 << 20) + 1))
        .expect("sparse bmap");
    let args = test_support::with_bmap(&huge, &image, &dest);
    let (output, rss) = peak(&args, None, dir.path());
    refused(&output, &["larger than 128.0 MiB", "bmap file"]);
    assert!(rss < 32 << 20, "a regular file was read: peak {rss} bytes");
    assert!(!dest.exists());

    let args = test_support::with_bmap(Path::new("/dev/stdin"), &image, &dest);
    let (output, rss) = peak(&args, Some(Path::new("/dev/zero")), dir.path());
    refused(&output, &["larger than 128.0 MiB", "bmap file"]);
    assert!(
        rss < (128 + 64) << 20,
        "the stream was read past its cap: peak {rss}"
    );
    assert!(!dest.exists());
}

/// 2^20 + 1 ranges (a 20 MB bmap without digests; the parser used to hold 4 million
/// such ranges in 1.3 GB) are refused before the XML is parsed: no DOM, no ranges.
#[test]
fn a_bmap_with_more_ranges_than_the_cap_is_refused_before_parsing() {
    if !need_time() {
        return;
    }
    let dir = tempdir();
    let bmap = dir.path().join("ranges.bmap");
    let text = bmap_with_ranges((1 << 20) + 1);
    fs::write(&bmap, &text).expect("bmap");
    let len = text.len() as u64;
    drop(text);
    let image = dir.path().join("tiny.img");
    fs::write(&image, b"x").expect("image");
    let dest = dir.path().join("out.img");
    let (output, rss) = peak(
        &test_support::with_bmap(&bmap, &image, &dest),
        None,
        dir.path(),
    );
    refused(&output, &["more than 1048576 ranges"]);
    assert!(
        rss < 2 * len + (32 << 20),
        "peak {rss} bytes for a {len}-byte bmap refused before parsing"
    );
    assert!(!dest.exists());
}

/// Entity bombs (billion laughs, quadratic blow-up: any DTD that declares something is
/// refused), a million nested elements and an element soup past the node cap (5
/// million empty elements in 20 MB: 370 MB before the cap, and more the longer it is):
/// each refused in a moment, in bounded memory, with one line.
#[test]
fn xml_bombs_are_refused_quickly_in_bounded_memory() {
    if !need_time() {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("tiny.img");
    fs::write(&image, b"x").expect("image");
    let dest = dir.path().join("out.img");
    let mut laughs =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE bmap [\n<!ENTITY l0 \"lol\">\n");
    for i in 1..10 {
        laughs += &format!(
            "<!ENTITY l{i} \"{}\">\n",
            format!("&l{};", i - 1).repeat(10)
        );
    }
    laughs += "]>\n<bmap version=\"2.0\"><ImageSize>&l9;</ImageSize></bmap>\n";
    let quadratic = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE bmap [<!ENTITY a \"{}\">]>\n<bmap version=\"2.0\">\
         <ImageSize>{}</ImageSize></bmap>\n",
        "a".repeat(50_000),
        "&a;".repeat(50_000)
    );
    let deep = format!(
        "<?xml version=\"1.0\"?>\n<bmap version=\"2.0\">{}{}</bmap>\n",
        "<a>".repeat(1_000_000),
        "</a>".repeat(1_000_000)
    );
    let soup = format!(
        "<?xml version=\"1.0\"?>\n<bmap version=\"2.0\">{}</bmap>\n",
        "<a/>".repeat(5_000_000)
    );
    for (name, text, needle) in [
        ("laughs", laughs, "not a valid XML file"),
        ("quadratic", quadratic, "not a valid XML file"),
        ("deep", deep, "no <BlockSize> element"),
        ("soup", soup, "more than 4194304 nodes"),
    ] {
        let bmap = dir.path().join(format!("{name}.bmap"));
        fs::write(&bmap, &text).expect("bmap");
        let started = std::time::Instant::now();
        let (output, rss) = peak(
            &test_support::with_bmap(&bmap, &image, &dest),
            None,
            dir.path(),
        );
        refused(&output, &[needle]);
        // The node cap bounds the soup (about 100 bytes a node at most, its vector
        // grown by doubling); the others stay near their size.
        let bound = match name {
            "soup" => 480 << 20,
            _ => 12 * text.len() as u64 + (64 << 20),
        };
        assert!(
            rss < bound,
            "{name}: peak {rss} bytes for {} bytes",
            text.len()
        );
        assert!(
            started.elapsed().as_secs() < 60,
            "{name} took {:?}",
            started.elapsed()
        );
        assert!(!dest.exists());
    }
}

/// A zstd stream of 1 GiB of zeros (tiny compressed) copied with --nobmap to a 32 MiB
/// tmpfs stops at the room the file system had, says so, and leaves no file; an
/// existing file it replaced is left empty, not half-written.
#[test]
fn an_endless_stream_without_a_bmap_stops_at_the_free_space_and_leaves_nothing() {
    if !need_mount() || !need_tool("zstd") {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("zeros.zst");
    let mut zstd = Command::new("zstd")
        .args(["-q", "-1", "-c"])
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&image).expect("image"))
        .spawn()
        .expect("zstd runs");
    let mut input = zstd.stdin.take().expect("piped");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        input.write_all(&zeros).expect("feed zstd");
    }
    drop(input);
    assert!(zstd.wait().expect("zstd ends").success());
    let tmpfs = Mount::tmpfs("size=32m");
    let dest = tmpfs.path().join("out.img");
    let output = run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    refused(
        &output,
        &[
            "size is unknown",
            "grown past the 33554432 bytes",
            "free some space",
        ],
    );
    assert_eq!(fs::read_dir(tmpfs.path()).expect("list").count(), 0);
    let existing = tmpfs.path().join("existing.img");
    write_filled(&existing, 1 << 20, 0xFF);
    let output = run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        image.as_os_str(),
        existing.as_os_str(),
    ]);
    refused(&output, &["size is unknown", "free some space"]);
    assert_eq!(fs::metadata(&existing).expect("kept").len(), 0);
}

/// The same endless stream into a 16 MiB loop device: bounded by the device's size,
/// and said so in one line (it was `No space left on device`).
#[test]
fn an_endless_stream_into_a_block_device_stops_at_its_end_saying_so() {
    if !need_loop_devices() || !need_tool("zstd") {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("zeros.zst");
    compress_zeros("zstd", &["-q", "-1", "-c"], 64 << 20, &image);
    let device = LoopDevice::new(16 << 20, 0);
    let output = run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        image.as_os_str(),
        device.path().as_os_str(),
    ]);
    refused(
        &output,
        &[
            "the image is larger than block device",
            "16777216 bytes",
            "it does not fit",
        ],
    );
}

/// Compresses `len` zero bytes with `tool ARGS...` into `path`.
fn compress_zeros(tool: &str, args: &[&str], len: usize, path: &Path) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(path).expect("output"))
        .spawn()
        .expect("the compressor runs");
    let mut input = child.stdin.take().expect("piped");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..len >> 20 {
        input.write_all(&zeros).expect("feed");
    }
    drop(input);
    assert!(child.wait().expect("ends").success(), "{tool} {args:?}");
}

/// A zstd stream made with `--long=31` (a 2 GiB window) and an xz stream with a 256
/// MiB dictionary are refused from their headers, naming the window and the 128 MiB
/// limit and the option past it, in a few MB; `--max-window` lets them through.
#[test]
fn a_decoding_window_over_the_limit_is_refused_from_the_header_and_max_window_raises_it() {
    if !need_time() || !need_tool("zstd") || !need_tool("xz") {
        return;
    }
    let dir = tempdir();
    let zst = dir.path().join("long.img.zst");
    compress_zeros(
        "zstd",
        &["-q", "-1", "--long=31", "--ultra", "-c"],
        32 << 20,
        &zst,
    );
    let xz = dir.path().join("dict.img.xz");
    compress_zeros(
        "xz",
        &["-T1", "--lzma2=preset=0,dict=256MiB", "-c"],
        32 << 20,
        &xz,
    );
    let dest = dir.path().join("out.img");
    for (image, needle) in [
        (&zst, "asks for a 2.0 GiB window (2147483648 bytes)"),
        (&xz, "asks for a 256.0 MiB dictionary (268435456 bytes)"),
    ] {
        let args = [
            OsStr::new("copy"),
            OsStr::new("--nobmap"),
            image.as_os_str(),
            dest.as_os_str(),
        ];
        let (output, rss) = peak(&args, None, dir.path());
        refused(
            &output,
            &[needle, "more than the limit of 128.0 MiB", "--max-window"],
        );
        assert!(
            rss < 64 << 20,
            "peak {rss} bytes refusing {}",
            image.display()
        );
        assert!(!dest.exists());
        let output = run([
            OsStr::new("copy"),
            OsStr::new("--nobmap"),
            OsStr::new("--max-window"),
            OsStr::new("2G"),
            image.as_os_str(),
            dest.as_os_str(),
        ]);
        assert_ok(&output);
        assert_eq!(fs::metadata(&dest).expect("copied").len(), 32 << 20);
        fs::remove_file(&dest).expect("remove");
    }
}

/// A ustar archive of one member `disk.img` holding `data`, its size field `size`
/// (12 bytes, as written in the header: octal or base-256), then the end blocks.
fn tar_with_size_field(data: &[u8], size: [u8; 12]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..8].copy_from_slice(b"disk.img");
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(&size);
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512) + 1024, 0);
    tar
}

fn octal(size: u64) -> [u8; 12] {
    format!("{size:011o}\0")
        .into_bytes()
        .try_into()
        .expect("12 bytes")
}

/// Tar headers that lie about the member's size: each a clear error, no panic, no file
/// left behind, never a silent short image.
#[test]
fn tar_headers_that_lie_about_sizes_are_refused() {
    let dir = tempdir();
    let data = random_bytes(7, 3 * 4096);
    // Base-256 (first byte's top bit set), all ones: -1.
    let negative = [0xffu8; 12];
    let cases = [
        (
            "longer than the stream",
            octal(100 * 3 * 4096),
            "ends inside the image",
        ),
        ("shorter than the data", octal(100), "corrupt tar header"),
        ("negative base-256", negative, "bad size in a tar header"),
    ];
    for (name, size, needle) in cases {
        let image = dir.path().join(format!("{}.tar", name.replace(' ', "-")));
        fs::write(&image, tar_with_size_field(&data, size)).expect("tar");
        let dest = dir.path().join("out.img");
        let output = run([
            OsStr::new("copy"),
            OsStr::new("--nobmap"),
            image.as_os_str(),
            dest.as_os_str(),
        ]);
        let text = refused(&output, &[needle]);
        assert!(!dest.exists(), "{name}: a file was left: {text}");
    }
    // The honest header copies the member whole (the harness above is right).
    let image = dir.path().join("honest.tar");
    fs::write(&image, tar_with_size_field(&data, octal(data.len() as u64))).expect("tar");
    let dest = dir.path().join("out.img");
    assert_ok(&run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        image.as_os_str(),
        dest.as_os_str(),
    ]));
    assert_eq!(read(&dest), data);
}

/// Zip headers that lie about sizes: the local header's size larger than the data, its
/// sizes 0xFFFFFFFF without a ZIP64 field, and a central directory that disagrees with
/// the local header (read as a stream, the local header is followed; the central
/// directory is checked at the end). Each refused, no file left.
#[test]
fn zip_headers_that_lie_about_sizes_are_refused() {
    if !need_tool("zip") {
        return;
    }
    let dir = tempdir();
    let data = random_bytes(9, 3 * 4096);
    fs::write(dir.path().join("disk.img"), &data).expect("member");
    succeeds(
        Command::new("zip")
            .args(["-q", "archive.zip", "disk.img"])
            .current_dir(dir.path()),
    );
    let honest = read(&dir.path().join("archive.zip"));
    let central = honest
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .expect("a central directory record");
    let patch = |at: usize, value: u32| {
        let mut bytes = honest.clone();
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        bytes
    };
    let len = data.len() as u32;
    let mut all_ones = patch(18, u32::MAX);
    all_ones[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases = [
        (
            "local size doubled",
            patch(22, 2 * len),
            "the archive says 24576",
        ),
        // Random data is stored: the compressed size (all ones) runs past the archive.
        (
            "local sizes all ones",
            all_ones,
            "the zip archive ends inside the image",
        ),
        (
            "central size halved",
            patch(central + 24, len / 2),
            "contradicts itself",
        ),
    ];
    for (name, bytes, needle) in cases {
        let image = dir.path().join(format!("{}.zip", name.replace(' ', "-")));
        fs::write(&image, bytes).expect("zip");
        let dest = dir.path().join("out.img");
        let output = run([
            OsStr::new("copy"),
            OsStr::new("--nobmap"),
            image.as_os_str(),
            dest.as_os_str(),
        ]);
        let text = refused(&output, &[needle]);
        assert!(!dest.exists(), "{name}: a file was left: {text}");
    }
    let dest = dir.path().join("out.img");
    assert_ok(&run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        dir.path().join("archive.zip").as_os_str(),
        dest.as_os_str(),
    ]));
    assert_eq!(read(&dest), data);
}

/// A pax 1.0 sparse tar (GNU tar) whose sparse map is edited so that a region overlaps
/// the one before it, or runs past the member's real size: refused before writing.
#[test]
fn a_sparse_tar_map_that_overlaps_or_runs_past_the_real_size_is_refused() {
    if !need_tool("tar") {
        return;
    }
    let dir = tempdir();
    let member = dir.path().join("disk.img");
    {
        let file = fs::File::create(&member).expect("member");
        use std::os::unix::fs::FileExt;
        file.write_all_at(&random_bytes(3, 16384), 0)
            .expect("write");
        file.write_all_at(&random_bytes(4, 4096), 65536)
            .expect("write");
    }
    succeeds(
        Command::new("tar")
            .args([
                "--sparse",
                "--format=pax",
                "--sparse-version=1.0",
                "-cf",
                "s.tar",
                "disk.img",
            ])
            .current_dir(dir.path()),
    );
    let honest = read(&dir.path().join("s.tar"));
    let map = b"3\n0\n16384\n65536\n4096\n";
    let at = honest
        .windows(map.len())
        .position(|w| w == map)
        .expect("GNU tar wrote the pax 1.0 sparse map");
    for (name, offset) in [("overlapping", b"08192"), ("past the end", b"99999")] {
        let mut bytes = honest.clone();
        bytes[at + 10..at + 15].copy_from_slice(offset);
        let image = dir.path().join(format!("{}.tar", name.replace(' ', "-")));
        fs::write(&image, bytes).expect("tar");
        let dest = dir.path().join("out.img");
        let output = run([
            OsStr::new("copy"),
            OsStr::new("--nobmap"),
            image.as_os_str(),
            dest.as_os_str(),
        ]);
        refused(
            &output,
            &["a sparse map with overlapping or out-of-file regions"],
        );
        assert!(!dest.exists(), "{name}: a file was left");
    }
}
