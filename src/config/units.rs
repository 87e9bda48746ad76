//! Durations (`300s`, `5m`, `1h`) and sizes (`1MiB`, `64KiB`, `1000`).

use std::time::Duration;

/// `300s`, `5m`, `1h`, `1h 30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration such as 300s, 5m or 1h ({e})"))
}

/// `1MiB`, `64KiB`, `1MB`, or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let bytes = t
        .parse::<bytesize::ByteSize>()
        .map_err(|_| format!("`{s}` is not a size such as 1MiB, 64KiB or 1000"))?;
    usize::try_from(bytes.as_u64()).map_err(|_| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
    }
}
