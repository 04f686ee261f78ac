//! Hostile images in memory: made by `sgdisk`, then edited (bad CRCs, absurd fields,
//! positions anywhere, disagreeing headers, partitions out of range, no protective MBR,
//! truncation, failing reads, random changes). Each must end in a `NotMoved` reason or
//! a clean error, never a panic; and whatever is moved must be a valid GPT that undoes
//! to the image's bytes.

use std::fs;
use std::process::Command;

use bmap::gpt::{self, HeaderProblem, MbrChange, NotMoved, Relocation, Which};
use proptest::prelude::*;
use tempfile::TempDir;
use test_support::{MIB, need_tool};

use super::{run, sgdisk_image, sized};

/// The CRC32 (IEEE) of `bytes`, bit by bit: an oracle independent of the library's.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn get_u32(img: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(img[at..at + 4].try_into().expect("a 4-byte slice"))
}

fn get_u64(img: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(img[at..at + 8].try_into().expect("an 8-byte slice"))
}

fn put_u32(img: &mut [u8], at: usize, value: u32) {
    img[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(img: &mut [u8], at: usize, value: u64) {
    img[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Recomputes the header CRC32 of the 512-byte-sector header at `lba` (and, when its
/// fields allow, its entry array's CRC32 first), as a tool writing those fields would.
fn reseal(img: &mut [u8], lba: u64) {
    let at = (lba * 512) as usize;
    let entries = get_u64(img, at + 72).saturating_mul(512);
    let len = u64::from(get_u32(img, at + 80)) * u64::from(get_u32(img, at + 84));
    if let Some(array) = usize::try_from(entries)
        .ok()
        .and_then(|start| img.get(start..start.checked_add(len as usize)?))
    {
        let crc = crc32(array);
        put_u32(img, at + 88, crc);
    }
    let size = (get_u32(img, at + 12) as usize).clamp(92, 512);
    put_u32(img, at + 16, 0);
    let crc = crc32(&img[at..at + size]);
    put_u32(img, at + 16, crc);
}

/// The 8 MiB `sgdisk` image, in memory (`None`, skipped, without sgdisk).
fn memory_image() -> Option<(TempDir, Vec<u8>)> {
    if !need_tool("sgdisk") {
        return None;
    }
    let dir = TempDir::new().expect("tempdir");
    let bytes = fs::read(sgdisk_image(dir.path())).expect("read the image");
    Some((dir, bytes))
}

/// The backup header's LBA in the 8 MiB image.
const LAST: u64 = 8 * MIB / 512 - 1;

fn plan_mem(img: &[u8], device_size: u64) -> Result<Relocation, NotMoved> {
    gpt::plan_relocation(&img, img.len() as u64, device_size, 512).expect("memory reads")
}

fn invalid(which: Which, problem: HeaderProblem) -> Result<Relocation, NotMoved> {
    Err(NotMoved::Invalid { which, problem })
}

#[test]
fn corrupt_crcs_are_not_moved() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    for (at, which) in [(512 + 56, Which::Primary), (LAST * 512 + 56, Which::Backup)] {
        let mut img = image.clone();
        img[at as usize] ^= 0x01;
        let result = plan_mem(&img, 16 * MIB);
        let problem = HeaderProblem::HeaderCrc {
            stored: get_u32(&img, (at - 56 + 16) as usize),
            computed: crc32(&{
                let mut h = img[(at - 56) as usize..(at - 56 + 92) as usize].to_vec();
                h[16..20].fill(0);
                h
            }),
        };
        assert_eq!(result, invalid(which, problem));
    }
    for (at, which) in [
        (1024 + 1, Which::Primary),
        ((LAST - 32) * 512 + 1, Which::Backup),
    ] {
        let mut img = image.clone();
        img[at as usize] ^= 0x01;
        let result = plan_mem(&img, 16 * MIB);
        assert!(
            matches!(result, Err(NotMoved::Invalid { which: w, problem: HeaderProblem::EntriesCrc { .. } }) if w == which),
            "{result:?}"
        );
    }
}

#[test]
fn absurd_header_fields_are_not_moved() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    let cases: [(usize, u64, HeaderProblem); 9] = [
        (80, u64::from(u32::MAX), HeaderProblem::EntryCount(u32::MAX)),
        (80, 0, HeaderProblem::EntryCount(0)),
        (80, 8193, HeaderProblem::EntryCount(8193)),
        (84, 0, HeaderProblem::EntrySize(0)),
        (84, 129, HeaderProblem::EntrySize(129)),
        (84, u64::from(u32::MAX), HeaderProblem::EntrySize(u32::MAX)),
        (12, 91, HeaderProblem::HeaderSize(91)),
        (12, 513, HeaderProblem::HeaderSize(513)),
        (8, 0x0002_0000, HeaderProblem::Revision(0x0002_0000)),
    ];
    for (field, value, problem) in cases {
        let mut img = image.clone();
        put_u32(&mut img, 512 + field, value as u32);
        reseal(&mut img, 1);
        assert_eq!(
            plan_mem(&img, 16 * MIB),
            invalid(Which::Primary, problem),
            "field {field}"
        );
    }
    // Positions: entry arrays, usable ranges and MyLBA anywhere.
    let layout = HeaderProblem::Layout;
    let cases: [(u64, usize, u64, Result<Relocation, NotMoved>); 9] = [
        (1, 72, 0, invalid(Which::Primary, layout)),
        (1, 72, 1, invalid(Which::Primary, layout)),
        (1, 72, u64::MAX / 512 + 1, invalid(Which::Primary, layout)),
        (1, 40, LAST, invalid(Which::Primary, layout)),
        (1, 48, LAST, invalid(Which::Primary, layout)),
        (1, 48, 33, invalid(Which::Primary, layout)),
        // A resealing tool's new array CRC32 no longer matches the primary's.
        (
            LAST,
            72,
            LAST - 31,
            Err(NotMoved::Disagree {
                field: "PartitionEntryArrayCRC32",
            }),
        ),
        (LAST, 72, u64::MAX, invalid(Which::Backup, layout)),
        (
            LAST,
            24,
            7,
            invalid(
                Which::Backup,
                HeaderProblem::MyLba {
                    expected: LAST,
                    found: 7,
                },
            ),
        ),
    ];
    for (lba, field, value, expected) in cases {
        let mut img = image.clone();
        put_u64(&mut img, (lba * 512) as usize + field, value);
        reseal(&mut img, lba);
        assert_eq!(
            plan_mem(&img, 16 * MIB),
            expected,
            "LBA {lba} field {field} = {value}"
        );
    }
}

#[test]
fn alternate_lba_anywhere_is_not_moved() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    for alternate_lba in [0, 1, 2, LAST - 1, LAST + 1, 32767, u64::MAX] {
        let mut img = image.clone();
        put_u64(&mut img, 512 + 32, alternate_lba);
        reseal(&mut img, 1);
        let expected = NotMoved::BackupNotAtEnd {
            alternate_lba,
            last_lba: LAST,
        };
        assert_eq!(plan_mem(&img, 16 * MIB), Err(expected));
    }
    let mut img = image.clone();
    put_u64(&mut img, (LAST * 512 + 32) as usize, 2);
    reseal(&mut img, LAST);
    let problem = HeaderProblem::AlternateLba(2);
    assert_eq!(plan_mem(&img, 16 * MIB), invalid(Which::Backup, problem));
}

#[test]
fn headers_that_disagree_are_not_moved() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    for (field, name) in [
        (56, "DiskGUID"),
        (40, "FirstUsableLBA"),
        (48, "LastUsableLBA"),
    ] {
        let mut img = image.clone();
        img[(LAST * 512) as usize + field] ^= 0x01;
        reseal(&mut img, LAST);
        assert_eq!(
            plan_mem(&img, 16 * MIB),
            Err(NotMoved::Disagree { field: name })
        );
    }
}

#[test]
fn partitions_outside_the_usable_range_are_not_moved() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    let last_usable = get_u64(&image, 512 + 48);
    // Partition 3 (entry 2) ends one LBA too far; partition 1 starts in the array.
    for (entry, field, value) in [(2, 40, last_usable + 1), (0, 32, 33)] {
        let mut img = image.clone();
        for array in [2, LAST - 32] {
            put_u64(
                &mut img,
                (array * 512) as usize + entry * 128 + field,
                value,
            );
        }
        reseal(&mut img, 1);
        reseal(&mut img, LAST);
        let result = plan_mem(&img, 16 * MIB);
        assert!(
            matches!(result, Err(NotMoved::PartitionOutOfBounds { number, .. }) if number == entry as u32 + 1),
            "{result:?}"
        );
    }
}

#[test]
fn images_without_a_usable_gpt_are_not_moved() {
    let Some((dir, image)) = memory_image() else {
        return;
    };
    // No protective MBR: no boot signature, or no 0xEE record.
    let mut img = image.clone();
    img[510] = 0;
    assert_eq!(plan_mem(&img, 16 * MIB), Err(NotMoved::NotProtective));
    let mut img = image.clone();
    img[446 + 4] = 0x83;
    assert_eq!(plan_mem(&img, 16 * MIB), Err(NotMoved::NotProtective));
    // An MBR-only image (sfdisk's dos label) and tiny images.
    if need_tool("sfdisk") {
        let dos = dir.path().join("dos.img");
        sized(&dos, 8 * MIB);
        test_support::pipe_through(
            Command::new("sfdisk").arg("-q").arg(&dos),
            b"label: dos\n,,L\n",
        );
        assert_eq!(
            plan_mem(&fs::read(&dos).expect("read"), 16 * MIB),
            Err(NotMoved::NoGpt)
        );
    }
    for len in [0, 100, 1024, 2047] {
        assert_eq!(
            plan_mem(&image[..len], 16 * MIB),
            Err(NotMoved::NoGpt),
            "{len} bytes"
        );
    }
}

#[test]
fn truncated_images_are_not_moved_and_short_reads_are_errors() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    let cut = &image[..6 * MIB as usize];
    let expected = NotMoved::BackupNotAtEnd {
        alternate_lba: LAST,
        last_lba: 6 * MIB / 512 - 1,
    };
    assert_eq!(plan_mem(cut, 16 * MIB), Err(expected));
    // An image said to be 8 MiB whose reads stop at 6 MiB.
    let error = gpt::plan_relocation(&cut, 8 * MIB, 16 * MIB, 512).expect_err("a short read");
    let gpt::Error::Read { offset, len, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*offset, *len), (LAST * 512, 512));
    assert_eq!(
        error.to_string(),
        format!("cannot read 512 bytes at byte {offset} of the disk")
    );
    // A reader that fails: the error is returned, not swallowed.
    let failing = gpt::ReadFn(|_: &mut [u8], _| Err(std::io::Error::other("medium error")));
    assert!(gpt::plan_relocation(&failing, 8 * MIB, 16 * MIB, 512).is_err());
    assert!(gpt::undo_relocation(&failing, 8 * MIB, 16 * MIB).is_err());
}

#[test]
fn devices_not_larger_are_not_moved() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    for device_size in [0, 4 * MIB, 8 * MIB, 8 * MIB + 511] {
        let expected = NotMoved::DeviceNotLarger {
            image_sectors: 16384,
            device_sectors: device_size / 512,
        };
        assert_eq!(plan_mem(&image, device_size), Err(expected));
    }
    let result = gpt::plan_relocation(&image.as_slice(), 8 * MIB, 16 * MIB, 4096);
    let expected = NotMoved::SectorSize {
        image: 512,
        device: 4096,
    };
    assert_eq!(result.expect("reads"), Err(expected.clone()));
    assert_eq!(
        expected.to_string(),
        "the image's GPT is for 512-byte sectors, the device has 4096-byte sectors"
    );
}

/// `image` grown to `device_size` bytes in memory, with `relocation` applied.
fn moved(image: &[u8], device_size: usize, relocation: &Relocation) -> Vec<u8> {
    let mut device = image.to_vec();
    device.resize(device_size, 0);
    for write in &relocation.writes {
        assert_eq!(write.overlay(&mut device, 0), write.bytes.len());
    }
    device
}

#[test]
fn undo_refuses_what_is_not_a_moved_copy() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    let relocation = plan_mem(&image, 16 * MIB).expect("moved");
    let device = moved(&image, 16 * MIB as usize, &relocation);
    let undo = |disk: &[u8], size| {
        gpt::undo_relocation(&disk, size, disk.len() as u64).expect("memory reads")
    };
    assert!(undo(&device, 8 * MIB).is_some());
    // Not moved, another image size, a corrupt primary, no GPT.
    assert_eq!(undo(&image, 8 * MIB), None);
    assert_eq!(undo(&device, 4 * MIB), None);
    assert_eq!(undo(&device, 12 * MIB), None);
    let mut corrupt = device.clone();
    corrupt[512 + 60] ^= 1;
    assert_eq!(undo(&corrupt, 8 * MIB), None);
    assert_eq!(undo(&vec![0; 16 * MIB as usize], 8 * MIB), None);
    // A primary that says "moved" over a broken or missing backup at the device's end:
    // its header, its entry array, or a device of another size.
    let last = device.len() - 512;
    for at in [last + 30, last - 16 * 1024 + 3] {
        let mut broken = device.clone();
        broken[at] ^= 1;
        assert_eq!(undo(&broken, 8 * MIB), None, "byte {at} changed");
    }
    let mut cut = device.clone();
    cut.truncate(device.len() - 4096);
    assert_eq!(undo(&cut, 8 * MIB), None);
}

#[test]
fn a_device_larger_by_less_than_the_backup_has_no_room() {
    let Some((_dir, image)) = memory_image() else {
        return;
    };
    let size = image.len() as u64;
    // 128 entries of 128 bytes: 32 sectors of array, then the header.
    for extra in [1, 2, 32] {
        let got = plan_mem(&image, size + extra * 512);
        assert!(
            matches!(got, Err(NotMoved::NoRoom { .. })),
            "{extra} sectors: {got:?}"
        );
    }
    assert!(plan_mem(&image, size + 33 * 512).is_ok());
}

/// A 1 MiB image with two partitions, made by `sgdisk` (`None`, skipped, without it).
fn small_image() -> Option<Vec<u8>> {
    if !need_tool("sgdisk") {
        return None;
    }
    let dir = TempDir::new().expect("tempdir");
    let image = dir.path().join("small.img");
    sized(&image, MIB);
    run("sgdisk", &["-a", "8", "-n1:0:+256K", "-n2:0:0"], &image);
    Some(fs::read(&image).expect("read"))
}

/// Where a random change lands: sector 0, a header's 92 bytes, or an entry array; in
/// the primary, the backup or both (as a tool rewriting both copies would).
#[derive(Debug, Clone, Copy)]
enum Spot {
    Mbr(usize),
    Header(usize, u8),
    Array(usize, u8),
}

fn spot() -> impl Strategy<Value = Spot> {
    prop_oneof![
        (0..512usize).prop_map(Spot::Mbr),
        (0..92usize, 1..4u8).prop_map(|(at, copies)| Spot::Header(at, copies)),
        (0..16384usize, 1..4u8).prop_map(|(at, copies)| Spot::Array(at, copies)),
    ]
}

/// The byte offsets of `spot` in a 1 MiB image.
fn offsets(spot: Spot) -> Vec<usize> {
    let last = (MIB / 512 - 1) as usize;
    let (primary, backup, at, copies) = match spot {
        Spot::Mbr(at) => return vec![at],
        Spot::Header(at, copies) => (512, last * 512, at, copies),
        Spot::Array(at, copies) => (1024, (last - 32) * 512, at, copies),
    };
    let mut out = Vec::new();
    if copies & 1 != 0 {
        out.push(primary + at);
    }
    if copies & 2 != 0 {
        out.push(backup + at);
    }
    out
}

#[test]
fn random_corruption_never_panics_and_what_is_moved_is_valid() {
    let Some(image) = small_image() else {
        return;
    };
    let last = MIB / 512 - 1;
    let changes = proptest::collection::vec((spot(), any::<u8>()), 1..6);
    let config = ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&(changes, any::<bool>()), |(changes, resealed)| {
        let mut img = image.clone();
        for (spot, byte) in changes {
            for at in offsets(spot) {
                img[at] = byte;
            }
        }
        if resealed {
            reseal(&mut img, 1);
            reseal(&mut img, last);
        }
        let device_size = 2 * MIB;
        let Ok(relocation) = plan_mem(&img, device_size) else {
            let _ =
                gpt::undo_relocation(&img.as_slice(), MIB, img.len() as u64).expect("memory reads");
            return Ok(());
        };
        let device = moved(&img, device_size as usize, &relocation);
        // What we write is a valid GPT with its backup at the device's end...
        let again = gpt::plan_relocation(&device.as_slice(), device_size, device_size + MIB, 512);
        prop_assert!(matches!(again, Ok(Ok(_))), "{again:?}");
        // ...which undoes to the image's bytes (bar the documented ambiguity).
        if relocation.mbr != (MbrChange::KeptMismatched { size: 4095 }) {
            let writes =
                gpt::undo_relocation(&device.as_slice(), MIB, device_size).expect("memory reads");
            let mut first = device[..1024].to_vec();
            for write in writes.expect("a moved copy") {
                prop_assert_eq!(write.overlay(&mut first, 0), 512);
            }
            prop_assert_eq!(&first[..], &img[..1024]);
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
