//! The one test harness of the workspace, in the way ripgrep's `tests/util.rs` serves
//! all of its tests: every test binary of `bmap` and `bmaptool` takes from here the
//! environment rule ([`require`]: skip with a note, or fail under
//! `BMAPTOOL_TEST_STRICT=1`), the clean command every program under test is run with
//! ([`clean_command`]), the assertions on a run, waits for states, guards that undo
//! what a test set up, the test data generators, the GnuPG fixtures ([`gpg`]), the
//! process seen through `/proc` ([`procfs`]) and the test HTTP server ([`HttpServer`]).
//!
//! It is a dev-only workspace crate (never published) because the two crates' test
//! directories cannot share a module by path cleanly: a `#[path]` include compiles the
//! same file again in every test binary, each with its own `dead_code` exceptions, and
//! reaches across crate directories. A crate is compiled once, its items are `pub`,
//! and `cargo clippy --all-targets` checks it like any other code.
//!
//! What needs the binary's path or `CARGO_TARGET_TMPDIR` (known only to a test binary
//! when it is compiled) stays in the thin modules of `crates/bmaptool/tests`
//! (`common`, `copy_support`, `remote_support`, `signed_support`), which re-export what
//! is here under the names their tests have always used.

pub mod gpg;
pub mod procfs;

mod cmd;
mod data;
mod env;
mod helper;
mod http;
mod wait;

pub use cmd::{
    BMAPTOOL_VAR_PREFIX, PROXY_VARS, assert_fails, assert_no_panic, assert_ok, clean_command,
    copy_args, empty_gnupghome, pipe_through, stderr, succeeds, with_bmap,
};
pub use data::{MIB, SplitMix, flip_byte, merge, random_bytes, read, write_chunks, write_filled};
pub use env::{
    CONFORMANCE_NEED, REFERENCE, STRICT_VAR, conformance_path, have_reference, is_root,
    need_conformance, need_loop_devices, need_mount, need_python, need_reference, need_tool,
    reference_test_data, require, runs, strict, which,
};
pub use helper::{Helper, START_LIMIT, free_port, scratch_dir, wait_listening};
pub use http::{HttpServer, Proxied, Request, Stats, TlsFiles, fixtures, json_string};
pub use wait::{KillOnDrop, eventually, send_signal, signal, wait_for};
