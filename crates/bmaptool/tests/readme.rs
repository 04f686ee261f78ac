//! The first things a newcomer and a script run: the README's first command (flash the
//! demo shipped in `demo/` into a regular file, its bmap and signature discovered and
//! the signature checked), the demo itself (a GPT disk with an ext4 file system, its
//! bmap made by `create`, the public key that checks its signature), the README's
//! option reference against `--help` and the environment variables the tool reads, and
//! `--version` as ISAR reads it.
//!
//! Tests that need xz, gpg or e2fsprogs skip when those are missing, unless
//! `BMAPTOOL_TEST_STRICT=1` (CI), where they fail. `.ci/run` also runs the first
//! command exactly as written, in a fresh clone.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    fs::read_to_string(repo().join("README.md")).expect("read README.md")
}

/// The lines of the README's first code block.
fn first_block() -> Vec<String> {
    readme()
        .split("```")
        .nth(1)
        .expect("a code block")
        .lines()
        .skip(1) // the language tag
        .map(str::to_owned)
        .collect()
}

/// The arguments of the `bmaptool` command of the README's first line.
fn first_command_args() -> Vec<String> {
    let block = first_block();
    let (install, flash) = block[0]
        .split_once(" && ")
        .expect("the first line installs, then flashes");
    assert_eq!(install, "cargo install --locked --path crates/bmaptool");
    let args: Vec<String> = flash.split_whitespace().map(str::to_owned).collect();
    assert_eq!(args[..2], ["bmaptool", "copy"], "{flash}");
    args[1..].to_vec()
}

/// `xz -dc FILE`.
fn xz_decompress(path: &Path) -> Vec<u8> {
    let out = Command::new("xz")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("xz runs");
    assert!(out.status.success(), "xz -dc {} failed", path.display());
    out.stdout
}

/// Exit status 1 and one error line that contains `needle` (after the info lines).
#[track_caller]
fn assert_refused(output: &Output, needle: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_no_panic(&text);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bmaptool: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains(needle),
        "{needle:?} not in {:?}",
        errors[0]
    );
}

#[test]
fn readme_first_command_flashes_the_demo_into_a_file_checking_its_signature() {
    if !require(runs("xz", &["--version"]), "xz (to check the flashed demo)") {
        return;
    }
    let mut args = first_command_args();
    // As written, but into a temporary directory instead of the working tree.
    let dir = Scratch::fast();
    let dest = dir.path().join("demo.img");
    assert_eq!(args.last().map(String::as_str), Some("demo.img"));
    args.pop();
    let output = bmaptool()
        .current_dir(repo())
        .args(&args)
        .arg(&dest)
        .output()
        .expect("bmaptool runs");
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(output.stdout.is_empty());
    for line in [
        "bmaptool: info: discovered bmap file 'demo/demo.img.bmap'",
        "bmaptool: info: discovered signature file for bmap 'demo/demo.img.bmap': \
         'demo/demo.img.bmap.asc'",
        "bmaptool: info: successfully verified bmap file signature",
        "bmaptool: info: block map format version 2.0",
        "bmaptool: info: copying time: ",
        "bmaptool: info: wrote ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "no {line:?} in:\n{text}"
        );
    }
    assert!(text.contains("image to file 'demo.img'"), "{text}");
    assert!(text.contains("ranges verified"), "{text}");
    // The summary the README shows is the one printed (the signer, the block counts).
    let shown = readme();
    for prefix in [
        "bmaptool: info: successfully verified",
        "bmaptool: info: 16384 blocks",
    ] {
        let line = shown
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the README shows no {prefix:?} line"));
        assert!(
            text.lines().any(|l| l == line),
            "the README shows {line:?}, the command printed:\n{text}"
        );
    }
    assert!(
        read(&dest) == xz_decompress(&repo().join("demo/demo.img.xz")),
        "the flashed file is not the demo image"
    );
}

#[test]
fn demo_image_is_a_gpt_disk_with_an_ext4_file_system_holding_files() {
    if !require(runs("xz", &["--version"]), "xz")
        || !require(runs("debugfs", &["-V"]), "debugfs (e2fsprogs)")
    {
        return;
    }
    let disk = xz_decompress(&repo().join("demo/demo.img.xz"));
    assert_eq!(&disk[512..520], b"EFI PART", "no GPT header at LBA 1");
    assert_eq!(&disk[510..512], [0x55, 0xAA], "no protective MBR");
    // The first entry of the partition array (LBA 2): first and last LBA.
    let lba = |at: usize| u64::from_le_bytes(disk[at..at + 8].try_into().expect("8 bytes"));
    let (first, last) = (lba(1024 + 32), lba(1024 + 40));
    let start = usize::try_from(first * 512).expect("fits");
    let end = usize::try_from((last + 1) * 512).expect("fits");
    assert!(first > 0 && end <= disk.len(), "partition {first}-{last}");
    let part = &disk[start..end];
    assert_eq!(
        part[1024 + 56..1024 + 58],
        [0x53, 0xEF],
        "no ext4 superblock"
    );

    let dir = Scratch::fast();
    let image = dir.path().join("part.img");
    fs::write(&image, part).expect("write the partition");
    let out = Command::new("debugfs")
        .args(["-R", "cat /README.txt"])
        .arg(&image)
        .output()
        .expect("debugfs runs");
    let readme_txt = String::from_utf8_lossy(&out.stdout);
    assert!(
        readme_txt.contains("demo image of bmaptool"),
        "/README.txt: {readme_txt:?}"
    );
    let out = Command::new("debugfs")
        .args(["-R", "ls -p /src/bmap/format"])
        .arg(&image)
        .output()
        .expect("debugfs runs");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("parse.rs"),
        "the sources are not in the file system"
    );
}

#[test]
fn demo_bmap_is_what_create_makes_of_the_flashed_image() {
    let dir = Scratch::fast();
    let dest = dir.path().join("demo.img");
    let demo = repo().join("demo");
    let output = run([
        "copy".as_ref(),
        "--keyring".as_ref(),
        demo.join("demo-key.asc").as_os_str(),
        demo.join("demo.img.xz").as_os_str(),
        dest.as_os_str(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The copy keeps the holes, so create sees the image as make-demo.sh did.
    let created = run(["create".as_ref(), dest.as_os_str()]);
    assert_quiet_success(&created);
    assert!(
        created.stdout == read(&demo.join("demo.img.bmap")),
        "the demo's bmap is not what create makes of the demo image"
    );
}

#[test]
fn demo_signature_is_checked_a_changed_bmap_or_a_missing_key_is_refused() {
    let dir = Scratch::fast();
    let demo = repo().join("demo");
    for name in ["demo.img.xz", "demo.img.bmap", "demo.img.bmap.asc"] {
        fs::copy(demo.join(name), dir.path().join(name)).expect("copy the demo");
    }
    let key = demo.join("demo-key.asc");
    let image = dir.path().join("demo.img.xz");
    let dest = dir.path().join("out.img");

    // One more byte in the bmap (a trailing newline): the signature no longer holds.
    let bmap = dir.path().join("demo.img.bmap");
    let mut bytes = read(&bmap);
    bytes.push(b'\n');
    fs::write(&bmap, &bytes).expect("change the bmap");
    let output = run([
        "copy".as_ref(),
        "--keyring".as_ref(),
        key.as_os_str(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_refused(&output, "signature");
    assert!(!dest.exists(), "DEST created for a bad signature");

    // The right bmap, but no key for it: refused, not skipped.
    fs::copy(demo.join("demo.img.bmap"), &bmap).expect("restore the bmap");
    let empty_home = dir.path().join("gnupg");
    fs::create_dir(&empty_home).expect("mkdir");
    let output = bmaptool()
        .env("GNUPGHOME", &empty_home)
        .args(["copy".as_ref(), image.as_os_str(), dest.as_os_str()])
        .output()
        .expect("bmaptool runs");
    assert_refused(&output, "key");
    assert!(!dest.exists(), "DEST created without a key");
}

#[test]
fn demo_signature_is_good_for_gpgv_and_the_key_file_holds_no_secret() {
    let key = fs::read_to_string(repo().join("demo/demo-key.asc")).expect("read the key");
    assert!(
        key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{key}"
    );
    assert!(
        !key.contains("PRIVATE KEY"),
        "the demo key file holds a secret key"
    );
    let xz = fs::metadata(repo().join("demo/demo.img.xz")).expect("the demo image");
    assert!(xz.len() < 2 << 20, "demo.img.xz is {} bytes", xz.len());
    if !require(
        runs("gpg", &["--version"]) && runs("gpgv", &["--version"]),
        "gpg and gpgv",
    ) {
        return;
    }
    let dir = Scratch::fast();
    let keyring = dir.path().join("demo-key.gpg");
    let dearmor = Command::new("gpg")
        .args(["--batch", "--dearmor", "--output"])
        .arg(&keyring)
        .arg(repo().join("demo/demo-key.asc"))
        .env("GNUPGHOME", dir.path())
        .output()
        .expect("gpg runs");
    assert!(dearmor.status.success(), "{}", stderr(&dearmor));
    let gpgv = Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring)
        .arg(repo().join("demo/demo.img.bmap.asc"))
        .arg(repo().join("demo/demo.img.bmap"))
        .env("GNUPGHOME", dir.path())
        .output()
        .expect("gpgv runs");
    assert!(gpgv.status.success(), "gpgv: {}", stderr(&gpgv));
    assert!(stderr(&gpgv).contains("Good signature"));
}

#[test]
fn readme_second_command_is_the_test_suite_and_real_use_names_a_device() {
    let block = first_block();
    assert_eq!(
        block.iter().map(String::as_str).collect::<Vec<_>>(),
        [block[0].as_str(), "cargo test --workspace"]
    );
    let text = readme();
    let real = text
        .split("```")
        .nth(5)
        .expect("a third code block: the real use");
    assert!(
        real.contains("bmaptool copy disk.img.xz /dev/sdX"),
        "{real}"
    );
}

// ---------------------------------------------------------------------------------
// The option reference

/// The README's "## Options" section.
fn options_section() -> String {
    let text = readme();
    let start = text.find("\n## Options").expect("an Options section");
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end].to_owned()
}

/// The first cells of the tables of the README's Options section: the options and
/// variables that have a row of their own.
fn documented_names() -> String {
    options_section()
        .lines()
        .filter_map(|line| line.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `word` occurs in `text` as a whole option or name (not as a prefix of a
/// longer one: `--bmap` inside `--bmap-sig` does not count).
fn mentions(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// The options `--help` lists (`-q`, `--quiet`, ...) for `bmaptool [COMMAND]`.
fn help_options(command: &[&str]) -> Vec<String> {
    let mut args = command.to_vec();
    args.push("--help");
    let output = run(&args);
    assert_quiet_success(&output);
    let help = String::from_utf8(output.stdout).expect("UTF-8");
    let mut options = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        // The option column ends at the first double space; a wrapped description
        // line that starts with an option name ("--bmap.") is not an option row.
        let column = line.split("  ").next().unwrap_or_default();
        for word in column.split([',', ' ']) {
            let name = word.trim_start_matches('-');
            let dashes = word.len() - name.len();
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if (1..=2).contains(&dashes) && is_name {
                options.push(word.to_owned());
            }
        }
    }
    options
}

#[test]
fn readme_documents_every_option_of_every_command() {
    let section = documented_names();
    let mut checked = 0;
    for command in [
        &[][..],
        &["create"][..],
        &["copy"][..],
        &["verify"][..],
        &["info"][..],
    ] {
        for option in help_options(command) {
            assert!(
                mentions(&section, &option),
                "the README's Options section has no row for {option} of `bmaptool {}`",
                command.join(" ")
            );
            checked += 1;
        }
    }
    // The signature options in particular.
    for option in [
        "--bmap-sig",
        "--no-sig-verify",
        "--keyring",
        "--fingerprint",
    ] {
        assert!(mentions(&section, option), "{option}");
    }
    assert!(checked >= 20, "only {checked} options found in --help");
}

/// Environment variables the command reads: the names passed to `env::var`/`var_os`
/// and every `BMAPTOOL_*` string in its sources.
fn variables_read() -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![repo().join("crates/bmaptool/src")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("list the sources") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let source = fs::read_to_string(&path).expect("read a source file");
            // Odd pieces are inside quotes.
            let pieces: Vec<&str> = source.split('"').collect();
            for i in (1..pieces.len()).step_by(2) {
                let piece = pieces[i];
                let name_like = !piece.is_empty()
                    && piece
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
                let read_by_env =
                    pieces[i - 1].ends_with("var(") || pieces[i - 1].ends_with("var_os(");
                if name_like && (piece.starts_with("BMAPTOOL_") || read_by_env) {
                    names.push(piece.to_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn readme_documents_every_environment_variable_the_tool_reads() {
    let names = variables_read();
    for expected in [
        "BMAPTOOL_TIMEOUT",
        "BMAPTOOL_RETRIES",
        "NO_COLOR",
        "GNUPGHOME",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not found in {names:?}"
        );
    }
    let section = documented_names();
    for name in names.iter().filter(|n| *n != "HOME") {
        assert!(
            mentions(&section, name),
            "the README's Options section has no row for the variable {name}"
        );
    }
}

// ---------------------------------------------------------------------------------
// --version

#[test]
fn version_is_bmaptool_4_0_0_and_isar_reads_4_0_0_with_awk() {
    let output = run(["--version"]);
    assert_quiet_success(&output);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "bmaptool 4.0.0\n");
    // ISAR's image installer: `bmaptool --version | awk '{print $NF}'`, then a version
    // comparison with 3.6 to decide whether --psplash-pipe is there.
    let script = format!(
        "v=$('{}' --version | awk '{{print $NF}}') && echo \"$v\" && \
         printf '3.6\\n%s\\n' \"$v\" | sort -V | head -n 1",
        bin_path().display()
    );
    let out = clean_command("sh")
        .args(["-c", &script])
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4.0.0\n3.6\n");
}
