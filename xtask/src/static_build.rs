//! The static binary: `bmaptool` built for the host's `*-unknown-linux-gnu` target with
//! glibc linked in (`-C target-feature=+crt-static -C relocation-model=static`; this
//! toolchain has no musl target),
//! in the `static` profile (release, stripped), then checked to have no program
//! interpreter: the kernel runs it directly, no `ld.so`, no shared library.
//!
//! The explicit `--target` keeps the flag off build scripts and proc macros (which must
//! stay dynamic to be loaded by the compiler). glibc >= 2.34 has the `files` and `dns`
//! name services built into `libc.a`, so host names resolve without loading NSS modules
//! (other modules named in `/etc/nsswitch.conf`, such as `mdns4_minimal`, are skipped).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// The flags of the static build: glibc linked in, and a fixed load address
/// (`relocation-model=static`): a classic static executable, which `file` calls
/// "statically linked". A static-pie build would keep the program's own address
/// randomised, but `file` calls it "static-pie linked" and some loaders and checkers
/// of old systems do not know the kind; the stack, heap and mappings stay randomised.
const RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// The Rust target of the static build: the host's architecture, GNU libc.
pub fn target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Builds the static binary and copies it to `dir/bmaptool`; returns that path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let target = target();
    let status = Command::new(cargo())
        .args(["build", "--locked", "--profile", "static"])
        .args(["-p", "bmaptool", "--bin", "bmaptool", "--target", &target])
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("cannot run cargo build")?;
    ensure!(status.success(), "the static build failed ({status})");
    let built = target_dir()?.join(&target).join("static/bmaptool");
    check_static(&built)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join("bmaptool");
    fs::copy(&built, &out).with_context(|| format!("cannot copy to {}", out.display()))?;
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755))?;
    println!("{}", out.display());
    Ok(out)
}

/// The cargo that runs this task (`cargo xtask` sets `CARGO`).
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace's target directory (honours `CARGO_TARGET_DIR` and cargo's config).
fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata names no target directory")?;
    Ok(PathBuf::from(dir))
}

/// Fails unless `path` is a 64-bit little-endian ELF executable without a `PT_INTERP`
/// program header (a dynamically linked program names its loader there).
pub fn check_static(path: &Path) -> Result<()> {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        elf.get(..6) == Some(b"\x7fELF\x02\x01"),
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let phoff = elf
        .get(0x20..0x28)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .context("truncated ELF header")?;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    let (Some(size), Some(count)) = (size, count) else {
        bail!("truncated ELF header in {}", path.display());
    };
    let phoff = usize::try_from(phoff)?;
    for i in 0..usize::from(count) {
        let at = phoff + i * usize::from(size);
        let kind = elf
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .context("truncated program header table")?;
        ensure!(
            kind != PT_INTERP,
            "{} is dynamically linked (it names a program interpreter)",
            path.display()
        );
    }
    Ok(())
}
