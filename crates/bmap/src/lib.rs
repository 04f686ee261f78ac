//! The bmap (block map) format and the engines of `bmaptool`.
//!
//! A raw disk image is mostly holes. Its *bmap* lists the blocks that hold data, with a
//! checksum per range, so that flashing writes only those blocks and verifies them.
//! This crate is the library behind the `bmaptool` command, usable on its own:
//!
//! - [`format`](mod@format): the bmap file itself (parse every version 1.0-2.x, write 2.0 exactly as
//!   the reference tool does), with no I/O;
//! - [`layout`]: which blocks of a local file are mapped (FIEMAP, SEEK_DATA/SEEK_HOLE);
//! - [`create`]: an image -> its bmap, hashing ranges on all cores;
//! - [`source`] and [`dest`]: where image bytes come from and go to;
//! - [`trust`]: find, fetch, signature-check and parse the bmap for an image;
//! - [`copy`]: an image and its bmap -> a file or block device, verifying as it goes;
//! - [`verify`]: a flashed device or file checked against a bmap, without the image;
//! - [`gpt`]: moving the backup GPT of an image to the end of a larger device.
//!
//! The library never prints, reads environment variables or installs signal handlers:
//! errors are typed values, and long operations take an [`Interrupt`] flag.
//!
//! ```no_run
//! use std::fs::File;
//!
//! let image = File::open("disk.img")?;
//! let outcome = bmap::create::create(&image, &bmap::create::Options::default())?;
//! std::fs::write("disk.img.bmap", outcome.bmap.to_xml())?;
//!
//! let parsed = bmap::format::parse(&std::fs::read("disk.img.bmap")?)?;
//! assert_eq!(parsed.bmap.ranges(), outcome.bmap.ranges());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod access;
pub mod copy;
pub mod create;
pub mod dest;
pub mod discover;
pub mod format;
pub mod gpt;
mod interrupt;
pub mod layout;
pub mod signature;
pub mod source;
mod sys;
pub mod trust;
pub mod verify;

pub use interrupt::Interrupt;
