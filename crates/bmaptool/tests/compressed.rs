//! Black-box tests of `bmaptool copy` with compressed and archived images.
//!
//! The test image (laid out like the reference's `test.image`) and the golden images,
//! both made at test time with bmaps written by the test fixture, are compressed with
//! the real tools (gzip, pigz, bzip2, pbzip2, xz, lzop, lz4, zstd, pzstd, tar, zip),
//! then copied by the real binary and compared byte for byte with the raw image.
//! Broken streams (cut short, cut inside the trailer, one flipped byte), data in a
//! hole and images whose size disagrees with the bmap must fail with exit status 1,
//! one error line, and no destination file left behind.
//!
//! A missing tool skips its cases with a note on stderr; with
//! `BMAPTOOL_TEST_STRICT=1` (as CI sets it) a missing tool is a failure.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

#[path = "common/testdata.rs"]
mod testdata;

use test_support::{clean_command, procfs, require, which};

const BMAPTOOL: &str = env!("CARGO_BIN_EXE_bmaptool");
const BLOCK: usize = 4096;

// ---------------------------------------------------------------------------------
// Tools

/// Whether all `needed` tools are installed. Without them the caller skips its case
/// (with a note), unless `BMAPTOOL_TEST_STRICT=1`, where a missing tool fails the test.
fn tools(needed: &[&str], what: &str) -> bool {
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    require(
        missing.is_empty(),
        &format!("the tools {missing:?} (for {what})"),
    )
}

/// Runs a tool to completion: `{in}` and `{out}` in `argv` are replaced by the paths;
/// when absent, the input is the tool's stdin and the output its stdout.
fn run_tool(argv: &[&str], input: &Path, output: &Path) {
    let mut cmd = Command::new(argv[0]);
    let mut uses_in = false;
    let mut uses_out = false;
    for arg in &argv[1..] {
        match *arg {
            "{in}" => {
                uses_in = true;
                cmd.arg(input);
            }
            "{out}" => {
                uses_out = true;
                cmd.arg(output);
            }
            other => {
                cmd.arg(other);
            }
        }
    }
    if !uses_in {
        cmd.stdin(fs::File::open(input).expect("open the tool's input"));
    }
    if !uses_out {
        cmd.stdout(fs::File::create(output).expect("create the tool's output"));
    }
    let status = cmd
        .stderr(Stdio::inherit())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(status.success(), "{argv:?} failed: {status}");
    let len = fs::metadata(output)
        .expect("the tool wrote its output")
        .len();
    assert!(len > 0, "{argv:?} wrote an empty file");
}

// ---------------------------------------------------------------------------------
// Formats

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrap {
    /// The stream is the image.
    None,
    /// GNU tar (default format) of the image.
    Tar,
    /// POSIX pax tar of the image.
    TarPax,
    /// A tar whose first entry is a directory, then the image inside it.
    TarDirFirst,
    /// GNU tar `--sparse` of the image (old GNU sparse members, type `S`).
    TarSparse,
    /// POSIX pax tar `--sparse` of the image (GNU sparse format 1.0 in pax headers).
    TarPaxSparse,
}

/// One way to pack an image: an optional tar around it, then a compressor.
#[derive(Debug, Clone, Copy)]
struct Fmt {
    label: &'static str,
    /// The extension that matches the content.
    ext: &'static str,
    wrap: Wrap,
    /// The compressor (`{in}`/`{out}` placeholders, or stdin to stdout); empty: none.
    argv: &'static [&'static str],
}

const fn fmt(
    label: &'static str,
    ext: &'static str,
    wrap: Wrap,
    argv: &'static [&'static str],
) -> Fmt {
    Fmt {
        label,
        ext,
        wrap,
        argv,
    }
}

const GZIP: &[&str] = &["gzip", "-n", "-c"];
const PIGZ: &[&str] = &["pigz", "-c"];
const BZIP2: &[&str] = &["bzip2", "-c"];
const PBZIP2: &[&str] = &["pbzip2", "-c", "-b1", "-p2"];
const XZ: &[&str] = &["xz", "-T0", "-c"];
const XZ_BLOCKS: &[&str] = &["xz", "-T2", "--block-size=65536", "-c"];
const LZMA: &[&str] = &["xz", "--format=lzma", "-c"];
const LZOP: &[&str] = &["lzop", "-c"];
const LZ4: &[&str] = &["lz4", "-q", "-c"];
const LZ4_LEGACY: &[&str] = &["lz4", "-q", "-l", "-c"];
// From stdin, so that the frame header keeps the 2 GiB window (with a file, zstd
// shrinks the window to the input's size).
const ZSTD_LONG: &[&str] = &["zstd", "-q", "--long=31", "-c"];
const PZSTD: &[&str] = &["pzstd", "-q", "-p", "2", "-c"];

const RAW: Fmt = fmt("raw", ".img", Wrap::None, &[]);

/// Every compressed or archived format `copy` reads.
const FORMATS: &[Fmt] = &[
    fmt("gzip", ".gz", Wrap::None, GZIP),
    fmt("gzip (.gzip)", ".gzip", Wrap::None, GZIP),
    fmt("pigz", ".gz", Wrap::None, PIGZ),
    fmt("bzip2", ".bz2", Wrap::None, BZIP2),
    fmt("pbzip2", ".bz2", Wrap::None, PBZIP2),
    fmt("xz -T0", ".xz", Wrap::None, XZ),
    fmt("xz multi-block", ".xz", Wrap::None, XZ_BLOCKS),
    fmt("lzma", ".lzma", Wrap::None, LZMA),
    fmt("lzop", ".lzo", Wrap::None, LZOP),
    fmt("lz4", ".lz4", Wrap::None, LZ4),
    fmt("lz4 legacy", ".lz4", Wrap::None, LZ4_LEGACY),
    fmt("zstd --long=31", ".zst", Wrap::None, ZSTD_LONG),
    fmt("pzstd", ".zst", Wrap::None, PZSTD),
    fmt("tar", ".tar", Wrap::Tar, &[]),
    fmt("tar (pax)", ".tar", Wrap::TarPax, &[]),
    fmt("tar.gz", ".tar.gz", Wrap::Tar, GZIP),
    fmt("tgz", ".tgz", Wrap::Tar, GZIP),
    fmt("tgz, directory first", ".tgz", Wrap::TarDirFirst, GZIP),
    fmt("tar.bz2", ".tar.bz2", Wrap::Tar, BZIP2),
    fmt("tbz2", ".tbz2", Wrap::Tar, PBZIP2),
    fmt("tar.xz", ".tar.xz", Wrap::Tar, XZ),
    fmt("txz", ".txz", Wrap::Tar, XZ_BLOCKS),
    fmt("tar.lzo", ".tar.lzo", Wrap::Tar, LZOP),
    fmt("tzo", ".tzo", Wrap::Tar, LZOP),
    fmt("tar.lz4", ".tar.lz4", Wrap::Tar, LZ4),
    fmt("tlz4", ".tlz4", Wrap::Tar, LZ4),
    fmt("tar.zst", ".tar.zst", Wrap::Tar, ZSTD_LONG),
    fmt("tzst", ".tzst", Wrap::Tar, PZSTD),
    fmt(
        "zip",
        ".zip",
        Wrap::None,
        &["zip", "-q", "-j", "{out}", "{in}"],
    ),
    fmt(
        "zip stored",
        ".zip",
        Wrap::None,
        &["zip", "-q", "-0", "-j", "{out}", "{in}"],
    ),
    fmt(
        "zip from stdin",
        ".zip",
        Wrap::None,
        &["zip", "-q", "-", "-"],
    ),
];

fn format(label: &str) -> Fmt {
    *FORMATS
        .iter()
        .find(|f| f.label == label)
        .unwrap_or_else(|| panic!("no format {label}"))
}

impl Fmt {
    fn tools(&self) -> Vec<&'static str> {
        let mut tools: Vec<&str> = self.argv.first().copied().into_iter().collect();
        if self.wrap != Wrap::None {
            tools.push("tar");
        }
        tools
    }

    /// Whether its tools are there (see [`tools`]).
    fn available(&self) -> bool {
        tools(&self.tools(), &format!("format {}", self.label))
    }

    /// Packs the image at `raw` into a new file named `*{ext}` in `work`.
    fn pack(&self, work: &Work, raw: &Path) -> PathBuf {
        let out = work.fresh("packed", self.ext);
        let name = raw.file_name().expect("the image has a name");
        let dir = raw.parent().expect("the image is in a directory");
        let input = match self.wrap {
            Wrap::None => raw.to_owned(),
            wrap => {
                let tar = work.fresh("archive", ".tar");
                let mut cmd = Command::new("tar");
                match wrap {
                    Wrap::TarPax => {
                        cmd.arg("--format=pax");
                    }
                    Wrap::TarSparse => {
                        cmd.arg("--sparse");
                    }
                    Wrap::TarPaxSparse => {
                        cmd.arg("--format=pax").arg("--sparse");
                    }
                    _ => {}
                }
                if wrap == Wrap::TarDirFirst {
                    let sub = work.fresh("dir", "");
                    fs::create_dir(&sub).expect("mkdir");
                    fs::hard_link(raw, sub.join(name)).expect("link the image");
                    cmd.current_dir(work.dir());
                    cmd.arg("-cf").arg(&tar).arg(sub.file_name().expect("name"));
                } else {
                    cmd.current_dir(dir).arg("-cf").arg(&tar).arg(name);
                }
                let status = cmd.status().expect("run tar");
                assert!(status.success(), "tar failed for {}", self.label);
                tar
            }
        };
        if self.argv.is_empty() {
            if input != raw {
                fs::rename(&input, &out).expect("rename the archive");
            } else {
                fs::copy(&input, &out).expect("copy the raw image");
            }
        } else {
            run_tool(self.argv, &input, &out);
        }
        out
    }

    /// The words an error about this format may use to name it (its codec or its
    /// container).
    fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        names.push(match self.argv.first().copied() {
            Some("gzip" | "pigz") => "gzip",
            Some("bzip2" | "pbzip2") => "bzip2",
            Some("xz") if self.argv == LZMA => "lzma",
            Some("xz") => "xz",
            Some("lzop") => "lzop",
            Some("lz4") => "lz4",
            Some("zstd" | "pzstd") => "zstd",
            Some("zip") => "zip",
            _ => "tar",
        });
        if self.wrap != Wrap::None {
            names.push("tar");
        }
        names
    }

    /// Whether the format carries a checksum of the data, so that its decoder alone
    /// (without a bmap) notices a changed byte.
    fn checksummed(&self) -> bool {
        !self.argv.is_empty() && self.argv != LZMA && self.argv != LZ4_LEGACY
    }

    /// An extension that names another format than this one's content.
    fn wrong_ext(&self) -> &'static str {
        if self.argv.first() == Some(&"xz") {
            ".gz"
        } else {
            ".xz"
        }
    }
}

// ---------------------------------------------------------------------------------
// Work area and images

struct Work {
    dir: tempfile::TempDir,
    counter: AtomicU32,
}

/// A raw image and its bmap.
struct Image {
    raw: PathBuf,
    bmap: PathBuf,
    bytes: Vec<u8>,
}

impl Work {
    fn new() -> Work {
        Work {
            dir: tempfile::Builder::new()
                .prefix("bmaptool-compressed-")
                .tempdir()
                .expect("create a temporary directory"),
            counter: AtomicU32::new(0),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new path in the work area, ending with `ext`.
    fn fresh(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir().join(format!("{stem}-{n}{ext}"))
    }

    /// The test image (laid out like the reference's `test.image`, made at test time),
    /// with the fixture's bmap of format `version` ("2.0", "1.3").
    fn reference(&self, version: &str) -> Image {
        let raw = self.dir().join("test.image");
        let bytes = testdata::test_image_bytes();
        if !raw.exists() {
            fs::write(&raw, &bytes).expect("write test.image");
        }
        Image {
            raw,
            bmap: testdata::test_image_bmap(version),
            bytes,
        }
    }

    /// A golden image (the bytes of `golden/make-images.py`) and the fixture's bmap.
    fn golden(&self, name: &str) -> Image {
        let dir = self.dir().join("golden");
        if !dir.exists() {
            testdata::write_golden_images(&dir);
        }
        let raw = dir.join(name);
        let bytes = fs::read(&raw).expect("read a golden image");
        Image {
            raw,
            bmap: testdata::golden_fixture_bmap(name),
            bytes,
        }
    }

    /// A copy of `bytes` as a raw image file.
    fn raw_file(&self, bytes: &[u8]) -> PathBuf {
        let path = self.fresh("variant", ".img");
        fs::write(&path, bytes).expect("write a variant image");
        path
    }

    /// `file` under another name (a hard link).
    fn renamed(&self, file: &Path, ext: &str) -> PathBuf {
        let path = self.fresh("renamed", ext);
        fs::hard_link(file, &path).expect("link");
        path
    }
}

// ---------------------------------------------------------------------------------
// Running bmaptool

enum Input<'a> {
    None,
    /// Piped, written as fast as the pipe takes it.
    Pipe(&'a [u8]),
    /// Piped: the first `usize` bytes; once bmaptool has taken them and waits for more,
    /// the rest.
    Trickle(&'a [u8], usize),
}

struct Run {
    code: Option<i32>,
    stderr: String,
    command: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}; stderr:\n{}",
            self.command, self.code, self.stderr
        )
    }

    fn error_lines(&self) -> usize {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("bmaptool: ERROR:"))
            .count()
    }

    /// The error lines (info lines name the format too).
    fn error(&self) -> String {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("bmaptool: ERROR:"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn warning_lines(&self) -> usize {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("bmaptool: WARNING:"))
            .count()
    }

    fn panicked(&self) -> bool {
        self.stderr.contains("panicked") || self.stderr.contains("RUST_BACKTRACE")
    }
}

fn bmaptool(args: &[&OsStr], input: Input<'_>) -> Run {
    let mut cmd = clean_command(BMAPTOOL);
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(match input {
            Input::None => Stdio::null(),
            _ => Stdio::piped(),
        });
    let mut child = cmd.spawn().expect("start bmaptool");
    let pid = child.id();
    let stdin = child.stdin.take();
    let output = std::thread::scope(|scope| {
        if let Some(mut pipe) = stdin {
            scope.spawn(move || {
                // bmaptool may stop reading early (an error): a broken pipe is fine.
                let _ = match input {
                    Input::None => Ok(()),
                    Input::Pipe(data) => pipe.write_all(data),
                    Input::Trickle(data, first) => pipe.write_all(&data[..first]).and_then(|()| {
                        pipe.flush()?;
                        // The first bytes alone: taken, and bmaptool asks for more (a
                        // read of the empty pipe), or it gave up.
                        procfs::within_hang(|| {
                            procfs::waits_reading_a_pipe(pid) || procfs::exited(pid)
                        });
                        pipe.write_all(&data[first..])
                    }),
                };
            });
        }
        child.wait_with_output().expect("wait for bmaptool")
    });
    let command = std::iter::once("bmaptool".to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    Run {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        command,
    }
}

/// `bmaptool copy [--bmap BMAP] EXTRA... IMAGE DEST`, the image from a path or `-`.
fn copy(bmap: Option<&Path>, extra: &[&str], image: &OsStr, dest: &Path, input: Input<'_>) -> Run {
    // The zstd --long=31 images need their 2 GiB window, past the default limit of
    // 128 MiB (tests/limits.rs pins the refusal without this option).
    let mut args: Vec<OsString> = vec!["copy".into(), "--max-window".into(), "2G".into()];
    if let Some(bmap) = bmap {
        args.push("--bmap".into());
        args.push(bmap.into());
    }
    args.extend(extra.iter().map(OsString::from));
    args.push(image.to_owned());
    args.push(dest.into());
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    bmaptool(&args, input)
}

// ---------------------------------------------------------------------------------
// Checks, gathered so that one run reports every failing case

#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn push(&mut self, case: &str, why: impl std::fmt::Display) {
        self.0.push(format!("{case}: {why}"));
    }

    /// The copy succeeded and `dest` holds exactly `expected`.
    fn copied(&mut self, case: &str, run: &Run, dest: &Path, expected: &[u8]) {
        if run.code != Some(0) || run.panicked() || run.error_lines() != 0 {
            self.push(case, format!("expected success; {}", run.describe()));
            return;
        }
        match fs::read(dest) {
            Err(e) => self.push(case, format!("cannot read the destination: {e}")),
            Ok(got) if got != expected => {
                let at = got.iter().zip(expected).position(|(a, b)| a != b);
                self.push(
                    case,
                    format!(
                        "the destination differs from the raw image ({} bytes vs {}, first \
                         difference at {at:?}); {}",
                        got.len(),
                        expected.len(),
                        run.describe()
                    ),
                );
            }
            Ok(_) => {}
        }
        let _ = fs::remove_file(dest);
    }

    /// Like [`Failures::copied`], and no warning was printed.
    fn copied_quietly(&mut self, case: &str, run: &Run, dest: &Path, expected: &[u8]) {
        if run.warning_lines() != 0 {
            self.push(case, format!("unexpected warning; {}", run.describe()));
        }
        self.copied(case, run, dest, expected);
    }

    /// The copy failed as a failure should: exit status 1, exactly one error line,
    /// no panic, and no destination file left.
    fn failed(&mut self, case: &str, run: &Run, dest: &Path) {
        if run.code != Some(1) {
            self.push(case, format!("expected exit status 1; {}", run.describe()));
        } else if run.panicked() {
            self.push(case, format!("panicked; {}", run.describe()));
        } else if run.error_lines() != 1 {
            self.push(
                case,
                format!("expected exactly one error line; {}", run.describe()),
            );
        }
        if dest.exists() {
            if run.code != Some(0) {
                self.push(case, "the destination file was left behind");
            }
            let _ = fs::remove_file(dest);
        }
    }

    /// Like [`Failures::failed`], and the error mentions each of `words`.
    fn failed_saying(&mut self, case: &str, run: &Run, dest: &Path, words: &[&str]) {
        self.failed(case, run, dest);
        for word in words {
            if !run.error().contains(word) {
                self.push(
                    case,
                    format!("the error does not say {word:?}; {}", run.describe()),
                );
            }
        }
    }

    fn assert_none(self, checked: usize) {
        if checked == 0 {
            // Every case was skipped for missing tools (strict mode fails earlier).
            eprintln!("no case checked: the tools are missing");
            return;
        }
        assert!(
            self.0.is_empty(),
            "{} of {checked} cases failed:\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

fn os(path: &Path) -> &OsStr {
    path.as_os_str()
}

const STDIN: &str = "-";

// ---------------------------------------------------------------------------------
// 1. Every format, from a file, from a pipe, and under misleading names

/// Which ways [`matrix`] copies each packed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// By its own name only.
    File,
    /// Piped to stdin only.
    Pipe,
    /// By its own name, piped, named `.img` (the name says nothing) and named as
    /// another format (the content wins, with a warning).
    All,
}

/// Copies `image` packed in each of `formats` in the ways `mode` says, and compares
/// the destination with the raw image.
fn matrix(
    work: &Work,
    image: &Image,
    formats: &[Fmt],
    mode: Mode,
    what: &str,
) -> (Failures, usize) {
    let mut failures = Failures::default();
    let mut checked = 0;
    for f in formats {
        if !f.available() {
            continue;
        }
        let packed = f.pack(work, &image.raw);
        let bmap = Some(image.bmap.as_path());
        let case = |how: &str| format!("{what} as {} ({how})", f.label);

        if mode != Mode::Pipe {
            let dest = work.fresh("dest", ".img");
            let run = copy(bmap, &[], os(&packed), &dest, Input::None);
            failures.copied_quietly(
                &case(&format!("file named *{}", f.ext)),
                &run,
                &dest,
                &image.bytes,
            );
            checked += 1;
        }
        if mode != Mode::File {
            let data = fs::read(&packed).expect("read the packed image");
            let dest = work.fresh("dest", ".img");
            let run = copy(bmap, &[], OsStr::new(STDIN), &dest, Input::Pipe(&data));
            failures.copied_quietly(&case("piped to stdin"), &run, &dest, &image.bytes);
            checked += 1;
        }
        if mode == Mode::All {
            let plain = work.renamed(&packed, ".img");
            let dest = work.fresh("dest", ".img");
            let run = copy(bmap, &[], os(&plain), &dest, Input::None);
            failures.copied_quietly(&case("named *.img"), &run, &dest, &image.bytes);

            let wrong = work.renamed(&packed, f.wrong_ext());
            let dest = work.fresh("dest", ".img");
            let run = copy(bmap, &[], os(&wrong), &dest, Input::None);
            if run.warning_lines() == 0 {
                failures.push(
                    &case(&format!("misnamed *{}", f.wrong_ext())),
                    format!(
                        "no warning that the name disagrees with the content; {}",
                        run.describe()
                    ),
                );
            }
            failures.copied(
                &case(&format!("misnamed *{}", f.wrong_ext())),
                &run,
                &dest,
                &image.bytes,
            );
            checked += 2;
        }
    }
    (failures, checked)
}

#[test]
fn every_format_of_the_reference_image_by_file_pipe_and_misleading_name() {
    let work = Work::new();
    let image = work.reference("2.0");
    let (mut failures, mut checked) = matrix(&work, &image, FORMATS, Mode::All, "test.image");

    // The SHA-1 bmap (format 1.3) reads the same streams.
    let v13 = work.reference("1.3");
    let (more, n) = matrix(
        &work,
        &v13,
        &[
            format("gzip"),
            format("xz multi-block"),
            format("tar.zst"),
            format("zip from stdin"),
        ],
        Mode::File,
        "test.image with bmap 1.3",
    );
    failures.0.extend(more.0);
    checked += n;
    failures.assert_none(checked);
}

/// One format of each kind (the extension aliases are covered by the reference image).
const DISTINCT: &[&str] = &[
    "gzip",
    "pigz",
    "bzip2",
    "pbzip2",
    "xz -T0",
    "xz multi-block",
    "lzma",
    "lzop",
    "lz4",
    "lz4 legacy",
    "zstd --long=31",
    "pzstd",
    "tar",
    "tar (pax)",
    "tar.gz",
    "tgz, directory first",
    "tar.bz2",
    "tar.xz",
    "tar.lzo",
    "tar.lz4",
    "tar.zst",
    "zip",
    "zip stored",
    "zip from stdin",
];

#[test]
fn every_kind_of_format_of_the_golden_mixed_image() {
    let work = Work::new();
    let image = work.golden("mixed.img");
    let by_file: Vec<Fmt> = DISTINCT.iter().map(|l| format(l)).collect();
    let (mut failures, mut checked) = matrix(&work, &image, &by_file, Mode::File, "mixed.img");
    let piped = [
        format("xz -T0"),
        format("lz4 legacy"),
        format("tar.zst"),
        format("zip from stdin"),
    ];
    let (more, n) = matrix(&work, &image, &piped, Mode::Pipe, "mixed.img");
    failures.0.extend(more.0);
    checked += n;
    failures.assert_none(checked);
}

#[test]
fn the_golden_many_image_through_multi_block_and_multi_frame_streams() {
    let work = Work::new();
    let image = work.golden("many.img");
    let by_file = [format("xz multi-block"), format("lz4")];
    let (mut failures, mut checked) = matrix(&work, &image, &by_file, Mode::File, "many.img");
    let (more, n) = matrix(&work, &image, &[format("pzstd")], Mode::Pipe, "many.img");
    failures.0.extend(more.0);
    checked += n;
    failures.assert_none(checked);
}

#[test]
fn a_raw_image_under_a_compressed_name_is_copied_with_a_warning() {
    let work = Work::new();
    let image = work.reference("2.0");
    let mut failures = Failures::default();
    let mut checked = 0;
    for ext in [".gz", ".xz", ".tar.zst", ".zip", ".tar"] {
        let named = work.renamed(&image.raw, ext);
        let dest = work.fresh("dest", ".img");
        let run = copy(Some(&image.bmap), &[], os(&named), &dest, Input::None);
        let case = format!("raw image named *{ext}");
        if run.warning_lines() == 0 {
            failures.push(&case, format!("no warning; {}", run.describe()));
        }
        failures.copied(&case, &run, &dest, &image.bytes);
        checked += 1;
    }
    let dest = work.fresh("dest", ".img");
    let run = copy(
        Some(&image.bmap),
        &[],
        OsStr::new(STDIN),
        &dest,
        Input::Pipe(&image.bytes),
    );
    failures.copied_quietly("raw image piped to stdin", &run, &dest, &image.bytes);
    failures.assert_none(checked + 1);
}

/// A pipe may deliver the first bytes of a stream alone (a slow download): the format
/// must still be recognised from its magic bytes.
#[test]
fn a_stream_whose_first_bytes_arrive_alone_is_still_recognised() {
    let work = Work::new();
    let image = work.reference("2.0");
    let mut failures = Failures::default();
    let mut checked = 0;
    for (label, first) in [
        ("gzip", 1),
        ("xz -T0", 3),
        ("zstd --long=31", 2),
        ("tar", 100),
        ("tar.gz", 1),
    ] {
        let f = format(label);
        if !f.available() {
            continue;
        }
        let data = fs::read(f.pack(&work, &image.raw)).expect("read");
        let dest = work.fresh("dest", ".img");
        let run = copy(
            Some(&image.bmap),
            &[],
            OsStr::new(STDIN),
            &dest,
            Input::Trickle(&data, first),
        );
        failures.copied(
            &format!("{label} piped, its first {first} bytes alone"),
            &run,
            &dest,
            &image.bytes,
        );
        // Without a bmap nothing else would notice: the compressed bytes would be
        // written as the image.
        let dest = work.fresh("dest", ".img");
        let run = copy(
            None,
            &["--nobmap"],
            OsStr::new(STDIN),
            &dest,
            Input::Trickle(&data, first),
        );
        failures.copied(
            &format!("{label} piped, its first {first} bytes alone, --nobmap"),
            &run,
            &dest,
            &image.bytes,
        );
        checked += 2;
    }
    failures.assert_none(checked);
}

/// Compresses the two halves of `image` separately with each of `codecs` and copies
/// the concatenation, from a file and piped.
fn concatenated(work: &Work, image: &Image, codecs: &[(&str, &[&str], &str)]) -> (Failures, usize) {
    // Split inside a mapped range (98-105), at an odd offset.
    let split = 98 * BLOCK + 1234;
    let halves = [
        work.raw_file(&image.bytes[..split]),
        work.raw_file(&image.bytes[split..]),
    ];
    let mut failures = Failures::default();
    let mut checked = 0;
    for &(label, argv, ext) in codecs {
        if !tools(&argv[..1], label) {
            continue;
        }
        let mut parts = Vec::new();
        for half in &halves {
            let out = work.fresh("half", ext);
            run_tool(argv, half, &out);
            parts.push(fs::read(&out).expect("read"));
        }
        let joined = parts.concat();
        let packed = work.fresh("joined", ext);
        fs::write(&packed, &joined).expect("write");
        let dest = work.fresh("dest", ".img");
        let run = copy(Some(&image.bmap), &[], os(&packed), &dest, Input::None);
        failures.copied(label, &run, &dest, &image.bytes);
        let dest = work.fresh("dest", ".img");
        let run = copy(
            Some(&image.bmap),
            &[],
            OsStr::new(STDIN),
            &dest,
            Input::Pipe(&joined),
        );
        failures.copied(&format!("{label}, piped"), &run, &dest, &image.bytes);
        checked += 2;

        // xz: stream padding (a multiple of four zero bytes) between the streams.
        if argv == XZ {
            let padded = [&parts[0][..], &[0u8; 8], &parts[1][..]].concat();
            let packed = work.fresh("padded", ext);
            fs::write(&packed, &padded).expect("write");
            let dest = work.fresh("dest", ".img");
            let run = copy(Some(&image.bmap), &[], os(&packed), &dest, Input::None);
            failures.copied(
                &format!("{label} with stream padding"),
                &run,
                &dest,
                &image.bytes,
            );
            checked += 1;
        }
    }
    (failures, checked)
}

#[test]
fn concatenated_streams_decode_to_the_end() {
    let work = Work::new();
    let image = work.reference("2.0");
    let (failures, checked) = concatenated(
        &work,
        &image,
        &[
            ("two gzip members", GZIP, ".gz"),
            ("two xz streams", XZ, ".xz"),
            ("two bzip2 streams", BZIP2, ".bz2"),
            ("two zstd frames", &["zstd", "-q", "-c"], ".zst"),
            ("two lz4 frames", LZ4, ".lz4"),
            ("two lzop files", LZOP, ".lzo"),
        ],
    );
    failures.assert_none(checked);
}

/// `lz4 -dc` reads legacy streams one after another (a second magic number where
/// the next block size would be).
#[test]
fn concatenated_legacy_lz4_streams_decode_to_the_end() {
    let work = Work::new();
    let image = work.reference("2.0");
    let (failures, checked) = concatenated(
        &work,
        &image,
        &[("two legacy lz4 streams", LZ4_LEGACY, ".lz4")],
    );
    failures.assert_none(checked);
}

// ---------------------------------------------------------------------------------
// 2. Broken streams

#[test]
fn truncated_or_corrupt_streams_fail_cleanly() {
    let work = Work::new();
    let image = work.reference("2.0");
    let mut failures = Failures::default();
    let mut checked = 0;
    for f in FORMATS {
        if !f.available() {
            continue;
        }
        let data = fs::read(f.pack(&work, &image.raw)).expect("read");
        let mut flipped = data.clone();
        flipped[data.len() / 2] ^= 0x55;
        let variants: [(&str, &[u8]); 4] = [
            ("cut at half", &data[..data.len() / 2]),
            ("last byte cut (trailer)", &data[..data.len() - 1]),
            ("last 4 bytes cut (trailer)", &data[..data.len() - 4]),
            ("one byte flipped in the middle", &flipped),
        ];
        for (how, bytes) in variants {
            let case = format!("{} {how}", f.label);
            let broken = work.fresh("broken", f.ext);
            fs::write(&broken, bytes).expect("write");
            let dest = work.fresh("dest", ".img");
            let run = copy(Some(&image.bmap), &[], os(&broken), &dest, Input::None);
            failures.failed(&case, &run, &dest);
            // Every image byte was there: only the decoder can have noticed, and its
            // error names the format.
            if how.contains("trailer") && !f.names().iter().any(|n| run.error().contains(n)) {
                failures.push(
                    &case,
                    format!(
                        "the error does not name {:?}; {}",
                        f.names(),
                        run.describe()
                    ),
                );
            }
            checked += 1;
        }
        // A cut download piped in.
        let dest = work.fresh("dest", ".img");
        let cut = &data[..data.len() - 4];
        let run = copy(
            Some(&image.bmap),
            &[],
            OsStr::new(STDIN),
            &dest,
            Input::Pipe(cut),
        );
        failures.failed(&format!("{} last 4 bytes cut, piped", f.label), &run, &dest);
        checked += 1;
    }
    failures.assert_none(checked);
}

#[test]
fn data_in_a_hole_is_an_error_unless_verification_is_off() {
    let work = Work::new();
    let image = work.reference("2.0");
    // Block 2 lies between ranges 0-1 and 3-5; block 200 (partial, the last) is the
    // trailing hole after range 198-199.
    let pokes = [
        (2 * BLOCK + 123, "block 2 "),
        (200 * BLOCK + 5, "block 200 "),
    ];
    let mut failures = Failures::default();
    let mut checked = 0;
    for (offset, block) in pokes {
        let mut poked = image.bytes.clone();
        poked[offset] = 0x5a;
        let raw = work.raw_file(&poked);
        let formats = std::iter::once(&RAW).chain(FORMATS);
        for f in formats {
            // The trailing hole for a few formats; the middle one for all.
            let few = [
                "raw",
                "gzip",
                "xz -T0",
                "zstd --long=31",
                "tar",
                "tar.xz",
                "zip from stdin",
            ];
            if block == "block 200 " && !few.contains(&f.label) {
                continue;
            }
            if !f.available() {
                continue;
            }
            let packed = f.pack(&work, &raw);
            // A raw file is read at offsets (holes skipped); piped, it is read through.
            let piped = fs::read(&packed).expect("read");
            let (image_arg, input) = if f.argv.is_empty() && f.wrap == Wrap::None {
                (OsStr::new(STDIN), Input::Pipe(&piped))
            } else {
                (os(&packed), Input::None)
            };
            let case = format!("{} with data in {block}", f.label);
            let dest = work.fresh("dest", ".img");
            let run = copy(Some(&image.bmap), &[], image_arg, &dest, input);
            failures.failed_saying(
                &case,
                &run,
                &dest,
                &[block, "is a hole in the bmap but holds data"],
            );

            let input = if f.argv.is_empty() && f.wrap == Wrap::None {
                Input::Pipe(&piped)
            } else {
                Input::None
            };
            let dest = work.fresh("dest", ".img");
            let run = copy(Some(&image.bmap), &["--no-verify"], image_arg, &dest, input);
            // Holes are not written: the destination is the image as its bmap knew it.
            failures.copied(&format!("{case}, --no-verify"), &run, &dest, &image.bytes);
            checked += 2;
        }
    }
    failures.assert_none(checked);
}

// ---------------------------------------------------------------------------------
// 3. Decoded size against the bmap

#[test]
fn an_image_whose_size_disagrees_with_the_bmap_fails() {
    let work = Work::new();
    let image = work.reference("2.0");
    let mut longer_zeros = image.bytes.clone();
    longer_zeros.extend([0u8; BLOCK]);
    let mut longer_data = image.bytes.clone();
    longer_data.extend(b"junk");
    let shorter = &image.bytes[..image.bytes.len() - 1000];
    let variants: [(&str, &[u8]); 3] = [
        ("4096 zero bytes appended", &longer_zeros),
        ("4 bytes of data appended", &longer_data),
        ("the last 1000 bytes removed", shorter),
    ];
    let mut failures = Failures::default();
    let mut checked = 0;
    for (how, bytes) in variants {
        let raw = work.raw_file(bytes);
        for f in std::iter::once(&RAW).chain(FORMATS) {
            if !f.available() {
                continue;
            }
            let packed = f.pack(&work, &raw);
            let dest = work.fresh("dest", ".img");
            let run = copy(Some(&image.bmap), &[], os(&packed), &dest, Input::None);
            failures.failed(&format!("{} with {how}", f.label), &run, &dest);
            checked += 1;
        }
        for label in ["gzip", "zstd --long=31", "tar", "zip from stdin"] {
            let f = format(label);
            if !f.available() {
                continue;
            }
            let data = fs::read(f.pack(&work, &raw)).expect("read");
            let dest = work.fresh("dest", ".img");
            let run = copy(
                Some(&image.bmap),
                &[],
                OsStr::new(STDIN),
                &dest,
                Input::Pipe(&data),
            );
            failures.failed(&format!("{label} with {how}, piped"), &run, &dest);
            checked += 1;
        }
        let dest = work.fresh("dest", ".img");
        let run = copy(
            Some(&image.bmap),
            &[],
            OsStr::new(STDIN),
            &dest,
            Input::Pipe(bytes),
        );
        failures.failed(&format!("raw with {how}, piped"), &run, &dest);
        checked += 1;
    }
    failures.assert_none(checked);
}

// ---------------------------------------------------------------------------------
// 4. --nobmap

#[test]
fn nobmap_writes_the_whole_decoded_image_and_refuses_a_cut_stream() {
    let work = Work::new();
    let image = work.reference("2.0");
    let mut failures = Failures::default();
    let mut checked = 0;
    for f in FORMATS {
        if !f.available() {
            continue;
        }
        let packed = f.pack(&work, &image.raw);
        let data = fs::read(&packed).expect("read");

        let dest = work.fresh("dest", ".img");
        let run = copy(None, &["--nobmap"], os(&packed), &dest, Input::None);
        failures.copied_quietly(&format!("{} --nobmap", f.label), &run, &dest, &image.bytes);

        let dest = work.fresh("dest", ".img");
        let run = copy(
            None,
            &["--nobmap"],
            OsStr::new(STDIN),
            &dest,
            Input::Pipe(&data),
        );
        failures.copied_quietly(
            &format!("{} --nobmap, piped", f.label),
            &run,
            &dest,
            &image.bytes,
        );

        // The reference exits 0 on these; a cut download must never look like success.
        for (how, bytes) in [
            ("last 4 bytes cut", &data[..data.len() - 4]),
            ("cut at half", &data[..data.len() / 2]),
        ] {
            let broken = work.fresh("broken", f.ext);
            fs::write(&broken, bytes).expect("write");
            let dest = work.fresh("dest", ".img");
            let run = copy(None, &["--nobmap"], os(&broken), &dest, Input::None);
            failures.failed(&format!("{} --nobmap, {how}", f.label), &run, &dest);
            checked += 1;
        }
        let dest = work.fresh("dest", ".img");
        let cut = &data[..data.len() - 4];
        let run = copy(
            None,
            &["--nobmap"],
            OsStr::new(STDIN),
            &dest,
            Input::Pipe(cut),
        );
        failures.failed(
            &format!("{} --nobmap, last 4 bytes cut, piped", f.label),
            &run,
            &dest,
        );
        checked += 3;

        // Without a bmap, the format's own checksum is all there is.
        if f.checksummed() {
            let mut flipped = data.clone();
            flipped[data.len() / 2] ^= 0x55;
            let broken = work.fresh("broken", f.ext);
            fs::write(&broken, &flipped).expect("write");
            let dest = work.fresh("dest", ".img");
            let run = copy(None, &["--nobmap"], os(&broken), &dest, Input::None);
            failures.failed(
                &format!("{} --nobmap, one byte flipped", f.label),
                &run,
                &dest,
            );
            checked += 1;
        }
    }
    failures.assert_none(checked);
}

// ---------------------------------------------------------------------------------
// 5. Bmap discovery beside a compressed image

#[test]
fn the_bmap_of_a_compressed_image_is_discovered_by_its_uncompressed_name() {
    let work = Work::new();
    let image = work.reference("2.0");
    let mut failures = Failures::default();
    let mut checked = 0;
    // (format, image name, bmap name)
    let cases = [
        ("xz -T0", "disk.img.xz", "disk.img.bmap"),
        ("tar.gz", "disk.img.tar.gz", "disk.img.bmap"),
        ("tgz", "disk.tgz", "disk.bmap"),
        ("zstd --long=31", "disk.img.zst", "disk.img.zst.bmap"),
        ("zip", "disk.img.zip", "disk.img.bmap"),
    ];
    for (label, name, bmap_name) in cases {
        let f = format(label);
        if !f.available() {
            continue;
        }
        let dir = work.fresh("discovery", "");
        fs::create_dir(&dir).expect("mkdir");
        let packed = dir.join(name);
        fs::rename(f.pack(&work, &image.raw), &packed).expect("rename");
        fs::copy(&image.bmap, dir.join(bmap_name)).expect("copy the bmap");
        let dest = work.fresh("dest", ".img");
        let run = copy(None, &[], os(&packed), &dest, Input::None);
        let case = format!("{name} beside {bmap_name}");
        if !run.stderr.contains(&format!(
            "discovered bmap file '{}'",
            dir.join(bmap_name).display()
        )) {
            failures.push(
                &case,
                format!(
                    "the bmap was not reported as discovered; {}",
                    run.describe()
                ),
            );
        }
        failures.copied(&case, &run, &dest, &image.bytes);
        checked += 1;
    }
    failures.assert_none(checked);
}

// ---------------------------------------------------------------------------------
// Sparse tar members (`tar --sparse`), which the reference reads through `tar -x -O`.

const SPARSE_TARS: &[Fmt] = &[
    fmt("GNU tar --sparse", ".tar", Wrap::TarSparse, &[]),
    fmt("GNU tar.gz --sparse", ".tar.gz", Wrap::TarSparse, GZIP),
    fmt("pax tar --sparse", ".tar", Wrap::TarPaxSparse, &[]),
    fmt(
        "pax tar.zst --sparse",
        ".tar.zst",
        Wrap::TarPaxSparse,
        ZSTD_LONG,
    ),
];

#[test]
fn sparse_tar_members_are_expanded_as_the_reference_does() {
    let work = Work::new();
    let image = work.golden("mixed.img");
    let mut failures = Failures::default();
    let mut checked = 0;
    for f in SPARSE_TARS {
        if !f.available() {
            continue;
        }
        let packed = f.pack(&work, &image.raw);
        let dest = work.fresh("dest", ".img");
        let run = copy(Some(&image.bmap), &[], os(&packed), &dest, Input::None);
        failures.copied(
            &format!("mixed.img as {}", f.label),
            &run,
            &dest,
            &image.bytes,
        );
        checked += 1;
    }
    failures.assert_none(checked);
}

/// Whether or not sparse members are supported, `--nobmap` must never write the
/// archive's condensed member (sparse map and data runs) as if it were the image.
#[test]
fn a_sparse_tar_member_is_never_written_condensed() {
    let work = Work::new();
    let image = work.golden("mixed.img");
    let mut failures = Failures::default();
    let mut checked = 0;
    for f in SPARSE_TARS {
        if !f.available() {
            continue;
        }
        let packed = f.pack(&work, &image.raw);
        let dest = work.fresh("dest", ".img");
        let run = copy(None, &["--nobmap"], os(&packed), &dest, Input::None);
        let case = format!("mixed.img as {}, --nobmap", f.label);
        if run.code == Some(0) {
            failures.copied(&case, &run, &dest, &image.bytes);
        } else {
            failures.failed(&case, &run, &dest);
        }
        checked += 1;
    }
    failures.assert_none(checked);
}
