//! Byte counts given on the command line (`--seek 1MiB`): a whole number of bytes,
//! with an optional unit. Binary units as dd has them (`K`, `M`, `G`, `T`, each also
//! spelled `KiB`, `MiB`...: powers of 1024), decimal ones as dd spells them (`kB`,
//! `MB`, `GB`, `TB`: powers of 1000), and `B` or nothing for bytes. Case matters only
//! where dd's does: `k` is `K`, and `Mb`-like spellings are refused as unclear.

/// The units, longest spelling first within each, with their factors.
const UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1000),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("TB", 1000 * 1000 * 1000 * 1000),
    ("K", 1 << 10),
    ("k", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
    ("B", 1),
    ("", 1),
];

/// Parses a byte count such as `512`, `4k`, `1MiB` or `2G` (clap value parser).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "'{text}' is not a byte count: give a whole number of bytes, optionally with a \
             unit (512, 4K, 1MiB, 2G; kB and MB are powers of 1000)"
        ));
    }
    let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "'{unit}' in '{text}' is not a unit: use K, M, G or T (also KiB, MiB, GiB, \
             TiB: powers of 1024), kB, MB, GB or TB (powers of 1000), or none for bytes"
        ));
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("'{text}' is too large: at most {} bytes", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn plain_numbers_and_binary_and_decimal_units_parse() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("4k", 4096),
            ("4K", 4096),
            ("4KiB", 4096),
            ("1M", 1 << 20),
            ("1MiB", 1 << 20),
            ("3G", 3 << 30),
            ("2GiB", 2 << 30),
            ("1T", 1 << 40),
            ("1kB", 1000),
            ("2MB", 2_000_000),
            ("1GB", 1_000_000_000),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn garbage_negative_fractions_and_overflow_are_refused() {
        for text in [
            "", "-512", "+512", "1.5M", "M", "1 M", "1m", "1Mb", "1MiBs", "0x200", "1e3",
        ] {
            assert!(parse_bytes(text).is_err(), "{text} was accepted");
        }
        assert!(parse_bytes("18446744073709551616").is_err());
        assert!(
            parse_bytes("17179869184G")
                .expect_err("too large")
                .contains("too large")
        );
        assert_eq!(parse_bytes("18446744073709551615"), Ok(u64::MAX));
    }
}
