//! Values written for people: sizes. A leaf: it imports nothing of
//! pgrepl, so any module may use it (SQL literals are `quote`'s).

/// Bytes as people read them: `512 B`, `1.5 MB` (1024-based, as PostgreSQL).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_postgresql_prints_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 kB");
        assert_eq!(human_bytes(1536 << 10), "1.5 MB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TB");
    }
}
