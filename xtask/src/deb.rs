//! The Debian package: a staging tree laid out as the installed files (the static
//! binary, the man pages gzipped, the bash/zsh/fish completions, the copyright, the
//! Debian changelog and the lintian overrides from `packaging/debian/`), a control file
//! and md5sums, packed by `dpkg-deb --build --root-owner-group` (no packaging tool to
//! compile). The version and the maintainer come from `packaging/debian/changelog`,
//! whose upstream version must be the workspace's.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use flate2::{Compression, GzBuilder};
use md5::{Digest, Md5};

/// `packaging/debian/` in the workspace.
fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/debian")
}

/// Where the completions that `cargo xtask completions` writes are installed.
const COMPLETIONS: [(&str, &str); 3] = [
    (
        "bmaptool.bash",
        "usr/share/bash-completion/completions/bmaptool",
    ),
    ("_bmaptool", "usr/share/zsh/vendor-completions/_bmaptool"),
    (
        "bmaptool.fish",
        "usr/share/fish/vendor_completions.d/bmaptool.fish",
    ),
];

/// Builds `dir/bmaptool_VERSION_ARCH.deb` from `dir/man`, `dir/completions` and the
/// static `binary`; returns its path.
pub fn build(dir: &Path, binary: &Path) -> Result<PathBuf> {
    let changelog = fs::read_to_string(packaging().join("changelog"))
        .context("cannot read packaging/debian/changelog")?;
    let (version, maintainer) = changelog_head(&changelog)?;
    let arch = deb_arch()?;
    let root = dir.join(".deb-root");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot clear {}", root.display()))?;
    }
    install(&root, binary, "usr/bin/bmaptool", 0o755)?;
    install_man_pages(&root, &dir.join("man"))?;
    for (name, to) in COMPLETIONS {
        install(&root, &dir.join("completions").join(name), to, 0o644)?;
    }
    let doc = "usr/share/doc/bmaptool";
    install(
        &root,
        &packaging().join("copyright"),
        &format!("{doc}/copyright"),
        0o644,
    )?;
    write(
        &root.join(doc).join("changelog.Debian.gz"),
        &gzip(changelog.as_bytes())?,
    )?;
    let overrides = packaging().join("lintian-overrides");
    install(
        &root,
        &overrides,
        "usr/share/lintian/overrides/bmaptool",
        0o644,
    )?;
    let files = list_files(&root)?;
    write_control(&root, &files, &version, &maintainer, &arch)?;
    let deb = dir.join(format!("bmaptool_{version}_{arch}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .status()
        .context("cannot run dpkg-deb (Debian's dpkg package)")?;
    ensure!(status.success(), "dpkg-deb failed ({status})");
    fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    Ok(deb)
}

/// The version (`4.0.0-1`) and the maintainer of the changelog's newest entry.
fn changelog_head(changelog: &str) -> Result<(String, String)> {
    let first = changelog.lines().next().unwrap_or_default();
    let version = first
        .split_once(" (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(v, _)| v.to_owned())
        .context("packaging/debian/changelog: no `bmaptool (VERSION)` first line")?;
    let upstream = version
        .rsplit_once('-')
        .map_or(version.as_str(), |(u, _)| u);
    ensure!(
        upstream == env!("CARGO_PKG_VERSION"),
        "packaging/debian/changelog is for {upstream}, the workspace is {}: add an entry",
        env!("CARGO_PKG_VERSION")
    );
    let maintainer = changelog
        .lines()
        .find_map(|l| l.strip_prefix(" -- "))
        .and_then(|l| l.split_once(">  "))
        .map(|(who, _)| format!("{who}>"))
        .context("packaging/debian/changelog: no ` -- NAME <EMAIL>  DATE` line")?;
    Ok((version, maintainer))
}

/// Debian's name for the architecture of the static build.
fn deb_arch() -> Result<String> {
    Ok(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        other => bail!("no Debian architecture known for {other}"),
    }
    .to_owned())
}

/// Copies `from` to `root/to` with `mode`, making the directories.
fn install(root: &Path, from: &Path, to: &str, mode: u32) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let dest = root.join(to);
    write(&dest, &bytes)?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Writes `bytes` to `path` (mode 0644, directories 0755).
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// Every `*.1` page of `man` as `usr/share/man/man1/NAME.1.gz`.
fn install_man_pages(root: &Path, man: &Path) -> Result<()> {
    let mut pages = 0;
    for entry in fs::read_dir(man).with_context(|| format!("cannot list {}", man.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".1") {
            continue;
        }
        let page = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        write(
            &root.join("usr/share/man/man1").join(format!("{name}.gz")),
            &gzip(&page)?,
        )?;
        pages += 1;
    }
    ensure!(pages > 0, "no man pages in {}", man.display());
    Ok(())
}

/// `gzip -9n`: best compression, no name and no time in the header.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    out.write_all(bytes)?;
    Ok(out.finish()?)
}

/// The files under `root`, as paths relative to it, sorted; the directories are made
/// 0755 on the way.
fn list_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.strip_prefix(root)?.to_path_buf());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `DEBIAN/control` and `DEBIAN/md5sums`.
fn write_control(
    root: &Path,
    files: &[PathBuf],
    version: &str,
    maintainer: &str,
    arch: &str,
) -> Result<()> {
    let mut md5sums = String::new();
    let mut kib = 0;
    for file in files {
        let bytes = fs::read(root.join(file))?;
        kib += bytes.len().div_ceil(1024);
        let digest = Md5::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        md5sums.push_str(&format!("{hex}  {}\n", file.display()));
    }
    let built_using = built_using()?;
    let control = format!(
        "Package: bmaptool\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {maintainer}\n\
         Installed-Size: {kib}\n\
         Provides: bmap-tools\n\
         Conflicts: bmap-tools\n\
         Replaces: bmap-tools\n\
         Suggests: openssh-client, sshpass\n\
         Built-Using: {built_using}\n\
         Section: utils\n\
         Priority: optional\n\
         {DESCRIPTION}"
    );
    write(&root.join("DEBIAN/control"), control.as_bytes())?;
    write(&root.join("DEBIAN/md5sums"), md5sums.as_bytes())
}

/// The glibc source that the static binary contains (`glibc (= 2.36-9+deb12u14)`),
/// from the installed `libc6-dev` (whose `libc.a` was linked in).
fn built_using() -> Result<String> {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${source:Package} (= ${source:Version})",
            "libc6-dev",
        ])
        .output()
        .context("cannot run dpkg-query")?;
    ensure!(
        out.status.success(),
        "dpkg-query knows no libc6-dev (it provides libc.a)"
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

const DESCRIPTION: &str = "\
Description: flash raw disk images quickly and safely using block maps
 bmaptool copies a raw disk image to a block device or a file, writing only
 the blocks that its block map (bmap) lists and checking them against the
 bmap's checksums: flashing an SD card or a USB stick this way is much faster
 than with dd. It also creates bmaps for sparse image files.
 .
 This is bmaptool 4, written in Rust: a drop-in replacement for the bmaptool
 command of bmap-tools (same commands and options). It is one static binary
 that needs no Python and no external decompressors: gzip, bzip2, xz, zstd,
 lz4, lzo, tar and zip images are read directly, also over HTTP(S) and FTP.
";
