//! The static binary and the Debian package that `cargo xtask dist` writes to
//! `target/dist` (or `$BMAPTOOL_DIST_DIR`): the binary is statically linked; inside an
//! empty chroot (the binary, the image, and an `/etc/hosts` naming the test host: no
//! libc, no NSS modules, no decompressors, no environment) it copies a `.zst` image and
//! an HTTP URL by host name, byte for byte, and without the hosts file it cannot
//! resolve that name (the hosts file is what answered); the `.deb` holds the binary,
//! the man pages, the completions and the copyright, and replaces `bmap-tools`.
//!
//! These tests use the dist output instead of building it: a static release build
//! takes minutes, and CI builds it once (`.ci/run` runs `cargo xtask dist` before the
//! tests). Without it they skip, unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail;
//! the chroot test also needs root, python3 (the HTTP server) and zstd.

mod remote_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use remote_support::*;

/// The host name the chroot's `/etc/hosts` maps to 127.0.0.1 (`.invalid` never
/// resolves through DNS, so only the hosts file can answer).
const TEST_HOST: &str = "bmaptool-test.invalid";

/// The directory `cargo xtask dist` wrote.
fn dist_dir() -> PathBuf {
    std::env::var_os("BMAPTOOL_DIST_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/dist")),
        PathBuf::from,
    )
}

/// `dist/NAME`, if it is there (else skipped, or failed when strict).
/// `dist/bmaptool_VERSION-REVISION_ARCH.deb`, if there is one (else skipped, or
/// failed when strict).
#[track_caller]
fn dist_deb(version: &str) -> Option<PathBuf> {
    let prefix = format!("bmaptool_{version}-");
    let found = fs::read_dir(dist_dir()).ok().and_then(|entries| {
        entries.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
    });
    let what = format!(
        "{}/{prefix}*.deb (run `cargo xtask dist` first)",
        dist_dir().display()
    );
    if require(found.is_some(), &what) {
        found
    } else {
        None
    }
}

#[track_caller]
fn dist_file(name: &str) -> Option<PathBuf> {
    let path = dist_dir().join(name);
    let what = format!("{} (run `cargo xtask dist` first)", path.display());
    require(path.is_file(), &what).then_some(path)
}

/// What `program args... path` prints (the test fails if it cannot run).
fn output_of(program: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        stderr_of(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn static_binary_is_statically_linked() {
    let Some(bin) = dist_file("bmaptool") else {
        return;
    };
    if !need_tool("file") {
        return;
    }
    let file = output_of("file", &["-b"], &bin);
    assert!(file.starts_with("ELF 64-bit"), "not an ELF program: {file}");
    assert!(file.contains("statically linked"), "file says: {file}");
    assert!(!file.contains("interpreter"), "file says: {file}");
}

/// An empty directory holding only the static binary, the files given, and
/// `/etc/hosts` mapping [`TEST_HOST`] to 127.0.0.1 (no `/etc/nsswitch.conf`: glibc's
/// default asks DNS, which has no server here, then the hosts file).
fn bare_root(bin: &Path, files: &[PathBuf]) -> tempfile::TempDir {
    let root = scratch();
    fs::copy(bin, root.path().join("bmaptool")).expect("copy the binary");
    fs::set_permissions(
        root.path().join("bmaptool"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    for file in files {
        let name = file.file_name().expect("a file name");
        fs::copy(file, root.path().join(name)).expect("copy into the chroot");
    }
    fs::create_dir(root.path().join("etc")).expect("mkdir etc");
    fs::write(
        root.path().join("etc/hosts"),
        format!("127.0.0.1 {TEST_HOST}\n"),
    )
    .expect("hosts");
    root
}

/// `chroot ROOT /bmaptool ARGS...` with no environment at all, within a deadline.
fn in_chroot(root: &Path, args: &[&str]) -> Run {
    let chroot = which("chroot").expect("chroot (coreutils)");
    let mut cmd = Command::new(chroot);
    cmd.env_clear().arg(root).arg("/bmaptool").args(args);
    run_within(&mut cmd, Duration::from_secs(120))
}

#[track_caller]
fn assert_ran(run: &Run, what: &str) {
    let stderr = run.stderr();
    assert_no_panic(&stderr);
    assert!(
        run.output.status.success(),
        "{what} failed in the chroot:\n{stderr}"
    );
}

#[test]
fn static_binary_copies_zst_and_http_by_host_name_in_an_empty_chroot() {
    let Some(bin) = dist_file("bmaptool") else {
        return;
    };
    if !require(is_root(), "root (chroot)") || !need_tool("chroot") {
        return;
    }
    let served = Served::new();
    if served.add_zst("test.image").is_none() {
        return;
    }
    let Some(http) = HttpServer::start(served.root()) else {
        return;
    };
    let files = [
        served.file("test.image.zst"),
        served.file("test.image.bmap"),
    ];
    let root = bare_root(&bin, &files);

    let local = in_chroot(root.path(), &["copy", "/test.image.zst", "/local.img"]);
    assert_ran(&local, "copy /test.image.zst");
    assert!(served.image == fs::read(root.path().join("local.img")).expect("local.img"));

    let url = format!("http://{TEST_HOST}:{}/test.image.zst", http.port());
    let remote = in_chroot(root.path(), &["copy", &url, "/remote.img"]);
    assert_ran(&remote, &format!("copy {url}"));
    assert!(served.image == fs::read(root.path().join("remote.img")).expect("remote.img"));
    // The server, reached by the name only /etc/hosts knows, served the image and the
    // bmap discovered beside it.
    let stats = http.stats();
    assert!(!stats.gets("/test.image.zst").is_empty(), "{stats:?}");
    assert!(!stats.gets("/test.image.bmap").is_empty(), "{stats:?}");

    // Without the hosts file the name resolves nowhere: the binary says so and fails.
    fs::remove_file(root.path().join("etc/hosts")).expect("remove hosts");
    let unresolved = in_chroot(root.path(), &["copy", &url, "/unresolved.img"]);
    assert_no_panic(&unresolved.stderr());
    assert!(
        !unresolved.output.status.success(),
        "{}",
        unresolved.stderr()
    );
    let said = unresolved.stderr();
    assert!(
        said.contains("failed to lookup address information"),
        "{said}"
    );
    assert!(!root.path().join("unresolved.img").exists());
}

#[test]
fn deb_holds_the_binary_man_pages_completions_and_copyright() {
    let version = env!("CARGO_PKG_VERSION");
    let Some(deb) = dist_deb(version) else {
        return;
    };
    if !need_tool("dpkg-deb") {
        return;
    }
    let listing = output_of("dpkg-deb", &["--contents"], &deb);
    for path in [
        "./usr/bin/bmaptool",
        "./usr/share/man/man1/bmaptool.1.gz",
        "./usr/share/man/man1/bmaptool-copy.1.gz",
        "./usr/share/bash-completion/completions/bmaptool",
        "./usr/share/zsh/vendor-completions/_bmaptool",
        "./usr/share/fish/vendor_completions.d/bmaptool.fish",
        "./usr/share/doc/bmaptool/copyright",
        "./usr/share/doc/bmaptool/changelog.Debian.gz",
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} is not in the .deb:\n{listing}"));
        assert!(line.contains("root/root"), "not owned by root: {line}");
    }
    let control = output_of("dpkg-deb", &["--field"], &deb);
    let version_line = format!("Version: {version}-");
    assert!(
        control.lines().any(|l| l.starts_with(&version_line)),
        "{control}"
    );
    for field in [
        "Package: bmaptool",
        "Conflicts: bmap-tools",
        "Replaces: bmap-tools",
        "Provides: bmap-tools",
    ] {
        assert!(
            control.lines().any(|l| l == field),
            "no `{field}`:\n{control}"
        );
    }
    // A static binary needs no shared library, hence no Depends.
    assert!(!control.contains("Depends:"), "{control}");
}
