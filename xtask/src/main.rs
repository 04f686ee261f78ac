//! Developer tasks. `cargo xtask man DIR` writes the man page `bmaptool.1` (and one page
//! per subcommand); `cargo xtask completions DIR` writes bash, zsh, fish, elvish and
//! PowerShell completions. Both come from the same clap definition as `--help`.
//! `cargo xtask static DIR` builds the static binary `DIR/bmaptool`; `cargo xtask dist
//! [DIR]` (default `target/dist`) does all three and packs them into a `.deb`.

mod deb;
mod static_build;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap_complete::Shell;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/dist".into()));
    match task.as_str() {
        "man" => man(&dir),
        "completions" => completions(&dir),
        "static" => static_build::build(&dir).map(drop),
        "dist" => dist(&dir),
        _ => bail!("usage: cargo xtask man|completions|static|dist [DIR]"),
    }
}

/// Man pages, completions, the static binary and the `.deb` built from them, in `dir`.
fn dist(dir: &Path) -> Result<()> {
    man(&dir.join("man"))?;
    completions(&dir.join("completions"))?;
    let binary = static_build::build(dir)?;
    let deb = deb::build(dir, &binary)?;
    println!("{}", deb.display());
    Ok(())
}

fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = bmaptool::cli::command();
    clap_mangen::generate_to(cmd, dir).context("cannot write the man pages")?;
    println!("{}", dir.join("bmaptool.1").display());
    Ok(())
}

fn completions(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut cmd = bmaptool::cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "bmaptool", dir)
            .with_context(|| format!("cannot write {shell} completions"))?;
        println!("{}", path.display());
    }
    Ok(())
}
