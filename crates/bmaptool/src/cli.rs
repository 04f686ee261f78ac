//! The CLI definition, mirroring the reference's argparse interface: same commands,
//! options and positional arguments; unambiguous prefixes of long options are accepted
//! (`--no-ch` for `--no-checksum`) as argparse does. `--help`, the man page and the
//! shell completions are all generated from this one definition.
//!
//! Every path is taken as an `OsString`/`PathBuf`, never as a `String`: Linux paths
//! are bytes, and a name that is not UTF-8 must work as it does with `cp` or `dd`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Create block maps (bmap) of sparse images and flash them quickly and safely";

const LONG_ABOUT: &str = "\
Create block maps (bmap) of sparse images and flash them quickly and safely.

A raw disk image is usually a large sparse file: most of it is holes. Its block map \
(bmap) lists the blocks that hold data, with a checksum per range of blocks, so that \
an image can be written to a device by copying only those blocks and verifying them \
on the way. Make the bmap right after building the image, before compression, upload \
or download lose its sparseness.";

const EXIT_STATUS: &str = "Exit status:
  0    success; verify: every range is good
  1    an error (create, copy, info); verify: at least one range is bad
  2    a usage error (an unknown option, a missing argument); verify: any error,
       so the check could not be made
  130  interrupted by SIGINT (Ctrl-C)
  143  terminated by SIGTERM

With several destinations, the status is non-zero when any of them failed. The JSON
lines of copy's and verify's progress options end with a result object that names
the failure with a stable error code (see docs/json.md).";

/// `bmaptool [-q|-d] COMMAND ...`
#[derive(Debug, Parser)]
#[command(
    name = "bmaptool",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXIT_STATUS,
    infer_long_args = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Be quiet: print only warnings and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print debugging information
    #[arg(short, long, global = true)]
    pub debug: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the bmap of an image file (which should be a sparse file)
    #[command(
        long_about = "Generate the bmap of an image file (which should be a sparse file).\n\n\
        The mapped blocks are found with the FIEMAP ioctl, or SEEK_DATA/SEEK_HOLE where \
        the file system lacks FIEMAP; every range of mapped blocks gets a SHA-256 \
        checksum. The bmap (format 2.0) goes to standard output unless -o is given.",
        after_help = "Examples:\n  bmaptool create image.raw > image.bmap\n  bmaptool create -o image.bmap image.raw"
    )]
    Create(CreateArgs),

    /// Write an image to a block device or file using its bmap
    #[command(
        long_about = "Write an image to a block device or file using its bmap.\n\n\
        Only the blocks the bmap lists are written, and every range is checked against \
        its checksum as it passes. Without --bmap, the bmap is looked for beside the image: \
        IMAGE.bmap, then with one extension stripped at a time (disk.img.gz -> \
        disk.img.gz.bmap, disk.img.bmap, disk.bmap). A block device is opened exclusively \
        and refused when it, or one of its partitions, is mounted, used as swap or held \
        by another device, or is smaller than the image. Its old partition tables (first \
        and last MiB) are wiped just before the first write, and the image's own (its first \
        MiB, and a GPT's last MiB) are written last, after everything else is synced: an \
        interrupted flash leaves no valid partition table (--no-fail-safe: the plain \
        order).\n\n\
        IMAGE may be compressed (gz, bz2, xz, lzma, lzo, lz4, zst) or archived (tar, zip), \
        decoded on the fly; a URL (http, https, ftp, file, ssh); or - for standard input. \
        The bmap's OpenPGP signature (IMAGE's bmap name plus .asc or .sig, or a \
        clearsigned bmap) is verified before anything is written.\n\n\
        Several DESTs are written at once: the image is read, decoded and verified once, \
        and each DEST has its own writer. Every DEST is checked before any is written (one \
        refusal refuses the run). A DEST that fails is dropped and the others go on; one \
        that takes no data for 30 s (BMAPTOOL_MAX_LAG, in seconds) while the others wait \
        for it is dropped too. A table ends the run; the exit status is 1 when any DEST \
        failed.",
        after_help = "Examples:\n  bmaptool copy disk.img /dev/sdX\n  bmaptool copy --bmap disk.bmap disk.img disk-copy.img\n  cat disk.img | bmaptool copy --bmap disk.img.bmap - /dev/sdX\n  bmaptool copy --seek 256MiB rootfs.ext4 /dev/sdX   # into the partition at 256 MiB\n  bmaptool copy disk.img.zst /dev/sdX /dev/sdY /dev/sdZ"
    )]
    Copy(CopyArgs),

    /// Check a block device or file against a bmap, without the image
    #[command(
        long_about = "Check a block device or file against a bmap, without the image.\n\n\
        Every range the bmap lists is read back from TARGET, bypassing the page cache \
        (O_DIRECT; where the kernel refuses it, the range is dropped from the cache before \
        it is read), and compared with its checksum; the bad ranges are named by blocks \
        and bytes. Without --bmap, the bmap is looked for beside TARGET when it is a \
        regular file, as copy looks beside the image; a block device needs --bmap. The \
        bmap may be a URL, and its OpenPGP signature is verified as copy does.\n\n\
        Exit status: 0 when every range is good, 1 when any range is bad, 2 when the \
        check could not be made (an error, or a usage error).",
        after_help = "Examples:\n  bmaptool verify --bmap disk.img.bmap /dev/sdX\n  bmaptool verify --json --bmap https://example.com/disk.img.bmap /dev/sdX\n  bmaptool verify disk-copy.img"
    )]
    Verify(VerifyArgs),

    /// Show what a bmap says: sizes, mapped blocks, checksums and signature
    #[command(
        long_about = "Show what a bmap says: its format version, the image's size, the block \
        size, how many blocks are mapped (and what share of the image they are), the number \
        of ranges, the checksum type, whether the bmap's own checksum matches its contents, \
        and its OpenPGP signature's status (looked for as copy does: inline, or BMAP.asc or \
        BMAP.sig beside it).\n\n\
        BMAP may be a URL (http, https, ftp, file, ssh) or - for standard input.\n\n\
        Exit status: 0 when the bmap was read and nothing checked failed; 1 when it cannot \
        be read or parsed, when its own checksum does not match, or when a signature check \
        was asked for with --bmap-sig, --keyring or --fingerprint and the signature is \
        missing or does not verify. Without those options a bad or unverifiable signature is \
        shown, not fatal.",
        after_help = "Examples:\n  bmaptool info disk.img.bmap\n  bmaptool info --json https://example.com/disk.img.bmap\n  bmaptool info --keyring signer.gpg disk.img.bmap"
    )]
    Info(InfoArgs),
}

/// Arguments of `bmaptool info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The block map file to describe (a path, a URL, or "-" for standard input)
    #[arg(value_name = "BMAP", value_hint = clap::ValueHint::FilePath)]
    pub bmap: OsString,

    /// The bmap's signature options.
    #[command(flatten)]
    pub signature: SignatureArgs,

    /// Print one JSON document on standard output instead of text (see docs/json.md)
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `bmaptool copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The image to copy ("-" for standard input)
    #[arg(value_name = "IMAGE", value_hint = clap::ValueHint::FilePath)]
    pub image: OsString,

    /// The destination file or device node to copy the image to; several are written
    /// at once (the image is read and verified once)
    #[arg(value_name = "DEST", value_hint = clap::ValueHint::FilePath, required = true, num_args = 1..)]
    pub dest: Vec<PathBuf>,

    /// The block map file for the image
    #[arg(long, value_name = "BMAP", value_hint = clap::ValueHint::FilePath)]
    pub bmap: Option<OsString>,

    /// Allow copying without a bmap file (the whole image is written)
    #[arg(long)]
    pub nobmap: bool,

    /// The bmap's signature options.
    #[command(flatten)]
    pub signature: SignatureArgs,

    /// Do not verify the data checksums while writing
    #[arg(long)]
    pub no_verify: bool,

    /// Write progress to a psplash pipe
    // `--p` stays this option's, as it was before `--progress` came.
    #[arg(long, alias = "p", value_name = "PSPLASH_PIPE", value_hint = clap::ValueHint::FilePath)]
    pub psplash_pipe: Option<PathBuf>,

    /// How progress is shown.
    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Refuse to write unless DEST is a removable device (or on a USB or MMC/SD bus)
    #[arg(long)]
    pub removable_device: bool,

    /// Read back everything written, bypassing the page cache, and compare it with
    /// what was written (the bytes checked against the bmap's checksums) while the
    /// copy goes on; a part that differs is written again, then the copy fails
    #[arg(long)]
    pub verify_written: bool,

    /// With --verify-written: how many times a part that reads back wrong is written
    /// again before the copy fails (0 to 100)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        requires = "verify_written",
        value_parser = clap::value_parser!(u32).range(0..=100)
    )]
    pub write_retries: u32,

    /// Write a block device in the plain order: do not wipe its old partition tables
    /// first, nor hold back the image's partition tables until the rest is written
    #[arg(long)]
    pub no_fail_safe: bool,

    /// Keep a GPT image's backup header where the image has it, instead of moving it
    /// to the end of a larger block device (as sgdisk -e does)
    #[arg(long)]
    pub no_gpt_move: bool,

    /// Discard the image's unmapped ranges on the device (BLKDISCARD) before writing;
    /// they may then read as zeros or as anything
    #[arg(long, conflicts_with = "zero_holes")]
    pub discard: bool,

    /// Make the image's unmapped ranges read as zeros on the device before writing
    /// (BLKZEROOUT where supported, zero writes otherwise)
    #[arg(long)]
    pub zero_holes: bool,

    /// Read the device first and write only the chunks (1 MiB) that differ; stops
    /// comparing after 64 MiB in a row differ
    #[arg(long)]
    pub skip_unchanged: bool,

    /// Write the image OFFSET bytes into DEST (a partition image into a whole disk or
    /// disk image): units K, M, G, T (or KiB, MiB...: powers of 1024), kB, MB, GB, TB
    /// (powers of 1000); a multiple of the bmap's block size (and of 512). DEST's
    /// other bytes are kept: a file is not truncated, the fail-safe order and the GPT
    /// move are off (also with --seek 0)
    #[arg(long, value_name = "OFFSET", allow_negative_numbers = true,
          value_parser = crate::size::parse_bytes)]
    pub seek: Option<u64>,

    /// The most memory a compressed image's header may ask for its decoding window
    /// (zstd) or dictionary (xz, lzma); a larger one is refused. Raise it for a
    /// trusted image made with `zstd --long=28` or more, or a larger xz dictionary:
    /// units as --seek. The default is 128 MiB, as `zstd -d` allows by default
    #[arg(long, value_name = "SIZE", default_value = "128MiB",
          value_parser = crate::size::parse_bytes)]
    pub max_window: u64,
}

/// The bmap's OpenPGP signature options, shared by `copy` and `verify`.
#[derive(Debug, Args)]
pub struct SignatureArgs {
    /// The detached OpenPGP signature of the bmap (found beside it as .asc or .sig
    /// otherwise)
    #[arg(long, value_name = "BMAP_SIG", value_hint = clap::ValueHint::FilePath)]
    pub bmap_sig: Option<OsString>,

    /// Do not verify the bmap's OpenPGP signature
    #[arg(long)]
    pub no_sig_verify: bool,

    /// The keyring to verify the signature with: a GnuPG keybox (.kbx) or an OpenPGP
    /// keyring file (default: the keys of GNUPGHOME or ~/.gnupg)
    #[arg(long, value_name = "KEYRING", value_hint = clap::ValueHint::FilePath)]
    pub keyring: Option<PathBuf>,

    /// Require the signature to be by this key (or one of its subkeys)
    #[arg(long, value_name = "FINGERPRINT")]
    pub fingerprint: Option<String>,
}

/// Arguments of `bmaptool verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The block device or file to check
    #[arg(value_name = "TARGET", value_hint = clap::ValueHint::FilePath)]
    pub target: PathBuf,

    /// The block map file to check against (a path or URL); found beside TARGET
    /// when it is a regular file
    #[arg(long, value_name = "BMAP", value_hint = clap::ValueHint::FilePath)]
    pub bmap: Option<OsString>,

    /// The bmap's signature options.
    #[command(flatten)]
    pub signature: SignatureArgs,

    /// Print the report as one JSON document on standard output (see docs/json.md)
    #[arg(long)]
    pub json: bool,

    /// Check an image that starts OFFSET bytes into TARGET (written with copy
    /// --seek); the same units as copy's --seek
    #[arg(long, value_name = "OFFSET", default_value = "0", hide_default_value = true,
          allow_negative_numbers = true,
          value_parser = crate::size::parse_bytes)]
    pub seek: u64,

    /// How progress is shown.
    #[command(flatten)]
    pub progress: ProgressArgs,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, otherwise a line every few seconds
    #[default]
    Auto,
    /// A bar, even when stderr is not a terminal
    Bar,
    /// A line every few seconds, even on a terminal
    Plain,
    /// JSON Lines instead of every human message (see docs/json.md)
    Json,
    /// No progress (the other messages stay)
    None,
}

/// `--progress` and `--progress-fd`, shared by `copy` and `verify`.
#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// How to show progress on stderr: auto, bar, plain, json (JSON Lines instead of
    /// every message, see docs/json.md) or none
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Also write progress, one JSON object per line (see docs/json.md), to this
    /// descriptor, which must be open for writing; stderr keeps the human messages
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(0..))]
    pub progress_fd: Option<i32>,
}

/// Arguments of `bmaptool create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The image to generate the bmap for
    #[arg(value_name = "IMAGE", value_hint = clap::ValueHint::FilePath)]
    pub image: PathBuf,

    /// The output file name (otherwise standard output is used)
    #[arg(short, long, value_name = "OUTPUT", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,

    /// Do not generate checksums for the block ranges
    #[arg(long)]
    pub no_checksum: bool,
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn long_option_prefixes_are_accepted() {
        let cli = Cli::try_parse_from([
            "bmaptool", "--qui", "create", "--no-ch", "--out", "x", "img",
        ])
        .expect("prefixes parse");
        assert!(cli.quiet);
        let Command::Create(args) = cli.command else {
            panic!("create expected")
        };
        assert!(args.no_checksum);
        assert_eq!(args.output, Some(PathBuf::from("x")));
    }

    #[test]
    fn copy_options_and_prefixes() {
        let cli = Cli::try_parse_from(["bmaptool", "copy", "--nobm", "--no-v", "-", "out"])
            .expect("prefixes parse");
        let Command::Copy(args) = cli.command else {
            panic!("copy expected")
        };
        assert!(args.nobmap && args.no_verify);
        assert_eq!(args.image, "-");
        // The default written for --help is the library's.
        assert_eq!(args.max_window, bmap::source::DEFAULT_MAX_WINDOW);
        let err = Cli::try_parse_from(["bmaptool", "copy", "--no", "img", "out"])
            .expect_err("--no is ambiguous");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn progress_options_keep_the_old_prefixes() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let Command::Copy(args) = parse(&["bmaptool", "copy", "--p", "fifo", "i", "d"])
            .expect("--p is still --psplash-pipe")
            .command
        else {
            panic!("copy expected")
        };
        assert_eq!(args.psplash_pipe, Some(PathBuf::from("fifo")));
        assert_eq!(args.progress.progress, ProgressMode::Auto);
        let Command::Copy(args) = parse(&[
            "bmaptool",
            "copy",
            "--ps",
            "fifo",
            "--progress",
            "json",
            "--progress-f",
            "3",
            "i",
            "d",
        ])
        .expect("--progress and a prefix of --progress-fd parse")
        .command
        else {
            panic!("copy expected")
        };
        assert_eq!(args.psplash_pipe, Some(PathBuf::from("fifo")));
        assert_eq!(args.progress.progress, ProgressMode::Json);
        assert_eq!(args.progress.progress_fd, Some(3));
        let Command::Verify(args) =
            parse(&["bmaptool", "verify", "--js", "--progress", "none", "t"])
                .expect("verify's prefixes parse")
                .command
        else {
            panic!("verify expected")
        };
        assert!(args.json);
        assert_eq!(args.progress.progress, ProgressMode::None);
    }

    #[test]
    fn paths_that_are_not_utf8_parse() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let name = |prefix: &str| {
            let mut bytes = prefix.as_bytes().to_vec();
            bytes.push(0xff);
            OsStr::from_bytes(&bytes).to_owned()
        };
        let cli = Cli::try_parse_from([
            OsString::from("bmaptool"),
            "copy".into(),
            "--bmap".into(),
            name("b"),
            "--bmap-sig".into(),
            name("s"),
            "--keyring".into(),
            name("k"),
            "--psplash-pipe".into(),
            name("p"),
            name("i"),
            name("d"),
        ])
        .expect("non-UTF-8 paths parse");
        let Command::Copy(args) = cli.command else {
            panic!("copy expected")
        };
        assert_eq!(args.image, name("i"));
        assert_eq!(args.dest, [PathBuf::from(name("d"))]);
        assert_eq!(args.bmap, Some(name("b")));
        assert_eq!(args.signature.bmap_sig, Some(name("s")));
        assert_eq!(args.signature.keyring, Some(PathBuf::from(name("k"))));
        assert_eq!(args.psplash_pipe, Some(PathBuf::from(name("p"))));
        let cli = Cli::try_parse_from([
            OsString::from("bmaptool"),
            "create".into(),
            "-o".into(),
            name("o"),
            name("i"),
        ])
        .expect("non-UTF-8 paths parse");
        let Command::Create(args) = cli.command else {
            panic!("create expected")
        };
        assert_eq!(args.image.as_os_str(), name("i"));
        assert_eq!(args.output, Some(PathBuf::from(name("o"))));
    }

    #[test]
    fn missing_image_is_a_usage_error() {
        let err = Cli::try_parse_from(["bmaptool", "create"]).expect_err("image is required");
        assert_eq!(err.exit_code(), 2);
    }
}
