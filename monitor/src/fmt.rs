//! How numbers are written on screen and in plain lines: short, aligned,
//! with units, the same everywhere.

use std::time::SystemTime;

/// 1234567 → "1,234,567".
pub(crate) fn count(v: f64) -> String {
    let n = v.max(0.0).round() as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count in at most six characters: 999,999 / 1.23M / 12.3M / 123M / 1.23G.
pub(crate) fn compact(v: f64) -> String {
    let v = v.max(0.0);
    if v < 1e6 {
        count(v)
    } else if v < 1e9 {
        three(v / 1e6, "M")
    } else {
        three(v / 1e9, "G")
    }
}

fn three(v: f64, unit: &str) -> String {
    if v < 10.0 {
        format!("{v:.2}{unit}")
    } else if v < 100.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// A per-second rate: "12,345", "34.5", "0.25", "0".
pub(crate) fn rate(v: f64) -> String {
    let v = v.max(0.0);
    if v == 0.0 {
        "0".into()
    } else if v >= 1000.0 {
        count(v)
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A rate or "–" when unknown.
pub(crate) fn opt_rate(v: Option<f64>) -> String {
    v.map(rate).unwrap_or_else(|| "–".into())
}

/// A share: "97.2%", "100%", "0.04%".
pub(crate) fn pct(v: f64) -> String {
    let p = v * 100.0;
    if p >= 100.0 {
        "100%".into()
    } else if p > 0.0 && p < 0.1 {
        format!("{p:.2}%")
    } else {
        // Never round a shortfall up to a full 100.
        format!("{:.1}%", p.min(99.9))
    }
}

pub(crate) fn opt_pct(v: Option<f64>) -> String {
    v.map(pct).unwrap_or_else(|| "–".into())
}

/// A latency in seconds: "850 µs", "8.1 ms", "1.20 s".
pub(crate) fn latency(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 0.1 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

pub(crate) fn opt_latency(v: Option<f64>) -> String {
    v.map(latency).unwrap_or_else(|| "–".into())
}

/// A span of time: "4s", "2m 05s", "3h 02m", "2d 4h".
pub(crate) fn duration(s: f64) -> String {
    let s = s.max(0.0);
    if s < 10.0 && s.fract() != 0.0 {
        return format!("{s:.1}s");
    }
    let n = s.round() as u64;
    match n {
        0..=59 => format!("{n}s"),
        60..=3599 => format!("{}m {:02}s", n / 60, n % 60),
        3600..=86399 => format!("{}h {:02}m", n / 3600, n % 3600 / 60),
        _ => format!("{}d {}h", n / 86400, n % 86400 / 3600),
    }
}

/// Bytes: "512 B", "12.3 MB", "1.21 GB".
pub(crate) fn bytes(v: f64) -> String {
    let v = v.max(0.0);
    if v < 1e3 {
        format!("{v:.0} B")
    } else if v < 1e6 {
        format!("{:.1} kB", v / 1e3)
    } else if v < 1e9 {
        format!("{:.1} MB", v / 1e6)
    } else {
        format!("{:.2} GB", v / 1e9)
    }
}

/// Wall-clock time of day, local or UTC (tests): "14:03:27".
pub(crate) fn clock(t: SystemTime, local: bool) -> String {
    let utc: chrono::DateTime<chrono::Utc> = t.into();
    if local {
        utc.with_timezone(&chrono::Local)
            .format("%H:%M:%S")
            .to_string()
    } else {
        utc.format("%H:%M:%S").to_string()
    }
}

/// A timestamp for plain lines (UTC, RFC 3339, seconds).
pub(crate) fn timestamp(t: SystemTime) -> String {
    let utc: chrono::DateTime<chrono::Utc> = t.into();
    utc.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(count(1234567.4), "1,234,567");
        assert_eq!(count(0.0), "0");
        assert_eq!(compact(999_999.0), "999,999");
        assert_eq!(compact(1_234_567.0), "1.23M");
        assert_eq!(compact(123_456_789.0), "123M");
        assert_eq!(rate(12_345.6), "12,346");
        assert_eq!(rate(34.54), "34.5");
        assert_eq!(rate(0.254), "0.25");
        assert_eq!(rate(-1.0), "0");
        assert_eq!(opt_rate(None), "–");
        assert_eq!(pct(0.9724), "97.2%");
        assert_eq!(pct(1.0), "100%");
        assert_eq!(pct(0.0004), "0.04%");
        assert_eq!(pct(0.0), "0.0%");
        assert_eq!(pct(0.99996), "99.9%", "a shortfall is never shown as 100");
        assert_eq!(latency(0.00085), "850 µs");
        assert_eq!(latency(0.0081), "8.1 ms");
        assert_eq!(latency(0.25), "250 ms");
        assert_eq!(latency(1.2), "1.20 s");
        assert_eq!(duration(4.0), "4s");
        assert_eq!(duration(2.5), "2.5s");
        assert_eq!(duration(125.0), "2m 05s");
        assert_eq!(duration(3.0 * 3600.0 + 120.0), "3h 02m");
        assert_eq!(bytes(12_300_000.0), "12.3 MB");
    }

    #[test]
    fn times() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86400 + 3600 * 14 + 207);
        assert_eq!(clock(t, false), "14:03:27");
        assert_eq!(timestamp(t), "1970-01-02T14:03:27Z");
    }
}
