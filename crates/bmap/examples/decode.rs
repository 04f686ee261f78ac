//! Decodes an image to nothing and says how many bytes it holds: the speed of a decoder
//! chain alone, without the copy pipeline (used by `bench/compressed.sh` against the
//! system decoders).
//!
//! `cargo run --release -p bmaptool-core --example decode -- IMAGE`

use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).ok_or("usage: decode IMAGE")?;
    let opened = bmap::source::open(std::path::Path::new(&path))?;
    let mut reader: Box<dyn Read> = match opened.image {
        bmap::source::Image::File { file, .. } => Box::new(file),
        bmap::source::Image::Ranged { .. } => return Err("not a local image".into()),
        bmap::source::Image::Stream { reader, .. } => reader,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    println!("{total} bytes of {}", opened.format);
    Ok(())
}
