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
//! A sparse image gets its bmap ([`create`]), is copied to two files at once, read
//! and verified once ([`copy::Fanout`]), and one of the copies is checked against the
//! bmap without the image ([`verify`]):
//!
//! ```
//! use std::fs::File;
//! use std::os::unix::fs::FileExt;
//! use bmap::{copy, create, dest::Dest, format, source::Image, verify};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("disk.img");
//! // A 4 MiB image with data at its start and at 3 MiB; the rest is a hole.
//! let image = File::create(&path)?;
//! image.set_len(4 << 20)?;
//! image.write_all_at(b"a boot sector, say", 0)?;
//! image.write_all_at(&[0x5a; 8192], 3 << 20)?;
//!
//! // create: the image's bmap, hashed on all cores.
//! let created = create::create(&File::open(&path)?, &create::Options::default())?;
//! std::fs::write(dir.path().join("disk.img.bmap"), created.bmap.to_xml())?;
//! let parsed = format::parse(&std::fs::read(dir.path().join("disk.img.bmap"))?)?;
//!
//! // copy: one read of the image, verified once, written to two destinations.
//! let plan = copy::Plan::new(Image::open(&path)?, Some(parsed.bmap.clone()), None)?;
//! let copies = [dir.path().join("copy1.img"), dir.path().join("copy2.img")];
//! let writers = copies
//!     .iter()
//!     .map(|p| Ok(copy::DestWriter::new(Dest::open(p, &plan.dest_options(false))?)))
//!     .collect::<Result<Vec<_>, bmap::dest::Error>>()?;
//! let mut fanout = copy::Fanout::new(writers);
//! let mut events = Vec::new();
//! let outcome = plan.run(&mut fanout, &mut events, &copy::Options::default())?;
//! assert_eq!(outcome.ranges_verified, 2);
//! for result in fanout.results() {
//!     assert!(result.error.is_none());
//!     assert_eq!(result.bytes_written, outcome.bytes_written);
//! }
//! // Each destination's progress came as events with its index.
//! assert!(events.iter().any(|e| matches!(
//!     e,
//!     copy::Event::Dest { dest: 1, event: copy::DestEvent::Finished }
//! )));
//! assert_eq!(std::fs::read(&copies[0])?, std::fs::read(&path)?);
//!
//! // verify: the copy checked against the bmap, without the image.
//! let report = verify::verify(
//!     verify::Target::open(&copies[1])?,
//!     &parsed.bmap,
//!     parsed.self_check,
//!     &mut copy::NoEvents,
//!     &verify::Options::default(),
//! )?;
//! assert!(report.all_good());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod access;
pub mod copy;
pub mod create;
pub mod dest;
pub mod discover;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod gpt;
mod interrupt;
pub mod layout;
pub mod signature;
pub mod source;
mod sys;
pub mod trust;
pub mod verify;

pub use interrupt::Interrupt;

/// Files written without a name (`O_TMPFILE`) and named only once complete, so that a
/// process killed mid-write (SIGKILL, which no handler sees) leaves no partial file:
/// how [`dest`] writes a new destination file, and what `bmaptool create` writes its
/// output with.
pub mod unnamed {
    pub use crate::sys::{link_unnamed as link, open_unnamed as open, unnamed_refused as refused};
}
