//! `bmaptool create [-o OUTPUT] [--no-checksum] IMAGE`: the bmap of a sparse image, to
//! standard output or to OUTPUT. OUTPUT is written to a temporary file beside it and
//! renamed into place only when complete, so a failure or Ctrl-C never leaves a
//! half-written bmap (the reference leaves an empty or partial one).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::create::{self, Options};
use bmap::format::{ChecksumKind, human_size};
use bmap::layout::Method;

use crate::cli::CreateArgs;
use crate::messages;

/// Runs `create`.
pub fn run(args: &CreateArgs, interrupt: &Interrupt) -> Result<()> {
    let image = open_image(&args.image)?;
    let output = match &args.output {
        Some(path) => Some(Output::prepare(path, &image, interrupt)?),
        None => None,
    };
    let options = Options {
        checksum: (!args.no_checksum).then_some(ChecksumKind::Sha256),
        interrupt: interrupt.clone(),
        ..Options::default()
    };
    let outcome = create::create(&image, &options)
        .with_context(|| format!("cannot generate the bmap for '{}'", args.image.display()))?;
    let bmap = &outcome.bmap;
    messages::debug(format_args!(
        "found {} mapped ranges with {}, block size {}",
        bmap.ranges().len(),
        match outcome.method {
            Method::Fiemap => "FIEMAP",
            Method::SeekData => "SEEK_DATA/SEEK_HOLE",
        },
        bmap.block_size()
    ));
    let xml = bmap.to_xml();
    match output {
        Some(output) => output.commit(&xml, interrupt)?,
        None => {
            // A pipe whose reader stops reading blocks the write: let a signal end it.
            let xml = xml.clone();
            crate::signals::blocking(interrupt, move || {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&xml).and_then(|()| stdout.flush())
            })?
            .context("cannot write the bmap to standard output")?;
        }
    }
    if outcome.fully_mapped() {
        messages::warning(format_args!(
            "all {} are mapped, no holes in '{}'",
            human_size(bmap.image_size()),
            args.image.display()
        ));
        messages::warning("was the image handled incorrectly and holes were expanded?");
    }
    Ok(())
}

/// Opens the image; the library checks it (a regular file, not empty) once.
fn open_image(path: &Path) -> Result<File> {
    create::open(path).with_context(|| format!("cannot generate the bmap for '{}'", path.display()))
}

/// The path a dangling symlink points to (followed through further links), or `path`
/// itself when it is not a symlink.
fn dangling_target(path: &Path) -> PathBuf {
    let mut current = path.to_owned();
    for _ in 0..40 {
        let Ok(link) = std::fs::read_link(&current) else {
            return current;
        };
        current = match current.parent() {
            Some(dir) if link.is_relative() => dir.join(link),
            _ => link,
        };
    }
    current
}

/// Where the bmap goes when `-o` is given.
enum Output {
    /// A regular file (new or replaced): written to a temporary file, then renamed.
    Replace {
        target: PathBuf,
        temp: Temp,
        mode: Option<u32>,
    },
    /// Something else that exists (a FIFO, `/dev/stdout`, a character device): written as is.
    Direct { file: File, path: PathBuf },
}

impl Output {
    /// Checks and opens the output before the (possibly long) work starts, so that an
    /// unwritable OUTPUT fails at once.
    fn prepare(path: &Path, image: &File, interrupt: &Interrupt) -> Result<Output> {
        let cannot = || format!("cannot create the output file '{}'", path.display());
        let existing = std::fs::metadata(path).ok();
        if let Some(meta) = &existing {
            let image_meta = image.metadata().with_context(cannot)?;
            if meta.dev() == image_meta.dev() && meta.ino() == image_meta.ino() {
                bail!(
                    "the output file '{}' is the image itself: give the bmap another name",
                    path.display()
                );
            }
            if meta.is_dir() {
                bail!("the output '{}' is a directory", path.display());
            }
            if !meta.is_file() {
                // A FIFO's open waits for a reader: let a signal end that wait.
                let fifo = path.to_owned();
                let file = crate::signals::blocking(interrupt, move || {
                    OpenOptions::new().write(true).open(fifo)
                })?
                .with_context(cannot)?;
                return Ok(Output::Direct {
                    file,
                    path: path.to_owned(),
                });
            }
        }
        // Replace the file a symlink points to, not the symlink (a dangling one too).
        let target = match &existing {
            Some(_) => std::fs::canonicalize(path).with_context(cannot)?,
            None => dangling_target(path),
        };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let temp = Temp::new(&dir).with_context(cannot)?;
        Ok(Output::Replace {
            target,
            temp,
            mode: existing.map(|m| m.mode() & 0o7777),
        })
    }

    /// Writes the bmap and puts it in place.
    fn commit(self, xml: &[u8], interrupt: &Interrupt) -> Result<()> {
        match self {
            // A FIFO whose reader stops reading blocks the write: let a signal end it.
            Output::Direct { mut file, path } => {
                let xml = xml.to_vec();
                crate::signals::blocking(interrupt, move || file.write_all(&xml))?
                    .with_context(|| format!("cannot write the bmap to '{}'", path.display()))
            }
            Output::Replace { target, temp, mode } => {
                let cannot = || format!("cannot write the bmap to '{}'", target.display());
                let file = temp.file();
                // Through the file, not the NamedTempFile, whose errors name the
                // temporary path: the user knows only the output's.
                (&*file).write_all(xml).with_context(cannot)?;
                if let Some(mode) = mode {
                    file.set_permissions(Permissions::from_mode(mode))
                        .with_context(cannot)?;
                }
                file.sync_all().with_context(cannot)?;
                temp.into_named()
                    .with_context(cannot)?
                    .persist(&target)
                    .map_err(|e| e.error)
                    .with_context(cannot)?;
                Ok(())
            }
        }
    }
}

/// The output while it is written: unnamed (`O_TMPFILE`) where the file system has
/// it, so that a SIGKILL before the end leaves nothing; else a named temporary file
/// (removed on drop, but left by a SIGKILL).
enum Temp {
    Unnamed { file: File, dir: PathBuf },
    Named(tempfile::NamedTempFile),
}

impl Temp {
    fn new(dir: &Path) -> io::Result<Temp> {
        match bmap::unnamed::open(dir) {
            Ok(file) => Ok(Temp::Unnamed {
                file,
                dir: dir.to_owned(),
            }),
            Err(e) if bmap::unnamed::refused(&e) => create_temp(dir).map(Temp::Named),
            Err(e) => Err(e),
        }
    }

    fn file(&self) -> &File {
        match self {
            Temp::Unnamed { file, .. } => file,
            Temp::Named(temp) => temp.as_file(),
        }
    }

    /// The complete output under a temporary name beside the target, to be renamed
    /// over it (a rename replaces an existing output atomically; a link cannot).
    fn into_named(self) -> io::Result<tempfile::NamedTempFile> {
        let (file, dir) = match self {
            Temp::Named(temp) => return Ok(temp),
            Temp::Unnamed { file, dir } => (file, dir),
        };
        let mut attempt = 0u32;
        loop {
            let path = std::path::absolute(dir.join(temp_name(attempt)))?;
            match bmap::unnamed::link(&file, &path) {
                Ok(()) => {
                    let path = tempfile::TempPath::try_from_path(path)?;
                    return Ok(tempfile::NamedTempFile::from_parts(file, path));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The name of a temporary output file: `.bmaptool-PID-STAMP-ATTEMPT.tmp`.
fn temp_name(attempt: u32) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".bmaptool-{}-{stamp:x}-{attempt}.tmp", std::process::id())
}

/// A new temporary file in `dir` (mode 0666 less the umask, as a file created with
/// open(2) would get), removed on drop. Made here rather than by `tempfile::Builder`,
/// whose errors append the temporary path to the OS error: messages name the output
/// the user gave, never the temporary file.
fn create_temp(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let mut attempt = 0u32;
    loop {
        let name = temp_name(attempt);
        // Absolute before it exists, so that nothing can fail between creating the
        // file and holding it in a guard that removes it.
        let path = std::path::absolute(dir.join(name))?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&path)
        {
            Ok(file) => {
                let path = tempfile::TempPath::try_from_path(path)?;
                return Ok(tempfile::NamedTempFile::from_parts(file, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
