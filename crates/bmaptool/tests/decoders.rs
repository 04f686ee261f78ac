//! Black-box tests of the decoders where they meet the standard tools: inputs that
//! `gzip`, `lz4` and `xz` accept or refuse are accepted or refused here too (the tool
//! is the oracle, run on the same file in the same test); bzip2 files of many streams
//! (pbzip2) decode on all cores to the bytes `pbzip2 -dc` gives; and a compressed
//! image that declares its size (xz index, zstd frame header) is refused before
//! anything is written when the destination device is too small for it.
//!
//! The images are made here (random data in a sparse file, its bmap by our `create`).
//! A missing tool or the lack of loop devices skips a test with a note; with
//! `BMAPTOOL_TEST_STRICT=1` (CI) it fails instead.

#[allow(dead_code, reason = "each test binary uses part of the shared harness")]
mod copy_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use copy_support::{
    LoopDevice, MIB, assert_fails, assert_ok, need_loop_devices, random_bytes, read, require, run,
    runs, stderr, tempdir,
};

/// Whether `tool` is installed (it answers `--version` or `-V`).
#[track_caller]
fn need_tool(tool: &str) -> bool {
    require(
        runs(tool, &["--version"]) || runs(tool, &["-V"]),
        &format!("the {tool} tool"),
    )
}

/// A sparse image of `len` bytes with random data in a few places, and its bmap (made
/// by our `create`).
fn image(dir: &Path, len: u64, seed: u64) -> (PathBuf, PathBuf, Vec<u8>) {
    let path = dir.join(format!("image-{seed}.img"));
    let mut bytes = vec![0u8; usize::try_from(len).expect("a small image")];
    let pieces = [
        (0, 64 << 10),
        (len / 3, 300 << 10),
        (len - (40 << 10), 40 << 10),
    ];
    for (i, &(at, n)) in pieces.iter().enumerate() {
        let at = usize::try_from(at).expect("small");
        bytes[at..at + n].copy_from_slice(&random_bytes(seed + i as u64, n));
    }
    let file = fs::File::create(&path).expect("create the image");
    file.set_len(len).expect("size the image");
    for &(at, n) in &pieces {
        let at_usize = usize::try_from(at).expect("small");
        std::os::unix::fs::FileExt::write_all_at(&file, &bytes[at_usize..at_usize + n], at)
            .expect("write the image");
    }
    let bmap = dir.join(format!("image-{seed}.bmap"));
    assert_ok(&run([
        "create".as_ref(),
        "-o".as_ref(),
        bmap.as_os_str(),
        path.as_os_str(),
    ]));
    (path, bmap, bytes)
}

/// Runs `argv` with `input` as standard input; its standard output.
fn tool_stdout(argv: &[&str], input: &Path) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(fs::File::open(input).expect("open the tool's input"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// `argv` (compressing standard input to standard output) applied to `input`.
fn compress(argv: &[&str], input: &Path, out: &Path) -> Vec<u8> {
    let output = tool_stdout(argv, input);
    assert!(output.status.success(), "{argv:?} failed");
    fs::write(out, &output.stdout).expect("write the compressed file");
    output.stdout
}

/// `bmaptool copy --nobmap IMAGE DEST`.
fn copy_nobmap(image: &Path, dest: &Path) -> Output {
    run([
        "copy".as_ref(),
        "--nobmap".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ])
}

// ---------------------------------------------------------------------------------
// What the standard tools accept and refuse

#[test]
fn gzip_followed_by_zero_padding_is_accepted_with_a_notice_as_gzip_accepts_it() {
    if !need_tool("gzip") {
        return;
    }
    let dir = tempdir();
    let (raw, _, bytes) = image(dir.path(), 2 * MIB, 1);
    let gz = compress(&["gzip", "-c"], &raw, &dir.path().join("plain.gz"));
    // A tape or dd pads to its block size.
    let padded = dir.path().join("padded.img.gz");
    fs::write(&padded, [gz.as_slice(), &[0u8; 10240 - 17]].concat()).expect("write");

    let oracle = Command::new("gzip")
        .arg("-t")
        .arg(&padded)
        .output()
        .expect("gzip -t");
    assert!(
        oracle.status.success(),
        "gzip -t refuses zero padding: {oracle:?}"
    );

    let dest = dir.path().join("dest.img");
    let out = copy_nobmap(&padded, &dest);
    assert_ok(&out);
    assert_eq!(read(&dest), bytes);
    let text = stderr(&out);
    let notice = text
        .lines()
        .find(|l| l.contains("10223 zero bytes"))
        .unwrap_or_else(|| panic!("no notice of the padding:\n{text}"));
    assert!(notice.contains("gzip"), "{notice}");
}

#[test]
fn data_after_the_last_gzip_member_is_refused_with_what_follows_it() {
    if !need_tool("gzip") {
        return;
    }
    let dir = tempdir();
    let (raw, _, _) = image(dir.path(), MIB, 2);
    let gz = compress(&["gzip", "-c"], &raw, &dir.path().join("plain.gz"));
    for (name, tail, needle) in [
        ("garbage", &b"garbage"[..], "not gzip"),
        (
            "zeros-then-data",
            b"\0\0\0\0\0\0x",
            "6 zero bytes and then data",
        ),
    ] {
        let broken = dir.path().join(format!("{name}.img.gz"));
        fs::write(&broken, [gz.as_slice(), tail].concat()).expect("write");
        // gzip only warns ("trailing garbage ignored", exit status 2): not a success.
        let oracle = Command::new("gzip")
            .arg("-t")
            .arg(&broken)
            .output()
            .expect("gzip -t");
        assert_ne!(oracle.status.code(), Some(0), "{name}: gzip -t: {oracle:?}");
        let dest = dir.path().join("dest.img");
        assert_fails(&copy_nobmap(&broken, &dest), &["gzip", needle]);
        assert!(!dest.exists(), "{name}: the destination was left behind");
    }
}

#[test]
fn a_legacy_lz4_stream_followed_by_a_current_frame_is_accepted_as_lz4_accepts_it() {
    if !need_tool("lz4") {
        return;
    }
    let dir = tempdir();
    let (raw, _, bytes) = image(dir.path(), 2 * MIB, 3);
    let legacy = compress(&["lz4", "-q", "-l", "-c"], &raw, &dir.path().join("l.lz4"));
    let current = compress(&["lz4", "-q", "-c"], &raw, &dir.path().join("c.lz4"));
    let joined = dir.path().join("joined.img.lz4");
    fs::write(&joined, [legacy, current].concat()).expect("write");

    let oracle = tool_stdout(&["lz4", "-dc"], &joined);
    assert!(oracle.status.success(), "lz4 -dc refuses it: {oracle:?}");
    let expected = [bytes.as_slice(), &bytes].concat();
    assert!(oracle.stdout == expected, "lz4 -dc decodes both streams");

    let dest = dir.path().join("dest.img");
    assert_ok(&copy_nobmap(&joined, &dest));
    assert!(
        read(&dest) == expected,
        "the destination holds both streams"
    );
}

#[test]
fn a_legacy_lz4_stream_followed_by_zero_bytes_is_refused_as_lz4_refuses_it() {
    if !need_tool("lz4") {
        return;
    }
    let dir = tempdir();
    let (raw, _, _) = image(dir.path(), MIB, 4);
    let legacy = compress(&["lz4", "-q", "-l", "-c"], &raw, &dir.path().join("l.lz4"));
    let padded = dir.path().join("padded.img.lz4");
    fs::write(&padded, [legacy.as_slice(), &[0u8; 512]].concat()).expect("write");
    let oracle = tool_stdout(&["lz4", "-dc"], &padded);
    assert!(
        !oracle.status.success(),
        "lz4 -dc accepts it now: {oracle:?}"
    );
    let dest = dir.path().join("dest.img");
    assert_fails(&copy_nobmap(&padded, &dest), &["lz4", "size 0"]);
    assert!(!dest.exists());
}

#[test]
fn lzma_with_trailing_data_is_refused_as_xz_refuses_it() {
    if !need_tool("xz") {
        return;
    }
    let dir = tempdir();
    let (raw, _, bytes) = image(dir.path(), MIB, 5);
    let lzma = compress(
        &["xz", "--format=lzma", "-c"],
        &raw,
        &dir.path().join("good.img.lzma"),
    );
    let good = dir.path().join("good.img.lzma");
    let oracle = Command::new("xz")
        .arg("-t")
        .arg(&good)
        .output()
        .expect("xz -t");
    assert!(oracle.status.success(), "xz -t refuses the plain file");
    let dest = dir.path().join("dest.img");
    assert_ok(&copy_nobmap(&good, &dest));
    assert_eq!(read(&dest), bytes);
    fs::remove_file(&dest).expect("remove");

    for (name, tail) in [
        ("garbage", &b"junk"[..]),
        ("zeros", &[0u8; 8][..]),
        ("another stream", &lzma[..]),
    ] {
        let broken = dir.path().join("broken.img.lzma");
        fs::write(&broken, [lzma.as_slice(), tail].concat()).expect("write");
        let oracle = Command::new("xz")
            .arg("-t")
            .arg(&broken)
            .output()
            .expect("xz -t");
        assert!(!oracle.status.success(), "{name}: xz -t accepts it now");
        assert_fails(
            &copy_nobmap(&broken, &dest),
            &["lzma", "data follows the end of the lzma stream"],
        );
        assert!(!dest.exists(), "{name}: the destination was left behind");
    }
}

// ---------------------------------------------------------------------------------
// bzip2 on all cores

#[test]
fn pbzip2_streams_decode_on_all_cores_to_what_pbzip2_gives_and_a_cut_file_fails() {
    if !need_tool("pbzip2") || !need_tool("bzip2") {
        return;
    }
    let dir = tempdir();
    let (raw, bmap, bytes) = image(dir.path(), 6 * MIB, 6);
    // -b1: 100 kB blocks, one stream each: dozens of streams.
    let packed = dir.path().join("image.img.bz2");
    let data = compress(&["pbzip2", "-c", "-b1", "-p2"], &raw, &packed);
    let oracle = tool_stdout(&["pbzip2", "-dc"], &packed);
    assert!(
        oracle.status.success() && oracle.stdout == bytes,
        "pbzip2 -dc"
    );

    let dest = dir.path().join("dest.img");
    assert_ok(&run([
        "copy".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        packed.as_os_str(),
        dest.as_os_str(),
    ]));
    assert!(read(&dest) == bytes, "the copy differs from the image");
    fs::remove_file(&dest).expect("remove");

    let cut = dir.path().join("cut.img.bz2");
    fs::write(&cut, &data[..data.len() - 5]).expect("write");
    let oracle = Command::new("bzip2")
        .arg("-t")
        .arg(&cut)
        .output()
        .expect("bzip2 -t");
    assert!(!oracle.status.success(), "bzip2 -t accepts a cut file");
    assert_fails(&copy_nobmap(&cut, &dest), &["bzip2"]);
    assert!(!dest.exists());
}

// ---------------------------------------------------------------------------------
// Declared sizes against the destination

/// A device smaller than the image, filled with a pattern that must survive.
const FILL: u8 = 0xa5;

#[track_caller]
fn assert_untouched(device: &LoopDevice, len: u64) {
    let bytes = read(device.backing());
    assert_eq!(bytes.len() as u64, len);
    assert!(bytes.iter().all(|&b| b == FILL), "the device was written");
}

#[test]
fn a_zst_and_an_xz_that_declare_their_size_are_refused_before_writing_on_a_small_device() {
    if !need_loop_devices() || !need_tool("zstd") || !need_tool("xz") {
        return;
    }
    let dir = tempdir();
    let (raw, bmap, _) = image(dir.path(), 4 * MIB, 7);
    // zstd writes the content size in the frame header when it compresses a file.
    let zst = dir.path().join("image.img.zst");
    let status = Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(&zst)
        .arg(&raw)
        .status()
        .expect("zstd");
    assert!(status.success());
    let listed = Command::new("zstd")
        .arg("-lv")
        .arg(&zst)
        .output()
        .expect("zstd -lv");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("4194304 B"),
        "zstd did not record the content size: {listed:?}"
    );
    let xz = dir.path().join("image.img.xz");
    compress(&["xz", "-T2", "--block-size=1MiB", "-c"], &raw, &xz);

    let small = 2 * MIB;
    let device = LoopDevice::new(small, FILL);
    for image in [&zst, &xz] {
        let out = copy_nobmap(image, device.path());
        let line = assert_fails(&out, &["does not fit", "4194304 bytes", "2097152 bytes"]);
        if image == &zst {
            assert!(line.contains("at least"), "{line}");
        }
        assert_untouched(&device, small);

        let out = run([
            "copy".as_ref(),
            "--bmap".as_ref(),
            bmap.as_os_str(),
            image.as_os_str(),
            device.path().as_os_str(),
        ]);
        assert_fails(&out, &["does not fit"]);
        assert_untouched(&device, small);
    }

    // Piped, the zstd frame header still says it.
    let out = copy_support::run_stdin_file(
        [
            "copy".as_ref(),
            "--nobmap".as_ref(),
            "-".as_ref(),
            device.path().as_os_str(),
        ],
        &zst,
    );
    assert_fails(&out, &["does not fit", "at least 4194304 bytes"]);
    assert_untouched(&device, small);
}

#[test]
fn an_xz_whose_index_disagrees_with_the_bmap_is_refused_before_writing() {
    if !need_tool("xz") || !need_tool("zstd") {
        return;
    }
    let dir = tempdir();
    let (raw, _, _) = image(dir.path(), 4 * MIB, 8);
    let (_, other_bmap, _) = image(dir.path(), 3 * MIB, 9);
    let xz = dir.path().join("image.img.xz");
    compress(&["xz", "-c"], &raw, &xz);
    let zst = dir.path().join("image.img.zst");
    let status = Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(&zst)
        .arg(&raw)
        .status()
        .expect("zstd");
    assert!(status.success());
    for image in [&xz, &zst] {
        let dest = dir.path().join("dest.img");
        let out = run([
            "copy".as_ref(),
            "--bmap".as_ref(),
            other_bmap.as_os_str(),
            image.as_os_str(),
            dest.as_os_str(),
        ]);
        assert_fails(
            &out,
            &["4194304", "3145728", "does not belong to this image"],
        );
        assert!(!dest.exists(), "the destination was created");
    }
}

#[test]
fn an_xz_of_several_streams_declares_its_whole_size() {
    if !need_tool("xz") {
        return;
    }
    let dir = tempdir();
    let (raw, bmap, bytes) = image(dir.path(), 4 * MIB, 10);
    let half = dir.path().join("half");
    let split = bytes.len() / 2 + 1234;
    fs::write(&half, &bytes[..split]).expect("write");
    let first = compress(&["xz", "-c"], &half, &dir.path().join("a.xz"));
    fs::write(&half, &bytes[split..]).expect("write");
    let second = compress(&["xz", "-c"], &half, &dir.path().join("b.xz"));
    let joined = dir.path().join("joined.img.xz");
    fs::write(&joined, [first, vec![0; 8], second].concat()).expect("write");
    drop(raw);
    let dest = dir.path().join("dest.img");
    let out = run([
        "copy".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        joined.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_ok(&out);
    assert!(read(&dest) == bytes);
}
