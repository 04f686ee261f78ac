//! Human-readable sizes and durations in the reference's wording ("802.5 KiB",
//! "1m 3.2s"), used in bmap comments and in messages.

/// A size in bytes as the reference writes it: "1 byte", "N bytes" below 512, then
/// one decimal in KiB, MiB, GiB, TiB, PiB or EiB.
///
/// The reference labels everything from 1024 TiB up as "EiB" without dividing
/// further; we name PiB and EiB correctly (identical below 1 PiB).
pub fn human_size(size: u64) -> String {
    if size == 1 {
        return "1 byte".to_owned();
    }
    if size < 512 {
        return format!("{size} bytes");
    }
    // Python's `size /= 1024.0` on a float, reproduced step by step so the rounding of
    // `%.1f` sees the same value.
    let mut value = size as f64;
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    for unit in units {
        value /= 1024.0;
        if value < 1024.0 {
            return format!("{value:.1} {unit}");
        }
    }
    format!("{:.1} EiB", value / 1024.0)
}

/// A duration as the reference writes it: optional "Nh ", optional "Nm ", then "S.Ss".
pub fn human_time(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    let whole_minutes = (seconds / 60.0).floor();
    let secs = seconds - whole_minutes * 60.0;
    let hours = (whole_minutes / 60.0).floor();
    let minutes = whole_minutes - hours * 60.0;
    let mut out = String::new();
    if hours > 0.0 {
        out.push_str(&format!("{hours}h "));
    }
    if minutes > 0.0 {
        out.push_str(&format!("{minutes}m "));
    }
    out.push_str(&format!("{secs:.1}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_reference() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(511), "511 bytes");
        assert_eq!(human_size(512), "0.5 KiB");
        assert_eq!(human_size(821_752), "802.5 KiB");
        assert_eq!(human_size(10_486_994), "10.0 MiB");
        assert_eq!(human_size(262_244), "256.1 KiB");
        // Ties round to even on the binary value, as Python's %.1f does.
        assert_eq!(human_size(256), "256 bytes");
        assert_eq!(human_size(1024 + 256 / 2 * 2), "1.2 KiB");
        assert_eq!(human_size(1u64 << 50), "1.0 PiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn times_match_the_reference() {
        assert_eq!(human_time(0.0), "0.0s");
        assert_eq!(human_time(59.94), "59.9s");
        assert_eq!(human_time(61.5), "1m 1.5s");
        assert_eq!(human_time(3600.0 + 120.0 + 3.25), "1h 2m 3.2s");
    }
}
