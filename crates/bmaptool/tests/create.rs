//! Black-box tests of `bmaptool create`: the real binary on real sparse files made by
//! the test, on ext4 (FIEMAP) and tmpfs (SEEK_DATA/SEEK_HOLE); golden bmaps, byte for
//! byte, from the installed reference and (extra conformance checks) from the reference
//! 3.9's own output in `../shared/conformance`; property tests of the mapped ranges and digests; errors and exit codes;
//! interoperability with the reference tool; interruption by signals.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read as _;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use bmap::format::ChecksumKind;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const BS: u64 = 4096;
const MIB: u64 = 1 << 20;

/// `bmaptool create [EXTRA...] IMAGE`.
fn create(extra: &[&str], image: &Path) -> std::process::Output {
    let mut args: Vec<&OsStr> = vec![OsStr::new("create")];
    args.extend(extra.iter().map(OsStr::new));
    args.push(image.as_os_str());
    run(args)
}

/// Asserts the two "not sparse" warnings (and nothing else) on stderr.
#[track_caller]
fn assert_not_sparse_warnings(output: &std::process::Output, image: &Path) {
    let lines = stderr_lines(output);
    assert_eq!(lines.len(), 2, "two warnings expected, got {lines:?}");
    assert!(lines[0].starts_with("bmaptool: WARNING: all "), "{lines:?}");
    assert!(lines[0].contains("are mapped, no holes in"), "{lines:?}");
    assert!(lines[0].contains(&*image.to_string_lossy()), "{lines:?}");
    assert!(lines[1].starts_with("bmaptool: WARNING: "), "{lines:?}");
    assert!(lines[1].contains("holes were expanded"), "{lines:?}");
}

// ---------------------------------------------------------------------------------
// 1. Golden conformance

/// Where the expected bmaps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Golden {
    /// The installed reference (Debian's 3.6), run on the same image, its comments worded
    /// as 3.9 words them.
    InstalledReference,
    /// The reference 3.9's own output in `../shared/conformance/golden`.
    Conformance,
}

impl Golden {
    /// Whether this source is there; otherwise skipped (or, strict, failed).
    fn available(self) -> bool {
        match self {
            Golden::InstalledReference => require(
                have_reference(),
                "the reference bmaptool (Debian bmap-tools) at /usr/bin/bmaptool, with python3",
            ),
            Golden::Conformance => need_conformance(),
        }
    }

    /// The bmap the reference writes for golden image `image`.
    fn bmap(self, image: &Path) -> Vec<u8> {
        match self {
            Golden::InstalledReference => reference_create_3_9(image),
            Golden::Conformance => {
                golden_bmap(&image.file_name().expect("a name").to_string_lossy())
            }
        }
    }
}

/// Makes the golden images in `scratch` and checks that `create`, to stdout and with
/// `-o`, writes the reference's bytes; `method` is the layout method `-d` must name.
fn check_golden(scratch: &Scratch, method: &str, source: Golden) {
    if !source.available() {
        return;
    }
    let images = scratch.path().join("images");
    let outputs = scratch.path().join("outputs");
    fs::create_dir(&images).expect("mkdir images");
    fs::create_dir(&outputs).expect("mkdir outputs");
    make_golden_images(&images);
    let expected = |name: &str| source.bmap(&images.join(name));
    for name in GOLDEN_IMAGES {
        let image = images.join(name);
        let golden = expected(name);
        let not_sparse = matches!(name, "full.img" | "one-byte.img");

        let to_stdout = create(&[], &image);
        let out = outputs.join(format!("{name}.bmap"));
        let to_file = create(&["-o", &out.to_string_lossy()], &image);
        for output in [&to_stdout, &to_file] {
            assert!(output.status.success(), "{name}: {output:?}");
            if not_sparse {
                assert_not_sparse_warnings(output, &image);
            } else {
                assert_quiet_success(output);
            }
        }
        assert!(
            to_stdout.stdout == golden,
            "{name}: stdout differs from the golden bmap ({source:?}):\n{}\nexpected:\n{}",
            String::from_utf8_lossy(&to_stdout.stdout),
            String::from_utf8_lossy(&golden)
        );
        assert!(to_file.stdout.is_empty(), "{name}: -o also wrote to stdout");
        assert!(
            read(&out) == golden,
            "{name}: -o file differs from the golden bmap"
        );
    }
    // Only the bmaps: no temporary files left beside them.
    let mut expected_names: Vec<String> =
        GOLDEN_IMAGES.iter().map(|n| format!("{n}.bmap")).collect();
    expected_names.sort();
    assert_eq!(list_dir(&outputs), expected_names);

    // The debug line proves which layout method this file system exercised.
    let image = images.join("mixed.img");
    let debug = create(&["-d"], &image);
    assert!(debug.status.success());
    assert!(debug.stdout == expected("mixed.img"), "-d changed the bmap");
    let stderr = String::from_utf8_lossy(&debug.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("bmaptool: debug: ") && l.contains(method)),
        "-d does not name {method}:\n{stderr}"
    );
}

#[test]
fn golden_bmaps_are_reproduced_on_ext4_with_fiemap() {
    if let Some(scratch) = Scratch::ext4() {
        check_golden(&scratch, "FIEMAP", Golden::InstalledReference);
    }
}

#[test]
fn golden_bmaps_are_reproduced_on_tmpfs_with_seek_data() {
    if let Some(scratch) = Scratch::tmpfs() {
        check_golden(&scratch, "SEEK_DATA", Golden::InstalledReference);
    }
}

#[test]
fn conformance_golden_bmaps_are_the_reference_3_9_files_on_ext4() {
    if let Some(scratch) = Scratch::ext4() {
        check_golden(&scratch, "FIEMAP", Golden::Conformance);
    }
}

#[test]
fn conformance_golden_bmaps_are_the_reference_3_9_files_on_tmpfs() {
    if let Some(scratch) = Scratch::tmpfs() {
        check_golden(&scratch, "SEEK_DATA", Golden::Conformance);
    }
}

// ---------------------------------------------------------------------------------
// 2. --no-checksum

/// An image with a bit of everything: a hole at the start, random and zero-filled
/// mapped blocks, single bytes, a partial last block that is mapped.
fn assorted_image() -> SparseImage {
    let size = 300 * BS + 1234;
    SparseImage {
        size,
        pieces: vec![
            Piece {
                offset: 3 * BS,
                len: 2 * BS,
                fill: Fill::Random(1),
            },
            Piece {
                offset: 10 * BS + 100,
                len: 5000,
                fill: Fill::Random(2),
            },
            Piece {
                offset: 40 * BS,
                len: 8 * BS,
                fill: Fill::Zero,
            },
            Piece {
                offset: 77 * BS + 4095,
                len: 1,
                fill: Fill::Random(3),
            },
            Piece {
                offset: 78 * BS,
                len: 1,
                fill: Fill::Random(4),
            },
            Piece {
                offset: 150 * BS,
                len: 64 * BS,
                fill: Fill::Random(5),
            },
            Piece {
                offset: 299 * BS + 17,
                len: BS + 1234 - 17,
                fill: Fill::Random(6),
            },
        ],
    }
}

#[test]
fn no_checksum_drops_range_digests_but_keeps_the_file_checksum() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("assorted.img");
    let spec = assorted_image();
    let bytes = spec.write(&image);

    let with = create(&[], &image);
    assert_quiet_success(&with);
    let without = create(&["--no-checksum"], &image);
    assert_quiet_success(&without);

    let text = String::from_utf8(without.stdout.clone()).expect("bmap is UTF-8");
    assert!(
        !text.contains("chksum="),
        "--no-checksum wrote range digests:\n{text}"
    );
    assert!(
        text.contains("<ChecksumType> sha256 </ChecksumType>"),
        "{text}"
    );
    assert!(text.contains("<BmapFileChecksum> "), "{text}");

    // parse_bmap verifies the BmapFileChecksum.
    let plain = parse_bmap(&without.stdout);
    let full = parse_bmap(&with.stdout);
    assert_eq!(ranges_of(&plain), ranges_of(&full));
    assert_eq!(
        ranges_of(&full),
        spec.expected_ranges(fs_block_size(&image))
    );
    assert!(plain.ranges().iter().all(|r| r.digest().is_none()));
    assert_eq!(plain.image_size(), full.image_size());
    assert_eq!(plain.block_size(), full.block_size());
    check_digests(&full, &bytes).expect("digests of the checksummed bmap");
}

// ---------------------------------------------------------------------------------
// 3. Property tests: random sparse files

/// Sizes from 1 byte to a little over 4 MiB, block aligned or not.
fn size_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        1..=3 * BS,
        (1..=1024u64).prop_map(|blocks| blocks * BS),
        1..=4 * MIB + BS,
    ]
}

fn fill_strategy() -> impl Strategy<Value = Fill> + Clone {
    prop_oneof![3 => any::<u64>().prop_map(Fill::Random), 1 => Just(Fill::Zero)]
}

/// Pieces of up to 256 KiB starting in `lo..hi` and ending before `hi`.
fn pieces_in(lo: u64, hi: u64, count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Piece>> {
    prop::collection::vec(
        (lo..hi, 1..=256 * 1024u64, fill_strategy()).prop_map(move |(offset, len, fill)| Piece {
            offset,
            len: len.min(hi - offset),
            fill,
        }),
        count,
    )
}

/// The layouts worth covering, for an image of `size` bytes.
fn layout_strategy(size: u64) -> impl Strategy<Value = Vec<Piece>> {
    prop_oneof![
        // All hole: only set_len.
        Just(Vec::new()),
        // No hole at all, random or explicit zeroes.
        fill_strategy().prop_map(move |fill| vec![Piece {
            offset: 0,
            len: size,
            fill
        }]),
        // Holes at the start.
        pieces_in(size / 2, size, 1..8),
        // Holes at the end.
        pieces_in(0, size.div_ceil(2), 1..8),
        // Many tiny extents: single bytes anywhere.
        prop::collection::vec(
            (0..size, any::<u64>()).prop_map(|(offset, seed)| Piece {
                offset,
                len: 1,
                fill: Fill::Random(seed),
            }),
            1..200,
        ),
        // Anything.
        pieces_in(0, size, 0..16),
    ]
}

fn image_strategy() -> impl Strategy<Value = SparseImage> {
    size_strategy()
        .prop_flat_map(|size| (Just(size), layout_strategy(size)))
        .prop_map(|(size, pieces)| SparseImage { size, pieces })
}

/// Writes `spec` in `dir`, runs `create` and checks ranges, sizes, digests, stderr.
fn check_random_image(dir: &Path, spec: &SparseImage) -> Result<(), TestCaseError> {
    let image = dir.join("random.img");
    let bytes = spec.write(&image);
    let output = create(&[], &image);
    let block_size = fs_block_size(&image);
    let expected = spec.expected_ranges(block_size);
    fs::remove_file(&image).expect("remove image");

    prop_assert!(output.status.success(), "create failed: {:?}", output);
    let bmap = parse_bmap(&output.stdout);
    prop_assert_eq!(bmap.image_size(), spec.size);
    prop_assert_eq!(bmap.block_size(), block_size);
    prop_assert_eq!(ranges_of(&bmap), expected);
    prop_assert_eq!(check_digests(&bmap, &bytes), Ok(()));
    if bmap.mapped_blocks() == bmap.blocks_count() {
        let lines = stderr_lines(&output);
        prop_assert_eq!(lines.len(), 2, "{:?}", lines);
        prop_assert!(lines[0].contains("are mapped, no holes in"), "{:?}", lines);
    } else {
        prop_assert!(output.stderr.is_empty(), "{:?}", stderr_lines(&output));
    }
    Ok(())
}

fn random_images_property(scratch: &Scratch) {
    let mut runner = TestRunner::new(Config::with_cases(24));
    if let Err(err) = runner.run(&image_strategy(), |spec| {
        check_random_image(scratch.path(), &spec)
    }) {
        panic!("{err}");
    }
}

#[test]
fn random_sparse_files_on_ext4_map_exactly_the_written_blocks() {
    if let Some(scratch) = Scratch::ext4() {
        random_images_property(&scratch);
    }
}

#[test]
fn random_sparse_files_on_tmpfs_map_exactly_the_written_blocks() {
    if let Some(scratch) = Scratch::tmpfs() {
        random_images_property(&scratch);
    }
}

#[test]
fn zero_sized_image_is_refused() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("empty.img");
    File::create(&image).expect("create empty image");
    let out = scratch.path().join("out.bmap");
    let output = create(&["-o", &out.to_string_lossy()], &image);
    assert_error(&output, "zero-sized");
    assert_eq!(scratch.list(), ["empty.img"], "an output was left behind");
}

// ---------------------------------------------------------------------------------
// 4. fallocate'd extents

/// Writes `prealloc.img` in `dir`: 1 MiB with one written block (73) and two
/// fallocate'd, unwritten regions: blocks 16-31 (aligned) and bytes 200000..210000
/// (blocks 48-51). Returns its path and bytes; `None`: no `fallocate`, skipped.
fn write_prealloc_image(dir: &Path) -> Option<(PathBuf, Vec<u8>)> {
    if !require(
        runs("fallocate", &["--version"]),
        "the fallocate command (util-linux)",
    ) {
        return None;
    }
    let image = dir.join("prealloc.img");
    let spec = SparseImage {
        size: MIB,
        pieces: vec![Piece {
            offset: 73 * BS,
            len: BS,
            fill: Fill::Random(9),
        }],
    };
    let bytes = spec.write(&image);
    for (offset, len) in [("65536", "65536"), ("200000", "10000")] {
        let status = StdCommand::new("fallocate")
            .args(["-o", offset, "-l", len])
            .arg(&image)
            .status()
            .expect("fallocate runs");
        assert!(status.success(), "fallocate -o {offset} -l {len} failed");
    }
    assert_eq!(read(&image), bytes, "fallocate changed the file's bytes");
    Some((image, bytes))
}

#[test]
fn fallocated_extents_on_ext4_count_as_mapped() {
    let Some(scratch) = Scratch::ext4() else {
        return;
    };
    let Some((image, bytes)) = write_prealloc_image(scratch.path()) else {
        return;
    };
    let output = create(&[], &image);
    assert_quiet_success(&output);
    let bmap = parse_bmap(&output.stdout);
    assert_eq!(ranges_of(&bmap), [(16, 31), (48, 51), (73, 73)]);
    check_digests(&bmap, &bytes).expect("digests");
    assert_eq!(
        bmap.ranges()[0].digest().map(|d| d.to_hex()),
        Some(ChecksumKind::Sha256.digest(&[0; 65536]).to_hex()),
        "an unwritten extent reads as zeroes"
    );
}

/// An 8 TiB image with one byte in block 1 and one in the very last byte: offsets
/// beyond 32 bits, a 10-digit block count, two single-block ranges.
fn check_huge_sparse_image(scratch: &Scratch) {
    let size: u64 = 8 << 40;
    let image = scratch.path().join("huge.img");
    let file = File::create(&image).expect("create huge image");
    file.set_len(size).expect("set_len 8 TiB");
    file.write_all_at(b"y", 5000).expect("write");
    file.write_all_at(b"x", size - 1).expect("write");
    file.sync_all().expect("sync");
    drop(file);

    let output = create(&[], &image);
    assert_quiet_success(&output);
    let bmap = parse_bmap(&output.stdout);
    let last = size / BS - 1;
    assert_eq!(bmap.image_size(), size);
    assert_eq!(bmap.blocks_count(), size / BS);
    assert_eq!(ranges_of(&bmap), [(1, 1), (last, last)]);
    let mut first_block = vec![0u8; BS as usize];
    first_block[5000 - BS as usize] = b'y';
    let mut last_block = vec![0u8; BS as usize];
    last_block[BS as usize - 1] = b'x';
    let digests: Vec<_> = bmap
        .ranges()
        .iter()
        .map(|r| r.digest().map(|d| d.to_hex()))
        .collect();
    assert_eq!(
        digests,
        [
            Some(ChecksumKind::Sha256.digest(&first_block).to_hex()),
            Some(ChecksumKind::Sha256.digest(&last_block).to_hex()),
        ]
    );
}

#[test]
fn huge_sparse_image_on_ext4_maps_both_ends() {
    if let Some(scratch) = Scratch::ext4() {
        check_huge_sparse_image(&scratch);
    }
}

#[test]
fn huge_sparse_image_on_tmpfs_maps_both_ends() {
    if let Some(scratch) = Scratch::tmpfs() {
        check_huge_sparse_image(&scratch);
    }
}

// ---------------------------------------------------------------------------------
// 5. Errors, exit codes, options

#[test]
fn missing_image_is_a_clean_error() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("missing.img");
    assert_error(&create(&[], &image), "missing.img");
}

#[test]
fn directory_image_is_a_clean_error() {
    let scratch = Scratch::plain();
    assert_error(&create(&[], scratch.path()), "directory");
}

#[test]
fn character_device_image_is_a_clean_error() {
    assert_error(&create(&[], Path::new("/dev/null")), "/dev/null");
}

#[test]
fn output_in_missing_directory_is_a_clean_error() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    let out = scratch.path().join("nonexistent/dir/x.bmap");
    assert_error(&create(&["-o", &out.to_string_lossy()], &image), "x.bmap");
    assert_eq!(scratch.list(), ["a.img"]);
    // And outside any test directory, as users would type it.
    assert_error(
        &create(&["-o", "/nonexistent/dir/x.bmap"], &image),
        "x.bmap",
    );
    assert!(!Path::new("/nonexistent").exists());
}

#[test]
fn output_equal_to_image_is_refused_and_the_image_is_untouched() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    let bytes = assorted_image().write(&image);
    let hardlink = scratch.path().join("hard.img");
    let symlink = scratch.path().join("sym.img");
    fs::hard_link(&image, &hardlink).expect("hard link");
    std::os::unix::fs::symlink(&image, &symlink).expect("symlink");
    let dotted = scratch.path().join(".").join("a.img");
    let before = scratch.list();
    for out in [&image, &dotted, &hardlink, &symlink] {
        let output = create(&["-o", &out.to_string_lossy()], &image);
        assert_error(&output, "image");
        assert!(
            read(&image) == bytes,
            "-o {} changed the image",
            out.display()
        );
        assert_eq!(scratch.list(), before, "files appeared or vanished");
    }
    assert!(
        fs::symlink_metadata(&symlink)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn output_write_failure_leaves_no_partial_or_temporary_file() {
    let Some(tiny) = Scratch::mount_tmpfs("size=64k") else {
        return;
    };
    let scratch = Scratch::plain();
    // 2000 single-block ranges: a bmap of about 200 KB, more than the 64 KiB tmpfs holds.
    let image = scratch.path().join("many.img");
    let spec = SparseImage {
        size: 4000 * BS,
        pieces: (0..2000)
            .map(|i| Piece {
                offset: 2 * i * BS,
                len: 1,
                fill: Fill::Random(i),
            })
            .collect(),
    };
    spec.write(&image);
    let out = tiny.path().join("out.bmap");
    fs::write(&out, "precious\n").expect("write existing output");

    let output = create(&["-o", &out.to_string_lossy()], &image);
    assert_error(&output, "out.bmap");
    assert_eq!(
        tiny.list(),
        ["out.bmap"],
        "a temporary file was left behind"
    );
    assert_eq!(read(&out), b"precious\n", "the existing output was changed");

    fs::remove_file(&out).expect("remove output");
    let output = create(&["-o", &out.to_string_lossy()], &image);
    assert_error(&output, "out.bmap");
    assert!(tiny.list().is_empty(), "left behind: {:?}", tiny.list());
}

#[test]
fn output_to_a_full_device_is_a_clean_error() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);

    assert_error(&create(&["-o", "/dev/full"], &image), "/dev/full");

    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let output = clean_command(bin_path())
        .arg("create")
        .arg(&image)
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .expect("bmaptool runs");
    assert_error(&output, "standard output");
}

#[test]
fn failed_create_leaves_an_existing_output_unchanged() {
    let scratch = Scratch::plain();
    let out = scratch.path().join("out.bmap");
    fs::write(&out, "precious\n").expect("write existing output");
    let empty = scratch.path().join("empty.img");
    File::create(&empty).expect("create empty image");
    let missing = scratch.path().join("missing.img");
    let dir = scratch.path().join("dir");
    fs::create_dir(&dir).expect("mkdir");
    let before = scratch.list();
    for image in [&missing, &empty, &dir] {
        let output = create(&["-o", &out.to_string_lossy()], image);
        assert_eq!(output.status.code(), Some(1), "{}", image.display());
        assert_eq!(
            read(&out),
            b"precious\n",
            "{} changed the output",
            image.display()
        );
        assert_eq!(scratch.list(), before);
    }
}

#[test]
fn existing_output_is_replaced_keeping_its_mode_and_symlink() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    let expected = create(&[], &image).stdout;

    let out = scratch.path().join("out.bmap");
    fs::write(&out, "old contents that are longer than nothing\n").expect("write");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).expect("chmod");
    let link = scratch.path().join("link.bmap");
    std::os::unix::fs::symlink("out.bmap", &link).expect("symlink");

    for target in [&out, &link] {
        let output = create(&["-o", &target.to_string_lossy()], &image);
        assert_quiet_success(&output);
        assert!(
            read(&out) == expected,
            "-o {} wrote other bytes",
            target.display()
        );
        let mode = fs::metadata(&out).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640, "mode of the replaced output");
    }
    assert!(
        fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
    assert_eq!(scratch.list(), ["a.img", "link.bmap", "out.bmap"]);
}

#[test]
fn relative_output_goes_to_the_current_directory() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    let output = bmaptool()
        .current_dir(scratch.path())
        .args(["create", "-o", "a.bmap", "a.img"])
        .output()
        .expect("bmaptool runs");
    assert_quiet_success(&output);
    assert!(output.stdout.is_empty());
    assert!(read(&scratch.path().join("a.bmap")) == create(&[], &image).stdout);
    assert_eq!(scratch.list(), ["a.bmap", "a.img"]);
}

#[test]
fn output_that_is_a_directory_is_a_clean_error() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    let dir = scratch.path().join("out");
    fs::create_dir(&dir).expect("mkdir");
    assert_error(
        &create(&["-o", &dir.to_string_lossy()], &image),
        "directory",
    );
    assert!(list_dir(&dir).is_empty(), "files appeared in the directory");
    assert_eq!(scratch.list(), ["a.img", "out"]);
}

#[test]
fn new_output_gets_mode_0666_less_the_umask() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    for (umask, mode) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let out = scratch.path().join(format!("{umask}.bmap"));
        let status = clean_command("sh")
            .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
            .arg(bin_path())
            .args(["create", "-o"])
            .arg(&out)
            .arg(&image)
            .status()
            .expect("sh runs");
        assert!(status.success());
        let got = fs::metadata(&out).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(got, mode, "umask {umask}: mode {got:o}");
    }
}

/// Spawns `bmaptool ARGS...` with no input and its output discarded.
fn spawn_quiet(args: &[&OsStr]) -> KillOnDrop {
    KillOnDrop(
        clean_command(bin_path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bmaptool starts"),
    )
}

/// Waits for `child` to exit; `None` (after SIGKILL) when it still runs after
/// [`procfs::HANG`], which only bounds a hang.
fn wait_or_kill(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let pid = child.id();
    if !procfs::within_hang(|| procfs::exited(pid)) {
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        return None;
    }
    Some(child.wait().expect("reap"))
}

/// The status and output of a child that has exited (and was reaped).
fn output_of(child: &mut std::process::Child) -> std::process::Output {
    let mut output = std::process::Output {
        status: child.wait().expect("reap"),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut output.stdout).expect("read stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut output.stderr).expect("read stderr");
    }
    output
}

/// Makes a FIFO with `mkfifo`; `None`: skipped.
fn make_fifo(path: &Path) -> Option<()> {
    if !require(runs("mkfifo", &["--version"]), "the mkfifo command") {
        return None;
    }
    let status = StdCommand::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo failed");
    Some(())
}

#[test]
fn fifo_image_is_refused_without_blocking() {
    let scratch = Scratch::plain();
    let fifo = scratch.path().join("fifo.img");
    if make_fifo(&fifo).is_none() {
        return;
    }
    let mut child = spawn_quiet(&[OsStr::new("create"), fifo.as_os_str()]);
    let pid = child.0.id();
    // Blocking would be waiting for a writer: in the FIFO's open, or in a read of it.
    let blocks = || procfs::waits_for_fifo_partner(pid) || procfs::waits_reading_a_pipe(pid);
    assert!(
        procfs::within_hang(|| procfs::exited(pid) || blocks()),
        "create on a FIFO neither ended nor waited for a writer (wait channels {:?})",
        procfs::wchans(pid)
    );
    if !procfs::exited(pid) {
        let wchans = procfs::wchans(pid);
        send_signal(&child.0, "TERM");
        let status = wait_or_kill(&mut child.0);
        panic!(
            "create on a FIFO blocked waiting for a writer (wait channels {wchans:?}); \
             after SIGTERM: {status:?}"
        );
    }
    let status = child.0.wait().expect("reap");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn sigterm_stops_create_waiting_for_a_fifo_output_reader() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    let fifo = scratch.path().join("out.fifo");
    if make_fifo(&fifo).is_none() {
        return;
    }
    // Nobody reads the FIFO: create waits; the user gives up with SIGTERM.
    let args = [
        OsStr::new("create"),
        OsStr::new("-o"),
        fifo.as_os_str(),
        image.as_os_str(),
    ];
    let mut child = spawn_quiet(&args);
    let pid = child.0.id();
    assert!(
        procfs::within_hang(|| procfs::waits_for_fifo_partner(pid) || procfs::exited(pid)),
        "create never waited for a reader of the FIFO (wait channel {:?})",
        procfs::wchan(pid)
    );
    assert!(
        !procfs::exited(pid),
        "create ended although nobody read the FIFO"
    );
    assert!(send_signal(&child.0, "TERM"), "kill -s TERM failed");
    let status =
        wait_or_kill(&mut child.0).expect("create waiting for a FIFO reader ignores SIGTERM");
    assert_eq!(status.code(), Some(143), "{status:?}");
}

#[test]
fn output_through_a_dangling_symlink_creates_its_target() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    let link = scratch.path().join("link.bmap");
    std::os::unix::fs::symlink("target.bmap", &link).expect("symlink");
    let output = create(&["-o", &link.to_string_lossy()], &image);
    assert_quiet_success(&output);
    assert!(
        fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a regular file"
    );
    let target = scratch.path().join("target.bmap");
    assert!(read(&target) == create(&[], &image).stdout);
}

#[test]
fn usage_errors_exit_2() {
    let cases: [&[&str]; 6] = [
        &[],
        &["create"],
        &["create", "--bogus", "a.img"],
        &["create", "a.img", "-o"],
        &["create", "a.img", "b.img"],
        &["frobnicate"],
    ];
    for args in cases {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} wrote to stdout");
        assert!(!stderr.is_empty(), "{args:?}: no message");
        assert_no_panic(&stderr);
    }
}

#[test]
fn quiet_and_debug_together_exit_1() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);
    for flags in [["-q", "-d"], ["-d", "-q"]] {
        let output = run([flags[0], flags[1], "create", &image.to_string_lossy()]);
        assert_error(&output, "--quiet");
    }
}

#[test]
fn quiet_keeps_the_not_sparse_warnings() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("full.img");
    write_pattern_file(&image, 10 * BS + 10);
    let output = run(["-q", "create", &image.to_string_lossy()]);
    assert!(output.status.success());
    assert_not_sparse_warnings(&output, &image);
    let bmap = parse_bmap(&output.stdout);
    assert_eq!(ranges_of(&bmap), [(0, 10)]);
}

#[test]
fn version_is_printed_on_stdout() {
    let output = run(["--version"]);
    assert_quiet_success(&output);
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(stdout.starts_with("bmaptool "), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
}

#[test]
fn unambiguous_long_option_prefixes_are_accepted() {
    let scratch = Scratch::plain();
    let image = scratch.path().join("a.img");
    assorted_image().write(&image);

    let full = create(&["--no-checksum"], &image);
    let prefix = create(&["--no-ch"], &image);
    assert_quiet_success(&prefix);
    assert!(
        prefix.stdout == full.stdout,
        "--no-ch differs from --no-checksum"
    );
    assert!(!String::from_utf8_lossy(&prefix.stdout).contains("chksum="));

    let long = scratch.path().join("long.bmap");
    let short = scratch.path().join("short.bmap");
    assert_quiet_success(&create(&["--output", &long.to_string_lossy()], &image));
    assert_quiet_success(&create(&["--out", &short.to_string_lossy()], &image));
    assert!(read(&long) == read(&short), "--out differs from --output");
    assert!(read(&long) == create(&[], &image).stdout);
}

// ---------------------------------------------------------------------------------
// 6. Interoperability with the reference (Debian bmap-tools)

/// The images both tools are run on: the golden ones and a test-made sparse one.
/// `None`: skipped.
fn interop_images(scratch: &Scratch) -> Option<Vec<(PathBuf, Vec<u8>)>> {
    if !require(
        have_reference(),
        "the reference bmaptool (Debian bmap-tools) at /usr/bin/bmaptool, with python3",
    ) {
        return None;
    }
    let dir = scratch.path().join("images");
    fs::create_dir(&dir).expect("mkdir");
    make_golden_images(&dir);
    let mut images: Vec<_> = GOLDEN_IMAGES
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let bytes = read(&path);
            (path, bytes)
        })
        .collect();
    let path = dir.join("assorted.img");
    let bytes = assorted_image().write(&path);
    images.push((path, bytes));
    // Unwritten extents: both tools' FIEMAP backends count them as mapped.
    images.extend(write_prealloc_image(&dir));
    Some(images)
}

#[test]
fn reference_create_agrees_with_ours() {
    let Some(scratch) = Scratch::ext4() else {
        return;
    };
    let Some(images) = interop_images(&scratch) else {
        return;
    };
    for (image, bytes) in &images {
        let ours = create(&[], image);
        assert!(ours.status.success(), "{}: {ours:?}", image.display());
        let theirs = StdCommand::new(REFERENCE)
            .arg("create")
            .arg(image)
            .output()
            .expect("reference runs");
        assert!(
            theirs.status.success(),
            "reference create {}: {}",
            image.display(),
            String::from_utf8_lossy(&theirs.stderr)
        );
        let (ours, theirs) = (parse_bmap(&ours.stdout), parse_bmap(&theirs.stdout));
        assert_eq!(
            ours.image_size(),
            theirs.image_size(),
            "{}",
            image.display()
        );
        assert_eq!(
            ours.block_size(),
            theirs.block_size(),
            "{}",
            image.display()
        );
        assert_eq!(
            ranges_with_digests(&ours),
            ranges_with_digests(&theirs),
            "{}",
            image.display()
        );
        check_digests(&theirs, bytes).expect("reference digests");
    }
}

#[test]
fn reference_copy_accepts_our_bmaps() {
    let Some(scratch) = Scratch::ext4() else {
        return;
    };
    let Some(images) = interop_images(&scratch) else {
        return;
    };
    // The copies' file system does not matter: keep them off the disk when possible.
    let copies = Scratch::fast();
    let work = copies.path();
    for (image, bytes) in &images {
        let name = image
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for flags in [&[][..], &["--no-checksum"][..]] {
            let bmap = work.join(format!("{name}.bmap"));
            let mut args = flags.to_vec();
            let bmap_arg = bmap.to_string_lossy().into_owned();
            args.extend(["-o", &bmap_arg]);
            assert!(create(&args, image).status.success());
            let dest = work.join(format!("{name}.copy"));
            let copy = StdCommand::new(REFERENCE)
                .args(["copy", "--bmap"])
                .arg(&bmap)
                .arg(image)
                .arg(&dest)
                .output()
                .expect("reference runs");
            assert!(
                copy.status.success(),
                "reference copy of {name} with our bmap {flags:?}: {}",
                String::from_utf8_lossy(&copy.stderr)
            );
            assert!(
                read(&dest) == *bytes,
                "{name}: the copy differs from the image"
            );
            fs::remove_file(&dest).expect("remove copy");
        }
    }
}

// ---------------------------------------------------------------------------------
// 7. Signals

/// What happened to a `create -o OUT IMAGE` that was sent a signal.
struct Interrupted {
    output: std::process::Output,
    /// The output's temporary file was seen before the signal was sent.
    saw_temp: bool,
    /// `kill` found the process.
    delivered: bool,
    /// When the signal came, the process was stopped with so much of the image still to
    /// read that a thread had to look at the interrupt flag again before finishing.
    caught_hashing: bool,
}

/// Runs `create -o out IMAGE` (`mapped` bytes of data) and sends `signal` while it
/// works, judged by state, not time: once the output's temporary file appears (the
/// handlers are installed by then), the process is stopped (SIGSTOP, every thread),
/// the bytes it has read are looked at (`/proc/PID/io`), the signal is sent, and it
/// goes on (SIGCONT). The hashing threads look at the flag before each chunk they
/// read; with more than a few chunks per thread still to read, one of them must see it.
fn create_and_signal(image: &Path, out: &Path, signal: &str, mapped: u64) -> Interrupted {
    const CHUNK: u64 = 1 << 20;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut child = KillOnDrop(
        clean_command(bin_path())
            .arg("create")
            .arg("-o")
            .arg(out)
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    let pid = child.0.id();
    let dir = out.parent().expect("output has a directory");
    let mut saw_temp = false;
    procfs::within_hang(|| {
        // Unnamed (O_TMPFILE) where the file system has it, else a named `.tmp` file.
        saw_temp =
            procfs::has_open_in(pid, dir) || list_dir(dir).iter().any(|n| n.ends_with(".tmp"));
        saw_temp || procfs::exited(pid)
    });
    assert!(send_signal(&child.0, "STOP"), "kill -s STOP failed");
    assert!(
        procfs::within_hang(|| procfs::exited(pid) || procfs::all_threads_stopped(pid)),
        "bmaptool did not stop"
    );
    let caught_hashing = !procfs::exited(pid)
        && procfs::read_chars(pid).is_some_and(|read| read + 4 * threads * CHUNK < mapped);
    let delivered = send_signal(&child.0, signal);
    send_signal(&child.0, "CONT");
    assert!(
        wait_or_kill(&mut child.0).is_some(),
        "create still runs {} s after SIG{signal}",
        procfs::HANG.as_secs()
    );
    let output = output_of(&mut child.0);
    Interrupted {
        output,
        saw_temp,
        delivered,
        caught_hashing,
    }
}

/// Interrupts `create -o OUT` on a large image with `signal` and checks: exit status
/// `code`, one `interrupted` error line, no temporary file, and OUT absent or, when
/// `existing` was there before, unchanged. If the run was already past its last look
/// at the flag when the signal came, retries with a bigger image; if it was not and
/// succeeded, the signal was ignored.
fn check_interrupt(signal: &str, code: i32, existing: Option<&[u8]>) {
    // In memory when possible: the image is quick to make and to read.
    let images = Scratch::fast();
    let outputs = Scratch::plain();
    let out = outputs.path().join("out.bmap");
    let image = images.path().join("big.img");
    let mut size = 64 * MIB;
    let result = loop {
        assert!(size <= 1 << 30, "create always finished before SIG{signal}");
        write_pattern_file(&image, size);
        if let Some(existing) = existing {
            fs::write(&out, existing).expect("write existing output");
        }
        // The pattern file is data from start to end: every byte is read.
        let result = create_and_signal(&image, &out, signal, size);
        fs::remove_file(&image).expect("remove image");
        if !result.output.status.success() {
            break result;
        }
        assert!(
            !result.caught_hashing,
            "create ignored SIG{signal}: it came with most of the image still to read, and \
             create succeeded"
        );
        eprintln!("create of {size} bytes was nearly done at SIG{signal}; retrying bigger");
        size *= 2;
        let _ = fs::remove_file(&out);
    };
    assert!(result.delivered, "kill -s {signal} failed");
    assert!(result.saw_temp, "no temporary output file was seen open");
    let output = &result.output;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status; stderr:\n{stderr}"
    );
    assert_no_panic(&stderr);
    let lines = stderr_lines(output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("bmaptool: ERROR: ") && lines[0].contains("interrupted"));
    assert!(output.stdout.is_empty());
    match existing {
        Some(existing) => {
            assert_eq!(outputs.list(), ["out.bmap"]);
            assert_eq!(read(&out), existing, "the existing output was changed");
        }
        None => assert!(
            outputs.list().is_empty(),
            "left behind: {:?}",
            outputs.list()
        ),
    }
}

#[test]
fn sigterm_stops_create_with_143_and_leaves_no_output() {
    check_interrupt("TERM", 143, None);
}

#[test]
fn sigint_stops_create_with_130_and_keeps_the_existing_output() {
    check_interrupt("INT", 130, Some(b"precious\n"));
}
